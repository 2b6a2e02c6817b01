"""Sweeps: the sweep section and its points, the run cache, the executors, the command line."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from hypothesis import event, given, settings

from sim.cli import main
from sim.config import ConfigError, dump_resolved, load_experiment
from sim.runner.cache import RunCache, run_key
from sim.runner.progress import Progress
from sim.runner.sweep import run_sweep

from .property_runs import examples
from .strategies.registry import Options
from .strategies.sweep import experiments_with_sweeps

ROOT = Path(__file__).resolve().parent.parent
RATE = "workload.rate_schedule.0.rate_per_s"

#: One AZ, one gateway, two backends: a run of 2 s at 100 calls/s takes a fraction of a second.
TOPOLOGY = """\
name: tiny
regions: {r1: {azs: [a1]}}
network: {same_az_s: 0.0002, cross_az_s: 0.0005}
clients: {r1: {share: 1.0}}
balancers: {r1: {}}
gateways:
  gw: {az: a1, instances: 1, workers: 2, cpu_time_s: 0.00005}
services:
  api:
    instances_per_az: {a1: 2}
    workers: 2
    service_time_s: {dist: exponential, mean: 0.01}
"""


def experiment(tmp_path: Path, sweep: str, *, replications: int = 2, extra: str = "", name: str = "tiny") -> Path:
    """A tiny experiment file with ``sweep`` (YAML, indented under ``sweep:``)."""
    (tmp_path / "tiny_topology.yaml").write_text(TOPOLOGY)
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"""\
name: {name}
topology: tiny_topology.yaml
workload:
  rate_schedule: [{{at_s: 0, rate_per_s: 100}}]
duration_s: 2
warmup_s: 0.5
seed: 11
replications: {replications}
{extra}sweep:
{sweep}""")
    return path


def line_of(path: Path, text: str) -> int:
    return next(i for i, t in enumerate(path.read_text().splitlines(), 1) if text in t)


def summaries_bytes(out: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sorted((out / "runs").glob("*/summary.json"))}


# ---------------------------------------------------------------- the section and its points


def test_points_are_variants_times_grid_times_zip_rows_each_with_its_values(tmp_path):
    path = experiment(tmp_path, f"""\
  grid:
    {RATE}: [80, 120]
    topology.gateways.gw.instances: [1, 2, 3]
  zip:
    topology.services.api.workers: [2, 4]
    topology.services.api.queue_limit: [50, 100]
""", extra="""\
variants:
  fast: {topology.services.api.service_time_s: 0.005}
  slow: {topology.services.api.service_time_s: 0.02}
""")
    loaded = load_experiment(path)
    points = loaded.sweep_points
    assert len(points) == 2 * (2 * 3) * 2
    assert [p.variant for p in points[:12]] == ["fast"] * 12 and points[12].variant == "slow"
    assert points[0].label == "fast: rate_per_s=80, instances=1, workers=2, queue_limit=50"
    assert points[1].label == "fast: rate_per_s=80, instances=1, workers=4, queue_limit=100"
    for p in points:
        c = p.config
        assert p.params == {RATE: c.workload.rate_schedule[0].rate_per_s,
                            "topology.gateways.gw.instances": c.topology.gateways["gw"].instances,
                            "topology.services.api.workers": c.topology.services["api"].workers,
                            "topology.services.api.queue_limit": c.topology.services["api"].queue_limit}
        # zip: taken together, never crossed
        assert (c.topology.services["api"].workers, c.topology.services["api"].queue_limit) in {(2, 50), (4, 100)}
        assert c.topology.services["api"].service_time_s.mean == (0.005 if p.variant == "fast" else 0.02)
        assert c.seed == 11 and c.sweep is None and c.variants == {}
    assert len({p.label for p in points}) == len(points)
    # The grid is the whole product: every combination once.
    combos = {(p.variant, p.params[RATE], p.params["topology.gateways.gw.instances"],
               p.params["topology.services.api.workers"]) for p in points}
    assert len(combos) == len(points)


def test_run_keys_ignore_the_replication_count_and_differ_by_point_and_replication(tmp_path):
    path = experiment(tmp_path, f"  grid:\n    {RATE}: [80, 120]\n")
    a = load_experiment(path).sweep_points
    b = load_experiment(path, replications=5).sweep_points
    assert run_key(a[0].config, 0) == run_key(b[0].config, 0)
    keys = {run_key(p.config, r) for p in a for r in range(3)}
    assert len(keys) == 6
    changed = load_experiment(path, ["topology.gateways.gw.workers=3"]).sweep_points
    assert run_key(changed[0].config, 0) != run_key(a[0].config, 0)


@pytest.mark.parametrize("sweep, needle, field, reason", [
    ("  grid:\n    workload.rate_schedul.0.rate_per_s: [80]\n", "rate_schedul.0", "sweep.grid.workload.rate_schedul.0.rate_per_s",
     "workload has no field 'rate_schedul' (did you mean 'rate_schedule'?)"),
    (f"  grid:\n    {RATE}:\n      - 80\n      - -5\n", "- -5", f"sweep.grid.{RATE}",
     "at point rate_per_s=-5: Input should be greater than or equal to 0, got -5"),
    (f"  grid:\n    {RATE}: []\n", RATE, f"sweep.grid.{RATE}", "List should have at least 1 item"),
    (f"  grid:\n    {RATE}: [80, 80]\n", RATE, f"sweep.grid.{RATE}",
     "value 80 is given twice (items 0 and 1): each grid point would run twice"),
    ("  zip:\n    duration_s: [2, 3]\n    warmup_s: [0.5]\n", "warmup_s: [0.5]", "sweep.zip.warmup_s",
     "has 1 values, sweep.zip.duration_s has 2: the lists of a zip are taken together and must be equally long"),
    ("  zip:\n    duration_s: [2, 3, 2.0]\n    seed: [1, 2, 1]\n", "duration_s: [2", "sweep.zip.duration_s",
     "row 2 repeats row 0 (item 2 of every zip list equals item 0): the point would run twice"),
    ("  zip:\n    duration_s: [2, 0.25]\n", "duration_s: [2", "sweep.zip.duration_s",
     "at point duration_s=0.25: warmup_s: warm-up (0.5 s) must be shorter than duration_s (0.25 s)"),
    ("  grid:\n    topology.gateways.gw: [{az: a1}]\n    topology.gateways.gw.instances: [2]\n",
     "gw.instances", "sweep.grid.topology.gateways.gw.instances",
     "overlaps sweep.grid.topology.gateways.gw: a path may be swept once, and not inside another swept path"),
    ("  grid:\n    topology.servces.api.workers: [2]\n", "servces", "sweep.grid.topology.servces.api.workers",
     "topology has no field 'servces' (did you mean 'services'?)"),
])
def test_a_bad_sweep_is_one_line_naming_the_file_line_field_and_reason(tmp_path, capsys, sweep, needle, field, reason):
    path = experiment(tmp_path, sweep)
    for command in (["check", str(path)], ["sweep", str(path), "--out", str(tmp_path / "out")]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"{path}:{line_of(path, needle)}: {field}: {reason}"] or \
            (len(err) == 1 and err[0].startswith(f"{path}:{line_of(path, needle)}: {field}: ") and reason in err[0])
    assert not (tmp_path / "out").exists()


def test_a_swept_path_a_variant_changes_is_refused(tmp_path):
    path = experiment(tmp_path, "  grid:\n    topology.services.api.workers: [2, 4]\n",
                      extra="variants:\n  big: {topology.services.api.workers: 8}\n")
    with pytest.raises(ConfigError) as e:
        load_experiment(path)
    (issue,) = e.value.issues
    assert issue.path == "sweep.grid.topology.services.api.workers"
    assert issue.reason.startswith("variant big sets topology.services.api.workers: a swept path")


def test_sweep_without_a_sweep_section_says_so(tmp_path, capsys):
    path = experiment(tmp_path, "  grid: {}\n")
    path.write_text(path.read_text().replace("sweep:\n  grid: {}\n", ""))
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: sweep: the experiment has no sweep section" in err


# ---------------------------------------------------------------- the cache, end to end


def test_a_sweep_extends_resumes_and_reruns_nothing_when_unchanged(tmp_path, capsys, monkeypatch):
    out = tmp_path / "sweep"
    path = experiment(tmp_path, f"  grid:\n    {RATE}: [60, 120]\n")
    assert main(["check", str(path)]) == 0
    assert "  sweep: 2 points x 2 replications = 4 runs" in capsys.readouterr().out
    assert main(["sweep", str(path), "--out", str(out), "--jobs", "1", "--quiet", "--no-report"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    first = summaries_bytes(out)
    stats = {k: (out / "runs" / k / "summary.json").stat() for k in first}
    assert len(first) == 4 and json.loads((out / "manifest.json").read_text())["ran"] == 4
    assert not (out / "INCOMPLETE").exists()

    # Extend the grid by one value: only its 2 runs are simulated; the stored ones are not touched.
    path.write_text(path.read_text().replace("[60, 120]", "[60, 120, 180]"))
    assert main(["sweep", str(path), "--out", str(out), "--quiet", "--no-report"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["ran"], manifest["cached"], manifest["runs"]) == (2, 4, 6)
    now = summaries_bytes(out)
    assert len(now) == 6 and all(now[k] == first[k] for k in first)
    for k, st in stats.items():
        again = (out / "runs" / k / "summary.json").stat()
        assert (again.st_ino, again.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    doc = json.loads((out / "sweep.json").read_text())
    assert [e["label"] for e in doc["points"]] == ["rate_per_s=60"] * 2 + ["rate_per_s=120"] * 2 + ["rate_per_s=180"] * 2
    for e in doc["points"]:
        assert json.loads((out / e["summary"]).read_text())["requests"]["offered"] > 0
        assert set(e) == {"point", "label", "params", "variant", "replication", "seed", "key", "summary"}

    # One more replication: one new run per point.
    assert main(["sweep", str(path), "--out", str(out), "--quiet", "--no-report", "--replications", "3"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["ran"], manifest["cached"]) == (3, 6)

    # Stopped mid-sweep (the third run to store is interrupted): what was stored is kept ...
    path.write_text(path.read_text().replace("[60, 120, 180]", "[60, 120, 180, 240, 300]"))
    real_store, stored = RunCache.store, []

    def store(self, key, exp, replication, result):
        if len(stored) == 2:
            raise KeyboardInterrupt
        stored.append(key)
        return real_store(self, key, exp, replication, result)

    monkeypatch.setattr(RunCache, "store", store)
    assert main(["sweep", str(path), "--out", str(out), "--quiet", "--no-report", "--replications", "3"]) == 130
    assert "interrupted: 11 run(s) stored" in capsys.readouterr().err
    assert (out / "INCOMPLETE").exists()
    monkeypatch.setattr(RunCache, "store", real_store)
    # ... a run folder left without its summary (killed while writing) counts as not stored ...
    (out / "runs" / stored[1] / "summary.json").unlink()
    # ... and the rerun simulates only the rest.
    assert main(["sweep", str(path), "--out", str(out), "--quiet", "--no-report", "--replications", "3"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["ran"], manifest["cached"]) == (15 - 10, 10)
    assert not (out / "INCOMPLETE").exists()

    # The same sweep again runs nothing.
    assert main(["sweep", str(path), "--out", str(out), "--quiet", "--no-report", "--replications", "3"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["ran"], manifest["cached"]) == (0, 15)

    # One value changed: only that point's runs again.
    path.write_text(path.read_text().replace("240, 300]", "240, 330]"))
    assert main(["sweep", str(path), "--out", str(out), "--quiet", "--no-report", "--replications", "3"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["ran"], manifest["cached"]) == (3, 12)
    labels = [e["label"] for e in json.loads((out / "sweep.json").read_text())["points"]]
    assert labels[-3:] == ["rate_per_s=330"] * 3 and "rate_per_s=300" not in labels


def test_points_share_random_numbers_and_differ_only_where_their_values_do(tmp_path):
    # Gateway instances do not touch the arrivals: every point sees the same calls per replication.
    path = experiment(tmp_path, "  grid:\n    topology.gateways.gw.instances: [1, 2]\n")
    loaded = load_experiment(path)
    out = run_sweep(loaded.config, loaded.sweep_points, tmp_path / "out", show_progress=False, report=False).out_dir
    doc = json.loads((out / "sweep.json").read_text())
    by = {(e["point"], e["replication"]): json.loads((out / e["summary"]).read_text()) for e in doc["points"]}
    for r in range(2):
        assert by[(0, r)]["requests"]["offered"] == by[(1, r)]["requests"]["offered"]
        assert by[(0, r)]["gateway"] != by[(1, r)]["gateway"]
    assert by[(0, 0)]["latency_ms"] != by[(0, 1)]["latency_ms"]  # replications are independent


def test_executors_and_job_counts_give_byte_identical_results(tmp_path):
    path = experiment(tmp_path, f"  grid:\n    {RATE}: [60, 150]\n")
    loaded = load_experiment(path)
    outs = {
        "local-1": run_sweep(loaded.config, loaded.sweep_points, tmp_path / "l1", jobs=1, show_progress=False,
                             report=False),
        "local-2": run_sweep(loaded.config, loaded.sweep_points, tmp_path / "l2", jobs=2, show_progress=False,
                             report=False),
        "dask": run_sweep(loaded.config, loaded.sweep_points, tmp_path / "d", executor="dask", jobs=1,
                          show_progress=False, report=False,
                          cluster_options={"processes": False}),
    }
    ref = summaries_bytes(outs["local-1"].out_dir)
    assert len(ref) == 4
    for name, outcome in outs.items():
        assert outcome.ran == 4, name
        assert summaries_bytes(outcome.out_dir) == ref, name
        assert (outcome.out_dir / "sweep.json").read_bytes() == (outs["local-1"].out_dir / "sweep.json").read_bytes()


def test_the_dask_executor_from_the_command_line(tmp_path, capsys):
    path = experiment(tmp_path, f"  grid:\n    {RATE}: [60]\n", replications=1)
    local, dask = tmp_path / "local", tmp_path / "dask"
    assert main(["sweep", str(path), "--out", str(local), "--jobs", "1", "--quiet", "--no-report"]) == 0
    assert main(["sweep", str(path), "--out", str(dask), "--executor", "dask", "--jobs", "1", "--quiet",
                 "--no-report"]) == 0
    assert summaries_bytes(dask) == summaries_bytes(local) and len(summaries_bytes(local)) == 1
    assert main(["sweep", str(path), "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "--scheduler: needs --executor dask" in capsys.readouterr().err


def test_a_scheduler_that_cannot_be_reached_is_one_line(tmp_path, capsys, monkeypatch):
    import sim.runner.sweep as sweep_module

    monkeypatch.setattr(sweep_module, "SCHEDULER_TIMEOUT_S", 0.5)
    path = experiment(tmp_path, f"  grid:\n    {RATE}: [60]\n", replications=1)
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--executor", "dask", "--scheduler",
                 "tcp://127.0.0.1:9", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("<command line>: --scheduler: cannot reach the Dask scheduler at "
                                               "tcp://127.0.0.1:9: ")
    assert not list((tmp_path / "out" / "runs").glob("*/summary.json"))


def test_the_sweep_report_gets_every_point_with_its_replications(tmp_path, monkeypatch, capsys):
    calls = []

    def write_sweep_report(out_dir, points, experiment):
        calls.append((out_dir, points, experiment))
        (out_dir / "report.html").write_text("<html></html>")
        return out_dir / "report.html"

    monkeypatch.setitem(sys.modules, "sim.report.sweep",
                        types.SimpleNamespace(write_sweep_report=write_sweep_report))
    path = experiment(tmp_path, f"  grid:\n    {RATE}: [60, 120]\n", extra="description: tiny sweep\n")
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--jobs", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"report: {out / 'report.html'}" in printed and "rate_per_s=120: p50" in printed
    ((out_dir, points, info),) = calls
    assert out_dir == out
    assert info == {"name": "tiny", "description": "tiny sweep", "seed": 11, "replications": 2,
                    "sweep": {"grid": {RATE: [60, 120]}, "zip": {}}}
    assert [(p["label"], p["params"], p["variant"]) for p in points] == [
        ("rate_per_s=60", {RATE: 60}, None), ("rate_per_s=120", {RATE: 120}, None)]
    doc = json.loads((out / "sweep.json").read_text())
    for i, p in enumerate(points):
        stored = [json.loads((out / e["summary"]).read_text()) for e in doc["points"] if e["point"] == i]
        assert p["summaries"] == stored and len(stored) == 2


def test_progress_counts_runs_and_cached_runs_count_as_done():
    prog = Progress([2.0, 2.0, 2.0, 2.0], enabled=False, label="tiny sweep", unit="runs")
    prog.skip(0)
    prog.skip(1)
    prog.update(2, 1.0, 100)
    line = prog.line()
    assert line.startswith("tiny sweep: 2/4 runs done, simulated 5 of 8 s (62%)")
    assert line.endswith("left")


# ---------------------------------------------------------------- any drawn sweep


def _at(data, path: str):
    node = data
    for part in path.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


#: Without faults and the control plane, which the loader refuses often and a sweep does not need.
SWEEP_OPTIONS = Options(exclude=frozenset({"experiment.faults", "experiment.control_plane"}))


@settings(max_examples=examples(40, 500))
@given(data=experiments_with_sweeps(SWEEP_OPTIONS))
def test_any_drawn_sweep_expands_to_its_points_or_is_refused_cleanly(data):
    """A drawn sweep over the whole schema: as many points as variants x grid x zip, each with its values."""
    from tests.property_runs import assert_clean_refusal, load

    try:
        loaded = load(data)
    except ConfigError as e:
        event(assert_clean_refusal(e))
        return
    sweep = data["sweep"]
    grid, zipped = sweep.get("grid") or {}, sweep.get("zip") or {}
    n = max(1, len(loaded.variants))
    for values in grid.values():
        n *= len(values)
    n *= len(next(iter(zipped.values()))) if zipped else 1
    points = loaded.sweep_points
    assert len(points) == n
    assert len({p.label for p in points}) == n, "every point has its own label"
    assert [p.variant for p in points] == [v for v in (list(loaded.variants) or [None])
                                           for _ in range(n // max(1, len(loaded.variants)))]
    for p in points:
        assert list(p.params) == [*grid, *zipped]
        assert p.config.seed == loaded.config.seed and p.config.sweep is None and p.config.variants == {}
        dumped = p.config.model_dump(mode="json", by_alias=True)
        for path, value in p.params.items():
            if isinstance(value, int | float | str) and not isinstance(value, bool):
                got = _at(dumped, path)
                if isinstance(got, dict) and got.get("dist") == "constant":
                    got = got["value"]  # a number where a distribution goes is a constant
                assert got == value, path
    # The resolved config (sweep included) loads back to the same points.
    again = load(dump_resolved(loaded.config))
    assert [(p.label, p.config) for p in again.sweep_points] == [(p.label, p.config) for p in points]
    event(f"points: {n}")
