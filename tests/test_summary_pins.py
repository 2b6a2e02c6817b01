"""Regression pins: three experiments' summaries, key for key and value for value.

These are regression pins, not proof of correctness (the statistical and
deterministic tests are that): they catch a refactor that changes any result
it should not. Each file in ``tests/data/pins/`` is the ``summary.json`` of
replication 0 of one experiment (or variant) as the simulator wrote it when
the pin was taken. A change that moves results on purpose re-pins in the
same commit and says in its message which numbers moved and why.

Pinned: ``experiments/quickstart.yaml`` (the request path, connection pools,
LEAST_REQUEST, bytes per AZ pair), the ``retry_budget`` variant of
``experiments/retry_storm.yaml`` cut to 90 s (client and gateway retries,
retry budgets, a slowdown and the recovery from it) and ``experiments/reference/e_outlier.yaml``
(outlier detection).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sim.config import load_experiment
from sim.files import dumps
from sim.fleet import Fleet

ROOT = Path(__file__).resolve().parent.parent
PINS = Path(__file__).resolve().parent / "data" / "pins"

CASES = [
    ("experiments/quickstart.yaml", (), None, "experiments_quickstart_base_0"),
    ("experiments/retry_storm.yaml", ("duration_s=90",), "retry_budget", "experiments_retry_storm_retry_budget_0"),
    ("experiments/reference/e_outlier.yaml", (), None, "reference_e_outlier_base_0"),
]


def _flatten(value, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or {prefix: {}}
    return {prefix: value}


@pytest.mark.parametrize(("path", "sets", "variant", "pin"), CASES, ids=[c[3] for c in CASES])
def test_summary_matches_its_pin_key_for_key(path, sets, variant, pin):
    loaded = load_experiment(ROOT / path, sets)
    exp = loaded.variants[variant] if variant else loaded.config
    got = json.loads(dumps(Fleet(exp, 0).run()["summary"]))  # as summary.json stores it
    want = json.loads((PINS / f"{pin}.summary.json").read_text(encoding="utf-8"))
    flat_got, flat_want = _flatten(got), _flatten(want)
    assert sorted(flat_got) == sorted(flat_want), "summary keys changed"
    moved = {k: (flat_want[k], flat_got[k]) for k in flat_want if flat_got[k] != flat_want[k]}
    assert moved == {}, f"values moved (pinned, now): {moved}"


def repin() -> None:
    """Rewrite every pin from the current code, printing what moved (``python -m tests.test_summary_pins``)."""
    from sim.files import atomic_write_text

    for path, sets, variant, pin in CASES:
        loaded = load_experiment(ROOT / path, sets)
        exp = loaded.variants[variant] if variant else loaded.config
        text = dumps(Fleet(exp, 0).run()["summary"])
        file = PINS / f"{pin}.summary.json"
        old = _flatten(json.loads(file.read_text(encoding="utf-8")))
        new = _flatten(json.loads(text))
        moved = {k: (old.get(k), new.get(k)) for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
        print(f"{pin}: {len(moved)} values moved", *(f"  {k}: {a!r} -> {b!r}" for k, (a, b) in sorted(moved.items())),
              sep="\n")
        atomic_write_text(file, text)


if __name__ == "__main__":
    repin()
