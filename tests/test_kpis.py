"""The KPI table (sim.metrics.kpis): names, units, directions, and the statistics of comparisons."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from scipy import stats

from sim.metrics.kpis import (
    GROUP_ORDER,
    Estimate,
    compare_kpis,
    difference,
    estimate,
    estimates_from_summary,
    kpi_estimates,
    kpi_meta,
    kpis,
)
from sim.runner import combine_summaries

PINS = Path(__file__).resolve().parent / "data" / "pins"


def _pinned(name: str) -> dict:
    return json.loads((PINS / name).read_text(encoding="utf-8"))


def test_every_summary_figure_has_a_flat_name_with_a_unit_and_a_direction():
    summary = _pinned("experiments_quickstart_base_0.summary.json")
    table = kpis(summary)
    assert table["latency.p99_ms"] == summary["latency_ms"]["p99"]
    assert table["goodput_rps"] == summary["goodput_rps"]
    assert table["backend.api.utilization"] == summary["backend"]["api"]["utilization"]
    assert table["backend.busiest_utilization"] == max(b["utilization"] for b in summary["backend"].values())
    cross = sum(v for k, v in summary["bytes_by_az_pair"].items()
                if k.split("->")[0] != k.split("->")[1] and "internet" not in k)
    assert table["cross_az.bytes"] == cross
    assert table["cross_az.bytes_per_request"] == pytest.approx(cross / summary["requests"]["offered"])
    assert table["cost.monthly_usd"] == summary["cost"]["monthly_dollars"]
    assert table["cost.cross_az.monthly_usd"] == summary["cost"]["monthly_by_relation"]["cross_az"]
    for gw in summary["gateway"]:
        assert f"gateway.{gw}.utilization" in table
    assert all(math.isfinite(v) for v in table.values())
    for name in table:
        meta = kpi_meta(name)
        assert meta.group in GROUP_ORDER and meta.group != "Other", name
        assert meta.better in ("lower", "higher", None)
    units = {n: kpi_meta(n).unit for n in table}
    assert units["latency.p99_ms"] == "ms" and units["goodput_rps"] == "req/s"
    assert units["cross_az.bytes"] == "B" and units["cost.monthly_usd"] == "$/month"
    assert units["backend.api.utilization"] == "ratio" and units["requests.offered"] == "count"
    assert kpi_meta("latency.p99_ms").better == "lower" and kpi_meta("goodput_rps").better == "higher"
    assert kpi_meta("requests.offered").better is None


def test_sections_present_only_in_some_runs_add_their_names():
    retry = kpis(_pinned("experiments_retry_storm_retry_budget_0.summary.json"))
    assert "recovery.recovery_s" in retry or "recovery.goodput_after_rps" in retry
    assert not any(n.startswith(("cost.", "tls.", "rate_limit.", "control_plane.")) for n in retry)
    synthetic = {"connections": {"resumption_rate": 0.9, "full": 10, "resumed": 90, "pools": {}},
                 "gateway_cpu": {"cores_needed": 6, "cores_used": 2.5, "cost_usd_per_month": 87.6, "pools": {}},
                 "rate_limit": {"over_admitted": 3, "latency_added_ms": {"p99": 1.8}, "redis": {"r-0": {"utilization": 0.2}}},
                 "control_plane": {"cpu_cores_peak": 4.0, "convergence_s": None, "versions": {"v1": {}}, "mode": "x"}}
    table = kpis(synthetic)
    assert table["tls.resumption_rate"] == 0.9 and kpi_meta("tls.resumption_rate").better == "higher"
    assert table["gateway_cpu.cores_needed"] == 6 and kpi_meta("gateway_cpu.cores_needed").unit == "cores"
    assert table["total.monthly_usd"] == 87.6
    assert table["rate_limit.latency_added.p99_ms"] == 1.8
    assert table["rate_limit.redis.r-0.utilization"] == 0.2
    assert table["control_plane.cpu_cores_peak"] == 4.0
    assert "control_plane.convergence_s" not in table  # undefined (None) figures are left out


def test_estimate_is_the_student_t_interval():
    values = [10.0, 12.5, 9.0, 11.2, 10.4]
    est = estimate(values)
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=stats.tmean(values), scale=stats.sem(values))
    assert est.mean == pytest.approx((lo + hi) / 2)
    assert est.half_width == pytest.approx((hi - lo) / 2)
    assert est.n == 5
    # A missing value is left out of the mean but keeps its place (replications stay paired).
    est = estimate([1.0, None, 3.0, float("nan")])
    assert est.mean == 2.0 and est.n == 2 and math.isnan(est.values[1]) and len(est.values) == 4
    assert estimate([4.0]).half_width is None
    assert estimate([None, float("nan")]) is None


def test_paired_and_welch_differences_agree_with_scipy():
    a = [100.0, 104.0, 97.0, 110.0, 101.0, 95.0]
    b = [103.1, 106.8, 100.3, 112.7, 104.2, 97.9]  # a + ~3 with a little noise: common random numbers
    ea, eb = estimate(a), estimate(b)
    paired = difference(ea, eb, paired=True)
    assert paired.test == "paired t"
    assert paired.p_value == pytest.approx(stats.ttest_rel(b, a).pvalue, rel=1e-9)
    d = [y - x for x, y in zip(a, b, strict=True)]
    assert paired.diff == pytest.approx(sum(d) / len(d))
    assert paired.half_width == pytest.approx(stats.t.ppf(0.975, 5) * stats.sem(d))
    welch = difference(ea, eb, paired=False)
    assert welch.test == "Welch t"
    assert welch.p_value == pytest.approx(stats.ttest_ind(b, a, equal_var=False).pvalue, rel=1e-9)
    # The same shift against the spread between replications: only the paired test sees it.
    assert paired.significant and not welch.significant
    assert paired.relative == pytest.approx((eb.mean - ea.mean) / ea.mean)


def test_differences_without_sampling_variation():
    same = estimate([5.0, 6.0, 7.0])
    d = difference(same, estimate([5.0, 6.0, 7.0]), paired=True)
    assert d.diff == 0 and d.p_value == 1.0 and not d.significant
    shifted = difference(same, estimate([6.0, 7.0, 8.0]), paired=True)
    assert shifted.diff == 1.0 and shifted.p_value == 0.0 and shifted.significant
    constant = difference(estimate([2.0, 2.0]), estimate([3.0, 3.0]), paired=False)
    assert constant.p_value == 0.0 and constant.half_width == 0.0
    one = difference(estimate([1.0]), estimate([2.0]), paired=True)
    assert one.p_value is None and one.test is None and one.diff == 1.0


def test_combined_summary_gives_welch_inputs_but_not_for_derived_names():
    reps = [_pinned("experiments_quickstart_base_0.summary.json") for _ in range(3)]
    for i, s in enumerate(reps):
        s["latency_ms"] = dict(s["latency_ms"], p99=s["latency_ms"]["p99"] + i)
    combined = combine_summaries(reps)
    from_summary = estimates_from_summary(combined)
    from_reps = kpi_estimates(reps)
    assert from_summary["latency.p99_ms"].mean == pytest.approx(from_reps["latency.p99_ms"].mean)
    assert from_summary["latency.p99_ms"].half_width == pytest.approx(from_reps["latency.p99_ms"].half_width)
    assert from_summary["latency.p99_ms"].sd == pytest.approx(from_reps["latency.p99_ms"].sd)
    # A sum of several figures has no half-width of its own in the summary.
    assert from_summary["cross_az.bytes"].half_width is None


def test_compare_kpis_folds_what_is_the_same_everywhere():
    runs = {"a": {"x_ms": Estimate(1.0, 0.1, 3, (0.9, 1.0, 1.1)), "requests.offered": Estimate(10, 1, 3, (9, 10, 11))},
            "b": {"x_ms": Estimate(2.0, 0.1, 3, (1.9, 2.0, 2.1)), "requests.offered": Estimate(10, 1, 3, (9, 10, 11))}}
    out = compare_kpis(runs, "b", paired=True)
    assert out["baseline"] == "b" and out["folded"] == ["requests.offered"]
    assert out["kpis"]["x_ms"]["vs_baseline"]["a"]["diff"] == pytest.approx(-1.0)
    assert "b" not in out["kpis"]["x_ms"]["vs_baseline"]
    assert out["kpis"]["requests.offered"]["same"] is True
    with pytest.raises(KeyError, match="'c'"):
        compare_kpis(runs, "c", paired=True)
