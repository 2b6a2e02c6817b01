"""Errors a user can cause, each located in a file, a line and a dotted path.

Every error that reaches the command line is a :class:`ConfigError` holding one
or more :class:`Issue` rows; the CLI prints one line per issue,
``FILE:LINE: dotted.path: reason``, and exits with status 2.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Issue:
    """One problem in the user's input.

    Attributes:
        file: the file the problem is in (``<command line>`` for ``--set``).
        line: 1-based line number, or None when the whole file is at fault.
        path: dotted path inside the document (``gateways.gw-a.instances``),
            or ``""`` for the document itself.
        reason: what is wrong, in words a user can act on.
    """

    file: str
    line: int | None
    path: str
    reason: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        path = self.path or "(document)"
        return f"{where}: {path}: {self.reason}"


class ConfigError(Exception):
    """Invalid input; carries every issue found, each printable on one line."""

    def __init__(self, issues: list[Issue]):
        if not issues:
            raise ValueError("ConfigError needs at least one issue")
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


def dotted(path: tuple) -> str:
    """Render a path tuple as the dotted form users write in ``--set``."""
    return ".".join(str(p) for p in path)
