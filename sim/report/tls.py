"""The "Connections, TLS and gateway CPU" panels: handshakes, resumption, CPU by cause, cost.

Data (all optional; runs without client connections, TLS, access logs or
CPU costs have none of it, and the panels are skipped):

* ``summary.json`` ``connections`` — per gateway pool: connections opened,
  handshakes by kind, the resumption rate, handshakes per gateway per
  second, why full handshakes were full, why connections closed, and the
  pool's TLS version, certificate and ticket-key scope;
* ``summary.json`` ``gateway_cpu`` — per pool: CPU seconds by cause, cores
  used, utilisation, the TLS share, the cores that run it at the target
  utilisation and their monthly cost (``pricing``);
* ``summary.json`` ``access_log`` — log lines, bytes, bytes shipped to the
  collector by AZ pair and purpose;
* ``timeseries.csv`` — ``tls_full_<pool>`` and ``tls_resumed_<pool>``,
  handshakes per second.

:func:`tls_comparison_panel` compares the variants of a comparison: CPU,
cores and dollars saved against the first variant, the p99 change, and for
each pair of variants that differ in ticket-key scope only, how much more
CPU the gateways spend with per-instance keys (the figure the source
article puts at 30-50%).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from sim.report.common import (
    Panel,
    RunData,
    as_number,
    dig,
    esc,
    figure_html,
    pretty_key,
    shade_run,
    table,
)

C_FULL = "#d55e00"
C_RESUMED = "#009e73"

#: CPU causes in the order the tables show them (sim.components.gateway_cpu.CPU_CAUSES).
CAUSE_ORDER = ("tls_full_handshake", "tls_resumed_handshake", "request", "retry", "upstream_connect",
               "response", "health_check", "access_log", "config_apply")


def _num(v: Any, digits: int = 3) -> str:
    x = as_number(v)
    if x is None:
        return "–"
    if x != 0 and abs(x) < 10 ** -digits:
        return f"{x:.2e}"
    return f"{x:,.{digits}f}"


def _pct(v: Any, digits: int = 1) -> str:
    x = as_number(v)
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def _counts(d: Any) -> str:
    if not isinstance(d, Mapping):
        return ""
    return ", ".join(f"{pretty_key(k)} {int(v):,}" for k, v in d.items() if as_number(v))


def _tls_label(p: Mapping[str, Any]) -> str:
    if not p.get("tls"):
        return "plain TCP"
    scope = p.get("session_ticket_keys_scope")
    keys = {"instance": "own keys", None: ""}.get(scope, f"keys shared per {scope}")
    parts = [p.get("tls_version", ""), p.get("certificate", ""), p.get("session_resumption", ""), keys]
    return " · ".join(str(x).replace("TLSv1_", "TLS 1.") for x in parts if x)


def tls_present(summary: Mapping[str, Any]) -> bool:
    """Whether a run has connection, TLS or gateway-CPU results."""
    return any(isinstance(summary.get(k), Mapping) for k in ("connections", "gateway_cpu", "access_log"))


def _handshake_table(conns: Mapping[str, Any]) -> str:
    headers = ["Pool", "TLS", "Connections", "Full /s per gw", "Resumed /s per gw", "Resumption",
               "Why full", "Why closed"]
    rows = []
    for pool, p in (conns.get("pools") or {}).items():
        rate = dig(p, ["handshakes_per_gateway_per_s"]) or {}
        rows.append([esc(pool), esc(_tls_label(p)), _num(p.get("connections_opened"), 0), _num(rate.get("full"), 2),
                     _num(rate.get("resumed"), 2), _pct(p.get("resumption_rate")), esc(_counts(p.get("full_reasons"))),
                     esc(_counts(p.get("closed")))])
    return table(headers, rows)


def _cpu_table(cpu: Mapping[str, Any]) -> str:
    pools = cpu.get("pools") or {}
    causes = [c for c in CAUSE_ORDER if any(as_number(dig(p, ["cpu_by_cause_s", c])) for p in pools.values())]
    headers = ["Pool", *[f"{esc(pretty_key(c))} (s)" for c in causes], "Total (s)", "Cores used", "Utilisation",
               "Worker wait (ms)", "TLS share", "Cores at target", "$ / month"]
    rows = []
    for pool, p in pools.items():
        rows.append([esc(pool), *[_num(dig(p, ["cpu_by_cause_s", c])) for c in causes], _num(p.get("cpu_s")),
                     _num(p.get("cores_used")), _pct(p.get("utilization")), _num(p.get("mean_worker_wait_ms")),
                     _pct(p.get("tls_share")),
                     _num(p.get("cores_at_target"), 2), _num(p.get("cost_usd_per_month"), 2)])
    return table(headers, rows)


def _log_table(logs: Mapping[str, Any]) -> str:
    rows = [[esc(pool), _num(p.get("lines"), 0), _num(p.get("bytes"), 0), esc(p.get("flush")),
             esc(p.get("collector_az") or "on the instance")] for pool, p in (logs.get("pools") or {}).items()]
    cross = dig(logs, ["cross_az_bytes_by_purpose", "logs"])
    return (table(["Pool", "Lines", "Bytes", "Flush", "Collector"], rows)
            + f"<p>Log bytes shipped across AZs (purpose <code>logs</code>): {_num(cross, 0)}.</p>")


def _handshake_figure(data: RunData) -> str:
    ts = data.timeseries
    if ts is None:
        return ""
    full = [c for c in ts.columns if c.startswith("tls_full_")]
    resumed = [c for c in ts.columns if c.startswith("tls_resumed_")]
    if not full:
        return ""

    def total(cols: Sequence[str]) -> list[float]:
        return [math.fsum(as_number(ts.columns[c][i]) or 0.0 for c in cols) for i in range(len(ts.t))]

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=ts.t, y=total(full), name="full handshakes /s", line={"color": C_FULL}))
    fig.add_trace(go.Scatter(x=ts.t, y=total(resumed), name="resumed handshakes /s", line={"color": C_RESUMED}))
    fig.update_xaxes(title_text="time (s)")
    fig.update_yaxes(title_text="handshakes per second (all gateways)")
    shade_run(fig, data)
    return figure_html(fig, "tls-handshakes", height=320)


def tls_panel(data: RunData) -> Panel | None:
    """Handshakes, resumption, gateway CPU by cause and its cost, access logs (one run)."""
    s = data.summary
    if not tls_present(s):
        return None
    parts = []
    conns = s.get("connections")
    if isinstance(conns, Mapping):
        parts.append(f"<p>Resumption rate over the fleet: <b>{_pct(conns.get('resumption_rate'))}</b> "
                     f"({_num(conns.get('resumed'), 0)} resumed, {_num(conns.get('full'), 0)} full handshakes "
                     "in the measurement window). A reconnect resumes only when its client holds a valid ticket "
                     "and lands on a gateway holding the key that sealed it.</p>")
        parts.append(_handshake_table(conns))
        parts.append(_handshake_figure(data))
    cpu = s.get("gateway_cpu")
    if isinstance(cpu, Mapping):
        price = cpu.get("pricing") or {}
        parts.append(f"<p>Gateway CPU by cause (seconds of one core in the window). Cores at target: the cores "
                     f"that run this load at {_pct(price.get('target_utilization'), 0)} utilisation, priced at "
                     f"${_num(price.get('vcpu_hour_usd'), 3)} per vCPU-hour, "
                     f"{_num(price.get('hours_per_month'), 0)} hours a month. Handshakes, requests and log lines "
                     "take worker time in the simulation; retries, upstream connections, responses and probes are "
                     "counted only.</p>")
        parts.append(_cpu_table(cpu))
    logs = s.get("access_log")
    if isinstance(logs, Mapping):
        parts.append(_log_table(logs))
    return Panel("Connections, TLS and gateway CPU", "".join(parts), "tls")


# --------------------------------------------------------------------------- comparison


def _figures(summary: Mapping[str, Any]) -> dict[str, float | None]:
    return {
        "resumption": as_number(dig(summary, ["connections", "resumption_rate"])),
        "cpu_s": as_number(dig(summary, ["gateway_cpu", "cpu_s"])),
        "tls_cpu_s": as_number(dig(summary, ["gateway_cpu", "tls_cpu_s"])),
        "cores": as_number(dig(summary, ["gateway_cpu", "cores_at_target"])),
        "usd": as_number(dig(summary, ["gateway_cpu", "cost_usd_per_month"])),
        "p99": as_number(dig(summary, ["latency_ms", "p99"])),
    }


def _settings(summary: Mapping[str, Any]) -> tuple[tuple, tuple] | None:
    """(scopes per pool, everything else that shapes TLS CPU) of a run, or None without TLS."""
    pools = dig(summary, ["connections", "pools"])
    if not isinstance(pools, Mapping) or not any(p.get("tls") for p in pools.values()):
        return None
    scopes = tuple(sorted((k, p.get("session_ticket_keys_scope")) for k, p in pools.items()))
    rest = tuple(sorted((k, p.get("tls_version"), p.get("certificate"), p.get("session_resumption"))
                        for k, p in pools.items()))
    faults = tuple((f.get("kind"), f.get("at_s"), f.get("for_s")) for f in summary.get("faults") or [])
    logs = isinstance(summary.get("access_log"), Mapping)
    return scopes, (rest, faults, logs)


def _delta(a: float | None, b: float | None, scale: float = 1.0, digits: int = 2, pct: bool = False) -> str:
    if a is None or b is None:
        return "–"
    if pct:
        return "–" if b == 0 else f"{100 * (a - b) / b:+.1f}%"
    return f"{(a - b) * scale:+,.{digits}f}"


def key_scope_pairs(variants: Sequence[tuple[str, Mapping[str, Any]]]) -> list[tuple[str, str, float]]:
    """Pairs (own-keys variant, shared-keys variant, extra gateway CPU as a fraction) that differ in key scope only."""
    out = []
    info = [(name, _settings(s), _figures(s)) for name, s in variants]
    for a, sa, fa in info:
        for b, sb, fb in info:
            if sa is None or sb is None or a == b or sa[1] != sb[1]:
                continue
            own = all(scope == "instance" for _, scope in sa[0] if scope)
            shared = all(scope not in (None, "instance") for _, scope in sb[0])
            if own and shared and fa["cpu_s"] and fb["cpu_s"]:
                out.append((a, b, fa["cpu_s"] / fb["cpu_s"] - 1.0))
    return out


def tls_comparison_panel(variants) -> Panel | None:
    """Gateway CPU, cores, dollars and p99 of each variant against the first; the article's claim for this fleet."""
    loaded = [(v.name, v.data.summary) for v in variants if v.data is not None and tls_present(v.data.summary)]
    if not loaded:
        return None
    base_name, base = loaded[0]
    fb = _figures(base)
    headers = ["Variant", "Resumption", "Gateway CPU (s)", "TLS CPU (s)", "Cores at target", "$ / month", "p99 (ms)",
               f"CPU vs {esc(base_name)}", "Cores saved", "$ saved / month", "p99 change (ms)"]
    rows = []
    for name, s in loaded:
        f = _figures(s)
        rows.append([esc(name), _pct(f["resumption"]), _num(f["cpu_s"], 2), _num(f["tls_cpu_s"], 2),
                     _num(f["cores"], 3), _num(f["usd"], 2), _num(f["p99"], 1),
                     _delta(f["cpu_s"], fb["cpu_s"], pct=True), _delta(fb["cores"], f["cores"], digits=3),
                     _delta(fb["usd"], f["usd"]), _delta(f["p99"], fb["p99"], digits=1)])
    claims = []
    for own, shared, extra in key_scope_pairs(loaded):
        claims.append(f"<li><b>{esc(own)}</b> spends <b>{100 * extra:+.1f}%</b> gateway CPU compared with "
                      f"<b>{esc(shared)}</b> (same fleet, ticket keys per instance instead of shared).</li>")
    claim = ("<p>The source article says that without shared session state \"every request requires a full TLS "
             "handshake, increasing CPU load by 30-50%\". For this fleet, with its connection reuse and "
             "handshake costs:</p><ul>" + "".join(claims) + "</ul>") if claims else ""
    return Panel("TLS resumption: CPU, cores, dollars and p99", table(headers, rows) + claim, "tls-comparison")


__all__ = ["key_scope_pairs", "tls_comparison_panel", "tls_panel", "tls_present"]
