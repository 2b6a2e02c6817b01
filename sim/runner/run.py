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
"""

from __future__ import annotations

import json
import multiprocessing as mp
import platform
import queue as queue_mod
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from sim.config import dump_resolved
from sim.config.models import Experiment
from sim.fleet import Fleet

from .aggregate import combine_summaries
from .progress import Progress
from .store import atomic_write_json, atomic_write_text, dumps, timeseries_csv

PACKAGES = ("fleetsim", "simpy", "numpy", "scipy", "networkx", "plotly", "pydantic", "ruamel.yaml")

_progress_queue = None


def _init_worker(q) -> None:
    global _progress_queue
    _progress_queue = q


def run_replication(exp: Experiment | dict, replication: int, progress=None) -> dict:
    """One replication in this process; returns its result dict."""
    if isinstance(exp, dict):
        exp = Experiment.model_validate(exp)
    t0 = time.perf_counter()
    result = Fleet(exp, replication).run(progress)
    result["wall_s"] = time.perf_counter() - t0
    result["replication"] = replication
    return result


def _worker(exp_data: dict, replication: int) -> dict:
    q = _progress_queue

    def tick(t: float) -> None:
        if q is not None:
            q.put((replication, t))

    return run_replication(exp_data, replication, tick)


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


def new_run_dir(out: Path, exp: Experiment) -> Path:
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
) -> Path:
    """Run every replication of ``exp`` and write its run folder; returns the folder.

    With ``run_dir`` pointing at an existing folder whose
    ``config.resolved.yaml`` equals this experiment's, replications already
    stored there are reused (an interrupted run resumes).
    """
    resolved = dump_resolved(exp)
    run_dir = run_dir or new_run_dir(Path(out), exp)
    cfg_path = run_dir / "config.resolved.yaml"
    if cfg_path.exists() and cfg_path.read_text(encoding="utf-8") != resolved:
        raise FileExistsError(f"{run_dir} holds a run of a different configuration")
    atomic_write_text(cfg_path, resolved)
    rep_dir = run_dir / "replications"
    rep_dir.mkdir(parents=True, exist_ok=True)

    wall0 = time.perf_counter()
    results: dict[int, dict] = {}
    for r in range(exp.replications):
        p = rep_dir / f"rep-{r:03d}.json"
        if p.exists():
            results[r] = json.loads(p.read_text(encoding="utf-8"))
    todo = [r for r in range(exp.replications) if r not in results]

    prog = Progress(exp.replications, exp.duration_s, enabled=show_progress)
    for r in results:
        prog.update(r, exp.duration_s)

    def store(res: dict) -> None:
        r = res["replication"]
        atomic_write_json(rep_dir / f"rep-{r:03d}.json", res)
        results[r] = json.loads(dumps(res))  # as stored, so resumed and fresh runs agree
        prog.update(r, exp.duration_s)

    try:
        if jobs <= 1 or len(todo) <= 1:
            for r in todo:
                store(run_replication(exp, r, lambda t, r=r: prog.update(r, t)))
        else:
            ctx = mp.get_context("spawn")
            q = ctx.Queue()
            data = exp.model_dump(mode="json", by_alias=True)
            pool = ProcessPoolExecutor(min(jobs, len(todo)), mp_context=ctx, initializer=_init_worker,
                                       initargs=(q,))
            try:
                pending = {pool.submit(_worker, data, r) for r in todo}
                while pending:
                    done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                    try:
                        while True:
                            r, t = q.get_nowait()
                            prog.update(r, t)
                    except queue_mod.Empty:
                        pass
                    for f in done:
                        store(f.result())
            except BaseException:
                # Interrupted or failed: stop the workers now rather than let them
                # finish replications nobody will collect. Stored ones are kept.
                for proc in list(getattr(pool, "_processes", {}).values()):
                    proc.terminate()
                pool.shutdown(wait=False, cancel_futures=True)
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
    return run_dir


def _variant_worker(exp_data: dict, out: str, run_dir: str, report: bool) -> str:
    exp = Experiment.model_validate(exp_data)
    return str(run_experiment(exp, Path(out), jobs=1, run_dir=Path(run_dir), show_progress=False, report=report))


def run_variants(
    base: Experiment,
    variants: dict[str, Experiment],
    out: Path = Path("results"),
    *,
    jobs: int = 1,
    run_dir: Path | None = None,
    show_progress: bool = True,
    report: bool = True,
) -> Path:
    """Run every named variant of an experiment and write one comparison.

    Each variant is a complete run folder under ``<run_dir>/variants/<name>/``
    (resumable like any run); ``comparison.json`` lists them in order, and
    ``report.html`` compares them. Variants share the seed, so they see the
    same arrivals and service times where their configurations agree
    (common random numbers).
    """
    run_dir = run_dir or new_run_dir(Path(out), base)
    run_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    if jobs > 1 and len(variants) > 1 and all(v.replications < jobs for v in variants.values()):
        # Too few replications to keep the workers busy: run whole variants side by side.
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(min(jobs, len(variants)), mp_context=ctx) as pool:
            futures = {name: pool.submit(_variant_worker, exp.model_dump(mode="json", by_alias=True),
                                         str(out), str(run_dir / "variants" / name), report)
                       for name, exp in variants.items()}
            dirs = {name: Path(fut.result()) for name, fut in futures.items()}
    else:
        dirs = {name: run_experiment(exp, out, jobs=jobs, run_dir=run_dir / "variants" / name,
                                     show_progress=show_progress, report=report)
                for name, exp in variants.items()}
    for name in variants:
        entries.append({"name": name, "dir": str(dirs[name].relative_to(run_dir)),
                        "overrides": base.variants.get(name, {})})
    atomic_write_json(run_dir / "comparison.json", {
        "experiment": base.name, "description": base.description, "seed": base.seed,
        "replications": base.replications, "variants": entries,
    })
    if report:
        from sim.report import write_comparison

        write_comparison(run_dir)
    return run_dir
