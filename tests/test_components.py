"""Deterministic tests of the request path with constant distributions and exact logs."""

from __future__ import annotations

import pytest

from sim.components.lb import Edf, LeastRequest, RoundRobin, make_policy
from sim.components.workload import RateFunction
from sim.config.models import Cluster, RateStep
from sim.fleet import Fleet

from .fleet_builders import experiment, run_logged


class Seq:
    """A fake UniformStream returning a fixed sequence."""

    def __init__(self, values):
        self.values = list(values)

    def __call__(self):
        return self.values.pop(0)



def test_one_path_latency_is_the_exact_sum_of_hops_and_service():
    fleet, log, res = run_logged(experiment())
    # internet 10 ms + lb->gw 1 + cpu 0.1 + gw->be 1 + service 5 + be->gw 1 + gw->lb 1 + internet 10,
    # and the first request opens the gateway's connection to the host: a 2 ms round trip.
    assert log == [(1.0, 0.0311, "ok"), (2.0, 0.0291, "ok"), (3.0, 0.0291, "ok")]
    assert res["summary"]["bytes_by_az_pair"] == {
        "a1->a1": 3 * (1000 + 1000 + 5000 + 5000),
        "a1->internet": 3 * 5000,
        "internet->a1": 3 * 1000,
    }
    s = res["summary"]
    assert s["requests"] == {"offered": 3, "succeeded": 3, "failed": {}, "in_flight": 0}
    assert s["backend"]["api"]["utilization"] == pytest.approx(3 * 0.005 / 3.5)
    assert s["gateway"]["gw"]["utilization"] == pytest.approx(3 * 0.0001 / 3.5)


def test_cross_az_hops_use_the_cross_az_latency_and_count_both_directions():
    exp = experiment(topology__services__api__instances_per_az={"a2": 1})
    _, log, res = run_logged(exp)
    assert [lat for _, lat, _ in log] == [0.0351, 0.0311, 0.0311]  # connecting: a 4 ms round trip
    pairs = res["summary"]["bytes_by_az_pair"]
    assert pairs["a1->a2"] == 3 * 1000 and pairs["a2->a1"] == 3 * 5000


def test_route_timeout_gives_504_and_the_backend_work_is_wasted():
    exp = experiment(topology__services__api__service_time_s=2.0,
                     topology__gateways__gw__route={"timeout_s": 0.5}, duration_s=4.6)
    fleet, log, res = run_logged(exp)
    # 10 + 1 + 0.1 ms to the router, the 0.5 s timeout, then 1 + 10 ms back.
    assert [(t0, lat, out) for t0, lat, out in log] == [
        (1.0, 0.5221, "route_timeout"), (2.0, 0.5221, "route_timeout"), (3.0, 0.5221, "route_timeout"),
        (4.0, 0.5221, "route_timeout"),
    ]
    s = res["summary"]
    # Served back to back from 1.0121: completions at 3.0121 and 5.0121 (after the end).
    assert s["backend"]["api"]["wasted_work_s"] == pytest.approx(2.0)
    assert s["gateway"]["gw"]["route_timeouts"] == 4
    # The gateway reset its upstream requests: no active request is left on the host.
    gw = fleet.gateways["gw"][0]
    assert gw.clusters["api"].active == [0]


def test_full_backend_queue_answers_503_at_once():
    exp = experiment(topology__services__api__service_time_s=1.5,
                     topology__services__api__queue_limit=0)
    _, log, res = run_logged(exp)
    # 1 s: connects (2 ms), served 1.0141..2.5141. 2 s: its connection is busy, so a
    # second one is opened; it reaches the busy worker at 2.0141 with no queue slot:
    # 503 at once, back at 2.0261. 3 s: reuses a connection, served until 4.5121.
    assert log == [(2.0, 0.0261, "backend_overflow"), (1.0, 1.5261, "ok")]
    assert res["summary"]["requests"] == {"offered": 3, "succeeded": 1,
                                          "failed": {"backend_overflow": 1}, "in_flight": 1}
    assert res["summary"]["backend"]["api"]["rejected"] == 1


def test_backend_queue_is_fifo_and_waits_are_measured():
    exp = experiment(topology__services__api__service_time_s=1.5, duration_s=6.0)
    _, log, res = run_logged(exp)
    # Arrivals at the backend (a new connection costs 2 ms when the gateway's are
    # all busy): 1.0141 (new), 2.0141 (new), 3.0121, 4.0141 (new), 5.0121.
    # Service 1.0141-2.5141, 2.5141-4.0141 (waited 0.5), 4.0141-5.5141 (waited
    # 1.002), 5.5141-7.0141 (waited 1.5); the fifth is still queued at the end.
    assert log == [(1.0, 1.5261, "ok"), (2.0, 2.0261, "ok"), (3.0, 2.5261, "ok")]
    b = res["summary"]["backend"]["api"]
    assert b["mean_wait_ms"] == pytest.approx(1000 * (0 + 0.5 + 1.002 + 1.5) / 4)
    assert b["p_wait"] == pytest.approx(4 / 5)


def test_gateway_cpu_is_a_fifo_queue_of_its_workers():
    exp = experiment(topology__gateways__gw__cpu_time_s=1.5, topology__services__api__service_time_s=0.0,
                     duration_s=4.0)
    _, log, _ = run_logged(exp)
    # One worker: CPU 1.011-2.511 (then a 2 ms connect), then 2.511-4.011 (the
    # second request waited 0.5 s): too late.
    assert log == [(1.0, 1.526, "ok")]
    exp = experiment(topology__gateways__gw__cpu_time_s=1.5, topology__gateways__gw__workers=2,
                     topology__services__api__service_time_s=0.0, duration_s=4.0)
    _, log, _ = run_logged(exp)
    # Two workers: the second request does not wait, and reuses the connection.
    assert log == [(1.0, 1.526, "ok"), (2.0, 1.524, "ok")]


def test_error_probability_one_fails_every_request_with_500():
    _, log, res = run_logged(experiment(topology__services__api__error_probability=1.0))
    assert [out for _, _, out in log] == ["backend_error"] * 3
    # An error reply is short: the 5000-byte body is not sent.
    assert res["summary"]["bytes_by_az_pair"]["a1->internet"] == 3 * 150


def test_cross_zone_off_keeps_each_balancer_node_in_its_az():
    gws = {"g1": {"az": "a1", "instances": 2, "cpu_time_s": 0}, "g2": {"az": "a2", "instances": 1, "cpu_time_s": 0}}
    svc = {"instances_per_az": {"a1": 1, "a2": 1}, "workers": 4, "service_time_s": 0.001}
    exp = experiment(topology__gateways=gws, topology__services__api=svc,
                     workload={"rate_schedule": [{"at_s": 0, "rate_per_s": 200}]}, duration_s=5)
    fleet = Fleet(exp)
    fleet.run()
    nodes = fleet.balancers["r1"].nodes
    assert [t.name for t in nodes["a1"].targets] == ["g1-0", "g1-1"]
    assert [t.name for t in nodes["a2"].targets] == ["g2-0"]
    assert sum(nodes["a1"].connections) > 0 and sum(nodes["a2"].connections) > 0
    on = experiment(topology__gateways=gws, topology__services__api=svc,
                    topology__balancers={"r1": {"policy": "round_robin", "cross_zone": True}},
                    workload={"rate_schedule": [{"at_s": 0, "rate_per_s": 200}]}, duration_s=5)
    fleet = Fleet(on)
    fleet.run()
    for node in fleet.balancers["r1"].nodes.values():
        assert [t.name for t in node.targets] == ["g1-0", "g1-1", "g2-0"]
        # Round robin: each node's connections differ by at most one across targets.
        assert max(node.connections) - min(node.connections) <= 1


def test_least_connections_balancer_picks_the_least_busy_gateway():
    from sim.components.balancer import BalancerNode

    fleet = Fleet(experiment(topology__balancers={"r1": {"policy": "least_connections", "cross_zone": False}},
                             topology__gateways__gw__instances=3))
    node: BalancerNode = fleet.balancers["r1"].nodes["a1"]
    node.active[:] = [2, 0, 1]
    node._rr = 0
    assert node._pick() == 1
    node.active[:] = [1, 1, 1]
    # Ties rotate with the scan's start.
    assert [node._pick() for _ in range(3)] == [1, 2, 0]


# ------------------------------------------------------------------ LB policies


def test_round_robin_cycles_from_its_start():
    rr = RoundRobin(3, Seq([0.5]))
    assert [rr.pick() for _ in range(7)] == [1, 2, 0, 1, 2, 0, 1]


def test_least_request_p2c_keeps_the_lower_and_the_first_on_ties():
    active = [5, 1, 3, 1]
    lr = LeastRequest(4, Seq([0.0, 0.3, 0.6, 0.3, 0.3, 0.8, 0.8, 0.3]), active)
    assert lr.pick() == 1  # hosts 0 (5) and 1 (1): 1
    assert lr.pick() == 1  # hosts 2 (3) and 1 (1): 1
    assert lr.pick() == 1  # hosts 1 and 3, both 1: the first sampled
    assert lr.pick() == 3  # hosts 3 and 1, both 1: the first sampled


def test_least_request_with_choice_count_three():
    lr = LeastRequest(4, Seq([0.0, 0.3, 0.6]), [5, 4, 3, 0], choice_count=3)
    assert lr.pick() == 2


def test_edf_weighted_round_robin_gives_exact_shares():
    edf = Edf(2, lambda i: [1.0, 3.0][i])
    picks = [edf.pick() for _ in range(400)]
    assert picks.count(1) == 300 and picks.count(0) == 100


def test_weighted_least_request_divides_weight_by_active_plus_one():
    active = [0, 0]
    weights = [2, 1]
    policy = make_policy(Cluster(lb_policy="LEAST_REQUEST"), weights, active, Seq([]))
    assert isinstance(policy, Edf)
    # With no requests active the 2:1 weights give 2:1 picks.
    picks = [policy.pick() for _ in range(300)]
    assert picks.count(0) == 200
    # A host with many active requests gets picked rarely: effective weights
    # 2/(9+1) = 0.2 vs 1/(0+1) = 1, so host 0 gets 0.2/1.2 of the picks (EDF:
    # exact up to the one entry scheduled before the change).
    active[:] = [9, 0]
    picks = [policy.pick() for _ in range(600)]
    assert abs(picks.count(0) - 600 * 0.2 / 1.2) <= 1
    # The effective weight is computed at each pick; the host weights the
    # policy was given are not rewritten.
    assert weights == [2, 1]


def test_bias_zero_is_weighted_round_robin():
    active = [100, 0]
    cfg = Cluster(lb_policy="LEAST_REQUEST", least_request_lb_config={"active_request_bias": 0.0})
    policy = make_policy(cfg, [1, 3], active, Seq([]))
    picks = [policy.pick() for _ in range(400)]
    assert picks.count(1) == 300


# ------------------------------------------------------------------ rate schedule


def test_rate_function_integral_and_inversion_over_steps_and_ramps():
    steps = [RateStep(at_s=0, rate_per_s=10), RateStep(at_s=10, rate_per_s=30, ramp_s=10),
             RateStep(at_s=30, rate_per_s=0), RateStep(at_s=40, rate_per_s=5)]
    r = RateFunction(steps, scale=0.5)
    assert r.rate(5) == 5 and r.rate(15) == 10 and r.rate(25) == 15 and r.rate(35) == 0 and r.rate(50) == 2.5
    assert r.integral(0, 10) == pytest.approx(50)
    assert r.integral(10, 20) == pytest.approx(100)
    assert r.integral(0, 45) == pytest.approx(50 + 100 + 150 + 0 + 12.5)
    for t, e in [(0, 3.0), (5, 30.0), (12, 7.0), (25, 80.0), (29, 20.0)]:
        t2 = r.advance(t, e)
        assert r.integral(t, t2) == pytest.approx(e)
    assert r.advance(31, 1.0) == pytest.approx(40.4)  # nothing arrives while the rate is 0
    assert RateFunction([RateStep(at_s=0, rate_per_s=0)]).advance(0, 1.0) == float("inf")


def test_poisson_arrival_count_over_a_ramp_matches_the_integral():
    from scipy import stats as st

    exp = experiment(workload={"rate_schedule": [{"at_s": 0, "rate_per_s": 100},
                                                 {"at_s": 2, "rate_per_s": 400, "ramp_s": 4}]},
                     duration_s=8.0, topology__services__api__workers=64)
    counts = []
    for r in range(20):
        f = Fleet(exp, replication=r)
        f.run()
        counts.append(f.clients[0].issued)
    expected = 100 * 2 + (100 + 400) / 2 * 4 + 400 * 2
    mean = sum(counts) / len(counts)
    # Poisson: variance = mean; 99% interval of the mean of 20 counts.
    half = st.norm.ppf(0.995) * (expected / len(counts)) ** 0.5
    assert abs(mean - expected) <= half


def test_conservation_check_fails_loudly_when_a_request_is_lost_or_doubled():
    from sim.fleet import ConservationError

    fleet, _, _ = run_logged(experiment())
    fleet.check_conservation()
    fleet.recorder.succeeded += 1  # an outcome counted that no request had
    with pytest.raises(ConservationError, match="not conserved"):
        fleet.check_conservation()
    fleet.recorder.succeeded -= 1
    fleet.backends["api"][0].served += 1
    with pytest.raises(ConservationError, match="attempts"):
        fleet.check_conservation()


def test_a_request_answered_twice_is_refused():
    fleet = Fleet(experiment())
    fleet.run()
    client = fleet.clients[0]
    from sim.components.request import Request

    stray = Request(0.0, True, "api", 1.0, client)
    stray.outcome = "ok"
    with pytest.raises(RuntimeError, match="answered twice or was never issued"):
        client.on_response(stray)


def test_time_integrals_are_exact_across_the_edges_of_the_window():
    # Service 1.0141-2.5141 and 2.5141-4.0141; arrivals at the backend 1.0141 and
    # 2.0141 (each on a new connection), 3.0121 (reusing one); the run ends at 3.5.
    def backend(warmup):
        res = Fleet(experiment(topology__services__api__service_time_s=1.5, warmup_s=warmup)).run()
        return res["summary"]["backend"]["api"]

    b = backend(1.5)  # window [1.5, 3.5]: one in service at each edge
    assert b["utilization"] == pytest.approx(1.0)
    assert b["mean_in_system"] == pytest.approx((1.0141 + 1.4859 + 0.4879) / 2.0)
    b = backend(2.3)  # window [2.3, 3.5]: one waiting at the start
    assert b["utilization"] == pytest.approx(1.0)
    assert b["mean_in_system"] == pytest.approx((0.2141 + 1.2 + 0.4879) / 1.2)
    assert b["p_wait"] == 1.0 and b["attempts"] == 1

    # Gateway CPU 0.6 s: slices 1.011-1.611, 2.011-2.611, 3.011-3.611.
    res = Fleet(experiment(topology__gateways__gw__cpu_time_s=0.6, warmup_s=1.5)).run()
    assert res["summary"]["gateway"]["gw"]["utilization"] == pytest.approx((0.111 + 0.6 + 0.489) / 2.0)
