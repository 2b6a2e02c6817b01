"""Whole experiments (Experiment, Output, variants, overrides): every registered extension composed.

:func:`experiments` draws a fleet's skeleton (:func:`~tests.strategies.topology.plans`),
writes its topology, then walks the registry (:func:`~tests.strategies.registry.extensions`):
each extension is set at each place of its scope (every pool, every
service, ...) half the time, always when required. Variants and overrides
are extensions too; they change paths the other extensions own, each to a
fresh draw of that extension (or to null where it may be null), so a new
subsystem's fields are varied as soon as it registers them.
"""

from __future__ import annotations

from hypothesis import strategies as st

from .registry import WHOLE_SCHEMA, Extension, Options, Plan, extension, extensions, set_path
from .topology import REGION_NAMES, plans, topologies

#: The mapping each scope's extensions write into, and the places of the scope.
_PREFIX = {"experiment": (), "topology": ("topology",), "workload": ("workload",)}


def places(plan: Plan, scope: str) -> list[tuple[str | None, tuple[str, ...]]]:
    """(place name, path of its mapping in the experiment) of every place of ``scope``."""
    if scope == "pool":
        return [(p, ("topology", "gateways", p)) for p in plan.pools]
    if scope == "service":
        return [(s, ("topology", "services", s)) for s in plan.services]
    return [(None, _PREFIX[scope])]


def node_at(data: dict, path: tuple[str, ...]) -> dict:
    """The mapping at ``path`` in ``data`` (made if missing)."""
    node = data
    for key in path:
        node = node.setdefault(key, {})
    return node


@st.composite
def experiments(draw, opts: Options = WHOLE_SCHEMA) -> dict:
    """A whole experiment as plain data (what the YAML loader reads), every registered part possible."""
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
    return data


# ---------------------------------------------------------------- experiment-level extensions


@extension("experiment", "description")
def _description(plan: Plan, place, node: dict, opts: Options):
    return st.text(max_size=30)


@extension("experiment", "replications")
def _replications(plan: Plan, place, node: dict, opts: Options):
    return st.integers(min_value=1, max_value=3)


@extension("experiment", "output")
def _output(plan: Plan, place, node: dict, opts: Options):
    return st.fixed_dictionaries({}, optional={"instances": st.booleans()})


def _changeable(opts: Options) -> list[Extension]:
    """Extensions a variant or an override may change: those below the experiment level."""
    return [e for e in extensions() if e.scope != "experiment" and e.allowed(opts)]


@st.composite
def changes(draw, plan: Plan, data: dict, opts: Options, scopes: tuple[str, ...], prefix_off: int = 0) -> dict:
    """1-2 dotted-path changes, each to a fresh draw of a registered extension (or null if it may be)."""
    out = {}
    candidates = [e for e in _changeable(opts) if e.scope in scopes]
    for _ in range(draw(st.integers(min_value=1, max_value=2))):
        ext = draw(st.sampled_from(candidates))
        place, prefix = draw(st.sampled_from(places(plan, ext.scope)))
        node = node_at(data, prefix)
        if ext.nullable and draw(st.booleans()):
            value = None
        else:
            value = draw(ext.draw(plan, place, node, opts))
        out[".".join((*prefix, *ext.path)[prefix_off:])] = value
    return out


@extension("experiment", "overrides", order=90, exact_time=False)
@st.composite
def _overrides(draw, plan: Plan, place, node: dict, opts: Options):
    # Overrides are dotted paths into the topology (without the leading "topology.").
    return draw(changes(plan, node, opts, ("topology", "pool", "service"), prefix_off=1))


@extension("experiment", "variants", order=100, exact_time=False)
@st.composite
def _variants(draw, plan: Plan, place, node: dict, opts: Options):
    if not opts.variants:
        return {}
    names = draw(st.lists(REGION_NAMES, min_size=1, max_size=2, unique=True))
    return {name: draw(changes(plan, node, opts, ("topology", "pool", "service", "workload"))) for name in names}
