"""The KPI summary of one replication, assembled from the components' result hooks.

Every component reports its own figures through one small public method,
``results()``, in the summary's words (its counters over the measurement
window, and its per-second series where it has any). The fleet gathers
those into a :class:`FleetResults`, grouped the way the summary reports them
(backends by service, gateways by pool), and this module turns them, with
the :class:`~sim.metrics.recorder.Recorder`'s request outcomes, into
``summary.json``'s dict, the per-second time series, and the per-pool and
per-service counters. It reads no component: only the plain dicts the hooks
return. A new subsystem adds its hook and one section function here.

Summaries are compared byte for byte across runs of the same seed, so every
sum here runs over instances in the fleet's build order (floating-point
addition is not associative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sim.config.models import CpuPricing
from sim.metrics import gateway_cpu as gc
from sim.metrics.cost import cost_section
from sim.metrics.ratelimit import rate_limit_section, rate_limit_timeseries
from sim.metrics.recorder import Recorder
from sim.metrics.recovery import RECOVERY_RULES, analyse_recovery


@dataclass
class FleetResults:
    """The result hooks' figures of one replication, grouped as the summary reports them.

    Attributes:
        backends: service -> each instance's ``BackendInstance.results()``, in build order.
        gateways: pool -> each instance's ``GatewayInstance.results()``, in build order.
        clients: each client population's ``ClientPopulation.results()``.
        service_load: service -> capacity and offered load from the configuration
            (:func:`sim.fleet.capacity.service_load`).
        backend_queue: service -> attempts waiting in its instances' queues at the end of
            each simulated second.
        health: each gateway cluster's ``HostHealth.results(...)`` (with health features), in
            gateway then cluster order, with ``gateway`` and ``hosts`` (host names) added.
        bytes_by_az_pair: ``Network.results()``'s bytes per AZ pair.
        faults: ``FaultTimeline.summary()``.
        in_flight: counted requests still unanswered at the end.
        control_plane: ``ControlPlane.results()`` (None without a control plane).
        connections: the connection layer's per-pool counters (``workload.connections``), else None.
        bytes_by_purpose: ``Network.bytes_by_purpose()``: bytes per purpose and AZ pair.
        az_region: every AZ's region.
        balancers: region -> ``{"kind", "tries"}``: each regional balancer's kind and the tries
            its nodes forwarded.
        zone_routing: ``<pool>/<service>`` -> :func:`sim.components.locality.pool_results`, for
            pools whose cluster uses priorities, locality weights or zone-aware routing.
        gslb: ``Gslb.results()`` with ``entries`` (client region -> ``GslbEntry.results()``), or {}.
    """

    backends: dict[str, list[dict]]
    gateways: dict[str, list[dict]]
    clients: list[dict]
    health: list[dict] = field(default_factory=list)
    backend_queue: dict[str, list[int]] = field(default_factory=dict)
    service_load: dict[str, dict[str, float]] = field(default_factory=dict)
    bytes_by_az_pair: dict[str, float] = field(default_factory=dict)
    faults: list[dict] = field(default_factory=list)
    in_flight: int = 0
    control_plane: dict | None = None
    rate_limit: dict | None = None
    connections: dict | None = None  # ConnectionLayer.results(), when clients hold connections
    bytes_by_purpose: dict[str, dict[str, float]] = field(default_factory=dict)
    az_region: dict[str, str] = field(default_factory=dict)
    balancers: dict[str, dict] = field(default_factory=dict)
    zone_routing: dict[str, dict] = field(default_factory=dict)
    gslb: dict = field(default_factory=dict)


def _sum(rows: list[dict], key: str):
    return sum(r[key] for r in rows)


def backend_section(rows: list[dict], window_s: float) -> dict:
    """One service's ``backend.<service>`` figures from its instances' results."""
    workers = _sum(rows, "workers")
    admitted = _sum(rows, "admitted")
    wait_n = _sum(rows, "wait_n")
    return {
        "attempts": _sum(rows, "attempts"),
        "rejected": _sum(rows, "rejected"),
        "errors": _sum(rows, "errors"),
        "utilization": _sum(rows, "busy_s") / (workers * window_s),
        "mean_wait_ms": 1000 * _sum(rows, "wait_sum_s") / wait_n if wait_n else math.nan,
        "p_wait": _sum(rows, "waited") / admitted if admitted else math.nan,
        "mean_in_system": _sum(rows, "in_system_s") / window_s,
        "wasted_work_s": _sum(rows, "wasted_s"),
        "wasted_requests": _sum(rows, "wasted_requests"),
    }


def merge_counts(dicts) -> dict[str, int]:
    """Counts by key summed over ``dicts`` (keys in first-seen order)."""
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def gateway_section(rows: list[dict], window_s: float) -> dict:
    """One pool's ``gateway.<pool>`` figures from its instances' results."""
    reasons = merge_counts(r["retries_by_reason"] for r in rows)
    return {
        "requests": _sum(rows, "requests"),
        "utilization": _sum(rows, "busy_s") / (_sum(rows, "workers") * window_s),
        "route_timeouts": _sum(rows, "timeouts"),
        "per_try_timeouts": _sum(rows, "per_try_timeouts"),
        "retries": sum(reasons.values()),
        "overflow_max_requests": _sum(rows, "overflow_max_requests"),
        "retry_overflow": _sum(rows, "retry_overflow"),
        "connects": _sum(rows, "connects"),
        "connect_timeouts": _sum(rows, "connect_timeouts"),
        "cx_overflow": _sum(rows, "cx_overflow"),
        "pending_overflow": _sum(rows, "pending_overflow"),
    }


def client_section(rows: list[dict]) -> dict:
    """``client``: the calls made after the warm-up (``requests.offered``'s cohort) and their tries.

    ``tries`` (first tries and retries), ``retries``, ``timeouts`` (per try),
    ``retries_denied`` (token bucket or budget empty), over every population.
    """
    return {"calls": _sum(rows, "calls"), "tries": _sum(rows, "tries"), "retries": _sum(rows, "retries"),
            "timeouts": _sum(rows, "client_timeouts"), "retries_denied": _sum(rows, "retries_denied")}


def retries_section(gateways: dict[str, list[dict]], clients: list[dict]) -> dict:
    """``retries``: amplification, gateway retries by reason, refusals by breaker.

    ``amplification``: backend tries per call, over the calls made after the
    warm-up that were answered and reached a backend at least once (exactly 1
    without retries). ``gateway_amplification``: backend tries per request the
    gateways routed, in the measurement window.
    """
    rows = [r for pool in gateways.values() for r in pool]
    call_tries = _sum(clients, "backend_tries")
    calls_tried = _sum(clients, "answered_with_backend_tries")
    by_reason = merge_counts(r["retries_by_reason"] for r in rows)
    tries = _sum(rows, "tries")
    routed = _sum(rows, "requests")
    overflow = {"max_requests": 0, "retries": 0, "pending": 0, "connections": 0}
    for pool in gateways.values():
        overflow["pending"] += _sum(pool, "pending_overflow")
        overflow["connections"] += _sum(pool, "cx_overflow")
        overflow["max_requests"] += _sum(pool, "overflow_max_requests")
        overflow["retries"] += _sum(pool, "retry_overflow")
    return {
        "amplification": call_tries / calls_tried if calls_tried else math.nan,
        "gateway_amplification": tries / routed if routed else math.nan,
        "gateway_retries": sum(by_reason.values()),
        "by_reason": dict(sorted(by_reason.items())),
        "overflow": overflow,
    }


def health_section(health: list[dict], window_s: float) -> tuple[dict, dict]:
    """``outlier`` and ``health_checks`` from every gateway cluster's health results."""
    outliers = [h["outlier"] for h in health if h["outlier"] is not None]
    checks = [h["health_check"] for h in health if h["health_check"] is not None]
    by_reason = merge_counts(o["ejections"] for o in outliers)
    detected = merge_counts(o["detected"] for o in outliers)
    probes = _sum(checks, "probes")
    outlier = {"ejections": sum(by_reason.values()), "by_reason": dict(sorted(by_reason.items())),
               "detected": dict(sorted(detected.items())), "overflow": _sum(outliers, "overflow")}
    checks_out = {"probes": probes, "probe_rate_per_s": probes / window_s if window_s > 0 else 0.0,
                  "failures": _sum(checks, "failures"), "timeouts": _sum(checks, "timeouts")}
    return outlier, checks_out


def health_timeseries(health: list[dict], n_seconds: int) -> dict[str, list]:
    """Per second, summed over every gateway's view of every cluster: host states and probes sent."""
    keys = ("healthy_hosts", "ejected_hosts", "hc_failed_hosts", "panic_clusters")
    series = {k: [0.0] * n_seconds for k in keys}
    probes = [0] * n_seconds
    for h in health:
        for k in keys:
            col = series[k]
            for s, v in enumerate(h["series"][k]):
                col[s] += v
        if h["health_check"] is not None:
            for s, v in enumerate(h["health_check"]["probes_ts"][:n_seconds]):
                probes[s] += v
    return {**series, "health_check_probes": probes}


def health_counters(health: list[dict]) -> dict[str, dict]:
    """Per gateway pool and service (``<pool>/<service>``): probes, failures, timeouts, ejections."""
    out: dict[str, dict] = {}
    for h in health:
        row = out.setdefault(f"{h['pool']}/{h['service']}",
                             {"probes": 0, "failures": 0, "timeouts": 0, "ejections": 0})
        if h["health_check"] is not None:
            for k in ("probes", "failures", "timeouts"):
                row[k] += h["health_check"][k]
        if h["outlier"] is not None:
            row["ejections"] += sum(h["outlier"]["ejections"].values())
    return out


def control_plane_section(cp: dict | None) -> dict:
    """``control_plane``: the hook's figures without its series (empty without a control plane)."""
    if cp is None:
        return {}
    return {"control_plane": {k: v for k, v in cp.items() if k != "series"}}


def recovery_section(recorder: Recorder, exp, judged: bool) -> dict | None:
    """The recovery verdict (:mod:`sim.metrics.recovery`), or None without faults to judge."""
    if not exp.faults or not judged:
        return None
    windows = [(f.at_s, f.at_s + f.for_s) for f in exp.faults]
    return analyse_recovery(recorder.ts_good, windows, warmup_s=exp.warmup_s, duration_s=exp.duration_s,
                            offered_per_s=recorder.ts_offered, in_flight_per_s=recorder.in_flight_series(),
                            **RECOVERY_RULES).to_dict()


def summarise(exp, recorder: Recorder, parts: FleetResults, *, judge_recovery: bool) -> dict:
    """``summary.json``'s dict for one replication.

    Args:
        exp: the validated experiment.
        recorder: the run's request outcomes and per-second series.
        parts: the components' results.
        judge_recovery: faults end before the run does, so recovery can be judged.
    """
    rec = recorder
    window = exp.duration_s - exp.warmup_s
    lat = rec.latency
    qs = lat.quantiles([0.5, 0.9, 0.99, 0.999]) if lat.count else [math.nan] * 4
    outlier, health_checks = health_section(parts.health, window)
    out = {
        "experiment": exp.name,
        "description": exp.description,
        "seed": exp.seed,
        "replications": 1,
        "simulated_s": exp.duration_s,
        "warmup_s": exp.warmup_s,
        "requests": {
            "offered": rec.offered,
            "succeeded": rec.succeeded,
            "failed": dict(sorted(rec.failed.items())),
            "in_flight": parts.in_flight,
        },
        "throughput_rps": rec.window_done / window,
        "goodput_rps": rec.window_good / window,
        "latency_ms": {
            "mean": 1000 * lat.mean if lat.count else math.nan,
            "p50": 1000 * qs[0], "p90": 1000 * qs[1], "p99": 1000 * qs[2], "p999": 1000 * qs[3],
        },
        "backend": {svc: {**parts.service_load.get(svc, {}), **backend_section(rows, window)}
                    for svc, rows in parts.backends.items()},
        "gateway": {pool: gateway_section(rows, window) for pool, rows in parts.gateways.items()},
        "client": client_section(parts.clients),
        "retries": retries_section(parts.gateways, parts.clients),
        "bytes_by_az_pair": parts.bytes_by_az_pair,
        "recovery": recovery_section(rec, exp, judge_recovery),
        # The rules the verdict was judged by, so readers (the report) need not restate them.
        "recovery_rules": dict(RECOVERY_RULES) if exp.faults and judge_recovery else None,
        "faults": parts.faults,  # kind, at_s, for_s, targets (names)
        "outlier": outlier,  # {ejections, by_reason, detected, overflow}
        "health_checks": health_checks,  # {probes, probe_rate_per_s, failures, timeouts}
        **control_plane_section(parts.control_plane),
        **geo_sections(exp, rec, parts, window),
    }
    if parts.rate_limit is not None:  # only with topology.rate_limit: other summaries stay as they were
        out["rate_limit"] = rate_limit_section(parts.rate_limit, exp.topology.rate_limit, exp.warmup_s,
                                               exp.duration_s)
    out.update(connection_sections(exp, parts, window))
    return out


def connection_sections(exp, parts: FleetResults, window_s: float) -> dict:
    """``gateway_cpu``, ``connections`` and ``access_log`` (:mod:`sim.metrics.gateway_cpu`), where used."""
    topo = exp.topology
    out: dict = {}
    cpu = gc.gateway_cpu_section(parts.gateways, topo.gateways, topo.cpu_pricing or CpuPricing(), window_s)
    if cpu is not None:
        out["gateway_cpu"] = cpu
    if parts.connections is not None:
        out["connections"] = gc.connections_section(parts.connections, window_s, topo.gateways)
    az_region = {az: r for r, reg in topo.regions.items() for az in reg.azs}

    def relation(a: str, b: str) -> str:
        return "same_az" if a == b else ("cross_az" if az_region[a] == az_region[b] else "cross_region")

    logs = gc.access_log_section(parts.gateways, topo.gateways, relation)
    if logs is not None:
        out["access_log"] = logs
    return out


def geo_sections(exp, recorder: Recorder, parts: FleetResults, window_s: float) -> dict:
    """``zone_routing`` (pools with locality features) and ``bytes_by_purpose`` and ``cost`` (with ``cost``).

    Empty for an experiment that uses neither, so its summary keeps its keys.
    """
    out: dict = {}
    if parts.zone_routing:
        out["zone_routing"] = parts.zone_routing
    if parts.gslb:
        out["gslb"] = gslb_section(exp, parts.gslb)
    if exp.cost is not None:
        out["bytes_by_purpose"] = parts.bytes_by_purpose
        out["cost"] = cost_section(exp.cost, parts.bytes_by_purpose, parts.az_region, parts.balancers,
                                   recorder.offered, window_s)
    return out


def gslb_by_region_ts(gslb: dict) -> dict[str, list[int]]:
    """Tries per second by the region DNS answered with, over every client region."""
    out: dict[str, list[int]] = {}
    for entry in gslb["entries"].values():
        for region, series in entry["by_region_ts"].items():
            col = out.setdefault(region, [0] * len(series))
            for i, v in enumerate(series):
                col[i] += v
    return out


def gslb_section(exp, gslb: dict) -> dict:
    """``gslb``: tries by answered region (window), the GSLB's view changes, failures and failover times.

    ``failover``: per ground-truth failure of a region's endpoint, when 95%
    of its traffic had moved (:func:`sim.components.gslb.failover_times`);
    ``detected_at_s``: when the GSLB's checkers marked it unhealthy.
    """
    from sim.components.gslb import failover_times

    cfg = exp.topology.gslb
    tries = merge_counts(e["tries"] for e in gslb["entries"].values())
    rows = failover_times([tuple(t) for t in gslb["truth"]], gslb_by_region_ts(gslb))
    for row in rows:
        later = [t for t, r, ok in gslb["changes"] if r == row["region"] and not ok and t >= row["failed_at_s"]]
        row["detected_at_s"] = later[0] if later else None
        row["detection_s"] = later[0] - row["failed_at_s"] if later else None
    first: dict[str, dict] = {}
    for row in rows:  # each region's first failure, as numbers the replications average
        first.setdefault(row["region"], {k: (math.nan if row[k] is None else row[k])
                                         for k in ("failed_at_s", "detection_s", "time_to_move_s")})
    return {"policy": cfg.policy, "ttl_s": cfg.ttl_s, "tries_by_region": dict(sorted(tries.items())),
            "queries": gslb["queries"], "view_changes": gslb["changes"], "failover": rows,
            "failover_by_region": first}


def timeseries(recorder: Recorder, parts: FleetResults) -> dict[str, list]:
    """The per-second series of one replication (every second of the run, warm-up included)."""
    rec = recorder
    ts = {
        "t_s": list(range(rec.n)),
        "offered": rec.ts_offered,
        "throughput": rec.ts_done,
        "goodput": rec.ts_good,
        "in_flight": rec.in_flight_series(),
        "p50_ms": [1000 * x for x in rec.ts_p50],
        "p99_ms": [1000 * x for x in rec.ts_p99],
        "tries": rec.ts_tries,
        "attempts": [sum(col) for col in zip(*(g["tries_ts"] for rows in parts.gateways.values()
                                               for g in rows), strict=True)],
    }
    for cause in sorted(rec.ts_errors):
        ts[f"err_{cause}"] = rec.ts_errors[cause]
    ts.update(health_timeseries(parts.health, rec.n))
    if parts.connections is not None:
        ts.update({k: v[:rec.n] for k, v in gc.handshake_timeseries(parts.connections).items()})
    for svc, series in parts.backend_queue.items():
        ts[f"queue_{svc}"] = series
    if parts.control_plane is not None:
        for k, series in parts.control_plane["series"].items():
            ts[f"cp_{k}"] = series
    if parts.rate_limit is not None:
        ts.update(rate_limit_timeseries(parts.rate_limit, rec.n))
    if parts.gslb:
        for region, series in sorted(gslb_by_region_ts(parts.gslb).items()):
            ts[f"dns_{region}"] = series[:rec.n]
    return ts


#: Instance fields summed into the per-pool and per-service counters (the rest are per instance).
_STATE_FIELDS = frozenset({"up", "queue_len", "busy"})


def group_counters(rows: list[dict]) -> dict:
    """The counters of a pool's or service's instances, summed (dict-valued ones merged)."""
    out: dict = {"instances": len(rows)}
    for row in rows:
        for k, v in row.items():
            if k in _STATE_FIELDS or k == "tries_ts":
                continue
            if isinstance(v, dict):
                out[k] = merge_counts([out.get(k, {}), v])
            elif isinstance(v, bool):
                continue
            elif isinstance(v, int | float):
                out[k] = out.get(k, 0) + v
    out["down"] = sum(1 for r in rows if r.get("up") is False)
    return out


def columns(rows: list[dict], names: list[str], extra: dict[str, list] | None = None) -> dict[str, list]:
    """Instance rows as columns: ``{"name": [...], field: [...]}`` (compact in JSON).

    The fields are the first row's; a row without one has None there.
    """
    keys = [k for k, v in rows[0].items() if not isinstance(v, dict | list)] if rows else []
    out: dict[str, list] = {"name": list(names), **(extra or {})}
    for k in keys:
        out[k] = [r.get(k) for r in rows]  # None where a row lacks it (a plain gateway beside an accounted one)
    return out


def rows_by_name(table: dict[str, list]) -> dict[str, dict]:
    """A columnar instance table (:func:`columns`) as one row per instance name."""
    keys = [k for k in table if k != "name"]
    return {name: {k: table[k][i] for k in keys} for i, name in enumerate(table["name"])}


__all__ = ["FleetResults", "backend_section", "client_section", "columns", "connection_sections", "control_plane_section",
           "gateway_section", "geo_sections", "group_counters", "health_counters", "health_section", "health_timeseries",
           "merge_counts", "recovery_section",
           "retries_section", "rows_by_name", "summarise", "timeseries"]
