"""The run cache: one folder per run (a configuration and a replication), named by a hash.

A run's key is the SHA-256 of what decides its result: the experiment as
validated (every default filled in), the replication's index, fleetsim's
version with a digest of the simulator's source, and numpy's version (its
generators make the random streams). Fields that do not change a
replication's numbers are left out of the key: ``replications`` (replication
r is the same run whether 3 or 5 are asked for, so asking for more runs only
the new ones), ``variants`` and ``sweep`` (already applied to the point),
``overrides`` (already applied to the topology) and ``topology_file`` (a
name). A sweep that is interrupted, extended or changed therefore reruns
exactly the runs whose key is not stored.

``<cache>/<key>/`` holds ``config.resolved.yaml`` (the point's experiment),
``result.json`` (the replication's whole result: summary, time series,
counters, graph), ``manifest.json`` (key, replication, versions, wall
seconds) and, written last, ``summary.json``. Each file is written
atomically (:mod:`sim.files`), so a run is stored exactly when its
``summary.json`` exists and reads back; a run stopped half-way is simply run
again.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from sim.config import dump_resolved
from sim.config.models import Experiment
from sim.files import atomic_write_json, atomic_write_text, dumps

#: Files of the package that do not take part in a run (their edits keep the cache valid).
_NOT_IN_A_RUN = ("report/", "cli.py", "export.py", "runner/sweep.py", "runner/cache.py", "runner/progress.py",
                 "runner/estimate.py")


@cache
def code_version() -> str:
    """The fleetsim version and a digest of the simulator's source: ``0.1.0+3f2a9c01b7de``.

    The digest covers every ``.py`` file of the ``sim`` package that a run
    executes (not the reports, the command line or this cache), so a cache
    filled by other code is not trusted even when the version number was not
    bumped.
    """
    try:
        version = metadata.version("fleetsim")
    except metadata.PackageNotFoundError:
        version = "unknown"
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(_NOT_IN_A_RUN):
            continue
        h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{version}+{h.hexdigest()[:12]}"


def key_material(exp: Experiment, replication: int) -> dict[str, Any]:
    """What a run's key is the hash of (see the module's docstring)."""
    config = exp.model_dump(mode="json", by_alias=True)
    config.update(replications=1, variants={}, sweep=None, overrides={}, topology_file=None)
    return {"fleetsim": code_version(), "numpy": np.__version__, "replication": replication, "config": config}


def run_key(exp: Experiment, replication: int) -> str:
    """The hex SHA-256 key of replication ``replication`` of ``exp``."""
    text = json.dumps(key_material(exp, replication), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


class RunCache:
    """Runs stored by key in one folder.

    Args:
        root: The cache folder (``<sweep folder>/runs``); created on the first store.
    """

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        """The folder of the run ``key``."""
        return self.root / key

    def summary_path(self, key: str) -> Path:
        """The ``summary.json`` of the run ``key`` (present once the run is stored)."""
        return self.path(key) / "summary.json"

    def load_summary(self, key: str) -> dict | None:
        """The stored summary of run ``key``, or None when it is not stored (or cannot be read)."""
        try:
            summary = json.loads(self.summary_path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return summary if isinstance(summary, dict) and "requests" in summary else None

    def store(self, key: str, exp: Experiment, replication: int, result: dict) -> dict:
        """Store one run's result; returns its summary as stored (JSON round-tripped).

        Args:
            key: The run's key (:func:`run_key`).
            exp: The point's experiment.
            replication: The replication's index.
            result: :func:`sim.runner.run.run_replication`'s result.
        """
        folder = self.path(key)
        result = json.loads(dumps(result))  # as stored, so fresh and cached runs agree
        atomic_write_text(folder / "config.resolved.yaml", dump_resolved(exp))
        atomic_write_json(folder / "result.json", {k: v for k, v in result.items() if k != "summary"})
        atomic_write_json(folder / "manifest.json", {
            "key": key, "replication": replication, "seed": exp.seed, "fleetsim": code_version(),
            "numpy": np.__version__, "wall_s": result.get("wall_s"), "events": result.get("events"),
            "requests_simulated": result.get("requests"),
        })
        atomic_write_json(folder / "summary.json", result["summary"])  # last: the run is stored
        return result["summary"]
