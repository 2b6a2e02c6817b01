"""The reference control plane's configuration: Istio-shaped xDS resources for ``services`` services.

One listener (not bound to a port: the Envoys only receive configuration)
whose HTTP connection manager takes its routes from RDS; one route
configuration with a route per service; one EDS cluster and one
ClusterLoadAssignment per service. Each resource's version is a hash of its
bytes, so a restarted server gives the same versions (delta clients'
``initial_resource_versions`` then match).

:func:`sizes` measures the encoded sizes the simulator's ``XdsResources``
takes (the bytes a resource adds to a DiscoveryResponse, the framing of a
response, delta's Resource wrapper), from these same messages.
"""

from __future__ import annotations

import hashlib

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
#: The simulator's name of each type.
KIND = {LISTENER: "listener", ROUTE: "route", CLUSTER: "cluster", ENDPOINT: "endpoint"}
#: Types whose state-of-the-world responses carry every resource (xDS protocol).
FULL_STATE = (LISTENER, CLUSTER)
#: The order in which a push sends the types (Envoy wants CDS before EDS, LDS before RDS).
PUSH_ORDER = (CLUSTER, ENDPOINT, LISTENER, ROUTE)
ROUTE_NAME = "routes"
ENDPOINTS_PER_SERVICE = 3


def _ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(ads=config_source_pb2.AggregatedConfigSource(),
                                          resource_api_version=config_source_pb2.V3)


def service_name(i: int) -> str:
    return f"svc-{i:04d}"


def listener() -> listener_pb2.Listener:
    router = any_pb2.Any()
    router.Pack(router_pb2.Router())
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix="ingress", rds=hcm_pb2.Rds(config_source=_ads(), route_config_name=ROUTE_NAME),
        http_filters=[hcm_pb2.HttpFilter(name="envoy.filters.http.router", typed_config=router)])
    packed = any_pb2.Any()
    packed.Pack(hcm)
    return listener_pb2.Listener(
        name="listener-0",
        address=address_pb2.Address(socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=10000)),
        bind_to_port=wrappers_pb2.BoolValue(value=False),
        filter_chains=[listener_components_pb2.FilterChain(filters=[listener_components_pb2.Filter(
            name="envoy.filters.network.http_connection_manager", typed_config=packed)])])


def route_configuration(services: int) -> route_pb2.RouteConfiguration:
    routes = [route_components_pb2.Route(
        match=route_components_pb2.RouteMatch(prefix=f"/{service_name(i)}/"),
        route=route_components_pb2.RouteAction(cluster=service_name(i))) for i in range(services)]
    return route_pb2.RouteConfiguration(name=ROUTE_NAME, virtual_hosts=[route_components_pb2.VirtualHost(
        name="all", domains=["*"], routes=routes)])


def cluster(i: int) -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster(
        name=service_name(i), type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=_ads()),
        connect_timeout=duration_pb2.Duration(seconds=1))


def load_assignment(i: int) -> endpoint_pb2.ClusterLoadAssignment:
    eps = [endpoint_components_pb2.LbEndpoint(endpoint=endpoint_components_pb2.Endpoint(address=address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=20000 + j))))
        for j in range(ENDPOINTS_PER_SERVICE)]
    return endpoint_pb2.ClusterLoadAssignment(cluster_name=service_name(i),
                                              endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=eps)])


def _pack(msg) -> tuple[str, any_pb2.Any]:
    a = any_pb2.Any()
    a.Pack(msg)
    return hashlib.blake2b(a.value, digest_size=6).hexdigest(), a


def configuration(services: int) -> dict[str, dict[str, tuple[str, any_pb2.Any]]]:
    """type URL -> name -> (version, packed resource) for ``services`` services."""
    return {
        LISTENER: {"listener-0": _pack(listener())},
        ROUTE: {ROUTE_NAME: _pack(route_configuration(services))},
        CLUSTER: {service_name(i): _pack(cluster(i)) for i in range(services)},
        ENDPOINT: {service_name(i): _pack(load_assignment(i)) for i in range(services)},
    }


def _embedded(a: any_pb2.Any) -> int:
    """Bytes one packed resource adds to a DiscoveryResponse's ``resources``."""
    return discovery_pb2.DiscoveryResponse(resources=[a]).ByteSize()


def sizes(services: int, added: int) -> dict[str, float]:
    """The simulator's ``XdsResources`` sizes, measured on these messages.

    Per-resource sizes are means over the services of a configuration of
    ``services + added`` services; the route's base and per-service bytes
    come from its size at ``services`` and at ``services + added``.
    """
    n = services + added
    conf = configuration(n)
    mean = {t: sum(_embedded(a) for _, a in conf[t].values()) / len(conf[t]) for t in (CLUSTER, ENDPOINT)}
    r0 = _embedded(_pack(route_configuration(services))[1])
    r1 = _embedded(_pack(route_configuration(n))[1])
    per_service = (r1 - r0) / added if added else 0.0
    sample = conf[CLUSTER][service_name(0)]
    empty = discovery_pb2.DiscoveryResponse(version_info="v00000000", type_url=CLUSTER, nonce="000001").ByteSize()
    delta_one = discovery_pb2.DeltaDiscoveryResponse(resources=[discovery_pb2.Resource(
        name=service_name(0), version=sample[0], resource=sample[1])]).ByteSize()
    return {
        "listeners": 1,
        "listener_bytes": _embedded(conf[LISTENER]["listener-0"][1]),
        "route_base_bytes": r1 - per_service * n,
        "route_bytes_per_service": per_service,
        "cluster_bytes": mean[CLUSTER],
        "cla_base_bytes": mean[ENDPOINT],
        "endpoints_per_service": ENDPOINTS_PER_SERVICE,
        "endpoint_bytes": 0,
        "response_overhead_bytes": empty,
        "delta_resource_overhead_bytes": delta_one - _embedded(sample[1]),
    }
