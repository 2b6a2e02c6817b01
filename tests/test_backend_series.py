"""Backend figures a real backend also has: wasted requests, and its queue length each second."""

from __future__ import annotations

import pytest

from sim.fleet import Fleet

from .fleet_builders import experiment


def test_queue_length_per_second_grows_at_the_excess_of_arrivals_over_capacity():
    # 30 requests/s, evenly spaced, into one worker that serves 20/s: the queue
    # grows by 10 each second (the gateway adds a fixed delay, no randomness).
    exp = experiment(workload__rate_schedule=[{"at_s": 0, "rate_per_s": 30.0}], duration_s=8.0,
                     topology__services__api__service_time_s=0.05,
                     topology__services__api__queue_limit=1000)
    ts = Fleet(exp, 0).run()["timeseries"]
    q = ts["queue_api"]
    assert len(q) == 8
    for k, v in enumerate(q):
        assert abs(v - 10 * (k + 1)) <= 1, (k, q)


def test_wasted_requests_count_the_tries_served_for_nobody():
    # A client timeout of 30 ms against a 50 ms service: every try is served after its
    # caller left, so each served try is one wasted request of exactly 50 ms.
    exp = experiment(workload__rate_schedule=[{"at_s": 0, "rate_per_s": 10.0}], duration_s=6.0,
                     topology__services__api__service_time_s=0.05,
                     topology__gateways__gw__route={"timeout_s": 0.03})
    s = Fleet(exp, 0).run()["summary"]
    b = s["backend"]["api"]
    assert b["wasted_requests"] > 50
    assert b["wasted_work_s"] == pytest.approx(0.05 * b["wasted_requests"])
