"""Results as one flat table (CSV, Parquet) for notebooks, and a listing of the results folder.

:func:`collect_rows` reads run folders (``fleetsim run``), variant
comparisons (their variants' run folders) and sweeps (``sweep.json``) and
makes one row per replication: what the run was (``source``, ``kind``,
``experiment``, ``variant``, ``point``, ``replication``, ``seed``,
``run_key``), the swept values (``param.<dotted path>``), two derived figures
(``failure_fraction``: failed calls over calls offered; ``cross_az_bytes``:
bytes between two different AZs, clients' internet side excluded), then every
numeric leaf of the replication's ``summary.json`` under its dotted name
(``latency_ms.p99``, ``backend.api.utilization``, ``cost.monthly_by_relation.cross_az``,
``retries.amplification``, ...; yes/no figures as 1 and 0). A figure a run
does not have is empty (CSV) or null (Parquet).

:func:`list_results` finds the same folders under a results folder and
describes each in one line with its key figures (``fleetsim ls``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sim.files import atomic_write_bytes, atomic_write_text

#: The columns that say what a row is, in order; parameter columns follow them.
ID_COLUMNS = ("source", "kind", "experiment", "variant", "point", "replication", "seed", "run_key")
#: Figures computed from the summary, after the parameters.
DERIVED_COLUMNS = ("failure_fraction", "cross_az_bytes")
#: Summary keys that describe the run (they are ID columns, or not figures).
_NOT_FIGURES = {"seed", "replications"}


class ExportError(Exception):
    """A results folder that cannot be read: ``path`` and the reason."""

    def __init__(self, path: Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class Found:
    """A results folder: ``kind`` is ``run``, ``comparison`` or ``sweep``; ``complete`` False while INCOMPLETE."""

    kind: str
    path: Path
    complete: bool


def _kind(folder: Path) -> str | None:
    if (folder / "sweep.json").is_file() or ((folder / "runs").is_dir() and (folder / "INCOMPLETE").exists()):
        return "sweep"
    if (folder / "comparison.json").is_file() or (folder / "variants").is_dir():
        return "comparison"
    if (folder / "summary.json").is_file() or (folder / "replications").is_dir():
        return "run"
    return None


def find_results(path: Path) -> Iterator[Found]:
    """Every run folder, comparison and sweep at or below ``path``, in path order.

    A comparison's variants and a sweep's runs are part of it, not listed apart.
    """
    path = Path(path)
    kind = _kind(path)
    if kind is not None:
        yield Found(kind, path, not (path / "INCOMPLETE").exists())
        return
    for child in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        yield from find_results(child)


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(value, bool):
        out[prefix] = 1.0 if value else 0.0
    elif isinstance(value, int | float):
        out[prefix] = float(value) if math.isfinite(value) else None
    elif value is None:
        out.setdefault(prefix, None)
    # strings (names, verdicts) and lists (per-replication detail) are not figures


def figures(summary: dict) -> dict[str, Any]:
    """A replication's summary as a flat row of figures: derived ones first, then every numeric leaf."""
    req = summary.get("requests") or {}
    offered = req.get("offered")
    failed = sum(v for v in (req.get("failed") or {}).values() if isinstance(v, int | float))
    pairs = summary.get("bytes_by_az_pair") or {}
    cross = 0.0
    for pair, n in pairs.items():
        src, _, dst = str(pair).partition("->")
        if "internet" not in (src, dst) and src != dst and isinstance(n, int | float):
            cross += n
    out: dict[str, Any] = {"failure_fraction": failed / offered if offered else None, "cross_az_bytes": cross}
    _flatten({k: v for k, v in summary.items() if k not in _NOT_FIGURES}, "", out)
    return out


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(path.parent, f"{path.name} is missing") from None
    except (OSError, ValueError) as e:
        raise ExportError(path.parent, f"cannot read {path.name}: {e}") from None


def _run_rows(folder: Path, source: str, kind: str, variant: str | None) -> list[dict]:
    reps = sorted((folder / "replications").glob("rep-*.json"))
    if not reps:
        raise ExportError(folder, "no replications/rep-*.json")
    rows = []
    for rep in reps:
        result = _read(rep)
        summary = result["summary"]
        rows.append({"source": source, "kind": kind, "experiment": summary.get("experiment"), "variant": variant,
                     "point": None, "replication": int(result.get("replication", int(rep.stem[4:]))),
                     "seed": summary.get("seed"), "run_key": None, "params": {}, "figures": figures(summary)})
    return rows


def rows_of(found: Found) -> list[dict]:
    """The rows of one results folder (see the module's docstring)."""
    folder, source = found.path, str(found.path)
    if found.kind == "run":
        return _run_rows(folder, source, "run", None)
    if found.kind == "comparison":
        comparison = _read(folder / "comparison.json")
        return [row for v in comparison["variants"] for row in _run_rows(folder / v["dir"], source, "variant", v["name"])]
    doc = _read(folder / "sweep.json")
    name = doc["experiment"]["name"]
    rows = []
    for entry in doc["points"]:
        summary = _read(folder / entry["summary"])
        rows.append({"source": source, "kind": "sweep", "experiment": name, "variant": entry["variant"],
                     "point": entry["label"], "replication": entry["replication"], "seed": entry["seed"],
                     "run_key": entry["key"], "params": entry["params"], "figures": figures(summary)})
    return rows


def collect_rows(paths: list[Path]) -> tuple[list[dict], list[str]]:
    """Rows of every complete results folder at or below ``paths``, and a note for each one skipped.

    Raises:
        ExportError: A path that does not exist, or holds no results; a
            results folder whose files cannot be read.
    """
    rows: list[dict] = []
    notes: list[str] = []
    for path in paths:
        path = Path(path)
        if not path.is_dir():
            raise ExportError(path, "no such folder" if not path.exists() else "is a file, expected a results folder")
        found = list(find_results(path))
        if not found:
            raise ExportError(path, "holds no run, comparison or sweep")
        for f in found:
            if not f.complete:
                notes.append(f"{f.path}: skipped, an incomplete {f.kind} (it holds INCOMPLETE)")
                continue
            rows += rows_of(f)
    return rows, notes


def _param_value(v: Any) -> Any:
    return v if v is None or isinstance(v, str | int | float) and not isinstance(v, bool) else json.dumps(v)


def table(rows: list[dict]) -> tuple[list[str], list[list[Any]]]:
    """The column names and the rows as lists, columns in first-seen order after the ID columns.

    A figure column that holds no number in any row is left out.
    """
    params: dict[str, None] = {}
    metrics: dict[str, None] = {}
    for row in rows:
        params.update(dict.fromkeys(row["params"]))
        metrics.update(dict.fromkeys(row["figures"]))
    numeric = {k for row in rows for k, v in row["figures"].items() if v is not None}
    metric_cols = [k for k in metrics if k in numeric or k in DERIVED_COLUMNS]
    columns = [*ID_COLUMNS, *(f"param.{p}" for p in params), *metric_cols]
    out = []
    for row in rows:
        line = [row[c] for c in ID_COLUMNS]
        line += [_param_value(row["params"].get(p)) for p in params]
        line += [row["figures"].get(k) for k in metric_cols]
        out.append(line)
    return columns, out


def _csv_cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return v


def write_csv(path: Path, columns: list[str], values: list[list[Any]]) -> None:
    """The table as CSV (UTF-8, a header row; empty cells for missing figures), written atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for line in values:
        w.writerow([_csv_cell(v) for v in line])
    atomic_write_text(path, buf.getvalue(), make_parents=False)


def write_parquet(path: Path, columns: list[str], values: list[list[Any]]) -> None:
    """The table as Parquet (pyarrow): text ID columns, int64 replication and seed, float64 figures.

    A parameter column is float64 when every value is a number, else text
    (non-scalar values as JSON).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = []
    fields = []
    for j, name in enumerate(columns):
        col = [line[j] for line in values]
        if name in ("replication", "seed"):
            typ = pa.int64()
        elif name in ID_COLUMNS:
            typ = pa.string()
        elif all(v is None or isinstance(v, int | float) and not isinstance(v, bool) for v in col):
            typ = pa.float64()
            col = [None if v is None else float(v) for v in col]
        else:
            typ = pa.string()
            col = [None if v is None else str(v) for v in col]
        arrays.append(pa.array(col, type=typ))
        fields.append(pa.field(name, typ))
    buf = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_arrays(arrays, schema=pa.schema(fields)), buf)
    atomic_write_bytes(path, buf.getvalue().to_pybytes(), make_parents=False)


# ---------------------------------------------------------------- fleetsim ls


def _f(x: Any, spec: str) -> str:
    return "n/a" if not isinstance(x, int | float) or x != x else format(x, spec)


def _key_figures(summary: dict) -> str:
    lat = summary.get("latency_ms") or {}
    fig = figures(summary)
    fail = fig["failure_fraction"]
    return (f"p50 {_f(lat.get('p50'), '.1f')} ms, p99 {_f(lat.get('p99'), '.1f')} ms, "
            f"goodput {_f(summary.get('goodput_rps'), ',.0f')}/s, failed {_f(fail, '.2%')}, "
            f"cross-AZ {_f(fig['cross_az_bytes'] / 1e9, '.3f')} GB")


def _when(found: Found) -> float:
    for name in ("sweep.json", "comparison.json", "manifest.json", "summary.json", "INCOMPLETE"):
        p = found.path / name
        if p.is_file():
            return p.stat().st_mtime
    return found.path.stat().st_mtime


def _range(values: list[float], spec: str) -> str:
    values = [v for v in values if isinstance(v, int | float) and v == v]
    if not values:
        return "n/a"
    lo, hi = min(values), max(values)
    return format(lo, spec) if lo == hi else f"{format(lo, spec)}-{format(hi, spec)}"


def describe(found: Found) -> str:
    """One line of key figures for a results folder (the part of ``fleetsim ls`` after its path)."""
    if not found.complete:
        return f"{found.kind}, INCOMPLETE (stopped or running; rerun its command to resume)"
    try:
        if found.kind == "run":
            s = _read(found.path / "summary.json")
            return f"run of {s.get('experiment')}, {s.get('replications')} replication(s): {_key_figures(s)}"
        if found.kind == "comparison":
            c = _read(found.path / "comparison.json")
            parts = []
            for v in c["variants"]:
                s = _read(found.path / v["dir"] / "summary.json")
                parts.append(f"{v['name']} p99 {_f((s.get('latency_ms') or {}).get('p99'), '.1f')} ms")
            return f"comparison of {c['experiment']}, {len(parts)} variants: " + ", ".join(parts)
        doc = _read(found.path / "sweep.json")
        labels = list(dict.fromkeys(e["label"] for e in doc["points"]))
        p99, goodput = [], []
        for entry in doc["points"]:
            s = _read(found.path / entry["summary"])
            p99.append((s.get("latency_ms") or {}).get("p99"))
            goodput.append(s.get("goodput_rps"))
        return (f"sweep of {doc['experiment']['name']}, {len(labels)} points x "
                f"{doc['experiment']['replications']} replication(s): p99 {_range(p99, '.1f')} ms, "
                f"goodput {_range(goodput, ',.0f')}/s")
    except (ExportError, KeyError, TypeError) as e:
        return f"{found.kind}, unreadable ({e})"


def list_results(root: Path) -> list[tuple[float, Found, str]]:
    """(modification time, folder, description) of every results folder under ``root``, oldest first.

    Raises:
        ExportError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise ExportError(root, "no such folder" if not root.exists() else "is a file, expected a results folder")
    rows = [(_when(f), f, describe(f)) for f in find_results(root)]
    return sorted(rows, key=lambda r: (r[0], str(r[1].path)))


def ls_line(when: float, found: Found, text: str) -> str:
    """One line of ``fleetsim ls``: local time, path, description."""
    stamp = datetime.fromtimestamp(when, tz=UTC).astimezone().strftime("%Y-%m-%d %H:%M")
    return f"{stamp}  {os.fspath(found.path)}  {text}"
