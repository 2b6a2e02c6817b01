"""Generate a real Envoy v3 bootstrap from the gateway pool fleetsim simulates.

:func:`envoy_bootstrap` is the reverse of :mod:`sim.config.envoy_import`: the
same :class:`~sim.config.models.GatewayPool` that the simulator runs becomes a
static bootstrap that Envoy 1.40 accepts (``envoy --mode validate``). Every
address is ``127.0.0.1``: the admin interface, the one listener and every
backend endpoint.

Layout
    - ``admin`` on 127.0.0.1:``admin_port``; ``node`` with ``id`` and, when a
      zone is given, ``locality.zone``.
    - One listener on 127.0.0.1:``listen_port`` with ``http_connection_manager``
      (``stat_prefix``, ``codec_type: AUTO``, the router filter) and one
      virtual host (``domains: ["*"]``): a route ``prefix: /<service>/`` to the
      cluster ``<service>`` per service, then ``prefix: /`` to the only
      service when there is one. Each route carries ``timeout`` and the
      ``retry_policy`` of ``pool.route``. The virtual host adds the header
      ``x-fleetsim-gateway: <node_id>`` so that backends count requests per
      gateway.
    - One ``STATIC`` cluster per service, one endpoint 127.0.0.1:<port> per
      backend instance (``backend_ports[service]``, in instance order
      ``<service>-<az>-<i>``: AZs as in ``instances_per_az``, then i). With a
      zone, endpoints are grouped by locality (``zone``: the instance's AZ);
      without, they form one group with no locality.

Field mapping (fleetsim -> Envoy)
    - ``route.timeout_s`` -> ``route.timeout``;
      ``route.retry_policy``: ``retry_on`` (joined with commas),
      ``num_retries``, ``per_try_timeout_s`` -> ``per_try_timeout``,
      ``retry_back_off.base_interval_s``/``max_interval_s`` ->
      ``base_interval``/``max_interval``, ``retry_host_predicate:
      [previous_hosts]`` -> ``envoy.retry_host_predicates.previous_hosts``
      (typed ``PreviousHostsPredicate``), ``host_selection_retry_max_attempts``,
      ``retriable_status_codes``.
    - ``cluster``: ``lb_policy``, ``least_request_lb_config`` (``choice_count``,
      ``active_request_bias`` as ``RuntimeDouble.default_value``; only with
      LEAST_REQUEST), ``connect_timeout_s`` -> ``connect_timeout``,
      ``circuit_breakers`` -> one ``thresholds`` entry, priority DEFAULT, with
      ``retry_budget`` (``budget_percent: {value}``, ``min_retry_concurrency``),
      ``http_protocol: http2`` -> ``typed_extension_protocol_options``
      (``envoy.extensions.upstreams.http.v3.HttpProtocolOptions``
      ``explicit_http_config.http2_protocol_options.max_concurrent_streams``;
      HTTP/1.1 is Envoy's default and emits nothing),
      ``outlier_detection`` (every field, durations as ``"Ns"``),
      ``health_check`` -> ``health_checks[0]`` with ``http_health_check.path:
      /healthz`` and ``retriable_statuses`` as ``[start, end)`` ranges,
      ``common_lb_config.healthy_panic_threshold: {value}`` and
      ``update_merge_window``.
    - ``Service.instance_overrides[...].lb_weight`` -> the endpoint's
      ``load_balancing_weight``.

Durations are Envoy (protobuf JSON) strings of seconds: ``"0.25s"``, ``"2s"``.

No Envoy counterpart in the bootstrap
    - ``GatewayPool.workers``: Envoy's ``--concurrency`` flag (see
      :func:`envoy_command`), not a bootstrap field.
    - ``GatewayPool.cpu_time_s``: the cost of a request, physics, not config.
    - ``GatewayPool.az`` and ``instances``: where and how many Envoys run; the
      AZ becomes ``node.locality.zone`` only when passed as ``zone``.
    - ``Cluster.max_concurrent_streams`` with ``http1``: HTTP/1.1 has no streams.
    - ``Service`` physics (``workers``, ``queue_limit``, ``service_time_s``,
      ``error_probability``, byte sizes, ``queue_discipline``,
      ``drop_expired``, ``service_time_factor``): properties of the backends,
      which listen on ``backend_ports``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from sim.config.models import (
    Cluster,
    Experiment,
    GatewayPool,
    HealthCheck,
    OutlierDetection,
    RetryPolicy,
    Route,
    Service,
    Topology,
)
from sim.config.naming import backend_name
from sim.files import atomic_write_text

LOCALHOST = "127.0.0.1"
TYPE = "type.googleapis.com/"
HCM = "envoy.filters.network.http_connection_manager"
HCM_TYPE = TYPE + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "envoy.filters.http.router"
ROUTER_TYPE = TYPE + "envoy.extensions.filters.http.router.v3.Router"
EXT_AUTHZ = "envoy.filters.http.ext_authz"
EXT_AUTHZ_TYPE = TYPE + "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
PREVIOUS_HOSTS = "envoy.retry_host_predicates.previous_hosts"
PREVIOUS_HOSTS_TYPE = TYPE + "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
HEALTH_PATH = "/healthz"
GATEWAY_HEADER = "x-fleetsim-gateway"

Services = Mapping[str, Service] | Topology | Experiment


def duration(seconds: float) -> str:
    """Seconds as an Envoy duration string: ``0.25`` -> ``"0.25s"``, ``2.0`` -> ``"2s"``."""
    text = f"{round(float(seconds), 9):.9f}".rstrip("0").rstrip(".")
    return f"{text}s"


def _address(port: int) -> dict:
    return {"socket_address": {"address": LOCALHOST, "port_value": int(port)}}


def _services(services: Services) -> Mapping[str, Service]:
    if isinstance(services, Experiment):
        return services.topology.services
    if isinstance(services, Topology):
        return services.services
    return services


# --------------------------------------------------------------------------- route


def retry_policy(rp: RetryPolicy) -> dict:
    """``RetryPolicy`` -> Envoy ``config.route.v3.RetryPolicy``."""
    out: dict[str, Any] = {"retry_on": ",".join(rp.retry_on), "num_retries": rp.num_retries}
    if rp.per_try_timeout_s is not None:
        out["per_try_timeout"] = duration(rp.per_try_timeout_s)
    back_off: dict[str, Any] = {"base_interval": duration(rp.retry_back_off.base_interval_s)}
    if rp.retry_back_off.max_interval_s is not None:
        back_off["max_interval"] = duration(rp.retry_back_off.max_interval_s)
    out["retry_back_off"] = back_off
    if "previous_hosts" in rp.retry_host_predicate:
        out["retry_host_predicate"] = [{"name": PREVIOUS_HOSTS,
                                        "typed_config": {"@type": PREVIOUS_HOSTS_TYPE}}]
    out["host_selection_retry_max_attempts"] = rp.host_selection_retry_max_attempts
    if rp.retriable_status_codes:
        out["retriable_status_codes"] = list(rp.retriable_status_codes)
    return out


def route_action(route: Route, cluster: str) -> dict:
    out: dict[str, Any] = {"cluster": cluster, "timeout": duration(route.timeout_s)}
    if route.retry_policy is not None:
        out["retry_policy"] = retry_policy(route.retry_policy)
    return out


# --------------------------------------------------------------------------- cluster


def outlier_detection(od: OutlierDetection) -> dict:
    out: dict[str, Any] = {
        "consecutive_5xx": od.consecutive_5xx,
        "consecutive_gateway_failure": od.consecutive_gateway_failure,
        "interval": duration(od.interval_s),
        "base_ejection_time": duration(od.base_ejection_time_s),
    }
    if od.max_ejection_time_s is not None:
        out["max_ejection_time"] = duration(od.max_ejection_time_s)
    out["max_ejection_time_jitter"] = duration(od.max_ejection_time_jitter_s)
    for key in ("max_ejection_percent", "always_eject_one_host", "enforcing_consecutive_5xx",
                "enforcing_consecutive_gateway_failure", "enforcing_success_rate",
                "success_rate_minimum_hosts", "success_rate_request_volume",
                "success_rate_stdev_factor", "failure_percentage_threshold",
                "enforcing_failure_percentage", "failure_percentage_minimum_hosts",
                "failure_percentage_request_volume", "successful_active_health_check_uneject_host"):
        out[key] = getattr(od, key)
    return out


def _status_ranges(codes: list[int]) -> list[dict]:
    """Status codes as Envoy ``Int64Range``s ``[start, end)``, consecutive codes merged."""
    ranges: list[dict] = []
    for code in sorted(set(codes)):
        if ranges and ranges[-1]["end"] == code:
            ranges[-1]["end"] = code + 1
        else:
            ranges.append({"start": code, "end": code + 1})
    return ranges


def health_check(hc: HealthCheck) -> dict:
    out: dict[str, Any] = {
        "timeout": duration(hc.timeout_s),
        "interval": duration(hc.interval_s),
        "initial_jitter": duration(hc.initial_jitter_s),
        "interval_jitter": duration(hc.interval_jitter_s),
        "interval_jitter_percent": hc.interval_jitter_percent,
        "unhealthy_threshold": hc.unhealthy_threshold,
        "healthy_threshold": hc.healthy_threshold,
    }
    for key in ("unhealthy_interval", "unhealthy_edge_interval", "healthy_edge_interval"):
        value = getattr(hc, key + "_s")
        if value is not None:
            out[key] = duration(value)
    out["no_traffic_interval"] = duration(hc.no_traffic_interval_s)
    if hc.no_traffic_healthy_interval_s is not None:
        out["no_traffic_healthy_interval"] = duration(hc.no_traffic_healthy_interval_s)
    http: dict[str, Any] = {"path": HEALTH_PATH}
    if hc.http_health_check.retriable_statuses:
        http["retriable_statuses"] = _status_ranges(hc.http_health_check.retriable_statuses)
    out["http_health_check"] = http
    return out


def _endpoints(name: str, service: Service, ports: list[int], zone: str | None) -> list[dict]:
    instances = [(az, backend_name(name, az, i)) for az, n in service.instances_per_az.items() for i in range(n)]
    if len(ports) != len(instances):
        raise ValueError(f"backend_ports[{name!r}] has {len(ports)} port(s) but service {name!r} "
                         f"has {len(instances)} instance(s) ({', '.join(i for _, i in instances) or 'none'})")
    groups: dict[str | None, list[dict]] = {}
    for (az, inst), port in zip(instances, ports, strict=True):
        ep: dict[str, Any] = {"endpoint": {"address": _address(port)}}
        override = service.instance_overrides.get(inst)
        if override is not None and override.lb_weight != 1:
            ep["load_balancing_weight"] = override.lb_weight
        groups.setdefault(az if zone is not None else None, []).append(ep)
    out = []
    for az, eps in groups.items():
        group: dict[str, Any] = {}
        if az is not None:
            group["locality"] = {"zone": az}
        group["lb_endpoints"] = eps
        out.append(group)
    return out


def cluster(name: str, cl: Cluster, service: Service, ports: list[int], zone: str | None) -> dict:
    """One STATIC cluster for ``service`` with the pool's cluster settings."""
    cb = cl.circuit_breakers
    thresholds: dict[str, Any] = {
        "priority": "DEFAULT",
        "max_connections": cb.max_connections,
        "max_pending_requests": cb.max_pending_requests,
        "max_requests": cb.max_requests,
        "max_retries": cb.max_retries,
    }
    if cb.retry_budget is not None:
        thresholds["retry_budget"] = {
            "budget_percent": {"value": cb.retry_budget.budget_percent},
            "min_retry_concurrency": cb.retry_budget.min_retry_concurrency,
        }
    out: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": duration(cl.connect_timeout_s),
        "lb_policy": cl.lb_policy,
    }
    if cl.lb_policy == "LEAST_REQUEST":
        lr = cl.least_request_lb_config
        out["least_request_lb_config"] = {
            "choice_count": lr.choice_count,
            "active_request_bias": {"default_value": lr.active_request_bias},
        }
    out["circuit_breakers"] = {"thresholds": [thresholds]}
    if cl.http_protocol == "http2":
        out["typed_extension_protocol_options"] = {HTTP_OPTIONS: {
            "@type": TYPE + HTTP_OPTIONS,
            "explicit_http_config": {
                "http2_protocol_options": {"max_concurrent_streams": cl.max_concurrent_streams}},
        }}
    if cl.outlier_detection is not None:
        out["outlier_detection"] = outlier_detection(cl.outlier_detection)
    if cl.health_check is not None:
        out["health_checks"] = [health_check(cl.health_check)]
    out["common_lb_config"] = {"healthy_panic_threshold": {"value": cl.common_lb_config.healthy_panic_threshold},
                               "update_merge_window": duration(cl.common_lb_config.update_merge_window_s)}
    za = cl.common_lb_config.zone_aware_lb_config
    if za is not None:
        out["common_lb_config"]["zone_aware_lb_config"] = {
            "routing_enabled": {"value": za.routing_enabled}, "min_cluster_size": za.min_cluster_size}
    out["load_assignment"] = {"cluster_name": name, "endpoints": _endpoints(name, service, ports, zone)}
    return out


# --------------------------------------------------------------------------- bootstrap

LOCAL_CLUSTER = "fleetsim_local"
"""The local cluster's name (zone-aware routing): every gateway with its zone."""


def envoy_bootstrap(pool: GatewayPool, services: Services, *, listen_port: int, admin_port: int,
                    backend_ports: Mapping[str, list[int]], node_id: str = "fleetsim-gateway",
                    zone: str | None = None, outlier_event_log: str | Path | None = None,
                    rate_limit: Any = None, ratelimit_port: int | None = None,
                    local_cluster: list[tuple[str, int]] | None = None) -> dict:
    """The Envoy v3 bootstrap (plain data) for one instance of ``pool``.

    ``services``: the services it routes to (a mapping, or a topology or
    experiment whose services are used). ``backend_ports[service]``: one port
    per backend instance, in instance order. ``zone``: the gateway's zone
    (``node.locality.zone``); also groups endpoints by their AZ.
    ``outlier_event_log``: a file for Envoy's outlier-detection event log
    (``cluster_manager.outlier_detection.event_log_path``; one JSON event per
    ejection and return, with its time). ``rate_limit`` (a remote
    ``topology.rate_limit``) with ``ratelimit_port``: an ext_authz HTTP filter
    before the router, calling the rate-limit sidecar
    (:mod:`reference_gateway.ratelimit_sidecar`) with the limit's timeout;
    ``failure_mode_allow`` unless ``failure_mode_deny``, and 500 on error as
    Envoy's rate-limit filter gives.
    ``local_cluster``: (zone, listen
    port) of every gateway of the local cluster, for zone-aware routing: a
    STATIC cluster ``fleetsim_local`` with one locality per zone, named by
    ``cluster_manager.local_cluster_name``.

    Raises:
        ValueError: a service without ports, or a port count that does not
        match the service's instances.
    """
    svcs = _services(services)
    if not svcs:
        raise ValueError("no services to route to")
    missing = [name for name in svcs if name not in backend_ports]
    if missing:
        raise ValueError(f"backend_ports has no ports for service(s) {', '.join(missing)}")
    routes = [{"match": {"prefix": f"/{name}/"}, "route": route_action(pool.route, name)} for name in svcs]
    if len(svcs) == 1:
        only = next(iter(svcs))
        routes.append({"match": {"prefix": "/"}, "route": route_action(pool.route, only)})
    hcm = {
        "@type": HCM_TYPE,
        "stat_prefix": "ingress_http",
        "codec_type": "AUTO",
        "route_config": {
            "name": "fleetsim",
            "virtual_hosts": [{
                "name": "all", "domains": ["*"], "routes": routes,
                # Lets the backends count requests per (gateway, backend).
                "request_headers_to_add": [{
                    "header": {"key": GATEWAY_HEADER, "value": node_id},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }],
            }],
        },
        "http_filters": [{"name": ROUTER, "typed_config": {"@type": ROUTER_TYPE}}],
    }
    extra_clusters = []
    if rate_limit is not None and ratelimit_port is not None:
        hcm["http_filters"].insert(0, {"name": EXT_AUTHZ, "typed_config": {
            "@type": EXT_AUTHZ_TYPE,
            "transport_api_version": "V3",
            "failure_mode_allow": not rate_limit.failure_mode_deny,
            "status_on_error": {"code": "InternalServerError"},
            "http_service": {"server_uri": {"uri": f"http://127.0.0.1:{ratelimit_port}", "cluster": "ratelimit",
                                            "timeout": duration(rate_limit.timeout_s)}},
        }})
        extra_clusters.append({
            "name": "ratelimit", "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": "ratelimit", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": _address(ratelimit_port)}}]}]},
        })
    node: dict[str, Any] = {"id": node_id, "cluster": "fleetsim-gateway"}
    if zone is not None:
        node["locality"] = {"zone": zone}
    boot: dict[str, Any] = {
        "node": node,
        "admin": {"address": _address(admin_port)},
        "static_resources": {
            "listeners": [{
                "name": "ingress",
                "address": _address(listen_port),
                "filter_chains": [{"filters": [{"name": HCM, "typed_config": hcm}]}],
            }],
            "clusters": [cluster(name, pool.cluster, svc, list(backend_ports[name]), zone)
                         for name, svc in svcs.items()] + extra_clusters,
        },
    }
    if outlier_event_log is not None:
        boot["cluster_manager"] = {"outlier_detection": {"event_log_path": str(outlier_event_log)}}
    if local_cluster:
        groups: dict[str, list[dict]] = {}
        for z, port in local_cluster:
            groups.setdefault(z, []).append({"endpoint": {"address": _address(port)}})
        boot["static_resources"]["clusters"].append({
            "name": LOCAL_CLUSTER, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": LOCAL_CLUSTER, "endpoints": [
                {"locality": {"zone": z}, "lb_endpoints": eps} for z, eps in groups.items()]}})
        boot.setdefault("cluster_manager", {})["local_cluster_name"] = LOCAL_CLUSTER
    return boot


def write_bootstrap(path: str | Path, pool: GatewayPool, services: Services, **kwargs: Any) -> dict:
    """Write :func:`envoy_bootstrap` as YAML to ``path`` atomically; return the bootstrap."""
    boot = envoy_bootstrap(pool, services, **kwargs)
    path = Path(path)
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.width = 4096
    yaml.version = (1, 1)  # quotes 'n', 'yes', 'on': Envoy's YAML reader takes them for booleans
    yaml.representer.sort_base_mapping_type_on_output = False
    buf = io.StringIO()
    yaml.dump(boot, buf)
    atomic_write_text(path, buf.getvalue())
    return boot


def envoy_command(envoy: str | Path, config: str | Path, pool: GatewayPool, *,
                  base_id: int | None = None, log_level: str = "info") -> list[str]:
    """The command line to run ``config``: ``--concurrency`` is the pool's ``workers``."""
    # Access and outlier event logs are flushed every 100 ms (Envoy's default is
    # 10 s), so that a run's events can be read while Envoy still runs.
    cmd = [str(envoy), "-c", str(config), "--concurrency", str(pool.workers), "--log-level", log_level,
           "--file-flush-interval-msec", "100"]
    if base_id is not None:
        cmd += ["--base-id", str(base_id)]
    return cmd
