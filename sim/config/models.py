"""The experiment and topology schema: pydantic v2 models, strict and frozen.

A YAML key, its pydantic field and the attribute that components read share
one name. Fields that mirror an Envoy field carry Envoy's name and default
(``lb_policy``, ``choice_count``, ``active_request_bias``; a route's timeout
defaults to 15 s). Units live in names (``_s`` seconds, ``_bytes``,
``_per_s``). Cross-field rules that need the whole document (shares summing to
one, references to AZs and services) live in :mod:`sim.config.checks` so that
each message can name the exact path it concerns.

Defaults that Envoy derives from other fields (a health check's
``unhealthy_interval_s`` is its ``interval_s`` unless given, outlier
detection's ``max_ejection_time_s`` is max(300 s, ``base_ejection_time_s``),
...) are resolved here, by a validator of the model that holds both fields,
not by the component that uses them: a validated model holds every value a
run uses, so ``config.resolved.yaml`` shows them and loads back to the same
model. A value the user gave is never changed. The schema keeps such a field
optional (``null`` = derive it) and its description states the rule.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from .distributions import Constant, Distribution, Lognormal

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", max_length=63)]
"""A name (experiment, variant, region, AZ, pool, service, instance): ASCII letters, digits, '-' and '_',
starting with a letter or digit, at most 63 characters.

Names become directory names (runs, variants), metric keys (``gateway.<pool>``)
and random-stream keys (``<instance>.service_time``), so they stay ASCII and
free of path separators; no dots, since dots separate the parts of the dotted
paths of ``overrides``, ``--set`` and ``variants``. The loader's message for a
refused name (:func:`sim.config.loader.name_problem`) says so.
"""

Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class StrictModel(BaseModel):
    """Base of every configuration model: unknown keys are errors and instances are frozen.

    Frozen because one validated configuration is shared by every component
    (and by every replication) of a run; a validator that resolves a derived
    default sets it with ``object.__setattr__`` while the model is being built.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _fill(model: BaseModel, name: str, value: Any) -> None:
    """Set field ``name`` of a frozen model under validation to its derived ``value``.

    Only for a field the user left unset (``None``); it stays out of
    ``model_fields_set``, which lists what the user gave.
    """
    object.__setattr__(model, name, value)


# --------------------------------------------------------------------------- topology


class Region(StrictModel):
    """A region and its availability zones."""

    azs: list[Name] = Field(min_length=1, description="Availability-zone names, unique fleet-wide.")


class Network(StrictModel):
    """One-way network latency per hop, by the relation of the hop's two ends (seconds).

    Defaults follow docs/facts.md#network-latency: same-AZ RTT ~0.25-0.4 ms,
    cross-AZ RTT ~0.8-1.1 ms (us-east-1 / eu-west-1 measurements), cross-region
    tens of ms.
    """

    same_az_s: Distribution = Lognormal(median=0.00016, p99=0.0004)
    cross_az_s: Distribution = Lognormal(median=0.00045, p99=0.0012)
    cross_region_s: Distribution = Lognormal(median=0.030, p99=0.045)
    internet_s: Distribution = Field(
        default=Lognormal(median=0.010, p99=0.040),
        description="Client to the regional balancer, one way.",
    )


class ClientPopulation(StrictModel):
    """Clients in one region (the map key); ``share`` of the workload's rate.

    They reach the fleet through their region's balancer, or, with
    ``gateway_pools``, straight at those pools' gateway instances (DNS
    answers with every instance; each try picks one uniformly among those
    up), with no balancer in the region.
    """

    share: float = Field(gt=0.0, le=1.0)
    gateway_pools: list[Name] = Field(
        default=[],
        description="Send straight to these gateway pools' instances, with no regional balancer "
                    "(the region must then have none). Empty: through the region's balancer.",
    )


class Balancer(StrictModel):
    """The regional balancer of one region (the map key): ``l4`` (an NLB) or ``l7`` (an ALB).

    It has a node in every AZ of the region that holds gateways; a client
    connects to one node (DNS answers with all of them). With ``cross_zone``
    off a node forwards only to gateways in its own AZ. Both kinds forward
    each client try as the simulator's balancer always has; the kind sets
    the default of ``cross_zone`` (off for ``l4``, on for ``l7``, as AWS's
    NLB and ALB) and which prices ``cost`` charges it.
    """

    kind: Literal["l4", "l7"] = "l4"
    policy: Literal["round_robin", "random", "least_connections"] = "round_robin"
    cross_zone: bool | None = Field(default=None, description=(
        "Forward to gateways in every AZ of the region. Default (null): off for kind l4, on for "
        "kind l7, filled in when the configuration is loaded."))

    @model_validator(mode="after")
    def _resolve_cross_zone(self) -> Balancer:
        if self.cross_zone is None:
            _fill(self, "cross_zone", self.kind == "l7")
        return self


class LeastRequestLbConfig(StrictModel):
    """Envoy ``least_request_lb_config``."""

    choice_count: int = Field(default=2, ge=2, description="Hosts sampled per pick (P2C: 2).")
    active_request_bias: float = Field(
        default=1.0, ge=0.0, description="Exponent on (active+1) in the weighted form; 0 = weighted RR."
    )


class RetryBudget(StrictModel):
    """Envoy ``CircuitBreakers.Thresholds.RetryBudget``: caps concurrent retries.

    Retries in flight may not exceed max(min_retry_concurrency,
    budget_percent / 100 x (active + pending requests)). Replaces max_retries.
    """

    budget_percent: float = Field(default=20.0, ge=0, le=100)
    min_retry_concurrency: int = Field(default=3, ge=0)


class CircuitBreakers(StrictModel):
    """Envoy circuit-breaker thresholds (priority DEFAULT), per gateway and cluster.

    ``max_connections``: connections to the cluster's hosts; a try that needs
    a new one beyond it waits as pending (upstream_cx_overflow).
    ``max_pending_requests``: tries waiting for a connection; beyond it a try
    fails at once with 503 (``overflow_pending``, upstream_rq_pending_overflow).
    ``max_requests``: requests in flight to the cluster; beyond it a request
    fails at once with 503 (``overflow_max_requests``; Envoy 1.40 counts it in
    upstream_rq_active_overflow, as measured on the reference fleet). ``max_retries``: retries in flight; a retry
    beyond it is not made and the failure it would have retried is returned
    (upstream_rq_retry_overflow). ``retry_budget``, when set, replaces
    ``max_retries``.
    """

    max_connections: int = Field(default=1024, ge=1)
    max_pending_requests: int = Field(default=1024, ge=0)
    max_requests: int = Field(default=1024, ge=1)
    max_retries: int = Field(default=3, ge=0)
    retry_budget: RetryBudget | None = None


Percent = Annotated[int, Field(ge=0, le=100)]
"""A whole percentage, as Envoy's uint32 percent fields (``lte: 100``)."""


class OutlierDetection(StrictModel):
    """Envoy ``outlier_detection`` (api/envoy/config/cluster/v3/outlier_detection.proto).

    Each gateway instance keeps its own detector per cluster, as each Envoy
    does. Without ``split_external_local_origin_errors`` (not modelled) a
    reset, a refused connection and a timeout count as 503, 503 and 504 (Envoy's
    resultToHttpCode), so they feed ``consecutive_5xx``, the gateway-failure
    count and the success rate like upstream 5xx do.

    - Consecutive errors are checked on every response: the host is ejected
      when its count *reaches* ``consecutive_5xx`` (or
      ``consecutive_gateway_failure``: 502, 503, 504), if
      ``enforcing_consecutive_5xx`` (``enforcing_consecutive_gateway_failure``,
      default 0: counted, never ejected) percent of draws say so.
    - Every ``interval_s``: hosts whose ejection time has passed return; the
      success rate of each host over the last interval is compared with
      mean - ``success_rate_stdev_factor`` / 1000 x stdev of the hosts that had
      ``success_rate_request_volume`` requests, if at least
      ``success_rate_minimum_hosts`` did; failure-percentage ejection likewise
      (``enforcing_failure_percentage`` default 0).
    - Ejection time = ``base_ejection_time_s`` x the host's multiplier, capped
      at ``max_ejection_time_s`` (default max(300 s, base), resolved on
      loading), plus a jitter up to
      ``max_ejection_time_jitter_s``; each ejection raises the multiplier by 1
      (while multiplier x base < max + base) and each interval tick that finds
      the host in service for at least an interval since its return lowers it
      by 1.
    - A host is ejected only if 100 x (ejected + 1) / hosts <=
      ``max_ejection_percent``, or, with ``always_eject_one_host``, when none
      is ejected (Envoy >= 1.31; before, one host could always be ejected).
    - ``successful_active_health_check_uneject_host``: a passing active health
      check returns an ejected host at once.
    """

    consecutive_5xx: int = Field(default=5, ge=0, description="0: never (a count never reaches 0).")
    consecutive_gateway_failure: int = Field(default=5, ge=0)
    interval_s: float = Field(default=10.0, gt=0)
    base_ejection_time_s: float = Field(default=30.0, gt=0)
    max_ejection_time_s: float | None = Field(default=None, gt=0, description=(
        "Cap on base_ejection_time_s x the multiplier (before jitter). Default (null): "
        "max(300 s, base_ejection_time_s), Envoy's rule ('If not specified, the default value (300000ms "
        "or 300s) or base_ejection_time value is applied, whatever is larger'); filled in when the "
        "configuration is loaded."))
    max_ejection_time_jitter_s: float = Field(default=0.0, ge=0)
    max_ejection_percent: Percent = 10
    always_eject_one_host: bool = False
    enforcing_consecutive_5xx: Percent = 100
    enforcing_consecutive_gateway_failure: Percent = 0
    enforcing_success_rate: Percent = 100
    success_rate_minimum_hosts: int = Field(default=5, ge=0)
    success_rate_request_volume: int = Field(default=100, ge=0)
    success_rate_stdev_factor: int = Field(default=1900, ge=0, description="Thousandths: 1900 = 1.9 stdev.")
    failure_percentage_threshold: Percent = 85
    enforcing_failure_percentage: Percent = 0
    failure_percentage_minimum_hosts: int = Field(default=5, ge=0)
    failure_percentage_request_volume: int = Field(default=50, ge=0)
    successful_active_health_check_uneject_host: bool = True

    @model_validator(mode="after")
    def _resolve_max_ejection_time(self) -> OutlierDetection:
        if self.max_ejection_time_s is None:
            # Envoy's default (outlier_detection.proto, max_ejection_time); never below base.
            _fill(self, "max_ejection_time_s", max(300.0, self.base_ejection_time_s))
        elif self.max_ejection_time_s < self.base_ejection_time_s:
            # Envoy refuses the cluster with the same complaint.
            raise ValueError(f"max_ejection_time_s ({self.max_ejection_time_s:g}) cannot be smaller than "
                             f"base_ejection_time_s ({self.base_ejection_time_s:g})")
        return self


class HttpHealthCheck(StrictModel):
    """Envoy ``HealthCheck.http_health_check``: a probe passes on 200.

    Any other status fails the host at once, whatever ``unhealthy_threshold``
    says, unless it is listed in ``retriable_statuses`` (then it counts
    towards the threshold, as a timeout or a refused connection does).
    """

    retriable_statuses: list[Annotated[int, Field(ge=100, le=599)]] = []


class HealthCheck(StrictModel):
    """Envoy active health checking (api/envoy/config/core/v3/health_check.proto).

    Each gateway instance probes every host of each cluster on its own
    schedule. The next probe is timed from the end of the previous check
    (answer or timeout): ``interval_s``, or while the cluster has never sent a
    request, ``no_traffic_interval_s`` (``no_traffic_healthy_interval_s`` after
    a pass); ``unhealthy_interval_s`` after a failure; the ``*_edge_interval_s``
    while a change of state is pending a threshold. Every interval gets
    ``interval_jitter_percent`` percent of itself and ``interval_jitter_s`` as
    uniform jitter (whole milliseconds, as Envoy); the first probe waits a
    uniform ``initial_jitter_s``. A host is marked unhealthy after
    ``unhealthy_threshold`` consecutive failures (timeouts, refused or reset
    connections) or at once on an HTTP failure (see :class:`HttpHealthCheck`),
    and healthy after ``healthy_threshold`` consecutive passes. Hosts start
    healthy, as after Envoy's start-up round, but a host whose first check
    fails is unhealthy at once (Envoy holds hosts unhealthy until their first
    pass).

    The four intervals that default to another one (Envoy's fallbacks, see
    each field) are resolved when the configuration is loaded.

    A probe is real load: it crosses the network (150 bytes each way), waits
    for a backend worker like a request and takes one service time of the
    service; the backend fails it as it fails requests. Probes are counted per
    gateway and per backend.
    """

    timeout_s: float = Field(gt=0)
    interval_s: float = Field(gt=0)
    initial_jitter_s: float = Field(default=0.0, ge=0)
    interval_jitter_s: float = Field(default=0.0, ge=0)
    interval_jitter_percent: int = Field(default=0, ge=0)
    unhealthy_threshold: int = Field(ge=1)
    healthy_threshold: int = Field(ge=1)
    unhealthy_interval_s: float | None = Field(default=None, gt=0, description=(
        "After a failed check of a host that is unhealthy. Default (null): interval_s (Envoy: 'If "
        "left unspecified, it defaults to interval'); filled in when the configuration is loaded."))
    unhealthy_edge_interval_s: float | None = Field(default=None, gt=0, description=(
        "After the failure that marks a host unhealthy. Default (null): unhealthy_interval_s as "
        "resolved, so interval_s when neither is given (Envoy: 'If left unspecified, it defaults to "
        "unhealthy_interval'); filled in when the configuration is loaded."))
    healthy_edge_interval_s: float | None = Field(default=None, gt=0, description=(
        "After the pass that marks a host healthy. Default (null): interval_s (Envoy: 'If left "
        "unspecified, it defaults to interval'); filled in when the configuration is loaded."))
    no_traffic_interval_s: float = Field(default=60.0, gt=0)
    no_traffic_healthy_interval_s: float | None = Field(default=None, gt=0, description=(
        "While the cluster has had no traffic, after a pass. Default (null): no_traffic_interval_s "
        "(Envoy: 'If no_traffic_healthy_interval is not set, it will default to the no traffic "
        "interval'); filled in when the configuration is loaded."))
    http_health_check: HttpHealthCheck = HttpHealthCheck()

    @model_validator(mode="after")
    def _resolve_intervals(self) -> HealthCheck:
        # Envoy's fallbacks (health_check.proto); unhealthy_edge falls back to the unhealthy
        # interval as resolved, so it is filled after it.
        if self.unhealthy_interval_s is None:
            _fill(self, "unhealthy_interval_s", self.interval_s)
        if self.unhealthy_edge_interval_s is None:
            _fill(self, "unhealthy_edge_interval_s", self.unhealthy_interval_s)
        if self.healthy_edge_interval_s is None:
            _fill(self, "healthy_edge_interval_s", self.interval_s)
        if self.no_traffic_healthy_interval_s is None:
            _fill(self, "no_traffic_healthy_interval_s", self.no_traffic_interval_s)
        return self


class ZoneAwareLbConfig(StrictModel):
    """Envoy ``common_lb_config.zone_aware_lb_config``: keep traffic in the gateway's own zone.

    Rules (Envoy's ``ZoneAwareLoadBalancerBase``, docs/facts.md#zone-aware-routing):
    priority 0 only; off when the upstream cluster has fewer than two zones,
    the local cluster fewer than two, the local cluster has no host in the
    gateway's zone, the upstream cluster has fewer than ``min_cluster_size``
    healthy hosts, or the chosen priority or the local cluster is in panic.
    Otherwise each zone's share of healthy hosts is compared in the local and
    the upstream cluster (basis points, integer division, as Envoy).

    The local cluster (Envoy ``cluster_manager.local_cluster_name``) is the
    gateway pools named in ``local_cluster``, each instance a host in its
    pool's AZ, statically configured (always healthy, as a STATIC cluster
    without health checks).
    """

    routing_enabled: float = Field(default=100.0, ge=0, le=100, description=(
        "Percent of picks that try zone-aware routing (Envoy rounds it to a whole number)."))
    min_cluster_size: int = Field(default=6, ge=0, description=(
        "Fewest healthy upstream hosts (priority 0) for zone-aware routing to apply."))
    local_cluster: list[Name] | None = Field(default=None, description=(
        "Gateway pools forming the local cluster. Default (null): every gateway pool in the same "
        "region as this pool, filled in when the topology is loaded."))


class LocalityWeightedLbConfig(StrictModel):
    """Envoy ``common_lb_config.locality_weighted_lb_config``: pick a zone by weight, then a host in it.

    A zone's effective weight is ``locality_weights[az]`` x min(1,
    ``overprovisioning_factor`` / 100 x healthy / hosts) of the cluster's
    priority level; zones are picked by an EDF schedule on those weights.
    ``locality_weights`` stands for Envoy's per-locality
    ``load_balancing_weight`` in the endpoints; a zone left out weighs 1
    (Envoy gives a locality with no weight none: set it there).
    """

    locality_weights: dict[Name, Annotated[int, Field(ge=1)]] = {}


class CommonLbConfig(StrictModel):
    """Envoy ``common_lb_config``.

    ``healthy_panic_threshold`` (percent, rounded to a whole number as Envoy
    does): when fewer than this share of a cluster's hosts are healthy (not
    ejected, not failing health checks), the balancer uses every host.
    0 disables panic mode.

    ``update_merge_window_s``: see :class:`sim.components.health.HostHealth`;
    measured on Envoy 1.40, a host re-ejected 50 ms after its return kept its
    share of traffic for one more second.
    """

    healthy_panic_threshold: float = Field(default=50.0, ge=0, le=100)
    update_merge_window_s: float = Field(default=1.0, ge=0, description=(
        "Envoy update_merge_window (seconds). Health-only changes of the host set (outlier "
        "ejections and returns, health-check transitions) reach the workers' balancers at once "
        "if the cluster's last delivery is more than this old, else when a timer armed for one "
        "window by the first waiting change fires. 0: always at once."))
    zone_aware_lb_config: ZoneAwareLbConfig | None = Field(default=None, description=(
        "Zone-aware routing (null: off). Cannot be combined with locality_weighted_lb_config."))
    locality_weighted_lb_config: LocalityWeightedLbConfig | None = Field(default=None, description=(
        "Locality-weighted balancing (null: off)."))

    @model_validator(mode="after")
    def _one_locality_config(self) -> CommonLbConfig:
        if self.zone_aware_lb_config is not None and self.locality_weighted_lb_config is not None:
            # Envoy: both are members of the oneof locality_config_specifier.
            raise ValueError("zone_aware_lb_config and locality_weighted_lb_config cannot both be set "
                             "(Envoy's locality_config_specifier is a oneof)")
        return self


class Cluster(StrictModel):
    """The gateway's upstream cluster settings, applied to every service it routes to."""

    lb_policy: Literal["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM"] = "ROUND_ROBIN"
    least_request_lb_config: LeastRequestLbConfig = LeastRequestLbConfig()
    circuit_breakers: CircuitBreakers = CircuitBreakers()
    connect_timeout_s: float = Field(default=5.0, gt=0, description="Envoy connect_timeout.")
    http_protocol: Literal["http1", "http2"] = Field(
        default="http1", description="Upstream protocol: HTTP/1.1 (one request per connection) or HTTP/2.")
    max_concurrent_streams: int = Field(
        default=2147483647, ge=1, description="HTTP/2 streams per connection (Envoy's default is 2^31 - 1).")
    outlier_detection: OutlierDetection | None = None
    health_check: HealthCheck | None = None
    common_lb_config: CommonLbConfig = CommonLbConfig()
    priorities: dict[Name, Annotated[int, Field(ge=0, le=7)]] = Field(default={}, description=(
        "Envoy endpoint priority of the hosts in each AZ (LocalityLbEndpoints.priority); an AZ "
        "left out is priority 0. Load goes to lower numbers first, spilling over as their "
        "health x overprovisioning_factor falls below 100%."))
    overprovisioning_factor: int = Field(default=140, ge=1, description=(
        "Envoy ClusterLoadAssignment.Policy.overprovisioning_factor, percent: a priority's or "
        "locality's availability is min(100%, factor x healthy / hosts)."))


RetryOn = Literal["5xx", "gateway-error", "reset", "connect-failure", "retriable-status-codes"]


class RetryBackOff(StrictModel):
    """Envoy ``retry_back_off``: fully jittered exponential back-off.

    Retry n waits a uniformly random whole number of milliseconds in
    [0, I_n), where I_1 = base and I_n doubles until it would pass half of the
    max, then is the max (Envoy's JitteredExponentialBackOffStrategy, source
    wins over the docs' (2^n - 1) x base). Default max: 10 x base, resolved
    on loading.
    """

    base_interval_s: float = Field(default=0.025, ge=0.001)
    max_interval_s: float | None = Field(default=None, gt=0, description=(
        "Default (null): 10 x base_interval_s (Envoy: 'defaults to 10 times the base_interval'), "
        "the base taken in whole milliseconds as the gateway uses it; filled in when the "
        "configuration is loaded."))

    @model_validator(mode="after")
    def _resolve_max_interval(self) -> RetryBackOff:
        if self.max_interval_s is None:
            # The gateway works in whole milliseconds (sim.components.router.RetryRules rounds the
            # base so); 10 x the rounded base keeps its back-off bounds exactly as they were.
            _fill(self, "max_interval_s", 10 * max(1, round(self.base_interval_s * 1000)) / 1000)
        return self


class RetryPolicy(StrictModel):
    """Envoy ``RetryPolicy`` on a route.

    ``retry_on``: ``5xx`` (any 5xx, reset, connect failure, per-try timeout),
    ``gateway-error`` (502, 503, 504, per-try timeout), ``reset``,
    ``connect-failure``, ``retriable-status-codes`` (the codes listed).
    Locally generated overflow 503s are not retried.
    """

    retry_on: list[RetryOn] = Field(min_length=1)
    retriable_status_codes: list[Annotated[int, Field(ge=100, le=599)]] = []
    num_retries: int = Field(default=1, ge=0)
    per_try_timeout_s: float | None = Field(default=None, gt=0)
    retry_back_off: RetryBackOff = RetryBackOff()
    retry_host_predicate: list[Literal["previous_hosts"]] = []
    host_selection_retry_max_attempts: int = Field(default=1, ge=1)


class Route(StrictModel):
    """Route settings (Envoy ``RouteAction``)."""

    timeout_s: float = Field(default=15.0, gt=0, description="Envoy route timeout; 504 when it fires.")
    retry_policy: RetryPolicy | None = None


# --------------------------------------------------------------------------- connections, TLS, gateway CPU

TlsVersion = Literal["TLSv1_2", "TLSv1_3"]
Certificate = Literal["ecdsa_p256", "rsa_2048"]

#: Worker CPU per handshake (seconds of one worker), (full, resumed), by TLS version and certificate,
#: beyond the request's own ``cpu_time_s``: Envoy 1.40 measured per connection in paired runs, less the
#: 60 us of its one request; RSA-2048 adds the difference between an RSA-2048 and an ECDSA P-256
#: signature to a full handshake only (a resumption signs nothing). docs/facts.md#tls-handshake-costs.
HANDSHAKE_CPU_PRESETS_S: dict[tuple[str, str], tuple[float, float]] = {
    ("TLSv1_2", "ecdsa_p256"): (0.49e-3, 0.36e-3),
    ("TLSv1_3", "ecdsa_p256"): (0.59e-3, 0.56e-3),
    ("TLSv1_2", "rsa_2048"): (0.76e-3, 0.36e-3),
    ("TLSv1_3", "rsa_2048"): (0.86e-3, 0.56e-3),
}

#: BoringSSL rotates the ticket key it makes itself every 2 days and keeps the previous one
#: (SSL_DEFAULT_TICKET_KEY_ROTATION_INTERVAL); docs/facts.md#tls-session-resumption-across-gateways.
BORINGSSL_TICKET_KEY_ROTATION_S = 2 * 24 * 3600.0


class TlsListener(StrictModel):
    """TLS at a gateway pool's listener (Envoy ``DownstreamTlsContext``).

    A new client connection costs a full handshake unless the client offers a
    session it holds that this instance can resume: with ``tickets``, a ticket
    sealed by a key this instance holds (its own keys, Envoy's default, or
    keys shared across ``session_ticket_keys_scope``), issued less than
    ``session_timeout_s`` ago; with ``session_cache``, a session id in this
    instance's own cache (Envoy has no shared cache). TLS 1.3 issues new
    tickets on every connection, TLS 1.2 only on a full handshake. Keys
    rotate every ``ticket_key_rotation_s`` (the first key seals, the
    ``ticket_keys_kept`` newest open). A restart of an instance (a rolling
    restart) renews keys it made itself and empties its cache; shared keys
    (from files or SDS) survive it. Tickets cross pools only between
    listeners with the same TLS settings (Envoy's session-ID context).
    """

    tls_version: TlsVersion = Field(default="TLSv1_3", description="Envoy tls_params.tls_maximum_protocol_version.")
    certificate: Certificate = "ecdsa_p256"
    session_resumption: Literal["tickets", "session_cache", "none"] = Field(
        default="tickets", description="tickets (stateless, Envoy's default), session_cache (stateful, TLS 1.2 "
                                       "only, per instance) or none (every connection a full handshake).")
    session_ticket_keys_scope: Literal["instance", "az", "region", "fleet"] = Field(
        default="instance", description="Who shares ticket keys: each instance makes its own (Envoy without "
                                        "session_ticket_keys), or one session_ticket_keys set per AZ, region or fleet.")
    session_timeout_s: float = Field(default=7200.0, gt=0, description=(
        "Envoy session_timeout: how long a session (ticket) resumes; BoringSSL's default is 2 h."))
    ticket_key_rotation_s: float | None = Field(default=None, gt=0, description=(
        "A new sealing key every this many seconds. Default (null): keys an instance makes itself rotate "
        "every 2 days (BoringSSL), filled in when the configuration is loaded; shared session_ticket_keys "
        "stay null: they are never rotated."))
    ticket_keys_kept: int = Field(default=2, ge=1, description="Keys that open tickets: the current and previous ones.")
    full_handshake_cpu_s: float | None = Field(default=None, ge=0, description=(
        "Worker CPU of a full handshake (s). Default (null): the preset for tls_version and certificate "
        "(docs/facts.md#tls-handshake-costs), filled in when the configuration is loaded."))
    resumed_handshake_cpu_s: float | None = Field(default=None, ge=0, description=(
        "Worker CPU of a resumed handshake (s). Default (null): the preset, as full_handshake_cpu_s."))

    @model_validator(mode="after")
    def _resolve_presets(self) -> TlsListener:
        full, resumed = HANDSHAKE_CPU_PRESETS_S[(self.tls_version, self.certificate)]
        if self.full_handshake_cpu_s is None:
            _fill(self, "full_handshake_cpu_s", full)
        if self.resumed_handshake_cpu_s is None:
            _fill(self, "resumed_handshake_cpu_s", resumed)
        if self.ticket_key_rotation_s is None and self.session_ticket_keys_scope == "instance":
            _fill(self, "ticket_key_rotation_s", BORINGSSL_TICKET_KEY_ROTATION_S)
        return self


class AccessLog(StrictModel):
    """Access logging on a gateway pool (the source article's step 4).

    Each answered request is logged with probability ``success_sample``
    (2xx) or ``failure_sample`` (anything else). A line costs
    ``cpu_per_line_s`` of a worker; with ``flush: sync`` the worker also
    waits ``sync_write_s`` for the write and the response leaves after it;
    with ``async`` (Envoy's file logger buffers and flushes from another
    thread) it leaves at once. Lines of ``bytes_per_line`` go to a collector
    in ``collector_az`` (null: kept on the instance), counted by purpose
    ``logs``. CPU and write figures are assumptions (docs/facts.md#access-logging).
    """

    success_sample: Probability = 1.0
    failure_sample: Probability = 1.0
    flush: Literal["async", "sync"] = "async"
    cpu_per_line_s: float = Field(default=5e-6, ge=0)
    sync_write_s: float = Field(default=50e-6, ge=0, description="Only with flush: sync.")
    bytes_per_line: int = Field(default=600, ge=0)
    collector_az: Name | None = None


class GatewayCpuCosts(StrictModel):
    """Worker CPU charged per event besides requests, handshakes and log lines (seconds of one worker).

    These are counted in the CPU account (counts x cost) but take no worker
    time in the simulation: a retry, an upstream connection, the response
    path and a health-check probe. ``cpu_time_s`` as measured covers one
    proxied request both ways, hence ``response_s`` 0 by default.
    """

    per_retry_s: float | None = Field(default=None, ge=0, description=(
        "Each retry the router sends. Default (null): the mean of the pool's cpu_time_s, filled in "
        "when the experiment is loaded."))
    upstream_connect_s: float = Field(default=0.09e-3, ge=0, description="Each connection opened to a backend.")
    response_s: float = Field(default=0.0, ge=0)
    health_check_s: float = Field(default=0.0, ge=0, description="Each active health-check probe.")


class CpuPricing(StrictModel):
    """What a vCPU costs, and the utilisation a fleet should stay under (cores needed, cost per month).

    Default price: AWS m6i.large on demand in us-east-1, $0.096 an hour for 2
    vCPU (docs/facts.md#gateway-cpu-price); 730 hours a month.
    """

    vcpu_hour_usd: float = Field(default=0.048, ge=0)
    target_utilization: float = Field(default=0.6, gt=0, le=1)


class GatewayPool(StrictModel):
    """A pool of identical Envoy-like gateway instances in one AZ.

    Each instance has ``workers`` worker threads (Envoy ``--concurrency``) that
    serve requests FIFO; a request costs ``cpu_time_s`` of one worker.
    Default CPU: ~60 us per proxied request (Envoy 1.40; docs/facts.md#gateway-cpu-per-request).
    """

    az: Name
    instances: int = Field(ge=1)
    workers: int = Field(default=2, ge=1)
    cpu_time_s: Distribution = Constant(value=60e-6)
    route: Route = Route()
    cluster: Cluster = Cluster()
    tls: TlsListener | None = Field(default=None, description="TLS at the listener; null: plain TCP.")
    access_log: AccessLog | None = None
    cpu_costs: GatewayCpuCosts | None = Field(
        default=None, description="Counted CPU of retries, upstream connections, responses, probes; null: none.")

    @model_validator(mode="after")
    def _resolve_retry_cpu(self) -> GatewayPool:
        costs = self.cpu_costs
        if costs is not None and costs.per_retry_s is None:
            # A retry goes through the router again: the request's mean CPU, unless given.
            _fill(self, "cpu_costs", costs.model_copy(update={"per_retry_s": self.cpu_time_s.mean}))
        return self


# --------------------------------------------------------------------------- rate limiting


class TokenBucket(StrictModel):
    """Envoy ``type.v3.TokenBucket`` as the local rate-limit filter uses it.

    The bucket starts full (``max_tokens``); every ``fill_interval_s`` a timer
    adds ``tokens_per_fill`` tokens, capped at ``max_tokens``; a request takes
    one token or is denied. Envoy refuses a fill interval under 50 ms
    (source/extensions/filters/common/local_ratelimit/local_ratelimit_impl.cc).
    """

    max_tokens: int = Field(ge=1)
    tokens_per_fill: int = Field(default=1, ge=1)
    fill_interval_s: float = Field(ge=0.05, description="Envoy refuses a fill timer under 50 ms.")


class _RateLimitBase(StrictModel):
    key: Literal["global", "service", "client"] = Field(default="global", description=(
        "What a bucket counts: one key for every request (global), one per destination service "
        "(a descriptor), or one per client population (clients.<region>, as an API key would)."))
    global_limit_per_s: float | None = Field(default=None, gt=0, description=(
        "The fleet-wide rate per key the policy is meant to enforce, for the accuracy figures. "
        "Default (null): what the policy enforces when everything works (local: every gateway "
        "instance's fill rate summed; Redis token bucket: limit / window_s; fixed window: "
        "requests_per_unit per unit); filled in when the configuration is loaded."))
    global_burst: float | None = Field(default=None, ge=1, description=(
        "The burst of the ideal fleet-wide bucket the accuracy figures compare with. Default (null): "
        "local: every instance's max_tokens summed; Redis token bucket: burst; fixed window: "
        "requests_per_unit; filled in when the configuration is loaded."))


class LocalRateLimit(_RateLimitBase):
    """Envoy's local rate-limit filter (``envoy.filters.http.local_ratelimit``).

    Each gateway instance keeps its own :class:`TokenBucket` per key; no
    network call. A denied request gets 429 at once.
    """

    algorithm: Literal["local"]
    token_bucket: TokenBucket


class _RemoteRateLimit(_RateLimitBase):
    timeout_s: float = Field(default=0.020, gt=0, description=(
        "RPC timeout of the call to the rate-limit store (Envoy's rate-limit filter: 20 ms)."))
    failure_mode_deny: bool = Field(default=False, description=(
        "On an error or a timeout, deny (Envoy: 500) instead of letting the request through "
        "(fail-open, Envoy's default)."))
    blocking: bool = Field(default=False, description=(
        "The gateway worker waits for the answer (blocking I/O in a plugin) instead of serving "
        "other requests meanwhile (Envoy's asynchronous filter)."))
    connections: int = Field(default=4, ge=1, description="Connections from each gateway instance to each Redis.")
    pipelining: bool = Field(default=True, description=(
        "Several calls may be in flight on one connection; without it a call waits for a free connection."))
    request_bytes: int = Field(default=120, ge=1, description="Bytes of one call on the wire.")
    response_bytes: int = Field(default=16, ge=1, description="Bytes of its answer.")


class RedisTokenBucket(_RemoteRateLimit):
    """The source article's distributed token bucket: one atomic Lua script per request (EVALSHA).

    The script keeps ``tokens`` and ``last_refill`` in a hash per key;
    tokens = min(burst, tokens + (now - last_refill) / window x limit), where
    ``now`` is the gateway's clock when it sends the call; a request with
    tokens >= 1 takes one. A key not yet stored starts with ``burst`` tokens.
    """

    algorithm: Literal["redis_token_bucket"]
    limit: float = Field(gt=0, description="Tokens added per window.")
    burst: float = Field(ge=1, description="Bucket size.")
    window_s: float = Field(default=1.0, gt=0)


class FixedWindow(_RemoteRateLimit):
    """envoyproxy/ratelimit's fixed windows: INCRBY and EXPIRE on ``<key>_<window start>``, pipelined.

    A request is over the limit when the count after its increment exceeds
    ``requests_per_unit``; windows start at whole multiples of the unit.
    """

    algorithm: Literal["fixed_window"]
    requests_per_unit: int = Field(ge=1)
    unit: Literal["second", "minute", "hour", "day"] = "second"

    @property
    def unit_s(self) -> float:
        """The window in seconds."""
        return {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}[self.unit]


RateLimit = Annotated[LocalRateLimit | RedisTokenBucket | FixedWindow, Field(discriminator="algorithm")]


class Redis(StrictModel):
    """The Redis server(s) remote rate limits call: single-threaded, FIFO, one command at a time.

    ``placement: one_az``: one server (``redis``) in ``az``; every gateway
    calls it. ``per_az``: an independent server (``redis-<az>``) in every AZ
    that has gateways; each gateway calls its own AZ's, so each AZ enforces
    the limit on its own (set the limit per AZ accordingly). A call costs the
    server ``io_time_s`` (reading and answering it) plus its commands'
    times: the Lua script ``evalsha_time_s``, INCRBY and EXPIRE
    ``command_time_s`` each (docs/facts.md#redis-rate-limiting).
    """

    placement: Literal["one_az", "per_az"] = "one_az"
    az: Name | None = Field(default=None, description="The server's AZ (one_az); required then.")
    evalsha_time_s: Distribution = Constant(value=9.3e-6)
    command_time_s: Distribution = Constant(value=1.5e-6)
    io_time_s: Distribution = Constant(value=0.0)


class InstanceOverride(StrictModel):
    """Per-instance deviations from the service's settings."""

    service_time_factor: float = Field(default=1.0, gt=0, description="Service time multiplier.")
    lb_weight: int = Field(default=1, ge=1, le=128, description="Envoy load_balancing_weight.")


class TimerError(StrictModel):
    """Signed error added to every service time: a quantile table ``[[p, seconds], ...]``.

    A real server does not sleep exactly what it is told: an event loop arms
    its timers in whole milliseconds (uvloop rounds to the nearest one, so the
    error can be negative) and wakes up late when busy. ``fleetsim calibrate``
    measures this on the reference fleet's backends. Values between rows are
    interpolated; the first row has p = 0 and the last p = 1. A service time
    plus its error is floored at 0.
    """

    quantiles: list[tuple[float, float]] = Field(min_length=2)

    @model_validator(mode="after")
    def _table(self) -> TimerError:
        ps = [p for p, _ in self.quantiles]
        vs = [v for _, v in self.quantiles]
        if ps[0] != 0.0 or ps[-1] != 1.0:
            raise ValueError(f"quantiles must run from p=0 to p=1, got p={ps[0]}..{ps[-1]}")
        if any(b < a for a, b in zip(ps, ps[1:], strict=False)) or any(b < a for a, b in zip(vs, vs[1:], strict=False)):
            raise ValueError("quantile probabilities and values must be non-decreasing")
        return self

    @property
    def mean(self) -> float:
        """The mean error: the integral of the piecewise-linear quantile function."""
        q = self.quantiles
        return sum((p1 - p0) * (v0 + v1) / 2 for (p0, v0), (p1, v1) in zip(q, q[1:], strict=False))


class Service(StrictModel):
    """A backend service: ``instances_per_az`` instances, each a FIFO station.

    Each instance has ``workers`` servers and ``queue_limit`` waiting slots; an
    attempt arriving to a full queue gets 503 at once (``queue_limit: null``:
    the queue is unbounded and no attempt is turned away for want of room).
    After service the response is an error (500) with ``error_probability``.
    Instances are named ``<service>-<az>-<i>`` (:func:`sim.config.naming.backend_name`).
    """

    instances_per_az: dict[Name, Annotated[int, Field(ge=0)]] = Field(min_length=1)
    workers: int = Field(default=8, ge=1)
    queue_limit: int | None = Field(default=1000, ge=0, description=(
        "Waiting slots beyond the workers; 0: none (an attempt that finds every worker busy gets 503). "
        "null: unbounded (the queue grows as long as attempts arrive faster than they are served)."))
    service_time_s: Distribution
    error_probability: Probability = 0.0
    request_bytes: Distribution = Constant(value=1024)
    response_bytes: Distribution = Constant(value=4096)
    instance_overrides: dict[Name, InstanceOverride] = {}
    queue_discipline: Literal["fifo", "lifo"] = Field(
        default="fifo", description="Which waiting attempt a free worker takes: the oldest or the newest.")
    drop_expired: bool = Field(
        default=False,
        description="Drop a waiting attempt whose caller's deadline (per-try or route timeout) has passed "
                    "instead of serving it; it is answered 503 and costs no service time.")
    timer_error_s: TimerError | None = Field(
        default=None, description="Added to every service time (the server's timer error); "
                                  "set by a calibration profile.")


class GslbHealthCheck(StrictModel):
    """The GSLB's health checks of each region's endpoint (Route 53's, docs/facts.md#dns-and-gslb).

    ``checkers`` checker locations each probe every ``interval_s`` from a
    random phase; a probe of a failed endpoint is known failed
    ``timeout_s`` later. A checker changes its view after
    ``failure_threshold`` consecutive probes say so (either way, as Route
    53's failure threshold). The region is healthy while more than
    ``healthy_fraction`` of the checkers see it healthy.
    """

    interval_s: float = Field(default=30.0, gt=0, description="Route 53: 30 s, or 10 s (fast).")
    failure_threshold: int = Field(default=3, ge=1, le=10, description="Route 53's default: 3.")
    timeout_s: float = Field(default=4.0, ge=0, description="Route 53 waits 4 s for the TCP connection.")
    checkers: int = Field(default=8, ge=1, description="Checker locations (an assumption: one per checker region).")
    healthy_fraction: float = Field(default=0.18, ge=0, lt=1, description=(
        "Route 53 considers an endpoint healthy when more than 18% of its checkers report it healthy."))


class Gslb(StrictModel):
    """DNS-based global balancing: which region's balancer each client's resolver is told.

    Clients of every region (except those naming ``gateway_pools``) resolve
    the service through one of ``resolvers`` resolvers of their region
    (each call picks one uniformly). A resolver keeps its answer for
    ``ttl_s`` (a ``ttl_extending_fraction`` of them for
    ``extended_ttl_s``) and asks again on the first call after it expires;
    at t=0 each holds an answer fetched at a uniformly random time in the
    previous TTL. An answer names a region; the client then connects to
    one of that region's balancer nodes that are up. Policies: ``geo``
    (the client's own region; when it is unhealthy, the healthy region
    nearest by ``latency_s``), ``latency`` (the healthy region with the
    lowest ``latency_s``), ``weighted`` (healthy regions by ``weights``,
    drawn per answer), ``failover`` (``primary`` while healthy, else
    ``secondary``). With no region healthy every region counts as healthy
    (Route 53 does so). Failover time is never a parameter: it comes from
    the checks (detection) and the resolvers' TTLs.
    """

    policy: Literal["geo", "latency", "weighted", "failover"]
    ttl_s: float = Field(default=60.0, gt=0)
    resolvers: int = Field(default=200, ge=1, description="Resolvers per client region.")
    ttl_extending_fraction: Probability = Field(default=0.0, description=(
        "Share of resolvers that keep answers for extended_ttl_s instead (8.74% measured, docs/facts.md)."))
    extended_ttl_s: float | None = Field(default=None, gt=0, description=(
        "How long a TTL-extending resolver keeps an answer (at least ttl_s); required with a non-zero "
        "ttl_extending_fraction."))
    weights: dict[Name, Annotated[float, Field(ge=0)]] = Field(default={}, description=(
        "weighted: each region's weight (a region left out weighs 0)."))
    primary: Name | None = None
    secondary: Name | None = None
    latency_s: dict[Name, dict[Name, Annotated[float, Field(ge=0)]]] = Field(default={}, description=(
        "Extra one-way seconds from clients of a region (outer key) to the fleet in a region (inner "
        "key), added to the internet hop both ways; a pair left out adds 0."))
    health_check: GslbHealthCheck = GslbHealthCheck()

    @model_validator(mode="after")
    def _policy_fields(self) -> Gslb:
        if self.policy == "failover" and (self.primary is None or self.secondary is None):
            raise ValueError("policy failover needs primary and secondary")
        if self.policy == "weighted" and not any(self.weights.values()):
            raise ValueError("policy weighted needs weights with at least one above 0")
        if self.ttl_extending_fraction > 0 and self.extended_ttl_s is None:
            raise ValueError("extended_ttl_s is required when ttl_extending_fraction is above 0")
        return self


class Topology(StrictModel):
    """A fleet: regions and AZs, network, clients, balancers, gateways, services."""

    name: Name
    description: str = ""
    regions: dict[Name, Region] = Field(min_length=1)
    network: Network = Network()
    clients: dict[Name, ClientPopulation] = Field(min_length=1, description="Keyed by region.")
    balancers: dict[Name, Balancer] = Field(
        default={}, description="Keyed by region; a region whose clients name gateway_pools has none.")
    gateways: dict[Name, GatewayPool] = Field(min_length=1)
    services: dict[Name, Service] = Field(min_length=1)
    rate_limit: RateLimit | None = Field(default=None, description=(
        "A rate-limit filter in every gateway, before the router (sim.components.ratelimit)."))
    redis: Redis | None = Field(default=None, description="Redis for remote rate limits.")
    cpu_pricing: CpuPricing | None = Field(
        default=None, description="vCPU price and target utilisation for the gateway CPU figures; null: "
                                  "the defaults, when a pool has TLS, access logs or CPU costs.")
    gslb: Gslb | None = Field(default=None, description=(
        "DNS-based global balancing across the regions' balancers (null: clients use their own "
        "region's balancer)."))
    calibration: str | None = Field(
        default=None,
        description="A calibration profile (from `fleetsim calibrate`), relative to the topology file: "
                    "its network latencies, gateway CPU and backend timer error fill every field the "
                    "topology leaves unset.")

    @model_validator(mode="after")
    def _resolve_rate_limit(self) -> Topology:
        # The ideal fleet-wide bucket the accuracy figures compare with (see _RateLimitBase).
        rl = self.rate_limit
        if rl is None or (rl.global_limit_per_s is not None and rl.global_burst is not None):
            return self
        if rl.algorithm == "local":
            n = sum(g.instances for g in self.gateways.values())
            tb = rl.token_bucket
            rate, burst = n * tb.tokens_per_fill / tb.fill_interval_s, float(n * tb.max_tokens)
        elif rl.algorithm == "redis_token_bucket":
            rate, burst = rl.limit / rl.window_s, rl.burst
        else:
            rate, burst = rl.requests_per_unit / rl.unit_s, float(rl.requests_per_unit)
        update = {}
        if rl.global_limit_per_s is None:
            update["global_limit_per_s"] = rate
        if rl.global_burst is None:
            update["global_burst"] = max(1.0, burst)
        _fill(self, "rate_limit", rl.model_copy(update=update))
        return self

    @model_validator(mode="after")
    def _resolve_local_clusters(self) -> Topology:
        # A zone-aware pool's local cluster defaults to every gateway pool of its own region
        # (sorted by name), so config.resolved.yaml names them.
        region_of = {az: r for r, reg in self.regions.items() for az in reg.azs}
        gateways = dict(self.gateways)
        changed = False
        for name, gp in self.gateways.items():
            za = gp.cluster.common_lb_config.zone_aware_lb_config
            if za is None or za.local_cluster is not None:
                continue
            mine = region_of.get(gp.az)
            local = sorted(p for p, other in self.gateways.items() if region_of.get(other.az) == mine)
            clb = gp.cluster.common_lb_config
            cluster = gp.cluster.model_copy(update={"common_lb_config": clb.model_copy(
                update={"zone_aware_lb_config": za.model_copy(update={"local_cluster": local})})})
            gateways[name] = gp.model_copy(update={"cluster": cluster})
            changed = True
        if changed:
            _fill(self, "gateways", gateways)
        return self


# --------------------------------------------------------------------------- experiment


class RateStep(StrictModel):
    """From ``at_s`` on, the offered rate is ``rate_per_s`` (requests per second).

    With ``ramp_s`` > 0 the rate moves linearly from the previous step's rate to
    ``rate_per_s`` over ``ramp_s`` seconds starting at ``at_s``.
    """

    at_s: float = Field(ge=0)
    rate_per_s: float = Field(ge=0)
    ramp_s: float = Field(default=0.0, ge=0)


class ClientBackoff(StrictModel):
    """Client back-off before try n+1: min(max_s, base_s x 2^(n-1)), times U[0,1) with full jitter.

    AWS SDK standard retry mode: base 100 ms, max 20 s, full jitter (docs/facts.md#client-retries).
    ``base_s: 0`` is no back-off: a retry is sent at once. ``max_s`` must be at
    least ``base_s`` (checked with the experiment).
    """

    base_s: float = Field(default=0.1, ge=0, description="0: no back-off, retry at once.")
    max_s: float = Field(default=20.0, gt=0)
    jitter: Literal["full", "none"] = "full"


class RetryTokenBucket(StrictModel):
    """AWS SDK standard-mode retry quota: a retry spends tokens, a success refunds some.

    A retry costs ``retry_cost`` tokens (``timeout_retry_cost`` after a
    client timeout) and is not made when the bucket holds fewer; each
    successful call returns ``success_refund`` (up to ``capacity``). Defaults:
    500, 5, 10, 1 (docs/facts.md#client-retries). Each of the population's
    ``clients`` has its own bucket.
    """

    capacity: int = Field(default=500, ge=0)
    retry_cost: int = Field(default=5, ge=0)
    timeout_retry_cost: int = Field(default=10, ge=0)
    success_refund: int = Field(default=1, ge=0)


class ClientRetryBudget(StrictModel):
    """A client-side retry budget (Finagle's RetryBudget, Linkerd's retry_budget).

    Every call deposits ``retry_ratio`` tokens, which expire after ``ttl_s``;
    a reserve allows ``min_retries_per_s`` retries a second on top. A retry
    spends one token and is not made without one, so retries stay within
    ``retry_ratio`` of calls (20% by default) plus the reserve.
    """

    retry_ratio: float = Field(default=0.2, ge=0)
    min_retries_per_s: float = Field(default=10.0, ge=0)
    ttl_s: float = Field(default=10.0, gt=0)


class ClientPolicy(StrictModel):
    """How clients behave: tries per call, per-try timeout, back-off, retry quota.

    A client retries any failed try (5xx, 504, its own timeout) until
    ``max_attempts`` tries were made. A try it timed out on keeps running in
    the fleet; its late answer is ignored. Each call goes to one of
    ``clients`` independent clients (SDK instances), picked uniformly.
    """

    max_attempts: int = Field(default=1, ge=1, description="Tries per call, the first included.")
    timeout_s: float | None = Field(default=None, gt=0, description="Per try; none: wait for the fleet.")
    backoff: ClientBackoff = ClientBackoff()
    token_bucket: RetryTokenBucket | None = None
    retry_budget: ClientRetryBudget | None = None
    clients: int = Field(default=1, ge=1, description="Independent clients (each with its own bucket).")


class ClientConnections(StrictModel):
    """Clients that hold connections to the gateways, through an L4 balancer.

    Each balancer node has ``clients`` clients; a request arriving at the node
    goes to one of them (uniformly), which sends it on one of its open
    connections with room (HTTP/1.1: one request at a time; HTTP/2:
    ``max_concurrent_streams``), or opens a new one while it has fewer than
    ``connections_per_client`` (else it uses the least loaded). A new
    connection goes to the gateway the node picks by its ``policy`` and costs
    a TCP round trip plus the TLS handshake's (TLS 1.2: 2 full, 1 resumed;
    TLS 1.3: 1). A connection closes after ``requests_per_connection``
    requests (drawn per connection, rounded up), after ``idle_timeout_s``
    without a request (Envoy's idle_timeout, default 1 h; or the balancer's,
    ``balancer_idle_timeout_s``, e.g. 350 s for an AWS NLB), after
    ``max_connection_duration_s``, or when its gateway drains.
    ``ticket_policy``: the ticket (session) a client offers: ``latest``, the
    newest it got (browsers), or ``first``, the first it got, until that one
    expires (a client that saves one session and reuses it).
    """

    clients: int = Field(default=100, ge=1, description="Clients per balancer node.")
    connections_per_client: int = Field(default=1, ge=1)
    requests_per_connection: Distribution = Constant(value=100)
    idle_timeout_s: float = Field(default=3600.0, gt=0)
    balancer_idle_timeout_s: float | None = Field(default=None, gt=0)
    max_connection_duration_s: float | None = Field(default=None, gt=0)
    http_protocol: Literal["http1", "http2"] = "http1"
    max_concurrent_streams: int = Field(default=100, ge=1, description="HTTP/2 streams per connection.")
    ticket_policy: Literal["latest", "first"] = "latest"


class Workload(StrictModel):
    """Open-loop arrivals following ``rate_schedule``.

    Arrivals are split across client populations by their share and across
    services by ``services``. ``poisson``: a (non-homogeneous) Poisson process. ``deterministic``: an
    arrival each time the integral of the rate grows by one (evenly spaced at
    a constant rate), for exact tests and D/x/c checks.
    """

    arrivals: Literal["poisson", "deterministic"] = "poisson"
    rate_schedule: list[RateStep] = Field(min_length=1)
    services: dict[Name, Annotated[float, Field(gt=0, le=1)]] | None = Field(
        default=None, description=(
            "Service mix (shares summing to 1). Default (null): the topology's only service, with "
            "share 1, filled in when the experiment is loaded; required when the topology has "
            "several services."),
    )
    client: ClientPolicy = ClientPolicy()
    connections: ClientConnections | None = Field(
        default=None, description="Clients hold connections to the gateways; null: every try is independent.")


class FaultTarget(StrictModel):
    """Which parts a fault hits: every field given must match (none given: all).

    ``instance`` names one backend instance (``api-use1-az1-0``) or gateway
    instance (``gw-az1-0``).
    """

    service: Name | None = None
    az: Name | None = None
    region: Name | None = None
    instance: Name | None = None


class _Fault(StrictModel):
    at_s: float = Field(ge=0, description="When the fault starts (s).")
    for_s: float = Field(gt=0, description="How long it lasts (s).")
    target: FaultTarget = FaultTarget()


class BackendSlowdown(_Fault):
    """Matching backend instances take ``factor`` times longer per attempt started in the window."""

    kind: Literal["backend_slowdown"]
    factor: float = Field(gt=0)


class ErrorBurst(_Fault):
    """Matching backend instances fail attempts with ``error_probability`` (if higher than their own)."""

    kind: Literal["error_burst"]
    error_probability: Probability


class InstanceCrash(_Fault):
    """Matching instances crash at ``at_s`` (work in progress is reset) and restart empty after ``for_s``."""

    kind: Literal["instance_crash"]


class AzOutage(_Fault):
    """Every gateway and backend in ``az`` is down for the window; balancer nodes there stop taking clients."""

    kind: Literal["az_outage"]
    az: Name


class LoadSpike(_Fault):
    """The offered rate of matching client regions is multiplied by ``factor`` in the window."""

    kind: Literal["load_spike"]
    factor: float = Field(gt=0)


class RedisDown(_Fault):
    """Matching Redis servers refuse every call in the window (the process died); calls in its queue fail.

    Target Redis servers by ``instance`` (``redis``, ``redis-<az>``) or ``az``; none given: all.
    They come back with their keys.
    """

    kind: Literal["redis_down"]


class RedisSlowdown(_Fault):
    """Matching Redis servers take ``factor`` times longer per call started in the window."""

    kind: Literal["redis_slowdown"]
    factor: float = Field(gt=0)


class RedisFailover(_Fault):
    """Matching Redis servers are down for ``for_s`` (the failover gap), then come back empty.

    A promoted replica answers without the keys (asynchronous replication
    lost them), so buckets start afresh.
    """

    kind: Literal["redis_failover"]


class RollingRestart(_Fault):
    """Each matching gateway drains and restarts in turn (needs ``workload.connections``).

    Gateway k of n (``pool`` and ``target``: az, region or instance) starts
    draining at ``at_s + k x for_s / n``: its connections close after the
    requests on them (clients reconnect elsewhere) and it takes no new one;
    ``drain_s`` later it restarts (keys it made itself are new; its session
    cache is empty) and ``restart_s`` after that it takes connections again.
    """

    kind: Literal["rolling_restart"]
    pool: Name | None = None
    drain_s: float = Field(default=5.0, ge=0)
    restart_s: float = Field(default=5.0, ge=0)


Fault = Annotated[
    BackendSlowdown | ErrorBurst | InstanceCrash | AzOutage | LoadSpike | RedisDown | RedisSlowdown | RedisFailover
    | RollingRestart,
    Field(discriminator="kind"),
]


class BalancerPrices(StrictModel):
    """What one regional balancer of a kind costs (US dollars); see :mod:`sim.config.pricing`."""

    hourly: float = Field(ge=0, description="Per balancer (one per region) per hour.")
    capacity_unit_hourly: float = Field(ge=0, description="Per capacity unit (LCU, NLCU) per hour; 0: none.")
    capacity_unit_gb_per_hour: float | None = Field(gt=0, description=(
        "Processed gigabytes per hour one capacity unit covers (null: no such dimension)."))
    capacity_unit_new_connections_per_s: float | None = Field(gt=0, description=(
        "New connections per second one capacity unit covers (null: no such dimension)."))
    per_gb: float = Field(ge=0, description="Per processed gigabyte (GCP, Azure).")
    cross_az_billed: bool = Field(description=(
        "Bytes between the balancer's node and a gateway in another AZ are billed as cross-AZ "
        "(AWS: yes for an NLB with cross-zone on, no for an ALB)."))


class Prices(StrictModel):
    """Prices in US dollars: bytes by relation, and the regional balancers by kind."""

    gb_bytes: float = Field(gt=0, description="Bytes in the provider's gigabyte: 1e9 (GB) or 1073741824 (GiB).")
    cross_az_per_gb: float = Field(ge=0, description="A byte crossing between AZs of a region once, every side billed.")
    cross_region_per_gb: float = Field(ge=0)
    internet_egress_per_gb: float = Field(ge=0, description="Bytes from the fleet to clients; ingress is free.")
    l4: BalancerPrices
    l7: BalancerPrices


class Cost(StrictModel):
    """Dollars from the bytes and balancers of a run, scaled to ``production_rps``.

    ``prices`` starts from the ``provider``'s preset (:data:`sim.config.pricing.PRESETS`);
    any field given replaces the preset's (with ``provider: custom`` every
    field must be given). The summary's ``cost`` section gives dollars per
    million calls and per month at ``production_rps`` calls a second: the
    simulated window's bytes and connections per call times that rate, plus
    each balancer's hourly charge (a linear scaling of the simulated slice).
    """

    provider: Literal["aws", "gcp", "azure", "custom"] = "aws"
    prices: Prices
    production_rps: float | None = Field(default=None, gt=0, description=(
        "Calls a second in production. Default (null): the simulated window's offered rate."))

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        # Fill prices from the provider's preset, field by field, before validation: the resolved
        # configuration then lists every price the run used.
        if not isinstance(data, dict):
            return data
        from .pricing import PRESETS

        provider = data.get("provider", "aws")
        preset = PRESETS.get(provider)
        if preset is None:
            return data
        given = data.get("prices") or {}
        if isinstance(given, BaseModel):
            given = given.model_dump()
        if not isinstance(given, dict):
            return data
        merged = {**preset, **given}
        for kind in ("l4", "l7"):
            if isinstance(given.get(kind), dict):
                merged[kind] = {**preset[kind], **given[kind]}
        return {**data, "prices": merged}


class Output(StrictModel):
    """What a run writes besides its summary, time series and per-pool and per-service results."""

    instances: bool = Field(default=False, description=(
        "Write instance-level results (every gateway and backend, and each gateway's tries per "
        "host, in columnar form) besides the per-pool and per-service aggregates; off by default "
        "since at hundreds of gateways times hundreds of backends they dominate a run's cost."))


# The control plane's schema lives in its own module; it builds on StrictModel above.
from .controlplane import ControlPlane  # noqa: E402
from .sweep import Sweep  # noqa: E402


class Experiment(StrictModel):
    """An experiment: a topology, a workload and how long and how often to run."""

    name: Name
    description: str = ""
    topology: Topology
    topology_file: str | None = Field(default=None, description="Set by the loader.")
    overrides: dict[str, Any] = Field(
        default={}, description="Dotted paths into the topology and their values."
    )
    workload: Workload
    duration_s: float = Field(gt=0)
    warmup_s: float = Field(default=0.0, ge=0)
    seed: int = Field(default=1, ge=0)
    replications: int = Field(default=1, ge=1)
    faults: list[Fault] = Field(default=[], description="The fault timeline.")
    variants: dict[Name, dict[str, Any]] = Field(
        default={},
        description="Named variants to run and compare: each maps dotted paths into this experiment "
                    "(as --set does) to values. Every variant uses the same seed (common random numbers).",
    )
    output: Output = Field(default=Output(), description="What a run writes beyond the aggregates.")
    control_plane: ControlPlane | None = Field(default=None, description=(
        "An xDS control plane and its gateway subscribers (sim.components.controlplane); none by default."))
    cost: Cost | None = Field(default=None, description=(
        "Dollars per million calls and per month from the run's bytes and balancers (null: none)."))
    sweep: Sweep | None = Field(default=None, description=(
        "Parameters to sweep with fleetsim sweep (sim.config.sweep): a grid and a zip of dotted paths, "
        "each point combined with every variant and run replications times; fleetsim run ignores it."))

    @model_validator(mode="after")
    def _resolve_service_mix(self) -> Experiment:
        # workload.services defaults to the topology's only service; the workload cannot see the
        # topology, so the experiment fills it in. With several services it stays null and
        # sim.config.checks asks for it.
        if self.workload.services is None and len(self.topology.services) == 1:
            only = next(iter(self.topology.services))
            _fill(self, "workload", self.workload.model_copy(update={"services": {only: 1.0}}))
        return self
