"""Closed-form queueing results used to cross-check simulation runs.

Every function here is pure (no randomness, no simulation state) and takes
times in seconds and rates per second. Load-dependent quantities are computed
with recurrences or with ``expm1``/``log`` rather than factorials and large
powers, so they stay finite and accurate for thousands of servers and for
very long queues.

Sources:
    * Kleinrock, *Queueing Systems, Vol. 1: Theory* (1975), ch. 3 (M/M/1,
      M/M/c, M/M/c/c, M/M/c/K) and ch. 5 (M/G/1, Pollaczek-Khinchine).
    * Gross, Shortle, Thompson & Harris, *Fundamentals of Queueing Theory*,
      4th ed. (2008), sections 2.3-2.5 and 5.1.
    * Jagerman, "Some properties of the Erlang loss function", Bell System
      Technical Journal 53(3), 1974 (the Erlang B recurrence).
    * Jackson, "Networks of waiting lines", Operations Research 5(4), 1957.
    * Envoy documentation, ``arch_overview/upstream/load_balancing/
      zone_aware.rst`` and ``source/common/upstream/load_balancer_impl.cc``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

__all__ = [
    "erlang_b",
    "erlang_c",
    "jackson_tandem_sojourn_s",
    "md1_mean_wait_s",
    "mg1_mean_wait_s",
    "mm1_mean_sojourn_s",
    "mm1_mean_wait_s",
    "mmc_mean_sojourn_s",
    "mmc_mean_wait_s",
    "mmck_blocking",
    "mmck_mean_wait_s",
    "retry_amplification",
    "retry_failure_probability",
    "zone_aware_local_fraction",
]

# Below this |t|, 1/expm1(t) is replaced by its Laurent series in the
# truncated-geometric mean: the direct difference of two ~1/t terms would
# cancel catastrophically there.
_SERIES_CUTOFF = 1e-4
# exp(t) overflows a double just above t = 709.78; beyond this 1/expm1(t) is
# exp(-t) to full precision.
_EXP_OVERFLOW_GUARD = 700.0


# --------------------------------------------------------------------------
# Argument checks: fail fast, naming the argument and the bad value.
# --------------------------------------------------------------------------


def _check_nonnegative(name: str, value: float) -> float:
    # math.isfinite takes anything with __float__ (numpy scalars included)
    # but, unlike float(), refuses strings.
    try:
        finite = math.isfinite(value)
    except TypeError as exc:
        raise ValueError(f"{name} must be a real number, got {value!r}") from exc
    except OverflowError:  # an int too large for a double
        finite = False
    if not finite or value < 0.0:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return float(value)


def _check_positive(name: str, value: float) -> float:
    value = _check_nonnegative(name, value)
    if value == 0.0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def _check_probability(name: str, value: float) -> float:
    value = _check_nonnegative(name, value)
    if value > 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return value


def _check_int(name: str, value: int, minimum: int) -> int:
    # operator.index accepts int and numpy integers but not 2.0 or "2"; bool
    # passes it, yet True servers is always a caller bug.
    try:
        number = operator.index(value)
    except TypeError as exc:
        raise ValueError(f"{name} must be an integer, got {value!r}") from exc
    if value is True or value is False:
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return number


def _check_stable(rho: float) -> None:
    if rho >= 1.0:
        raise ValueError(f"unstable queue: rho={rho} >= 1")


# --------------------------------------------------------------------------
# Numerically careful helpers.
# --------------------------------------------------------------------------


def _erlang_b_unchecked(servers: int, offered_load: float) -> float:
    # Jagerman's recurrence B(k) = a B(k-1) / (k + a B(k-1)), B(0) = 1: every
    # term is positive, so no cancellation and no factorial overflow.
    blocking = 1.0
    for k in range(1, servers + 1):
        ab = offered_load * blocking
        blocking = ab / (k + ab)
    return blocking


def _inverse_erlang_b(servers: int, offered_load: float) -> float:
    """Return 1/B(c, a) = sum_{n=0..c} (c!/n!) a^(n-c), possibly +inf.

    The recurrence I(k) = 1 + (k/a) I(k-1), I(0) = 1, is the reciprocal of
    Jagerman's; it overflows to +inf (instead of B underflowing to 0 and
    then dividing by zero) when the load is tiny against many servers.
    """
    inverse = 1.0
    for k in range(1, servers + 1):
        inverse = 1.0 + (k / offered_load) * inverse
    return inverse


def _inv_expm1(t: float) -> float:
    """Return 1 / (e^t - 1) for t != 0 without overflow."""
    if t > _EXP_OVERFLOW_GUARD:
        return math.exp(-t)
    return 1.0 / math.expm1(t)


def _truncated_geometric_mean(log_ratio: float, slots: int) -> float:
    """Mean of j on {0..m} with P(j) proportional to x^j.

    Args:
        log_ratio: log(x); any real number (x < 1, x = 1 and x > 1 all work).
        slots: m, the largest value of j.

    Returns:
        E[j] = f(-log x) - (m+1) f(-(m+1) log x) with f(t) = 1/(e^t - 1),
        switching to f's Laurent series (1/t - 1/2 + t/12 - t^3/720) when
        (m+1)|log x| is small, where the two terms would cancel.
    """
    if slots == 0:
        return 0.0
    t = -log_ratio
    big = (slots + 1) * t
    if abs(big) < _SERIES_CUTOFF:
        m = float(slots)
        quartic = (m + 1.0) ** 4 - 1.0
        return m / 2.0 - t * m * (m + 2.0) / 12.0 + t**3 * quartic / 720.0
    return _inv_expm1(t) - (slots + 1) * _inv_expm1(big)


def _geometric_sum(log_ratio: float, count: int) -> float:
    """Return sum_{i=0}^{count-1} r^i for r = exp(log_ratio) <= 1."""
    if log_ratio == 0.0:
        return float(count)
    # (1 - r^n) / (1 - r), both factors via expm1 so r near 1 stays accurate.
    return math.expm1(count * log_ratio) / math.expm1(log_ratio)


def _mmck_state(
    arrival_rate_per_s: float,
    service_rate_per_s: float,
    servers: int,
    capacity: int,
) -> tuple[float, float, float]:
    """Return (P(full), P(not full), mean queue length Lq) for M/M/c/K.

    The stationary weights, taken relative to state n = c, are
    (c!/n!) a^(n-c) for n <= c and rho^(n-c) for c <= n <= K
    (Gross & Harris, sec. 2.5). Their lower part sums to 1/B(c, a) (Erlang
    B), and the upper part is geometric, so the normalising constant takes
    O(c) time however large K is. When rho > 1 everything is rescaled by
    rho^-(K-c) so the geometric part cannot overflow. P(not full) is summed
    from its own terms rather than taken as 1 - P(full), which would lose
    every digit when the system is almost always full.
    """
    lam, mu, c, k = arrival_rate_per_s, service_rate_per_s, servers, capacity
    load = lam / mu
    rho = load / c
    if rho == 0.0:
        return 0.0, 1.0, 0.0
    slots = k - c
    log_rho = math.log(rho)
    # States 0..c-1, relative to state c.
    lower = _inverse_erlang_b(c, load) - 1.0
    if math.isinf(lower):
        # Load so small against many servers that states >= c have
        # probability below the smallest double.
        return 0.0, 1.0, 0.0
    if rho <= 1.0:
        # States c..K-1 have weights rho^0..rho^(slots-1); state K rho^slots.
        below_full = _geometric_sum(log_rho, slots)
        full = math.exp(slots * log_rho)
    else:
        # Rescaled by rho^-slots: state K has weight 1, state K-i weight
        # rho^-i, and the lower states shrink by rho^-slots.
        lower *= math.exp(-slots * log_rho)
        below_full = math.exp(-log_rho) * _geometric_sum(-log_rho, slots)
        full = 1.0
    upper = below_full + full
    total = lower + upper
    queue_length = (upper / total) * _truncated_geometric_mean(log_rho, slots)
    return full / total, (lower + below_full) / total, queue_length


# --------------------------------------------------------------------------
# Public API.
# --------------------------------------------------------------------------


def erlang_b(servers: int, offered_load: float) -> float:
    """Blocking probability of an M/M/c/c loss system (Erlang B).

    B(c, a) = (a^c / c!) / sum_{n=0..c} a^n / n!, evaluated with Jagerman's
    recurrence B(k) = a B(k-1) / (k + a B(k-1)), B(0) = 1, which is stable
    and overflow-free for any number of servers (Kleinrock vol. 1, sec. 3.6;
    Jagerman 1974). The result is insensitive to the service-time
    distribution beyond its mean (M/G/c/c).

    Args:
        servers: Number of servers c (>= 1).
        offered_load: Offered load a = lambda / mu in Erlangs (>= 0).

    Returns:
        Probability in [0, 1] that an arriving customer finds every server
        busy and is lost.

    Raises:
        ValueError: If servers < 1 or not an integer, or offered_load is
            negative or not finite.
    """
    servers = _check_int("servers", servers, 1)
    offered_load = _check_nonnegative("offered_load", offered_load)
    return _erlang_b_unchecked(servers, offered_load)


def erlang_c(servers: int, offered_load: float) -> float:
    """Probability of waiting in an M/M/c queue (Erlang C).

    C(c, a) = c B(c, a) / (c - a (1 - B(c, a))), computed from Erlang B so
    it inherits its stability (Gross & Harris, sec. 2.3). For c = 1 it
    reduces to rho.

    Args:
        servers: Number of servers c (>= 1).
        offered_load: Offered load a = lambda / mu in Erlangs (>= 0 and < c).

    Returns:
        Probability in [0, 1] that an arriving customer has to queue
        (P(Wq > 0)).

    Raises:
        ValueError: If servers < 1 or not an integer, offered_load is
            negative or not finite, or rho = a / c >= 1 (unstable queue).
    """
    servers = _check_int("servers", servers, 1)
    offered_load = _check_nonnegative("offered_load", offered_load)
    _check_stable(offered_load / servers)
    blocking = _erlang_b_unchecked(servers, offered_load)
    return servers * blocking / (servers - offered_load * (1.0 - blocking))


def mmc_mean_wait_s(arrival_rate_per_s: float, service_rate_per_s: float, servers: int) -> float:
    """Mean time in queue of an M/M/c queue.

    Wq = C(c, a) / (c mu - lambda) with a = lambda / mu (Gross & Harris,
    sec. 2.3).

    Args:
        arrival_rate_per_s: Poisson arrival rate lambda, per second (>= 0).
        service_rate_per_s: Exponential service rate mu of one server, per
            second (> 0).
        servers: Number of servers c (>= 1).

    Returns:
        Mean waiting time before service starts, in seconds.

    Raises:
        ValueError: On negative or non-finite rates, mu = 0, servers < 1,
            or rho = lambda / (c mu) >= 1.
    """
    lam = _check_nonnegative("arrival_rate_per_s", arrival_rate_per_s)
    mu = _check_positive("service_rate_per_s", service_rate_per_s)
    c = _check_int("servers", servers, 1)
    load = lam / mu
    return erlang_c(c, load) / (c * mu - lam)


def mmc_mean_sojourn_s(arrival_rate_per_s: float, service_rate_per_s: float, servers: int) -> float:
    """Mean time in system (queue plus service) of an M/M/c queue.

    W = Wq + 1 / mu (Gross & Harris, sec. 2.3).

    Args:
        arrival_rate_per_s: Poisson arrival rate lambda, per second (>= 0).
        service_rate_per_s: Exponential service rate mu of one server, per
            second (> 0).
        servers: Number of servers c (>= 1).

    Returns:
        Mean sojourn time in seconds.

    Raises:
        ValueError: On negative or non-finite rates, mu = 0, servers < 1,
            or rho = lambda / (c mu) >= 1.
    """
    wait = mmc_mean_wait_s(arrival_rate_per_s, service_rate_per_s, servers)
    return wait + 1.0 / float(service_rate_per_s)


def mmck_blocking(
    arrival_rate_per_s: float,
    service_rate_per_s: float,
    servers: int,
    capacity: int,
) -> float:
    """Probability that an arrival finds an M/M/c/K system full.

    By PASTA this is the stationary probability p_K of K customers in the
    system, p_n proportional to a^n / n! for n <= c and
    a^c / c! * rho^(n-c) for c < n <= K (Gross & Harris, sec. 2.5). Valid
    for any rho, including rho >= 1. With K = c it equals Erlang B.

    Args:
        arrival_rate_per_s: Poisson arrival rate lambda, per second (>= 0).
        service_rate_per_s: Exponential service rate mu of one server, per
            second (> 0).
        servers: Number of servers c (>= 1).
        capacity: K, the most customers in the system at once (in service
            plus waiting), so K - c is the number of queue slots (K >= c).

    Returns:
        Blocking probability in [0, 1].

    Raises:
        ValueError: On negative or non-finite rates, mu = 0, servers < 1,
            or capacity < servers.
    """
    lam = _check_nonnegative("arrival_rate_per_s", arrival_rate_per_s)
    mu = _check_positive("service_rate_per_s", service_rate_per_s)
    c = _check_int("servers", servers, 1)
    k = _check_int("capacity", capacity, c)
    p_full, _, _ = _mmck_state(lam, mu, c, k)
    return p_full


def mmck_mean_wait_s(
    arrival_rate_per_s: float,
    service_rate_per_s: float,
    servers: int,
    capacity: int,
) -> float:
    """Mean queueing wait of admitted customers in an M/M/c/K system.

    Wq = Lq / lambda_eff with Lq = sum_{n=c..K} (n - c) p_n and
    lambda_eff = lambda (1 - p_K), Little's law applied to the queue with
    the rate of customers actually admitted (Gross & Harris, sec. 2.5).
    Valid for any rho, including rho >= 1.

    Args:
        arrival_rate_per_s: Poisson arrival rate lambda, per second (>= 0).
        service_rate_per_s: Exponential service rate mu of one server, per
            second (> 0).
        servers: Number of servers c (>= 1).
        capacity: K, the most customers in the system at once (in service
            plus waiting), K >= c.

    Returns:
        Mean waiting time before service of a customer that was not
        blocked, in seconds (0 when K = c or lambda = 0).

    Raises:
        ValueError: On negative or non-finite rates, mu = 0, servers < 1,
            or capacity < servers.
    """
    lam = _check_nonnegative("arrival_rate_per_s", arrival_rate_per_s)
    mu = _check_positive("service_rate_per_s", service_rate_per_s)
    c = _check_int("servers", servers, 1)
    k = _check_int("capacity", capacity, c)
    if lam == 0.0:
        return 0.0
    _, p_admitted, queue_length = _mmck_state(lam, mu, c, k)
    if queue_length == 0.0:
        return 0.0
    return queue_length / (lam * p_admitted)


def mm1_mean_sojourn_s(arrival_rate_per_s: float, service_rate_per_s: float) -> float:
    """Mean time in system of an M/M/1 queue.

    W = 1 / (mu - lambda) (Kleinrock vol. 1, sec. 3.2).

    Args:
        arrival_rate_per_s: Poisson arrival rate lambda, per second (>= 0).
        service_rate_per_s: Exponential service rate mu, per second (> 0).

    Returns:
        Mean sojourn time (wait plus service) in seconds.

    Raises:
        ValueError: On negative or non-finite rates, mu = 0, or
            rho = lambda / mu >= 1.
    """
    lam = _check_nonnegative("arrival_rate_per_s", arrival_rate_per_s)
    mu = _check_positive("service_rate_per_s", service_rate_per_s)
    _check_stable(lam / mu)
    return 1.0 / (mu - lam)


def mm1_mean_wait_s(arrival_rate_per_s: float, service_rate_per_s: float) -> float:
    """Mean time in queue of an M/M/1 queue.

    Wq = rho / (mu - lambda) with rho = lambda / mu (Kleinrock vol. 1,
    sec. 3.2).

    Args:
        arrival_rate_per_s: Poisson arrival rate lambda, per second (>= 0).
        service_rate_per_s: Exponential service rate mu, per second (> 0).

    Returns:
        Mean waiting time before service starts, in seconds.

    Raises:
        ValueError: On negative or non-finite rates, mu = 0, or
            rho = lambda / mu >= 1.
    """
    lam = _check_nonnegative("arrival_rate_per_s", arrival_rate_per_s)
    mu = _check_positive("service_rate_per_s", service_rate_per_s)
    rho = lam / mu
    _check_stable(rho)
    return rho / (mu - lam)


def mg1_mean_wait_s(arrival_rate_per_s: float, mean_service_s: float, service_scv: float) -> float:
    """Mean time in queue of an M/G/1 queue (Pollaczek-Khinchine).

    Wq = rho S (1 + scv) / (2 (1 - rho)) with rho = lambda S, equivalently
    lambda E[S^2] / (2 (1 - rho)) (Kleinrock vol. 1, sec. 5.6). scv = 1
    gives M/M/1, scv = 0 gives M/D/1.

    Args:
        arrival_rate_per_s: Poisson arrival rate lambda, per second (>= 0).
        mean_service_s: Mean service time S, in seconds (> 0).
        service_scv: Squared coefficient of variation of the service time,
            Var[S] / E[S]^2 (>= 0, dimensionless).

    Returns:
        Mean waiting time before service starts, in seconds.

    Raises:
        ValueError: On a negative or non-finite argument, S = 0, or
            rho = lambda S >= 1.
    """
    lam = _check_nonnegative("arrival_rate_per_s", arrival_rate_per_s)
    service = _check_positive("mean_service_s", mean_service_s)
    scv = _check_nonnegative("service_scv", service_scv)
    rho = lam * service
    _check_stable(rho)
    return rho * service * (1.0 + scv) / (2.0 * (1.0 - rho))


def md1_mean_wait_s(arrival_rate_per_s: float, service_time_s: float) -> float:
    """Mean time in queue of an M/D/1 queue (Pollaczek-Khinchine, scv = 0).

    Wq = rho S / (2 (1 - rho)) with rho = lambda S: half the M/M/1 wait at
    the same load (Kleinrock vol. 1, sec. 5.6).

    Args:
        arrival_rate_per_s: Poisson arrival rate lambda, per second (>= 0).
        service_time_s: Constant service time S, in seconds (> 0).

    Returns:
        Mean waiting time before service starts, in seconds.

    Raises:
        ValueError: On a negative or non-finite argument, S = 0, or
            rho = lambda S >= 1.
    """
    return mg1_mean_wait_s(arrival_rate_per_s, service_time_s, 0.0)


def jackson_tandem_sojourn_s(
    arrival_rate_per_s: float, stations: Sequence[tuple[float, int]]
) -> float:
    """Mean end-to-end sojourn time through a tandem of M/M/c stations.

    By Jackson's theorem (Jackson 1957; Kleinrock vol. 1, sec. 4.8) the
    departures of a stable M/M/c queue fed by Poisson arrivals are Poisson
    at the same rate, so each station behaves as an independent M/M/c
    queue and the mean sojourn is the sum of the stations' M/M/c sojourns.

    Args:
        arrival_rate_per_s: Poisson arrival rate lambda into the first
            station, per second (>= 0).
        stations: One (service_rate_per_s, servers) pair per station, in
            visiting order; service_rate_per_s is one server's exponential
            rate, per second (> 0), servers >= 1. Must not be empty.

    Returns:
        Mean time from entering the first station to leaving the last, in
        seconds.

    Raises:
        ValueError: If stations is empty, or on any invalid or unstable
            station (the message names the station index).
    """
    lam = _check_nonnegative("arrival_rate_per_s", arrival_rate_per_s)
    if len(stations) == 0:
        raise ValueError("stations must not be empty")
    total = 0.0
    for index, station in enumerate(stations):
        try:
            service_rate_per_s, servers = station
            total += mmc_mean_sojourn_s(lam, service_rate_per_s, servers)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"station {index} {station!r}: {exc}") from exc
    return total


def retry_amplification(failure_probability: float, retries: int) -> float:
    """Mean attempts per request when each attempt fails independently.

    A request makes attempt k + 1 only if its first k attempts failed, up to
    1 + retries attempts, so E[attempts] = sum_{k=0..n} f^k
    = (1 - f^(n+1)) / (1 - f), and n + 1 when f = 1 (a geometric series;
    see e.g. the Google SRE book, ch. 21, on retry amplification).

    Args:
        failure_probability: Probability f that one attempt fails, in [0, 1].
        retries: Maximum number of retries n after the first attempt (>= 0).

    Returns:
        Expected attempts per request, in [1, n + 1].

    Raises:
        ValueError: If f is outside [0, 1] or retries is negative or not an
            integer.
    """
    f = _check_probability("failure_probability", failure_probability)
    n = _check_int("retries", retries, 0)
    if f == 0.0:
        return 1.0
    if f == 1.0:
        return float(n + 1)
    log_f = math.log(f)
    # expm1 keeps (1 - f^(n+1)) / (1 - f) accurate when f is close to 1.
    return math.expm1((n + 1) * log_f) / math.expm1(log_f)


def retry_failure_probability(failure_probability: float, retries: int) -> float:
    """Probability that a request fails after exhausting its retries.

    All n + 1 independent attempts must fail: f^(n+1).

    Args:
        failure_probability: Probability f that one attempt fails, in [0, 1].
        retries: Maximum number of retries n after the first attempt (>= 0).

    Returns:
        Probability in [0, 1] that the request ultimately fails.

    Raises:
        ValueError: If f is outside [0, 1] or retries is negative or not an
            integer.
    """
    f = _check_probability("failure_probability", failure_probability)
    n = _check_int("retries", retries, 0)
    return f ** (n + 1)


def zone_aware_local_fraction(local_share: float, upstream_share: float) -> float:
    """Fraction of a gateway's requests Envoy zone-aware routing keeps local.

    With per-zone shares of healthy hosts for the local (gateway) cluster
    and the upstream cluster: if upstream_share >= local_share all traffic
    stays in the zone, otherwise upstream_share / local_share of it does
    (Envoy ``zone_aware.rst``, ``load_balancer_impl.cc``; e.g. local 20%,
    upstream 10% -> 50% local). The preconditions Envoy checks (>= 2 zones,
    min_cluster_size, no panic) are the caller's business.

    Args:
        local_share: Share of the local cluster's healthy hosts in this zone,
            in [0, 1].
        upstream_share: Share of the upstream cluster's healthy hosts in this
            zone, in [0, 1].

    Returns:
        Fraction in [0, 1] of requests routed to the local zone.

    Raises:
        ValueError: If either share is outside [0, 1] or not finite.
    """
    local = _check_probability("local_share", local_share)
    upstream = _check_probability("upstream_share", upstream_share)
    if upstream >= local:
        return 1.0
    return upstream / local


def ekm1_mean_in_system(phases: int, arrival_rate_per_s: float, service_rate_per_s: float) -> float:
    """Mean number in system of an E_k/M/1 queue (Erlang-k interarrival times).

    A GI/M/1 queue (Kleinrock, Queueing Systems vol. 1, sec. 6.4): with sigma
    the root in (0, 1) of sigma = A*(mu (1 - sigma)), where A*(s) is the
    Laplace transform of the interarrival time, L = rho / (1 - sigma). For
    Erlang-k interarrivals of rate lambda, A*(s) = (k lambda / (k lambda + s))^k.
    This is what each of k hosts sees when round robin splits a Poisson stream.

    Args:
        phases: k >= 1 (k = 1 is M/M/1).
        arrival_rate_per_s: lambda, the arrival rate at this queue.
        service_rate_per_s: mu.
    """
    k = _check_int("phases", phases, 1)
    lam = _check_positive("arrival_rate_per_s", arrival_rate_per_s)
    mu = _check_positive("service_rate_per_s", service_rate_per_s)
    rho = lam / mu
    _check_stable(rho)

    def gap(sigma: float) -> float:
        return (k * lam / (k * lam + mu * (1.0 - sigma))) ** k - sigma

    # gap(0) > 0 and gap(1 - eps) < 0 for rho < 1: bisection is safe and exact enough.
    lo, hi = 0.0, 1.0 - 1e-15
    for _ in range(200):
        mid = (lo + hi) / 2
        if gap(mid) > 0:
            lo = mid
        else:
            hi = mid
    sigma = (lo + hi) / 2
    return rho / (1.0 - sigma)
