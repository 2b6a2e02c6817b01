"""Validation scenario (g), quick: TLS resumption and handshake CPU on real Envoys behind HAProxy.

Runs ``python -m reference_gateway.tls_scenario --quick`` (own and shared
ticket keys, round robin) under the real-fleet lock; it fails when the
measured and simulated resumption rates differ by more than 3 points (or the
measurement's 95% interval), or the CPU figures by more than twice their
goals (the machine is shared).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: Real servers, timed: `make test` runs these alone, after the rest (pyproject.toml markers).
pytestmark = pytest.mark.realfleet

ROOT = Path(__file__).resolve().parent.parent


def test_quick_tls_validation(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "reference_gateway.tls_scenario", "--quick", "--out", str(tmp_path)]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    rows = json.loads((tmp_path / "tls_validation.json").read_text())
    assert {row["case"] for row in rows} == {"instance/round_robin/latest", "fleet/round_robin/latest"}
    assert all(row["real_failed"] == 0 for row in rows), rows
    assert r.returncode == 0, "\n".join(json.dumps(row) for row in rows) + r.stderr[-2000:]
