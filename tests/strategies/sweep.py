"""The experiment's ``sweep``: a grid and a zip over paths the other extensions own.

Like variants, each swept path is a registered extension at one of its
places, and each value a fresh draw of that extension (or null where it may
be null), so a new subsystem's fields are swept as soon as it registers
them. Paths a drawn variant changes, and paths inside another swept path,
are left out (the loader refuses them: that refusal has its own test in
tests/test_sweep.py); grid values are distinct. At most 2 x 2 grid points
times 2 zip rows, so expanding every point stays cheap.

Not registered as an extension of the whole-schema generator: a sweep
changes no run, and one more extension there would change every example the
derandomized property tests draw (their examples are pinned by the default
profile). :func:`experiments_with_sweeps` draws a whole experiment as
:func:`~.experiment.experiments` does and then its sweep, for the sweep's own
property test (tests/test_sweep.py).
"""

from __future__ import annotations

import json

from hypothesis import strategies as st

from .experiment import _changeable, node_at, places
from .registry import WHOLE_SCHEMA, Options, Plan, extensions, set_path
from .topology import REGION_NAMES, plans, topologies


def _related(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


@st.composite
def _values(draw, ext, plan: Plan, place, node: dict, opts: Options, n: int | None) -> list:
    value = ext.draw(plan, place, node, opts)
    if ext.nullable:
        value = st.none() | value
    if n is None:
        return draw(st.lists(value, min_size=1, max_size=2, unique_by=lambda v: json.dumps(v, sort_keys=True)))
    return draw(st.lists(value, min_size=n, max_size=n))


@st.composite
def sweeps(draw, plan: Plan, node: dict, opts: Options = WHOLE_SCHEMA) -> dict:
    """A ``sweep`` section for the drawn experiment ``node`` (plain data) on ``plan``."""
    taken = [str(p) for changes in (node.get("variants") or {}).values() for p in changes]
    candidates = [e for e in _changeable(opts) if e.scope in ("topology", "pool", "service", "workload")]
    out: dict = {}
    rows = draw(st.integers(min_value=1, max_value=2))
    for section, count in (("grid", draw(st.integers(0, 2))), ("zip", draw(st.integers(0, 2)))):
        paths: dict = {}
        for _ in range(count):
            ext = draw(st.sampled_from(candidates))
            place_name, prefix = draw(st.sampled_from(places(plan, ext.scope)))
            path = ".".join((*prefix, *ext.path))
            if any(_related(path, t) for t in taken):
                continue
            taken.append(path)
            paths[path] = draw(_values(ext, plan, place_name, node_at(node, prefix), opts,
                                       None if section == "grid" else rows))
        if paths or draw(st.booleans()):
            out[section] = paths
    return out


@st.composite
def experiments_with_sweeps(draw, opts: Options = WHOLE_SCHEMA) -> dict:
    """A whole experiment, drawn as :func:`~.experiment.experiments` draws one, with a ``sweep`` section."""
    plan = draw(plans(opts))
    data = {"name": draw(REGION_NAMES), "topology": draw(topologies(plan, opts)), "workload": {},
            "duration_s": plan.duration_s, "warmup_s": plan.warmup_s,
            "seed": draw(st.integers(min_value=0, max_value=2**32))}
    for ext in extensions():
        if not ext.allowed(opts):
            continue
        for place, prefix in places(plan, ext.scope):
            if ext.is_required(plan, opts) or draw(st.booleans()):
                node = node_at(data, prefix)
                set_path(node, ext.path, draw(ext.draw(plan, place, node, opts)))
    data["sweep"] = draw(sweeps(plan, data, opts))
    return data
