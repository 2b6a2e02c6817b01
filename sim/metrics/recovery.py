"""Recovery after a fault window: did goodput come back, how fast, or is it metastable?

Bronson et al. (HotOS 2021) call a system *metastable* when a trigger (a load
spike, lost capacity) starts a sustaining effect, most often retries (Huang et
al., OSDI 2022), that keeps goodput low after the trigger is gone. This module
turns a per-second goodput series and the experiment's fault windows into one
:class:`Recovery` record. It is pure Python and numpy and knows nothing of the
simulator.

Input. ``goodput_per_s[i]`` is the number of successful responses completed in
simulated second ``[i, i + 1)``. Only *whole* seconds of the run are judged:
seconds ``0 .. floor(duration_s) - 1``; a partial last second (a run of
100.5 s has a bin for ``[100, 100.5)``) and any later bins are ignored, and a
series shorter than ``floor(duration_s)`` is an error. Values must be finite
and non-negative.

Rules, in order (every interval below means the whole seconds ``i`` with
``start <= i`` and ``i + 1 <= end``, i.e. the bins lying entirely inside it;
see :func:`goodput_mean_over`):

1. **Fault span.** ``fault_start_s`` is the earliest window start and
   ``fault_end_s`` the latest window end. Overlapping or touching windows
   merge into one interval; a gap between disjoint windows counts as part of
   the fault, so recovery is judged only after the *last* window ends. No
   windows: :func:`analyse_recovery` returns None. A window needs
   ``0 <= start < end``.
2. **Baseline** (``goodput_before_rps``): mean goodput over
   ``[max(warmup_s, fault_start_s - baseline_s), fault_start_s)``. If that
   holds no whole second (the fault starts at or too soon after the end of
   warm-up), the mean over ``[0, fault_start_s)`` is used instead; if that is
   empty too (the fault starts before second 1), ValueError. A baseline of 0
   (no successful call before the fault: every call failing, or no traffic
   yet) cannot be recovered to: the verdict is ``no_baseline`` (recovered and
   metastable both False), and nothing else is judged.
3. ``goodput_during_rps``: mean over ``[fault_start_s, fault_end_s)``, NaN if
   the fault covers no whole second. ``goodput_after_rps``: mean over
   ``[fault_end_s, floor(duration_s))``.
4. **Smoothing.** ``smoothed[t]`` is the trailing moving average of raw
   goodput over seconds ``t - smooth_s + 1 .. t`` (fewer seconds at the very
   start of the run, where the window would begin before second 0). The
   window at a second just after the fault still holds fault seconds, so a
   dip delays recovery by up to ``smooth_s - 1`` seconds; that is the price
   of not letting one noisy second count. ``smooth_s = 1`` disables it.
5. **Recovered.** ``t`` runs over whole seconds ``t >= fault_end_s`` (the
   first candidate is ``ceil(fault_end_s)``). Second ``t`` *meets* the
   target when ``smoothed[t] >= threshold x baseline`` (a relative tolerance
   of 1e-9 is allowed so that floating-point rounding in the means cannot
   decide a tie). The recovery second is the first ``t`` such that every
   second in ``[t, t + hold_s)`` (that is ``ceil(hold_s)`` seconds,
   ``t .. t + ceil(hold_s) - 1``) meets the target and lies inside the
   judged run. Then ``recovered`` is True, ``recovery_s = t - fault_end_s``
   (0 when goodput never dropped and the fault ended on a whole second) and
   ``metastable`` is False. If no such ``t`` exists: ``recovered`` False,
   ``recovery_s`` None, and the verdict is one of the two below (rule 7).
6. **Too short to judge.** If ``floor(duration_s) - fault_end_s <
   hold_s + smooth_s``, ValueError: the run ends too soon after the fault.
   Design experiments with a longer tail than the recovery you hope to see.
7. **Metastable or not yet recovered.** A fault that leaves goodput low to
   the end of the run means one of two things: the fleet is stuck (a
   sustaining effect keeps it down: *metastable*), or it is still climbing
   back and the run ended first (*not recovered within the run*:
   inconclusive, run longer). The evidence is the run's last part, the
   *tail*: its last ``min(30 s, max(hold_s + smooth_s, half the time since
   the fault ended))`` whole seconds, over which the least-squares trends of
   goodput (successes/s per s) and, when given, of the backlog (calls in
   flight per s) are fitted. The verdict is *not recovered within the run*
   when (a) fewer than ``2 x (hold_s + smooth_s)`` seconds follow the fault
   (too little after it to call anything stuck), or (b) the tail's mean
   goodput already reaches the target (it only lacked the hold), or (c)
   goodput is rising fast enough to reach the target, at its tail trend,
   within as long again as the time since the fault ended, or (d) the
   backlog is draining fast enough to empty within that time. Otherwise it
   is *metastable*: degraded long after the trigger ended, goodput flat or
   falling, backlog not draining.
8. **A baseline that was not healthy.** With ``offered_per_s`` given, the
   baseline's *success ratio* is its goodput over the calls offered per
   second in the same seconds; below ``threshold`` the fleet was already
   failing before the fault (near capacity, say), ``baseline_degraded`` is
   True, and the verdict should be read against that.

Because every comparison is relative to the baseline, scaling the whole
series by a positive constant changes neither ``recovered`` nor
``recovery_s``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

#: The recovery rules every run with faults is judged by (the keyword
#: arguments of :func:`analyse_recovery`): goodput back to 90% of its level
#: before the fault (the mean over up to 30 s before it), smoothed over 3 s
#: and held for 5 s. ``summary.json`` records them with each verdict, so the
#: report and the checks read them rather than restating them.
RECOVERY_RULES = {"threshold": 0.9, "baseline_s": 30.0, "hold_s": 5.0, "smooth_s": 3}

# Ties between the smoothed goodput and threshold x baseline are decided by
# rounding in two different means; this slack makes a tie count as reaching it.
_REL_TOL = 1e-9


@dataclass(frozen=True)
class Recovery:
    """How goodput behaved around the fault span (rates in successful responses per second).

    Attributes:
        verdict: ``recovered``, ``metastable`` or ``not_recovered_within_run`` (rule 7), or
            ``no_baseline`` (rule 2: no successful call before the fault to recover to).
        fault_start_s: start of the fault span (earliest window start), seconds.
        fault_end_s: end of the fault span (latest window end), seconds.
        goodput_before_rps: the baseline (rule 2 of the module docstring).
        goodput_during_rps: mean over the fault span; NaN if it holds no whole second.
        goodput_after_rps: mean from the fault end to the end of the run.
        recovered: goodput came back to threshold x baseline and held there.
        recovery_s: seconds from the fault end to the recovery second; None if not recovered.
        metastable: the verdict is ``metastable``.
        baseline_success_ratio: baseline goodput over the calls offered per second before
            the fault (None without ``offered_per_s``).
        baseline_degraded: that ratio is below the threshold: the fleet was failing before
            the fault.
        tail_s: length of the tail the trends were fitted over (None when recovered).
        goodput_tail_rps: mean goodput over the tail.
        goodput_trend_rps_per_s: least-squares slope of goodput over the tail.
        backlog_trend_per_s: least-squares slope of calls in flight over the tail (None
            without ``in_flight_per_s``).
        target_rps: ``threshold`` x the baseline.
    """

    verdict: str
    fault_start_s: float
    fault_end_s: float
    goodput_before_rps: float
    goodput_during_rps: float
    goodput_after_rps: float
    recovered: bool
    recovery_s: float | None
    metastable: bool
    baseline_success_ratio: float | None = None
    baseline_degraded: bool = False
    tail_s: float | None = None
    goodput_tail_rps: float | None = None
    goodput_trend_rps_per_s: float | None = None
    backlog_trend_per_s: float | None = None
    target_rps: float | None = None

    def to_dict(self) -> dict:
        """The fields as a JSON-friendly dict: plain floats and bools, None for NaN or missing."""
        out: dict = {}
        for key, value in asdict(self).items():
            if isinstance(value, bool | str) or value is None:
                out[key] = value
            else:
                value = float(value)
                out[key] = None if math.isnan(value) else value
        return out


def _whole_seconds(start_s: float, end_s: float, n: int) -> tuple[int, int]:
    """Bin range [lo, hi) of the whole seconds inside [start_s, end_s), clipped to [0, n)."""
    lo = max(0, math.ceil(start_s))
    hi = min(n, math.floor(end_s))
    return lo, max(lo, hi)


def goodput_mean_over(goodput_per_s: Sequence[float], start_s: float, end_s: float) -> float:
    """Mean of ``goodput_per_s`` over the whole seconds inside ``[start_s, end_s)``.

    Second ``i`` (bin ``[i, i + 1)``) is included when ``start_s <= i`` and
    ``i + 1 <= end_s``; bins beyond the end of the series are simply absent.

    Returns:
        The mean in responses per second, or NaN if no whole second lies inside.

    Raises:
        ValueError: if ``end_s < start_s``.
    """
    if end_s < start_s:
        raise ValueError(f"interval end {end_s} is before its start {start_s}")
    values = np.asarray(goodput_per_s, dtype=float)
    lo, hi = _whole_seconds(start_s, end_s, len(values))
    if hi <= lo:
        return math.nan
    return float(values[lo:hi].mean())


def amplification_series(
    attempts_per_s: Sequence[float], requests_per_s: Sequence[float]
) -> np.ndarray:
    """Retry amplification per second: attempts sent / client requests, NaN where requests is 0.

    Args:
        attempts_per_s: upstream attempts (first tries plus retries) in each second.
        requests_per_s: client requests in the same seconds.

    Returns:
        A float array as long as the inputs.

    Raises:
        ValueError: if the two series differ in length.
    """
    attempts = np.asarray(attempts_per_s, dtype=float)
    requests = np.asarray(requests_per_s, dtype=float)
    if attempts.shape != requests.shape:
        raise ValueError(
            f"attempts_per_s has {attempts.size} seconds but requests_per_s has {requests.size}"
        )
    out = np.full(attempts.shape, math.nan)
    nonzero = requests != 0
    np.divide(attempts, requests, out=out, where=nonzero)
    return out


def _trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    sums = np.convolve(values, np.ones(window))[: len(values)]
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return sums / counts


def analyse_recovery(
    goodput_per_s: Sequence[float],
    fault_windows: Sequence[tuple[float, float]],
    *,
    warmup_s: float,
    duration_s: float,
    threshold: float = 0.9,
    baseline_s: float = 30.0,
    hold_s: float = 5.0,
    smooth_s: int = 3,
    offered_per_s: Sequence[float] | None = None,
    in_flight_per_s: Sequence[float] | None = None,
) -> Recovery | None:
    """Judge recovery after the fault span by the rules in the module docstring.

    Args:
        goodput_per_s: successful responses completed in each simulated second.
        fault_windows: (start_s, end_s) of each fault; their span is judged as one.
        warmup_s: end of warm-up; the baseline does not reach back before it.
        duration_s: length of the run in simulated seconds.
        threshold: fraction of the baseline that counts as recovered.
        baseline_s: longest stretch before the fault that the baseline averages.
        hold_s: how long the smoothed goodput must stay at or above the target.
        smooth_s: trailing moving-average window in whole seconds.
        offered_per_s: calls offered in each second (for the baseline's success ratio).
        in_flight_per_s: calls in flight at the end of each second (the backlog's trend).

    Returns:
        A :class:`Recovery`, or None if there is no fault window.

    Raises:
        ValueError: bad arguments, no whole second before the fault, or a run
            that ends too soon after the fault.
    """
    if not fault_windows:
        return None
    if isinstance(smooth_s, bool) or not (isinstance(smooth_s, int | np.integer) and smooth_s >= 1):
        raise ValueError(f"smooth_s must be a whole number of seconds >= 1, got {smooth_s!r}")
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    if not hold_s > 0:
        raise ValueError(f"hold_s must be positive, got {hold_s}")
    if not baseline_s > 0:
        raise ValueError(f"baseline_s must be positive, got {baseline_s}")
    if not warmup_s >= 0:
        raise ValueError(f"warmup_s must be >= 0, got {warmup_s}")
    if not duration_s > 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    for window in fault_windows:
        start, end = window
        if not 0 <= start < end:
            raise ValueError(f"fault window {tuple(window)} needs 0 <= start < end")

    n = math.floor(duration_s)
    values = np.asarray(goodput_per_s, dtype=float)
    if values.ndim != 1 or len(values) < n:
        raise ValueError(
            f"goodput_per_s has {values.size} seconds but a run of {duration_s} s needs {n}"
        )
    values = values[:n]
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError("goodput_per_s must hold finite, non-negative counts")

    fault_start = float(min(w[0] for w in fault_windows))
    fault_end = float(max(w[1] for w in fault_windows))

    tail = n - fault_end
    if tail < hold_s + smooth_s:
        raise ValueError(
            f"the run ends too soon after the fault: {tail:g} s of whole seconds follow the "
            f"fault end at {fault_end:g} s (run of {duration_s:g} s), but judging recovery needs "
            f"at least hold_s + smooth_s = {hold_s + smooth_s:g} s; lengthen the run"
        )

    baseline_start = max(warmup_s, fault_start - baseline_s)
    baseline = (goodput_mean_over(values, baseline_start, fault_start)
                if baseline_start < fault_start else math.nan)
    if math.isnan(baseline):
        # The fault starts before, at or within a second of the end of warm-up.
        baseline = goodput_mean_over(values, 0.0, fault_start)
    if math.isnan(baseline):
        raise ValueError(
            f"no whole second of goodput before the fault at {fault_start:g} s to use as a "
            f"baseline; start the fault at 1 s or later (after warm-up at {warmup_s:g} s)"
        )
    if baseline == 0:
        during = goodput_mean_over(values, fault_start, fault_end)
        return Recovery(verdict="no_baseline", fault_start_s=fault_start, fault_end_s=fault_end,
                        goodput_before_rps=0.0, goodput_during_rps=during,
                        goodput_after_rps=goodput_mean_over(values, fault_end, n),
                        recovered=False, recovery_s=None, metastable=False)

    during = goodput_mean_over(values, fault_start, fault_end)
    after = goodput_mean_over(values, fault_end, n)

    smoothed = _trailing_mean(values, smooth_s)
    meets = smoothed >= threshold * baseline * (1 - _REL_TOL)
    hold = math.ceil(hold_s)
    recovery_t = None
    run = 0
    # Scan for the first run of `hold` consecutive seconds that meet the target.
    for t in range(math.ceil(fault_end), n):
        run = run + 1 if meets[t] else 0
        if run == hold:
            recovery_t = t - hold + 1
            break

    recovered = recovery_t is not None
    ratio = None
    if offered_per_s is not None:
        offered = np.asarray(offered_per_s, dtype=float)[:n]
        start = baseline_start if not math.isnan(goodput_mean_over(values, baseline_start, fault_start)) else 0.0
        offered_mean = goodput_mean_over(offered, start, fault_start) if len(offered) == n else math.nan
        ratio = baseline / offered_mean if offered_mean and not math.isnan(offered_mean) else None
    target = threshold * baseline
    verdict = "recovered"
    tail = trend = backlog_trend = tail_mean = None
    if not recovered:
        since = n - fault_end
        tail = float(min(30.0, max(hold_s + smooth_s, since / 2)))
        first = n - math.floor(tail)
        xs = np.arange(first, n, dtype=float)
        tail_values = values[first:]
        tail_mean = float(tail_values.mean())
        trend = _slope(xs, tail_values)
        if in_flight_per_s is not None:
            backlog = np.asarray(in_flight_per_s, dtype=float)[first:n]
            backlog_trend = _slope(xs, backlog) if len(backlog) == len(xs) else None
        verdict = "metastable"
        if since < 2 * (hold_s + smooth_s) or tail_mean >= target * (1 - _REL_TOL):
            verdict = "not_recovered_within_run"
        elif trend > 0 and (target - tail_mean) / trend <= since:
            verdict = "not_recovered_within_run"
        elif (backlog_trend is not None and backlog_trend < 0
              and float(np.asarray(in_flight_per_s, dtype=float)[n - 1]) / -backlog_trend <= since):
            verdict = "not_recovered_within_run"
    return Recovery(
        verdict=verdict,
        fault_start_s=fault_start,
        fault_end_s=fault_end,
        goodput_before_rps=baseline,
        goodput_during_rps=during,
        goodput_after_rps=after,
        recovered=recovered,
        recovery_s=(recovery_t - fault_end) if recovered else None,
        metastable=verdict == "metastable",
        baseline_success_ratio=ratio,
        baseline_degraded=ratio is not None and ratio < threshold * (1 - _REL_TOL),
        tail_s=tail,
        goodput_tail_rps=tail_mean,
        goodput_trend_rps_per_s=trend,
        backlog_trend_per_s=backlog_trend,
        target_rps=target,
    )


def _slope(xs: np.ndarray, ys: np.ndarray) -> float:
    """Least-squares slope of ``ys`` over ``xs`` (per second)."""
    xc = xs - xs.mean()
    denom = float(np.dot(xc, xc))
    return float(np.dot(xc, ys - ys.mean()) / denom) if denom else 0.0
