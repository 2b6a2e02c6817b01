"""Reading experiment and topology YAML: the only code that parses YAML.

``load_experiment`` reads an experiment file, the topology file it names
(relative to the experiment file), applies ``overrides`` and ``--set``
assignments, validates the result against :class:`~sim.config.models.Experiment`
and the cross-field rules, and returns a :class:`LoadedExperiment`. Every
problem becomes an :class:`~sim.config.errors.Issue` located at
``FILE:LINE: dotted.path`` in the file the user has to edit: a value that came
from an override points at the override, not at the topology.
"""

from __future__ import annotations

import copy
import difflib
import io
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode

from . import calibration as calib
from .checks import check_experiment
from .errors import ConfigError, Issue, dotted
from .models import Experiment, Name, Topology

Pos = tuple[str, int | None]
CLI = "<command line>"


@dataclass
class Document:
    """Plain data from one YAML file plus the line of every path in it."""

    data: Any
    positions: dict[tuple, Pos] = field(default_factory=dict)


@dataclass
class LoadedExperiment:
    """A validated experiment and where each of its paths came from.

    ``overridden`` maps each path set by ``overrides`` or ``--set`` to the
    place of that assignment.
    """

    config: Experiment
    source: Path
    positions: dict[tuple, Pos]
    overridden: dict[tuple, Pos] = field(default_factory=dict)
    variants: dict[str, Experiment] = field(default_factory=dict)

    def locate(self, path: tuple) -> Pos:
        """File and line of the longest known prefix of ``path``."""
        return _locate(self.positions, path, str(self.source))

    def issue(self, path: tuple, reason: str) -> Issue:
        """An issue about the part at ``path`` (e.g. from the fleet builder).

        The line is where the part is declared; overrides inside it are named
        in the reason, since they may be what broke it.
        """
        f, line = self.locate(path)
        inner = _overrides_below(self.overridden, tuple(path))
        if inner:
            reason += " (overridden at " + ", ".join(_where(p) for p in inner) + ")"
        return Issue(f, line, dotted(path), reason)


def _where(pos: Pos) -> str:
    return pos[0] if pos[1] is None else f"{pos[0]}:{pos[1]}"


def _overrides_below(overridden: dict[tuple, Pos], path: tuple) -> list[Pos]:
    """Places of the assignments strictly inside ``path``, in the order applied."""
    out: list[Pos] = []
    for p, pos in overridden.items():
        if len(p) > len(path) and p[: len(path)] == path and pos not in out:
            out.append(pos)
    return out


def _locate(
    positions: dict[tuple, Pos], path: tuple, default_file: str, overridden: dict[tuple, Pos] | None = None
) -> Pos:
    """File and line for a problem at ``path``.

    A problem at a mapping whose contents an override changed (a lognormal
    whose p99 was overridden, client shares one of which was overridden) is
    the override's doing: it points at the override, not at the file that
    declared the mapping.
    """
    if overridden:
        inner = _overrides_below(overridden, tuple(path))
        if inner:
            return inner[0]
    for n in range(len(path), -1, -1):
        pos = positions.get(tuple(path[:n]))
        if pos is not None:
            return pos
    return (default_file, None)


# --------------------------------------------------------------------------- YAML reading


def read_yaml(path: Path, label: str | None = None, prefix: tuple = ()) -> Document:
    """Parse one YAML file into plain dicts/lists with a line for every path.

    ``prefix`` is where the document sits in the experiment (``("topology",)``
    for a topology file); it only prefixes the path of a duplicate key.

    Raises:
        ConfigError: the file is missing, unreadable, empty, not a mapping, or
            not valid YAML (with the parser's line).
    """
    label = label or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Issue(label, None, "", "no such file")]) from None
    except IsADirectoryError:
        raise ConfigError([Issue(label, None, "", "is a directory, expected a YAML file")]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([Issue(label, None, "", f"cannot read: {e}")]) from None
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        node = yaml.load(text)
    except DuplicateKeyError as e:
        raise ConfigError([_duplicate_key_issue(yaml, text, e, label, prefix)]) from None
    except MarkedYAMLError as e:
        raise ConfigError([_syntax_issue(e, label)]) from None
    except YAMLError as e:
        raise ConfigError([Issue(label, None, "", f"YAML error: {' '.join(str(e).split())}")]) from None
    if node is None:
        raise ConfigError([Issue(label, 1, "", "empty file, expected a mapping")])
    if not isinstance(node, CommentedMap):
        raise ConfigError([Issue(label, 1, "", f"expected a mapping at the top, got {_kind(node)}")])
    doc = Document(None, {(): (label, 1)})
    doc.data = _plain(node, (), label, doc.positions)
    return doc


def _kind(value: Any) -> str:
    """A YAML user's word for the type of ``value``."""
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, str):
        return f"a string ({value!r})" if len(value) <= 40 else "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    return type(value).__name__


def _syntax_issue(e: MarkedYAMLError, label: str) -> Issue:
    """One line for a parser error, at the line the user has to look at.

    An unclosed bracket or quote is noticed only where the parser gives up (a
    later line, or the end of the file); the line that opened it, the parser's
    context, is the one to fix, so that line is reported.
    """
    problem = " ".join(str(e.problem or e.context or "invalid YAML").split())
    context = " ".join(str(e.context or "").split())
    pmark, cmark = e.problem_mark, e.context_mark
    at_end = "stream end" in problem or "end of stream" in problem
    if cmark is not None and (at_end or context.startswith("while parsing a flow") or pmark is None):
        where = "at the end of the file" if at_end or pmark is None else f"on line {pmark.line + 1}"
        return Issue(label, cmark.line + 1, "", f"YAML syntax error: {context} started here: {problem} {where}")
    line = pmark.line + 1 if pmark is not None else None
    reason = f"YAML syntax error: {problem}"
    if context and e.problem and cmark is not None and cmark.line + 1 != line:
        reason += f" ({context} started on line {cmark.line + 1})"
    return Issue(label, line, "", reason)


def _duplicate_key_issue(yaml: YAML, text: str, e: DuplicateKeyError, label: str, prefix: tuple) -> Issue:
    """The duplicate key with its dotted path and the line of its first use."""
    line = e.problem_mark.line if e.problem_mark is not None else None
    try:
        root = yaml.compose(text)
    except YAMLError:  # pragma: no cover - it composed once already
        root = None
    found = _find_duplicate(root, (), line) if root is not None else None
    if found is None:
        problem = " ".join(str(e.problem).split())
        return Issue(label, None if line is None else line + 1, "", f"duplicate key: {problem}")
    path, first, dup = found
    return Issue(label, dup + 1, dotted(prefix + path), f"duplicate key (first given on line {first + 1})")


def _find_duplicate(node: Node, path: tuple, line: int | None) -> tuple[tuple, int, int] | None:
    """(path, first line, duplicate line) of a duplicate key, preferring one on ``line``."""
    found = None
    if isinstance(node, MappingNode):
        seen: dict[Any, int] = {}
        for k, v in node.value:
            key = k.value if isinstance(k.value, str) else str(k.value)
            if key in seen:
                hit = (path + (key,), seen[key], k.start_mark.line)
                if line is None or hit[2] == line:
                    return hit
                found = found or hit
            else:
                seen[key] = k.start_mark.line
            inner = _find_duplicate(v, path + (key,), line)
            if inner is not None and (line is None or inner[2] == line):
                return inner
            found = found or inner
    elif isinstance(node, SequenceNode):
        for i, v in enumerate(node.value):
            inner = _find_duplicate(v, path + (i,), line)
            if inner is not None and (line is None or inner[2] == line):
                return inner
            found = found or inner
    return found


def _plain(node: Any, path: tuple, label: str, positions: dict[tuple, Pos]) -> Any:
    if isinstance(node, CommentedMap):
        out = {}
        for k, v in node.items():
            key = k if isinstance(k, str | int | float | bool) or k is None else str(k)
            try:
                line = node.lc.key(k)[0] + 1
            except (KeyError, TypeError, AttributeError):
                line = positions.get(path, (label, None))[1]
            positions[path + (key,)] = (label, line)
            out[key] = _plain(v, path + (key,), label, positions)
        return out
    if isinstance(node, CommentedSeq):
        out_l = []
        for i, v in enumerate(node):
            try:
                line = node.lc.item(i)[0] + 1
            except (KeyError, TypeError, AttributeError, IndexError):
                line = positions.get(path, (label, None))[1]
            positions[path + (i,)] = (label, line)
            out_l.append(_plain(v, path + (i,), label, positions))
        return out_l
    if isinstance(node, str):
        return str(node)
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


def parse_value(text: str) -> Any:
    """A ``--set`` value, read as a YAML scalar or flow collection."""
    yaml = YAML(typ="safe", pure=True)
    try:
        value = yaml.load(text)
    except YAMLError:
        return text
    return text if value is None and text.strip() not in ("null", "~") else value


# --------------------------------------------------------------------------- overrides


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional from a type annotation."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _model_field(model: type[BaseModel], key: str) -> tuple[bool, Any]:
    for name, f in model.model_fields.items():
        if key in (name, f.alias):
            return True, f.annotation
    return False, None


def apply_override(
    data: dict,
    positions: dict[tuple, Pos],
    path_text: str,
    value: Any,
    origin: Pos,
    overridden: dict[tuple, Pos] | None = None,
) -> None:
    """Set ``path_text`` (dotted) in ``data`` to ``value``, checking the path.

    The path is checked against the Experiment schema as it is walked: a
    segment naming a model field must be a field of that model; a segment
    into a name-keyed map or a list must name an existing entry. Every path
    at and below the assignment is re-located to ``origin``, and the
    assignment is recorded in ``overridden`` (replacing any made inside it).

    Raises:
        ConfigError: the path does not exist.
    """
    file, line = origin
    parts = [p for p in path_text.split(".")]
    if not path_text or any(p == "" for p in parts):
        raise ConfigError([Issue(file, line, path_text, "empty segment in dotted path")])
    node: Any = data
    tp: Any = Experiment
    walked: list[Any] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        tp = _unwrap(tp)
        here = dotted(tuple(walked)) or "(document)"
        key: Any = part
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            ok, ann = _model_field(tp, part)
            if not ok:
                keys = _field_keys(tp)
                hint = difflib.get_close_matches(part, keys, n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else f" (fields: {', '.join(keys)})"
                raise ConfigError([Issue(file, line, path_text, f"{here} has no field {part!r}{extra}")])
            tp = ann
            if not isinstance(node, dict):
                raise ConfigError([Issue(file, line, path_text, f"{here} is not a mapping")])
            if not last and part not in node:
                node[part] = {}
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
            if not isinstance(node, dict) or part not in node:
                have = ", ".join(map(str, node)) if isinstance(node, dict) else "none"
                raise ConfigError([Issue(file, line, path_text, f"{here} has no entry {part!r} (have: {have})")])
        elif typing.get_origin(tp) is list:
            tp = typing.get_args(tp)[0]
            if not part.lstrip("-").isdigit() or not isinstance(node, list) or not -len(node) <= int(part) < len(node):
                n = len(node) if isinstance(node, list) else 0
                raise ConfigError([Issue(file, line, path_text, f"{here} has no item {part!r} ({n} items)")])
            key = int(part) % len(node)
        else:
            # Inside a distribution or a free-form value: the key must exist.
            tp = Any
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                key = int(part)
            elif not isinstance(node, dict) or part not in node:
                raise ConfigError([Issue(file, line, path_text, f"{here} has no entry {part!r}")])
        walked.append(key)
        if last:
            node[key] = value
        else:
            node = node[key]
    prefix = tuple(walked)
    for p in [p for p in positions if p[: len(prefix)] == prefix]:
        del positions[p]
    positions[prefix] = origin
    if overridden is not None:
        for p in [p for p in overridden if p[: len(prefix)] == prefix]:
            del overridden[p]
        overridden[prefix] = origin


# --------------------------------------------------------------------------- validation


DIST_TAGS = ("constant", "exponential", "lognormal", "gamma", "uniform", "empirical")
NAME_PATTERN = typing.get_args(Name)[1].pattern
NAME_RULE = "start with a letter or digit, then letters, digits, '-' or '_' (at most 63; no dots)"


def _shown(inp: Any) -> str:
    if isinstance(inp, dict | list):
        return _kind(inp)
    return repr(inp)


def reason_text(err: dict) -> str:
    """One line for a user about one pydantic error, in YAML terms.

    Shared with :mod:`sim.config.envoy_import`, whose messages about an
    imported value read like the loader's.

    Args:
        err: one item of ``ValidationError.errors()``.

    Returns:
        The reason without its location (``unknown field``, ``required field
        is missing``, ``Input should be greater than 0, got -1``, ...).
    """
    kind = err.get("type", "")
    msg = err.get("msg", "invalid value")
    inp = err.get("input")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind == "union_tag_invalid":
        tag = (err.get("ctx") or {}).get("tag", inp)
        hint = difflib.get_close_matches(str(tag), DIST_TAGS, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        return f"unknown distribution {tag!r}{extra}; expected one of {', '.join(DIST_TAGS)}"
    if kind == "union_tag_not_found":
        return f"a distribution needs 'dist: KIND' ({', '.join(DIST_TAGS)}) or is a bare number"
    if kind == "string_pattern_mismatch" and (err.get("ctx") or {}).get("pattern") == NAME_PATTERN:
        return f"invalid name {inp!r}: {NAME_RULE}"
    if kind in ("model_attributes_type", "model_type", "dict_type"):
        return f"expected a mapping, got {_shown(inp)}"
    if kind.endswith("_type") or kind.endswith("_parsing") or kind == "literal_error":
        return f"{msg}, got {_shown(inp)}"
    if msg.startswith("Value error, "):
        return msg[len("Value error, "):]
    if isinstance(inp, str | int | float) and not isinstance(inp, bool):
        # Bounds and patterns: show the offending value (``Input should be >= 1, got -1``).
        return f"{msg}, got {inp!r}"
    return msg


def _user_path(data: Any, loc: Iterable) -> tuple:
    """Map pydantic's loc to the path in the data (drops union tags)."""
    node = data
    out: list[Any] = []
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
            out.append(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            out.append(part)
        elif isinstance(node, dict) and isinstance(part, str) and not out[-1:] == [part]:
            # A field that is absent from the data (missing / default) or a union tag.
            if part in ("constant", "exponential", "lognormal", "gamma", "uniform", "empirical"):
                continue
            out.append(part)
            node = None
        else:
            continue
    return tuple(out)


def _suggest(model_keys: Iterable[str], key: str) -> str:
    keys = list(model_keys)
    hint = difflib.get_close_matches(key, keys, n=1)
    if hint:
        return f" (did you mean {hint[0]!r}?)"
    return f" (fields: {', '.join(keys)})" if keys else ""


def _field_keys(model: type[BaseModel]) -> list[str]:
    """The keys a user writes for ``model``: aliases where there are any (``mean``)."""
    return [f.alias or name for name, f in model.model_fields.items()]


def _pick_model(tp: Any, node: Any) -> Any:
    """The member of a tagged union (a distribution) that ``node`` names by its ``dist``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and isinstance(node, dict):
        for member in typing.get_args(tp):
            member = _unwrap(member)
            if isinstance(member, type) and issubclass(member, BaseModel) and "dist" in member.model_fields:
                if member.model_fields["dist"].default == node.get("dist"):
                    return member
    return tp


def _known_fields(path: tuple, data: Any = None) -> list[str]:
    """Keys allowed in the mapping that holds ``path[-1]`` (empty when unknown)."""
    tp: Any = Experiment
    node = data
    for part in path[:-1]:
        tp = _pick_model(_unwrap(tp), node)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            ok, ann = _model_field(tp, str(part))
            if not ok:
                return []
            tp = ann
        elif typing.get_origin(tp) in (dict, list):
            tp = typing.get_args(tp)[-1]
        else:
            return []
        try:
            node = node[part] if node is not None else None
        except (KeyError, IndexError, TypeError):
            node = None
    tp = _pick_model(_unwrap(tp), node)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return _field_keys(tp)
    return []


def validate(
    data: dict, positions: dict[tuple, Pos], default_file: str, overridden: dict[tuple, Pos] | None = None
) -> Experiment:
    """Validate plain data as an Experiment; every error located.

    ``overridden`` (from :func:`apply_override`) lets a problem caused by an
    override point at the override.
    """
    try:
        exp = Experiment.model_validate(data)
    except ValidationError as e:
        issues = []
        seen = set()
        for err in e.errors(include_url=False):
            path = _user_path(data, err["loc"])
            reason = reason_text(err)
            if err.get("type") == "extra_forbidden" and path:
                reason += _suggest(_known_fields(path, data), str(path[-1]))
            elif path and path[-1] == "[key]":
                # pydantic's marker for a bad mapping key: the key is the name at fault.
                path = path[:-1]
                reason = f"invalid name {str(path[-1])!r}: {NAME_RULE}"
            f, line = _locate(positions, path, default_file, overridden)
            issue = Issue(f, line, dotted(path), reason)
            if str(issue) not in seen:
                seen.add(str(issue))
                issues.append(issue)
        raise ConfigError(issues) from None
    problems = check_experiment(exp)
    if problems:
        issues = []
        for path, reason in problems:
            f, line = _locate(positions, path, default_file, overridden)
            issues.append(Issue(f, line, dotted(path), reason))
        raise ConfigError(issues)
    return exp


def load_experiment(
    path: str | Path,
    sets: Iterable[str] = (),
    *,
    seed: int | None = None,
    replications: int | None = None,
    calibration: str | Path | None = None,
) -> LoadedExperiment:
    """Load, override, validate and check an experiment file.

    Args:
        path: the experiment YAML.
        sets: ``dotted.path=value`` assignments from the command line, into the
            experiment (``duration_s=30``) or its topology (``topology.gateways.gw-a.instances=3``).
        seed: a command-line override of ``seed``.
        replications: a command-line override of ``replications``.
        calibration: a calibration profile to use instead of the one the
            topology names (``topology.calibration``), or where it names none.

    Raises:
        ConfigError: anything wrong, each problem located.
    """
    path = Path(path)
    label = str(path)
    doc = read_yaml(path, label)
    data, positions = doc.data, doc.positions

    topo_ref = data.get("topology")
    if isinstance(topo_ref, str):
        topo_path = (path.parent / topo_ref) if not Path(topo_ref).is_absolute() else Path(topo_ref)
        try:
            tdoc = read_yaml(topo_path, str(topo_path), prefix=("topology",))
        except ConfigError as e:
            f, line = positions[("topology",)]
            if e.issues[0].file == str(topo_path) and e.issues[0].path == "" and e.issues[0].line is None:
                raise ConfigError([Issue(f, line, "topology", f"{topo_ref}: {e.issues[0].reason}")]) from None
            raise
        data["topology"] = tdoc.data
        data.setdefault("topology_file", topo_ref)
        for p, pos in tdoc.positions.items():
            positions[("topology",) + p] = pos
    elif topo_ref is None:
        pass  # pydantic reports the missing field
    elif not isinstance(topo_ref, dict):
        f, line = positions[("topology",)]
        raise ConfigError([Issue(f, line, "topology", "expected a file path or a mapping")])

    if isinstance(data.get("topology"), dict):
        topo_file = (path.parent / topo_ref) if isinstance(topo_ref, str) else path
        _include_calibration(data["topology"], positions, topo_file, calibration)

    overridden: dict[tuple, Pos] = {}
    overrides = data.get("overrides") or {}
    if not isinstance(overrides, dict):
        f, line = positions[("overrides",)]
        raise ConfigError([Issue(f, line, "overrides", "expected a mapping of dotted paths to values")])
    if isinstance(data.get("topology"), dict):
        for key, value in overrides.items():
            apply_override(data, positions, f"topology.{key}", value, positions[("overrides", key)], overridden)

    for assignment in sets:
        key, eq, text = assignment.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ConfigError([Issue(CLI, None, key or assignment, f"--set {assignment!r}: expected dotted.path=value")])
        if not text.strip():
            raise ConfigError([Issue(CLI, None, key, f"--set {assignment!r} has no value after '=' "
                                                     "(write '' for an empty string)")])
        apply_override(data, positions, key, parse_value(text), (CLI, None), overridden)
    if seed is not None:
        data["seed"] = seed
        positions[("seed",)] = overridden[("seed",)] = (CLI, None)
    if replications is not None:
        data["replications"] = replications
        positions[("replications",)] = overridden[("replications",)] = (CLI, None)

    base = validate(data, positions, label, overridden)
    variants: dict[str, Experiment] = {}
    raw = data.get("variants") or {}
    for name, changes in raw.items():
        vdata = copy.deepcopy(data)
        vdata["variants"] = {}
        vpositions = dict(positions)
        voverridden = dict(overridden)
        for key, value in changes.items():
            apply_override(vdata, vpositions, str(key), value, positions[("variants", name, key)], voverridden)
        variants[name] = validate(vdata, vpositions, label, voverridden)
    return LoadedExperiment(base, path, positions, overridden, variants)


def _include_calibration(topo: dict, positions: dict[tuple, Pos], topo_file: Path,
                         forced: str | Path | None) -> None:
    """Fill ``topo`` from its calibration profile (see :mod:`sim.config.calibration`)."""
    ref = topo.get("calibration")
    if forced is not None:
        prof_path = Path(forced)
        topo["calibration"] = str(prof_path)
        positions[("topology", "calibration")] = (CLI, None)
    elif ref is None:
        return
    elif not isinstance(ref, str):
        f, line = positions[("topology", "calibration")]
        raise ConfigError([Issue(f, line, "topology.calibration", "expected a file path")])
    else:
        prof_path = calib.resolve(topo_file, ref)
    try:
        pdoc = read_yaml(prof_path)
    except ConfigError as e:
        if e.issues[0].path == "" and e.issues[0].line is None:
            f, line = positions[("topology", "calibration")]
            raise ConfigError([Issue(f, line, "topology.calibration",
                                     f"{prof_path}: {e.issues[0].reason}")]) from None
        raise
    problems = calib.profile_errors(pdoc.data)
    if problems:
        issues = []
        for loc, reason in problems:
            p = _user_path(pdoc.data, loc)
            f, line = _locate(pdoc.positions, p, str(prof_path))
            issues.append(Issue(f, line, dotted(p), f"calibration profile: {reason}"))
        raise ConfigError(issues)
    for tpath, ppath in calib.fill_topology(topo, pdoc.data):
        here = pdoc.positions.get(ppath, (str(prof_path), None))
        for p, pos in pdoc.positions.items():
            if p[: len(ppath)] == ppath:
                positions[("topology",) + tpath + p[len(ppath):]] = pos
        positions[("topology",) + tpath] = here


def load_topology(path: str | Path) -> Topology:
    """Load and validate a topology file on its own (no cross-field checks)."""
    doc = read_yaml(Path(path))
    try:
        return Topology.model_validate(doc.data)
    except ValidationError as e:
        issues = []
        for err in e.errors(include_url=False):
            p = _user_path(doc.data, err["loc"])
            f, line = _locate(doc.positions, p, str(path))
            issues.append(Issue(f, line, dotted(p), reason_text(err)))
        raise ConfigError(issues) from None


def dump_resolved(exp: Experiment) -> str:
    """The experiment with every default filled in, as YAML that loads back."""
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False
    buf = io.StringIO()
    yaml.dump(exp.model_dump(mode="json", by_alias=True), buf)
    return buf.getvalue()


def json_schema() -> dict:
    """JSON Schema for experiment files (``topology`` may be a path or inline)."""
    schema = Experiment.model_json_schema(by_alias=True)
    props = schema["properties"]
    props["topology"] = {
        "anyOf": [{"type": "string", "description": "Topology file, relative to this file."}, props["topology"]]
    }
    schema["title"] = "fleetsim experiment"
    return schema
