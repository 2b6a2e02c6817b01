"""Control-plane benchmark: what the control plane costs a run, on and off.

Run from the project root::

    .venv/bin/python bench/bench_controlplane.py           # 3 repeats
    .venv/bin/python bench/bench_controlplane.py --quick   # 2 repeats, shorter runs

Three simulations, interleaved ``--repeats`` times (best wall time counts,
since noise on a shared machine only slows a run down):

- ``off``: the quickstart experiment as it is;
- ``on``: the same with a data-plane control plane (4 gateways subscribed,
  endpoint churn every 5 s, a replica restart): config applies take workers;
- ``herd``: ``experiments/thundering_herd.yaml``'s ``delta_jitter_5000``
  variant (5,000 lightweight gateways through a restart of both replicas and
  300 endpoint changes), one replication.

Output is ``name: value`` lines: ``ratio_on_over_off`` (target: within noise
of 1) and ``herd_wall_s`` (target: seconds, not minutes).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sim.config import load_experiment
from sim.config.models import Experiment
from sim.fleet import Fleet

ROOT = Path(__file__).resolve().parent.parent


def _with_control_plane(exp: Experiment) -> Experiment:
    data = exp.model_dump(mode="json", by_alias=True)
    churn = [{"event": "endpoint_churn", "at_s": float(t), "services": 20} for t in range(5, int(exp.duration_s), 5)]
    data["control_plane"] = {"mode": "data_plane", "replicas": 2,
                             "events": [*churn, {"event": "replica_restart", "at_s": 30.0, "down_s": 5.0}]}
    return Experiment.model_validate(data)


def _timed(exp: Experiment) -> tuple[float, int]:
    t0 = time.perf_counter()
    fleet = Fleet(exp)
    res = fleet.run()
    return time.perf_counter() - t0, res["events"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args()
    repeats = args.repeats or (2 if args.quick else 3)
    off = load_experiment(ROOT / "experiments" / "quickstart.yaml",
                          ["duration_s=40", "warmup_s=5"] if args.quick else []).config
    on = _with_control_plane(off)
    herd = load_experiment(ROOT / "experiments" / "thundering_herd.yaml").variants["delta_jitter_5000"]
    best = {"off": float("inf"), "on": float("inf"), "herd": float("inf")}
    events = {}
    for _ in range(repeats):
        for name, exp in (("off", off), ("on", on), ("herd", herd)):
            wall, ev = _timed(exp)
            best[name] = min(best[name], wall)
            events[name] = ev
    print(f"off_wall_s: {best['off']:.3f} ({events['off']} events)")
    print(f"on_wall_s: {best['on']:.3f} ({events['on']} events)")
    print(f"herd_wall_s: {best['herd']:.3f} ({events['herd']} events, 5,000 gateways)")
    print(f"ratio_on_over_off: {best['on'] / best['off']:.3f}")


if __name__ == "__main__":
    main()
