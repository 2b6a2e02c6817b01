"""Summary sections for gateway CPU by cause, client connections and TLS, and access logs.

Read only the plain dicts the result hooks return: each accounted gateway's
``cpu_s`` and ``cpu_events`` (:meth:`sim.components.gateway_cpu.AccountedGateway.results`) and the
connection layer's per-pool counters
(:meth:`sim.components.tls.ConnectionLayer.results`). Sections appear only
when the experiment uses the features, so other summaries do not change.
"""

from __future__ import annotations

import math

#: Hours in a month for monthly costs (365 x 24 / 12).
HOURS_PER_MONTH = 730.0


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def gateway_cpu_section(gateways: dict[str, list[dict]], pools: dict, pricing, window_s: float) -> dict | None:
    """``gateway_cpu``: per accounted pool, CPU seconds by cause, cores used and needed, monthly cost.

    Args:
        gateways: pool -> its instances' results (build order).
        pools: pool -> its validated :class:`~sim.config.models.GatewayPool`.
        pricing: the topology's :class:`~sim.config.models.CpuPricing`.
        window_s: the measurement window (s).

    ``cores_used`` is CPU seconds per second of window; ``cores_at_target``
    the cores that run it at ``target_utilization`` and ``cost_usd_per_month``
    their price (fractional: what the CPU costs, the figure variants compare);
    ``cores_needed`` the whole cores per instance that keep every instance
    under the target at the pool's mean load, times its instances, and their
    price; ``tls_share`` the handshakes' part of the pool's CPU;
    ``mean_worker_wait_ms`` how long requests, handshakes and log lines
    waited for a worker, on average (NaN when nothing started).
    """
    out: dict = {}
    for pool, rows in gateways.items():
        if not rows or "cpu_s" not in rows[0]:
            continue
        by_cause: dict[str, float] = {}
        events: dict[str, int] = {}
        for r in rows:
            for k, v in r["cpu_s"].items():
                by_cause[k] = by_cause.get(k, 0.0) + v
            for k, v in r["cpu_events"].items():
                events[k] = events.get(k, 0) + v
        total = math.fsum(by_cause.values())
        tls = by_cause.get("tls_full_handshake", 0.0) + by_cause.get("tls_resumed_handshake", 0.0)
        n = len(rows)
        cores = pools[pool].workers
        starts = sum(r["worker_starts"] for r in rows)
        used = total / window_s
        per_inst = used / n
        needed = n * max(1, math.ceil(per_inst / pricing.target_utilization - 1e-12))
        out[pool] = {
            "instances": n,
            "cores_per_instance": cores,
            "cpu_by_cause_s": by_cause,
            "events_by_cause": events,
            "cpu_s": total,
            "cores_used": used,
            "utilization": _ratio(used, n * cores),
            "tls_share": _ratio(tls, total),
            "mean_worker_wait_ms": 1000 * _ratio(math.fsum(r["worker_wait_s"] for r in rows), starts),
            "cores_at_target": used / pricing.target_utilization,
            "cost_usd_per_month": used / pricing.target_utilization * HOURS_PER_MONTH * pricing.vcpu_hour_usd,
            "cores_needed": needed,
            "cores_needed_cost_usd_per_month": needed * HOURS_PER_MONTH * pricing.vcpu_hour_usd,
            "provisioned_cost_usd_per_month": n * cores * HOURS_PER_MONTH * pricing.vcpu_hour_usd,
        }
    if not out:
        return None
    return {"pools": out, "cpu_s": math.fsum(p["cpu_s"] for p in out.values()),
            "cores_used": math.fsum(p["cores_used"] for p in out.values()),
            "cores_at_target": math.fsum(p["cores_at_target"] for p in out.values()),
            "cores_needed": sum(p["cores_needed"] for p in out.values()),
            "tls_cpu_s": math.fsum(p["cpu_by_cause_s"]["tls_full_handshake"]
                                   + p["cpu_by_cause_s"]["tls_resumed_handshake"] for p in out.values()),
            "cost_usd_per_month": math.fsum(p["cost_usd_per_month"] for p in out.values()),
            "pricing": {"vcpu_hour_usd": pricing.vcpu_hour_usd, "target_utilization": pricing.target_utilization,
                        "hours_per_month": HOURS_PER_MONTH}}


def connections_section(layer: dict, window_s: float, pools: dict | None = None) -> dict:
    """``connections``: per pool, connections opened and closed, handshakes by kind, resumption rate.

    ``resumption_rate``: resumed / (full + resumed) handshakes (NaN without
    TLS handshakes); ``handshakes_per_gateway_per_s``: per instance and
    second of the window; ``full_reasons``: why full handshakes were full;
    with ``pools`` (pool -> its model), each TLS pool's ``tls_version``,
    ``certificate`` and ``session_ticket_keys_scope`` (for the report).
    """
    out = {}
    for pool, p in layer.items():
        tls = p["full"] + p["resumed"]
        n = p["instances"]
        out[pool] = {
            "tls": p["tls"],
            **_tls_settings(pools, pool),
            "connections_opened": p["connections_opened"],
            "handshakes": {"full": p["full"], "resumed": p["resumed"], "plain": p["plain"]},
            "resumption_rate": _ratio(p["resumed"], tls),
            "handshakes_per_gateway_per_s": {"full": p["full"] / n / window_s, "resumed": p["resumed"] / n / window_s},
            "full_reasons": dict(sorted(p["full_reasons"].items())),
            "closed": dict(sorted(p["closed"].items())),
            "per_instance": {name: {"full": r["full"], "resumed": r["resumed"],
                                    "connections_opened": r["connections_opened"]}
                             for name, r in p["per_instance"].items()},
        }
    full = sum(p["handshakes"]["full"] for p in out.values())
    resumed = sum(p["handshakes"]["resumed"] for p in out.values())
    return {"pools": out, "full": full, "resumed": resumed, "resumption_rate": _ratio(resumed, full + resumed)}


def _tls_settings(pools: dict | None, pool: str) -> dict:
    tls = pools[pool].tls if pools is not None and pool in pools else None
    if tls is None:
        return {}
    return {"tls_version": tls.tls_version, "certificate": tls.certificate,
            "session_resumption": tls.session_resumption,
            "session_ticket_keys_scope": tls.session_ticket_keys_scope}


def access_log_section(gateways: dict[str, list[dict]], pools: dict, relation) -> dict | None:
    """``access_log``: per pool with logging, lines and bytes; bytes shipped by AZ pair and purpose ``logs``.

    Args:
        gateways: pool -> its instances' results (build order).
        pools: pool -> its validated :class:`~sim.config.models.GatewayPool`.
        relation: ``relation(src_az, dst_az)`` -> ``same_az``, ``cross_az`` or ``cross_region``.
    """
    out = {}
    by_pair: dict[str, float] = {}
    cross = 0.0
    for pool, rows in gateways.items():
        log = pools[pool].access_log
        if log is None:
            continue
        lines = sum(r["log_lines"] for r in rows)
        nbytes = sum(r["log_bytes"] for r in rows)
        out[pool] = {"lines": lines, "bytes": nbytes, "flush": log.flush, "collector_az": log.collector_az}
        if log.collector_az is not None and nbytes:
            src = pools[pool].az
            key = f"{src}->{log.collector_az}"
            by_pair[key] = by_pair.get(key, 0.0) + nbytes
            if relation(src, log.collector_az) != "same_az":
                cross += nbytes
    if not out:
        return None
    return {"pools": out, "bytes_by_az_pair": dict(sorted(by_pair.items())),
            "cross_az_bytes_by_purpose": {"logs": cross}}


def handshake_timeseries(layer: dict) -> dict[str, list]:
    """Per second (whole run), full and resumed handshakes per pool: ``tls_full_<pool>``, ``tls_resumed_<pool>``."""
    ts = {}
    for pool, p in layer.items():
        if p["tls"]:
            ts[f"tls_full_{pool}"] = list(p["full_ts"])
            ts[f"tls_resumed_{pool}"] = list(p["resumed_ts"])
    return ts


__all__ = ["HOURS_PER_MONTH", "access_log_section", "connections_section", "gateway_cpu_section",
           "handshake_timeseries"]
