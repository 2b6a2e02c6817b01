"""The retry-storm outcome, over several seeds: naive retries sustain a collapse.

experiments/retry_storm.yaml: a 15 s backend slowdown at ~62% utilisation.
With client retries (3 tries) on top of gateway retries (2) and no budget,
every failed try multiplies the load ~9x while nothing succeeds, so goodput
stays at zero after the slowdown ends (metastable). With 20% retry budgets
at both layers the fleet comes back.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from sim.config import load_experiment
from sim.runner import run_replication

pytestmark = pytest.mark.slow

STORM = Path(__file__).resolve().parent.parent / "experiments" / "retry_storm.yaml"
SEEDS = [1, 2, 3]


def _outcome(variant: str, seed: int) -> dict:
    loaded = load_experiment(STORM, ["duration_s=110"], seed=seed)
    exp = loaded.variants[variant]
    s = run_replication(exp, 0)["summary"]
    return {"recovery": s["recovery"], "amplification": s["retries"]["amplification"]}


def test_naive_retries_are_metastable_and_budgets_recover_over_several_seeds():
    jobs = [(v, seed) for v in ("naive", "retry_budget") for seed in SEEDS]
    with ProcessPoolExecutor(2) as pool:
        results = dict(zip(jobs, pool.map(_outcome, *zip(*jobs, strict=True)), strict=True))
    for seed in SEEDS:
        naive = results[("naive", seed)]
        budget = results[("retry_budget", seed)]
        assert naive["recovery"]["metastable"] is True, (seed, naive)
        assert naive["recovery"]["goodput_after_rps"] < 0.1 * naive["recovery"]["goodput_before_rps"]
        # The amplification that explains it: several backend tries per call.
        assert naive["amplification"] > 4
        assert budget["recovery"]["recovered"] is True, (seed, budget)
        assert budget["recovery"]["recovery_s"] < 25
        assert budget["amplification"] < 1.5
