"""Distributions (sim/config/distributions.py): every kind, as YAML writes them.

A mean of roughly ``scale`` (the field's unit), sometimes a bare number
(the YAML shorthand for a constant), a constant 0 now and then, degenerate
tables and uniforms of width 0. :func:`timer_errors` draws the signed
quantile table of :class:`sim.config.models.TimerError`.
"""

from __future__ import annotations

from hypothesis import strategies as st

from sim.config.distributions import Constant, Empirical, Exponential, Gamma, Lognormal, Uniform
from sim.config.models import TimerError

from .registry import ALL_DISTRIBUTIONS

MODELS = (Constant, Exponential, Lognormal, Gamma, Uniform, Empirical, TimerError)


def floats(lo: float, hi: float):
    """Finite floats in [lo, hi]."""
    return st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False)


@st.composite
def distributions(draw, scale: float, kinds: frozenset[str] = ALL_DISTRIBUTIONS, zero: bool = True):
    """Any allowed distribution with a mean of roughly ``scale``.

    Args:
        scale: the typical mean, in the field's unit.
        kinds: the kinds allowed (``number`` is a bare number, a constant).
        zero: a constant may be 0.
    """
    kind = draw(st.sampled_from(sorted(kinds)))
    m = draw(floats(scale / 10, scale * 3))
    if kind == "number":
        return m
    if kind == "constant":
        return {"dist": "constant", "value": draw(st.sampled_from([m, 0.0] if zero else [m]))}
    if kind == "exponential":
        return {"dist": "exponential", "mean": m}
    if kind == "lognormal":
        return {"dist": "lognormal", "median": m, "p99": m * draw(floats(1.01, 20.0))}
    if kind == "gamma":
        return {"dist": "gamma", "mean": m, "cv": draw(floats(0.1, 3.0))}
    if kind == "uniform":
        low = draw(floats(0.0, m))
        return {"dist": "uniform", "low": low, "high": low + draw(st.sampled_from([m, 0.0]))}
    n = draw(st.integers(min_value=0, max_value=3))
    inner = sorted(draw(st.lists(floats(0.0, 1.0), min_size=n, max_size=n)))
    values = sorted(draw(st.lists(floats(0.0, 2 * m), min_size=n + 2, max_size=n + 2)))
    return {"dist": "empirical", "quantiles": [[p, v] for p, v in zip([0.0, *inner, 1.0], values, strict=True)]}


@st.composite
def timer_errors(draw, scale: float = 0.0005):
    """A signed timer-error table ``{quantiles: [[p, seconds], ...]}`` of about ``scale`` each way."""
    n = draw(st.integers(min_value=0, max_value=3))
    inner = sorted(draw(st.lists(floats(0.0, 1.0), min_size=n, max_size=n)))
    values = sorted(draw(st.lists(floats(-scale, 3 * scale), min_size=n + 2, max_size=n + 2)))
    return {"quantiles": [[p, v] for p, v in zip([0.0, *inner, 1.0], values, strict=True)]}
