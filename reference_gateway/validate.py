"""``fleetsim validate``: the simulator's predictions against the real fleet, scenario by scenario.

For each scenario of :mod:`reference_gateway.scenarios` (each variant of it):

1. the real fleet runs the experiment ``repetitions`` times (at least 3): the
   measured mean and the run-to-run spread;
2. the simulator, calibrated with the same profile, runs it as independent
   replications: the simulated mean and its 95% CI;
3. each metric gets its error and its goal, pass or fail.

The run writes ``<out>/<timestamp>/``: ``validation.json`` (a list of rows
with ``scenario``, ``metric``, ``measured``, ``simulated``, ``error``,
``goal``, ``pass`` and the spread, CI, trust and gate beside them),
``validation.html``, ``manifest.json`` (machine, versions, calibration,
durations), the calibration profile it used, and every real run's files
(configs, logs, the load generator's per-request records). Every real run's
metrics are stored as soon as it ends (``real-<scenario>/observations.json``)
and the rows after every scenario: ``fleetsim validate --resume RUN_DIR``
continues an interrupted validation with the same calibration, running only
the real runs that are missing.

A full run holds every metric to its goal (``pass``). A ``--quick`` run (short
runs, fewer points, for CI) gates on ``gate``: the metrics that do not
depend on timing must meet their goals; timing metrics fail only when they
miss by more than twice the goal on a run the harness judged trustworthy.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import multiprocessing as mp
import os
import platform
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

from sim.config.errors import ConfigError
from sim.config.loader import load_experiment
from sim.config.models import Experiment
from sim.files import atomic_write_json
from sim.fleet import FleetError
from sim.fleet import plan as plan_fleet

from .fleet import RealFleet
from .scenarios import SCENARIOS, Observation, Scenario, compare, real_observation, sim_observation

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "results" / "validation"
MIN_REPETITIONS = 3
QUICK_REPLICATIONS = 5
"""Simulated replications in quick runs: cheap next to the real runs, and they narrow the CI."""
VALIDATION_JSON = "validation.json"
VALIDATION_HTML = "validation.html"


class ScenarioError(ValueError):
    """The command line asks for scenarios, repetitions or a run folder that do not exist."""


def _sim_worker(args: tuple[dict, str, int]) -> dict:
    exp_data, key, replication = args
    from sim.fleet import Fleet

    from .scenarios import sim_ejection_log

    exp = Experiment.model_validate(exp_data)
    fleet = Fleet(exp, replication)
    result = fleet.run()
    obs = sim_observation(SCENARIOS[key], exp, result, sim_ejection_log(fleet))
    return {"values": obs.values, "curve": obs.curve}


def simulate(scenario: Scenario, exp: Experiment, replications: int, jobs: int) -> list[Observation]:
    """``replications`` independent simulated replications of ``exp``, as observations."""
    data = exp.model_dump(mode="json", by_alias=True)
    if "share" in scenario.metrics:
        data["output"] = {**data.get("output", {}), "instances": True}  # per-backend attempts
    tasks = [(data, scenario.key, r) for r in range(replications)]
    if jobs <= 1:
        outs = [_sim_worker(t) for t in tasks]
    else:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
            outs = list(pool.map(_sim_worker, tasks))
    return [Observation(values=o["values"], curve=o["curve"]) for o in outs]


def points(scenario: Scenario, loaded, quick: bool) -> list[tuple[str, Experiment]]:
    """(label, experiment) for every variant validated (the base when there is none)."""
    if not loaded.variants:
        return [(scenario.key, loaded.config)]
    keep = scenario.quick_variants if quick and scenario.quick_variants else list(loaded.variants)
    return [(f"{scenario.key}:{name}", loaded.variants[name]) for name in keep]


def _plan(keys: list[str], quick: bool, profile: str | Path | None) -> dict:
    """Every scenario's experiment, loaded and laid out before anything runs."""
    plan = {}
    for key in keys:
        sc = SCENARIOS[key]
        loaded = load_experiment(sc.path, list(sc.quick) if quick else [], calibration=profile)
        for _label, exp in points(sc, loaded, quick):
            try:
                plan_fleet(exp)
            except FleetError as e:
                raise ConfigError([loaded.issue(e.path, e.reason)]) from None
        plan[key] = loaded
    return plan


def validate(keys: Iterable[str] = (), *, quick: bool = False, out: str | Path = DEFAULT_OUT,
             profile: str | Path | None = None, repetitions: int = MIN_REPETITIONS,
             replications: int | None = None, pin: bool = True, resume: str | Path | None = None,
             log: Callable[[str], None] = print) -> Path:
    """Run the validation; return its run directory (validation.json inside)."""
    from .calibrate import calibrate
    from .report import write_validation_html

    keys = list(keys) or list(SCENARIOS)
    unknown = [k for k in keys if k not in SCENARIOS]
    if unknown:
        raise ScenarioError(f"unknown scenario(s) {', '.join(unknown)}; have {', '.join(SCENARIOS)}")
    if repetitions < MIN_REPETITIONS:
        raise ScenarioError(f"repetitions must be at least {MIN_REPETITIONS} (the real run-to-run spread)")
    committed = DEFAULT_OUT / "calibration.yaml"
    if profile is not None or committed.exists():
        _plan(keys, quick, profile or committed)  # fail fast, before calibrating
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "calibration.yaml").exists() and profile is None:
            raise ScenarioError(f"{run_dir}: not a validation run folder to resume (no calibration.yaml)")
        if profile is None:
            profile = run_dir / "calibration.yaml"
    else:
        run_dir = Path(out) / (stamp + ("-quick" if quick else ""))
        run_dir.mkdir(parents=True, exist_ok=False)
    started = time.time()
    manifest = {"started": stamp, "quick": quick, "scenarios": keys, "repetitions": repetitions,
                "host": platform.node(), "cpus": os.cpu_count(), "durations_s": {}}
    if profile is None:
        profile = run_dir / "calibration.yaml"
        t0 = time.time()
        cal = calibrate(profile, quick=quick, work_dir=run_dir / "calibration", log=log)
        manifest["durations_s"]["calibration"] = round(time.time() - t0, 1)
    else:
        from sim.config.loader import read_yaml

        cal = read_yaml(Path(profile)).data
    manifest["calibration"] = {"file": str(profile), "measured": cal.get("measured", {})}
    rows: list[dict] = []
    plan = _plan(keys, quick, profile)
    for key in keys:
        sc = SCENARIOS[key]
        loaded = plan[key]
        pts = points(sc, loaded, quick)
        t0 = time.time()
        reps = replications or (QUICK_REPLICATIONS if quick else loaded.config.replications)
        real_dir = run_dir / f"real-{key}"
        store = real_dir / "observations.json"
        # Every real run's metrics are kept as soon as measured: a resumed
        # validation (--resume) runs only what is missing.
        done = json.loads(store.read_text()) if store.exists() else {}
        real: dict[str, list[Observation]] = {label: [Observation(**o) for o in done.get(label, [])]
                                              for label, _ in pts}
        if sc.runner in ("control_plane", "tls"):
            runner = _control_plane_rows if sc.runner == "control_plane" else _tls_rows
            rows += runner(sc, pts, real, real_dir, store, repetitions, reps, quick, log)
            manifest["durations_s"][key] = round(time.time() - t0, 1)
            atomic_write_json(run_dir / VALIDATION_JSON, rows)
            atomic_write_json(run_dir / "manifest.json", manifest)
            continue
        if any(len(real[label]) < repetitions for label, _ in pts):
            with RealFleet(pts[0][1], real_dir, pin=pin) as fleet:
                for label, exp in pts:
                    for rep in range(len(real[label]), repetitions):
                        log(f"validate {label}: real run {rep + 1}/{repetitions} ({exp.duration_s:g} s)")
                        run = fleet.run(exp, seed=exp.seed * 1000 + rep, tag=f"{label.replace(':', '-')}-{rep}")
                        real[label].append(real_observation(sc, exp, run))
                        atomic_write_json(store, {k: [asdict(o) for o in v] for k, v in real.items()})
        for label, exp in pts:
            log(f"validate {label}: {reps} simulated replications")
            sim = simulate(sc, exp, reps, jobs=min(2, reps))
            metrics = sorted({m for o in real[label] + sim for m in o.values})
            for metric in metrics:
                rows.append(compare(label, metric, real[label], sim, quick=quick,
                                    timing=True if metric in sc.timing_metrics else None))
        manifest["durations_s"][key] = round(time.time() - t0, 1)
        atomic_write_json(run_dir / VALIDATION_JSON, rows)
        atomic_write_json(run_dir / "manifest.json", manifest)
    manifest["wall_s"] = round(time.time() - started, 1)
    manifest["passed"] = sum(1 for r in rows if r["pass"])
    manifest["rows"] = len(rows)
    manifest["gate_failures"] = [f"{r['scenario']} {r['metric']}" for r in rows if not r["gate"]]
    atomic_write_json(run_dir / "manifest.json", manifest)
    write_validation_html(run_dir, rows, manifest, {k: SCENARIOS[k] for k in keys})
    return run_dir


def _control_plane_rows(sc: Scenario, pts, real: dict, real_dir: Path, store: Path, repetitions: int, reps: int,
                        quick: bool, log: Callable[[str], None]) -> list[dict]:
    """Scenario g: real runs of the reference control plane, then the simulator (reference_gateway.cp_validate)."""
    from . import cp_validate

    rows = []
    for label, exp in pts:
        for rep in range(len(real[label]), repetitions):
            log(f"validate {label}: real run {rep + 1}/{repetitions} ({exp.control_plane.gateways} Envoys)")
            real[label].append(cp_validate.real_observation(exp, real_dir / f"{label.replace(':', '-')}-{rep}"))
            atomic_write_json(store, {k: [asdict(o) for o in v] for k, v in real.items()})
        log(f"validate {label}: {reps} simulated replications")
        sim = cp_validate.simulate(exp, real[label], reps)
        for metric in cp_validate.METRICS:
            rows.append(compare(label, metric, real[label], sim, quick=quick))
    return rows


def _tls_sim_worker(args: tuple[dict, int]) -> dict:
    from sim.fleet import Fleet

    from .tls_scenario import sim_observation

    exp = Experiment.model_validate(args[0])
    return sim_observation(exp, Fleet(exp, args[1]).run()).values


def _tls_rows(sc: Scenario, pts, real: dict, real_dir: Path, store: Path, repetitions: int, reps: int,
              quick: bool, log: Callable[[str], None]) -> list[dict]:
    """Scenario t: TLS Envoys and a TLS client (reference_gateway.tls_scenario), then the simulator."""
    from .tls_scenario import machine_speed, real_observations

    rows = []
    for label, exp in pts:
        if len(real[label]) < repetitions:
            log(f"validate {label}: real runs {len(real[label]) + 1}..{repetitions} (TLS)")
            for obs in real_observations(exp, real_dir / label.replace(":", "-"), repetitions, len(real[label]),
                                         log=log):
                real[label].append(obs)
                atomic_write_json(store, {k: [asdict(o) for o in v] for k, v in real.items()})
        log(f"validate {label}: {reps} simulated replications")
        data = exp.model_dump(mode="json", by_alias=True)
        tasks = [(data, r) for r in range(reps)]
        with ProcessPoolExecutor(max_workers=min(2, reps), mp_context=mp.get_context("spawn")) as pool:
            sim = [Observation(values=v) for v in pool.map(_tls_sim_worker, tasks)]
        speed = machine_speed(real[label], sim)
        for o in sim:
            o.values["cpu_per_connection_ms"] *= speed
        for metric in sorted({m for o in real[label] + sim for m in o.values}):
            row = compare(label, metric, real[label], sim, quick=quick)
            if metric == "cpu_per_connection_ms":
                row["machine_speed"] = round(speed, 4)
                row["note"] = "; ".join(filter(None, (row.get("note"), f"simulated CPU x {speed:.3f}: the real "
                                                      "runs' full-handshake CPU over the calibration's")))
            rows.append(row)
    return rows


def failures(rows: list[dict], quick: bool) -> list[dict]:
    """Rows that fail the run: ``gate`` for quick runs, ``pass`` for full ones."""
    return [r for r in rows if not (r["gate"] if quick else r["pass"])]


def format_table(rows: list[dict]) -> str:
    """The rows as a plain-text table (for the terminal and the closing note)."""
    def fmt(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            if math.isnan(v):
                return "-"
            return f"{v:.4g}"
        return str(v)

    head = ("scenario", "metric", "measured", "simulated", "error", "goal", "pass")
    body = [(r["scenario"], r["metric"], fmt(r["measured"]), fmt(r["simulated"]), fmt(r["error"]),
             r["goal"], ("yes" if r["pass"] else "NO") + ("" if r.get("trustworthy", True) else " (untrusted)"))
            for r in rows]
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in [head, *body]]
    return "\n".join(lines)


def load_rows(run_dir: str | Path) -> list[dict]:
    return json.loads((Path(run_dir) / VALIDATION_JSON).read_text())
