"""``validation.html``: how far the simulator is from the real fleet, for a design review.

One self-contained page (plotly.js inlined once, as the run reports): the
verdict and the machine's trust, then one panel per scenario with its table
(measured mean and run-to-run spread, simulated mean and 95% CI, error, goal,
pass), the latency-versus-load chart of scenario (a) and the goodput curves of
the retry storm (f), then the calibration and the method.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from sim.report.common import (
    HeaderItems,
    Panel,
    esc,
    figure_html,
    page_html,
    panels_html,
    table,
    write_atomic,
)

C_REAL = "#0072b2"
C_SIM = "#d55e00"

EXTRA_CSS = """
.pass { color:#1b7a3a; font-weight:600; }
.fail { color:#b42318; font-weight:700; }
p.verdict { font-size:18px; font-weight:600; }
p.verdict.ok { color:#1b7a3a; } p.verdict.bad { color:#b42318; }
table.settings td:last-child { white-space:normal; overflow-wrap:anywhere; }
p.warn { background:#fff4e5; border-left:4px solid #e69f00; padding:8px 12px; }
"""


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _error_text(row: Mapping[str, Any]) -> str:
    e = row.get("error")
    if e is None:
        return "–"
    goal = row.get("goal", "")
    if "pp" in goal:
        return f"{100 * e:.2f} pp"
    if goal.startswith("±") and "%" not in goal:
        return _fmt(e)
    return f"{100 * e:.1f}%"


def _row_cells(row: Mapping[str, Any]) -> list[str]:
    measured = _fmt(row.get("measured"))
    if row.get("measured_spread") is not None:
        measured += f" <small>± {esc(_fmt(row['measured_spread'], 2))} sd</small>"
    simulated = _fmt(row.get("simulated"))
    if row.get("simulated_ci95") is not None:
        simulated += f" <small>± {esc(_fmt(row['simulated_ci95'], 2))}</small>"
    ok = row.get("pass")
    verdict = "pass" if ok else "FAIL"
    if not row.get("trustworthy", True):
        verdict += " (machine disturbed)"
    cls = "pass" if ok else "fail"
    return [esc(row["metric"]), measured, simulated, esc(_error_text(row)), esc(row.get("goal", "")),
            f'<span class="{cls}">{esc(verdict)}</span>']


def _summary_panel(rows: Sequence[Mapping], manifest: Mapping) -> Panel:
    passed = sum(1 for r in rows if r["pass"])
    quick = manifest.get("quick")
    gate = [r for r in rows if not r.get("gate", r["pass"])]
    ok = passed == len(rows) if not quick else not gate
    cls = "ok" if ok else "bad"
    text = f"{passed} of {len(rows)} metrics within their goals"
    if quick:
        text += f"; quick run gate: {'passed' if not gate else f'{len(gate)} failure(s)'}"
    html = f'<p class="verdict {cls}">{esc(text)}.</p>'
    untrusted = sorted({r["scenario"] for r in rows if not r.get("trustworthy", True)})
    if untrusted:
        notes = sorted({r.get("note", "") for r in rows if not r.get("trustworthy", True)} - {""})
        html += (f'<p class="warn">Other load disturbed the machine during: {esc(", ".join(untrusted))}. '
                 f"Timing metrics there are not to be trusted. {esc('; '.join(notes))}</p>")
    fails = [r for r in rows if not r["pass"]]
    if fails:
        html += "<p>Missed:</p>" + table(["scenario", "metric", "measured", "simulated", "error", "goal"],
                                          [[esc(r["scenario"]), esc(r["metric"]), _fmt(r["measured"]),
                                            _fmt(r["simulated"]), esc(_error_text(r)), esc(r["goal"])]
                                           for r in fails])
    return Panel("Verdict", html, "verdict")


def _scenario_panels(rows: Sequence[Mapping], scenarios: Mapping[str, Any]) -> list[Panel]:
    panels = []
    for key, sc in scenarios.items():
        mine = [r for r in rows if r["scenario"].split(":")[0] == key]
        if not mine:
            continue
        parts = [f"<p>Experiment: <code>experiments/reference/{esc(sc.file)}</code></p>"]
        for label in dict.fromkeys(r["scenario"] for r in mine):
            sub = [r for r in mine if r["scenario"] == label]
            if label != key:
                parts.append(f"<h3>{esc(label.split(':', 1)[1])}</h3>")
            parts.append(table(["metric", "measured (real)", "simulated (95% CI)", "error", "goal", ""],
                                [_row_cells(r) for r in sub]))
        if key == "a":
            parts.append(_latency_chart(mine))
        for r in mine:
            if r.get("measured_curve"):
                parts.append(_curve_chart(r))
        panels.append(Panel(f"({key}) {sc.title}", "".join(parts), f"scenario-{key}"))
    return panels


def _latency_chart(rows: Sequence[Mapping]) -> str:
    by_point: dict[str, dict[str, Mapping]] = {}
    for r in rows:
        by_point.setdefault(r["scenario"].split(":")[-1], {})[r["metric"]] = r
    labels = sorted(by_point)
    fig = go.Figure()
    for metric, dash in (("p50_ms", "solid"), ("p90_ms", "dot"), ("p99_ms", "dash")):
        xs = [lb for lb in labels if metric in by_point[lb]]
        if not xs:
            continue
        fig.add_trace(go.Scatter(x=xs, y=[by_point[x][metric]["measured"] for x in xs], name=f"{metric[:3]} real",
                                 mode="lines+markers", line={"color": C_REAL, "dash": dash}))
        fig.add_trace(go.Scatter(x=xs, y=[by_point[x][metric]["simulated"] for x in xs], name=f"{metric[:3]} sim",
                                 mode="lines+markers", line={"color": C_SIM, "dash": dash},
                                 error_y={"type": "data", "array": [by_point[x][metric].get("simulated_ci95") or 0
                                                                     for x in xs]}))
    fig.update_yaxes(title_text="latency (ms)", rangemode="tozero")
    fig.update_xaxes(title_text="utilisation")
    return figure_html(fig, "latency-vs-load", height=340, hovermode="x")


def _curve_chart(row: Mapping) -> str:
    m, s = row["measured_curve"], row["simulated_curve"]
    x = list(range(len(m)))
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=m, name="real (mean of runs)", line={"color": C_REAL}))
    fig.add_trace(go.Scatter(x=x, y=s, name="simulated (mean of replications)", line={"color": C_SIM}))
    fig.update_yaxes(title_text="goodput (requests/s)", rangemode="tozero")
    fig.update_xaxes(title_text="second of the measurement window")
    slug = "".join(c if c.isalnum() else "-" for c in row["scenario"])
    return figure_html(fig, f"curve-{slug}", height=320)


def _calibration_panel(manifest: Mapping) -> Panel | None:
    cal = manifest.get("calibration") or {}
    measured = cal.get("measured") or {}
    if not measured:
        return None
    def text(v: Any) -> str:
        if isinstance(v, dict):
            return ", ".join(f"{k} {_fmt(x)}" for k, x in v.items())
        return json.dumps(v) if isinstance(v, list) else _fmt(v)

    items = [[esc(k), esc(text(v))] for k, v in measured.items() if v is not None]
    return Panel("Calibration", f"<p>Profile: <code>{esc(cal.get('file', ''))}</code></p>"
                 + table(["measured", "value"], items, cls="settings"), "calibration")


METHOD = """
<p>Each scenario runs on the real fleet (HAProxy in TCP mode, Envoy 1.40 with <code>--concurrency 1</code>,
uvloop backends, an open-loop Poisson load generator, all on 127.0.0.1) several times, giving the measured
mean and its run-to-run spread, and in the simulator calibrated with the same profile as independent
replications, giving the simulated mean and its 95% confidence interval. The error is relative for
throughput, latency and time to eject, absolute (percentage points) for shares and fractions, and the
normalised RMS error for the storm's goodput curve. A fraction passes when it is within 2 pp or within
the measurement's 95% binomial CI, whichever is wider. A run is marked disturbed when processes other
than the fleet's used more than a third of a core, or when the load generator fell behind its schedule.</p>
"""


def write_validation_html(run_dir: Path, rows: Sequence[Mapping], manifest: Mapping,
                          scenarios: Mapping[str, Any]) -> Path:
    items = HeaderItems()
    items.add("started", manifest.get("started"))
    items.add("mode", "quick" if manifest.get("quick") else "full")
    items.add("repetitions", manifest.get("repetitions"))
    items.add("host", manifest.get("host"))
    items.add("CPUs", manifest.get("cpus"))
    items.add("wall time", manifest.get("wall_s"), "s")
    meta = "".join(f"<div><dt>{esc(k)}</dt><dd>{v}</dd></div>" for k, v in items)
    header = ('<header class="page"><p class="kicker">fleetsim validation</p>'
              "<h1>The simulator against the reference real fleet</h1>"
              f'<dl class="meta">{meta}</dl></header>')
    panels = [_summary_panel(rows, manifest), *_scenario_panels(rows, scenarios)]
    cal = _calibration_panel(manifest)
    if cal:
        panels.append(cal)
    panels.append(Panel("Method", METHOD, "method"))
    footer = f'<footer class="page"><dl><dt>files</dt><dd><code>{esc(run_dir)}</code></dd></dl></footer>'
    html = page_html("fleetsim validation", header, panels_html(panels), footer, EXTRA_CSS)
    return write_atomic(Path(run_dir) / "validation.html", html)


def rebuild(run_dir: str | Path) -> Path:
    """Rewrite validation.html from a run directory's JSON files."""
    from .scenarios import SCENARIOS

    run_dir = Path(run_dir)
    rows = json.loads((run_dir / "validation.json").read_text())
    manifest = json.loads((run_dir / "manifest.json").read_text()) if (run_dir / "manifest.json").exists() else {}
    keys = list(dict.fromkeys(r["scenario"].split(":")[0] for r in rows))
    return write_validation_html(run_dir, rows, manifest, {k: SCENARIOS[k] for k in keys if k in SCENARIOS})
