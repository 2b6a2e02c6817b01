"""Variants: dotted-path changes run as one comparison, with common random numbers."""

from __future__ import annotations

import json
from pathlib import Path

from sim.cli import main

from .fleet_builders import variants_experiment_file

ROOT = Path(__file__).resolve().parent.parent


_experiment = variants_experiment_file


def test_variants_run_side_by_side_share_arrivals_and_write_one_comparison(tmp_path, capsys):
    exp = _experiment(tmp_path)
    code = main(["run", str(exp), "--out", str(tmp_path / "out"), "--jobs", "2", "--quiet"])
    assert code == 0
    run = Path(capsys.readouterr().out.strip().splitlines()[-1])
    comparison = json.loads((run / "comparison.json").read_text())
    assert [v["name"] for v in comparison["variants"]] == ["base", "slower"]
    base = json.loads((run / "variants" / "base" / "summary.json").read_text())
    slower = json.loads((run / "variants" / "slower" / "summary.json").read_text())
    # Common random numbers: the same arrivals, so the same offered load.
    assert base["requests"]["offered"] == slower["requests"]["offered"]
    assert slower["latency_ms"]["p50"] > base["latency_ms"]["p50"]
    for name in ("base", "slower"):
        manifest = json.loads((run / "variants" / name / "manifest.json").read_text())
        assert manifest["resumed_replications"] == 0
        assert (run / "variants" / name / "report.html").is_file()
    html = (run / "report.html").read_text()
    assert "variants/slower/report.html" in html


def test_a_variant_with_a_bad_path_is_refused_at_its_line(tmp_path, capsys):
    exp = _experiment(tmp_path)
    text = exp.read_text().replace("topology.services.api.service_time_s", "topology.services.api.sevice_time_s")
    exp.write_text(text)
    assert main(["check", str(exp)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "sevice_time_s" in t)
    assert len(err) == 1 and err[0].startswith(f"{exp}:{line}: ") and "sevice_time_s" in err[0]
