"""Reading the JSON spec files the harness hands to the backend and the load generator."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def load_json_spec(path: str | Path, parse: Callable[[object], T]) -> T:
    """``parse`` of the JSON in ``path``; one ValueError naming the file (and the field ``parse`` names).

    Raises:
        ValueError: a missing or unreadable file, bad JSON, or what ``parse`` refuses.
    """
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from None
    try:
        return parse(obj)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
