"""The workload (Workload, RateStep, ClientPolicy, ClientBackoff, RetryTokenBucket, ClientRetryBudget).

A rate schedule of 1-3 steps (steps and ramps, rates down to 0), the
arrival process, the service mix, and the client's retry policy: tries per
call, per-try timeout, back-off (down to none), the AWS token bucket and a
retry budget, one or several independent clients. Each is an extension of
the workload.
"""

from __future__ import annotations

from hypothesis import strategies as st

from .distributions import floats
from .gateway import fields
from .registry import Options, Plan, extension
from .topology import weights


@st.composite
def rate_schedules(draw, duration_s: float, max_rate: float) -> list[dict]:
    """1-3 steps from t=0, each after the previous one's ramp, within the run (rates may be 0)."""
    rate = st.one_of(floats(1.0, max_rate), st.sampled_from([0.0, max_rate]))
    steps = [{"at_s": 0.0, "rate_per_s": draw(rate)}]
    t = 0.0
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        if t + 0.25 >= duration_s:
            break
        at = draw(floats(t + 0.25, duration_s))
        step = {"at_s": at, "rate_per_s": draw(rate)}
        if draw(st.booleans()):
            step["ramp_s"] = draw(st.sampled_from([0.0, 0.5, 1.0]))
        steps.append(step)
        t = at + step.get("ramp_s", 0.0)
    return steps


@extension("workload", "rate_schedule", required=True)
def _rate_schedule(plan: Plan, place, node: dict, opts: Options):
    return rate_schedules(plan.duration_s, opts.max_rate)


@extension("workload", "arrivals", required=True)
def _arrivals(plan: Plan, place, node: dict, opts: Options):
    return st.sampled_from(opts.arrivals)


@extension("workload", "services", required=lambda plan: len(plan.services) > 1)
@st.composite
def _services(draw, plan: Plan, place, node: dict, opts: Options):
    return weights(draw, list(plan.services))


@extension("workload", "client.max_attempts")
def _max_attempts(plan: Plan, place, node: dict, opts: Options):
    return st.integers(min_value=1, max_value=3)


@extension("workload", "client.timeout_s", nullable=True)
def _client_timeout(plan: Plan, place, node: dict, opts: Options):
    return st.one_of(floats(0.005, 1.0), st.sampled_from([0.05, 5.0]))


@st.composite
def client_backoffs(draw) -> dict:
    """The client's back-off: no back-off (base 0) to the SDK's 100 ms / 20 s, full jitter or none."""
    out = draw(fields({"base_s": st.sampled_from([0.0, 0.001, 0.01, 0.1]), "jitter": st.sampled_from(["full", "none"])}))
    if draw(st.booleans()):
        out["max_s"] = max(out.get("base_s", 0.1), draw(st.sampled_from([0.05, 1.0, 20.0])))
    return out


@extension("workload", "client.backoff")
def _backoff(plan: Plan, place, node: dict, opts: Options):
    return client_backoffs()


@extension("workload", "client.token_bucket", nullable=True)
def _token_bucket(plan: Plan, place, node: dict, opts: Options):
    return fields({"capacity": st.sampled_from([0, 5, 20, 500]), "retry_cost": st.sampled_from([0, 1, 5]),
                   "timeout_retry_cost": st.sampled_from([0, 10]), "success_refund": st.sampled_from([0, 1, 5])})


@extension("workload", "client.retry_budget", nullable=True)
def _retry_budget(plan: Plan, place, node: dict, opts: Options):
    return fields({"retry_ratio": st.sampled_from([0.0, 0.2, 1.0]), "min_retries_per_s": st.sampled_from([0.0, 1.0, 10.0]),
                   "ttl_s": st.sampled_from([0.5, 10.0])})


@extension("workload", "client.clients")
def _clients(plan: Plan, place, node: dict, opts: Options):
    return st.integers(min_value=1, max_value=3)
