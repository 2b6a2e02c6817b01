"""Clients that talk straight to a gateway pool: a region without a regional balancer."""

from __future__ import annotations

import pytest

from sim.fleet import Fleet, FleetError

from .fleet_builders import experiment, run_logged

DIRECT = dict(topology__balancers={}, topology__clients={"r1": {"share": 1.0, "gateway_pools": ["gw"]}})


def test_a_try_goes_client_gateway_backend_and_back_with_no_balancer_hop():
    # Calls at 1, 2 and 3 s. Latencies: internet 10 ms each way, gateway CPU 0.1 ms,
    # gateway -> backend 1 ms each way (same AZ), service 5 ms: 10 + 0.1 + 1 + 5 + 1 + 10
    # = 27.1 ms; the first also opens the upstream connection (a 2 ms round trip).
    exp = experiment(**DIRECT)
    fleet, log, res = run_logged(exp)
    assert [round(latency, 9) for _, latency, _ in log] == [0.0291, 0.0271, 0.0271]
    s = res["summary"]
    assert s["requests"]["succeeded"] == 3
    # Bytes on the client's hops and the gateway's, none on a balancer's.
    assert s["bytes_by_az_pair"] == {"a1->a1": 3 * (1000 + 5000), "a1->internet": 3 * 5000,
                                     "internet->a1": 3 * 1000}
    assert res["counters"]["balancer"]["direct.r1"]["connections"] == 3
    edges = {(e["source"], e["target"]): e["requests"] for e in res["graph"]["edges"]}
    assert edges[("client:r1", "gw:gw-0")] == 3


def test_each_try_picks_a_gateway_instance_uniformly():
    exp = experiment(**DIRECT, topology__gateways__gw__instances=4, workload__arrivals="poisson",
                     workload__rate_schedule=[{"at_s": 0, "rate_per_s": 400.0}], duration_s=20.0)
    fleet = Fleet(exp, 0)
    fleet.run()
    counts = fleet.direct["r1"].connections
    n = sum(counts)
    # Binomial(n, 1/4) per instance: 4 standard deviations.
    sd = (n * 0.25 * 0.75) ** 0.5
    assert all(abs(c - n / 4) < 4 * sd for c in counts), counts


def test_a_region_cannot_have_both_a_balancer_and_direct_clients_nor_an_unknown_pool():
    with pytest.raises(FleetError, match="has a balancer"):
        Fleet(experiment(topology__clients={"r1": {"share": 1.0, "gateway_pools": ["gw"]}}))
    with pytest.raises(FleetError, match="unknown gateway pool 'nope'"):
        Fleet(experiment(topology__balancers={},
                         topology__clients={"r1": {"share": 1.0, "gateway_pools": ["nope"]}}))
    with pytest.raises(FleetError, match="gateway_pools"):
        Fleet(experiment(topology__balancers={}))
