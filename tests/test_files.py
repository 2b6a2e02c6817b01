"""``sim.files``: the project's one atomic writer and its strict-JSON encoder."""

from __future__ import annotations

import json
import math
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sim import files
from sim.files import atomic_write_bytes, atomic_write_json, atomic_write_text, clean_json, dumps

ROOT = Path(__file__).resolve().parent.parent


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_write_text_replaces_the_file_whole(tmp_path):
    path = tmp_path / "deep" / "er" / "out.txt"
    atomic_write_text(path, "first\r\n")
    atomic_write_text(path, "second ü\n")
    assert path.read_bytes() == "second ü\n".encode()  # no newline translation, UTF-8
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert leftovers(path.parent) == []


def test_without_make_parents_a_missing_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write_text(tmp_path / "typo" / "out.yaml", "x", make_parents=False)
    assert list(tmp_path.iterdir()) == []


def test_write_bytes_accepts_a_str_path_and_a_memoryview(tmp_path):
    path = tmp_path / "out.bin"
    atomic_write_bytes(str(path), memoryview(b"\x00\x01\x02"))
    assert path.read_bytes() == b"\x00\x01\x02"


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failure_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, exc):
    path = tmp_path / "out.json"
    atomic_write_json(path, {"old": 1})

    def fail(fd):
        raise exc

    monkeypatch.setattr(files.os, "fsync", fail)
    with pytest.raises(type(exc)):
        atomic_write_json(path, {"new": 2})
    assert json.loads(path.read_text()) == {"old": 1}
    assert leftovers(tmp_path) == []


def test_failed_rename_leaves_no_temporary(tmp_path):
    target = tmp_path / "a-folder"
    target.mkdir()
    (target / "inside").write_text("x")  # os.replace cannot put a file over a non-empty folder
    with pytest.raises(OSError):
        atomic_write_text(target, "text")
    assert target.is_dir() and leftovers(tmp_path) == []


def test_unencodable_value_writes_nothing(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "x.json", {"a": object()})
    assert list(tmp_path.iterdir()) == []


def test_nan_and_infinities_become_null_at_any_depth():
    value = {"a": math.nan, "b": [1.5, math.inf, (-math.inf, 2)], "c": {"d": float("nan")}, "e": "nan"}
    assert clean_json(value) == {"a": None, "b": [1.5, None, [None, 2]], "c": {"d": None}, "e": "nan"}
    assert json.loads(dumps(value)) == {"a": None, "b": [1.5, None, [None, 2]], "c": {"d": None}, "e": "nan"}


def test_dumps_is_byte_identical():
    # Summaries are compared byte for byte: this exact text must not change.
    sample = {"requests": {"offered": 3, "failed": {}}, "p99_ms": 12.5, "ratio": 1 / 3, "nan": math.nan,
              "tags": ("a", "é"), "ok": True, "none": None, "big": 1e21}
    assert dumps(sample) == (
        '{\n  "requests": {\n    "offered": 3,\n    "failed": {}\n  },\n  "p99_ms": 12.5,\n'
        '  "ratio": 0.3333333333333333,\n  "nan": null,\n  "tags": [\n    "a",\n    "\\u00e9"\n  ],\n'
        '  "ok": true,\n  "none": null,\n  "big": 1e+21\n}\n')
    finite = {k: v for k, v in sample.items() if k != "nan"}
    assert dumps(finite) == json.dumps(finite, indent=2) + "\n"


def test_write_json_writes_dumps(tmp_path):
    value = {"x": [1, 2.0, math.inf]}
    atomic_write_json(tmp_path / "v.json", value)
    assert (tmp_path / "v.json").read_text(encoding="utf-8") == dumps(value)


def test_the_store_re_exports_the_same_functions():
    from sim.runner import store

    for name in ("atomic_write_text", "atomic_write_json", "clean_json", "dumps"):
        assert getattr(store, name) is getattr(files, name)


def test_importing_it_stays_light():
    """The load generator and the backends import it; it must pull in nothing of sim, nothing heavy."""
    code = ("import sys, sim.files; "
            "print(sorted(m for m in sys.modules if m == 'numpy' or (m.startswith('sim') and m != 'sim.files')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['sim']"
