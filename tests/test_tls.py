"""Client connections, TLS session resumption and gateway CPU by cause.

Deterministic tests of the resumption rule (key scope, generation, rotation,
lifetime, the ticket a client offers) on :class:`TicketKeys` directly and on
exact fleets (deterministic arrivals, constant distributions); closed forms
with confidence intervals (``tests/stats.py``): per-instance keys and a
uniform random balancer over N gateways resume 1/N of reconnects; shared
keys resume 1 - P(ticket expired); CPU is counts times per-handshake cost.
"""

from __future__ import annotations

import copy
import json
import math

import pytest

from sim.components.tls import FULL, RESUMED, TicketKeys, offered_after, scope_domains
from sim.config import load_experiment
from sim.config.checks import check_experiment
from sim.config.models import Experiment, TlsListener
from sim.fleet import Fleet
from tests.fleet_builders import run_logged
from tests.stats import assert_matches, replicate

INSTANCES = [("gw-0", "a1", "r1"), ("gw-1", "a1", "r1"), ("gw-2", "a2", "r1")]


def keys(**tls) -> TicketKeys:
    model = TlsListener(**tls)
    return TicketKeys("gw", model, scope_domains(model.session_ticket_keys_scope, INSTANCES))


# ----------------------------------------------------------------------------- the rule, exactly


def test_ticket_resumes_only_on_the_instance_that_sealed_it_by_default():
    k = keys()
    t = k.issue("gw-0", 10.0)
    assert k.refusal(t, "gw-0", 11.0) is None
    assert k.refusal(t, "gw-1", 11.0) == "other_keys"
    assert k.refusal(None, "gw-0", 11.0) == "no_ticket"


@pytest.mark.parametrize(("scope", "resumes_on"), [("az", {"gw-0", "gw-1"}), ("region", {"gw-0", "gw-1", "gw-2"}),
                                                   ("fleet", {"gw-0", "gw-1", "gw-2"}), ("instance", {"gw-0"})])
def test_shared_keys_resume_across_their_scope(scope, resumes_on):
    k = keys(session_ticket_keys_scope=scope)
    t = k.issue("gw-0", 0.0)
    assert {g for g, _, _ in INSTANCES if k.refusal(t, g, 1.0) is None} == resumes_on


def test_ticket_lifetime_is_session_timeout_exactly():
    k = keys(session_ticket_keys_scope="fleet", session_timeout_s=100.0)
    t = k.issue("gw-0", 5.0)
    assert k.refusal(t, "gw-1", 104.999) is None
    assert k.refusal(t, "gw-1", 105.0) == "expired"


def test_default_lifetime_is_boringssl_two_hours_and_own_keys_rotate_every_two_days():
    m = TlsListener()
    assert m.session_timeout_s == 7200.0
    assert m.ticket_key_rotation_s == 172800.0
    assert TlsListener(session_ticket_keys_scope="fleet").ticket_key_rotation_s is None


def test_key_rotation_keeps_the_newest_keys_only():
    # Rotation every 10 s: epochs [0,10), [10,20), ... Two keys kept: a ticket of
    # epoch 0 opens in epoch 1, not in epoch 2.
    k = keys(session_ticket_keys_scope="fleet", ticket_key_rotation_s=10.0, ticket_keys_kept=2,
             session_timeout_s=1000.0)
    t = k.issue("gw-0", 9.999)
    assert t.epoch == 0
    assert k.refusal(t, "gw-2", 19.999) is None
    assert k.refusal(t, "gw-2", 20.0) == "key_rotated"
    one = keys(session_ticket_keys_scope="fleet", ticket_key_rotation_s=10.0, ticket_keys_kept=1,
               session_timeout_s=1000.0)
    t = one.issue("gw-0", 9.0)
    assert one.refusal(t, "gw-0", 9.999) is None
    assert one.refusal(t, "gw-0", 10.0) == "key_rotated"


def test_restart_renews_own_keys_but_not_shared_ones():
    own = keys()
    t = own.issue("gw-0", 0.0)
    own.restart("gw-0")
    assert own.refusal(t, "gw-0", 1.0) == "keys_renewed"
    assert own.refusal(own.issue("gw-0", 1.0), "gw-0", 2.0) is None
    shared = keys(session_ticket_keys_scope="fleet")
    t = shared.issue("gw-0", 0.0)
    shared.restart("gw-0")
    assert shared.refusal(t, "gw-0", 1.0) is None


def test_session_cache_is_per_instance_and_empties_on_restart():
    k = keys(tls_version="TLSv1_2", session_resumption="session_cache")
    t = k.issue("gw-1", 0.0)
    assert k.refusal(t, "gw-1", 1.0) is None
    assert k.refusal(t, "gw-0", 1.0) == "other_keys"
    k.restart("gw-1")
    assert k.refusal(t, "gw-1", 1.0) == "keys_renewed"


def test_tls13_issues_a_ticket_on_every_connection_tls12_only_on_full_handshakes():
    k13 = keys(session_ticket_keys_scope="fleet")
    first = k13.issue("gw-0", 0.0)
    kind, reason, new = k13.handshake(first, "gw-1", 1.0)
    assert (kind, reason) == (RESUMED, None) and new is not None and new.issued_s == 1.0
    k12 = keys(session_ticket_keys_scope="fleet", tls_version="TLSv1_2")
    first = k12.issue("gw-0", 0.0)
    assert k12.handshake(first, "gw-1", 1.0) == (RESUMED, None, None)
    kind, reason, new = k12.handshake(None, "gw-1", 1.0)
    assert (kind, reason) == (FULL, "no_ticket") and new is not None
    off = keys(session_resumption="none")
    assert off.handshake(first, "gw-0", 1.0) == (FULL, "disabled", None)


def test_ticket_policy_latest_takes_every_new_ticket_first_keeps_its_own_until_it_expires():
    k = keys(session_ticket_keys_scope="fleet", session_timeout_s=100.0)
    held, new = k.issue("gw-0", 0.0), k.issue("gw-1", 1.0)
    assert offered_after("latest", held, new, 1.0, 100.0) is new
    assert offered_after("first", held, new, 1.0, 100.0) is held
    assert offered_after("first", held, new, 100.0, 100.0) is new
    assert offered_after("first", None, new, 1.0, 100.0) is new
    assert offered_after("latest", held, None, 1.0, 100.0) is held


# ----------------------------------------------------------------------------- fleets

def fleet_data(n: int = 4, policy: str = "random", rate: float = 200.0, duration: float = 20.0, **tls) -> dict:
    return {
        "name": "tls",
        "topology": {
            "name": "tls",
            "regions": {"r1": {"azs": ["a1", "a2"]}},
            "network": {"same_az_s": 0.0002, "cross_az_s": 0.0005, "cross_region_s": 0.03, "internet_s": 0.002},
            "clients": {"r1": {"share": 1.0}},
            "balancers": {"r1": {"policy": policy, "cross_zone": False}},
            "gateways": {"gw": {"az": "a1", "instances": n, "workers": 2, "cpu_time_s": 0.0001,
                                "route": {"timeout_s": 10.0}, "tls": {"session_ticket_keys_scope": "instance", **tls}}},
            "services": {"api": {"instances_per_az": {"a1": 2}, "workers": 8, "queue_limit": 100,
                                 "service_time_s": 0.002, "request_bytes": 500, "response_bytes": 1000}},
        },
        "workload": {"arrivals": "poisson", "rate_schedule": [{"at_s": 0, "rate_per_s": rate}],
                     "connections": {"clients": 1, "requests_per_connection": 1}},
        "duration_s": duration,
        "warmup_s": 1.0,
        "seed": 11,
    }


def build(data: dict, **workload_conns) -> Experiment:
    d = copy.deepcopy(data)
    d["workload"]["connections"].update(workload_conns)
    return Experiment.model_validate(d)


def resumption(summary: dict) -> float:
    return summary["connections"]["resumption_rate"]


def test_per_instance_keys_and_uniform_random_balancer_resume_one_in_n():
    # Each reconnect lands on a gateway drawn uniformly and independently; only the
    # one that sealed the client's latest ticket opens it: P = 1/N.
    n = 4
    exp = build(fleet_data(n=n)).model_copy(update={"replications": 6})
    rates = [resumption(r["summary"]) for r in replicate(exp)]
    assert_matches(rates, 1 / n, 0.0, "resumption rate, 4 gateways, own keys, random", abs_width=0.02)


def test_shared_keys_resume_unless_the_ticket_expired():
    # One client, Poisson at 10/s, one request per connection: a reconnect offers the
    # ticket of the previous connection (TLS 1.3, latest), which expired iff the gap
    # exceeds the lifetime: P(resume) = 1 - exp(-rate x lifetime).
    rate, life = 10.0, 0.1
    data = fleet_data(n=4, rate=rate, duration=200.0, session_ticket_keys_scope="fleet", session_timeout_s=life)
    exp = build(data).model_copy(update={"replications": 6})
    rates = [resumption(r["summary"]) for r in replicate(exp)]
    assert_matches(rates, 1 - math.exp(-rate * life), 0.0, "resumption rate, shared keys", abs_width=0.03)


def deterministic(**tls) -> dict:
    # Arrivals at 0.1, 0.2, ..., 30.0 s: 300 requests, all answered before the end.
    d = fleet_data(n=3, policy="round_robin", rate=10.0, duration=30.05, **tls)
    d["workload"]["arrivals"] = "deterministic"
    d["warmup_s"] = 0.0
    return d


def test_round_robin_one_client_latest_ticket_never_resumes_on_own_keys():
    s = Fleet(build(deterministic())).run()["summary"]
    hs = s["connections"]["pools"]["gw"]["handshakes"]
    assert hs["resumed"] == 0 and hs["full"] == 300


def test_round_robin_one_client_first_ticket_resumes_every_nth_connection():
    # The first ticket comes from the first gateway; round robin returns to it
    # every 3rd connection, and a 'first' client keeps offering it (2 h lifetime).
    s = Fleet(build(deterministic(), ticket_policy="first")).run()["summary"]
    hs = s["connections"]["pools"]["gw"]["handshakes"]
    assert (hs["full"], hs["resumed"]) == (201, 99)  # 300 connections: every 3rd after the first resumes


def test_cpu_is_handshake_counts_times_cost():
    s = Fleet(build(deterministic(full_handshake_cpu_s=0.0007, resumed_handshake_cpu_s=0.0002),
                    ticket_policy="first")).run()["summary"]
    cpu = s["gateway_cpu"]["pools"]["gw"]
    ev, sec = cpu["events_by_cause"], cpu["cpu_by_cause_s"]
    assert (ev["tls_full_handshake"], ev["tls_resumed_handshake"]) == (201, 99)
    assert math.isclose(sec["tls_full_handshake"], 201 * 0.0007, rel_tol=1e-9)
    assert math.isclose(sec["tls_resumed_handshake"], 99 * 0.0002, rel_tol=1e-9)
    assert math.isclose(sec["request"], ev["request"] * 0.0001, rel_tol=1e-9)
    assert ev["request"] == 300
    assert math.isclose(cpu["tls_share"], (201 * 0.0007 + 99 * 0.0002) / cpu["cpu_s"], rel_tol=1e-9)


def test_connection_reuse_handshakes_once_per_connection():
    # 10 requests per connection, one client: 300 requests make 30 connections.
    s = Fleet(build(deterministic(), requests_per_connection=10)).run()["summary"]
    c = s["connections"]["pools"]["gw"]
    assert c["connections_opened"] == 30
    assert c["closed"]["requests"] == 30


def test_handshake_round_trips_add_latency():
    # Constant latencies: internet 2 ms, same AZ 0.2 ms one way; a round trip is 4.4 ms.
    # TLS 1.3 new connection: TCP + 1 = 2 round trips before the request leaves the node,
    # and the full handshake's 0.59 ms on the worker (the TLS 1.3 ECDSA preset).
    # Compared request by request, once every gateway holds its upstream connections.
    _, reuse, _ = run_logged(build(deterministic(), requests_per_connection=1000))
    _, fresh, _ = run_logged(build(deterministic()))
    extra = [f[1] - r[1] for f, r in zip(fresh[10:], reuse[10:], strict=True)]
    assert extra == pytest.approx([(2 * 4.4 + 0.59) / 1000] * len(extra), abs=1e-9)


def test_rolling_restart_renews_own_keys_and_drains_connections():
    def run(scope: str) -> dict:
        d = deterministic(session_ticket_keys_scope=scope)
        d["workload"]["connections"].update({"requests_per_connection": 1000, "clients": 5})
        d["faults"] = [{"kind": "rolling_restart", "at_s": 5.0, "for_s": 15.0, "drain_s": 1.0, "restart_s": 1.0}]
        return Fleet(Experiment.model_validate(d)).run()["summary"]["connections"]["pools"]["gw"]
    own, shared = run("instance"), run("fleet")
    assert own["closed"]["drain"] > 0 and shared["closed"]["drain"] > 0
    assert shared["full_reasons"]["keys_renewed"] == 0 and shared["handshakes"]["full"] == 5
    assert own["handshakes"]["resumed"] < shared["handshakes"]["resumed"]


def test_features_off_build_the_plain_gateway_and_node():
    from sim.components.balancer import BalancerNode
    from sim.components.gateway import GatewayInstance
    d = fleet_data()
    del d["workload"]["connections"]
    del d["topology"]["gateways"]["gw"]["tls"]
    f = Fleet(Experiment.model_validate(d))
    assert all(type(g) is GatewayInstance for g in f.all_gateways())
    assert all(type(n) is BalancerNode for n in f.entry_nodes())
    s = f.run()["summary"]
    assert not {"gateway_cpu", "connections", "access_log"} & set(s)


def test_access_log_sync_everything_lines_and_cross_az_bytes():
    d = deterministic()
    d["topology"]["gateways"]["gw"]["access_log"] = {"success_sample": 1.0, "failure_sample": 1.0, "flush": "sync",
                                                     "cpu_per_line_s": 0.00001, "sync_write_s": 0.001,
                                                     "bytes_per_line": 500, "collector_az": "a2"}
    s = Fleet(Experiment.model_validate(d)).run()["summary"]
    lines = s["access_log"]["pools"]["gw"]["lines"]
    assert lines == s["requests"]["succeeded"] == 300
    assert s["access_log"]["cross_az_bytes_by_purpose"]["logs"] == 500 * lines
    assert math.isclose(s["gateway_cpu"]["pools"]["gw"]["cpu_by_cause_s"]["access_log"], 300 * 0.00101, rel_tol=1e-9)
    base = Fleet(Experiment.model_validate(deterministic())).run()["summary"]["latency_ms"]["mean"]
    assert s["latency_ms"]["mean"] - base == pytest.approx(1.01, rel=1e-6)  # the response waits for the line


def test_access_log_sampling_success_none_failures_all():
    d = deterministic()
    d["topology"]["gateways"]["gw"]["access_log"] = {"success_sample": 0.0, "failure_sample": 1.0}
    s = Fleet(Experiment.model_validate(d)).run()["summary"]
    assert s["access_log"]["pools"]["gw"]["lines"] == sum(s["requests"]["failed"].values()) == 0


@pytest.mark.parametrize(("change", "path"), [
    ({"tls": {"tls_version": "TLSv1_3", "session_resumption": "session_cache"}},
     ("topology", "gateways", "gw", "tls", "session_resumption")),
    ({"tls": {"tls_version": "TLSv1_2", "session_resumption": "session_cache", "session_ticket_keys_scope": "az"}},
     ("topology", "gateways", "gw", "tls", "session_ticket_keys_scope")),
    ({"access_log": {"collector_az": "nowhere"}}, ("topology", "gateways", "gw", "access_log", "collector_az")),
])
def test_contradictory_settings_are_refused_at_their_path(change, path):
    d = fleet_data()
    d["topology"]["gateways"]["gw"].update(change)
    problems = check_experiment(Experiment.model_validate(d))
    assert path in [p for p, _ in problems], problems


def test_tls_and_rolling_restart_need_connections():
    d = fleet_data()
    del d["workload"]["connections"]
    d["faults"] = [{"kind": "rolling_restart", "at_s": 1.0, "for_s": 8.0, "drain_s": 1.0, "restart_s": 1.0}]
    paths = [p for p, _ in check_experiment(Experiment.model_validate(d))]
    assert ("topology", "gateways", "gw", "tls") in paths
    assert ("faults", 0, "kind") in paths


def test_rolling_restart_too_short_for_its_gateways_is_refused():
    d = fleet_data(n=4)
    d["faults"] = [{"kind": "rolling_restart", "at_s": 1.0, "for_s": 4.0, "drain_s": 1.0, "restart_s": 1.0}]
    problems = check_experiment(Experiment.model_validate(d))
    assert ("faults", 0, "for_s") in [p for p, _ in problems], problems


def test_shared_keys_cross_pools_with_the_same_tls_settings_only():
    gens: dict = {}
    a = TicketKeys("a", TlsListener(session_ticket_keys_scope="fleet"), {"a-0": "fleet"}, gens)
    b = TicketKeys("b", TlsListener(session_ticket_keys_scope="fleet"), {"b-0": "fleet"}, gens)
    c = TicketKeys("c", TlsListener(session_ticket_keys_scope="fleet", certificate="rsa_2048"), {"c-0": "fleet"}, gens)
    t = a.issue("a-0", 0.0)
    assert b.refusal(t, "b-0", 1.0) is None
    assert c.refusal(t, "c-0", 1.0) == "other_keys"


def test_calibration_profile_replaces_the_handshake_presets(tmp_path):
    # JSON is YAML: the loader reads both.
    profile = {"version": 1, "gateway": {"handshake_cpu_s": {"TLSv1_2/ecdsa_p256": {"full_s": 0.0011, "resumed_s": 0.0003}}}}
    (tmp_path / "profile.yaml").write_text(json.dumps(profile))
    d = fleet_data(tls_version="TLSv1_2")
    d["topology"]["calibration"] = str(tmp_path / "profile.yaml")
    d["topology"]["gateways"]["gw2"] = {**d["topology"]["gateways"]["gw"], "tls": {"tls_version": "TLSv1_3"}}
    (tmp_path / "e.yaml").write_text(json.dumps(d))
    gws = load_experiment(tmp_path / "e.yaml").config.topology.gateways
    assert (gws["gw"].tls.full_handshake_cpu_s, gws["gw"].tls.resumed_handshake_cpu_s) == (0.0011, 0.0003)
    assert (gws["gw2"].tls.full_handshake_cpu_s, gws["gw2"].tls.resumed_handshake_cpu_s) == (0.00059, 0.00056)


def test_report_panels_show_handshakes_cpu_and_the_article_claim(tmp_path):
    from types import SimpleNamespace

    from sim.report.common import RunData
    from sim.report.tls import key_scope_pairs, tls_comparison_panel, tls_panel

    def run(scope: str) -> dict:
        return Fleet(build(deterministic(tls_version="TLSv1_2", session_ticket_keys_scope=scope))).run()["summary"]

    own, shared = run("instance"), run("fleet")
    panel = tls_panel(RunData(tmp_path, own))
    assert panel is not None and "Resumption rate over the fleet" in panel.html and "tls full handshake" in panel.html
    pairs = key_scope_pairs([("own", own), ("shared", shared)])
    assert [(a, b) for a, b, _ in pairs] == [("own", "shared")]
    assert pairs[0][2] == pytest.approx(own["gateway_cpu"]["cpu_s"] / shared["gateway_cpu"]["cpu_s"] - 1)
    variants = [SimpleNamespace(name=n, data=RunData(tmp_path, s)) for n, s in (("own", own), ("shared", shared))]
    html = tls_comparison_panel(variants).html
    assert f"{100 * pairs[0][2]:+.1f}%" in html and "30-50%" in html
    plain = fleet_data()
    del plain["workload"]["connections"]
    del plain["topology"]["gateways"]["gw"]["tls"]
    assert tls_panel(RunData(tmp_path, Fleet(Experiment.model_validate(plain)).run()["summary"])) is None


def test_instance_output_with_plain_and_accounted_pools():
    # Found by tests/test_metamorphic.py: instance columns take the first row's fields.
    d = deterministic()
    d["topology"]["gateways"]["plain"] = {"az": "a2", "instances": 1, "cpu_time_s": 0.0001}
    del d["workload"]["connections"]
    del d["topology"]["gateways"]["gw"]["tls"]
    d["topology"]["gateways"]["gw"]["access_log"] = {}
    d["topology"]["balancers"]["r1"]["cross_zone"] = True
    d["output"] = {"instances": True}
    cols = Fleet(Experiment.model_validate(d)).run()["instances"]["gateway"]
    assert cols["log_lines"][-1] is None and all(v is not None for v in cols["log_lines"][:-1])


def test_handshake_burst_queues_requests_behind_it():
    # One worker; 3 requests arrive together on new connections (3 clients, constant
    # latencies): each handshake + request takes 0.59 + 0.1 ms of the worker, so the
    # second waits 0.69 ms and the third 1.38 ms: mean wait over 3 starts = 0.69 ms.
    d = deterministic()
    d["topology"]["gateways"]["gw"].update({"instances": 1, "workers": 1})
    d["workload"]["arrivals"] = "deterministic"
    d["workload"]["rate_schedule"] = [{"at_s": 0, "rate_per_s": 0.0}]
    d["workload"]["connections"]["clients"] = 1
    exp = Experiment.model_validate(d)
    f = Fleet(exp)
    gw = f.all_gateways()[0]
    from sim.components.request import Request

    class _Node:  # takes the answers back (nothing to do with them here)
        def respond(self, req):
            pass

    for _ in range(3):
        r = Request(0.0, True, "api", 500.0, None)
        r.handshake = "full"
        r.lb_node = _Node()
        gw.accept(r)
    f.ctx.run(0.01)
    assert gw.started == 3 and gw.waited == 2
    assert gw.wait_s == pytest.approx(0.00069 + 0.00138, abs=1e-12)
