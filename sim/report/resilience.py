"""Report panels about faults and what they did: the timeline, the recovery, the retries.

The panels show the fault timeline, the recovery afterwards, and the retries
(how much extra load they added).

Also the small computations the comparison report shares with these panels:
per-second amplification, the smoothed goodput, verdicts in plain words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go

from sim.report.common import (
    C_AMPLIFICATION,
    C_CLIENT_TRIES,
    C_GOODPUT,
    C_OFFERED,
    RECOVERY_BASELINE_S,
    RECOVERY_HOLD_S,
    RECOVERY_SMOOTH_S,
    RECOVERY_THRESHOLD,
    Column,
    Fault,
    Panel,
    RunData,
    TimeSeries,
    as_number,
    ci_of,
    count_label,
    dig,
    esc,
    figure_html,
    fmt_value,
    header_cell,
    kpi_cell,
    kpi_column,
    pretty_key,
    shade_run,
    table,
    unit_html,
)

#: "Goodput at the end" is the mean over this many final seconds of the run.
END_WINDOW_S = 10

#: How a fault is named in a sentence ("... after the slowdown ended").
FAULT_NOUNS = {"backend_slowdown": "the slowdown", "error_burst": "the error burst",
               "instance_crash": "the crash", "az_outage": "the AZ outage",
               "load_spike": "the load spike"}

C_THRESHOLD = "#d55e00"
C_RECOVERED = "#009e73"


# --------------------------------------------------------------------------
# Shared computations
# --------------------------------------------------------------------------


def ratio_series(num: Sequence[float | None], den: Sequence[float | None]
                 ) -> list[float | None]:
    """``num[i] / den[i]``; ``None`` where either is missing or ``den[i]`` is 0."""
    return [n / d if n is not None and d else None for n, d in zip(num, den, strict=False)]


def trailing_mean(values: Sequence[float | None], window: int) -> list[float | None]:
    """Mean of the last ``window`` values at each point (fewer at the start; gaps skipped)."""
    out: list[float | None] = []
    for i in range(len(values)):
        chunk = [v for v in values[max(0, i - window + 1):i + 1] if v is not None]
        out.append(sum(chunk) / len(chunk) if chunk else None)
    return out


def amplification_per_s(ts: TimeSeries) -> tuple[list[float | None] | None,
                                                  list[float | None] | None]:
    """Per second: backend tries per client call, and client tries per call.

    Both from the means across replications: attempts / offered and
    tries / offered; None for a ratio whose series is missing.
    """
    offered = ts.get("offered")
    if offered is None:
        return None, None
    attempts, tries = ts.get("attempts"), ts.get("tries")
    return (ratio_series(attempts, offered) if attempts else None,
            ratio_series(tries, offered) if tries else None)


def _whole_seconds(data: RunData) -> list[int]:
    """Indices of the time-series seconds that lie inside the run."""
    ts = data.timeseries
    if ts is None:
        return []
    end = as_number(data.summary.get("simulated_s"))
    return [i for i, t in enumerate(ts.t) if end is None or t + 1 <= end + 1e-9]


def mean_over(data: RunData, column: str, start_s: float, end_s: float | None = None
              ) -> float | None:
    """Mean of a time-series column over the whole seconds in ``[start_s, end_s)``."""
    ts = data.timeseries
    values = ts.get(column) if ts else None
    if ts is None or values is None:
        return None
    picked = [values[i] for i in _whole_seconds(data)
              if ts.t[i] >= start_s and (end_s is None or ts.t[i] + 1 <= end_s)
              and values[i] is not None]
    return sum(picked) / len(picked) if picked else None


def ratio_over(data: RunData, num: str, den: str, start_s: float,
               end_s: float | None = None) -> float | None:
    """``sum(num) / sum(den)`` over the whole seconds in ``[start_s, end_s)``."""
    a, b = mean_over(data, num, start_s, end_s), mean_over(data, den, start_s, end_s)
    return a / b if a is not None and b else None


@dataclass(frozen=True)
class Recovery:
    """``summary.json`` ``recovery``, validated.

    ``recovered`` and ``metastable`` are a bool when every replication agreed,
    else the fraction of replications that said yes (``None`` if absent).
    """

    fault_start_s: float | None
    fault_end_s: float | None
    before: float | None
    during: float | None
    after: float | None
    recovered: bool | float | None
    metastable: bool | float | None
    recovery_s: float | None

    @property
    def outcome(self) -> str:
        """``"recovered"``, ``"metastable"``, ``"mixed"`` or ``"unknown"``."""
        if self.recovered is True or (self.recovered is None and self.metastable is False):
            return "recovered"
        if self.metastable is True or (self.metastable is None and self.recovered is False):
            return "metastable"
        if isinstance(self.recovered, float) or isinstance(self.metastable, float):
            return "mixed"
        return "unknown"

    @property
    def recovered_fraction(self) -> float | None:
        """Share of replications that recovered: ``recovered``, else 1 - ``metastable``; None if neither."""
        if isinstance(self.recovered, bool):
            return float(self.recovered)
        if as_number(self.recovered) is not None:
            return float(self.recovered)
        if as_number(self.metastable) is not None:
            return 1.0 - float(self.metastable)
        return None

    def share(self, value: float | None) -> float | None:
        """``value`` as a fraction of the pre-fault goodput."""
        return value / self.before if value is not None and self.before else None


def _flag(value: Any) -> bool | float | None:
    if isinstance(value, bool):
        return value
    v = as_number(value)
    return None if v is None else min(1.0, max(0.0, v))


def parse_recovery(summary: Mapping[str, Any]) -> Recovery | None:
    """The ``recovery`` section of a ``summary.json`` (goodput in req/s, times in s); None without one."""
    rec = summary.get("recovery")
    if not isinstance(rec, Mapping):
        return None
    return Recovery(
        fault_start_s=as_number(rec.get("fault_start_s")),
        fault_end_s=as_number(rec.get("fault_end_s")),
        before=as_number(rec.get("goodput_before_rps")),
        during=as_number(rec.get("goodput_during_rps")),
        after=as_number(rec.get("goodput_after_rps")), recovered=_flag(rec.get("recovered")),
        metastable=_flag(rec.get("metastable")), recovery_s=as_number(rec.get("recovery_s")))


def fault_noun(faults: Sequence[Fault]) -> str:
    """How the fault span is named in a sentence: "the slowdown", "the faults", ..."""
    kinds = {f.kind for f in faults}
    if len(faults) == 1 or len(kinds) == 1:
        noun = FAULT_NOUNS.get(next(iter(kinds)), "the fault") if kinds else "the fault"
        return noun if len(faults) <= 1 else noun.replace("the ", "the last ", 1)
    return "the last fault" if faults else "the fault"


def end_share(data: RunData, rec: Recovery) -> tuple[float | None, str]:
    """Goodput at the end of the run as a fraction of the baseline, and what "the end" means.

    The end is the run's last ``END_WINDOW_S`` seconds (none of them before
    the fault ended) when the time series has them, else the whole time
    after the fault (``goodput_after_rps``).
    """
    seconds = _whole_seconds(data)
    ts = data.timeseries
    if ts is not None and seconds and rec.fault_end_s is not None:
        last = ts.t[seconds[-1]] + 1
        start = max(rec.fault_end_s, last - END_WINDOW_S)
        value = mean_over(data, "goodput", start)
        if value is not None:
            return rec.share(value), "at the end"
    return rec.share(rec.after), "after the fault"


def fmt_seconds(value: float | None) -> str:
    """A duration such as a recovery time: one decimal ("8.0")."""
    return "—" if value is None else f"{value:,.1f}"


def replication_count(data: RunData) -> int | None:
    """How many replications the run's summary aggregates; None when absent or below 1."""
    n = as_number(data.summary.get("replications"))
    return int(n) if n is not None and n >= 1 else None


def fmt_pct(fraction: float | None, digits: int = 0) -> str:
    """A fraction (1 = 100 %) as a percentage with ``digits`` decimals; "—" for None."""
    return "—" if fraction is None else f"{100 * fraction:.{digits}f} %"


def mixed_phrase(rec: Recovery, replications: int | None) -> str:
    """"recovered in 2 of 3 replications" (or "in 67 % of replications")."""
    frac = rec.recovered_fraction
    if frac is None:
        return "recovery unclear"
    if replications:
        return f"recovered in {round(frac * replications)} of {replications} replications"
    return f"recovered in {fmt_pct(frac)} of replications"


# --------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------

#: Part names listed in the faults table before the rest are folded away.
MAX_TARGET_NAMES = 6


def _targets_cell(fault: Fault) -> str:
    names = list(fault.targets)
    if not names:
        return '<span class="muted">—</span>'
    shown = ", ".join(esc(n) for n in names[:MAX_TARGET_NAMES])
    if len(names) <= MAX_TARGET_NAMES:
        return f"{len(names):,}: {shown}"
    rest = ", ".join(esc(n) for n in names[MAX_TARGET_NAMES:])
    return (f"{len(names):,}: {shown}, <details class=\"inline\"><summary>+{len(names) - MAX_TARGET_NAMES:,} "
            f"more</summary>{rest}</details>")


def faults_panel(data: RunData) -> Panel | None:
    """The fault timeline as a table; the windows are shaded on every time chart."""
    if not data.faults:
        return None
    rows = []
    seconds = Column.of([x for f in data.faults for x in (f.start_s, f.end_s, f.duration_s)])
    for i, f in enumerate(data.faults, 1):
        rows.append([esc(i), f"<strong>{esc(f.label)}</strong>", esc(seconds(f.start_s)),
                     esc(seconds(f.end_s)), esc(seconds(f.duration_s)),
                     esc(f.target) if f.target else '<span class="muted">—</span>',
                     esc(f.effect) if f.effect else '<span class="muted">—</span>',
                     _targets_cell(f)])
    headers = ["#", "Kind", "Start<br><span class=\"unit\">s</span>",
               "End<br><span class=\"unit\">s</span>",
               "Duration<br><span class=\"unit\">s</span>", "Target", "Effect", "Parts hit"]
    body = table(headers, rows, cls="kpi wide faults")
    body += ('<p class="note">Every time chart in this report shades the fault windows '
             '<span class="swatch fault"></span> (and the warm-up '
             '<span class="swatch warmup"></span>).</p>')
    return Panel("Faults", body, "faults")


# --------------------------------------------------------------------------
# Recovery
# --------------------------------------------------------------------------


def recovery_rule() -> str:
    """The recovery rule in words, with the report's copy of its numbers (trusted HTML)."""
    return (f"Rule: goodput, smoothed over {RECOVERY_SMOOTH_S} s (trailing mean), must come back "
            f"to {fmt_pct(RECOVERY_THRESHOLD)} of its pre-fault level and hold there for "
            f"{RECOVERY_HOLD_S:g} s. The pre-fault level is the mean goodput over the "
            f"{RECOVERY_BASELINE_S:g} s before the first fault (after the warm-up); the recovery "
            "time counts from the end of the last fault. A run that never gets there before it "
            "ends is called <em>metastable</em>: it stayed collapsed after the trigger was gone.")


def recovery_verdict(data: RunData, rec: Recovery) -> str:
    """The outcome in plain words (trusted HTML)."""
    noun = fault_noun(data.faults)
    end_txt = (f" (at {fmt_value(rec.fault_end_s)} s)" if rec.fault_end_s is not None else "")
    outcome = rec.outcome
    if outcome == "recovered":
        when = (f"{fmt_seconds(rec.recovery_s)} s after {noun} ended{end_txt}"
                if rec.recovery_s is not None else f"after {noun} ended{end_txt}")
        return (f'<strong class="ok">Recovered.</strong> Goodput came back to '
                f"{fmt_pct(RECOVERY_THRESHOLD)} of its pre-fault level {esc(when)} and stayed there.")
    share, where = end_share(data, rec)
    if outcome == "metastable":
        text = (f'<strong class="bad">Metastable.</strong> Goodput did not come back to '
                f"{fmt_pct(RECOVERY_THRESHOLD)} of its pre-fault level after {esc(noun)} "
                f"ended{esc(end_txt)}; it stayed collapsed until the end of the run")
        if share is not None:
            text += f" ({esc(fmt_pct(share))} of the pre-fault level {esc(where)})"
        return text + "."
    if outcome == "mixed":
        text = (f'<strong class="warnbg">Mixed.</strong> Goodput {esc(mixed_phrase(rec, replication_count(data)))}'
                f"; the others stayed collapsed after {esc(noun)} ended{esc(end_txt)}")
        if rec.recovery_s is not None:
            text += f"; mean recovery time {esc(fmt_seconds(rec.recovery_s))} s where recovered"
        return text + "."
    return "The recovery outcome was not recorded."


def _recovery_figure(data: RunData, rec: Recovery) -> go.Figure | None:
    ts = data.timeseries
    goodput = ts.get("goodput") if ts else None
    if ts is None or goodput is None:
        return None
    fig = go.Figure()
    if ts.get("offered"):
        fig.add_trace(go.Scatter(x=ts.t, y=ts.columns["offered"], name="offered", mode="lines",
                                 line={"color": C_OFFERED, "width": 1.5, "dash": "dot"},
                                 hovertemplate="%{y:,.1f} req/s"))
    fig.add_trace(go.Scatter(x=ts.t, y=goodput, name="goodput", mode="lines",
                             line={"color": C_GOODPUT, "width": 1}, opacity=0.45,
                             hovertemplate="%{y:,.1f} req/s"))
    fig.add_trace(go.Scatter(x=ts.t, y=trailing_mean(goodput, RECOVERY_SMOOTH_S),
                             name=f"goodput, {RECOVERY_SMOOTH_S} s mean", mode="lines",
                             line={"color": C_GOODPUT, "width": 2.5},
                             hovertemplate="%{y:,.1f} req/s"))
    if rec.before:
        target = RECOVERY_THRESHOLD * rec.before
        fig.add_hline(y=rec.before, line={"color": "#52606d", "width": 1, "dash": "dot"},
                      annotation_text=f"pre-fault {fmt_value(rec.before)} req/s",
                      annotation_position="bottom right",
                      annotation_font={"size": 11, "color": "#52606d"})
        fig.add_hline(y=target, line={"color": C_THRESHOLD, "width": 1.5, "dash": "dash"},
                      annotation_text=f"{fmt_pct(RECOVERY_THRESHOLD)} of pre-fault",
                      annotation_position="bottom left",
                      annotation_font={"size": 11, "color": C_THRESHOLD})
    if rec.outcome == "recovered" and rec.fault_end_s is not None and rec.recovery_s is not None:
        fig.add_vline(x=rec.fault_end_s + rec.recovery_s,
                      line={"color": C_RECOVERED, "width": 1.5, "dash": "dash"},
                      annotation_text="recovered", annotation_position="bottom right",
                      annotation_font={"size": 11, "color": C_RECOVERED})
    shade_run(fig, data)
    fig.update_xaxes(title_text="simulated time (s)")
    fig.update_yaxes(title_text="goodput (req/s)", rangemode="tozero")
    return fig


def recovery_panel(data: RunData) -> Panel | None:
    """Goodput before, during and after the faults; recovered or metastable, and when."""
    rec = parse_recovery(data.summary)
    if rec is None:
        return None

    share, where = end_share(data, rec)
    end_value = share * rec.before if where == "at the end" and share is not None \
        and rec.before else None
    keys = ("goodput_before_rps", "goodput_during_rps", "goodput_after_rps")
    rates = kpi_column(data, [("recovery", k) for k in keys], extra=[end_value])

    def rate(key: str, value: float | None, share: bool = True) -> list[str]:
        cell = kpi_cell(data, ("recovery", key), "req/s", column=rates)
        pct = rec.share(value) if share else None
        return [cell, f'<span class="muted">{esc(fmt_pct(pct))}</span>' if pct is not None else ""]

    span = ""
    if rec.fault_start_s is not None and rec.fault_end_s is not None:
        span = f"{fmt_value(rec.fault_start_s)}–{fmt_value(rec.fault_end_s)} s"
    rows = [
        [esc("Before the fault (baseline)")] + rate("goodput_before_rps", rec.before, False),
        [esc("During the fault") + (f' <span class="muted">{esc(span)}</span>' if span else "")]
        + rate("goodput_during_rps", rec.during),
        [esc("After the fault, to the end")] + rate("goodput_after_rps", rec.after),
    ]
    if where == "at the end" and share is not None:
        rows.append([esc(f"Last {END_WINDOW_S} s of the run"),
                     (esc(rates(end_value)) + unit_html("req/s")
                      if end_value is not None else "—"),
                     f'<span class="muted">{esc(fmt_pct(share))}</span>'])
    goodput_table = table(["Goodput", "mean", "of baseline"], rows)

    outcome = rec.outcome
    replications = replication_count(data)
    if outcome == "mixed":
        recovered_txt = mixed_phrase(rec, replications)
    else:
        recovered_txt = {"recovered": "yes", "metastable": "no"}.get(outcome, "—")
    metastable = rec.metastable
    if isinstance(metastable, bool):
        metastable_txt = "yes" if metastable else "no"
    elif metastable is not None:
        metastable_txt = (f"in {round(metastable * replications)} of {replications} replications"
                          if replications else f"in {fmt_pct(metastable)} of replications")
    else:
        metastable_txt = "—"
    if rec.recovery_s is not None:
        ci = as_number(ci_of(data, ("recovery", "recovery_s")))
        text = fmt_value(rec.recovery_s, ci) if ci is not None else fmt_seconds(rec.recovery_s)
        rec_time = esc(text) + unit_html("s after the fault ended")
    else:
        rec_time = esc("— (did not recover)" if outcome == "metastable" else "—")
    outcome_table = table(["Outcome", ""], [
        [esc("Recovered"), esc(recovered_txt)],
        [esc("Metastable"), esc(metastable_txt)],
        [esc("Recovery time"), rec_time],
    ])
    body = (f'<p class="verdict {esc(outcome)}">{recovery_verdict(data, rec)}</p>'
            f'<div class="grid2"><div>{goodput_table}</div><div>{outcome_table}</div></div>')
    fig = _recovery_figure(data, rec)
    if fig is not None:
        body += figure_html(fig, "fig-recovery", 380)
    notes = [recovery_rule()]
    if replications and replications > 1:
        notes.append(f"Recovery is judged in each of the {replications} replications; the chart "
                     "shows their mean goodput per second.")
    body += f'<p class="note">{" ".join(notes)}</p>'
    return Panel("Recovery", body, "recovery")


# --------------------------------------------------------------------------
# Retries and amplification
# --------------------------------------------------------------------------


def _entity_sum(data: RunData, section: str, key: str) -> float | None:
    """Sum of ``summary[section][*][key]``; ``None`` if no entity has it."""
    entities = data.summary.get(section)
    if not isinstance(entities, Mapping):
        return None
    values = [as_number(v.get(key)) for v in entities.values() if isinstance(v, Mapping)]
    values = [v for v in values if v is not None]
    return sum(values) if values else None


def client_tries_per_call(summary: Mapping[str, Any]) -> float | None:
    """Client tries per call, ``client.tries / client.calls`` of a summary; None without calls."""
    tries = as_number(dig(summary, ("client", "tries")))
    calls = as_number(dig(summary, ("client", "calls")))
    return tries / calls if tries is not None and calls else None


def _row(label: str, cell: str, note: str = "") -> list[str]:
    return [esc(label) + (f'<br><span class="muted">{esc(note)}</span>' if note else ""), cell]


def _count(value: float | None, unit: str = "", column: Column | None = None) -> str:
    text = column(value) if column is not None else fmt_value(value, integer=True)
    return esc(text) + (unit_html(unit) if value is not None else "")


#: Ratios (tries per call) are printed with this many decimals.
RATIO_DECIMALS = 2


def _amplification_rows(data: RunData) -> list[list[str]]:
    """Tries per call: amplification, gateway amplification, client tries per call."""
    s = data.summary
    ratio = Column(RATIO_DECIMALS)
    rows = []
    if as_number(dig(s, ("retries", "amplification"))) is not None:
        rows.append(_row("Amplification",
                         kpi_cell(data, ("retries", "amplification"), column=ratio),
                         "backend tries per client call"))
    if as_number(dig(s, ("retries", "gateway_amplification"))) is not None:
        rows.append(_row("Gateway amplification",
                         kpi_cell(data, ("retries", "gateway_amplification"), column=ratio),
                         "backend tries per request a gateway routed"))
    per_call = client_tries_per_call(s)
    if per_call is not None:
        rows.append(_row("Client tries per call", esc(ratio(per_call)), "retries included"))
    return rows


def _call_rows(data: RunData) -> list[list[str]]:
    """Client calls and retries, gateway retries: counts."""
    s = data.summary
    fields = [(path, label, note) for path, label, note in (
        (("client", "calls"), "Client calls", ""),
        (("client", "retries"), "Client retries", ""),
        (("client", "retries_denied"), "Client retries denied", "retry token bucket empty"),
        (("retries", "gateway_retries"), "Gateway retries", ""))
        if as_number(dig(s, path)) is not None]
    counts = kpi_column(data, [f[0] for f in fields], integer=True)
    return [_row(label, kpi_cell(data, path, column=counts), note)
            for path, label, note in fields]


def _reason_rows(data: RunData) -> list[list[str]]:
    reasons = dig(data.summary, ("retries", "by_reason"))
    if not isinstance(reasons, Mapping):
        return []
    counts = {str(k): as_number(v) for k, v in reasons.items()}
    total = sum(v for v in counts.values() if v is not None)
    column = kpi_column(data, [("retries", "by_reason", r) for r in counts], integer=True)
    rows = []
    for reason in sorted(counts, key=lambda k: -(counts[k] or 0)):
        share = counts[reason] / total if counts[reason] is not None and total else None
        rows.append([esc(pretty_key(reason)),
                     kpi_cell(data, ("retries", "by_reason", reason), column=column),
                     f'<span class="muted">{esc(fmt_pct(share, 1))}</span>' if share is not None
                     else ""])
    return rows


#: Circuit breakers: ``retries.overflow`` key, ``gateway.<pool>`` key, breaker, what it did.
BREAKERS = (("max_requests", "overflow_max_requests", "max_requests",
             "requests refused (overflow_max_requests)"),
            ("retries", "retry_overflow", "max_retries / retry budget",
             "retries refused (retry_overflow)"),
            ("pending", "pending_overflow", "max_pending_requests",
             "tries refused: too many waiting for a connection (pending_overflow)"),
            ("connections", "cx_overflow", "max_connections",
             "tries that waited for a connection, not refused (cx_overflow)"))


def _overflow_table(data: RunData) -> str:
    """What each circuit breaker refused (or, max_connections, delayed), per gateway pool."""
    s = data.summary
    overflow = dig(s, ("retries", "overflow"))
    pools = s.get("gateway") if isinstance(s.get("gateway"), Mapping) else {}
    pool_names = [p for p in sorted(pools) if isinstance(pools[p], Mapping)
                  and any(as_number(pools[p].get(b[1])) is not None for b in BREAKERS)]
    found = []
    for key, pool_key, label, note in BREAKERS:
        total = as_number(overflow.get(key)) if isinstance(overflow, Mapping) else None
        if total is None:
            total = _entity_sum(data, "gateway", pool_key)
        if total is not None:
            found.append((total, pool_key, label, note))
    if not found:
        return ""
    split = len(pool_names) > 1
    totals = Column.of([f[0] for f in found], integer=True)
    per_pool = {p: Column.of([as_number(pools[p].get(f[1])) for f in found], integer=True)
                for p in pool_names} if split else {}
    rows = []
    for total, pool_key, label, note in found:
        row = _row(label, _count(total, column=totals), note)
        row += [_count(as_number(pools[p].get(pool_key)), column=per_pool[p]) for p in per_pool]
        rows.append(row)
    per_rep = count_label(replication_count(data))
    headers = ["Breaker", header_cell("total", per_rep)]
    if split:
        headers += [header_cell(p, per_rep) for p in pool_names]
    return "<h3>Circuit breakers</h3>" + table(headers, rows)


def _timeout_rows(data: RunData) -> list[list[str]]:
    found = [(value, label, note) for value, label, note in (
        (_entity_sum(data, "gateway", "per_try_timeouts"), "Per-try timeouts",
         "a gateway gave up on one backend try"),
        (_entity_sum(data, "gateway", "route_timeouts"), "Route timeouts",
         "a gateway gave up on the request"),
        (as_number(dig(data.summary, ("client", "timeouts"))), "Client timeouts",
         "a client gave up on a try")) if value is not None]
    column = Column.of([f[0] for f in found], integer=True)
    return [_row(label, _count(value, column=column), note) for value, label, note in found]


def _wasted_rows(data: RunData) -> list[list[str]]:
    backends = data.summary.get("backend")
    if not isinstance(backends, Mapping):
        return []
    per_service = {str(k): as_number(v.get("wasted_work_s")) for k, v in backends.items()
                   if isinstance(v, Mapping)}
    per_service = {k: v for k, v in per_service.items() if v is not None}
    if not per_service:
        return []
    total = sum(per_service.values())
    window = None
    sim_s = as_number(data.summary.get("simulated_s"))
    warm = as_number(data.summary.get("warmup_s")) or 0.0
    if sim_s is not None and sim_s > warm:
        window = sim_s - warm
    note = "worker time spent on tries whose caller had gone"
    if window:
        note += f"; {fmt_value(total / window)} workers on average"
    column = kpi_column(data, [("backend", n, "wasted_work_s") for n in per_service],
                        extra=[total])
    rows = [_row("Wasted work" + (" (all services)" if len(per_service) > 1 else ""),
                 esc(column(total)) + unit_html("worker-s"), note)]
    if len(per_service) > 1:
        for name in sorted(per_service):
            rows.append([f'<span class="indent">{esc(name)}</span>',
                         kpi_cell(data, ("backend", name, "wasted_work_s"), "worker-s",
                                  column=column)])
    return rows


def _amplification_figure(data: RunData) -> go.Figure | None:
    ts = data.timeseries
    if ts is None:
        return None
    attempts, tries = amplification_per_s(ts)
    if attempts is None and tries is None:
        return None
    fig = go.Figure()
    if attempts is not None:
        fig.add_trace(go.Scatter(x=ts.t, y=attempts, name="backend tries per call "
                                 "(attempts / offered)", mode="lines",
                                 line={"color": C_AMPLIFICATION, "width": 2},
                                 hovertemplate="%{y:.2f}"))
    if tries is not None:
        fig.add_trace(go.Scatter(x=ts.t, y=tries, name="client tries per call (tries / offered)",
                                 mode="lines", line={"color": C_CLIENT_TRIES, "width": 2,
                                                     "dash": "dash"},
                                 hovertemplate="%{y:.2f}"))
    fig.add_hline(y=1, line={"color": "#9aa5b1", "width": 1, "dash": "dot"})
    shade_run(fig, data)
    fig.update_xaxes(title_text="simulated time (s)")
    fig.update_yaxes(title_text="tries per client call", rangemode="tozero")
    return fig


def retries_panel(data: RunData) -> Panel | None:
    """Retry amplification: KPIs by reason, breaker, timeout, wasted work; per-second chart."""
    s = data.summary
    has_summary = isinstance(s.get("retries"), Mapping) or isinstance(s.get("client"), Mapping)
    fig = _amplification_figure(data)
    if not has_summary and fig is None:
        return None
    left, right = "", ""
    per_rep = count_label(replication_count(data))
    amp_rows = _amplification_rows(data)
    if amp_rows:
        left += "<h3>Amplification</h3>" + table(["", "tries per call"], amp_rows)
    call_rows = _call_rows(data)
    if call_rows:
        left += "<h3>Calls and retries</h3>" + table(["", header_cell("count", per_rep)],
                                                      call_rows)
    reason_rows = _reason_rows(data)
    if reason_rows:
        left += "<h3>Gateway retries by reason</h3>" + table(
            ["Reason", header_cell("retries", per_rep), "share"], reason_rows)
    right += _overflow_table(data)
    timeout_rows = _timeout_rows(data)
    if timeout_rows:
        right += "<h3>Timeouts</h3>" + table(["", header_cell("count", per_rep)], timeout_rows)
    wasted = _wasted_rows(data)
    if wasted:
        right += "<h3>Wasted work</h3>" + table(["", header_cell("total", per_rep)], wasted)
    body = ""
    if left or right:
        body += f'<div class="grid2"><div>{left}</div><div>{right}</div></div>'
    if fig is not None:
        body += figure_html(fig, "fig-amplification", 340)
        note = ("Per second: backend tries sent by the gateways (first tries and retries) and "
                "client tries (retries included), each divided by the client calls offered in "
                "that second. 1 means no retries.")
        if data.timeseries and data.timeseries.replications > 1:
            note += (f" Both counts are means across {data.timeseries.replications} "
                     "replications before dividing.")
        body += f'<p class="note">{esc(note)}</p>'
    if isinstance(s.get("ci95"), Mapping) and ci_of(data, ("retries", "amplification")) is not None:
        body += '<p class="note">± values are 95 % confidence-interval half-widths.</p>'
    return Panel("Retries and amplification", body, "retries")

