"""Failures the property and metamorphic tests found, reduced to minimal experiments and kept.

Each test states the correct behaviour; the comment above it says what the
simulator did before the fix. A bug found and not yet fixed is kept as a
strict xfail naming what is violated (when the fix lands, strict xfail turns
the pass into a failure and the fix removes the mark). The experiments are tests/fleet_builders.py's BASE (one AZ,
one gateway, one backend, constant latencies, a call a second) with the
changes shown; ``dump_resolved`` of each is the YAML ``fleetsim run``
reproduces it with.
"""

from __future__ import annotations

import json

import pytest

import sim.components.workload as workload_module
from sim.fleet import Fleet, FleetError

from .fleet_builders import experiment
from .property_runs import summary_text


def slowdown(at_s: float, for_s: float) -> dict:
    return {"kind": "backend_slowdown", "at_s": at_s, "for_s": for_s, "factor": 2.0}


# ---------------------------------------------------------------- recovery verdicts
# The fleet accepted these fault timelines, simulated the whole run, then died in
# sim.metrics.summary.recovery_section with a ValueError from analyse_recovery
# (fleetsim run printed a traceback). Now sim.fleet.graph._check_fault_windows
# refuses the first two before t=0, and the third gets the verdict no_baseline.


# Was: a fault starting before the first whole second after the warm-up leaves no second to take a
# baseline from: accepted by the fleet, then ValueError('no whole second of goodput before the
# fault') after the run.
def test_a_fault_starting_before_the_first_whole_second_is_refused_or_judged():
    exp = experiment(faults=[slowdown(0.5, 1.0)], duration_s=10)  # warm-up 0, fault at 0.5 s
    with pytest.raises(FleetError, match="before the first whole second") as e:
        Fleet(exp)
    assert e.value.path == ("faults", 0, "at_s")
    assert Fleet(experiment(faults=[slowdown(1.0, 1.0)], duration_s=10)).run()["summary"]["recovery"]


# Was: the fleet checks duration_s >= last fault end + hold_s + smooth_s, recovery counts whole
# seconds (floor(duration_s)): a run 0.6 s past the fault end + 8 s is accepted, then
# ValueError('the run ends too soon after the fault') after the run.
def test_a_run_too_short_by_a_fraction_of_a_second_is_refused_or_judged():
    exp = experiment(faults=[slowdown(2.0, 2.6)], duration_s=12.6)  # ends at 4.6 s; 12.6 >= 4.6 + 8
    with pytest.raises(FleetError, match="must be at least 13 s") as e:
        Fleet(exp)
    assert e.value.path == ("duration_s",)
    assert Fleet(experiment(faults=[slowdown(2.0, 2.6)], duration_s=13)).run()["summary"]["recovery"]


# Was: a run where no call succeeded before the fault (every call failing, or no traffic yet) ends
# in ValueError('baseline goodput before the fault ... is 0') after the run instead of a summary
# saying recovery cannot be judged.
def test_a_fault_after_a_baseline_without_success_is_judged():
    exp = experiment(faults=[slowdown(2.0, 1.0)], duration_s=11,
                     topology__services__api__error_probability=1.0)
    summary = Fleet(exp).run()["summary"]
    assert summary["recovery"]["verdict"] == "no_baseline"
    assert summary["recovery"]["recovered"] is False and summary["recovery"]["metastable"] is False


# ---------------------------------------------------------------- retry amplification


# Was: retries.amplification counts a timed-out call's backend try in the numerator (its late
# answer, ClientPopulation.on_response) but not the call in the denominator
# (answered_with_backend_tries is counted when the call ends, before that answer): 1.5 without any
# retry, documented as exactly 1.
def test_amplification_is_one_without_retries_when_clients_time_out():
    # Three calls; the first opens the connection (31.1 ms) and times out at 30 ms, the
    # other two take 29.1 ms. Each made one backend try. Found by the thorough profile.
    exp = experiment(workload__client={"timeout_s": 0.03})
    summary = Fleet(exp).run()["summary"]
    assert summary["requests"]["failed"] == {"client_timeout": 1}
    assert summary["retries"]["amplification"] == 1.0


# ---------------------------------------------------------------- floating-point path dependence


# Was: ClientPopulation._batch schedules a call's first try at batch_time + ((t - batch_time) +
# latency), not t + latency: the look-ahead (LOOKAHEAD_S, an implementation constant) moves
# arrival times by a rounding, and results with them (the last digits here; with constant
# distributions a tie flips and counts change: succeeded 22 -> 23 in the case the time-scaling
# relation found).
def test_look_ahead_batching_leaves_results_unchanged():
    exp = experiment(workload__arrivals="poisson", workload__rate_schedule=[{"at_s": 0, "rate_per_s": 30.0}],
                     topology__network={"same_az_s": 0.0002, "cross_az_s": 0.0005, "cross_region_s": 0.03,
                                        "internet_s": 0.0005}, duration_s=2.0, seed=1)
    old = workload_module.LOOKAHEAD_S
    try:
        first = summary_text(Fleet(exp).run())
        workload_module.LOOKAHEAD_S = 0.0625
        second = summary_text(Fleet(exp).run())
    finally:
        workload_module.LOOKAHEAD_S = old
    assert first == second


# Was: a load spike by 1 rebuilds the clients' rate function with breakpoints at its window
# (RateFunction._apply_spikes), and advance() integrates a ramp cut there in two pieces: arrival
# times move by a rounding and the summary's last digits with them.
def test_a_load_spike_by_one_changes_nothing():
    kw = dict(workload__arrivals="poisson", duration_s=2.0, seed=11,
              workload__rate_schedule=[{"at_s": 0, "rate_per_s": 2.0}, {"at_s": 0.25, "rate_per_s": 6.0, "ramp_s": 1.0}])
    spike = {"kind": "load_spike", "at_s": 0.3, "for_s": 1.7, "factor": 1.0}  # cuts the ramp at 0.3 s
    a = json.loads(summary_text(Fleet(experiment(**kw)).run()))
    b = json.loads(summary_text(Fleet(experiment(**kw, faults=[spike])).run()))
    for key in ("faults", "recovery", "recovery_rules"):
        a.pop(key), b.pop(key)
    assert a == b
