"""Builds a fleet from a validated experiment's component graph, runs it, and collects its results.

Lifecycle (as desmod's): *elaborate* (:func:`sim.fleet.graph.plan` lays the
topology out as a graph of pools and groups and refuses, before t=0, a
half-wired fleet), *build* (make the components from the graph's nodes and
wire them along its edges), *run*, *collect* (each component's result hook,
assembled by :mod:`sim.metrics.summary`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

from sim.components.backend import BackendInstance
from sim.components.balancer import DirectEntry, RegionalBalancer
from sim.components.controlplane import ControlPlane
from sim.components.gateway import GatewayInstance
from sim.components.gateway_cpu import AccountedGateway
from sim.components.gslb import Gslb, GslbEntry
from sim.components.locality import pool_results as locality_pool_results
from sim.components.locality import uses_localities
from sim.components.network import GATEWAY_REDIS, Network
from sim.components.ratelimit import IdealBucket, LocalLimit, RemoteLimit
from sim.components.redis import RedisServer
from sim.components.workload import ClientPopulation, RateFunction
from sim.config.models import Experiment
from sim.config.naming import backend_name, gateway_name
from sim.engine import SimContext
from sim.metrics import summary as summary_mod
from sim.metrics.recorder import Recorder

from .capacity import service_load
from .faults import FaultTimeline, FleetParts
from .graph import faults_reach_the_end, plan, service_mix

#: Beyond this many gateway-to-backend instance pairs, graph.json is written per pool and
#: backend group unless the experiment asks for instance-level output.
INSTANCE_GRAPH_MAX_PAIRS = 5000


def accounted(pool, connections) -> bool:
    """Whether a pool's gateways keep a CPU account (:class:`AccountedGateway`).

    With TLS, access logs or CPU costs on the pool, or clients holding
    connections; otherwise the plain gateway, which adds nothing per request.
    """
    return (pool.tls is not None or pool.access_log is not None or pool.cpu_costs is not None
            or connections is not None)


def local_cluster(topo, pool: str) -> dict[str, int] | None:
    """Gateway instances per AZ of ``pool``'s zone-aware local cluster (None without zone-aware routing)."""
    za = topo.gateways[pool].cluster.common_lb_config.zone_aware_lb_config
    if za is None:
        return None
    out: dict[str, int] = {}
    for name in za.local_cluster or []:
        gp = topo.gateways[name]
        out[gp.az] = out.get(gp.az, 0) + gp.instances
    return out


class ConservationError(RuntimeError):
    """Requests were created or lost: a bug in the simulator, never in the input."""


class Fleet:
    """A built fleet for one replication of an experiment.

    Attributes:
        graph: the component graph it was built from (:func:`sim.fleet.graph.plan`).
        backends: service -> its instances (AZs sorted, then by index).
        gateways: pool -> its instances.
        balancers: region -> its balancer.
        clients: the client populations, one per region.
        network, recorder, faults: the links, the request outcomes, the fault timeline.
    """

    def __init__(self, exp: Experiment, replication: int = 0):
        self.exp = exp
        self.graph = g = plan(exp)
        self.ctx = ctx = SimContext(exp.seed, replication, warmup_s=exp.warmup_s, duration_s=exp.duration_s)
        topo = exp.topology
        self.az_region = {az: r for r, reg in topo.regions.items() for az in reg.azs}
        self.network = Network(ctx, "network", topo.network, self.az_region)
        self.recorder = Recorder(exp.duration_s, exp.warmup_s)

        # Parts built per node of the graph, in the graph's order.
        self.parts: dict[str, list] = {}
        self.backends: dict[str, list[BackendInstance]] = {svc: [] for svc in topo.services}
        self.gateways: dict[str, list[GatewayInstance]] = {}
        conns = exp.workload.connections  # clients holding connections (sim.components.tls), or None
        for node, d in g.nodes(data=True):
            if d["kind"] == "backend":
                svc, az = d["service"], d["az"]
                insts = [BackendInstance(ctx, backend_name(svc, az, i), topo.services[svc], svc, az)
                         for i in range(d["instances"])]
                self.parts[node] = insts
                self.backends[svc].extend(insts)
            elif d["kind"] == "gateway":
                pool, gp = d["pool"], topo.gateways[d["pool"]]
                kind = AccountedGateway if accounted(gp, conns) else GatewayInstance
                self.parts[node] = self.gateways[pool] = [kind(ctx, gateway_name(pool, i), gp, gp.az)
                                                          for i in range(d["instances"])]
        self.backends = {svc: insts for svc, insts in self.backends.items() if insts}
        for pool in self.gateways:
            hosts_of: dict[str, list[BackendInstance]] = {}
            for be in g.successors(f"gw:{pool}"):
                if g.nodes[be]["kind"] != "backend":  # a Redis the pool's rate limit calls
                    continue
                hosts_of.setdefault(g.nodes[be]["service"], []).extend(self.parts[be])
            local = local_cluster(topo, pool)
            for gw in self.gateways[pool]:
                for svc, hosts in hosts_of.items():
                    gw.add_cluster(svc, hosts, self.network, local)

        self.connections = None
        node_class = None
        if conns is not None:
            from sim.components.tls import ConnectionLayer, ConnectionNode  # noqa: PLC0415 - only with the feature
            self.connections = ConnectionLayer(ctx, "connections", conns, {
                pool: (topo.gateways[pool], gws, [(g.az, self.az_region[g.az]) for g in gws])
                for pool, gws in self.gateways.items()})
            node_class = functools.partial(ConnectionNode, layer=self.connections)
        self.balancers: dict[str, RegionalBalancer] = {}
        for region, bal in topo.balancers.items():
            targets = {}
            for lb, d in g.nodes(data=True):
                if d["kind"] == "balancer" and d["region"] == region:
                    targets[d["az"]] = [gw for pool in g.successors(lb) for gw in self.parts[pool]]
            self.balancers[region] = RegionalBalancer(ctx, f"lb.{region}", bal, targets, self.network, node_class)

        services = [(s, share, topo.services[s].request_bytes) for s, share in service_mix(exp).items()]
        self.clients = []
        self.direct: dict[str, DirectEntry] = {}  # regions whose clients skip the balancer
        self.gslb: Gslb | None = None
        self.dns: dict[str, GslbEntry] = {}  # regions whose clients resolve through the GSLB
        if topo.gslb is not None:
            self.gslb = Gslb(ctx, topo.gslb, {r: list(b.nodes.values()) for r, b in self.balancers.items()})
        for region, pop in topo.clients.items():
            spikes = [(f.at_s, f.at_s + f.for_s, f.factor) for f in exp.faults
                      if f.kind == "load_spike" and f.target.region in (None, region)]
            rate = RateFunction(exp.workload.rate_schedule, pop.share, spikes)
            if pop.gateway_pools:
                entry = DirectEntry(ctx, f"direct.{region}",
                                    [gw for pool in g.successors(f"client:{region}") for gw in self.parts[pool]],
                                    self.network)
                self.direct[region] = entry
                nodes = [entry]
            elif self.gslb is not None:
                self.dns[region] = GslbEntry(ctx, f"dns.{region}", region, self.gslb)
                nodes = [self.dns[region]]
            else:
                nodes = [self.balancers[region].nodes[g.nodes[lb]["az"]]
                         for lb in g.successors(f"client:{region}")]
            self.clients.append(ClientPopulation(ctx, f"clients.{region}", region, rate, services, nodes,
                                                 self.recorder, exp.workload.arrivals, exp.workload.client))

        # Each service's backend queue length at the end of every second (sampled while running).
        self.queue_ts = {svc: [0] * self.recorder.n for svc in self.backends}

        # Rate limiting (sim.components.ratelimit, sim.components.redis); nothing without it.
        self.redis: dict[str, RedisServer] = {}
        self.rate_limits: list = []
        self.ideal_bucket = None
        self.redis_network = None
        if topo.rate_limit is not None:
            self._build_rate_limit()

        # Faults (sim.fleet.faults): targets resolved before t=0, or FleetError.
        self.faults = FaultTimeline(ctx, exp.faults, FleetParts(
            backends=self.all_backends(), gateways=self.all_gateways(),
            nodes=[n for bal in self.balancers.values() for n in bal.nodes.values()],
            populations=self.clients, az_region=self.az_region, redis=list(self.redis.values()),
            gateway_pool={g.name: pool for pool, gws in self.gateways.items() for g in gws},
            connections=self.connections))

        # The xDS control plane (sim.components.controlplane), when the experiment has one.
        self.control_plane: ControlPlane | None = None
        cp = exp.control_plane
        if cp is not None:
            subscribers = self.all_gateways() if cp.mode == "data_plane" else None
            self.control_plane = ControlPlane(ctx, "control_plane", cp, subscribers,
                                              down=self.faults.go_down, up=self.faults.come_up)

    def _build_rate_limit(self) -> None:
        """The rate-limit filter of every gateway, the Redis servers it calls and their links."""
        topo = self.exp.topology
        rl = topo.rate_limit
        ctx = self.ctx
        self.ideal_bucket = IdealBucket(rl.global_limit_per_s, rl.global_burst, self.recorder.n, self.exp.warmup_s)
        if topo.redis is not None:
            for node, d in self.graph.nodes(data=True):
                if d["kind"] == "redis":
                    server = RedisServer(ctx, d["name"], topo.redis, d["az"])
                    self.redis[d["name"]] = server
                    self.parts[node] = [server]
            # Its own links (streams redis_network.<src>-><dst>): nobody else's latency draws shift.
            self.redis_network = Network(ctx, "redis_network", topo.network, self.az_region)
        for pool, gws in self.gateways.items():
            # The server a pool calls: its edge to a Redis node (sim.fleet.graph).
            calls = [self.parts[n][0] for n in self.graph.successors(f"gw:{pool}")
                     if self.graph.nodes[n]["kind"] == "redis"]
            for gw in gws:
                self._attach_rate_limit(gw, calls[0] if calls else None)

    def _attach_rate_limit(self, gw: GatewayInstance, server: RedisServer | None) -> None:
        """Put the rate-limit filter in ``gw``: a local bucket, or calls to ``server``."""
        rl = self.exp.topology.rate_limit
        name = f"{gw.name}.rate_limit"
        if rl.algorithm == "local":
            filt = LocalLimit(self.ctx, name, rl, self.ideal_bucket, gw)
        else:
            filt = RemoteLimit(self.ctx, name, rl, self.ideal_bucket, gw, server,
                               self.redis_network.link(gw.az, server.az, GATEWAY_REDIS),
                               self.redis_network.link(server.az, gw.az, GATEWAY_REDIS))
        gw.use_rate_limit(filt)
        self.rate_limits.append(filt)

    def all_gateways(self) -> list[GatewayInstance]:
        """Every gateway instance, pool by pool."""
        return [g for gws in self.gateways.values() for g in gws]

    def entry_nodes(self) -> list:
        """Where clients' tries enter the fleet: every balancer node, then every direct entry."""
        return [n for bal in self.balancers.values() for n in bal.nodes.values()] + list(self.direct.values())

    def all_backends(self) -> list[BackendInstance]:
        """Every backend instance, service by service."""
        return [b for bs in self.backends.values() for b in bs]

    def _sample_queues(self, _value=None) -> None:
        """Record each service's backend queue length at the end of the second now ending."""
        sec = min(self.recorder.n, math.ceil(self.ctx.env._now)) - 1
        for svc, insts in self.backends.items():
            self.queue_ts[svc][sec] = sum(len(b.queue) for b in insts)
        if sec + 2 < self.exp.duration_s:
            self.ctx.call_later(1.0, self._sample_queues)

    def _end_warmup(self, _value=None) -> None:
        self.network.reset()
        for part in [*self.all_gateways(), *self.all_backends(), *self.balancers.values(), *self.direct.values(),
                     *self.dns.values()]:
            part.reset()
        for part in [*self.rate_limits, *self.redis.values()]:
            part.reset()
        if self.redis_network is not None:
            self.redis_network.reset()
        if self.connections is not None:
            self.connections.reset()

    def run(self, progress: Callable[[float], None] | None = None) -> dict:
        """Run to ``duration_s`` and return this replication's results."""
        if self.exp.warmup_s > 0:
            self.ctx.call_later(self.exp.warmup_s, self._end_warmup)
        self.ctx.call_later(1.0, self._sample_queues)
        self.faults.start()  # before the clients: a fault precedes requests at the same instant
        if self.gslb is not None:
            self.gslb.start()
        # Outlier-detection intervals and first health-check probes (sim.components.health).
        for gw in self.all_gateways():
            for cluster in gw.clusters.values():
                if cluster.health is not None:
                    cluster.health.start()
        if self.control_plane is not None:
            self.control_plane.start()
        if self.exp.control_plane is None or self.exp.control_plane.mode == "data_plane":
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
        self._sample_queues()  # the last (perhaps partial) second
        for part in [*self.all_gateways(), *self.all_backends(), *self.redis.values()]:
            part.finish()
        self.recorder.finish()
        return self.collect()

    # ---------------------------------------------------------------- results
    def events_scheduled(self) -> int:
        """Events scheduled on the SimPy heap so far."""
        return self.ctx.events_scheduled()

    def check_conservation(self) -> int:
        """Check that no request or try was created or lost; returns the counted requests in flight."""
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
        for b in self.all_backends():
            try:
                b.check_conservation()
            except RuntimeError as e:
                raise ConservationError(str(e)) from None
        return in_flight

    def results(self) -> summary_mod.FleetResults:
        """Every component's result hook, grouped as the summary reports them."""
        n = self.recorder.n
        health = []
        for pool, gws in self.gateways.items():
            for gw in gws:
                for svc, cluster in gw.clusters.items():
                    if cluster.health is not None:
                        health.append({**cluster.health.results(n, self.exp.duration_s), "pool": pool,
                                       "gateway": gw.name, "service": svc})
        return summary_mod.FleetResults(
            backends={svc: [b.results() for b in insts] for svc, insts in self.backends.items()},
            gateways={pool: [g.results() for g in gws] for pool, gws in self.gateways.items()},
            clients=[c.results() for c in self.clients],
            health=health,
            backend_queue=self.queue_ts,
            service_load=service_load(self.exp),
            bytes_by_az_pair=self._bytes_by_az_pair(),
            faults=self.faults.summary(),
            in_flight=self.check_conservation(),
            control_plane=self.control_plane.results() if self.control_plane is not None else None,
            rate_limit=self._rate_limit_results(),
            connections=self.connections.results() if self.connections is not None else None,
            bytes_by_purpose=self._bytes_by_purpose() if self.exp.cost is not None else {},
            az_region=self.az_region,
            balancers={region: {"kind": bal.config.kind,
                                "tries": sum(sum(node.connections) for node in bal.nodes.values())}
                       for region, bal in self.balancers.items()},
            zone_routing=self.zone_routing(),
            gslb=self.gslb_results(),
        )

    def _bytes_by_az_pair(self) -> dict[str, float]:
        """Bytes per AZ pair in the window: requests, responses, Redis calls and shipped access logs."""
        out = self.network.bytes_by_pair()
        for more in (self.redis_network.bytes_by_pair() if self.redis_network is not None else {},
                     self._log_bytes_by_pair()):
            if more:
                out = {k: out.get(k, 0) + more.get(k, 0) for k in sorted({*out, *more})}
        return out

    def _bytes_by_purpose(self) -> dict[str, dict[str, float]]:
        """Bytes per purpose and AZ pair in the window, Redis calls and shipped access logs included."""
        out = self.network.bytes_by_purpose()
        if self.redis_network is not None:
            out.update(self.redis_network.bytes_by_purpose())
        logs = self._log_bytes_by_pair()
        if logs:
            out["logs"] = logs
        return dict(sorted(out.items()))

    def _log_bytes_by_pair(self) -> dict[str, float]:
        """Access-log bytes shipped in the window, by (pool's AZ -> collector's AZ)."""
        out: dict[str, float] = {}
        for pool, gws in self.gateways.items():
            cfg = self.exp.topology.gateways[pool]
            if cfg.access_log is None or cfg.access_log.collector_az is None:
                continue
            shipped = sum(g.log_bytes for g in gws)
            if shipped:
                key = f"{cfg.az}->{cfg.access_log.collector_az}"
                out[key] = out.get(key, 0) + shipped
        return dict(sorted(out.items()))

    def _rate_limit_results(self) -> dict | None:
        """The filters', the ideal bucket's and the Redis servers' results (None without a rate limit)."""
        if self.ideal_bucket is None:
            return None
        window = self.exp.duration_s - self.exp.warmup_s
        return {"filters": [f.results() for f in self.rate_limits],
                "ideal": {"admitted": dict(self.ideal_bucket.admitted),
                          "admitted_ts": self.ideal_bucket.admitted_ts},
                "redis": [r.results(window) for r in self.redis.values()],
                "redis_bytes_by_az_pair": (self.redis_network.bytes_by_pair()
                                           if self.redis_network is not None else {})}

    def gslb_results(self) -> dict:
        """The GSLB's view and ground truth, and each client region's tries by answered region (or {})."""
        if self.gslb is None:
            return {}
        return {**self.gslb.results(), "entries": {r: e.results() for r, e in self.dns.items()}}

    def zone_routing(self) -> dict[str, dict]:
        """Per ``<pool>/<service>``, tries by AZ and Envoy's zone-routing counters (pools with locality features)."""
        out = {}
        for pool, gws in self.gateways.items():
            if not uses_localities(self.exp.topology.gateways[pool].cluster):
                continue
            for svc in gws[0].clusters:
                out[f"{pool}/{svc}"] = locality_pool_results(self.exp.topology.gateways[pool].az,
                                                             [gw.clusters[svc] for gw in gws])
        return out

    def traffic_graph(self, instances: bool) -> dict:
        """The fleet with the requests each edge carried in the window.

        ``instances``: one node per gateway and backend instance; else the
        component graph's pools and backend groups (the size of the config).
        """
        g = self.graph
        pool_of = {id(gw): pool for pool, gws in self.gateways.items() for gw in gws}
        load: dict[tuple[str, str], float] = {}
        nodes: list[dict] = []
        edges: list[dict] = []
        for region, bal in self.balancers.items():
            for az, node in bal.nodes.items():
                lb = f"lb:{region}:{az}"
                load[(f"client:{region}", lb)] = float(sum(node.connections))
                for gw, k in zip(node.targets, node.connections, strict=True):
                    key = (lb, f"gw:{gw.name}" if instances else f"gw:{pool_of[id(gw)]}")
                    load[key] = load.get(key, 0.0) + float(k)
        for region, entry in self.direct.items():
            for gw, k in zip(entry.targets, entry.connections, strict=True):
                key = (f"client:{region}", f"gw:{gw.name}" if instances else f"gw:{pool_of[id(gw)]}")
                load[key] = load.get(key, 0.0) + float(k)
        for n, d in g.nodes(data=True):
            if instances and d["kind"] in ("gateway", "backend"):
                nodes.extend({"id": f"{'gw' if d['kind'] == 'gateway' else 'be'}:{p.name}", **d, "instances": 1}
                             for p in self.parts[n])
            else:
                nodes.append({"id": n, **d})
        calls = {id(f.gateway): f.calls for f in self.rate_limits}  # calls to Redis in the window
        for u, v, d in g.edges(data=True):
            if g.nodes[u]["kind"] == "gateway" and g.nodes[v]["kind"] == "backend":
                continue
            if g.nodes[v]["kind"] == "redis":
                gws = self.parts[u]
                if instances:
                    edges.extend({"source": f"gw:{gw.name}", "target": v, "relation": d["relation"],
                                  "requests": float(calls.get(id(gw), 0))} for gw in gws)
                else:
                    edges.append({"source": u, "target": v, "relation": d["relation"],
                                  "requests": float(sum(calls.get(id(gw), 0) for gw in gws))})
                continue
            if instances and g.nodes[v]["kind"] == "gateway":
                for gw in self.parts[v]:
                    edges.append({"source": u, "target": f"gw:{gw.name}", "relation": d["relation"],
                                  "requests": load.get((u, f"gw:{gw.name}"), 0.0)})
            else:
                edges.append({"source": u, "target": v, "relation": d["relation"], "requests": load.get((u, v), 0.0)})
        for pool, gws in self.gateways.items():
            # A cluster's hosts are its backend groups one after another, in edge order.
            start: dict[str, int] = {}
            for group in g.successors(f"gw:{pool}"):
                if g.nodes[group]["kind"] != "backend":
                    continue
                svc = g.nodes[group]["service"]
                a = start.get(svc, 0)
                b = start[svc] = a + len(self.parts[group])
                rel = g.edges[f"gw:{pool}", group]["relation"]
                if instances:
                    for gw in gws:
                        c = gw.clusters[svc]
                        for host, k in zip(c.hosts[a:b], c.sent[a:b], strict=True):
                            edges.append({"source": f"gw:{gw.name}", "target": f"be:{host.name}",
                                          "relation": rel, "requests": float(k)})
                else:
                    total = sum(sum(gw.clusters[svc].sent[a:b]) for gw in gws)
                    edges.append({"source": f"gw:{pool}", "target": group, "relation": rel,
                                  "requests": float(total)})
        return {"level": "instances" if instances else "groups", "nodes": nodes, "edges": edges}

    def instance_results(self, parts: summary_mod.FleetResults) -> dict:
        """Instance-level results in columnar form (``output.instances``).

        ``backend`` and ``gateway``: one column per counter, one row per
        instance; ``tries``: per pool and service, the tries each gateway sent
        to each host (``matrix[gateway][host]``).
        """
        backend_rows = [r for rows in parts.backends.values() for r in rows]
        gateway_rows = [r for rows in parts.gateways.values() for r in rows]
        backends = self.all_backends()
        gateways = self.all_gateways()
        tries = {}
        for pool, gws in self.gateways.items():
            for svc in gws[0].clusters:
                tries[f"{pool}/{svc}"] = {"gateways": [gw.name for gw in gws],
                                          "hosts": [h.name for h in gws[0].clusters[svc].hosts],
                                          "matrix": [list(gw.clusters[svc].sent) for gw in gws]}
        return {
            "backend": summary_mod.columns(backend_rows, [b.name for b in backends],
                                           {"service": [b.service for b in backends], "az": [b.az for b in backends]}),
            "gateway": summary_mod.columns(gateway_rows, [g.name for g in gateways],
                                           {"az": [g.az for g in gateways]}),
            "tries": tries,
        }

    def collect(self) -> dict:
        """This replication's results: summary, time series, counters, graph and fault log."""
        exp = self.exp
        parts = self.results()
        summary = summary_mod.summarise(exp, self.recorder, parts, judge_recovery=not faults_reach_the_end(exp))
        counters = {
            "backend": {svc: summary_mod.group_counters(rows) for svc, rows in parts.backends.items()},
            "gateway": {pool: summary_mod.group_counters(rows) for pool, rows in parts.gateways.items()},
            "balancer": {node.name: node.results() for node in self.entry_nodes()},
            "network": self.network.results(),
            "clients": {c.name: c.results() for c in self.clients},
        }
        if parts.health:
            counters["health"] = summary_mod.health_counters(parts.health)
        instances = exp.output.instances
        pairs = sum(len(c.hosts) for gw in self.all_gateways() for c in gw.clusters.values())
        result = {
            "summary": summary,
            "timeseries": summary_mod.timeseries(self.recorder, parts),
            "counters": counters,
            "latency_histogram": self.recorder.latency.to_dict(),
            "graph": self.traffic_graph(instances or pairs <= INSTANCE_GRAPH_MAX_PAIRS),
            "events": self.events_scheduled(),
            "requests": sum(c.calls for c in self.clients),
            "faults": {  # the timeline as it ran, and what balancer nodes refused because of it
                "timeline": self.faults.summary(),
                "events": self.faults.events(),
                "nodes": {node.name: {"no_healthy": node.no_healthy, "refused": node.refused}
                          for node in self.entry_nodes()},
            },
        }
        if instances:
            result["instances"] = self.instance_results(parts)
        return result
