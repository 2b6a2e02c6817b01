"""The rate-limit filter and Redis (RateLimit kinds, TokenBucket, Redis), extensions of the topology.

Limits small enough to bite in a run of a few seconds at the drawn rates
(up to ~40 calls/s): a few tokens a second, bursts of 1-10, timeouts from
well under a round trip to Envoy's 20 ms, blocking and not, fail-open and
fail-closed. Redis is drawn when the drawn limit is remote (and is null
otherwise); its faults are drawn with the fault timeline
(:mod:`tests.strategies.faults`).
"""

from __future__ import annotations

from hypothesis import strategies as st

from .distributions import distributions, floats
from .gateway import fields
from .registry import Options, Plan, extension

_REMOTE = {
    "key": st.sampled_from(["global", "service", "client"]),
    "global_limit_per_s": floats(0.5, 50.0),
    "global_burst": st.sampled_from([1.0, 5.0, 20.0]),
    "timeout_s": st.sampled_from([0.0002, 0.002, 0.02]),
    "failure_mode_deny": st.booleans(),
    "blocking": st.booleans(),
    "connections": st.integers(min_value=1, max_value=3),
    "pipelining": st.booleans(),
    "request_bytes": st.sampled_from([1, 120]),
    "response_bytes": st.sampled_from([1, 16]),
}


@st.composite
def rate_limits(draw) -> dict:
    """One rate limit of any kind."""
    algorithm = draw(st.sampled_from(["local", "redis_token_bucket", "fixed_window"]))
    if algorithm == "local":
        tb = {"max_tokens": draw(st.integers(min_value=1, max_value=10)),
              "fill_interval_s": draw(st.sampled_from([0.05, 0.125, 1.0]) | floats(0.05, 2.0))}
        tb.update(draw(fields({"tokens_per_fill": st.integers(min_value=1, max_value=5)})))
        out = {"algorithm": algorithm, "token_bucket": tb}
        out.update(draw(fields({k: _REMOTE[k] for k in ("key", "global_limit_per_s", "global_burst")})))
        return out
    out = {"algorithm": algorithm, **draw(fields(_REMOTE))}
    if algorithm == "redis_token_bucket":
        out["limit"] = draw(st.sampled_from([1.0, 5.0, 20.0]) | floats(0.5, 40.0))
        out["burst"] = draw(st.sampled_from([1.0, 3.0, 10.0]))
        out.update(draw(fields({"window_s": st.sampled_from([0.5, 1.0, 2.0])})))
    else:
        out["requests_per_unit"] = draw(st.integers(min_value=1, max_value=30))
        out.update(draw(fields({"unit": st.sampled_from(["second", "minute"])})))
    return out


@extension("topology", "rate_limit", nullable=True, exact_time=False)
def _rate_limit(plan: Plan, place, node: dict, opts: Options):
    return rate_limits()


@st.composite
def redis(draw, plan: Plan, opts: Options) -> dict:
    """A Redis: in one AZ that has gateways, or per AZ; its service times drawn."""
    out = draw(fields({"evalsha_time_s": distributions(1e-4, opts.dists),
                       "command_time_s": distributions(2e-5, opts.dists),
                       "io_time_s": distributions(2e-5, opts.dists)}))
    if draw(st.booleans()):
        out["placement"] = "per_az"
    else:
        if draw(st.booleans()):
            out["placement"] = "one_az"
        out["az"] = draw(st.sampled_from(sorted({az for az, _ in plan.pools.values()})))
    return out


@extension("topology", "redis", required=True, nullable=True, order=1, exact_time=False)
def _redis(plan: Plan, place, node: dict, opts: Options):
    rl = node.get("rate_limit")
    if rl is None or rl.get("algorithm") == "local":
        return st.none()
    return redis(plan, opts)
