"""The validation scenarios, their metrics and their goals.

Each scenario is an experiment file in ``experiments/reference/`` (run on the
real fleet and in the simulator alike) plus what to measure in it. A
scenario with ``variants`` is validated at every variant (scenario ``a``: the
four utilisations; ``c``: with and without previous_hosts).

Metrics are computed the same way on both sides, over the same window
(requests issued after the warm-up):

=====================  ================================================  =====================================
metric                 real fleet                                        simulator
=====================  ================================================  =====================================
throughput_rps         answers whose completion falls in the window, /s  ``throughput_rps``
p50/p90/p99_ms         latency of 200s, from the scheduled send time     ``latency_ms`` (successes)
share_<backend>        backend's requests / all backends' (counters)     ``attempts`` per backend
amplification          backend requests / client requests                ``retries.amplification``
failure_fraction       non-200 answers / requests                        failed / (succeeded + failed)
overflow_fraction      Envoy upstream_rq_active_overflow (max_requests;  ``retries.overflow.max_requests`` / offered
                       1.40's name) + _pending_overflow / requests
time_to_eject_s        first enforced EJECT in Envoy's outlier event     first ``eject`` in the detector log,
                       log, minus the fault's start                      minus the fault's start
ejections              enforced ejections in the window                  ``outlier.ejections``
goodput_curve          200s per second of completion                     ``timeseries.goodput``
admitted               requests not answered 429 (issued in the window)  offered - ``rate_limited`` - in flight
redis_calls_per_s      EVALSHA calls (INFO commandstats) / window        ``rate_limit.redis_calls_per_s``
redis_usec_per_call    ``usec_per_call`` of EVALSHA (commandstats)       Redis busy time / calls
local_fraction_<gw>    backend requests from gateway gw (by its          ``zone_routing.<pool>/<service>.local_fraction``
                       x-fleetsim-gateway header) in gw's AZ / all       (one gateway per pool)
=====================  ================================================  =====================================

Goals (the issue's, not tuned): throughput within 3%; p50 within 10%; p99
within 20%; p90, which the issue does not set, within 15% (between p50's and
p99's); amplification, shares, overflow and failure fractions within 2
percentage points (0.02 of a ratio) or inside the measurement's 95%
binomial CI (for amplification, the run-to-run t interval), whichever is
wider; the retry storm's goodput curve within 15% normalised RMS error
(RMS of the per-second difference over the mean measured goodput). The
time to first ejection, which the issue does not set either, within 25% or
50 ms, whichever is wider: 50 ms is how precisely the harness switches a
fault on (an HTTP call from a Python thread); the ejection count exactly
(within 0.5).

``timing`` marks the metrics that depend on how fast this machine is
(throughput, latency, time to eject, the storm's curve; a scenario can add
its own through ``timing_metrics``: (d)'s overflow and failure fractions,
which follow how long a request holds an upstream slot): in ``--quick`` runs
they fail the suite only when they miss by more than twice their goal on a
run the harness judged trustworthy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sim.metrics.summary import rows_by_name

from .fleet import backend_instances, gateway_instances

ROOT = Path(__file__).resolve().parent.parent
OVERFLOW_COUNTERS = (".upstream_rq_active_overflow", ".upstream_rq_pending_overflow")
"""Envoy 1.40 counts a request refused by ``max_requests`` in upstream_rq_active_overflow
(measured on the real binary), one refused by ``max_pending_requests`` in
upstream_rq_pending_overflow."""
EXPERIMENTS = ROOT / "experiments" / "reference"


@dataclass(frozen=True)
class Goal:
    """How a metric is judged. ``kind``: ``rel`` (relative error), ``abs`` (absolute
    difference; ``binomial``: or within the measurement's CI), ``nrmse``."""

    kind: str
    value: float
    timing: bool = False
    binomial: bool = False
    floor: float = 0.0  # rel only: an absolute error this small always passes

    def describe(self) -> str:
        if self.kind == "rel":
            extra = f" or {self.floor:g}" if self.floor else ""
            return f"±{100 * self.value:g}%{extra}"
        if self.kind == "nrmse":
            return f"NRMSE ≤ {100 * self.value:g}%"
        if self.binomial:
            return f"±{100 * self.value:g} pp or CI"
        return f"±{self.value:g}"


GOALS = {
    "throughput_rps": Goal("rel", 0.03, timing=True),
    "p50_ms": Goal("rel", 0.10, timing=True),
    "p90_ms": Goal("rel", 0.15, timing=True),
    "p99_ms": Goal("rel", 0.20, timing=True),
    "share": Goal("abs", 0.02, binomial=True),
    "amplification": Goal("abs", 0.02, binomial=True),
    "failure_fraction": Goal("abs", 0.02, binomial=True),
    "overflow_fraction": Goal("abs", 0.02, binomial=True),
    "time_to_eject_s": Goal("rel", 0.25, timing=True, floor=0.05),
    "ejections": Goal("abs", 0.5),
    "goodput_curve": Goal("nrmse", 0.15, timing=True),
    # Scenario g (the control plane): bytes within 5% (the issue's), the gateways pushed to
    # exactly, the time to resync after a restart within 25% (the convergence goal).
    "push_bytes": Goal("rel", 0.05),
    "resync_bytes": Goal("rel", 0.05),
    "pushes": Goal("abs", 0.5),
    "resync_s": Goal("rel", 0.25, timing=True),
    # Rate limiting (issue's goals): admitted within 2%, Redis command rate within 5%, latency within 15%.
    "admitted": Goal("rel", 0.02),
    "redis_calls_per_s": Goal("rel", 0.05),
    "redis_usec_per_call": Goal("rel", 0.15, timing=True),
    "local_fraction": Goal("abs", 0.02, binomial=True),
    # Scenario t, TLS (issue's goals): resumption within 3 points, CPU per handshake type within
    # 15%, total gateway CPU within 10% (per connection here: the same error for the same connections).
    "resumption_rate": Goal("abs", 0.03, binomial=True),
    "cpu_full_handshake_conn_ms": Goal("rel", 0.15, timing=True),
    "cpu_resumed_handshake_conn_ms": Goal("rel", 0.15, timing=True),
    "cpu_per_connection_ms": Goal("rel", 0.10, timing=True),
}


def goal_of(metric: str) -> Goal:
    if metric.startswith("local_fraction_"):
        return GOALS["local_fraction"]
    return GOALS["share"] if metric.startswith("share_") else GOALS[metric]


@dataclass(frozen=True)
class Scenario:
    """One validation scenario.

    ``quick``: ``--set`` assignments for ``--quick`` runs (shorter runs);
    ``quick_variants``: the variants a quick run keeps (None: all). Scenario
    (a) keeps 30% and 80% in quick runs: at 90% the p99 of a 6-second window
    varies too much from run to run (4-second windows of one real run ranged
    from 58 to 130 ms around a 30-second p99 of 97 ms) for a gate that must
    not be flaky; the full run holds 90% to its goal.
    """

    key: str
    title: str
    file: str
    metrics: tuple[str, ...]
    quick: tuple[str, ...] = ()
    quick_variants: tuple[str, ...] | None = None
    notes: str = ""
    #: Metrics that depend on this machine's speed in this scenario although their goal does not
    #: elsewhere (quick runs gate them as timing metrics).
    timing_metrics: tuple[str, ...] = ()
    #: "fleet" (RealFleet.run), "control_plane" (reference_gateway.cp_validate) or
    #: "tls" (TLS Envoys and a TLS client, reference_gateway.tls_scenario)
    runner: str = "fleet"

    @property
    def path(self) -> Path:
        return EXPERIMENTS / self.file


QUICK_LOAD = ("duration_s=7", "warmup_s=1")
SCENARIOS = {s.key: s for s in (
    Scenario("a", "Load and latency at 30-90% utilisation", "a_load.yaml",
             ("throughput_rps", "p50_ms", "p90_ms", "p99_ms"), QUICK_LOAD, ("u30", "u80")),
    Scenario("b", "LEAST_REQUEST shares with unequal backends", "b_least_request.yaml",
             ("share",), QUICK_LOAD),
    Scenario("c", "Retry amplification, one backend failing 30%", "c_retries.yaml",
             ("amplification", "failure_fraction"), (*QUICK_LOAD, "faults.0.for_s=7")),
    # (d)'s fractions follow how long a request holds an upstream slot under overload, a time this
    # machine sets: calibrated at light load, it ran 1.6-2.2 points short on a slower, busier machine.
    Scenario("d", "Circuit-breaker overflow under overload", "d_breaker.yaml",
             ("overflow_fraction", "failure_fraction", "throughput_rps"), QUICK_LOAD,
             timing_metrics=("overflow_fraction", "failure_fraction")),
    Scenario("e", "Outlier ejection of a failing backend", "e_outlier.yaml",
             ("time_to_eject_s", "ejections", "share", "failure_fraction"),
             ("duration_s=10", "warmup_s=1", "faults.0.at_s=1", "faults.0.for_s=9")),
    Scenario("f", "Retry storm around a slowdown", "f_storm.yaml",
             ("goodput_curve",),
             ("duration_s=17", "warmup_s=1", "faults.0.at_s=5", "faults.0.for_s=4")),
    Scenario("g", "Control-plane push and restart, state of the world and delta", "g_control_plane.yaml",
             ("push_bytes", "resync_bytes", "pushes", "resync_s"),
             ("control_plane.gateways=6", "control_plane.events.1.down_s=1.0"), runner="control_plane"),
    Scenario("rl", "Distributed token bucket on Redis, and Redis killed (fail-open)", "rl_ratelimit.yaml",
             ("admitted", "redis_calls_per_s", "redis_usec_per_call", "failure_fraction"),
             ("duration_s=9", "warmup_s=1", "workload.rate_schedule.1.at_s=3", "workload.rate_schedule.2.at_s=6",
              "faults.0.at_s=5", "faults.0.for_s=4")),
    Scenario("h", "Zone-aware routing: local fraction per gateway", "h_zone_aware.yaml",
             ("local_fraction",), QUICK_LOAD),
    Scenario("t", "TLS session resumption and handshake CPU, own vs shared ticket keys", "t_tls.yaml",
             ("resumption_rate", "cpu_per_connection_ms", "cpu_full_handshake_conn_ms",
              "cpu_resumed_handshake_conn_ms"),
             ("duration_s=6",), ("own_keys", "shared_keys"), runner="tls"),
)}


# --------------------------------------------------------------------------- observations


@dataclass
class Observation:
    """One run's metrics; ``counts`` holds trial counts for binomial CIs."""

    values: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    curve: list[float] | None = None
    trustworthy: bool = True
    note: str = ""


def _fault_start(exp) -> float | None:
    return min((f.at_s for f in exp.faults), default=None)


def _curve_window(exp) -> tuple[int, int]:
    """Whole seconds [lo, hi) of the goodput curve: the window, minus the last second."""
    return int(math.ceil(exp.warmup_s)), int(math.floor(exp.duration_s)) - 1


def real_observation(scenario: Scenario, exp, run) -> Observation:
    """The scenario's metrics from one :class:`~reference_gateway.fleet.RealRun`."""
    obs = Observation()
    win = run.window()
    status = run.status[win]
    latency = run.latency[win]
    n = int(win.sum())
    answered = run.status > 0
    done_t = run.t_sched + np.nan_to_num(run.latency, nan=0.0)
    in_window = (done_t >= run.warmup_s) & (done_t < run.duration_s) & answered
    width = run.duration_s - run.warmup_s
    ok = status == 200
    backends = {name: st.get("requests", 0) for name, st in run.backends.items()}
    total_backend = sum(backends.values())
    for metric in scenario.metrics:
        if metric == "throughput_rps":
            obs.values[metric] = float(in_window.sum()) / width
        elif metric in ("p50_ms", "p90_ms", "p99_ms"):
            q = {"p50_ms": 50, "p90_ms": 90, "p99_ms": 99}[metric]
            obs.values[metric] = 1000 * float(np.percentile(latency[ok], q)) if ok.any() else math.nan
        elif metric == "share":
            for name, count in sorted(backends.items()):
                obs.values[f"share_{name}"] = count / total_backend if total_backend else math.nan
                obs.counts[f"share_{name}"] = total_backend
        elif metric == "amplification":
            obs.values[metric] = total_backend / n if n else math.nan
            obs.counts[metric] = n
        elif metric == "failure_fraction":
            obs.values[metric] = float((~ok).sum()) / n if n else math.nan
            obs.counts[metric] = n
        elif metric == "overflow_fraction":
            overflow = sum(v for gw in run.gateways.values() for k, v in gw.items()
                           if k.startswith("cluster.") and k.endswith(OVERFLOW_COUNTERS))
            obs.values[metric] = overflow / n if n else math.nan
            obs.counts[metric] = n
        elif metric == "time_to_eject_s":
            start = _fault_start(exp)
            ejects = [e["t"] for e in run.outlier_events
                      if e.get("action") == "EJECT" and e.get("enforced", True) and "t" in e and e["t"] >= start - 0.2]
            faults_on = [t for t, label in run.fault_times if " on" in label]
            # Measured from when the harness actually switched the fault on.
            on = faults_on[0] if faults_on else start
            obs.values[metric] = (min(ejects) - on) if ejects else math.nan
        elif metric == "ejections":
            obs.values[metric] = float(sum(1 for e in run.outlier_events
                                           if e.get("action") == "EJECT" and e.get("enforced", True)
                                           and run.warmup_s <= e.get("t", -1) < run.duration_s))
        elif metric == "admitted":
            obs.values[metric] = float(((status > 0) & (status != 429)).sum())
        elif metric == "redis_calls_per_s":
            obs.values[metric] = run.redis.get("calls", 0) / width
        elif metric == "redis_usec_per_call":
            usec = run.redis.get("usec_per_call")
            obs.values[metric] = float(usec) if usec is not None else math.nan
        elif metric == "local_fraction":
            az_of = {name: az for insts in backend_instances(exp).values() for name, az in insts}
            for gw, pool in gateway_instances(exp):
                mine = exp.topology.gateways[pool].az
                by_az = [(az_of.get(b), st.get("by_gateway", {}).get(gw, 0)) for b, st in run.backends.items()]
                total = sum(k for _, k in by_az)
                obs.values[f"local_fraction_{gw}"] = (sum(k for az, k in by_az if az == mine) / total
                                                      if total else math.nan)
                obs.counts[f"local_fraction_{gw}"] = total
        elif metric == "goodput_curve":
            lo, hi = _curve_window(exp)
            good = answered & (run.status == 200)
            secs = np.floor(done_t[good]).astype(int)
            counts = np.bincount(secs[(secs >= lo) & (secs < hi)] - lo, minlength=hi - lo)
            obs.curve = [float(x) for x in counts[: hi - lo]]
            obs.values[metric] = float(np.mean(obs.curve))
    if run.busy is not None and not run.busy.trustworthy:
        obs.trustworthy = False
        obs.note = run.busy.reason
    lateness = (run.load_meta or {}).get("lateness_p99_s")
    if lateness is not None and lateness > 0.005:
        obs.trustworthy = False
        obs.note = (obs.note + "; " if obs.note else "") + f"load generator fell behind (p99 {1000 * lateness:.1f} ms late)"
    return obs


def sim_observation(scenario: Scenario, exp, result: dict, ejections_log: list[tuple[float, str, str]]) -> Observation:
    """The scenario's metrics from one simulated replication (``Fleet.run()``'s result)."""
    obs = Observation()
    s = result["summary"]
    succeeded = s["requests"]["succeeded"]
    failed = sum(s["requests"]["failed"].values())
    n = succeeded + failed
    for metric in scenario.metrics:
        if metric == "throughput_rps":
            obs.values[metric] = s["throughput_rps"]
        elif metric in ("p50_ms", "p90_ms", "p99_ms"):
            obs.values[metric] = s["latency_ms"][metric[:3]]
        elif metric == "share":
            # Per-backend shares are instance-level results (validate.simulate asks for them).
            rows = rows_by_name(result["instances"]["backend"])
            names = sorted(rows)
            total = sum(rows[k]["attempts"] for k in names)
            for k in names:
                obs.values[f"share_{k}"] = rows[k]["attempts"] / total if total else math.nan
        elif metric == "amplification":
            obs.values[metric] = s["retries"]["amplification"]
        elif metric == "failure_fraction":
            obs.values[metric] = failed / n if n else math.nan
        elif metric == "overflow_fraction":
            obs.values[metric] = s["retries"]["overflow"]["max_requests"] / s["requests"]["offered"]
        elif metric == "time_to_eject_s":
            start = _fault_start(exp)
            ejects = [t for t, action, _ in ejections_log if action == "eject" and t >= start]
            obs.values[metric] = (min(ejects) - start) if ejects else math.nan
        elif metric == "ejections":
            obs.values[metric] = float(sum(1 for t, action, _ in ejections_log
                                           if action == "eject" and exp.warmup_s <= t < exp.duration_s))
        elif metric == "admitted":
            obs.values[metric] = float(s["requests"]["offered"] - s["requests"]["failed"].get("rate_limited", 0)
                                       - s["requests"]["in_flight"])
        elif metric == "redis_calls_per_s":
            obs.values[metric] = s["rate_limit"]["redis_calls_per_s"]
        elif metric == "redis_usec_per_call":
            servers = s["rate_limit"]["redis"].values()
            calls = sum(r["calls"] for r in servers)
            obs.values[metric] = 1e6 * sum(r["busy_s"] for r in servers) / calls if calls else math.nan
        elif metric == "local_fraction":
            # One instance per pool in this scenario; the pool's tries by AZ (summary zone_routing).
            for gw, pool in gateway_instances(exp):
                for key, row in s.get("zone_routing", {}).items():
                    if key.split("/")[0] == pool:
                        obs.values[f"local_fraction_{gw}"] = row["local_fraction"]
        elif metric == "goodput_curve":
            lo, hi = _curve_window(exp)
            obs.curve = [float(x) for x in result["timeseries"]["goodput"][lo:hi]]
            obs.values[metric] = float(np.mean(obs.curve))
    return obs


def sim_ejection_log(fleet) -> list[tuple[float, str, str]]:
    """(t, action, backend) of every outlier ejection and return in a simulated fleet."""
    out = []
    for gw in fleet.all_gateways():
        for cluster in gw.clusters.values():
            health = getattr(cluster, "health", None)
            od = getattr(health, "outlier", None) if health is not None else None
            if od is None:
                continue
            for t, host, action, _reason in od.log:
                out.append((t, action, cluster.hosts[host].name))
    return sorted(out)


# --------------------------------------------------------------------------- comparison


def _t95(n: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, n - 1)) if n > 1 else math.inf


def summarise(values: list[float]) -> tuple[float, float, float]:
    """(mean, sample std, 95% t half-width) of finite values."""
    xs = [v for v in values if v is not None and math.isfinite(v)]
    if not xs:
        return math.nan, math.nan, math.nan
    mean = float(np.mean(xs))
    if len(xs) < 2:
        return mean, math.nan, math.nan
    sd = float(np.std(xs, ddof=1))
    return mean, sd, _t95(len(xs)) * sd / math.sqrt(len(xs))


def compare(scenario_label: str, metric: str, real: list[Observation], sim: list[Observation],
            *, quick: bool, timing: bool | None = None) -> dict[str, Any]:
    """One row of validation.json; ``timing`` overrides the goal's (a scenario's ``timing_metrics``)."""
    goal = goal_of(metric)
    if timing is not None and timing != goal.timing:
        goal = Goal(goal.kind, goal.value, timing=timing, binomial=goal.binomial, floor=goal.floor)
    trust = all(o.trustworthy for o in real)
    row: dict[str, Any] = {"scenario": scenario_label, "metric": metric}
    if goal.kind == "nrmse":
        m_curves = np.array([o.curve for o in real], dtype=float)
        s_curves = np.array([o.curve for o in sim], dtype=float)
        m_mean, s_mean = m_curves.mean(axis=0), s_curves.mean(axis=0)
        scale = float(m_mean.mean())
        error = float(np.sqrt(np.mean((s_mean - m_mean) ** 2)) / scale) if scale > 0 else math.inf
        row.update(measured=round(scale, 3), simulated=round(float(s_mean.mean()), 3), error=round(error, 4),
                   measured_curve=[round(x, 1) for x in m_mean], simulated_curve=[round(x, 1) for x in s_mean],
                   measured_spread=round(float(np.mean(m_curves.std(axis=0, ddof=1))) if len(real) > 1 else math.nan, 2))
        bound = goal.value
    else:
        m_mean, m_sd, m_hw = summarise([o.values.get(metric, math.nan) for o in real])
        s_mean, _s_sd, s_hw = summarise([o.values.get(metric, math.nan) for o in sim])
        row.update(measured=_r(m_mean), simulated=_r(s_mean), measured_spread=_r(m_sd), simulated_ci95=_r(s_hw))
        if goal.kind == "rel":
            diff = abs(s_mean - m_mean)
            error = diff / abs(m_mean) if m_mean else (0.0 if diff == 0 else math.inf)
            bound = goal.value
            if diff <= goal.floor:
                error = min(error, bound)  # inside the absolute floor
        else:
            error = abs(s_mean - m_mean)
            bound = goal.value
            if goal.binomial:
                n = sum(o.counts.get(metric, 0) for o in real)
                if metric == "amplification":
                    ci = m_hw if math.isfinite(m_hw) else 0.0
                elif n > 0 and math.isfinite(m_mean):
                    p = min(max(m_mean, 0.0), 1.0)
                    ci = 1.96 * math.sqrt(p * (1 - p) / n)
                else:
                    ci = 0.0
                row["measurement_ci95"] = _r(ci)
                bound = max(goal.value, ci)
        row["error"] = _r(error) if math.isfinite(error) else None
    ok = math.isfinite(error) and error <= bound
    row["goal"] = goal.describe()
    row["goal_value"] = bound
    row["timing"] = goal.timing
    row["trustworthy"] = trust
    if quick and goal.timing:
        # Quick runs on shared machines: a timing metric fails the suite only
        # when it misses by more than twice its goal on a trustworthy run.
        row["gate"] = bool(math.isfinite(error) and (error <= 2 * bound or not trust))
    else:
        row["gate"] = ok
    row["pass"] = ok
    notes = sorted({o.note for o in real if o.note})
    if notes:
        row["note"] = "; ".join(notes)
    return row


def _r(x: float) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.6g}")
