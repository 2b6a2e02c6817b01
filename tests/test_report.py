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

from sim.report import Panel, fleet_graph, write_comparison, write_report  # noqa: E402
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


def _script_srcs(page: str) -> list[str]:
    """The src of every <script> of a page."""
    return re.findall(r"<script[^>]*\bsrc=\"([^\"]*)\"", page)


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
    # (rates: one precision for the column, set by the throughput's half-width)
    for text in ("120,000", "119,000", "1,980", "2,000&nbsp;±&nbsp;3", "45.0&nbsp;±&nbsp;1.2",
                 "10.1", "20.2", "80.0", "12.3", "71.0&nbsp;±&nbsp;1.2", "41.0", "3.20", "20.0"):
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
    # the half-width keeps its first significant digit (two when it is 1 or 2)
    assert report_html.fmt_value(2000.1, 3.2) == "2,000 ± 3"
    assert report_html.fmt_value(2000.1, 1.4) == "2,000.1 ± 1.4"
    assert report_html.fmt_value(120000, integer=True) == "120,000"
    assert report_html.fmt_value(54.5, integer=True) == "54.5"  # a mean of counts
    assert report_html.fmt_value(0.71, 0.012, scale=100) == "71.0 ± 1.2"
    assert report_html.fmt_value(None) == "—"
    assert report_html.fmt_value(float("nan")) == "—"
    assert report_html.fmt_value(-0.0001, decimals=2) == "0.00"  # never "-0.00"
    assert report_html.fmt_value(3148.7, 0.0) == "3,148.7"  # replications agreed: no "± 0"


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
    graph = fleet_graph.parse_fleet_graph(_small_graph())
    assert graph.columns == ["client", "balancer", "gateway", "backend"]
    n = graph.nodes
    fig, height = fleet_graph.fleet_figure(graph)
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
    graph = fleet_graph.parse_fleet_graph(raw)
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

    fig, _ = fleet_graph.fleet_figure(graph)
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
    graph = fleet_graph.parse_fleet_graph(raw)
    assert graph.ignored_nodes == 3 and graph.ignored_edges == 3
    assert graph.rate_unit == "requests"
    assert graph.gw_be_total == pytest.approx(1000)
    panel = fleet_graph.fleet_panel(report_html.RunData(pathlib.Path("."), {}, graph=raw))
    assert panel is not None and "Ignored 6 malformed" in panel.html


def _group_graph():
    """A group-level graph.json: 2 AZs, a pool of 6 gateways per AZ, backend groups
    api (12 per AZ) and auth (4 per AZ); every gateway pool calls every group."""
    azs = ("use1-az1", "use1-az2")
    nodes = [_node("client:us-east-1", "client", "internet")]
    nodes += [_node(f"lb:us-east-1:{az}", "balancer", az) for az in azs]
    nodes += [_node(f"gw:gw-{az}", "gateway", az, pool=f"gw-{az}", instances=6) for az in azs]
    nodes += [_node(f"be:{svc}:{az}", "backend", az, service=svc, instances=n)
              for svc, n in (("api", 12), ("auth", 4)) for az in azs]
    edges = [_edge("client:us-east-1", f"lb:us-east-1:{az}", "internet", 1000) for az in azs]
    edges += [_edge(f"lb:us-east-1:{az}", f"gw:gw-{az}", "same_az", 1000) for az in azs]
    for src in azs:
        for svc, requests in (("api", 300), ("auth", 200)):
            for dst in azs:
                edges.append(_edge(f"gw:gw-{src}", f"be:{svc}:{dst}",
                                   "same_az" if src == dst else "cross_az", requests))
    # The same pair twice (e.g. two routes): the report sums them.
    edges.append(_edge("gw:gw-use1-az1", "be:api:use1-az1", "same_az", 100))
    return {"level": "groups", "nodes": nodes, "edges": edges, "window_s": 10.0}


def _hover_of(fig, label):
    """The hover text of the box labelled ``label``."""
    for trace in fig.data:
        if trace.meta == "fleet-nodes" and trace.text and label in trace.text:
            return trace.hovertext[list(trace.text).index(label)]
    raise AssertionError(f"no box labelled {label!r}")


def test_group_level_graph(tmp_path):
    raw = _group_graph()
    graph = fleet_graph.parse_fleet_graph(raw)
    assert graph.level == "groups"
    # counts are instances, not boxes
    assert graph.node_counts == {"client": 1, "balancer": 2, "gateway": 12, "backend": 32}
    assert graph.aggregated == {"gateway": 2, "backend": 4}
    n = graph.nodes
    assert [n["gw:gw-use1-az1"].label, n["be:api:use1-az2"].label, n["be:auth:use1-az1"].label,
            n["lb:us-east-1:use1-az1"].label] == ["gw-use1-az1 ×6", "api ×12", "auth ×4",
                                                  "us-east-1:use1-az1"]
    # the duplicated pair is summed into one edge: (300 + 100) requests / 10 s
    same = [e for e in graph.edges if (e.source, e.target) == ("gw:gw-use1-az1",
                                                               "be:api:use1-az1")]
    assert len(same) == 1 and same[0].rate == pytest.approx(40.0)
    assert len(graph.edges) == 2 + 2 + 2 * 4
    # rates in and out of a group box are the sums of its edges
    assert n["gw:gw-use1-az1"].rate_in == pytest.approx(100.0)
    assert n["gw:gw-use1-az1"].rate_out == pytest.approx(110.0)
    assert n["be:api:use1-az1"].rate_in == pytest.approx(70.0)
    assert graph.gw_be_total == pytest.approx(210.0)
    assert graph.gw_be_cross_az == pytest.approx(100.0)

    fig, _ = fleet_graph.fleet_figure(graph)
    assert _node_markers(fig) == 1 + 2 + 2 + 4  # one box per group
    hover = _hover_of(fig, "api ×12")
    assert "<b>api</b> · 12 backends" in hover
    assert "AZ: us-east-1 / use1-az1" in hover
    assert "in: 70.0 req/s · out: 0 req/s" in hover
    assert "<b>gw-use1-az1</b> · 6 gateways" in _hover_of(fig, "gw-use1-az1 ×6")
    ticks = " ".join(fig.layout.xaxis.ticktext)
    assert "12 in 2 groups" in ticks and "32 in 4 groups" in ticks

    page = _unescape_json(_read(write_report(make_run(tmp_path, graph=raw))))
    assert "could not be rendered" not in page
    assert "api ×12" in page and "auth ×4" in page
    assert "Gateways are grouped per pool and AZ (12 → 2 boxes)." in page
    assert "Backends are grouped per service and AZ (32 → 4 boxes)." in page
    assert "graph.json lists gateway pools and backend groups" in page
    assert ("<strong>47.6 %</strong> of gateway-to-backend requests cross an AZ boundary "
            "(100.0 of 210.0 req/s).") in page


def test_group_level_graph_instances_and_level_defaults():
    raw = _small_graph()
    # "instances" on an instance-level graph: a node of several instances is a group
    raw["nodes"][5]["instances"] = 3
    raw["nodes"].append(_node("be:bad", "backend", "use1-az1", service="api", instances=0))
    graph = fleet_graph.parse_fleet_graph(raw)
    assert graph.level == "instances"
    assert graph.node_counts["backend"] == 4  # 3 + 1; the node with 0 instances is ignored
    assert graph.ignored_nodes == 1
    assert graph.nodes["be:api-use1-az1-0"].label == "api ×3"
    assert graph.nodes["be:api-use1-az2-0"].label == "api-use1-az2-0"
    assert graph.nodes["gw:gw-az1-0"].label == "gw-az1-0"
    raw["level"] = "pods"
    graph = fleet_graph.parse_fleet_graph(raw)
    assert graph.unknown_level == "pods" and graph.level == "instances"
    panel = fleet_graph.fleet_panel(report_html.RunData(pathlib.Path("."), {}, graph=raw))
    assert "Unknown level “pods”" in panel.html


def test_fleet_graph_aggregates_above_sixteen_boxes(tmp_path):
    assert fleet_graph.FLEET_AGGREGATE_ABOVE == 16
    graph = fleet_graph.parse_fleet_graph(_large_graph(backends=16, gateways=2))
    assert len([v for v in graph.nodes.values() if v.kind == "backend"]) == 16
    assert "backend" not in graph.aggregated

    # 17 backends: one box per (service, AZ), each listing its members on hover
    graph = fleet_graph.parse_fleet_graph(_large_graph(backends=17, gateways=2))
    boxes = {(v.group, v.az): v for v in graph.nodes.values() if v.kind == "backend"}
    assert len(boxes) == 4 and graph.node_counts["backend"] == 17
    assert graph.grouped_by["backend"] == "service and AZ"
    api_az1 = boxes[("api", "use1-az1")]
    assert api_az1.label == "api ×5"
    fig, _ = fleet_graph.fleet_figure(graph)
    hover = _hover_of(fig, "api ×5")
    assert "<b>api</b> · 5 backends (aggregated)" in hover
    assert "api-0, api-4, api-8, api-12<br>api-16" in hover

    # the 26 backends: aggregated, and every box keeps its text label
    graph = fleet_graph.parse_fleet_graph(_large_graph(backends=26, gateways=2))
    fig, _ = fleet_graph.fleet_figure(graph)
    backends = [t for t in fig.data if t.meta == "fleet-nodes" and t.name == "backend"][0]
    assert len(backends.x) == 4 and backends.mode == "markers+text"
    assert sorted(backends.text) == ["api ×7", "api ×7", "auth ×6", "auth ×6"]

    # the threshold counts boxes, not instances: 16 groups of 50 stay as they are,
    # 40 groups in one AZ fall back to one box per AZ, with the list cut on hover
    def groups(count):
        nodes = [_node(f"be:svc{i}:use1-az1", "backend", "use1-az1", service=f"svc{i}",
                       instances=50) for i in range(count)]
        return {"level": "groups", "nodes": nodes, "edges": []}

    graph = fleet_graph.parse_fleet_graph(groups(16))
    assert len(graph.nodes) == 16 and graph.node_counts["backend"] == 800
    graph = fleet_graph.parse_fleet_graph(groups(40))
    (box,) = graph.nodes.values()
    assert box.label == "backend ×2,000" and graph.grouped_by["backend"] == "AZ"
    hover = fleet_graph.fleet_figure(graph)[0].data[-1].hovertext[0]
    assert "<b>backend</b> · 2,000 backends (in 40 groups)" in hover
    assert "svc0 ×50, svc1 ×50, svc2 ×50, svc3 ×50" in hover
    assert "… and 8 more" in hover


def _big_group_graph(scale=1):
    """A group-level graph of 400 x ``scale`` gateways and 600 x ``scale`` backends:
    4 AZs, 2 pools of 50 per AZ, 3 services (40 + 60 + 50 per AZ)."""
    azs = [f"use1-az{i}" for i in range(1, 5)]
    nodes = [_node("client:us-east-1", "client", "internet")]
    nodes += [_node(f"lb:us-east-1:{az}", "balancer", az) for az in azs]
    pools = [_node(f"gw:gw-{az}-{p}", "gateway", az, pool=f"gw-{az}-{p}", instances=50 * scale)
             for az in azs for p in "ab"]
    groups = [_node(f"be:{svc}:{az}", "backend", az, service=svc, instances=n * scale)
              for svc, n in (("api", 40), ("auth", 60), ("search", 50)) for az in azs]
    nodes += pools + groups
    edges = [_edge("client:us-east-1", f"lb:us-east-1:{az}", "internet", 5000) for az in azs]
    edges += [_edge(f"lb:us-east-1:{g['az']}", g["id"], "same_az", 2500) for g in pools]
    edges += [_edge(g["id"], b["id"], "same_az" if g["az"] == b["az"] else "cross_az", 100)
              for g in pools for b in groups]
    return {"level": "groups", "nodes": nodes, "edges": edges, "window_s": 60.0}


def test_big_group_level_fleet_does_not_scale_with_instances(tmp_path):
    graph = fleet_graph.parse_fleet_graph(_big_group_graph())
    assert graph.node_counts["gateway"] == 400 and graph.node_counts["backend"] == 600
    assert len(graph.nodes) == 1 + 4 + 8 + 12
    assert len(graph.edges) == 4 + 8 + 8 * 12  # not 400 x 600
    fig, height = fleet_graph.fleet_figure(graph)
    ticks = " ".join(fig.layout.xaxis.ticktext)
    assert "400 in 8 groups" in ticks and "600 in 12 groups" in ticks

    def points(f):
        return sum(len(t.x) for t in f.data if t.x is not None)

    # A thousand times the instances: the same boxes, edges and plotted points, so
    # the cost of the panel depends on graph.json's size, not on the fleet's.
    big = fleet_graph.parse_fleet_graph(_big_group_graph(scale=1000))
    assert big.node_counts["backend"] == 600_000
    assert (len(big.nodes), len(big.edges)) == (len(graph.nodes), len(graph.edges))
    big_fig, big_height = fleet_graph.fleet_figure(big)
    assert (points(big_fig), big_height) == (points(fig), height)

    page = _unescape_json(_read(write_report(make_run(tmp_path, graph=_big_group_graph()))))
    assert "could not be rendered" not in page
    assert "Backends are grouped per service and AZ (600 → 12 boxes)." in page


# --------------------------------------------------------------------------
# Retries, faults and recovery panels
# --------------------------------------------------------------------------

FAULT_AT, FAULT_FOR = 30.0, 10.0
FAULT_END = FAULT_AT + FAULT_FOR
STORM_SECONDS = 60
STORM_CONFIG = f"""experiment: storm
faults:
- at_s: {FAULT_AT}
  for_s: {FAULT_FOR}
  target:
    service: api
    az: null
    region: null
    instance: null
  kind: backend_slowdown
  factor: 4.0
"""


def _storm_timeseries(path: pathlib.Path, *, after_goodput=120.0, recover_at=None,
                      retry_factor=3.0, replications=1, seconds=STORM_SECONDS):
    """Goodput 1000/s, collapsing in the fault window; after it either stays at
    ``after_goodput`` or comes back to 1000 from ``recover_at``.  Backend tries
    per call are 1 before the fault and ``retry_factor`` from the fault on
    (until the recovery)."""
    header = ["replication", "t_s", "offered", "throughput", "goodput", "in_flight", "p50_ms",
              "p99_ms", "tries", "attempts", "err_per_try_timeout", "err_backend_overflow"]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in range(replications):
            for t in range(seconds):
                if t < FAULT_AT:
                    good, factor = 1000.0, 1.0
                elif t < FAULT_END:
                    good, factor = 20.0, retry_factor
                elif recover_at is not None and t >= recover_at:
                    good, factor = 1000.0, 1.0
                else:
                    good, factor = after_goodput, retry_factor
                w.writerow([r, t, 1000, 1000, good, 50, 10, 40, 1000 * min(factor, 2.0),
                            1000 * factor, 1000 - good, 0])


#: The rules summary.json records with a verdict (sim.metrics.recovery.RECOVERY_RULES).
RULES = {"threshold": 0.9, "baseline_s": 30.0, "hold_s": 5.0, "smooth_s": 3}

#: The evidence of a metastable verdict: 20 s follow the fault, the tail is their last 10 s.
METASTABLE_EVIDENCE = {"tail_s": 10.0, "goodput_tail_rps": 120.0, "goodput_trend_rps_per_s": 0.0,
                       "backlog_trend_per_s": 2.5, "target_rps": 900.0}


def _storm_summary(name="storm", *, metastable=True, recovery_s=None, amplification=6.96,
                   after=120.0, faults=True, verdict=None, evidence=None, **overrides):
    """A summary of the storm run with the recovery record as sim.metrics writes it.

    ``verdict`` defaults to metastable or recovered (from ``metastable``);
    ``evidence`` replaces the tail fields of a verdict other than recovered.
    """
    s = _summary(experiment=name, description="A retry storm.", replications=1,
                 simulated_s=float(STORM_SECONDS), warmup_s=10.0)
    del s["ci95"]
    s["requests"]["failed"] = {"per_try_timeout": 16093, "backend_overflow": 102087}
    s["latency_ms"]["p99"] = 94.9 if metastable else 1515.8
    s["backend"]["api"]["wasted_work_s"] = 2863.6
    s["gateway"] = {
        "gw-az1": {"requests": 198293, "utilization": 0.0186, "route_timeouts": 3,
                   "per_try_timeouts": 73569, "retries": 355959,
                   "overflow_max_requests": 11, "retry_overflow": 160787},
        "gw-az2": {"requests": 198291, "utilization": 0.0186, "route_timeouts": 4,
                   "per_try_timeouts": 73058, "retries": 355987,
                   "overflow_max_requests": 22, "retry_overflow": 160706},
    }
    s["client"] = {"calls": 179391, "tries": 416625, "retries": 237321, "timeouts": 42,
                   "retries_denied": 5}
    s["retries"] = {"amplification": amplification, "gateway_amplification": 2.79,
                    "gateway_retries": 711946,
                    "by_reason": {"backend_overflow": 613819, "per_try_timeout": 98127},
                    "overflow": {"max_requests": 33, "retries": 321493}}
    verdict = verdict or ("metastable" if metastable else "recovered")
    s["recovery"] = {"verdict": verdict, "fault_start_s": FAULT_AT, "fault_end_s": FAULT_END,
                     "goodput_before_rps": 1000.0, "goodput_during_rps": 20.0,
                     "goodput_after_rps": after, "recovered": verdict == "recovered",
                     "recovery_s": recovery_s, "metastable": verdict == "metastable",
                     "baseline_success_ratio": 1.0, "baseline_degraded": False,
                     "tail_s": None, "goodput_tail_rps": None, "goodput_trend_rps_per_s": None,
                     "backlog_trend_per_s": None, "target_rps": 900.0}
    if verdict != "recovered":
        s["recovery"].update(evidence or METASTABLE_EVIDENCE)
    s["recovery_rules"] = dict(RULES)
    if faults:
        s["faults"] = [{"kind": "backend_slowdown", "at_s": FAULT_AT, "for_s": FAULT_FOR,
                        "targets": ["api-use1-az1-0", "api-use1-az2-0"]}]
    s.update(overrides)
    return s


def _old_format(summary):
    """``summary`` as fleetsim wrote it before verdicts and recorded rules: the booleans only."""
    summary = json.loads(json.dumps(summary))
    summary.pop("recovery_rules", None)
    for key in ("verdict", "by_replication", "baseline_success_ratio", "baseline_degraded",
                "tail_s", "goodput_tail_rps", "goodput_trend_rps_per_s", "backlog_trend_per_s",
                "target_rps"):
        summary["recovery"].pop(key, None)
    return summary


def make_storm_run(path: pathlib.Path, summary=None, *, config=STORM_CONFIG, **ts_kwargs):
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps(summary or _storm_summary()))
    _storm_timeseries(path / "timeseries.csv", **ts_kwargs)
    if config is not None:
        (path / "config.resolved.yaml").write_text(config)
    return path


def _figures(page: str) -> dict[str, str]:
    """Each plotly figure's script, by div id."""
    out = {}
    for chunk in page.split("Plotly.newPlot(")[1:]:
        m = re.match(r'\s*"([^"]+)"', chunk)
        if m:
            out[m.group(1)] = chunk.split("</script>")[0]
    return out


FAULT_SHAPE = '"fillcolor":"#d55e00","layer":"below","line":{"width":0},"opacity":0.11,' \
              '"type":"rect","x0":30.0,"x1":40.0'


def test_resilience_panels_render(tmp_path):
    run = make_storm_run(tmp_path / "run")
    page = _read(write_report(run))
    assert "could not be rendered" not in page
    assert page.count(_plotly_marker()) == 1
    for anchor in ("faults", "recovery", "retries"):
        assert f'id="{anchor}"' in page, anchor
    assert page.index('id="kpis"') < page.index('id="faults"') < page.index('id="recovery"') \
        < page.index('id="retries"') < page.index('id="latency"')

    # Faults: the timeline table, with the configured target and strength
    faults = page[page.index('id="faults"'):page.index('id="recovery"')]
    for text in ("backend slowdown", "30.0", "40.0", "10.0", "service api", "service time × 4",
                 "2: api-use1-az1-0, api-use1-az2-0"):
        assert text in faults, text

    # Recovery: goodput before/during/after, verdict in plain words, rule, chart
    recovery = page[page.index('id="recovery"'):page.index('id="retries"')]
    assert '<p class="verdict metastable">' in recovery
    assert ("Metastable:</strong> goodput 120.0 req/s at the end against a target of 900.0 "
            "req/s, trend ~0 req/s per s, backlog growing (+2.50 calls in flight per s). "
            "Goodput was still degraded long after the slowdown ended (at 40.0 s)") in recovery
    assert "the run&#x27;s last 10 s" in recovery
    for text in ("1,000.0", "20.0", "120.0", "2 %", "12 %", "did not recover",
                 "Goodput, last 10 s", "900.0", "90 % of pre-fault", "~0", "+2.50",
                 "growing", "100 %"):
        assert text in recovery, text
    assert "already failing" not in recovery.split('class="note"')[0]
    # the rules come from the summary's recovery_rules, in words
    assert "smoothed over 3 s" in recovery and "hold there for 5 s" in recovery
    assert "over the 30 s before the first fault" in recovery
    assert "<em>not recovered within the run</em>" in recovery
    assert 'id="fig-recovery"' in recovery
    fig = _unescape_json(_figures(page)["fig-recovery"])
    assert "target: 90 % of pre-fault" in fig and '"name":"goodput, 3 s mean"' in fig
    # the tail's trend: flat at 120 req/s over seconds 50..59
    assert '"name":"trend over the last 10 s"' in fig
    assert '"x":[50.0,59.0],"y":[120.0,120.0]' in fig

    # Retries: amplification, tries per call, by reason, breakers, timeouts, wasted work
    retries = page[page.index('id="retries"'):page.index('id="backend"')]
    for text in ("6.96", "2.79", "2.32",  # 416,625 / 179,391 client tries per call
                 "179,391", "237,321", "711,946", "613,819", "98,127", "86.2 %", "13.8 %",
                 "2,863.6", "worker-s"):
        assert text in retries, text
    cells = re.findall(r"<td>(.*?)</td>", retries)
    for text in ("5",  # retries denied
                 "33", "321,493", "11", "22", "160,787", "160,706",  # breakers: total, pools
                 "146,627", "7", "42"):  # per-try (73,569 + 73,058), route, client timeouts
        assert text in cells, text
    assert "backend overflow" in retries and "per try timeout" in retries
    assert 'id="fig-amplification"' in retries
    fig = _unescape_json(_figures(page)["fig-amplification"])
    assert "attempts / offered" in fig and "tries / offered" in fig


def test_amplification_series_from_timeseries(tmp_path):
    run = make_storm_run(tmp_path / "run", replications=2)
    data = report_html.load_run(run)
    from sim.report import resilience

    attempts, tries = resilience.amplification_per_s(data.timeseries)
    assert attempts[0] == pytest.approx(1.0) and attempts[int(FAULT_AT)] == pytest.approx(3.0)
    assert tries[int(FAULT_AT)] == pytest.approx(2.0)
    assert resilience.ratio_over(data, "attempts", "offered", FAULT_END) == pytest.approx(3.0)
    assert resilience.trailing_mean([3, None, 6, 9], 2) == [3, 3, 6, 7.5]


def test_fault_windows_shaded_on_every_time_chart(tmp_path):
    run = make_storm_run(tmp_path / "run")
    figures = _figures(_read(write_report(run)))
    time_charts = ("fig-latency", "fig-rates", "fig-inflight", "fig-recovery",
                   "fig-amplification")
    for div in time_charts:
        fig = _unescape_json(figures[div])
        assert FAULT_SHAPE in fig, div
        assert '"text":"backend slowdown"' in fig, div
        assert '"text":"warm-up"' in fig, div  # both kinds of shading, different colours
        assert '"fillcolor":"#9aa5b1"' in fig, div
    # the two-row rates chart shades both rows, labelled once
    rates = _unescape_json(figures["fig-rates"])
    assert rates.count(FAULT_SHAPE) == 2
    assert rates.count('"text":"backend slowdown"') == 1


def test_resilience_panels_skipped_for_old_runs(tmp_path):
    run = make_run(tmp_path)  # no retries, client, recovery or faults; old CSV columns
    page = _read(write_report(run))
    assert "could not be rendered" not in page
    for anchor in ("faults", "recovery", "retries", "fig-recovery", "fig-amplification"):
        assert f'id="{anchor}"' not in page, anchor
    assert "#d55e00\",\"layer\"" not in _unescape_json(page)  # no fault shading
    assert "Retries and amplification" not in page


def test_retries_panel_from_timeseries_only(tmp_path):
    summary = _storm_summary(faults=False)
    for key in ("retries", "client", "recovery"):
        del summary[key]
    run = make_storm_run(tmp_path / "run", summary, config=None)
    page = _read(write_report(run))
    assert 'id="retries"' in page and 'id="fig-amplification"' in page
    assert 'id="recovery"' not in page and 'id="faults"' not in page
    assert "could not be rendered" not in page


def test_recovered_run_states_recovery_time(tmp_path):
    summary = _storm_summary(metastable=False, recovery_s=8.0, after=900.0)
    run = make_storm_run(tmp_path / "run", summary, recover_at=FAULT_END + 8)
    page = _read(write_report(run))
    recovery = page[page.index('id="recovery"'):page.index('id="retries"')]
    assert '<p class="verdict recovered">' in recovery
    assert "Recovered in 8.0 s.</strong> Goodput came back to 90 % of its pre-fault level " \
        "8.0 s after the slowdown ended (at 40.0 s) and stayed there." in recovery
    assert "s after the fault ended" in recovery
    assert "trend" not in recovery.split('class="note"')[0]  # no evidence for a recovery
    fig = _unescape_json(_figures(page)["fig-recovery"])
    assert '"text":"recovered"' in fig and '"x0":48.0' in fig
    assert "trend over the last" not in fig


def test_rules_are_read_from_the_summary(tmp_path):
    summary = _storm_summary(metastable=False, recovery_s=8.0, after=900.0)
    summary["recovery_rules"] = {"threshold": 0.8, "baseline_s": 20.0, "hold_s": 7.0,
                                 "smooth_s": 4}
    summary["recovery"]["target_rps"] = 800.0
    page = _read(write_report(make_storm_run(tmp_path / "run", summary,
                                             recover_at=FAULT_END + 8)))
    recovery = _panel(page, "recovery")
    assert "came back to 80 % of its pre-fault level" in recovery
    for text in ("smoothed over 4 s", "hold there for 7 s", "over the 20 s before the first fault",
                 "fewer than 80 % of the calls"):
        assert text in recovery, text
    for text in ("90 % of its", "90 % of the calls", "over 3 s", "for 5 s", "the 30 s"):
        assert text not in recovery, text
    fig = _unescape_json(_figures(page)["fig-recovery"])
    assert "target: 80 % of pre-fault" in fig and '"name":"goodput, 4 s mean"' in fig
    assert '"y0":800.0' in fig


def _recovery_of(summary):
    from sim.report import resilience

    return resilience.parse_recovery(summary)


def test_not_recovered_within_run(tmp_path):
    climbing = {"tail_s": 10.0, "goodput_tail_rps": 600.0, "goodput_trend_rps_per_s": 25.0,
                "backlog_trend_per_s": -3.0, "target_rps": 900.0}
    summary = _storm_summary(verdict="not_recovered_within_run", evidence=climbing)
    run = make_storm_run(tmp_path / "run", summary)
    page = _read(write_report(run))
    recovery = _panel(page, "recovery")
    assert '<p class="verdict not_recovered_within_run">' in recovery
    assert ("Not recovered within the run:</strong> still climbing (+25.0 req/s per s) — run "
            "longer. Goodput had not yet come back to 90 % of its pre-fault level when the run "
            "ended, 20 s after the slowdown ended (at 40.0 s), but it was not stuck either") \
        in recovery
    assert ("Over its last 10 s goodput averaged 600.0 req/s against a target of 900.0 req/s "
            "(trend +25.0 req/s per s, backlog draining (−3.00 calls in flight per s))") in recovery
    assert "— (not within the run)" in recovery and "Metastable" not in recovery
    fig = _unescape_json(_figures(page)["fig-recovery"])
    assert '"x":[50.0,59.0],"y":[487.5,712.5]' in fig  # 600 ± 25 x 4.5 s

    # each reason the run is inconclusive, in words
    def phrase(evidence, **overrides):
        from sim.report import resilience

        s = _storm_summary(verdict="not_recovered_within_run", evidence=evidence, **overrides)
        return resilience.verdict_phrase(_recovery_of(s), 1, "the slowdown")

    assert phrase(climbing) == ("not recovered within the run: still climbing "
                                "(+25.0 req/s per s) — run longer")
    assert phrase(dict(climbing, goodput_tail_rps=950.0)) == (
        "not recovered within the run: goodput 950.0 req/s at the end was back at the target "
        "of 900.0 req/s but had not yet held it for 5 s — run longer")
    assert phrase(dict(climbing, goodput_trend_rps_per_s=-1.0)) == (
        "not recovered within the run: backlog still draining (−3.00 calls in flight per s) "
        "— run longer")
    assert phrase(climbing, simulated_s=50.0) == (
        "not recovered within the run: only 10 s of the run followed the slowdown, too little "
        "to tell — run longer")
    assert phrase(dict(climbing, goodput_trend_rps_per_s=0.0, backlog_trend_per_s=None)) == (
        "not recovered within the run: recovery still under way when the run ended — run longer")


def _mixed_summary(**overrides):
    summary = _storm_summary(replications=3, **overrides)
    summary["recovery"].update(
        verdict="mixed", recovered=1 / 3, metastable=1 / 3, recovery_s=None,
        by_replication=[
            {"verdict": "recovered", "recovery_s": 8.0, "baseline_degraded": False},
            {"verdict": "metastable", "recovery_s": None, "baseline_degraded": False},
            {"verdict": "not_recovered_within_run", "recovery_s": None,
             "baseline_degraded": False}])
    for key in METASTABLE_EVIDENCE:  # the replications' means are not all numbers
        summary["recovery"][key] = None
    return summary


def test_recovery_disagreeing_replications(tmp_path):
    run = make_storm_run(tmp_path / "run", _mixed_summary())
    page = _read(write_report(run))
    recovery = _panel(page, "recovery")
    assert '<p class="verdict mixed">' in recovery
    assert ("Mixed:</strong> the replications disagree after the slowdown ended (at 40.0 s): "
            "replication 1 recovered in 8.0 s, replication 2 metastable, replication 3 not "
            "recovered within the run.") in recovery
    # each replication's verdict and time, not a fraction and a null mean
    assert "of 3 replications" not in recovery and "mean recovery time" not in recovery
    table = recovery[recovery.index('class="kpi replications"'):]
    table = table[:table.index("</table>")]
    rows = [re.findall(r"<td>(.*?)</td>", row) for row in table.split("<tr>")[2:]]
    assert [re.sub(r"<[^>]+>", "", cell) for row in rows for cell in row[:3]] == [
        "1", "recovered", "8.0", "2", "metastable", "—", "3", "not recovered within the run", "—"]
    assert "— (by replication, below)" in recovery


def test_baseline_already_failing(tmp_path):
    summary = _storm_summary()
    summary["recovery"].update(baseline_success_ratio=0.853, baseline_degraded=True)
    page = _read(write_report(make_storm_run(tmp_path / "run", summary)))
    recovery = _panel(page, "recovery")
    assert ("⚠ The fleet was already failing before the fault (85 % of calls succeeded): read "
            "the verdict against that.") in recovery
    assert "already failing" in recovery.split("<table")[2]  # in the outcome table too

    # a ratio that rounds to the threshold keeps the decimals that show it is below
    rec = _recovery_of(dict(summary, recovery=dict(summary["recovery"],
                                                   baseline_success_ratio=0.8996)))
    from sim.report import resilience

    assert resilience.baseline_flag(rec) == ("the fleet was already failing before the fault "
                                             "(89.96 % of calls succeeded)")
    # only some replications were failing: they are named
    mixed = _mixed_summary()
    mixed["recovery"]["by_replication"][1]["baseline_degraded"] = True
    mixed["recovery"].update(baseline_success_ratio=0.93, baseline_degraded=1 / 3)
    assert resilience.baseline_flag(_recovery_of(mixed), 3) == (
        "in replication 2 the fleet was already failing before the fault (93 % of calls "
        "succeeded on average over all replications)")
    # a healthy baseline raises no flag
    assert resilience.baseline_flag(_recovery_of(_storm_summary())) == ""


def test_old_summary_without_verdict(tmp_path):
    """A summary from before verdicts (and recorded rules) renders from its booleans."""
    run = make_storm_run(tmp_path / "a", _old_format(_storm_summary()))
    page = _read(write_report(run))
    assert "could not be rendered" not in page
    recovery = _panel(page, "recovery")
    assert '<p class="verdict metastable">' in recovery
    assert ("Metastable.</strong> Goodput did not come back to its recovery target after the "
            "slowdown ended (at 40.0 s); it stayed collapsed until the end of the run (12 % of "
            "the pre-fault level at the end).") in recovery
    assert "does not record the rules its recovery verdict was judged by" in recovery
    assert "90 %" not in recovery  # not restated from memory
    fig = _unescape_json(_figures(page)["fig-recovery"])
    assert "target" not in fig and "trend over" not in fig and '"name":"goodput"' in fig

    recovered = _old_format(_storm_summary(metastable=False, recovery_s=8.0, after=900.0))
    page = _read(write_report(make_storm_run(tmp_path / "b", recovered,
                                             recover_at=FAULT_END + 8)))
    assert "Recovered in 8.0 s.</strong> Goodput came back to its recovery target 8.0 s after " \
        "the slowdown ended" in _panel(page, "recovery")

    # replications that disagreed: the fraction is all an old summary has
    summary = _old_format(_storm_summary(replications=3))
    summary["recovery"].update(recovered=2 / 3, metastable=1 / 3, recovery_s=None)
    page = _read(write_report(make_storm_run(tmp_path / "c", summary)))
    recovery = _panel(page, "recovery")
    assert "Mixed." in recovery
    assert "mixed: recovered in 2 of 3 replications" in recovery


def test_faults_from_config_and_recovery_fallback(tmp_path):
    # summary.json without "faults": the resolved config gives the timeline
    run = make_storm_run(tmp_path / "a", _storm_summary(faults=False))
    data = report_html.load_run(run)
    assert [(f.kind, f.start_s, f.end_s, f.target, f.effect) for f in data.faults] == [
        ("backend_slowdown", FAULT_AT, FAULT_END, "service api", "service time × 4")]
    assert FAULT_SHAPE in _unescape_json(_read(write_report(run)))

    # neither: the recovery's fault span, as one window of kind "fault"
    run = make_storm_run(tmp_path / "b", _storm_summary(faults=False), config=None)
    data = report_html.load_run(run)
    assert [(f.kind, f.start_s, f.end_s) for f in data.faults] == [("fault", 30.0, 40.0)]

    # an unreadable config does not break the report
    run = make_storm_run(tmp_path / "c", _storm_summary(faults=False), config="faults: [: bad")
    page = _read(write_report(run))
    assert "could not be rendered" not in page and 'id="faults"' in page


def test_several_faults_and_escaping(tmp_path):
    summary = _storm_summary()
    summary["faults"] = [
        {"kind": "error_burst", "at_s": 32.0, "for_s": 13.0,
         "targets": ["<img src=x onerror=alert(1)>"], "error_probability": 0.3},
        {"kind": "<b>evil</b>", "at_s": FAULT_AT, "for_s": FAULT_FOR, "targets": []},
    ]
    run = make_storm_run(tmp_path / "run", summary, config=None)
    page = _read(write_report(run))
    assert "could not be rendered" not in page
    assert "<img src=x" not in page and "<b>evil</b>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "error probability 30 %" in page
    faults = page[page.index('id="faults"'):page.index('id="recovery"')]
    assert faults.index("&lt;b&gt;evil") < faults.index("error burst")  # sorted by start
    fig = _unescape_json(_figures(page)["fig-latency"])
    assert '"x0":32.0,"x1":45.0' in fig
    assert "<b>evil</b>" not in fig
    # overlapping windows: the second label moves down a line
    assert '"yshift":-14' in fig
    # "the last fault" when the kinds differ
    assert "after the last fault ended" in page


# --------------------------------------------------------------------------
# Comparison of variants
# --------------------------------------------------------------------------

def make_comparison(tmp_path: pathlib.Path, variants=None, *, description="Retry policies.",
                    reports=True) -> pathlib.Path:
    root = tmp_path / "cmp"
    root.mkdir()
    if variants is None:
        variants = [
            ("naive", _storm_summary("storm", amplification=6.96, after=120.0),
             {"after_goodput": 120.0, "retry_factor": 9.0},
             {"workload.client.max_attempts": 3}),
            ("budget", _storm_summary("storm", metastable=False, recovery_s=8.0, after=950.0,
                                      amplification=1.43),
             {"recover_at": FAULT_END + 8, "retry_factor": 1.5},
             {"topology.gateways.gw.cluster.circuit_breakers.retry_budget":
              {"budget_percent": 20}}),
        ]
    entries = []
    for name, summary, ts_kwargs, overrides in variants:
        vdir = make_storm_run(root / "variants" / name, summary, **ts_kwargs)
        if reports:
            write_report(vdir)
        entries.append({"name": name, "dir": f"variants/{name}", "overrides": overrides})
    (root / "comparison.json").write_text(json.dumps({
        "experiment": "retry_storm", "description": description, "seed": 7,
        "replications": 1, "variants": entries}))
    return root


def _row(page: str, name: str) -> str:
    """The summary-table row of one variant."""
    table = page[page.index('class="kpi compare"'):]
    table = table[:table.index("</table>")]
    for row in table.split("<tr>"):
        if f"<strong>{name}</strong>" in row:
            return row
    raise AssertionError(f"no row for {name}")


def test_comparison_report(tmp_path):
    root = make_comparison(tmp_path)
    out = write_comparison(root)
    assert out == root / "report.html"
    assert not (root / "report.html.tmp").exists()
    page = _read(out)
    assert page.startswith("<!DOCTYPE html>")
    # plotly.js is not inlined: the page loads the folder's one shared copy
    assert page.count(_plotly_marker()) == 0
    assert _script_srcs(page) == ["plotly.min.js"]
    assert _plotly_marker() in _read(root / "plotly.min.js")
    assert "could not be rendered" not in page
    assert "<h1>retry_storm</h1>" in page and "Retry policies." in page

    # headline generated from the data, at the top
    head = page[page.index('class="headline"'):page.index("</header>")]
    assert "<strong>naive</strong>: metastable: goodput 120.0 req/s at the end against a " \
           "target of 900.0 req/s, trend ~0 req/s per s, backlog growing (+2.50 calls in " \
           "flight per s); 9.0 backend tries per call after the fault" in head
    assert "<strong>budget</strong>: recovered in 8.0 s after the slowdown ended " \
           "(1.2 backend tries per call after the fault)" in head
    assert "the metastable variant sent 9.0 backend tries per client call; those that " \
           "recovered sent 1.2" in head
    assert "already failing" not in head
    assert page.index('class="headline"') < page.index('id="summary"')

    # one row per variant, in order, with the values of its summary
    assert page.index("<strong>naive</strong>", page.index('id="summary"')) < \
        page.index("<strong>budget</strong>", page.index('id="summary"'))
    naive, budget = _row(page, "naive"), _row(page, "budget")
    assert '<span class="badge metastable">metastable</span>' in naive
    assert "not recovered" in naive
    for text in ("1,000.0", "20.0", "2 %", "120.0", "12 %", "6.96", "9.00", "2.32", "94.9",
                 "118,180", "backend overflow 102,087", "per try timeout 16,093"):
        assert text in naive, text
    assert "recovered" in budget
    # after the fault: 8 s at 1.5 tries per call, then 12 s at 1.0 -> 1.2
    for text in ("8.0", "950.0", "95 %", "100 %", "1.43", "1.20", "1,515.8"):
        assert text in budget, text

    # relative links to each variant's own report
    for name in ("naive", "budget"):
        assert f'href="variants/{name}/report.html"' in page
        assert (root / "variants" / name / "report.html").is_file()
    assert "(not written)" not in page

    # charts: goodput and amplification overlaid, offered vs attempts per variant
    figures = {k: _unescape_json(v) for k, v in _figures(page).items()}
    assert set(figures) == {"fig-cmp-goodput", "fig-cmp-amplification", "fig-cmp-load"}
    for div, fig in figures.items():
        assert FAULT_SHAPE in fig, div
        assert '"text":"backend slowdown"' in fig, div
    for name in ("naive", "budget"):
        assert f'"name":"{name}"' in figures["fig-cmp-goodput"]
        assert f'"name":"{name}"' in figures["fig-cmp-amplification"]
        assert f'"name":"{name}: backend attempts"' in figures["fig-cmp-load"]
    assert figures["fig-cmp-load"].count(FAULT_SHAPE) == 2  # one per variant row
    assert "90 % of pre-fault goodput" in figures["fig-cmp-goodput"]
    # overrides listed
    assert "workload.client.max_attempts" in page and "budget_percent" in page


def test_comparison_shows_each_verdict(tmp_path):
    climbing = {"tail_s": 10.0, "goodput_tail_rps": 600.0, "goodput_trend_rps_per_s": 25.0,
                "backlog_trend_per_s": -3.0, "target_rps": 900.0}
    degraded = _storm_summary()
    degraded["recovery"].update(baseline_success_ratio=0.853, baseline_degraded=True)
    variants = [
        ("climbing", _storm_summary(verdict="not_recovered_within_run", evidence=climbing),
         {}, {}),
        ("split", _mixed_summary(), {"replications": 3}, {}),
        ("overloaded", degraded, {}, {}),
        ("old", _old_format(_storm_summary()), {}, {}),
    ]
    page = _read(write_comparison(make_comparison(tmp_path, variants)))
    assert "could not be rendered" not in page
    head = page[page.index('class="headline"'):page.index("</header>")]
    assert '<span class="v-not_recovered_within_run"><strong>climbing</strong>: not recovered ' \
           "within the run: still climbing (+25.0 req/s per s) — run longer; 3.0 backend " \
           "tries per call after the fault</span>" in head
    assert '<span class="v-mixed"><strong>split</strong>: mixed: replication 1 recovered in ' \
           "8.0 s, replication 2 metastable, replication 3 not recovered within the run; " in head
    assert "<strong>overloaded</strong>: metastable: goodput 120.0 req/s at the end against a " \
           "target of 900.0 req/s, trend ~0 req/s per s, backlog growing (+2.50 calls in " \
           "flight per s); 3.0 backend tries per call after the fault; the fleet was already " \
           "failing before the fault (85 % of calls succeeded)" in head
    # a summary from before verdicts: from the booleans, with the goodput at the end
    assert "<strong>old</strong>: metastable (goodput 12 % of baseline at the end, 3.0 " \
           "backend tries per call after the fault)" in head
    assert "2 of 3" not in head and "1 of 3" not in head

    climbing_row = _row(page, "climbing")
    assert '<span class="badge not_recovered_within_run">not recovered within the run</span>' \
        in climbing_row
    assert "not yet" in climbing_row and "run longer" in climbing_row
    split = _row(page, "split")
    assert '<span class="badge mixed">mixed</span>' in split
    for text in ("replication 1: recovered in 8.0 s", "replication 2: metastable",
                 "replication 3: not recovered within the run", "replication 1: 8.0"):
        assert text in split, text
    assert "metastable in" not in split  # no fraction
    overloaded = _row(page, "overloaded")
    assert '<span class="badge metastable">metastable</span>' in overloaded
    assert "already failing before the fault</span>" in overloaded
    assert "85 % of calls succeeded" in overloaded
    assert '<span class="badge metastable">metastable</span>' in _row(page, "old")
    # the rules, from the summaries that record them
    summary = _panel(page, "summary")
    assert "smoothed over 3 s" in summary and "hold there for 5 s" in summary
    assert "do not all record the same rules" in summary  # the old variant records none
    assert "90 % of pre-fault goodput" in _unescape_json(_figures(page)["fig-cmp-goodput"])


def test_comparison_of_old_summaries(tmp_path):
    """Summaries from before verdicts and recorded rules: the booleans, no threshold line."""
    variants = [
        ("naive", _old_format(_storm_summary()), {}, {}),
        ("budget", _old_format(_storm_summary(metastable=False, recovery_s=8.0, after=950.0)),
         {"recover_at": FAULT_END + 8}, {}),
    ]
    page = _read(write_comparison(make_comparison(tmp_path, variants)))
    assert "could not be rendered" not in page
    head = page[page.index('class="headline"'):page.index("</header>")]
    assert "<strong>naive</strong>: metastable (goodput 12 % of baseline at the end" in head
    assert "<strong>budget</strong>: recovered in 8.0 s after the slowdown ended" in head
    assert "does not record the rules" in _panel(page, "summary")
    assert "pre-fault goodput" not in _unescape_json(_figures(page)["fig-cmp-goodput"])


def test_comparison_escaping(tmp_path):
    evil = "<script>alert(1)</script>"
    variants = [("<b>x</b>", _storm_summary(evil), {}, {"a.<i>b</i>": "<img src=y>"})]
    root = make_comparison(tmp_path, variants, description=evil)
    page = _read(write_comparison(root))
    assert "<script>alert(1)" not in page
    assert "<b>x</b>" not in page and "<i>b</i>" not in page and "<img src=y>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<strong>&lt;b&gt;x&lt;/b&gt;</strong>" in page
    assert 'href="variants/%3Cb%3Ex%3C/b%3E/report.html"' in page
    assert "<b>x</b>" not in _unescape_json(page)  # nor in the figures' trace names


def test_comparison_tolerates_missing_and_unsafe_variants(tmp_path):
    root = make_comparison(tmp_path, reports=False)
    meta = json.loads((root / "comparison.json").read_text())
    meta["variants"][0]["dir"] = "../../../etc"  # stays inside the folder
    meta["variants"].append({"name": "ghost", "dir": "variants/ghost", "overrides": {}})
    (root / "comparison.json").write_text(json.dumps(meta))
    page = _read(write_comparison(root))
    assert 'href="variants/naive/report.html"' in page  # the unsafe dir was replaced
    assert "../../../etc" not in page
    assert "(not written)" in page  # no variant reports were written
    ghost = _row(page, "ghost")
    assert "unreadable" in ghost and "run summary not found" in ghost
    assert "<strong>ghost</strong>: could not be read" in page
    assert page.count(_plotly_marker()) == 0 and _script_srcs(page) == ["plotly.min.js"]
    # the readable variants' pages were written, sharing the one plotly.min.js
    for name in ("naive", "budget"):
        variant = _read(root / "variants" / name / "report.html")
        assert _script_srcs(variant) == ["../../plotly.min.js"]


def test_comparison_without_faults(tmp_path):
    plain = _storm_summary(faults=False)
    del plain["recovery"]
    root = make_comparison(tmp_path, [("base", plain, {}, {})])
    page = _read(write_comparison(root))
    assert "<strong>base</strong>: no fault (goodput 1,980.5 req/s)" in page
    assert "could not be rendered" not in page


def test_missing_comparison_raises(tmp_path):
    with pytest.raises(FileNotFoundError) as exc:
        write_comparison(tmp_path)
    assert str(tmp_path / "comparison.json") in str(exc.value)
    assert not (tmp_path / "report.html").exists()


# --------------------------------------------------------------------------
# Host health: outlier detection, health checks, panic, connection pools
# --------------------------------------------------------------------------

HEALTH_CONFIG = STORM_CONFIG + """topology:
  gateways:
    gw-az1:
      cluster:
        outlier_detection: {consecutive_5xx: 5, max_ejection_percent: 10,
                            base_ejection_time_s: 30.0, interval_s: 10.0,
                            always_eject_one_host: false}
        health_check: {interval_s: 1.0, timeout_s: 0.5, unhealthy_threshold: 2,
                       healthy_threshold: 2}
        common_lb_config: {healthy_panic_threshold: 50.0}
    gw-az2:
      cluster:
        outlier_detection: null
        health_check: {interval_s: 1.0, timeout_s: 0.5, unhealthy_threshold: 2,
                       healthy_threshold: 2}
        common_lb_config: {healthy_panic_threshold: 50.0}
"""

POOL_COUNTERS = {"gw-az1": {"connects": 181, "connect_timeouts": 7, "cx_overflow": 12,
                            "pending_overflow": 3},
                 "gw-az2": {"connects": 140, "connect_timeouts": 0, "cx_overflow": 0,
                            "pending_overflow": 4}}


def _health_summary(*, ejections=0, overflow=71, probes=2879, pools=True):
    s = _storm_summary()
    s["outlier"] = {"ejections": ejections,
                    "by_reason": {"consecutive_5xx": ejections} if ejections else {},
                    "detected": {"consecutive_5xx": 34, "consecutive_gateway_failure": 35,
                                 "success_rate": 1, "failure_percentage": 2},
                    "overflow": overflow}
    s["health_checks"] = {"probes": probes, "probe_rate_per_s": probes / 50,
                          "failures": 120, "timeouts": 9}
    if pools:
        for pool, counters in POOL_COUNTERS.items():
            s["gateway"][pool].update(counters)
        s["retries"]["overflow"].update(pending=7, connections=12)
    return s


def _add_columns(path: pathlib.Path, columns: dict) -> None:
    """Append columns to a timeseries.csv: ``{name: f(t)}``."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    rows[0] += list(columns)
    for row in rows[1:]:
        t = float(row[1])
        row += [f(t) for f in columns.values()]
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)


def _in_fault(t: float) -> bool:
    return FAULT_AT <= t < FAULT_END


HOST_COLUMNS = {
    "healthy_hosts": lambda t: 20 if _in_fault(t) else 24,
    "ejected_hosts": lambda t: 2 if _in_fault(t) else 0,
    "hc_failed_hosts": lambda t: 4 if _in_fault(t) else 0,
    "panic_clusters": lambda t: 0,
    "health_check_probes": lambda t: 24,
}


def make_health_run(path: pathlib.Path, summary=None, columns=None, config=HEALTH_CONFIG):
    run = make_storm_run(path, summary or _health_summary(), config=config)
    _add_columns(run / "timeseries.csv", HOST_COLUMNS if columns is None else columns)
    return run


def _panel(page: str, anchor: str) -> str:
    start = page.index(f'id="{anchor}"')
    end = page.find("</section>", start)
    return page[start:end]


def test_host_health_panel(tmp_path):
    page = _read(write_report(make_health_run(tmp_path / "run")))
    assert "could not be rendered" not in page
    assert page.index('id="retries"') < page.index('id="health"') < page.index('id="backend"')
    health = _panel(page, "health")
    # configured settings per pool
    for text in ("consecutive 5xx 5 · max ejection 10 % · base ejection 30 s",
                 "every 1 s · timeout 0.5 s · unhealthy after 2 · healthy after 2", "50 %"):
        assert text in health, text
    # ejections: detected and enforced by reason, overflow, and why none was ejected
    for text in ("consecutive 5xx", "consecutive gateway failure", "success rate",
                 "failure percentage", "ejections_overflow"):
        assert text in health, text
    cells = re.findall(r"<td>(.*?)</td>", health)
    for text in ("34", "35", "71", "<strong>72</strong>", "<strong>0</strong>"):
        assert text in cells, text
    assert "No host was ejected: 71 ejections were refused by max_ejection_percent" in health
    assert "at least 10 hosts for one ejection" in health
    # health-check load
    for text in ("2,879", "57.6", "probes/s", "120", "4.2 % of probes", "9"):
        assert text in health, text
    # connection pools, per pool and in all
    for text in ("181", "140", "<strong>321</strong>", "<strong>12</strong>",
                 "<strong>7</strong>"):  # totals: connect timeouts 7 + 0, pending 3 + 4
        assert text in cells, text
    for text in ("Connect timeouts", "Connection overflow", "Pending overflow"):
        assert text in health, text
    # the chart: host lines and probes, shaded like the other time charts; no panic row
    fig = _unescape_json(_figures(page)["fig-host-health"])
    for name in ("healthy (in use)", "ejected", "failing health checks", "probes"):
        assert f'"name":"{name}"' in fig, name
    assert "clusters in panic" not in fig
    assert "No cluster entered panic mode." in health
    assert '"text":"warm-up"' in fig and '"text":"backend slowdown"' in fig
    assert fig.count(FAULT_SHAPE) == 2  # both rows shaded, labelled once
    assert fig.count('"text":"backend slowdown"') == 1
    assert "Peak failing health checks: 4.0 at 30.0 s." in health
    # the pool counters are not repeated under Gateways, but the breakers list them
    gateways = _panel(page, "gateway")
    assert "Connection pools" not in gateways and "Pending overflow" not in gateways
    retries = _panel(page, "retries")
    assert "max_pending_requests" in retries and "max_connections" in retries
    assert "pending_overflow" in retries and "cx_overflow" in retries


def test_host_health_panic_and_ejections(tmp_path):
    columns = dict(HOST_COLUMNS, panic_clusters=lambda t: 1.5 if _in_fault(t) else 0)
    summary = _health_summary(ejections=6, overflow=0)
    page = _read(write_report(make_health_run(tmp_path / "run", summary, columns)))
    health = _panel(page, "health")
    assert "No host was ejected" not in health and "refused by max_ejection_percent" not in health
    fig = _unescape_json(_figures(page)["fig-host-health"])
    assert '"name":"clusters in panic"' in fig
    assert fig.count(FAULT_SHAPE) == 3
    assert "Panic mode:" in health


def test_host_health_panel_absent_without_data(tmp_path):
    # old runs: none of the new keys or columns
    page = _read(write_report(make_run(tmp_path)))
    assert 'id="health"' not in page and "Host health" not in page
    assert "Connection pools" not in page

    # a recent run without outlier detection or health checks: zero counts, zero
    # host columns, but pool counters, which go to the Gateways panel instead
    summary = _health_summary(overflow=0, probes=0)
    summary["outlier"] = {"ejections": 0, "by_reason": {}, "detected": {}, "overflow": 0}
    summary["health_checks"] = {"probes": 0, "probe_rate_per_s": 0.0, "failures": 0,
                                "timeouts": 0}
    zeros = {name: (lambda t: 0) for name in HOST_COLUMNS}
    run = make_health_run(tmp_path / "recent", summary, zeros, config=STORM_CONFIG)
    page = _read(write_report(run))
    assert "could not be rendered" not in page
    assert 'id="health"' not in page and 'id="fig-host-health"' not in page
    gateways = _panel(page, "gateway")
    assert "Connection pools" in gateways
    for text in ("181", "321", "Pending overflow"):
        assert text in gateways, text
    assert "max_pending_requests" in _panel(page, "retries")


def test_host_health_from_config_only(tmp_path):
    # configured but nothing recorded: the panel says so rather than vanishing
    summary = _storm_summary()
    data = report_html.RunData(tmp_path, summary, config_text=HEALTH_CONFIG)
    from sim.report import health

    assert health.host_health_present(data)
    panel = health.host_health_panel(data)
    assert panel is not None and "Configured on gw-az1" in panel.html
    assert "fig-host-health" not in panel.html
    assert health.host_health_panel(report_html.RunData(tmp_path, summary)) is None


# --------------------------------------------------------------------------
# Means per replication, units, one precision per column
# --------------------------------------------------------------------------


def _header_of(table_html: str, title: str) -> str:
    """The <th> whose text starts with ``title``."""
    for th in re.findall(r"<th>(.*?)</th>", table_html):
        if th.startswith(title):
            return th
    raise AssertionError(f"no header {title!r}")


def test_counts_averaged_over_replications_are_labelled(tmp_path):
    summary = _storm_summary(replications=3)
    summary["requests"]["failed"] = {"backend_error": 54.5}
    summary["backend"]["api"]["mean_in_system"] = 29.18
    run = make_storm_run(tmp_path / "three", summary)
    page = _read(write_report(run))
    kpis, backend, gateway = (_panel(page, a) for a in ("kpis", "backend", "gateway"))
    assert "mean per replication" in _header_of(kpis, "count")
    assert "Request counts are means per replication over the 3 replications." in kpis
    assert "mean per replication" in _header_of(backend, "Attempts")
    assert "mean per replication" in _header_of(backend, "Wasted work")
    assert "mean per replication" not in _header_of(backend, "Utilization")
    assert "mean per replication" in _header_of(gateway, "Retries")
    retries = _panel(page, "retries")
    for title in ("count", "retries", "total"):
        assert "mean per replication" in _header_of(retries, title), title
    # "mean in system" is in requests, and explained
    header = _header_of(backend, "Mean in system")
    assert '<span class="unit">requests</span>' in header
    assert "Mean in system: requests at a service" in backend
    # fields no table lists yet get a unit from their name
    summary["backend"]["api"].update(capacity_rps=3148.67, drain_rate_rps=12.0,
                                     queue_peak=4.0)
    backend = _panel(_read(write_report(make_storm_run(tmp_path / "new", summary))), "backend")
    assert '<span class="unit">req/s</span>' in _header_of(backend, "Capacity")
    assert '<span class="unit">req/s</span>' in _header_of(backend, "Drain rate")
    assert _header_of(backend, "Queue peak") == "Queue peak"
    assert 'class="scroll"' in backend  # a wide table scrolls inside its panel
    # bytes: a mean per replication too
    assert "(mean per replication, over 3 replications)" in _panel(page, "bytes")

    # one replication: nothing is a mean, nothing says so
    one = _read(write_report(make_storm_run(tmp_path / "one", _storm_summary())))
    assert "mean per replication" not in one
    assert "means per replication" not in one


def test_one_precision_per_column(tmp_path):
    from sim.report.numbers import Column, column_decimals, half_width_decimals

    assert half_width_decimals(0.024) == 3 and half_width_decimals(0.097) == 2
    assert half_width_decimals(1.42) == 1 and half_width_decimals(9.15) == 0
    assert half_width_decimals(598.8) == 0 and half_width_decimals(0) is None
    # the row that needs most decimals sets the column, capped one past the values' size
    assert column_decimals([95.58, 38.47], [0.097, 0.78]) == 2
    assert column_decimals([40.6, 133.7], [0.024, 9.15]) == 2
    assert column_decimals([9.33, 10, 19.33], integer=True) == 1
    assert column_decimals([0, 10, 120], integer=True) == 0
    assert Column.of([0.71, 0.5], [0.012, None], scale=100)(0.5) == "50.0"

    # the example: p99 "95.580 ± 0.097" next to p50 "38.47 ± 0.78"
    summary = _summary(latency_ms={"mean": 40.6255, "p50": 38.47, "p99": 95.58, "p999": 133.72},
                       ci95={"latency_ms": {"mean": 0.024, "p50": 0.78, "p99": 0.097,
                                            "p999": 9.15}})
    summary["backend"]["api"]["mean_wait_ms"] = 0.1127
    summary["backend"]["db"] = {"attempts": 5, "utilization": 0.2, "mean_wait_ms": 12.5}
    page = _read(write_report(make_run(tmp_path, summary)))
    kpis = _panel(page, "kpis")
    for text in ("40.63&nbsp;±&nbsp;0.02", "38.47&nbsp;±&nbsp;0.78", "95.58&nbsp;±&nbsp;0.10",
                 "133.72&nbsp;±&nbsp;9.15"):
        assert text in kpis, text
    # a column without half-widths: one precision from its largest value
    backend = _panel(page, "backend")
    assert "<td>0.1</td>" in backend and "<td>12.5</td>" in backend
    # failed (total), a sum without a half-width, shares the count column's precision
    assert "<td>1,000</td>" in kpis


def test_bytes_in_si_units(tmp_path):
    from sim.report.numbers import bytes_unit, fmt_bytes

    # decimal SI units, at least three significant digits
    assert fmt_bytes(0.8e9) == "800.0 MB" and fmt_bytes(2.04e9) == "2.04 GB"
    assert fmt_bytes(512) == "512 B" and fmt_bytes(6797) == "6.80 kB"
    assert bytes_unit(646e6) == ("MB", 1e6)
    assert fmt_bytes(2.04e9, ("MB", 1e6)) == "2,040.0 MB"
    assert fmt_bytes(1.04e9, ("GB", 1e9), 2) == "1.04 GB"
    summary = _summary(bytes_by_az_pair={"internet->use1-az1": 59.7e6,
                                         "use1-az1->use1-az2": 823.5e6,
                                         "use1-az2->use1-az1": 322.7e6})
    page = _read(write_report(make_run(tmp_path, summary)))
    fig = _unescape_json(_figures(page)["fig-bytes"])
    # the colour bar in MB (ticks 200, 400, ...), not plotly's "0.8B" for 0.8 billion
    assert '"title":{"text":"MB"}' in fig and '"exponentformat":"none"' in fig
    assert "823.5" in fig and "823500000" not in fig
    assert '"exponentformat":"SI"' in _unescape_json(_figures(page)["fig-latency"])
    bytes_panel = _panel(page, "bytes")
    assert "<strong>1.15 GB</strong>" in bytes_panel  # cross-AZ: 823.5 + 322.7 MB
    assert "Per request offered: <strong>9.55 kB</strong> across AZs" in bytes_panel
    # every cell of the heatmap in the colour bar's unit
    assert '"text":[["59.7 MB",""],["","823.5 MB"],["322.7 MB",""]]' in fig


# --------------------------------------------------------------------------
# One copy of plotly.js per comparison
# --------------------------------------------------------------------------


def test_variant_reports_share_one_plotly_js(tmp_path):
    root = make_comparison(tmp_path)  # variant reports written self-contained first
    marker = _plotly_marker()
    before = sum((root / "variants" / n / "report.html").stat().st_size
                 for n in ("naive", "budget"))
    write_comparison(root)
    js = root / "plotly.min.js"
    assert js.is_file() and _read(js) == plotly.offline.get_plotlyjs()
    mtime = js.stat().st_mtime_ns
    for name in ("naive", "budget"):
        page = _read(root / "variants" / name / "report.html")
        assert page.count(marker) == 0
        assert _script_srcs(page) == ["../../plotly.min.js"]
        assert "could not be rendered" not in page
        # a notice shows if the shared copy is missing (the page opened elsewhere)
        assert 'if (typeof Plotly === "undefined")' in page and "--self-contained" in page
        assert "</script>" not in page.split('if (typeof Plotly === "undefined")')[1]             .split(";</script>")[0]
    after = sum((root / "variants" / n / "report.html").stat().st_size
                for n in ("naive", "budget"))
    assert after < 500_000 < before
    assert [p.name for p in root.rglob("*.tmp")] == []

    # rewriting a variant's report on its own keeps it sharing (it is listed in comparison.json)
    variant = root / "variants" / "naive"
    page = _read(write_report(variant))
    assert _script_srcs(page) == ["../../plotly.min.js"] and page.count(marker) == 0
    assert js.stat().st_mtime_ns == mtime  # unchanged plotly.js is not rewritten
    # ... unless asked for one self-contained file
    page = _read(write_report(variant, self_contained=True))
    assert page.count(marker) == 1 and _script_srcs(page) == []

    # the comparison page as one self-contained file to share
    page = _read(write_comparison(root, self_contained=True))
    assert page.count(marker) == 1 and _script_srcs(page) == []
    assert _script_srcs(_read(root / "variants" / "budget" / "report.html")) ==         ["../../plotly.min.js"]
    # variant_reports=False leaves the variant pages alone
    (variant / "report.html").write_text("kept")
    write_comparison(root, variant_reports=False)
    assert _read(variant / "report.html") == "kept"


def test_single_run_report_stays_self_contained(tmp_path):
    run = make_run(tmp_path)
    page = _read(write_report(run))
    assert page.count(_plotly_marker()) == 1 and _script_srcs(page) == []
    assert not (run / "plotly.min.js").exists()
    # a folder called variants/ without a comparison.json listing it is a run of its own
    other = make_storm_run(tmp_path / "x" / "variants" / "a")
    (tmp_path / "x" / "comparison.json").write_text(json.dumps({"variants": [
        {"name": "b", "dir": "variants/b"}]}))
    assert _read(write_report(other)).count(_plotly_marker()) == 1
    assert not (tmp_path / "x" / "plotly.min.js").exists()
    page = _read(write_report(run, self_contained=True))
    assert page.count(_plotly_marker()) == 1 and not (run / "plotly.min.js").exists()


# --------------------------------------------------------------------------
# Comparison: latency and cross-AZ bytes
# --------------------------------------------------------------------------


def _zone_summary(cross_bytes, mean_ms, ci_ms):
    s = _summary(experiment="cross_zone", replications=3)
    s["requests"]["offered"] = 95042.0
    s["requests"]["failed"] = {"backend_error": 98.33}
    s["latency_ms"].update(mean=mean_ms, p99=94.3)
    s["ci95"] = {"latency_ms": {"mean": ci_ms, "p99": 1.42},
                 "requests": {"failed": {"backend_error": 21.1}}}
    s["bytes_by_az_pair"] = {"internet->use1-az1": 59.7e6, "use1-az1->internet": 264.5e6,
                             "use1-az1->use1-az1": 326.4e6,
                             "use1-az1->use1-az2": cross_bytes / 2,
                             "use1-az2->use1-az1": cross_bytes / 2}
    return s


def test_comparison_latency_and_cross_az_bytes(tmp_path):
    variants = [
        ("cross_zone_on", _zone_summary(646.2e6, 40.6255, 0.024), {},
         {"topology.balancers.us-east-1.cross_zone": True}),
        ("cross_zone_off", _zone_summary(322.5e6, 40.302, 0.039), {},
         {"topology.balancers.us-east-1.cross_zone": False}),
    ]
    root = make_comparison(tmp_path, variants, description="Cross-zone on vs off.")
    page = _read(write_comparison(root))
    assert "could not be rendered" not in page
    summary = _panel(page, "summary")
    for title in ("Latency mean", "p99", "Cross-AZ bytes", "per request", "Goodput"):
        _header_of(summary, title)
    assert "mean per replication" in _header_of(summary, "Cross-AZ bytes")
    assert "mean per replication" in _header_of(summary, "Failed requests")
    # without faults, the fault columns say nothing and are left out
    for title in ("Recovery time", "during", "after the fault", "at the end"):
        with pytest.raises(AssertionError):
            _header_of(summary, title)
    on, off = _row(page, "cross_zone_on"), _row(page, "cross_zone_off")
    for text in ("40.63&nbsp;±&nbsp;0.02", "646.2 MB", "6.80 kB", "94.3&nbsp;±&nbsp;1.4",
                 "<strong>98</strong>", "backend error 98&nbsp;±&nbsp;21"):
        assert text in on, text
    for text in ("40.30&nbsp;±&nbsp;0.04", "322.5 MB", "3.39 kB"):
        assert text in off, text
    assert "means per replication over the 3 replications" in summary
    # the headline answers the question
    head = page[page.index('class="headline"'):page.index("</header>")]
    assert ("Cross-AZ bytes per replication (mean): cross_zone_on 646.2 MB (6.80 kB per "
            "request), cross_zone_off 322.5 MB (3.39 kB per request); cross_zone_off sends "
            "50 % fewer than cross_zone_on. Mean latency: cross_zone_on 40.63 ± 0.02 ms, "
            "cross_zone_off 40.30 ± 0.04 ms.") in head


def test_comparison_without_bytes_has_no_bytes_columns(tmp_path):
    root = make_comparison(tmp_path)
    for name in ("naive", "budget"):
        path = root / "variants" / name / "summary.json"
        s = json.loads(path.read_text())
        del s["bytes_by_az_pair"]
        path.write_text(json.dumps(s))
    page = _read(write_comparison(root))
    summary = _panel(page, "summary")
    assert "Cross-AZ" not in summary and "Recovery time" in summary
    assert "Cross-AZ bytes" not in page[page.index('class="headline"'):page.index("</header>")]
