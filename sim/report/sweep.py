"""The sweep report: every KPI against every swept parameter, the latency knee, and a ranking.

:func:`write_sweep_report` takes the points of a sweep (each a set of
parameter values, an optional named variant and one summary per
replication) and writes two files into the sweep's folder:

``sweep_kpis.json``
    every KPI (:mod:`sim.metrics.kpis`) of every point with its mean and
    95 % Student-t half-width over the replications, the knee of each
    latency-vs-load curve, and the points ranked by the objective.
``report.html``
    one self-contained page (plotly.js inlined): the latency-vs-load curve
    (p99 against the utilisation of the busiest backend service, 95 % band)
    with the knee marked; one chart per KPI and swept parameter with 95 %
    bands; the ranking table.

**The knee.** The point where p99 stops growing gently with load and starts
climbing: the first utilisation at which the logarithmic slope of p99,
``d ln(p99) / d utilisation``, reaches :data:`DEFAULT_KNEE_LOG_SLOPE` (4: p99
rising about 4 % per percentage point of utilisation). The threshold is
scale-free (a fleet with 10 ms or 100 ms requests has its knee at the same
utilisation) and has a closed-form reading: an M/M/1 queue's sojourn time is
exponential with mean ``1 / (mu - lambda)``, so its p99 is proportional to
``1 / (1 - rho)`` and its log-slope is ``1 / (1 - rho)``: it passes a
threshold ``k`` at ``rho = 1 - 1/k``, 75 % for the default. Servers with
several workers (M/M/c) keep a flat curve longer and pass it later. Between
swept points the slope is the chord's, ``(ln y[i+1] - ln y[i]) / (x[i+1] -
x[i])``, placed at the chord's midpoint; the knee is interpolated linearly
between the midpoints on either side of the threshold. The sweep section's
``knee_log_slope`` changes the threshold.

**The ranking.** ``objective`` (default ``cheapest``: the lowest
``total.monthly_usd``, the summary's network and balancer dollars plus the
gateway CPU's, else the fewest ``gateway_cpu.cores_needed``) or any KPI
name (``min:NAME`` / ``max:NAME``, or ``NAME`` in its better direction),
among the points whose mean p99 is at most ``slo_p99_ms`` (no SLO when
absent); points that miss the SLO follow, marked.
"""

from __future__ import annotations

import datetime as _dt
import math
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go

from sim.files import atomic_write_json
from sim.metrics.kpis import Estimate, group_rank, kpi_estimates, kpi_meta, same_everywhere
from sim.report.common import (
    REPORT_FILE,
    Column,
    HeaderItems,
    Panel,
    esc,
    figure_html,
    header_cell,
    page_html,
    panels_html,
    table,
    write_atomic,
)

#: The knee's threshold on d ln(p99) / d utilisation (M/M/1 passes it at 1 - 1/4 = 75 % utilisation).
DEFAULT_KNEE_LOG_SLOPE = 4.0
#: The default objective of the ranking.
DEFAULT_OBJECTIVE = "cheapest"
#: The KPIs "cheapest" tries, in order: dollars a month, then gateway cores.
CHEAPEST_KPIS = ("total.monthly_usd", "gateway_cpu.cores_needed")
#: The latency and load KPIs of the knee.
P99 = "latency.p99_ms"
LOAD = "backend.busiest_utilization"
#: The file of the numbers.
SWEEP_KPIS_FILE = "sweep_kpis.json"
#: One colour per curve (Okabe-Ito first), as the comparison report.
COLOURS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#882255",
           "#44aa99", "#999933", "#aa4499", "#332288")
#: The pseudo-parameter for named variants.
VARIANT = "variant"


# --------------------------------------------------------------------------- the knee

@dataclass(frozen=True)
class Knee:
    """Where a latency curve's log-slope reaches the threshold.

    Attributes:
        status: ``"found"``; ``"below_range"`` (already steeper than the
            threshold between the two lowest loads swept); ``"not_reached"``
            (never as steep within the range); ``"too_few_points"`` (under two
            loads with a positive latency).
        x: The load (utilisation) at the knee, when found.
        y: The latency there (interpolated log-linearly between the points), when found.
        threshold: The log-slope threshold used.
        slopes: Each chord's midpoint and log-slope, in load order.
    """

    status: str
    x: float | None
    y: float | None
    threshold: float
    slopes: tuple[tuple[float, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """For JSON."""
        return {"status": self.status, "utilization": self.x, "p99_ms": self.y, "log_slope_threshold": self.threshold,
                "chord_log_slopes": [{"at": x, "log_slope": s} for x, s in self.slopes]}


def find_knee(x: Sequence[float], y: Sequence[float], log_slope: float = DEFAULT_KNEE_LOG_SLOPE) -> Knee:
    """The knee of a latency curve ``y(x)``: where ``d ln y / d x`` first reaches ``log_slope``.

    Args:
        x: The loads (utilisations, 0 to 1), any order; equal loads are averaged.
        y: The latencies at those loads (points with a non-positive or
            non-finite latency or load are left out).
        log_slope: The threshold on ``d ln y / d x``.

    Returns:
        The :class:`Knee`.
    """
    by_x: dict[float, list[float]] = {}
    for xi, yi in zip(x, y, strict=True):
        if xi is not None and yi is not None and math.isfinite(xi) and math.isfinite(yi) and yi > 0:
            by_x.setdefault(float(xi), []).append(math.log(yi))
    xs = sorted(by_x)
    ly = [math.fsum(by_x[v]) / len(by_x[v]) for v in xs]
    if len(xs) < 2:
        return Knee("too_few_points", None, None, log_slope)
    slopes = tuple(((xs[i] + xs[i + 1]) / 2, (ly[i + 1] - ly[i]) / (xs[i + 1] - xs[i])) for i in range(len(xs) - 1))
    if slopes[0][1] >= log_slope:
        return Knee("below_range", None, None, log_slope, slopes)
    for (m0, s0), (m1, s1) in zip(slopes, slopes[1:], strict=False):
        if s1 >= log_slope:
            at = m0 + (log_slope - s0) * (m1 - m0) / (s1 - s0)
            # The latency there: log-linear between the swept points around it.
            i = max(j for j in range(len(xs)) if xs[j] <= at) if at >= xs[0] else 0
            i = min(i, len(xs) - 2)
            frac = (at - xs[i]) / (xs[i + 1] - xs[i])
            return Knee("found", at, math.exp(ly[i] + frac * (ly[i + 1] - ly[i])), log_slope, slopes)
    return Knee("not_reached", None, None, log_slope, slopes)


def knee_sentence(threshold: float) -> str:
    """The knee's definition in words, with the M/M/1 utilisation that passes it."""
    mm1 = 1 - 1 / threshold if threshold > 1 else None
    text = (f"The knee is where p99 starts rising faster than {threshold:g} % per percentage point of "
            f"utilisation (d ln p99 / d utilisation ≥ {threshold:g}, from the chords between swept points)")
    if mm1 is not None:
        text += (f"; an M/M/1 queue, whose p99 is proportional to 1 / (1 − ρ), passes that slope at "
                 f"ρ = 1 − 1/{threshold:g} = {mm1:.0%}")
    return text + ". Set knee_log_slope in the sweep section to change it."


# --------------------------------------------------------------------------- points

@dataclass
class Point:
    """One point of the sweep and its KPIs over the replications."""

    label: str
    params: dict[str, Any]
    variant: str | None
    replications: int
    estimates: dict[str, Estimate] = field(default_factory=dict)

    def mean(self, name: str) -> float | None:
        """A KPI's mean, None when the point has none."""
        e = self.estimates.get(name)
        return e.mean if e is not None else None

    def coords(self) -> dict[str, Any]:
        """Parameter values, with the variant as the pseudo-parameter ``variant`` when there is one."""
        out = dict(self.params)
        if self.variant is not None:
            out[VARIANT] = self.variant
        return out


def _points(raw: Sequence[Mapping[str, Any]]) -> list[Point]:
    out = []
    for i, p in enumerate(raw):
        summaries = [s for s in (p.get("summaries") or []) if isinstance(s, Mapping)]
        params = p.get("params") if isinstance(p.get("params"), Mapping) else {}
        out.append(Point(label=str(p.get("label") or f"point {i + 1}"), params=dict(params),
                         variant=None if p.get("variant") is None else str(p.get("variant")),
                         replications=len(summaries), estimates=kpi_estimates(summaries)))
    return out


def _value_key(v: Any) -> str:
    return repr(v)


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def swept_parameters(points: Sequence[Point]) -> list[str]:
    """The parameters (and ``variant``) that take more than one value across the points, in first-seen order."""
    names: dict[str, None] = {}
    for p in points:
        names.update(dict.fromkeys(p.coords()))
    return [n for n in names if len({_value_key(p.coords().get(n)) for p in points}) > 1]


def _others_label(coords: Mapping[str, Any], keep: Sequence[str]) -> str:
    return ", ".join(f"{k}={coords[k]}" for k in keep if k in coords) or "all points"


def _curves(points: Sequence[Point], along: str, swept: Sequence[str]) -> dict[str, list[Point]]:
    """The points grouped by every swept coordinate except ``along`` (one curve each), in first-seen order."""
    others = [n for n in swept if n != along]
    out: dict[str, list[Point]] = {}
    for p in points:
        out.setdefault(_others_label(p.coords(), others), []).append(p)
    return out


def _ordered(points: Sequence[Point], along: str) -> tuple[list[Point], list[Any]]:
    """The points of one curve in the order of ``along`` (numbers ascending; other values as they came)."""
    values = [p.coords().get(along) for p in points]
    if _numeric(values):
        pairs = sorted(zip(values, range(len(points)), strict=True))
        return [points[i] for _, i in pairs], [v for v, _ in pairs]
    return list(points), [str(v) for v in values]


def load_parameter(points: Sequence[Point], swept: Sequence[str], wanted: str | None) -> str | None:
    """The swept parameter the latency curves run along.

    ``wanted`` when it is swept, else the numeric parameter whose values track
    the busiest utilisation best (Spearman's rank correlation, by absolute value).
    """
    if wanted in swept:
        return wanted
    numeric = [n for n in swept if _numeric([p.coords().get(n) for p in points])]
    best, score = None, -1.0
    for n in numeric:
        pairs = [(p.coords().get(n), p.mean(LOAD)) for p in points if p.mean(LOAD) is not None]
        if len(pairs) < 3 or len({a for a, _ in pairs}) < 2 or len({b for _, b in pairs}) < 2:
            continue
        from scipy.stats import spearmanr

        rho = abs(float(spearmanr([a for a, _ in pairs], [b for _, b in pairs]).statistic))
        if math.isfinite(rho) and rho > score:
            best, score = n, rho
    return best if best is not None else (numeric[0] if numeric else None)


# --------------------------------------------------------------------------- objective

@dataclass(frozen=True)
class Objective:
    """What the ranking minimises or maximises."""

    #: As configured ("cheapest", "min:latency.p99_ms", ...).
    spec: str
    #: The KPI it ranks by (None: none of the points has it).
    kpi: str | None
    #: "min" or "max".
    sense: str
    note: str = ""


def resolve_objective(spec: str, points: Sequence[Point]) -> Objective:
    """The KPI and direction of an objective spec (``cheapest``, ``min:NAME``, ``max:NAME`` or ``NAME``)."""
    spec = str(spec or DEFAULT_OBJECTIVE).strip()
    if spec == "cheapest":
        for name in CHEAPEST_KPIS:
            if points and all(p.mean(name) is not None for p in points):
                return Objective(spec, name, "min")
        return Objective(spec, None, "min", "no point has dollars (add cost: to the experiment) or gateway cores "
                                            "(gateway CPU accounting): the points are ranked by p99 instead")
    sense, _, name = spec.partition(":") if spec.startswith(("min:", "max:")) else ("", "", spec)
    if not sense:
        sense = "max" if kpi_meta(name).better == "higher" else "min"
    if not any(p.mean(name) is not None for p in points):
        return Objective(spec, None, sense, f"no point has the KPI {name}: the points are ranked by p99 instead")
    return Objective(spec, name, sense)


def rank_points(points: Sequence[Point], objective: Objective, slo_p99_ms: float | None) -> list[dict[str, Any]]:
    """The points ranked: those meeting the SLO first, by the objective, then the others; ties by p99.

    Each row: ``rank``, ``label``, ``params``, ``variant``, ``objective`` (mean
    and ci95), ``p99_ms`` (mean and ci95), ``meets_slo`` (mean p99 at most the
    SLO; None without one) and ``meets_slo_95`` (the 95 % interval's upper end
    at most the SLO).
    """
    kpi = objective.kpi or P99
    sign = -1.0 if objective.sense == "max" and objective.kpi else 1.0

    def row(p: Point) -> dict[str, Any]:
        p99, obj = p.estimates.get(P99), p.estimates.get(kpi)
        meets = meets95 = None
        if slo_p99_ms is not None:
            meets = p99 is not None and p99.mean <= slo_p99_ms
            meets95 = p99 is not None and p99.mean + (p99.half_width or 0.0) <= slo_p99_ms
        return {"label": p.label, "params": p.params, "variant": p.variant,
                "objective": obj.to_dict() if obj else None, "p99_ms": p99.to_dict() if p99 else None,
                "meets_slo": meets, "meets_slo_95": meets95}

    def key(item: tuple[Point, dict[str, Any]]):
        p, r = item
        obj, p99 = p.mean(kpi), p.mean(P99)
        return (r["meets_slo"] is False, obj is None, sign * obj if obj is not None else 0.0,
                p99 if p99 is not None else math.inf)

    ranked = sorted(((p, row(p)) for p in points), key=key)
    return [{"rank": i + 1, **r} for i, (_, r) in enumerate(ranked)]


# --------------------------------------------------------------------------- numbers

def _fmt(name: str, est: Mapping[str, Any] | Estimate | None, column: Column | None = None) -> str:
    if est is None:
        return "—"
    mean, hw = (est.mean, est.half_width) if isinstance(est, Estimate) else (est.get("mean"), est.get("ci95"))
    column = column or _column(name, [(mean, hw)])
    return column(mean, hw)


def _column(name: str, cells: Sequence[tuple[float | None, float | None]]) -> Column:
    meta = kpi_meta(name)
    return Column.of([m for m, _ in cells], [h for _, h in cells], scale=100.0 if meta.unit == "ratio" else 1.0,
                     integer=meta.unit == "count")


def _unit(name: str) -> str:
    unit = kpi_meta(name).unit
    return {"ratio": "%", "count": ""}.get(unit, unit)


def sweep_numbers(points: Sequence[Point], experiment: Mapping[str, Any]) -> dict[str, Any]:
    """``sweep_kpis.json``'s content (see :func:`write_sweep_report`)."""
    sweep = experiment.get("sweep") if isinstance(experiment.get("sweep"), Mapping) else {}
    threshold = float(sweep.get("knee_log_slope") or DEFAULT_KNEE_LOG_SLOPE)
    slo = sweep.get("slo_p99_ms")
    slo = float(slo) if isinstance(slo, int | float) and not isinstance(slo, bool) else None
    objective = resolve_objective(sweep.get("objective") or DEFAULT_OBJECTIVE, points)
    swept = swept_parameters(points)
    along = load_parameter(points, swept, sweep.get("load_parameter"))
    names: dict[str, None] = {}
    for p in points:
        names.update(dict.fromkeys(p.estimates))
    order = sorted(names, key=lambda k: (group_rank(k), list(names).index(k)))
    constant = [n for n in order if len(points) > 1 and same_everywhere([p.estimates.get(n) for p in points])]
    knees = []
    for label, curve in (_curves(points, along, swept).items() if along else [("all points", list(points))]):
        knee = find_knee([p.mean(LOAD) for p in curve], [p.mean(P99) for p in curve], threshold)
        knees.append({"curve": label, **knee.to_dict()})
    return {
        "experiment": {k: experiment.get(k) for k in ("name", "description", "seed", "replications", "sweep")},
        "settings": {"objective": objective.spec, "objective_kpi": objective.kpi, "objective_sense": objective.sense,
                     "objective_note": objective.note, "slo_p99_ms": slo, "knee_log_slope": threshold,
                     "load_parameter": along, "load_kpi": LOAD, "latency_kpi": P99, "confidence": 0.95},
        "swept": swept,
        "kpis": {n: kpi_meta(n).to_dict() for n in order},
        "constant": constant,
        "points": [{"label": p.label, "params": p.params, "variant": p.variant, "replications": p.replications,
                    "kpis": {n: p.estimates[n].to_dict() for n in order if n in p.estimates}} for p in points],
        "knees": knees,
        "ranking": rank_points(points, objective, slo),
    }


# --------------------------------------------------------------------------- figures

def _band_traces(fig: go.Figure, xs: Sequence[Any], ests: Sequence[Estimate | None], name: str, colour: str,
                 scale: float = 1.0, group: str | None = None, show_legend: bool = True) -> None:
    """A mean line with markers and its 95 % band (the band only where there is a half-width)."""
    keep = [(x, e) for x, e in zip(xs, ests, strict=True) if e is not None]
    if not keep:
        return
    x = [k for k, _ in keep]
    mean = [e.mean * scale for _, e in keep]
    hw = [(e.half_width or 0.0) * scale for _, e in keep]
    group = group or name
    if any(hw):
        fig.add_trace(go.Scatter(x=x, y=[m + h for m, h in zip(mean, hw, strict=True)], mode="lines",
                                 line={"width": 0, "color": colour}, hoverinfo="skip", showlegend=False,
                                 legendgroup=group))
        fig.add_trace(go.Scatter(x=x, y=[m - h for m, h in zip(mean, hw, strict=True)], mode="lines",
                                 line={"width": 0, "color": colour}, fill="tonexty", fillcolor=_rgba(colour, 0.18),
                                 hoverinfo="skip", showlegend=False, legendgroup=group))
    fig.add_trace(go.Scatter(x=x, y=mean, mode="lines+markers", name=name, line={"color": colour, "width": 2},
                             legendgroup=group, showlegend=show_legend,
                             customdata=hw, hovertemplate="%{y:.4g} ± %{customdata:.2g}"))


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


def knee_panel(points: Sequence[Point], numbers: Mapping[str, Any]) -> Panel | None:
    """p99 against the busiest service's utilisation, one curve per combination of the other parameters, knees marked."""
    if not any(p.mean(LOAD) is not None and p.mean(P99) is not None for p in points):
        return None
    settings = numbers["settings"]
    along, swept = settings["load_parameter"], numbers["swept"]
    curves = _curves(points, along, swept) if along else {"all points": list(points)}
    fig = go.Figure()
    rows = []
    for i, ((label, curve), knee) in enumerate(zip(curves.items(), numbers["knees"], strict=True)):
        colour = COLOURS[i % len(COLOURS)]
        pts = sorted((p for p in curve if p.mean(LOAD) is not None), key=lambda p: p.mean(LOAD))
        _band_traces(fig, [p.mean(LOAD) * 100 for p in pts], [p.estimates.get(P99) for p in pts], esc(label),
                     colour)
        if knee["status"] == "found":
            fig.add_trace(go.Scatter(x=[knee["utilization"] * 100], y=[knee["p99_ms"]], mode="markers+text",
                                     marker={"symbol": "x", "size": 13, "color": colour, "line": {"width": 2}},
                                     text=["knee"], textposition="top left", name=esc(f"knee: {label}"),
                                     showlegend=False, hovertemplate="knee at %{x:.1f} % utilisation"))
            fig.add_vline(x=knee["utilization"] * 100, line={"color": colour, "width": 1, "dash": "dot"})
        where = {"found": None, "below_range": "below the range swept (already steeper at the lowest load)",
                 "not_reached": "not reached in the range swept",
                 "too_few_points": "too few points"}.get(knee["status"], knee["status"])
        rows.append([esc(label),
                     esc(f"{knee['utilization']:.1%}") if where is None else esc(where),
                     esc(f"{knee['p99_ms']:,.1f}") if where is None else "—"])
    slo = settings["slo_p99_ms"]
    if slo is not None:
        fig.add_hline(y=slo, line={"color": "#52606d", "width": 1.5, "dash": "dash"},
                      annotation_text=esc(f"SLO {slo:g} ms"), annotation_position="top left")
    fig.update_xaxes(title_text="utilisation of the busiest backend service (%)")
    fig.update_yaxes(title_text="p99 latency (ms)", rangemode="tozero")
    body = figure_html(fig, "fig-sweep-knee", 440, hovermode="closest")
    body += table(["Curve", "Knee (utilisation)", header_cell("p99 at the knee", "ms")], rows, cls="kpi knees")
    along_text = f"along {along}" if along else "over every point"
    body += (f'<p class="note">{esc(knee_sentence(settings["knee_log_slope"]))} One curve per combination of '
             f"the other swept values, {esc(along_text)}; bands are 95 % confidence intervals over the "
             "replications; the slopes are taken on the means.</p>")
    return Panel("Latency against load: the knee", body, "knee")


def parameter_panels(points: Sequence[Point], numbers: Mapping[str, Any]) -> list[Panel]:
    """One panel per swept parameter: one chart per KPI that varies, a curve (with its 95 % band) per combination of the others."""
    swept = numbers["swept"]
    names = [n for n in numbers["kpis"] if n not in set(numbers["constant"])]
    panels = []
    for pi, param in enumerate(swept):
        curves = _curves(points, param, swept)
        parts, group = [], None
        for ki, name in enumerate(names):
            meta = kpi_meta(name)
            if meta.group != group:
                if group is not None:
                    parts.append("</div>")
                group = meta.group
                parts.append(f'<h3>{esc(group)}</h3><div class="grid2">')
            fig = go.Figure()
            scale = 100.0 if meta.unit == "ratio" else 1.0
            for ci, (label, curve) in enumerate(curves.items()):
                ordered, xs = _ordered(curve, param)
                _band_traces(fig, xs, [p.estimates.get(name) for p in ordered], esc(label),
                             COLOURS[ci % len(COLOURS)], scale=scale, show_legend=False)
            unit = _unit(name)
            better = {"lower": " · lower is better", "higher": " · higher is better"}.get(meta.better, "")
            fig.update_layout(title={"text": esc(name) + (f" ({esc(unit)})" if unit else ""),
                                     "font": {"size": 12}, "x": 0, "xanchor": "left"})
            fig.update_xaxes(title_text=esc(param))
            parts.append(f'<div title="{esc(name + better)}">'
                         + figure_html(fig, f"fig-sweep-{pi}-{ki}", 260, hovermode="closest",
                                       layout={"margin": {"l": 56, "r": 12, "t": 32, "b": 44}})
                         + "</div>")
        if group is not None:
            parts.append("</div>")
        note = ("Mean over the replications with its 95 % confidence band (Student t); one curve per "
                "combination of the other swept values. Ratios in percent.")
        legend = "".join(f'<span class="curve"><span class="swatch" style="background:{COLOURS[ci % len(COLOURS)]}">'
                         f"</span> {esc(label)}</span>" for ci, label in enumerate(curves))
        panels.append(Panel(f"KPIs against {param}", f'<p class="legend">{legend}</p>' + "".join(parts)
                            + f'<p class="note">{esc(note)}</p>', f"param-{pi}"))
    return panels


def ranking_panel(points: Sequence[Point], numbers: Mapping[str, Any]) -> Panel:
    """The points ranked by the objective under the SLO."""
    settings = numbers["settings"]
    kpi = settings["objective_kpi"] or P99
    ranking = numbers["ranking"]
    obj_col = _column(kpi, [((r["objective"] or {}).get("mean"), (r["objective"] or {}).get("ci95"))
                            for r in ranking])
    p99_col = _column(P99, [((r["p99_ms"] or {}).get("mean"), (r["p99_ms"] or {}).get("ci95")) for r in ranking])
    slo = settings["slo_p99_ms"]
    rows = []
    for r in ranking:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
        if r["variant"] is not None:
            params = f"{params}, variant {r['variant']}" if params else f"variant {r['variant']}"
        meets = "—"
        if slo is not None:
            meets = ('<span class="ok">yes</span>' if r["meets_slo_95"] else
                     '<span class="warnbg">yes (mean; the 95 % interval reaches past it)</span>'
                     if r["meets_slo"] else '<span class="bad">no</span>')
        rows.append([esc(r["rank"]), esc(r["label"]), f"<code>{esc(params)}</code>",
                     esc(_fmt(kpi, r["objective"], obj_col)), esc(_fmt(P99, r["p99_ms"], p99_col)), meets])
    sense = "highest" if settings["objective_sense"] == "max" and settings["objective_kpi"] else "lowest"
    headers = ["Rank", "Point", "Parameters", header_cell(f"{kpi}", _unit(kpi), sense + " first"),
               header_cell("p99", "ms"), header_cell("Meets the SLO", f"p99 ≤ {slo:g} ms" if slo is not None
                                                     else "no SLO set")]
    body = '<div class="scroll">' + table(headers, rows, cls="kpi ranking") + "</div>"
    text = (f"Objective: {settings['objective']} ({sense} {kpi} first)"
            + (f"; {settings['objective_note']}" if settings["objective_note"] else "")
            + (f". Points whose mean p99 is at most the SLO ({slo:g} ms) come first; the others follow."
               if slo is not None else ". No SLO set (slo_p99_ms in the sweep section).")
            + " Change them with objective: and slo_p99_ms: in the sweep section.")
    return Panel("Ranking", body + f'<p class="note">{esc(text)}</p>', "ranking")


def constant_panel(numbers: Mapping[str, Any]) -> Panel | None:
    """The KPIs with the same value at every point (left out of the charts)."""
    names = numbers["constant"]
    if not names:
        return None
    first = numbers["points"][0]["kpis"]
    items = [f"{n} = {_fmt(n, first.get(n))}{(' ' + _unit(n)) if _unit(n) else ''}" for n in names]
    return Panel("The same at every point", f'<p class="note">{esc("; ".join(items))}.</p>', "constant")


# --------------------------------------------------------------------------- page

SWEEP_CSS = """
main, header.page, footer.page { max-width:1360px; }
table.ranking td:nth-child(2), table.ranking td:nth-child(3), table.ranking th:nth-child(2),
table.ranking th:nth-child(3) { text-align:left; }
table.knees td, table.knees th { text-align:left; }
/* auto-fill, not auto-fit: each chart is drawn as its div arrives, and with auto-fit the first ones
   would be drawn as wide as the empty tracks they do not yet share. */
.grid2 { grid-template-columns:repeat(auto-fill,minmax(320px,1fr)); }
.grid2 > div { min-width:0; }
p.legend { margin:0 0 6px; font-size:12px; }
p.legend .curve { margin-right:16px; white-space:nowrap; }
"""


def _header(numbers: Mapping[str, Any], points: Sequence[Point]) -> str:
    exp = numbers["experiment"]
    items = HeaderItems()
    items.add("seed", exp.get("seed"))
    items.add("replications", exp.get("replications"))
    items.add("points", len(points))
    dl = "".join(f"<div><dt>{esc(k)}</dt><dd>{v}</dd></div>" for k, v in items)
    sweep = exp.get("sweep") if isinstance(exp.get("sweep"), Mapping) else {}
    axes = []
    for kind in ("grid", "zip"):
        for path, values in (sweep.get(kind) or {}).items() if isinstance(sweep.get(kind), Mapping) else ():
            axes.append(f"{kind} {path}: {values}")
    desc = exp.get("description")
    return ('<header class="page"><p class="kicker">fleetsim sweep</p>'
            f"<h1>{esc(exp.get('name') or 'sweep')}</h1>"
            + (f'<p class="description">{esc(desc)}</p>' if desc else "")
            + (f'<dl class="meta">{dl}</dl>' if dl else "")
            + (f'<p class="note">{esc("; ".join(axes))}</p>' if axes else "") + "</header>")


def write_sweep_report(out_dir: pathlib.Path, points: list[dict], experiment: dict) -> pathlib.Path:
    """Write a sweep's ``report.html`` and ``sweep_kpis.json`` into ``out_dir`` (atomically).

    Args:
        out_dir: The sweep's folder (created if absent).
        points: Each ``{"label": str, "params": {dotted path: value}, "variant": str | None,
            "summaries": [one summary dict per replication]}``.
        experiment: ``{"name", "description", "seed", "replications", "sweep": {"grid": {...},
            "zip": {...}}}``; the sweep section's optional ``objective`` (default ``cheapest``),
            ``slo_p99_ms`` (default none), ``knee_log_slope`` (default
            :data:`DEFAULT_KNEE_LOG_SLOPE`) and ``load_parameter`` (default: the swept parameter
            that tracks utilisation best) set the ranking and the knee.

    Returns:
        The page's path, ``out_dir/report.html``.

    Raises:
        OSError: A file cannot be written.
    """
    out_dir = pathlib.Path(out_dir)
    pts = _points(points)
    numbers = sweep_numbers(pts, experiment)
    atomic_write_json(out_dir / SWEEP_KPIS_FILE, numbers)
    panels = [p for p in (knee_panel(pts, numbers), ranking_panel(pts, numbers)) if p is not None]
    panels += parameter_panels(pts, numbers)
    extra = constant_panel(numbers)
    if extra is not None:
        panels.append(extra)
    generated = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    footer = (f'<footer class="page"><dl><dt>report</dt><dd>generated {esc(generated)} from {len(pts)} points; '
              f"numbers in <code>{esc(SWEEP_KPIS_FILE)}</code></dd></dl></footer>")
    page = page_html(f"{numbers['experiment'].get('name') or 'sweep'} — fleetsim sweep", _header(numbers, pts),
                     panels_html(panels), footer, SWEEP_CSS)
    return write_atomic(out_dir / REPORT_FILE, page)


__all__ = ["DEFAULT_KNEE_LOG_SLOPE", "DEFAULT_OBJECTIVE", "SWEEP_KPIS_FILE", "Knee", "Objective", "find_knee",
           "knee_sentence", "rank_points", "resolve_objective", "sweep_numbers", "write_sweep_report"]
