"""The ``fleetsim`` command.

    fleetsim run EXPERIMENT.yaml [--set path=value ...] [--seed N] [--replications R]
                                 [--jobs J] [--out DIR] [--run-dir DIR] [--no-report]
                                 [--max-events N] [--yes] [--progress-every S] [--quiet]
    fleetsim check FILE.yaml [...] [--max-events N]
    fleetsim sweep EXPERIMENT.yaml [--executor local|dask] [--scheduler ADDRESS] [--jobs J] [--out DIR]
                                   [--set path=value ...] [--seed N] [--replications R] [--no-report] [--quiet]
    fleetsim export RESULTS... [--csv FILE] [--parquet FILE]
    fleetsim ls [RESULTS]
    fleetsim schema
    fleetsim report RUN_DIR
    fleetsim compare RUN_A RUN_B [--out DIR]
    fleetsim import-envoy ENVOY.yaml [--pool NAME] [--az AZ] [--instances N] [--cluster NAME] [--out FILE]
    fleetsim calibrate ... / fleetsim validate ...   (from reference_gateway, see reference_gateway/cli.py)

A user's mistake ends in one line per problem on stderr,
``FILE:LINE: dotted.path: reason``, and exit status 2; never a traceback.
What the machine refuses (out of memory, a full disk, a worker killed) is one
line too, with exit status 1; an interrupt (Ctrl-C, ``kill``) exits with 130.
``check`` and ``run`` estimate a run's size first (:mod:`sim.runner.estimate`),
and ``run`` refuses one too big for ``--max-events`` or for the memory
available unless given ``--yes``.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sys
from importlib.metadata import entry_points
from pathlib import Path

from sim.config import ConfigError, Issue, json_schema, load_experiment
from sim.runner.estimate import DEFAULT_MAX_EVENTS

EXIT_USAGE = 2
#: The machine, not the input: out of memory, a full disk, a worker killed.
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130
COMMANDS_GROUP = "fleetsim.commands"
CLI = "<command line>"
#: Write errors that are the machine's, not a wrong path (exit 1 rather than 2).
_MACHINE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM, errno.EFBIG}
#: The same default as ``run --jobs`` (``check`` estimates a run with it).
DEFAULT_JOBS = min(2, os.cpu_count() or 1)


def report_issues(issues: list[Issue]) -> int:
    """Print each issue on one line to stderr (at most 50) and return the usage exit code."""
    for issue in issues[:50]:
        print(issue, file=sys.stderr)
    if len(issues) > 50:
        print(f"... and {len(issues) - 50} more", file=sys.stderr)
    return EXIT_USAGE


def _load(args, path: str):
    """Load and elaborate; returns (loaded, exit_code)."""
    from sim.fleet import FleetError, plan

    try:
        loaded = load_experiment(path, getattr(args, "set", None) or (), seed=getattr(args, "seed", None),
                                 replications=getattr(args, "replications", None),
                                 calibration=getattr(args, "calibration", None))
    except ConfigError as e:
        return None, report_issues(e.issues)
    try:
        graph = plan(loaded.config)
    except FleetError as e:
        return None, report_issues([loaded.issue(e.path, e.reason)])
    return (loaded, graph), 0


def _size_issue(loaded, est, max_events: float, yes: bool, verb: str) -> Issue | None:
    """The refusal of a run too big for ``--max-events`` or for the memory available, if any.

    Args:
        loaded: The loaded experiment (for the places of the fields).
        est: Its estimate (:func:`sim.runner.estimate.estimate_run`).
        max_events: ``--max-events``.
        yes: ``--yes`` was given: only an endless run is refused.
        verb: How the refusal ends (``refusing``, or ``fleetsim run refuses it``).
    """
    from sim.runner.estimate import available_memory, too_big

    got = too_big(est, max_events=max_events, available=available_memory(), locate=loaded.locate)
    if got is None:
        return None
    path, reason, overridable = got
    if overridable and yes:
        return None
    if overridable:
        reason += f"; {verb} without --yes"
    return loaded.issue(path, reason)


def _positive(value: float | None, flag: str) -> Issue | None:
    if value is not None and not value > 0:
        return Issue(CLI, None, flag, f"must be more than 0, got {value:g}")
    return None


def cmd_check(args) -> int:
    """Validate each file, estimate its run and print one line for it."""
    from sim.runner.estimate import estimate_run

    bad = _positive(args.max_events, "--max-events")
    if bad:
        return report_issues([bad])
    status = 0
    for path in args.files:
        got, code = _load(args, path)
        if code:
            status = code
            continue
        loaded, graph = got
        from sim.fleet import instance_counts
        from sim.fleet.capacity import service_load

        est = estimate_run(loaded.config, loaded.variants, jobs=DEFAULT_JOBS)
        issue = _size_issue(loaded, est, args.max_events, False, "fleetsim run refuses it")
        if issue:
            status = report_issues([issue])
            continue
        kinds = instance_counts(graph)
        parts = ", ".join(f"{n} {k}{'s' if n != 1 else ''}" for k, n in sorted(kinds.items()))
        print(f"{path}: ok ({parts}); estimate {est.describe()}")
        for svc, load in service_load(loaded.config).items():
            print(f"  {svc}: {describe_load(load)}")
        if loaded.sweep_points:
            n, reps = len(loaded.sweep_points), loaded.config.replications
            print(f"  sweep: {n} point{'s' if n != 1 else ''} x {reps} replication{'s' if reps != 1 else ''} "
                  f"= {n * reps} runs (fleetsim sweep runs them; the lines above are the experiment as written)")
    return status


def describe_load(load: dict) -> str:
    """One line: a service's capacity, the load offered to it and the utilisation that makes."""
    peak = load["peak_offered_rps"]
    peak_text = f", peak {peak:,.0f}/s" if peak > load["offered_rps"] * 1.001 else ""
    return (f"capacity {load['capacity_rps']:,.0f} requests/s; offered {load['offered_rps']:,.0f}/s "
            f"on average{peak_text} (utilisation {load['offered_utilization']:.0%} before retries)")


def _output_issue(args) -> Issue | None:
    """A ``--out`` or ``--run-dir`` that cannot hold a run folder, found before any work."""
    if args.run_dir:
        p, flag = Path(args.run_dir), "--run-dir"
    else:
        p, flag = Path(args.out), "--out"
    for q in [p, *p.parents]:
        if q.exists() and not q.is_dir():
            what = "" if q == p else f" (in {p})"
            return Issue(CLI, None, flag, f"{q} is a file, expected a folder{what}")
        if q.exists():
            break
    return None


def _resume_hint(run_dir: Path) -> str:
    from sim.runner.run import INCOMPLETE, stored_replications

    if not run_dir.is_dir():
        return "nothing was written"
    n = stored_replications(run_dir)
    marked = ", marked INCOMPLETE" if (run_dir / INCOMPLETE).exists() else ""
    return (f"{n} replication{'s' if n != 1 else ''} stored in {run_dir}{marked}; "
            f"rerun with --run-dir {run_dir} to resume")


def cmd_run(args) -> int:
    """Estimate, then run an experiment (or its variants) into a run folder."""
    from concurrent.futures.process import BrokenProcessPool

    from sim.runner import run_experiment, run_variants
    from sim.runner.estimate import estimate_run, memory_blame
    from sim.runner.run import new_run_dir

    got, code = _load(args, args.experiment)
    if code:
        return code
    loaded, _ = got
    if args.jobs < 1:
        return report_issues([Issue(CLI, None, "--jobs", f"must be at least 1, got {args.jobs}")])
    if args.baseline is not None and args.baseline not in (loaded.variants or {}):
        names = ", ".join(loaded.variants or {}) or "none: the experiment has no variants"
        return report_issues([Issue(CLI, None, "--baseline", f"no variant {args.baseline!r} (variants: {names})")])
    bad = [i for i in (_positive(args.max_events, "--max-events"),
                       _positive(args.progress_every, "--progress-every"), _output_issue(args)) if i]
    if bad:
        return report_issues(bad)
    est = estimate_run(loaded.config, loaded.variants, jobs=args.jobs, report=not args.no_report)
    issue = _size_issue(loaded, est, args.max_events, args.yes, "refusing")
    if issue:
        return report_issues([issue])
    if not args.quiet:
        print(f"estimate: {est.describe()}", file=sys.stderr, flush=True)
        if loaded.config.sweep is not None:
            print(f"note: run ignores the sweep section ({len(loaded.sweep_points)} points); "
                  "fleetsim sweep runs it", file=sys.stderr)
    # The folder is named now so that every way the run can end can name it.
    run_dir = Path(args.run_dir) if args.run_dir else new_run_dir(Path(args.out), loaded.config)
    flag = "--run-dir" if args.run_dir else "--out"
    failure = None
    try:
        kwargs = dict(jobs=args.jobs, run_dir=run_dir, show_progress=not args.quiet, report=not args.no_report,
                      progress_every=args.progress_every)
        if loaded.variants:
            run_dir = run_variants(loaded.config, loaded.variants, Path(args.out), baseline=args.baseline, **kwargs)
        else:
            run_dir = run_experiment(loaded.config, Path(args.out), **kwargs)
    except FileExistsError as e:
        if e.errno is None:  # the runner's own: a folder holding another configuration
            return report_issues([Issue(CLI, None, "--run-dir", str(e))])
        return _write_failure(e, run_dir, flag)
    except KeyboardInterrupt:
        print(f"interrupted: {_resume_hint(run_dir)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        failure = "out of memory"  # reported below, once the frames holding the memory are gone
    except BrokenProcessPool:
        failure = "a worker process died (killed by the system, most likely out of memory)"
    except OSError as e:
        return _write_failure(e, run_dir, flag)
    if failure:
        path, phrase = memory_blame(est, loaded.locate)
        print(loaded.issue(path, f"{failure}: {phrase} needs ~{_size(est.memory_bytes)} by the estimate; "
                                 f"{_resume_hint(run_dir)}, or make the run smaller"), file=sys.stderr)
        return EXIT_FAILURE
    if not args.quiet and loaded.variants:
        for name in loaded.variants:
            print(f"--- variant {name}")
            _print_summary(json.loads((run_dir / "variants" / name / "summary.json").read_text()))
    elif not args.quiet:
        summary = json.loads((run_dir / "summary.json").read_text())
        _print_summary(summary)
        if not args.no_report:
            print(f"report: {run_dir / 'report.html'}")
    print(run_dir)
    return 0


def _size(n: float) -> str:
    from sim.runner.estimate import size_bytes

    return size_bytes(n)


def _write_failure(e: OSError, run_dir: Path, flag: str) -> int:
    """One line for a run folder that could not be written; 1 for a full disk, else 2."""
    where = e.filename or run_dir
    reason = f"cannot write {where}: {e.strerror or e}"
    if run_dir.is_dir():
        reason += f"; {_resume_hint(run_dir)}"
    print(Issue(CLI, None, flag, reason), file=sys.stderr)
    return EXIT_FAILURE if e.errno in _MACHINE_ERRNOS else EXIT_USAGE


def _print_summary(s: dict) -> None:
    req = s["requests"]
    failed = sum(v or 0 for v in req["failed"].values())
    lat = s["latency_ms"]

    def f(x, spec=".1f"):
        return "n/a" if x is None else format(x, spec)

    print(f"{s['experiment']}: {s['replications']} replication(s) of {s['simulated_s']:g} s "
          f"(warm-up {s.get('warmup_s', 0):g} s)")
    print(f"  requests  offered {f(req['offered'], '.0f')}  succeeded {f(req['succeeded'], '.0f')}  "
          f"failed {failed:.0f}  in flight {f(req['in_flight'], '.0f')}")
    print(f"  rates     throughput {f(s['throughput_rps'])}/s  goodput {f(s['goodput_rps'])}/s")
    print(f"  latency   p50 {f(lat['p50'], '.2f')} ms  p99 {f(lat['p99'], '.2f')} ms  p99.9 {f(lat['p999'], '.2f')} ms")
    pairs = s.get("bytes_by_az_pair", {})
    cross = sum(v for k, v in pairs.items() if "internet" not in k and k.split("->")[0] != k.split("->")[1])
    print(f"  cross-AZ  {cross / 1e9:.3f} GB in the measurement window")
    cost = s.get("cost")
    if cost:
        print(f"  {describe_cost(cost)}")
    conns, cpu = s.get("connections"), s.get("gateway_cpu")
    if conns and (conns.get("full") or conns.get("resumed")):
        hs = conns["full"] + conns["resumed"]
        print(f"  tls       {conns['resumed']:,} of {hs:,} handshakes resumed ({f(conns.get('resumption_rate'), '.1%')})")
    if cpu:
        tls = cpu.get("tls_cpu_s") or 0.0
        share = f", TLS {tls / cpu['cpu_s']:.0%} of it" if tls and cpu.get("cpu_s") else ""
        price = cpu.get("pricing") or {}
        print(f"  gw CPU    {cpu['cores_used']:.2f} cores busy{share}; {cpu['cores_needed']} cores needed to stay "
              f"under {price.get('target_utilization', 0):.0%} busy at this rate (the CPU used costs "
              f"${cpu['cost_usd_per_month']:,.0f}/month at ${price.get('vcpu_hour_usd', 0):g} per vCPU-hour)")
    gslb = s.get("gslb")

    def g(x):
        return "n/a" if x is None or x != x else format(x, ".1f")  # n/a: none, or NaN (not within the run)
    for region, row in ((gslb or {}).get("failover_by_region") or {}).items():
        print(f"  dns       {region} failed at {g(row.get('failed_at_s'))} s: the GSLB noticed "
              f"{g(row.get('detection_s'))} s later, 95% of its traffic had moved {g(row.get('time_to_move_s'))} s "
              f"after the failure ({gslb['policy']} policy, TTL {gslb['ttl_s']:g} s)")
    retries = s.get("retries") or {}
    if retries.get("amplification") is not None:
        over = retries.get("overflow", {})
        print(f"  retries   amplification {retries['amplification']:.3f} backend tries per call, "
              f"retry overflow {over.get('retries', 0):.0f}, max_requests overflow {over.get('max_requests', 0):.0f}")
    rec = s.get("recovery")
    if rec:
        print(f"  recovery  goodput {f(rec.get('goodput_before_rps'))}/s before, {f(rec.get('goodput_during_rps'))}/s "
              f"during, {f(rec.get('goodput_after_rps'))}/s after; {describe_verdict(rec)}")
        if rec.get("baseline_degraded"):
            ratio = rec.get("baseline_success_ratio")
            print(f"  warning   the fleet was already failing before the fault ({ratio:.0%} of the calls offered "
                  "succeeded): read the verdict against that")
    loads = {svc: b for svc, b in (s.get("backend") or {}).items() if "capacity_rps" in b}
    for svc, b in loads.items():
        print(f"  {svc:<9} {describe_load({'peak_offered_rps': b.get('peak_offered_rps', b['offered_rps']), **b})}; "
              f"measured utilisation {f(b.get('utilization'), '.0%')}")


def describe_cost(cost: dict) -> str:
    """The ``cost`` section in one line: dollars a month at the production rate, its main parts, the scaling."""
    rel = cost.get("monthly_by_relation") or {}
    bal = sum(b.get("monthly_dollars", 0.0) for b in (cost.get("balancers") or {}).values())
    return (f"cost      ${cost['monthly_dollars']:,.0f}/month at {cost['production_rps']:,.0f} calls/s "
            f"({cost['provider']}; ${cost['per_million_calls']:.3f} per million calls): cross-AZ "
            f"${rel.get('cross_az', 0.0):,.0f}, cross-region ${rel.get('cross_region', 0.0):,.0f}, internet egress "
            f"${rel.get('internet_out', 0.0):,.0f}, balancers ${bal:,.0f}; scaled linearly from "
            f"{cost['simulated_rps']:,.0f} calls/s simulated")


def describe_verdict(rec: dict) -> str:
    """The recovery verdict in words: recovered and when, metastable with its evidence, or inconclusive."""
    by_rep = rec.get("by_replication")
    verdict = rec.get("verdict")
    if verdict is None:  # a summary written before verdicts existed
        verdict = "recovered" if rec.get("recovered") is True else "metastable" if rec.get("metastable") is True \
            else "mixed"
    if verdict == "mixed" and by_rep:
        parts = [r["verdict"].replace("_", " ") + (f" in {r['recovery_s']:.0f} s" if r.get("recovery_s") is not None
                                                   else "") for r in by_rep]
        return "replications disagree: " + "; ".join(f"#{i}: {p}" for i, p in enumerate(parts))
    if verdict == "recovered":
        when = rec.get("recovery_s")
        return "recovered" + (f" {when:.1f} s after the fault ended" if when is not None else "")
    trend = rec.get("goodput_trend_rps_per_s")
    tail = rec.get("goodput_tail_rps")
    target = rec.get("target_rps")
    evidence = ""
    if tail is not None and target is not None:
        evidence = f" (goodput {tail:.0f}/s over the last {rec.get('tail_s', 0):.0f} s against {target:.0f}/s"
        evidence += f", trend {trend:+.1f}/s per s" if trend is not None else ""
        backlog = rec.get("backlog_trend_per_s")
        evidence += f", backlog {backlog:+.1f} calls/s" if backlog is not None else ""
        evidence += ")"
    if verdict == "metastable":
        return "METASTABLE: still degraded long after the trigger ended" + evidence
    if verdict == "no_baseline":
        return "not judged: no call succeeded before the fault, so there is no level to recover to"
    return "not recovered within the run: inconclusive, run longer" + evidence


def cmd_schema(args) -> int:
    """Print the JSON Schema of experiment files."""
    print(json.dumps(json_schema(), indent=2))
    return 0


def cmd_report(args) -> int:
    """Rewrite the report of a run folder, or the comparison of a variants folder."""
    from sim.report import write_comparison, write_report
    from sim.runner.run import INCOMPLETE

    run_dir = Path(args.run_dir)
    if not run_dir.exists():
        return report_issues([Issue(str(run_dir), None, "", "no such folder")])
    if not run_dir.is_dir():
        return report_issues([Issue(str(run_dir), None, "", "is a file, expected a run folder")])
    if (run_dir / INCOMPLETE).exists():
        return report_issues([Issue(str(run_dir), None, "", "an incomplete run (it holds INCOMPLETE): finish it "
                                    f"with fleetsim run EXPERIMENT --run-dir {run_dir}")])
    if (run_dir / "comparison.json").is_file():
        write = write_comparison  # a variants run: the comparison of its variants
    elif (run_dir / "summary.json").is_file():
        write = write_report
    else:
        return report_issues([Issue(str(run_dir), None, "",
                                    "not a run folder (no summary.json, nor comparison.json for variants)")])
    try:
        print(write(run_dir, self_contained=args.self_contained))
    except OSError as e:
        verb = "read" if isinstance(e, FileNotFoundError | IsADirectoryError) else "write"
        report_issues([Issue(str(run_dir), None, "", f"cannot {verb} {e.filename or run_dir}: {e.strerror or e}")])
        return EXIT_FAILURE if e.errno in _MACHINE_ERRNOS else EXIT_USAGE
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return report_issues([Issue(str(run_dir), None, "", f"a result file is not valid JSON or UTF-8 ({e})")])
    return 0


def cmd_compare(args) -> int:
    """Compare two run folders: every KPI with its CI and the difference to the first (comparison.json, report.html)."""
    from sim.report.comparison import RunFolderError, compare_runs

    try:
        out = compare_runs(Path(args.run_a), Path(args.run_b), Path(args.out) if args.out else None)
    except RunFolderError as e:
        return report_issues([Issue(str(e.path), None, "", e.reason)])
    except OSError as e:
        report_issues([Issue(CLI, None, "--out", f"cannot write {e.filename or args.out}: {e.strerror or e}")])
        return EXIT_FAILURE if e.errno in _MACHINE_ERRNOS else EXIT_USAGE
    print(out / "report.html")
    return 0


def cmd_matrix(args) -> int:
    """Run a decision matrix (sim.runner.matrix): every preset through the same scenarios, one table."""
    from sim.runner.matrix import load_matrix, run_matrix

    if args.jobs < 1:
        return report_issues([Issue(CLI, None, "--jobs", f"must be at least 1, got {args.jobs}")])
    matrix = load_matrix(args.matrix, args.set)
    try:
        run_dir = run_matrix(matrix, Path(args.out), jobs=args.jobs,
                             run_dir=Path(args.run_dir) if args.run_dir else None,
                             show_progress=not args.quiet, report=not args.no_report)
    except KeyboardInterrupt:
        print("interrupted: rerun with --run-dir to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not args.quiet:
        print((run_dir / "matrix.md").read_text(encoding="utf-8"))
    print(run_dir)
    return 0


def cmd_import_envoy(args) -> int:
    """Print (or write) the gateway pool an Envoy bootstrap describes; list what it ignores."""
    from sim.config.envoy_import import import_envoy, write_atomic

    try:
        result = import_envoy(args.envoy, pool=args.pool, az=args.az, instances=args.instances,
                              cluster=args.cluster)
    except ConfigError as e:
        return report_issues(e.issues)
    text = result.to_yaml()
    if args.out:
        out = Path(args.out)
        try:
            write_atomic(out, text)
        except OSError as e:
            report_issues([Issue(CLI, None, "--out", f"cannot write {out}: {e.strerror or e}")])
            return EXIT_FAILURE if e.errno in _MACHINE_ERRNOS else EXIT_USAGE
    else:
        sys.stdout.write(text)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if result.ignored:
        print(f"import-envoy: {len(result.ignored)} Envoy field(s) not modelled "
              "(the simulation does not see them):", file=sys.stderr)
        for item in result.ignored:
            print(item, file=sys.stderr)
    if result.az_placeholder:
        print(f"import-envoy: no --az: the pool's az is the placeholder {result.pool.az!r}, "
              "which fleetsim check rejects until you set it", file=sys.stderr)
    if args.out:
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def cmd_sweep(args) -> int:
    """Run an experiment's sweep (every point times every replication, cached) into one folder."""
    from concurrent.futures.process import BrokenProcessPool

    from sim.runner.sweep import SchedulerError, default_out, run_sweep

    got, code = _load(args, args.experiment)
    if code:
        return code
    loaded, _ = got
    if loaded.config.sweep is None:
        return report_issues([Issue(args.experiment, None, "sweep", "the experiment has no sweep section "
                                    "(sweep.grid or sweep.zip: see docs/sweeps.md); fleetsim run runs it once")])
    bad = [i for i in (_positive(args.progress_every, "--progress-every"),) if i]
    if args.jobs < 1:
        bad.append(Issue(CLI, None, "--jobs", f"must be at least 1, got {args.jobs}"))
    if args.scheduler and args.executor != "dask":
        bad.append(Issue(CLI, None, "--scheduler", "needs --executor dask"))
    if args.executor == "dask":
        try:
            import dask.distributed  # noqa: F401
        except ImportError:
            bad.append(Issue(CLI, None, "--executor", "dask needs dask.distributed: pip install 'dask[distributed]'"))
    out = Path(args.out) if args.out else default_out(loaded.config)
    if out.exists() and not out.is_dir():
        bad.append(Issue(CLI, None, "--out", f"{out} is a file, expected a folder"))
    if bad:
        return report_issues(bad)
    points = loaded.sweep_points
    if not args.quiet:
        from sim.runner.estimate import Estimate, estimate_size

        est = Estimate([estimate_size(p.config, jobs=1, report=False) for p in points], side_by_side=True,
                       jobs=args.jobs)
        print(f"sweep: {len(points)} points x {loaded.config.replications} replication(s) into {out}; "
              f"estimate before the cache {est.describe()}", file=sys.stderr, flush=True)
    try:
        outcome = run_sweep(loaded.config, points, out, executor=args.executor, jobs=args.jobs,
                            scheduler=args.scheduler, show_progress=not args.quiet,
                            progress_every=args.progress_every, report=not args.no_report)
    except SchedulerError as e:
        return report_issues([Issue(CLI, None, "--scheduler", str(e))])
    except KeyboardInterrupt:
        stored = len(list((out / "runs").glob("*/summary.json")))
        print(f"interrupted: {stored} run(s) stored in {out / 'runs'}; rerun the same command to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print(f"fleetsim sweep: out of memory; the runs stored in {out / 'runs'} are kept", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenProcessPool:
        print("fleetsim sweep: a worker process died (killed by the system, most likely out of memory); "
              f"the runs stored in {out / 'runs'} are kept", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as e:
        return _write_failure(e, out, "--out")
    if not args.quiet:
        print(f"{outcome.ran} run(s) simulated, {outcome.cached} taken from the cache")
        _print_sweep(out)
        if outcome.report is not None:
            print(f"report: {outcome.report}")
        elif not args.no_report:
            print("note: no sweep report (sim.report.sweep is not installed); sweep.json holds the results",
                  file=sys.stderr)
    print(out)
    return 0


def _print_sweep(out: Path) -> None:
    """One line per point of a written sweep: means over its replications of p50, p99 and goodput."""
    from sim.runner.sweep import iter_point_summaries

    by_label: dict[str, list[dict]] = {}
    for entry, summary in iter_point_summaries(out):
        by_label.setdefault(entry["label"], []).append(summary)

    def mean(summaries: list[dict], get) -> str:
        xs = [x for x in map(get, summaries) if isinstance(x, int | float)]
        return "n/a" if not xs else f"{sum(xs) / len(xs):,.2f}"

    for label, summaries in by_label.items():
        print(f"  {label}: p50 {mean(summaries, lambda s: s['latency_ms']['p50'])} ms  "
              f"p99 {mean(summaries, lambda s: s['latency_ms']['p99'])} ms  "
              f"goodput {mean(summaries, lambda s: s['goodput_rps'])}/s")


def cmd_export(args) -> int:
    """Write every run's and sweep point's figures, one row per replication, as CSV and/or Parquet."""
    from sim.export import ExportError, collect_rows, table, write_csv, write_parquet

    if not args.csv and not args.parquet:
        return report_issues([Issue(CLI, None, "--csv", "give --csv FILE, --parquet FILE or both")])
    try:
        rows, notes = collect_rows([Path(p) for p in args.results])
    except ExportError as e:
        return report_issues([Issue(str(e.path), None, "", e.reason)])
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if not rows:
        return report_issues([Issue(CLI, None, "RESULTS", "no complete run, comparison or sweep to export")])
    columns, values = table(rows)
    for flag, target, write in (("--csv", args.csv, write_csv), ("--parquet", args.parquet, write_parquet)):
        if not target:
            continue
        try:
            write(Path(target), columns, values)
        except OSError as e:
            report_issues([Issue(CLI, None, flag, f"cannot write {target}: {e.strerror or e}")])
            return EXIT_FAILURE if e.errno in _MACHINE_ERRNOS else EXIT_USAGE
        print(f"wrote {target}: {len(values)} rows, {len(columns)} columns", file=sys.stderr)
    return 0


def cmd_ls(args) -> int:
    """List the runs, comparisons and sweeps under a results folder, oldest first, one line each."""
    from sim.export import ExportError, list_results, ls_line

    try:
        found = list_results(Path(args.results))
    except ExportError as e:
        return report_issues([Issue(str(e.path), None, "", e.reason)])
    for row in found:
        print(ls_line(*row))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``fleetsim`` argument parser, with the reference fleet's commands from the entry point."""
    p = argparse.ArgumentParser(prog="fleetsim", description="Simulate an API-gateway fleet.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run an experiment and write its results and report")
    r.add_argument("experiment")
    r.add_argument("--set", action="append", metavar="PATH=VALUE", default=[],
                   help="override a value, e.g. duration_s=30 or topology.gateways.gw-a.instances=4")
    r.add_argument("--seed", type=int)
    r.add_argument("--replications", type=int)
    r.add_argument("--jobs", type=int, default=DEFAULT_JOBS, help="replications run in parallel")
    r.add_argument("--out", default="results", help="results folder (default: results/)")
    r.add_argument("--run-dir", help="write into (or resume) this exact run folder")
    r.add_argument("--no-report", action="store_true")
    r.add_argument("--quiet", action="store_true", help="print only the run folder")
    r.add_argument("--calibration", metavar="PROFILE.yaml",
                   help="use this calibration profile instead of the topology's")
    r.add_argument("--max-events", type=float, default=DEFAULT_MAX_EVENTS, metavar="N",
                   help=f"refuse a run estimated above N simulation events without --yes "
                        f"(default {DEFAULT_MAX_EVENTS:.0e}, ~30 min)")
    r.add_argument("--yes", action="store_true",
                   help="run even when the estimate exceeds --max-events or the memory available")
    r.add_argument("--progress-every", type=float, metavar="SECONDS",
                   help="seconds between progress lines when stderr is not a terminal (default 5)")
    r.add_argument("--baseline", metavar="VARIANT",
                   help="the variant the comparison sets the others against (default: the first)")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("check", help="validate experiment files and estimate their runs, without running them")
    c.add_argument("files", nargs="+")
    c.add_argument("--set", action="append", metavar="PATH=VALUE", default=[])
    c.add_argument("--calibration", metavar="PROFILE.yaml")
    c.add_argument("--max-events", type=float, default=DEFAULT_MAX_EVENTS, metavar="N",
                   help="report a run that fleetsim run would refuse without --yes (default as run)")
    c.set_defaults(func=cmd_check)

    sw = sub.add_parser("sweep", help="run an experiment's sweep: every point x replication, cached")
    sw.add_argument("experiment")
    sw.add_argument("--executor", choices=("local", "dask"), default="local",
                    help="local: a process pool (default); dask: a Dask distributed cluster")
    sw.add_argument("--scheduler", metavar="ADDRESS",
                    help="a Dask scheduler (tcp://host:8786); without it --executor dask starts a LocalCluster")
    sw.add_argument("--jobs", type=int, default=DEFAULT_JOBS,
                    help="processes (local) or LocalCluster workers (dask) running at once")
    sw.add_argument("--out", metavar="DIR", help="the sweep's folder (default: results/<experiment>-sweep)")
    sw.add_argument("--set", action="append", metavar="PATH=VALUE", default=[])
    sw.add_argument("--seed", type=int)
    sw.add_argument("--replications", type=int)
    sw.add_argument("--calibration", metavar="PROFILE.yaml")
    sw.add_argument("--no-report", action="store_true")
    sw.add_argument("--quiet", action="store_true", help="print only the sweep's folder")
    sw.add_argument("--progress-every", type=float, metavar="SECONDS",
                    help="seconds between progress lines when stderr is not a terminal (default 5)")
    sw.set_defaults(func=cmd_sweep)

    ex = sub.add_parser("export", help="every run's figures, one row per replication, as CSV and/or Parquet")
    ex.add_argument("results", nargs="+", metavar="RESULTS",
                    help="run folders, comparisons, sweeps, or folders holding them (results/)")
    ex.add_argument("--csv", metavar="FILE")
    ex.add_argument("--parquet", metavar="FILE")
    ex.set_defaults(func=cmd_export)

    ls = sub.add_parser("ls", help="list runs, comparisons and sweeps with their key figures, oldest first")
    ls.add_argument("results", nargs="?", default="results", metavar="RESULTS")
    ls.set_defaults(func=cmd_ls)

    s = sub.add_parser("schema", help="print the JSON Schema of experiment files")
    s.set_defaults(func=cmd_schema)

    rep = sub.add_parser("report", help="(re)write a run folder's report.html")
    rep.add_argument("run_dir")
    rep.add_argument("--self-contained", action="store_true",
                     help="inline plotly.js: one file to share (variant pages otherwise share one copy)")
    rep.set_defaults(func=cmd_report)

    cmp = sub.add_parser("compare", help="compare two run folders: every KPI, its CI and the difference to RUN_A")
    cmp.add_argument("run_a", metavar="RUN_A", help="the baseline run folder")
    cmp.add_argument("run_b", metavar="RUN_B")
    cmp.add_argument("--out", metavar="DIR", help="write comparison.json and report.html here "
                     "(default: results/compare/<UTC time>/)")
    cmp.set_defaults(func=cmd_compare)
    m = sub.add_parser("matrix", help="run preset topologies through the same scenarios: latency, resilience, "
                                      "cost per preset and scenario (experiments/matrices/decision_matrix.yaml)")
    m.add_argument("matrix", metavar="MATRIX.yaml")
    m.add_argument("--set", action="append", metavar="PATH=VALUE", default=[],
                   help="change every preset's experiment, e.g. duration_s=30")
    m.add_argument("--jobs", type=int, default=DEFAULT_JOBS)
    m.add_argument("--out", default="results", help="results folder (default: results/)")
    m.add_argument("--run-dir", help="write into (or resume) this exact folder")
    m.add_argument("--no-report", action="store_true")
    m.add_argument("--quiet", action="store_true", help="print only the matrix folder")
    m.set_defaults(func=cmd_matrix)

    ie = sub.add_parser("import-envoy", help="print the gateway pool an Envoy v3 bootstrap describes")
    ie.add_argument("envoy", metavar="ENVOY.yaml")
    ie.add_argument("--pool", default="gw", help="gateway pool name (default: gw)")
    ie.add_argument("--az", help="the pool's AZ (default: a TODO placeholder that fleetsim check rejects)")
    ie.add_argument("--instances", type=int, help="gateway instances (default: 1, marked TODO)")
    ie.add_argument("--cluster", metavar="NAME", help="import this cluster (default: the default route's)")
    ie.add_argument("--out", metavar="FILE", help="write the YAML here (atomically) instead of stdout")
    ie.set_defaults(func=cmd_import_envoy)

    # Commands from other packages (the reference fleet's calibrate and
    # validate): entry points in the group "fleetsim.commands", each a
    # function that adds its subcommands. The simulator never imports them.
    for ep in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        ep.load()(sub)
    return p


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (a test's capture): nothing to flush at exit


def main(argv: list[str] | None = None) -> int:
    """Run the ``fleetsim`` command line; returns the exit status.

    Args:
        argv: The arguments (without the program name); ``sys.argv[1:]`` when None.
    """
    args = build_parser().parse_args(argv)
    if argv is None:
        # `kill` (SIGTERM) stops a run as Ctrl-C does: workers stopped, stored work kept.
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a full disk or a closed pipe shows here, not after main returns
        return code
    except ConfigError as e:
        return report_issues(e.issues)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`fleetsim schema | head`): stop quietly, as Unix tools do.
        _drop_stdout()
        return EXIT_FAILURE
    except MemoryError:
        print(f"fleetsim {args.command}: out of memory", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as e:
        # What the commands do not handle themselves: the machine's (stdout on a full disk).
        _drop_stdout()
        where = f"{e.filename}: " if e.filename else ""
        print(f"fleetsim {args.command}: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
