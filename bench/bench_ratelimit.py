"""Rate-limit filter cost: the quickstart path with no limit, a local limit and a Redis token bucket.

Run from the project root::

    .venv/bin/python bench/bench_ratelimit.py

The limits are far above the load, so every variant routes the same
requests; the only difference is the filter's work (a local bucket: no
event; Redis: a call out, a server slot and a call back per request). Runs
are interleaved and repeated three times; the best throughput of each is
reported with its ratio to the run without a limit (the off path is the
gateway's own code: ``bench/bench_engine.py`` measures it against main).
"""

from __future__ import annotations

import time
from pathlib import Path

from sim.config.loader import load_experiment
from sim.config.models import LocalRateLimit, Redis, RedisTokenBucket, TokenBucket
from sim.fleet import Fleet

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    base = load_experiment(ROOT / "experiments" / "quickstart.yaml", ["duration_s=20", "warmup_s=2"]).config
    az = next(iter(base.topology.gateways.values())).az

    def with_limit(rl, redis=None):
        return base.model_copy(update={"topology": base.topology.model_copy(update={"rate_limit": rl,
                                                                                    "redis": redis})})

    huge = {"global_limit_per_s": 1e6, "global_burst": 1e6}
    exps = {
        "off": base,
        "local": with_limit(LocalRateLimit(algorithm="local", token_bucket=TokenBucket(
            max_tokens=10**6, fill_interval_s=1.0), **huge)),
        "redis": with_limit(RedisTokenBucket(algorithm="redis_token_bucket", limit=1e6, burst=1e6, **huge),
                            Redis(az=az)),
    }
    best = dict.fromkeys(exps, 0.0)
    for _ in range(3):
        for name, exp in exps.items():
            t = time.perf_counter()
            result = Fleet(exp).run()
            best[name] = max(best[name], result["requests"] / (time.perf_counter() - t))
    for name, rate in best.items():
        print(f"ratelimit_{name}_requests_per_s: {rate:.0f}  ({rate / best['off']:.3f} of off)")


if __name__ == "__main__":
    main()
