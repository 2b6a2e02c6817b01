"""Guard rails of the command line: sizes estimated and refused, bad paths, interruptions, progress.

Every error a user can cause must end in one line on stderr (no traceback)
and a non-zero exit: 2 for what the user typed, 1 for what the machine
refused (out of memory, a full disk), 130 for an interrupt. Tests run as
root here, where chmod does not stop reads or writes: the permission cases
run for real only as another user and are otherwise simulated by making the
project's one writer (``sim.files.atomic_write_bytes``) or the reader raise
the error the system would.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sim.files
import sim.runner.run as run_mod
from sim.cli import main
from sim.config import load_experiment
from sim.runner.estimate import DEFAULT_MAX_EVENTS, available_memory, estimate_run, estimate_size
from sim.runner.progress import Progress

from .fleet_builders import variants_experiment_file

ROOT = Path(__file__).resolve().parent.parent
QUICK = ROOT / "experiments" / "quickstart.yaml"
TOPO = ROOT / "topologies" / "two_az_basic.yaml"
CALIBRATION = ROOT / "results" / "validation" / "calibration.yaml"
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    """The only line on stderr (no traceback)."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def experiment(tmp_path: Path, *, duration="12", rate="1900", replications=2, extra="") -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(f"""name: guard
topology: {TOPO}
workload:
  rate_schedule:
    - {{at_s: 0, rate_per_s: {rate}}}
duration_s: {duration}
warmup_s: 2
seed: 5
replications: {replications}
{extra}""")
    return path


def line_of(path: Path, text: str) -> int:
    return next(i for i, t in enumerate(path.read_text().splitlines(), 1) if text in t)


SHORT = ["--set", "duration_s=8", "--set", "warmup_s=1", "--no-report", "--jobs", "1"]


# ---------------------------------------------------------------- estimates


def test_check_prints_an_estimate(capsys):
    code, out, err = cli(capsys, "check", QUICK)
    assert code == 0 and err == ""
    first, *services = out.strip().splitlines()
    assert re.search(r": ok \(.*\); estimate ~[\d.,]+ k requests, ~[\d.,]+ M events, ~[\d.,]+ s, ~\d+ MB$",
                     first), out
    # Then each service's capacity and the load offered to it.
    assert services == ["  api: capacity 3,149 requests/s; offered 2,300/s on average, peak 2,700/s "
                        "(utilisation 73% before retries)"]


FEATURES = {
    "base": [],
    "client timeout": ["workload.client.timeout_s=2.5"],
    # A low rate and frequent probes, so the probes are a third of the events.
    "health checks": ["workload.rate_schedule=[{at_s: 0, rate_per_s: 300}]"]
    + [f"topology.gateways.{gw}.cluster.health_check={{timeout_s: 1, interval_s: 0.1, initial_jitter_s: 0.5, "
       "unhealthy_threshold: 2, healthy_threshold: 1}" for gw in ("gw-az1", "gw-az2")],
    "load spike": ["faults=[{kind: load_spike, at_s: 4, for_s: 8, factor: 3}]"],
}


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_the_estimate_matches_a_real_run(feature):
    """Requests within 3% (Poisson noise is ~1%), events within 15% of a real replication."""
    loaded = load_experiment(QUICK, ["duration_s=12", "warmup_s=2", *FEATURES[feature]], replications=1)
    size = estimate_size(loaded.config, jobs=1)
    result = run_mod.run_replication(loaded.config, 0)
    assert size.requests == pytest.approx(result["requests"], rel=0.03)
    assert size.events == pytest.approx(result["events"], rel=0.15)


def test_the_estimate_of_variants_adds_them_up():
    loaded = load_experiment(ROOT / "experiments" / "cross_zone.yaml")
    est = estimate_run(loaded.config, loaded.variants, jobs=2)
    one = estimate_size(next(iter(loaded.variants.values())), jobs=1)
    assert est.side_by_side is False  # 3 replications and 2 jobs: variants one after the other
    assert est.requests == pytest.approx(2 * one.requests)


def test_available_memory_is_read_from_the_system():
    got = available_memory()
    assert got is None or got > 1e6


@pytest.mark.parametrize("cmd", ["check", "run"])
def test_an_absurd_duration_is_refused_at_its_line(cmd, tmp_path, capsys):
    exp = experiment(tmp_path, duration="1e12")
    args = ["--out", tmp_path / "results"] if cmd == "run" else []
    code, out, err = cli(capsys, cmd, exp, *args)
    assert code == 2 and out == ""
    line = one_line(err)
    rate_line = line_of(exp, "rate_per_s")
    assert line.startswith(f"{exp}:{line_of(exp, 'duration_s')}: duration_s: 1e+12 s x up to 1900 requests/s "
                           f"(workload.rate_schedule.0.rate_per_s, line {rate_line}) x 2 replications "
                           f"(replications, line {line_of(exp, 'replications')}) is ~"), line
    assert "years" in line and "--max-events" in line and "without --yes" in line
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("field,value,blamed", [
    ("duration", "86400", "duration_s"),
    ("rate", "1e9", "workload.rate_schedule.0.rate_per_s"),
])
def test_run_refuses_a_large_run_naming_the_field(field, value, blamed, tmp_path, capsys):
    exp = experiment(tmp_path, **{field: value})
    code, out, err = cli(capsys, "run", exp, "--out", tmp_path / "results")
    assert code == 2
    line = one_line(err)
    where = "duration_s" if blamed == "duration_s" else "rate_per_s"
    assert line.startswith(f"{exp}:{line_of(exp, where)}: {blamed}: "), line
    assert "refusing without --yes" in line
    assert not (tmp_path / "results").exists()


def test_a_command_line_value_is_blamed_on_the_command_line(capsys, tmp_path):
    code, _, err = cli(capsys, "run", QUICK, "--set", "duration_s=1e12", "--out", tmp_path)
    assert code == 2
    line = one_line(err)
    assert line.startswith("<command line>: duration_s: 1e+12 s x ") and f"{QUICK}:" in line


def test_an_endless_run_is_refused_even_with_yes(tmp_path, capsys):
    exp = experiment(tmp_path, duration=".inf")
    code, _, err = cli(capsys, "run", exp, "--yes", "--out", tmp_path / "results")
    assert code == 2
    assert "never end" in one_line(err)
    assert not (tmp_path / "results").exists()


def test_max_events_refuses_and_yes_runs(tmp_path, capsys):
    code, _, err = cli(capsys, "run", QUICK, *SHORT, "--max-events", "1000", "--out", tmp_path)
    assert code == 2
    assert "more than --max-events 1e+03; refusing without --yes" in one_line(err)
    code, out, err = cli(capsys, "run", QUICK, *SHORT, "--max-events", "1000", "--yes", "--out", tmp_path)
    assert code == 0, err
    assert re.match(r"estimate: ~\d+ k requests, ~[\d.]+ [kM] events, ~[\d.]+ s, ~\d+ MB$", err.splitlines()[0])
    assert Path(out.strip().splitlines()[-1]).is_dir()
    code, _, err = cli(capsys, "run", QUICK, *SHORT, "--max-events", "-1", "--out", tmp_path)
    assert code == 2 and one_line(err) == "<command line>: --max-events: must be more than 0, got -1"


def test_run_refuses_more_memory_than_is_available(tmp_path, capsys, monkeypatch):
    import sim.runner.estimate as estimate

    monkeypatch.setattr(estimate, "available_memory", lambda: 50e6)
    code, _, err = cli(capsys, "run", QUICK, *SHORT, "--out", tmp_path / "results")
    assert code == 2
    line = one_line(err)
    assert "of memory, more than the 50 MB available; refusing without --yes" in line
    assert not (tmp_path / "results").exists()
    code, _, err = cli(capsys, "check", QUICK)
    assert code == 2 and "fleetsim run refuses it without --yes" in one_line(err)


def test_the_default_limit_lets_the_shipped_experiments_run():
    for path in sorted(ROOT.glob("experiments/*.yaml")):
        loaded = load_experiment(path)
        assert estimate_run(loaded.config, loaded.variants, jobs=2).events < DEFAULT_MAX_EVENTS


# ---------------------------------------------------------- interruptions


def _failing_replication(monkeypatch, exc: type[BaseException], at: int = 1) -> None:
    real = run_mod.run_replication

    def fake(exp, replication, progress=None):
        if replication == at:
            raise exc()
        return real(exp, replication, progress)

    monkeypatch.setattr(run_mod, "run_replication", fake)


@pytest.mark.parametrize("exc,code,word", [(MemoryError, 1, "out of memory"), (KeyboardInterrupt, 130, "interrupted")])
def test_a_stopped_run_is_marked_incomplete_and_resumes(exc, code, word, tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "run"
    _failing_replication(monkeypatch, exc)
    got, out, err = cli(capsys, "run", QUICK, *SHORT, "--run-dir", run_dir, "--quiet")
    assert got == code
    line = one_line(err)
    assert word in line and f"1 replication stored in {run_dir}, marked INCOMPLETE" in line
    assert f"rerun with --run-dir {run_dir} to resume" in line
    assert (run_dir / "INCOMPLETE").is_file()
    assert (run_dir / "replications" / "rep-000.json").is_file()
    assert not (run_dir / "summary.json").exists()
    monkeypatch.undo()
    got, out, err = cli(capsys, "run", QUICK, *SHORT, "--run-dir", run_dir, "--quiet")
    assert got == 0, err
    assert json.loads((run_dir / "manifest.json").read_text())["resumed_replications"] == 1
    assert not (run_dir / "INCOMPLETE").exists()


def test_an_interrupted_report_leaves_the_folder_incomplete(tmp_path, capsys, monkeypatch):
    import sim.report

    def interrupted(run_dir):
        raise KeyboardInterrupt

    run_dir = tmp_path / "run"
    monkeypatch.setattr(sim.report, "write_report", interrupted)
    args = ["run", QUICK, "--set", "duration_s=8", "--set", "warmup_s=1", "--jobs", "1", "--run-dir", run_dir]
    code, _, err = cli(capsys, *args, "--quiet")
    assert code == 130 and "interrupted: 2 replications stored" in one_line(err)
    assert (run_dir / "summary.json").is_file() and (run_dir / "INCOMPLETE").is_file()
    code, _, err = cli(capsys, "report", run_dir)
    assert code == 2 and "incomplete run" in one_line(err)
    monkeypatch.undo()
    code, _, err = cli(capsys, *args, "--quiet")
    assert code == 0, err
    assert (run_dir / "report.html").is_file() and not (run_dir / "INCOMPLETE").exists()
    assert json.loads((run_dir / "manifest.json").read_text())["resumed_replications"] == 2


def test_a_stored_replication_that_cannot_be_read_is_simulated_again(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert cli(capsys, "run", QUICK, *SHORT, "--run-dir", run_dir, "--quiet")[0] == 0
    before = (run_dir / "summary.json").read_bytes()
    (run_dir / "replications" / "rep-001.json").write_text("{")
    code, _, err = cli(capsys, "run", QUICK, *SHORT, "--run-dir", run_dir, "--quiet")
    assert code == 0, err
    assert (run_dir / "summary.json").read_bytes() == before
    assert json.loads((run_dir / "manifest.json").read_text())["resumed_replications"] == 1


def test_a_killed_worker_is_one_line(tmp_path, capsys, monkeypatch):
    from concurrent.futures.process import BrokenProcessPool

    def broken(*args, **kwargs):
        raise BrokenProcessPool("A process in the process pool was terminated abruptly")

    monkeypatch.setattr(run_mod, "run_experiment", broken)
    code, _, err = cli(capsys, "run", QUICK, *SHORT, "--out", tmp_path, "--quiet")
    assert code == 1
    assert "a worker process died" in one_line(err)


# ----------------------------------------------------------------- paths


def _raise_on_write(monkeypatch, err: int, match: str = "") -> None:
    """Make the project's one writer fail as a full disk or a read-only folder does."""
    real = sim.files.atomic_write_bytes

    def fake(path, data, *, make_parents=True):
        if match in str(path):
            raise OSError(err, os.strerror(err), str(path))
        return real(path, data, make_parents=make_parents)

    monkeypatch.setattr(sim.files, "atomic_write_bytes", fake)


@pytest.fixture
def a_file(tmp_path) -> Path:
    p = tmp_path / "a-file"
    p.write_text("not a folder\n")
    return p


RUN_PATHS = {
    "--out is a file": (["--out", "{file}"], "--out: {file} is a file, expected a folder"),
    "--out is inside a file": (["--out", "{file}/sub"], "--out: {file} is a file, expected a folder (in {file}/sub)"),
    "--run-dir is a file": (["--run-dir", "{file}"], "--run-dir: {file} is a file, expected a folder"),
}


@pytest.mark.parametrize("case", sorted(RUN_PATHS))
def test_run_output_paths(case, a_file, capsys):
    args, want = RUN_PATHS[case]
    code, out, err = cli(capsys, "run", QUICK, *SHORT, *[a.format(file=a_file) for a in args])
    assert code == 2 and out == ""
    assert one_line(err) == "<command line>: " + want.format(file=a_file)


@pytest.mark.parametrize("cmd", ["run", "check"])
def test_experiment_paths(cmd, tmp_path, capsys):
    code, _, err = cli(capsys, cmd, tmp_path / "missing.yaml")
    assert code == 2 and one_line(err) == f"{tmp_path / 'missing.yaml'}: (document): no such file"
    code, _, err = cli(capsys, cmd, tmp_path)
    assert code == 2 and one_line(err) == f"{tmp_path}: (document): is a directory, expected a YAML file"


@pytest.mark.skipif(AS_ROOT, reason="root reads a chmod 000 file; the simulated case below covers it")
def test_an_unreadable_experiment_for_real(tmp_path, capsys):
    exp = experiment(tmp_path)
    exp.chmod(0)
    code, _, err = cli(capsys, "check", exp)
    assert code == 2 and "cannot read" in one_line(err)


def test_an_unreadable_experiment_simulated(tmp_path, capsys, monkeypatch):
    exp = experiment(tmp_path)
    real = Path.read_text

    def read_text(self, *args, **kwargs):
        if self == exp:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    for cmd in ("check", "run"):
        code, _, err = cli(capsys, cmd, exp)
        assert code == 2
        assert one_line(err).startswith(f"{exp}: (document): cannot read: [Errno 13] Permission denied")


@pytest.mark.skipif(AS_ROOT, reason="root writes into a read-only folder; the simulated case below covers it")
def test_a_read_only_output_folder_for_real(tmp_path, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    code, _, err = cli(capsys, "run", QUICK, *SHORT, "--out", out)
    assert code == 2 and "Permission denied" in one_line(err)


def test_a_read_only_output_folder_simulated(tmp_path, capsys, monkeypatch):
    _raise_on_write(monkeypatch, errno.EROFS)
    code, _, err = cli(capsys, "run", QUICK, *SHORT, "--out", tmp_path, "--quiet")
    assert code == 2
    line = one_line(err)
    assert line.startswith("<command line>: --out: cannot write ") and "Read-only file system" in line


def test_a_full_disk_mid_run_is_one_line_and_the_run_resumes(tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "run"
    _raise_on_write(monkeypatch, errno.ENOSPC, "rep-001.json")
    code, _, err = cli(capsys, "run", QUICK, *SHORT, "--run-dir", run_dir)
    assert code == 1
    line = one_line(err.split("\n", 1)[1])  # after the estimate line
    assert line.startswith(f"<command line>: --run-dir: cannot write {run_dir}/replications/rep-001.json: "
                           "No space left on device; 1 replication stored"), line
    assert (run_dir / "INCOMPLETE").is_file()
    monkeypatch.undo()
    code, _, err = cli(capsys, "run", QUICK, *SHORT, "--run-dir", run_dir, "--quiet")
    assert code == 0, err
    assert not (run_dir / "INCOMPLETE").exists()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    assert main(["run", str(QUICK), *SHORT, "--replications", "1", "--run-dir", str(run_dir), "--quiet"]) == 0
    return run_dir


def test_report_paths(tmp_path, a_file, finished_run, capsys, monkeypatch):
    cases = [
        (tmp_path / "missing", f"{tmp_path / 'missing'}: (document): no such folder"),
        (a_file, f"{a_file}: (document): is a file, expected a run folder"),
        (tmp_path, f"{tmp_path}: (document): not a run folder (no summary.json, nor comparison.json for variants)"),
    ]
    for path, want in cases:
        code, out, err = cli(capsys, "report", path)
        assert code == 2 and out == "" and one_line(err) == want
    for err_no, want_code in ((errno.EACCES, 2), (errno.ENOSPC, 1)):
        _raise_on_write(monkeypatch, err_no, "report.html")
        code, _, err = cli(capsys, "report", finished_run)
        assert code == want_code
        assert os.strerror(err_no) in one_line(err)
        monkeypatch.undo()
    assert cli(capsys, "report", finished_run)[0] == 0


def test_report_of_a_run_whose_summary_was_damaged(tmp_path, finished_run, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy)
    (copy / "summary.json").write_text("{not json")
    code, _, err = cli(capsys, "report", copy)
    assert code == 2 and "not valid JSON" in one_line(err)


def test_schema_on_a_full_disk_is_one_line(capsys, monkeypatch):
    class Full(io.StringIO):
        def write(self, s):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sys, "stdout", Full())
    code = main(["schema"])
    err = capsys.readouterr().err
    assert code == 1 and one_line(err) == "fleetsim schema: No space left on device"


def test_schema_into_a_closed_pipe_is_quiet():
    """``fleetsim schema | head`` where the reader is gone before the first write."""
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "sim.cli", "schema"], stdout=w, stderr=subprocess.PIPE)
    os.close(w)
    os.close(r)
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err.decode() and "Exception ignored" not in err.decode(), err
    assert proc.returncode == 1


ENVOY = ROOT / "tests" / "data" / "envoy_article.yaml"


def test_import_envoy_paths(tmp_path, a_file, capsys, monkeypatch):
    cases = [
        ([tmp_path / "missing.yaml"], 2, f"{tmp_path / 'missing.yaml'}: (document): no such file"),
        ([tmp_path], 2, f"{tmp_path}: (document): is a directory, expected a YAML file"),
        ([ENVOY, "--az", "a1", "--out", tmp_path], 2, f"<command line>: --out: cannot write {tmp_path}: Is a directory"),
        ([ENVOY, "--az", "a1", "--out", tmp_path / "no" / "x.yaml"], 2,
         f"<command line>: --out: cannot write {tmp_path / 'no' / 'x.yaml'}: No such file or directory"),
        ([ENVOY, "--az", "a1", "--out", a_file / "x.yaml"], 2,
         f"<command line>: --out: cannot write {a_file / 'x.yaml'}: Not a directory"),
    ]
    for args, want_code, want in cases:
        code, _, err = cli(capsys, "import-envoy", *args)
        assert code == want_code
        assert one_line(err) == want
    _raise_on_write(monkeypatch, errno.ENOSPC)
    code, _, err = cli(capsys, "import-envoy", ENVOY, "--az", "a1", "--out", tmp_path / "x.yaml")
    assert code == 1
    assert "No space left on device" in err and "Traceback" not in err


# ------------------------------------------- reference_gateway's commands


def test_validate_paths_that_fail_before_the_real_fleet_starts(tmp_path, a_file, capsys):
    cases = [
        (["--profile", tmp_path], "<command line>: --profile: "),
        (["zz"], "<command line>: scenario: unknown scenario(s) zz"),
        (["--resume", tmp_path / "missing", "a"], "<command line>: scenario: "),
    ]
    for args, start in cases:
        code, _, err = cli(capsys, "validate", *args)
        assert code == 2
        assert one_line(err).startswith(start), err


def test_validate_out_in_a_file_is_one_line(a_file, capsys):
    code, _, err = cli(capsys, "validate", "a", "--profile", CALIBRATION, "--out", a_file)
    assert code != 0
    assert str(a_file) in one_line(err)


def test_validate_out_in_a_file_is_a_usage_error(a_file, capsys):
    code, _, err = cli(capsys, "validate", "a", "--profile", CALIBRATION, "--out", a_file)
    assert code == 2 and "--out" in err


def test_calibrate_out_inside_a_file_is_one_line(a_file):
    # A subprocess with a timeout: calibrate starts a real fleet if its output is
    # accepted, and this must fail before it does.
    proc = subprocess.run([sys.executable, "-m", "sim.cli", "calibrate", "--quick", "--out", str(a_file / "p.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert str(a_file) in one_line(proc.stderr)


# --------------------------------------------------------------- progress

LINE = re.compile(r"^guard: (\d+)/(\d+) replications done, simulated ([\d,]+) of ([\d,]+) s \(\d+%\), "
                  r"[\d.]+ [kM]? ?events/s, (~\d+ (s|min) left|unknown left|done in \d+ (s|min))$")


def test_progress_lines_off_a_terminal(tmp_path, capsys):
    exp = experiment(tmp_path, replications=1)
    code, out, err = cli(capsys, "run", exp, "--progress-every", "0.05", "--jobs", "1", "--no-report",
                         "--out", tmp_path / "results")
    assert code == 0, err
    lines = err.strip().splitlines()
    assert lines[0].startswith("estimate: ~")
    progress = lines[1:]
    assert len(progress) >= 3, err
    for line in progress:
        assert LINE.match(line), line
    assert "\x1b" not in err
    assert progress[-1].startswith("guard: 1/1 replications done, simulated 12 of 12 s (100%)")
    assert "done in" in progress[-1]


def test_quiet_silences_the_estimate_and_the_progress(tmp_path, capsys):
    exp = experiment(tmp_path, replications=1)
    code, out, err = cli(capsys, "run", exp, "--progress-every", "0.05", "--jobs", "1", "--no-report", "--quiet",
                         "--out", tmp_path / "results")
    assert code == 0 and err == ""
    assert len(out.strip().splitlines()) == 1


def test_progress_lines_through_a_pipe_from_workers(tmp_path):
    exp = experiment(tmp_path, replications=2)
    proc = subprocess.run([sys.executable, "-m", "sim.cli", "run", str(exp), "--progress-every", "0.2",
                           "--jobs", "2", "--no-report", "--out", str(tmp_path / "results")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("guard: ")]
    assert lines and all(LINE.match(line) for line in lines), proc.stderr
    rates = [float(re.search(r"([\d.]+) ?[kM]? events/s", line)[1]) for line in lines]
    assert max(rates) > 0  # events reported by the workers
    assert lines[-1].startswith("guard: 2/2 replications done, simulated 24 of 24 s (100%)")


def test_the_bar_appears_on_a_terminal_within_two_seconds():
    stream = io.StringIO()
    prog = Progress([10.0, 10.0], label="x", stream=stream, tty=True)
    try:
        t0 = time.monotonic()
        while "simulating" not in stream.getvalue() and time.monotonic() - t0 < 2.0:
            time.sleep(0.02)
        assert "simulating" in stream.getvalue()
    finally:
        prog.close()


def test_progress_reports_time_left_from_the_speed_so_far():
    prog = Progress([100.0, 100.0], enabled=False)
    prog.t0 -= 10  # ten seconds ago
    prog.skip(0)  # reused from an earlier run: not this run's speed
    prog.update(1, 50.0, 1_000_000)
    line = prog.line()
    assert line.startswith("1/2 replications done, simulated 150 of 200 s (75%), 100 k events/s, ~10 s left"), line


# ----------------------------------------------------- report of variants


_variants = variants_experiment_file


def test_report_accepts_the_folder_a_variants_run_prints(tmp_path, capsys):
    code, out, err = cli(capsys, "run", _variants(tmp_path), "--out", tmp_path / "out", "--jobs", "1", "--no-report")
    assert code == 0, err
    run = Path(out.strip().splitlines()[-1])
    assert (run / "comparison.json").is_file() and not (run / "report.html").exists()
    assert not (run / "INCOMPLETE").exists()
    code, out, err = cli(capsys, "report", run)
    assert code == 0, err
    assert Path(out.strip()) == (run / "report.html").absolute()
    html = (run / "report.html").read_text()
    assert "slower" in html and "base" in html
    code, out, err = cli(capsys, "report", run / "variants" / "slower")
    assert code == 0, err
    assert (run / "variants" / "slower" / "report.html").is_file()


def test_calibrate_out_at_a_folder_and_validate_profile_at_a_folder_are_usage_errors(tmp_path, capsys):
    # Both fail before any process of the reference fleet starts.
    code, _, err = cli(capsys, "calibrate", "--quick", "--out", str(tmp_path))
    assert code == 2 and "--out" in err and "is a folder" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(capsys, "validate", "a", "--profile", str(tmp_path), "--out", str(tmp_path))
    assert code == 2 and "--profile" in err and "is a folder" in err and len(err.strip().splitlines()) == 1
