"""Envoy's router rules, one at a time, with exact values."""

from __future__ import annotations

import pytest

from sim.components.request import (
    BACKEND_ERROR,
    BACKEND_OVERFLOW,
    CONNECT_FAILURE,
    OK,
    OVERFLOW_MAX_REQUESTS,
    PER_TRY_TIMEOUT,
    ROUTE_TIMEOUT,
    UPSTREAM_RESET,
)
from sim.components.router import BackOff, RetryRules, retry_classes, retry_limit
from sim.config.models import CircuitBreakers, RetryPolicy
from sim.fleet import Fleet

from .fleet_builders import experiment, run_logged


def test_backoff_bounds_for_retries_one_to_five_follow_envoys_source():
    # base 25 ms, max 250 ms: intervals 25, 50, 100, 200, then 250 (Envoy doubles
    # while the interval is below max / 2, then uses max).
    b = BackOff(25, 250)
    assert [b.next_ms(0.999999) for _ in range(6)] == [24, 49, 99, 199, 249, 249]
    b = BackOff(25, 250)
    assert [b.next_ms(0.0) for _ in range(4)] == [0, 0, 0, 0]
    b = BackOff(25, 250)
    assert [b.next_ms(0.5) for _ in range(4)] == [12, 25, 50, 100]


def test_backoff_default_max_is_ten_times_base_and_base_rounds_to_ms():
    rules = RetryRules(RetryPolicy(retry_on=["5xx"], retry_back_off={"base_interval_s": 0.1}))
    assert (rules.base_ms, rules.max_ms) == (100, 1000)
    assert RetryRules(RetryPolicy(retry_on=["5xx"])).max_ms == 250


@pytest.mark.parametrize("outcome,classes", [
    (BACKEND_ERROR, {"5xx"}),
    (BACKEND_OVERFLOW, {"5xx", "gateway-error"}),
    (PER_TRY_TIMEOUT, {"5xx", "gateway-error", "reset"}),
    (UPSTREAM_RESET, {"5xx", "gateway-error", "reset"}),
    (CONNECT_FAILURE, {"5xx", "gateway-error", "reset", "connect-failure"}),
    (OVERFLOW_MAX_REQUESTS, set()),
    (ROUTE_TIMEOUT, set()),
    (OK, set()),
])
def test_retry_on_classes(outcome, classes):
    assert retry_classes(outcome) == classes


def test_retriable_status_codes():
    rules = RetryRules(RetryPolicy(retry_on=["retriable-status-codes"], retriable_status_codes=[503]))
    assert rules.retriable(BACKEND_OVERFLOW) and not rules.retriable(BACKEND_ERROR)
    assert not rules.retriable(OVERFLOW_MAX_REQUESTS)  # a local overflow reply is never retried
    assert RetryRules(RetryPolicy(retry_on=["gateway-error"])).retriable(BACKEND_ERROR) is False


@pytest.mark.parametrize("active,pending,expected", [
    (0, 0, 3), (10, 0, 3), (15, 0, 3), (20, 0, 4), (100, 0, 20), (99, 1, 20), (1000, 0, 200),
])
def test_retry_budget_arithmetic(active, pending, expected):
    cb = CircuitBreakers(retry_budget={"budget_percent": 20, "min_retry_concurrency": 3})
    assert retry_limit(cb, active, pending) == expected


def test_without_a_budget_max_retries_is_the_limit_and_budget_replaces_it():
    assert retry_limit(CircuitBreakers(max_retries=5), 1000) == 5
    cb = CircuitBreakers(max_retries=5, retry_budget={"budget_percent": 50, "min_retry_concurrency": 0})
    assert retry_limit(cb, 4) == 2


def _retry_fleet(**changes):
    route = {"timeout_s": 10.0, "retry_policy": changes.pop("retry_policy")}
    return experiment(topology__gateways__gw__route=route, **changes)



def test_per_try_timeout_retries_inside_the_route_timeout_then_504():
    # Service 2 s; per-try 0.3 s; 2 retries; back-off base 1 ms, so every back-off is 0 ms.
    exp = _retry_fleet(retry_policy={"retry_on": ["5xx"], "num_retries": 2, "per_try_timeout_s": 0.3,
                                     "retry_back_off": {"base_interval_s": 0.001}},
                       topology__services__api__service_time_s=2.0,
                       topology__services__api__workers=8, duration_s=2.0)
    fleet, log, res = run_logged(exp)
    # Three tries, each opening a connection (2 ms: HTTP/1.1 closes the one a
    # timed-out try was using) and then timing out 0.3 s after it is sent (Envoy
    # starts the per-try timer when the pool is ready); the last one's 504 reaches
    # the client 11 ms later. Back-offs: the first is in [0, 1) ms, so 0; the
    # second in [0, 2) ms, so 0 or 1 ms.
    assert len(log) == 1 and log[0][0] == 1.0 and log[0][2] == "per_try_timeout"
    assert log[0][1] in (0.9281, 0.9291)
    g = res["summary"]["gateway"]["gw"]
    assert g["per_try_timeouts"] == 3 and g["retries"] == 2
    assert res["summary"]["retries"]["by_reason"] == {"per_try_timeout": 2}
    assert res["summary"]["retries"]["gateway_amplification"] == 3.0
    assert fleet.gateways["gw"][0].clusters["api"].rq_active == 0


def test_route_timeout_covers_all_tries_and_nothing_is_retried_after_it():
    exp = experiment(topology__gateways__gw__route={"timeout_s": 1.0, "retry_policy": {
        "retry_on": ["5xx"], "num_retries": 5, "per_try_timeout_s": 0.4,
        "retry_back_off": {"base_interval_s": 0.001}}},
        topology__services__api__service_time_s=3.0, topology__services__api__workers=8, duration_s=3.1)
    fleet, log, res = run_logged(exp)
    # Tries at +0, +0.4, +0.8 s; the route timeout at +1.0 ends the third with a 504.
    assert log == [(1.0, 1.0221, "route_timeout"), (2.0, 1.0221, "route_timeout")]
    g = res["summary"]["gateway"]["gw"]
    assert g["per_try_timeouts"] == 4 and g["retries"] == 4 and g["route_timeouts"] == 2
    # Only the third request's first try (sent at 3.0111) is still in flight.
    assert fleet.gateways["gw"][0].clusters["api"].rq_active == 1


def test_previous_hosts_never_repicks_a_host_while_others_are_available():
    # RANDOM over 3 hosts, every try fails; previous_hosts with enough re-picks.
    exp = experiment(
        topology__gateways__gw__cluster={"lb_policy": "RANDOM"},
        topology__gateways__gw__route={"timeout_s": 10.0, "retry_policy": {
            "retry_on": ["5xx"], "num_retries": 2, "retry_host_predicate": ["previous_hosts"],
            "host_selection_retry_max_attempts": 1000, "retry_back_off": {"base_interval_s": 0.001}}},
        topology__services__api__instances_per_az={"a1": 3},
        topology__services__api__error_probability=1.0,
        workload={"rate_schedule": [{"at_s": 0, "rate_per_s": 50}]}, duration_s=4.0)
    fleet = Fleet(exp)
    seen = []
    gw = fleet.gateways["gw"][0]
    orig = gw._send

    def send(req, cluster, is_retry):
        orig(req, cluster, is_retry)
        if req.tried is not None and len(req.tried) == 3:
            seen.append(tuple(req.tried))

    gw._send = send
    fleet.run()
    assert len(seen) > 100
    assert all(len(set(t)) == 3 for t in seen)


def test_retry_overflow_returns_the_failure_when_max_retries_is_reached():
    exp = experiment(
        topology__gateways__gw__route={"timeout_s": 10.0, "retry_policy": {
            "retry_on": ["5xx"], "num_retries": 3, "retry_back_off": {"base_interval_s": 0.5}}},
        topology__gateways__gw__cluster={"circuit_breakers": {"max_retries": 0}},
        topology__services__api__error_probability=1.0, duration_s=3.5)
    _, log, res = run_logged(exp)
    assert [out for _, _, out in log] == ["backend_error"] * 3
    assert res["summary"]["retries"]["overflow"]["retries"] == 3
    assert res["summary"]["retries"]["gateway_retries"] == 0


def test_max_requests_overflow_is_a_local_503_and_not_retried():
    exp = experiment(
        topology__gateways__gw__route={"timeout_s": 10.0, "retry_policy": {"retry_on": ["5xx"], "num_retries": 3}},
        topology__gateways__gw__cluster={"circuit_breakers": {"max_requests": 1}},
        topology__services__api__service_time_s=1.5, duration_s=3.5)
    _, log, res = run_logged(exp)
    # The first request holds the only slot until 2.5121; the second overflows at once.
    assert log[0] == (2.0, 0.0221, "overflow_max_requests")
    assert res["summary"]["retries"]["overflow"]["max_requests"] == 1


@pytest.mark.slow
def test_envoys_default_max_retries_refuses_first_retries_as_erlang_b_predicts():
    from sim.analytic import erlang_b, retry_amplification

    from .stats import assert_matches, load, replicate

    # retries.yaml (two gateways, 1000 requests/s, each try fails with f = 0.3,
    # two retries) under Envoy's default max_retries: 3 retries scheduled or in
    # flight per cluster, here per gateway. A retry holds its slot from the
    # decision through its back-off to its answer. A failed first retry frees
    # its slot and takes one for the second retry at once, which is therefore
    # never refused: only first retries are, and the slots form a loss system.
    # The random balancer gives each gateway a Poisson stream of lambda/2
    # requests; first tries fail independently and come back after i.i.d.
    # delays (no queue anywhere: the backends are 5% busy), so first retries
    # arrive as a Poisson stream of f lambda/2. Erlang B, insensitive to the
    # holding time's distribution beyond its mean, gives the refused share.
    exp = load("retries.yaml", ["topology.gateways.gw.cluster.circuit_breakers.max_retries=3",
                                "topology.balancers.r1.policy=random",
                                "duration_s=12", "warmup_s=2", "replications=20"])
    f = exp.topology.services["api"].error_probability
    gateways = exp.topology.gateways["gw"].instances
    lam = exp.workload.rate_schedule[0].rate_per_s / gateways
    base_ms = RetryRules(exp.topology.gateways["gw"].route.retry_policy).base_ms
    # A try: a same-AZ hop each way and the mean service time (HTTP/1.1
    # connections are kept, so a retry almost never waits for a connect).
    try_s = 2 * exp.topology.network.same_az_s.mean + exp.topology.services["api"].service_time_s.mean
    # Back-offs floor(u I) ms, u uniform on [0, 1): mean (I - 1)/2 ms, I = base then 2 base.
    b1_s, b2_s = (base_ms - 1) / 2000, (2 * base_ms - 1) / 2000
    hold_s = b1_s + try_s + f * (b2_s + try_s)
    refused = erlang_b(3, lam * f * hold_s)
    unlimited = retry_amplification(f, 2)  # 1 + f + f^2 = 1.39 tries per request
    expected = 1 + (1 - refused) * (unlimited - 1)
    # The breaker matters here: far more than the tolerance below (0.5%).
    assert expected < unlimited - 0.1, f"{expected:.4f} tries per request: the breaker barely acts"
    runs = replicate(exp)
    amp = [r["summary"]["retries"]["amplification"] for r in runs]
    assert_matches(amp, expected, 0.005, "tries per request under max_retries = 3")


def test_enabling_retries_for_one_service_leaves_another_clusters_picks_unchanged():
    """Each cluster draws host picks and back-off jitter from streams of its own.

    Two services behind one gateway pool, both RANDOM: ``api`` fails 30% of
    tries, ``web`` never. Turning the pool's retry policy on makes ``api``
    retry (and draw back-off jitter); ``web`` is never retried, so the host
    each of its requests goes to must be exactly the same with and without
    retries.
    """
    svc = {"instances_per_az": {"a1": 4}, "workers": 4, "queue_limit": 100, "service_time_s": 0.005,
           "request_bytes": 1000, "response_bytes": 5000}
    base = dict(
        topology__services={"api": {**svc, "error_probability": 0.3}, "web": svc},
        topology__gateways__gw__cluster={"lb_policy": "RANDOM"},
        topology__gateways__gw__workers=4,
        workload__arrivals="poisson",
        workload__rate_schedule=[{"at_s": 0, "rate_per_s": 200.0}],
        workload__services={"api": 0.5, "web": 0.5},
        duration_s=20.0,
    )
    picks = {}
    for retries in (False, True):
        route = {"timeout_s": 10.0}
        if retries:
            route["retry_policy"] = {"retry_on": ["5xx"], "num_retries": 2}
        fleet = Fleet(experiment(**base, topology__gateways__gw__route=route))
        web = fleet.gateways["gw"][0].clusters["web"]
        chosen = []
        pick = web.pick

        def logged(pick=pick, chosen=chosen):
            i = pick()
            chosen.append(i)
            return i

        web.pick = logged
        res = fleet.run()
        picks[retries] = chosen
        assert (res["summary"]["retries"]["gateway_retries"] > 0) == retries
    assert len(picks[False]) > 1500
    assert picks[True] == picks[False]
