"""The ``fleetsim`` command.

    fleetsim run EXPERIMENT.yaml [--set path=value ...] [--seed N] [--replications R]
                                 [--jobs J] [--out DIR] [--run-dir DIR] [--no-report]
    fleetsim check FILE.yaml [...]
    fleetsim schema
    fleetsim report RUN_DIR
    fleetsim import-envoy ENVOY.yaml [--pool NAME] [--az AZ] [--instances N] [--cluster NAME] [--out FILE]
    fleetsim calibrate ... / fleetsim validate ...   (from reference_gateway, see reference_gateway/cli.py)

A user's mistake ends in one line per problem on stderr,
``FILE:LINE: dotted.path: reason``, and exit status 2; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from importlib.metadata import entry_points
from pathlib import Path

from sim.config import ConfigError, Issue, json_schema, load_experiment

EXIT_USAGE = 2
COMMANDS_GROUP = "fleetsim.commands"


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


def cmd_check(args) -> int:
    status = 0
    for path in args.files:
        got, code = _load(args, path)
        if code:
            status = code
            continue
        loaded, graph = got
        from sim.fleet import instance_counts

        kinds = instance_counts(graph)
        parts = ", ".join(f"{n} {k}{'s' if n != 1 else ''}" for k, n in sorted(kinds.items()))
        print(f"{path}: ok ({parts})")
    return status


def cmd_run(args) -> int:
    from sim.runner import run_experiment, run_variants

    got, code = _load(args, args.experiment)
    if code:
        return code
    loaded, _ = got
    if args.jobs < 1:
        return report_issues([Issue("<command line>", None, "--jobs", f"must be at least 1, got {args.jobs}")])
    try:
        kwargs = dict(jobs=args.jobs, run_dir=Path(args.run_dir) if args.run_dir else None,
                      show_progress=not args.quiet, report=not args.no_report)
        if loaded.variants:
            run_dir = run_variants(loaded.config, loaded.variants, Path(args.out), **kwargs)
        else:
            run_dir = run_experiment(loaded.config, Path(args.out), **kwargs)
    except FileExistsError as e:
        return report_issues([Issue("<command line>", None, "--run-dir", str(e))])
    except KeyboardInterrupt:
        print("interrupted: completed replications are kept; rerun with --run-dir to resume", file=sys.stderr)
        return 130
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
    retries = s.get("retries") or {}
    if retries.get("amplification") is not None:
        over = retries.get("overflow", {})
        print(f"  retries   amplification {retries['amplification']:.3f} backend tries per call, "
              f"retry overflow {over.get('retries', 0):.0f}, max_requests overflow {over.get('max_requests', 0):.0f}")
    rec = s.get("recovery")
    if rec:
        def yes(x):
            return "yes" if x is True else "no" if x is False else f"{x:.0%} of replications"

        after = "n/a" if rec.get("recovery_s") is None else f"{rec['recovery_s']:.1f} s after the fault"
        print(f"  recovery  goodput {f(rec.get('goodput_before_rps'))}/s before, {f(rec.get('goodput_during_rps'))}/s "
              f"during, {f(rec.get('goodput_after_rps'))}/s after; recovered {yes(rec['recovered'])} ({after}); "
              f"metastable {yes(rec['metastable'])}")


def cmd_schema(args) -> int:
    print(json.dumps(json_schema(), indent=2))
    return 0


def cmd_report(args) -> int:
    from sim.report import write_report

    run_dir = Path(args.run_dir)
    if not (run_dir / "summary.json").exists():
        return report_issues([Issue(str(run_dir), None, "", "not a run folder (no summary.json)")])
    print(write_report(run_dir))
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
            return report_issues([Issue("<command line>", None, "--out", f"cannot write {out}: {e.strerror or e}")])
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fleetsim", description="Simulate an API-gateway fleet.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run an experiment and write its results and report")
    r.add_argument("experiment")
    r.add_argument("--set", action="append", metavar="PATH=VALUE", default=[],
                   help="override a value, e.g. duration_s=30 or topology.gateways.gw-a.instances=4")
    r.add_argument("--seed", type=int)
    r.add_argument("--replications", type=int)
    r.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="replications run in parallel")
    r.add_argument("--out", default="results", help="results folder (default: results/)")
    r.add_argument("--run-dir", help="write into (or resume) this exact run folder")
    r.add_argument("--no-report", action="store_true")
    r.add_argument("--quiet", action="store_true", help="print only the run folder")
    r.add_argument("--calibration", metavar="PROFILE.yaml",
                   help="use this calibration profile instead of the topology's")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("check", help="validate experiment files without running them")
    c.add_argument("files", nargs="+")
    c.add_argument("--set", action="append", metavar="PATH=VALUE", default=[])
    c.add_argument("--calibration", metavar="PROFILE.yaml")
    c.set_defaults(func=cmd_check)

    s = sub.add_parser("schema", help="print the JSON Schema of experiment files")
    s.set_defaults(func=cmd_schema)

    rep = sub.add_parser("report", help="(re)write a run folder's report.html")
    rep.add_argument("run_dir")
    rep.set_defaults(func=cmd_report)

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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if argv is None:
        # `kill` (SIGTERM) stops a run as Ctrl-C does: workers stopped, stored work kept.
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        return args.func(args)
    except ConfigError as e:
        return report_issues(e.issues)


if __name__ == "__main__":
    sys.exit(main())
