"""The project's one atomic file writer and its strict-JSON encoder.

Every file the project writes for others to read (run results, generated
configs, pid files, load-generator output) goes through here, so a reader,
or an interrupted writer, never sees half a file: the bytes go to a
temporary file in the destination folder, are flushed to disk, and the
temporary file is renamed over the destination in one step.

This module is imported by light processes (the reference fleet's load
generator and backends start before every run), so it imports the standard
library only and nothing from :mod:`sim`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text", "clean_json", "dumps"]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes | bytearray | memoryview, *,
                       make_parents: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part.

    The data goes to a temporary file next to ``path`` (same folder, so the
    rename cannot cross file systems), is fsynced, made world-readable
    (0o644) and renamed over ``path``. On any failure, interrupts included,
    the temporary file is removed and the exception propagates; ``path`` is
    then untouched.

    Args:
        path: The destination file.
        data: The whole new content.
        make_parents: Create the missing parent folders; when False, a
            missing folder is an error (for a path a user typed).

    Raises:
        OSError: The folder or the file cannot be created or written.
    """
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0o600; results are meant to be shared.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str, *, make_parents: bool = True) -> None:
    """Write ``text`` as UTF-8 to ``path`` atomically (see :func:`atomic_write_bytes`).

    Line endings are written as given, never translated.

    Args:
        path: The destination file.
        text: The whole new content.
        make_parents: Create the missing parent folders.

    Raises:
        OSError: The folder or the file cannot be created or written.
        UnicodeEncodeError: ``text`` holds lone surrogates; nothing is written.
    """
    atomic_write_bytes(path, text.encode("utf-8"), make_parents=make_parents)


def clean_json(value: Any) -> Any:
    """``value`` with every NaN and infinity, at any depth, replaced by None.

    Strict JSON has no NaN or infinity, and a missing measurement is a NaN
    in the simulator's numbers. Dicts are copied, tuples become lists, other
    values are returned as they are.

    Args:
        value: Plain data: dicts, lists, tuples, floats and other JSON scalars.

    Returns:
        The same data with non-finite floats as None.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


def dumps(value: Any) -> str:
    r"""``value`` as strict JSON text: indented by 2, NaN and infinities as null, a final newline.

    The output is the byte-for-byte form of every JSON file of a run
    (summaries are compared byte for byte), so it must not change.

    Args:
        value: Plain data (see :func:`clean_json`).

    Returns:
        The JSON text, ending in ``"\\n"``.

    Raises:
        TypeError: ``value`` holds something JSON cannot represent.
    """
    return json.dumps(clean_json(value), indent=2, allow_nan=False) + "\n"


def atomic_write_json(path: str | os.PathLike[str], value: Any) -> None:
    """Write ``value`` as :func:`dumps` text to ``path`` atomically.

    Args:
        path: The destination file.
        value: Plain data (see :func:`clean_json`).

    Raises:
        OSError: The folder or the file cannot be created or written.
        TypeError: ``value`` holds something JSON cannot represent; nothing
            is written.
    """
    atomic_write_text(path, dumps(value))
