"""Gateway routes and clusters (Route, RetryPolicy, RetryBackOff, Cluster, LeastRequestLbConfig,
CircuitBreakers, RetryBudget, OutlierDetection, HealthCheck, HttpHealthCheck, CommonLbConfig).

Each is an extension of a gateway pool. Values stay small enough to matter
in a run of a few seconds: route timeouts that fire, breakers of a few
connections and requests, connect timeouts shorter than a round trip,
retry budgets down to 0 %, outlier intervals and ejections under a second,
probes every few hundred milliseconds. Every field is sometimes left to its
default (so derived defaults are resolved), sometimes given.

With ``Options(exact_time=True)`` only what scales exactly with time is
drawn: no retries (Envoy's back-off is drawn in whole milliseconds), no
jitter (whole milliseconds), health-check intervals in multiples of 4 ms, an
update merge window of 0 (its rule adds 1 ms).
"""

from __future__ import annotations

from hypothesis import strategies as st

from .distributions import floats
from .registry import Options, Plan, extension

RETRY_ON = ["5xx", "gateway-error", "reset", "connect-failure", "retriable-status-codes"]
STATUSES = [500, 502, 503, 504, 429]


@st.composite
def fields(draw, spec: dict) -> dict:
    """A mapping with each of ``spec``'s keys set to a draw of its strategy, or left out."""
    out = {}
    for key, values in spec.items():
        if draw(st.booleans()):
            out[key] = draw(values)
    return out


def _ms_multiple(lo_ms: int, hi_ms: int, step_ms: int = 4):
    """Seconds that are whole multiples of ``step_ms`` milliseconds."""
    return st.integers(min_value=lo_ms // step_ms, max_value=hi_ms // step_ms).map(lambda k: k * step_ms / 1000)


# ---------------------------------------------------------------- route


@extension("pool", "route.timeout_s")
def _route_timeout(plan: Plan, place: str, node: dict, opts: Options):
    return st.one_of(floats(0.005, 1.0), st.sampled_from([0.05, 2.0, 15.0]))


@st.composite
def retry_policies(draw, route_timeout_s: float, opts: Options) -> dict:
    """A route's retry policy; its per-try timeout below ``route_timeout_s`` (mostly)."""
    on = draw(st.lists(st.sampled_from(RETRY_ON), min_size=1, max_size=3, unique=True))
    spec = {
        "retriable_status_codes": st.lists(st.sampled_from(STATUSES), max_size=3, unique=True),
        "num_retries": st.just(0) if opts.exact_time else st.integers(min_value=0, max_value=3),
        "per_try_timeout_s": floats(0.001, route_timeout_s * 0.99),
        "retry_host_predicate": st.sampled_from([[], ["previous_hosts"]]),
        "host_selection_retry_max_attempts": st.integers(min_value=1, max_value=5),
        # Exact-time relations halve durations: a 1 ms base would fall below the schema's minimum.
        "retry_back_off": back_offs(min_base_s=0.002 if opts.exact_time else 0.001),
    }
    rp = {"retry_on": on, **draw(fields(spec))}
    if opts.exact_time:
        rp["num_retries"] = 0  # no retry, so no whole-millisecond back-off
    return rp


@st.composite
def back_offs(draw, min_base_s: float = 0.001) -> dict:
    """Envoy's retry back-off: a base (whole milliseconds and not, at least ``min_base_s``), a max or the default."""
    out = {}
    if draw(st.booleans()):
        out["base_interval_s"] = draw(st.sampled_from([b for b in (0.001, 0.005, 0.025, 0.0255, 0.1)
                                                       if b >= min_base_s]))
    if draw(st.booleans()):
        out["max_interval_s"] = out.get("base_interval_s", 0.025) * draw(st.sampled_from([1, 3, 20]))
    return out


@extension("pool", "route.retry_policy", nullable=True)
def _retry_policy(plan: Plan, place: str, node: dict, opts: Options):
    return retry_policies(node.get("route", {}).get("timeout_s", 15.0), opts)


# ---------------------------------------------------------------- cluster


@extension("pool", "cluster.lb_policy")
def _lb_policy(plan: Plan, place: str, node: dict, opts: Options):
    return st.sampled_from(["ROUND_ROBIN", "RANDOM", "LEAST_REQUEST"])


@extension("pool", "cluster.least_request_lb_config")
def _least_request(plan: Plan, place: str, node: dict, opts: Options):
    return fields({"choice_count": st.integers(min_value=2, max_value=5),
                   "active_request_bias": st.sampled_from([0.0, 0.5, 1.0, 1.5])})


@st.composite
def circuit_breakers(draw) -> dict:
    """Breakers from 1 connection, 0 pending and 1 request up to Envoy's 1024; a retry budget or none."""
    small = st.integers(min_value=1, max_value=6) | st.sampled_from([1024])
    cb = draw(fields({"max_connections": small, "max_pending_requests": st.integers(min_value=0, max_value=6) | small,
                      "max_requests": small, "max_retries": st.integers(min_value=0, max_value=4)}))
    if draw(st.booleans()):
        cb["retry_budget"] = draw(fields({"budget_percent": st.sampled_from([0.0, 10.0, 20.0, 50.0, 100.0]),
                                          "min_retry_concurrency": st.integers(min_value=0, max_value=4)}))
    return cb


@extension("pool", "cluster.circuit_breakers")
def _circuit_breakers(plan: Plan, place: str, node: dict, opts: Options):
    return circuit_breakers()


@extension("pool", "cluster.connect_timeout_s")
def _connect_timeout(plan: Plan, place: str, node: dict, opts: Options):
    # Below a same-AZ round trip sometimes: connects time out.
    return st.sampled_from([0.0001, 0.0005, 0.002, 0.25, 5.0])


@extension("pool", "cluster.http_protocol")
def _http_protocol(plan: Plan, place: str, node: dict, opts: Options):
    return st.sampled_from(["http1", "http2"])


@extension("pool", "cluster.max_concurrent_streams")
def _max_streams(plan: Plan, place: str, node: dict, opts: Options):
    return st.sampled_from([1, 2, 5, 100, 2147483647])


@st.composite
def outlier_detections(draw, opts: Options) -> dict:
    """Every outlier-detection field, each given or left to its default; intervals fit a short run."""
    percent = st.sampled_from([0, 1, 50, 99, 100])
    od = draw(fields({
        "consecutive_5xx": st.integers(min_value=0, max_value=6),
        "consecutive_gateway_failure": st.integers(min_value=0, max_value=6),
        "interval_s": st.sampled_from([0.1, 0.25, 1.0, 10.0]),
        "base_ejection_time_s": st.sampled_from([0.05, 0.5, 30.0, 299.5, 300.0, 450.0]),
        "max_ejection_time_jitter_s": st.just(0.0) if opts.exact_time else st.sampled_from([0.0, 0.01, 0.5]),
        "max_ejection_percent": percent,
        "always_eject_one_host": st.booleans(),
        "enforcing_consecutive_5xx": percent,
        "enforcing_consecutive_gateway_failure": percent,
        "enforcing_success_rate": percent,
        "success_rate_minimum_hosts": st.integers(min_value=0, max_value=5),
        "success_rate_request_volume": st.sampled_from([0, 1, 5, 100]),
        "success_rate_stdev_factor": st.sampled_from([0, 500, 1900]),
        "failure_percentage_threshold": percent,
        "enforcing_failure_percentage": percent,
        "failure_percentage_minimum_hosts": st.integers(min_value=0, max_value=5),
        "failure_percentage_request_volume": st.sampled_from([0, 1, 5, 50]),
        "successful_active_health_check_uneject_host": st.booleans(),
    }))
    if draw(st.booleans()):  # given: at least the base (Envoy refuses less)
        od["max_ejection_time_s"] = od.get("base_ejection_time_s", 30.0) * draw(st.sampled_from([1, 2, 20]))
    return od


@extension("pool", "cluster.outlier_detection", nullable=True)
def _outlier_detection(plan: Plan, place: str, node: dict, opts: Options):
    return outlier_detections(opts)


@st.composite
def health_checks(draw, opts: Options) -> dict:
    """Active health checks: the required fields and any of the rest (derived intervals given or not)."""
    if opts.exact_time:
        interval = _ms_multiple(20, 2000)
        jitter = st.just(0.0)
        percent = st.just(0)
    else:
        interval = st.sampled_from([0.05, 0.1, 0.25, 1.0, 3.0])
        jitter = st.sampled_from([0.0, 0.01, 0.2])
        percent = st.sampled_from([0, 10, 100])
    hc = {"timeout_s": draw(st.sampled_from([0.001, 0.02, 0.5])),
          "interval_s": draw(interval),
          "unhealthy_threshold": draw(st.integers(min_value=1, max_value=3)),
          "healthy_threshold": draw(st.integers(min_value=1, max_value=3))}
    hc.update(draw(fields({
        "initial_jitter_s": jitter, "interval_jitter_s": jitter, "interval_jitter_percent": percent,
        "unhealthy_interval_s": interval, "unhealthy_edge_interval_s": interval,
        "healthy_edge_interval_s": interval, "no_traffic_interval_s": interval,
        "no_traffic_healthy_interval_s": interval,
        "http_health_check": fields({"retriable_statuses": st.lists(st.sampled_from(STATUSES), max_size=3,
                                                                    unique=True)}),
    })))
    return hc


@extension("pool", "cluster.health_check", nullable=True)
def _health_check(plan: Plan, place: str, node: dict, opts: Options):
    return health_checks(opts)


@extension("pool", "cluster.common_lb_config")
def _common_lb_config(plan: Plan, place: str, node: dict, opts: Options):
    window = st.just(0.0) if opts.exact_time else st.sampled_from([0.0, 0.05, 1.0])
    out = fields({"healthy_panic_threshold": st.sampled_from([0.0, 33.3, 50.0, 100.0]),
                  "update_merge_window_s": window})
    if opts.exact_time:  # the window's rule adds 1 ms: only 0 scales
        return out.map(lambda d: {**d, "update_merge_window_s": 0.0})
    return out
