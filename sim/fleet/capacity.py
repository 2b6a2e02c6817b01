"""Each service's capacity and the load the workload offers it, from the configuration alone.

So a user can aim an experiment at a target utilisation without working the
mean out of a distribution by hand: ``fleetsim check`` prints these figures
and every ``summary.json`` records them (``backend.<service>.capacity_rps``,
``offered_rps``, ``offered_utilization``).

Capacity is the rate the service's instances complete tries at when every
worker is busy: the sum over instances of ``workers / mean service time``,
each instance's mean scaled by its ``service_time_factor``. With a
calibrated timer error the mean adds the error's mean (the floor at 0 is
ignored: the error is small against the service time, or the profile would
say so). Offered load is the calls the workload sends the service, the rate
schedule's integral over the measurement window (load spikes included) times
the service's share, per second: first tries only, so retries and health
checks come on top. ``offered_utilization`` is their ratio (above 1 the
service cannot keep up even without retries); ``peak_offered_rps`` is the
highest instantaneous rate in the window (exact when every region's clients
follow the same schedule; with a load spike in one region only, an upper
bound).
"""

from __future__ import annotations

import math

from sim.components.workload import RateFunction
from sim.config.models import Experiment
from sim.config.naming import backend_name

from .graph import service_mix


def _mean_service_s(service, factor: float) -> float:
    mean = service.service_time_s.mean * factor
    if service.timer_error_s is not None:
        mean += service.timer_error_s.mean
    return mean


def service_load(exp: Experiment) -> dict[str, dict[str, float]]:
    """Per service in the workload's mix: capacity and offered load (requests/s) and their ratio.

    Returns:
        ``{service: {"capacity_rps", "offered_rps", "peak_offered_rps",
        "offered_utilization"}}``; ``offered_rps`` is the mean over the
        measurement window.
    """
    topo = exp.topology
    window_s = exp.duration_s - exp.warmup_s
    offered_calls = 0.0
    peak = 0.0
    for region, pop in topo.clients.items():
        spikes = [(f.at_s, f.at_s + f.for_s, f.factor) for f in exp.faults
                  if f.kind == "load_spike" and f.target.region in (None, region)]
        rate = RateFunction(exp.workload.rate_schedule, pop.share, spikes)
        offered_calls += rate.integral(exp.warmup_s, exp.duration_s)
        # The rate is piecewise linear between breakpoints: its peak is at one of them or an edge.
        points = [exp.warmup_s, exp.duration_s, *[t for t in rate.times if exp.warmup_s <= t <= exp.duration_s]]
        peak += max(rate.rate(t) for t in points)
    out = {}
    for svc, share in service_mix(exp).items():
        s = topo.services[svc]
        capacity = 0.0
        for az, n in s.instances_per_az.items():
            for i in range(n):
                override = s.instance_overrides.get(backend_name(svc, az, i))
                factor = override.service_time_factor if override else 1.0
                mean_s = _mean_service_s(s, factor)
                capacity += s.workers / mean_s if mean_s > 0 else math.inf  # instant service
        offered = offered_calls * share / window_s if window_s > 0 else 0.0
        out[svc] = {"capacity_rps": capacity, "offered_rps": offered, "peak_offered_rps": peak * share,
                    "offered_utilization": offered / capacity if capacity else math.inf}
    return out


__all__ = ["service_load"]
