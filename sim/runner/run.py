"""Running an experiment: replications (in processes), the run folder, the report.

``run_experiment`` writes ``<out>/<experiment>/<run-id>/``:
``config.resolved.yaml``, ``replications/rep-NNN.json`` (each replication's
full result, written as it completes), ``summary.json``, ``timeseries.csv``,
``counters.json`` (per gateway pool, backend service, balancer node, link and
client population), ``graph.json`` (the fleet and its traffic: per instance
for small fleets, per pool and backend group beyond), ``instances.json``
(with ``output.instances``: every instance's counters and each gateway's
tries per host, in columns), ``manifest.json`` and ``report.html``. Wall-clock figures
go only to the manifest, so equal seeds give byte-identical summaries.

A run folder being written holds an ``INCOMPLETE`` file: it is written
(atomically) before anything else and removed after everything else, so a
run stopped at any point (Ctrl-C, ``kill``, out of memory, a full disk) leaves
a folder that says so, and a rerun into it (``--run-dir``) resumes from the
replications it stored.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import queue as queue_mod
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from sim.config import dump_resolved
from sim.config.models import Experiment
from sim.fleet import Fleet

from .aggregate import combine_summaries
from .estimate import variants_side_by_side
from .progress import Progress
from .store import atomic_write_json, atomic_write_text, dumps, timeseries_csv

PACKAGES = ("fleetsim", "simpy", "numpy", "scipy", "networkx", "plotly", "pydantic", "ruamel.yaml")

#: The file that marks a run folder being written (or stopped before the end).
INCOMPLETE = "INCOMPLETE"

#: A progress callback: (replication or slot, simulated seconds, events so far).
Tick = Callable[[int, float, int], None]

_progress_queue = None


def _init_worker(q) -> None:
    global _progress_queue
    _progress_queue = q


def run_replication(exp: Experiment | dict, replication: int,
                    progress: Callable[[float, int], None] | None = None) -> dict:
    """Run one replication in this process.

    Args:
        exp: The experiment (or its ``model_dump``, from another process).
        replication: The replication's index (it picks the random streams).
        progress: Called as the simulation advances with the simulated
            seconds done and the events scheduled so far.

    Returns:
        The replication's result dict (summary, series, counters, graph, ...).
    """
    if isinstance(exp, dict):
        exp = Experiment.model_validate(exp)
    t0 = time.perf_counter()
    fleet = Fleet(exp, replication)
    tick = None
    if progress is not None:
        def tick(t: float) -> None:
            progress(t, fleet.events_scheduled())
    result = fleet.run(tick)
    result["wall_s"] = time.perf_counter() - t0
    result["replication"] = replication
    return result


def _worker(exp_data: dict, replication: int, slot: int) -> dict:
    q = _progress_queue

    def tick(t: float, events: int) -> None:
        if q is not None:
            q.put((slot, t, events))

    return run_replication(exp_data, replication, tick)


def _drain(q, tick: Tick) -> None:
    """Hand every progress report waiting in ``q`` to ``tick``."""
    try:
        while True:
            tick(*q.get_nowait())
    except queue_mod.Empty:
        pass


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop a pool's workers now rather than let them finish work nobody will collect."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def mark_incomplete(run_dir: Path, what: str) -> None:
    """Write the ``INCOMPLETE`` marker (first thing into a run folder; creates the folder).

    Args:
        run_dir: The run folder.
        what: What the folder holds when finished (for the marker's text).
    """
    atomic_write_text(run_dir / INCOMPLETE,
                      f"This folder is {what} that has not finished (or was stopped).\n"
                      f"Rerun the same command with --run-dir {run_dir} to resume: the replications\n"
                      f"stored in it are reused. This file is removed when the run completes.\n")


def mark_complete(run_dir: Path) -> None:
    """Remove the ``INCOMPLETE`` marker (the last thing a run does)."""
    try:
        os.unlink(run_dir / INCOMPLETE)
    except FileNotFoundError:
        pass


def stored_replications(run_dir: Path) -> int:
    """Replications stored in a run folder (a variants folder: in all its variants)."""
    n = len(list((run_dir / "replications").glob("rep-*.json")))
    return n + sum(stored_replications(v) for v in sorted((run_dir / "variants").glob("*")) if v.is_dir())


def _load_stored(path: Path) -> dict | None:
    """A stored replication, or None when it cannot be read (it is then simulated again)."""
    try:
        res = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return res if isinstance(res, dict) and "summary" in res else None


def versions() -> dict:
    """The versions of Python and of the packages a run depends on, for its manifest."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


def new_run_dir(out: Path, exp: Experiment) -> Path:
    """A new run folder ``<out>/<experiment>/<UTC time>-seed<seed>`` (``-2``, ``-3``... if taken)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = out / exp.name / f"{stamp}-seed{exp.seed}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path


def run_experiment(
    exp: Experiment,
    out: Path = Path("results"),
    *,
    jobs: int = 1,
    run_dir: Path | None = None,
    show_progress: bool = True,
    report: bool = True,
    progress_every: float | None = None,
    on_progress: Tick | None = None,
) -> Path:
    """Run every replication of ``exp`` and write its run folder.

    With ``run_dir`` pointing at an existing folder whose
    ``config.resolved.yaml`` equals this experiment's, replications already
    stored there are reused (an interrupted run resumes; a stored file that
    cannot be read is simulated again). The folder holds an ``INCOMPLETE``
    marker from before its first file until after its last.

    Args:
        exp: The validated experiment.
        out: The results folder; the run folder is ``out/<name>/<run-id>/``.
        jobs: Replications run at once, each in its own process.
        run_dir: This exact run folder instead (created, or resumed).
        show_progress: Draw progress on stderr (:class:`~sim.runner.progress.Progress`).
        report: Write ``report.html``.
        progress_every: Seconds between progress lines off a terminal
            (default :data:`sim.runner.progress.INTERVAL_S`).
        on_progress: Report progress here, as (replication, simulated
            seconds, events), instead of drawing it (a run inside a worker).

    Returns:
        The run folder.

    Raises:
        FileExistsError: ``run_dir`` holds a run of a different configuration.
        OSError: A file of the run folder cannot be written.
    """
    resolved = dump_resolved(exp)
    run_dir = run_dir or new_run_dir(Path(out), exp)
    cfg_path = run_dir / "config.resolved.yaml"
    if cfg_path.exists() and cfg_path.read_text(encoding="utf-8") != resolved:
        raise FileExistsError(f"{run_dir} holds a run of a different configuration")
    mark_incomplete(run_dir, f"a run of {exp.name}")
    atomic_write_text(cfg_path, resolved)
    rep_dir = run_dir / "replications"
    rep_dir.mkdir(parents=True, exist_ok=True)

    wall0 = time.perf_counter()
    results: dict[int, dict] = {}
    for r in range(exp.replications):
        p = rep_dir / f"rep-{r:03d}.json"
        if p.exists():
            res = _load_stored(p)
            if res is not None:
                results[r] = res
    todo = [r for r in range(exp.replications) if r not in results]

    prog = Progress([exp.duration_s] * exp.replications, enabled=show_progress and on_progress is None,
                    label=exp.name, interval_s=progress_every)
    tick: Tick = on_progress or prog.update
    for r in results:
        prog.skip(r)
        if on_progress is not None:
            on_progress(r, exp.duration_s, 0)

    def store(res: dict) -> None:
        r = res["replication"]
        atomic_write_json(rep_dir / f"rep-{r:03d}.json", res)
        results[r] = json.loads(dumps(res))  # as stored, so resumed and fresh runs agree
        tick(r, exp.duration_s, res.get("events", 0))

    try:
        if jobs <= 1 or len(todo) <= 1:
            for r in todo:
                store(run_replication(exp, r, lambda t, n, r=r: tick(r, t, n)))
        else:
            ctx = mp.get_context("spawn")
            q = ctx.Queue()
            data = exp.model_dump(mode="json", by_alias=True)
            pool = ProcessPoolExecutor(min(jobs, len(todo)), mp_context=ctx, initializer=_init_worker,
                                       initargs=(q,))
            try:
                pending = {pool.submit(_worker, data, r, r) for r in todo}
                while pending:
                    done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                    _drain(q, tick)
                    for f in done:
                        store(f.result())
            except BaseException:
                # Interrupted or failed: stop the workers now rather than let them
                # finish replications nobody will collect. Stored ones are kept.
                _stop_pool(pool)
                raise
            pool.shutdown()
    finally:
        prog.close()

    ordered = [results[r] for r in range(exp.replications)]
    summary = combine_summaries([res["summary"] for res in ordered])
    atomic_write_json(run_dir / "summary.json", summary)
    atomic_write_text(run_dir / "timeseries.csv", timeseries_csv([res["timeseries"] for res in ordered]))
    atomic_write_json(run_dir / "counters.json", {f"rep-{res['replication']:03d}": res["counters"] for res in ordered})
    if "instances" in ordered[0]:  # output.instances: every instance, in columns
        atomic_write_json(run_dir / "instances.json",
                          {f"rep-{res['replication']:03d}": res["instances"] for res in ordered})
    graph = ordered[0]["graph"]
    graph["edges"] = [
        {**e, "requests": sum(res["graph"]["edges"][k]["requests"] for res in ordered) / len(ordered)}
        for k, e in enumerate(graph["edges"])
    ]
    graph["window_s"] = exp.duration_s - exp.warmup_s
    atomic_write_json(run_dir / "graph.json", graph)
    manifest = {
        "run_id": run_dir.name,
        "experiment": exp.name,
        "seed": exp.seed,
        "replications": exp.replications,
        "versions": versions(),
        "command": sys.argv,
        "wall_s": time.perf_counter() - wall0,
        "replication_wall_s": [res["wall_s"] for res in ordered],
        "events": sum(res["events"] for res in ordered),
        "requests_simulated": sum(res["requests"] for res in ordered),
        "resumed_replications": exp.replications - len(todo),
    }
    atomic_write_json(run_dir / "manifest.json", manifest)
    if report:
        from sim.report import write_report

        write_report(run_dir)
    mark_complete(run_dir)
    return run_dir


def _variant_worker(exp_data: dict, out: str, run_dir: str, report: bool, first_slot: int) -> str:
    exp = Experiment.model_validate(exp_data)
    q = _progress_queue

    def tick(r: int, t: float, events: int) -> None:
        if q is not None:
            q.put((first_slot + r, t, events))

    return str(run_experiment(exp, Path(out), jobs=1, run_dir=Path(run_dir), show_progress=False, report=report,
                              on_progress=tick))


def run_variants(
    base: Experiment,
    variants: dict[str, Experiment],
    out: Path = Path("results"),
    *,
    jobs: int = 1,
    run_dir: Path | None = None,
    show_progress: bool = True,
    report: bool = True,
    progress_every: float | None = None,
    baseline: str | None = None,
) -> Path:
    """Run every named variant of an experiment and write one comparison.

    Each variant is a complete run folder under ``<run_dir>/variants/<name>/``
    (resumable like any run); ``comparison.json`` lists them in order, and
    ``report.html`` compares them. Variants share the seed, so they see the
    same arrivals and service times where their configurations agree
    (common random numbers). The folder holds an ``INCOMPLETE`` marker until
    every variant and the comparison are written.

    Args:
        base: The experiment the variants derive from.
        variants: The variants, by name, in order.
        out: The results folder; the run folder is ``out/<name>/<run-id>/``.
        jobs: Processes to use (for whole variants side by side when each
            has fewer replications than ``jobs``, else for replications).
        run_dir: This exact folder instead (created, or resumed).
        show_progress: Draw progress on stderr.
        report: Write each variant's report and the comparison.
        progress_every: Seconds between progress lines off a terminal.
        baseline: The variant the comparison sets the others against (default: the first).

    Returns:
        The comparison folder.

    Raises:
        FileExistsError: A variant's folder holds a run of a different configuration.
        OSError: A file cannot be written.
    """
    run_dir = run_dir or new_run_dir(Path(out), base)
    mark_incomplete(run_dir, f"a comparison of the variants of {base.name}")
    entries = []
    if variants_side_by_side(variants, jobs):
        # Too few replications to keep the workers busy: run whole variants side by side.
        slots, first = [], {}
        for name, exp in variants.items():
            first[name] = len(slots)
            slots += [exp.duration_s] * exp.replications
        prog = Progress(slots, enabled=show_progress, label=f"{base.name} ({len(variants)} variants)",
                        interval_s=progress_every)
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        pool = ProcessPoolExecutor(min(jobs, len(variants)), mp_context=ctx, initializer=_init_worker,
                                   initargs=(q,))
        try:
            futures = {name: pool.submit(_variant_worker, exp.model_dump(mode="json", by_alias=True),
                                         str(out), str(run_dir / "variants" / name), False, first[name])
                       for name, exp in variants.items()}
            pending = set(futures.values())
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                _drain(q, prog.update)
                for f in done:
                    f.result()  # a variant that failed stops the run now, not after the others
            dirs = {name: Path(fut.result()) for name, fut in futures.items()}
        except BaseException:
            _stop_pool(pool)
            raise
        finally:
            prog.close()
        pool.shutdown()
    else:
        dirs = {name: run_experiment(exp, out, jobs=jobs, run_dir=run_dir / "variants" / name,
                                     show_progress=show_progress, report=False, progress_every=progress_every)
                for name, exp in variants.items()}
    for name in variants:
        entries.append({"name": name, "dir": str(dirs[name].relative_to(run_dir)),
                        "overrides": base.variants.get(name, {})})
    atomic_write_json(run_dir / "comparison.json", {
        "experiment": base.name, "description": base.description, "seed": base.seed,
        "replications": base.replications, "baseline": baseline or next(iter(variants)), "variants": entries,
    })
    from sim.report.comparison import write_comparison, write_comparison_json

    if report:
        write_comparison(run_dir)  # comparison.json's numbers, then the pages
    else:
        write_comparison_json(run_dir)  # every KPI with its CI and the difference to the baseline
    mark_complete(run_dir)
    return run_dir
