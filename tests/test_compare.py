"""Comparisons covering every KPI: variant runs (comparison.json, --baseline) and fleetsim compare RUN_A RUN_B."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy import stats

from sim.cli import main
from sim.metrics.kpis import estimate, kpis

TOPOLOGY = Path(__file__).resolve().parent.parent / "topologies" / "two_az_basic.yaml"
REPS = 3


def _experiment(tmp_path: Path, seed: int = 3, name: str = "cmp-demo") -> Path:
    exp = tmp_path / f"{name}-{seed}.yaml"
    exp.write_text(f"""
name: {name}
description: "<b>cross-zone</b> & friends"
topology: {TOPOLOGY}
workload:
  rate_schedule: [{{at_s: 0, rate_per_s: 300}}]
duration_s: 6
warmup_s: 1
seed: {seed}
replications: {REPS}
variants:
  zone_on:
    topology.balancers.us-east-1.cross_zone: true
  zone_off:
    topology.balancers.us-east-1.cross_zone: false
  slower:
    topology.services.api.service_time_s: {{dist: lognormal, median: 0.024, p99: 0.12}}
""")
    return exp


def _run(capsys, *args) -> Path:
    code = main(["run", *map(str, args), "--jobs", "1", "--quiet"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return Path(out.out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def variants_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("variants")
    code = main(["run", str(_experiment(tmp)), "--out", str(tmp / "out"), "--jobs", "1", "--quiet",
                 "--baseline", "zone_off"])
    assert code == 0
    return next((tmp / "out" / "cmp-demo").iterdir())


def _rep_kpis(run: Path) -> list[dict[str, float]]:
    return [kpis(json.loads(p.read_text())["summary"]) for p in sorted((run / "replications").glob("rep-*.json"))]


def test_comparison_json_holds_every_kpi_with_cis_and_paired_tests_against_the_baseline(variants_run):
    meta = json.loads((variants_run / "comparison.json").read_text())
    assert meta["baseline"] == "zone_off"
    numbers = meta["kpis"]
    assert numbers["baseline"] == "zone_off" and numbers["test"].startswith("paired t-test")
    reps = {v["name"]: _rep_kpis(variants_run / v["dir"]) for v in meta["variants"]}
    assert all(len(r) == REPS for r in reps.values())
    names = set().union(*(t for tables in reps.values() for t in tables))
    assert names <= set(numbers["kpis"])
    for required in ("latency.p50_ms", "latency.p99_ms", "goodput_rps", "throughput_rps", "cross_az.bytes",
                     "backend.api.utilization", "retries.amplification", "gateway.gw-az1.utilization"):
        assert required in numbers["kpis"], required
    for name in names:
        row = numbers["kpis"][name]
        for variant, tables in reps.items():
            est = estimate([t.get(name) for t in tables])
            got = row["values"][variant]
            assert got["mean"] == pytest.approx(est.mean, rel=1e-12, abs=1e-12)
            assert got["ci95"] == pytest.approx(est.half_width, rel=1e-12, abs=1e-12)
    # The difference to the baseline is a paired t-test on the replications (they share seeds).
    row = numbers["kpis"]["latency.p99_ms"]
    base = [t["latency.p99_ms"] for t in reps["zone_off"]]
    slower = [t["latency.p99_ms"] for t in reps["slower"]]
    d = row["vs_baseline"]["slower"]
    assert d["test"] == "paired t"
    assert d["p_value"] == pytest.approx(stats.ttest_rel(slower, base).pvalue, rel=1e-9)
    assert d["diff"] == pytest.approx(sum(slower) / REPS - sum(base) / REPS)
    assert "zone_off" not in row["vs_baseline"]
    # Cross-zone balancing moves bytes between AZs: on sends more than off, and the test says so.
    bytes_on = numbers["kpis"]["cross_az.bytes"]["vs_baseline"]["zone_on"]
    assert bytes_on["diff"] > 0 and bytes_on["significant"]


def test_figures_the_same_in_every_variant_fold_away(variants_run):
    numbers = json.loads((variants_run / "comparison.json").read_text())["kpis"]
    # Common random numbers: every variant sees the same arrivals, so the calls offered agree exactly.
    assert "requests.offered" in numbers["folded"]
    assert numbers["kpis"]["requests.offered"]["same"] is True
    assert not numbers["kpis"]["latency.p99_ms"]["same"]
    page = (variants_run / "report.html").read_text()
    panel = page[page.index('id="kpis"'):]
    panel = panel[:panel.index("</section>")]
    assert "The same in every variant, so left out of the table: " in panel
    assert "<code>requests.offered</code>" not in panel and "requests.offered = " in panel
    assert "<code>latency.p99_ms</code>" in panel and "<code>cross_az.bytes</code>" in panel
    assert "baseline" in panel and "paired t-test" in panel


def test_report_rewrites_the_numbers_with_the_same_baseline(variants_run):
    before = json.loads((variants_run / "comparison.json").read_text())
    assert main(["report", str(variants_run)]) == 0
    after = json.loads((variants_run / "comparison.json").read_text())
    assert after == before


def test_unknown_baseline_is_refused_before_running(tmp_path, capsys):
    code = main(["run", str(_experiment(tmp_path)), "--out", str(tmp_path / "out"), "--baseline", "nope"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0] == "<command line>: --baseline: no variant 'nope' (variants: zone_on, zone_off, slower)"
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- fleetsim compare


def test_compare_two_runs_writes_the_same_table(variants_run, tmp_path, capsys):
    a, b = variants_run / "variants" / "zone_on", variants_run / "variants" / "slower"
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out / "report.html")
    meta = json.loads((out / "comparison.json").read_text())
    assert meta["kind"] == "runs" and [r["path"] for r in meta["runs"]] == [str(a.absolute()), str(b.absolute())]
    numbers = meta["kpis"]
    assert numbers["baseline"] == meta["runs"][0]["name"] == "cmp-demo/zone_on"
    assert numbers["test"].startswith("paired t-test")  # same seed and replications
    variants = json.loads((variants_run / "comparison.json").read_text())["kpis"]["kpis"]
    row = numbers["kpis"]["latency.p99_ms"]
    assert row["values"]["cmp-demo/slower"] == variants["latency.p99_ms"]["values"]["slower"]
    assert row["vs_baseline"]["cmp-demo/slower"]["significant"]
    page = (out / "report.html").read_text()
    assert 'id="kpis"' in page and "cmp-demo/slower against cmp-demo/zone_on" in page
    assert "<b>cross-zone</b>" not in page  # the description is escaped wherever it shows
    # links to each run's own report, relative to the comparison page
    assert 'href="../' in page
    # rewriting the folder compares the same two runs again
    assert main(["report", str(out)]) == 0
    assert json.loads((out / "comparison.json").read_text())["kpis"] == numbers


def test_compare_runs_with_different_seeds_uses_welch(tmp_path, capsys):
    exp = tmp_path / "plain.yaml"
    exp.write_text(f"""
name: plain
topology: {TOPOLOGY}
workload: {{rate_schedule: [{{at_s: 0, rate_per_s: 200}}]}}
duration_s: 5
warmup_s: 1
replications: 2
""")
    a = _run(capsys, exp, "--out", tmp_path / "out", "--seed", "1", "--no-report")
    b = _run(capsys, exp, "--out", tmp_path / "out", "--seed", "2", "--no-report")
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "c")]) == 0
    numbers = json.loads((tmp_path / "c" / "comparison.json").read_text())["kpis"]
    assert numbers["test"] == "Welch's t-test"
    assert numbers["kpis"]["latency.p99_ms"]["vs_baseline"][f"plain/{b.name}"]["test"] == "Welch t"


@pytest.mark.parametrize("case", ["missing", "file", "empty", "comparison", "incomplete"])
def test_compare_refuses_what_is_not_a_finished_run(variants_run, tmp_path, capsys, case):
    good = variants_run / "variants" / "zone_on"
    bad = tmp_path / "bad"
    expected = {
        "missing": "no such folder",
        "file": "is a file, expected a run folder",
        "empty": "not a run folder (no summary.json)",
        "comparison": "a comparison of variants, not one run: compare two of its variant folders, e.g. ",
        "incomplete": "an incomplete run (it holds INCOMPLETE)",
    }[case]
    if case == "file":
        bad.write_text("x")
    elif case == "empty":
        bad.mkdir()
    elif case == "comparison":
        bad = variants_run
    elif case == "incomplete":
        bad.mkdir()
        (bad / "summary.json").write_text("{}")
        (bad / "INCOMPLETE").write_text("")
    code = main(["compare", str(good), str(bad), "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"{bad}: (document): {expected}")
    assert not (tmp_path / "c").exists()


def test_compare_escapes_hostile_folder_names(variants_run, tmp_path):
    import shutil

    evil = tmp_path / "<img src=x onerror=alert(1)>"
    shutil.copytree(variants_run / "variants" / "zone_off", evil)
    out = tmp_path / "c"
    assert main(["compare", str(variants_run / "variants" / "zone_on"), str(evil), "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert json.loads((out / "comparison.json").read_text())["runs"][1]["name"].endswith("<img src=x onerror=alert(1)>")
