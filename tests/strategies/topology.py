"""Topology (Region, ClientPopulation, Balancer, GatewayPool, Network, Topology): the fleet's skeleton.

:func:`plans` draws the skeleton every other strategy reads (a
:class:`~tests.strategies.registry.Plan`): 1-2 regions of 1-3 AZs (names
drawn, unique fleet-wide), the regions with clients, each reaching the
fleet through its balancer or straight at gateway pools (``gateway_pools``,
no balancer), 1-2 gateway pools per client region, 1-2 services with
instances in every client region, the run's length and warm-up.
:func:`topologies` writes it as the topology mapping; the pools' and the
network's optional fields are extensions.
"""

from __future__ import annotations

from hypothesis import strategies as st

from .distributions import distributions
from .registry import WHOLE_SCHEMA, Options, Plan, extension

# Names as the schema allows them (sim.config.models.Name). Pools and services have no
# '-', so instance names (<pool>-<i>, <service>-<az>-<i>) cannot clash; AZs may have one.
REGION_NAMES = st.from_regex(r"\A[a-z][a-z0-9_]{0,6}\Z")
AZ_NAMES = st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,8}\Z")
POOL_NAMES = st.from_regex(r"\A[a-z0-9][a-z0-9_]{0,6}\Z")
SERVICE_NAMES = st.from_regex(r"\A[a-z0-9][a-z0-9_]{0,6}\Z")


def unique(names, n: int):
    """``n`` distinct names."""
    return st.lists(names, min_size=n, max_size=n, unique=True)


def weights(draw, keys) -> dict[str, float]:
    """Positive shares of ``keys`` that sum to 1 (within the checker's tolerance)."""
    w = [draw(st.integers(min_value=1, max_value=4)) for _ in keys]
    return {k: x / sum(w) for k, x in zip(keys, w, strict=True)}


@st.composite
def plans(draw, opts: Options = WHOLE_SCHEMA) -> Plan:
    """A fleet's skeleton: regions, clients (balanced or direct), pools, services, run length."""
    n_regions = draw(st.integers(min_value=1, max_value=2))
    region_names = draw(unique(REGION_NAMES, n_regions))
    sizes = [draw(st.integers(min_value=1, max_value=3)) for _ in region_names]
    az_names = draw(unique(AZ_NAMES, sum(sizes)))
    regions, k = {}, 0
    for r, n in zip(region_names, sizes, strict=True):
        regions[r] = tuple(az_names[k:k + n])
        k += n
    # Regions without clients hold nothing (the fleet refuses unconnected parts).
    clients = tuple(r for r in region_names if draw(st.booleans())) or (region_names[0],)
    direct_regions = {r for r in clients if opts.direct == "always" or (opts.direct == "maybe" and draw(st.booleans()))}

    pools: dict[str, tuple[str, int]] = {}
    by_region: dict[str, list[str]] = {}
    n_pools = {r: draw(st.integers(min_value=1, max_value=2)) for r in clients}
    names = draw(unique(POOL_NAMES, sum(n_pools.values())))
    for r in clients:
        azs = list(regions[r])
        for _ in range(n_pools[r]):
            if opts.one_target_per_node and r not in direct_regions:
                # One instance per AZ: a node forwards to its own AZ's only (cross_zone off).
                free = [az for az in azs if az not in {pools[p][0] for p in by_region.get(r, [])}]
                if not free:
                    break
                az, n = draw(st.sampled_from(free)), 1
            else:
                az, n = draw(st.sampled_from(azs)), draw(st.integers(min_value=1, max_value=3))
            pool = names.pop()
            pools[pool] = (az, n)
            by_region.setdefault(r, []).append(pool)
    direct = {}
    for r in clients:
        if r in direct_regions:
            others = [p for q in clients if q != r for p in by_region[q]]
            extra = draw(st.lists(st.sampled_from(others), unique=True, max_size=1)) if others else []
            direct[r] = tuple(by_region[r] + extra)

    services: dict[str, dict[str, int]] = {}
    for svc in draw(unique(SERVICE_NAMES, draw(st.integers(min_value=1, max_value=2)))):
        per_az = {}
        for r in clients:
            azs = regions[r]
            counts = [draw(st.integers(min_value=0, max_value=2)) for _ in azs]
            if not any(counts):  # every client region reaches an instance of every service
                counts[draw(st.integers(min_value=0, max_value=len(azs) - 1))] = 1
            per_az.update(zip(azs, counts, strict=True))
        services[svc] = per_az

    duration = draw(st.sampled_from(opts.durations))
    if "judged" in opts.fault_modes and draw(st.integers(min_value=0, max_value=5)) == 0:
        duration = draw(st.sampled_from([10.0, 11.0, 12.0]))  # room to judge recovery after a fault
    warmup = draw(st.sampled_from([w for w in opts.warmups if w < duration]))
    return Plan(regions=regions, clients=clients, direct=direct, pools=pools, services=services,
                duration_s=duration, warmup_s=warmup)


@st.composite
def topologies(draw, plan: Plan, opts: Options = WHOLE_SCHEMA) -> dict:
    """The topology mapping of ``plan``: regions, clients, balancers, pools and services' places.

    Balancer policy and cross-zone, and the client shares, are drawn here;
    every optional field of a pool, a service or the network is an extension.
    """
    shares = weights(draw, list(plan.clients))
    clients = {}
    for r in plan.clients:
        clients[r] = {"share": shares[r]}
        if r in plan.direct:
            clients[r]["gateway_pools"] = list(plan.direct[r])
    balancers = {}
    for r in plan.clients:
        if r in plan.direct:
            continue
        bal: dict = {}
        if draw(st.booleans()):
            bal["policy"] = draw(st.sampled_from(["round_robin", "random", "least_connections"]))
        if draw(st.booleans()):
            bal["kind"] = draw(st.sampled_from(["l4", "l7"]))
        if opts.one_target_per_node:
            bal["cross_zone"] = False  # explicit: kind l7 would default it on
        elif draw(st.booleans()):
            bal["cross_zone"] = draw(st.booleans())
        balancers[r] = bal
    topo = {
        "name": draw(REGION_NAMES),
        "regions": {r: {"azs": list(azs)} for r, azs in plan.regions.items()},
        "clients": clients,
        "gateways": {pool: {"az": az, "instances": n} for pool, (az, n) in plan.pools.items()},
        "services": {svc: {"instances_per_az": dict(per_az)} for svc, per_az in plan.services.items()},
    }
    if balancers or draw(st.booleans()):  # `balancers: {}` when every region is direct, sometimes
        topo["balancers"] = balancers
    return topo


# ---------------------------------------------------------------- extensions

_LATENCY = {"same_az_s": 0.0002, "cross_az_s": 0.0005, "cross_region_s": 0.02, "internet_s": 0.005}


def _network(relation: str):
    def draw(plan: Plan, place, node: dict, opts: Options):
        return distributions(_LATENCY[relation], opts.dists)
    return draw


for _relation in _LATENCY:
    extension("topology", f"network.{_relation}")(_network(_relation))


@extension("topology", "description")
def _description(plan: Plan, place, node: dict, opts: Options):
    return st.text(max_size=20)


@extension("pool", "workers")
def _workers(plan: Plan, place, node: dict, opts: Options):
    return st.integers(min_value=1, max_value=3)


@extension("pool", "cpu_time_s")
def _cpu_time(plan: Plan, place, node: dict, opts: Options):
    return distributions(0.0002, opts.dists)
