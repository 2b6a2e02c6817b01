"""Report panels about faults and what they did: the timeline, the recovery, the retries.

The panels show the fault timeline, the recovery afterwards (the verdict of
``summary.json`` ``recovery``, its evidence and the rules it was judged by,
read from ``recovery_rules``), and the retries (how much extra load they
added).

Also the small computations the comparison report shares with these panels:
per-second amplification, the smoothed goodput, verdicts in plain words.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go

from sim.report.common import (
    C_AMPLIFICATION,
    C_CLIENT_TRIES,
    C_GOODPUT,
    C_OFFERED,
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


#: The verdicts ``summary.json`` ``recovery.verdict`` can hold (``sim.metrics.recovery``), and
#: "mixed" for replications that disagree.
VERDICTS = ("recovered", "metastable", "not_recovered_within_run", "no_baseline")
MIXED = "mixed"

#: Each verdict as a user reads it.
VERDICT_LABELS = {"recovered": "recovered", "metastable": "metastable",
                  "not_recovered_within_run": "not recovered within the run",
                  "no_baseline": "not judged: no successful call before the fault",
                  MIXED: "mixed", "unknown": "outcome not recorded"}


@dataclass(frozen=True)
class RecoveryRules:
    """``summary.json`` ``recovery_rules``: the rules the verdict was judged by.

    The report reads them from the summary (the simulator records them with
    every verdict) rather than keeping a copy of its own.
    """

    threshold: float
    baseline_s: float | None = None
    hold_s: float | None = None
    smooth_s: int | None = None


def parse_rules(summary: Mapping[str, Any]) -> RecoveryRules | None:
    """``summary.json`` ``recovery_rules``; None when absent (a summary from before they were recorded)."""
    rules = summary.get("recovery_rules")
    if not isinstance(rules, Mapping):
        return None
    threshold = as_number(rules.get("threshold"))
    if threshold is None or threshold <= 0:
        return None
    smooth = as_number(rules.get("smooth_s"))

    def positive(key: str) -> float | None:
        v = as_number(rules.get(key))
        return v if v is not None and v > 0 else None

    return RecoveryRules(threshold=threshold, baseline_s=positive("baseline_s"),
                         hold_s=positive("hold_s"),
                         smooth_s=int(smooth) if smooth is not None and smooth >= 1
                         and smooth == int(smooth) else None)


@dataclass(frozen=True)
class ReplicationVerdict:
    """One replication's entry of ``recovery.by_replication`` (replications that disagree)."""

    number: int
    verdict: str
    recovery_s: float | None
    baseline_degraded: bool


@dataclass(frozen=True)
class Recovery:
    """``summary.json`` ``recovery``, validated.

    ``verdict`` is ``recovered``, ``metastable``, ``not_recovered_within_run``
    or ``mixed`` (None in a summary from before verdicts were recorded: then
    :attr:`outcome` falls back to the booleans).  ``recovered``,
    ``metastable`` and ``baseline_degraded`` are a bool when every replication
    agreed, else the fraction of replications that said yes (``None`` if
    absent).  The tail fields are the evidence of a verdict other than
    recovered: the run's last ``tail_s`` seconds, their mean goodput and its
    trend, the backlog's trend, against ``target_rps``.
    """

    fault_start_s: float | None
    fault_end_s: float | None
    before: float | None
    during: float | None
    after: float | None
    recovered: bool | float | None
    metastable: bool | float | None
    recovery_s: float | None
    verdict: str | None = None
    by_replication: tuple[ReplicationVerdict, ...] = ()
    baseline_success_ratio: float | None = None
    baseline_degraded: bool | float | None = None
    tail_s: float | None = None
    tail_goodput: float | None = None
    goodput_trend: float | None = None
    backlog_trend: float | None = None
    target_rps: float | None = None
    rules: RecoveryRules | None = None
    #: Whole seconds of the run after the fault ended (None without the run's length).
    run_after_s: float | None = None

    @property
    def outcome(self) -> str:
        """The verdict, or from the booleans of an older summary: ``recovered``, ``metastable``, ``mixed``, ``unknown``.

        The verdicts are ``recovered``, ``metastable``, ``not_recovered_within_run``
        and ``mixed``.
        """
        if self.verdict in VERDICTS or self.verdict == MIXED:
            return self.verdict
        if self.recovered is True or (self.recovered is None and self.metastable is False):
            return "recovered"
        if self.metastable is True or (self.metastable is None and self.recovered is False):
            return "metastable"
        if isinstance(self.recovered, float) or isinstance(self.metastable, float):
            return MIXED
        return "unknown"

    @property
    def recovered_fraction(self) -> float | None:
        """Share of replications that recovered: ``recovered``, else 1 - ``metastable``; None if neither."""
        if self.by_replication:
            return sum(r.verdict == "recovered" for r in self.by_replication) / len(self.by_replication)
        if isinstance(self.recovered, bool):
            return float(self.recovered)
        if as_number(self.recovered) is not None:
            return float(self.recovered)
        if as_number(self.metastable) is not None:
            return 1.0 - float(self.metastable)
        return None

    @property
    def target(self) -> float | None:
        """The goodput recovery is judged against (req/s): ``target_rps``, else threshold x baseline."""
        if self.target_rps is not None:
            return self.target_rps
        if self.rules is not None and self.before is not None:
            return self.rules.threshold * self.before
        return None

    @property
    def degraded_before(self) -> bool:
        """The fleet was already failing before the fault, in any replication."""
        flag = self.baseline_degraded
        return bool(flag) or any(r.baseline_degraded for r in self.by_replication)

    def share(self, value: float | None) -> float | None:
        """``value`` as a fraction of the pre-fault goodput."""
        return value / self.before if value is not None and self.before else None


def _flag(value: Any) -> bool | float | None:
    if isinstance(value, bool):
        return value
    v = as_number(value)
    return None if v is None else min(1.0, max(0.0, v))


def _by_replication(items: Any) -> tuple[ReplicationVerdict, ...]:
    if not isinstance(items, list):
        return ()
    out = []
    for i, item in enumerate(items, 1):
        if not isinstance(item, Mapping):
            return ()
        verdict = item.get("verdict")
        out.append(ReplicationVerdict(
            number=i, verdict=verdict if verdict in VERDICTS else "unknown",
            recovery_s=as_number(item.get("recovery_s")),
            baseline_degraded=item.get("baseline_degraded") is True))
    return tuple(out)


def parse_recovery(summary: Mapping[str, Any]) -> Recovery | None:
    """The ``recovery`` section of a ``summary.json`` (goodput in req/s, times in s); None without one."""
    rec = summary.get("recovery")
    if not isinstance(rec, Mapping):
        return None
    verdict = rec.get("verdict")
    fault_end = as_number(rec.get("fault_end_s"))
    duration = as_number(summary.get("simulated_s"))
    return Recovery(
        fault_start_s=as_number(rec.get("fault_start_s")),
        fault_end_s=fault_end,
        before=as_number(rec.get("goodput_before_rps")),
        during=as_number(rec.get("goodput_during_rps")),
        after=as_number(rec.get("goodput_after_rps")), recovered=_flag(rec.get("recovered")),
        metastable=_flag(rec.get("metastable")), recovery_s=as_number(rec.get("recovery_s")),
        verdict=verdict if isinstance(verdict, str) else None,
        by_replication=_by_replication(rec.get("by_replication")),
        baseline_success_ratio=as_number(rec.get("baseline_success_ratio")),
        baseline_degraded=_flag(rec.get("baseline_degraded")),
        tail_s=as_number(rec.get("tail_s")),
        tail_goodput=as_number(rec.get("goodput_tail_rps")),
        goodput_trend=as_number(rec.get("goodput_trend_rps_per_s")),
        backlog_trend=as_number(rec.get("backlog_trend_per_s")),
        target_rps=as_number(rec.get("target_rps")),
        rules=parse_rules(summary),
        run_after_s=(math.floor(duration) - fault_end
                     if duration is not None and fault_end is not None else None))


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
# Verdicts in words (shared with the comparison report)
# --------------------------------------------------------------------------

#: A goodput trend that moves goodput by less than this share of the target
#: over the whole tail reads as "~0".
FLAT_GOODPUT_SHARE = 0.01

#: A backlog trend that changes the calls in flight by less than this many
#: calls over the whole tail reads as "flat".
FLAT_BACKLOG_CALLS = 1.0


def _signed(value: float) -> str:
    """``value`` with its sign: "+1.2", "−3.4" (a true minus sign)."""
    return ("−" if value < 0 else "+") + fmt_value(abs(value))


def _secs(value: float) -> str:
    """A length of time from the rules or the run: "5", "12.5"."""
    return f"{value:,g}"


def _rates(*values: float) -> list[str]:
    """Goodput figures printed side by side, with one precision for all."""
    column = Column.of(values)
    return [column(v) for v in values]


def goodput_trend_text(rec: Recovery) -> str | None:
    """The goodput trend over the tail, req/s per s: "~0", "+1.2" or "−3.4"; None if unknown."""
    trend = rec.goodput_trend
    if trend is None:
        return None
    target = rec.target
    if trend == 0 or (target and abs(trend) * (rec.tail_s or 1.0) < FLAT_GOODPUT_SHARE * target):
        return "~0"
    return _signed(trend)


def backlog_state(rec: Recovery) -> str | None:
    """``growing``, ``flat`` or ``draining`` over the tail; None when the backlog was not recorded."""
    trend = rec.backlog_trend
    if trend is None:
        return None
    if abs(trend) * (rec.tail_s or 1.0) < FLAT_BACKLOG_CALLS:
        return "flat"
    return "growing" if trend > 0 else "draining"


def backlog_text(rec: Recovery, draining: str = "draining") -> str | None:
    """"backlog growing (+0.9 calls in flight per s)", "backlog flat", ...; None if unknown."""
    state = backlog_state(rec)
    if state is None:
        return None
    if state == "flat":
        return "backlog flat"
    word = draining if state == "draining" else state
    return f"backlog {word} ({_signed(rec.backlog_trend)} calls in flight per s)"


def metastable_detail(rec: Recovery) -> str:
    """The evidence of a metastable verdict in words; "" without it (an older summary).

    For example "goodput 0.0 req/s at the end against a target of 899.7
    req/s, trend ~0 req/s per s, backlog growing (+0.945 calls in flight per
    s)".
    """
    parts = []
    if rec.tail_goodput is not None and rec.target is not None:
        tail, target = _rates(rec.tail_goodput, rec.target)
        parts.append(f"goodput {tail} req/s at the end against a target of {target} req/s")
    trend = goodput_trend_text(rec)
    if trend is not None:
        parts.append(f"trend {trend} req/s per s")
    backlog = backlog_text(rec, draining="draining too slowly")
    if backlog is not None:
        parts.append(backlog)
    return ", ".join(parts)


def not_recovered_detail(rec: Recovery, noun: str = "the fault") -> str:
    """Why a run that did not recover is inconclusive, and what to do: "still climbing (...) — run longer".

    The reasons are those of the verdict (``sim.metrics.recovery``, rule 7),
    told from the summary's evidence: too little of the run after the fault,
    goodput back at the target without the hold yet, goodput still climbing,
    or the backlog still draining.
    """
    rules = rec.rules
    needed = (2 * (rules.hold_s + rules.smooth_s)
              if rules is not None and rules.hold_s and rules.smooth_s else None)
    target = rec.target
    if rec.run_after_s is not None and needed is not None and rec.run_after_s < needed:
        why = f"only {_secs(rec.run_after_s)} s of the run followed {noun}, too little to tell"
    elif rec.tail_goodput is not None and target is not None \
            and rec.tail_goodput >= target * (1 - 1e-9):
        tail, target_txt = _rates(rec.tail_goodput, target)
        held = (f"held it for {_secs(rules.hold_s)} s" if rules is not None and rules.hold_s
                else "held it long enough")
        why = (f"goodput {tail} req/s at the end was back at the target of {target_txt} req/s "
               f"but had not yet {held}")
    elif rec.goodput_trend is not None and rec.goodput_trend > 0:
        why = f"still climbing ({_signed(rec.goodput_trend)} req/s per s)"
    elif rec.backlog_trend is not None and rec.backlog_trend < 0:
        why = f"backlog still draining ({_signed(rec.backlog_trend)} calls in flight per s)"
    else:
        why = "recovery still under way when the run ended"
    return f"{why} — run longer"


def replication_phrase(r: ReplicationVerdict) -> str:
    """One replication's verdict: "recovered in 8.0 s", "metastable", ..."""
    if r.verdict == "recovered" and r.recovery_s is not None:
        return f"recovered in {fmt_seconds(r.recovery_s)} s"
    return VERDICT_LABELS.get(r.verdict, VERDICT_LABELS["unknown"])


def mixed_detail(rec: Recovery, replications: int | None) -> str:
    """Replications that disagree: each one's verdict, or (an older summary) the share that recovered."""
    if rec.by_replication:
        return ", ".join(f"replication {r.number} {replication_phrase(r)}"
                         for r in rec.by_replication)
    return mixed_phrase(rec, replications)


def verdict_phrase(rec: Recovery, replications: int | None = None,
                   noun: str = "the fault") -> str:
    """The verdict as a user replaying an incident reads it (plain text).

    "recovered in 8.0 s"; "metastable: goodput 0.0 req/s at the end against a
    target of 899.7 req/s, trend ~0 req/s per s, backlog growing (+0.9 calls
    in flight per s)"; "not recovered within the run: still climbing (+12.0
    req/s per s) — run longer"; "mixed: replication 1 recovered in 8.0 s,
    replication 2 metastable".
    """
    outcome = rec.outcome
    if outcome == "recovered":
        return (f"recovered in {fmt_seconds(rec.recovery_s)} s" if rec.recovery_s is not None
                else "recovered")
    if outcome == "metastable":
        detail = metastable_detail(rec)
        return "metastable" + (f": {detail}" if detail else "")
    if outcome == "not_recovered_within_run":
        return f"{VERDICT_LABELS[outcome]}: {not_recovered_detail(rec, noun)}"
    if outcome == MIXED:
        return f"mixed: {mixed_detail(rec, replications)}"
    return VERDICT_LABELS.get(outcome, VERDICT_LABELS["unknown"])


def _pct_below(ratio: float, threshold: float | None) -> str:
    """``ratio`` as a percentage with the decimals that keep it visibly below ``threshold``."""
    for digits in (0, 1, 2):
        text = fmt_pct(ratio, digits)
        if threshold is None or ratio >= threshold \
                or round(100 * ratio, digits) < round(100 * threshold, digits):
            return text
    return text


def _numbers_text(numbers: Sequence[int]) -> str:
    """"1", "1 and 3", "1, 2 and 4"."""
    words = [str(n) for n in numbers]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + f" and {words[-1]}"


def baseline_flag(rec: Recovery, replications: int | None = None) -> str:
    """"the fleet was already failing before the fault (85 % of calls succeeded)"; "" when it was not.

    When only some replications were failing before the fault, it names them
    (or, in an older summary, says in how many).
    """
    if not rec.degraded_before:
        return ""
    ratio = rec.baseline_success_ratio
    threshold = rec.rules.threshold if rec.rules is not None else None
    text = "the fleet was already failing before the fault"
    average = ""
    failing = [r.number for r in rec.by_replication if r.baseline_degraded]
    if rec.by_replication and len(failing) < len(rec.by_replication):
        word = "replication" if len(failing) == 1 else "replications"
        text = f"in {word} {_numbers_text(failing)} {text}"
        average = " on average over all replications"
    elif not rec.by_replication and isinstance(rec.baseline_degraded, float):
        share = rec.baseline_degraded
        text += (f" in {round(share * replications)} of {replications} replications"
                 if replications else f" in {fmt_pct(share)} of replications")
        average = " on average over all replications"
    if ratio is not None:
        text += f" ({_pct_below(ratio, threshold)} of calls succeeded{average})"
    return text


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


def recovery_rule(rules: RecoveryRules | None) -> str:
    """The recovery rules in words, with the numbers the summary recorded (trusted HTML).

    Args:
        rules: ``summary.json`` ``recovery_rules``; None (a summary from before
            they were recorded) says so instead of guessing them.
    """
    if rules is None:
        return ("This summary does not record the rules its recovery verdict was judged by "
                "(it was written before fleetsim recorded them), so they are not restated here.")
    pct = fmt_pct(rules.threshold)
    smooth = (f"smoothed over {rules.smooth_s} s (trailing mean)" if rules.smooth_s
              else "smoothed")
    hold = f" and hold there for {_secs(rules.hold_s)} s" if rules.hold_s else " and hold there"
    base = (f"over the {_secs(rules.baseline_s)} s before the first fault" if rules.baseline_s
            else "before the first fault")
    return (f"Rule: goodput, {esc(smooth)}, must come back to {esc(pct)} of its pre-fault "
            f"level{esc(hold)}. The pre-fault level is the mean goodput {esc(base)} (after the "
            "warm-up); the recovery time counts from the end of the last fault. A run that has "
            "not got there by its end is judged on its last part (the tail): "
            "<em>metastable</em> when goodput there is flat or falling and the backlog of calls "
            "in flight is not draining (it stayed degraded long after the trigger was gone); "
            "<em>not recovered within the run</em> when goodput is still climbing, the backlog "
            "is draining, or too little of the run follows the fault (inconclusive: run "
            "longer). The fleet was <em>already failing before the fault</em> when fewer than "
            f"{esc(pct)} of the calls offered before it succeeded.")


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def recovery_verdict(data: RunData, rec: Recovery) -> str:
    """The verdict in plain words, its evidence, and the baseline flag (trusted HTML)."""
    noun = fault_noun(data.faults)
    end_txt = (f" (at {fmt_value(rec.fault_end_s)} s)" if rec.fault_end_s is not None else "")
    ended = f"{noun} ended{end_txt}"
    rules = rec.rules
    level = (f"{fmt_pct(rules.threshold)} of its pre-fault level" if rules is not None
             else "its recovery target")
    outcome = rec.outcome
    if outcome == "recovered":
        if rec.recovery_s is not None:
            title = f"Recovered in {fmt_seconds(rec.recovery_s)} s."
            when = f"{fmt_seconds(rec.recovery_s)} s after {ended}"
        else:
            title, when = "Recovered.", f"after {ended}"
        text = (f'<strong class="ok">{esc(title)}</strong> Goodput came back to {esc(level)} '
                f"{esc(when)} and stayed there.")
    elif outcome == "metastable":
        detail = metastable_detail(rec)
        if detail:
            tail = (f" (the run's last {_secs(rec.tail_s)} s)" if rec.tail_s is not None else "")
            text = (f'<strong class="bad">Metastable:</strong> {esc(detail)}. Goodput was '
                    f"still degraded long after {esc(ended)}, and not coming back{esc(tail)}: "
                    "something (most often retries) kept the fleet down after the trigger was "
                    "gone.")
        else:  # a summary from before verdicts were recorded
            share, where = end_share(data, rec)
            text = (f'<strong class="bad">Metastable.</strong> Goodput did not come back to '
                    f"{esc(level)} after {esc(ended)}; it stayed collapsed until the end of the "
                    "run")
            if share is not None:
                text += f" ({esc(fmt_pct(share))} of the pre-fault level {esc(where)})"
            text += "."
    elif outcome == "not_recovered_within_run":
        text = (f'<strong class="warnbg">Not recovered within the run:</strong> '
                f"{esc(not_recovered_detail(rec, noun))}. Goodput had not yet come back to "
                f"{esc(level)} when the run ended")
        if rec.run_after_s is not None:
            text += f", {esc(_secs(rec.run_after_s))} s after {esc(ended)}"
        text += (", but it was not stuck either: this run is too short to tell whether and "
                 "when the fleet recovers.")
        if rec.tail_goodput is not None and rec.target is not None and rec.tail_s is not None:
            tail, target = _rates(rec.tail_goodput, rec.target)
            evidence = [f"trend {t} req/s per s" for t in [goodput_trend_text(rec)] if t]
            evidence += [b for b in [backlog_text(rec)] if b]
            text += (f" Over its last {esc(_secs(rec.tail_s))} s goodput averaged {esc(tail)} "
                     f"req/s against a target of {esc(target)} req/s"
                     + (f" ({esc(', '.join(evidence))})" if evidence else "") + ".")
    elif outcome == MIXED:
        replications = replication_count(data)
        if rec.by_replication:
            text = (f'<strong class="warnbg">Mixed:</strong> the replications disagree after '
                    f"{esc(ended)}: {esc(mixed_detail(rec, replications))}.")
        else:  # a summary from before verdicts were recorded
            text = (f'<strong class="warnbg">Mixed.</strong> Goodput '
                    f"{esc(mixed_phrase(rec, replications))}; the others stayed collapsed after "
                    f"{esc(ended)}")
            if rec.recovery_s is not None:
                text += f"; mean recovery time {esc(fmt_seconds(rec.recovery_s))} s where recovered"
            text += "."
    elif outcome == "no_baseline":
        text = ('<strong class="warnbg">Not judged:</strong> no call succeeded before the fault '
                "(every call failing, or no traffic yet), so there is no level to recover to.")
    else:
        text = "The recovery outcome was not recorded."
    flag = baseline_flag(rec, replication_count(data))
    if flag:
        text += (f'<br><span class="warn">⚠ {esc(_capitalised(flag))}: read the verdict '
                 "against that.</span>")
    return text


def _tail_trend(data: RunData, rec: Recovery) -> tuple[list[float], list[float]] | None:
    """The least-squares line of goodput over the tail (x = each second's start, y = req/s)."""
    duration = as_number(data.summary.get("simulated_s"))
    if rec.outcome not in ("metastable", "not_recovered_within_run") or duration is None \
            or rec.tail_s is None or rec.tail_goodput is None or rec.goodput_trend is None:
        return None
    end = math.floor(duration)
    first = end - math.floor(rec.tail_s)
    if first >= end:
        return None
    # The fit runs through the mean of the tail's seconds and their mean goodput.
    middle = (first + end - 1) / 2
    xs = [float(first), float(end - 1)]
    return xs, [rec.tail_goodput + rec.goodput_trend * (x - middle) for x in xs]


def _recovery_figure(data: RunData, rec: Recovery) -> go.Figure | None:
    ts = data.timeseries
    goodput = ts.get("goodput") if ts else None
    if ts is None or goodput is None:
        return None
    rules = rec.rules
    smooth_s = rules.smooth_s if rules is not None else None
    fig = go.Figure()
    if ts.get("offered"):
        fig.add_trace(go.Scatter(x=ts.t, y=ts.columns["offered"], name="offered", mode="lines",
                                 line={"color": C_OFFERED, "width": 1.5, "dash": "dot"},
                                 hovertemplate="%{y:,.1f} req/s"))
    fig.add_trace(go.Scatter(x=ts.t, y=goodput, name="goodput", mode="lines",
                             line={"color": C_GOODPUT, "width": 1 if smooth_s else 2},
                             opacity=0.45 if smooth_s else 1.0,
                             hovertemplate="%{y:,.1f} req/s"))
    if smooth_s:
        fig.add_trace(go.Scatter(x=ts.t, y=trailing_mean(goodput, smooth_s),
                                 name=f"goodput, {smooth_s} s mean", mode="lines",
                                 line={"color": C_GOODPUT, "width": 2.5},
                                 hovertemplate="%{y:,.1f} req/s"))
    trend = _tail_trend(data, rec)
    if trend is not None:
        fig.add_trace(go.Scatter(x=trend[0], y=trend[1], mode="lines",
                                 name=f"trend over the last {_secs(rec.tail_s)} s",
                                 line={"color": C_THRESHOLD, "width": 3},
                                 hovertemplate="%{y:,.1f} req/s"))
    if rec.before:
        fig.add_hline(y=rec.before, line={"color": "#52606d", "width": 1, "dash": "dot"},
                      annotation_text=f"pre-fault {fmt_value(rec.before)} req/s",
                      annotation_position="bottom right",
                      annotation_font={"size": 11, "color": "#52606d"})
    target = rec.target
    if target is not None:
        label = (f"target: {fmt_pct(rules.threshold)} of pre-fault" if rules is not None
                 else "recovery target")
        fig.add_hline(y=target, line={"color": C_THRESHOLD, "width": 1.5, "dash": "dash"},
                      annotation_text=label, annotation_position="bottom left",
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


def _muted(text: str) -> str:
    return f' <span class="muted">{esc(text)}</span>'


def _outcome_rows(data: RunData, rec: Recovery) -> list[list[str]]:
    """The verdict, the recovery time and the evidence, as rows of the outcome table."""
    outcome = rec.outcome
    replications = replication_count(data)
    if outcome == MIXED:
        verdict = ("mixed: the replications disagree (below)" if rec.by_replication
                   else f"mixed: {mixed_phrase(rec, replications)}")
    else:
        verdict = VERDICT_LABELS.get(outcome, "—")
    css = {"recovered": "ok", "metastable": "bad"}.get(outcome, "warnbg")
    rows = [[esc("Verdict"), f'<span class="{css}">{esc(verdict)}</span>']]
    if rec.recovery_s is not None:
        ci = as_number(ci_of(data, ("recovery", "recovery_s")))
        text = fmt_value(rec.recovery_s, ci) if ci is not None else fmt_seconds(rec.recovery_s)
        rec_time = esc(text) + unit_html("s after the fault ended")
    else:
        rec_time = esc({"metastable": "— (did not recover)",
                        "not_recovered_within_run": "— (not within the run)",
                        MIXED: "— (by replication, below)" if rec.by_replication else "—",
                        }.get(outcome, "—"))
    rows.append([esc("Recovery time"), rec_time])
    if outcome in ("metastable", "not_recovered_within_run") and rec.tail_goodput is not None:
        target = rec.target
        tail, target_txt = _rates(rec.tail_goodput, target if target is not None else 0.0)
        label = (f"Goodput, last {_secs(rec.tail_s)} s" if rec.tail_s is not None
                 else "Goodput at the end")
        rows.append([esc(label), esc(tail) + unit_html("req/s")])
        if target is not None:
            of = (_muted(f"({fmt_pct(rec.rules.threshold)} of pre-fault)")
                  if rec.rules is not None else "")
            rows.append([esc("Target"), esc(target_txt) + unit_html("req/s") + of])
        trend = goodput_trend_text(rec)
        if trend is not None:
            rows.append([esc("Goodput trend"), esc(trend) + unit_html("req/s per s")])
        state = backlog_state(rec)
        rows.append([esc("Backlog trend"),
                     esc(_signed(rec.backlog_trend)) + unit_html("calls in flight per s")
                     + _muted(f"({state})") if state is not None else esc("— (not recorded)")])
    if rec.baseline_success_ratio is not None:
        threshold = rec.rules.threshold if rec.rules is not None else None
        text = esc(_pct_below(rec.baseline_success_ratio, threshold)) + unit_html("of calls")
        if rec.degraded_before:
            text = f'<span class="warn">{text}</span>' + _muted("(already failing)")
        rows.append([esc("Succeeded before the fault"), text])
    return rows


def _replications_table(rec: Recovery) -> str:
    """Each replication's verdict and recovery time, when the replications disagree."""
    rows = []
    for r in rec.by_replication:
        css = {"recovered": "ok", "metastable": "bad"}.get(r.verdict, "warnbg")
        rows.append([esc(r.number),
                     f'<span class="{css}">{esc(VERDICT_LABELS.get(r.verdict, "—"))}</span>',
                     esc(fmt_seconds(r.recovery_s)),
                     '<span class="warn">already failing</span>' if r.baseline_degraded
                     else '<span class="muted">—</span>'])
    return table(["Replication", "Verdict", header_cell("Recovery time", "s after the fault"),
                  "Before the fault"], rows, cls="kpi replications")


def recovery_panel(data: RunData) -> Panel | None:
    """Goodput before, during and after the faults; the verdict, its evidence, and when."""
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
    outcome_table = table(["Outcome", ""], _outcome_rows(data, rec))
    outcome = rec.outcome
    body = (f'<p class="verdict {esc(outcome)}">{recovery_verdict(data, rec)}</p>'
            f'<div class="grid2"><div>{goodput_table}</div><div>{outcome_table}</div></div>')
    if outcome == MIXED and rec.by_replication:
        body += _replications_table(rec)
    fig = _recovery_figure(data, rec)
    if fig is not None:
        body += figure_html(fig, "fig-recovery", 380)
    notes = [recovery_rule(rec.rules)]
    replications = replication_count(data)
    if replications and replications > 1:
        notes.append(f"Recovery is judged in each of the {replications} replications; the chart "
                     "shows their mean goodput per second"
                     + (", the evidence figures are means over the replications."
                        if outcome in ("metastable", "not_recovered_within_run") else "."))
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

