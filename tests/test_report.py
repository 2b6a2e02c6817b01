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
             config=True, graph=None) -> pathlib.Path:
    run = tmp_path / "run"
    run.mkdir()
    if graph is not None:
        (run / "graph.json").write_text(graph if isinstance(graph, str) else json.dumps(graph))
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


# --------------------------------------------------------------------------
# Fleet and traffic panel (graph.json)
# --------------------------------------------------------------------------


def _node(node_id, kind, az, region="us-east-1", **extra):
    return {"id": node_id, "kind": kind, "region": region, "az": az, **extra}


def _edge(source, target, relation, requests):
    return {"source": source, "target": target, "relation": relation, "requests": requests}


def _small_graph():
    """Two AZs; gateway -> backend: 223 of 1000 requests cross an AZ (22.3 %)."""
    nodes = [
        _node("client:us-east-1", "client", "internet"),
        _node("lb:us-east-1:use1-az1", "balancer", "use1-az1"),
        _node("lb:us-east-1:use1-az2", "balancer", "use1-az2"),
        _node("gw:gw-az1-0", "gateway", "use1-az1", pool="gw-az1"),
        _node("gw:<b>evil</b>", "gateway", "use1-az2", pool="gw-az2"),
        _node("be:api-use1-az1-0", "backend", "use1-az1", service="api"),
        _node("be:api-use1-az2-0", "backend", "use1-az2", service="api"),
    ]
    edges = [
        _edge("client:us-east-1", "lb:us-east-1:use1-az1", "internet", 500),
        _edge("client:us-east-1", "lb:us-east-1:use1-az2", "internet", 500),
        # balancer -> gateway crossings do not count towards the caption
        _edge("lb:us-east-1:use1-az1", "gw:gw-az1-0", "same_az", 250),
        _edge("lb:us-east-1:use1-az1", "gw:<b>evil</b>", "cross_az", 250),
        _edge("lb:us-east-1:use1-az2", "gw:gw-az1-0", "cross_az", 250),
        _edge("lb:us-east-1:use1-az2", "gw:<b>evil</b>", "same_az", 250),
        _edge("gw:gw-az1-0", "be:api-use1-az1-0", "same_az", 400),
        _edge("gw:gw-az1-0", "be:api-use1-az2-0", "cross_az", 123),
        _edge("gw:<b>evil</b>", "be:api-use1-az2-0", "same_az", 377),
        _edge("gw:<b>evil</b>", "be:api-use1-az1-0", "cross_az", 100),
    ]
    return {"nodes": nodes, "edges": edges, "window_s": 10.0}


def _large_graph(backends=200, gateways=4):
    azs = ("use1-az1", "use1-az2")
    nodes = [_node("client:us-east-1", "client", "internet")]
    nodes += [_node(f"lb:us-east-1:{az}", "balancer", az) for az in azs]
    gws = [_node(f"gw:gw-{i}", "gateway", azs[i % 2], pool=f"gw-{azs[i % 2]}")
           for i in range(gateways)]
    bes = [_node(f"be:{svc}-{i}", "backend", azs[i % 2], service=svc)
           for i in range(backends) for svc in (("api", "auth")[i % 4 // 2],)]
    nodes += gws + bes
    edges = [_edge("client:us-east-1", f"lb:us-east-1:{az}", "internet", 1000) for az in azs]
    edges += [_edge(f"lb:us-east-1:{az}", g["id"], "same_az" if g["az"] == az else "cross_az", 500)
              for az in azs for g in gws]
    edges += [_edge(g["id"], b["id"], "same_az" if g["az"] == b["az"] else "cross_az", 5)
              for g in gws for b in bes]
    return {"nodes": nodes, "edges": edges, "window_s": 80.0}


def _unescape_json(page: str) -> str:
    """Undo plotly's ``\\uXXXX`` escapes (``/``, ``<``, non-ASCII) in the figure JSON."""
    return re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), page)


def _node_markers(fig) -> int:
    return sum(len(t.x) for t in fig.data if t.meta == "fleet-nodes")


def test_fleet_panel_renders_with_cross_az_share(tmp_path):
    run = make_run(tmp_path, graph=_small_graph())
    page = _unescape_json(_read(write_report(run)))
    assert "could not be rendered" not in page
    assert "Fleet and traffic" in page
    assert 'id="fleet"' in page and 'id="fig-fleet"' in page
    # placed after the KPI tables, before the time series
    assert page.index('id="gateway"') < page.index('id="fleet"') < page.index('id="latency"')
    # (123 + 100) / (400 + 123 + 377 + 100) = 22.3 %, at 10 s window -> req/s
    assert ("<strong>22.3 %</strong> of gateway-to-backend requests cross an AZ boundary "
            "(22.3 of 100.0 req/s).") in page
    # node ids are escaped in the figure (labels and hover text)
    assert "&lt;b&gt;evil&lt;/b&gt;" in page
    assert "gw:<b>evil" not in page
    # legend shows the relations present
    for label in ("internet", "same AZ", "cross-AZ"):
        assert f'"name":"{label}"' in page, label


def test_fleet_graph_layout_groups_by_az():
    graph = report_html.parse_fleet_graph(_small_graph())
    assert graph.columns == ["client", "balancer", "gateway", "backend"]
    n = graph.nodes
    fig, height = report_html.fleet_figure(graph)
    assert height >= 300
    assert [n["client:us-east-1"].x, n["lb:us-east-1:use1-az1"].x, n["gw:gw-az1-0"].x,
            n["be:api-use1-az1-0"].x] == [0.0, 1.0, 2.0, 3.0]
    # AZ bands: every use1-az1 box is above every use1-az2 box (y grows downwards)
    az1 = [v.y for v in n.values() if v.az == "use1-az1"]
    az2 = [v.y for v in n.values() if v.az == "use1-az2"]
    assert max(az1) < min(az2)
    # the client (on the internet) is centred on its region's bands
    assert max(az1) < n["client:us-east-1"].y < min(az2)
    # rates per second: in/out of a gateway
    assert n["gw:gw-az1-0"].rate_in == pytest.approx(50.0)
    assert n["gw:gw-az1-0"].rate_out == pytest.approx(52.3)
    assert _node_markers(fig) == 7


def test_fleet_panel_absent_without_graph(tmp_path):
    run = make_run(tmp_path)
    page = _read(write_report(run))
    assert "could not be rendered" not in page
    assert 'id="fleet"' not in page
    assert "Fleet and traffic" not in page
    assert "gateway-to-backend" not in page
    assert 'id="latency"' in page  # the rest of the report is intact


def test_fleet_panel_unreadable_graph_shows_notice(tmp_path):
    run = make_run(tmp_path, graph="{not json")
    page = _read(write_report(run))
    assert 'id="fleet"' in page
    assert "graph.json could not be read" in page
    assert 'id="latency"' in page


def test_fleet_graph_aggregates_large_columns(tmp_path):
    raw = _large_graph(backends=200)
    graph = report_html.parse_fleet_graph(raw)
    # 200 backends -> one box per (service, AZ); the 4 gateways stay individual
    assert graph.node_counts["backend"] == 200
    backends = [v for v in graph.nodes.values() if v.kind == "backend"]
    assert len(backends) == 4
    assert sorted(len(b.members) for b in backends) == [50, 50, 50, 50]
    assert {(b.group, b.az) for b in backends} == {
        (svc, az) for svc in ("api", "auth") for az in ("use1-az1", "use1-az2")}
    assert len([v for v in graph.nodes.values() if v.kind == "gateway"]) == 4
    # edges are summed, nothing is lost: 4 gateways x 200 backends x 5 requests / 80 s
    gw_be = [e for e in graph.edges if e.target in {b.id for b in backends}]
    assert len(gw_be) == 4 * 4
    assert sum(e.rate for e in gw_be) == pytest.approx(4 * 200 * 5 / 80)
    assert graph.gw_be_cross_az / graph.gw_be_total == pytest.approx(0.5)

    fig, _ = report_html.fleet_figure(graph)
    assert 0 < _node_markers(fig) < 60
    edge_segments = sum(len(t.x) // 3 for t in fig.data
                        if t.mode == "lines" and t.x and None in t.x)
    assert edge_segments == len(graph.edges) < 60

    run = make_run(tmp_path, graph=raw)
    page = _unescape_json(_read(write_report(run)))
    assert "could not be rendered" not in page
    assert "Backends are grouped per service and AZ (200 → 4 boxes)." in page
    assert "<strong>50.0 %</strong> of gateway-to-backend requests" in page
    assert "api ×50" in page


def test_fleet_graph_tolerates_malformed_entries():
    raw = _small_graph()
    raw["nodes"] += ["junk", {"kind": "gateway"}, dict(raw["nodes"][0])]  # dup id
    raw["edges"] += [_edge("gw:gw-az1-0", "be:nope", "same_az", 1),
                     _edge("gw:gw-az1-0", "be:api-use1-az1-0", "same_az", "x"), 7]
    del raw["window_s"]
    graph = report_html.parse_fleet_graph(raw)
    assert graph.ignored_nodes == 3 and graph.ignored_edges == 3
    assert graph.rate_unit == "requests"
    assert graph.gw_be_total == pytest.approx(1000)
    panel = report_html.fleet_panel(report_html.RunData(pathlib.Path("."), {}, graph=raw))
    assert panel is not None and "Ignored 6 malformed" in panel.html
