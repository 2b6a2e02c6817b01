"""The control plane (``control_plane``) in its data-plane mode, every field drawn.

The control-plane-only mode needs a workload of zero rates and no faults,
which the whole-schema generator does not draw; tests/test_controlplane.py
runs it. Events stay inside the run; back-off, debounce and memory settings
keep their cross-field rules (max at least initial, a limit above the start).
"""

from __future__ import annotations

from hypothesis import strategies as st

from .registry import Options, Plan, extension


def _times(plan: Plan):
    return st.floats(min_value=0.0, max_value=plan.duration_s * 0.9, allow_nan=False)


@st.composite
def _events(draw, plan: Plan, replicas: int, services: int):
    out = []
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        kind = draw(st.sampled_from(["endpoint_churn", "deploy", "replica_restart"]))
        at = draw(_times(plan))
        if kind == "replica_restart":
            ev = {"event": kind, "at_s": at, "down_s": draw(st.floats(min_value=0.05, max_value=2.0))}
            if draw(st.booleans()):
                ev["replica"] = draw(st.integers(min_value=0, max_value=replicas - 1))
        elif kind == "endpoint_churn":
            ev = {"event": kind, "at_s": at, "services": draw(st.integers(min_value=1, max_value=services)),
                  "over_s": draw(st.sampled_from([0.0, 0.5]))}
        else:
            ev = {"event": kind, "at_s": at, "services": draw(st.integers(min_value=1, max_value=services)),
                  "add": draw(st.booleans()), "bad": draw(st.sampled_from(["none", "nack", "errors"]))}
        out.append(ev)
    return out


@st.composite
def control_planes(draw, plan: Plan):
    """A data-plane-mode ``control_plane`` section for ``plan``."""
    replicas = draw(st.integers(min_value=1, max_value=3))
    services = draw(st.integers(min_value=1, max_value=20))
    initial = draw(st.sampled_from([0.05, 0.5]))
    after = draw(st.sampled_from([0.0, 0.1]))
    push = {"mode": draw(st.sampled_from(["sotw", "delta"])), "resync": draw(st.sampled_from(["full", "changed"])),
            "debounce": {"debounce_after_s": after, "debounce_max_s": after + draw(st.sampled_from([0.0, 1.0]))}}
    # Left out, throttle and request limit resolve from the cores (Istio's rule).
    if draw(st.booleans()):
        push["push_throttle"] = draw(st.integers(min_value=1, max_value=5))
    if draw(st.booleans()):
        push["max_requests_per_s"] = draw(st.sampled_from([2.0, 100.0]))
    if draw(st.booleans()):
        push["canary"] = {"fraction": draw(st.sampled_from([0.3, 0.5])), "hold_s": draw(st.sampled_from([0.2, 1.0]))}
    if draw(st.booleans()):
        push["rollback"] = {"nack_threshold": draw(st.integers(min_value=1, max_value=2)),
                            "error_detect_s": draw(st.sampled_from([0.1, 1.0]))}
    return {
        "mode": "data_plane", "replicas": replicas, "cores": draw(st.integers(min_value=1, max_value=4)),
        "cpu_per_push_s": draw(st.sampled_from([0.0, 0.001])),
        "cpu_per_resource_s": draw(st.sampled_from([0.0, 1e-5])),
        "cpu_per_stream_s": draw(st.sampled_from([0.0, 0.001])),
        "egress_bytes_per_s": draw(st.sampled_from([None, 1e6])),
        "latency_s": draw(st.sampled_from([0.0, 0.001])),
        "resources": {"services": services, "listeners": draw(st.integers(min_value=1, max_value=3)),
                      "listener_bytes": 1000, "route_base_bytes": 100, "route_bytes_per_service": 10,
                      "cluster_bytes": 400, "cla_base_bytes": 40,
                      "endpoints_per_service": draw(st.integers(min_value=0, max_value=4)), "endpoint_bytes": 20,
                      "response_overhead_bytes": 100, "delta_resource_overhead_bytes": 25},
        "push": push,
        "reconnect": {"initial_s": initial, "max_s": initial * draw(st.sampled_from([1.0, 8.0])),
                      "jitter": draw(st.sampled_from(["full", "none"]))},
        "subscribers": {"apply_cpu_base_s": draw(st.sampled_from([0.0, 0.002])),
                        "apply_cpu_per_resource_s": draw(st.sampled_from([0.0, 1e-5])),
                        "memory_bytes": 60e6, "memory_limit_bytes": draw(st.sampled_from([70e6, 512e6])),
                        "apply_leak_bytes": draw(st.sampled_from([0.0, 4e6])),
                        "bad_version_error_probability": draw(st.sampled_from([0.0, 0.5, 1.0])),
                        "restart_s": draw(st.sampled_from([0.1, 1.0])), "local_cache": draw(st.booleans())},
        "events": draw(_events(plan, replicas, services)),
    }


@extension("experiment", "control_plane", nullable=True, order=20, exact_time=False)
def _control_plane(plan: Plan, place, node: dict, opts: Options):
    return control_planes(plan)
