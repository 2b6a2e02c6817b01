"""Scenario g's reference control plane without a network: what each stream is sent, and the simulated side.

The ADS server's per-stream logic (:class:`reference_gateway.xds_server.Session`)
is driven with hand-made requests: state of the world sends every cluster
and listener but only the changed endpoints and routes; delta sends what the
client lacks, honouring ``initial_resource_versions``. The simulator, given
the encoded sizes of the same messages, predicts the same bytes.
"""

from __future__ import annotations

import pytest

pytest.importorskip("envoy.service.discovery.v3", reason="needs xds-protos (the dev extra)")

from envoy.service.discovery.v3 import discovery_pb2  # noqa: E402

from reference_gateway import cp_validate  # noqa: E402
from reference_gateway import xds_resources as xr  # noqa: E402
from reference_gateway.scenarios import SCENARIOS, Observation, compare  # noqa: E402
from reference_gateway.xds_server import Session, State  # noqa: E402
from sim.config import load_experiment  # noqa: E402
from sim.fleet import Fleet  # noqa: E402


class _Log:
    def __init__(self):
        self.events = []

    def __call__(self, ev, **kw):
        self.events.append({"ev": ev, **kw})


def _sotw_request(type_url, names=(), nonce=""):
    return discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=list(names), response_nonce=nonce)


def _subscribe_all(s: Session, services: int) -> dict:
    out = {}
    names = [xr.service_name(i) for i in range(services)]
    for t, req_names in ((xr.CLUSTER, ()), (xr.LISTENER, ()), (xr.ENDPOINT, names), (xr.ROUTE, [xr.ROUTE_NAME])):
        (resp,) = s.request(_sotw_request(t, req_names))
        out[t] = resp
        s.request(_sotw_request(t, req_names, resp.nonce))  # ACK
    return out


def test_state_of_the_world_sends_full_state_for_clusters_and_listeners_only():
    log = _Log()
    state = State(10, log)
    s = Session(state, delta=False)
    first = _subscribe_all(s, 10)
    assert [len(first[t].resources) for t in (xr.CLUSTER, xr.ENDPOINT, xr.LISTENER, xr.ROUTE)] == [10, 10, 1, 1]
    assert any(e["ev"] == "synced" for e in log.events)
    state.conf = xr.configuration(13)  # three services added
    pushed = {r.type_url: r for r in s.push()}
    assert set(pushed) == {xr.CLUSTER, xr.ROUTE}  # the listener did not change; new endpoints are not yet asked
    assert len(pushed[xr.CLUSTER].resources) == 13  # every cluster
    (eds,) = s.request(_sotw_request(xr.ENDPOINT, [xr.service_name(i) for i in range(13)], first[xr.ENDPOINT].nonce))
    assert len(eds.resources) == 3  # only the endpoints it lacks


def test_delta_sends_what_the_client_lacks_and_honours_initial_versions():
    state = State(10, _Log())
    s = Session(state, delta=True)
    (cds,) = s.request(discovery_pb2.DeltaDiscoveryRequest(type_url=xr.CLUSTER))
    assert len(cds.resources) == 10
    state.conf = xr.configuration(12)
    pushed = {r.type_url: r for r in s.push()}
    assert len(pushed[xr.CLUSTER].resources) == 2
    # A new stream (after a restart) that already holds everything receives nothing.
    held = {n: v for n, (v, _) in state.conf[xr.CLUSTER].items()}
    again = Session(state, delta=True)
    assert again.request(discovery_pb2.DeltaDiscoveryRequest(type_url=xr.CLUSTER,
                                                             initial_resource_versions=held)) == []
    # Versions are content hashes: a restarted server gives the same ones.
    assert xr.configuration(12)[xr.CLUSTER] .keys() == state.conf[xr.CLUSTER].keys()
    assert all(xr.configuration(12)[xr.CLUSTER][n][0] == v for n, v in held.items())


@pytest.mark.parametrize("variant", ["sotw", "delta"])
def test_simulated_bytes_match_the_reference_servers_messages(variant):
    """The simulator, given the messages' sizes, predicts the push the server sends, byte for byte or nearly."""
    exp = load_experiment(SCENARIOS["g"].path, ["control_plane.gateways=2"]).variants[variant]
    services, added = exp.control_plane.resources.services, 20
    sim_exp = cp_validate.sim_experiment(exp, measured_down_s=2.0)
    assert sim_exp.control_plane.events[1].down_s == 2.0
    cp = Fleet(sim_exp).run()["summary"]["control_plane"]
    # What the server sends one stream for the same deploy, ACKs and the EDS request for the new names included.
    state = State(services, _Log())
    s = Session(state, delta=variant == "delta")
    if variant == "sotw":
        first = _subscribe_all(s, services)
    else:
        for t in (xr.CLUSTER, xr.LISTENER):
            s.request(discovery_pb2.DeltaDiscoveryRequest(type_url=t))
        s.request(discovery_pb2.DeltaDiscoveryRequest(
            type_url=xr.ENDPOINT, resource_names_subscribe=[xr.service_name(i) for i in range(services)]))
        s.request(discovery_pb2.DeltaDiscoveryRequest(type_url=xr.ROUTE, resource_names_subscribe=[xr.ROUTE_NAME]))
    state.conf = xr.configuration(services + added)
    sent = s.push()
    new = [xr.service_name(i) for i in range(services + added)]
    if variant == "sotw":
        sent += s.request(_sotw_request(xr.ENDPOINT, new, first[xr.ENDPOINT].nonce))
    else:
        sent += s.request(discovery_pb2.DeltaDiscoveryRequest(type_url=xr.ENDPOINT,
                                                              resource_names_subscribe=new[services:]))
    per_stream = sum(r.ByteSize() for r in sent)
    assert cp["push_bytes"] / 2 == pytest.approx(per_stream, rel=0.005)


def test_zero_measured_and_zero_simulated_is_no_error():
    real = [Observation(values={"resync_bytes": 0.0})] * 3
    row = compare("g:delta", "resync_bytes", real, [Observation(values={"resync_bytes": 0.0})] * 3, quick=False)
    assert row["error"] == 0.0 and row["pass"]
