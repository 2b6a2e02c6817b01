"""Envoy zone-aware routing, locality-weighted balancing and priorities (sim/components/locality.py).

The routing state is checked exactly against Envoy's integer arithmetic and
against the closed form (sim.analytic.zone_aware_local_fraction plus the
residual split); the picks against those shares within 99% confidence
intervals over independent seeds; each precondition that turns zone-aware
routing off is checked on its own; and a whole fleet's tries by zone
against the closed form.
"""

from __future__ import annotations

import numpy as np
import pytest

from sim.analytic.queues import zone_aware_local_fraction
from sim.components.locality import (
    BASIS,
    LOCALITY_DIRECT,
    LOCALITY_RESIDUAL,
    NO_LOCALITY_ROUTING,
    LocalitySelector,
    priority_loads,
    zone_routing,
)
from sim.config.models import Cluster
from sim.engine import UniformStream
from tests.fleet_builders import experiment
from tests.stats import assert_matches


def _closed_form(local: dict[str, int], upstream: dict[str, int], me: str) -> dict[str, float]:
    """Share of picks per zone: local fraction from the analytic module, the rest by residual capacity."""
    ls = {z: n / sum(local.values()) for z, n in local.items()}
    us = {z: n / sum(upstream.values()) for z, n in upstream.items()}
    keep = zone_aware_local_fraction(ls.get(me, 0.0), us.get(me, 0.0))
    residual = {z: max(0.0, us[z] - ls.get(z, 0.0)) for z in upstream if z != me}
    total = sum(residual.values())
    out = {z: (1 - keep) * r / total if total else 0.0 for z, r in residual.items()}
    out[me] = keep
    return out


def _route(local: dict[str, int], upstream: dict[str, int], me: str, min_cluster_size: int = 6):
    return zone_routing(me, local, local, upstream, upstream, min_cluster_size)


# ------------------------------------------------------------------ routing state, exact


def test_envoy_doc_example_local_20_upstream_10_keeps_half_local():
    # zone_aware.rst: "the local zone has 20% of the local cluster's hosts and 10% of the upstream
    # cluster's: 50% of the requests stay in the zone".
    r = _route({"a": 1, "b": 4}, {"a": 1, "b": 9}, "a")
    assert r.state == LOCALITY_RESIDUAL
    assert (r.local_percentages[0], r.upstream_percentages[0]) == (2000, 1000)
    assert r.local_percent_to_route == 5000
    assert r.shares() == pytest.approx({"a": 0.5, "b": 0.5})


def test_envoy_source_comment_example_residual_capacity():
    # load_balancer_impl.cc: local 40/40/20 %, upstream 25/50/25 % -> residual 0, 10000, 5000.
    r = _route({"a": 4, "b": 4, "c": 2}, {"a": 1, "b": 2, "c": 1}, "a", min_cluster_size=4)
    assert r.local_percentages == (4000, 4000, 2000)
    assert r.upstream_percentages == (2500, 5000, 2500)
    assert r.residual == (0, 1000, 1500)
    assert r.local_percent_to_route == 6250
    assert r.shares() == pytest.approx({"a": 0.625, "b": 0.25, "c": 0.125})


@pytest.mark.parametrize(("local", "upstream", "me"), [
    ({"a": 1, "b": 4}, {"a": 1, "b": 9}, "a"),
    ({"a": 3, "b": 3, "c": 3}, {"a": 2, "b": 3, "c": 5}, "a"),
    ({"a": 3, "b": 3, "c": 3}, {"a": 2, "b": 3, "c": 5}, "b"),
    ({"a": 3, "b": 3, "c": 3}, {"a": 2, "b": 3, "c": 5}, "c"),
    ({"a": 1, "b": 1, "c": 1}, {"a": 1, "b": 3, "c": 6}, "a"),
    ({"a": 5, "b": 2}, {"a": 3, "b": 3, "c": 4}, "a"),
])
def test_state_matches_the_closed_form(local, upstream, me):
    r = _route(local, upstream, me)
    expected = _closed_form(local, upstream, me)
    assert r.state in (LOCALITY_DIRECT, LOCALITY_RESIDUAL)
    # Envoy works in basis points with integer division: within 2 basis points of the real shares.
    got = r.shares()
    for z, share in expected.items():
        assert got[z] == pytest.approx(share, abs=2 / BASIS), (z, got, expected)


def test_more_upstream_share_locally_routes_all_directly():
    r = _route({"a": 1, "b": 1, "c": 1}, {"a": 4, "b": 3, "c": 3}, "a")
    assert r.state == LOCALITY_DIRECT
    assert r.shares() == {"a": 1.0, "b": 0.0, "c": 0.0}


# ------------------------------------------------------------------ each precondition


def test_off_with_one_upstream_zone():
    r = _route({"a": 1, "b": 1}, {"a": 10}, "a")
    assert r.state == NO_LOCALITY_ROUTING and "upstream cluster has fewer than 2 zones" in r.reason


def test_off_with_one_local_zone():
    r = _route({"a": 3}, {"a": 5, "b": 5}, "a")
    assert r.state == NO_LOCALITY_ROUTING and "local cluster has fewer than 2 zones" in r.reason


def test_off_when_the_local_cluster_has_no_host_in_this_zone():
    r = _route({"b": 3, "c": 3}, {"a": 5, "b": 5}, "a")
    assert r.state == NO_LOCALITY_ROUTING and "lb_local_cluster_not_ok" in r.reason


def test_off_below_min_cluster_size_default_6():
    assert Cluster().model_validate({"common_lb_config": {"zone_aware_lb_config": {}}}) \
        .common_lb_config.zone_aware_lb_config.min_cluster_size == 6
    r = _route({"a": 1, "b": 1}, {"a": 2, "b": 3}, "a")
    assert r.state == NO_LOCALITY_ROUTING and "lb_zone_cluster_too_small" in r.reason
    assert _route({"a": 1, "b": 1}, {"a": 3, "b": 3}, "a").state != NO_LOCALITY_ROUTING
    # Healthy hosts count, not hosts.
    r = zone_routing("a", {"a": 1, "b": 1}, {"a": 1, "b": 1}, {"a": 3, "b": 3}, {"a": 3, "b": 2}, 6)
    assert r.state == NO_LOCALITY_ROUTING


def test_no_healthy_local_upstream_sends_everything_across():
    r = zone_routing("a", {"a": 1, "b": 1}, {"a": 1, "b": 1}, {"a": 3, "b": 6}, {"a": 0, "b": 6}, 6)
    assert r.state == LOCALITY_RESIDUAL and r.local_percent_to_route == 0
    assert r.shares() == {"a": 0.0, "b": 1.0}


# ------------------------------------------------------------------ priorities


def test_priority_loads_follow_envoy():
    # All healthy: P0 takes everything.
    assert priority_loads([100, 100], [100.0, 100.0], [4, 4], 50) == ([100, 0], [False, False])
    # P0 half healthy: health 70 (1.4 x 50), P1 the other 30; normalized 100, so no panic.
    assert priority_loads([70, 100], [50.0, 100.0], [4, 4], 50) == ([70, 30], [False, False])
    # 10 % and 20 % health, both below the panic threshold: total panic, load by host counts.
    assert priority_loads([10, 20], [7.0, 14.0], [10, 10], 50) == ([50, 50], [True, True])
    # Total panic: load by host counts.
    assert priority_loads([10, 20], [7.0, 14.0], [10, 30], 50) == ([25, 75], [True, True])
    # Normalized below 100 but P1 healthy enough: only P0 panics.
    assert priority_loads([28, 56], [20.0, 40.0], [5, 5], 30) == ([34, 66], [True, False])
    # Panic threshold 0 and nothing healthy: everything to P0, no panic.
    assert priority_loads([0, 0], [0.0, 0.0], [3, 3], 0) == ([100, 0], [False, False])


# ------------------------------------------------------------------ picks


def _selector(cluster: dict, azs: list[str], seed: int, local_zone: str = "a",
              local_hosts: dict | None = None) -> LocalitySelector:
    cfg = Cluster.model_validate(cluster)
    rng = np.random.default_rng(seed)
    return LocalitySelector(cfg, azs, [1] * len(azs), [0] * len(azs), UniformStream(rng),
                            UniformStream(np.random.default_rng(seed + 10_000)), local_zone, local_hosts)


def _fractions(sel: LocalitySelector, azs: list[str], picks: int) -> dict[str, float]:
    counts: dict[str, int] = {}
    for _ in range(picks):
        z = azs[sel.pick()]
        counts[z] = counts.get(z, 0) + 1
    return {z: counts.get(z, 0) / picks for z in sorted(set(azs))}


@pytest.mark.parametrize("policy", ["RANDOM", "ROUND_ROBIN", "LEAST_REQUEST"])
def test_picks_match_the_shares_within_a_confidence_interval(policy):
    azs = ["a"] * 2 + ["b"] * 3 + ["c"] * 5
    local = {"a": 3, "b": 3, "c": 3}
    expected = _closed_form(local, {"a": 2, "b": 3, "c": 5}, "a")
    cluster = {"lb_policy": policy, "common_lb_config": {"zone_aware_lb_config": {}}}
    runs = [_fractions(_selector(cluster, azs, seed, "a", local), azs, 4000) for seed in range(8)]
    for z, share in expected.items():
        assert_matches([r[z] for r in runs], share, 0, f"{policy} share of zone {z}", abs_width=0.02)


def test_routing_enabled_zero_and_panic_turn_it_off():
    azs = ["a"] * 3 + ["b"] * 3 + ["c"] * 4
    local = {"a": 1, "b": 1, "c": 1}
    off = {"lb_policy": "RANDOM", "common_lb_config": {"zone_aware_lb_config": {"routing_enabled": 0}}}
    runs = [_fractions(_selector(off, azs, s, "a", local), azs, 4000) for s in range(8)]
    assert_matches([r["a"] for r in runs], 0.3, 0, "routing_enabled 0: share of zone a", abs_width=0.02)
    # Panic: 4 of 10 healthy (< 50 %), 1.4 x 40 % = 56 % < 100 -> panic: picks over every host.
    on = {"lb_policy": "RANDOM", "common_lb_config": {"zone_aware_lb_config": {"min_cluster_size": 0}}}
    runs = []
    for s in range(8):
        sel = _selector(on, azs, s, "a", local)
        sel.use([0, 3, 6, 7])
        assert sel.panic == [True]
        runs.append(_fractions(sel, azs, 4000))
    assert_matches([r["a"] for r in runs], 0.3, 0, "panic: share of zone a", abs_width=0.02)


def test_locality_weights_with_overprovisioning():
    azs = ["a"] * 4 + ["b"] * 4
    cluster = {"lb_policy": "RANDOM",
               "common_lb_config": {"locality_weighted_lb_config": {"locality_weights": {"a": 1, "b": 3}}}}
    sel = _selector(cluster, azs, 1)
    f = _fractions(sel, azs, 4000)
    assert f["a"] == pytest.approx(0.25, abs=0.001)  # EDF: deterministic shares
    # Half of b unhealthy: b's availability min(1, 1.4 x 0.5) = 0.7 -> weight 2.1.
    sel.use([0, 1, 2, 3, 4, 5])
    f = _fractions(sel, azs, 31000)
    assert f["a"] == pytest.approx(1 / 3.1, abs=0.001)


def test_priority_failover_by_health():
    azs = ["a"] * 4 + ["b"] * 4
    cluster = {"lb_policy": "RANDOM", "priorities": {"b": 1}}
    sel = _selector(cluster, azs, 3)
    assert sel.loads == [100, 0] and _fractions(sel, azs, 1000)["a"] == 1.0
    sel.use([0, 1, 4, 5, 6, 7])  # P0: 2 of 4 healthy -> health 70
    runs = []
    for s in range(8):
        sel = _selector(cluster, azs, s)
        sel.use([0, 1, 4, 5, 6, 7])
        assert sel.loads == [70, 30]
        runs.append(_fractions(sel, azs, 4000))
    assert_matches([r["a"] for r in runs], 0.7, 0, "P0 share", abs_width=0.02)


# ------------------------------------------------------------------ a whole fleet


def test_fleet_local_fraction_per_gateway_matches_the_closed_form():
    from sim.fleet import Fleet

    za = {"lb_policy": "RANDOM", "common_lb_config": {"zone_aware_lb_config": {}}}
    gateways = {f"gw-{z}": {"az": z, "instances": 1, "workers": 4, "cpu_time_s": 0.0001,
                            "route": {"timeout_s": 10.0}, "cluster": za} for z in ("a", "b", "c")}
    backends = {"a": 2, "b": 3, "c": 5}
    exp = experiment(topology__regions={"r1": {"azs": ["a", "b", "c"]}},
                     topology__balancers={"r1": {"policy": "round_robin", "cross_zone": False}},
                     topology__gateways=gateways,
                     topology__services__api__instances_per_az=backends,
                     topology__services__api__workers=16,
                     workload={"arrivals": "poisson", "rate_schedule": [{"at_s": 0, "rate_per_s": 600.0}]},
                     duration_s=10.0)
    assert exp.topology.gateways["gw-a"].cluster.common_lb_config.zone_aware_lb_config.local_cluster == \
        ["gw-a", "gw-b", "gw-c"]
    fleet = Fleet(exp)
    fleet.run()
    for z in ("a", "b", "c"):
        cluster = fleet.gateways[f"gw-{z}"][0].clusters["api"]
        local = sum(k for h, k in zip(cluster.hosts, cluster.sent, strict=True) if h.az == z)
        n = sum(cluster.sent)
        expected = _closed_form({"a": 1, "b": 1, "c": 1}, backends, z)[z]
        half = 2.58 * (expected * (1 - expected) / n) ** 0.5 + 2 / BASIS
        assert abs(local / n - expected) <= half, (z, local / n, expected, n)
        assert cluster.selector.results()["state"] in (LOCALITY_DIRECT, LOCALITY_RESIDUAL)


def test_health_checks_feed_priority_failover_with_the_healthy_hosts():
    # Backends a1 (priority 0) and a2 (priority 1), two each. Three failing health checks leave
    # 1 of 4 healthy: cluster-wide that is panic (25 % < 50 %), but per priority P0 has health 0
    # and P1 1.4 x 50 % = 70 (normalized 70 < 100, P1's 50 % is not below 50): every pick goes
    # to the one healthy host of P1.
    from sim.fleet import Fleet

    hc = {"timeout_s": 1.0, "interval_s": 5.0, "unhealthy_threshold": 1, "healthy_threshold": 1}
    exp = experiment(topology__regions={"r1": {"azs": ["a1", "a2"]}},
                     topology__gateways__gw__cluster={"lb_policy": "RANDOM", "priorities": {"a2": 1},
                                                      "health_check": hc},
                     topology__services__api__instances_per_az={"a1": 2, "a2": 2})
    fleet = Fleet(exp)
    c = fleet.gateways["gw"][0].clusters["api"]
    assert c.selector.loads == [100, 0]
    for host in (0, 1, 2):
        c.health.set_hc_failed(host, True)
    assert c.selector.loads == [0, 100] and c.selector.panic == [True, False]
    assert {c.pick() for _ in range(200)} == {3}
    c.health.set_hc_failed(0, False)  # P0: 1 of 2 healthy -> health 70, P1 30
    assert c.selector.loads == [70, 30]
    assert {c.pick() for _ in range(400)} == {0, 3}
