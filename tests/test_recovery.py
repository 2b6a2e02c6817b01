"""Recovery analysis after a fault window: exact recovery times, metastability, the rules' edges."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from sim.metrics.recovery import (
    Recovery,
    amplification_series,
    analyse_recovery,
    goodput_mean_over,
)


def series(n: int, base: float, *segments: tuple[int, int, float]) -> list[float]:
    """``n`` seconds at ``base``, then each (first, last_exclusive, value) painted over."""
    out = [float(base)] * n
    for lo, hi, value in segments:
        for i in range(lo, hi):
            out[i] = float(value)
    return out


def test_raw_goodput_back_4_s_after_the_fault_gives_recovery_s_4_without_smoothing():
    # 100/s until the fault at [40, 50), 20/s from 40 up to and including 53,
    # 100/s again from 54. With smooth_s=1 the smoothed series is the raw one:
    # seconds 50..53 are 20 < 0.9 x 100 = 90, seconds 54..58 (the 5-s hold)
    # are all 100 >= 90, so t = 54 and recovery_s = 54 - 50 = 4.
    g = series(100, 100, (40, 54, 20))
    r = analyse_recovery(g, [(40, 50)], warmup_s=10, duration_s=100, smooth_s=1)
    assert r.recovered and not r.metastable
    assert r.recovery_s == 4
    assert (r.fault_start_s, r.fault_end_s) == (40, 50)
    assert r.goodput_before_rps == 100
    assert r.goodput_during_rps == 20
    # After = seconds 50..99: four at 20 and 46 at 100.
    assert r.goodput_after_rps == pytest.approx((4 * 20 + 46 * 100) / 50)


def test_default_smoothing_adds_the_fault_seconds_still_in_the_window():
    # Raw goodput is 20/s during [40, 52) and back to 100/s at 52, 2 s after
    # the fault ends. The trailing 3-s mean is
    #   t=50: (20+20+20)/3 = 20, t=51: 20, t=52: (20+20+100)/3 = 46.7,
    #   t=53: (20+100+100)/3 = 73.3, t=54: (100+100+100)/3 = 100,
    # so the first second >= 90 is 54 and it holds for 54..58:
    # recovery_s = 54 - 50 = 4. Without smoothing the same series gives 2.
    g = series(100, 100, (40, 52, 20))
    r = analyse_recovery(g, [(40, 50)], warmup_s=10, duration_s=100)
    assert r.recovered and r.recovery_s == 4
    raw = analyse_recovery(g, [(40, 50)], warmup_s=10, duration_s=100, smooth_s=1)
    assert raw.recovery_s == 2


def test_goodput_that_never_dropped_recovers_at_once():
    g = series(100, 100)
    r = analyse_recovery(g, [(40, 50)], warmup_s=10, duration_s=100)
    assert r.recovered and r.recovery_s == 0 and not r.metastable


def test_fractional_fault_end_is_judged_from_the_next_whole_second():
    # The first candidate second is ceil(49.5) = 50, so recovery_s = 0.5; the
    # fault covers whole seconds 40..48 only.
    g = series(100, 100, (40, 49, 30))
    r = analyse_recovery(g, [(40, 49.5)], warmup_s=10, duration_s=100, smooth_s=1)
    assert r.recovery_s == 0.5
    assert r.goodput_during_rps == 30


def test_exactly_threshold_times_baseline_counts_as_recovered():
    # 11.7/s after the fault against a baseline of 13/s is exactly 0.9 x 13,
    # but in floating point 0.9 * 13 = 11.700000000000001 while the 3-s mean
    # of 11.7 comes out as 11.699999999999998: the tolerance makes the tie count.
    g = series(100, 13, (40, 100, 11.7))
    r = analyse_recovery(g, [(40, 50)], warmup_s=10, duration_s=100)
    assert r.recovered and r.recovery_s == 0
    below = analyse_recovery(series(100, 13, (40, 100, 11.69)), [(40, 50)],
                             warmup_s=10, duration_s=100)
    assert below.metastable


def test_the_moving_average_uses_fewer_seconds_at_the_start_of_the_run():
    # Fault [1, 2) with smooth_s=4: at t = 2 only seconds 0..2 exist, all
    # 100, so their mean (100) meets the target and recovery_s = 0 (dividing
    # by 4 would give 75 and delay it to t = 3).
    r = analyse_recovery(series(10, 100), [(1, 2)], warmup_s=0, duration_s=10,
                         smooth_s=4, hold_s=1)
    assert r.recovery_s == 0


def test_a_dip_that_never_comes_back_is_metastable():
    g = series(100, 100, (40, 100, 20))
    r = analyse_recovery(g, [(40, 50)], warmup_s=10, duration_s=100)
    assert not r.recovered
    assert r.recovery_s is None
    assert r.metastable
    assert r.goodput_after_rps == 20


def test_one_noisy_second_above_threshold_is_not_recovery():
    # Goodput stays at 20/s after the fault except one second (55) at 300.
    # Its 3-s trailing mean is (20+20+300)/3 = 113.3 >= 90 at t = 55, 56, 57
    # and 20 again at 58: three seconds, fewer than the 5 the hold needs.
    g = series(100, 100, (40, 100, 20), (55, 56, 300))
    r = analyse_recovery(g, [(40, 50)], warmup_s=10, duration_s=100)
    assert not r.recovered and r.metastable and r.recovery_s is None
    # The hold is what rejects it: a 3-s hold accepts those three seconds.
    short = analyse_recovery(g, [(40, 50)], warmup_s=10, duration_s=100, hold_s=3)
    assert short.recovered and short.recovery_s == 5
    # Without smoothing the spike is a single second; hold 5 still rejects it.
    raw = analyse_recovery(g, [(40, 50)], warmup_s=10, duration_s=100, smooth_s=1)
    assert not raw.recovered


def test_a_recovery_interrupted_within_the_hold_restarts_the_count():
    # Back to 100 at 52 but a dip at 56 (smooth_s=1): 52..55 meet, 56 fails,
    # 57..61 meet, so t = 57 and recovery_s = 7.
    g = series(100, 100, (40, 52, 20), (56, 57, 20))
    r = analyse_recovery(g, [(40, 50)], warmup_s=10, duration_s=100, smooth_s=1)
    assert r.recovery_s == 7


def test_multiple_fault_windows_are_judged_as_their_span():
    # Faults at [40, 45) and [47, 50), given out of order; goodput is 20/s in
    # each and 100/s in the gap 45..46. Recovery is judged from 50: trailing
    # means t=50: (20+20+100)/3, t=51: (20+100+100)/3, t=52: 100 -> 2 s.
    g = series(100, 100, (40, 45, 20), (47, 50, 20))
    r = analyse_recovery(g, [(47, 50), (40, 45)], warmup_s=10, duration_s=100)
    assert (r.fault_start_s, r.fault_end_s) == (40, 50)
    assert r.recovered and r.recovery_s == 2
    # The gap counts as fault time: (5 x 20 + 2 x 100 + 3 x 20) / 10 = 36.
    assert r.goodput_during_rps == pytest.approx(36)
    assert r == analyse_recovery(g, [(40, 50)], warmup_s=10, duration_s=100)
    # Judged from the first window alone the answer would differ (from 45, t = 52).
    first = analyse_recovery(g, [(40, 45)], warmup_s=10, duration_s=100)
    assert first.recovery_s == 7
    overlapping = analyse_recovery(g, [(40, 46), (44, 50)], warmup_s=10, duration_s=100)
    assert overlapping == r


def test_no_fault_window_gives_none():
    g = series(100, 100)
    assert analyse_recovery(g, [], warmup_s=10, duration_s=100) is None
    assert analyse_recovery(g, (), warmup_s=10, duration_s=100) is None


def test_a_run_ending_too_soon_after_the_fault_is_refused():
    # The fault ends at 50; hold_s + smooth_s = 5 + 3 = 8 s of tail are needed.
    with pytest.raises(ValueError, match="the run ends too soon after the fault"):
        analyse_recovery(series(57, 100), [(40, 50)], warmup_s=10, duration_s=57)
    # A fault that outlasts the run is refused the same way.
    with pytest.raises(ValueError, match="ends too soon after the fault"):
        analyse_recovery(series(100, 100), [(40, 120)], warmup_s=10, duration_s=100)
    # Exactly 8 s is enough.
    r = analyse_recovery(series(58, 100), [(40, 50)], warmup_s=10, duration_s=58)
    assert r.recovered and r.recovery_s == 0


def test_a_partial_last_second_is_not_judged():
    # duration 57.9 s: the recorder's 58th bin covers [57, 57.9) only, so the
    # judged run is seconds 0..56 and 7 s < 8 s of tail remain.
    with pytest.raises(ValueError, match="ends too soon"):
        analyse_recovery(series(58, 100), [(40, 50)], warmup_s=10, duration_s=57.9)


def test_a_zero_baseline_is_no_baseline_and_judges_nothing():
    g = series(100, 0, (50, 100, 100))
    r = analyse_recovery(g, [(40, 50)], warmup_s=10, duration_s=100)
    assert r.verdict == "no_baseline"
    assert (r.recovered, r.metastable, r.recovery_s, r.goodput_before_rps) == (False, False, None, 0.0)
    assert r.goodput_during_rps == 0.0 and r.goodput_after_rps == 100.0
    assert r.target_rps is None and r.tail_s is None


def test_baseline_window_is_the_last_baseline_s_seconds_after_warmup():
    # 200/s during [10, 30), 100/s during [30, 60): the 30-s baseline before a
    # fault at 60 is [30, 60) -> 100; with warm-up ending at 40 it is [40, 60).
    g = series(120, 100, (10, 30, 200), (0, 10, 1000))
    r = analyse_recovery(g, [(60, 70)], warmup_s=10, duration_s=120)
    assert r.goodput_before_rps == 100
    longer = analyse_recovery(g, [(60, 70)], warmup_s=10, duration_s=120, baseline_s=50)
    # [10, 60): 20 s at 200 and 30 s at 100.
    assert longer.goodput_before_rps == pytest.approx((20 * 200 + 30 * 100) / 50)


def test_a_fault_at_the_end_of_warmup_falls_back_to_the_whole_run_before_it():
    g = series(60, 100, (0, 10, 50))
    r = analyse_recovery(g, [(10, 20)], warmup_s=10, duration_s=60)
    assert r.goodput_before_rps == 50
    # A fault inside warm-up: [0, 5) is the baseline.
    early = analyse_recovery(series(60, 100, (0, 5, 40)), [(5, 20)], warmup_s=10, duration_s=60)
    assert early.goodput_before_rps == 40
    with pytest.raises(ValueError, match="no whole second of goodput before the fault"):
        analyse_recovery(g, [(0.5, 20)], warmup_s=10, duration_s=60)


def test_bad_arguments_name_the_value():
    g = series(100, 100)
    with pytest.raises(ValueError, match=r"fault window \(50, 40\)"):
        analyse_recovery(g, [(50, 40)], warmup_s=10, duration_s=100)
    with pytest.raises(ValueError, match="smooth_s"):
        analyse_recovery(g, [(40, 50)], warmup_s=10, duration_s=100, smooth_s=0)
    with pytest.raises(ValueError, match="needs 100"):
        analyse_recovery(g[:90], [(40, 50)], warmup_s=10, duration_s=100)
    with pytest.raises(ValueError, match="non-negative"):
        analyse_recovery(series(100, 100, (5, 6, -1)), [(40, 50)], warmup_s=10, duration_s=100)


def test_to_dict_is_json_friendly_and_round_trips():
    g = series(100, 100, (40, 100, 20))
    r = analyse_recovery(g, [(40, 50)], warmup_s=10, duration_s=100)
    d = r.to_dict()
    assert {"recovered", "recovery_s", "metastable"} <= d.keys()
    assert d["recovered"] is False and d["recovery_s"] is None and d["metastable"] is True
    assert Recovery(**json.loads(json.dumps(d))) == r


def test_to_dict_turns_a_fault_without_whole_seconds_into_none():
    g = series(100, 100)
    r = analyse_recovery(g, [(40.2, 40.8)], warmup_s=10, duration_s=100)
    assert math.isnan(r.goodput_during_rps)
    d = r.to_dict()
    assert d["goodput_during_rps"] is None
    json.dumps(d, allow_nan=False)


def test_goodput_mean_over_uses_whole_seconds_inside_the_interval():
    g = [0, 1, 2, 3, 4, 5]
    assert goodput_mean_over(g, 2.5, 5) == 3.5  # seconds 3 and 4
    assert goodput_mean_over(g, 0, 6) == 2.5
    assert goodput_mean_over(g, 4, 100) == 4.5  # clipped to the series
    assert math.isnan(goodput_mean_over(g, 2.2, 2.9))
    with pytest.raises(ValueError, match="before its start"):
        goodput_mean_over(g, 3, 2)


def test_amplification_series_divides_per_second_with_nan_for_no_requests():
    a = amplification_series([11, 0, 5, 0], [10, 0, 0, 4])
    assert a[0] == pytest.approx(1.1)
    assert math.isnan(a[1]) and math.isnan(a[2])
    assert a[3] == 0
    with pytest.raises(ValueError, match="3 seconds"):
        amplification_series([1, 2, 3], [1, 2])


@settings(max_examples=300, deadline=None, derandomize=True)
@given(data=hs.data())
def test_scaling_the_series_does_not_change_the_verdict(data):
    warmup = data.draw(hs.integers(0, 10))
    pre = data.draw(hs.integers(1, 40))
    fault_len = data.draw(hs.integers(1, 20))
    smooth = data.draw(hs.integers(1, 4))
    hold = data.draw(hs.integers(1, 6))
    post = data.draw(hs.integers(hold + smooth, hold + smooth + 30))
    threshold = data.draw(hs.sampled_from([0.5, 0.8, 0.9, 1.0]))
    start = warmup + pre
    end = start + fault_len
    n = end + post
    # Counts are integers (as the recorder's are); every second before the
    # fault has traffic so the baseline is positive.
    before = data.draw(hs.lists(hs.integers(1, 1000), min_size=start, max_size=start))
    rest = data.draw(hs.lists(hs.integers(0, 1000), min_size=n - start, max_size=n - start))
    g = np.array(before + rest, dtype=float)
    scale = data.draw(hs.floats(1e-3, 1e3, allow_nan=False, allow_infinity=False))
    kwargs = dict(warmup_s=warmup, duration_s=n, threshold=threshold, hold_s=hold, smooth_s=smooth)
    r = analyse_recovery(g, [(start, end)], **kwargs)
    scaled = analyse_recovery(g * scale, [(start, end)], **kwargs)
    assert (scaled.recovered, scaled.recovery_s, scaled.metastable) == (
        r.recovered, r.recovery_s, r.metastable)
    assert scaled.goodput_before_rps == pytest.approx(scale * r.goodput_before_rps, rel=1e-12)


# ------------------------------------------------------------ metastable or not yet recovered


def _series(before: float, during: float, after: list[float], fault=(20, 30)) -> list[float]:
    return [before] * fault[0] + [during] * (fault[1] - fault[0]) + after


def test_a_recovery_that_starts_just_before_the_end_is_not_called_metastable():
    # Goodput climbs back from 0 at 1 successes/s per second... too late to hold 5 s at 90%.
    after = [0.0] * 20 + [min(100.0, 15.0 * k) for k in range(1, 8)]
    r = analyse_recovery(_series(100.0, 0.0, after), [(20, 30)], warmup_s=0, duration_s=57)
    assert not r.recovered and r.verdict == "not_recovered_within_run" and not r.metastable
    assert r.goodput_trend_rps_per_s > 0


def test_degraded_long_after_the_trigger_with_flat_goodput_is_metastable():
    after = [2.0] * 40
    in_flight = [10.0] * 30 + [500.0] * 40
    r = analyse_recovery(_series(100.0, 0.0, after), [(20, 30)], warmup_s=0, duration_s=70,
                         in_flight_per_s=in_flight)
    assert r.verdict == "metastable" and r.metastable
    assert r.tail_s == 20.0 and r.goodput_tail_rps == 2.0 and r.goodput_trend_rps_per_s == 0.0
    assert r.backlog_trend_per_s == 0.0 and r.target_rps == 90.0


def test_too_little_run_after_the_fault_is_inconclusive_not_metastable():
    r = analyse_recovery(_series(100.0, 0.0, [0.0] * 12), [(20, 30)], warmup_s=0, duration_s=42)
    assert r.verdict == "not_recovered_within_run"


def test_a_draining_backlog_is_a_recovery_under_way():
    after = [5.0] * 40
    in_flight = [10.0] * 30 + [400.0 - 10.0 * k for k in range(40)]
    r = analyse_recovery(_series(100.0, 0.0, after), [(20, 30)], warmup_s=0, duration_s=70,
                         in_flight_per_s=in_flight)
    assert r.backlog_trend_per_s == pytest.approx(-10.0)
    assert r.verdict == "not_recovered_within_run"


def test_a_fleet_already_failing_before_the_fault_is_flagged():
    offered = [100.0] * 70
    healthy = analyse_recovery(_series(99.0, 0.0, [99.0] * 40), [(20, 30)], warmup_s=0, duration_s=70,
                               offered_per_s=offered)
    assert healthy.baseline_success_ratio == pytest.approx(0.99) and not healthy.baseline_degraded
    collapsed = analyse_recovery(_series(50.0, 0.0, [50.0] * 40), [(20, 30)], warmup_s=0, duration_s=70,
                                 offered_per_s=offered)
    assert collapsed.recovered and collapsed.baseline_degraded
    assert collapsed.baseline_success_ratio == pytest.approx(0.5)


def test_replications_that_disagree_list_each_verdict():
    from sim.runner.aggregate import combine_summaries

    def summary(verdict, recovery_s):
        return {"goodput_rps": 1.0, "recovery": {"verdict": verdict, "recovered": verdict == "recovered",
                                                 "recovery_s": recovery_s, "metastable": verdict == "metastable"}}

    out = combine_summaries([summary("recovered", 4.0), summary("metastable", None), summary("recovered", 6.0)])
    assert out["recovery"]["verdict"] == "mixed"
    assert [(r["verdict"], r["recovery_s"]) for r in out["recovery"]["by_replication"]] == [
        ("recovered", 4.0), ("metastable", None), ("recovered", 6.0)]
    same = combine_summaries([summary("recovered", 4.0), summary("recovered", 6.0)])
    assert same["recovery"]["verdict"] == "recovered" and same["recovery"]["recovery_s"] == 5.0
