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

    out += _check_faults(exp, az_region)

    if exp.warmup_s >= exp.duration_s:
        out.append((("warmup_s",), f"warm-up ({exp.warmup_s:g} s) must be shorter than duration_s ({exp.duration_s:g} s)"))
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
        parts = backends + gateways if f.kind == "instance_crash" else backends
        if not any(target_matches(t, name=n, service=s, az=az, region=az_region.get(az, "")) for n, s, az in parts):
            what = "instance" if f.kind == "instance_crash" else "backend instance"
            desc = ", ".join(f"{k}={v}" for k, v in given.items())
            out.append((P + ("target",), f"matches no {what} ({desc})"))
    return out
