"""``fleetsim import-envoy``: an Envoy v3 bootstrap becomes a fleetsim gateway pool.

The fixture ``tests/data/envoy_article.yaml`` is the "Configuration Template"
of the source article, re-indented. Malformed inputs must end in one located
line, ``FILE:LINE: envoy.path: reason``, and exit status 2; expected lines are
found by a unique snippet of the offending line, so line numbers are exact.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.cli import main
from sim.config import ConfigError
from sim.config.envoy_import import envoy_path as render_path
from sim.config.envoy_import import import_envoy, parse_duration
from sim.config.loader import load_topology

DATA = Path(__file__).resolve().parent / "data"
ARTICLE = DATA / "envoy_article.yaml"

LISTENER = """\
static_resources:
  listeners:
    - name: l
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: ingress_http
                route_config:
                  virtual_hosts:
                    - name: all
                      domains: ["*"]
                      routes:
{routes}
  clusters:
{clusters}
"""

ROUTE = """\
                        - match: {prefix: "/"}
                          route:
                            cluster: backend
"""

CLUSTER = """\
    - name: backend
      connect_timeout: 1s
"""

TOPOLOGY = """\
name: imported
regions:
  us-east-1:
    azs: [use1-az1, use1-az2]
clients:
  us-east-1: {share: 1.0}
balancers:
  us-east-1: {policy: round_robin}
services:
  api:
    instances_per_az: {use1-az1: 2, use1-az2: 2}
    service_time_s: {dist: lognormal, median: 0.010, p99: 0.050}
"""

EXPERIMENT = """\
name: imported-exp
topology: topo.yaml
workload:
  rate_schedule:
    - {at_s: 0, rate_per_s: 50}
duration_s: 2
"""


def bootstrap(tmp_path: Path, routes: str = ROUTE, clusters: str = CLUSTER, name: str = "envoy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(LISTENER.format(routes=routes.rstrip("\n"), clusters=clusters.rstrip("\n")))
    return path


def line_of(path: Path, snippet: str) -> int:
    lines = [i for i, text in enumerate(path.read_text().splitlines(), 1) if snippet in text]
    assert len(lines) == 1, f"{snippet!r} is on lines {lines}"
    return lines[0]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["import-envoy", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def ignored_paths(result) -> dict[str, str]:
    return {render_path(i.path): i.reason for i in result.ignored}


# --------------------------------------------------------------------------- the article


def test_article_template_imports_its_values():
    r = import_envoy(ARTICLE, az="use1-az1", instances=3)
    gw = r.pool
    assert r.cluster_name == "backend_service"
    assert (gw.az, gw.instances) == ("use1-az1", 3)
    assert gw.route.timeout_s == 5.0
    rp = gw.route.retry_policy
    assert rp.retry_on == ["5xx"] and rp.num_retries == 2 and rp.per_try_timeout_s == 2.0
    c = gw.cluster
    assert c.lb_policy == "LEAST_REQUEST"
    assert c.connect_timeout_s == 0.25
    cb = c.circuit_breakers
    assert (cb.max_connections, cb.max_pending_requests, cb.max_requests, cb.max_retries) == (1024, 1024, 1024, 3)
    assert cb.retry_budget is None
    assert c.http_protocol == "http2" and c.max_concurrent_streams == 100
    od = c.outlier_detection
    assert (od.consecutive_5xx, od.interval_s, od.base_ejection_time_s, od.max_ejection_percent) == (5, 10.0, 30.0, 50)
    assert c.health_check is None
    # Only what the Envoy config set is written out.
    assert set(r.data["cluster"]) == {"connect_timeout_s", "lb_policy", "circuit_breakers", "outlier_detection",
                                      "http_protocol", "max_concurrent_streams"}


def test_article_template_lists_what_it_ignores():
    r = import_envoy(ARTICLE)
    hcm = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"
    assert ignored_paths(r) == {
        "static_resources.listeners[0].address.socket_address": "not modelled",
        "static_resources.listeners[0].filter_chains[0].transport_socket": "not modelled",
        f"{hcm}.stat_prefix": "not modelled",
        f"{hcm}.codec_type": "not modelled",
        f"{hcm}.http_filters": "not modelled",
        f"{hcm}.access_log": "not modelled",
        "static_resources.clusters[0].type": "not modelled",
    }
    assert [i.line for i in r.ignored] == sorted(i.line for i in r.ignored)
    assert r.ignored[-1].line == line_of(ARTICLE, "type: STRICT_DNS")


def test_article_step2_cluster_lists_tcp_keepalive(tmp_path):
    # The article's "Envoy Cluster Configuration for Scale" (Step 2), re-indented.
    step2 = """\
    - name: backend
      connect_timeout: 0.25s
      type: STRICT_DNS
      lb_policy: LEAST_REQUEST
      circuit_breakers:
        thresholds:
          - priority: DEFAULT
            max_connections: 1024
            max_pending_requests: 1024
            max_requests: 1024
            max_retries: 3
      connection_pool_per_downstream_connection: false
      http2_protocol_options:
        max_concurrent_streams: 100
      upstream_connection_options:
        tcp_keepalive:
          keepalive_time: 60
          keepalive_intvl: 10
          keepalive_probes: 3
"""
    path = bootstrap(tmp_path, clusters=step2)
    r = import_envoy(path)
    ign = ignored_paths(r)
    assert ign["static_resources.clusters[0].upstream_connection_options.tcp_keepalive"] == "not modelled"
    assert "static_resources.clusters[0].connection_pool_per_downstream_connection" in ign
    assert r.pool.cluster.max_concurrent_streams == 100


def test_cli_prints_yaml_and_ignored_list(capsys):
    code, out, err = run(capsys, str(ARTICLE), "--az", "use1-az1")
    assert code == 0
    assert out.startswith("# Imported by `fleetsim import-envoy`")
    assert "gateways:\n  gw:\n    az: use1-az1\n" in out
    assert f"{ARTICLE}:{line_of(ARTICLE, 'type: STRICT_DNS')}: static_resources.clusters[0].type: not modelled" in err
    assert "not modelled (the simulation does not see them)" in err


# --------------------------------------------------------------------------- round trip


def test_round_trip_through_fleetsim_check(tmp_path, capsys):
    gw = tmp_path / "gw.yaml"
    code, out, err = run(capsys, str(ARTICLE), "--pool", "edge", "--az", "use1-az2", "--instances", "2",
                         "--out", str(gw))
    assert code == 0 and out == ""
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    (tmp_path / "topo.yaml").write_text(TOPOLOGY + gw.read_text())
    (tmp_path / "exp.yaml").write_text(EXPERIMENT)
    assert main(["check", str(tmp_path / "exp.yaml")]) == 0
    topo = load_topology(tmp_path / "topo.yaml")
    assert topo.gateways["edge"] == import_envoy(ARTICLE, az="use1-az2", instances=2).pool


def test_placeholder_az_is_rejected_by_check(tmp_path, capsys):
    gw = tmp_path / "gw.yaml"
    assert run(capsys, str(ARTICLE), "--out", str(gw))[0] == 0
    assert "TODO-az" in gw.read_text()
    (tmp_path / "topo.yaml").write_text(TOPOLOGY + gw.read_text())
    (tmp_path / "exp.yaml").write_text(EXPERIMENT)
    assert main(["check", str(tmp_path / "exp.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    topo = tmp_path / "topo.yaml"
    assert err == [f"{topo}:{line_of(topo, 'az: TODO-az')}: topology.gateways.gw.az: "
                   "unknown AZ 'TODO-az' (AZs: use1-az1, use1-az2)"]


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize("value, seconds", [
    ("0.25s", 0.25), ("15s", 15.0), ("1.5s", 1.5), (".5s", 0.5), ("0s", 0.0), ("0.000000001s", 1e-9),
    ({"seconds": 1, "nanos": 500_000_000}, 1.5), ({"seconds": "2"}, 2.0), ({"nanos": 250_000_000}, 0.25),
    ({}, 0.0),
])
def test_durations(value, seconds):
    def fail(reason):
        raise AssertionError(reason)

    assert parse_duration(value, fail) == pytest.approx(seconds)


@pytest.mark.parametrize("value, word", [
    ("100ms", "'0.1s' for 100 ms"), ("5", "'s' suffix"), (5, "write '5s'"), ("abc", "unparseable"),
    ("-1s", "negative"), ({"seconds": 1, "nanos": -1}, "nanos"), ({"minutes": 1}, "unknown key 'minutes'"),
    ({"seconds": 1.5}, "whole number"), (None, "got nothing"),
])
def test_bad_durations(value, word):
    def fail(reason):
        raise ValueError(reason)

    with pytest.raises(ValueError, match="duration") as e:
        parse_duration(value, fail)
    assert word in str(e.value)


def test_duration_forms_in_a_config(tmp_path):
    clusters = """\
    - name: backend
      connect_timeout: {seconds: 0, nanos: 250000000}
      outlier_detection:
        interval: "2.5s"
        base_ejection_time: {seconds: 10}
        max_ejection_time: 60s
"""
    r = import_envoy(bootstrap(tmp_path, clusters=clusters))
    od = r.pool.cluster.outlier_detection
    assert r.pool.cluster.connect_timeout_s == 0.25
    assert (od.interval_s, od.base_ejection_time_s, od.max_ejection_time_s) == (2.5, 10.0, 60.0)


@pytest.mark.parametrize("retry_on, expected, dropped", [
    ("5xx", ["5xx"], []),
    ("5xx,gateway-error,reset", ["5xx", "gateway-error", "reset"], []),
    (" connect-failure , retriable-status-codes ,", ["connect-failure", "retriable-status-codes"], []),
    ("5xx,refused-stream,retriable-4xx", ["5xx"], ["refused-stream", "retriable-4xx"]),
])
def test_retry_on_is_split(tmp_path, retry_on, expected, dropped):
    routes = ROUTE + f"""\
                            retry_policy:
                              retry_on: "{retry_on}"
                              retriable_status_codes: [503, 429]
                              retry_back_off: {{base_interval: 0.05s, max_interval: 1s}}
                              retry_host_predicate:
                                - name: envoy.retry_host_predicates.previous_hosts
                                  typed_config:
                                    "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate
                              host_selection_retry_max_attempts: "3"
"""
    r = import_envoy(bootstrap(tmp_path, routes=routes))
    rp = r.pool.route.retry_policy
    assert rp.retry_on == expected
    assert rp.retriable_status_codes == [503, 429]
    assert (rp.retry_back_off.base_interval_s, rp.retry_back_off.max_interval_s) == (0.05, 1.0)
    assert rp.retry_host_predicate == ["previous_hosts"]
    assert rp.host_selection_retry_max_attempts == 3
    reasons = [i.reason for i in r.ignored if str(i.path[-1]) == "retry_on"]
    assert [w for w in dropped if any(repr(w) in x for x in reasons)] == dropped


def test_retry_on_with_nothing_modelled_drops_the_policy(tmp_path):
    routes = ROUTE + """\
                            retry_policy:
                              retry_on: "refused-stream"
"""
    r = import_envoy(bootstrap(tmp_path, routes=routes))
    assert r.pool.route.retry_policy is None
    assert any("retry policy not imported" in i.reason for i in r.ignored)


def test_virtual_host_retry_policy_applies(tmp_path):
    path = bootstrap(tmp_path)
    text = path.read_text().replace("      domains: [\"*\"]\n",
                                    "      domains: [\"*\"]\n                      retry_policy: {retry_on: gateway-error}\n")
    path.write_text(text)
    assert import_envoy(path).pool.route.retry_policy.retry_on == ["gateway-error"]


def test_retry_budget_and_priorities(tmp_path):
    clusters = """\
    - name: backend
      circuit_breakers:
        thresholds:
          - max_requests: 500
            retry_budget:
              budget_percent: {value: 25.0}
              min_retry_concurrency: 5
            track_remaining: true
          - priority: HIGH
            max_requests: 9
"""
    path = bootstrap(tmp_path, clusters=clusters)
    r = import_envoy(path)
    cb = r.pool.cluster.circuit_breakers
    assert cb.max_requests == 500
    assert (cb.retry_budget.budget_percent, cb.retry_budget.min_retry_concurrency) == (25.0, 5)
    ign = ignored_paths(r)
    assert ign["static_resources.clusters[0].circuit_breakers.thresholds[0].track_remaining"] == "not modelled"
    assert "priority HIGH" in ign["static_resources.clusters[0].circuit_breakers.thresholds[1]"]


def test_retry_budget_defaults_are_envoys(tmp_path):
    clusters = """\
    - name: backend
      circuit_breakers:
        thresholds:
          - retry_budget: {}
"""
    cb = import_envoy(bootstrap(tmp_path, clusters=clusters)).pool.cluster.circuit_breakers
    assert (cb.retry_budget.budget_percent, cb.retry_budget.min_retry_concurrency) == (20.0, 3)


def test_full_cluster(tmp_path):
    clusters = """\
    - name: backend
      lb_policy: LEAST_REQUEST
      least_request_lb_config:
        choice_count: 3
        active_request_bias: {default_value: 0.5, runtime_key: lb.bias}
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          common_http_protocol_options: {idle_timeout: 60s}
          explicit_http_config:
            http2_protocol_options: {max_concurrent_streams: 64, initial_stream_window_size: 65536}
      health_checks:
        - timeout: 1s
          interval: 5s
          interval_jitter_percent: 10
          unhealthy_threshold: 3
          healthy_threshold: 2
          no_traffic_interval: 30s
          http_health_check:
            path: /healthz
            retriable_statuses: [{start: 500, end: 503}]
        - timeout: 1s
          interval: 1s
          unhealthy_threshold: 1
          healthy_threshold: 1
          tcp_health_check: {}
      common_lb_config:
        healthy_panic_threshold: {value: 30}
      outlier_detection:
        consecutive_gateway_failure: 3
        enforcing_consecutive_gateway_failure: 100
        always_eject_one_host: true
        split_external_local_origin_errors: true
      load_assignment:
        cluster_name: backend
"""
    r = import_envoy(bootstrap(tmp_path, clusters=clusters))
    c = r.pool.cluster
    assert (c.least_request_lb_config.choice_count, c.least_request_lb_config.active_request_bias) == (3, 0.5)
    assert (c.http_protocol, c.max_concurrent_streams) == ("http2", 64)
    hc = c.health_check
    assert (hc.timeout_s, hc.interval_s, hc.interval_jitter_percent, hc.unhealthy_threshold,
            hc.healthy_threshold, hc.no_traffic_interval_s) == (1.0, 5.0, 10, 3, 2, 30.0)
    assert hc.http_health_check.retriable_statuses == [500, 501, 502]
    assert c.common_lb_config.healthy_panic_threshold == 30
    od = c.outlier_detection
    assert (od.consecutive_gateway_failure, od.enforcing_consecutive_gateway_failure, od.always_eject_one_host) \
        == (3, 100, True)
    ign = ignored_paths(r)
    base = "static_resources.clusters[0]"
    opts = f'{base}.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]'
    for p in (f"{base}.least_request_lb_config.active_request_bias.runtime_key",
              f"{opts}.common_http_protocol_options.idle_timeout",
              f"{opts}.explicit_http_config.http2_protocol_options.initial_stream_window_size",
              f"{base}.health_checks[0].http_health_check.path",
              f"{base}.health_checks[1]",
              f"{base}.outlier_detection.split_external_local_origin_errors",
              f"{base}.load_assignment"):
        assert p in ign, p


def test_default_route_picks_the_cluster_and_cluster_option_overrides(tmp_path):
    routes = """\
                        - match: {prefix: "/admin"}
                          route: {cluster: admin, timeout: 1s}
                        - match: {prefix: "/"}
                          route: {cluster: backend, timeout: 3s}
"""
    clusters = CLUSTER + """\
    - name: admin
      lb_policy: RANDOM
"""
    path = bootstrap(tmp_path, routes=routes, clusters=clusters)
    r = import_envoy(path)
    assert (r.cluster_name, r.pool.route.timeout_s, r.pool.cluster.lb_policy) == ("backend", 3.0, "ROUND_ROBIN")
    ign = ignored_paths(r)
    assert "--cluster admin" in ign["static_resources.clusters[1]"]
    assert any(p.endswith("routes[0]") for p in ign)
    r = import_envoy(path, cluster="admin")
    assert (r.cluster_name, r.pool.route.timeout_s, r.pool.cluster.lb_policy) == ("admin", 1.0, "RANDOM")
    assert "--cluster backend" in ignored_paths(r)["static_resources.clusters[0]"]


def test_no_listeners_single_cluster(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("static_resources:\n  clusters:\n    - name: only\n      connect_timeout: 2s\n"
                    "admin:\n  address: {socket_address: {address: 0.0.0.0, port_value: 9901}}\n")
    r = import_envoy(path)
    assert r.route_path is None and r.pool.cluster.connect_timeout_s == 2.0 and r.pool.route.timeout_s == 15.0
    assert "admin.address.socket_address" in ignored_paths(r)


# --------------------------------------------------------------------------- malformed input


BAD = {
    "unparseable duration": (CLUSTER.replace("1s", "100ms"), ROUTE, "connect_timeout: 100ms",
                             "static_resources.clusters[0].connect_timeout", "'0.1s' for 100 ms"),
    "number as duration": (CLUSTER.replace("1s", "5"), ROUTE, "connect_timeout: 5",
                           "static_resources.clusters[0].connect_timeout", "write '5s'"),
    "route duration": (CLUSTER, ROUTE + "                            timeout: soon\n", "timeout: soon",
                       "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config"
                       ".virtual_hosts[0].routes[0].route.timeout", "unparseable duration 'soon'"),
    "lb policy": (CLUSTER + "      lb_policy: MAGLEV\n", ROUTE, "lb_policy: MAGLEV",
                  "static_resources.clusters[0].lb_policy", "MAGLEV is not modelled"),
    "not an integer": (CLUSTER + "      circuit_breakers: {thresholds: [{max_requests: lots}]}\n", ROUTE,
                       "max_requests: lots", "static_resources.clusters[0].circuit_breakers.thresholds[0]"
                       ".max_requests", "expected an integer, got a string ('lots')"),
    "model rule": (CLUSTER + "      outlier_detection: {base_ejection_time: 60s, max_ejection_time: 30s}\n", ROUTE,
                   "outlier_detection:", "static_resources.clusters[0].outlier_detection",
                   "cannot be smaller than base_ejection_time_s"),
    "model bound": (CLUSTER + "      outlier_detection: {max_ejection_percent: 150}\n", ROUTE,
                    "outlier_detection:", "static_resources.clusters[0].outlier_detection.max_ejection_percent",
                    "less than or equal to 100"),
    "unknown cluster": (CLUSTER, ROUTE.replace("cluster: backend", "cluster: elsewhere"), "cluster: elsewhere",
                        "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config"
                        ".virtual_hosts[0].routes[0].route.cluster", "'elsewhere' is not in static_resources"),
    "clusters not a list": ("    {}", ROUTE, "clusters:", "static_resources.clusters", "expected a list"),
    "zero route timeout": (CLUSTER, ROUTE + "                            timeout: 0s\n", "timeout: 0s",
                           "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config"
                           ".virtual_hosts[0].routes[0].route.timeout", "disables Envoy's route timeout"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_input_gives_one_located_line(tmp_path, capsys, case):
    clusters, routes, snippet, envoy_path, word = BAD[case]
    path = bootstrap(tmp_path, routes=routes, clusters=clusters)
    code, out, err = run(capsys, str(path))
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    prefix = f"{path}:{line_of(path, snippet)}: {envoy_path}: "
    assert lines[0].startswith(prefix), lines[0]
    assert word in lines[0]


@pytest.mark.parametrize("text, line, path, word", [
    ("static_resources:\n  clusters: a: b\n", 2, "(document)", "YAML syntax error"),
    ("- just\n- a list\n", 1, "(document)", "expected a mapping at the top"),
    ("name: t\nregions: {}\n", 1, "static_resources", "not an Envoy v3 bootstrap"),
    ("clusters:\n  - name: x\n", 1, "static_resources", "belongs under static_resources"),
    ("static_resources:\n  listeners: []\n", 1, "static_resources", "no clusters"),
    ("static_resources:\n  clusters:\n    - connect_timeout: 1s\n", 3, "static_resources.clusters[0]", "no name"),
    ("static_resources:\n  clusters:\n    - {name: a}\n    - {name: b}\n", 2, "static_resources.clusters",
     "pick one with --cluster"),
])
def test_not_a_bootstrap(tmp_path, capsys, text, line, path, word):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    code, out, err = run(capsys, str(f))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"{f}:{line}: {path}: "), lines[0]
    assert word in lines[0]


def test_missing_file_and_bad_options(tmp_path, capsys):
    code, _, err = run(capsys, str(tmp_path / "nope.yaml"))
    assert code == 2 and err.strip() == f"{tmp_path / 'nope.yaml'}: (document): no such file"
    code, _, err = run(capsys, str(ARTICLE), "--instances", "0")
    assert code == 2 and err.strip().startswith("<command line>: --instances: ")
    code, _, err = run(capsys, str(ARTICLE), "--pool", "a.b")
    assert code == 2 and "invalid name 'a.b'" in err
    code, _, err = run(capsys, str(ARTICLE), "--cluster", "nope")
    assert code == 2 and err.strip() == ("<command line>: --cluster: no cluster 'nope' in static_resources "
                                         "(clusters: backend_service)")
    code, _, err = run(capsys, str(ARTICLE), "--out", str(tmp_path / "no" / "such" / "dir.yaml"))
    assert code == 2 and err.strip().startswith("<command line>: --out: cannot write")


def test_import_raises_config_error_for_api_users(tmp_path):
    with pytest.raises(ConfigError) as e:
        import_envoy(tmp_path / "missing.yaml")
    assert len(e.value.issues) == 1
