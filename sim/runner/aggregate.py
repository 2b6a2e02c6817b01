"""Combining replications: each KPI's mean and its 95% confidence half-width.

Half-width = t(0.975, R-1) x s / sqrt(R), with s the sample standard deviation
across the R independent replications (Student's t; the replications are
i.i.d. because each has its own seed stream).
"""

from __future__ import annotations

import math
from typing import Any

from scipy import stats

#: Keys that describe the run rather than measure it: copied, not averaged.
FIXED = {"experiment", "description", "seed", "replications", "simulated_s", "warmup_s", "recovery_rules"}


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _keys(dicts: list[dict]) -> list:
    seen: dict = {}
    for d in dicts:
        for k in d:
            seen.setdefault(k, None)
    return list(seen)


def _combine(values: list[Any], half_width: bool) -> Any:
    if values and all(isinstance(v, bool) for v in values):
        # A yes/no outcome (recovered, metastable): the common answer, or the
        # fraction of replications that said yes when they disagree.
        if half_width:
            return math.nan
        return values[0] if len(set(values)) == 1 else sum(values) / len(values)
    if all(isinstance(v, dict) for v in values):
        out = {}
        for k in _keys(values):
            # A cause of failure missing from a replication occurred 0 times there.
            sub = [v.get(k, 0) for v in values]
            out[k] = _combine(sub, half_width)
        return out
    nums = [float(v) for v in values if _is_num(v) and math.isfinite(float(v))]
    if not nums or len(nums) != len(values):
        return math.nan if nums or any(_is_num(v) for v in values) else values[0]
    n = len(nums)
    mean = math.fsum(nums) / n
    if not half_width:
        return mean
    if n < 2:
        return math.nan
    var = math.fsum((x - mean) ** 2 for x in nums) / (n - 1)
    return float(stats.t.ppf(0.975, n - 1)) * math.sqrt(var / n)


def combine_summaries(summaries: list[dict]) -> dict:
    """The experiment summary from per-replication summaries (in replication order)."""
    if not summaries:
        raise ValueError("no replications to combine")
    first = summaries[0]
    if len(summaries) == 1:
        return dict(first)
    out: dict = {}
    ci: dict = {}
    for k in _keys(summaries):
        if k in FIXED:
            out[k] = first[k]
            continue
        values = [s.get(k, 0) for s in summaries]
        out[k] = _combine(values, False)
        hw = _combine(values, True)
        if isinstance(hw, dict) or (_is_num(hw) and not isinstance(out[k], bool)):
            ci[k] = hw
    recoveries = [s.get("recovery") for s in summaries]
    if all(isinstance(r, dict) and "verdict" in r for r in recoveries):
        # A verdict is not averaged: the common one, or "mixed" with each replication's.
        verdicts = [r["verdict"] for r in recoveries]
        out["recovery"]["verdict"] = verdicts[0] if len(set(verdicts)) == 1 else "mixed"
        out["recovery"]["by_replication"] = [
            {"verdict": r["verdict"], "recovery_s": r["recovery_s"],
             "baseline_degraded": r.get("baseline_degraded", False)} for r in recoveries]
    out["replications"] = len(summaries)
    out["ci95"] = ci
    return out
