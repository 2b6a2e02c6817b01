"""The streaming latency histogram: bounded relative error, merging, bounded memory."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from sim.metrics.histogram import LogHistogram


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_quantiles_within_one_percent_of_the_exact_rank_quantile(seed):
    rng = np.random.default_rng(seed)
    xs = rng.lognormal(math.log(0.02), 1.2, 50_000)
    h = LogHistogram()
    for x in xs.tolist():
        h.add(x)
    ordered = np.sort(xs)
    for q in (0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0):
        exact = ordered[int(q * (len(xs) - 1))]
        assert abs(h.quantile(q) - exact) <= 0.01 * exact, q
    assert h.quantiles([0.99, 0.5]) == [h.quantile(0.99), h.quantile(0.5)]
    assert h.mean == pytest.approx(xs.mean(), rel=1e-12)
    assert (h.min, h.max) == (xs.min(), xs.max())


@settings(max_examples=200, deadline=None, derandomize=True)
@given(hs.lists(hs.floats(min_value=1e-6, max_value=1e4), min_size=1, max_size=300),
       hs.floats(min_value=0, max_value=1))
def test_any_quantile_is_within_the_accuracy(xs, q):
    h = LogHistogram()
    for x in xs:
        h.add(x)
    exact = sorted(xs)[int(q * (len(xs) - 1))]
    assert abs(h.quantile(q) - exact) <= 0.01 * exact + 1e-12


def test_merge_equals_adding_everything_to_one():
    rng = np.random.default_rng(9)
    a, b, both = LogHistogram(), LogHistogram(), LogHistogram()
    for i, x in enumerate(rng.exponential(0.01, 5000).tolist()):
        (a if i % 2 else b).add(x)
        both.add(x)
    a.merge(b)
    assert a.counts == both.counts
    assert a.count == both.count and a.zero == both.zero
    assert a.quantile(0.99) == both.quantile(0.99)
    rebuilt = LogHistogram.from_dict(a.to_dict())
    assert rebuilt.counts == a.counts and rebuilt.quantile(0.5) == a.quantile(0.5)


def test_merge_refuses_a_different_accuracy():
    with pytest.raises(ValueError):
        LogHistogram(0.004).merge(LogHistogram(0.01))


def test_memory_does_not_grow_with_the_number_of_values():
    h = LogHistogram()
    rng = np.random.default_rng(4)
    for x in rng.uniform(0.001, 1.0, 10_000).tolist():
        h.add(x)
    for x in rng.uniform(0.001, 1.0, 200_000).tolist():
        h.add(x)
    # The range 1 ms..1 s needs ln(1000)/ln(gamma) ~ 866 buckets, whatever the count.
    assert len(h.counts) <= math.ceil(math.log(1000) / math.log(h.gamma)) + 1
    assert h.count == 210_000


def test_zero_and_empty():
    h = LogHistogram()
    assert math.isnan(h.quantile(0.5)) and math.isnan(h.mean)
    h.add(0.0)
    h.add(0.0)
    h.add(1.0)
    assert h.quantile(0.0) == 0.0 and h.quantile(0.5) == 0.0
    assert h.quantile(1.0) == pytest.approx(1.0, rel=0.01)
