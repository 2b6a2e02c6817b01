"""The rate-limit filter and Redis: closed forms, exact for deterministic arrivals, CIs for Poisson ones."""

from __future__ import annotations

import math

import pytest

from sim.config.checks import check_experiment
from sim.fleet import Fleet
from tests.fleet_builders import experiment
from tests.stats import assert_matches


def _run(**changes) -> dict:
    return Fleet(experiment(**changes)).run()["summary"]


def _remote(rate_limit: dict, rate: float, duration_s: float = 5.0, **more) -> dict:
    return _run(topology__rate_limit=rate_limit, topology__redis={"az": "a1", "evalsha_time_s": 9.3e-6},
                workload__rate_schedule=[{"at_s": 0, "rate_per_s": rate}], duration_s=duration_s, **more)


def test_off_by_default_no_section():
    s = _run()
    assert "rate_limit" not in s
    assert "rl_admitted" not in Fleet(experiment()).run()["timeseries"]


def test_local_bucket_deterministic_equals_closed_form():
    # 100 arrivals/s at 0.01 s steps; bucket 10, +5 every 0.125 s. Every interval has 12-13 requests,
    # more than a fill, so after the first burst each fill is used up: admitted = 10 + 5 x fills, where
    # the fills counted are those at 0.125 k <= the last request's check. Requests reach the filter
    # 11.1 ms after they are issued (10 ms internet, 1 ms same AZ, 0.1 ms CPU), so the one issued at
    # 4.99 s is not checked within the run: 498 checked, the last at 4.9911 s, fills k = 1..39.
    s = _run(topology__rate_limit={"algorithm": "local", "token_bucket": {"max_tokens": 10, "tokens_per_fill": 5,
                                                                     "fill_interval_s": 0.125}},
             workload__rate_schedule=[{"at_s": 0, "rate_per_s": 100.0}], duration_s=5.0)
    rl = s["rate_limit"]
    assert rl["checked"] == 498
    assert rl["allowed"] == 10 + 5 * 39
    assert rl["denied"] == 498 - (10 + 5 * 39)
    # The last denial (at 4.9911 s) reaches its client 11 ms later, after the run: still in flight.
    assert s["requests"]["failed"]["rate_limited"] == rl["denied"] - 1
    assert rl["global_limit_per_s"] == 40.0 and rl["global_burst"] == 10.0
    assert rl["calls"] == 0 and rl["redis"] == {}


def test_redis_token_bucket_deterministic_equals_closed_form():
    # Arrivals every 1/128 s, limit 64/s, burst 8.25: request k finds F_k = 8.25 + 64 (t_k - t_1)
    # = 8.25 + (k - 1) / 2 tokens' worth minus those taken; while the arrival rate exceeds the
    # refill, admitted after n requests = floor(F_n). Checked within 5 s (11.1 ms after issue, see
    # above): n = 638, so floor(8.25 + 637 / 2).
    rl = _remote({"algorithm": "redis_token_bucket", "limit": 64, "burst": 8.25}, 128.0)["rate_limit"]
    assert rl["checked"] == 638
    assert rl["allowed"] == math.floor(8.25 + 637 / 2)
    assert rl["ideal_admitted"] == rl["allowed"] and rl["admitted_ratio"] == 1.0
    assert rl["redis"]["redis"]["calls"] == 638 and rl["redis"]["redis"]["commands"] == 638
    assert rl["timeouts"] == rl["errors"] == rl["failed_open"] == 0


def test_fixed_window_deterministic_equals_closed_form():
    # 100 arrivals/s, 30 per second allowed: every one-second window (by the gateway's clock) has at
    # least 30 requests (98-100), so each of the 5 windows admits exactly 30; two commands per call.
    rl = _remote({"algorithm": "fixed_window", "requests_per_unit": 30}, 100.0)["rate_limit"]
    assert rl["checked"] == 498
    assert rl["allowed"] == 5 * 30
    assert rl["redis"]["redis"]["commands"] == 2 * rl["redis"]["redis"]["calls"]


def test_redis_utilisation_is_call_rate_times_service_time_exactly_for_constant_times():
    rl = _remote({"algorithm": "redis_token_bucket", "limit": 1000, "burst": 10}, 100.0)["rate_limit"]
    r = rl["redis"]["redis"]
    assert r["utilization"] == pytest.approx(r["calls"] * 9.3e-6 / 5.0, rel=1e-9)


def test_redis_utilisation_poisson_exponential_service_ci():
    # rate x E[S]: Poisson calls, exponential service (mean 0.5 ms) at 200 calls/s: utilisation 0.1.
    values = []
    for seed in range(1, 7):
        s = _run(topology__rate_limit={"algorithm": "redis_token_bucket", "limit": 1000, "burst": 10},
                 topology__redis={"az": "a1", "evalsha_time_s": {"dist": "exponential", "mean": 0.0005}},
                 topology__services__api__workers=8,
                 workload__arrivals="poisson", workload__rate_schedule=[{"at_s": 0, "rate_per_s": 200.0}],
                 duration_s=20.0, warmup_s=1.0, seed=seed)
        r = s["rate_limit"]["redis"]["redis"]
        values.append(r["utilization"] / r["calls_per_s"])  # = mean service time per call
    assert_matches(values, 0.0005, 0.05, "Redis busy time per call (s)")


def test_poisson_admitted_rate_is_the_limit_when_offered_far_above_it():
    # Offered 200/s, limit 50/s, burst 10. Over the window [2, 20) admitted = 50 x 18 + tokens(2) -
    # tokens(20), both in [0, 10]; the bucket refills to its cap only after ~40 idle ms, which at
    # 200/s Poisson happens with probability e^-8 per gap, so admitted/s = 50 within 10/18 /s.
    values = []
    for seed in range(1, 7):
        s = _run(topology__rate_limit={"algorithm": "redis_token_bucket", "limit": 50, "burst": 10},
                 topology__redis={"az": "a1"}, topology__services__api__workers=4,
                 workload__arrivals="poisson", workload__rate_schedule=[{"at_s": 0, "rate_per_s": 200.0}],
                 duration_s=20.0, warmup_s=2.0, seed=seed)
        values.append(s["rate_limit"]["keys"]["global"]["admitted_per_s"])
    assert_matches(values, 50.0, 0.02, "admitted per second")


@pytest.mark.parametrize("deny", [False, True])
def test_redis_down_fail_open_and_fail_closed(deny):
    # Redis refuses calls reaching it in [2, 3) (12.1 ms after issue): the 100 issued at 1.99..2.98 s. Fail-open lets each
    # through; fail-closed answers each 500. The limit is far above the load, so nothing is 429.
    s = _remote({"algorithm": "redis_token_bucket", "limit": 1000, "burst": 100, "failure_mode_deny": deny}, 100.0, duration_s=12.0,
                faults=[{"kind": "redis_down", "at_s": 2.0, "for_s": 1.0}])
    rl = s["rate_limit"]
    assert rl["errors"] == rl["redis"]["redis"]["refused"] == 100
    assert rl["denied"] == 0 and rl["timeouts"] == 0
    if deny:
        assert rl["failed_closed"] == 100 and rl["failed_open"] == 0
        assert s["requests"]["failed"].get("rate_limit_error") == 100
        assert rl["admitted"] == rl["checked"] - 100
    else:
        assert rl["failed_open"] == 100 and rl["failed_closed"] == 0
        assert "rate_limit_error" not in s["requests"]["failed"]
        assert rl["admitted"] == rl["checked"]


def test_redis_slow_times_out_and_fails_open():
    # A slowdown of 10,000 makes each call take 93 ms, beyond the 20 ms timeout: calls time out,
    # requests pass (fail-open), and the server's queue grows while it lasts.
    s = _remote({"algorithm": "redis_token_bucket", "limit": 1000, "burst": 100}, 100.0, duration_s=12.0,
                faults=[{"kind": "redis_slowdown", "at_s": 2.0, "for_s": 1.0, "factor": 10000.0}])
    rl = s["rate_limit"]
    assert rl["timeouts"] > 0 and rl["failed_open"] == rl["timeouts"]
    assert rl["latency_added_ms"]["p99"] == pytest.approx(20.0, rel=0.01)


def test_failover_loses_the_keys_and_the_burst_comes_back():
    # After a failover the bucket starts full again: burst more requests admitted than without it.
    common = {"algorithm": "redis_token_bucket", "limit": 10, "burst": 30}
    base = _remote(common, 100.0, duration_s=12.0)["rate_limit"]
    fo = _remote(common, 100.0, duration_s=12.0,
                 faults=[{"kind": "redis_failover", "at_s": 3.0, "for_s": 0.5}])["rate_limit"]
    assert fo["failed_open"] == 50  # refused during the gap
    # Without the gap's 0.5 s of refill lost to fail-open... the new primary starts at 30 tokens,
    # where the old one would have had ~0 plus what the gap refilled (10 x 0.5 = 5).
    assert fo["allowed"] - base["allowed"] == pytest.approx(30 - 5, abs=1)


def test_blocking_call_holds_the_worker():
    # One worker, Redis in the other AZ (4 ms round trip), 300 requests/s (100/s admitted). Non-blocking,
    # the worker serves 300 x 0.1 ms = 3% of its time; blocking, each request holds it for the round
    # trip too, 300 x 4.1 ms > 1 s per s: the gateway's CPU queue grows without bound.
    rl = {"algorithm": "redis_token_bucket", "limit": 100, "burst": 10}
    common = {"topology__redis": {"az": "a2"}, "workload__rate_schedule": [{"at_s": 0, "rate_per_s": 300.0}],
              "duration_s": 5.0}
    nb = _run(topology__rate_limit=rl, **common)
    bl = _run(topology__rate_limit={**rl, "blocking": True}, **common)
    # Non-blocking: 11.1 ms of hops and CPU, 4 ms to Redis, the backend (the initial burst of 10 queues
    # at its one worker), 11 ms back: tens of milliseconds.
    assert nb["latency_ms"]["p99"] < 100.0
    assert nb["rate_limit"]["latency_added_ms"]["p99"] == pytest.approx(4.0, rel=0.01)
    assert bl["latency_ms"]["p99"] > 500.0
    assert bl["rate_limit"]["checked"] < 0.9 * nb["rate_limit"]["checked"]


def test_checks_refuse_a_remote_limit_without_redis_and_redis_without_az():
    exp = experiment(topology__rate_limit={"algorithm": "fixed_window", "requests_per_unit": 5})
    assert any(p[:3] == ("topology", "rate_limit", "algorithm") for p, _ in check_experiment(exp))
    exp = experiment(topology__rate_limit={"algorithm": "fixed_window", "requests_per_unit": 5},
                     topology__redis={"placement": "one_az"})
    assert any(p == ("topology", "redis", "az") for p, _ in check_experiment(exp))
    exp = experiment(topology__rate_limit={"algorithm": "fixed_window", "requests_per_unit": 5},
                     topology__redis={"az": "a1"}, faults=[{"kind": "redis_down", "at_s": 0, "for_s": 1,
                                                            "target": {"instance": "redis-a9"}}])
    assert any(p == ("faults", 0, "target") for p, _ in check_experiment(exp))


def test_per_az_redis_keeps_calls_in_their_az_and_limits_each_az_alone():
    # A gateway in a1 and one in a2; the balancer keeps each client on its node's AZ (each call picks a node
    # at random), a Redis per AZ with 20/s and a burst of 10 each. Each AZ sees ~100 requests/s, so its
    # bucket never fills up again: it admits floor(10 + 20 x (last - first check)), ~109 of its ~500
    # requests in 5 s (the first and last checks fall within ~30 ms of 0 and 5 s).
    s = _run(topology__gateways={"gw": {"az": "a1", "instances": 1, "workers": 1, "cpu_time_s": 0.0001,
                                        "route": {"timeout_s": 10.0}},
                                 "gw2": {"az": "a2", "instances": 1, "workers": 1, "cpu_time_s": 0.0001,
                                         "route": {"timeout_s": 10.0}}},
             topology__services__api__instances_per_az={"a1": 1, "a2": 1},
             topology__rate_limit={"algorithm": "redis_token_bucket", "limit": 20, "burst": 10,
                                   "global_limit_per_s": 40, "global_burst": 20},
             topology__redis={"placement": "per_az"},
             workload__rate_schedule=[{"at_s": 0, "rate_per_s": 200.0}], duration_s=5.0)
    rl = s["rate_limit"]
    assert set(rl["redis"]) == {"redis-a1", "redis-a2"}
    assert set(rl["redis_bytes_by_az_pair"]) == {"a1->a1", "a2->a2"}  # no call crosses an AZ
    assert all(r["calls"] > 400 for r in rl["redis"].values())
    assert 2 * 108 <= rl["admitted"] <= 2 * 109


def test_keys_per_service_are_separate_buckets():
    # Two services, half the calls each (deterministic arrivals alternate by the mix's uniform draws,
    # so only the totals are exact): each key has its own local bucket of 5 + 5/s.
    s = _run(topology__services__web={"instances_per_az": {"a1": 1}, "workers": 4, "service_time_s": 0.001},
             workload__services={"api": 0.5, "web": 0.5},
             topology__rate_limit={"algorithm": "local", "key": "service",
                                   "token_bucket": {"max_tokens": 5, "tokens_per_fill": 5, "fill_interval_s": 1.0}},
             workload__rate_schedule=[{"at_s": 0, "rate_per_s": 100.0}], duration_s=5.0)
    keys = s["rate_limit"]["keys"]
    assert set(keys) == {"api", "web"}
    for k in ("api", "web"):
        # Fills at 1, 2, 3, 4 s: 5 + 4 x 5 per key (each key sees ~50/s, far above 5/s).
        assert keys[k]["allowed"] == 5 + 4 * 5
