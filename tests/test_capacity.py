"""Capacity and offered load per service, from the configuration (summary and fleetsim check)."""

from __future__ import annotations

import pytest

from sim.fleet import Fleet
from sim.fleet.capacity import service_load

from .fleet_builders import experiment


def test_capacity_is_workers_over_mean_service_time_with_instance_factors():
    exp = experiment(
        topology__services__api__instances_per_az={"a1": 3},
        topology__services__api__workers=4,
        topology__services__api__service_time_s={"dist": "exponential", "mean": 0.02},
        topology__services__api__instance_overrides={"api-a1-2": {"service_time_factor": 2.0}},
        workload__rate_schedule=[{"at_s": 0, "rate_per_s": 100.0}, {"at_s": 10, "rate_per_s": 300.0, "ramp_s": 10}],
        duration_s=30.0, warmup_s=5.0)
    load = service_load(exp)["api"]
    assert load["capacity_rps"] == pytest.approx(4 / 0.02 + 4 / 0.02 + 4 / 0.04)  # 500/s
    # Window [5, 30]: 5 s at 100, a ramp 100 -> 300 over [10, 20] (mean 200), 10 s at 300.
    assert load["offered_rps"] == pytest.approx((5 * 100 + 10 * 200 + 10 * 300) / 25)
    assert load["peak_offered_rps"] == pytest.approx(300.0)
    assert load["offered_utilization"] == pytest.approx(load["offered_rps"] / 500.0)


def test_the_summary_records_them_and_measured_utilization_agrees():
    exp = experiment(workload__arrivals="poisson", workload__rate_schedule=[{"at_s": 0, "rate_per_s": 120.0}],
                     topology__services__api__service_time_s={"dist": "exponential", "mean": 0.005},
                     duration_s=60.0, warmup_s=5.0)
    b = Fleet(exp, 0).run()["summary"]["backend"]["api"]
    assert b["capacity_rps"] == pytest.approx(200.0) and b["offered_rps"] == pytest.approx(120.0)
    assert b["offered_utilization"] == pytest.approx(0.6)
    # One run of ~6,600 requests: the measured utilisation is within a few percent of it.
    assert b["utilization"] == pytest.approx(0.6, rel=0.05)
