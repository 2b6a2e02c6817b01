"""Backend services (Service, InstanceOverride, TimerError): every field is an extension of a service.

Service times of 2 ms to 200 ms (so some runs overload), queues down to 0
and unbounded (``null``), error probabilities up to 1, LIFO, expired-drop,
per-instance overrides and a calibrated timer error.
"""

from __future__ import annotations

from hypothesis import strategies as st

from sim.config.naming import backend_name

from .distributions import distributions, floats, timer_errors
from .registry import Options, Plan, extension


@extension("service", "service_time_s", required=True)
@st.composite
def _service_time(draw, plan: Plan, place: str, node: dict, opts: Options):
    return draw(distributions(draw(st.sampled_from([0.002, 0.02, 0.2])), opts.dists))


@extension("service", "workers")
def _workers(plan: Plan, place: str, node: dict, opts: Options):
    return st.integers(min_value=1, max_value=4)


@extension("service", "queue_limit", nullable=True)
def _queue_limit(plan: Plan, place: str, node: dict, opts: Options):
    return st.sampled_from([0, 1, 3, 50, None])


@extension("service", "error_probability")
def _error_probability(plan: Plan, place: str, node: dict, opts: Options):
    return st.sampled_from(opts.error_probabilities)


@extension("service", "request_bytes")
def _request_bytes(plan: Plan, place: str, node: dict, opts: Options):
    return distributions(1000.0, opts.dists)


@extension("service", "response_bytes")
def _response_bytes(plan: Plan, place: str, node: dict, opts: Options):
    return distributions(5000.0, opts.dists)


@extension("service", "queue_discipline")
def _queue_discipline(plan: Plan, place: str, node: dict, opts: Options):
    return st.sampled_from(["fifo", "lifo"])


@extension("service", "drop_expired")
def _drop_expired(plan: Plan, place: str, node: dict, opts: Options):
    return st.booleans()


@extension("service", "timer_error_s", nullable=True)
def _timer_error(plan: Plan, place: str, node: dict, opts: Options):
    return timer_errors()


@st.composite
def instance_overrides(draw, instances: list[str]) -> dict:
    """Overrides of 1-2 of ``instances``: a service-time factor, an LB weight, or both."""
    chosen = draw(st.lists(st.sampled_from(instances), min_size=1, max_size=2, unique=True))
    out = {}
    for inst in chosen:
        o = {}
        if draw(st.booleans()):
            o["service_time_factor"] = draw(floats(0.2, 5.0))
        if draw(st.booleans()):
            o["lb_weight"] = draw(st.integers(min_value=1, max_value=128))
        out[inst] = o
    return out


@extension("service", "instance_overrides")
def _instance_overrides(plan: Plan, place: str, node: dict, opts: Options):
    per_az = plan.services[place]
    return instance_overrides([backend_name(place, az, i) for az, n in per_az.items() for i in range(n)])
