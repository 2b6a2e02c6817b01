"""Self-contained HTML report for one run folder.

The report reads *results only* (``summary.json``, ``timeseries.csv``,
``manifest.json`` and optionally ``config.resolved.yaml``); it never imports
the engine, the components or the runner.

Structure
---------
* :func:`load_run` reads the files of a run folder into a :class:`RunData`.
* Each panel is built by a small function ``(RunData) -> Panel | None`` listed
  in :data:`PANEL_BUILDERS`.  A builder returns ``None`` when its data is
  absent, and the panel is then skipped.  To add a panel (retries, faults
  timeline, cost, TLS, ...) write one more builder and append it there.
* :func:`write_report` assembles the page and writes it atomically.

``Panel.html`` is trusted markup: builders must escape every piece of text that
comes from the run files (use :func:`esc`).
"""

from __future__ import annotations

import csv
import datetime as _dt
import html
import json
import logging
import math
import os
import pathlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go
import plotly.offline
from plotly.subplots import make_subplots

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
TIMESERIES_FILE = "timeseries.csv"
MANIFEST_FILE = "manifest.json"
CONFIG_FILE = "config.resolved.yaml"
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
        return [c[len("err_"):] for c in self.columns if c.startswith("err_")]

    def get(self, name: str) -> list[float | None] | None:
        values = self.columns.get(name)
        if values is None or all(v is None for v in values):
            return None
        return values


@dataclass
class RunData:
    run_dir: pathlib.Path
    summary: dict[str, Any]
    timeseries: TimeSeries | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    config_text: str | None = None

    @property
    def warmup_s(self) -> float | None:
        w = _num(self.summary.get("warmup_s"))
        return w if w is not None and w > 0 else None


PanelBuilder = Callable[[RunData], "Panel | None"]


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def esc(value: Any) -> str:
    """HTML-escape any value (``None`` becomes an empty string)."""
    return "" if value is None else html.escape(str(value), quote=True)


def _num(value: Any) -> float | None:
    """``value`` as a finite float, else ``None`` (bools are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def _dig(mapping: Any, path: Sequence[str]) -> Any:
    """``mapping[path[0]][path[1]]...`` or ``None`` if any step is missing."""
    cur = mapping
    for key in path:
        if not isinstance(cur, Mapping) or key not in cur:
            return None
        cur = cur[key]
    return cur


def _decimals(value: float) -> int:
    a = abs(value)
    if a == 0:
        return 0
    if a >= 10:
        return 1
    if a >= 1:
        return 2
    if a >= 0.01:
        return 3
    return 4


def fmt_value(value: Any, ci: Any = None, *, scale: float = 1.0, integer: bool = False) -> str:
    """Format a KPI as plain text, ``"value ± half-width"`` when ``ci`` is numeric.

    ``integer`` prints whole-number values without decimals (counts);
    ``scale`` multiplies both value and half-width (e.g. 100 for percent).
    """
    v = _num(value)
    if v is None:
        return "—" if value is None or isinstance(value, (int, float)) else str(value)
    v *= scale
    hw = _num(ci)
    if hw is not None:
        hw = abs(hw) * scale
        # Two significant digits of the half-width decide the precision.
        d = _decimals(v) if hw == 0 else max(0, min(6, 1 - math.floor(math.log10(hw))))
        return f"{v:,.{d}f} ± {hw:,.{d}f}"
    if integer and v == int(v):
        return f"{int(v):,}"
    return f"{v:,.{_decimals(v)}f}"


def fmt_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} TB"  # pragma: no cover


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "panel"


def _pretty_key(key: str) -> str:
    return key.replace("_", " ")


def figure_html(fig: go.Figure, div_id: str, height: int = 360,
                hovermode: str = "x unified") -> str:
    """Embed a figure; plotly.js itself is included once in the page head."""
    fig.update_layout(
        template="plotly_white",
        height=height,
        margin={"l": 64, "r": 24, "t": 36, "b": 48},
        font={"family": "system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif",
              "size": 12, "color": "#1f2933"},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0},
        hovermode=hovermode,
    )
    return fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        config=PLOTLY_CONFIG,
        div_id=div_id,
        default_width="100%",
        default_height=f"{height}px",
    )


def _shade_warmup(fig: go.Figure, data: RunData, rows: Sequence[int] = ()) -> None:
    """Shade [0, warmup_s]; with subplot ``rows`` only the first one is labelled."""
    w = data.warmup_s
    if w is None:
        return
    style = {"fillcolor": "#9aa5b1", "opacity": 0.18, "line_width": 0, "layer": "below"}
    label = {"annotation_text": "warm-up", "annotation_position": "top left",
             "annotation_font": {"size": 11, "color": "#52606d"}}
    if not rows:
        fig.add_vrect(x0=0, x1=w, **style, **label)
        return
    for i, row in enumerate(rows):
        fig.add_vrect(x0=0, x1=w, row=row, col=1, **style, **(label if i == 0 else {}))


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "kpi") -> str:
    """Build a table; headers and cells must already be escaped HTML."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _unit(text: str) -> str:
    return f' <span class="unit">{esc(text)}</span>' if text else ""


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

    config_path = run_dir / CONFIG_FILE
    if config_path.is_file():
        try:
            data.config_text = config_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            log.warning("ignoring unreadable %s: %s", config_path, exc)
    return data


# --------------------------------------------------------------------------
# Panels
# --------------------------------------------------------------------------


def _ci(data: RunData, path: Sequence[str]) -> Any:
    return _dig(data.summary.get("ci95"), path)


def _kpi_cell(data: RunData, path: Sequence[str], unit: str = "", *,
              scale: float = 1.0, integer: bool = False) -> str:
    value = _dig(data.summary, path)
    text = fmt_value(value, _ci(data, path), scale=scale, integer=integer)
    return esc(text) + (_unit(unit) if _num(value) is not None else "")


def kpi_panel(data: RunData) -> Panel | None:
    """Requests, rates and latency KPIs (with ± 95 % CI half-widths)."""
    s = data.summary
    requests = s.get("requests") if isinstance(s.get("requests"), Mapping) else {}
    latency = s.get("latency_ms") if isinstance(s.get("latency_ms"), Mapping) else {}
    if not requests and not latency and "throughput_rps" not in s and "goodput_rps" not in s:
        return None

    offered = _num(requests.get("offered"))

    def share(value: Any) -> str:
        v = _num(value)
        if v is None or not offered:
            return ""
        return f'<span class="muted">{esc(f"{100 * v / offered:.2f} %")}</span>'

    req_rows: list[list[str]] = []
    for key, label in (("offered", "Offered"), ("succeeded", "Succeeded")):
        if key in requests:
            req_rows.append([esc(label), _kpi_cell(data, ("requests", key), integer=True),
                             share(requests[key]) if key != "offered" else ""])
    failed = requests.get("failed")
    if isinstance(failed, Mapping):
        total = sum(v for v in (_num(x) for x in failed.values()) if v is not None)
        req_rows.append([esc("Failed (total)"), esc(fmt_value(total, integer=True)), share(total)])
        for cause in sorted(failed, key=lambda c: -(_num(failed[c]) or 0)):
            req_rows.append([f'<span class="indent">{esc(_pretty_key(str(cause)))}</span>',
                             _kpi_cell(data, ("requests", "failed", cause), integer=True),
                             share(failed[cause])])
    if "in_flight" in requests:
        req_rows.append([esc("In flight at end"), _kpi_cell(data, ("requests", "in_flight"),
                                                            integer=True), ""])

    rate_rows = [
        [esc(label), _kpi_cell(data, (key,), "req/s")]
        for key, label in (("throughput_rps", "Throughput"), ("goodput_rps", "Goodput"))
        if key in s
    ]
    lat_rows = [
        [esc(label), _kpi_cell(data, ("latency_ms", key), "ms")]
        for key, label in (("mean", "Mean"), ("p50", "p50"), ("p90", "p90"),
                           ("p99", "p99"), ("p999", "p99.9"))
        if key in latency
    ]
    known = {"mean", "p50", "p90", "p99", "p999"}
    lat_rows += [[esc(_pretty_key(str(k))), _kpi_cell(data, ("latency_ms", k), "ms")]
                 for k in latency if k not in known and _num(latency[k]) is not None]

    blocks = []
    if req_rows:
        blocks.append("<div><h3>Requests</h3>"
                      + _table(["", "count", "of offered"], req_rows) + "</div>")
    if rate_rows or lat_rows:
        inner = ""
        if rate_rows:
            inner += "<h3>Rates</h3>" + _table(["", "value"], rate_rows)
        if lat_rows:
            inner += "<h3>Latency</h3>" + _table(["", "value"], lat_rows)
        blocks.append(f"<div>{inner}</div>")
    note = ""
    if isinstance(s.get("ci95"), Mapping):
        note = ('<p class="note">± values are 95 % confidence-interval half-widths across '
                f"{esc(s.get('replications', 'the'))} replications.</p>")
    return Panel("Key results", f'<div class="grid2">{"".join(blocks)}</div>{note}', "kpis")


def _entity_table(data: RunData, section: str, columns: Sequence[tuple[str, str, str, float]],
                  first_header: str) -> str | None:
    """Table of ``summary[section][name][field]``: one row per entity.

    ``columns`` are ``(field, header, unit, scale)``; extra numeric fields not
    listed are appended generically so new metrics show up without code.
    """
    entities = data.summary.get(section)
    if not isinstance(entities, Mapping) or not entities:
        return None
    known = [c[0] for c in columns]
    extra: list[str] = []
    for stats in entities.values():
        if isinstance(stats, Mapping):
            extra += [k for k, v in stats.items()
                      if k not in known and k not in extra and _num(v) is not None]
    cols = [c for c in columns
            if any(isinstance(v, Mapping) and c[0] in v for v in entities.values())]
    cols += [(k, _pretty_key(k), "", 1.0) for k in extra]
    if not cols:
        return None
    headers = [esc(first_header)] + [esc(h) + (f'<br><span class="unit">{esc(u)}</span>'
                                               if u else "") for _, h, u, _ in cols]
    rows = []
    for name in sorted(entities):
        stats = entities[name] if isinstance(entities[name], Mapping) else {}
        row = [f"<strong>{esc(name)}</strong>"]
        for key, _, _, scale in cols:
            path = (section, name, key)
            text = esc(fmt_value(stats.get(key), _ci(data, path), scale=scale,
                                 integer=key == "attempts"))
            if key == "utilization" and (_num(stats.get(key)) or 0) >= 0.85:
                text = f'<span class="warn" title="utilization ≥ 85 %">{text}</span>'
            row.append(text)
        rows.append(row)
    return _table(headers, rows, cls="kpi wide")


def backend_panel(data: RunData) -> Panel | None:
    """Per-service backend attempts, utilization, queueing and wasted work."""
    table = _entity_table(data, "backend", (
        ("attempts", "Attempts", "", 1.0),
        ("utilization", "Utilization", "%", 100.0),
        ("mean_wait_ms", "Mean wait", "ms", 1.0),
        ("p_wait", "P(wait)", "%", 100.0),
        ("wasted_work_s", "Wasted work", "s", 1.0),
    ), "Service")
    return None if table is None else Panel("Backend services", table, "backend")


def gateway_panel(data: RunData) -> Panel | None:
    """Per-gateway utilization (plus any other numeric gateway fields)."""
    table = _entity_table(data, "gateway", (("utilization", "Utilization", "%", 100.0),),
                          "Gateway")
    return None if table is None else Panel("Gateways", table, "gateway")


def latency_panel(data: RunData) -> Panel | None:
    """p50 and p99 latency per second (mean across replications)."""
    ts = data.timeseries
    if ts is None:
        return None
    series = [(name, label, colour) for name, label, colour in
              (("p50_ms", "p50", C_P50), ("p99_ms", "p99", C_P99)) if ts.get(name)]
    if not series:
        return None
    fig = go.Figure()
    for name, label, colour in series:
        fig.add_trace(go.Scatter(x=ts.t, y=ts.columns[name], name=label, mode="lines",
                                 line={"color": colour, "width": 2}, connectgaps=False,
                                 hovertemplate="%{y:.2f} ms"))
    _shade_warmup(fig, data)
    fig.update_xaxes(title_text="simulated time (s)")
    fig.update_yaxes(title_text="latency (ms)", rangemode="tozero")
    fig.update_layout(updatemenus=[{
        "type": "buttons", "direction": "left", "x": 1, "xanchor": "right", "y": 1.12,
        "yanchor": "bottom", "showactive": True, "pad": {"r": 0, "t": 0},
        "buttons": [
            {"label": "linear", "method": "relayout", "args": [{"yaxis.type": "linear"}]},
            {"label": "log", "method": "relayout", "args": [{"yaxis.type": "log"}]},
        ],
    }])
    return Panel("Latency over time", figure_html(fig, "fig-latency") + _ts_note(ts), "latency")


def rates_panel(data: RunData) -> Panel | None:
    """Offered load, throughput, goodput and errors by cause per second."""
    ts = data.timeseries
    if ts is None:
        return None
    rate_series = [(n, lbl, c) for n, lbl, c in (("offered", "offered", C_OFFERED),
                                                 ("throughput", "throughput", C_THROUGHPUT),
                                                 ("goodput", "goodput", C_GOODPUT)) if ts.get(n)]
    causes = [c for c in ts.error_causes if ts.get(f"err_{c}") is not None]
    if not rate_series and not causes:
        return None
    two_rows = bool(rate_series) and bool(causes)
    if two_rows:
        fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                            row_heights=[0.62, 0.38])
        top, bottom = {"row": 1, "col": 1}, {"row": 2, "col": 1}
    else:
        fig, top, bottom = go.Figure(), {}, {}
    for name, label, colour in rate_series:
        trace = go.Scatter(x=ts.t, y=ts.columns[name], name=label, mode="lines",
                           line={"color": colour, "width": 2,
                                 "dash": "dot" if name == "offered" else "solid"},
                           hovertemplate="%{y:,.1f} req/s")
        fig.add_trace(trace, **top)
    for i, cause in enumerate(causes):
        colour = ERROR_COLOURS[i % len(ERROR_COLOURS)]
        trace = go.Scatter(x=ts.t, y=ts.columns[f"err_{cause}"], name=f"error: {esc(cause)}",
                           mode="lines", stackgroup="errors", line={"color": colour, "width": 1},
                           hovertemplate="%{y:,.1f} req/s")
        fig.add_trace(trace, **bottom)
    if two_rows:
        _shade_warmup(fig, data, rows=(1, 2))
        fig.update_xaxes(title_text="simulated time (s)", row=2, col=1)
        fig.update_yaxes(title_text="rate (req/s)", rangemode="tozero", row=1, col=1)
        fig.update_yaxes(title_text="errors (req/s)", rangemode="tozero", row=2, col=1)
    else:
        _shade_warmup(fig, data)
        fig.update_xaxes(title_text="simulated time (s)")
        fig.update_yaxes(title_text="errors (req/s)" if causes else "rate (req/s)",
                         rangemode="tozero")
    height = 520 if two_rows else 360
    return Panel("Load, throughput and errors over time",
                 figure_html(fig, "fig-rates", height) + _ts_note(ts), "rates")


def inflight_panel(data: RunData) -> Panel | None:
    """Requests in flight per second."""
    ts = data.timeseries
    if ts is None or ts.get("in_flight") is None:
        return None
    fig = go.Figure(go.Scatter(x=ts.t, y=ts.columns["in_flight"], name="in flight", mode="lines",
                               line={"color": C_INFLIGHT, "width": 2}, fill="tozeroy",
                               fillcolor="rgba(204,121,167,0.15)",
                               hovertemplate="%{y:,.1f} requests"))
    _shade_warmup(fig, data)
    fig.update_xaxes(title_text="simulated time (s)")
    fig.update_yaxes(title_text="in flight (requests)", rangemode="tozero")
    fig.update_layout(showlegend=False)
    return Panel("Requests in flight", figure_html(fig, "fig-inflight", 300) + _ts_note(ts),
                 "inflight")


def _ts_note(ts: TimeSeries) -> str:
    if ts.replications > 1:
        return f'<p class="note">Mean across {ts.replications} replications, per second.</p>'
    return ""


def _endpoint_order(names: Iterable[str]) -> list[str]:
    # External endpoints (the internet) first, then AZs alphabetically.
    return sorted(set(names), key=lambda n: (n.lower() not in EXTERNAL_ENDPOINTS, n))


def bytes_panel(data: RunData) -> Panel | None:
    """Bytes per (source, destination) AZ pair as a heatmap plus cross-AZ share."""
    pairs = data.summary.get("bytes_by_az_pair")
    if not isinstance(pairs, Mapping) or not pairs:
        return None
    matrix: dict[tuple[str, str], float] = {}
    skipped: list[str] = []
    for key, value in pairs.items():
        parts = str(key).split("->")
        v = _num(value)
        if len(parts) != 2 or v is None:
            skipped.append(str(key))
            continue
        src, dst = parts[0].strip(), parts[1].strip()
        matrix[(src, dst)] = matrix.get((src, dst), 0.0) + v
    if not matrix:
        return None
    sources = _endpoint_order(s for s, _ in matrix)
    dests = _endpoint_order(d for _, d in matrix)
    z = [[matrix.get((s, d)) for d in dests] for s in sources]
    text = [["" if v is None else fmt_bytes(v) for v in row] for row in z]
    fig = go.Figure(go.Heatmap(
        z=z, x=[esc(d) for d in dests], y=[esc(s) for s in sources], text=text,
        texttemplate="%{text}", colorscale="Blues", colorbar={"title": {"text": "bytes"}},
        hovertemplate="%{y} → %{x}<br>%{text}<extra></extra>", xgap=2, ygap=2,
    ))
    fig.update_xaxes(title_text="destination", type="category", side="bottom")
    fig.update_yaxes(title_text="source", type="category", autorange="reversed")
    height = max(260, 90 + 56 * len(sources))
    body = figure_html(fig, "fig-bytes", height, hovermode="closest")
    total = sum(matrix.values())
    cross = sum(v for (s, d), v in matrix.items()
                if s != d and s.lower() not in EXTERNAL_ENDPOINTS
                and d.lower() not in EXTERNAL_ENDPOINTS)
    if total > 0:
        sentence = (f"Cross-AZ traffic (source AZ ≠ destination AZ, excluding "
                    f"{'/'.join(sorted(EXTERNAL_ENDPOINTS))}) is "
                    f"<strong>{esc(fmt_bytes(cross))}</strong>, "
                    f"<strong>{esc(f'{100 * cross / total:.1f} %')}</strong> of "
                    f"{esc(fmt_bytes(total))} total bytes.")
    else:
        sentence = "No bytes were recorded."
    body += f'<p class="lead">{sentence}</p>'
    if skipped:
        body += ('<p class="note">Ignored malformed keys: '
                 + ", ".join(f"<code>{esc(k)}</code>" for k in skipped) + "</p>")
    return Panel("Bytes per AZ pair", body, "bytes")


def config_panel(data: RunData) -> Panel | None:
    """The resolved configuration, collapsed, as escaped text."""
    if data.config_text is None:
        return None
    text = data.config_text
    truncated = len(text) > MAX_CONFIG_CHARS
    if truncated:
        text = text[:MAX_CONFIG_CHARS]
    body = (f"<details><summary>{esc(CONFIG_FILE)} ({len(data.config_text):,} characters)"
            f"</summary><pre>{esc(text)}</pre>"
            + ('<p class="note">… truncated.</p>' if truncated else "")
            + "</details>")
    return Panel("Resolved configuration", body, "config")


#: Panel builders in page order.  Append new builders here.
PANEL_BUILDERS: list[PanelBuilder] = [
    kpi_panel,
    backend_panel,
    gateway_panel,
    latency_panel,
    rates_panel,
    inflight_panel,
    bytes_panel,
    config_panel,
]


def build_panels(data: RunData, builders: Sequence[PanelBuilder] | None = None) -> list[Panel]:
    """Run every builder; absent data skips a panel, malformed data shows a notice."""
    panels: list[Panel] = []
    for builder in PANEL_BUILDERS if builders is None else builders:
        try:
            panel = builder(data)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            log.warning("report panel %s failed: %s", builder.__name__, exc, exc_info=True)
            panel = Panel(_pretty_key(builder.__name__),
                          f'<p class="error">This panel could not be rendered: '
                          f"{esc(type(exc).__name__)}: {esc(exc)}</p>")
        if panel is not None:
            panels.append(panel)
    return panels


# --------------------------------------------------------------------------
# Page assembly
# --------------------------------------------------------------------------

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
.grid2 { display:grid; grid-template-columns:repeat(auto-fit,minmax(320px,1fr)); gap:8px 40px; }
table.kpi { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums;
            margin-bottom:10px; }
table.kpi th, table.kpi td { padding:5px 10px; border-bottom:1px solid var(--line);
                             text-align:right; vertical-align:top; }
table.kpi th:first-child, table.kpi td:first-child { text-align:left; }
table.kpi th { font-size:12px; color:var(--muted); font-weight:600; }
table.kpi tbody tr:last-child td { border-bottom:none; }
table.kpi tbody tr:hover { background:#f9fafb; }
.unit, .muted { color:var(--muted); font-size:12px; font-weight:normal; }
.indent { padding-left:16px; color:var(--muted); }
.warn { color:var(--warn); font-weight:600; }
.note { color:var(--muted); font-size:12px; margin:6px 0 0; }
.lead { margin:10px 0 0; }
.error { color:var(--warn); }
details summary { cursor:pointer; color:var(--accent); }
pre { background:#f9fafb; border:1px solid var(--line); border-radius:6px; padding:10px;
      overflow:auto; max-height:480px; font-size:12px; }
code { font-size:12px; }
footer.page { color:var(--muted); font-size:12px; padding-top:4px; padding-bottom:32px; }
footer.page dl { display:grid; grid-template-columns:max-content 1fr; gap:2px 14px; margin:6px 0; }
footer.page dt { font-weight:600; }
footer.page dd { margin:0; }
@media print { body { background:#fff; } section.panel { break-inside:avoid; } }
"""


def _header(data: RunData) -> str:
    s, m = data.summary, data.manifest
    experiment = s.get("experiment") or data.run_dir.name
    items: list[tuple[str, str]] = []

    def add(label: str, value: Any, unit: str = "") -> None:
        if value is None:
            return
        v = _num(value)
        text = fmt_value(v, integer=True) if v is not None else str(value)
        items.append((label, esc(text) + (_unit(unit) if v is not None else "")))

    add("seed", s.get("seed", m.get("seed")))
    add("replications", s.get("replications"))
    add("simulated", s.get("simulated_s"), "s")
    add("warm-up", s.get("warmup_s"), "s")
    add("run id", s.get("run_id", m.get("run_id")))
    meta = "".join(f"<div><dt>{esc(k)}</dt><dd>{v}</dd></div>" for k, v in items)
    description = s.get("description")
    desc_html = f'<p class="description">{esc(description)}</p>' if description else ""
    return (f'<header class="page"><p class="kicker">fleetsim run report</p>'
            f"<h1>{esc(experiment)}</h1>{desc_html}"
            + (f'<dl class="meta">{meta}</dl>' if meta else "") + "</header>")


def _footer(data: RunData) -> str:
    m = data.manifest
    rows: list[tuple[str, str]] = []
    if "run_id" in m:
        rows.append(("run id", esc(m["run_id"])))
    if _num(m.get("wall_s")) is not None:
        rows.append(("wall time", esc(f"{m['wall_s']:,.2f} s")))
    if _num(m.get("events")) is not None:
        rows.append(("events", esc(fmt_value(m["events"], integer=True))))
    if _num(m.get("requests_simulated")) is not None:
        rows.append(("requests simulated", esc(fmt_value(m["requests_simulated"], integer=True))))
    versions = m.get("versions")
    if isinstance(versions, Mapping) and versions:
        rows.append(("versions", ", ".join(f"{esc(k)} {esc(v)}"
                                           for k, v in sorted(versions.items()))))
    elif versions:
        rows.append(("versions", esc(versions)))
    generated = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows.append(("report", f"generated {esc(generated)} from <code>{esc(data.run_dir)}</code>"))
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return f'<footer class="page"><dl>{dl}</dl></footer>'


def render_html(data: RunData, panels: Sequence[Panel]) -> str:
    """The full page: plotly.js inlined once in <head>, then the panels."""
    title = f"{data.summary.get('experiment') or data.run_dir.name} — fleetsim report"
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
    nav = f'<nav class="toc">{"".join(toc)}</nav>' if len(toc) > 1 else ""
    plotly_js = plotly.offline.get_plotlyjs()
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n"
        f'<script type="text/javascript">{plotly_js}</script>\n</head>\n<body>\n'
        f"{_header(data)}\n<main>{nav}\n" + "\n".join(sections) + "\n</main>\n"
        f"{_footer(data)}\n</body>\n</html>\n"
    )


def write_report(run_dir: pathlib.Path) -> pathlib.Path:
    """Write ``run_dir/report.html`` (atomically) from the run's result files.

    Raises ``FileNotFoundError`` (naming the path) if ``summary.json`` is absent.
    """
    run_dir = pathlib.Path(run_dir)
    data = load_run(run_dir)
    page = render_html(data, build_panels(data))
    out = run_dir / REPORT_FILE
    tmp = run_dir / (REPORT_FILE + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="\n") as fh:
            fh.write(page)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
