"""The fleet's component graph: worked out once from the validated config, checked, then built.

:func:`plan` lays the topology out as a networkx graph whose nodes are the
parts the fleet builder makes, at the level where wiring is decided: a
client population per region, a balancer node per (region, AZ with
gateways), a gateway *pool* and a backend *group* (one service's instances
in one AZ). Every instance of a pool is wired alike, so the graph stays the
size of the configuration, not of the fleet (a fleet of 5,000 gateways and
600 backends is a few dozen nodes). Its edges are the hops a request can
take, each with its AZ relation (``internet``, ``same_az``, ``cross_az``).

The same graph is checked here (every client reaches a backend of every
service it asks for; no part is left unreachable) and then handed to
:class:`sim.fleet.Fleet`, which builds the components from its nodes and
wires them along its edges: what is checked is what runs.

Nodes (``kind`` and attributes):

- ``client:<region>``: ``client``; ``region``, ``az`` (``internet``).
- ``lb:<region>:<az>``: ``balancer``; ``region``, ``az``.
- ``gw:<pool>``: ``gateway``; ``pool``, ``region``, ``az``, ``instances``.
- ``be:<service>:<az>``: ``backend``; ``service``, ``region``, ``az``, ``instances``.

Edge order is the order the builder wires in (networkx keeps insertion
order): a balancer node's pools by AZ then by their order in the topology;
a pool's backend groups by service (topology order) then AZ (sorted).
"""

from __future__ import annotations

import math

import networkx as nx

from sim.components.network import INTERNET
from sim.config.checks import redis_servers
from sim.config.models import Experiment
from sim.metrics.recovery import RECOVERY_RULES


class FleetError(Exception):
    """A fleet that cannot run; ``path`` is the config path at fault."""

    def __init__(self, path: tuple, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{'.'.join(map(str, path))}: {reason}")

    def __reduce__(self):  # crosses process boundaries (replications run in workers)
        return (type(self), (self.path, self.reason))


def service_mix(exp: Experiment) -> dict[str, float]:
    """The workload's service mix; with none given, all traffic goes to the first service."""
    return exp.workload.services or {next(iter(exp.topology.services)): 1.0}


def faults_reach_the_end(exp: Experiment) -> bool:
    """A fault lasts to the end of the run: there is no after, so recovery is not judged."""
    return any(f.at_s + f.for_s >= exp.duration_s for f in exp.faults)


def _relation(a: str, b: str) -> str:
    return "same_az" if a == b else "cross_az"


def plan(exp: Experiment) -> nx.DiGraph:
    """The fleet's component graph; raises :class:`FleetError` for a half-wired fleet."""
    topo = exp.topology
    T = ("topology",)
    az_region = {az: r for r, reg in topo.regions.items() for az in reg.azs}
    g = nx.DiGraph()

    pools_by_region: dict[str, list[str]] = {}
    for pool, gp in topo.gateways.items():
        region = az_region[gp.az]
        pools_by_region.setdefault(region, []).append(pool)
        g.add_node(f"gw:{pool}", kind="gateway", pool=pool, region=region, az=gp.az, instances=gp.instances)
    for svc, s in topo.services.items():
        for az in sorted(s.instances_per_az):
            n = s.instances_per_az[az]
            if n:
                g.add_node(f"be:{svc}:{az}", kind="backend", service=svc, region=az_region[az], az=az,
                           instances=n)

    for region, bal in topo.balancers.items():
        pools = pools_by_region.get(region)
        if not pools:
            raise FleetError(T + ("balancers", region), f"no gateway pool in region {region!r} to forward to")
        azs = sorted({topo.gateways[p].az for p in pools})
        for az in azs:
            lb = f"lb:{region}:{az}"
            g.add_node(lb, kind="balancer", region=region, az=az)
            for target_az in azs:
                if bal.cross_zone or target_az == az:
                    for pool in pools:
                        if topo.gateways[pool].az == target_az:
                            g.add_edge(lb, f"gw:{pool}", relation=_relation(az, target_az))

    for region, pop in topo.clients.items():
        client = f"client:{region}"
        g.add_node(client, kind="client", region=region, az=INTERNET)
        if pop.gateway_pools:
            # Straight to the gateways, no balancer (a DirectEntry stands between).
            if region in topo.balancers:
                raise FleetError(T + ("clients", region, "gateway_pools"),
                                 f"region {region!r} has a balancer: clients go through it, or name "
                                 "gateway_pools without one")
            for pool in pop.gateway_pools:
                if pool not in topo.gateways:
                    raise FleetError(T + ("clients", region, "gateway_pools"),
                                     f"unknown gateway pool {pool!r} (pools: {', '.join(topo.gateways)})")
                g.add_edge(client, f"gw:{pool}", relation="internet")
            continue
        if topo.gslb is not None:
            # DNS (the GSLB) may answer with any region's balancer.
            for lb in [n for n, d in g.nodes(data=True) if d["kind"] == "balancer"]:
                g.add_edge(client, lb, relation="internet")
            continue
        if region not in topo.balancers:
            raise FleetError(T + ("clients", region), f"no balancer in region {region!r} for these clients "
                             "(or give clients.<region>.gateway_pools to send straight to gateways)")
        for lb in [n for n, d in g.nodes(data=True) if d["kind"] == "balancer" and d["region"] == region]:
            g.add_edge(client, lb, relation="internet")

    groups = [(n, d) for n, d in g.nodes(data=True) if d["kind"] == "backend"]
    for pool, gp in topo.gateways.items():
        region = az_region[gp.az]
        for svc in topo.services:
            for be, bd in groups:
                if bd["service"] == svc and bd["region"] == region:
                    g.add_edge(f"gw:{pool}", be, relation=_relation(gp.az, bd["az"]))

    # Redis (remote rate limits): a node per server, an edge from each pool to the server it calls.
    servers = redis_servers(topo) if topo.rate_limit is not None and topo.rate_limit.algorithm != "local" else {}
    for name, az in servers.items():
        g.add_node(f"redis:{name}", kind="redis", name=name, region=az_region[az], az=az, instances=1)
    for pool, gp in topo.gateways.items():
        if servers:
            name = "redis" if topo.redis.placement == "one_az" else f"redis-{gp.az}"
            az = servers[name]
            rel = _relation(gp.az, az) if az_region[az] == az_region[gp.az] else "cross_region"
            g.add_edge(f"gw:{pool}", f"redis:{name}", relation=rel)

    _check_fault_windows(exp)
    _check_reach(exp, g)
    return g


def _check_fault_windows(exp: Experiment) -> None:
    """Refuse a fault timeline whose recovery cannot be judged (the rules of :mod:`sim.metrics.recovery`).

    Recovery is judged over whole seconds: the run's ``floor(duration_s)``
    must leave ``hold_s + smooth_s`` after the last fault ends, and at least
    one whole second (second 0 is ``[0, 1)``) must precede the first fault to
    take the baseline from.
    """
    if not exp.faults or faults_reach_the_end(exp):
        return
    rules = RECOVERY_RULES
    end = max(f.at_s + f.for_s for f in exp.faults)
    need = end + rules["hold_s"] + rules["smooth_s"]
    if math.floor(exp.duration_s) < need:
        raise FleetError(("duration_s",), f"must be at least {math.ceil(need):g} s: recovery is judged over "
                         f"{rules['hold_s'] + rules['smooth_s']:g} whole seconds after the last fault ends at "
                         f"{end:g} s")
    start = min(f.at_s for f in exp.faults)
    if start < exp.warmup_s:
        raise FleetError(("faults",), f"the first fault starts at {start:g} s, inside the warm-up "
                         f"({exp.warmup_s:g} s): there is no baseline to recover to")
    if start < 1:
        first = min(range(len(exp.faults)), key=lambda i: exp.faults[i].at_s)
        raise FleetError(("faults", first, "at_s"), f"the first fault starts at {start:g} s, before the first whole second "
                         "of the run ends: recovery needs at least one whole second before the fault as its "
                         "baseline; start it at 1 s or later")


def _check_reach(exp: Experiment, g: nx.DiGraph) -> None:
    """Every client reaches each service it asks for; every part is reached by some client."""
    topo = exp.topology
    T = ("topology",)
    reached = set()
    for region in topo.clients:
        reach = nx.descendants(g, f"client:{region}")
        reached |= reach | {f"client:{region}"}
        for svc in service_mix(exp):
            if not any(g.nodes[n]["kind"] == "backend" and g.nodes[n]["service"] == svc for n in reach):
                raise FleetError(T + ("services", svc, "instances_per_az"),
                                 f"no instance in region {region!r}, whose clients send it requests")
    for n, d in g.nodes(data=True):
        if n in reached:
            continue
        if d["kind"] == "gateway":
            raise FleetError(T + ("gateways", d["pool"]), f"unconnected: no client reaches region {d['region']!r}")
        if d["kind"] == "backend":
            raise FleetError(T + ("services", d["service"], "instances_per_az", d["az"]),
                             f"unconnected: no gateway routes to region {d['region']!r}")
        if d["kind"] == "balancer":
            raise FleetError(T + ("balancers", d["region"]), "unconnected: no clients in this region")


def instance_counts(g: nx.DiGraph) -> dict[str, int]:
    """Instances of each kind in the graph (a client population or balancer node counts one)."""
    out: dict[str, int] = {}
    for _, d in g.nodes(data=True):
        out[d["kind"]] = out.get(d["kind"], 0) + d.get("instances", 1)
    return out


__all__ = ["FleetError", "faults_reach_the_end", "instance_counts", "plan", "service_mix"]
