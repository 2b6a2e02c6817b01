"""Fleet-size benchmark: does a run's cost grow with the fleet, or with its square?

Run from the project root::

    .venv/bin/python bench/bench_fleet_size.py           # ~120k requests per fleet
    .venv/bin/python bench/bench_fleet_size.py --quick   # ~30k requests per fleet

The same experiment (the quickstart workload, the same number of requests)
runs end to end (build, simulate, collect, write the run folder and the HTML
report, as ``fleetsim run`` does) on two fleets, each in a child process of
its own so peak memory is that run's alone:

- ``small``: the quickstart fleet, 4 gateways and 6 backends;
- ``large``: the same topology scaled to 400 gateways (two pools of 200) and
  600 backends (300 per AZ), each gateway's cluster holding all 600 hosts,
  with the offered rate unchanged, so every gateway-backend pair exists but
  carries little traffic: the case where per-pair work shows.

The two runs alternate (small, large, small, large, ...) ``--repeats`` times;
the best wall time of each counts, since noise on a shared machine only ever
slows a run down. Output is ``name: value`` lines; the targets are
``wall_ratio_large_over_small`` at most 1.5 and ``large_peak_rss_mb`` under
500.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Overrides that turn the quickstart fleet into 400 gateways x 600 backends.
LARGE = {
    "gateways.gw-az1.instances": 200,
    "gateways.gw-az2.instances": 200,
    "services.api.instances_per_az": {"use1-az1": 300, "use1-az2": 300},
}


def child(size: str, duration_s: float, out: str) -> None:
    """Run one fleet end to end in this process and print its figures as JSON."""
    from sim.config import load_experiment
    from sim.runner import run_experiment

    sets = [f"topology.{k}={json.dumps(v)}" for k, v in LARGE.items()] if size == "large" else []
    sets += [f"duration_s={duration_s}", "warmup_s=5", "replications=1"]
    t0 = time.perf_counter()
    loaded = load_experiment(ROOT / "experiments" / "quickstart.yaml", sets)
    run_dir = run_experiment(loaded.config, Path(out), show_progress=False)
    wall = time.perf_counter() - t0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    sizes = {p.name: p.stat().st_size for p in run_dir.iterdir() if p.is_file()}
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall_s": wall, "requests": manifest["requests_simulated"], "rss_mb": rss_mb,
                      "bytes": sizes}))


def measure(size: str, duration_s: float) -> dict:
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run([sys.executable, __file__, "--child", size, "--duration", str(duration_s),
                               "--out", out], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{size} run failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--child", choices=("small", "large"))
    ap.add_argument("--duration", type=float)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.duration, args.out)
        return 0
    duration = 20.0 if args.quick else 60.0
    runs: dict[str, list[dict]] = {"small": [], "large": []}
    for _ in range(args.repeats):
        for size in ("small", "large"):
            runs[size].append(measure(size, duration))
    best = {size: min(r, key=lambda x: x["wall_s"]) for size, r in runs.items()}
    for size in ("small", "large"):
        b = best[size]
        walls = ", ".join(f"{r['wall_s']:.2f}" for r in runs[size])
        print(f"{size}_wall_s: {b['wall_s']:.2f} (repeats: {walls}; {b['requests']} requests)")
        print(f"{size}_peak_rss_mb: {max(r['rss_mb'] for r in runs[size]):.0f}")
        print(f"{size}_result_bytes: {sum(b['bytes'].values())} "
              f"({', '.join(f'{k} {v}' for k, v in sorted(b['bytes'].items()))})")
    if best["small"]["requests"] != best["large"]["requests"]:
        print("note: the two fleets simulated different request counts (same seed, different fleets)")
    ratio = best["large"]["wall_s"] / best["small"]["wall_s"]
    print(f"wall_ratio_large_over_small: {ratio:.2f} (target <= 1.5)")
    print(f"large_peak_rss_mb: {max(r['rss_mb'] for r in runs['large']):.0f} (target < 500)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
