"""Cross-field rules over a whole experiment, each naming the path it concerns."""

from __future__ import annotations

import math

from .models import Experiment, FaultTarget
from .naming import BACKEND_RULE, GATEWAY_RULE, backend_name, gateway_name

Problem = tuple[tuple, str]


def target_matches(target: FaultTarget, *, name: str, service: str | None, az: str, region: str) -> bool:
    """Whether a part matches a fault's target: every field given must match.

    A gateway has no service (``service=None``), so a target naming a service
    matches only that service's backend instances.
    """
    return ((target.instance is None or target.instance == name)
            and (target.service is None or target.service == service)
            and (target.az is None or target.az == az)
            and (target.region is None or target.region == region))


def check_experiment(exp: Experiment) -> list[Problem]:
    """Return every cross-field problem as ``(path, reason)``; empty when valid."""
    out: list[Problem] = []
    topo = exp.topology
    T = ("topology",)

    az_region: dict[str, str] = {}
    for region, r in topo.regions.items():
        for i, az in enumerate(r.azs):
            if az in az_region:
                out.append((T + ("regions", region, "azs", i), f"AZ {az!r} is already in region {az_region[az]!r}"))
            az_region[az] = region
    azs = sorted(az_region)

    for region in topo.clients:
        if region not in topo.regions:
            out.append((T + ("clients", region), f"unknown region {region!r} (regions: {', '.join(topo.regions)})"))
    total = sum(c.share for c in topo.clients.values())
    if not math.isclose(total, 1.0, abs_tol=1e-9):
        out.append((T + ("clients",), f"client shares sum to {total:g}, expected 1"))

    for region in topo.balancers:
        if region not in topo.regions:
            out.append((T + ("balancers", region), f"unknown region {region!r} (regions: {', '.join(topo.regions)})"))

    for name, gw in topo.gateways.items():
        if gw.az not in az_region:
            out.append((T + ("gateways", name, "az"), f"unknown AZ {gw.az!r} (AZs: {', '.join(azs)})"))

    for name, svc in topo.services.items():
        base = T + ("services", name)
        for az in svc.instances_per_az:
            if az not in az_region:
                out.append((base + ("instances_per_az", az), f"unknown AZ {az!r} (AZs: {', '.join(azs)})"))
        if sum(svc.instances_per_az.values()) == 0:
            out.append((base + ("instances_per_az",), "service has no instances"))
        names = {backend_name(name, az, i) for az, n in svc.instances_per_az.items() for i in range(n)}
        for inst in svc.instance_overrides:
            if inst not in names:
                out.append((base + ("instance_overrides", inst), f"no instance {inst!r} (instances are named {BACKEND_RULE})"))

    # Instance names are identities: random streams, graph nodes, counters and
    # instance_overrides are keyed by them. '-' may appear in pool, service and
    # AZ names, so service 'a' in AZ 'b-c' and service 'a-b' in AZ 'c' would
    # both name an instance 'a-b-c-0'.
    owner: dict[str, str] = {}
    for pool, gw in topo.gateways.items():
        for i in range(gw.instances):
            owner.setdefault(gateway_name(pool, i), f"gateway pool {pool!r}")
    for name, svc in topo.services.items():
        for az, n in svc.instances_per_az.items():
            insts = [backend_name(name, az, i) for i in range(n)]
            clash = next((owner[inst] for inst in insts if inst in owner), None)
            if clash is not None:
                out.append((T + ("services", name, "instances_per_az", az),
                            f"instance names {backend_name(name, az, '<i>')} clash with an instance of {clash}; "
                            "rename one"))
            for inst in insts:
                owner.setdefault(inst, f"service {name!r} in AZ {az!r}")

    for name, gw in topo.gateways.items():
        rp = gw.route.retry_policy
        if rp is not None and rp.per_try_timeout_s is not None and rp.per_try_timeout_s >= gw.route.timeout_s:
            out.append((T + ("gateways", name, "route", "retry_policy", "per_try_timeout_s"),
                        f"per_try_timeout_s ({rp.per_try_timeout_s:g}) must be below the route's timeout_s "
                        f"({gw.route.timeout_s:g}), which covers every try"))
        if rp is not None:
            bo = rp.retry_back_off
            if bo.max_interval_s < bo.base_interval_s:  # an explicit value (the default is 10 x base)
                out.append((T + ("gateways", name, "route", "retry_policy", "retry_back_off", "max_interval_s"),
                            f"must be at least base_interval_s ({bo.base_interval_s:g})"))

    out += _check_locality(exp, az_region)
    out += _check_gslb(exp)

    wl = exp.workload
    bo = wl.client.backoff
    if bo.max_s < bo.base_s:
        out.append((("workload", "client", "backoff", "max_s"), f"must be at least base_s ({bo.base_s:g})"))
    if wl.services is None:
        if len(topo.services) != 1:
            out.append((("workload", "services"), f"required when the topology has several services ({', '.join(topo.services)})"))
    else:
        for svc in wl.services:
            if svc not in topo.services:
                out.append((("workload", "services", svc), f"unknown service {svc!r} (services: {', '.join(topo.services)})"))
        total = sum(wl.services.values())
        if not math.isclose(total, 1.0, abs_tol=1e-9):
            out.append((("workload", "services"), f"service shares sum to {total:g}, expected 1"))

    steps = wl.rate_schedule
    if steps[0].at_s != 0:
        out.append((("workload", "rate_schedule", 0, "at_s"), f"the first step must start at 0, not {steps[0].at_s:g}"))
    if steps[0].ramp_s > 0:
        out.append((("workload", "rate_schedule", 0, "ramp_s"), "the first step cannot ramp (there is no rate before it)"))
    for i in range(1, len(steps)):
        prev, cur = steps[i - 1], steps[i]
        if cur.at_s < prev.at_s + prev.ramp_s or cur.at_s == prev.at_s:
            out.append((("workload", "rate_schedule", i, "at_s"),
                        f"step at {cur.at_s:g} s must come after the previous step and its ramp end ({prev.at_s + prev.ramp_s:g} s)"))

    out += _check_rate_limit(exp, az_region)
    out += _check_faults(exp, az_region)
    out += _check_control_plane(exp)
    out += _check_connections(exp, az_region)

    if exp.warmup_s >= exp.duration_s:
        out.append((("warmup_s",), f"warm-up ({exp.warmup_s:g} s) must be shorter than duration_s ({exp.duration_s:g} s)"))
    return out


def _check_control_plane(exp: Experiment) -> list[Problem]:
    """The ``control_plane`` section against the rest of the experiment."""
    cp = exp.control_plane
    if cp is None:
        return []
    out: list[Problem] = []
    C = ("control_plane",)
    if cp.mode == "control_plane_only":
        if cp.gateways is None:
            out.append((C + ("gateways",), "required in mode control_plane_only (how many gateways subscribe)"))
        for i, step in enumerate(exp.workload.rate_schedule):
            if step.rate_per_s != 0:
                out.append((("workload", "rate_schedule", i, "rate_per_s"),
                            "control_plane.mode control_plane_only simulates no requests: set every rate to 0, "
                            "or use mode data_plane"))
        if exp.faults:
            out.append((("faults",), "control_plane.mode control_plane_only simulates no data plane to fault; "
                        "use control_plane.events, or mode data_plane"))
    elif cp.gateways is not None:
        out.append((C + ("gateways",), "only for mode control_plane_only; in mode data_plane the topology's gateway "
                    "instances subscribe"))
    if cp.reconnect.max_s < cp.reconnect.initial_s:
        out.append((C + ("reconnect", "max_s"), f"must be at least initial_s ({cp.reconnect.initial_s:g})"))
    d = cp.push.debounce
    if d.debounce_max_s < d.debounce_after_s:
        out.append((C + ("push", "debounce", "debounce_max_s"),
                    f"must be at least debounce_after_s ({d.debounce_after_s:g})"))
    if cp.subscribers.memory_limit_bytes <= cp.subscribers.memory_bytes:
        out.append((C + ("subscribers", "memory_limit_bytes"),
                    f"must be above memory_bytes ({cp.subscribers.memory_bytes:g}): the gateway could not start"))
    for i, ev in enumerate(cp.events):
        if ev.at_s >= exp.duration_s:
            out.append((C + ("events", i, "at_s"), f"at {ev.at_s:g} s, not within the run ({exp.duration_s:g} s)"))
        if ev.event == "replica_restart" and ev.replica is not None and ev.replica >= cp.replicas:
            out.append((C + ("events", i, "replica"), f"no replica {ev.replica} (replicas 0 to {cp.replicas - 1})"))
        if ev.event == "deploy" and not ev.add and ev.services > cp.resources.services:
            out.append((C + ("events", i, "services"),
                        f"{ev.services} services to change, but the configuration has {cp.resources.services}"))
        if ev.event == "endpoint_churn" and ev.services > cp.resources.services:
            out.append((C + ("events", i, "services"),
                        f"{ev.services} services to change, but the configuration has {cp.resources.services}"))
        if ev.event == "deploy" and ev.over_s > 0:
            out.append((C + ("events", i, "over_s"), "only for kind endpoint_churn (a deploy is one change)"))
        if ev.event == "endpoint_churn" and (ev.add or ev.bad != "none"):
            out.append((C + ("events", i, "add" if ev.add else "bad"), "only for kind deploy"))
    return out


def redis_servers(topo) -> dict[str, str]:
    """Redis server name -> its AZ, as the fleet builds them (empty without ``topology.redis``).

    ``one_az``: ``redis`` in its AZ; ``per_az``: ``redis-<az>`` in every AZ that has a gateway pool.
    """
    r = topo.redis
    if r is None:
        return {}
    if r.placement == "one_az":
        return {"redis": r.az} if r.az is not None else {}
    return {f"redis-{az}": az for az in sorted({gw.az for gw in topo.gateways.values()})}


def _check_rate_limit(exp: Experiment, az_region: dict[str, str]) -> list[Problem]:
    """A remote rate limit has a Redis; a Redis has a user and a known AZ."""
    out: list[Problem] = []
    topo = exp.topology
    T = ("topology",)
    rl, redis = topo.rate_limit, topo.redis
    remote = rl is not None and rl.algorithm != "local"
    if remote and redis is None:
        out.append((T + ("rate_limit", "algorithm"), f"a {rl.algorithm} rate limit calls Redis: add topology.redis"))
    if redis is not None:
        if not remote:
            out.append((T + ("redis",), "no remote rate limit uses it (topology.rate_limit.algorithm is "
                        f"{'missing' if rl is None else repr(rl.algorithm)}); remove it or set a redis_token_bucket "
                        "or fixed_window rate limit"))
        if redis.placement == "one_az":
            if redis.az is None:
                out.append((T + ("redis", "az"), "required with placement one_az"))
            elif redis.az not in az_region:
                out.append((T + ("redis", "az"), f"unknown AZ {redis.az!r} (AZs: {', '.join(sorted(az_region))})"))
        elif redis.az is not None:
            out.append((T + ("redis", "az"), "placement per_az puts a server in every AZ with gateways; leave az out"))
    return out


def _check_locality(exp: Experiment, az_region: dict[str, str]) -> list[Problem]:
    """Zone-aware routing, locality weights and priorities name pools and AZs that exist."""
    out: list[Problem] = []
    topo = exp.topology
    azs = sorted(az_region)
    for name, gw in topo.gateways.items():
        base = ("topology", "gateways", name, "cluster")
        for az in gw.cluster.priorities:
            if az not in az_region:
                out.append((base + ("priorities", az), f"unknown AZ {az!r} (AZs: {', '.join(azs)})"))
        clb = gw.cluster.common_lb_config
        lw = clb.locality_weighted_lb_config
        if lw is not None:
            for az in lw.locality_weights:
                if az not in az_region:
                    out.append((base + ("common_lb_config", "locality_weighted_lb_config", "locality_weights", az),
                                f"unknown AZ {az!r} (AZs: {', '.join(azs)})"))
        za = clb.zone_aware_lb_config
        if za is not None:
            where = base + ("common_lb_config", "zone_aware_lb_config", "local_cluster")
            for i, pool in enumerate(za.local_cluster or []):
                if pool not in topo.gateways:
                    out.append((where + (i,), f"unknown gateway pool {pool!r} (pools: {', '.join(topo.gateways)})"))
    return out


def _check_gslb(exp: Experiment) -> list[Problem]:
    """The GSLB names regions with balancers; an extending resolver holds at least the TTL."""
    topo = exp.topology
    gslb = topo.gslb
    if gslb is None:
        return []
    out: list[Problem] = []
    base = ("topology", "gslb")
    served = sorted(topo.balancers)
    if not served:
        out.append((base, "needs at least one region with a balancer to answer with"))
    for key in ("primary", "secondary"):
        region = getattr(gslb, key)
        if region is not None and region not in topo.balancers:
            out.append((base + (key,), f"region {region!r} has no balancer (regions with one: {', '.join(served)})"))
    for region in gslb.weights:
        if region not in topo.balancers:
            out.append((base + ("weights", region), f"region {region!r} has no balancer (regions with one: "
                                                    f"{', '.join(served)})"))
    for src, row in gslb.latency_s.items():
        if src not in topo.regions:
            out.append((base + ("latency_s", src), f"unknown region {src!r} (regions: {', '.join(topo.regions)})"))
        for dst in row:
            if dst not in topo.regions:
                out.append((base + ("latency_s", src, dst), f"unknown region {dst!r} (regions: {', '.join(topo.regions)})"))
    if gslb.extended_ttl_s is not None and gslb.extended_ttl_s < gslb.ttl_s:
        out.append((base + ("extended_ttl_s",), f"must be at least ttl_s ({gslb.ttl_s:g}): a resolver that "
                                                "extends TTLs keeps answers longer"))
    return out


def _check_faults(exp: Experiment, az_region: dict[str, str]) -> list[Problem]:
    """Fault windows inside the run; every name a fault uses exists; every target matches a part."""
    out: list[Problem] = []
    topo = exp.topology
    azs = sorted(az_region)
    # (name, service or None for a gateway, az) of every instance.
    backends = [(backend_name(svc, az, i), svc, az) for svc, s in topo.services.items()
                for az, n in s.instances_per_az.items() for i in range(n)]
    gateways = [(gateway_name(pool, i), None, gw.az) for pool, gw in topo.gateways.items()
                for i in range(gw.instances)]
    instance_names = {n for n, _, _ in backends + gateways}
    for i, f in enumerate(exp.faults):
        P = ("faults", i)
        end = f.at_s + f.for_s
        if end > exp.duration_s:
            out.append((P + ("for_s",), f"the fault ends at {end:g} s, after the run (duration_s {exp.duration_s:g} s)"))
        t = f.target
        given = {k: v for k, v in t.model_dump().items() if v is not None}
        if f.kind == "az_outage":
            if f.az not in az_region:
                out.append((P + ("az",), f"unknown AZ {f.az!r} (AZs: {', '.join(azs)})"))
            elif not any(az == f.az for _, _, az in backends + gateways):
                out.append((P + ("az",), f"no gateway or backend instance runs in AZ {f.az!r}"))
            if given:
                out.append((P + ("target",), "an az_outage takes its AZ from 'az'; leave target empty"))
            continue
        if f.kind.startswith("redis_"):
            servers = redis_servers(topo)
            for k in given:
                if k not in ("az", "instance"):
                    out.append((P + ("target", k), f"a {f.kind} targets Redis servers by az or instance only"))
            if not servers:
                out.append((P + ("kind",), f"a {f.kind} needs topology.redis"))
            elif not any(t.instance in (None, n) and t.az in (None, az) for n, az in servers.items()):
                out.append((P + ("target",), f"matches no Redis server (servers: "
                            f"{', '.join(f'{n} in {az}' for n, az in servers.items())})"))
            continue
        if f.kind == "load_spike":
            for k in given:
                if k != "region":
                    out.append((P + ("target", k), "a load_spike targets client populations by region only"))
            if t.region is not None and t.region not in topo.clients:
                out.append((P + ("target", "region"),
                            f"no clients in region {t.region!r} (client regions: {', '.join(topo.clients)})"))
            continue
        bad = False
        if t.service is not None and t.service not in topo.services:
            out.append((P + ("target", "service"), f"unknown service {t.service!r} (services: {', '.join(topo.services)})"))
            bad = True
        if t.az is not None and t.az not in az_region:
            out.append((P + ("target", "az"), f"unknown AZ {t.az!r} (AZs: {', '.join(azs)})"))
            bad = True
        if t.region is not None and t.region not in topo.regions:
            out.append((P + ("target", "region"), f"unknown region {t.region!r} (regions: {', '.join(topo.regions)})"))
            bad = True
        if t.instance is not None and t.instance not in instance_names:
            out.append((P + ("target", "instance"), f"no instance {t.instance!r} (backend instances are named "
                        f"{BACKEND_RULE}, gateway instances {GATEWAY_RULE})"))
            bad = True
        if bad:
            continue
        if f.kind == "rolling_restart":
            continue  # gateways of its pool: _check_connections
        parts = backends + gateways if f.kind == "instance_crash" else backends
        if not any(target_matches(t, name=n, service=s, az=az, region=az_region.get(az, "")) for n, s, az in parts):
            what = "instance" if f.kind == "instance_crash" else "backend instance"
            desc = ", ".join(f"{k}={v}" for k, v in given.items())
            out.append((P + ("target",), f"matches no {what} ({desc})"))
    return out


def _check_connections(exp: Experiment, az_region: dict[str, str]) -> list[Problem]:
    """Client connections, TLS listeners, access logs and rolling restarts fit together."""
    out: list[Problem] = []
    topo = exp.topology
    T = ("topology",)
    azs = sorted(az_region)
    conns = exp.workload.connections
    if conns is not None:
        for region, pop in topo.clients.items():
            if pop.gateway_pools:
                out.append((("workload", "connections"),
                            f"clients of region {region!r} go straight to gateway pools (gateway_pools); "
                            "client connections need every region behind its balancer"))
                break
    for name, gw in topo.gateways.items():
        P = T + ("gateways", name)
        tls = gw.tls
        if tls is not None:
            if tls.session_resumption == "session_cache":
                if tls.tls_version == "TLSv1_3":
                    out.append((P + ("tls", "session_resumption"),
                                "a session cache resumes TLS 1.2 only (TLS 1.3 resumes with tickets); "
                                "use tickets or TLSv1_2"))
                if tls.session_ticket_keys_scope != "instance":
                    out.append((P + ("tls", "session_ticket_keys_scope"),
                                "a session cache is per instance (Envoy shares no cache); the scope applies "
                                "to tickets"))
            if conns is None:
                out.append((P + ("tls",), "TLS needs client connections: set workload.connections"))
        log = gw.access_log
        if log is not None and log.collector_az is not None and log.collector_az not in az_region:
            out.append((P + ("access_log", "collector_az"), f"unknown AZ {log.collector_az!r} (AZs: {', '.join(azs)})"))
    for i, f in enumerate(exp.faults):
        if f.kind != "rolling_restart":
            continue
        P = ("faults", i)
        if conns is None:
            out.append((P + ("kind",), "a rolling_restart needs client connections: set workload.connections"))
        if f.pool is not None and f.pool not in topo.gateways:
            out.append((P + ("pool",), f"unknown gateway pool {f.pool!r} (pools: {', '.join(topo.gateways)})"))
            continue
        t = f.target
        if t.service is not None:
            out.append((P + ("target", "service"), "a rolling_restart restarts gateways, which have no service"))
            continue
        n = sum(1 for pool, gw in topo.gateways.items() if f.pool in (None, pool)
                for k in range(gw.instances)
                if target_matches(t, name=gateway_name(pool, k), service=None, az=gw.az,
                                  region=az_region.get(gw.az, "")))
        if n == 0:
            out.append((P + ("target",), "matches no gateway instance"))
        elif f.drain_s + f.restart_s > f.for_s / n:
            out.append((P + ("for_s",), f"{n} gateways restart one after another: each gets for_s / {n} = "
                        f"{f.for_s / n:g} s, less than drain_s + restart_s ({f.drain_s + f.restart_s:g} s)"))
    return out
