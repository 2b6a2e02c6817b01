"""Running a sweep: every point times every replication, cached, on a process pool or on Dask.

``run_sweep`` runs the points of an experiment's ``sweep`` section
(:mod:`sim.config.sweep`) into one folder, ``results/<experiment>-sweep/``
by default:

- ``runs/<key>/``: one folder per run (a point's replication), named by the
  hash of its configuration (:mod:`sim.runner.cache`). A run already stored
  is not run again, so an interrupted sweep resumes, an extended grid runs
  only its new points, and an identical sweep runs nothing.
- ``sweep.json``: the experiment, and each run's point label, swept values
  (``params``), variant, replication, seed, key and ``summary.json`` path,
  in point order. It holds no wall-clock figure: equal sweeps give
  byte-identical files, whichever executor ran them.
- ``manifest.json``: versions, executor, runs simulated and taken from the
  cache, wall seconds.
- the sweep report (:func:`sim.report.sweep.write_sweep_report`).

A folder being written holds an ``INCOMPLETE`` file until the end.

Two executors run the same function on the same inputs: ``local`` a process
pool (spawn context, ``jobs`` processes), ``dask`` a Dask distributed cluster
(``scheduler`` address, or a ``LocalCluster`` of ``jobs`` worker processes).
Results come back to this process, which alone writes the folder, so a remote
cluster needs no shared file system (only fleetsim installed on its workers).
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.config.models import Experiment
from sim.config.sweep import SweepPoint
from sim.files import atomic_write_json, atomic_write_text

from .cache import RunCache, code_version, run_key
from .progress import Progress
from .run import (
    INCOMPLETE,
    _drain,
    _init_worker,
    _stop_pool,
    _worker,
    mark_complete,
    run_replication,
    versions,
)

log = logging.getLogger(__name__)

EXECUTORS = ("local", "dask")
#: Seconds to wait for a Dask scheduler given by address before giving up.
SCHEDULER_TIMEOUT_S = 10.0


class SchedulerError(RuntimeError):
    """The Dask scheduler at the address given cannot be reached."""


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: a point's replication.

    Attributes:
        point: The point's index in the sweep.
        replication: The replication's index (its random streams).
        key: The run's cache key.
    """

    point: int
    replication: int
    key: str


@dataclass(frozen=True)
class SweepOutcome:
    """What :func:`run_sweep` did.

    Attributes:
        out_dir: The sweep's folder.
        ran: Runs simulated now.
        cached: Runs taken from the cache.
        report: The report's path, or None when none was written.
    """

    out_dir: Path
    ran: int
    cached: int
    report: Path | None


def default_out(exp: Experiment, results: Path = Path("results")) -> Path:
    """The sweep's default folder, ``results/<experiment>-sweep``."""
    return Path(results) / f"{exp.name}-sweep"


def plan_runs(points: list[SweepPoint], replications: int) -> list[SweepRun]:
    """Every run of the sweep, point by point, replication by replication."""
    return [SweepRun(i, r, run_key(p.config, r)) for i, p in enumerate(points) for r in range(replications)]


def experiment_info(exp: Experiment) -> dict[str, Any]:
    """The experiment as ``sweep.json`` and the sweep report describe it."""
    return {"name": exp.name, "description": exp.description, "seed": exp.seed, "replications": exp.replications,
            "sweep": exp.sweep.model_dump(mode="json") if exp.sweep is not None else {"grid": {}, "zip": {}}}


def _dask_task(exp_data: dict, replication: int) -> dict:
    """A run on a Dask worker (module-level, so workers import it by name)."""
    return run_replication(exp_data, replication)


def _run_local(todo: list[tuple[int, SweepRun, dict]], jobs: int, tick: Callable, done: Callable) -> None:
    """Run ``todo`` (slot, run, experiment data) on a spawn-context process pool of ``jobs`` processes."""
    if jobs <= 1:
        for slot, run, data in todo:
            done(slot, run, run_replication(data, run.replication, lambda t, n, s=slot: tick(s, t, n)))
        return
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    pool = ProcessPoolExecutor(min(jobs, len(todo)), mp_context=ctx, initializer=_init_worker, initargs=(q,))
    try:
        futures = {pool.submit(_worker, data, run.replication, slot): (slot, run) for slot, run, data in todo}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            _drain(q, tick)
            for f in finished:
                done(*futures[f], f.result())
    except BaseException:
        _stop_pool(pool)  # interrupted or failed: stored runs are kept, the rest is not waited for
        raise
    pool.shutdown()


def _run_dask(todo: list[tuple[int, SweepRun, dict]], jobs: int, scheduler: str | None, done: Callable,
              cluster_options: dict | None) -> None:
    """Run ``todo`` on a Dask cluster: the one at ``scheduler``, or a LocalCluster of ``jobs`` workers."""
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout=SCHEDULER_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as e:
            raise SchedulerError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
    else:
        options = {"n_workers": jobs, "threads_per_worker": 1, "processes": True, "dashboard_address": None,
                   "silence_logs": logging.ERROR, **(cluster_options or {})}
        cluster = LocalCluster(**options)
        client = Client(cluster)
    try:
        futures = {client.submit(_dask_task, data, run.replication, key=f"fleetsim-run-{run.key}", pure=False):
                   (slot, run) for slot, run, data in todo}
        for fut in as_completed(futures):
            done(*futures[fut], fut.result())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_sweep(
    exp: Experiment,
    points: list[SweepPoint],
    out_dir: Path,
    *,
    executor: str = "local",
    jobs: int = 1,
    scheduler: str | None = None,
    show_progress: bool = True,
    progress_every: float | None = None,
    report: bool = True,
    cluster_options: dict | None = None,
) -> SweepOutcome:
    """Run every point of a sweep ``exp.replications`` times into ``out_dir``, reusing stored runs.

    Args:
        exp: The experiment (its ``name``, ``description``, ``seed``,
            ``replications`` and ``sweep`` describe the sweep).
        points: Its points (:attr:`sim.config.LoadedExperiment.sweep_points`).
        out_dir: The sweep's folder (created, or resumed).
        executor: ``local`` (a process pool) or ``dask``.
        jobs: Processes of the pool, or workers of the local Dask cluster.
        scheduler: A Dask scheduler's address (``tcp://host:8786``); None
            starts a LocalCluster.
        show_progress: Draw progress on stderr.
        progress_every: Seconds between progress lines off a terminal.
        report: Write the sweep report.
        cluster_options: Options for the LocalCluster (tests run one in threads).

    Returns:
        What was run and where.

    Raises:
        ValueError: An unknown executor, or no points.
        SchedulerError: ``scheduler`` cannot be reached.
        OSError: A file cannot be written.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r} (executors: {', '.join(EXECUTORS)})")
    if not points:
        raise ValueError("a sweep needs at least one point")
    wall0 = time.perf_counter()
    out_dir = Path(out_dir)
    cache = RunCache(out_dir / "runs")
    runs = plan_runs(points, exp.replications)
    atomic_write_text(out_dir / INCOMPLETE,
                      f"This folder is a sweep of {exp.name} that has not finished (or was stopped).\n"
                      "Rerun the same fleetsim sweep command to resume: the runs stored in runs/ are reused.\n"
                      "This file is removed when the sweep completes.\n")
    summaries: dict[int, dict] = {}
    todo: list[tuple[int, SweepRun, dict]] = []
    slots_of: dict[str, list[int]] = {}  # two points with the same configuration share their runs
    for slot, run in enumerate(runs):
        slots_of.setdefault(run.key, []).append(slot)
        if len(slots_of[run.key]) > 1:
            continue
        stored = cache.load_summary(run.key)
        if stored is not None:
            summaries[slot] = stored
        else:
            todo.append((slot, run, points[run.point].config.model_dump(mode="json", by_alias=True)))
    cached = len(summaries)

    prog = Progress([points[r.point].config.duration_s for r in runs], enabled=show_progress,
                    label=f"{exp.name} sweep", interval_s=progress_every, unit="runs")
    for slot in summaries:
        for s in slots_of[runs[slot].key]:
            prog.skip(s)

    def done(slot: int, run: SweepRun, result: dict) -> None:
        summaries[slot] = cache.store(run.key, points[run.point].config, run.replication, result)
        for s in slots_of[run.key]:
            prog.update(s, points[run.point].config.duration_s, result.get("events", 0) if s == slot else 0)

    try:
        if todo and executor == "dask":
            _run_dask(todo, jobs, scheduler, done, cluster_options)
        elif todo:
            _run_local(todo, jobs, prog.update, done)
    finally:
        prog.close()

    entries, grouped = [], []
    for run in runs:
        summary = summaries[slots_of[run.key][0]]
        point = points[run.point]
        entries.append({"point": run.point, "label": point.label, "params": point.params, "variant": point.variant,
                        "replication": run.replication, "seed": point.config.seed, "key": run.key,
                        "summary": cache.summary_path(run.key).relative_to(out_dir).as_posix()})
        if run.replication == 0:
            grouped.append({"label": point.label, "params": point.params, "variant": point.variant, "summaries": []})
        grouped[-1]["summaries"].append(summary)
    info = experiment_info(exp)
    atomic_write_json(out_dir / "sweep.json", {"experiment": info, "fleetsim": code_version(), "points": entries})
    atomic_write_json(out_dir / "manifest.json", {
        "experiment": exp.name, "points": len(points), "replications": exp.replications, "runs": len(runs),
        "ran": len(todo), "cached": cached, "executor": executor, "jobs": jobs, "scheduler": scheduler,
        "fleetsim": code_version(), "versions": versions(), "command": sys.argv,
        "wall_s": time.perf_counter() - wall0,
    })
    report_path = _write_report(out_dir, grouped, info) if report else None
    mark_complete(out_dir)
    return SweepOutcome(out_dir, len(todo), cached, report_path)


def _write_report(out_dir: Path, points: list[dict], info: dict) -> Path | None:
    """The sweep report, when the report module is installed (it comes with the sweep report's branch)."""
    try:
        from sim.report.sweep import write_sweep_report
    except ImportError:
        log.info("sim.report.sweep is not available: the sweep report is skipped")
        return None
    return write_sweep_report(out_dir, points, info)


def iter_point_summaries(sweep_dir: Path) -> Iterator[tuple[dict, dict]]:
    """Each run of a written sweep with its summary: (``sweep.json`` entry, summary dict), in order."""
    sweep_dir = Path(sweep_dir)
    doc = json.loads((sweep_dir / "sweep.json").read_text(encoding="utf-8"))
    for entry in doc["points"]:
        yield entry, json.loads((sweep_dir / entry["summary"]).read_text(encoding="utf-8"))
