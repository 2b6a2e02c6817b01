"""Helpers for honest statistical tests (docs/design.md#testing).

A statistical check passes only when the analytic value lies inside the 99%
confidence interval of the mean over independent replications AND that
interval is narrower than a stated tolerance: a wide interval proves nothing.
"""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from scipy import stats

from sim.config import load_experiment
from sim.runner import run_replication

ROOT = Path(__file__).resolve().parent.parent
VALIDATION = ROOT / "experiments" / "validation"


def load(name: str, sets: list[str] = ()):
    return load_experiment(VALIDATION / name, list(sets)).config


def replicate(exp, jobs: int = 2) -> list[dict]:
    """Every replication of ``exp`` (independent streams), in parallel processes."""
    data = exp.model_dump(mode="json", by_alias=True)
    reps = range(exp.replications)
    if jobs <= 1:
        return [run_replication(exp, r) for r in reps]
    with ProcessPoolExecutor(jobs) as pool:
        return list(pool.map(run_replication, [data] * len(reps), reps))


def ci(values: list[float], level: float = 0.99) -> tuple[float, float]:
    """Mean and half-width of the Student-t confidence interval."""
    n = len(values)
    if n < 2:
        raise ValueError("need at least two replications")
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)


def assert_matches(values: list[float], expected: float, rel_width: float, what: str, *, abs_width: float | None = None) -> None:
    """Expected inside the 99% CI, and the CI's half-width below the tolerance.

    The tolerance is ``rel_width * |expected|`` or, when given, ``abs_width``.
    """
    mean, half = ci(values)
    limit = abs_width if abs_width is not None else rel_width * abs(expected)
    detail = f"{what}: simulated {mean:.6g} +/- {half:.3g} (99% CI), analytic {expected:.6g}"
    assert half < limit, f"{detail}; interval too wide (limit {limit:.3g}): run longer"
    assert abs(mean - expected) <= half, f"{detail}; analytic value outside the interval"
