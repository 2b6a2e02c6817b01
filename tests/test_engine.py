"""The engine: seeded streams, block sampling, fixed-delay timers, distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from sim.config.distributions import Constant, Empirical, Exponential, Gamma, Lognormal, Uniform
from sim.engine import FixedDelayTimers, Sampler, SimContext, name_key

# Regression pin: a component's stream key (and so every run of a seeded
# experiment) must not change between versions or processes. The values are
# blake2b(name, digest_size=8) split into two 32-bit words, not the salted
# hash(); a change here breaks the reproducibility of every stored run.
NAME_KEY_PINS = {
    "gw-a-0.lb": (0x12AE5B13, 0xF70E9782),
    "api-a1-0.service_time": (0xE92C5200, 0xC1A6EEE6),
    "lb.r1.a1": (0x12A3410C, 0x80E31317),
    "zone-\u00e9.arrivals": (0x1B9CB5B2, 0x6D26F752),  # names are hashed as UTF-8
}


@pytest.mark.parametrize("name", list(NAME_KEY_PINS))
def test_name_key_is_pinned(name):
    assert name_key(name) == NAME_KEY_PINS[name]


def test_name_keys_differ_and_are_32_bit_words():
    assert name_key("a") != name_key("b")
    assert all(0 <= w < 2**32 for w in name_key("x"))


def test_streams_are_per_name_and_per_replication():
    a0 = SimContext(1, 0).rng("api-a1-0.service_time").random(4)
    a0_again = SimContext(1, 0).rng("api-a1-0.service_time").random(4)
    b0 = SimContext(1, 0).rng("api-a1-1.service_time").random(4)
    a1 = SimContext(1, 1).rng("api-a1-0.service_time").random(4)
    s2 = SimContext(2, 0).rng("api-a1-0.service_time").random(4)
    assert np.array_equal(a0, a0_again)
    assert not np.array_equal(a0, b0)
    assert not np.array_equal(a0, a1)
    assert not np.array_equal(a0, s2)


def test_adding_a_component_does_not_shift_another_stream():
    ctx1 = SimContext(3)
    x = ctx1.rng("gw-0").random(3)
    ctx2 = SimContext(3)
    ctx2.rng("new-component").random(100)
    y = ctx2.rng("gw-0").random(3)
    assert np.array_equal(x, y)


def test_a_stream_name_can_be_taken_once():
    ctx = SimContext(1)
    ctx.rng("x")
    with pytest.raises(ValueError, match="already taken"):
        ctx.rng("x")


def test_negative_seed_is_refused():
    with pytest.raises(ValueError, match="Negative seed -1"):
        SimContext(-1)


def test_sampler_returns_python_floats_and_constant_draws_nothing():
    rng = np.random.default_rng(0)
    s = Sampler(Exponential(mean=2.0), rng, block=8)
    xs = [s.draw() for _ in range(20)]
    assert all(type(x) is float for x in xs)
    c = Sampler(Constant(value=0.5), np.random.default_rng(0))
    assert [c.draw() for _ in range(3)] == [0.5, 0.5, 0.5]


@pytest.mark.parametrize(
    "dist",
    [
        Exponential(mean=0.01),
        Lognormal(median=0.012, p99=0.06),
        Gamma(mean=3.0, cv=0.5),
        Uniform(low=1.0, high=3.0),
        Empirical(quantiles=[(0.0, 1.0), (0.5, 2.0), (0.9, 4.0), (1.0, 10.0)]),
    ],
    ids=lambda d: d.dist,
)
def test_sample_mean_matches_the_distribution_mean(dist):
    s = Sampler(dist, np.random.default_rng(12345))
    xs = np.array([s.draw() for _ in range(200_000)])
    mean, sem = xs.mean(), xs.std(ddof=1) / math.sqrt(len(xs))
    half = st.norm.ppf(0.995) * sem
    assert abs(mean - dist.mean) <= half, (mean, dist.mean, half)
    assert half < 0.02 * dist.mean


def test_lognormal_p99_and_median_are_what_the_config_says():
    d = Lognormal(median=0.012, p99=0.06)
    s = Sampler(d, np.random.default_rng(2), block=100_000)
    ys = np.array([s.draw() for _ in range(100_000)])
    # Binomial 99% bounds on the empirical quantiles' ranks.
    for q, v in [(0.5, 0.012), (0.99, 0.06)]:
        frac = np.mean(ys <= v)
        half = st.norm.ppf(0.995) * math.sqrt(q * (1 - q) / ys.size)
        assert abs(frac - q) <= half


def test_empirical_mean_is_the_integral_of_the_quantile_function():
    d = Empirical(quantiles=[(0.0, 0.0), (1.0, 2.0)])
    assert d.mean == pytest.approx(1.0)
    d = Empirical(quantiles=[(0.0, 1.0), (0.5, 1.0), (0.5, 3.0), (1.0, 3.0)])
    assert d.mean == pytest.approx(2.0)


def test_fixed_delay_timers_fire_in_order_with_one_armed_event():
    ctx = SimContext(0)
    env = ctx.env
    log = []
    timers = FixedDelayTimers(env, 1.5, lambda item: log.append((env.now, item)))

    def starter(env):
        timers.start("a")
        yield env.timeout(0.5)
        timers.start("b")
        timers.start("c")
        yield env.timeout(2.0)
        timers.start("d")

    env.process(starter(env))
    ctx.run(float("inf"))
    assert log == [(1.5, "a"), (2.0, "b"), (2.0, "c"), (4.0, "d")]
    assert len(timers) == 0


def test_fixed_delay_timers_refuse_negative_delay():
    with pytest.raises(ValueError, match="Negative delay -1"):
        FixedDelayTimers(SimContext(0).env, -1, print)


def test_context_run_matches_simpy_ordering_and_stops_before_until():
    from sim.engine import call_later

    ctx = SimContext(0)
    env = ctx.env
    log = []

    def proc(env):
        yield env.timeout(1.0)
        log.append(("process", env.now))
        call_later(env, 0.0, lambda value: log.append(("call", env.now, value)), "x")
        yield env.timeout(1.0)
        log.append(("process", env.now))

    env.process(proc(env))
    call_later(env, 1.0, lambda _: log.append(("early", env.now)))
    call_later(env, 2.0, lambda _: log.append(("at-until", env.now)))
    ctx.run(2.0)
    # Same-time events run in the order they were scheduled ("early" before the
    # process's first timeout, made when the process started); events at `until` wait.
    assert log == [("early", 1.0), ("process", 1.0), ("call", 1.0, "x")]
    assert env.now == 2.0
    ctx.run(float("inf"))
    assert log[3:] == [("at-until", 2.0), ("process", 2.0)]
    assert env.now == 2.0


def test_context_run_raises_a_failed_event():
    ctx = SimContext(0)

    def boom(env):
        yield env.timeout(0.5)
        raise RuntimeError("broken component")

    ctx.env.process(boom(ctx.env))
    with pytest.raises(RuntimeError, match="broken component"):
        ctx.run(1.0)
