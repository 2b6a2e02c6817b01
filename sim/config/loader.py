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
import re
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode

from . import calibration as calib
from .checks import check_experiment
from .errors import ConfigError, Issue, dotted
from .models import Experiment, Name, Topology
from .sweep import SweepPoint, expand_sweep

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
    sweep_points: list[SweepPoint] = field(default_factory=list)

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


@dataclass(frozen=True)
class TaggedUnion:
    """A union of models told apart by one field, its tag (pydantic's discriminated union).

    Attributes:
        key: the tag's field (``dist``, ``kind``).
        tags: the values the tag may take, sorted.
        members: the model of each tag.
    """

    key: str
    tags: tuple[str, ...]
    members: dict[str, type[BaseModel]]


def _tag_values(model: type[BaseModel], key: str) -> list[str]:
    f = model.model_fields.get(key)
    if f is None or typing.get_origin(f.annotation) is not typing.Literal:
        return []
    return [str(v) for v in typing.get_args(f.annotation)]


def _as_tagged(tp: Any, key: Any) -> TaggedUnion | None:
    """``tp`` as a tagged union on field ``key``, if it is a union of models and ``key`` a field name."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType) or not isinstance(key, str):
        return None
    models = [m for m in (_unwrap(a) for a in typing.get_args(tp))
              if isinstance(m, type) and issubclass(m, BaseModel)]
    by_tag = {t: m for m in models for t in _tag_values(m, key)}
    return TaggedUnion(key, tuple(sorted(by_tag)), by_tag) if by_tag else None


def find_tagged_unions(root: type[BaseModel] = Experiment) -> list[TaggedUnion]:
    """Every tagged union reachable from ``root``'s fields, in the order first met.

    A union is tagged when pydantic dispatches it on a field
    (``Field(discriminator=...)``): each member declares that field as a
    ``Literal`` of its tag.
    """
    found: dict[tuple[str, tuple[str, ...]], TaggedUnion] = {}
    seen: set[type] = set()

    def walk(tp: Any, key: Any = None) -> None:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            base, *meta = typing.get_args(tp)
            for m in meta:
                if isinstance(m, FieldInfo) and isinstance(m.discriminator, str):
                    key = m.discriminator
            walk(base, key)
        elif origin in (typing.Union, types.UnionType):
            union = _as_tagged(tp, key)
            if union is not None:
                found.setdefault((key, union.tags), union)
            for m in typing.get_args(tp):
                walk(m)
        elif origin in (list, dict, tuple, set, frozenset):
            for a in typing.get_args(tp):
                walk(a)
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and tp not in seen:
            seen.add(tp)
            for f in tp.model_fields.values():
                walk(f.annotation, f.discriminator)

    walk(root)
    return list(found.values())


TAGGED_UNIONS: dict[str, TaggedUnion] = {u.key: u for u in find_tagged_unions()}
"""The schema's tagged unions by the name of their tag field."""

TAG_WORDS: dict[str, tuple[str, str, str]] = {
    "dist": ("distribution", "distributions", "a distribution needs 'dist: KIND' or is a bare number"),
    "kind": ("fault kind", "kinds", "a fault needs 'kind: KIND'"),
    "event": ("control-plane event", "events", "a control-plane event needs 'event: KIND'"),
    "algorithm": ("rate-limit algorithm", "algorithms", "a rate limit needs 'algorithm: ALGORITHM'"),
}
"""How messages speak of each tagged union, by its tag field: what one tag is,
what the list of tags is called, and what a mapping without a tag lacks."""


def _tag_words(key: str) -> tuple[str, str, str]:
    return TAG_WORDS.get(key, (f"{key}", f"{key} values", f"needs '{key}: ...'"))


def _did_you_mean(word: Any, choices: Iterable[str]) -> str | None:
    """The choice closest to ``word`` (case aside), if one is close enough."""
    if not isinstance(word, str | int | float) or isinstance(word, bool):
        return None
    choices = list(choices)
    lower = {c.lower(): c for c in choices}
    hint = difflib.get_close_matches(str(word).lower(), list(lower), n=1)
    return lower[hint[0]] if hint else None


def _tag_list(key: str, tags: Iterable[str]) -> str:
    return f"{_tag_words(key)[1]}: {', '.join(tags)}"


def _union_tags(key: str, ctx: dict) -> tuple[str, ...]:
    union = TAGGED_UNIONS.get(key)
    if union is not None:
        return union.tags
    return tuple(sorted(re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))))


def unknown_tag(key: str, tag: Any, tags: Iterable[str]) -> str:
    """The reason for a tag that names no member: ``unknown fault kind 'x' (did you mean ...? kinds: ...)``."""
    tags = tuple(tags)
    hint = _did_you_mean(tag, tags)
    mean = f"did you mean {hint!r}? " if hint else ""
    return f"unknown {_tag_words(key)[0]} {_shown(tag)} ({mean}{_tag_list(key, tags)})"


NAME_PATTERN = typing.get_args(Name)[1].pattern
NAME_MAX = typing.get_args(Name)[1].max_length
NAME_RULE = (f"names are ASCII letters, digits, '-' and '_' (no '.': dots separate the parts of dotted paths), "
             f"starting with a letter or digit, at most {NAME_MAX} characters: they become directory names, "
             "metric keys and random-stream keys")
"""What a name may be, and why (see :data:`sim.config.models.Name`)."""


def name_problem(name: Any) -> str:
    """The reason ``name`` is no valid name: what is wrong with it, then :data:`NAME_RULE`.

    Args:
        name: a value that failed :data:`sim.config.models.Name`.

    Returns:
        ``invalid name 'zürich': 'ü' is not ASCII; names are ...``.
    """
    why = ""
    if isinstance(name, str):
        bad = next((c for c in name if not (c.isascii() and (c.isalnum() or c in "-_"))), None)
        if not name:
            why = "it is empty; "
        elif bad is not None and not bad.isascii():
            why = f"{bad!r} is not ASCII; "
        elif bad is not None:
            why = f"{bad!r} is not allowed; "
        elif not name[0].isalnum():
            why = f"it starts with {name[0]!r}; "
        elif len(name) > NAME_MAX:
            why = f"it has {len(name)} characters; "
    return f"invalid name {_shown(name)}: {why}{NAME_RULE}"


def _shown(inp: Any) -> str:
    if isinstance(inp, dict | list):
        return _kind(inp)
    return repr(inp)


def _is_name_error(err: dict) -> bool:
    """Whether ``err`` is a :data:`~sim.config.models.Name` refusing its value."""
    kind, ctx, inp = err.get("type", ""), err.get("ctx") or {}, err.get("input")
    if kind == "string_pattern_mismatch":
        return ctx.get("pattern") == NAME_PATTERN
    # The length is checked on its own, and no other string of the schema has this bound.
    return kind == "string_too_long" and ctx.get("max_length") == NAME_MAX and isinstance(inp, str)


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
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind == "union_tag_invalid":
        key = str(ctx.get("discriminator", "")).strip("'")
        tag = inp[key] if isinstance(inp, dict) and key in inp else ctx.get("tag")
        return unknown_tag(key, tag, _union_tags(key, ctx))
    if kind == "union_tag_not_found":
        key = str(ctx.get("discriminator", "")).strip("'")
        return f"{_tag_words(key)[2]} ({_tag_list(key, _union_tags(key, ctx))})"
    if _is_name_error(err):
        return name_problem(inp)
    if kind in ("model_attributes_type", "model_type", "dict_type"):
        return f"expected a mapping, got {_shown(inp)}"
    if kind == "literal_error":
        hint = _did_you_mean(inp, re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
        return f"{msg}, got {_shown(inp)}" + (f" (did you mean {hint!r}?)" if hint else "")
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return f"{msg}, got {_shown(inp)}"
    if msg.startswith("Value error, "):
        return msg[len("Value error, "):]
    if isinstance(inp, str | int | float) and not isinstance(inp, bool):
        # Bounds and patterns: show the offending value (``Input should be >= 1, got -1``).
        return f"{msg}, got {inp!r}"
    return msg


def _union_at(root: type[BaseModel], loc: Iterable) -> TaggedUnion | None:
    """The tagged union that pydantic's ``loc`` (from ``root``) names, if it names one."""
    tp: Any = root
    key: Any = None
    for part in [*loc, None]:
        while True:  # strip Annotated (keeping its discriminator) and Optional
            origin = typing.get_origin(tp)
            if origin is typing.Annotated:
                base, *meta = typing.get_args(tp)
                key = next((m.discriminator for m in meta if isinstance(m, FieldInfo)
                            and isinstance(m.discriminator, str)), key)
                tp = base
            elif origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp):
                args = [a for a in typing.get_args(tp) if a is not type(None)]
                tp = args[0] if len(args) == 1 else typing.Union[tuple(args)]  # noqa: UP007
            else:
                break
        union = _as_tagged(tp, key)
        if part is None:
            return union
        if union is not None:
            if part not in union.members:
                return None
            tp, key = union.members[part], None
        elif isinstance(tp, type) and issubclass(tp, BaseModel):
            f = next((f for name, f in tp.model_fields.items() if part in (name, f.alias)), None)
            if f is None:
                return None
            tp, key = f.annotation, f.discriminator
        elif typing.get_origin(tp) in (dict, list) and part != "[key]":
            tp, key = typing.get_args(tp)[-1], None
        else:
            return None
    return None  # pragma: no cover - the loop returns at the end of loc


def _error_path_and_reason(root: type[BaseModel], data: Any, err: dict) -> tuple[tuple, str]:
    """The path in the data and the reason for one pydantic error validating ``root``.

    A tag that names no member is reported at the tag (``faults.0.kind``); a
    tagged union given something other than a mapping says what it needs.
    """
    path = _user_path(data, err["loc"])
    reason = reason_text(err)
    kind, inp = err.get("type"), err.get("input")
    if kind == "union_tag_invalid" and isinstance(inp, dict):
        key = str((err.get("ctx") or {}).get("discriminator", "")).strip("'")
        if key in inp:
            path += (key,)
    elif kind == "model_attributes_type":
        union = _union_at(root, err["loc"])
        if union is not None:
            hint = _did_you_mean(inp, union.tags) if isinstance(inp, str) else None
            reason = f"{_tag_words(union.key)[2]} ({_tag_list(union.key, union.tags)}), got {_shown(inp)}"
            if hint is not None:
                reason += f" (did you mean {{{union.key}: {hint}, ...}}?)"
    return path, reason


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
            if any(node.get(key) == part for key in TAGGED_UNIONS):
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
    """The member of a tagged union (a distribution, a fault) that ``node`` names by its tag."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and isinstance(node, dict):
        for key, union in TAGGED_UNIONS.items():
            tag = node.get(key)
            if isinstance(tag, str) and tag in union.members and union.members[tag] in map(_unwrap, typing.get_args(tp)):
                return union.members[tag]
    return tp


def _known_fields(path: tuple, data: Any = None, root: type[BaseModel] = Experiment) -> list[str]:
    """Keys allowed in the mapping that holds ``path[-1]`` (empty when unknown)."""
    tp: Any = root
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


def _validation_issues(
    root: type[BaseModel],
    data: Any,
    error: ValidationError,
    positions: dict[tuple, Pos],
    default_file: str,
    overridden: dict[tuple, Pos] | None = None,
) -> list[Issue]:
    """One located issue per distinct problem of ``data`` validated as ``root``."""
    issues: list[Issue] = []
    seen = set()
    for err in error.errors(include_url=False):
        path, reason = _error_path_and_reason(root, data, err)
        if err.get("type") == "extra_forbidden" and path:
            reason += _suggest(_known_fields(path, data, root), str(path[-1]))
        elif err["loc"][-1:] == ("[key]",):
            # pydantic's marker for a bad mapping key: the key is the name at fault.
            path = path[:-1] if path[-1:] == ("[key]",) else path
            key = err["loc"][-2]
            reason = (name_problem(key) if isinstance(key, str) else
                      f"invalid name {key!r}: a name is a string, write it in quotes ('{key}')")
        f, line = _locate(positions, path, default_file, overridden)
        issue = Issue(f, line, dotted(path), reason)
        if str(issue) not in seen:
            seen.add(str(issue))
            issues.append(issue)
    return issues


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
        raise ConfigError(_validation_issues(Experiment, data, e, positions, default_file, overridden)) from None
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

    profile = None
    if isinstance(data.get("topology"), dict):
        topo_file = (path.parent / topo_ref) if isinstance(topo_ref, str) else path
        profile = _read_calibration(data["topology"], positions, topo_file, calibration)

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

    # The base and every variant are checked before anything is reported, so one pass
    # names every problem of every variant.
    # The calibration profile fills what the topology leaves out once every change is made (the
    # overrides, --set, each variant's), so that a pool given TLS by an override or a variant
    # gets the handshake CPU measured for its TLS version and certificate.
    def calibrated(d: dict, pos: dict[tuple, Pos]) -> tuple[dict, dict[tuple, Pos]]:
        if profile is None or not isinstance(d.get("topology"), dict):
            return d, pos
        d, pos = copy.deepcopy(d), dict(pos)
        _fill_calibration(d["topology"], pos, *profile)
        return d, pos

    issues: list[Issue] = []
    try:
        base = validate(*calibrated(data, positions), label, overridden)
    except ConfigError as e:
        issues += e.issues
    variants, variant_issues = _load_variants(data, positions, overridden, label, issues, calibrated)
    issues += variant_issues
    if issues:
        raise ConfigError(issues)
    points = expand_sweep(data, positions, overridden, label, variants)
    return LoadedExperiment(base, path, positions, overridden, variants, points)


def _load_variants(data: dict, positions: dict[tuple, Pos], overridden: dict[tuple, Pos], label: str,
                   inherited: list[Issue], calibrated) -> tuple[dict[str, Experiment], list[Issue]]:
    """Every variant of ``data`` validated, and the problems of all of them.

    A variant is the experiment with its dotted-path changes applied. Each
    problem is named ``variants.<name>.<path>``; it is located at the change
    that caused it, or when it lies elsewhere (a ``warmup_s`` of the base that a
    variant's ``duration_s`` makes too long) at the variant. A problem the
    base has too (``inherited``, already reported) is not repeated.
    """
    raw = data.get("variants")
    if not isinstance(raw, dict):
        return {}, []  # the base's validation says what is wrong with it
    known = {str(i) for i in inherited}
    variants: dict[str, Experiment] = {}
    issues: list[Issue] = []
    for name, changes in raw.items():
        if not isinstance(changes, dict):
            continue  # likewise
        here = positions.get(("variants", name), (label, None))
        vdata = copy.deepcopy(data)
        vdata["variants"] = {}
        vpositions = dict(positions)
        voverridden = dict(overridden)
        found: list[Issue] = []
        for key, value in changes.items():
            origin = positions.get(("variants", name, key), here)
            try:
                apply_override(vdata, vpositions, str(key), value, origin, voverridden)
            except ConfigError as e:
                found += e.issues
        try:
            exp = validate(*calibrated(vdata, vpositions), label, voverridden)
        except ConfigError as e:
            found += [i for i in e.issues if str(i) not in known]
        else:
            if not found:
                variants[name] = exp
        own = {positions.get(("variants", name, key), here) for key in changes} | {here}
        prefix = dotted(("variants", name))
        for i in sorted(found, key=lambda i: i.line or 0) if all(i.file == label for i in found) else found:
            f, line = (i.file, i.line) if (i.file, i.line) in own else here
            issues.append(Issue(f, line, f"{prefix}.{i.path}" if i.path else prefix, i.reason))
    return variants, issues


def _read_calibration(topo: dict, positions: dict[tuple, Pos], topo_file: Path,
                      forced: str | Path | None) -> tuple[Document, Path] | None:
    """``topo``'s calibration profile (see :mod:`sim.config.calibration`), read and checked, and its path."""
    ref = topo.get("calibration")
    if forced is not None:
        prof_path = Path(forced)
        topo["calibration"] = str(prof_path)
        positions[("topology", "calibration")] = (CLI, None)
    elif ref is None:
        return None
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
    return pdoc, prof_path


def _fill_calibration(topo: dict, positions: dict[tuple, Pos], pdoc: Document, prof_path: Path) -> None:
    """Fill ``topo`` from the profile where it has no value, pointing each filled field at its profile line."""
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
        raise ConfigError(_validation_issues(Topology, doc.data, e, doc.positions, str(path))) from None


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
