"""Derived defaults are resolved in the config models, so ``config.resolved.yaml`` is complete.

A field whose default Envoy derives from another field (a health check's
``unhealthy_interval_s``, outlier detection's ``max_ejection_time_s``, a retry
back-off's ``max_interval_s``) and the workload's service mix are filled in
when the configuration is validated, following the documented rule; a value
the user gave is kept as given; the resolved YAML shows every value, loads
back to the same model and resolves to the same text again; the JSON schema
still states each rule.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML

from sim.config import (
    ConfigError,
    Experiment,
    Output,
    backend_name,
    dump_resolved,
    gateway_name,
    json_schema,
    load_experiment,
)
from sim.config.models import HealthCheck, OutlierDetection, RetryBackOff
from sim.config.naming import BACKEND_RULE, GATEWAY_RULE

ROOT = Path(__file__).resolve().parents[1]

HC = {"timeout_s": 0.5, "interval_s": 2.0, "unhealthy_threshold": 2, "healthy_threshold": 1}

TOPOLOGY = """\
name: t
regions: {r1: {azs: [az1, az2]}}
clients: {r1: {share: 1.0}}
balancers: {r1: {}}
gateways:
  gw: {az: az1, instances: 2}
services:
  api: {instances_per_az: {az1: 2, az2: 1}, service_time_s: 0.01}
"""

EXPERIMENT = """\
name: e
topology: topo.yaml
overrides:
  gateways.gw.cluster.outlier_detection: {base_ejection_time_s: 400}
workload:
  rate_schedule: [{at_s: 0, rate_per_s: 10}]
duration_s: 2
"""


# --------------------------------------------------------------------------- the rules


def test_health_check_intervals_follow_envoy_fallbacks():
    hc = HealthCheck(**HC, no_traffic_interval_s=30.0)
    assert (hc.unhealthy_interval_s, hc.unhealthy_edge_interval_s, hc.healthy_edge_interval_s,
            hc.no_traffic_healthy_interval_s) == (2.0, 2.0, 2.0, 30.0)
    # unhealthy_edge follows the unhealthy interval when only that is given.
    hc = HealthCheck(**HC, unhealthy_interval_s=5.0)
    assert (hc.unhealthy_interval_s, hc.unhealthy_edge_interval_s, hc.healthy_edge_interval_s) == (5.0, 5.0, 2.0)
    # Derived values are not "given": model_fields_set lists only what the user wrote.
    assert "unhealthy_edge_interval_s" not in hc.model_fields_set


@pytest.mark.parametrize("key", ["unhealthy_interval_s", "unhealthy_edge_interval_s", "healthy_edge_interval_s",
                                 "no_traffic_healthy_interval_s"])
def test_a_given_interval_is_kept(key):
    hc = HealthCheck(**HC, **{key: 0.3})
    assert getattr(hc, key) == 0.3
    others = {k: getattr(hc, k) for k in ("unhealthy_interval_s", "unhealthy_edge_interval_s",
                                          "healthy_edge_interval_s") if k != key}
    expected = {"unhealthy_interval_s": 2.0, "healthy_edge_interval_s": 2.0,
                "unhealthy_edge_interval_s": 0.3 if key == "unhealthy_interval_s" else 2.0}
    assert others == {k: expected[k] for k in others}


@pytest.mark.parametrize(("base", "given", "expected"), [
    (30.0, None, 300.0), (300.0, None, 300.0), (450.0, None, 450.0), (30.0, 60.0, 60.0), (30.0, 30.0, 30.0),
])
def test_max_ejection_time(base, given, expected):
    od = OutlierDetection(base_ejection_time_s=base, max_ejection_time_s=given)
    assert od.max_ejection_time_s == expected


def test_a_given_max_ejection_time_below_base_is_still_refused():
    with pytest.raises(ValidationError, match=r"max_ejection_time_s \(60\) cannot be smaller than "
                                              r"base_ejection_time_s \(400\)"):
        OutlierDetection(base_ejection_time_s=400, max_ejection_time_s=60)


@pytest.mark.parametrize(("base", "given", "expected"), [
    (0.025, None, 0.25), (0.001, None, 0.01), (0.0255, None, 0.26), (0.1, 0.15, 0.15),
])
def test_retry_back_off_max(base, given, expected):
    bo = RetryBackOff(base_interval_s=base, max_interval_s=given)
    assert bo.max_interval_s == expected


# --------------------------------------------------------------------------- whole experiments


def write(tmp_path: Path, experiment: str = EXPERIMENT, topology: str = TOPOLOGY) -> Path:
    (tmp_path / "topo.yaml").write_text(topology, encoding="utf-8")
    path = tmp_path / "exp.yaml"
    path.write_text(experiment, encoding="utf-8")
    return path


def reload(tmp_path: Path, exp: Experiment) -> tuple[str, Experiment]:
    text = dump_resolved(exp)
    path = tmp_path / "config.resolved.yaml"
    path.write_text(text, encoding="utf-8")
    return text, load_experiment(path).config


def test_resolved_yaml_shows_every_derived_value_and_round_trips(tmp_path):
    exp = load_experiment(write(tmp_path), ["topology.gateways.gw.cluster.health_check=" + str(HC)]).config
    text, back = reload(tmp_path, exp)
    data = YAML(typ="safe", pure=True).load(text)
    cluster = data["topology"]["gateways"]["gw"]["cluster"]
    assert cluster["outlier_detection"]["max_ejection_time_s"] == 400.0
    hc = cluster["health_check"]
    assert (hc["unhealthy_interval_s"], hc["unhealthy_edge_interval_s"], hc["healthy_edge_interval_s"],
            hc["no_traffic_healthy_interval_s"]) == (2.0, 2.0, 2.0, 60.0)
    assert data["workload"]["services"] == {"api": 1.0}
    assert data["output"] == {"instances": False}
    assert back == exp
    assert dump_resolved(back) == text  # a fixed point: resolving the resolved file changes nothing


def test_a_variant_resolves_from_its_own_values(tmp_path):
    # The variant changes the fields the defaults derive from; its derived values follow them.
    path = write(tmp_path, EXPERIMENT + """\
variants:
  slow_checks:
    topology.gateways.gw.cluster.health_check: {timeout_s: 0.5, interval_s: 9, unhealthy_threshold: 2,
                                                healthy_threshold: 1}
    topology.gateways.gw.cluster.outlier_detection.base_ejection_time_s: 20
""")
    loaded = load_experiment(path)
    v = loaded.variants["slow_checks"]
    assert v.topology.gateways["gw"].cluster.health_check.unhealthy_edge_interval_s == 9.0
    assert v.topology.gateways["gw"].cluster.outlier_detection.max_ejection_time_s == 300.0
    assert loaded.config.topology.gateways["gw"].cluster.outlier_detection.max_ejection_time_s == 400.0
    assert reload(tmp_path, v)[1] == v


def test_the_service_mix_is_required_with_several_services(tmp_path):
    two = TOPOLOGY + "  auth: {instances_per_az: {az1: 1}, service_time_s: 0.01}\n"
    with pytest.raises(ConfigError, match=r"workload\.services: required when the topology has several"):
        load_experiment(write(tmp_path, topology=two))


def test_every_experiment_round_trips(tmp_path):
    for f in sorted(ROOT.glob("experiments/**/*.yaml")):
        if f.parent.name == "matrices":
            continue  # decision matrices (fleetsim matrix), not experiments: tests/test_matrix.py
        loaded = load_experiment(f)
        for exp in [loaded.config, *loaded.variants.values()]:
            if exp.variants:
                continue  # the runner writes each variant's file, never the base's with its variants
            if exp.topology.calibration is None:
                text, back = reload(tmp_path, exp)
            else:
                # The profile path is relative to the topology file, which a run folder does not
                # hold: validate the resolved document itself.
                text = dump_resolved(exp)
                back = Experiment.model_validate(YAML(typ="safe", pure=True).load(text))
            assert back == exp, f
            assert dump_resolved(back) == text, f


# --------------------------------------------------------------------------- schema and names


def test_schema_states_each_rule():
    defs = json_schema()["$defs"]
    for model, key, rule in [("HealthCheck", "unhealthy_interval_s", "interval_s"),
                             ("HealthCheck", "unhealthy_edge_interval_s", "unhealthy_interval_s"),
                             ("HealthCheck", "healthy_edge_interval_s", "interval_s"),
                             ("HealthCheck", "no_traffic_healthy_interval_s", "no_traffic_interval_s"),
                             ("OutlierDetection", "max_ejection_time_s", "max(300 s, base_ejection_time_s)"),
                             ("RetryBackOff", "max_interval_s", "10 x base_interval_s"),
                             ("Workload", "services", "the topology's only service")]:
        prop = defs[model]["properties"][key]
        assert prop["default"] is None and {"type": "null"} in prop["anyOf"], (model, key)
        assert f"Default (null): {rule}" in prop["description"], (model, key)
    out = defs["Output"]["properties"]["instances"]
    assert out["default"] is False and "instance-level results" in out["description"]
    assert Output().instances is False


def test_instance_names():
    assert backend_name("api", "use1-az1", 0) == "api-use1-az1-0"
    assert gateway_name("gw-az1", 2) == "gw-az1-2"
    assert (BACKEND_RULE, GATEWAY_RULE) == ("<service>-<az>-<i>", "<pool>-<i>")
