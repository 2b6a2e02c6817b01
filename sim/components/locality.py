"""Envoy's priority levels, locality-weighted balancing and zone-aware routing for one cluster.

Used instead of :class:`sim.components.lb.HostSelector` when a gateway
pool's cluster sets ``common_lb_config.zone_aware_lb_config``,
``common_lb_config.locality_weighted_lb_config`` or ``priorities``; a
cluster without them never reaches this module (so it costs them nothing).

The rules are Envoy's (``source/extensions/load_balancing_policies/common/
load_balancer_impl.cc``: ``recalculatePerPriorityState``,
``recalculatePerPriorityPanic``, ``choosePriority``,
``regenerateLocalityRoutingStructures``, ``earlyExitNonLocalityRouting``,
``calculateLocalityPercentages``, ``tryChooseLocalLocalityHosts``,
``hostSourceToUse``), restated in docs/facts.md#zone-aware-routing:

1. Each priority level's health is min(100, overprovisioning_factor x
   healthy / hosts) (integer percent); their sum capped at 100 is the
   normalized total availability; load is handed out from priority 0 on,
   each level taking min(remaining, health x 100 / normalized) and the
   rounding remainder going to the first level with any health.
2. A level is in panic (its picks use all its hosts) only when the
   normalized availability is below 100 and fewer than
   ``healthy_panic_threshold`` percent of its hosts are healthy; when every
   level is in panic, load follows the levels' host counts.
3. With locality-weighted balancing a zone is picked by an EDF schedule on
   its effective weight, then a host among the zone's healthy hosts.
4. Zone-aware routing applies to priority 0 only, as
   :func:`zone_routing` describes; a pick uses it with probability
   ``routing_enabled`` percent.

Within the chosen source (a level's healthy hosts, all its hosts in panic, or
one zone's healthy hosts) the cluster's ``lb_policy`` picks the host, with
its own state per source as Envoy keeps (round-robin positions persist across
rebuilds, EDF schedules are rebuilt).

Random draws: ``<gateway>.<service>.lb`` (host picks within a source, as
without this module) and ``<gateway>.<service>.locality`` (priority, zone
and routing_enabled draws).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sim.config.models import Cluster
from sim.engine import UniformStream

from .lb import Edf

BASIS = 10000
"""Envoy computes locality percentages in hundredths of a percent (10000 = 100%)."""

NO_LOCALITY_ROUTING = "none"
LOCALITY_DIRECT = "direct"
LOCALITY_RESIDUAL = "residual"


@dataclass(frozen=True)
class ZoneRouting:
    """Envoy's zone-routing state for one gateway and cluster (priority 0).

    Attributes:
        state: ``none``, ``direct`` (every pick stays in the local zone) or ``residual``.
        reason: why zone routing is off (``none``), in words; empty otherwise.
        localities: upstream zones, the local one first when the upstream has hosts there.
        local_percent_to_route: basis points of picks kept in the local zone (``residual``).
        residual: cumulative residual capacity per locality, basis points (``residual``).
        local_percentages, upstream_percentages: per locality, basis points.
    """

    state: str
    reason: str = ""
    localities: tuple[str, ...] = ()
    local_percent_to_route: int = 0
    residual: tuple[int, ...] = ()
    local_percentages: tuple[int, ...] = ()
    upstream_percentages: tuple[int, ...] = ()

    def shares(self) -> dict[str, float]:
        """Expected share of zone-routed picks going to each locality (the closed form of the sampling)."""
        if self.state == LOCALITY_DIRECT:
            return {az: float(i == 0) for i, az in enumerate(self.localities)}
        if self.state != LOCALITY_RESIDUAL:
            return {}
        p_local = min(self.local_percent_to_route, BASIS) / BASIS
        total = self.residual[-1] if self.residual else 0
        out = {}
        prev = 0
        for i, az in enumerate(self.localities):
            cap = self.residual[i] - prev
            prev = self.residual[i]
            cross = (cap / total) if total else 1.0 / len(self.localities)
            out[az] = (1 - p_local) * cross + (p_local if i == 0 else 0.0)
        return out


def locality_percentages(local_counts: dict[str, int], upstream_counts: Sequence[tuple[str, int]]
                         ) -> list[tuple[int, int]]:
    """``(local, upstream)`` basis points per upstream locality, Envoy's ``calculateLocalityPercentages``.

    Args:
        local_counts: healthy hosts of the local cluster per zone.
        upstream_counts: ``(zone, healthy hosts)`` per upstream locality, in locality order.
    """
    total_local = sum(local_counts.values())
    total_up = sum(n for _, n in upstream_counts)
    out = []
    for az, n in upstream_counts:
        if n == 0:
            out.append((0, 0))
            continue
        local = BASIS * local_counts.get(az, 0) // total_local if total_local else 0
        up = BASIS * n // total_up if total_up else 0
        out.append((local, up))
    return out


def zone_routing(local_zone: str, local_hosts: dict[str, int], local_healthy: dict[str, int],
                 upstream_hosts: dict[str, int], upstream_healthy: dict[str, int],
                 min_cluster_size: int) -> ZoneRouting:
    """Envoy's ``regenerateLocalityRoutingStructures`` for priority 0.

    Args:
        local_zone: the gateway's zone (Envoy ``node.locality.zone``).
        local_hosts: the local cluster's hosts per zone.
        local_healthy: the local cluster's healthy hosts per zone.
        upstream_hosts: priority 0's hosts per zone.
        upstream_healthy: priority 0's healthy hosts per zone.
        min_cluster_size: ``zone_aware_lb_config.min_cluster_size``.
    """
    zones = [z for z in sorted(upstream_hosts) if upstream_hosts[z] > 0]
    if local_zone in zones:
        zones.remove(local_zone)
        zones.insert(0, local_zone)
    has_local = bool(zones) and zones[0] == local_zone
    if len(zones) < 2:
        return ZoneRouting(NO_LOCALITY_ROUTING, "the upstream cluster has fewer than 2 zones")
    if sum(1 for n in local_hosts.values() if n > 0) < 2:
        return ZoneRouting(NO_LOCALITY_ROUTING, "the local cluster has fewer than 2 zones")
    if local_hosts.get(local_zone, 0) == 0:
        return ZoneRouting(NO_LOCALITY_ROUTING, "the local cluster has no host in this zone (lb_local_cluster_not_ok)")
    if sum(upstream_healthy.get(z, 0) for z in zones) < min_cluster_size:
        return ZoneRouting(NO_LOCALITY_ROUTING,
                           f"fewer than min_cluster_size ({min_cluster_size}) healthy upstream hosts "
                           "(lb_zone_cluster_too_small)")
    pct = locality_percentages(local_healthy, [(z, upstream_healthy.get(z, 0)) for z in zones])
    locals_ = tuple(p[0] for p in pct)
    ups = tuple(p[1] for p in pct)
    common = {"localities": tuple(zones), "local_percentages": locals_, "upstream_percentages": ups}
    if has_local and ups[0] > 0 and ups[0] >= locals_[0]:
        return ZoneRouting(LOCALITY_DIRECT, **common)
    to_route = ups[0] * BASIS // locals_[0] if has_local and locals_[0] > 0 else 0
    residual = []
    acc = 0
    for i, (loc, up) in enumerate(pct):
        if not (i == 0 and has_local) and up > loc:
            acc += up - loc
        residual.append(acc)
    return ZoneRouting(LOCALITY_RESIDUAL, local_percent_to_route=to_route, residual=tuple(residual), **common)


def priority_loads(health: Sequence[int], healthy_pct: Sequence[float], host_counts: Sequence[int],
                   panic_threshold: int) -> tuple[list[int], list[bool]]:
    """Per-priority load (percent, summing to 100) and panic, Envoy's rules 1 and 2 above.

    Args:
        health: each level's min(100, factor x healthy / hosts), whole percent.
        healthy_pct: each level's 100 x healthy / hosts (0 for an empty level).
        host_counts: each level's hosts.
        panic_threshold: ``healthy_panic_threshold``, whole percent.
    """
    n = len(health)
    loads = [0] * n
    normalized = min(100, sum(health))
    if normalized > 0:
        remaining = 100
        first = -1
        for i in range(n):
            if first < 0 and health[i] > 0:
                first = i
            loads[i] = min(remaining, health[i] * 100 // normalized)
            remaining -= loads[i]
        if remaining:
            loads[first] += remaining
    if panic_threshold == 0 and normalized == 0:
        return [100] + [0] * (n - 1), [False] * n
    panic = [False if normalized == 100 else healthy_pct[i] < panic_threshold for i in range(n)]
    if all(panic):
        total = sum(host_counts)
        if total == 0:
            return [100] + [0] * (n - 1), panic
        loads = [100 * c // total for c in host_counts]
        first = next(i for i, c in enumerate(host_counts) if c)
        loads[first] += 100 - sum(loads)
    return loads, panic


def uses_localities(config: Cluster) -> bool:
    """Whether a cluster needs :class:`LocalitySelector` (zone-aware, locality-weighted or priorities set)."""
    clb = config.common_lb_config
    return (clb.zone_aware_lb_config is not None or clb.locality_weighted_lb_config is not None
            or any(config.priorities.values()))


@dataclass
class LocalityCounters:
    """Envoy's per-pick zone-routing counters (``lb_zone_routing_*``), for the measurement window."""

    all_directly: int = 0
    sampled: int = 0
    cross_zone: int = 0
    by_priority: dict[int, int] = field(default_factory=dict)


class LocalitySelector:
    """A cluster's picker with priorities, locality weights and zone-aware routing.

    Same interface as :class:`sim.components.lb.HostSelector`: ``pick`` is the
    current picker and :meth:`use` switches it when host health changes.
    ``own_panic``: the health module hands it the healthy hosts even when the
    cluster-wide share is below the panic threshold, since panic is decided
    per priority level here (the health module's ``panic_clusters`` series
    still follows the cluster-wide rule).

    Args:
        config: the gateway pool's cluster settings.
        host_azs: each host's AZ, in host order.
        weights: each host's ``lb_weight``.
        active: the cluster's active requests per host (read by LEAST_REQUEST).
        picks: uniform draws for host picks within a source.
        draws: uniform draws for priority, zone and routing_enabled choices.
        local_zone: the gateway's AZ.
        local_hosts: the local cluster's hosts per AZ (zone-aware routing; all healthy).
    """

    own_panic = True

    def __init__(self, config: Cluster, host_azs: Sequence[str], weights: Sequence[int], active: list[int],
                 picks: UniformStream, draws: UniformStream, local_zone: str,
                 local_hosts: dict[str, int] | None = None):
        self.config = config
        self.n = len(host_azs)
        if self.n == 0:
            raise ValueError("a cluster needs at least one host")
        self.host_azs = list(host_azs)
        self.weights = list(weights)
        self.active = active
        self.picks = picks
        self.draws = draws
        self.local_zone = local_zone
        self.local_hosts = dict(local_hosts or {})
        clb = config.common_lb_config
        self.zone_aware = clb.zone_aware_lb_config
        self.locality_weighted = clb.locality_weighted_lb_config
        self.panic_threshold = round(clb.healthy_panic_threshold)
        self.factor = config.overprovisioning_factor
        self.host_priority = [config.priorities.get(az, 0) for az in self.host_azs]
        self.levels = max(self.host_priority) + 1
        self._rr_seed = int(picks() * 2**32)
        self._rr: dict[tuple, int] = {}
        self.counters = LocalityCounters()
        self.routing: ZoneRouting = ZoneRouting(NO_LOCALITY_ROUTING, "not computed")
        self.loads: list[int] = []
        self.panic: list[bool] = []
        self.pick: Callable[[], int] = self._build(set(range(self.n)))

    def use(self, hosts: list[int] | None, panic: bool = False) -> Callable[[], int]:
        """Rebuild for ``hosts`` healthy (None: every host); ``panic`` is recomputed per priority here."""
        self.pick = self._build(set(range(self.n)) if hosts is None else set(hosts))
        return self.pick

    def reset(self) -> None:
        """Start the measurement window of the counters now."""
        self.counters = LocalityCounters()

    # ------------------------------------------------------------------ building
    def _source(self, key: tuple, hosts: list[int]) -> Callable[[], int]:
        """The ``lb_policy`` picker over ``hosts`` (global indices), with per-source state."""
        cfg = self.config
        u = self.picks
        m = len(hosts)
        if m == 1:
            only = hosts[0]
            return lambda: only
        weights = self.weights
        equal = len({weights[i] for i in hosts}) == 1
        policy = cfg.lb_policy
        if policy == "RANDOM":
            return lambda: hosts[int(u() * m)]
        if policy == "ROUND_ROBIN" and equal:
            rr = self._rr
            rr.setdefault(key, self._rr_seed)

            def round_robin() -> int:
                i = rr[key]
                rr[key] = i + 1
                return hosts[i % m]
            return round_robin
        if policy == "LEAST_REQUEST" and equal:
            active = self.active
            choices = cfg.least_request_lb_config.choice_count

            def p2c() -> int:
                best = hosts[int(u() * m)]
                for _ in range(choices - 1):
                    j = hosts[int(u() * m)]
                    if active[j] < active[best]:
                        best = j
                return best
            return p2c
        if policy == "ROUND_ROBIN":
            return Edf(m, lambda i: float(weights[i]), hosts).pick
        bias = cfg.least_request_lb_config.active_request_bias
        active = self.active
        return Edf(m, lambda i: weights[i] / (active[i] + 1) ** bias, hosts).pick

    def _build(self, healthy: set[int]) -> Callable[[], int]:
        n_levels = self.levels
        level_hosts = [[i for i in range(self.n) if self.host_priority[i] == p] for p in range(n_levels)]
        level_healthy = [[i for i in hs if i in healthy] for hs in level_hosts]
        health, pct = [], []
        for hs, ok in zip(level_hosts, level_healthy, strict=True):
            health.append(min(100, self.factor * len(ok) // len(hs)) if hs else 0)
            pct.append(100.0 * len(ok) / len(hs) if hs else 0.0)
        self.loads, self.panic = priority_loads(health, pct, [len(h) for h in level_hosts], self.panic_threshold)
        self.routing = ZoneRouting(NO_LOCALITY_ROUTING, "zone-aware routing is off")
        pickers: list[Callable[[], int] | None] = []
        for p in range(n_levels):
            if not level_hosts[p]:
                pickers.append(None)
            elif self.panic[p] or not level_healthy[p]:
                # Panic; or no healthy host with panic disabled, where Envoy answers 503 and the
                # router here needs a host: every host of the level, as the health module does.
                pickers.append(self._source((p, "all"), level_hosts[p]))
            else:
                pickers.append(self._level_picker(p, level_hosts[p], level_healthy[p]))
        levels = [p for p in range(n_levels) if self.loads[p] > 0 and pickers[p] is not None]
        if not levels:  # every loaded level is empty: Envoy would fail the pick; use any host
            levels = [next(p for p in range(n_levels) if pickers[p] is not None)]
        if len(levels) == 1:
            only = pickers[levels[0]]
            by_priority = self.counters.by_priority
            lvl = levels[0]

            def one_level() -> int:
                by_priority[lvl] = by_priority.get(lvl, 0) + 1
                return only()
            return one_level if n_levels > 1 else only
        cumulative = []
        acc = 0
        for p in range(n_levels):
            acc += self.loads[p]
            cumulative.append(acc)
        draws = self.draws

        def by_priority_pick() -> int:
            h = int(draws() * 100) + 1  # Envoy: hash % 100 + 1, in 1..100
            p = 0
            while h > cumulative[p] or pickers[p] is None:
                p += 1
            counts = self.counters.by_priority
            counts[p] = counts.get(p, 0) + 1
            return pickers[p]()
        return by_priority_pick

    def _level_picker(self, p: int, hosts: list[int], healthy: list[int]) -> Callable[[], int]:
        healthy_pick = self._source((p, "healthy"), healthy)
        azs = sorted({self.host_azs[i] for i in hosts})
        per_zone = {az: [i for i in healthy if self.host_azs[i] == az] for az in azs}
        if self.locality_weighted is not None:
            weights = {}
            for az in azs:
                total = sum(1 for i in hosts if self.host_azs[i] == az)
                avail = min(1.0, self.factor / 100.0 * len(per_zone[az]) / total)
                w = self.locality_weighted.locality_weights.get(az, 1) * avail
                if w > 0:
                    weights[az] = w
            if not weights:
                return healthy_pick
            zones = list(weights)
            zone_pickers = [self._source((p, az), per_zone[az]) for az in zones]
            edf = Edf(len(zones), lambda k: weights[zones[k]])

            def locality_weighted() -> int:
                return zone_pickers[edf.pick()]()
            return locality_weighted
        if self.zone_aware is None or p != 0:
            return healthy_pick
        za = self.zone_aware
        up_hosts = {az: sum(1 for i in hosts if self.host_azs[i] == az) for az in azs}
        up_healthy = {az: len(per_zone[az]) for az in azs}
        routing = self.routing = zone_routing(self.local_zone, self.local_hosts, self.local_hosts,
                                              up_hosts, up_healthy, za.min_cluster_size)
        if routing.state == NO_LOCALITY_ROUTING:
            return healthy_pick
        # The local cluster is static (always healthy), so its panic check never fires.
        zone_pickers = [self._source((p, az), per_zone[az]) if per_zone[az] else healthy_pick
                        for az in routing.localities]
        counters = self.counters
        draws = self.draws
        enabled = round(za.routing_enabled)
        if routing.state == LOCALITY_DIRECT:
            local = zone_pickers[0]

            def direct() -> int:
                if enabled < 100 and int(draws() * 100) >= enabled:
                    return healthy_pick()
                counters.all_directly += 1
                return local()
            return direct
        to_route = routing.local_percent_to_route
        residual = routing.residual
        total = residual[-1]
        k = len(residual)

        def residual_pick() -> int:
            if enabled < 100 and int(draws() * 100) >= enabled:
                return healthy_pick()
            if int(draws() * BASIS) < to_route:
                counters.sampled += 1
                return zone_pickers[0]()
            counters.cross_zone += 1
            if total == 0:
                return zone_pickers[int(draws() * k)]()
            t = int(draws() * total)
            i = 0
            while t >= residual[i]:
                i += 1
            return zone_pickers[i]()
        return residual_pick

    def results(self) -> dict:
        """Result hook: Envoy's zone-routing counters, the routing state and the priority loads."""
        c = self.counters
        return {"zone_routing_all_directly": c.all_directly, "zone_routing_sampled": c.sampled,
                "zone_routing_cross_zone": c.cross_zone, "state": self.routing.state,
                "reason": self.routing.reason, "priority_loads": list(self.loads),
                "picks_by_priority": {str(k): v for k, v in sorted(c.by_priority.items())}}




def pool_results(az: str, clusters: Sequence) -> dict:
    """One gateway pool's zone figures for one service, over its instances' clusters.

    Args:
        az: the pool's AZ.
        clusters: each instance's :class:`~sim.components.gateway.UpstreamCluster` for the service.

    Returns:
        ``tries_by_az`` (tries sent to hosts in each AZ), ``local_fraction``
        (share of tries to the pool's own AZ; NaN without tries), Envoy's
        ``zone_routing_*`` counters summed, and ``states``: each routing
        state with how many instances were in it at the end and why.
    """
    by_az: dict[str, int] = {}
    counters = {"zone_routing_all_directly": 0, "zone_routing_sampled": 0, "zone_routing_cross_zone": 0}
    states: dict[str, int] = {}
    for c in clusters:
        for h, k in zip(c.hosts, c.sent, strict=True):
            by_az[h.az] = by_az.get(h.az, 0) + k
        if isinstance(c.selector, LocalitySelector):
            r = c.selector.results()
            for key in counters:
                counters[key] += r[key]
            label = r["state"] + (f": {r['reason']}" if r["reason"] else "")
            states[label] = states.get(label, 0) + 1
    total = sum(by_az.values())
    return {"tries_by_az": dict(sorted(by_az.items())),
            "local_fraction": by_az.get(az, 0) / total if total else float("nan"),
            **counters, "states": states}


__all__ = ["BASIS", "LOCALITY_DIRECT", "LOCALITY_RESIDUAL", "NO_LOCALITY_ROUTING", "LocalityCounters",
           "LocalitySelector", "ZoneRouting", "locality_percentages", "pool_results", "priority_loads",
           "uses_localities", "zone_routing"]
