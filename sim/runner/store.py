"""The results store: run folders, atomic writes, the run's files.

A run folder is ``<out>/<experiment>/<run-id>/``. Every file is written to a
temporary name in the same folder and renamed into place, so a reader (or an
interrupted run) never sees half a file. Completed replications are kept in
``replications/`` so a rerun of the same resolved config into the same
folder resumes instead of starting over.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def clean_json(value: Any) -> Any:
    """NaN and infinities become null (strict JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


def dumps(value: Any) -> str:
    return json.dumps(clean_json(value), indent=2, allow_nan=False) + "\n"


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_text(path, dumps(value))


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
