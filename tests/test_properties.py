"""Property tests: any valid configuration runs, conserves requests and round-trips.

Hypothesis draws whole experiments as plain dicts, the form the YAML loader
hands to validation: 1-2 regions of 1-3 AZs, gateway pools in every region
that has clients, every LB and balancer policy, services with random
instances per AZ (each client region holds an instance of every service it
asks for), every kind of distribution, queue limits down to 0, error
probabilities, route timeouts that are sometimes shorter than the service
time (so 504s happen), 2-5 s runs at low rates. Every example is checked by
the loader's own validation (pydantic and the cross-field rules), laid out
and run by :class:`sim.fleet.Fleet`. Examples are derandomized so every run
of the suite draws the same ones.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from sim.components.request import BACKEND_ERROR, BACKEND_OVERFLOW, ROUTE_TIMEOUT
from sim.config import Experiment, backend_name, dump_resolved, load_experiment
from sim.config.loader import validate
from sim.fleet import Fleet

CAUSES = {BACKEND_OVERFLOW, BACKEND_ERROR, ROUTE_TIMEOUT}

RUNS = settings(max_examples=100, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ROUND_TRIPS = settings(max_examples=60, deadline=None, derandomize=True,
                       suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def positive(lo: float, hi: float):
    return st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False)


@st.composite
def distributions(draw, scale: float):
    """Any distribution kind, with a mean of roughly ``scale``; a bare number sometimes."""
    kind = draw(st.sampled_from(["number", "constant", "exponential", "lognormal", "gamma", "uniform",
                                 "empirical"]))
    m = draw(positive(scale / 10, scale * 3))
    if kind == "number":
        return m
    if kind == "constant":
        return {"dist": "constant", "value": draw(st.sampled_from([0.0, m]))}
    if kind == "exponential":
        return {"dist": "exponential", "mean": m}
    if kind == "lognormal":
        return {"dist": "lognormal", "median": m, "p99": m * draw(positive(1.01, 20.0))}
    if kind == "gamma":
        return {"dist": "gamma", "mean": m, "cv": draw(positive(0.1, 3.0))}
    if kind == "uniform":
        low = draw(positive(0.0, m))
        return {"dist": "uniform", "low": low, "high": low + draw(st.sampled_from([0.0, m]))}
    n = draw(st.integers(min_value=0, max_value=3))
    inner = sorted(draw(st.lists(positive(0.0, 1.0), min_size=n, max_size=n)))
    values = sorted(draw(st.lists(positive(0.0, 2 * m), min_size=n + 2, max_size=n + 2)))
    return {"dist": "empirical", "quantiles": [[p, v] for p, v in zip([0.0, *inner, 1.0], values, strict=True)]}


def shares(draw, keys: list[str]) -> dict[str, float]:
    """Positive shares of ``keys`` that sum to 1 (within the checker's tolerance)."""
    weights = [draw(st.integers(min_value=1, max_value=4)) for _ in keys]
    total = sum(weights)
    return {k: w / total for k, w in zip(keys, weights, strict=True)}


@st.composite
def experiments(draw) -> dict:
    n_regions = draw(st.integers(min_value=1, max_value=2))
    regions = {f"r{r}": {"azs": [f"r{r}-az{a}" for a in range(draw(st.integers(1, 3)))]}
               for r in range(n_regions)}
    # Every region with clients needs a balancer and gateways; any other region
    # must hold neither (the fleet builder refuses unconnected parts).
    client_regions = sorted(draw(st.sets(st.sampled_from(sorted(regions)), min_size=1)))
    client_azs = [az for r in client_regions for az in regions[r]["azs"]]

    topo: dict = {
        "name": "generated",
        "regions": regions,
        "clients": {r: {"share": s} for r, s in shares(draw, client_regions).items()},
        "balancers": {
            r: {"policy": draw(st.sampled_from(["round_robin", "random", "least_connections"])),
                "cross_zone": draw(st.booleans())}
            for r in client_regions
        },
        "gateways": {},
        "services": {},
    }
    if draw(st.booleans()):
        topo["network"] = {rel: draw(distributions(0.0005)) for rel in
                           ("same_az_s", "cross_az_s", "cross_region_s", "internet_s")}

    for r in client_regions:
        for k in range(draw(st.integers(1, 2))):
            pool: dict = {"az": draw(st.sampled_from(regions[r]["azs"])),
                          "instances": draw(st.integers(1, 3)),
                          "workers": draw(st.integers(1, 3))}
            if draw(st.booleans()):
                pool["cpu_time_s"] = draw(distributions(0.0002))
            if draw(st.booleans()):
                pool["route"] = {"timeout_s": draw(positive(0.005, 1.0))}
            cluster: dict = {"lb_policy": draw(st.sampled_from(["ROUND_ROBIN", "RANDOM", "LEAST_REQUEST"]))}
            if draw(st.booleans()):
                cluster["least_request_lb_config"] = {"choice_count": draw(st.integers(2, 4)),
                                                      "active_request_bias": draw(st.sampled_from([0.0, 1.0, 1.5]))}
            pool["cluster"] = cluster
            topo["gateways"][f"gw-{r}-{k}"] = pool

    names = [f"svc{i}" for i in range(draw(st.integers(1, 2)))]
    for name in names:
        per_az = {az: draw(st.integers(0, 2)) for az in client_azs}
        for r in client_regions:  # each client region can reach an instance
            azs = regions[r]["azs"]
            if not any(per_az[az] for az in azs):
                per_az[draw(st.sampled_from(azs))] = 1
        svc: dict = {
            "instances_per_az": per_az,
            "workers": draw(st.integers(1, 4)),
            "queue_limit": draw(st.sampled_from([0, 1, 3, 50])),
            "service_time_s": draw(distributions(draw(st.sampled_from([0.002, 0.02, 0.2])))),
            "error_probability": draw(st.sampled_from([0.0, 0.0, 0.05, 0.5, 1.0])),
        }
        if draw(st.booleans()):
            svc["request_bytes"] = draw(distributions(1000.0))
            svc["response_bytes"] = draw(distributions(5000.0))
        instances = [backend_name(name, az, i) for az, n in per_az.items() for i in range(n)]
        if draw(st.booleans()):
            inst = draw(st.sampled_from(instances))
            svc["instance_overrides"] = {inst: {"service_time_factor": draw(positive(0.2, 5.0)),
                                                "lb_weight": draw(st.integers(1, 5))}}
        topo["services"][name] = svc

    duration_s = draw(st.integers(2, 5)) + draw(st.sampled_from([0.0, 0.5]))
    schedule = [{"at_s": 0, "rate_per_s": draw(positive(1.0, 50.0))}]
    if draw(st.booleans()):
        schedule.append({"at_s": draw(positive(0.5, duration_s)), "rate_per_s": draw(positive(0.0, 50.0)),
                         "ramp_s": draw(st.sampled_from([0.0, 1.0]))})
    workload: dict = {"rate_schedule": schedule}
    if len(names) > 1 or draw(st.booleans()):
        workload["services"] = shares(draw, names)
    return {
        "name": "prop",
        "topology": topo,
        "workload": workload,
        "duration_s": duration_s,
        "warmup_s": draw(st.sampled_from([0.0, 0.0, 0.5, 1.0])),
        "seed": draw(st.integers(0, 2**32)),
    }


def _valid(data: dict) -> Experiment:
    return validate(data, {}, "<generated>")


@RUNS
@given(experiments())
def test_any_valid_fleet_runs_and_conserves_requests(data):
    exp = _valid(data)
    result = Fleet(exp).run()
    s = result["summary"]
    req = s["requests"]
    failed = req["failed"]
    assert set(failed) <= CAUSES
    assert all(n > 0 for n in failed.values())
    assert req["offered"] == req["succeeded"] + sum(failed.values()) + req["in_flight"]
    assert req["in_flight"] >= 0
    assert 0 <= s["goodput_rps"] <= s["throughput_rps"]
    assert math.isfinite(s["throughput_rps"])
    if all(svc.error_probability == 0 for svc in exp.topology.services.values()):
        assert BACKEND_ERROR not in failed
    # Every request issued was answered or is still live, whether counted or not.
    ts = result["timeseries"]
    assert sum(ts["offered"]) == result["requests"] >= req["offered"]
    assert sum(ts["throughput"]) <= result["requests"]
    assert all(x >= 0 for x in ts["in_flight"])


@RUNS
@given(experiments())
def test_same_seed_same_summary(data):
    exp = _valid(data)
    # Short runs only: two runs per example.
    exp = exp.model_copy(update={"duration_s": 2.0, "warmup_s": 0.0})
    # Compared as the runner stores them (NaN latencies of a run with no success included).
    first, second = (json.dumps(Fleet(exp).run()["summary"], sort_keys=True) for _ in range(2))
    assert first == second


HC_DERIVED = ("unhealthy_interval_s", "unhealthy_edge_interval_s", "healthy_edge_interval_s",
              "no_traffic_healthy_interval_s")


@st.composite
def with_derived_defaults(draw) -> dict:
    """An experiment whose pools may hold the sections with derived defaults.

    Retry back-off, outlier detection and health checks, each derived field
    given or left to its rule at random (an ejection base above 300 s
    sometimes, so max(300 s, base) takes either side), and output.instances.
    Kept apart from :func:`experiments` so the runs above draw what they drew.
    """
    data = draw(experiments())
    for pool in data["topology"]["gateways"].values():
        if draw(st.booleans()):
            back_off = {"base_interval_s": draw(st.sampled_from([0.001, 0.025, 0.0255, 0.1]))}
            if draw(st.booleans()):
                back_off["max_interval_s"] = back_off["base_interval_s"] * draw(st.sampled_from([1, 3, 20]))
            pool.setdefault("route", {})["retry_policy"] = {"retry_on": ["5xx"], "retry_back_off": back_off}
        cluster = pool["cluster"]
        if draw(st.booleans()):
            od: dict = {"base_ejection_time_s": draw(st.sampled_from([0.5, 30.0, 299.5, 300.0, 450.0]))}
            if draw(st.booleans()):
                od["max_ejection_time_s"] = od["base_ejection_time_s"] * draw(st.sampled_from([1, 2]))
            cluster["outlier_detection"] = od
        if draw(st.booleans()):
            hc: dict = {"timeout_s": 0.5, "interval_s": draw(st.sampled_from([0.1, 1.0, 5.0])),
                        "unhealthy_threshold": 2, "healthy_threshold": 1}
            if draw(st.booleans()):
                hc["no_traffic_interval_s"] = draw(st.sampled_from([2.0, 30.0]))
            for key in HC_DERIVED:
                if draw(st.booleans()):
                    hc[key] = draw(st.sampled_from([0.2, 3.0, 7.5]))
            cluster["health_check"] = hc
    if draw(st.booleans()):
        data["output"] = {"instances": draw(st.booleans())}
    return data


@ROUND_TRIPS
@given(with_derived_defaults())
def test_resolved_dump_round_trips(data):
    exp = _valid(data)
    # A value the user gave is kept as given, whatever the derived default would be.
    for pool_name, pool in data["topology"]["gateways"].items():
        model = exp.topology.gateways[pool_name].cluster
        for section in ("outlier_detection", "health_check"):
            for key, value in pool["cluster"].get(section, {}).items():
                assert getattr(getattr(model, section), key) == value
        back_off = pool.get("route", {}).get("retry_policy", {}).get("retry_back_off", {})
        for key, value in back_off.items():
            assert getattr(exp.topology.gateways[pool_name].route.retry_policy.retry_back_off, key) == value
    text = dump_resolved(exp)
    assert Experiment.model_validate(YAML(typ="safe", pure=True).load(text)) == exp
    # And through the loader, as `fleetsim run config.resolved.yaml` would read it.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.resolved.yaml"
        path.write_text(text, encoding="utf-8")
        assert load_experiment(path).config == exp
