"""The decision matrix: preset topologies, the matrix file, and the table end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sim.cli import main as fleetsim
from sim.config.errors import ConfigError
from sim.config.loader import load_topology
from sim.runner.matrix import ExtraCost, failed_share, load_matrix, run_matrix

ROOT = Path(__file__).resolve().parent.parent
MATRIX = ROOT / "experiments" / "matrices" / "decision_matrix.yaml"
PRESETS = sorted((ROOT / "topologies" / "presets").glob("*.yaml"))
#: Shortened: a light load, one replication, the faults from 6 s to 12 s, judged to 20 s.
SHORT = ["duration_s=20", "warmup_s=2", "replications=1", "workload.rate_schedule=[{at_s: 0, rate_per_s: 150}]",
         "workload.connections.clients=100",
         "variants.slow_backend.faults.0.at_s=6", "variants.slow_backend.faults.0.for_s=6",
         "variants.failing_backend.faults.0.at_s=6", "variants.failing_backend.faults.0.for_s=6",
         "variants.az_outage.faults.0.at_s=6", "variants.az_outage.faults.0.for_s=6"]


@pytest.mark.parametrize("path", PRESETS, ids=[p.stem for p in PRESETS])
def test_each_preset_loads(path):
    topo = load_topology(path)
    assert topo.name == path.stem


def test_presets_differ_in_the_gateway_tier_only():
    """The same regions, clients and backends everywhere: the matrix compares like with like."""
    topos = [load_topology(p) for p in PRESETS]
    assert len(topos) == 5
    first = topos[0]
    for t in topos[1:]:
        assert t.services == first.services, t.name
        assert t.regions == first.regions, t.name
        assert t.clients == first.clients, t.name


def test_the_matrix_file_names_every_preset_once():
    matrix = load_matrix(MATRIX)
    assert sorted(p.topology.resolve() for p in matrix.presets) == [p.resolve() for p in PRESETS]
    for p in matrix.presets:
        assert p.loaded.config.topology == load_topology(p.topology), p.name
        assert list(p.loaded.variants) == ["steady", "slow_backend", "failing_backend", "az_outage"]


def test_a_preset_set_applies_to_that_preset_alone():
    matrix = load_matrix(MATRIX)
    by = {p.name: p.loaded.config for p in matrix.presets}
    assert by["onprem_mesh"].cost.prices.cross_az_per_gb == 0.0
    assert by["envoy_edge"].cost.prices.cross_az_per_gb == 0.02  # AWS's preset


def test_extra_cost_per_million_calls():
    # $0.60 per million calls at 100 calls/s: 100 x 3,600 x 730 = 262.8 M calls a month.
    assert ExtraCost("waf", 15.0, 0.60).monthly(100.0) == pytest.approx(15.0 + 0.60 * 262.8)


def test_failed_share_pools_the_window(tmp_path):
    ts = tmp_path / "timeseries.csv"
    ts.write_text("replication,t_s,throughput,goodput\n"
                  "0,9,100,100\n0,10,100,90\n0,11,100,70\n0,12,100,100\n1,10,50,50\n")
    assert failed_share(ts, 10, 12) == pytest.approx(40 / 250)
    assert failed_share(ts, 20, 30) is None


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "m.yaml"
    p.write_text(text)
    return p


def test_bad_matrix_files_name_the_file_field_and_reason(tmp_path):
    exp = ROOT / "experiments" / "decision_matrix.yaml"
    topo = ROOT / "topologies" / "presets" / "envoy_edge.yaml"
    with pytest.raises(ConfigError) as e:
        load_matrix(_write(tmp_path, f"name: m\nexperiment: {exp}\npresets:\n  a: {{topology: nope.yaml}}\n"))
    assert str(e.value) == f"{tmp_path / 'm.yaml'}:4: presets.a.topology: nope.yaml: no such file"
    with pytest.raises(ConfigError) as e:
        load_matrix(_write(tmp_path, f"name: m\nexperiment: {exp}\npresets:\n  a:\n    topology: {topo}\n"
                                     "    extra_costs: [{item: x, monthly_usd: -1}]\n"))
    assert "presets.a.extra_costs.0.monthly_usd: expected a number of dollars, at least 0, got -1" in str(e.value)
    with pytest.raises(ConfigError) as e:
        # A fault aimed at an AZ the preset lacks is the preset's problem, located at the preset.
        load_matrix(_write(tmp_path, f"name: m\nexperiment: {exp}\npresets:\n  a:\n    topology: {topo}\n"
                                     "    set: {faults: [{kind: az_outage, at_s: 1, for_s: 1, az: nowhere}]}\n"))
    first = e.value.issues[0]
    assert (first.file, first.line) == (str(tmp_path / "m.yaml"), 4) and "presets.a" in first.path
    assert fleetsim(["matrix", str(tmp_path / "m.yaml")]) == 2
    with pytest.raises(ConfigError) as e:
        load_matrix(MATRIX, ["bogus=1"])
    (only,) = e.value.issues  # once, not once per preset
    assert (only.file, only.line, only.path) == ("<command line>", None, "bogus")
    assert only.reason.startswith("(document) has no field 'bogus'")


def test_the_matrix_runs_end_to_end(tmp_path):
    matrix = load_matrix(MATRIX, SHORT)
    run_dir = run_matrix(matrix, tmp_path, jobs=1, show_progress=False, report=True)
    doc = json.loads((run_dir / "matrix.json").read_text())
    rows = doc["rows"]
    presets = [p.name for p in matrix.presets]
    scenarios = ["steady", "slow_backend", "failing_backend", "az_outage"]
    assert [(r["preset"], r["scenario"]) for r in rows] == [(p, s) for p in presets for s in scenarios]
    for r in rows:
        for key in ("p50_ms", "p99_ms", "failed_share", "monthly_usd", "cross_az_usd", "gateway_compute_usd"):
            assert isinstance(r[key], float) and math.isfinite(r[key]), (r["preset"], r["scenario"], key)
        assert 0 < r["p50_ms"] <= r["p99_ms"]
        assert 0 <= r["failed_share"] <= 1
        assert r["monthly_usd"] >= r["cross_az_usd"] >= 0
        fault = r["scenario"] != "steady"
        assert (r["recovery"] == "no fault") is not fault
        assert r["judged_window_s"] == ([6.0, 12.0] if fault else [2.0, 20.0])
    by = {(r["preset"], r["scenario"]): r for r in rows}
    # What the presets say, visible in the numbers. Zone-aware routing with cross-zone off keeps
    # every Envoy hop in its AZ while the backends are healthy: no cross-AZ bytes, no dollars.
    assert by["envoy_edge", "steady"]["cross_az_usd"] == 0.0
    assert by["kong_k8s", "steady"]["cross_az_usd"] > 0.0
    # The ALB's compute is in its price; the on-prem preset pays no bytes.
    assert by["alb_waf", "steady"]["gateway_compute_usd"] == 0.0
    assert by["onprem_mesh", "steady"]["bytes_and_balancers_usd"] == 0.0
    md = (run_dir / "matrix.md").read_text()
    assert md.count("\n| ") == 2 + len(rows)  # the header, the rule and a line per row
    assert (run_dir / "report.html").is_file()
    assert all((run_dir / "presets" / p / "report.html").is_file() for p in presets)
