"""Runs: one replication, replications in processes, the results store, size estimates.

The names below are imported on first use: ``sim.runner.store`` (atomic
writes) is needed by light processes, such as the reference fleet's load
generator, that must not pay for the simulator and SciPy at start-up.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"combine_summaries": ".aggregate", "estimate_run": ".estimate", "run_experiment": ".run",
         "run_replication": ".run", "run_variants": ".run"}

__all__ = ["combine_summaries", "estimate_run", "run_experiment", "run_replication", "run_variants"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
