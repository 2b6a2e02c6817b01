"""The reference fleet's commands, added to ``fleetsim`` through the entry point
``fleetsim.commands`` (the simulator does not import this package):

    fleetsim calibrate [--out PROFILE.yaml] [--quick]
    fleetsim validate [SCENARIO ...] [--quick] [--profile PROFILE.yaml] [--repetitions N]
                      [--replications R] [--out DIR] [--resume RUN_DIR]

A user's mistake (an unknown scenario, a missing profile) is one line and exit
status 2; a failure of the real fleet (a missing binary, a server that died)
is one line naming the component and exit status 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sim.cli import report_issues
from sim.config import Issue


def _reference_error(exc: Exception) -> int:
    """One line for a reference-fleet failure (a missing binary, a dead server)."""
    print(f"fleetsim: {exc}", file=sys.stderr)
    return 1


def cmd_calibrate(args) -> int:
    from .calibrate import calibrate
    from .harness import HarnessError

    out = Path(args.out)
    if out.is_dir():
        return report_issues([Issue("<command line>", None, "--out", f"{out} is a folder, expected a profile file")])
    bad = _not_a_folder(out.parent)
    if bad:
        return report_issues([Issue("<command line>", None, "--out", bad)])
    try:
        calibrate(out, quick=args.quick, log=lambda m: print(m, file=sys.stderr))
    except (HarnessError, RuntimeError, OSError) as e:
        return _reference_error(e)
    except KeyboardInterrupt:
        print("interrupted: every process of the reference fleet was stopped", file=sys.stderr)
        return 130
    print(out)
    return 0


def _not_a_folder(path: Path) -> str | None:
    """Why ``path`` cannot be (or be made) a folder, or None: checked before any process starts."""
    for p in [path, *path.parents]:
        if p.exists():
            if not p.is_dir():
                return f"{p} is a file, expected a folder" + ("" if p == path else f" (in {path})")
            return None
    return None


def cmd_validate(args) -> int:
    from .harness import HarnessError
    from .validate import ScenarioError, failures, format_table, load_rows, validate

    if args.profile and not Path(args.profile).is_file():
        why = "is a folder, expected a profile file" if Path(args.profile).is_dir() else "no such file"
        return report_issues([Issue("<command line>", None, "--profile", f"{args.profile}: {why}")])
    bad = _not_a_folder(Path(args.out))
    if bad:
        return report_issues([Issue("<command line>", None, "--out", bad)])
    try:
        run_dir = validate(args.scenarios, quick=args.quick, out=args.out, profile=args.profile,
                           repetitions=args.repetitions, replications=args.replications, resume=args.resume,
                           log=lambda m: print(m, file=sys.stderr))
    except ScenarioError as e:
        return report_issues([Issue("<command line>", None, "scenario", str(e))])
    except (HarnessError, RuntimeError, OSError, ValueError) as e:
        return _reference_error(e)
    except KeyboardInterrupt:
        print("interrupted: every process of the reference fleet was stopped; rows measured so far "
              "are in validation.json", file=sys.stderr)
        return 130
    rows = load_rows(run_dir)
    print(format_table(rows))
    bad = failures(rows, args.quick)
    print(f"report: {run_dir / 'validation.html'}")
    print(run_dir)
    if bad:
        print(f"validate: {len(bad)} metric(s) missed their goal"
              + (" (quick-run gate)" if args.quick else ""), file=sys.stderr)
        return 1
    return 0


def register(sub) -> None:
    """Add ``calibrate`` and ``validate`` to ``fleetsim``'s subcommands."""
    cal = sub.add_parser("calibrate", help="measure the reference real fleet and write a calibration profile")
    cal.add_argument("--out", default="results/validation/calibration.yaml",
                     help="profile file (default: results/validation/calibration.yaml)")
    cal.add_argument("--quick", action="store_true", help="short runs (seconds)")
    cal.set_defaults(func=cmd_calibrate)

    v = sub.add_parser("validate", help="run the validation scenarios on the real fleet and in the simulator")
    from .scenarios import SCENARIOS

    v.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=f"{' '.join(SCENARIOS)} (default: all)")
    v.add_argument("--quick", action="store_true",
                   help="short runs; timing metrics gate only when off by more than twice their goal")
    v.add_argument("--profile", help="calibration profile to use (default: calibrate first)")
    v.add_argument("--repetitions", type=int, default=3, help="real runs per scenario point (at least 3)")
    v.add_argument("--replications", type=int, help="simulated replications (default: the experiment's; quick: 5)")
    v.add_argument("--out", default="results/validation", help="parent folder of the run folder")
    v.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted validation in RUN_DIR")
    v.set_defaults(func=cmd_validate)
