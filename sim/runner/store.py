"""The results store: run folders, atomic writes, the run's files.

A run folder is ``<out>/<experiment>/<run-id>/``. Every file is written to a
temporary name in the same folder and renamed into place, so a reader (or an
interrupted run) never sees half a file. Completed replications are kept in
``replications/`` so a rerun of the same resolved config into the same
folder resumes instead of starting over.

The writer and the JSON encoder live in :mod:`sim.files`, the one home of
the project's atomic writes; they are re-exported here so the runner's
callers keep importing them from the store.
"""

from __future__ import annotations

import csv
import io
import math

from sim.files import atomic_write_json, atomic_write_text, clean_json, dumps

__all__ = ["atomic_write_json", "atomic_write_text", "clean_json", "dumps", "timeseries_csv"]


def timeseries_csv(series_by_rep: list[dict[str, list]]) -> str:
    """One row per (replication, second); error columns are the union of causes."""
    base = ["t_s", "offered", "throughput", "goodput", "in_flight", "p50_ms", "p99_ms", "tries", "attempts"]
    errs = sorted({k for ts in series_by_rep for k in ts if k.startswith("err_")})
    # Series other components add (health, ejections, probes), after the base ones.
    extra = sorted({k for ts in series_by_rep for k in ts if k not in base and not k.startswith("err_")})
    base = base + extra
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["replication", *base, *errs])
    for r, ts in enumerate(series_by_rep):
        n = len(ts["t_s"])
        cols = [ts.get(k, [math.nan] * n) for k in base] + [ts.get(k, [0] * n) for k in errs]
        for i in range(n):
            row = [r]
            for col in cols:
                v = col[i]
                if isinstance(v, float):
                    row.append("" if not math.isfinite(v) else f"{v:.6g}")
                else:
                    row.append(v)
            w.writerow(row)
    return buf.getvalue()
