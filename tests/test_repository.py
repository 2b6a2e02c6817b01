"""The repository stands on its own: a user who clones it has everything it cites.

Facts, figures and design notes the code relies on live in ``docs/``; no
tracked file may point at notes kept outside the repository (a sibling
``shared`` folder, the team's briefing files, absolute paths of the machine
the project was developed on). Every relative link in the repository's
markdown must reach a file inside it, and every section anchor that a link or
a code comment cites (``docs/facts.md#network-latency``) must be a heading of
that file.
"""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Each pattern is written so that this file's own source does not match it.
OUTSIDE = [
    ("a path into the shared folder beside the repository", re.compile(r"\.\./shared\b")),
    ("an absolute path on the development machine", re.compile(r"(?<![\w.~-])/wor[k]/")),
]
# The briefing's file names, in capitals; docs/ may name them (e.g. to say what it replaced).
BRIEFING = re.compile(r"(?<![/\w])(?:FACTS|DESIGN|STYLE|ROADMAP)\.md\b")

FENCE = re.compile(r"^ {0,3}(```|~~~)")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'(][^)]*)?\)")
REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$")
CITED_ANCHOR = re.compile(r"\b(docs/[\w./-]+?\.md)#([\w-]+)")


@cache
def tracked_files() -> tuple[str, ...]:
    """Paths of the files git tracks (that still exist in the working tree)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    return tuple(p for p in out.decode("utf-8").split("\0") if p and (ROOT / p).is_file())


@cache
def text_of(rel: str) -> str | None:
    """The file's text, or None for a binary file (a NUL byte, or not UTF-8)."""
    data = (ROOT / rel).read_bytes()
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def markdown_files() -> list[str]:
    return [p for p in tracked_files() if p.endswith(".md")]


def prose_lines(text: str):
    """(line number, line) of markdown outside fenced code blocks, code spans removed."""
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if m:
            if fence is None:
                fence = m.group(1)
            elif m.group(1) == fence:
                fence = None
            continue
        if fence is None:
            yield number, CODE_SPAN.sub("", line)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.replace("`", "").lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in "-_ ")
    return text.replace(" ", "-")


@cache
def anchors(rel: str) -> frozenset[str]:
    """The anchors of a markdown file's headings (a repeated heading gets -1, -2, ...)."""
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(text_of(rel) or ""):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return frozenset(out)


def test_no_file_names_a_path_outside_the_repository():
    problems = []
    for rel in tracked_files():
        text = text_of(rel)
        if text is None:
            continue
        checks = list(OUTSIDE)
        if not rel.startswith("docs/"):
            checks.append(("a briefing file that is not in the repository (cite docs/ instead)", BRIEFING))
        for number, line in enumerate(text.splitlines(), 1):
            for what, pattern in checks:
                m = pattern.search(line)
                if m:
                    problems.append(f"{rel}:{number}: {what}: {m.group(0)!r}")
    assert not problems, "\n".join(problems)


def relative_links(rel: str):
    """(line, target) of every link in a markdown file that is not a URL."""
    for number, line in prose_lines(text_of(rel) or ""):
        targets = [m.group(1) for m in INLINE_LINK.finditer(line)]
        m = REFERENCE_LINK.match(line)
        if m:
            targets.append(m.group(1))
        for target in targets:
            if target and not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target):
                yield number, target


def test_every_relative_markdown_link_reaches_a_file_in_the_repository():
    files = markdown_files()
    assert "README.md" in files and "docs/README.md" in files
    problems = []
    for rel in files:
        for number, target in relative_links(rel):
            path, _, fragment = target.partition("#")
            path = unquote(path.split("?", 1)[0])
            if not path:
                dest = ROOT / rel  # an anchor in the same file
            elif path.startswith("/"):
                problems.append(f"{rel}:{number}: {target}: an absolute link does not work in a clone")
                continue
            else:
                dest = ((ROOT / rel).parent / path).resolve()
            if not dest.is_relative_to(ROOT):
                problems.append(f"{rel}:{number}: {target}: leaves the repository")
            elif not dest.exists():
                problems.append(f"{rel}:{number}: {target}: no such file")
            elif fragment and dest.suffix == ".md":
                if fragment not in anchors(dest.relative_to(ROOT).as_posix()):
                    problems.append(f"{rel}:{number}: {target}: no heading with that anchor")
    assert not problems, "\n".join(problems)


def test_every_cited_docs_anchor_is_a_heading():
    problems = []
    for rel in tracked_files():
        text = text_of(rel)
        if text is None or "docs/" not in text:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for m in CITED_ANCHOR.finditer(line):
                doc, fragment = m.group(1), m.group(2)
                if not (ROOT / doc).is_file():
                    problems.append(f"{rel}:{number}: {m.group(0)}: no file {doc}")
                elif fragment not in anchors(doc):
                    problems.append(f"{rel}:{number}: {m.group(0)}: {doc} has no such heading")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("heading", "anchor"), [
    ("Network latency", "network-latency"),
    ("Cross-AZ and egress prices", "cross-az-and-egress-prices"),
    ("`sim/`: the simulator, package by package", "sim-the-simulator-package-by-package"),
    ("What it answers today", "what-it-answers-today"),
])
def test_anchors_follow_githubs_rule(heading, anchor):
    assert slug(heading) == anchor
