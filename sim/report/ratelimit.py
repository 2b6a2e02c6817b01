"""The rate-limiting panel: the filter's verdicts, its accuracy against an ideal fleet-wide bucket, Redis.

Reads only ``summary.json``'s ``rate_limit`` section (present only when the
topology has a rate limit) and the ``rl_admitted`` / ``rl_ideal_admitted``
time series.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go

from sim.report.common import Panel, RunData, dig, esc, figure_html, shade_run, table
from sim.report.numbers import fmt_value


def _m(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _v(section: Mapping[str, Any], key: str, ci: Any = None, *, scale: float = 1.0, integer: bool = False) -> str:
    """``section[key]`` formatted, with its 95% half-width from ``ci`` (the summary's ``ci95`` part) if any."""
    return fmt_value(section.get(key), _m(ci).get(key), scale=scale, integer=integer)


def rate_limit_panel(data: RunData) -> Panel | None:
    """Verdicts, accuracy, added latency and Redis load of the rate-limit filter; None without one."""
    rl = data.summary.get("rate_limit")
    if not isinstance(rl, Mapping):
        return None
    ci = _m(dig(data.summary, ["ci95", "rate_limit"]))
    lat = _m(rl.get("latency_added_ms"))
    ci_lat = _m(ci.get("latency_added_ms"))
    rows = [
        ("Policy", f"{esc(rl.get('algorithm'))}, key {esc(rl.get('key'))}, intended {_v(rl, 'global_limit_per_s', ci)}/s "
                   f"(burst {_v(rl, 'global_burst', ci)})"),
        ("Requests checked", _v(rl, "checked", ci, integer=True)),
        ("Admitted / ideal fleet-wide bucket", f"{_v(rl, 'admitted', ci, integer=True)} / "
                                               f"{_v(rl, 'ideal_admitted', ci, integer=True)} "
                                               f"(ratio {_v(rl, 'admitted_ratio', ci)})"),
        ("Over- / under-admitted", f"{_v(rl, 'over_admitted', ci, integer=True)} / {_v(rl, 'under_admitted', ci, integer=True)}"),
        ("Denied (429)", _v(rl, "denied", ci, integer=True)),
        ("Redis errors and timeouts: let through / failed (500)",
         f"{_v(rl, 'failed_open', ci, integer=True)} / {_v(rl, 'failed_closed', ci, integer=True)}"),
        ("Timeouts, refused calls", f"{_v(rl, 'timeouts', ci, integer=True)}, {_v(rl, 'errors', ci, integer=True)}"),
        ("Latency added (mean, p99)", f"{_v(lat, 'mean', ci_lat)} ms, {_v(lat, 'p99', ci_lat)} ms"),
        ("Redis calls per second", _v(rl, "redis_calls_per_s", ci)),
    ]
    body = table(["", "value"], [(esc(k), v) for k, v in rows])
    keys = _m(rl.get("keys"))
    ci_part = _m(ci.get("keys"))
    if keys:
        body += "<h3>Per key</h3>" + table(
            ["key", "checked", "admitted", "ideal", "admitted/s", "max in a second", "seconds over limit"],
            [(esc(k), _v(r, "checked", ci_part.get(k), integer=True), _v(r, "admitted", ci_part.get(k), integer=True),
              _v(r, "ideal_admitted", ci_part.get(k), integer=True), _v(r, "admitted_per_s", ci_part.get(k)), _v(r, "max_admitted_per_s", ci_part.get(k)),
              _v(r, "seconds_over_limit", ci_part.get(k), integer=True))
             for k, r in keys.items() if isinstance(r, Mapping)])
    servers = _m(rl.get("redis"))
    ci_part = _m(ci.get("redis"))
    if servers:
        body += "<h3>Redis</h3>" + table(
            ["server", "AZ", "calls/s", "utilization", "server time p99", "refused", "failed"],
            [(esc(k), esc(r.get("az")), _v(r, "calls_per_s", ci_part.get(k)), _v(r, "utilization", ci_part.get(k), scale=100.0) + " %",
              _v(r, "server_ms_p99", ci_part.get(k)) + " ms", _v(r, "refused", ci_part.get(k), integer=True), _v(r, "failed", ci_part.get(k), integer=True))
             for k, r in servers.items() if isinstance(r, Mapping)])
    pairs = _m(rl.get("redis_bytes_by_az_pair"))
    if pairs:
        body += "<h3>Bytes to and from Redis by AZ pair</h3>" + table(
            ["AZ pair", "bytes"], [(esc(k), _v(pairs, k, ci.get("redis_bytes_by_az_pair"), integer=True)) for k in pairs])
    ts = data.timeseries
    if ts is not None and ts.columns.get("rl_admitted"):
        fig = go.Figure()
        for name, label in (("rl_admitted", "admitted"), ("rl_ideal_admitted", "ideal fleet-wide bucket")):
            if ts.columns.get(name):
                fig.add_trace(go.Scatter(x=ts.t, y=ts.columns[name], name=label, mode="lines"))
        shade_run(fig, data)
        fig.update_xaxes(title_text="simulated time (s)")
        fig.update_yaxes(title_text="requests admitted per second", rangemode="tozero")
        body += figure_html(fig, "rate-limit-admitted")
    note = ("Ideal: a continuous token bucket at the intended fleet-wide rate and burst, seeing the same "
            "requests when the filters do, with no delay and no failure.")
    return Panel("Rate limiting", body + f'<p class="note">{esc(note)}</p>', "rate-limit")


__all__ = ["rate_limit_panel"]
