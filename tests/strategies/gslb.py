"""The topology's ``gslb``: every policy, short TTLs and check intervals (runs last seconds),
sometimes TTL-extending resolvers, sometimes a latency matrix.

Drawn only where some region has a balancer (the GSLB answers with those);
never with ``Options(exact_time=True)`` (checker and resolver phases are
random fractions of their intervals).
"""

from __future__ import annotations

from hypothesis import strategies as st

from .gateway import fields
from .registry import Options, Plan, extension


@extension("topology", "gslb", nullable=True, exact_time=False)
@st.composite
def _gslb(draw, plan: Plan, place, node: dict, opts: Options):
    served = [r for r in plan.clients if r not in plan.direct] or list(plan.regions)
    policy = draw(st.sampled_from(["geo", "latency", "weighted", "failover"]))
    out: dict = {"policy": policy}
    if policy == "failover":
        out["primary"] = draw(st.sampled_from(served))
        out["secondary"] = draw(st.sampled_from(served))
    if policy == "weighted":
        out["weights"] = {r: draw(st.sampled_from([0.0, 1.0, 3.0])) for r in served}
        out["weights"][served[0]] = 1.0
    out.update(draw(fields({"ttl_s": st.sampled_from([0.5, 1.0, 5.0, 60.0]),
                            "resolvers": st.integers(min_value=1, max_value=20)})))
    if draw(st.booleans()):
        out["ttl_extending_fraction"] = draw(st.sampled_from([0.0, 0.1, 1.0]))
        out["extended_ttl_s"] = max(out.get("ttl_s", 60.0), draw(st.sampled_from([1.0, 10.0, 100.0])))
    if draw(st.booleans()):
        regions = list(plan.regions)
        out["latency_s"] = {a: {b: draw(st.sampled_from([0.0, 0.01, 0.05])) for b in regions} for a in regions}
    out["health_check"] = draw(fields({"interval_s": st.sampled_from([0.2, 1.0, 10.0]),
                                       "failure_threshold": st.integers(min_value=1, max_value=3),
                                       "timeout_s": st.sampled_from([0.0, 0.1, 4.0]),
                                       "checkers": st.integers(min_value=1, max_value=8),
                                       "healthy_fraction": st.sampled_from([0.0, 0.18, 0.5])}))
    return out
