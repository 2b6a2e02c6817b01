"""Self-contained HTML report for one run folder.

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
* :func:`write_report` assembles the page and writes it atomically.

Modules: :mod:`sim.report.common` holds the data model, loading (including
the fault timeline), formatting, the warm-up and fault shading of time charts
and the page shell; :mod:`sim.report.resilience` the faults, recovery and
retries panels; :mod:`sim.report.health` the host-health panel (outlier
detection, health checks, panic, connection pools); :mod:`sim.report.comparison`
the report comparing the variants of one experiment
(:func:`sim.report.write_comparison`).  The names the report used to define
here are re-exported.

``Panel.html`` is trusted markup: builders must escape every piece of text that
comes from the run files (use :func:`esc`).
"""

from __future__ import annotations

import datetime as _dt
import math
import pathlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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
    _ci,
    _dig,
    _kpi_cell,
    _num,
    _pretty_key,
    _table,
    _ts_note,
    _unit,
    esc,
    figure_html,
    fmt_bytes,
    fmt_value,
    load_run,
    load_timeseries,
    page_html,
    panels_html,
    parse_faults,
    run_builders,
    shade_run,
    shade_time,
    write_atomic,
)
from sim.report.health import POOL_KEYS, host_health_panel, host_health_present, pool_table
from sim.report.resilience import faults_panel, recovery_panel, retries_panel

# --------------------------------------------------------------------------
# Panels
# --------------------------------------------------------------------------


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


#: Entity fields that are counts (printed without decimals when whole).
COUNT_FIELDS = frozenset({"attempts", "requests", "rejected", "errors", "route_timeouts",
                          "per_try_timeouts", "retries", "overflow_max_requests",
                          "retry_overflow"}) | POOL_KEYS


def _entity_table(data: RunData, section: str, columns: Sequence[tuple[str, str, str, float]],
                  first_header: str, exclude: Iterable[str] = ()) -> str | None:
    """Table of ``summary[section][name][field]``: one row per entity.

    ``columns`` are ``(field, header, unit, scale)``; extra numeric fields not
    listed (nor in ``exclude``) are appended generically so new metrics show
    up without code.
    """
    entities = data.summary.get(section)
    if not isinstance(entities, Mapping) or not entities:
        return None
    known = [c[0] for c in columns] + list(exclude)
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
                                 integer=key in COUNT_FIELDS))
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
    """Per-pool requests, utilization, timeouts, retries and breaker counts (plus any
    other numeric gateway fields); the connection-pool counters in a second table
    unless the Host health panel shows them."""
    table = _entity_table(data, "gateway", (
        ("requests", "Requests", "", 1.0),
        ("utilization", "Utilization", "%", 100.0),
        ("route_timeouts", "Route timeouts", "", 1.0),
        ("per_try_timeouts", "Per-try timeouts", "", 1.0),
        ("retries", "Retries", "", 1.0),
        ("overflow_max_requests", "Overflow", "max_requests", 1.0),
        ("retry_overflow", "Retry overflow", "max_retries / budget", 1.0),
    ), "Pool", exclude=POOL_KEYS)
    pools = "" if host_health_present(data) else pool_table(data)
    if table is None and not pools:
        return None
    body = table or ""
    if table and pools:
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
    shade_run(fig, data)
    fig.update_xaxes(title_text="simulated time (s)")
    fig.update_yaxes(title_text="in flight (requests)", rangemode="tozero")
    fig.update_layout(showlegend=False)
    return Panel("Requests in flight", figure_html(fig, "fig-inflight", 300) + _ts_note(ts),
                 "inflight")




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


# --------------------------------------------------------------------------
# Fleet and traffic graph
# --------------------------------------------------------------------------

#: Columns of the fleet graph, left to right; other kinds follow alphabetically.
FLEET_KINDS = ("client", "balancer", "gateway", "backend")
FLEET_KIND_LABELS = {"client": ("Clients", "client", "clients"),
                     "balancer": ("Load balancers", "balancer node", "balancer nodes"),
                     "gateway": ("Gateways", "gateway", "gateways"),
                     "backend": ("Backends", "backend", "backends")}
#: Node style per kind: (marker symbol, fill colour).
FLEET_NODE_STYLE = {"client": ("circle", "#9aa5b1"), "balancer": ("diamond", "#56b4e9"),
                    "gateway": ("square", "#0072b2"), "backend": ("hexagon", "#cc79a7")}
FLEET_NODE_DEFAULT_STYLE = ("circle", "#7b8794")
#: A column with more nodes than this is aggregated per (pool or service, AZ).
FLEET_AGGREGATE_ABOVE = 40
#: Columns with at most this many boxes get a text label next to each marker.
FLEET_LABEL_MAX = 16
#: Width, in columns, of the AZ-label gutter left of the first column.
FLEET_GUTTER = 0.75
#: Edge relations in legend order: label and colour.
RELATION_STYLE = {"internet": ("internet", "#8a96a3"),
                  "same_az": ("same AZ", "#009e73"),
                  "cross_az": ("cross-AZ", "#e69f00"),
                  "cross_region": ("cross-region", "#d55e00")}
RELATION_DEFAULT_STYLE = ("other", "#52606d")
#: Relations whose requests leave the source's availability zone.
CROSS_AZ_RELATIONS = frozenset({"cross_az", "cross_region"})
#: Edge line widths (px) for the smallest and the busiest edge.
EDGE_MIN_WIDTH, EDGE_MAX_WIDTH = 0.75, 10.0


@dataclass
class FleetNode:
    """One box of the fleet graph: a node of ``graph.json`` or an aggregate of several."""

    id: str
    kind: str
    region: str
    az: str
    group: str = ""  # pool (gateways) or service (backends)
    members: list[str] = field(default_factory=list)
    rate_in: float = 0.0
    rate_out: float = 0.0
    x: float = 0.0
    y: float = 0.0

    @property
    def external(self) -> bool:
        return not self.az or self.az.lower() in EXTERNAL_ENDPOINTS

    @property
    def label(self) -> str:
        if len(self.members) > 1:
            return f"{self.group or self.kind} ×{len(self.members)}"
        return self.id.split(":", 1)[1] if ":" in self.id else self.id


@dataclass(frozen=True)
class FleetEdge:
    source: str
    target: str
    relation: str
    rate: float  # requests/s (or requests when the window is unknown)


@dataclass
class FleetGraph:
    """``graph.json`` validated, with rates per second and large columns aggregated."""

    nodes: dict[str, FleetNode]
    edges: list[FleetEdge]
    columns: list[str]
    #: kind -> number of nodes in graph.json (before aggregation).
    node_counts: dict[str, int]
    window_s: float | None
    #: gateway -> backend traffic: total, leaving the AZ, leaving the region.
    gw_be_total: float = 0.0
    gw_be_cross_az: float = 0.0
    gw_be_cross_region: float = 0.0
    ignored_nodes: int = 0
    ignored_edges: int = 0
    #: kind -> how an aggregated column was grouped ("service and AZ", "AZ", ...).
    grouped_by: dict[str, str] = field(default_factory=dict)

    @property
    def rate_unit(self) -> str:
        return "req/s" if self.window_s else "requests"

    @property
    def aggregated(self) -> dict[str, int]:
        """kind -> number of boxes, for the columns that were aggregated."""
        shown: dict[str, int] = {}
        for node in self.nodes.values():
            shown[node.kind] = shown.get(node.kind, 0) + 1
        return {k: n for k, n in shown.items() if n < self.node_counts.get(k, 0)}


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _natural_key(text: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


def _infer_relation(src: FleetNode, dst: FleetNode) -> str:
    if src.external or dst.external:
        return "internet"
    if src.region != dst.region:
        return "cross_region"
    return "same_az" if src.az == dst.az else "cross_az"


def _aggregate_column(nodes: list[FleetNode]) -> tuple[dict[str, FleetNode], bool]:
    """Map each node id to its aggregate box: per (pool/service, AZ), else per AZ.

    The flag tells whether the pool/service was kept in the grouping.
    """
    for by_group in (True, False):
        boxes: dict[tuple[str, str, str], FleetNode] = {}
        mapping: dict[str, FleetNode] = {}
        for node in nodes:
            group = node.group if by_group else ""
            key = (node.region, node.az, group)
            box = boxes.get(key)
            if box is None:
                label = group or "all"
                box = FleetNode(id=f"{node.kind}[{label}@{node.region}/{node.az}]",
                                kind=node.kind, region=node.region, az=node.az, group=group)
                boxes[key] = box
            box.members.append(node.id)
            box.rate_in += node.rate_in
            box.rate_out += node.rate_out
            mapping[node.id] = box
        if len(boxes) <= FLEET_AGGREGATE_ABOVE:
            break
    for box in boxes.values():
        if len(box.members) == 1:  # a box of one is just that node
            box.id = box.members[0]
    return mapping, by_group


def parse_fleet_graph(raw: Mapping[str, Any]) -> FleetGraph:
    """Validate ``graph.json``; aggregate columns of more than ``FLEET_AGGREGATE_ABOVE`` nodes."""
    window = _num(raw.get("window_s"))
    window = window if window is not None and window > 0 else None
    scale = 1.0 / window if window else 1.0

    nodes: dict[str, FleetNode] = {}
    ignored_nodes = 0
    raw_nodes = raw.get("nodes")
    for item in raw_nodes if isinstance(raw_nodes, list) else []:
        node_id = _text(item.get("id")) if isinstance(item, Mapping) else ""
        if not node_id or node_id in nodes:
            ignored_nodes += 1
            continue
        nodes[node_id] = FleetNode(
            id=node_id, kind=_text(item.get("kind")).lower() or "node",
            region=_text(item.get("region")), az=_text(item.get("az")),
            group=_text(item.get("pool")) or _text(item.get("service")), members=[node_id])

    summed: dict[tuple[str, str, str], float] = {}
    ignored_edges = 0
    raw_edges = raw.get("edges")
    for item in raw_edges if isinstance(raw_edges, list) else []:
        if not isinstance(item, Mapping):
            ignored_edges += 1
            continue
        src, dst = nodes.get(_text(item.get("source"))), nodes.get(_text(item.get("target")))
        requests = _num(item.get("requests"))
        if src is None or dst is None or requests is None or requests < 0:
            ignored_edges += 1
            continue
        relation = _text(item.get("relation")).lower() or _infer_relation(src, dst)
        key = (src.id, dst.id, relation)
        summed[key] = summed.get(key, 0.0) + requests * scale

    graph = FleetGraph(nodes={}, edges=[], columns=[], node_counts={}, window_s=window,
                       ignored_nodes=ignored_nodes, ignored_edges=ignored_edges)
    for (src_id, dst_id, relation), rate in summed.items():
        src, dst = nodes[src_id], nodes[dst_id]
        src.rate_out += rate
        dst.rate_in += rate
        if src.kind == "gateway" and dst.kind == "backend":
            graph.gw_be_total += rate
            if relation in CROSS_AZ_RELATIONS:
                graph.gw_be_cross_az += rate
            if relation == "cross_region":
                graph.gw_be_cross_region += rate

    by_kind: dict[str, list[FleetNode]] = {}
    for node in nodes.values():
        by_kind.setdefault(node.kind, []).append(node)
    graph.columns = ([k for k in FLEET_KINDS if k in by_kind]
                     + sorted(k for k in by_kind if k not in FLEET_KINDS))
    graph.node_counts = {k: len(v) for k, v in by_kind.items()}
    box_of: dict[str, FleetNode] = {}
    for column in by_kind.values():
        if len(column) > FLEET_AGGREGATE_ABOVE:
            mapping, by_group = _aggregate_column(column)
            box_of.update(mapping)
            kind = column[0].kind
            what = {"gateway": "pool", "backend": "service"}.get(kind, "pool or service")
            graph.grouped_by[kind] = f"{what} and AZ" if by_group else "AZ"
        else:
            box_of.update((n.id, n) for n in column)
    graph.nodes = {box.id: box for box in box_of.values()}

    edges: dict[tuple[str, str, str], float] = {}
    for (src_id, dst_id, relation), rate in summed.items():
        key = (box_of[src_id].id, box_of[dst_id].id, relation)
        if key[0] != key[1]:  # traffic inside one aggregate box is not drawn
            edges[key] = edges.get(key, 0.0) + rate
    graph.edges = [FleetEdge(s, t, r, v) for (s, t, r), v in edges.items()]
    return graph


def _layout_fleet(graph: FleetGraph) -> tuple[list[tuple[str, str, float, float]], float]:
    """Place the boxes: x = column, y = a band per (region, AZ), top to bottom.

    Returns the bands as ``(region, az, top, bottom)`` and the total height in
    box slots.  Nodes outside any AZ (clients on the internet) are centred on
    the bands of their region.
    """
    column_of = {kind: i for i, kind in enumerate(graph.columns)}
    cells: dict[tuple[str, str, str], list[FleetNode]] = {}
    external: dict[tuple[str, str], list[FleetNode]] = {}
    for node in graph.nodes.values():
        node.x = float(column_of[node.kind])
        if node.external:
            external.setdefault((node.kind, node.region), []).append(node)
        else:
            cells.setdefault((node.kind, node.region, node.az), []).append(node)
    lanes = sorted({(region, az) for _, region, az in cells})

    def order(items: list[FleetNode]) -> list[FleetNode]:
        return sorted(items, key=lambda n: (_natural_key(n.group), _natural_key(n.id)))

    bands: list[tuple[str, str, float, float]] = []
    region_span: dict[str, tuple[float, float]] = {}
    cursor = 0.0
    for i, (region, az) in enumerate(lanes):
        if i and region != lanes[i - 1][0]:
            cursor += 0.5  # a wider gap between regions
        height = max(len(cells.get((kind, region, az), ())) for kind in graph.columns)
        height = max(1, height)
        for kind in graph.columns:
            members = order(cells.get((kind, region, az), []))
            for j, node in enumerate(members):
                node.y = cursor + (j + 0.5) * height / len(members)
        bands.append((region, az, cursor, cursor + height))
        top, bottom = region_span.get(region, (cursor, cursor + height))
        region_span[region] = (min(top, cursor), max(bottom, cursor + height))
        cursor += height + 0.6
    total = max([cursor - 0.6, 1.0] + [float(len(m)) for m in external.values() if not lanes])
    for (_, region), members in external.items():
        top, bottom = region_span.get(region, (0.0, total))
        members = order(members)
        for j, node in enumerate(members):
            node.y = top + (j + 0.5) * (bottom - top) / len(members)
    return bands, total


def _fmt_rate(value: float) -> str:
    return fmt_value(value)


def _edge_width(rate: float, peak: float) -> float:
    if peak <= 0:
        return EDGE_MIN_WIDTH
    width = EDGE_MIN_WIDTH + (EDGE_MAX_WIDTH - EDGE_MIN_WIDTH) * rate / peak
    return round(width * 2) / 2  # half-pixel steps: few traces, no visible banding


def _node_hover(node: FleetNode, unit: str) -> str:
    kind_label = FLEET_KIND_LABELS.get(node.kind, (node.kind, node.kind, node.kind))
    where = " / ".join(esc(p) for p in (node.region, node.az) if p) or "—"
    lines = []
    if len(node.members) > 1:
        lines.append(f"<b>{esc(node.group or node.kind)}</b> · {len(node.members):,} "
                     f"{esc(kind_label[2])} (aggregated)")
        shown = sorted(node.members, key=_natural_key)
        more = f", … (+{len(shown) - 4:,})" if len(shown) > 4 else ""
        lines.append(esc(", ".join(shown[:4])) + esc(more))
    else:
        lines.append(f"<b>{esc(node.id)}</b>")
        lines.append(esc(kind_label[1]) + (f" · {esc(node.group)}" if node.group else ""))
    lines.append(f"AZ: {where}")
    lines.append(f"in: {esc(_fmt_rate(node.rate_in))} {esc(unit)}"
                 f" · out: {esc(_fmt_rate(node.rate_out))} {esc(unit)}")
    return "<br>".join(lines)


def fleet_figure(graph: FleetGraph) -> tuple[go.Figure, int]:
    """The fleet graph as a plotly figure, and its height in pixels."""
    bands, total = _layout_fleet(graph)
    ncols = len(graph.columns)
    fig = go.Figure()
    unit = graph.rate_unit

    # One light band per (region, AZ); its label sits in a gutter left of the clients.
    left = -FLEET_GUTTER
    for i, (region, az, top, bottom) in enumerate(bands):
        fig.add_shape(type="rect", x0=left, x1=ncols - 0.5, y0=top - 0.2, y1=bottom + 0.2,
                      layer="below", line={"width": 0},
                      fillcolor="rgba(0,114,178,0.06)" if i % 2 == 0 else "rgba(82,96,109,0.06)")
        label = f"<b>{esc(az)}</b>" + (f"<br>{esc(region)}" if region else "")
        fig.add_annotation(x=left, y=(top + bottom) / 2, xref="x", yref="y", xanchor="left",
                           yanchor="middle", align="left", text=label, showarrow=False,
                           font={"size": 11, "color": "#52606d"}, xshift=8)

    peak = max((e.rate for e in graph.edges), default=0.0)
    relations = [r for r in RELATION_STYLE if any(e.relation == r for e in graph.edges)]
    relations += sorted({e.relation for e in graph.edges} - set(RELATION_STYLE))
    for relation in relations:
        label, colour = RELATION_STYLE.get(relation, (_pretty_key(relation),
                                                      RELATION_DEFAULT_STYLE[1]))
        edges = sorted((e for e in graph.edges if e.relation == relation), key=lambda e: e.rate)
        # Legend entry with a fixed, readable line width.
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=esc(label),
                                 legendgroup=relation, line={"color": colour, "width": 4}))
        by_width: dict[float, list[FleetEdge]] = {}
        for edge in edges:
            by_width.setdefault(_edge_width(edge.rate, peak), []).append(edge)
        for width, group in sorted(by_width.items()):
            xs: list[float | None] = []
            ys: list[float | None] = []
            for edge in group:
                a, b = graph.nodes[edge.source], graph.nodes[edge.target]
                xs += [a.x, b.x, None]
                ys += [a.y, b.y, None]
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", legendgroup=relation,
                                     showlegend=False, hoverinfo="skip", opacity=0.55,
                                     line={"color": colour, "width": width}))
        # Invisible markers at the edge midpoints carry the edge hover text.
        mids_x, mids_y, texts = [], [], []
        for edge in edges:
            a, b = graph.nodes[edge.source], graph.nodes[edge.target]
            mids_x.append((a.x + b.x) / 2)
            mids_y.append((a.y + b.y) / 2)
            texts.append(f"{esc(a.label)} → {esc(b.label)}<br>{esc(label)} · "
                         f"<b>{esc(_fmt_rate(edge.rate))}</b> {esc(unit)}")
        fig.add_trace(go.Scatter(x=mids_x, y=mids_y, mode="markers", legendgroup=relation,
                                 showlegend=False, hovertext=texts, hoverinfo="text",
                                 marker={"size": 10, "color": colour, "opacity": 0},
                                 hoverlabel={"bgcolor": "white", "bordercolor": colour}))

    for col, kind in enumerate(graph.columns):
        nodes = [n for n in graph.nodes.values() if n.kind == kind]
        symbol, colour = FLEET_NODE_STYLE.get(kind, FLEET_NODE_DEFAULT_STYLE)
        last = col == ncols - 1 and ncols > 1
        with_text = len(nodes) <= FLEET_LABEL_MAX
        fig.add_trace(go.Scatter(
            x=[n.x for n in nodes], y=[n.y for n in nodes], name=esc(kind),
            mode="markers+text" if with_text else "markers", showlegend=False,
            meta="fleet-nodes",
            text=[esc(n.label) for n in nodes] if with_text else None,
            textposition="middle right" if last else "bottom center",
            textfont={"size": 11, "color": "#3e4c59"},
            hovertext=[_node_hover(n, unit) for n in nodes], hoverinfo="text",
            marker={"symbol": symbol, "color": colour,
                    "size": [min(26, 13 + 2.5 * math.log2(len(n.members))) for n in nodes],
                    "line": {"color": "#1f2933", "width": 1}},
            hoverlabel={"bgcolor": "white", "bordercolor": colour},
        ))

    ticks = []
    for kind in graph.columns:
        title = FLEET_KIND_LABELS.get(kind, (_pretty_key(kind).capitalize(),))[0]
        count = graph.node_counts.get(kind, 0)
        boxes = graph.aggregated.get(kind)
        sub = f"{count:,}" + (f" in {boxes:,} groups" if boxes else "")
        ticks.append(f"<b>{esc(title)}</b><br><span style='font-size:11px'>{esc(sub)}</span>")
    right = 1.1 if ncols > 1 else 0.5  # room for the last column's labels
    fig.update_xaxes(tickvals=list(range(ncols)), ticktext=ticks, side="top",
                     range=[-FLEET_GUTTER - 0.05, ncols - 1 + right], showgrid=False, zeroline=False,
                     showline=False, ticks="", fixedrange=True)
    fig.update_yaxes(range=[total + 0.45, -0.45], visible=False, showgrid=False,
                     zeroline=False, fixedrange=True)
    height = int(min(1500, max(340, 120 + 30 * total)))
    return fig, height


def _fleet_caption(graph: FleetGraph) -> str:
    total, cross = graph.gw_be_total, graph.gw_be_cross_az
    if total <= 0:
        return "No gateway-to-backend requests were recorded."
    unit = graph.rate_unit
    text = (f"<strong>{esc(f'{100 * cross / total:.1f} %')}</strong> of gateway-to-backend "
            f"requests cross an AZ boundary ({esc(_fmt_rate(cross))} of "
            f"{esc(_fmt_rate(total))} {esc(unit)}")
    if graph.gw_be_cross_region > 0:
        text += (f"; {esc(f'{100 * graph.gw_be_cross_region / total:.1f} %')} "
                 "cross a region")
    return text + ")."


def fleet_panel(data: RunData) -> Panel | None:
    """The fleet as a graph: clients → balancers → gateways → backends, by AZ."""
    if data.graph is None:
        if data.graph_error is None:
            return None
        return Panel("Fleet and traffic", f'<p class="error">{esc(GRAPH_FILE)} could not be '
                     f"read: {esc(data.graph_error)}</p>", "fleet")
    graph = parse_fleet_graph(data.graph)
    if not graph.nodes:
        return None
    fig, height = fleet_figure(graph)
    body = figure_html(fig, "fig-fleet", height, hovermode="closest", layout={
        "margin": {"l": 24, "r": 24, "t": 64, "b": 36},
        "legend": {"orientation": "h", "yanchor": "top", "y": -0.005, "xanchor": "left",
                   "x": 0, "title": {"text": "traffic  "}},
        "showlegend": bool(graph.edges),
    })
    body += f'<p class="lead">{_fleet_caption(graph)}</p>'
    notes = []
    if graph.window_s:
        notes.append(f"Line width ∝ requests per second over the {esc(f'{graph.window_s:,.6g}')} s "
                     "measurement window (mean across replications); hover a box or a line for "
                     "its rates.")
    else:
        notes.append("Line width ∝ requests carried (graph.json has no measurement window).")
    for kind, boxes in sorted(graph.aggregated.items()):
        plural = FLEET_KIND_LABELS.get(kind, (kind, kind, kind))[2]
        notes.append(f"{esc(plural.capitalize())} are grouped per "
                     f"{esc(graph.grouped_by.get(kind, 'AZ'))} "
                     f"({graph.node_counts[kind]:,} → {boxes:,} boxes).")
    ignored = graph.ignored_nodes + graph.ignored_edges
    if ignored:
        notes.append(f"Ignored {ignored:,} malformed node or edge entries.")
    body += f'<p class="note">{" ".join(notes)}</p>'
    return Panel("Fleet and traffic", body, "fleet")


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
    backend_panel,
    gateway_panel,
    fleet_panel,
    latency_panel,
    rates_panel,
    inflight_panel,
    bytes_panel,
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
    return page_html(title, _header(data), panels_html(panels), _footer(data))


def write_report(run_dir: pathlib.Path) -> pathlib.Path:
    """Write ``run_dir/report.html`` (atomically) from the run's result files.

    Raises ``FileNotFoundError`` (naming the path) if ``summary.json`` is absent.
    """
    run_dir = pathlib.Path(run_dir)
    data = load_run(run_dir)
    return write_atomic(run_dir / REPORT_FILE, render_html(data, build_panels(data)))
