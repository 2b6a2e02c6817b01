"""The sweep report: the knee detector against closed forms, and the report writer on real small runs."""

from __future__ import annotations

import json
import math

import numpy as np
import plotly.offline
import pytest
from scipy import optimize

from sim.analytic.queues import mm1_mean_sojourn_s, mmc_mean_sojourn_s
from sim.metrics.kpis import estimate, kpis
from sim.report.sweep import DEFAULT_KNEE_LOG_SLOPE, SWEEP_KPIS_FILE, find_knee, write_sweep_report
from sim.runner import run_replication

from .fleet_builders import experiment

MU = 200.0  # service rate per worker, 1/s


def mm1_p99_ms(rho: float) -> float:
    """M/M/1 p99 sojourn: the sojourn time is exponential with the closed-form mean, so p99 = mean x ln 100."""
    return 1000 * mm1_mean_sojourn_s(rho * MU, MU) * math.log(100)


def mm1_knee(threshold: float) -> float:
    """Where d ln p99 / d rho = 1 / (1 - rho) (the closed form's slope) reaches ``threshold``."""
    return 1 - 1 / threshold


@pytest.mark.parametrize("threshold", [DEFAULT_KNEE_LOG_SLOPE, 2.5, 10.0])
def test_knee_of_mm1_is_where_the_closed_form_slope_crosses_the_threshold(threshold):
    x = np.arange(0.05, 0.985, 0.002)
    knee = find_knee(list(x), [mm1_p99_ms(r) for r in x], threshold)
    assert knee.status == "found"
    # Chord slopes at midpoints, interpolated: the error is O(h^2) (h = 0.002 here: ~1e-5).
    assert knee.x == pytest.approx(mm1_knee(threshold), abs=1e-4)
    assert knee.y == pytest.approx(mm1_p99_ms(knee.x), rel=1e-3)


def test_knee_on_a_coarse_grid_lies_between_the_chords_around_it_and_converges_as_h_squared():
    target = mm1_knee(DEFAULT_KNEE_LOG_SLOPE)  # 0.75
    errors = []
    for h in (0.05, 0.01):
        x = np.round(np.arange(0.5, 0.951, h), 10)
        knee = find_knee(list(x), [mm1_p99_ms(r) for r in x])
        mids = [m for m, _ in knee.slopes]
        below = max(m for m in mids if m <= target)
        above = min(m for m in mids if m > target)
        assert below <= knee.x <= above
        errors.append(abs(knee.x - target))
    # A grid 5 times finer cuts an O(h^2) error about 25-fold: at least 10-fold.
    assert errors[1] < errors[0] / 10


def _mmc_log_slope(rho: float, c: int) -> float:
    """d ln W / d rho of M/M/c's closed-form mean sojourn W (central difference of the closed form)."""
    eps = 1e-6

    def ln_w(r: float) -> float:
        return math.log(mmc_mean_sojourn_s(r * c * MU, MU, c))

    return (ln_w(rho + eps) - ln_w(rho - eps)) / (2 * eps)


def test_knee_of_mmc_mean_sojourn_matches_its_closed_form_and_comes_after_mm1():
    c = 4
    threshold = DEFAULT_KNEE_LOG_SLOPE
    expected = optimize.brentq(lambda r: _mmc_log_slope(r, c) - threshold, 0.3, 0.99, xtol=1e-10)
    x = np.arange(0.3, 0.985, 0.002)
    knee = find_knee(list(x), [mmc_mean_sojourn_s(r * c * MU, MU, c) for r in x], threshold)
    assert knee.status == "found"
    assert knee.x == pytest.approx(expected, abs=1e-3)
    assert knee.x > mm1_knee(threshold)  # more servers keep the curve flat longer


def test_knee_statuses_outside_the_range():
    steep = np.arange(0.85, 0.98, 0.01)
    assert find_knee(list(steep), [mm1_p99_ms(r) for r in steep]).status == "below_range"
    gentle = np.arange(0.1, 0.5, 0.05)
    knee = find_knee(list(gentle), [mm1_p99_ms(r) for r in gentle])
    assert knee.status == "not_reached" and knee.x is None
    assert find_knee([0.5], [10.0]).status == "too_few_points"
    # Latencies that are not positive (no request succeeded) are left out, not taken as 0.
    assert find_knee([0.5, 0.6], [float("nan"), 10.0]).status == "too_few_points"


# --------------------------------------------------------------------------- the writer on real runs

RATES = (40.0, 110.0, 160.0)
WORKERS = (1, 2)
REPS = 2


def _point(rate: float, workers: int) -> dict:
    exp = experiment(
        topology__services__api__service_time_s={"dist": "exponential", "mean": 0.005},
        topology__services__api__workers=workers,
        topology__services__api__queue_limit=None,
        workload__arrivals="poisson",
        workload__rate_schedule=[{"at_s": 0, "rate_per_s": rate}],
        duration_s=12.0, warmup_s=2.0, replications=REPS, seed=5,
        cost={"provider": "aws", "production_rps": 1000},
    )
    summaries = [run_replication(exp, r)["summary"] for r in range(REPS)]
    return {"label": f"rate {rate:g}, {workers} workers",
            "params": {"workload.rate_schedule.0.rate_per_s": rate, "topology.services.api.workers": workers},
            "variant": None, "summaries": summaries}


@pytest.fixture(scope="module")
def real_points():
    return [_point(rate, w) for w in WORKERS for rate in RATES]


def _experiment(**sweep) -> dict:
    return {"name": "tiny-sweep", "description": "Load against workers.", "seed": 5, "replications": REPS,
            "sweep": {"grid": {"workload.rate_schedule.0.rate_per_s": list(RATES),
                               "topology.services.api.workers": list(WORKERS)}, **sweep}}


def test_sweep_report_holds_every_plot_and_every_kpi_with_cis(tmp_path, real_points):
    out = write_sweep_report(tmp_path / "sweep", real_points, _experiment(slo_p99_ms=40.0))
    assert out == tmp_path / "sweep" / "report.html"
    page = out.read_text(encoding="utf-8")
    numbers = json.loads((tmp_path / "sweep" / SWEEP_KPIS_FILE).read_text(encoding="utf-8"))

    # Every KPI of every replication's summary, with its mean and 95 % half-width over the replications.
    for raw, point in zip(real_points, numbers["points"], strict=True):
        tables = [kpis(s) for s in raw["summaries"]]
        names = set().union(*tables)
        assert set(point["kpis"]) == names
        for name in names:
            est = estimate([t.get(name) for t in tables])
            got = point["kpis"][name]
            assert got["n"] == REPS
            assert got["mean"] == pytest.approx(est.mean, rel=1e-12, abs=1e-12)
            assert got["ci95"] == pytest.approx(est.half_width, rel=1e-12, abs=1e-12)
        assert all(name in numbers["kpis"] for name in names)
    for meta in numbers["kpis"].values():
        assert meta["unit"] and meta["better"] in ("lower", "higher", None)

    # One chart per (swept parameter, KPI that varies), plus the latency-vs-load chart.
    swept = numbers["swept"]
    assert swept == ["workload.rate_schedule.0.rate_per_s", "topology.services.api.workers"]
    varying = [n for n in numbers["kpis"] if n not in numbers["constant"]]
    assert "latency.p99_ms" in varying and "cost.monthly_usd" in varying
    assert page.count('class="plotly-graph-div"') == 1 + len(swept) * len(varying)
    assert 'id="fig-sweep-knee"' in page
    for pi in range(len(swept)):
        for ki in range(len(varying)):
            assert f'id="fig-sweep-{pi}-{ki}"' in page
    # Self-contained: plotly.js inlined once, nothing loaded from elsewhere.
    assert page.count(plotly.offline.get_plotlyjs()) == 1
    assert '<script type="text/javascript" src=' not in page

    # The knee's threshold is stated; the curves run along the rate (it tracks utilisation).
    assert numbers["settings"]["load_parameter"] == "workload.rate_schedule.0.rate_per_s"
    assert numbers["settings"]["knee_log_slope"] == DEFAULT_KNEE_LOG_SLOPE
    assert "d ln p99 / d utilisation ≥ 4" in page and "= 75%" in page
    assert len(numbers["knees"]) == len(WORKERS)


def test_sweep_ranking_is_cheapest_under_the_slo(tmp_path, real_points):
    slo = 60.0  # above the network's floor (~47 ms), below the single worker's p99 at 55 % and 81 %
    write_sweep_report(tmp_path, real_points, _experiment(slo_p99_ms=slo))
    numbers = json.loads((tmp_path / SWEEP_KPIS_FILE).read_text())
    settings = numbers["settings"]
    assert settings["objective"] == "cheapest" and settings["objective_kpi"] == "total.monthly_usd"
    ranking = numbers["ranking"]
    points = {p["label"]: p["kpis"] for p in numbers["points"]}
    meeting = [lbl for lbl, k in points.items() if k["latency.p99_ms"]["mean"] <= slo]
    assert 0 < len(meeting) < len(points)  # the SLO separates the points: the test says something
    assert [r["label"] for r in ranking[:len(meeting)]] == sorted(
        meeting, key=lambda lbl: (points[lbl]["total.monthly_usd"]["mean"], points[lbl]["latency.p99_ms"]["mean"]))
    assert all(r["meets_slo"] is False for r in ranking[len(meeting):])

    # Another objective, from the sweep section: the highest goodput first.
    write_sweep_report(tmp_path, real_points, _experiment(objective="max:goodput_rps"))
    numbers = json.loads((tmp_path / SWEEP_KPIS_FILE).read_text())
    goodput = [r["objective"]["mean"] for r in numbers["ranking"]]
    assert goodput == sorted(goodput, reverse=True) and numbers["settings"]["slo_p99_ms"] is None


def test_sweep_report_escapes_hostile_names(tmp_path, real_points):
    evil = "<script>alert(1)</script>"
    points = [dict(p, label=f"{evil} {i}", params={f"{evil}.rate": p["params"]["workload.rate_schedule.0.rate_per_s"]},
                   variant=evil) for i, p in enumerate(real_points[:3])]
    write_sweep_report(tmp_path, points, {"name": evil, "description": evil, "seed": 1, "replications": 2,
                                          "sweep": {"grid": {evil: [1, 2]}}})
    page = (tmp_path / "report.html").read_text()
    assert evil not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    json.loads((tmp_path / SWEEP_KPIS_FILE).read_text())  # valid JSON all the same


def test_sweep_of_named_variants_with_one_replication(tmp_path, real_points):
    # No swept parameter, three named variants, one replication each: "variant" is the axis, no bands.
    points = [{"label": f"v{i}", "params": {}, "variant": f"v{i}", "summaries": p["summaries"][:1]}
              for i, p in enumerate(real_points[:3])]
    write_sweep_report(tmp_path, points, {"name": "variants", "seed": 5, "replications": 1, "sweep": {}})
    numbers = json.loads((tmp_path / SWEEP_KPIS_FILE).read_text())
    assert numbers["swept"] == ["variant"]
    assert numbers["settings"]["load_parameter"] is None and numbers["knees"][0]["curve"] == "all points"
    assert all(k["ci95"] is None and k["n"] == 1 for p in numbers["points"] for k in p["kpis"].values())
    varying = [n for n in numbers["kpis"] if n not in numbers["constant"]]
    page = (tmp_path / "report.html").read_text()
    assert page.count('class="plotly-graph-div"') == 1 + len(varying)
    assert "KPIs against variant" in page
