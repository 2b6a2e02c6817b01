"""The "Control plane" panels: load, pushes, convergence, staleness, reconnect storms.

Data (absent without a ``control_plane`` section; the panels are skipped):

* ``summary.json`` ``control_plane`` — the figures of
  :meth:`sim.components.controlplane.ControlPlane.results` (whole run);
* ``timeseries.csv`` — ``cp_cpu_cores`` (busy cores, all replicas),
  ``cp_egress_bytes`` (per second), ``cp_push_queue`` (gateways queued at each
  second's end), ``cp_reconnect_attempts``, ``cp_stale_gateways`` and
  ``cp_connected_gateways``.

The run report shows one run; the comparison page puts every variant's peak
load and convergence side by side (:func:`control_plane_comparison_panel`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sim.report.common import Panel, RunData, as_number, esc, figure_html, replications_note, table

#: Summary figures, in table order: key, label, unit ("B" bytes, "B/s", "s", "" count), what it means.
FIGURES = (
    ("gateways", "Gateways", "", "subscribed gateways"),
    ("cpu_cores_peak", "CPU peak", "cores", "busiest second, all replicas"),
    ("cpu_cores_p99", "CPU p99", "cores", "99th percentile of the seconds"),
    ("egress_peak_bytes_per_s", "Egress peak", "B/s", "busiest second"),
    ("egress_p99_bytes_per_s", "Egress p99", "B/s", "99th percentile of the seconds"),
    ("egress_bytes", "Egress", "B", "every push and resync"),
    ("push_queue_peak", "Push queue peak", "", "gateways waiting for a push"),
    ("reconnect_peak_per_s", "Reconnect peak", "/s", "stream attempts in the busiest second"),
    ("reconnect_refused", "Refused streams", "", "over the request limit"),
    ("convergence_99_s", "Convergence 99 %", "s", "from a change until 99 % of gateways run it (slowest version)"),
    ("convergence_s", "Convergence", "s", "until every gateway runs it"),
    ("resync_99_s", "Resync 99 %", "s", "from a replica failure until 99 % of its gateways resynced"),
    ("resync_s", "Resync", "s", "until all of them did"),
    ("staleness_gateway_s", "Staleness", "gateway-s", "gateways behind the latest version, integrated"),
    ("disconnected_gateway_s", "Serving from cache", "gateway-s", "gateways without a stream"),
    ("gateway_apply_cpu_s", "Gateway apply CPU", "s", "CPU the gateways spent applying config"),
    ("oom_kills", "OOM kills", "", "gateways killed by a leaking apply"),
    ("rollbacks", "Rollbacks", "", "bad versions undone"),
    ("bad_version_gateway_s", "On a bad version", "gateway-s", "gateways running a version that fails requests"),
)


def _fmt(value: Any, unit: str) -> str:
    x = as_number(value)
    if value is None:
        return "not reached"
    if x is None:
        return esc(value)
    if unit in ("B", "B/s"):
        for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(x) >= scale:
                return f"{x / scale:.3g} {prefix}{unit}"
        return f"{x:.3g} {unit}"
    if unit == "":
        return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.2f}"
    return f"{x:,.3g} {esc(unit)}"


def _cp(summary: Mapping[str, Any]) -> Mapping[str, Any] | None:
    cp = summary.get("control_plane")
    return cp if isinstance(cp, Mapping) else None


def _figure(data: RunData) -> go.Figure | None:
    ts = data.timeseries
    if ts is None or ts.get("cp_cpu_cores") is None:
        return None
    rows = (("cp_cpu_cores", "CPU (cores)"), ("cp_egress_bytes", "egress (B/s)"),
            ("cp_push_queue", "push queue"), ("cp_reconnect_attempts", "reconnects /s"),
            ("cp_stale_gateways", "stale gateways"))
    rows = tuple(r for r in rows if ts.get(r[0]) is not None)
    fig = make_subplots(rows=len(rows), cols=1, shared_xaxes=True, vertical_spacing=0.04,
                        subplot_titles=[r[1] for r in rows])
    for i, (col, label) in enumerate(rows, 1):
        fig.add_trace(go.Scatter(x=ts.t, y=ts.get(col), name=label, mode="lines", line={"width": 1.5}),
                      row=i, col=1)
    fig.update_xaxes(title_text="time (s)", row=len(rows), col=1)
    fig.update_layout(showlegend=False)
    return fig


def control_plane_panel(data: RunData) -> Panel | None:
    """The control plane's load, convergence and reconnects in one run; None without a control plane."""
    cp = _cp(data.summary)
    if cp is None:
        return None
    mode = cp.get("mode")
    lead = (f"<p class=\"lead\">{esc(cp.get('push_mode', ''))} pushes from {esc(cp.get('replicas', ''))} "
            f"replica(s) to {esc(cp.get('gateways', ''))} gateways"
            + (" (control plane only: no requests simulated)" if mode == "control_plane_only" else "")
            + ".</p>")
    rows = [(esc(label), _fmt(cp.get(key), unit), esc(note)) for key, label, unit, note in FIGURES if key in cp]
    body = lead + table(["Figure", "Value", "What"], rows)
    versions = cp.get("versions")
    if isinstance(versions, Mapping) and versions:
        vrows = []
        for name, v in versions.items():
            if not isinstance(v, Mapping):
                continue
            vrows.append((esc(name), _fmt(v.get("first_change_s"), "s"), _fmt(v.get("created_s"), "s"),
                          esc(v.get("bad", "")), _fmt(v.get("acks"), ""), _fmt(v.get("nacks"), ""),
                          _fmt(v.get("converged_99_s"), "s"), _fmt(v.get("converged_s"), "s")))
        body += "<h3>Versions</h3>" + table(
            ["Version", "First change at", "Cut at", "Bad", "ACKs", "NACKs", "99 % in", "All in"], vrows)
    body += ('<p class="note">Counts cover the whole run. Convergence is measured from the first change a '
             "version carries until the gateways run it or a later version; \"not reached\": not within the "
             "run.</p>")
    fig = _figure(data)
    if fig is not None:
        body += "<h3>Over time</h3>" + figure_html(fig, "fig-control-plane", 620)
        body += replications_note(data.timeseries)
    return Panel("Control plane", body, "control-plane")


def control_plane_comparison_panel(variants: Sequence[Any]) -> Panel | None:
    """Every variant's peak load, reconnect storm and convergence side by side; None without a control plane."""
    have = [v for v in variants if v.data is not None and _cp(v.data.summary) is not None]
    if not have:
        return None
    keys = [f for f in FIGURES if f[0] in ("gateways", "cpu_cores_peak", "cpu_cores_p99", "egress_peak_bytes_per_s",
                                           "egress_bytes", "push_queue_peak", "reconnect_peak_per_s",
                                           "convergence_99_s", "convergence_s", "resync_99_s", "resync_s",
                                           "staleness_gateway_s")]
    headers = ["Variant", "Push mode"] + [f"{label}{' (' + unit + ')' if unit else ''}" for _, label, unit, _ in keys]
    rows = []
    for v in have:
        cp = _cp(v.data.summary)
        rows.append([esc(v.name), esc(cp.get("push_mode", ""))] + [_fmt(cp.get(k), u) for k, _, u, _ in keys])
    body = '<div class="scroll">' + table(headers, rows, cls="kpi compare") + "</div>"
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=["control-plane CPU (cores)", "reconnect attempts per second"])
    drawn = False
    for v in have:
        ts = v.data.timeseries
        if ts is None or ts.get("cp_cpu_cores") is None:
            continue
        drawn = True
        fig.add_trace(go.Scatter(x=ts.t, y=ts.get("cp_cpu_cores"), name=v.name, legendgroup=v.name,
                                 line={"color": v.colour, "width": 1.5}), row=1, col=1)
        fig.add_trace(go.Scatter(x=ts.t, y=ts.get("cp_reconnect_attempts"), name=v.name, legendgroup=v.name,
                                 showlegend=False, line={"color": v.colour, "width": 1.5}), row=2, col=1)
    if drawn:
        fig.update_xaxes(title_text="time (s)", row=2, col=1)
        body += figure_html(fig, "fig-cp-compare", 520)
    body += ('<p class="note">"not reached": not within the run (gateways still reconnecting or behind). '
             "Means over replications.</p>")
    return Panel("Control plane side by side", body, "control-plane")




def control_plane_only(variants: Sequence[Any]) -> bool:
    """Whether every loaded variant ran the control plane alone (no requests to compare)."""
    loaded = [v for v in variants if v.data is not None]
    return bool(loaded) and all((_cp(v.data.summary) or {}).get("mode") == "control_plane_only" for v in loaded)


def control_plane_headline(variants: Sequence[Any]) -> str:
    """The comparison's opening sentence for control-plane-only variants: peak load and time to resync."""
    parts = []
    for v in variants:
        cp = _cp(v.data.summary) if v.data is not None else None
        if cp is None:
            parts.append(f"<strong>{esc(v.name)}</strong>: no result")
            continue
        resync = cp.get("resync_s")
        back = ("every gateway resynced " + _fmt(resync, "s") + " after the failure" if resync is not None
                else "not every gateway resynced within the run")
        parts.append(f"<strong>{esc(v.name)}</strong>: CPU peak {_fmt(cp.get('cpu_cores_peak'), 'cores')}, "
                     f"egress peak {_fmt(cp.get('egress_peak_bytes_per_s'), 'B/s')}, {esc(back)}")
    return (f'<p class="headline">{"; ".join(parts)}.</p>'
            '<p class="headline-why">Control plane only: the gateways are lightweight subscribers and no '
            "requests were simulated, so the request panels are left out.</p>")


__all__ = ["FIGURES", "control_plane_comparison_panel", "control_plane_headline", "control_plane_only",
           "control_plane_panel"]
