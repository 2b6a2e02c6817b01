"""Runs: one replication, replications in processes, the results store."""

from .aggregate import combine_summaries
from .run import run_experiment, run_replication, run_variants

__all__ = ["combine_summaries", "run_experiment", "run_replication", "run_variants"]
