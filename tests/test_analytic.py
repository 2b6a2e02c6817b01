"""Tests of the closed forms in sim.analytic.

Textbook values, reductions between models (M/M/c with c = 1 is M/M/1,
M/M/c/K with K = c is Erlang B, ...), an independent check of M/M/c/K
against the stationary distribution of its generator matrix solved with
numpy, input validation, and hypothesis properties (derandomized so every
run draws the same examples).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from sim.analytic import (
    erlang_b,
    erlang_c,
    jackson_tandem_sojourn_s,
    md1_mean_wait_s,
    mg1_mean_wait_s,
    mm1_mean_sojourn_s,
    mm1_mean_wait_s,
    mmc_mean_sojourn_s,
    mmc_mean_wait_s,
    mmck_blocking,
    mmck_mean_wait_s,
    retry_amplification,
    retry_failure_probability,
    zone_aware_local_fraction,
)

REL = 1e-12

PROPERTY = settings(derandomize=True, max_examples=200, deadline=None)

loads = st.floats(min_value=0.0, max_value=2_000.0, allow_nan=False)
server_counts = st.integers(min_value=1, max_value=1_000)


def _mmck_by_generator(lam: float, mu: float, c: int, k: int) -> tuple[float, float]:
    """(blocking, admitted mean wait) from the CTMC's generator, by linear algebra."""
    n_states = k + 1
    q = np.zeros((n_states, n_states))
    for n in range(n_states):
        if n < k:
            q[n, n + 1] = lam
        if n > 0:
            q[n, n - 1] = min(n, c) * mu
        q[n, n] = -q[n].sum()
    # Solve pi Q = 0 with sum(pi) = 1: replace one balance equation by the
    # normalisation.
    a = q.T.copy()
    a[-1, :] = 1.0
    b = np.zeros(n_states)
    b[-1] = 1.0
    pi = np.linalg.solve(a, b)
    queue_length = sum((n - c) * pi[n] for n in range(c, n_states))
    return float(pi[k]), float(queue_length / (lam * (1.0 - pi[k])))


# --------------------------------------------------------------------------
# Erlang B and C
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("servers", "load", "expected"),
    [
        (1, 1.0, 0.5),  # a / (1 + a)
        (2, 1.0, 0.2),  # (1/2) / (1 + 1 + 1/2)
        (3, 2.0, 4.0 / 19.0),  # (8/6) / (1 + 2 + 2 + 8/6)
        (10, 5.0, 0.018384570336648),  # Erlang B table
        (5, 0.0, 0.0),
    ],
)
def test_erlang_b_textbook_values(servers: int, load: float, expected: float) -> None:
    assert erlang_b(servers, load) == pytest.approx(expected, rel=REL, abs=1e-300)


@pytest.mark.parametrize(("servers", "load"), [(1000, 950.0), (1000, 1000.0), (500, 700.0)])
def test_erlang_b_large_c_matches_poisson_ratio(servers: int, load: float) -> None:
    # B(c, a) = P(N = c) / P(N <= c) for N ~ Poisson(a): an independent route
    # through scipy's log-space Poisson functions.
    expected = stats.poisson.pmf(servers, load) / stats.poisson.cdf(servers, load)
    assert erlang_b(servers, load) == pytest.approx(expected, rel=1e-9)


def test_numpy_scalars_are_accepted() -> None:
    assert erlang_b(np.int64(2), np.float64(1.0)) == pytest.approx(0.2, rel=REL)
    assert mmck_blocking(np.float32(1.0), 1, np.int32(1), np.int64(9)) == pytest.approx(
        0.1, rel=1e-6
    )


def test_erlang_b_tiny_load_many_servers_underflows_to_zero_without_error() -> None:
    assert erlang_b(1000, 1e-3) == 0.0


@pytest.mark.parametrize("rho", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_erlang_c_for_one_server_is_rho(rho: float) -> None:
    assert erlang_c(1, rho) == pytest.approx(rho, rel=REL)


def test_erlang_c_textbook_value() -> None:
    # M/M/2 at a = 1: C = 2 B / (2 - a (1 - B)) with B = 0.2 -> 1/3.
    assert erlang_c(2, 1.0) == pytest.approx(1.0 / 3.0, rel=REL)


def test_erlang_c_exceeds_erlang_b() -> None:
    # Waiting (C) is more likely than loss (B) at the same load.
    assert erlang_c(10, 8.0) > erlang_b(10, 8.0)


# --------------------------------------------------------------------------
# M/M/1, M/M/c
# --------------------------------------------------------------------------


def test_mm1_textbook_values() -> None:
    # lambda = 0.9, mu = 1: W = 1 / 0.1 = 10 s, Wq = 0.9 / 0.1 = 9 s.
    assert mm1_mean_sojourn_s(0.9, 1.0) == pytest.approx(10.0, rel=REL)
    assert mm1_mean_wait_s(0.9, 1.0) == pytest.approx(9.0, rel=REL)
    assert mm1_mean_wait_s(0.0, 1.0) == 0.0


def test_mmc_textbook_value() -> None:
    # M/M/2, lambda = mu = 1: Lq = 1/3, so Wq = 1/3 s and W = 4/3 s.
    assert mmc_mean_wait_s(1.0, 1.0, 2) == pytest.approx(1.0 / 3.0, rel=REL)
    assert mmc_mean_sojourn_s(1.0, 1.0, 2) == pytest.approx(4.0 / 3.0, rel=REL)


@pytest.mark.parametrize(("lam", "mu"), [(0.5, 1.0), (80.0, 100.0), (9.99, 10.0)])
def test_mmc_with_one_server_is_mm1(lam: float, mu: float) -> None:
    assert mmc_mean_wait_s(lam, mu, 1) == pytest.approx(mm1_mean_wait_s(lam, mu), rel=1e-9)
    assert mmc_mean_sojourn_s(lam, mu, 1) == pytest.approx(mm1_mean_sojourn_s(lam, mu), rel=1e-9)


def test_mmc_pooling_beats_separate_queues() -> None:
    # One M/M/4 queue waits less than four M/M/1 queues each getting 1/4.
    assert mmc_mean_wait_s(3.2, 1.0, 4) < mm1_mean_wait_s(0.8, 1.0)


# --------------------------------------------------------------------------
# M/M/c/K
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("lam", "mu", "c"), [(1.0, 1.0, 1), (1.0, 1.0, 2), (30.0, 2.0, 12)])
def test_mmck_with_no_queue_is_erlang_b(lam: float, mu: float, c: int) -> None:
    assert mmck_blocking(lam, mu, c, c) == pytest.approx(erlang_b(c, lam / mu), rel=REL)
    assert mmck_mean_wait_s(lam, mu, c, c) == 0.0


def test_mm1k_textbook_values() -> None:
    # M/M/1/K at rho = 1: uniform over K + 1 states, so P_K = 1/(K+1); with
    # K = 9, L = 4.5, Lq = L - (1 - p0) = 3.6, lambda_eff = 0.9 -> Wq = 4 s.
    assert mmck_blocking(1.0, 1.0, 1, 9) == pytest.approx(0.1, rel=REL)
    assert mmck_mean_wait_s(1.0, 1.0, 1, 9) == pytest.approx(4.0, rel=1e-9)
    # rho = 1/2, K = 2: p_n proportional to 1, 1/2, 1/4 -> P_K = 1/7.
    assert mmck_blocking(0.5, 1.0, 1, 2) == pytest.approx(1.0 / 7.0, rel=REL)


@pytest.mark.parametrize(
    ("lam", "mu", "c", "k"),
    [
        (0.5, 1.0, 1, 5),
        (3.0, 1.0, 2, 7),  # rho = 1.5, overloaded
        (4.0, 1.0, 4, 10),  # rho = 1 exactly
        (3.999, 1.0, 4, 10),  # rho just below 1
        (4.001, 1.0, 4, 10),  # rho just above 1
        (4.0 - 4e-7, 1.0, 4, 14),  # |log rho| (K - c + 1) < 1e-4: series branch
        (4.0 + 4e-7, 1.0, 4, 14),
        (20.0, 3.0, 8, 40),
        (1e-3, 1.0, 3, 6),  # nearly empty
        (500.0, 1.0, 3, 6),  # nearly always full
    ],
)
def test_mmck_matches_generator_solution(lam: float, mu: float, c: int, k: int) -> None:
    blocking, wait = _mmck_by_generator(lam, mu, c, k)
    assert mmck_blocking(lam, mu, c, k) == pytest.approx(blocking, rel=1e-9)
    assert mmck_mean_wait_s(lam, mu, c, k) == pytest.approx(wait, rel=1e-9)


@pytest.mark.parametrize(("lam", "mu", "c"), [(0.9, 1.0, 1), (7.0, 1.0, 8), (900.0, 1.0, 1000)])
def test_mmck_with_huge_queue_approaches_mmc(lam: float, mu: float, c: int) -> None:
    # rho < 1 and K - c = 10^6: blocking vanishes and the wait is M/M/c's.
    k = c + 10**6
    assert mmck_blocking(lam, mu, c, k) < 1e-30
    assert mmck_mean_wait_s(lam, mu, c, k) == pytest.approx(mmc_mean_wait_s(lam, mu, c), rel=1e-9)


def test_mmck_overloaded_huge_queue_blocks_the_excess() -> None:
    # rho = 2 with a near-infinite buffer: admitted rate tends to c mu, so
    # blocking tends to 1 - 1/rho = 1/2.
    assert mmck_blocking(2.0, 1.0, 1, 10**6) == pytest.approx(0.5, rel=1e-9)
    assert mmck_blocking(30.0, 1.0, 10, 10**6) == pytest.approx(2.0 / 3.0, rel=1e-9)


def test_mmck_nearly_always_full_still_gives_finite_wait() -> None:
    # Every admitted customer arrives to K - 1 in system: 3 queued ahead of it
    # plus the residual of the one in service, 4 service times.
    assert mmck_mean_wait_s(1e30, 1.0, 1, 5) == pytest.approx(4.0, rel=1e-9)


# --------------------------------------------------------------------------
# M/D/1, M/G/1
# --------------------------------------------------------------------------


@pytest.mark.parametrize("rho", [0.1, 0.5, 0.9, 0.99])
def test_md1_wait_is_half_mm1_wait(rho: float) -> None:
    service_s = 0.005
    lam = rho / service_s
    assert md1_mean_wait_s(lam, service_s) == pytest.approx(
        0.5 * mm1_mean_wait_s(lam, 1.0 / service_s), rel=1e-9
    )


def test_md1_textbook_value() -> None:
    # rho = 0.5, S = 1 s: Wq = 0.5 * 1 / (2 * 0.5) = 0.5 s.
    assert md1_mean_wait_s(0.5, 1.0) == pytest.approx(0.5, rel=REL)


@pytest.mark.parametrize("rho", [0.2, 0.75, 0.95])
def test_mg1_with_scv_one_is_mm1(rho: float) -> None:
    service_s = 0.02
    lam = rho / service_s
    assert mg1_mean_wait_s(lam, service_s, 1.0) == pytest.approx(
        mm1_mean_wait_s(lam, 1.0 / service_s), rel=1e-9
    )


def test_mg1_scales_with_one_plus_scv() -> None:
    # Hyperexponential-like scv = 4: (1 + 4) / (1 + 0) = 5 times M/D/1.
    assert mg1_mean_wait_s(0.5, 1.0, 4.0) == pytest.approx(5.0 * md1_mean_wait_s(0.5, 1.0), rel=REL)


# --------------------------------------------------------------------------
# Jackson tandem
# --------------------------------------------------------------------------


def test_jackson_tandem_is_sum_of_station_sojourns() -> None:
    # Station 1: M/M/1 at lambda = 1, mu = 2 -> W = 1 s.
    # Station 2: M/M/2 at lambda = 1, mu = 1 -> W = 4/3 s.
    total = jackson_tandem_sojourn_s(1.0, [(2.0, 1), (1.0, 2)])
    assert total == pytest.approx(1.0 + 4.0 / 3.0, rel=REL)


def test_jackson_tandem_single_station_is_mmc() -> None:
    assert jackson_tandem_sojourn_s(5.0, [(2.0, 3)]) == pytest.approx(
        mmc_mean_sojourn_s(5.0, 2.0, 3), rel=REL
    )


def test_jackson_tandem_names_unstable_station() -> None:
    with pytest.raises(ValueError, match=r"station 1 .*rho=1\.5"):
        jackson_tandem_sojourn_s(3.0, [(4.0, 1), (1.0, 2)])


def test_jackson_tandem_rejects_empty_and_malformed() -> None:
    with pytest.raises(ValueError, match="empty"):
        jackson_tandem_sojourn_s(1.0, [])
    with pytest.raises(ValueError, match="station 0"):
        jackson_tandem_sojourn_s(1.0, [(2.0,)])  # type: ignore[list-item]


# --------------------------------------------------------------------------
# Retries and zone-aware routing
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("f", "retries", "attempts", "failed"),
    [
        (0.0, 3, 1.0, 0.0),
        (0.5, 1, 1.5, 0.25),
        (0.3, 2, 1.39, 0.027),
        (0.1, 2, 1.11, 0.001),  # HAProxy measured 1.111: docs/facts.md#retry-amplification
        (1.0, 3, 4.0, 1.0),
        (0.7, 0, 1.0, 0.7),
    ],
)
def test_retry_values(f: float, retries: int, attempts: float, failed: float) -> None:
    assert retry_amplification(f, retries) == pytest.approx(attempts, rel=REL)
    assert retry_failure_probability(f, retries) == pytest.approx(failed, rel=REL)


def test_retry_amplification_near_one_is_continuous() -> None:
    assert retry_amplification(1.0 - 1e-12, 3) == pytest.approx(4.0, rel=1e-9)


@PROPERTY
@given(
    f=st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
    retries=st.integers(min_value=0, max_value=20),
)
def test_retry_amplification_is_the_geometric_sum(f: float, retries: int) -> None:
    expected = math.fsum(f**k for k in range(retries + 1))
    assert retry_amplification(f, retries) == pytest.approx(expected, rel=1e-9)
    assert 1.0 <= retry_amplification(f, retries) <= retries + 1
    assert 0.0 <= retry_failure_probability(f, retries) <= 1.0


@pytest.mark.parametrize(
    ("local", "upstream", "expected"),
    [
        (0.2, 0.1, 0.5),  # Envoy's example, docs/facts.md#zone-aware-routing
        (0.5, 0.25, 0.5),
        (1.0 / 3.0, 0.3, 0.9),
        (0.2, 0.2, 1.0),
        (0.2, 0.4, 1.0),
        (0.0, 0.0, 1.0),
    ],
)
def test_zone_aware_local_fraction(local: float, upstream: float, expected: float) -> None:
    assert zone_aware_local_fraction(local, upstream) == pytest.approx(expected, rel=REL)


# --------------------------------------------------------------------------
# Invalid input
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: erlang_b(0, 1.0), "servers must be >= 1, got 0"),
        (lambda: erlang_b(2.5, 1.0), "servers must be an integer, got 2.5"),
        (lambda: erlang_b(True, 1.0), "servers must be an integer, got True"),
        (lambda: erlang_b(2, -1.0), "offered_load must be finite and >= 0, got -1.0"),
        (lambda: erlang_b(2, math.nan), "offered_load must be finite"),
        (lambda: erlang_b(2, "1.0"), "offered_load must be a real number, got '1.0'"),
        (lambda: erlang_b(2, 10**400), "offered_load must be finite and >= 0"),
        (lambda: erlang_b("2", 1.0), "servers must be an integer, got '2'"),
        (lambda: erlang_c(2, 2.0), "unstable queue: rho=1.0 >= 1"),
        (lambda: erlang_c(2, 3.0), "unstable queue: rho=1.5 >= 1"),
        (lambda: mm1_mean_wait_s(1.0, 1.0), "unstable queue: rho=1.0 >= 1"),
        (
            lambda: mm1_mean_sojourn_s(-0.1, 1.0),
            "arrival_rate_per_s must be finite and >= 0, got -0.1",
        ),
        (lambda: mm1_mean_sojourn_s(0.1, 0.0), "service_rate_per_s must be > 0, got 0.0"),
        (lambda: mmc_mean_wait_s(5.0, 1.0, 4), "unstable queue: rho=1.25 >= 1"),
        (
            lambda: mmc_mean_sojourn_s(1.0, -2.0, 4),
            "service_rate_per_s must be finite and >= 0, got -2.0",
        ),
        (lambda: mmck_blocking(1.0, 1.0, 3, 2), "capacity must be >= 3, got 2"),
        (lambda: mmck_blocking(1.0, 1.0, 0, 2), "servers must be >= 1, got 0"),
        (
            lambda: mmck_mean_wait_s(-1.0, 1.0, 1, 2),
            "arrival_rate_per_s must be finite and >= 0, got -1.0",
        ),
        (lambda: md1_mean_wait_s(2.0, 0.5), "unstable queue: rho=1.0 >= 1"),
        (lambda: md1_mean_wait_s(1.0, 0.0), "mean_service_s must be > 0, got 0.0"),
        (lambda: mg1_mean_wait_s(1.0, 0.1, -0.5), "service_scv must be finite and >= 0, got -0.5"),
        (lambda: retry_amplification(1.5, 2), "failure_probability must be in [0, 1], got 1.5"),
        (lambda: retry_amplification(0.5, -1), "retries must be >= 0, got -1"),
        (
            lambda: retry_failure_probability(-0.1, 1),
            "failure_probability must be finite and >= 0, got -0.1",
        ),
        (lambda: zone_aware_local_fraction(1.2, 0.5), "local_share must be in [0, 1], got 1.2"),
        (lambda: zone_aware_local_fraction(0.5, math.inf), "upstream_share must be finite"),
    ],
)
def test_invalid_input_raises_with_the_bad_value(call, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        call()
    assert fragment in str(info.value)


# --------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------


@PROPERTY
@given(servers=server_counts, load=loads)
def test_erlang_b_decreases_with_servers(servers: int, load: float) -> None:
    fewer = erlang_b(servers, load)
    more = erlang_b(servers + 1, load)
    assert 0.0 <= more <= fewer <= 1.0
    if load > 0.0 and fewer > 0.0:
        assert more < fewer


@PROPERTY
@given(servers=server_counts, load=loads)
def test_erlang_b_increases_with_load(servers: int, load: float) -> None:
    assert erlang_b(servers, load) <= erlang_b(servers, load * 1.1 + 0.01)


@PROPERTY
@given(servers=server_counts, rho=st.floats(min_value=0.0, max_value=0.999))
def test_erlang_c_is_a_probability_at_least_erlang_b(servers: int, rho: float) -> None:
    load = rho * servers
    waiting = erlang_c(servers, load)
    assert 0.0 <= waiting <= 1.0
    assert waiting >= erlang_b(servers, load) * (1.0 - 1e-12)


@PROPERTY
@given(
    lam=st.floats(min_value=0.0, max_value=1_000.0),
    mu=st.floats(min_value=0.01, max_value=100.0),
    servers=st.integers(min_value=1, max_value=200),
    slots=st.integers(min_value=0, max_value=10**6),
)
def test_mmck_blocking_is_a_probability_and_falls_with_capacity(
    lam: float, mu: float, servers: int, slots: int
) -> None:
    k = servers + slots
    blocking = mmck_blocking(lam, mu, servers, k)
    assert 0.0 <= blocking <= 1.0
    assert mmck_blocking(lam, mu, servers, k + 1) <= blocking * (1.0 + 1e-9)
    assert blocking <= erlang_b(servers, lam / mu) * (1.0 + 1e-9)
    wait = mmck_mean_wait_s(lam, mu, servers, k)
    assert math.isfinite(wait)
    # An admitted customer waits at most for the slots ahead of it to drain.
    assert 0.0 <= wait <= slots / (servers * mu) * (1.0 + 1e-9)
