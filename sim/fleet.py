"""Builds a fleet from a validated experiment, checks it is whole, and runs it.

Lifecycle (as desmod's): *elaborate* (lay the topology out as a networkx
graph and refuse, before t=0, any part that no client can reach or any
client that cannot reach a backend of a service it asks for), *build* (make
the components and wire them), *run*, *collect*.

Graph nodes: ``client:<region>``, ``lb:<region>:<az>``, ``gw:<instance>``,
``be:<instance>``; edges: the hops a request can take, each with its AZ
relation.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import networkx as nx

from sim.components.backend import BackendInstance
from sim.components.balancer import RegionalBalancer
from sim.components.faults import FaultTimeline, FleetParts
from sim.components.gateway import GatewayInstance
from sim.components.health import fleet_health_metrics
from sim.components.network import INTERNET, Network
from sim.components.workload import ClientPopulation, RateFunction
from sim.config.models import Experiment
from sim.engine import SimContext
from sim.metrics.recorder import Recorder
from sim.metrics.recovery import analyse_recovery

#: Recovery rules (sim.metrics.recovery): goodput back to 90% of its level
#: before the fault, smoothed over 3 s and held for 5 s.
RECOVERY = {"threshold": 0.9, "baseline_s": 30.0, "hold_s": 5.0, "smooth_s": 3}


class FleetError(Exception):
    """A fleet that cannot run; ``path`` is the config path at fault."""

    def __init__(self, path: tuple, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{'.'.join(map(str, path))}: {reason}")

    def __reduce__(self):  # crosses process boundaries (replications run in workers)
        return (type(self), (self.path, self.reason))


class ConservationError(RuntimeError):
    """Requests were created or lost: a bug in the simulator, never in the input."""


def _fault_to_the_end(exp: Experiment) -> bool:
    """A fault lasts to the end of the run: there is no after, so recovery is not judged."""
    return any(f.at_s + f.for_s >= exp.duration_s for f in exp.faults)


def layout(exp: Experiment) -> nx.DiGraph:
    """The fleet as a graph; raises :class:`FleetError` for a half-wired fleet."""
    topo = exp.topology
    T = ("topology",)
    az_region = {az: r for r, reg in topo.regions.items() for az in reg.azs}
    g = nx.DiGraph()
    mix = exp.workload.services or {next(iter(topo.services)): 1.0}

    gw_by_region: dict[str, list[str]] = {}
    for pool, gp in topo.gateways.items():
        region = az_region[gp.az]
        gw_by_region.setdefault(region, []).append(pool)
        for i in range(gp.instances):
            g.add_node(f"gw:{pool}-{i}", kind="gateway", pool=pool, region=region, az=gp.az)
    for svc, s in topo.services.items():
        for az, n in s.instances_per_az.items():
            for i in range(n):
                g.add_node(f"be:{svc}-{az}-{i}", kind="backend", service=svc, region=az_region[az], az=az)

    for region, bal in topo.balancers.items():
        pools = gw_by_region.get(region)
        if not pools:
            raise FleetError(T + ("balancers", region), f"no gateway pool in region {region!r} to forward to")
        gw_nodes = [n for n, d in g.nodes(data=True) if d["kind"] == "gateway" and d["region"] == region]
        for az in sorted({topo.gateways[p].az for p in pools}):
            lb = f"lb:{region}:{az}"
            g.add_node(lb, kind="balancer", region=region, az=az)
            for gw in gw_nodes:
                if bal.cross_zone or g.nodes[gw]["az"] == az:
                    g.add_edge(lb, gw, relation="same_az" if g.nodes[gw]["az"] == az else "cross_az")

    for region in topo.clients:
        client = f"client:{region}"
        g.add_node(client, kind="client", region=region, az=INTERNET)
        if region not in topo.balancers:
            raise FleetError(T + ("clients", region), f"no balancer in region {region!r} for these clients")
        for lb in [n for n, d in g.nodes(data=True) if d["kind"] == "balancer" and d["region"] == region]:
            g.add_edge(client, lb, relation="internet")

    for gw, d in list(g.nodes(data=True)):
        if d["kind"] != "gateway":
            continue
        for svc in topo.services:
            for be, bd in g.nodes(data=True):
                if bd["kind"] == "backend" and bd["service"] == svc and bd["region"] == d["region"]:
                    g.add_edge(gw, be, relation="same_az" if bd["az"] == d["az"] else "cross_az")

    if exp.faults and not _fault_to_the_end(exp):
        end = max(f.at_s + f.for_s for f in exp.faults)
        need = end + RECOVERY["hold_s"] + RECOVERY["smooth_s"]
        if exp.duration_s < need:
            raise FleetError(("duration_s",), f"must be at least {need:g} s: recovery is judged over "
                             f"{RECOVERY['hold_s'] + RECOVERY['smooth_s']:g} s after the last fault ends at {end:g} s")
        start = min(f.at_s for f in exp.faults)
        if start < exp.warmup_s:
            raise FleetError(("faults",), f"the first fault starts at {start:g} s, inside the warm-up "
                             f"({exp.warmup_s:g} s): there is no baseline to recover to")

    # Every client region must reach a backend of every service it asks for.
    for region in topo.clients:
        reach = nx.descendants(g, f"client:{region}")
        for svc in mix:
            if not any(g.nodes[n]["kind"] == "backend" and g.nodes[n]["service"] == svc for n in reach):
                raise FleetError(T + ("services", svc, "instances_per_az"),
                                 f"no instance in region {region!r}, whose clients send it requests")
    # Every part must be reachable from some client.
    reached = set()
    for region in topo.clients:
        reached |= nx.descendants(g, f"client:{region}") | {f"client:{region}"}
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
    return g


class Fleet:
    """A built fleet for one replication of an experiment."""

    def __init__(self, exp: Experiment, replication: int = 0):
        self.exp = exp
        self.graph = layout(exp)
        self.ctx = ctx = SimContext(exp.seed, replication, warmup_s=exp.warmup_s, duration_s=exp.duration_s)
        topo = exp.topology
        self.az_region = {az: r for r, reg in topo.regions.items() for az in reg.azs}
        self.network = Network(ctx, "network", topo.network, self.az_region)
        self.recorder = Recorder(exp.duration_s, exp.warmup_s)

        self.backends: dict[str, list[BackendInstance]] = {}
        for svc, s in topo.services.items():
            self.backends[svc] = [
                BackendInstance(ctx, f"{svc}-{az}-{i}", s, svc, az)
                for az in sorted(s.instances_per_az) for i in range(s.instances_per_az[az])
            ]
        self.gateways: dict[str, list[GatewayInstance]] = {}
        for pool, gp in topo.gateways.items():
            self.gateways[pool] = [GatewayInstance(ctx, f"{pool}-{i}", gp, gp.az) for i in range(gp.instances)]
            for gw in self.gateways[pool]:
                region = self.az_region[gp.az]
                for svc, insts in self.backends.items():
                    hosts = [b for b in insts if self.az_region[b.az] == region]
                    if hosts:
                        gw.add_cluster(svc, hosts, self.network)

        self.balancers: dict[str, RegionalBalancer] = {}
        for region, bal in topo.balancers.items():
            by_az: dict[str, list[GatewayInstance]] = {}
            for pool, gws in self.gateways.items():
                if self.az_region[topo.gateways[pool].az] == region:
                    by_az.setdefault(topo.gateways[pool].az, []).extend(gws)
            self.balancers[region] = RegionalBalancer(ctx, f"lb.{region}", bal, by_az, self.network)

        mix = exp.workload.services or {next(iter(topo.services)): 1.0}
        services = [(s, share, topo.services[s].request_bytes) for s, share in mix.items()]
        self.clients = []
        for region, pop in topo.clients.items():
            spikes = [(f.at_s, f.at_s + f.for_s, f.factor) for f in exp.faults
                      if f.kind == "load_spike" and f.target.region in (None, region)]
            rate = RateFunction(exp.workload.rate_schedule, pop.share, spikes)
            nodes = list(self.balancers[region].nodes.values())
            self.clients.append(ClientPopulation(ctx, f"clients.{region}", region, rate, services, nodes,
                                                 self.recorder, exp.workload.arrivals, exp.workload.client))

        # Faults (sim.components.faults): targets resolved before t=0, or FleetError.
        parts = FleetParts(backends=self._all_backends(), gateways=self._all_gateways(),
                           nodes=[n for bal in self.balancers.values() for n in bal.nodes.values()],
                           populations=self.clients, az_region=self.az_region)
        self.faults = FaultTimeline(ctx, exp.faults, parts)

    def _all_gateways(self):
        return [g for gws in self.gateways.values() for g in gws]

    def _all_backends(self):
        return [b for bs in self.backends.values() for b in bs]

    def _end_warmup(self, _value=None) -> None:
        self.network.reset()
        for part in [*self._all_gateways(), *self._all_backends(), *self.balancers.values()]:
            part.reset()

    def run(self, progress: Callable[[float], None] | None = None) -> dict:
        """Run to ``duration_s`` and return this replication's results."""
        if self.exp.warmup_s > 0:
            self.ctx.call_later(self.exp.warmup_s, self._end_warmup)
        self.faults.start()  # before the clients: a fault precedes requests at the same instant
        # Outlier-detection intervals and first health-check probes (sim.components.health).
        for gw in self._all_gateways():
            for cluster in gw.clusters.values():
                if cluster.health is not None:
                    cluster.health.start()
        for c in self.clients:
            c.start()
        end = self.exp.duration_s
        step = max(1.0, end / 200)
        t = 0.0
        while t < end:
            t = min(end, t + step)
            self.ctx.run(t)
            if progress:
                progress(t)
        for part in [*self._all_gateways(), *self._all_backends()]:
            part.finish()
        self.recorder.finish()
        return self.collect()

    # ---------------------------------------------------------------- results
    def events_scheduled(self) -> int:
        # SimPy numbers every scheduled event with an itertools.count; reading its
        # repr costs nothing on the hot path.
        text = repr(self.ctx.env._eid)
        return int(text[text.index("(") + 1 : text.rindex(")")])

    def check_conservation(self) -> dict:
        rec = self.recorder
        in_flight = sum(1 for c in self.clients for r in c.live if r.counted)
        failed = sum(rec.failed.values())
        calls = sum(c.calls for c in self.clients)
        all_live = sum(len(c.live) for c in self.clients)
        done = sum(rec.ts_done)
        if rec.offered != rec.succeeded + failed + in_flight or calls != done + all_live:
            raise ConservationError(
                f"requests not conserved: offered {rec.offered} != succeeded {rec.succeeded} + failed "
                f"{failed} + in flight {in_flight}, or calls {calls} != answered {done} + live {all_live}"
            )
        for c in self.clients:
            if c.issued != c.answered + c.tries_in_flight:
                raise ConservationError(f"{c.name}: tries not conserved: issued {c.issued} != answered "
                                        f"{c.answered} + live {c.tries_in_flight}")
        for b in self._all_backends():
            try:
                b.check_conservation()
            except RuntimeError as e:
                raise ConservationError(str(e)) from None
        return {"in_flight": in_flight}

    def traffic_graph(self) -> dict:
        """The layout graph with the requests each edge carried in the window."""
        load: dict[tuple[str, str], float] = {}
        for region, bal in self.balancers.items():
            for az, node in bal.nodes.items():
                lb = f"lb:{region}:{az}"
                load[(f"client:{region}", lb)] = float(sum(node.connections))
                for gw, n in zip(node.targets, node.connections, strict=True):
                    load[(lb, f"gw:{gw.name}")] = float(n)
        for gw in self._all_gateways():
            for c in gw.clusters.values():
                for host, n in zip(c.hosts, c.sent, strict=True):
                    load[(f"gw:{gw.name}", f"be:{host.name}")] = float(n)
        nodes = [{"id": n, **d} for n, d in self.graph.nodes(data=True)]
        edges = [{"source": u, "target": v, "relation": d["relation"], "requests": load.get((u, v), 0.0)}
                 for u, v, d in self.graph.edges(data=True)]
        return {"nodes": nodes, "edges": edges}

    def collect(self) -> dict:
        exp = self.exp
        rec = self.recorder
        window = exp.duration_s - exp.warmup_s
        cons = self.check_conservation()
        lat = rec.latency
        qs = lat.quantiles([0.5, 0.9, 0.99, 0.999]) if lat.count else [math.nan] * 4
        backend = {}
        for svc, insts in self.backends.items():
            st = [b.stats() for b in insts]
            workers = sum(s["workers"] for s in st)
            admitted = sum(s["admitted"] for s in st)
            wait_n = sum(s["wait_n"] for s in st)
            backend[svc] = {
                "attempts": sum(s["attempts"] for s in st),
                "rejected": sum(s["rejected"] for s in st),
                "errors": sum(s["errors"] for s in st),
                "utilization": sum(s["busy_s"] for s in st) / (workers * window),
                "mean_wait_ms": 1000 * sum(s["wait_sum_s"] for s in st) / wait_n if wait_n else math.nan,
                "p_wait": sum(s["waited"] for s in st) / admitted if admitted else math.nan,
                "mean_in_system": sum(s["in_system_s"] for s in st) / window,
                "wasted_work_s": sum(s["wasted_s"] for s in st),
            }
        gateway = {}
        by_reason: dict[str, int] = {}
        overflow = {"max_requests": 0, "retries": 0, "pending": 0, "connections": 0}
        for pool, gws in self.gateways.items():
            workers = sum(g.workers for g in gws)
            clusters = [c for g in gws for c in g.clusters.values()]
            pool_reasons: dict[str, int] = {}
            for c in clusters:
                for k, v in c.retries_by_reason.items():
                    pool_reasons[k] = pool_reasons.get(k, 0) + v
                    by_reason[k] = by_reason.get(k, 0) + v
            gateway[pool] = {
                "requests": sum(g.requests for g in gws),
                "utilization": sum(g.busy_s for g in gws) / (workers * window),
                "route_timeouts": sum(g.timeouts for g in gws),
                "per_try_timeouts": sum(c.per_try_timeouts for c in clusters),
                "retries": sum(pool_reasons.values()),
                "overflow_max_requests": sum(c.overflow_max_requests for c in clusters),
                "retry_overflow": sum(c.retry_overflow for c in clusters),
                "connects": sum(p.connects for g in gws for p in g.pools.values()),
                "connect_timeouts": sum(p.connect_timeouts for g in gws for p in g.pools.values()),
                "cx_overflow": sum(p.cx_overflow for g in gws for p in g.pools.values()),
                "pending_overflow": sum(p.pending_overflow for g in gws for p in g.pools.values()),
            }
            overflow["pending"] += gateway[pool]["pending_overflow"]
            overflow["connections"] += gateway[pool]["cx_overflow"]
            overflow["max_requests"] += gateway[pool]["overflow_max_requests"]
            overflow["retries"] += gateway[pool]["retry_overflow"]
        tries = sum(sum(c.sent) for g in self._all_gateways() for c in g.clusters.values())
        routed = sum(g.requests for g in self._all_gateways())
        recovery = None
        if exp.faults and not _fault_to_the_end(exp):
            windows = [(f.at_s, f.at_s + f.for_s) for f in exp.faults]
            recovery = analyse_recovery(rec.ts_good, windows, warmup_s=exp.warmup_s,
                                        duration_s=exp.duration_s, **RECOVERY).to_dict()
        summary = {
            "experiment": exp.name,
            "description": exp.description,
            "seed": exp.seed,
            "replications": 1,
            "simulated_s": exp.duration_s,
            "warmup_s": exp.warmup_s,
            "requests": {
                "offered": rec.offered,
                "succeeded": rec.succeeded,
                "failed": dict(sorted(rec.failed.items())),
                "in_flight": cons["in_flight"],
            },
            "throughput_rps": rec.window_done / window,
            "goodput_rps": rec.window_good / window,
            "latency_ms": {
                "mean": 1000 * lat.mean if lat.count else math.nan,
                "p50": 1000 * qs[0], "p90": 1000 * qs[1], "p99": 1000 * qs[2], "p999": 1000 * qs[3],
            },
            "backend": backend,
            "gateway": gateway,
            "client": {
                "calls": sum(c.calls for c in self.clients),
                "tries": sum(c.issued for c in self.clients),
                "retries": sum(c.retries for c in self.clients),
                "timeouts": sum(c.client_timeouts for c in self.clients),
                "retries_denied": sum(c.retries_denied for c in self.clients),
            },
            "retries": {
                # Backend tries per client request (retry amplification), and per
                # request the gateways routed, both over the measurement window.
                "amplification": tries / rec.offered if rec.offered else math.nan,
                "gateway_amplification": tries / routed if routed else math.nan,
                "gateway_retries": sum(by_reason.values()),
                "by_reason": dict(sorted(by_reason.items())),
                "overflow": overflow,
            },
            "bytes_by_az_pair": self.network.bytes_by_pair(),
            "recovery": recovery,
            "faults": self.faults.summary(),  # kind, at_s, for_s, targets (names)
        }
        n = rec.n
        ts = {
            "t_s": list(range(n)),
            "offered": rec.ts_offered,
            "throughput": rec.ts_done,
            "goodput": rec.ts_good,
            "in_flight": rec.in_flight_series(),
            "p50_ms": [1000 * x for x in rec.ts_p50],
            "p99_ms": [1000 * x for x in rec.ts_p99],
            "tries": rec.ts_tries,
            "attempts": [sum(col) for col in zip(*(g.tries_ts for g in self._all_gateways()), strict=True)],
        }
        for cause in sorted(rec.ts_errors):
            ts[f"err_{cause}"] = rec.ts_errors[cause]
        counters = {}
        for b in self._all_backends():
            counters[b.name] = b.stats()
        for g in self._all_gateways():
            counters[g.name] = g.stats()
        for bal in self.balancers.values():
            for node in bal.nodes.values():
                counters[node.name] = {"connections": dict(zip([t.name for t in node.targets], node.connections, strict=True))}
        counters["network"] = {link.key: {"bytes": link.bytes, "messages": link.messages, "relation": link.relation}
                               for link in self.network.links.values()}
        counters["clients"] = {c.name: {"calls": c.calls, "tries": c.issued, "retries": c.retries,
                                        "client_timeouts": c.client_timeouts, "retries_denied": c.retries_denied}
                               for c in self.clients}
        # ---- outlier detection and health checks (sim.components.health) ----
        health = fleet_health_metrics(self._all_gateways(), rec.n, exp.duration_s, window)
        summary["outlier"] = health["summary_outlier"]  # {ejections, by_reason, detected, overflow}
        summary["health_checks"] = health["summary_health_checks"]  # {probes, probe_rate_per_s, failures, timeouts}
        ts.update(health["timeseries"])  # healthy_hosts, ejected_hosts, hc_failed_hosts, panic_clusters, probes
        for name, probes in health["backends"].items():
            counters[name]["health_check_probes"] = probes
        for name, g in health["gateways"].items():
            counters[name]["health_checks"] = g  # probes, failures, ejections
        # ---- end of outlier detection and health checks ----
        return {
            "summary": summary,
            "timeseries": ts,
            "counters": counters,
            "latency_histogram": lat.to_dict(),
            "graph": self.traffic_graph(),
            "events": self.events_scheduled(),
            "requests": sum(c.calls for c in self.clients),
            "faults": {  # the timeline as it ran, and what balancer nodes refused because of it
                "timeline": self.faults.summary(),
                "events": self.faults.events(),
                "nodes": {node.name: {"no_healthy": node.no_healthy, "refused": node.refused}
                          for bal in self.balancers.values() for node in bal.nodes.values()},
            },
        }
