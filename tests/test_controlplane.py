"""The xDS control plane: bytes, convergence under a throttle, back-off, cache, rollback, canary, OOM.

Deterministic settings throughout (no egress limit or an exact one, zero
latency, constant costs) so that every figure has an exact expected value,
computed here by hand from the settings, not by the code under test. The
back-off test is statistical (a binomial bound on the peak).
"""

from __future__ import annotations

import math

import pytest

from sim.config.checks import check_experiment
from sim.fleet import Fleet

from .fleet_builders import experiment

RES = {"services": 50, "listeners": 2, "listener_bytes": 1000, "route_base_bytes": 100,
       "route_bytes_per_service": 10, "cluster_bytes": 400, "cla_base_bytes": 40, "endpoints_per_service": 3,
       "endpoint_bytes": 20, "response_overhead_bytes": 100, "delta_resource_overhead_bytes": 25}
CLA = 40 + 3 * 20  # one ClusterLoadAssignment (bytes)
ROUTE = 100 + 10 * 50  # the route configuration at 50 services


def cp_experiment(duration_s: float = 60.0, **cp) -> object:
    """A control-plane-only experiment with exact costs; ``cp`` overrides the control_plane section."""
    section = {"mode": "control_plane_only", "gateways": 10, "replicas": 1, "cores": 4,
               "cpu_per_push_s": 0.0, "cpu_per_resource_s": 0.0, "cpu_per_stream_s": 0.0,
               "egress_bytes_per_s": None, "latency_s": 0.0,
               "resources": RES,
               "push": {"mode": "sotw", "debounce": {"debounce_after_s": 0.1, "debounce_max_s": 10.0}},
               "subscribers": {"apply_cpu_base_s": 0.0, "apply_cpu_per_resource_s": 0.0},
               "events": []}
    for k, v in cp.items():
        if isinstance(v, dict) and isinstance(section.get(k), dict):
            section[k] = {**section[k], **v}
        else:
            section[k] = v
    return experiment(workload={"rate_schedule": [{"at_s": 0, "rate_per_s": 0}]}, duration_s=duration_s,
                      control_plane=section)


def run_cp(exp) -> dict:
    fleet = Fleet(exp)
    return fleet.run()["summary"]["control_plane"], fleet


# ------------------------------------------------------------------ bytes: the closed form


@pytest.mark.parametrize("mode", ["sotw", "delta"])
def test_bytes_of_a_deploy_equal_the_closed_form(mode):
    n, k = 7, 5
    exp = cp_experiment(gateways=n, push={"mode": mode},
                        events=[{"event": "deploy", "at_s": 1.0, "services": k}])
    cp, _ = run_cp(exp)
    if mode == "sotw":
        # CDS carries all 50 clusters; EDS and RDS only the changed resources.
        per_gateway = (100 + 50 * 400) + (100 + k * CLA) + (100 + ROUTE)
    else:
        per_gateway = (100 + k * (400 + 25)) + (100 + k * (CLA + 25)) + (100 + ROUTE + 25)
    assert cp["pushes"] == n
    assert cp["push_bytes"] == n * per_gateway
    assert cp["egress_bytes"] == pytest.approx(n * per_gateway, rel=1e-12)
    assert cp["resyncs"] == 0


@pytest.mark.parametrize("mode", ["sotw", "delta"])
def test_bytes_of_endpoint_churn_and_of_a_full_resync(mode):
    # Endpoint churn of 3 services, then every replica restarts: each gateway resyncs in full.
    n = 4
    exp = cp_experiment(gateways=n, push={"mode": mode, "resync": "full"},
                        reconnect={"initial_s": 1.0, "max_s": 1.0, "jitter": "none"},
                        events=[{"event": "endpoint_churn", "at_s": 1.0, "services": 3},
                                {"event": "replica_restart", "at_s": 5.0, "down_s": 2.5}])
    cp, _ = run_cp(exp)
    wrap = 25 if mode == "delta" else 0
    churn = 100 + 3 * (CLA + wrap)  # EDS is per resource in both modes
    full = (4 * 100 + 2 * (1000 + wrap) + (ROUTE + wrap) + 50 * (400 + wrap) + 50 * (CLA + wrap))
    assert cp["push_bytes"] == n * churn
    assert cp["resyncs"] == n
    assert cp["resync_bytes"] == n * full
    # Down at 5 s for 2.5 s; attempts at 6 (refused: down), 7 (down), 8 s: reconnected.
    assert cp["reconnect_attempts"] == 3 * n
    assert cp["reconnect_failed"] == 2 * n
    # one stream per token of the request limit (min(15 + 5 x 4 cores, 100) = 35 per s).
    assert cp["outages"]["0"]["synced_s"] == pytest.approx(3.0 + (n - 1) / 35)


def test_delta_resync_sends_only_what_the_gateway_lacks():
    exp = cp_experiment(gateways=3, push={"mode": "delta", "resync": "changed"},
                        reconnect={"initial_s": 1.0, "max_s": 1.0, "jitter": "none"},
                        events=[{"event": "replica_restart", "at_s": 2.0, "down_s": 5.0},
                                {"event": "endpoint_churn", "at_s": 3.0, "services": 2}])
    cp, _ = run_cp(exp)
    # The churn is cut while every gateway is disconnected: nothing is pushed,
    # and each resync carries the two changed endpoints only.
    assert cp["pushes"] == 0
    assert cp["resync_bytes"] == 3 * (100 + 2 * (CLA + 25))
    # Attempts every second from 3 s; the replica is back at 7 s, and admits one stream
    # per token (35 per s): the last of the three at 7 + 2/35 s.
    assert cp["convergence_s"] == pytest.approx(7.0 + 2 / 35 - 3.0)


# ------------------------------------------------------------------ throttle and convergence


@pytest.mark.parametrize(("n", "throttle"), [(100, 10), (101, 10), (37, 100), (500, 7)])
def test_n_gateways_converge_in_ceil_n_over_t_pushes_of_t(n, throttle):
    t = 0.05  # each push holds a throttle slot for its CPU time; cores never wait
    exp = cp_experiment(gateways=n, cores=max(n, throttle), cpu_per_push_s=t,
                        push={"push_throttle": throttle, "max_requests_per_s": 1000},
                        events=[{"event": "endpoint_churn", "at_s": 1.0, "services": 1}])
    cp, _ = run_cp(exp)
    after = 0.1  # the debounce's quiet period
    assert cp["convergence_s"] == pytest.approx(after + math.ceil(n / throttle) * t, abs=1e-9)
    assert cp["pushes"] == n
    assert cp["push_queue_peak"] == n
    assert cp["cpu_s"] == pytest.approx(n * t)


def test_cores_below_the_throttle_make_the_cpu_the_bottleneck():
    n, t = 40, 0.05
    exp = cp_experiment(gateways=n, cores=2, cpu_per_push_s=t, push={"push_throttle": 20},
                        events=[{"event": "endpoint_churn", "at_s": 1.0, "services": 1}])
    cp, _ = run_cp(exp)
    assert cp["convergence_s"] == pytest.approx(0.1 + math.ceil(n / 2) * t, abs=1e-9)
    assert cp["cpu_s"] == pytest.approx(n * t)
    # Both cores busy from 1.1 s to 2.1 s: 0.9 s of each in second 1.
    assert cp["cpu_cores_peak"] == pytest.approx(1.8)


def test_debounce_waits_for_quiet_and_at_most_debounce_max():
    # Churn of 100 services over 20 s (one every 0.2 s, inside the 0.5 s quiet period):
    # the version is cut at debounce_max (3 s) after the first change.
    exp = cp_experiment(gateways=5, push={"debounce": {"debounce_after_s": 0.5, "debounce_max_s": 3.0}},
                        events=[{"event": "endpoint_churn", "at_s": 2.0, "services": 50, "over_s": 10.0}])
    cp, _ = run_cp(exp)
    created = [v["created_s"] for v in cp["versions"].values()]
    assert created[0] == pytest.approx(5.0)
    assert created[1] == pytest.approx(8.2)  # the next change after 5.0 came at 5.2
    assert created[-1] == pytest.approx(11.8 + 0.5)  # the last change at 11.8, then quiet
    assert cp["versions_cut"] == len(created)


def test_egress_limit_serialises_pushes():
    n = 20
    per_gateway = (100 + 50 * 400) + (100 + ROUTE) + (100 + 1 * CLA)
    rate = per_gateway * 10.0  # ten pushes a second
    exp = cp_experiment(gateways=n, egress_bytes_per_s=rate,
                        events=[{"event": "deploy", "at_s": 1.0, "services": 1}])
    cp, _ = run_cp(exp)
    assert cp["convergence_s"] == pytest.approx(0.1 + n / 10.0, abs=1e-9)
    assert cp["egress_peak_bytes_per_s"] == pytest.approx(rate, rel=1e-9)


# ------------------------------------------------------------------ reconnects


def _reconnect_peak(jitter: str, n: int = 4000) -> dict:
    exp = cp_experiment(duration_s=40.0, gateways=n, replicas=2,
                        push={"max_requests_per_s": 1e6},
                        reconnect={"initial_s": 10.0, "max_s": 30.0, "jitter": jitter},
                        events=[{"event": "replica_restart", "at_s": 5.0, "down_s": 30.0, "replica": 0}])
    cp, _ = run_cp(exp)
    return cp


def test_jittered_back_off_bounds_the_reconnect_peak():
    lost = 2000  # half the gateways were on replica 0; they all reconnect to replica 1
    plain = _reconnect_peak("none")
    assert plain["reconnect_peak_per_s"] == lost  # every one at 5 + 10 s
    jittered = _reconnect_peak("full")
    assert jittered["reconnect_attempts"] == lost  # every first attempt reaches replica 1
    # First attempts are uniform over [5, 15): each second's count is Binomial(2000, 0.1),
    # mean 200, sd 13.4. The peak of ten such counts exceeds mean + 4.5 sd with
    # probability under 10 x 4e-6.
    assert jittered["reconnect_peak_per_s"] <= 200 + 4.5 * math.sqrt(lost * 0.1 * 0.9)
    assert jittered["reconnect_peak_per_s"] >= 200  # a maximum is at least the mean


def test_request_limit_refuses_streams_beyond_a_second_of_tokens():
    n = 100
    exp = cp_experiment(gateways=n, push={"max_requests_per_s": 10.0},
                        reconnect={"initial_s": 1.0, "max_s": 1.0, "jitter": "none"},
                        events=[{"event": "replica_restart", "at_s": 2.0, "down_s": 0.5}])
    cp, _ = run_cp(exp)
    # Attempts at 3 s: 11 admitted (tokens at 3.0, 3.1, ..., 4.0: waits up to 1 s), 89 refused;
    # then every second 10 more tokens free up (the bucket is a second ahead).
    assert cp["reconnect_refused"] >= n - 11
    first_wave_admitted = n - cp["reconnect_refused"] if cp["reconnect_attempts"] == n else None
    assert first_wave_admitted in (None, 11)
    assert cp["outages"]["0"]["synced_s"] is not None


def test_every_stream_attempt_costs_its_handshake_admitted_or_refused():
    n, per_stream = 300, 0.002
    exp = cp_experiment(gateways=n, cores=1, cpu_per_stream_s=per_stream, push={"max_requests_per_s": 10.0},
                        reconnect={"initial_s": 1.0, "max_s": 1.0, "jitter": "none"},
                        events=[{"event": "replica_restart", "at_s": 2.0, "down_s": 0.5}])
    cp, _ = run_cp(exp)
    # Every attempt (at 3 s, then each second) finds the replica up; 10 a second are admitted
    # (11 in the first second: the bucket's wait is up to 1 s), the rest refused and retried.
    assert cp["reconnect_failed"] == 0
    assert cp["reconnect_attempts"] == cp["reconnect_refused"] + n
    assert cp["cpu_s"] == pytest.approx(per_stream * cp["reconnect_attempts"], rel=1e-9)
    # 300 handshakes at once on one core: 0.6 s of it in the first second.
    assert cp["cpu_cores_peak"] == pytest.approx(n * per_stream, rel=1e-9)


# ------------------------------------------------------------------ cache, data plane, OOM, rollback, canary


def test_gateways_serve_from_cache_while_the_control_plane_is_down():
    cp_section = {"mode": "data_plane", "replicas": 1, "egress_bytes_per_s": None, "latency_s": 0.0,
                  "resources": RES,
                  "events": [{"event": "replica_restart", "at_s": 2.0, "down_s": 20.0},
                             {"event": "deploy", "at_s": 5.0, "services": 2}]}
    exp = experiment(duration_s=30.0, control_plane=cp_section,
                     workload={"arrivals": "deterministic", "rate_schedule": [{"at_s": 0, "rate_per_s": 50.0}]})
    res = Fleet(exp).run()
    s = res["summary"]
    cp = s["control_plane"]
    assert s["requests"]["failed"] == {}  # every request answered while the control plane was away
    assert s["requests"]["succeeded"] + s["requests"]["in_flight"] == s["requests"]["offered"] > 1000
    # The gateway was disconnected from 2 s until its first attempt after 22 s, and behind
    # the deploy's version (cut at 5.1 s) until its resync.
    assert cp["disconnected_gateway_s"] > 20.0
    assert cp["staleness_gateway_s"] > 22.0 - 5.1
    assert cp["convergence_s"] is not None


def test_config_apply_takes_a_worker_from_requests():
    cp_section = {"mode": "data_plane", "egress_bytes_per_s": None, "latency_s": 0.0, "resources": RES,
                  "subscribers": {"apply_cpu_base_s": 0.5, "apply_cpu_per_resource_s": 0.0},
                  "events": [{"event": "deploy", "at_s": 1.0, "services": 1}]}
    exp = experiment(duration_s=4.0, control_plane=cp_section, topology__services__api__queue_limit=1000,
                     workload={"arrivals": "deterministic", "rate_schedule": [{"at_s": 0, "rate_per_s": 100.0}]})
    fleet = Fleet(exp)
    res = fleet.run()
    cp = res["summary"]["control_plane"]
    assert cp["gateway_apply_cpu_s"] == pytest.approx(0.5)
    # One worker, held by the apply from 1.1 s to 1.6 s: requests arriving then wait.
    assert res["summary"]["latency_ms"]["p99"] > 300
    assert res["summary"]["requests"]["failed"] == {}


def test_leaking_applies_oom_kill_the_gateway_which_restarts_and_reconnects():
    # 60 MB at start, +50 MB per apply, limit 200 MB: the third apply kills it.
    exp = cp_experiment(gateways=2, reconnect={"initial_s": 1.0, "max_s": 1.0, "jitter": "none"},
                        subscribers={"apply_cpu_base_s": 0.0, "memory_bytes": 60e6, "memory_limit_bytes": 200e6,
                                     "apply_leak_bytes": 50e6, "restart_s": 2.0},
                        events=[{"event": "endpoint_churn", "at_s": t, "services": 1} for t in (1, 2, 3)])
    cp, _ = run_cp(exp)
    assert cp["oom_kills"] == 2
    assert cp["resyncs"] == 2  # each restarts after 2 s and reconnects at once
    assert cp["gateway_applies"] == 3 * 2 + 2


def test_an_oom_kill_and_a_crash_fault_compose():
    # The second apply (at 2.6 s) kills the gateway until 7.6 s; a crash fault holds it down from 3 to 9 s.
    cp_section = {"mode": "data_plane", "egress_bytes_per_s": None, "latency_s": 0.0, "resources": RES,
                  "reconnect": {"initial_s": 0.1, "max_s": 0.1, "jitter": "none"},
                  "subscribers": {"apply_cpu_base_s": 0.0, "memory_bytes": 60e6, "memory_limit_bytes": 150e6,
                                  "apply_leak_bytes": 50e6, "restart_s": 5.0},
                  "events": [{"event": "deploy", "at_s": 2.0, "services": 1},
                             {"event": "deploy", "at_s": 2.5, "services": 1}]}
    exp = experiment(duration_s=20.0, control_plane=cp_section,
                     faults=[{"kind": "instance_crash", "at_s": 3.0, "for_s": 6.0, "target": {"instance": "gw-0"}}],
                     workload={"arrivals": "deterministic", "rate_schedule": [{"at_s": 0, "rate_per_s": 10.0}]})
    fleet = Fleet(exp)
    gw = fleet.all_gateways()[0]
    seen = {}
    for t in (2.55, 2.8, 8.0, 10.0):
        fleet.ctx.call_at(t, lambda _v, t=t: seen.__setitem__(t, gw.up))
    s = fleet.run()["summary"]
    assert s["control_plane"]["oom_kills"] == 1
    assert seen == {2.55: True, 2.8: False, 8.0: False, 10.0: True}  # down while either cause holds it


def test_nack_rolls_back_and_every_gateway_keeps_its_config():
    n = 20
    exp = cp_experiment(gateways=n, push={"rollback": {"nack_threshold": 3}},
                        events=[{"event": "deploy", "at_s": 1.0, "services": 2, "bad": "nack"}])
    cp, _ = run_cp(exp)
    assert cp["rollbacks"] == 1
    assert cp["versions"]["v1"]["nacks"] == n  # every push was already out when the third NACK came
    assert cp["versions"]["v2"]["rollback_of"] == 1
    assert cp["versions"]["v2"]["acks"] == n
    assert cp["bad_version_gateway_s"] == 0.0


def test_a_nacked_version_without_rollback_never_converges():
    exp = cp_experiment(gateways=5, events=[{"event": "deploy", "at_s": 1.0, "services": 2, "bad": "nack"}])
    cp, _ = run_cp(exp)
    assert cp["convergence_s"] is None and cp["unconverged_versions"] == 1
    assert cp["staleness_gateway_s"] == pytest.approx(5 * (60.0 - 1.1))


@pytest.mark.parametrize("canary", [None, {"fraction": 0.1, "hold_s": 60.0}])
def test_canary_limits_a_bad_version_to_a_fraction(canary):
    n, detect = 50, 10.0
    push = {"rollback": {"error_detect_s": detect}}
    if canary:
        push["canary"] = canary
    exp = cp_experiment(duration_s=100.0, gateways=n, push=push,
                        events=[{"event": "deploy", "at_s": 1.0, "services": 2, "bad": "errors"}])
    cp, _ = run_cp(exp)
    exposed = 5 if canary else n
    assert cp["rollbacks"] == 1
    # The exposed gateways ran the bad version from 1.1 s until the rollback 10 s later.
    assert cp["bad_version_gateway_s"] == pytest.approx(exposed * detect, abs=1e-6)
    assert cp["versions"]["v2"]["rollback_of"] == 1


def _bad_deploy_run(rollback: bool, p: float = 1.0):
    push = {"rollback": {"error_detect_s": 3.0}} if rollback else {}
    cp_section = {"mode": "data_plane", "egress_bytes_per_s": None, "latency_s": 0.0, "resources": RES,
                  "cpu_per_push_s": 0.0, "cpu_per_resource_s": 0.0, "push": push,
                  "subscribers": {"apply_cpu_base_s": 0.0, "apply_cpu_per_resource_s": 0.0,
                                  "bad_version_error_probability": p},
                  "events": [{"event": "deploy", "at_s": 2.0, "services": 1, "bad": "errors"}]}
    exp = experiment(duration_s=10.0, control_plane=cp_section, topology__services__api__queue_limit=1000,
                     workload={"arrivals": "deterministic", "rate_schedule": [{"at_s": 0, "rate_per_s": 100.0}]})
    fleet = Fleet(exp)
    return fleet.run()["summary"], fleet


def test_a_version_that_raises_errors_fails_requests_until_its_rollback():
    s, fleet = _bad_deploy_run(rollback=True)
    # The gateway runs the bad version from 2.1 s (debounce) to 5.1 s (3 s to detect):
    # 300 calls at 100 per second fail with 503 bad_config, every other one succeeds.
    assert s["requests"]["failed"] == {"bad_config": pytest.approx(300, abs=1)}
    assert s["control_plane"]["rollbacks"] == 1
    assert s["control_plane"]["bad_version_gateway_s"] == pytest.approx(3.0)
    assert "accept" not in vars(fleet.all_gateways()[0])  # the gateway's own accept is back
    s, _ = _bad_deploy_run(rollback=False)
    # Without a rollback, every call from 2.1 s on fails (the last few are still on their way at the end).
    assert s["requests"]["failed"]["bad_config"] + s["requests"]["in_flight"] == pytest.approx(790, abs=1)


def test_a_bad_version_fails_its_share_of_requests():
    s, _ = _bad_deploy_run(rollback=False, p=0.25)
    n = 100 * (10.0 - 2.1)
    # Binomial(790, 0.25): mean 197.5, sd 12.2; 5 sd either side.
    assert abs(s["requests"]["failed"]["bad_config"] - 0.25 * n) <= 5 * math.sqrt(n * 0.25 * 0.75)


# ------------------------------------------------------------------ configuration, default off


def test_no_control_plane_section_builds_nothing():
    fleet = Fleet(experiment())
    assert fleet.control_plane is None
    assert "control_plane" not in fleet.run()["summary"]


def test_istio_auto_throttle_from_cores():
    exp = cp_experiment(cores=3, push={"push_throttle": None, "max_requests_per_s": None})
    assert exp.control_plane.push.push_throttle == 30
    assert exp.control_plane.push.max_requests_per_s == 30.0
    exp = cp_experiment(cores=32, push={"push_throttle": None, "max_requests_per_s": None})
    assert exp.control_plane.push.push_throttle == 100


def test_checks_name_the_path():
    exp = experiment(control_plane={"mode": "control_plane_only", "replicas": 2,
                                    "events": [{"event": "replica_restart", "at_s": 1.0, "down_s": 1.0,
                                                "replica": 2}]})
    problems = dict(check_experiment(exp))
    assert ("control_plane", "gateways") in problems
    assert ("workload", "rate_schedule", 0, "rate_per_s") in problems
    assert ("control_plane", "events", 0, "replica") in problems
    exp = experiment(control_plane={"gateways": 5})
    assert ("control_plane", "gateways") in dict(check_experiment(exp))


# ------------------------------------------------------------------ invariants on drawn runs

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def _cp_runs(draw):
    n = draw(st.integers(min_value=1, max_value=40))
    replicas = draw(st.integers(min_value=1, max_value=3))
    events = []
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        kind = draw(st.sampled_from(["endpoint_churn", "deploy", "replica_restart"]))
        at = draw(st.floats(min_value=0.0, max_value=25.0))
        if kind == "replica_restart":
            ev = {"event": kind, "at_s": at, "down_s": draw(st.floats(min_value=0.01, max_value=8.0))}
            if draw(st.booleans()):
                ev["replica"] = draw(st.integers(min_value=0, max_value=replicas - 1))
        elif kind == "endpoint_churn":
            ev = {"event": kind, "at_s": at, "services": draw(st.integers(min_value=1, max_value=50)),
                  "over_s": draw(st.sampled_from([0.0, 2.0]))}
        else:
            ev = {"event": kind, "at_s": at, "services": draw(st.integers(min_value=1, max_value=10)),
                  "add": draw(st.booleans()), "bad": draw(st.sampled_from(["none", "nack", "errors"]))}
        events.append(ev)
    push = {"mode": draw(st.sampled_from(["sotw", "delta"])), "resync": draw(st.sampled_from(["full", "changed"])),
            "push_throttle": draw(st.integers(min_value=1, max_value=10)),
            "max_requests_per_s": draw(st.sampled_from([1.0, 10.0, 1000.0]))}
    if draw(st.booleans()):
        push["canary"] = {"fraction": 0.2, "hold_s": draw(st.sampled_from([0.5, 5.0]))}
    if draw(st.booleans()):
        push["rollback"] = {"nack_threshold": draw(st.integers(min_value=1, max_value=3)), "error_detect_s": 1.0}
    return cp_experiment(
        duration_s=30.0, gateways=n, replicas=replicas, cores=draw(st.integers(min_value=1, max_value=3)),
        cpu_per_push_s=draw(st.sampled_from([0.0, 0.01])), egress_bytes_per_s=draw(st.sampled_from([None, 1e6])),
        latency_s=draw(st.sampled_from([0.0, 0.001])), push=push,
        reconnect={"initial_s": 0.2, "max_s": 4.0, "jitter": draw(st.sampled_from(["full", "none"]))},
        subscribers={"apply_cpu_base_s": draw(st.sampled_from([0.0, 0.05])), "memory_bytes": 60e6,
                     "memory_limit_bytes": 100e6, "apply_leak_bytes": draw(st.sampled_from([0.0, 15e6])),
                     "restart_s": 1.0, "local_cache": draw(st.booleans())},
        events=events)


@settings(max_examples=40, deadline=None, database=None)
@given(exp=_cp_runs())
def test_gateway_counts_and_throttle_hold_at_every_instant(exp):
    fleet = Fleet(exp)
    cp = fleet.control_plane

    def check(_v=None):
        cp.check()
        if fleet.ctx.env._now + 0.25 < exp.duration_s:
            fleet.ctx.call_later(0.25, check)

    fleet.ctx.call_later(0.0, check)
    out = fleet.run()["summary"]["control_plane"]
    cp.check()
    assert 0 <= out["staleness_gateway_s"] <= exp.control_plane.gateways * exp.duration_s + 1e-6
    assert out["pushes"] + out["resyncs"] >= 0 and out["egress_bytes"] >= 0
    assert out["reconnect_attempts"] >= out["reconnect_failed"] + out["reconnect_refused"]


# ------------------------------------------------------------------ the run folder and the reports


def test_run_folder_and_reports_of_control_plane_variants(tmp_path):
    import csv
    import json
    from pathlib import Path

    from sim.cli import main

    root = Path(__file__).resolve().parent.parent
    exp = (root / "experiments" / "thundering_herd.yaml").read_text()
    exp = exp.replace("../topologies/", f"{root}/topologies/")
    (tmp_path / "herd.yaml").write_text(exp)
    args = ["--set", "duration_s=60", "--set", "replications=1",
            "--set", "control_plane.events.1.at_s=40", "--set", "control_plane.events.2.at_s=50"]
    assert main(["run", str(tmp_path / "herd.yaml"), *args, "--out", str(tmp_path / "out"), "--quiet"]) == 0
    run_dir = next((tmp_path / "out" / "thundering_herd").iterdir())
    page = (run_dir / "report.html").read_text()
    assert "Control plane side by side" in page and "CPU peak" in page
    assert "Goodput over time" not in page  # no requests ran: the request panels are left out
    variant = run_dir / "variants" / "delta_jitter_500"
    summary = json.loads((variant / "summary.json").read_text())
    assert summary["control_plane"]["gateways"] == 500 and summary["control_plane"]["push_mode"] == "delta"
    with open(variant / "timeseries.csv") as f:
        header = next(csv.reader(f))
    assert {"cp_cpu_cores", "cp_egress_bytes", "cp_push_queue", "cp_reconnect_attempts"} <= set(header)
    assert 'id="control-plane"' in (variant / "report.html").read_text()


def test_a_change_during_a_resync_is_pushed_after_it():
    # The gateway reconnects at 3 s; its resync takes 1 s of CPU; a deploy is cut at 3.6 s, while
    # the resync is in progress: the push waits for the resync, then goes out at once.
    exp = cp_experiment(gateways=1, cpu_per_push_s=1.0, push={"debounce": {"debounce_after_s": 0.1}},
                        reconnect={"initial_s": 1.0, "max_s": 1.0, "jitter": "none"},
                        events=[{"event": "replica_restart", "at_s": 2.0, "down_s": 0.5},
                                {"event": "deploy", "at_s": 3.5, "services": 1}])
    cp, _ = run_cp(exp)
    assert cp["resyncs"] == 1 and cp["pushes"] == 1
    # Cut at 3.6 s; resync done at 4 s; the push's CPU from 4 to 5 s.
    assert cp["versions"]["v1"]["converged_s"] == pytest.approx(5.0 - 3.5)
