"""fleetsim export (one row per replication, CSV and Parquet) and fleetsim ls."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sim.cli import main
from sim.export import ID_COLUMNS, figures

from .test_sweep import RATE, experiment

KEY_FIGURES = ["failure_fraction", "cross_az_bytes", "latency_ms.p50", "latency_ms.p99", "latency_ms.p999",
               "throughput_rps", "goodput_rps", "requests.offered", "backend.api.utilization",
               "gateway.gw.utilization", "retries.amplification", "client.retries", "cost.monthly_dollars",
               "cost.monthly_by_relation.cross_az"]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A results folder with a sweep (2 points x 2), a run (2 replications) and a comparison (2 variants x 1)."""
    tmp = tmp_path_factory.mktemp("export")
    results = tmp / "results"
    path = experiment(tmp, f"  grid:\n    {RATE}: [60, 120]\n", extra="cost: {provider: aws}\n")
    common = ["--jobs", "1", "--quiet", "--no-report"]
    assert main(["sweep", str(path), "--out", str(results / "tiny-sweep"), *common]) == 0
    assert main(["run", str(path), "--out", str(results), *common]) == 0
    variants = experiment(tmp, f"  grid:\n    {RATE}: [60]\n", replications=1, name="pair", extra="""\
variants:
  one: {topology.gateways.gw.workers: 1}
  two: {topology.gateways.gw.workers: 2}
""")
    assert main(["run", str(variants), "--out", str(results), *common]) == 0
    # A run stopped before its end is listed as such and not exported.
    stopped = results / "tiny" / "20000101T000000Z-seed11"
    (stopped / "replications").mkdir(parents=True)
    (stopped / "INCOMPLETE").write_text("stopped\n")
    os.utime(stopped / "INCOMPLETE", (946684800, 946684800))
    return results


def _csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return list(rows[0]), rows


def test_export_writes_one_row_per_replication_in_csv_and_parquet(results, tmp_path, capsys):
    out_csv, out_pq = tmp_path / "kpis.csv", tmp_path / "kpis.parquet"
    assert main(["export", str(results), "--csv", str(out_csv), "--parquet", str(out_pq)]) == 0
    err = capsys.readouterr().err
    assert "skipped, an incomplete run (it holds INCOMPLETE)" in err
    columns, rows = _csv(out_csv)
    assert len(rows) == 4 + 2 + 2
    assert columns[:len(ID_COLUMNS)] == list(ID_COLUMNS)
    assert columns[len(ID_COLUMNS)] == f"param.{RATE}"
    for c in KEY_FIGURES:
        assert c in columns, c
    table = pq.read_table(out_pq)
    assert table.column_names == columns and table.num_rows == len(rows)
    assert str(table.schema.field("replication").type) == "int64"
    assert str(table.schema.field("latency_ms.p99").type) == "double"
    assert str(table.schema.field(f"param.{RATE}").type) == "double"
    parquet_rows = table.to_pylist()
    for row, prow in zip(rows, parquet_rows, strict=True):
        for c in columns:
            if isinstance(prow[c], float):
                assert float(row[c]) == prow[c], c
            else:
                assert row[c] == ("" if prow[c] is None else str(prow[c])), c

    kinds = [(r["kind"], r["experiment"], r["variant"], r["point"], r["replication"]) for r in rows]
    assert sorted(kinds) == sorted([
        ("sweep", "tiny", "", "rate_per_s=60", "0"), ("sweep", "tiny", "", "rate_per_s=60", "1"),
        ("sweep", "tiny", "", "rate_per_s=120", "0"), ("sweep", "tiny", "", "rate_per_s=120", "1"),
        ("run", "tiny", "", "", "0"), ("run", "tiny", "", "", "1"),
        ("variant", "pair", "one", "", "0"), ("variant", "pair", "two", "", "0")])


def test_every_row_holds_its_replications_own_figures(results, tmp_path):
    out_csv = tmp_path / "kpis.csv"
    assert main(["export", str(results / "tiny-sweep"), str(results / "tiny"), "--csv", str(out_csv)]) == 0
    _, rows = _csv(out_csv)
    sweep = json.loads((results / "tiny-sweep" / "sweep.json").read_text())
    sweep_rows = [r for r in rows if r["kind"] == "sweep"]
    assert len(sweep_rows) == len(sweep["points"]) == 4
    for row, entry in zip(sweep_rows, sweep["points"], strict=True):
        summary = json.loads((results / "tiny-sweep" / entry["summary"]).read_text())
        assert float(row[f"param.{RATE}"]) == entry["params"][RATE]
        assert row["run_key"] == entry["key"] and row["seed"] == "11"
        assert float(row["latency_ms.p99"]) == summary["latency_ms"]["p99"]
        assert float(row["goodput_rps"]) == summary["goodput_rps"]
        failed = sum(summary["requests"]["failed"].values())
        assert float(row["failure_fraction"]) == failed / summary["requests"]["offered"]
    (run_dir,) = [p for p in (results / "tiny").iterdir() if not (p / "INCOMPLETE").exists()]
    for row in (r for r in rows if r["kind"] == "run"):
        rep = json.loads((run_dir / "replications" / f"rep-{int(row['replication']):03d}.json").read_text())
        assert float(row["latency_ms.p50"]) == rep["summary"]["latency_ms"]["p50"]
        assert float(row["cost.monthly_dollars"]) == rep["summary"]["cost"]["monthly_dollars"]


def test_figures_flatten_numbers_and_derive_failures_and_cross_az_bytes():
    summary = {"experiment": "x", "seed": 1, "replications": 1,
               "requests": {"offered": 200, "succeeded": 150, "failed": {"route_timeout": 30, "backend_error": 20}},
               "latency_ms": {"p99": 12.5, "p999": None},
               "bytes_by_az_pair": {"a->a": 10, "a->b": 7, "b->a": 5, "internet->a": 100},
               "recovery": {"recovered": True, "verdict": "recovered", "by_replication": [{"x": 1}]}}
    assert figures(summary) == {
        "failure_fraction": 0.25, "cross_az_bytes": 12.0,
        "requests.offered": 200.0, "requests.succeeded": 150.0, "requests.failed.route_timeout": 30.0,
        "requests.failed.backend_error": 20.0, "latency_ms.p99": 12.5, "latency_ms.p999": None,
        "bytes_by_az_pair.a->a": 10.0, "bytes_by_az_pair.a->b": 7.0, "bytes_by_az_pair.b->a": 5.0,
        "bytes_by_az_pair.internet->a": 100.0, "recovery.recovered": 1.0}


def test_export_refuses_what_it_cannot_read(results, tmp_path, capsys):
    assert main(["export", str(results)]) == 2
    assert "--csv: give --csv FILE, --parquet FILE or both" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nowhere"), "--csv", str(tmp_path / "a.csv")]) == 2
    assert capsys.readouterr().err.strip() == f"{tmp_path / 'nowhere'}: (document): no such folder"
    (tmp_path / "empty").mkdir()
    assert main(["export", str(tmp_path / "empty"), "--csv", str(tmp_path / "a.csv")]) == 2
    assert "holds no run, comparison or sweep" in capsys.readouterr().err
    assert not (tmp_path / "a.csv").exists()


def test_ls_lists_runs_comparisons_and_sweeps_oldest_first(results, capsys):
    assert main(["ls", str(results)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    assert "20000101T000000Z-seed11  run, INCOMPLETE" in lines[0]  # the oldest
    assert "tiny-sweep  sweep of tiny, 2 points x 2 replication(s): p99 " in lines[1]
    assert "run of tiny, 2 replication(s): p50 " in lines[2] and "goodput" in lines[2] and "cross-AZ" in lines[2]
    assert "comparison of pair, 2 variants: one p99 " in lines[3] and ", two p99 " in lines[3]
    assert main(["ls", str(results / "nothing")]) == 2
