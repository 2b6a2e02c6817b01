"""The "Host health" panel: outlier detection, active health checks, panic mode, connection pools.

It covers outlier detection, active health checks, panic mode and the
gateways' upstream connection pools.

Data (all optional; older runs have none of it):

* ``summary.json`` ``outlier`` — ``ejections`` (enforced), ``by_reason``
  (enforced, by reason), ``detected`` (found, enforced or not, by reason) and
  ``overflow`` (ejections refused by ``max_ejection_percent``);
* ``summary.json`` ``health_checks`` — ``probes``, ``probe_rate_per_s``,
  ``failures``, ``timeouts``;
* ``summary.json`` ``gateway.<pool>`` — the connection-pool counters
  ``connects``, ``connect_timeouts``, ``cx_overflow``, ``pending_overflow``;
* ``timeseries.csv`` — ``healthy_hosts``, ``ejected_hosts``,
  ``hc_failed_hosts``, ``panic_clusters`` (per second, time-averaged and summed
  over every gateway instance's view of its clusters) and
  ``health_check_probes`` (probes sent per second);
* ``config.resolved.yaml`` — which pools run outlier detection and health
  checks, and with which settings.

The panel is skipped when none of outlier detection and health checks is
configured or left a trace: the connection-pool counters alone (present in
every recent run) are shown in the Gateways panel instead
(:func:`pool_table`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sim.report.common import (
    Column,
    Panel,
    RunData,
    as_number,
    count_label,
    dig,
    esc,
    figure_html,
    fmt_value,
    header_cell,
    pretty_key,
    replications_note,
    shade_run,
    table,
    unit_html,
)

C_HEALTHY = "#009e73"
C_EJECTED = "#e69f00"
C_HC_FAILED = "#cc79a7"
C_PANIC = "#d55e00"
C_PROBES = "#0072b2"

#: Time-series columns of host health (see the module docstring).
HOST_COLUMNS = ("healthy_hosts", "ejected_hosts", "hc_failed_hosts", "panic_clusters",
                "health_check_probes")

#: Connection-pool counters of ``summary.json`` ``gateway.<pool>``: key, header,
#: the breaker or setting behind it, what it means.
POOL_FIELDS = (
    ("connects", "Connects", "", "connections opened"),
    ("connect_timeouts", "Connect timeouts", "connect_timeout_s",
     "connection attempts that timed out"),
    ("cx_overflow", "Connection overflow", "max_connections",
     "tries that found the pool full and waited for a connection (not refused)"),
    ("pending_overflow", "Pending overflow", "max_pending_requests",
     "tries refused with 503 because too many were waiting for a connection"),
)
POOL_KEYS = frozenset(f[0] for f in POOL_FIELDS)

#: Outlier-ejection reasons in the order Envoy checks them.
REASON_ORDER = ("consecutive_5xx", "consecutive_gateway_failure", "success_rate",
                "failure_percentage")


# --------------------------------------------------------------------------
# Reading the data
# --------------------------------------------------------------------------


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _counts(value: Any) -> dict[str, float]:
    """A ``{reason: count}`` mapping with numeric counts only."""
    return {str(k): v for k, v in ((k, as_number(x)) for k, x in _mapping(value).items())
            if v is not None}


def _positive(values: Sequence[float | None] | None) -> bool:
    return bool(values) and any(v is not None and v > 0 for v in values)


def _series(data: RunData, name: str) -> list[float | None] | None:
    return data.timeseries.get(name) if data.timeseries is not None else None


def pool_clusters(data: RunData) -> dict[str, Mapping[str, Any]]:
    """``topology.gateways.<pool>.cluster`` of the resolved configuration, by pool."""
    gateways = dig(data.config, ("topology", "gateways"))
    out = {}
    for pool, spec in _mapping(gateways).items():
        cluster = _mapping(spec).get("cluster") if isinstance(spec, Mapping) else None
        if isinstance(cluster, Mapping):
            out[str(pool)] = cluster
    return out


def _configured(data: RunData, feature: str) -> list[str]:
    """Pools whose cluster configures ``feature`` (``outlier_detection``, ``health_check``)."""
    return sorted(p for p, c in pool_clusters(data).items() if isinstance(c.get(feature), Mapping))


def _outlier_active(data: RunData) -> bool:
    o = _mapping(data.summary.get("outlier"))
    numbers = [as_number(o.get("ejections")), as_number(o.get("overflow"))]
    numbers += list(_counts(o.get("by_reason")).values()) + list(_counts(o.get("detected")).values())
    return any(v for v in numbers if v) or _positive(_series(data, "ejected_hosts"))


def _health_checks_active(data: RunData) -> bool:
    h = _mapping(data.summary.get("health_checks"))
    return (any(as_number(h.get(k)) for k in ("probes", "failures", "timeouts"))
            or _positive(_series(data, "health_check_probes"))
            or _positive(_series(data, "hc_failed_hosts")))


def host_health_present(data: RunData) -> bool:
    """Whether the run used outlier detection or health checks (the panel is shown)."""
    return bool(_configured(data, "outlier_detection") or _configured(data, "health_check")
                or _outlier_active(data) or _health_checks_active(data)
                or any(_positive(_series(data, c)) for c in HOST_COLUMNS))


# --------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------


def _count(value: float | None, unit: str = "", column: Column | None = None) -> str:
    text = esc(column(value) if column is not None else fmt_value(value, integer=True))
    return text + (unit_html(unit) if value is not None and unit else "")


def _muted(text: str) -> str:
    return f'<span class="muted">{esc(text)}</span>' if text else ""


def _share(part: float | None, whole: float | None, what: str) -> str:
    if part is None or not whole:
        return ""
    return f"{100 * part / whole:.1f} % of {what}"


def _seconds(value: Any) -> str:
    v = as_number(value)
    return "—" if v is None else f"{v:g} s"


def _outlier_setting(cluster: Mapping[str, Any]) -> str:
    od = cluster.get("outlier_detection")
    if not isinstance(od, Mapping):
        return _muted("off")
    parts = []
    for key, label in (("consecutive_5xx", "consecutive 5xx"),):
        if as_number(od.get(key)) is not None:
            parts.append(f"{label} {fmt_value(od[key], integer=True)}")
    if as_number(od.get("max_ejection_percent")) is not None:
        parts.append(f"max ejection {fmt_value(od['max_ejection_percent'], integer=True)} %")
    if as_number(od.get("base_ejection_time_s")) is not None:
        parts.append(f"base ejection {_seconds(od['base_ejection_time_s'])}")
    if as_number(od.get("interval_s")) is not None:
        parts.append(f"interval {_seconds(od['interval_s'])}")
    if od.get("always_eject_one_host") is True:
        parts.append("always eject one host")
    return esc(" · ".join(parts) or "on")


def _health_check_setting(cluster: Mapping[str, Any]) -> str:
    hc = cluster.get("health_check")
    if not isinstance(hc, Mapping):
        return _muted("off")
    parts = []
    if as_number(hc.get("interval_s")) is not None:
        parts.append(f"every {_seconds(hc['interval_s'])}")
    if as_number(hc.get("timeout_s")) is not None:
        parts.append(f"timeout {_seconds(hc['timeout_s'])}")
    if as_number(hc.get("unhealthy_threshold")) is not None:
        parts.append(f"unhealthy after {fmt_value(hc['unhealthy_threshold'], integer=True)}")
    if as_number(hc.get("healthy_threshold")) is not None:
        parts.append(f"healthy after {fmt_value(hc['healthy_threshold'], integer=True)}")
    return esc(" · ".join(parts) or "on")


def _settings_table(data: RunData) -> str:
    clusters = pool_clusters(data)
    if not any(isinstance(c.get("outlier_detection"), Mapping)
               or isinstance(c.get("health_check"), Mapping) for c in clusters.values()):
        return ""
    rows = []
    for pool in sorted(clusters):
        cluster = clusters[pool]
        panic = as_number(dig(cluster, ("common_lb_config", "healthy_panic_threshold")))
        rows.append([f"<strong>{esc(pool)}</strong>", _outlier_setting(cluster),
                     _health_check_setting(cluster),
                     esc(f"{panic:g} %") if panic is not None else _muted("—")])
    return ("<h3>Configured</h3>"
            + table(["Pool", "Outlier detection", "Health checks", "Panic below"], rows,
                    cls="kpi wide settings"))


def _ejection_hint(data: RunData, overflow: float | None, ejections: float | None) -> str:
    """Why detected outliers were not ejected, when ``max_ejection_percent`` refused them."""
    if not overflow:
        return ""
    percents = sorted({int(p) for c in pool_clusters(data).values()
                       if isinstance(c.get("outlier_detection"), Mapping)
                       and c["outlier_detection"].get("always_eject_one_host") is not True
                       and (p := as_number(c["outlier_detection"].get("max_ejection_percent")))})
    text = (f"{fmt_value(overflow, integer=True)} ejections were refused by "
            "max_ejection_percent")
    if not ejections:
        text = "No host was ejected: " + text
    if len(percents) == 1 and percents[0] > 0:
        pct = percents[0]
        text += (f" ({pct} %: a host is ejected only while 100 × (ejected + 1) / hosts ≤ {pct}, "
                 f"so a cluster needs at least {math.ceil(100 / pct):,} hosts for one ejection, "
                 "unless always_eject_one_host is set)")
    return f'<p class="lead">{esc(text)}.</p>'


def _outlier_section(data: RunData) -> str:
    o = _mapping(data.summary.get("outlier"))
    configured = _configured(data, "outlier_detection")
    if not o and not configured:
        return ""
    ejected, detected = _counts(o.get("by_reason")), _counts(o.get("detected"))
    ejections = as_number(o.get("ejections"))
    if ejections is None and ejected:
        ejections = sum(ejected.values())
    overflow = as_number(o.get("overflow"))
    if not o and configured:
        return ("<h3>Outlier detection</h3>"
                f'<p class="note">Configured on {esc(", ".join(configured))}; '
                "this run recorded no outlier counts.</p>")
    reasons = [r for r in REASON_ORDER if r in ejected or r in detected]
    reasons += sorted((set(ejected) | set(detected)) - set(reasons))
    total_detected = sum(detected.values()) if detected else None
    det_col = Column.of([*detected.values(), total_detected], integer=True)
    ej_col = Column.of([*ejected.values(), ejections, overflow], integer=True)
    rows = [[esc(pretty_key(r)), _count(detected.get(r), column=det_col) if detected
             else _muted("—"), _count(ejected.get(r, 0.0), column=ej_col)] for r in reasons]
    rows.append(["<strong>Total</strong>",
                 f"<strong>{_count(total_detected, column=det_col)}</strong>" if detected
                 else _muted("—"),
                 f"<strong>{_count(ejections, column=ej_col)}</strong>"])
    if overflow is not None:
        rows.append([esc("Refused by max_ejection_percent")
                     + '<br><span class="muted">ejections_overflow</span>', "",
                     _count(overflow, column=ej_col)])
    per_rep = count_label(data.replications)
    body = "<h3>Outlier detection</h3>" + table(
        ["Reason", header_cell("detected", per_rep), header_cell("ejected", per_rep)], rows)
    if not reasons and not overflow:
        body += '<p class="note">No outlier was detected.</p>'
    return body + _ejection_hint(data, overflow, ejections)


def _health_check_section(data: RunData) -> str:
    h = _mapping(data.summary.get("health_checks"))
    configured = _configured(data, "health_check")
    probes = as_number(h.get("probes"))
    if not configured and not probes and not _health_checks_active(data):
        return ""
    rate, failures, timeouts = (as_number(h.get(k))
                                for k in ("probe_rate_per_s", "failures", "timeouts"))
    if not h:
        return ("<h3>Active health checks</h3>"
                f'<p class="note">Configured on {esc(", ".join(configured))}; '
                "this run recorded no health-check counts.</p>")
    throughput = as_number(data.summary.get("throughput_rps"))
    counts = Column.of([probes, failures, timeouts], integer=True)
    rate_text = ""
    if rate is not None:  # a rate, not a count: beside the probes, not in the count column
        rate_text = " · ".join(t for t in (f"{fmt_value(rate)} probes/s",
                                           _share(rate, throughput, "the request throughput"))
                               if t)
    rows = [
        [esc("Probes sent"), _count(probes, column=counts), _muted(rate_text)],
        [esc("Failed checks"), _count(failures, column=counts),
         _muted(_share(failures, probes, "probes"))],
    ]
    if timeouts is not None:
        rows.append([f'<span class="indent">{esc("of which timed out")}</span>',
                     _count(timeouts, column=counts), ""])
    return "<h3>Active health checks</h3>" + table(
        ["", header_cell("count", count_label(data.replications)), ""], rows)


def pool_table(data: RunData) -> str:
    """Connection-pool counters per gateway pool (``""`` if no pool has any)."""
    pools = _mapping(data.summary.get("gateway"))
    names = [p for p in sorted(pools) if isinstance(pools[p], Mapping)
             and any(as_number(pools[p].get(k)) is not None for k in POOL_KEYS)]
    fields = [f for f in POOL_FIELDS
              if any(as_number(pools[p].get(f[0])) is not None for p in names)]
    if not names or not fields:
        return ""
    per_rep = count_label(data.replications)
    headers = ["Pool"] + [header_cell(h, s, per_rep) for _, h, s, _ in fields]
    values = {k: [as_number(pools[p].get(k)) for p in names] for k, *_ in fields}
    sums = {k: (sum(v for v in vs if v is not None) if any(v is not None for v in vs) else None)
            for k, vs in values.items()}
    formats = {k: Column.of([*vs, sums[k]], integer=True) for k, vs in values.items()}
    rows = [[f"<strong>{esc(p)}</strong>"]
            + [_count(values[k][i], column=formats[k]) for k, *_ in fields]
            for i, p in enumerate(names)]
    if len(names) > 1:
        rows.append(["<strong>All pools</strong>"]
                    + [f"<strong>{_count(sums[k], column=formats[k])}</strong>"
                       for k, *_ in fields])
    note = " ".join(f"{h}: {meaning}." for _, h, _, meaning in fields)
    return ("<h3>Connection pools</h3>" + table(headers, rows, cls="kpi wide")
            + f'<p class="note">{esc(note)}</p>')


# --------------------------------------------------------------------------
# Chart
# --------------------------------------------------------------------------


def _peak(values: Sequence[float | None] | None, t: Sequence[float]) -> tuple[float, float] | None:
    if not values:
        return None
    best = max(((v, x) for v, x in zip(values, t, strict=False) if v is not None),
               default=None, key=lambda p: p[0])
    return best


def _host_figure(data: RunData) -> tuple[go.Figure, int, list[str]] | None:
    """Hosts (healthy, ejected, failing checks), panic and probes per second.

    Returns the figure, its height and sentences for the note below it.
    """
    ts = data.timeseries
    if ts is None:
        return None
    outlier_on = bool(_configured(data, "outlier_detection")) or _outlier_active(data)
    hc_on = bool(_configured(data, "health_check")) or _health_checks_active(data)
    host_lines = []
    for name, label, colour, wanted in (
            ("healthy_hosts", "healthy (in use)", C_HEALTHY, True),
            ("ejected_hosts", "ejected", C_EJECTED, outlier_on),
            ("hc_failed_hosts", "failing health checks", C_HC_FAILED, hc_on)):
        values = ts.get(name)
        if values is not None and (wanted or _positive(values)):
            host_lines.append((name, label, colour, values))
    if not any(_positive(v) for *_, v in host_lines):
        host_lines = []
    panic = ts.get("panic_clusters")
    probes = ts.get("health_check_probes")
    rows: list[str] = []
    if host_lines:
        rows.append("hosts")
    if _positive(panic):
        rows.append("panic")
    if _positive(probes):
        rows.append("probes")
    if not rows:
        return None
    weights = {"hosts": 0.56, "panic": 0.2, "probes": 0.24}
    total = sum(weights[r] for r in rows)
    fig = make_subplots(rows=len(rows), cols=1, shared_xaxes=True, vertical_spacing=0.07,
                        row_heights=[weights[r] / total for r in rows])
    notes: list[str] = []
    for i, row in enumerate(rows, 1):
        where = {"row": i, "col": 1}
        if row == "hosts":
            for name, label, colour, values in host_lines:
                fig.add_trace(go.Scatter(
                    x=ts.t, y=values, name=label, mode="lines", line_shape="hv",
                    line={"color": colour, "width": 2.5 if name == "healthy_hosts" else 2},
                    hovertemplate="%{y:,.2f} hosts"), **where)
            fig.update_yaxes(title_text="hosts (all views)", rangemode="tozero", **where)
        elif row == "panic":
            fig.add_trace(go.Scatter(
                x=ts.t, y=panic, name="clusters in panic", mode="lines", line_shape="hv",
                line={"color": C_PANIC, "width": 1.5}, fill="tozeroy",
                fillcolor="rgba(213,94,0,0.18)", hovertemplate="%{y:,.2f} clusters"), **where)
            fig.update_yaxes(title_text="in panic", rangemode="tozero", **where)
        else:
            fig.add_trace(go.Scatter(
                x=ts.t, y=probes, name="probes", mode="lines",
                line={"color": C_PROBES, "width": 1.5}, hovertemplate="%{y:,.1f} probes/s"),
                **where)
            fig.update_yaxes(title_text="probes/s", rangemode="tozero", **where)
    shade_run(fig, data, rows=tuple(range(1, len(rows) + 1)))
    fig.update_xaxes(title_text="simulated time (s)", row=len(rows), col=1)
    height = {1: 360, 2: 500, 3: 600}[len(rows)]

    if host_lines:
        notes.append("Host counts are time-averaged over each second and summed over every "
                     "gateway instance's view of each of its clusters: a backend host that four "
                     "gateway instances route to counts four times. Healthy hosts are those the "
                     "load balancer uses (neither ejected nor failing health checks); a host "
                     "both ejected and failing counts in both.")
        for _name, label, _, values in host_lines[1:]:
            peak = _peak(values, ts.t)
            if peak is not None and peak[0] > 0:
                notes.append(f"Peak {label}: {peak[0]:,.1f} at {fmt_value(peak[1])} s.")
    if "panic" in rows:
        notes.append("Panic mode: the healthy share of a cluster fell below "
                     "healthy_panic_threshold, so its balancer used every host, healthy or not.")
    elif panic is not None:
        notes.append("No cluster entered panic mode.")
    return fig, height, notes


# --------------------------------------------------------------------------
# Panel
# --------------------------------------------------------------------------


def host_health_panel(data: RunData) -> Panel | None:
    """Ejections by reason, health-check load, connection pools; hosts over time."""
    if not host_health_present(data):
        return None
    left = _outlier_section(data)
    right = _health_check_section(data)
    body = _settings_table(data)
    if left or right:
        body += f'<div class="grid2"><div>{left}</div><div>{right}</div></div>'
        notes = ["Counts are over the measurement window (after the warm-up)."]
        if left and _counts(_mapping(data.summary.get("outlier")).get("detected")):
            notes.append("Detected outliers include those not enforced (enforcing_* below "
                         "100 %; consecutive gateway failures and failure percentage default "
                         "to 0 %: counted, never ejected).")
        body += f'<p class="note">{esc(" ".join(notes))}</p>'
    body += pool_table(data)
    drawn = _host_figure(data)
    if drawn is not None:
        fig, height, notes = drawn
        body += "<h3>Over time</h3>" + figure_html(fig, "fig-host-health", height)
        if notes:
            body += f'<p class="note">{esc(" ".join(notes))}</p>'
        if data.timeseries is not None:
            body += replications_note(data.timeseries)
    return Panel("Host health", body, "health")
