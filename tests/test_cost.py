"""Dollars from bytes and balancers (sim/metrics/cost.py), presets and overrides (sim/config/pricing.py)."""

from __future__ import annotations

import pytest

from sim.config.models import Cost
from sim.config.pricing import HOURS_PER_MONTH, PRESETS
from sim.metrics.cost import SECONDS_PER_MONTH, cost_section
from tests.fleet_builders import experiment

AZ_REGION = {"a1": "r1", "a2": "r1", "b1": "r2"}


def test_presets_and_overrides():
    aws = Cost.model_validate({})
    assert aws.prices.cross_az_per_gb == 0.02 and aws.prices.l7.cross_az_billed is False
    assert aws.prices.l4.capacity_unit_new_connections_per_s == 800
    gcp = Cost.model_validate({"provider": "gcp", "prices": {"cross_az_per_gb": 0.015, "l4": {"per_gb": 0.0}}})
    assert gcp.prices.gb_bytes == 2**30 and gcp.prices.cross_az_per_gb == 0.015
    assert gcp.prices.l4.per_gb == 0.0 and gcp.prices.l4.hourly == PRESETS["gcp"]["l4"]["hourly"]
    # The resolved model loads back to itself.
    assert Cost.model_validate(gcp.model_dump()) == gcp
    with pytest.raises(ValueError, match="prices"):
        Cost.model_validate({"provider": "custom"})


def test_cost_arithmetic_exact():
    cost = Cost.model_validate({"provider": "aws", "production_rps": 1000.0})
    by_purpose = {
        "client": {"internet->a1": 1e9, "a1->internet": 4e9},
        "balancer_gateway": {"a1->a2": 2e9, "a2->a1": 3e9, "a1->a1": 7e9},
        "gateway_backend": {"a2->a1": 1e9, "a1->b1": 5e8},
        "health_check": {"a1->a2": 1e6},
    }
    calls, window = 10_000, 100.0  # 100 calls/s simulated; production 10x
    bal = {"r1": {"kind": "l4", "tries": 10_000}}
    c = cost_section(cost, by_purpose, AZ_REGION, bal, calls, window)
    scale = 1000.0 * SECONDS_PER_MONTH / calls
    # Window dollars: egress 4 GB x 0.09; cross-AZ (2+3+1 GB + 1 MB) x 0.02 (NLB cross-zone bytes billed);
    # cross-region 0.5 GB x 0.02.
    egress, cross_az, cross_region = 4 * 0.09, (6 + 0.001) * 0.02, 0.5 * 0.02
    assert c["window_dollars"] == pytest.approx(egress + cross_az + cross_region)
    assert c["monthly_by_relation"]["cross_az"] == pytest.approx(cross_az * scale)
    assert c["monthly_by_relation"]["cross_region"] == pytest.approx(cross_region * scale)
    assert c["monthly_by_purpose"]["health_check"] == pytest.approx(0.001 * 0.02 * scale)
    # Balancer: processed 12 GB in the window -> 12 x scale GB a month; NLCU: max(GB/h, conns/s / 800).
    b = c["balancers"]["r1"]
    gb_hour = 12 * scale / HOURS_PER_MONTH
    assert b["capacity_units"] == pytest.approx(max(gb_hour, 1000.0 / 800))
    assert b["monthly_dollars"] == pytest.approx(0.0225 * HOURS_PER_MONTH + b["capacity_units"] * 0.006 * HOURS_PER_MONTH)
    total = (egress + cross_az + cross_region) * scale + b["monthly_dollars"]
    assert c["monthly_dollars"] == pytest.approx(total)
    assert c["per_million_calls"] == pytest.approx(total / (1000.0 * SECONDS_PER_MONTH) * 1e6)
    # An ALB does not bill its cross-zone bytes to the gateways.
    alb = cost_section(cost, by_purpose, AZ_REGION, {"r1": {"kind": "l7", "tries": 10_000}}, calls, window)
    assert alb["monthly_by_relation"]["cross_az"] == pytest.approx((1 + 0.001) * 0.02 * scale)
    # New connections dominate an ALB's LCUs at 25 a second each.
    assert alb["balancers"]["r1"]["capacity_units"] == pytest.approx(max(gb_hour, 1000.0 / 25))


def test_fleet_bytes_by_purpose_add_up_and_are_priced():
    from sim.fleet import Fleet

    exp = experiment(topology__regions={"r1": {"azs": ["a1", "a2"]}},
                     topology__balancers={"r1": {"policy": "round_robin", "cross_zone": True}},
                     topology__gateways={"gw": {"az": "a1", "instances": 1, "workers": 1, "cpu_time_s": 0.0001,
                                                "route": {"timeout_s": 10.0}}},
                     topology__services__api__instances_per_az={"a1": 1, "a2": 1},
                     workload={"arrivals": "deterministic", "rate_schedule": [{"at_s": 0, "rate_per_s": 10.0}]},
                     duration_s=10.5, cost={"provider": "aws", "production_rps": 100.0})
    s = Fleet(exp).run()["summary"]
    pairs: dict[str, float] = {}
    for per in s["bytes_by_purpose"].values():
        for k, v in per.items():
            pairs[k] = pairs.get(k, 0) + v
    assert pairs == s["bytes_by_az_pair"]
    # One gateway in a1, backends in a1 and a2 (round robin): half the tries cross to a2, each
    # 1000 bytes out and 5000 back; the balancer's node in a2 has no gateway, so none there.
    gb = s["bytes_by_purpose"]["gateway_backend"]
    tries = s["gateway"]["gw"]["requests"]
    assert gb["a1->a2"] + gb["a2->a1"] == pytest.approx(6000 * tries / 2, abs=6000)
    cross = (gb["a1->a2"] + gb["a2->a1"]) / 1e9 * 0.02
    scale = 100.0 * SECONDS_PER_MONTH / s["requests"]["offered"]
    assert s["cost"]["monthly_by_relation"]["cross_az"] == pytest.approx(cross * scale)


def test_without_cost_the_summary_has_no_cost_keys():
    from sim.fleet import Fleet

    s = Fleet(experiment()).run()["summary"]
    assert "cost" not in s and "bytes_by_purpose" not in s and "zone_routing" not in s


def test_access_logs_shipped_to_another_az_are_cross_az_bytes_priced_as_logs():
    """Every line a gateway logs ships ``bytes_per_line`` to the collector's AZ: counted by pair
    (``bytes_by_az_pair``) and purpose (``logs``), and priced as cross-AZ bytes."""
    from sim.fleet import Fleet

    exp = experiment(topology__regions={"r1": {"azs": ["a1", "a2"]}},
                     topology__gateways={"gw": {"az": "a1", "instances": 2, "workers": 1, "cpu_time_s": 0.0001,
                                                "route": {"timeout_s": 10.0},
                                                "access_log": {"success_sample": 1.0, "failure_sample": 1.0,
                                                               "bytes_per_line": 500, "collector_az": "a2"}}},
                     workload={"arrivals": "deterministic", "rate_schedule": [{"at_s": 0, "rate_per_s": 10.0}],
                               "connections": {"clients": 4}},
                     duration_s=10.5, cost={"provider": "aws", "production_rps": 100.0})
    s = Fleet(exp).run()["summary"]
    lines = s["access_log"]["pools"]["gw"]["lines"]
    assert lines > 90
    assert s["bytes_by_purpose"]["logs"] == {"a1->a2": 500 * lines}
    pairs: dict[str, float] = {}
    for per in s["bytes_by_purpose"].values():
        for k, v in per.items():
            pairs[k] = pairs.get(k, 0) + v
    assert pairs == s["bytes_by_az_pair"]
    scale = 100.0 * SECONDS_PER_MONTH / s["requests"]["offered"]
    assert s["cost"]["monthly_by_purpose"]["logs"] == pytest.approx(500 * lines / 1e9 * 0.02 * scale)
