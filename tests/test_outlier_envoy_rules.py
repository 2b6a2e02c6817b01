"""When Envoy's balancer sees an ejection: the cluster manager's update merge window.

Envoy 1.40 flags an ejected host at once, but its workers' balancers get the
new host set through ``ClusterManagerImpl::scheduleUpdate``: at once if the
cluster's last delivery is more than ``update_merge_window`` (1 s) old, else
when a timer armed for one window by the first waiting update fires. On the
reference fleet (3 hosts, 300 requests/s, consecutive_5xx 5, interval 1 s,
base_ejection_time 3 s) the second ejection of a failing host, 50 ms after
the tick that returned it, left it in the round robin for 1.0 s more:
about 100 more failures, as the run test below reproduces.

Hand-driven tests follow tests/test_health.py: no client, tries reported with
``cluster.observe`` at chosen times (binary-exact ones, so a window's end is
an exact event time).
"""

from __future__ import annotations

from sim.components.request import BACKEND_ERROR
from sim.config.models import CommonLbConfig
from sim.fleet import Fleet

from .fleet_builders import at as _at
from .fleet_builders import experiment, started_cluster

# The validation scenario's detector (experiments/reference/e_outlier.yaml).
OD = {"consecutive_5xx": 5, "interval_s": 1.0, "base_ejection_time_s": 3.0, "max_ejection_percent": 50}


# Envoy's default update_merge_window, the schema's default.
UPDATE_MERGE_WINDOW_S = CommonLbConfig().update_merge_window_s


def _cluster(hosts: int = 3, **outlier):
    return started_cluster(hosts, 100.0, outlier_detection={**OD, **outlier})


def _fail(c, host: int, n: int = 5):
    return lambda: [c.observe(host, BACKEND_ERROR) for _ in range(n)]


def _picks(c, n: int = 300) -> set[int]:
    return {c.pick() for _ in range(n)}


def _od_log(c):
    return [(round(t, 9), h, what) for t, h, what, _ in c.health.outlier.log]


def test_envoys_default_window_is_one_second():
    assert UPDATE_MERGE_WINDOW_S == 1.0


def test_a_second_ejection_soon_after_the_return_reaches_the_balancer_a_window_later():
    fleet, c = _cluster()
    h = c.health
    _at(fleet, 1.25, _fail(c, 2))
    fleet.ctx.run(1.5)
    # The cluster's first update: out of any window, the host leaves the balancer at once.
    assert h.ejected[2] and _picks(c) == {0, 1}
    # 3 s are over at 4.25: the 5 s tick returns it, 3.75 s after the last delivery: at once.
    fleet.ctx.run(5.125)
    assert _od_log(c) == [(1.25, 2, "eject"), (5.0, 2, "uneject")]
    assert _picks(c) == {0, 1, 2}
    _at(fleet, 5.25, _fail(c, 2))
    fleet.ctx.run(5.5)
    # Ejected again (the detector's flag is set) but 0.25 s after the last
    # delivery: the balancer keeps the host until the merge timer, 6.25 s.
    assert h.ejected[2] and h.outlier.num_ejections[2] == 2
    assert _picks(c) == {0, 1, 2}
    fleet.ctx.run(6.25)  # events at 6.25 not yet run
    assert _picks(c) == {0, 1, 2}
    fleet.ctx.run(6.25 + 1e-6)
    assert _picks(c) == {0, 1}
    assert h.deliveries == [(1.25, False), (5.0, False), (6.25, True)]
    assert (h.cluster_updated, h.cluster_updated_via_merge, h.update_out_of_merge_window,
            h.update_merge_cancelled) == (2, 1, 2, 0)
    # The detector's view (the health time series) changed at 5.25, not 6.25.
    assert [(t, ej) for t, _, ej, _, _ in h.changes] == [(0.0, 0), (1.25, 1), (5.0, 0), (5.25, 1)]


def test_errors_while_the_balancer_still_sends_do_not_eject_twice():
    fleet, c = _cluster()
    _at(fleet, 1.25, _fail(c, 2))
    _at(fleet, 5.25, _fail(c, 2))
    _at(fleet, 5.5, _fail(c, 2, 50))  # the tries the balancer still sends it: the count runs past 5
    fleet.ctx.run(6.5)
    od = c.health.outlier
    assert od.num_ejections[2] == 2 and od.c5xx[2] == 50
    assert od.detected == {"consecutive_5xx": 2}


def test_a_return_soon_after_a_delivery_waits_a_window_too():
    # base 0.5 s, interval 0.25 s: the return comes 0.625 s after the ejection's delivery.
    fleet, c = _cluster(base_ejection_time_s=0.5, interval_s=0.25)
    h = c.health
    _at(fleet, 1.125, _fail(c, 2))
    fleet.ctx.run(2.5)
    assert _od_log(c) == [(1.125, 2, "eject"), (1.75, 2, "uneject")]
    assert not h.ejected[2] and _picks(c) == {0, 1}
    fleet.ctx.run(2.75 + 1e-6)
    assert _picks(c) == {0, 1, 2}
    assert h.deliveries == [(1.125, False), (2.75, True)]


def test_the_window_is_whole_milliseconds_and_strict():
    # 10 hosts, 20%: two ejections allowed. Envoy delivers at once only when
    # the truncated milliseconds since the last delivery exceed 1000.
    for second_s, merged in ((3.0, True), (3.0009, True), (3.001, False)):
        fleet, c = _cluster(hosts=10, max_ejection_percent=20)
        _at(fleet, 2.0, _fail(c, 0))
        _at(fleet, second_s, _fail(c, 1))
        fleet.ctx.run(5.0)
        times = [round(t, 9) for t, _ in c.health.deliveries]
        assert times == [2.0, round(second_s + UPDATE_MERGE_WINDOW_S, 9) if merged else second_s], second_s


def test_an_update_out_of_the_window_cancels_the_pending_merge():
    fleet, c = _cluster(hosts=10, max_ejection_percent=30)
    h = c.health
    _at(fleet, 2.0, _fail(c, 0))  # at once
    _at(fleet, 2.875, _fail(c, 1))  # waits: the timer is due at 3.875
    _at(fleet, 3.25, _fail(c, 2))  # 1.25 s after the last delivery: at once, with host 1's
    fleet.ctx.run(5.0)
    assert h.deliveries == [(2.0, False), (3.25, False)]
    assert h.update_merge_cancelled == 1 and h.cluster_updated_via_merge == 0
    assert _picks(c, 2000) == {3, 4, 5, 6, 7, 8, 9}


def test_a_direct_state_change_is_delivered_at_once_and_cancels_the_merge():
    fleet, c = _cluster(hosts=10, max_ejection_percent=30)
    h = c.health
    _at(fleet, 2.0, _fail(c, 0))
    _at(fleet, 2.5, _fail(c, 1))  # waits for 3.5
    _at(fleet, 2.75, lambda: h.set_hc_failed(5, True))  # not mergeable
    fleet.ctx.run(2.75 + 1e-6)
    assert _picks(c, 2000) == {2, 3, 4, 6, 7, 8, 9}
    fleet.ctx.run(5.0)
    assert h.deliveries == [(2.0, False), (2.75, False)] and h.update_merge_cancelled == 1


def test_in_a_run_the_failing_host_keeps_its_share_for_a_window_after_its_second_ejection():
    # The reference scenario with deterministic arrivals: 300 requests/s
    # round robin over 3 hosts, api-a1-2 failing every request from 1 s.
    exp = experiment(
        topology__gateways__gw__cluster={"outlier_detection": OD},
        topology__gateways__gw__workers=4,
        topology__services__api__instances_per_az={"a1": 3}, topology__services__api__workers=4,
        workload={"arrivals": "deterministic", "rate_schedule": [{"at_s": 0, "rate_per_s": 300}]},
        faults=[{"kind": "error_burst", "at_s": 1.0, "for_s": 9.0, "error_probability": 1.0,
                 "target": {"instance": "api-a1-2"}}],
        duration_s=10.0)
    fleet = Fleet(exp)
    gw = fleet.gateways["gw"][0]
    c = gw.clusters["api"]
    sent_to_2: list[float] = []
    orig = gw._send

    def send(req, cluster, is_retry):
        orig(req, cluster, is_retry)
        if req.attempt is not None and req.attempt.host == 2:
            sent_to_2.append(fleet.ctx.now)

    gw._send = send
    res = fleet.run()
    h = c.health
    (t1, _, e1, _), (t2, _, u1, _), (t3, _, e2, _) = h.outlier.log
    assert (e1, u1, e2) == ("eject", "uneject", "eject")
    assert 1.0 < t1 < 1.1 and t2 == 5.0 and 5.0 < t3 < 5.1
    assert h.deliveries == [(t1, False), (5.0, False), (t3 + UPDATE_MERGE_WINDOW_S, True)]
    # Every third request from the return at 5 s to the delivery a window
    # after the second ejection: (t3 + 1 - 5) x 100 per second, within one.
    after_return = [t for t in sent_to_2 if t > 5.0]
    assert max(after_return) < t3 + UPDATE_MERGE_WINDOW_S
    assert abs(len(after_return) - (t3 + UPDATE_MERGE_WINDOW_S - 5.0) * 100) <= 1
    failed = res["summary"]["requests"]["failed"]
    # 5 to eject it the first time, about 105 in the second bout (the
    # simulator predicted 10 in all before it modelled the window).
    assert 105 <= sum(failed.values()) <= 115
