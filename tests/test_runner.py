"""Runs end to end: the run folder, determinism, replications, resume, the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from sim.cli import main
from sim.runner import combine_summaries

ROOT = Path(__file__).resolve().parent.parent
QUICK = ROOT / "experiments" / "quickstart.yaml"
SHORT = ["--set", "duration_s=12", "--set", "warmup_s=2", "--quiet", "--no-report"]


def run_cli(capsys, *args) -> Path:
    code = main(["run", *map(str, args)])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    return Path(out[-1])


def test_same_seed_gives_byte_identical_summaries(tmp_path, capsys):
    a = run_cli(capsys, QUICK, *SHORT, "--replications", 2, "--jobs", 1, "--out", tmp_path / "a")
    b = run_cli(capsys, QUICK, *SHORT, "--replications", 2, "--jobs", 2, "--out", tmp_path / "b")
    assert (a / "summary.json").read_bytes() == (b / "summary.json").read_bytes()
    assert (a / "timeseries.csv").read_bytes() == (b / "timeseries.csv").read_bytes()
    c = run_cli(capsys, QUICK, *SHORT, "--replications", 2, "--seed", 43, "--out", tmp_path / "c")
    assert (a / "summary.json").read_bytes() != (c / "summary.json").read_bytes()


def test_replications_differ_and_the_summary_has_confidence_intervals(tmp_path, capsys):
    run = run_cli(capsys, QUICK, *SHORT, "--replications", 3, "--out", tmp_path)
    reps = [json.loads(p.read_text()) for p in sorted((run / "replications").glob("rep-*.json"))]
    assert len(reps) == 3
    means = [r["summary"]["latency_ms"]["mean"] for r in reps]
    offered = [r["summary"]["requests"]["offered"] for r in reps]
    assert len(set(means)) == 3 and len(set(offered)) == 3
    p99 = [r["summary"]["latency_ms"]["p99"] for r in reps]
    s = json.loads((run / "summary.json").read_text())
    assert s["replications"] == 3
    assert s["latency_ms"]["p99"] == pytest.approx(sum(p99) / 3)
    assert s["ci95"]["latency_ms"]["p99"] > 0
    assert s["ci95"]["backend"]["api"]["utilization"] > 0
    assert "experiment" not in s["ci95"] and "seed" not in s["ci95"]


def test_summary_has_every_required_key(tmp_path, capsys):
    run = run_cli(capsys, QUICK, *SHORT, "--replications", 1, "--out", tmp_path)
    s = json.loads((run / "summary.json").read_text())
    for key in ["experiment", "seed", "replications", "simulated_s", "requests", "throughput_rps",
                "goodput_rps", "latency_ms", "backend", "bytes_by_az_pair"]:
        assert key in s
    assert set(s["requests"]) == {"offered", "succeeded", "failed", "in_flight"}
    assert set(s["latency_ms"]) == {"mean", "p50", "p90", "p99", "p999"}
    assert {"attempts", "utilization"} <= set(s["backend"]["api"])
    assert all("->" in k for k in s["bytes_by_az_pair"])
    req = s["requests"]
    assert req["offered"] == req["succeeded"] + sum(req["failed"].values()) + req["in_flight"]
    assert "wall" not in json.dumps(s)
    m = json.loads((run / "manifest.json").read_text())
    assert m["seed"] == 42 and m["events"] > m["requests_simulated"] > 0 and m["wall_s"] > 0
    assert {"simpy", "numpy", "pydantic", "python"} <= set(m["versions"])
    cfg = (run / "config.resolved.yaml").read_text()
    assert "least_request_lb_config" in cfg and "duration_s: 12" in cfg
    # The resolved config runs as it is.
    assert main(["check", str(run / "config.resolved.yaml")]) == 0
    header = (run / "timeseries.csv").read_text().splitlines()[0].split(",")
    assert header[:8] == ["replication", "t_s", "offered", "throughput", "goodput", "in_flight", "p50_ms", "p99_ms"]


def test_an_interrupted_run_resumes_from_its_stored_replications(tmp_path, capsys):
    run_dir = tmp_path / "run"
    first = run_cli(capsys, QUICK, *SHORT, "--replications", 2, "--run-dir", run_dir)
    before = (first / "summary.json").read_bytes()
    (run_dir / "replications" / "rep-001.json").unlink()
    (run_dir / "summary.json").unlink()
    again = run_cli(capsys, QUICK, *SHORT, "--replications", 2, "--run-dir", run_dir)
    assert (again / "summary.json").read_bytes() == before
    assert json.loads((again / "manifest.json").read_text())["resumed_replications"] == 1
    # A different configuration may not reuse the folder.
    code = main(["run", str(QUICK), *SHORT, "--set", "seed=5", "--run-dir", str(run_dir)])
    assert code == 2
    assert "different configuration" in capsys.readouterr().err


def test_no_temporary_files_are_left_behind(tmp_path, capsys):
    run = run_cli(capsys, QUICK, *SHORT, "--replications", 1, "--out", tmp_path)
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]


def test_combine_summaries_takes_means_and_t_half_widths():
    a = {"experiment": "x", "seed": 1, "throughput_rps": 10.0, "requests": {"failed": {"e": 2}}}
    b = {"experiment": "x", "seed": 1, "throughput_rps": 14.0, "requests": {"failed": {}}}
    s = combine_summaries([a, b])
    assert s["throughput_rps"] == 12.0
    assert s["requests"]["failed"]["e"] == 1.0
    # t(0.975, 1) = 12.706; sd = 2.828; half = 12.706 * 2.828 / sqrt(2) = 25.41
    assert s["ci95"]["throughput_rps"] == pytest.approx(12.7062 * math.sqrt(8) / math.sqrt(2), rel=1e-4)
    assert s["experiment"] == "x" and s["replications"] == 2


def test_quickstart_end_to_end_in_a_temporary_folder(tmp_path):
    """`fleetsim run experiments/quickstart.yaml` as a user runs it, in its own process."""
    proc = subprocess.run(
        [sys.executable, "-m", "sim.cli", "run", str(QUICK)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    run = tmp_path / last
    assert run.parent.parent == tmp_path / "results"
    for name in ["config.resolved.yaml", "manifest.json", "summary.json", "timeseries.csv", "report.html"]:
        assert (run / name).is_file(), name
    assert "report:" in proc.stdout
    html = (run / "report.html").read_text()
    assert "quickstart" in html and "<script" in html
    assert "Traceback" not in proc.stderr


def _children_of(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_sigterm_stops_workers_keeps_stored_replications_and_the_run_resumes(tmp_path):
    import os
    import signal
    import time

    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "sim.cli", "run", str(QUICK), "--set", "duration_s=15", "--set", "warmup_s=1",
            "--replications", "8", "--jobs", "2", "--run-dir", str(run_dir), "--quiet", "--no-report"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not list((run_dir / "replications").glob("rep-*.json")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        workers = _children_of(proc.pid)
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    def alive():
        out = []
        for w in workers:
            try:
                state = Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                out.append(w)
        return out

    # Terminated workers take a moment to exit on a busy machine; none may linger.
    deadline = time.monotonic() + 15
    while alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert alive() == []
    stored = len(list((run_dir / "replications").glob("rep-*.json")))
    assert 1 <= stored < 8
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["resumed_replications"] == stored
