"""HTML report for one run folder.

A run of its own gets one self-contained file (plotly.js inlined); the
variants of a comparison share the comparison folder's ``plotly.min.js``
(see :func:`write_report`).

The report reads *results only* (``summary.json``, ``timeseries.csv``,
``manifest.json`` and optionally ``graph.json`` and ``config.resolved.yaml``);
it never imports the engine, the components or the runner.

Structure
---------
* :func:`load_run` reads the files of a run folder into a :class:`RunData`.
* Each panel is built by a small function ``(RunData) -> Panel | None`` listed
  in :data:`PANEL_BUILDERS`.  A builder returns ``None`` when its data is
  absent, and the panel is then skipped.  To add a panel (cost, TLS, ...)
  write one more builder and append it there.
* :func:`write_report` assembles the page and writes it atomically
  (:func:`write_run_page` for a run already loaded).

Every table formats its numbers with :mod:`sim.report.numbers` (one precision
per column, bytes in SI units); counts that are means over replications say so.

Modules: :mod:`sim.report.common` holds the data model, loading (including
the fault timeline), formatting, the warm-up and fault shading of time charts
and the page shell; :mod:`sim.report.resilience` the faults, recovery and
retries panels; :mod:`sim.report.health` the host-health panel (outlier
detection, health checks, panic, connection pools); :mod:`sim.report.fleet_graph`
the fleet and traffic graph (``graph.json``); :mod:`sim.report.comparison` the
report comparing the variants of one experiment
(:func:`sim.report.write_comparison`).  The public names the report used to
define here are re-exported.

``Panel.html`` is trusted markup: builders must escape every piece of text that
comes from the run files (use :func:`esc`).
"""

from __future__ import annotations

import datetime as _dt
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sim.report.common import (  # noqa: F401  (re-exported: the report's public API)
    C_GOODPUT,
    C_INFLIGHT,
    C_OFFERED,
    C_P50,
    C_P99,
    C_THROUGHPUT,
    CONFIG_FILE,
    CSS,
    ERROR_COLOURS,
    EXTERNAL_ENDPOINTS,
    GRAPH_FILE,
    MANIFEST_FILE,
    MAX_CONFIG_CHARS,
    PLOTLY_CONFIG,
    REPORT_FILE,
    SUMMARY_FILE,
    TIMESERIES_FILE,
    Fault,
    HeaderItems,
    Panel,
    PanelBuilder,
    RunData,
    TimeSeries,
    as_number,
    az_pair_bytes,
    bytes_decimals,
    bytes_unit,
    ci_of,
    comparison_root,
    count_label,
    cross_az_bytes,
    dig,
    esc,
    figure_html,
    fmt_bytes,
    fmt_value,
    header_cell,
    kpi_cell,
    kpi_column,
    load_run,
    load_timeseries,
    page_html,
    panels_html,
    parse_faults,
    pretty_key,
    relative_url,
    replications_note,
    run_builders,
    shade_run,
    shade_time,
    table,
    write_atomic,
    write_plotly_js,
)
from sim.report.controlplane import control_plane_panel
from sim.report.fleet_graph import (  # noqa: F401  (re-exported: defined here before)
    FleetEdge,
    FleetGraph,
    FleetNode,
    fleet_figure,
    fleet_panel,
    parse_fleet_graph,
)
from sim.report.geo import geo_panel
from sim.report.health import POOL_KEYS, host_health_panel, host_health_present, pool_table
from sim.report.ratelimit import rate_limit_panel
from sim.report.resilience import faults_panel, recovery_panel, retries_panel
from sim.report.tls import tls_panel

# --------------------------------------------------------------------------
# Panels
# --------------------------------------------------------------------------


def kpi_panel(data: RunData) -> Panel | None:
    """Requests, rates and latency KPIs (with ± 95 % CI half-widths).

    Each table column has one precision (:func:`~sim.report.common.kpi_column`);
    request counts averaged over replications are labelled as such.
    """
    s = data.summary
    requests = s.get("requests") if isinstance(s.get("requests"), Mapping) else {}
    latency = s.get("latency_ms") if isinstance(s.get("latency_ms"), Mapping) else {}
    if not requests and not latency and "throughput_rps" not in s and "goodput_rps" not in s:
        return None

    offered = as_number(requests.get("offered"))

    def share(value: Any) -> str:
        v = as_number(value)
        if v is None or not offered:
            return ""
        return f'<span class="muted">{esc(f"{100 * v / offered:.2f} %")}</span>'

    failed = requests.get("failed")
    causes = (sorted(failed, key=lambda c: -(as_number(failed[c]) or 0))
              if isinstance(failed, Mapping) else [])
    total = (sum(v for v in (as_number(failed[c]) for c in causes) if v is not None)
             if isinstance(failed, Mapping) else None)
    count_paths = [("requests", k) for k in ("offered", "succeeded", "in_flight") if k in requests]
    count_paths += [("requests", "failed", c) for c in causes]
    counts = kpi_column(data, count_paths, integer=True, extra=[total])

    req_rows: list[list[str]] = []
    for key, label in (("offered", "Offered"), ("succeeded", "Succeeded")):
        if key in requests:
            req_rows.append([esc(label), kpi_cell(data, ("requests", key), column=counts),
                             share(requests[key]) if key != "offered" else ""])
    if isinstance(failed, Mapping):
        req_rows.append([esc("Failed (total)"), esc(counts(total)), share(total)])
        for cause in causes:
            req_rows.append([f'<span class="indent">{esc(pretty_key(str(cause)))}</span>',
                             kpi_cell(data, ("requests", "failed", cause), column=counts),
                             share(failed[cause])])
    if "in_flight" in requests:
        req_rows.append([esc("In flight at end"),
                         kpi_cell(data, ("requests", "in_flight"), column=counts), ""])

    rate_keys = [(key, label) for key, label in (("throughput_rps", "Throughput"),
                                                 ("goodput_rps", "Goodput")) if key in s]
    rates = kpi_column(data, [(key,) for key, _ in rate_keys])
    rate_rows = [[esc(label), kpi_cell(data, (key,), "req/s", column=rates)]
                 for key, label in rate_keys]
    known = {"mean": "Mean", "p50": "p50", "p90": "p90", "p99": "p99", "p999": "p99.9"}
    lat_keys = [(k, label) for k, label in known.items() if k in latency]
    lat_keys += [(str(k), pretty_key(str(k))) for k in latency
                 if k not in known and as_number(latency[k]) is not None]
    lat = kpi_column(data, [("latency_ms", k) for k, _ in lat_keys])
    lat_rows = [[esc(label), kpi_cell(data, ("latency_ms", k), "ms", column=lat)]
                for k, label in lat_keys]

    blocks = []
    if req_rows:
        blocks.append("<div><h3>Requests</h3>"
                      + table(["", header_cell("count", count_label(data.replications)),
                               "of offered"], req_rows) + "</div>")
    if rate_rows or lat_rows:
        inner = ""
        if rate_rows:
            inner += "<h3>Rates</h3>" + table(["", "value"], rate_rows)
        if lat_rows:
            inner += "<h3>Latency</h3>" + table(["", "value"], lat_rows)
        cost = s.get("cost") if isinstance(s.get("cost"), Mapping) else {}
        if as_number(cost.get("monthly_dollars")) is not None:
            inner += "<h3>Cost</h3>" + table(["", "value"], [
                [esc(f"$ / month at {as_number(cost.get('production_rps')) or 0:,.0f} calls/s"),
                 kpi_cell(data, ("cost", "monthly_dollars"), "$", column=kpi_column(
                     data, [("cost", "monthly_dollars")], integer=True))],
                [esc("$ per million calls"), kpi_cell(data, ("cost", "per_million_calls"), "$")]])
            inner += ('<p class="note">Scaled linearly from the simulated window to the declared '
                      "production rate (Geography and cost).</p>")
        blocks.append(f"<div>{inner}</div>")
    notes = []
    if req_rows and data.replications > 1:
        notes.append(f"Request counts are means per replication over the {data.replications} "
                     "replications.")
    if isinstance(s.get("ci95"), Mapping):
        notes.append("± values are 95 % confidence-interval half-widths"
                     + ("." if notes else " across the replications."))
    note = f'<p class="note">{esc(" ".join(notes))}</p>' if notes else ""
    return Panel("Key results", f'<div class="grid2">{"".join(blocks)}</div>{note}', "kpis")


#: Entity fields that are counts (printed without decimals when whole).
COUNT_FIELDS = frozenset({"attempts", "requests", "rejected", "errors", "route_timeouts",
                          "per_try_timeouts", "retries", "overflow_max_requests",
                          "retry_overflow", "wasted_requests"}) | POOL_KEYS

#: Entity fields summed over the measurement window, so averaged over
#: replications like the counts (worker-seconds of wasted work).
TOTAL_FIELDS = COUNT_FIELDS | {"wasted_work_s", "wasted_requests"}


#: Units read off the end of a field name, for fields no table lists yet.
UNIT_SUFFIXES = (("_rps", "req/s", 1.0), ("_per_s", "per s", 1.0), ("_ms", "ms", 1.0),
                 ("_s", "s", 1.0), ("_bytes", "bytes", 1.0), ("_utilization", "%", 100.0),
                 ("_share", "%", 100.0))


def _guess_column(key: str) -> tuple[str, str, str, float]:
    """A column ``(field, header, unit, scale)`` for a field no table lists, its unit from its name."""
    for suffix, unit, scale in UNIT_SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            return key, pretty_key(key[:-len(suffix)]).capitalize(), unit, scale
    return key, pretty_key(key).capitalize(), "", 1.0


def _entity_table(data: RunData, section: str, columns: Sequence[tuple[str, str, str, float]],
                  first_header: str, exclude: Iterable[str] = ()) -> str | None:
    """Table of ``summary[section][name][field]``: one row per entity.

    ``columns`` are ``(field, header, unit, scale)``; extra numeric fields not
    listed (nor in ``exclude``) are appended generically so new metrics show
    up without code.  Each column has one precision for every row; counts and
    totals say "mean per replication" when the run has several.
    """
    entities = data.summary.get(section)
    if not isinstance(entities, Mapping) or not entities:
        return None
    known = [c[0] for c in columns] + list(exclude)
    extra: list[str] = []
    for stats in entities.values():
        if isinstance(stats, Mapping):
            extra += [k for k, v in stats.items()
                      if k not in known and k not in extra and as_number(v) is not None]
    cols = [c for c in columns
            if any(isinstance(v, Mapping) and c[0] in v for v in entities.values())]
    cols += [_guess_column(k) for k in extra]
    if not cols:
        return None
    per_rep = count_label(data.replications)
    headers = [esc(first_header)] + [header_cell(h, u, per_rep if key in TOTAL_FIELDS else "")
                                     for key, h, u, _ in cols]
    names = sorted(entities)
    formats = {key: kpi_column(data, [(section, n, key) for n in names], scale=scale,
                               integer=key in COUNT_FIELDS)
               for key, _, _, scale in cols}
    rows = []
    for name in names:
        stats = entities[name] if isinstance(entities[name], Mapping) else {}
        row = [f"<strong>{esc(name)}</strong>"]
        for key, _, _, _ in cols:
            text = esc(formats[key](stats.get(key), ci_of(data, (section, name, key))))
            if key == "utilization" and (as_number(stats.get(key)) or 0) >= 0.85:
                text = f'<span class="warn" title="utilization ≥ 85 %">{text}</span>'
            row.append(text)
        rows.append(row)
    return '<div class="scroll">' + table(headers, rows, cls="kpi wide") + "</div>"


def backend_panel(data: RunData) -> Panel | None:
    """Per-service backend attempts, utilization, queueing and wasted work."""
    rows_html = _entity_table(data, "backend", (
        ("capacity_rps", "Capacity", "req/s", 1.0),
        ("offered_rps", "Offered", "req/s", 1.0),
        ("peak_offered_rps", "Peak offered", "req/s", 1.0),
        ("offered_utilization", "Offered utilization", "%", 100.0),
        ("attempts", "Attempts", "", 1.0),
        ("rejected", "Rejected", "", 1.0),
        ("errors", "Errors", "", 1.0),
        ("utilization", "Utilization", "%", 100.0),
        ("mean_wait_ms", "Mean wait", "ms", 1.0),
        ("p_wait", "P(wait)", "%", 100.0),
        ("mean_in_system", "Mean in system", "requests", 1.0),
        ("wasted_work_s", "Wasted work", "worker-s", 1.0),
        ("wasted_requests", "Wasted requests", "", 1.0),
    ), "Service")
    if rows_html is None:
        return None
    note = ("Mean in system: requests at a service's instances (waiting or being served), "
            "time-averaged over the measurement window and summed over the instances.")
    return Panel("Backend services", rows_html + f'<p class="note">{esc(note)}</p>', "backend")


def gateway_panel(data: RunData) -> Panel | None:
    """Per-pool requests, utilization, timeouts, retries and breaker counts.

    Any other numeric gateway field gets a column too; the connection-pool
    counters go in a second table unless the Host health panel shows them.
    """
    rows_html = _entity_table(data, "gateway", (
        ("requests", "Requests", "", 1.0),
        ("utilization", "Utilization", "%", 100.0),
        ("route_timeouts", "Route timeouts", "", 1.0),
        ("per_try_timeouts", "Per-try timeouts", "", 1.0),
        ("retries", "Retries", "", 1.0),
        ("overflow_max_requests", "Overflow", "max_requests", 1.0),
        ("retry_overflow", "Retry overflow", "max_retries / budget", 1.0),
    ), "Pool", exclude=POOL_KEYS)
    pools = "" if host_health_present(data) else pool_table(data)
    if rows_html is None and not pools:
        return None
    body = rows_html or ""
    if rows_html and pools:
        body = "<h3>Requests, timeouts and breakers</h3>" + body
    return Panel("Gateways", body + pools, "gateway")


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
    shade_run(fig, data)
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
    return Panel("Latency over time",
                 figure_html(fig, "fig-latency") + replications_note(ts), "latency")


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
        shade_run(fig, data, rows=(1, 2))
        fig.update_xaxes(title_text="simulated time (s)", row=2, col=1)
        fig.update_yaxes(title_text="rate (req/s)", rangemode="tozero", row=1, col=1)
        fig.update_yaxes(title_text="errors (req/s)", rangemode="tozero", row=2, col=1)
    else:
        shade_run(fig, data)
        fig.update_xaxes(title_text="simulated time (s)")
        fig.update_yaxes(title_text="errors (req/s)" if causes else "rate (req/s)",
                         rangemode="tozero")
    height = 520 if two_rows else 360
    return Panel("Load, throughput and errors over time",
                 figure_html(fig, "fig-rates", height) + replications_note(ts), "rates")


def inflight_panel(data: RunData) -> Panel | None:
    """Requests in flight per second."""
    ts = data.timeseries
    if ts is None or ts.get("in_flight") is None:
        return None
    fig = go.Figure(go.Scatter(x=ts.t, y=ts.columns["in_flight"], name="in flight", mode="lines",
                               line={"color": C_INFLIGHT, "width": 2}, fill="tozeroy",
                               fillcolor="rgba(204,121,167,0.15)",
                               hovertemplate="%{y:,.1f} requests"))
    shade_run(fig, data)
    fig.update_xaxes(title_text="simulated time (s)")
    fig.update_yaxes(title_text="in flight (requests)", rangemode="tozero")
    fig.update_layout(showlegend=False)
    return Panel("Requests in flight",
                 figure_html(fig, "fig-inflight", 300) + replications_note(ts), "inflight")


def _endpoint_order(names: Iterable[str]) -> list[str]:
    # External endpoints (the internet) first, then AZs alphabetically.
    return sorted(set(names), key=lambda n: (n.lower() not in EXTERNAL_ENDPOINTS, n))


def bytes_panel(data: RunData) -> Panel | None:
    """Bytes per (source, destination) AZ pair as a heatmap plus cross-AZ share."""
    matrix, skipped = az_pair_bytes(data.summary)
    if not matrix:
        return None
    sources = _endpoint_order(s for s, _ in matrix)
    dests = _endpoint_order(d for _, d in matrix)
    z = [[matrix.get((s, d)) for d in dests] for s in sources]
    # Cells and colour scale in one decimal unit (kB, MB, GB), so the scale's
    # ticks read "300" under "MB" rather than plotly's "0.3B" (B for billions).
    unit = bytes_unit(max(abs(v) for v in matrix.values()))
    decimals = bytes_decimals(matrix.values(), unit)
    factor = unit[1]
    text = [["" if v is None else fmt_bytes(v, unit, decimals) for v in row] for row in z]
    per_rep = count_label(data.replications)
    fig = go.Figure(go.Heatmap(
        z=[[None if v is None else v / factor for v in row] for row in z],
        x=[esc(d) for d in dests], y=[esc(s) for s in sources], text=text,
        texttemplate="%{text}", colorscale="Blues",
        colorbar={"title": {"text": unit[0]}, "exponentformat": "none"},
        hovertemplate="%{y} → %{x}<br>%{text}<extra></extra>", xgap=2, ygap=2,
    ))
    fig.update_xaxes(title_text="destination", type="category", side="bottom")
    fig.update_yaxes(title_text="source", type="category", autorange="reversed")
    height = max(260, 90 + 56 * len(sources))
    body = figure_html(fig, "fig-bytes", height, hovermode="closest")
    cross, total = cross_az_bytes(data.summary) or (0.0, 0.0)
    if total > 0:
        sentence = (f"Cross-AZ traffic (source AZ ≠ destination AZ, excluding "
                    f"{'/'.join(sorted(EXTERNAL_ENDPOINTS))}) is "
                    f"<strong>{esc(fmt_bytes(cross))}</strong>, "
                    f"<strong>{esc(f'{100 * cross / total:.1f} %')}</strong> of "
                    f"{esc(fmt_bytes(total))} total bytes"
                    + (f" ({esc(per_rep)}, over {data.replications} replications)"
                       if per_rep else "")
                    + " in the measurement window.")
        offered = as_number(dig(data.summary, ("requests", "offered")))
        if offered:
            sentence += (f" Per request offered: <strong>{esc(fmt_bytes(cross / offered))}"
                         f"</strong> across AZs, {esc(fmt_bytes(total / offered))} in all.")
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
    faults_panel,
    recovery_panel,
    retries_panel,
    host_health_panel,
    control_plane_panel,
    rate_limit_panel,
    backend_panel,
    gateway_panel,
    tls_panel,
    fleet_panel,
    latency_panel,
    rates_panel,
    inflight_panel,
    bytes_panel,
    geo_panel,
    config_panel,
]


def build_panels(data: RunData, builders: Sequence[PanelBuilder] | None = None) -> list[Panel]:
    """Run every builder; absent data skips a panel, malformed data shows a notice."""
    return run_builders(PANEL_BUILDERS if builders is None else builders, data)


# --------------------------------------------------------------------------
# Page assembly
# --------------------------------------------------------------------------


def _header(data: RunData) -> str:
    s, m = data.summary, data.manifest
    experiment = s.get("experiment") or data.run_dir.name
    items = HeaderItems()
    add = items.add

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
    if as_number(m.get("wall_s")) is not None:
        rows.append(("wall time", esc(f"{m['wall_s']:,.2f} s")))
    if as_number(m.get("events")) is not None:
        rows.append(("events", esc(fmt_value(m["events"], integer=True))))
    if as_number(m.get("requests_simulated")) is not None:
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


def render_html(data: RunData, panels: Sequence[Panel], plotly_src: str | None = None) -> str:
    """The full page: plotly.js inlined once in <head>, or loaded from ``plotly_src``, then the panels."""
    title = f"{data.summary.get('experiment') or data.run_dir.name} — fleetsim report"
    return page_html(title, _header(data), panels_html(panels), _footer(data),
                     plotly_src=plotly_src)


def write_run_page(data: RunData, plotly_js: pathlib.Path | None = None) -> pathlib.Path:
    """Write ``data.run_dir/report.html`` (atomically) from a run already loaded.

    Args:
        data: The run (:func:`load_run`).
        plotly_js: A shared ``plotly.min.js`` (:func:`~sim.report.common.write_plotly_js`)
            the page loads by its relative path; ``None`` inlines plotly.js.

    Returns:
        The page's path.
    """
    src = None if plotly_js is None else relative_url(plotly_js, data.run_dir)
    return write_atomic(data.run_dir / REPORT_FILE,
                        render_html(data, build_panels(data), plotly_src=src))


def write_report(run_dir: pathlib.Path, *, self_contained: bool = False) -> pathlib.Path:
    """Write ``run_dir/report.html`` (atomically) from the run's result files.

    A run of its own gets one self-contained page (plotly.js inlined, ~4.8 MB,
    one file to share).  A variant listed in a comparison folder's
    ``comparison.json`` gets a light page that loads the comparison folder's
    shared ``plotly.min.js`` by its relative path (``../../plotly.min.js``),
    like the pages :func:`sim.report.write_comparison` writes; the copy is
    written if missing.

    Args:
        run_dir: The run folder.
        self_contained: Inline plotly.js even in a variant's page (one file to
            share, e.g. ``fleetsim report RUN_DIR --self-contained``).

    Returns:
        The page's path.

    Raises:
        FileNotFoundError: ``summary.json`` is absent (the message names the path).
        OSError: A file cannot be read or written.
    """
    run_dir = pathlib.Path(run_dir)
    data = load_run(run_dir)
    root = None if self_contained else comparison_root(run_dir)
    return write_run_page(data, None if root is None else write_plotly_js(root))
