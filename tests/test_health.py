"""Outlier detection, active health checks and panic mode, with exact times.

Most tests build a fleet and drive one gateway's cluster by hand: no client
starts, the outlier detector's interval and the health checker's probes are
the only events, and tries are reported with ``cluster.observe`` at chosen
times. Network hops are 1 ms and the backend's service time 5 ms, so a probe
to an idle host is answered exactly 7 ms after it leaves.
"""

from __future__ import annotations

import pytest

from sim.components.health import (
    CONSECUTIVE_5XX,
    CONSECUTIVE_GATEWAY_FAILURE,
    SUCCESS_RATE,
)
from sim.components.request import BACKEND_ERROR, BACKEND_OVERFLOW, OK, PER_TRY_TIMEOUT
from sim.config.models import Cluster
from sim.fleet import Fleet
from sim.metrics.summary import health_section, health_timeseries

from .fleet_builders import at as _at
from .fleet_builders import experiment, started_cluster
from .stats import assert_matches, replicate

HC = {"timeout_s": 0.5, "interval_s": 1.0, "unhealthy_threshold": 3, "healthy_threshold": 2}


def _cluster(hosts: int = 10, duration_s: float = 1000.0, **cluster):
    return started_cluster(hosts, duration_s, **cluster)


def _fail(c, host: int, n: int = 5, outcome: str = BACKEND_ERROR):
    return lambda: [c.observe(host, outcome) for _ in range(n)]


def _od_log(c):
    return [(round(t, 9), h, what) for t, h, what, _ in c.health.outlier.log]


# ------------------------------------------------------------------ outlier detection


def test_no_detector_without_outlier_detection_or_health_checks():
    fleet = Fleet(experiment())
    c = fleet.gateways["gw"][0].clusters["api"]
    assert c.health is None
    c.observe(0, BACKEND_ERROR)  # the no-op every try calls


def test_consecutive_5xx_count_restarts_on_a_success():
    fleet, c = _cluster(outlier_detection={})
    od = c.health.outlier
    for _ in range(4):
        c.observe(0, BACKEND_ERROR)
    c.observe(0, OK)
    for _ in range(4):
        c.observe(0, PER_TRY_TIMEOUT)  # a timeout is a 504 to the detector
    assert not c.health.ejected[0] and od.c5xx[0] == 4
    c.observe(0, BACKEND_ERROR)
    assert c.health.ejected[0]
    assert od.ejections == {CONSECUTIVE_5XX: 1} and od.c5xx[0] == 0


def test_gateway_failures_are_detected_but_not_enforced_by_default():
    fleet, c = _cluster(outlier_detection={"consecutive_5xx": 10})
    od = c.health.outlier
    _fail(c, 0, 5, BACKEND_OVERFLOW)()  # 503s: five gateway failures
    assert od.detected == {CONSECUTIVE_GATEWAY_FAILURE: 1} and not c.health.ejected[0]
    # A 500 is a 5xx but not a gateway failure: it restarts that count only.
    _fail(c, 1, 4, BACKEND_OVERFLOW)()
    c.observe(1, BACKEND_ERROR)
    assert od.cgw[1] == 0 and od.c5xx[1] == 5

    fleet, c = _cluster(outlier_detection={"consecutive_5xx": 10, "enforcing_consecutive_gateway_failure": 100})
    _fail(c, 0, 5, BACKEND_OVERFLOW)()
    assert c.health.ejected[0] and c.health.outlier.ejections == {CONSECUTIVE_GATEWAY_FAILURE: 1}


def test_unejection_waits_for_the_interval_tick_after_the_ejection_time():
    fleet, c = _cluster(outlier_detection={})
    _at(fleet, 3.0, _fail(c, 0))
    fleet.ctx.run(100)
    # Ejected at 3 s for 30 s: the ticks at 10, 20 and 30 s are too early, 40 s is not.
    assert _od_log(c) == [(3.0, 0, "eject"), (40.0, 0, "uneject")]


def test_ejection_time_multiplier_grows_and_is_capped():
    fleet, c = _cluster(outlier_detection={}, duration_s=3000.0)
    od = c.health.outlier
    # Eject host 0 at 0.5 s and again half a second after every return.
    fleet.ctx.run(0.5)
    _fail(c, 0)()
    for _ in range(11):
        while c.health.ejected[0]:
            fleet.ctx.run(fleet.ctx.now + 10)
        fleet.ctx.run(od.log[-1][0] + 0.5)
        _fail(c, 0)()
    returns = [round(e[0], 9) for e in od.log if e[2] == "uneject"]
    # Ejection k lasts min(30 k, 300) s from t + 0.5 and ends at the next tick,
    # t + 30 k + 10: no decay in between (the tick that returns a host does not
    # count it as an interval in service).
    assert returns == [40.0, 110.0, 210.0, 340.0, 500.0, 690.0, 910.0, 1160.0, 1440.0, 1750.0, 2060.0]
    # Envoy raises the multiplier only while multiplier x base < max + base: it stops at 11.
    assert od.multiplier[0] == 11 and od.num_ejections[0] == 12
    assert od.ejection_time_s(0) == 300.0


def test_multiplier_decays_by_one_per_interval_in_service():
    fleet, c = _cluster(outlier_detection={})
    od = c.health.outlier
    _at(fleet, 0.5, _fail(c, 0))
    _at(fleet, 40.5, _fail(c, 0))  # back at 40, out again: multiplier 2, 60 s
    fleet.ctx.run(110.5)
    assert _od_log(c)[-1] == (110.0, 0, "uneject") and od.multiplier[0] == 2
    fleet.ctx.run(119.0)
    assert od.multiplier[0] == 2  # the 110 s tick returned it: not yet an interval in service
    fleet.ctx.run(120.5)
    assert od.multiplier[0] == 1
    fleet.ctx.run(130.5)
    assert od.multiplier[0] == 0
    fleet.ctx.run(140.5)
    assert od.multiplier[0] == 0
    _at(fleet, 145.0, _fail(c, 0))
    fleet.ctx.run(200.0)
    # Multiplier 1 again: 30 s, over at the first tick at least 30 s later.
    assert _od_log(c)[-2:] == [(145.0, 0, "eject"), (180.0, 0, "uneject")]


def test_max_ejection_percent_with_three_hosts_ejects_none_unless_one_is_always_allowed():
    # Envoy >= 1.31: eject only if 100 x (ejected + 1) / hosts <= max_ejection_percent.
    fleet, c = _cluster(hosts=3, outlier_detection={})
    _fail(c, 0)()
    assert c.health.ejected == [False, False, False] and c.health.outlier.overflow == 1

    fleet, c = _cluster(hosts=3, outlier_detection={"always_eject_one_host": True})
    _fail(c, 0)()
    _fail(c, 1)()
    assert c.health.ejected == [True, False, False] and c.health.outlier.overflow == 1

    fleet, c = _cluster(hosts=3, outlier_detection={"max_ejection_percent": 34})
    _fail(c, 0)()
    _fail(c, 1)()
    assert c.health.ejected == [True, False, False]


def test_max_ejection_percent_with_fifty_hosts_ejects_five():
    fleet, c = _cluster(hosts=50, outlier_detection={})
    for host in range(50):
        _fail(c, host)()
    assert sum(c.health.ejected) == 5 and c.health.ejected[:5] == [True] * 5
    assert c.health.outlier.overflow == 45
    # The overflowing hosts' counts restarted: one more error ejects nothing new.
    c.observe(10, BACKEND_ERROR)
    assert sum(c.health.ejected) == 5


def test_success_rate_ejection_uses_mean_minus_1_9_stdev_of_the_last_interval():
    # Envoy's own example: rates {50, 100, 100, 100, 100}: mean 90, stdev 20, threshold 52.
    fleet, c = _cluster(hosts=5, outlier_detection={"max_ejection_percent": 20})

    def traffic(volume):
        def act():
            for host in range(5):
                for k in range(volume):
                    c.observe(host, BACKEND_ERROR if host == 0 and k % 2 else OK)
        return act

    _at(fleet, 5.0, traffic(99))  # below success_rate_request_volume: not judged
    fleet.ctx.run(10.5)
    assert not any(c.health.ejected)
    _at(fleet, 15.0, traffic(100))
    fleet.ctx.run(20.5)
    assert _od_log(c) == [(20.0, 0, "eject")]
    assert c.health.outlier.ejections == {SUCCESS_RATE: 1}


# ------------------------------------------------------------------ panic and the balancer


def _picks(c, n=4000):
    return {c.pick() for _ in range(n)}


@pytest.mark.parametrize("policy", ["ROUND_ROBIN", "RANDOM", "LEAST_REQUEST"])
def test_panic_threshold_switches_between_healthy_hosts_and_all(policy):
    fleet, c = _cluster(hosts=4, lb_policy=policy, health_check=HC)
    h = c.health
    assert _picks(c) == {0, 1, 2, 3}
    h.set_hc_failed(0, True)  # 75% healthy
    assert _picks(c) == {1, 2, 3} and not h.panic
    h.set_hc_failed(1, True)  # 50%: not below the threshold
    assert _picks(c) == {2, 3} and not h.panic
    h.set_hc_failed(2, True)  # 25% < 50%: panic, every host
    assert _picks(c) == {0, 1, 2, 3} and h.panic
    h.set_hc_failed(1, False)
    h.set_hc_failed(2, False)
    assert _picks(c) == {1, 2, 3} and not h.panic


def test_panic_threshold_zero_disables_panic_and_a_higher_one_panics_sooner():
    fleet, c = _cluster(hosts=4, health_check=HC, common_lb_config={"healthy_panic_threshold": 0})
    for host in range(3):
        c.health.set_hc_failed(host, True)
    assert _picks(c) == {3} and not c.health.panic
    fleet, c = _cluster(hosts=4, health_check=HC, common_lb_config={"healthy_panic_threshold": 80})
    c.health.set_hc_failed(0, True)  # 75% < 80%
    assert _picks(c) == {0, 1, 2, 3} and c.health.panic


def test_round_robin_over_the_healthy_hosts_continues_its_position_and_panic_has_its_own():
    fleet, c = _cluster(hosts=4, health_check=HC)
    rr = c.selector.policy
    rr._next = rr._panic_next = 0
    c.health.set_hc_failed(1, False)  # a refresh with every host healthy: the policy's own pick
    assert [c.pick() for _ in range(5)] == [0, 1, 2, 3, 0]
    c.health.set_hc_failed(2, True)
    assert [c.pick() for _ in range(4)] == [1, 3, 0, 1]  # hosts [0, 1, 3] from position 1
    c.health.set_hc_failed(0, True)
    c.health.set_hc_failed(1, True)  # 25%: panic, the all-hosts source from its own start
    assert [c.pick() for _ in range(5)] == [0, 1, 2, 3, 0]


def test_weighted_round_robin_keeps_its_weights_among_the_healthy_hosts():
    exp = experiment(topology__gateways__gw__cluster={"health_check": HC},
                     topology__services__api__instances_per_az={"a1": 4},
                     topology__services__api__instance_overrides={"api-a1-0": {"lb_weight": 3}})
    c = Fleet(exp).gateways["gw"][0].clusters["api"]
    c.health.set_hc_failed(1, True)
    picks = [c.pick() for _ in range(500)]
    assert [picks.count(i) for i in range(4)] == [300, 0, 100, 100]
    c.health.set_hc_failed(2, True)
    c.health.set_hc_failed(3, True)  # 25% healthy: panic, all hosts by weight
    picks = [c.pick() for _ in range(600)]
    assert [picks.count(i) for i in range(4)] == [300, 100, 100, 100]


def test_route_timeouts_count_as_504s_for_the_detector():
    exp = experiment(
        topology__gateways__gw__route={"timeout_s": 0.5},
        topology__gateways__gw__cluster={"outlier_detection": {"max_ejection_percent": 100}},
        topology__services__api__service_time_s=2.0, topology__services__api__workers=100,
        workload={"rate_schedule": [{"at_s": 0, "rate_per_s": 10}]}, duration_s=3.0)
    fleet = Fleet(exp)
    res = fleet.run()
    od = fleet.gateways["gw"][0].clusters["api"].health.outlier
    # A 504 is a gateway failure too: both counts reach 5 on the fifth timeout;
    # the gateway-failure ejection is not enforced, the 5xx one is.
    assert od.detected == {CONSECUTIVE_GATEWAY_FAILURE: 1, CONSECUTIVE_5XX: 1}
    assert res["summary"]["outlier"]["by_reason"] == {CONSECUTIVE_5XX: 1}
    # The only host is ejected: 0% healthy is panic, so it still gets every request.
    assert fleet.gateways["gw"][0].clusters["api"].health.panic
    req = res["summary"]["requests"]
    assert req["succeeded"] == 0 and set(req["failed"]) == {"route_timeout"}


def test_p2c_never_picks_an_ejected_host_outside_panic():
    fleet, c = _cluster(hosts=10, lb_policy="LEAST_REQUEST", outlier_detection={"max_ejection_percent": 20})
    c.active[:] = [50] * 10
    c.active[3] = c.active[7] = 0  # the idlest hosts, the ones P2C would love
    _fail(c, 3)()
    _fail(c, 7)()
    assert [i for i, e in enumerate(c.health.ejected) if e] == [3, 7]
    # Host 7's ejection joined the cluster's update merge window: the balancer sees it 1 s later.
    fleet.ctx.run(1.5)
    assert _picks(c, 20000) == {0, 1, 2, 4, 5, 6, 8, 9}
    fleet.ctx.run(31.5)  # both back at the 30 s tick; host 7's return, again merged, reaches it at 31 s
    assert not any(c.health.ejected)
    assert {3, 7} <= _picks(c, 200)


def test_p2c_in_a_run_sends_nothing_to_an_ejected_host():
    exp = experiment(
        topology__gateways__gw__cluster={"lb_policy": "LEAST_REQUEST",
                                         "outlier_detection": {"max_ejection_percent": 34}},
        topology__services__api__instances_per_az={"a1": 3}, topology__services__api__workers=4,
        workload={"rate_schedule": [{"at_s": 0, "rate_per_s": 300}]},
        faults=[{"kind": "error_burst", "at_s": 2, "for_s": 5, "error_probability": 1.0,
                 "target": {"instance": "api-a1-0"}}],
        duration_s=60.0)
    fleet = Fleet(exp)
    gw = fleet.gateways["gw"][0]
    c = gw.clusters["api"]
    sent_while_ejected = []
    orig = gw._send

    def send(req, cluster, is_retry):
        orig(req, cluster, is_retry)
        a = req.attempt
        if a is not None and cluster.health.ejected[a.host] and not cluster.health.panic:
            sent_while_ejected.append(a.host)

    gw._send = send
    res = fleet.run()
    assert c.health.outlier.ejections == {CONSECUTIVE_5XX: 1}
    t_eject, t_back = (e[0] for e in c.health.outlier.log)
    assert 2.0 < t_eject < 2.1 and t_back == 40.0
    assert sent_while_ejected == []
    assert res["summary"]["outlier"] == {"ejections": 1, "by_reason": {CONSECUTIVE_5XX: 1},
                                         "detected": {CONSECUTIVE_5XX: 1}, "overflow": 0}
    ts = res["timeseries"]
    assert ts["ejected_hosts"][1] == 0.0 and ts["ejected_hosts"][5:40] == [1.0] * 35 and ts["ejected_hosts"][41] == 0.0
    assert ts["healthy_hosts"][10] == 2.0


# ------------------------------------------------------------------ active health checks


def test_probe_times_unhealthy_after_three_failures_and_healthy_after_two_passes():
    fleet, c = _cluster(hosts=3, health_check=HC, duration_s=12.0)
    hc = c.health.checker
    hc.traffic = True  # as if the cluster had sent requests: interval_s, not no_traffic_interval_s
    backend = c.hosts[0]
    _at(fleet, 2.5, backend.crash)
    _at(fleet, 7.5, backend.restart)
    fleet.ctx.run(12.0)
    # Probes leave every 1.007 s (7 ms answer + 1 s). From 3.021 the host refuses:
    # the refusal is back 2 ms later (failures at 3.023, 4.025, 5.027: unhealthy).
    # It is up again for the probe at 8.031 (pass at 8.038) and 9.038 (pass at 9.045).
    assert [(round(t, 9), h, s) for t, h, s in hc.transitions] == [(5.027, 0, "unhealthy"), (9.045, 0, "healthy")]
    assert hc.probes_by_host == [12, 12, 12] and hc.failures == 5 and hc.timeouts == 0
    parts = fleet.results()  # the result hooks, as the summary reads them
    healthy = health_timeseries(parts.health, 12)["healthy_hosts"]
    assert healthy[4] == 3.0 and healthy[6] == 2.0 and healthy[10] == 3.0
    assert healthy[5] == pytest.approx(3 * 0.027 + 2 * 0.973)
    assert [h["health_check"]["probes_by_host"] for h in parts.health] == [[12, 12, 12]]
    assert health_section(parts.health, 12.0)[1]["probes"] == 36


def test_an_http_failure_marks_unhealthy_at_once_unless_its_status_is_retriable():
    fleet, c = _cluster(hosts=3, health_check=HC, duration_s=12.0)
    c.health.checker.traffic = True
    _at(fleet, 2.5, lambda: c.hosts[0].set_error_burst(1.0))
    fleet.ctx.run(12.0)
    # The probe leaving at 3.021 is served and failed (500) at 3.027, back at 3.028.
    assert [(round(t, 9), s) for t, _, s in c.health.checker.transitions] == [(3.028, "unhealthy")]

    fleet, c = _cluster(hosts=3, health_check={**HC, "http_health_check": {"retriable_statuses": [500]}},
                        duration_s=12.0)
    c.health.checker.traffic = True
    _at(fleet, 2.5, lambda: c.hosts[0].set_error_burst(1.0))
    fleet.ctx.run(12.0)
    assert [(round(t, 9), s) for t, _, s in c.health.checker.transitions] == [(5.042, "unhealthy")]


def test_a_probe_slower_than_the_timeout_fails_and_its_work_is_wasted():
    fleet, c = _cluster(hosts=3, health_check=HC, duration_s=8.0)
    hc = c.health.checker
    hc.traffic = True
    _at(fleet, 2.5, lambda: setattr(c.hosts[0], "slowdown_factor", 200.0))  # 1 s per probe
    fleet.ctx.run(8.0)
    # Timeouts at 3.021 + 0.5, then every 1.5 s: unhealthy at the third, 6.521.
    assert [(round(t, 9), s) for t, _, s in hc.transitions] == [(6.521, "unhealthy")]
    assert hc.timeouts == 3
    assert c.hosts[0].wasted_s == pytest.approx(3.0)  # each probe held a worker 1 s for nothing


def test_no_traffic_interval_is_used_until_the_cluster_has_sent_a_request():
    fleet, c = _cluster(hosts=1, health_check={**HC, "no_traffic_interval_s": 5.0}, duration_s=20.0)
    fleet.ctx.run(20.0)
    hc = c.health.checker
    assert hc.probes_by_host == [4]  # at 0, 5.007, 10.014, 15.021
    # Traffic seen: the next interval after the check that notices it is interval_s.
    fleet, c = _cluster(hosts=1, health_check={**HC, "no_traffic_interval_s": 5.0}, duration_s=20.0)
    _at(fleet, 3.0, lambda: c.sent.__setitem__(0, 1))
    fleet.ctx.run(20.0)
    assert c.health.checker.probes_by_host == [1 + 1 + 14]  # 0, 5.007, then every 1.007 s


def test_a_passing_health_check_returns_an_ejected_host():
    fleet, c = _cluster(hosts=10, health_check=HC, outlier_detection={})
    c.health.checker.traffic = True
    _at(fleet, 2.5, _fail(c, 0))
    fleet.ctx.run(4.0)
    # Ejected at 2.5; the probe answered at 3.028 passes and returns it.
    assert _od_log(c) == [(2.5, 0, "eject"), (3.028, 0, "uneject")]

    fleet, c = _cluster(hosts=10, health_check=HC,
                        outlier_detection={"successful_active_health_check_uneject_host": False})
    c.health.checker.traffic = True
    _at(fleet, 2.5, _fail(c, 0))
    fleet.ctx.run(4.0)
    assert _od_log(c) == [(2.5, 0, "eject")]


def test_config_follows_envoys_defaults_and_refuses_a_max_below_the_base():
    od = Cluster(outlier_detection={}).outlier_detection
    assert (od.consecutive_5xx, od.interval_s, od.base_ejection_time_s, od.max_ejection_percent,
            od.enforcing_consecutive_gateway_failure, od.success_rate_stdev_factor) == (5, 10.0, 30.0, 10, 0, 1900)
    assert Cluster().common_lb_config.healthy_panic_threshold == 50.0
    with pytest.raises(ValueError, match="cannot be smaller than base_ejection_time_s"):
        Cluster(outlier_detection={"max_ejection_time_s": 10})
    with pytest.raises(ValueError, match="timeout_s"):
        Cluster(health_check={"interval_s": 1, "unhealthy_threshold": 1, "healthy_threshold": 1})


# ------------------------------------------------------------------ statistical


@pytest.mark.slow
def test_probe_rate_is_hosts_times_gateways_over_the_mean_check_cycle():
    # 10 hosts, 3 gateways. A host's next probe leaves interval + jitter after
    # the previous check ends, and a check of an idle host takes the 7 ms
    # round trip, so the mean cycle is 1 s + E[jitter] + 7 ms. Jitters are
    # whole milliseconds: 50% of 1000 ms gives U{0..499} (mean 249.5 ms) and
    # interval_jitter 200 ms gives U{0..199} (mean 99.5 ms). Backends have 8
    # workers for 5 requests a second: a probe never waits.
    hc = {**HC, "interval_jitter_percent": 50, "interval_jitter_s": 0.2, "initial_jitter_s": 1.0,
          "no_traffic_interval_s": 1.0}
    exp = experiment(
        topology__gateways__gw__instances=3,
        topology__gateways__gw__cluster={"health_check": hc},
        topology__services__api__instances_per_az={"a1": 10}, topology__services__api__workers=8,
        workload={"rate_schedule": [{"at_s": 0, "rate_per_s": 5}]},
        duration_s=320.0, warmup_s=20.0, replications=10)
    cycle_s = 1.0 + 0.2495 + 0.0995 + 0.007
    runs = replicate(exp)
    rates = [r["summary"]["health_checks"]["probe_rate_per_s"] for r in runs]
    assert_matches(rates, 10 * 3 / cycle_s, 0.005, "health-check probes per second")
    assert all(r["summary"]["health_checks"]["failures"] == 0 for r in runs)
