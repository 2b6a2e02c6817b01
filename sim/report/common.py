"""Shared parts of the reports: data model, run-folder loading, formatting, page shell.

The data model, loading a run folder, table and label helpers (the number
formats themselves are :mod:`sim.report.numbers`, re-exported here), time-chart
shading (warm-up and fault windows), the page shell with plotly.js inlined or
shared (``plotly.min.js`` of a comparison folder), and the layout of comparison
folders are used by :mod:`sim.report.html` (one run), :mod:`sim.report.resilience`
(retries, faults and recovery panels), :mod:`sim.report.health` (host health),
:mod:`sim.report.fleet_graph` (the fleet and traffic graph) and
:mod:`sim.report.comparison` (several variants of one experiment).  Pages are
written with the project's atomic writer, :mod:`sim.files`.
"""

from __future__ import annotations

import csv
import html
import json
import logging
import math
import os
import pathlib
import posixpath
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import plotly.graph_objects as go
import plotly.offline

from sim.files import atomic_write_text
from sim.report.numbers import (  # noqa: F401  (re-exported: defined here before)
    MEAN_PER_REPLICATION,
    Column,
    bytes_decimals,
    bytes_unit,
    column_decimals,
    fmt_bytes,
    fmt_value,
)

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
TIMESERIES_FILE = "timeseries.csv"
MANIFEST_FILE = "manifest.json"
CONFIG_FILE = "config.resolved.yaml"
GRAPH_FILE = "graph.json"
REPORT_FILE = "report.html"

#: Endpoints of ``bytes_by_az_pair`` keys that are not availability zones.
EXTERNAL_ENDPOINTS = frozenset({"internet"})

#: Maximum size of ``config.resolved.yaml`` included verbatim in the report.
MAX_CONFIG_CHARS = 200_000

# Colours shared by the plots (colour-blind friendly, Okabe-Ito based).
C_OFFERED = "#7f7f7f"
C_THROUGHPUT = "#0072b2"
C_GOODPUT = "#009e73"
C_P50 = "#0072b2"
C_P99 = "#d55e00"
C_INFLIGHT = "#cc79a7"
C_WARMUP = "#9aa5b1"
C_FAULT = "#d55e00"
C_FAULT_TEXT = "#a33a00"
C_AMPLIFICATION = "#d55e00"
C_CLIENT_TRIES = "#0072b2"
C_ATTEMPTS = "#cc79a7"
ERROR_COLOURS = ("#d55e00", "#e69f00", "#cc79a7", "#56b4e9", "#f0e442", "#000000",
                 "#882255", "#44aa99", "#999933", "#aa4499")

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


# --------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Panel:
    """One section of the report: a title and a trusted (escaped) HTML body."""

    title: str
    html: str
    anchor: str = ""


@dataclass
class TimeSeries:
    """Per-second means across replications of ``timeseries.csv``.

    ``columns`` maps each numeric column name to one value per entry of ``t``;
    ``None`` where no replication had a value for that second (e.g. the
    latency percentiles of a second in which no request completed).
    """

    t: list[float]
    columns: dict[str, list[float | None]]
    replications: int

    @property
    def error_causes(self) -> list[str]:
        """The error causes that have an ``err_<cause>`` column, in column order."""
        return [c[len("err_"):] for c in self.columns if c.startswith("err_")]

    def get(self, name: str) -> list[float | None] | None:
        """Column ``name``, one value per second; None when it is absent or has no value at all."""
        values = self.columns.get(name)
        if values is None or all(v is None for v in values):
            return None
        return values


@dataclass(frozen=True)
class Fault:
    """One window of the run's fault timeline."""

    kind: str
    start_s: float
    end_s: float
    #: Names of the parts the fault hit (``summary.json``), possibly empty.
    targets: tuple[str, ...] = ()
    #: The target as configured ("service api", "AZ use1-az1", "all"), "" if unknown.
    target: str = ""
    #: How strong the fault is ("service time × 4"), "" if unknown.
    effect: str = ""

    @property
    def label(self) -> str:
        """The kind as words for a chart label (``"fault"`` when the kind is empty)."""
        return pretty_key(self.kind) or "fault"

    @property
    def duration_s(self) -> float:
        """Length of the fault window, in seconds."""
        return self.end_s - self.start_s


@dataclass
class RunData:
    """One run folder's result files as read for the report (see :func:`load_run`)."""

    run_dir: pathlib.Path
    summary: dict[str, Any]
    timeseries: TimeSeries | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    config_text: str | None = None
    #: ``graph.json`` (fleet nodes and per-edge request counts), if present.
    graph: dict[str, Any] | None = None
    #: Why ``graph.json`` exists but could not be read, if so.
    graph_error: str | None = None
    #: The fault timeline (``summary.json`` ``faults``, else the resolved config).
    faults: list[Fault] = field(default_factory=list)

    @property
    def replications(self) -> int:
        """How many replications the summary aggregates (``summary.json``; 1 when absent)."""
        n = as_number(self.summary.get("replications"))
        return int(n) if n is not None and n >= 1 else 1

    @property
    def warmup_s(self) -> float | None:
        """The run's warm-up in seconds (``summary.json``); None when absent or 0."""
        w = as_number(self.summary.get("warmup_s"))
        return w if w is not None and w > 0 else None

    @cached_property
    def config(self) -> Mapping[str, Any] | None:
        """``config.resolved.yaml`` parsed (read once), ``None`` if absent or unreadable."""
        if not self.config_text:
            return None
        config = _load_yaml(self.config_text)
        return config if isinstance(config, Mapping) else None


PanelBuilder = Callable[[RunData], "Panel | None"]


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def esc(value: Any) -> str:
    """HTML-escape any value (``None`` becomes an empty string)."""
    return "" if value is None else html.escape(str(value), quote=True)


def as_number(value: Any) -> float | None:
    """A value read from a result file as a finite float.

    Args:
        value: Anything from ``summary.json``, ``graph.json``, ...

    Returns:
        The value as a float; ``None`` for non-numbers, bools, NaN and infinities.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def dig(mapping: Any, path: Sequence[str]) -> Any:
    """Walk nested mappings: ``mapping[path[0]][path[1]]...``.

    Args:
        mapping: The outer mapping (anything else yields ``None``).
        path: The keys, outermost first.

    Returns:
        The value at ``path``, or ``None`` if any step is missing or not a mapping.
    """
    cur = mapping
    for key in path:
        if not isinstance(cur, Mapping) or key not in cur:
            return None
        cur = cur[key]
    return cur


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "panel"


def pretty_key(key: str) -> str:
    """A result-file key as words for a label (``"route_timeout"`` -> ``"route timeout"``).

    Args:
        key: A key of a result file.

    Returns:
        ``key`` with underscores as spaces (not escaped).
    """
    return key.replace("_", " ")


def figure_html(fig: go.Figure, div_id: str, height: int = 360,
                hovermode: str = "x unified", layout: Mapping[str, Any] | None = None) -> str:
    """Embed a figure; plotly.js itself is included once in the page head.

    ``layout`` overrides the shared defaults (margins, legend, ...).
    """
    fig.update_layout(
        template="plotly_white",
        height=height,
        margin={"l": 64, "r": 24, "t": 36, "b": 48},
        font={"family": "system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif",
              "size": 12, "color": "#1f2933"},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0},
        hovermode=hovermode,
    )
    # SI prefixes on every axis (k, M, G), never plotly's default "B" for billions.
    fig.update_xaxes(exponentformat="SI")
    fig.update_yaxes(exponentformat="SI")
    if layout:
        fig.update_layout(**layout)
    return fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        config=PLOTLY_CONFIG,
        div_id=div_id,
        default_width="100%",
        default_height=f"{height}px",
    )


def shade_time(fig: go.Figure, warmup_s: float | None, faults: Sequence[Fault],
               rows: Sequence[int] = ()) -> None:
    """Shade the warm-up ``[0, warmup_s]`` (grey) and every fault window (vermilion).

    Each fault window is labelled with its kind (windows with the same span
    share one label); with subplot ``rows`` only the first row is labelled.
    """
    warm = {"fillcolor": C_WARMUP, "opacity": 0.18, "line_width": 0, "layer": "below"}
    warm_label = {"annotation_text": "warm-up", "annotation_position": "top left",
                  "annotation_font": {"size": 11, "color": "#52606d"}}
    fault_style = {"fillcolor": C_FAULT, "opacity": 0.11, "line_width": 0, "layer": "below"}
    spans: dict[tuple[float, float], list[str]] = {}
    for f in faults:
        labels = spans.setdefault((f.start_s, f.end_s), [])
        if f.label not in labels:
            labels.append(f.label)
    labelled: list[tuple[float, float, int]] = []  # (start, end, label level) placed so far
    fault_labels = []
    for (x0, x1), kinds in sorted(spans.items()):
        # Labels of windows that overlap (or start within 3 s of) an earlier
        # labelled window move one line down so they do not overprint.
        busy = {lvl for s0, s1, lvl in labelled if x0 < s1 and x0 - s0 < max(3.0, s1 - s0)}
        level = next(i for i in range(len(labelled) + 1) if i not in busy)
        labelled.append((x0, x1, level))
        fault_labels.append((x0, x1, {
            "annotation_text": esc(" + ".join(kinds)), "annotation_position": "top left",
            "annotation_font": {"size": 11, "color": C_FAULT_TEXT},
            "annotation_yshift": -14 * level}))
    for i, row in enumerate(rows or (None,)):
        where = {} if row is None else {"row": row, "col": 1}
        first = i == 0
        if warmup_s:
            fig.add_vrect(x0=0, x1=warmup_s, **warm, **(warm_label if first else {}), **where)
        for x0, x1, label in fault_labels:
            fig.add_vrect(x0=x0, x1=x1, **fault_style, **(label if first else {}), **where)


def shade_run(fig: go.Figure, data: RunData, rows: Sequence[int] = ()) -> None:
    """:func:`shade_time` with a run's warm-up and faults."""
    shade_time(fig, data.warmup_s, data.faults, rows)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "kpi") -> str:
    """An HTML table with one header row.

    Args:
        headers: Header cells, already escaped HTML.
        rows: Body rows of cells, already escaped HTML; ``" ± "`` in a cell
            becomes non-breaking, so a value and its half-width share a line.
        cls: The table's CSS classes.

    Returns:
        The ``<table>`` markup.
    """
    head = "".join(f"<th>{h}</th>" for h in headers)
    # A value and its half-width stay on one line ("60.4 ± 0.7" never wraps).
    body = "".join("<tr>" + "".join(f"<td>{c.replace(' ± ', '&nbsp;±&nbsp;')}</td>"
                                    for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'



def unit_html(text: str) -> str:
    """A unit shown after a value, in the muted unit style.

    Args:
        text: The unit as plain text ("req/s"); empty for none.

    Returns:
        Escaped markup with a leading non-breaking space (the unit stays with
        its value), or ``""`` when ``text`` is empty.
    """
    return f'&nbsp;<span class="unit">{esc(text)}</span>' if text else ""


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def _read_json(path: pathlib.Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        obj = json.load(fh)
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _float_or_none(text: str | None) -> float | None:
    if text is None:
        return None
    text = text.strip()
    if not text:
        return None
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def load_timeseries(path: pathlib.Path) -> TimeSeries | None:
    """Read ``timeseries.csv`` and average every column across replications."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fieldnames = [f for f in (reader.fieldnames or []) if f]
        if "t_s" not in fieldnames:
            log.warning("%s: no t_s column; time-series panels skipped", path)
            return None
        value_cols = [f for f in fieldnames if f not in ("replication", "t_s")]
        sums: dict[float, dict[str, float]] = {}
        counts: dict[float, dict[str, int]] = {}
        replications: set[str] = set()
        for row in reader:
            t = _float_or_none(row.get("t_s"))
            if t is None:
                continue
            replications.add((row.get("replication") or "").strip())
            s = sums.setdefault(t, {})
            n = counts.setdefault(t, {})
            for col in value_cols:
                v = _float_or_none(row.get(col))
                if v is None:
                    continue
                s[col] = s.get(col, 0.0) + v
                n[col] = n.get(col, 0) + 1
    if not sums:
        return None
    times = sorted(sums)
    columns: dict[str, list[float | None]] = {
        col: [sums[t][col] / counts[t][col] if counts[t].get(col) else None for t in times]
        for col in value_cols
    }
    return TimeSeries(t=times, columns=columns, replications=len(replications))


def load_run(run_dir: pathlib.Path) -> RunData:
    """Read the result files of one run folder.

    Raises ``FileNotFoundError`` naming the path when ``summary.json`` is
    missing; every other file is optional.
    """
    run_dir = pathlib.Path(run_dir)
    summary_path = run_dir / SUMMARY_FILE
    if not summary_path.is_file():
        raise FileNotFoundError(f"run summary not found: {summary_path}")
    data = RunData(run_dir=run_dir, summary=_read_json(summary_path))

    ts_path = run_dir / TIMESERIES_FILE
    if ts_path.is_file():
        data.timeseries = load_timeseries(ts_path)

    manifest_path = run_dir / MANIFEST_FILE
    if manifest_path.is_file():
        try:
            data.manifest = _read_json(manifest_path)
        except (ValueError, OSError) as exc:  # json.JSONDecodeError is a ValueError
            log.warning("ignoring unreadable %s: %s", manifest_path, exc)

    graph_path = run_dir / GRAPH_FILE
    if graph_path.is_file():
        try:
            data.graph = _read_json(graph_path)
        except (ValueError, OSError) as exc:
            log.warning("ignoring unreadable %s: %s", graph_path, exc)
            data.graph_error = f"{type(exc).__name__}: {exc}"

    config_path = run_dir / CONFIG_FILE
    if config_path.is_file():
        try:
            data.config_text = config_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            log.warning("ignoring unreadable %s: %s", config_path, exc)
    data.faults = parse_faults(data.summary, data.config_text)
    return data


# --------------------------------------------------------------------------
# Fault timeline
# --------------------------------------------------------------------------

#: Target fields of a configured fault, in the order they are shown.
_TARGET_FIELDS = (("service", "service"), ("region", "region"), ("az", "AZ"),
                  ("instance", "instance"))


def _fault_target(item: Mapping[str, Any]) -> str:
    parts = []
    if item.get("az") not in (None, "") and not isinstance(item.get("az"), Mapping):
        parts.append(f"AZ {item['az']}")  # az_outage names its AZ at the top level
    target = item.get("target")
    if isinstance(target, Mapping):
        parts += [f"{label} {target[key]}" for key, label in _TARGET_FIELDS
                  if target.get(key) not in (None, "")]
        if not parts:
            return "all"
    return ", ".join(parts)


def _fault_effect(kind: str, item: Mapping[str, Any]) -> str:
    factor = as_number(item.get("factor"))
    probability = as_number(item.get("error_probability"))
    if factor is not None:
        what = {"backend_slowdown": "service time", "load_spike": "offered load"}.get(kind, "factor")
        return f"{what} × {factor:g}"
    if probability is not None:
        return f"error probability {100 * probability:g} %"
    return {"instance_crash": "down, restarts empty", "az_outage": "AZ down"}.get(kind, "")


def _fault_from_mapping(item: Any) -> Fault | None:
    if not isinstance(item, Mapping):
        return None
    start = as_number(item.get("at_s"))
    duration = as_number(item.get("for_s"))
    if start is None or duration is None or duration <= 0:
        return None
    targets = item.get("targets")
    names = tuple(str(t) for t in targets) if isinstance(targets, list) else ()
    kind = str(item.get("kind") or "fault")
    return Fault(kind=kind, start_s=start, end_s=start + duration, targets=names,
                 target=_fault_target(item), effect=_fault_effect(kind, item))


def _faults_from_list(items: Any) -> list[Fault]:
    if not isinstance(items, list):
        return []
    faults = [f for f in map(_fault_from_mapping, items) if f is not None]
    return sorted(faults, key=lambda f: (f.start_s, f.end_s))


def _load_yaml(text: str) -> Any:
    """``text`` parsed as YAML; ``None`` (logged) on any error: the config is optional."""
    try:
        from ruamel.yaml import YAML

        return YAML(typ="safe", pure=True).load(text)
    except Exception as exc:  # any YAML error
        log.warning("could not read %s: %s", CONFIG_FILE, exc)
        return None


def _faults_from_config(config_text: str) -> list[Fault]:
    if "faults" not in config_text:
        return []
    config = _load_yaml(config_text)
    return _faults_from_list(config.get("faults") if isinstance(config, Mapping) else None)


def parse_faults(summary: Mapping[str, Any], config_text: str | None = None) -> list[Fault]:
    """The fault timeline, sorted by start.

    ``summary["faults"]`` (kind, at_s, for_s, targets) is preferred; the
    resolved configuration adds each fault's configured target and strength
    when both list the same windows.  Without either, the fault span of
    ``summary["recovery"]`` is used as one window of kind "fault".
    """
    faults = _faults_from_list(summary.get("faults"))
    configured = _faults_from_config(config_text) if config_text else []
    if not faults:
        faults = configured
    elif len(configured) == len(faults) and all(
            (a.kind, a.start_s, a.end_s) == (b.kind, b.start_s, b.end_s)
            for a, b in zip(faults, configured, strict=True)):
        faults = [replace(a, target=a.target or b.target, effect=a.effect or b.effect)
                  for a, b in zip(faults, configured, strict=True)]
    if not faults:
        recovery = summary.get("recovery")
        if isinstance(recovery, Mapping):
            start = as_number(recovery.get("fault_start_s"))
            end = as_number(recovery.get("fault_end_s"))
            if start is not None and end is not None and end > start:
                faults = [Fault("fault", start, end)]
    return faults


def az_pair_bytes(summary: Mapping[str, Any]) -> tuple[dict[tuple[str, str], float], list[str]]:
    """``summary["bytes_by_az_pair"]`` as ``{(source, destination): bytes}``.

    Args:
        summary: A run's ``summary.json``.

    Returns:
        The pairs (keys ``"src->dst"`` split and stripped; repeated pairs
        summed) and the keys that could not be read.
    """
    pairs = summary.get("bytes_by_az_pair")
    matrix: dict[tuple[str, str], float] = {}
    skipped: list[str] = []
    for key, value in (pairs.items() if isinstance(pairs, Mapping) else ()):
        parts = str(key).split("->")
        v = as_number(value)
        if len(parts) != 2 or v is None:
            skipped.append(str(key))
            continue
        src, dst = parts[0].strip(), parts[1].strip()
        matrix[(src, dst)] = matrix.get((src, dst), 0.0) + v
    return matrix, skipped


def is_cross_az(src: str, dst: str) -> bool:
    """Whether bytes from ``src`` to ``dst`` cross AZs: two different AZs, neither the internet."""
    return (src != dst and src.lower() not in EXTERNAL_ENDPOINTS
            and dst.lower() not in EXTERNAL_ENDPOINTS)


def cross_az_bytes(summary: Mapping[str, Any]) -> tuple[float, float] | None:
    """Bytes between two different AZs (the internet excluded), and all bytes.

    Args:
        summary: A run's ``summary.json`` (means per replication when it has several).

    Returns:
        ``(cross-AZ bytes, total bytes)`` over the measurement window, or
        ``None`` when the summary has no ``bytes_by_az_pair``.
    """
    matrix, _ = az_pair_bytes(summary)
    if not matrix:
        return None
    cross = sum(v for (s, d), v in matrix.items() if is_cross_az(s, d))
    return cross, sum(matrix.values())


def ci_of(data: RunData, path: Sequence[str]) -> Any:
    """The 95 % confidence half-width of a summary value, if the run has one.

    Args:
        data: The run.
        path: The value's keys in ``summary.json`` (looked up under ``ci95``).

    Returns:
        The half-width as stored, or ``None``.
    """
    return dig(data.summary.get("ci95"), path)


def kpi_cell(data: RunData, path: Sequence[str], unit: str = "", *,
             scale: float = 1.0, integer: bool = False, column: Column | None = None) -> str:
    """One KPI table cell: a summary value, its ± half-width and its unit.

    Args:
        data: The run.
        path: The value's keys in ``summary.json``.
        unit: The unit shown after a numeric value.
        scale: Multiplies value and half-width (100 for percent); ignored with ``column``.
        integer: Print whole numbers without decimals (counts); ignored with ``column``.
        column: The table column's format (:func:`kpi_column`), so every row
            of the column has the same decimals.

    Returns:
        Escaped markup ("—" when the value is missing).
    """
    value = dig(data.summary, path)
    if column is not None:
        text = column(value, ci_of(data, path))
    else:
        text = fmt_value(value, ci_of(data, path), scale=scale, integer=integer)
    return esc(text) + (unit_html(unit) if as_number(value) is not None else "")


def kpi_column(data: RunData, paths: Iterable[Sequence[str]], *, scale: float = 1.0,
               integer: bool = False, extra: Iterable[Any] = (),
               decimals: int | None = None) -> Column:
    """The format of a table column showing the summary values at ``paths``.

    Args:
        data: The run.
        paths: Every summary value of the column (their half-widths count too).
        scale: Multiplies values and half-widths (100 for percent).
        integer: The column holds counts.
        extra: Other values shown in the column (a computed total, ...).
        decimals: A fixed number of decimals instead of the rule.

    Returns:
        The column's :class:`~sim.report.numbers.Column`.
    """
    paths = list(paths)
    values = [dig(data.summary, p) for p in paths] + list(extra)
    return Column.of(values, [ci_of(data, p) for p in paths], scale=scale, integer=integer,
                     decimals=decimals)


def count_label(replications: int | None) -> str:
    """The label of a count read from a summary: "mean per replication" when it averages several.

    Args:
        replications: How many replications the summary aggregates.

    Returns:
        :data:`~sim.report.numbers.MEAN_PER_REPLICATION` for two or more, else ``""``.
    """
    return MEAN_PER_REPLICATION if replications and replications > 1 else ""


def header_cell(title: str, *units: str) -> str:
    """A table header: ``title`` and, on a second line in the unit style, the non-empty ``units``.

    Args:
        title: The header text (plain text).
        units: Units or qualifiers (plain text), joined with " · "; empty ones are skipped.

    Returns:
        Escaped markup.
    """
    unit = " · ".join(u for u in units if u)
    return esc(title) + (f'<br><span class="unit">{esc(unit)}</span>' if unit else "")


def replications_note(ts: TimeSeries) -> str:
    """The note under a time chart saying it averages several replications.

    Args:
        ts: The run's time series.

    Returns:
        A ``<p class="note">`` for two replications or more, else ``""``.
    """
    if ts.replications > 1:
        return f'<p class="note">Mean across {ts.replications} replications, per second.</p>'
    return ""


CSS = """
:root { --fg:#1f2933; --muted:#616e7c; --line:#e4e7eb; --bg:#f5f7fa; --card:#fff;
        --accent:#0072b2; --warn:#b44d00; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
       font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif; }
main, header.page, footer.page { max-width:1120px; margin:0 auto; padding:0 24px; }
header.page { padding-top:32px; padding-bottom:8px; }
header.page .kicker { text-transform:uppercase; letter-spacing:.08em; font-size:11px;
                      color:var(--muted); margin:0; }
h1 { font-size:28px; margin:4px 0 6px; font-weight:650; }
.description { color:var(--muted); max-width:820px; margin:0 0 14px; white-space:pre-line; }
dl.meta { display:flex; flex-wrap:wrap; gap:6px 28px; margin:0 0 14px; padding:10px 14px;
          background:var(--card); border:1px solid var(--line); border-radius:8px; }
dl.meta div { display:flex; flex-direction:column; }
dl.meta dt { font-size:11px; text-transform:uppercase; letter-spacing:.06em; color:var(--muted); }
dl.meta dd { margin:0; font-weight:600; font-variant-numeric:tabular-nums; }
nav.toc { font-size:13px; margin-bottom:8px; }
nav.toc a { color:var(--accent); text-decoration:none; margin-right:14px; white-space:nowrap; }
nav.toc a:hover { text-decoration:underline; }
section.panel { background:var(--card); border:1px solid var(--line); border-radius:10px;
                padding:16px 20px 14px; margin:16px 0; }
section.panel > h2 { font-size:17px; margin:0 0 10px; font-weight:620; }
h3 { font-size:13px; text-transform:uppercase; letter-spacing:.05em; color:var(--muted);
     margin:6px 0 6px; font-weight:600; }
div.scroll { overflow-x:auto; }
.grid2 { display:grid; grid-template-columns:repeat(auto-fit,minmax(320px,1fr)); gap:8px 40px; }
table.kpi { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums;
            margin-bottom:10px; }
table.kpi th, table.kpi td { padding:5px 10px; border-bottom:1px solid var(--line);
                             text-align:right; vertical-align:top; }
table.kpi th:first-child, table.kpi td:first-child { text-align:left; }
table.kpi.wide td:first-child { white-space:nowrap; }
table.kpi th { font-size:12px; color:var(--muted); font-weight:600; }
table.kpi tbody tr:last-child td { border-bottom:none; }
table.kpi tbody tr:hover { background:#f9fafb; }
.unit, .muted { color:var(--muted); font-size:12px; font-weight:normal; }
td .unit { white-space:nowrap; }
.indent { padding-left:16px; color:var(--muted); }
.warn { color:var(--warn); font-weight:600; }
.note { color:var(--muted); font-size:12px; margin:6px 0 0; }
.lead { margin:10px 0 0; }
.error { color:var(--warn); }
.nojs { max-width:1120px; margin:16px auto 0; padding:10px 16px; background:#fdf0e9;
        border:1px solid #f3c7ad; border-radius:8px; }
.nojs p { margin:0; }
details summary { cursor:pointer; color:var(--accent); }
pre { background:#f9fafb; border:1px solid var(--line); border-radius:6px; padding:10px;
      overflow:auto; max-height:480px; font-size:12px; }
code { font-size:12px; }
footer.page { color:var(--muted); font-size:12px; padding-top:4px; padding-bottom:32px; }
footer.page dl { display:grid; grid-template-columns:max-content 1fr; gap:2px 14px; margin:6px 0; }
footer.page dt { font-weight:600; }
footer.page dd { margin:0; }
.verdict { font-size:15px; margin:0 0 12px; padding:10px 14px; border-radius:8px;
           background:#f5f7fa; border-left:4px solid var(--muted); }
.verdict.recovered { background:#eef8f3; border-left-color:#009e73; }
.verdict.metastable { background:#fdf0e9; border-left-color:#d55e00; }
.verdict.mixed, .verdict.not_recovered_within_run { background:#fdf6e3;
                                                 border-left-color:#e69f00; }
.ok { color:#007a5a; font-weight:650; }
.bad { color:#b44d00; font-weight:650; }
.warnbg { color:#8a5a00; font-weight:650; }
.swatch { display:inline-block; width:14px; height:10px; border-radius:2px;
          vertical-align:baseline; }
.swatch.fault { background:rgba(213,94,0,.25); }
.swatch.warmup { background:rgba(154,165,177,.35); }
table.faults th, table.faults td { text-align:left; }
table.faults th:nth-child(n+3):nth-child(-n+5),
table.faults td:nth-child(n+3):nth-child(-n+5) { text-align:right; }
table.faults td:last-child { font-size:12px; }
table.settings th, table.settings td { text-align:left; }
table.replications { margin-top:12px; }
table.replications th:nth-child(2), table.replications td:nth-child(2),
table.replications th:last-child, table.replications td:last-child { text-align:left; }
table.settings td:first-child, table.settings td:last-child { white-space:nowrap; }
details.inline { display:inline; }
details.inline[open] summary { display:none; }
@media print { body { background:#fff; } section.panel { break-inside:avoid; } }
"""


# --------------------------------------------------------------------------
# Page shell
# --------------------------------------------------------------------------


def panels_html(panels: Sequence[Panel]) -> str:
    """A table of contents (two panels or more) and one ``<section>`` per panel."""
    sections, toc, used = [], [], set()
    for panel in panels:
        anchor = panel.anchor or _slug(panel.title)
        base, i = anchor, 2
        while anchor in used:
            anchor, i = f"{base}-{i}", i + 1
        used.add(anchor)
        toc.append(f'<a href="#{esc(anchor)}">{esc(panel.title)}</a>')
        sections.append(f'<section class="panel" id="{esc(anchor)}">'
                        f"<h2>{esc(panel.title)}</h2>{panel.html}</section>")
    # Spaces between the links let the line wrap (each link itself does not).
    nav = f'<nav class="toc">{" ".join(toc)}</nav>' if len(toc) > 1 else ""
    return nav + "\n" + "\n".join(sections)


def page_html(title: str, header: str, main: str, footer: str, extra_css: str = "",
              plotly_src: str | None = None) -> str:
    """The full page: plotly.js inlined once in ``<head>``, or loaded from ``plotly_src``.

    Args:
        title: The page title (plain text).
        header: The page header (trusted markup).
        main: The panels (trusted markup).
        footer: The page footer (trusted markup).
        extra_css: More CSS rules.
        plotly_src: The relative URL of a shared ``plotly.min.js``
            (:func:`write_plotly_js`); ``None`` inlines plotly.js, so the page
            is one self-contained file.

    Returns:
        The HTML text.
    """
    if plotly_src is None:
        script = f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>'
        missing = ""
    else:
        script = f'<script type="text/javascript" src="{esc(plotly_src)}" charset="utf-8"></script>'
        notice = (f'<p class="error">The charts of this page need <code>{esc(plotly_src)}</code> '
                  "(the comparison folder&#x27;s copy of plotly.js), which did not load: open "
                  "the page inside its run folder, or write a self-contained copy with "
                  "<code>fleetsim report RUN_DIR --self-contained</code>.</p>")
        # "</" is written "<\/" so the text cannot end the script early.
        js_text = json.dumps('<div class="nojs">' + notice + "</div>").replace("</", "<\\/")
        missing = ('<script type="text/javascript">if (typeof Plotly === "undefined") '
                   f'document.body.insertAdjacentHTML("afterbegin", {js_text});</script>\n')
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}{extra_css}</style>\n"
        f"{script}\n</head>\n<body>\n{missing}"
        f"{header}\n<main>{main}\n</main>\n{footer}\n</body>\n</html>\n"
    )


#: The shared copy of plotly.js in a comparison folder, loaded by its pages.
PLOTLY_JS_FILE = "plotly.min.js"


def write_plotly_js(folder: pathlib.Path) -> pathlib.Path:
    """Write ``folder/plotly.min.js`` (atomically) unless it already holds this plotly.js.

    Args:
        folder: The folder whose pages share the copy.

    Returns:
        The file's path.

    Raises:
        OSError: The file cannot be read or written.
    """
    path = pathlib.Path(folder) / PLOTLY_JS_FILE
    js = plotly.offline.get_plotlyjs()
    data = js.encode("utf-8")
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return path
    atomic_write_text(path, js)
    return path


def relative_url(target: pathlib.Path, start: pathlib.Path) -> str:
    """The relative URL of ``target`` from a page in folder ``start`` (POSIX separators, quoted).

    Args:
        target: The file linked to.
        start: The folder of the page that links to it.

    Returns:
        For example ``"../../plotly.min.js"``.
    """
    rel = os.path.relpath(pathlib.Path(target).absolute(), pathlib.Path(start).absolute())
    return urllib.parse.quote(pathlib.PurePath(rel).as_posix())


# --------------------------------------------------------------------------
# Comparison folders
# --------------------------------------------------------------------------

COMPARISON_FILE = "comparison.json"


def safe_rel_dir(entry: Mapping[str, Any], name: str) -> str:
    """A variant's folder from ``comparison.json``, kept inside the comparison folder.

    Args:
        entry: The variant's entry of ``comparison.json``.
        name: The variant's name (the default folder is ``variants/<name>``).

    Returns:
        A relative POSIX path without ``..``.
    """
    raw = entry.get("dir")
    default = f"variants/{name}"
    if not isinstance(raw, str) or not raw.strip():
        return default
    path = posixpath.normpath(raw.strip().replace("\\", "/"))
    if path.startswith("/") or path == "." or path.split("/")[0] == ".." or ":" in path:
        log.warning("ignoring unsafe variant folder %r; using %s", raw, default)
        return default
    return path


def comparison_root(run_dir: pathlib.Path, max_depth: int = 3) -> pathlib.Path | None:
    """The comparison folder whose ``comparison.json`` lists ``run_dir`` as a variant, if any.

    Args:
        run_dir: A run folder.
        max_depth: How many parent folders to look in.

    Returns:
        The comparison folder, or ``None`` (a run of its own, or unreadable).
    """
    run_dir = pathlib.Path(run_dir).absolute()
    for parent in list(run_dir.parents)[:max_depth]:
        path = parent / COMPARISON_FILE
        if not path.is_file():
            continue
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        entries = meta.get("variants") if isinstance(meta, Mapping) else None
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            if not isinstance(entry, Mapping):
                continue
            name = str(entry.get("name") or f"variant-{i + 1}")
            if (parent / safe_rel_dir(entry, name)).absolute() == run_dir:
                return parent
        return None
    return None


def write_atomic(path: pathlib.Path, text: str) -> pathlib.Path:
    """Write a report page with the project's atomic writer and return its path.

    The writing itself is :func:`sim.files.atomic_write_text`; this only hands
    the path back, which the report writers return to their callers.

    Args:
        path: The destination file.
        text: The whole page.

    Returns:
        ``path``.

    Raises:
        OSError: The folder or the file cannot be created or written.
    """
    atomic_write_text(path, text)
    return path


class HeaderItems(list):
    """The (label, html) items of a report's header strip; ``add`` skips missing values."""

    def add(self, label: str, value: Any, unit: str = "") -> None:
        """Add ``label`` with ``value`` formatted (whole numbers without decimals) and, for a number, ``unit``."""
        if value is None:
            return
        v = as_number(value)
        text = fmt_value(v, integer=True) if v is not None else str(value)
        self.append((label, esc(text) + (unit_html(unit) if v is not None else "")))


def run_builders(builders, arg: Any) -> list[Panel]:
    """Call each panel builder with ``arg``: None skips a panel, malformed data shows a notice."""
    panels: list[Panel] = []
    for builder in builders:
        try:
            panel = builder(arg)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            log.warning("report panel %s failed: %s", builder.__name__, exc, exc_info=True)
            panel = Panel(pretty_key(builder.__name__),
                         f'<p class="error">This panel could not be rendered: '
                         f"{esc(type(exc).__name__)}: {esc(exc)}</p>")
        if panel is not None:
            panels.append(panel)
    return panels
