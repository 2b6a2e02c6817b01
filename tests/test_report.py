"""Tests for sim.report: a synthetic run folder rendered to one offline HTML file."""

from __future__ import annotations

import csv
import json
import pathlib
import re
import sys

import plotly.offline
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow running without an installed package
    sys.path.insert(0, str(ROOT))

from sim.report import Panel, write_report  # noqa: E402
from sim.report import html as report_html  # noqa: E402

CAUSES = ("backend_overflow", "backend_error", "route_timeout")


def _summary(**overrides):
    s = {
        "experiment": "quickstart",
        "description": "Two gateways in front of one API backend.",
        "seed": 1,
        "replications": 3,
        "simulated_s": 60.0,
        "warmup_s": 10.0,
        "requests": {
            "offered": 120000,
            "succeeded": 119000,
            "failed": {"backend_overflow": 700, "backend_error": 200, "route_timeout": 100},
            "in_flight": 3,
        },
        "throughput_rps": 2000.1,
        "goodput_rps": 1980.5,
        "latency_ms": {"mean": 12.3, "p50": 10.1, "p90": 20.2, "p99": 45.0, "p999": 80.0},
        "backend": {"api": {"attempts": 120000, "utilization": 0.71, "mean_wait_ms": 3.2,
                            "p_wait": 0.41, "wasted_work_s": 0.0}},
        "gateway": {"gw-a": {"utilization": 0.2}},
        "bytes_by_az_pair": {"internet->use1-az1": 123, "use1-az1->use1-az2": 456,
                             "use1-az2->use1-az1": 789},
        "ci95": {"throughput_rps": 3.2, "latency_ms": {"p99": 1.25},
                 "backend": {"api": {"utilization": 0.012}}},
    }
    s.update(overrides)
    return s


def _write_timeseries(path: pathlib.Path, causes=CAUSES, seconds=20, replications=3):
    header = ["replication", "t_s", "offered", "throughput", "goodput", "in_flight",
              "p50_ms", "p99_ms"] + [f"err_{c}" for c in causes]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in range(replications):
            for t in range(seconds):
                empty = t == 0  # no request completed in the first second
                w.writerow([r, t, 2000 + r, 0 if empty else 1990, 0 if empty else 1980,
                            20 + t, "" if empty else 10 + r, "" if empty else 45.5]
                           + [i + r for i, _ in enumerate(causes)])


def make_run(tmp_path: pathlib.Path, summary=None, *, timeseries=True, manifest=True,
             config=True) -> pathlib.Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps(_summary() if summary is None else summary))
    if timeseries:
        _write_timeseries(run / "timeseries.csv")
    if manifest:
        (run / "manifest.json").write_text(json.dumps({
            "run_id": "20250101T000000-abc123", "seed": 1,
            "versions": {"python": "3.11.9", "numpy": "2.4.6", "fleetsim": "0.1.0"},
            "wall_s": 4.56, "events": 9876543, "requests_simulated": 360000}))
    if config:
        (run / "config.resolved.yaml").write_text("experiment: quickstart\nnote: '<b>&</b>'\n")
    return run


def _plotly_marker() -> str:
    bundle = plotly.offline.get_plotlyjs()
    m = re.search(r"plotly\.js v\d+\.\d+\.\d+", bundle)
    assert m, "could not find the plotly.js version banner"
    assert bundle.count(m.group(0)) == 1
    return m.group(0)


def _read(path: pathlib.Path) -> str:
    return path.read_text(encoding="utf-8")


def test_full_report(tmp_path):
    run = make_run(tmp_path)
    out = write_report(run)
    assert out == run / "report.html"
    assert out.is_file()
    assert not (run / "report.html.tmp").exists()
    assert [p.name for p in run.iterdir() if p.name.endswith(".tmp")] == []

    page = _read(out)
    assert page.startswith("<!DOCTYPE html>")
    # plotly.js embedded exactly once, inside <head>
    marker = _plotly_marker()
    assert page.count(marker) == 1
    assert page.index(marker) < page.index("</head>")
    # offline: no external scripts, stylesheets or fonts
    assert not re.search(r"<script[^>]*\bsrc\s*=\s*[\"']?(https?:)?//", page, re.I)
    assert not re.search(r"<link[^>]*href\s*=\s*[\"']?(https?:)?//", page, re.I)
    assert "@import" not in page

    # title / header / footer
    assert "<h1>quickstart</h1>" in page
    assert "Two gateways in front of one API backend." in page
    assert "20250101T000000-abc123" in page
    assert "4.56 s" in page and "numpy 2.4.6" in page
    # KPIs, with ± CI where present
    for text in ("120,000", "119,000", "1,980.5", "2,000.1 ± 3.2", "45.0 ± 1.2",
                 "10.1", "20.2", "80.0", "12.3", "71.0 ± 1.2", "41.0", "3.20", "20.0"):
        assert text in page, text
    assert "1,000" in page  # total failed
    # each error cause appears (KPI table and time-series legend)
    for cause in CAUSES:
        assert cause.replace("_", " ") in page, cause
        assert f"error: {cause}" in page, cause
    # every panel rendered, none failed
    for anchor in ("kpis", "backend", "gateway", "latency", "rates", "inflight", "bytes",
                   "config"):
        assert f'id="{anchor}"' in page, anchor
    for div in ("fig-latency", "fig-rates", "fig-inflight", "fig-bytes"):
        assert f'id="{div}"' in page, div
    assert "could not be rendered" not in page
    assert "warm-up" in page
    # cross-AZ share: (456 + 789) / (123 + 456 + 789)
    assert "91.0 %" in page
    # config shown escaped
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in page


def test_html_special_text_is_escaped(tmp_path):
    evil = "<script>alert('x')</script> & <b>bold</b>"
    summary = _summary(experiment="exp <i>1</i>", description=evil)
    summary["requests"]["failed"] = {"<img src=x onerror=alert(1)>": 5}
    run = make_run(tmp_path, summary)
    page = _read(write_report(run))
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert "<script>alert(" not in page
    assert "<b>bold</b>" not in page
    assert "exp &lt;i&gt;1&lt;/i&gt;" in page
    assert "<img src=x" not in page


def test_missing_optional_keys_do_not_crash(tmp_path):
    summary = _summary()
    for key in ("description", "gateway", "warmup_s", "ci95", "bytes_by_az_pair"):
        del summary[key]
    summary["backend"] = {"api": {"utilization": 0.5}}  # most backend fields missing
    summary["requests"]["failed"] = {}
    run = make_run(tmp_path, summary, manifest=False, config=False)
    page = _read(write_report(run))
    assert "quickstart" in page
    assert "could not be rendered" not in page
    assert 'id="gateway"' not in page
    assert 'id="bytes"' not in page
    assert 'id="config"' not in page
    assert "warm-up" not in page
    assert "50.0" in page
    assert page.count(_plotly_marker()) == 1


def test_minimal_summary_only(tmp_path):
    run = make_run(tmp_path, {"experiment": "bare"}, timeseries=False, manifest=False,
                   config=False)
    page = _read(write_report(run))
    assert "<h1>bare</h1>" in page
    assert "could not be rendered" not in page
    assert not (run / "report.html.tmp").exists()


def test_timeseries_without_error_columns(tmp_path):
    run = make_run(tmp_path)
    _write_timeseries(run / "timeseries.csv", causes=())
    page = _read(write_report(run))
    assert 'id="fig-rates"' in page
    assert "error: backend" not in page


def test_timeseries_means_across_replications(tmp_path):
    path = tmp_path / "timeseries.csv"
    _write_timeseries(path, seconds=3, replications=3)
    ts = report_html.load_timeseries(path)
    assert ts.t == [0.0, 1.0, 2.0]
    assert ts.replications == 3
    assert ts.columns["offered"] == [2001.0, 2001.0, 2001.0]
    assert ts.columns["p50_ms"] == [None, 11.0, 11.0]  # empty cells ignored
    assert ts.error_causes == list(CAUSES)


def test_missing_summary_raises(tmp_path):
    run = tmp_path / "empty-run"
    run.mkdir()
    with pytest.raises(FileNotFoundError) as exc:
        write_report(run)
    assert str(run / "summary.json") in str(exc.value)
    assert not (run / "report.html").exists()


def test_overwrites_existing_report(tmp_path):
    run = make_run(tmp_path)
    (run / "report.html").write_text("old")
    out = write_report(run)
    assert _read(out) != "old"


def test_extra_panel_builder(tmp_path, monkeypatch):
    run = make_run(tmp_path)

    def retries_panel(data):
        return Panel("Retries", "<p>retry budget ok</p>")

    def absent_panel(data):
        return None

    monkeypatch.setattr(report_html, "PANEL_BUILDERS",
                        [*report_html.PANEL_BUILDERS, retries_panel, absent_panel])
    page = _read(write_report(run))
    assert "retry budget ok" in page
    assert 'href="#retries"' in page


def test_fmt_value():
    assert report_html.fmt_value(2000.1, 3.2) == "2,000.1 ± 3.2"
    assert report_html.fmt_value(120000, integer=True) == "120,000"
    assert report_html.fmt_value(0.71, 0.012, scale=100) == "71.0 ± 1.2"
    assert report_html.fmt_value(None) == "—"
    assert report_html.fmt_value(float("nan")) == "—"
