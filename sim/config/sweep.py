"""The experiment's ``sweep`` section: a grid and a zip of dotted-path values, and their points.

A sweep runs the experiment at many points. ``grid`` maps dotted paths (the
same paths as ``--set`` and ``variants``: ``workload.rate_schedule.0.rate_per_s``,
``topology.gateways.gw-az1.instances``) to lists of values and takes their
cartesian product; ``zip`` maps paths to lists of one common length and takes
them together, item by item (the i-th value of every list makes one row).
Every grid point is combined with every zip row, and each with every named
variant of the experiment (the variant's changes first, then the point's), so
a sweep has ``variants x grid product x zip rows`` points, each run
``replications`` times. All points share the experiment's seed: replication r
of every point draws from the same streams (common random numbers).

:func:`expand_sweep` (called by the loader) builds and validates every point;
a bad path or value is one issue named ``sweep.grid.<path>`` (or
``sweep.zip.<path>``) at the line of the value.
"""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from .errors import ConfigError, Issue, dotted
from .models import StrictModel

if TYPE_CHECKING:
    from .models import Experiment

#: Points a sweep may have (variants x grid x zip); beyond it the sweep is refused before expansion.
MAX_POINTS = 10_000

Values = Annotated[list[Any], Field(min_length=1)]


class Sweep(StrictModel):
    """Parameters to sweep: a grid (cartesian product) and a zip (lists taken together).

    Keys are dotted paths into the experiment, as ``--set`` and ``variants``
    write them. Combined with the experiment's ``variants`` and run
    ``replications`` times each, on common random numbers. Run it with
    ``fleetsim sweep``; ``fleetsim run`` ignores it.
    """

    grid: dict[str, Values] = Field(default={}, description=(
        "Dotted path -> list of values; every combination of the lists is a point (cartesian product)."))
    zip: dict[str, Values] = Field(default={}, description=(
        "Dotted path -> list of values, every list of the same length; the i-th values of all lists "
        "make one row, and every row is combined with every grid point."))


@dataclass(frozen=True)
class SweepPoint:
    """One point of a sweep: its values, its variant and its validated experiment.

    Attributes:
        label: A short name for the point (``variant: rate_per_s=1500, instances=3``).
        params: Dotted path -> the value at this point, grid paths then zip paths.
        variant: The variant it is combined with, or None (an experiment without variants).
        config: The experiment at this point (the variant's and the point's changes applied;
            ``variants`` empty and ``sweep`` null).
    """

    label: str
    params: dict[str, Any]
    variant: str | None
    config: Experiment = field(repr=False)


def value_text(value: Any) -> str:
    """A value as a point's label shows it: ``1500``, ``0.25``, ``true``, ``ROUND_ROBIN``, compact JSON."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int | str):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def short_names(paths: list[str]) -> dict[str, str]:
    """Each dotted path's shortest suffix of whole segments that no other path ends with."""
    out = {}
    for p in paths:
        parts = p.split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            if not any(q != p and (q == tail or q.endswith("." + tail)) for q in paths):
                break
        out[p] = tail
    return out


def point_label(params: dict[str, Any], variant: str | None, names: dict[str, str]) -> str:
    """The label of a point: its variant, then ``name=value`` for each swept path."""
    body = ", ".join(f"{names[p]}={value_text(v)}" for p, v in params.items())
    if variant is None:
        return body or "base"
    return f"{variant}: {body}" if body else variant


def _norm(value: Any) -> Any:
    """``value`` with whole floats as ints, at any depth (1.0 and 1 are one value to the schema)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_norm(v) for v in value]
    return value


def _same_key(value: Any) -> str:
    """Two values with one key would make one point twice (and two points with one label)."""
    return value_text(_norm(value))


def _related(a: str, b: str) -> bool:
    """Whether one dotted path is the other or lies inside it."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _structure_issues(raw: dict, variants: dict, positions: dict, label: str) -> list[Issue]:
    """Problems of the section's shape that pydantic cannot see: lengths, repeats, overlaps."""
    issues: list[Issue] = []
    here = positions.get(("sweep",), (label, None))

    def at(*path) -> tuple[str, int | None]:
        return positions.get(("sweep", *path), here)

    grid, zipped = raw.get("grid") or {}, raw.get("zip") or {}
    for key, values in grid.items():
        seen: dict[str, int] = {}
        for i, v in enumerate(values):
            c = _same_key(v)
            if c in seen:
                f, line = at("grid", key, i)
                issues.append(Issue(f, line, f"sweep.grid.{key}", f"value {value_text(v)} is given twice "
                                    f"(items {seen[c]} and {i}): each grid point would run twice"))
            seen.setdefault(c, i)
    if zipped:
        first = next(iter(zipped))
        n = len(zipped[first])
        for key, values in zipped.items():
            if len(values) != n:
                f, line = at("zip", key)
                issues.append(Issue(f, line, f"sweep.zip.{key}", f"has {len(values)} values, sweep.zip.{first} has "
                                    f"{n}: the lists of a zip are taken together and must be equally long"))
        if not issues:
            rows: dict[tuple, int] = {}
            for i, row in enumerate(zip(*zipped.values(), strict=True)):
                c = tuple(_same_key(v) for v in row)
                if c in rows:
                    f, line = at("zip", first, i)
                    issues.append(Issue(f, line, f"sweep.zip.{first}", f"row {i} repeats row {rows[c]} (item {i} "
                                        f"of every zip list equals item {rows[c]}): the point would run twice"))
                rows.setdefault(c, i)
    keys = [("grid", k) for k in grid] + [("zip", k) for k in zipped]
    for i, (sec_a, a) in enumerate(keys):
        for sec_b, b in keys[:i]:
            if _related(a, b):
                f, line = at(sec_a, a)
                issues.append(Issue(f, line, f"sweep.{sec_a}.{a}", f"overlaps sweep.{sec_b}.{b}: a path may be "
                                    "swept once, and not inside another swept path"))
        for vname, changes in variants.items():
            for path in changes if isinstance(changes, dict) else ():
                if _related(a, str(path)):
                    f, line = at(sec_a, a)
                    issues.append(Issue(f, line, f"sweep.{sec_a}.{a}", f"variant {vname} sets {path}: a swept path "
                                        "may not be one a variant changes (which value would win is not clear)"))
    n_points = max(1, len(variants))
    for values in grid.values():
        n_points *= len(values)
    if zipped:
        n_points *= len(next(iter(zipped.values())))
    if n_points > MAX_POINTS:
        issues.append(Issue(here[0], here[1], "sweep", f"{n_points:,} points (variants x grid x zip); at most "
                            f"{MAX_POINTS:,}: sweep fewer values, or split the sweep"))
    return issues


def expand_sweep(data: dict, positions: dict, overridden: dict, label: str,
                 variants: dict[str, Experiment]) -> list[SweepPoint]:
    """Every point of ``data``'s sweep, validated; or one issue per problem.

    Args:
        data: The experiment as plain data after ``overrides`` and ``--set``
            (the loader's; not changed).
        positions: File and line of every path of ``data``.
        overridden: The paths ``overrides`` and ``--set`` assigned, and where.
        label: The experiment file, for issues without a better place.
        variants: The validated variants, by name (empty: the base alone).

    Returns:
        The points, variant by variant, then the grid's product in key order,
        then the zip's rows; ``[]`` when ``data`` has no sweep.

    Raises:
        ConfigError: A path that does not exist, a value the schema refuses at
            some point (named ``sweep.grid.<path>`` with the point), lists of a
            zip of unequal length, a grid value given twice, a path swept twice
            or also changed by a variant, too many points.
    """
    from .loader import apply_override, validate  # the loader imports this module's model

    raw = data.get("sweep")
    if not isinstance(raw, dict):
        return []
    raw_variants = data.get("variants") if isinstance(data.get("variants"), dict) else {}
    issues = _structure_issues(raw, raw_variants, positions, label)
    if issues:
        raise ConfigError(issues)
    grid, zipped = raw.get("grid") or {}, raw.get("zip") or {}
    origins = {("grid", k): positions.get(("sweep", "grid", k), (label, None)) for k in grid}
    origins |= {("zip", k): positions.get(("sweep", "zip", k), (label, None)) for k in zipped}

    # Each path once, against the base: a path that does not exist is one issue, not one per point.
    for (section, key), origin in origins.items():
        values = (grid if section == "grid" else zipped)[key]
        try:
            apply_override(copy.deepcopy(data), dict(positions), str(key), values[0], origin)
        except ConfigError as e:
            issues += [Issue(i.file, i.line, f"sweep.{section}.{key}", i.reason) for i in e.issues]
    if issues:
        raise ConfigError(issues)

    names = short_names([str(k) for k in [*grid, *zipped]])
    rows = [dict(zip(zipped, row, strict=True)) for row in zip(*zipped.values(), strict=True)] or [{}]
    variant_names: list[str | None] = list(variants) or [None]
    base = copy.deepcopy(data)
    base["variants"], base["sweep"] = {}, None
    points: list[SweepPoint] = []
    seen: dict[tuple, Issue] = {}
    for vname in variant_names:
        vdata, vpos, vover = copy.deepcopy(base), dict(positions), dict(overridden)
        if vname is not None:
            for key, value in raw_variants[vname].items():
                origin = positions.get(("variants", vname, key), (label, None))
                apply_override(vdata, vpos, str(key), value, origin, vover)  # checked with the variants
        for combo in itertools.product(*(range(len(v)) for v in grid.values())):
            for z in range(len(rows)):
                assign = [("grid", k, grid[k][i], positions.get(("sweep", "grid", k, i), origins[("grid", k)]))
                          for k, i in zip(grid, combo, strict=True)]
                assign += [("zip", k, rows[z][k], positions.get(("sweep", "zip", k, z), origins[("zip", k)]))
                           for k in zipped]
                params = {str(k): v for _, k, v, _ in assign}
                plabel = point_label(params, vname, names)
                pdata, ppos, pover = copy.deepcopy(vdata), dict(vpos), dict(vover)
                try:
                    for current in assign:
                        apply_override(pdata, ppos, str(current[1]), current[2], current[3], pover)
                except ConfigError as e:  # a path the variant's changes removed
                    for i in e.issues:
                        bad = Issue(i.file, i.line, f"sweep.{current[0]}.{current[1]}",
                                    f"at point {plabel}: {i.reason}")
                        seen.setdefault((bad.file, bad.line, bad.path, i.path, i.reason), bad)
                    continue
                try:
                    exp = validate(pdata, ppos, label, pover)
                except ConfigError as e:
                    def alone(a: tuple, vdata=vdata, vpos=vpos, vover=vover) -> set[str]:
                        """The paths of the problems that the assignment ``a`` causes on its own."""
                        d, p, o = copy.deepcopy(vdata), dict(vpos), dict(vover)
                        apply_override(d, p, str(a[1]), a[2], a[3], o)
                        try:
                            validate(d, p, label, o)
                        except ConfigError as e1:
                            return {i.path for i in e1.issues}
                        return set()

                    for issue in e.issues:
                        bad = _blame(issue, assign, plabel, alone)
                        seen.setdefault((bad.file, bad.line, bad.path, issue.path, issue.reason), bad)
                    continue
                points.append(SweepPoint(plabel, params, vname, exp))
    if seen:
        raise ConfigError(sorted(seen.values(), key=lambda i: (i.file, i.line or 0)))
    return points


def _blame(issue: Issue, assign: list[tuple], plabel: str, alone) -> Issue:
    """``issue`` (of one point) named after the swept path that caused it, with the point's label.

    The path is the one whose value the issue is located at; else the one
    that causes a problem at the same place on its own (``alone(assignment)``
    gives those places); else, when the values cause it only together, the
    sweep as a whole.
    """
    where = f"at point {plabel}"
    for section, key, _, origin in assign:
        if (issue.file, issue.line) == origin:
            inner = "" if issue.path == key else f"{issue.path}: "
            return Issue(issue.file, issue.line, f"sweep.{section}.{key}", f"{where}: {inner}{issue.reason}")
    for a in assign:
        if issue.path in alone(a):
            section, key, _, origin = a
            return Issue(origin[0], origin[1], f"sweep.{section}.{key}", f"{where}: {issue.path}: {issue.reason}")
    return Issue(issue.file, issue.line, dotted(("sweep",)), f"{where}: {issue.path}: {issue.reason}")
