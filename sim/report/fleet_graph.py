"""The fleet and its traffic as a graph: clients → balancers → gateways → backends, by AZ.

Reads ``graph.json`` of a run folder (:attr:`RunData.graph`) and draws the
"Fleet and traffic" panel of the run report (:func:`fleet_panel`).

``graph.json`` comes at one of two levels (top-level ``"level"``):

* ``"instances"`` (the default when the key is absent): every node is one
  instance: ``client:<region>`` (kind ``client``), ``lb:<region>:<az>``
  (``balancer``), ``gw:<instance>`` (``gateway``, with ``pool``) and
  ``be:<instance>`` (``backend``, with ``service``).
* ``"groups"``, which the simulator writes for large fleets because one edge
  per gateway and backend instance would cost most of the run: gateway nodes
  are pools (``gw:<pool>``) and backend nodes are one service's instances in
  one AZ (``be:<service>:<az>``); clients and balancers are as before.

Every node has ``region`` and ``az`` and may carry ``instances`` (1 when
absent); every edge is ``{source, target, relation, requests}``, and
``window_s`` turns requests into requests per second.  The counts the panel
shows ("400 gateways") are instances, whatever the level.

A column of more than :data:`FLEET_AGGREGATE_ABOVE` boxes is drawn with one box
per (pool or service, AZ), or per AZ if that still leaves too many; a box
lists its members on hover.  Building the panel is linear in the nodes and
edges of ``graph.json`` and never in the instances they stand for, so a
group-level graph of a fleet of hundreds of gateways and backends is as
cheap as a small one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go

from sim.report.common import (
    EXTERNAL_ENDPOINTS,
    GRAPH_FILE,
    Panel,
    RunData,
    as_number,
    esc,
    figure_html,
    fmt_value,
    pretty_key,
)

#: Columns of the fleet graph, left to right; other kinds follow alphabetically.
FLEET_KINDS = ("client", "balancer", "gateway", "backend")
#: Per kind: (column title, one instance, several instances).
FLEET_KIND_LABELS = {"client": ("Clients", "client", "clients"),
                     "balancer": ("Load balancers", "balancer node", "balancer nodes"),
                     "gateway": ("Gateways", "gateway", "gateways"),
                     "backend": ("Backends", "backend", "backends")}
#: Node style per kind: (marker symbol, fill colour).
FLEET_NODE_STYLE = {"client": ("circle", "#9aa5b1"), "balancer": ("diamond", "#56b4e9"),
                    "gateway": ("square", "#0072b2"), "backend": ("hexagon", "#cc79a7")}
FLEET_NODE_DEFAULT_STYLE = ("circle", "#7b8794")
#: A column with more boxes than this is aggregated per (pool or service, AZ),
#: and per AZ if that still leaves more.  It equals FLEET_LABEL_MAX so that
#: every box of an aggregated column keeps its text label: past 16 unlabelled
#: markers the drawing is a hairball.
FLEET_AGGREGATE_ABOVE = 16
#: Columns with at most this many boxes get a text label next to each marker.
FLEET_LABEL_MAX = 16
#: Members of an aggregated box listed in its hover text, and how many per line.
FLEET_HOVER_MEMBERS = 32
FLEET_HOVER_PER_LINE = 4
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
#: Values of graph.json's top-level ``level``.
LEVEL_INSTANCES, LEVEL_GROUPS = "instances", "groups"
#: Kinds whose nodes are groups in a group-level graph.json.
GROUPED_KINDS = frozenset({"gateway", "backend"})
#: What a pool or service box groups, per kind, for the notes.
GROUP_FIELD = {"gateway": "pool", "backend": "service"}


@dataclass
class FleetNode:
    """One box of the fleet graph.

    A box is one node of ``graph.json`` (an instance, or a group of instances
    in a group-level graph) or, in an aggregated column, several nodes: its
    ``parts``.
    """

    id: str
    kind: str
    region: str
    az: str
    group: str = ""  # pool (gateways) or service (backends)
    #: Instances the box stands for (the sum over its parts for an aggregate).
    instances: int = 1
    #: A group node of graph.json (group level, or ``instances`` above 1).
    is_group: bool = False
    #: The graph.json nodes an aggregated box draws; empty for a single node.
    parts: list[FleetNode] = field(default_factory=list)
    rate_in: float = 0.0
    rate_out: float = 0.0
    x: float = 0.0
    y: float = 0.0

    @property
    def members(self) -> list[str]:
        """Ids of the ``graph.json`` nodes this box draws."""
        return [p.id for p in self.parts] if self.parts else [self.id]

    @property
    def external(self) -> bool:
        """Whether the box is outside every AZ (clients on the internet)."""
        return not self.az or self.az.lower() in EXTERNAL_ENDPOINTS

    @property
    def label(self) -> str:
        """The text next to the marker: ``"api ×12"`` for a group or aggregate, else the name."""
        if self.parts or self.is_group:
            return f"{self.group or self.kind} ×{self.instances:,}"
        return self.id.split(":", 1)[1] if ":" in self.id else self.id


@dataclass(frozen=True)
class FleetEdge:
    """Traffic between two boxes of one relation."""

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
    #: kind -> number of instances in graph.json (before aggregation).
    node_counts: dict[str, int]
    window_s: float | None
    #: "instances" or "groups" (graph.json's ``level``).
    level: str = LEVEL_INSTANCES
    #: gateway -> backend traffic: total, leaving the AZ, leaving the region.
    gw_be_total: float = 0.0
    gw_be_cross_az: float = 0.0
    gw_be_cross_region: float = 0.0
    ignored_nodes: int = 0
    ignored_edges: int = 0
    #: graph.json's ``level`` when it is neither "instances" nor "groups".
    unknown_level: str = ""
    #: kind -> how a column's boxes group its instances ("service and AZ", "AZ", ...).
    grouped_by: dict[str, str] = field(default_factory=dict)

    @property
    def rate_unit(self) -> str:
        """The unit of the edge and box rates."""
        return "req/s" if self.window_s else "requests"

    @property
    def aggregated(self) -> dict[str, int]:
        """Number of boxes per node kind, for the columns drawn with fewer boxes than instances."""
        shown: dict[str, int] = {}
        for node in self.nodes.values():
            shown[node.kind] = shown.get(node.kind, 0) + 1
        return {k: n for k, n in shown.items() if n < self.node_counts.get(k, 0)}


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _natural_key(text: str) -> tuple:
    # "api-10" after "api-9": digits compare as numbers.
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


def _infer_relation(src: FleetNode, dst: FleetNode) -> str:
    if src.external or dst.external:
        return "internet"
    if src.region != dst.region:
        return "cross_region"
    return "same_az" if src.az == dst.az else "cross_az"


def _instances(item: Mapping[str, Any]) -> int | None:
    """A node's ``instances``: 1 when absent, ``None`` unless a whole number ≥ 1."""
    if item.get("instances") is None:
        return 1
    n = as_number(item.get("instances"))
    if n is None or n < 1 or n != int(n):
        return None
    return int(n)


def _aggregate_column(nodes: list[FleetNode]) -> tuple[dict[str, FleetNode], bool]:
    """Map each node id to its aggregate box: per (pool/service, AZ), else per AZ.

    The flag tells whether the pool/service was kept in the grouping.
    """
    for by_group in (True, False):
        boxes: dict[tuple[str, str, str], FleetNode] = {}
        for node in nodes:
            group = node.group if by_group else ""
            key = (node.region, node.az, group)
            box = boxes.get(key)
            if box is None:
                box = FleetNode(id=f"{node.kind}[{group or 'all'}@{node.region}/{node.az}]",
                                kind=node.kind, region=node.region, az=node.az, group=group,
                                instances=0)
                boxes[key] = box
            box.parts.append(node)
            box.instances += node.instances
            box.rate_in += node.rate_in
            box.rate_out += node.rate_out
        if len(boxes) <= FLEET_AGGREGATE_ABOVE:
            break
    mapping: dict[str, FleetNode] = {}
    for box in boxes.values():
        for node in box.parts:
            # A box of one is just that node, drawn as graph.json has it.
            mapping[node.id] = box if len(box.parts) > 1 else node
    return mapping, by_group


def parse_fleet_graph(raw: Mapping[str, Any]) -> FleetGraph:
    """Validate ``graph.json`` at either level and aggregate crowded columns.

    Malformed nodes and edges are skipped and counted; edges between the same
    two boxes with the same relation are summed.  A column of more than
    :data:`FLEET_AGGREGATE_ABOVE` boxes is aggregated per (pool or service, AZ),
    or per AZ if that still leaves more.

    Args:
        raw: ``graph.json`` as read.

    Returns:
        The graph to draw, with rates per second when ``window_s`` is known.
    """
    window = as_number(raw.get("window_s"))
    window = window if window is not None and window > 0 else None
    scale = 1.0 / window if window else 1.0
    level = _text(raw.get("level")).lower() or LEVEL_INSTANCES
    unknown_level = "" if level in (LEVEL_INSTANCES, LEVEL_GROUPS) else _text(raw.get("level"))
    if unknown_level:
        level = LEVEL_INSTANCES  # read it as the default level, and say so in the notes

    nodes: dict[str, FleetNode] = {}
    ignored_nodes = 0
    raw_nodes = raw.get("nodes")
    for item in raw_nodes if isinstance(raw_nodes, list) else []:
        node_id = _text(item.get("id")) if isinstance(item, Mapping) else ""
        instances = _instances(item) if node_id else None
        if not node_id or node_id in nodes or instances is None:
            ignored_nodes += 1
            continue
        kind = _text(item.get("kind")).lower() or "node"
        nodes[node_id] = FleetNode(
            id=node_id, kind=kind, region=_text(item.get("region")), az=_text(item.get("az")),
            group=_text(item.get("pool")) or _text(item.get("service")), instances=instances,
            is_group=instances > 1 or (level == LEVEL_GROUPS and kind in GROUPED_KINDS))

    summed: dict[tuple[str, str, str], float] = {}
    ignored_edges = 0
    raw_edges = raw.get("edges")
    for item in raw_edges if isinstance(raw_edges, list) else []:
        if not isinstance(item, Mapping):
            ignored_edges += 1
            continue
        src, dst = nodes.get(_text(item.get("source"))), nodes.get(_text(item.get("target")))
        requests = as_number(item.get("requests"))
        if src is None or dst is None or requests is None or requests < 0:
            ignored_edges += 1
            continue
        relation = _text(item.get("relation")).lower() or _infer_relation(src, dst)
        key = (src.id, dst.id, relation)
        summed[key] = summed.get(key, 0.0) + requests * scale

    graph = FleetGraph(nodes={}, edges=[], columns=[], node_counts={}, window_s=window,
                       level=level, ignored_nodes=ignored_nodes, ignored_edges=ignored_edges,
                       unknown_level=unknown_level)
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
    graph.node_counts = {k: sum(n.instances for n in v) for k, v in by_kind.items()}
    box_of: dict[str, FleetNode] = {}
    for kind, column in by_kind.items():
        what = GROUP_FIELD.get(kind, "pool or service")
        if len(column) > FLEET_AGGREGATE_ABOVE:
            mapping, by_group = _aggregate_column(column)
            box_of.update(mapping)
            graph.grouped_by[kind] = f"{what} and AZ" if by_group else "AZ"
        else:
            box_of.update((n.id, n) for n in column)
            if any(n.is_group for n in column):
                graph.grouped_by[kind] = f"{what} and AZ"
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


def _instances_text(kind: str, n: int) -> str:
    labels = FLEET_KIND_LABELS.get(kind, (kind, kind, kind))
    return f"{n:,} {labels[1] if n == 1 else labels[2]}"


def _members_html(box: FleetNode) -> list[str]:
    """Hover lines listing an aggregate box's members, a few per line."""
    names = sorted((p.label for p in box.parts), key=_natural_key)
    shown = names[:FLEET_HOVER_MEMBERS]
    lines = [", ".join(shown[i:i + FLEET_HOVER_PER_LINE])
             for i in range(0, len(shown), FLEET_HOVER_PER_LINE)]
    if len(names) > len(shown):
        lines.append(f"… and {len(names) - len(shown):,} more")
    return [esc(line) for line in lines]


def _node_hover(node: FleetNode, unit: str) -> str:
    where = " / ".join(esc(p) for p in (node.region, node.az) if p) or "—"
    lines = []
    if node.parts:
        groups = sum(1 for p in node.parts if p.is_group)
        how = f"in {len(node.parts):,} groups" if groups else "aggregated"
        lines.append(f"<b>{esc(node.group or node.kind)}</b> · "
                     f"{esc(_instances_text(node.kind, node.instances))} ({how})")
        lines += _members_html(node)
    elif node.is_group:
        lines.append(f"<b>{esc(node.group or node.kind)}</b> · "
                     f"{esc(_instances_text(node.kind, node.instances))}")
    else:
        kind_label = FLEET_KIND_LABELS.get(node.kind, (node.kind, node.kind, node.kind))
        lines.append(f"<b>{esc(node.id)}</b>")
        lines.append(esc(kind_label[1]) + (f" · {esc(node.group)}" if node.group else ""))
    lines.append(f"AZ: {where}")
    lines.append(f"in: {esc(_fmt_rate(node.rate_in))} {esc(unit)}"
                 f" · out: {esc(_fmt_rate(node.rate_out))} {esc(unit)}")
    return "<br>".join(lines)


def fleet_figure(graph: FleetGraph) -> tuple[go.Figure, int]:
    """Draw the fleet graph.

    Args:
        graph: The parsed graph (:func:`parse_fleet_graph`); its boxes get
            their ``x`` and ``y``.

    Returns:
        The plotly figure and its height in pixels.
    """
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
        label, colour = RELATION_STYLE.get(relation, (pretty_key(relation),
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
                    # Bigger for more instances, logarithmically: a box of
                    # hundreds must not swallow its neighbours.
                    "size": [min(26, 13 + 2.5 * math.log2(n.instances)) for n in nodes],
                    "line": {"color": "#1f2933", "width": 1}},
            hoverlabel={"bgcolor": "white", "bordercolor": colour},
        ))

    ticks = []
    for kind in graph.columns:
        title = FLEET_KIND_LABELS.get(kind, (pretty_key(kind).capitalize(),))[0]
        count = graph.node_counts.get(kind, 0)
        boxes = graph.aggregated.get(kind)
        sub = f"{count:,}" + (f" in {boxes:,} groups" if boxes else "")
        ticks.append(f"<b>{esc(title)}</b><br><span style='font-size:11px'>{esc(sub)}</span>")
    right = 1.1 if ncols > 1 else 0.5  # room for the last column's labels
    fig.update_xaxes(tickvals=list(range(ncols)), ticktext=ticks, side="top",
                     range=[-FLEET_GUTTER - 0.05, ncols - 1 + right], showgrid=False,
                     zeroline=False, showline=False, ticks="", fixedrange=True)
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


def _fleet_notes(graph: FleetGraph) -> list[str]:
    notes = []
    if graph.window_s:
        notes.append(f"Line width ∝ requests per second over the {esc(f'{graph.window_s:,.6g}')} s "
                     "measurement window (mean across replications); hover a box or a line for "
                     "its rates.")
    else:
        notes.append("Line width ∝ requests carried (graph.json has no measurement window).")
    if graph.level == LEVEL_GROUPS:
        notes.append(f"{esc(GRAPH_FILE)} lists gateway pools and backend groups, not "
                     "single instances (it does so for large fleets).")
    if graph.unknown_level:
        notes.append(f"Unknown level “{esc(graph.unknown_level)}” in {esc(GRAPH_FILE)}, "
                     "read as instances.")
    for kind, boxes in sorted(graph.aggregated.items()):
        plural = FLEET_KIND_LABELS.get(kind, (kind, kind, kind))[2]
        notes.append(f"{esc(plural.capitalize())} are grouped per "
                     f"{esc(graph.grouped_by.get(kind, 'AZ'))} "
                     f"({graph.node_counts[kind]:,} → {boxes:,} boxes).")
    ignored = graph.ignored_nodes + graph.ignored_edges
    if ignored:
        notes.append(f"Ignored {ignored:,} malformed node or edge entries.")
    return notes


def fleet_panel(data: RunData) -> Panel | None:
    """The "Fleet and traffic" panel: clients → balancers → gateways → backends, by AZ.

    Args:
        data: The run; the panel reads only ``data.graph`` and ``data.graph_error``.

    Returns:
        The panel; a notice if ``graph.json`` could not be read; ``None`` if
        the run has no ``graph.json`` or it lists no nodes.
    """
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
    body += f'<p class="note">{" ".join(_fleet_notes(graph))}</p>'
    return Panel("Fleet and traffic", body, "fleet")

