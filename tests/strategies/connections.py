"""Client connections, TLS listeners, access logs, gateway CPU costs and pricing
(ClientConnections, TlsListener, AccessLog, GatewayCpuCosts, CpuPricing).

Connections are an extension of the workload; TLS, access logs and CPU costs
of each gateway pool; the CPU price of the topology. Values matter in a run
of a few seconds: a few clients, one to a few requests per connection, idle
and session timeouts and key rotations from milliseconds to hours, sampling
rates of 0, 1 and in between. Each field is sometimes left to its default
(so the presets and derived defaults are resolved), sometimes given.
Contradictions (TLS without connections, a session cache under TLS 1.3 or
shared) are drawn too: the fleet must refuse them at their path.
"""

from __future__ import annotations

from hypothesis import strategies as st

from .distributions import distributions
from .gateway import fields
from .registry import Options, Plan, extension

_SECONDS = st.sampled_from([0.001, 0.05, 0.5, 2.0, 7200.0])


@extension("workload", "connections", nullable=True)
def _connections(plan: Plan, place, node: dict, opts: Options):
    return fields({
        "clients": st.integers(min_value=1, max_value=5),
        "connections_per_client": st.integers(min_value=1, max_value=3),
        "requests_per_connection": distributions(2.0, opts.dists),
        "idle_timeout_s": _SECONDS,
        "balancer_idle_timeout_s": _SECONDS,
        "max_connection_duration_s": _SECONDS,
        "http_protocol": st.sampled_from(["http1", "http2"]),
        "max_concurrent_streams": st.sampled_from([1, 2, 100]),
        "ticket_policy": st.sampled_from(["latest", "first"]),
    })


@extension("pool", "tls", nullable=True)
def _tls(plan: Plan, place, node: dict, opts: Options):
    return fields({
        "tls_version": st.sampled_from(["TLSv1_2", "TLSv1_3"]),
        "certificate": st.sampled_from(["ecdsa_p256", "rsa_2048"]),
        "session_resumption": st.sampled_from(["tickets", "tickets", "session_cache", "none"]),
        "session_ticket_keys_scope": st.sampled_from(["instance", "az", "region", "fleet"]),
        "session_timeout_s": _SECONDS,
        "ticket_key_rotation_s": _SECONDS,
        "ticket_keys_kept": st.integers(min_value=1, max_value=3),
        "full_handshake_cpu_s": st.sampled_from([0.0, 0.0005, 0.01]),
        "resumed_handshake_cpu_s": st.sampled_from([0.0, 0.0002, 0.005]),
    })


@extension("pool", "access_log", nullable=True)
def _access_log(plan: Plan, place, node: dict, opts: Options):
    return fields({
        "success_sample": st.sampled_from([0.0, 0.01, 1.0]),
        "failure_sample": st.sampled_from([0.0, 0.5, 1.0]),
        "flush": st.sampled_from(["async", "sync"]),
        "cpu_per_line_s": st.sampled_from([0.0, 5e-6, 0.001]),
        "sync_write_s": st.sampled_from([0.0, 5e-5, 0.01]),
        "bytes_per_line": st.sampled_from([0, 600]),
        "collector_az": st.sampled_from(sorted(plan.az_region)),
    })


@extension("pool", "cpu_costs", nullable=True)
def _cpu_costs(plan: Plan, place, node: dict, opts: Options):
    cost = st.sampled_from([0.0, 6e-5, 0.001])
    return fields({"per_retry_s": cost, "upstream_connect_s": cost, "response_s": cost, "health_check_s": cost})


@extension("topology", "cpu_pricing", nullable=True)
def _cpu_pricing(plan: Plan, place, node: dict, opts: Options):
    return fields({"vcpu_hour_usd": st.sampled_from([0.0, 0.048]),
                   "target_utilization": st.sampled_from([0.1, 0.6, 1.0])})
