"""Every count of a call covers the same cohort: the calls made after the warm-up.

``requests.offered``, ``client.calls`` and ``client.tries`` count the same
calls, so without client retries they are equal; without any retry,
``retries.amplification`` (backend tries per answered call that reached a
backend) is exactly 1, not 1 minus the calls still in flight.
"""

from __future__ import annotations

from sim.fleet import Fleet

from .fleet_builders import experiment


def _fleet(**changes):
    exp = experiment(workload__arrivals="poisson", workload__rate_schedule=[{"at_s": 0, "rate_per_s": 150.0}],
                     duration_s=12.0, warmup_s=3.0, **changes)
    return Fleet(exp, 0)


def _run(**changes):
    return _fleet(**changes).run()["summary"]


def test_calls_tries_and_offered_count_the_same_calls_and_amplification_is_exactly_one():
    s = _run()
    offered = s["requests"]["offered"]
    assert offered > 1000
    assert s["client"]["calls"] == s["client"]["tries"] == offered
    assert s["requests"]["succeeded"] + sum(s["requests"]["failed"].values()) + s["requests"]["in_flight"] == offered
    assert s["retries"]["amplification"] == 1.0


def test_with_client_retries_tries_are_calls_plus_retries_of_the_same_cohort():
    fleet = _fleet(workload__client={"max_attempts": 3, "timeout_s": 0.004},
                   topology__services__api__service_time_s={"dist": "exponential", "mean": 0.003})
    s = fleet.run()["summary"]
    c = s["client"]
    assert c["calls"] == s["requests"]["offered"]
    assert c["retries"] > 0 and c["timeouts"] > 0
    # A call's tries are its first try and its retries, except a retry still in
    # its back-off at the end: decided, not yet sent.
    in_backoff = sum(1 for p in fleet.clients for call in p.live if call.counted and call.current is None)
    assert c["tries"] == c["calls"] + c["retries"] - in_backoff
    assert s["retries"]["amplification"] > 1.0
