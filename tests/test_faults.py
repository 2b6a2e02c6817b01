"""Deterministic tests of faults and backend overload options: constant distributions, exact logs.

Times in the comments follow tests/fleet_builders.py's BASE: a call issued at
t reaches the balancer node at t + 10 ms (internet), the gateway at + 1 ms,
leaves its CPU at + 0.1 ms, reaches the backend at t + 12.1 ms; after service
the answer takes 1 + 1 + 10 ms back, so an unqueued call with a 5 ms service
takes 29.1 ms. The gateway's upstream protocol is HTTP/1.1 (the default): a
try that finds none of the gateway's connections to its host free opens one
first, which costs a round trip (1 + 1 ms same-AZ), so the gateway's first
call takes 31.1 ms and so does any call that finds every connection busy
(its predecessors queued at the backend). A connection is reused once its
response is complete; a try that is reset (a timeout, a crash) closes it, and
a host that is down refuses a new one after the round trip. A run with faults
must go on 8 s past the last fault's end (the recovery analysis needs it), so
the runs below are longer than their interesting part.
"""

from __future__ import annotations

import pytest
from ruamel.yaml import YAML

from sim.components.backend import BackendInstance
from sim.components.request import (
    BACKEND_ERROR,
    CONNECT_FAILURE,
    DROPPED_EXPIRED,
    GATEWAY_RESET,
    NO_HEALTHY_UPSTREAM,
    OK,
    ROUTE_TIMEOUT,
    UPSTREAM_RESET,
    Attempt,
)
from sim.components.workload import ClientPopulation
from sim.config import ConfigError, Experiment, Service, dump_resolved
from sim.config.checks import check_experiment
from sim.config.loader import validate
from sim.engine import SimContext
from sim.fleet import Fleet, FleetError

from .fleet_builders import BASE, experiment, run_logged


def fault(kind: str, at_s: float, for_s: float, **fields) -> dict:
    return {"kind": kind, "at_s": at_s, "for_s": for_s, **fields}


def calls(*entries):
    """Log entries for calls issued at whole seconds: (t, latency, outcome)."""
    return [(float(t), lat, out) for t, lat, out in entries]


# ------------------------------------------------------------------ slowdown


def test_slowdown_multiplies_service_times_started_inside_the_window_only():
    exp = experiment(faults=[fault("backend_slowdown", 2.5, 2.0, factor=3.0)], duration_s=13)
    fleet, log, res = run_logged(exp)
    # Call 1 opens the connection (2 ms): 31.1 ms; the others reuse it. Calls 3 and 4
    # start service at 3.0121 and 4.0121, inside [2.5, 4.5): 15 ms, not 5.
    expected = {1: 0.0311, 3: 0.0391, 4: 0.0391}
    assert log == calls(*[(t, expected.get(t, 0.0291), OK) for t in range(1, 13)])
    b = fleet.backends["api"][0]
    assert b.slowdown_factor == 1.0
    assert b._service_time is b._draw  # restored exactly: no multiplier left on the hot path
    assert res["summary"]["faults"] == [{"kind": "backend_slowdown", "at_s": 2.5, "for_s": 2.0,
                                         "targets": ["api-a1-0"]}]


def test_overlapping_slowdowns_multiply_and_restore_exactly():
    faults = [fault("backend_slowdown", 2.5, 3.0, factor=2.0), fault("backend_slowdown", 3.5, 1.0, factor=3.0)]
    fleet, log, res = run_logged(experiment(faults=faults, duration_s=14))
    # 1: connects (2 ms), 5 ms; 3: x2 (10 ms); 4: x6 (30 ms); 5: x2; 6 onwards: 5 ms.
    expected = {1: 0.0311, 3: 0.0341, 4: 0.0541, 5: 0.0341}
    assert log == calls(*[(t, expected.get(t, 0.0291), OK) for t in range(1, 14)])
    assert fleet.backends["api"][0].slowdown_factor == 1.0
    assert res["faults"]["events"] == [
        {"t_s": 2.5, "fault": 0, "kind": "backend_slowdown", "event": "start", "targets": ["api-a1-0"]},
        {"t_s": 3.5, "fault": 1, "kind": "backend_slowdown", "event": "start", "targets": ["api-a1-0"]},
        {"t_s": 4.5, "fault": 1, "kind": "backend_slowdown", "event": "end", "targets": ["api-a1-0"]},
        {"t_s": 5.5, "fault": 0, "kind": "backend_slowdown", "event": "end", "targets": ["api-a1-0"]},
    ]


def test_a_fault_ending_as_another_starts_ends_first():
    faults = [fault("backend_slowdown", 3.5, 1.0, factor=3.0), fault("backend_slowdown", 2.5, 1.0, factor=0.1)]
    fleet, _, res = run_logged(experiment(faults=faults, duration_s=13))
    assert [(e["t_s"], e["fault"], e["event"]) for e in res["faults"]["events"]] == [
        (2.5, 1, "start"), (3.5, 1, "end"), (3.5, 0, "start"), (4.5, 0, "end")]
    assert fleet.backends["api"][0].slowdown_factor == 1.0


# ------------------------------------------------------------------ error burst


def test_error_burst_fails_exactly_the_attempts_finishing_inside_the_window():
    exp = experiment(faults=[fault("error_burst", 2.5, 2.0, error_probability=1.0)], duration_s=13)
    fleet, log, res = run_logged(exp)
    # Call 1 connects (2 ms) and ends service at 1.0191; calls 3 and 4 reuse the
    # connection and end at 3.0171 and 4.0171, inside [2.5, 4.5).
    assert log == calls(*[(t, 0.0311 if t == 1 else 0.0291, BACKEND_ERROR if t in (3, 4) else OK)
                          for t in range(1, 13)])
    assert res["summary"]["backend"]["api"]["errors"] == 2
    assert fleet.backends["api"][0].error_probability == 0.0


def test_error_burst_fails_the_first_try_and_the_retry_after_the_window_succeeds():
    # A base back-off of 1 ms draws whole milliseconds in [0, 1): every retry leaves at once.
    route = {"timeout_s": 10.0, "retry_policy": {"retry_on": ["5xx"], "num_retries": 1,
                                                 "retry_back_off": {"base_interval_s": 0.001}}}
    exp = experiment(topology__gateways__gw__route=route, duration_s=12,
                     faults=[fault("error_burst", 2.5, 0.52, error_probability=1.0)])
    _, log, res = run_logged(exp)
    # Call 1 connects (2 ms). Call 3's first try ends at 3.0171, inside [2.5, 3.02): 500.
    # The 500 is a complete response, so its connection is free again when it is back at
    # the gateway at 3.0181; the retry reuses it, reaches the backend at 3.0191 and ends
    # at 3.0241, after the burst.
    assert log == calls(*[(t, {1: 0.0311, 3: 0.0361}.get(t, 0.0291), OK) for t in range(1, 12)])
    assert res["summary"]["retries"]["by_reason"] == {BACKEND_ERROR: 1}
    assert res["summary"]["backend"]["api"]["errors"] == 1


def test_error_burst_takes_the_higher_of_the_two_probabilities():
    ctx = SimContext(1)
    b = BackendInstance(ctx, "api-a1-0", Service(instances_per_az={"a1": 1}, service_time_s=0.01,
                                                 error_probability=0.3), "api", "a1")
    b.set_error_burst(0.1)
    assert b.error_probability == 0.3
    b.set_error_burst(0.5)
    assert b.error_probability == 0.5
    b.set_error_burst(None)
    assert b.error_probability == 0.3
    with pytest.raises(ValueError, match="not in"):
        b.set_error_burst(1.5)


# ------------------------------------------------------------------ backend crash


def test_backend_crash_resets_work_refuses_while_down_and_restarts_empty():
    exp = experiment(topology__services__api__service_time_s=1.5, duration_s=14,
                     faults=[fault("instance_crash", 3.5, 2.0, target={"service": "api"})])
    fleet, log, res = run_logged(exp)
    # The gateway (CPU done at t + 11.1 ms) reaches the backend at t + 12.1 ms on a free
    # connection, at t + 14.1 ms when it must open one (every connection busy).
    # 1: connects (A), served 1.0141-2.5141; A is free again at 2.5151.
    # 2: A busy: connects (B), waits from 2.0141, served 2.5141-4.0141.
    # 3: reuses A, waits from 3.0121. The crash at 3.5 resets 2 (in service) and 3
    # (waiting), answered at once: back at 3.512; A and B close with them.
    # 4 and 5: no connection; the host, down, refuses the connect at the end of its round
    # trip (4.0131, 5.0131): connect failure, back at the client at 4.0241 and 5.0241.
    # It is back at 5.5, empty: 6 connects (P), served 6.0141-7.5141; 7 finds P busy,
    # connects (Q), served 7.5141-9.0141; 8 reuses P (free at 7.5151): 9.0141-10.5141;
    # 9 finds P and Q busy (Q frees at 9.0151), connects (R): 10.5141-12.0141;
    # 10 reuses Q: 12.0141-13.5141; 11 reuses P: from 13.5141; 12 connects (S), 13 reuses R.
    # Call 2's service would have ended at 4.0141: that end is void.
    assert log == calls((1, 1.5261, OK), (2, 1.512, UPSTREAM_RESET), (3, 0.512, UPSTREAM_RESET),
                        (4, 0.0241, CONNECT_FAILURE), (5, 0.0241, CONNECT_FAILURE),
                        (6, 1.5261, OK), (7, 2.0261, OK), (8, 2.5261, OK), (9, 3.0261, OK), (10, 3.5261, OK))
    b = fleet.backends["api"][0]
    st = b.results()
    # The refused connects carried no request: 4 and 5 never reached the backend.
    assert (st["attempts"], st["served"], st["resets"], st["refused"], st["queue_len"], st["busy"]) == (11, 6, 2, 0, 2, 1)
    assert st["up"] and b.crashes == 1
    b.check_conservation()
    pool = fleet.gateways["gw"][0].pools["api"]
    # Connects: A, B, the two refused, P, Q, R, S; open at the end: P (11), Q (free), R (13), S (12).
    assert (pool.connects, pool.conns, pool.busy, pool.cx_total, pool.pending) == (8, [4], [3], 4, 0)
    s = res["summary"]["backend"]["api"]
    # Busy 1.0141-2.5141, 2.5141-3.5 (cut by the crash), then 6.0141 to the end.
    assert s["utilization"] == pytest.approx((1.5 + 0.9859 + (14 - 6.0141)) / 14)
    # The 0.9859 s spent on call 2 before the crash was lost.
    assert s["wasted_work_s"] == pytest.approx(0.9859)
    # In system: the busy time plus every wait (3's ends at the crash; the last ones at the end):
    # 2, 3, 7, 8, 9, 10, 11, 12, 13.
    waits = (0.5 + 0.4879 + 0.5 + (9.0141 - 8.0121) + 1.5 + (12.0141 - 10.0121) + (13.5141 - 11.0121)
             + (14 - 12.0141) + (14 - 13.0121))
    assert s["mean_in_system"] == pytest.approx((1.5 + 0.9859 + 7.9859 + waits) / 14)
    assert res["summary"]["requests"]["failed"] == {CONNECT_FAILURE: 2, UPSTREAM_RESET: 2}


def test_crash_is_counted_per_instance_when_faults_overlap():
    # The instance crash covers [3.5, 6.5); an outage of its AZ inside it must not
    # restart it at 5.5. The outage also takes the only balancer node down: call 5
    # reaches a node that is down and gets a reset at once (10 ms out, 10 ms back).
    # Call 1 connects (2 ms); 2 and 3 reuse the connection. Call 4 is sent on it (idle
    # since 3.0201) to the crashed host, which refuses it: connect failure after 1 + 1 ms,
    # and the connection closes. Call 6 finds no connection (and its gateway, crashed by
    # the outage, restarted at 5.5 without any): it connects and is refused after the
    # 2 ms round trip, as the host is down until 6.5.
    # Call 7 connects (2 ms); the rest reuse the connection.
    faults = [fault("instance_crash", 3.5, 3.0, target={"instance": "api-a1-0"}),
              fault("az_outage", 4.5, 1.0, az="a1")]
    fleet, log, _ = run_logged(experiment(faults=faults, duration_s=15))
    assert log == calls((1, 0.0311, OK), (2, 0.0291, OK), (3, 0.0291, OK),
                        (4, 0.0241, CONNECT_FAILURE), (5, 0.02, GATEWAY_RESET), (6, 0.0241, CONNECT_FAILURE),
                        (7, 0.0311, OK), *[(t, 0.0291, OK) for t in range(8, 15)])
    assert fleet.backends["api"][0].crashes == 1
    assert fleet.gateways["gw"][0].up and fleet.balancers["r1"].nodes["a1"].up


def test_crash_and_restart_refuse_misuse():
    ctx = SimContext(1)
    b = BackendInstance(ctx, "api-a1-0", Service(instances_per_az={"a1": 1}, service_time_s=0.01), "api", "a1")
    with pytest.raises(RuntimeError, match="not down"):
        b.restart()
    b.crash()
    with pytest.raises(RuntimeError, match="already down"):
        b.crash()
    with pytest.raises(ValueError, match="positive"):
        b.slowdown_factor = 0.0


# ------------------------------------------------------------------ gateway crash and balancer


def test_gateway_crash_resets_cpu_work_and_the_node_has_no_healthy_upstream():
    exp = experiment(topology__gateways__gw__cpu_time_s=1.4, duration_s=15,
                     faults=[fault("instance_crash", 4.3, 2.0, target={"instance": "gw-0"})])
    fleet, log, res = run_logged(exp)
    # CPU: 1 at 1.011-2.411, then it connects (2 ms); 2 at 2.411-3.811, reusing the
    # connection; 3 from 3.811; 4 waits from 4.011. The crash at 4.3 resets 3 and 4: the
    # clients hear at 4.311. Calls 5 and 6 reach the node (5.010, 6.010) while its only
    # gateway is down: 503 from the node. Back at 6.3 with no connection (a crash closes
    # them all): 7 takes the CPU at 7.011-8.411 and connects (2 ms); the rest queue behind
    # it for the CPU and reuse the connection.
    assert log == calls((1, 1.431, OK), (2, 1.829, OK), (3, 1.311, GATEWAY_RESET), (4, 0.311, GATEWAY_RESET),
                        (5, 0.02, NO_HEALTHY_UPSTREAM), (6, 0.02, NO_HEALTHY_UPSTREAM),
                        (7, 1.431, OK), (8, 1.829, OK), (9, 2.229, OK), (10, 2.629, OK), (11, 3.029, OK))
    gw = fleet.gateways["gw"][0]
    assert gw.results()["resets"] == 2
    assert res["faults"]["nodes"] == {"lb.r1.a1": {"no_healthy": 2, "refused": 0}}
    # CPU busy 1.011-3.811, 3.811-4.3 (cut by the crash), then 7.011 to the end.
    assert res["summary"]["gateway"]["gw"]["utilization"] == pytest.approx((2.8 + 0.489 + 15 - 7.011) / 15)
    assert res["summary"]["backend"]["api"]["attempts"] == 7


def test_a_request_on_its_way_to_a_gateway_that_crashes_is_reset():
    # Call 2 leaves the node at 2.010 and reaches the gateway at 2.011, after its crash.
    # Calls 1 and 5 (the first after the restart at 4.0105: a crash closes every
    # connection) connect (2 ms); the others reuse the connection.
    exp = experiment(duration_s=13, faults=[fault("instance_crash", 2.0105, 2.0, target={"instance": "gw-0"})])
    _, log, _ = run_logged(exp)
    assert log == calls((1, 0.0311, OK), (2, 0.022, GATEWAY_RESET), (3, 0.02, NO_HEALTHY_UPSTREAM),
                        (4, 0.02, NO_HEALTHY_UPSTREAM), (5, 0.0311, OK), *[(t, 0.0291, OK) for t in range(6, 13)])


def test_gateway_crash_abandons_routed_requests_and_the_balancer_skips_it():
    exp = experiment(topology__gateways__gw__instances=2, topology__services__api__service_time_s=1.5,
                     topology__services__api__workers=4, duration_s=14,
                     faults=[fault("instance_crash", 3.5, 2.0, target={"instance": "gw-0"})])

    def setup(fleet):
        fleet.balancers["r1"].nodes["a1"]._rr = 0  # round robin from gw-0

    fleet, log, res = run_logged(exp, setup)
    # Round robin: 1 gw-0, 2 gw-1, 3 gw-0, 4 gw-1; 5 would be gw-0, which is down: gw-1;
    # then 6 gw-0 (back at 5.5), 7 gw-1, ... Each gateway connects (2 ms) for its first
    # call. Call 3 reuses gw-0's connection and is at the backend (3.0121-4.5121) when
    # gw-0 crashes at 3.5: reset, back at the client at 3.511. The backend finishes it
    # anyway: 1.5 s of wasted work, and its answer is discarded. Call 4 reuses gw-1's
    # connection (free since 3.5151); 5 finds it busy (until 5.5131) and connects; 6
    # connects too, gw-0 having restarted without connections. From 7 on, every call
    # finds a free connection (a call holds one for about 1.5 s, and calls to a gateway
    # are 2 s apart).
    assert log == calls((1, 1.5261, OK), (3, 0.511, GATEWAY_RESET),
                        *[(t, 1.5261 if t in (2, 5, 6) else 1.5241, OK) for t in (2, 4, 5, 6, 7, 8, 9, 10, 11, 12)])
    node = fleet.balancers["r1"].nodes["a1"]
    assert node.connections == [6, 7]  # gw-0: 1 3 6 8 10 12; gw-1: 2 4 5 7 9 11 13
    gw0 = fleet.gateways["gw"][0]
    assert gw0.clusters["api"].active == [0] and gw0.clusters["api"].rq_active == 0
    assert res["summary"]["backend"]["api"]["wasted_work_s"] == pytest.approx(1.5)
    assert res["summary"]["faults"] == [{"kind": "instance_crash", "at_s": 3.5, "for_s": 2.0, "targets": ["gw-0"]}]


@pytest.mark.parametrize("policy", ["round_robin", "random", "least_connections"])
def test_balancer_never_picks_a_gateway_that_is_down(policy):
    exp = experiment(topology__gateways__gw__instances=3,
                     topology__balancers={"r1": {"policy": policy, "cross_zone": False}},
                     workload={"arrivals": "deterministic", "rate_schedule": [{"at_s": 0, "rate_per_s": 100.0}]},
                     duration_s=13, faults=[fault("instance_crash", 1.0, 3.0, target={"instance": "gw-1"})])
    fleet = Fleet(exp)
    gw1 = fleet.gateways["gw"][1]
    node = fleet.balancers["r1"].nodes["a1"]
    accept = node.accept
    picked_down = []

    def watch(req):
        accept(req)
        if req.outcome is None and req.lb_index == 1 and not gw1.up:
            picked_down.append(req)

    node.accept = watch  # clients look it up when they send
    res = fleet.run()
    assert picked_down == []
    assert res["summary"]["requests"]["failed"] == {}
    assert gw1.requests < fleet.gateways["gw"][0].requests


# ------------------------------------------------------------------ AZ outage


def test_az_outage_resets_work_in_the_az_and_takes_its_node_down():
    svc = {"instances_per_az": {"a1": 1, "a2": 1}, "workers": 8, "service_time_s": 0.5,
           "request_bytes": 1000, "response_bytes": 5000}
    exp = experiment(topology__services__api=svc, duration_s=14, faults=[fault("az_outage", 3.2, 2.0, az="a1")])

    def setup(fleet):
        fleet.gateways["gw"][0].clusters["api"].pick.__self__._next = 0  # round robin from api-a1-0

    fleet, log, res = run_logged(exp, setup)
    # Hosts alternate a1 (same AZ: 524.1 ms) and a2 (cross-AZ, 2 ms hops: 526.1 ms). A
    # call that opens a connection first pays its round trip: 2 ms to a1 (526.1 ms in
    # all), 4 ms to a2 (530.1 ms): calls 1 and 2. Call 3 reuses the connection to
    # api-a1-0 and is there at 3.2: its gateway (in a1) crashes and resets it; the
    # clients' only node is down for 4 and 5, which get a reset from it at once. From 5.2
    # all is back, the gateway without connections (a crash closes them): 6 (a2) and
    # 7 (a1) connect again; the rest reuse those connections.
    a1, a2 = 0.5241, 0.5261
    connect = {1: 0.5261, 2: 0.5301, 6: 0.5301, 7: 0.5261}
    assert log == calls((1, connect[1], OK), (2, connect[2], OK), (3, 0.211, GATEWAY_RESET),
                        (4, 0.02, GATEWAY_RESET), (5, 0.02, GATEWAY_RESET),
                        *[(t, connect.get(t, a2 if t % 2 == 0 else a1), OK) for t in range(6, 14)])
    targets = ["lb.r1.a1", "gw-0", "api-a1-0"]
    assert res["summary"]["faults"] == [{"kind": "az_outage", "at_s": 3.2, "for_s": 2.0, "targets": targets}]
    assert [(e["t_s"], e["event"], e["targets"]) for e in res["faults"]["events"]] == [
        (3.2, "start", targets), (5.2, "end", targets)]
    assert res["faults"]["nodes"]["lb.r1.a1"]["refused"] == 2
    b1, b2 = fleet.backends["api"]
    assert (b1.resets, b1.crashes, b2.resets, b2.crashes) == (1, 1, 0, 0)
    assert b1.results()["wasted_s"] == pytest.approx(3.2 - 3.0121)


def test_az_outage_clients_use_only_nodes_that_are_up():
    # Gateways in both AZs, backends only in a2, and cross-AZ hops as fast as same-AZ
    # ones: every path takes 29.1 ms, whichever node a client picks, plus a 2 ms round
    # trip when its gateway must connect to the backend. Calls are 100 ms apart and take
    # about 30: each gateway's one connection is free for every call, so a gateway
    # connects for its first call only, and g1 again for its first call after the outage
    # (it crashed with it and restarted without connections).
    exp = experiment(
        topology__network={"same_az_s": 0.001, "cross_az_s": 0.001, "cross_region_s": 0.03, "internet_s": 0.01},
        topology__gateways={"g1": {"az": "a1", "instances": 1, "workers": 1, "cpu_time_s": 0.0001},
                            "g2": {"az": "a2", "instances": 1, "workers": 1, "cpu_time_s": 0.0001}},
        topology__services__api__instances_per_az={"a2": 1},
        workload={"arrivals": "deterministic", "rate_schedule": [{"at_s": 0, "rate_per_s": 10.0}]},
        duration_s=13, faults=[fault("az_outage", 2.5, 2.0, az="a1")])
    via: dict[str, list[float]] = {"g1-0": [], "g2-0": []}

    def setup(fleet):
        for gw in (fleet.gateways["g1"][0], fleet.gateways["g2"][0]):
            accept = gw.accept

            def watch(req, accept=accept, seen=via[gw.name]):
                seen.append(round(req.t0, 9))
                accept(req)

            gw.accept = watch  # balancer nodes look it up when they send

    fleet, log, res = run_logged(exp, setup)
    assert {out for _, _, out in log} == {OK}
    assert len(log) == 129  # calls at 0.1, 0.2, ..., 12.9
    g1, g2 = via["g1-0"], via["g2-0"]
    assert sorted(g1 + g2) == sorted(t0 for t0, _, _ in log)
    assert not [t for t in g1 if 2.5 <= t < 4.5] and g1[0] < 2.5 < 4.5 < g1[-1]
    connecting = {g1[0], g2[0], next(t for t in g1 if t >= 4.5)}
    assert log == [(t0, 0.0311 if t0 in connecting else 0.0291, OK) for t0, _, _ in log]
    assert [fleet.gateways[g][0].pools["api"].connects for g in ("g1", "g2")] == [2, 1]
    assert res["faults"]["nodes"]["lb.r1.a1"]["refused"] == 0
    assert res["summary"]["faults"][0]["targets"] == ["lb.r1.a1", "g1-0"]


# ------------------------------------------------------------------ load spike


@pytest.mark.skipif(not hasattr(ClientPopulation, "set_rate_factor"),
                    reason="ClientPopulation.set_rate_factor (the workload's load-spike hook) does not exist yet")
def test_load_spikes_tell_the_population_the_factor_in_force():
    faults = [fault("load_spike", 2.5, 2.0, factor=3.0), fault("load_spike", 3.5, 2.0, factor=2.0, target={"region": "r1"})]
    fleet = Fleet(experiment(faults=faults, duration_s=14))
    pop = fleet.clients[0]
    seen = []
    orig = pop.set_rate_factor

    def record(factor):
        seen.append((fleet.ctx.now, factor))
        orig(factor)

    pop.set_rate_factor = record
    res = fleet.run()
    assert seen == [(2.5, 3.0), (3.5, 6.0), (4.5, 2.0), (5.5, 1.0)]
    assert res["summary"]["faults"][0]["targets"] == ["clients.r1"]


# ------------------------------------------------------------------ LIFO and drop_expired


def test_lifo_serves_the_newest_waiting_attempt_first():
    exp = experiment(topology__services__api__service_time_s=1.7, topology__services__api__queue_discipline="lifo",
                     duration_s=9.6)
    fleet, log, res = run_logged(exp)
    # A call reaches the backend at t + 12.1 ms on a free connection, at t + 14.1 ms when
    # it must open one (each waiting call holds its connection): 1 connects (A); 2 finds A
    # busy, connects (B); 3 reuses A (free at 2.7151); 4 connects (C); 5 reuses B (free at
    # 4.4151); 6 connects (D); 7 reuses C (free at 6.1151); 8 reuses D (free at 7.8151);
    # 9 connects (E).
    # Service: 1: 1.0141-2.7141; 2: 2.7141-4.4141 (alone in the queue); at 4.4141 the
    # queue is [3, 4]: 4 goes first (4.4141-6.1141); then [3, 5, 6]: 6 (6.1141-7.8141);
    # then [3, 5, 7]: 7 (7.8141-9.5141); then [3, 5, 8, 9]: 9. 3, 5 and 8 are still
    # waiting at the end.
    assert log == calls((1, 1.7261, OK), (2, 2.4261, OK), (4, 2.1261, OK), (6, 1.8261, OK), (7, 2.5261, OK))
    b = res["summary"]["backend"]["api"]
    # Waits of those that started: 1 0, 2 0.7, 4 0.4, 6 0.1, 7 0.802 (from 7.0121), and
    # 9 0.5 (9.0141 to 9.5141).
    assert b["mean_wait_ms"] == pytest.approx(1000 * (0 + 0.7 + 0.4 + 0.1 + 0.802 + 0.5) / 6)
    assert fleet.gateways["gw"][0].pools["api"].connects == 5


def test_drop_expired_sheds_attempts_whose_deadline_passed_without_serving_them():
    exp = experiment(topology__services__api__service_time_s=1.7, topology__services__api__drop_expired=True,
                     topology__gateways__gw__route={"timeout_s": 2.0}, duration_s=9.6)
    replies = []

    def setup(fleet):
        gw = fleet.gateways["gw"][0]
        relay = gw._on_reply

        def logged(attempt):
            replies.append((round(fleet.ctx.now, 9), round(attempt.request.t0, 9), attempt.outcome))
            relay(attempt)

        gw._on_reply = logged

    fleet, log, res = run_logged(exp, setup)
    # Deadlines: route timeout, 2 s after routing (t + 2.0111). A call reaches the backend
    # at t + 12.1 ms on a free connection, at t + 14.1 ms when it opens one: 1 connects;
    # 2 finds 1's connection busy and connects; 3 reuses 1's (free at 2.7151); from 4 on
    # each finds every connection busy (held by a waiting call, or closed by its route
    # timeout) and connects.
    # Service: 1: 1.0141-2.7141. 2: 2.7141-4.4141 (due 4.0111: wasted). 3: 4.4141-6.1141
    # (due 5.0111: wasted). At 6.1141, 4 (due 6.0111) has expired: dropped; 5 is served,
    # 6.1141-7.8141 (wasted). 6: 7.8141-9.5141 (wasted). At 9.5141 7 (due 9.0111) is
    # dropped and 8 is taken.
    assert replies == [(2.7141, 1.0, OK), (4.4141, 2.0, OK), (6.1141, 4.0, DROPPED_EXPIRED), (6.1141, 3.0, OK),
                       (7.8141, 5.0, OK), (9.5141, 7.0, DROPPED_EXPIRED), (9.5141, 6.0, OK)]
    assert log == calls((1, 1.7261, OK), *[(t, 2.0221, ROUTE_TIMEOUT) for t in range(2, 8)])
    b = fleet.backends["api"][0]
    assert (b.dropped, b.served, len(b.queue), b.busy) == (2, 5, 1, 1)
    # Connects: 1, 2, then 4 to 9; 8's and 9's connections are open at the end (the
    # others closed with their route timeouts).
    pool = fleet.gateways["gw"][0].pools["api"]
    assert (pool.connects, pool.conns, pool.busy) == (8, [2], [2])
    assert res["summary"]["backend"]["api"]["wasted_work_s"] == pytest.approx(4 * 1.7)


def test_drop_expired_never_sheds_an_attempt_made_without_a_deadline():
    # Every Attempt has a deadline: a gateway's try gets its route or per-try
    # timeout, a health probe its check timeout, and one made without (the
    # benchmark's, bench/bench_engine.py) gets inf, which never passes. Attempt
    # 1 here has a deadline (0.5 s) and is shed when the worker frees at 1.0,
    # so drop_expired is on; 0, 2 and 3 (inf) wait as long as it takes.
    ctx = SimContext(1)
    b = BackendInstance(ctx, "api-a1-0", Service(instances_per_az={"a1": 1}, workers=1, service_time_s=1.0,
                                                 drop_expired=True), "api", "a1")
    done = []
    for k in range(4):
        a = Attempt(None, None, 0, b, deadline=0.5) if k == 1 else Attempt(None, None, 0, b)
        a.on_reply = lambda at, k=k: done.append((ctx.now, k, at.outcome))
        b.accept(a)
    assert [a.deadline for a in b.queue] == [0.5, float("inf"), float("inf")]
    ctx.run(float("inf"))
    assert done == [(1.0, 1, DROPPED_EXPIRED), (1.0, 0, OK), (2.0, 2, OK), (3.0, 3, OK)]
    assert (b.dropped, b.served) == (1, 3)


# ------------------------------------------------------------------ config


def _problems(**changes):
    return {".".join(map(str, p)): r for p, r in check_experiment(experiment(**changes))}


def test_a_fault_that_matches_nothing_is_refused_with_its_path():
    faults = [fault("backend_slowdown", 2.0, 1.0, factor=2.0, target={"service": "api", "az": "a2"})]
    exp = experiment(faults=faults, duration_s=12)
    with pytest.raises(FleetError) as e:
        Fleet(exp)
    assert e.value.path == ("faults", 0, "target")
    assert "matches no backend instance (service=api, az=a2)" in e.value.reason
    assert _problems(faults=faults, duration_s=12) == {
        "faults.0.target": "matches no backend instance (service=api, az=a2)"}
    # A gateway is no backend: a slowdown cannot target one.
    faults = [fault("backend_slowdown", 2.0, 1.0, factor=2.0, target={"instance": "gw-0"})]
    assert _problems(faults=faults, duration_s=12) == {"faults.0.target": "matches no backend instance (instance=gw-0)"}
    # Through the loader, as `fleetsim check` reports it.
    data = {**BASE, "faults": faults, "duration_s": 12}
    with pytest.raises(ConfigError) as ce:
        validate(data, {}, "e.yaml")
    assert [i.path for i in ce.value.issues] == ["faults.0.target"]


@pytest.mark.parametrize("f,path,reason", [
    (fault("error_burst", 10.0, 5.0, error_probability=0.5), "faults.0.for_s", "ends at 15 s, after the run"),
    (fault("az_outage", 2.0, 1.0, az="a9"), "faults.0.az", "unknown AZ 'a9'"),
    (fault("az_outage", 2.0, 1.0, az="a2"), "faults.0.az", "no gateway or backend instance runs in AZ 'a2'"),
    (fault("az_outage", 2.0, 1.0, az="a1", target={"az": "a1"}), "faults.0.target", "leave target empty"),
    (fault("instance_crash", 2.0, 1.0, target={"instance": "api-a1-7"}), "faults.0.target.instance",
     "no instance 'api-a1-7'"),
    (fault("instance_crash", 2.0, 1.0, target={"service": "web"}), "faults.0.target.service", "unknown service 'web'"),
    (fault("instance_crash", 2.0, 1.0, target={"region": "r2"}), "faults.0.target.region", "unknown region 'r2'"),
    (fault("load_spike", 2.0, 1.0, factor=2.0, target={"az": "a1"}), "faults.0.target.az", "by region only"),
    (fault("load_spike", 2.0, 1.0, factor=2.0, target={"region": "r2"}), "faults.0.target.region",
     "no clients in region 'r2'"),
])
def test_fault_config_checks_name_the_path(f, path, reason):
    problems = _problems(faults=[f], duration_s=12)
    assert list(problems) == [path]
    assert reason in problems[path]


def test_instance_crash_by_az_hits_gateways_and_backends():
    fleet = Fleet(experiment(faults=[fault("instance_crash", 2.0, 1.0, target={"az": "a1"})], duration_s=12))
    assert fleet.faults.resolved[0].targets == ["gw-0", "api-a1-0"]


def test_experiment_with_every_fault_kind_round_trips_through_the_resolved_dump(tmp_path):
    from sim.config import load_experiment

    faults = [fault("backend_slowdown", 2.0, 1.0, factor=4.0, target={"service": "api"}),
              fault("error_burst", 2.0, 1.0, error_probability=0.25),
              fault("instance_crash", 3.0, 1.0, target={"instance": "gw-0"}),
              fault("az_outage", 4.0, 1.0, az="a1"),
              fault("load_spike", 5.0, 1.0, factor=2.0, target={"region": "r1"})]
    exp = experiment(faults=faults, duration_s=14)
    assert check_experiment(exp) == []
    text = dump_resolved(exp)
    assert Experiment.model_validate(YAML(typ="safe", pure=True).load(text)) == exp
    path = tmp_path / "config.resolved.yaml"
    path.write_text(text, encoding="utf-8")
    assert load_experiment(path).config == exp
    res = Fleet(exp).run()
    assert [f["kind"] for f in res["summary"]["faults"]] == [f["kind"] for f in faults]
