"""``summary.json``'s ``rate_limit`` section and its per-second series, from the rate-limit results.

Reads only the plain dicts the fleet gathers (:meth:`sim.fleet.Fleet._rate_limit_results`):
each filter's ``results()``, the ideal bucket's admitted counts and each
Redis server's ``results()``.

Accuracy, per key and over every key: ``admitted`` (allowed, and let
through on an error) against ``ideal_admitted``, what a perfect fleet-wide
token bucket at ``global_limit_per_s`` with ``global_burst`` admits of the
same requests; ``over_admitted`` and ``under_admitted`` are the positive and
negative parts of the difference, ``admitted_ratio`` admitted over the ideal
count (1: as accurate as a perfect limiter; NaN when the ideal admitted none). Per second (whole seconds inside the measurement window):
``max_admitted_per_s`` and ``seconds_over_limit`` (seconds in which a key
was admitted more than 10% above ``global_limit_per_s``, plus one request
so that a limit under 10/s is not judged on rounding).
"""

from __future__ import annotations

import math

from sim.metrics.histogram import LogHistogram

_VERDICTS = ("checked", "allowed", "denied", "failed_open", "failed_closed")


def _seconds_in_window(warmup_s: float, duration_s: float) -> range:
    return range(math.ceil(warmup_s), math.floor(duration_s))


def rate_limit_section(rl: dict, config, warmup_s: float, duration_s: float) -> dict:
    """The ``rate_limit`` section.

    Args:
        rl: the fleet's rate-limit results.
        config: the validated ``topology.rate_limit``.
        warmup_s: start of the measurement window (s).
        duration_s: its end, the run's length (s).
    """
    window = duration_s - warmup_s
    keys: dict[str, dict] = {}
    latency = LogHistogram()
    timeouts = errors = calls = 0
    admitted_ts: dict[str, list[int]] = {}
    for f in rl["filters"]:
        for k, row in f["by_key"].items():
            acc = keys.setdefault(k, dict.fromkeys(_VERDICTS, 0))
            for v in _VERDICTS:
                acc[v] += row[v]
        for k, ts in f["admitted_ts"].items():
            col = admitted_ts.setdefault(k, [0] * len(ts))
            for i, v in enumerate(ts):
                col[i] += v
        latency.merge(f["latency"])
        timeouts += f["timeouts"]
        errors += f["errors"]
        calls += f["calls"]
    limit = config.global_limit_per_s
    seconds = _seconds_in_window(warmup_s, duration_s)
    ideal = rl["ideal"]
    for k in sorted(set(keys) | set(ideal["admitted"])):
        acc = keys.setdefault(k, dict.fromkeys(_VERDICTS, 0))
        admitted = acc["allowed"] + acc["failed_open"]
        ref = ideal["admitted"].get(k, 0)
        diff = admitted - ref
        ts = admitted_ts.get(k)
        per_s = [ts[s] for s in seconds] if ts else [0] * len(seconds)
        acc.update({
            "admitted": admitted, "ideal_admitted": ref,
            "over_admitted": max(0, diff), "under_admitted": max(0, -diff),
            "admitted_ratio": admitted / ref if ref else math.nan,
            "admitted_per_s": admitted / window,
            "max_admitted_per_s": max(per_s, default=0),
            "seconds_over_limit": sum(1 for n in per_s if n > 1.1 * limit + 1),
        })
    keys = dict(sorted(keys.items()))
    tot = {v: sum(r[v] for r in keys.values()) for v in (*_VERDICTS, "admitted", "ideal_admitted",
                                                          "over_admitted", "under_admitted")}
    servers = {r["name"]: {k: v for k, v in r.items() if k != "name"} for r in rl["redis"]}
    redis_calls = sum(r["calls"] for r in rl["redis"])
    if config.algorithm == "local":  # decided in the gateway: nothing added
        qs, mean = [0.0, 0.0], 0.0
    else:
        qs = latency.quantiles([0.5, 0.99]) if latency.count else [math.nan, math.nan]
        mean = 1000 * latency.mean if latency.count else math.nan
    return {
        "algorithm": config.algorithm,
        "key": config.key,
        "global_limit_per_s": limit,
        "global_burst": config.global_burst,
        **tot,
        "rate_limited_429": tot["denied"],
        "admitted_ratio": tot["admitted"] / tot["ideal_admitted"] if tot["ideal_admitted"] else math.nan,
        "timeouts": timeouts,
        "errors": errors,
        "calls": calls,
        "latency_added_ms": {"mean": mean, "p50": 1000 * qs[0], "p99": 1000 * qs[1]},
        "keys": keys,
        "redis_calls_per_s": redis_calls / window if rl["redis"] else 0.0,
        "redis": servers,
        "redis_bytes_by_az_pair": rl["redis_bytes_by_az_pair"],
    }


def rate_limit_timeseries(rl: dict, n_seconds: int) -> dict[str, list]:
    """Per second (whole run): requests the filters admitted and the ideal bucket admitted, every key summed."""
    admitted = [0] * n_seconds
    for f in rl["filters"]:
        for ts in f["admitted_ts"].values():
            for i, v in enumerate(ts[:n_seconds]):
                admitted[i] += v
    ideal = [0] * n_seconds
    for ts in rl["ideal"]["admitted_ts"].values():
        for i, v in enumerate(ts[:n_seconds]):
            ideal[i] += v
    return {"rl_admitted": admitted, "rl_ideal_admitted": ideal}


__all__ = ["rate_limit_section", "rate_limit_timeseries"]
