"""The experiment's ``cost``: a provider preset with some prices overridden, or every price (custom)."""

from __future__ import annotations

from hypothesis import strategies as st

from .gateway import fields
from .registry import Options, Plan, extension

_PRICE = st.sampled_from([0.0, 0.005, 0.01, 0.02, 0.09, 1.5])


def _balancer_prices(complete: bool):
    spec = {"hourly": _PRICE, "capacity_unit_hourly": _PRICE,
            "capacity_unit_gb_per_hour": st.none() | st.sampled_from([0.4, 1.0]),
            "capacity_unit_new_connections_per_s": st.none() | st.sampled_from([25.0, 800.0]),
            "per_gb": _PRICE, "cross_az_billed": st.booleans()}
    return st.fixed_dictionaries(spec) if complete else fields(spec)


@st.composite
def prices(draw, complete: bool) -> dict:
    """Prices: every field (``complete``, for provider custom) or some, overriding a preset."""
    spec = {"gb_bytes": st.sampled_from([1e9, float(2**30)]), "cross_az_per_gb": _PRICE,
            "cross_region_per_gb": _PRICE, "internet_egress_per_gb": _PRICE,
            "l4": _balancer_prices(complete), "l7": _balancer_prices(complete)}
    return draw(st.fixed_dictionaries(spec) if complete else fields(spec))


# Not with Options(exact_time=True): a month's dollars mix hourly charges (fixed) with per-call
# charges at a rate that defaults to the simulated one, so they do not scale with time.
@extension("experiment", "cost", nullable=True, exact_time=False)
@st.composite
def _cost(draw, plan: Plan, place, node: dict, opts: Options):
    provider = draw(st.sampled_from(["aws", "gcp", "azure", "custom"]))
    out: dict = {"provider": provider}
    if provider == "custom" or draw(st.booleans()):
        out["prices"] = draw(prices(complete=provider == "custom"))
    if draw(st.booleans()):
        out["production_rps"] = draw(st.sampled_from([1.0, 1000.0, 250000.0]))
    return out
