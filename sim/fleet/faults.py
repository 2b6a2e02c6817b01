"""The fault timeline: an experiment's ``faults`` applied to the built fleet.

:class:`FaultTimeline` resolves each fault's target to concrete parts before
t=0 and refuses a fault that matches nothing (:class:`sim.fleet.graph.FleetError`
naming ``faults.<i>.target``, or ``faults.<i>.az`` for an AZ outage). At
``at_s`` it applies the fault and at ``at_s + for_s`` it undoes it; windows
are half-open, so where one fault ends as another starts, the end comes
first. Fault events precede any request event at the same instant (they are
all scheduled before the clients start).

What each kind does (FaultTarget fields given must all match; none: all):

- ``backend_slowdown``: matching backend instances multiply the service
  time of every attempt that starts service in the window by ``factor``.
  Overlapping slowdowns multiply; when the last ends the factor is exactly 1.
- ``error_burst``: matching backend instances fail attempts with
  max(their ``error_probability``, the burst's); overlapping bursts: the
  highest.
- ``instance_crash``: matching backend and gateway instances crash at
  ``at_s`` and restart empty at the end (a target naming a service matches
  only that service's backends). Crashes are counted per instance, so an
  instance under two overlapping crashes (or a crash and an AZ outage)
  restarts when the last one ends.
- ``az_outage``: every gateway and backend instance in ``az`` crashes and
  the region's balancer node in ``az`` is down for the window (clients stop
  choosing it; see :mod:`.balancer`).
- ``rolling_restart``: matching gateway instances (``pool`` and the
  target) drain and restart one after another, through the connection
  layer (:class:`sim.components.tls.ConnectionLayer`): gateway k of n drains
  at ``at_s + k x for_s / n``, restarts ``drain_s`` later and takes
  connections again ``restart_s`` after that.
- ``load_spike``: the client populations of ``target.region`` (or all) have
  their offered rate multiplied by ``factor``. The rate itself is built into
  each population's rate function before t=0 (so look-ahead batching stays
  exact); the timeline tells a population the factor in force through
  ``set_rate_factor`` (overlapping spikes multiply).

The timeline keeps an event log, ``(t, fault index, kind, "start" | "end",
target names)``, and :meth:`FaultTimeline.summary` lists each fault with its
window and targets for the results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sim.config.checks import target_matches
from sim.config.models import (
    AzOutage,
    BackendSlowdown,
    ErrorBurst,
    InstanceCrash,
    LoadSpike,
    RedisDown,
    RedisFailover,
    RedisSlowdown,
    RollingRestart,
)
from sim.engine import SimContext

from .graph import FleetError


@dataclass
class FleetParts:
    """What faults can hit, as built by the fleet.

    Attributes:
        backends: backend instances (``name``, ``service``, ``az``).
        gateways: gateway instances (``name``, ``az``).
        nodes: balancer nodes (``name``, ``az``, ``up``).
        populations: client populations (``name``, ``region``).
        az_region: every AZ's region.
    """

    backends: list
    gateways: list
    nodes: list
    populations: list
    az_region: dict[str, str]
    redis: list = field(default_factory=list)  # Redis servers (``name``, ``az``)
    gateway_pool: dict[str, str] = field(default_factory=dict)  # gateway name -> its pool
    connections: object = None  # the connection layer (rolling restarts), when clients hold connections


@dataclass
class ResolvedFault:
    """One fault with its concrete targets."""

    index: int
    fault: object
    backends: list = field(default_factory=list)
    gateways: list = field(default_factory=list)
    nodes: list = field(default_factory=list)
    populations: list = field(default_factory=list)
    redis: list = field(default_factory=list)

    @property
    def kind(self) -> str:
        """The fault's kind: ``backend_slowdown``, ``error_burst``, ``instance_crash``, ``az_outage``, ``load_spike`` or ``rolling_restart``."""
        return self.fault.kind

    @property
    def targets(self) -> list[str]:
        """Names of everything it hits: nodes, gateways, backends, populations."""
        return [p.name for p in (*self.nodes, *self.gateways, *self.backends, *self.populations, *self.redis)]


def _fleet_error(path: tuple, reason: str) -> Exception:
    return FleetError(path, reason)


def _given(target) -> dict:
    return {k: v for k, v in target.model_dump().items() if v is not None}


def _describe(target) -> str:
    return ", ".join(f"{k}={v}" for k, v in _given(target).items()) or "everything"


def resolve(faults: list, parts: FleetParts) -> list[ResolvedFault]:
    """Each fault's concrete targets; raises ``FleetError`` for a fault that matches nothing."""
    region_of = parts.az_region
    out = []
    for i, f in enumerate(faults):
        r = ResolvedFault(i, f)
        t = f.target
        if isinstance(f, AzOutage):
            if _given(t):
                raise _fleet_error(("faults", i, "target"), "an az_outage takes its AZ from 'az'; leave target empty")
            r.nodes = [n for n in parts.nodes if n.az == f.az]
            r.gateways = [g for g in parts.gateways if g.az == f.az]
            r.backends = [b for b in parts.backends if b.az == f.az]
            if not (r.nodes or r.gateways or r.backends):
                raise _fleet_error(("faults", i, "az"), f"no balancer node, gateway or backend in AZ {f.az!r}")
        elif isinstance(f, RedisDown | RedisSlowdown | RedisFailover):
            if t.service is not None or t.region is not None:
                raise _fleet_error(("faults", i, "target"), f"a {f.kind} targets Redis servers by az or instance only")
            r.redis = [s for s in parts.redis if t.instance in (None, s.name) and t.az in (None, s.az)]
            if not r.redis:
                raise _fleet_error(("faults", i, "target"), f"matches no Redis server ({_describe(t)})")
        elif isinstance(f, RollingRestart):
            r.gateways = [g for g in parts.gateways
                          if f.pool in (None, parts.gateway_pool.get(g.name))
                          and target_matches(t, name=g.name, service=None, az=g.az, region=region_of[g.az])]
            if not r.gateways:
                raise _fleet_error(("faults", i, "target"), f"matches no gateway instance ({_describe(t)})")
            if parts.connections is None:
                raise _fleet_error(("faults", i, "kind"), "a rolling_restart needs workload.connections")
        elif isinstance(f, LoadSpike):
            if t.service is not None or t.az is not None or t.instance is not None:
                raise _fleet_error(("faults", i, "target"), "a load_spike targets client populations by region only")
            r.populations = [p for p in parts.populations if t.region in (None, p.region)]
            if not r.populations:
                raise _fleet_error(("faults", i, "target", "region"), f"no clients in region {t.region!r}")
        else:
            r.backends = [b for b in parts.backends
                          if target_matches(t, name=b.name, service=b.service, az=b.az, region=region_of[b.az])]
            if isinstance(f, InstanceCrash):
                r.gateways = [g for g in parts.gateways
                              if target_matches(t, name=g.name, service=None, az=g.az, region=region_of[g.az])]
            if not (r.backends or r.gateways):
                what = "instance" if isinstance(f, InstanceCrash) else "backend instance"
                raise _fleet_error(("faults", i, "target"), f"matches no {what} ({_describe(t)})")
        out.append(r)
    return out


class FaultTimeline:
    """Applies and undoes an experiment's faults at their times.

    Args:
        ctx: simulation context.
        faults: the experiment's validated ``faults``.
        parts: the built fleet's parts.

    Attributes:
        resolved: each fault with its concrete targets (before t=0).
        log: ``(t, fault index, kind, "start" | "end", target names)``, in order.
    """

    def __init__(self, ctx: SimContext, faults: list, parts: FleetParts):
        self.ctx = ctx
        self.resolved = resolve(faults, parts)
        self.parts_connections = parts.connections
        self.log: list[tuple[float, int, str, str, list[str]]] = []
        # Per part, what is in force: {fault index: value}. Undoing recomputes
        # from what remains, so the original value comes back exactly.
        self._slowdowns: dict[object, dict[int, float]] = {}
        self._bursts: dict[object, dict[int, float]] = {}
        self._spikes: dict[object, dict[int, float]] = {}
        self._down: dict[object, int] = {}
        self._redis_outages: dict[object, dict[int, bool]] = {}
        self._redis_lost: dict[object, bool] = {}
        if any(r.populations for r in self.resolved):
            for p in {id(p): p for r in self.resolved for p in r.populations}.values():
                if not hasattr(p, "set_rate_factor"):
                    raise _fleet_error(("faults",), f"client population {p.name} cannot take a load spike "
                                       "(no set_rate_factor)")

    def start(self) -> None:
        """Schedule every start and end (call before the clients start)."""
        events = []
        for r in self.resolved:
            f = r.fault
            events.append((f.at_s, 1, r.index))
            events.append((f.at_s + f.for_s, 0, r.index))
        now = self.ctx.now
        # Same-time events run in scheduling order: ends before starts.
        for t, is_start, i in sorted(events):
            self.ctx.call_later(t - now, self._begin if is_start else self._end, i)

    def _begin(self, i: int) -> None:
        r = self.resolved[i]
        f = r.fault
        if isinstance(f, BackendSlowdown):
            for b in r.backends:
                self._set(self._slowdowns, b, i, f.factor)
                b.slowdown_factor = math.prod(self._slowdowns[b].values())
        elif isinstance(f, ErrorBurst):
            for b in r.backends:
                self._set(self._bursts, b, i, f.error_probability)
                b.set_error_burst(max(self._bursts[b].values()))
        elif isinstance(f, RedisSlowdown):
            for s in r.redis:
                self._set(self._slowdowns, s, i, f.factor)
                s.slowdown_factor = math.prod(self._slowdowns[s].values())
        elif isinstance(f, RedisDown | RedisFailover):
            for s in r.redis:
                self._redis_down(s, i, f)
        elif isinstance(f, RollingRestart):
            self._roll(r)
        elif isinstance(f, LoadSpike):
            for p in r.populations:
                self._set(self._spikes, p, i, f.factor)
                p.set_rate_factor(math.prod(self._spikes[p].values()))
        else:  # instance_crash, az_outage
            for node in r.nodes:
                self._go_down(node)
            for part in (*r.gateways, *r.backends):
                self._go_down(part)
        self.log.append((self.ctx.now, i, f.kind, "start", r.targets))

    def _end(self, i: int) -> None:
        r = self.resolved[i]
        f = r.fault
        if isinstance(f, BackendSlowdown):
            for b in r.backends:
                left = self._unset(self._slowdowns, b, i)
                b.slowdown_factor = math.prod(left.values()) if left else 1.0
        elif isinstance(f, ErrorBurst):
            for b in r.backends:
                left = self._unset(self._bursts, b, i)
                b.set_error_burst(max(left.values()) if left else None)
        elif isinstance(f, RedisSlowdown):
            for s in r.redis:
                left = self._unset(self._slowdowns, s, i)
                s.slowdown_factor = math.prod(left.values()) if left else 1.0
        elif isinstance(f, RedisDown | RedisFailover):
            for s in r.redis:
                self._redis_up(s, i)
        elif isinstance(f, RollingRestart):
            pass  # each gateway's drain, restart and return were scheduled at the start
        elif isinstance(f, LoadSpike):
            for p in r.populations:
                left = self._unset(self._spikes, p, i)
                p.set_rate_factor(math.prod(left.values()) if left else 1.0)
        else:
            for node in r.nodes:
                self._come_up(node)
            for part in (*r.gateways, *r.backends):
                self._come_up(part)
        self.log.append((self.ctx.now, i, f.kind, "end", r.targets))

    def _redis_down(self, server, i: int, f) -> None:
        # Overlapping outages: down at the first start, up at the last end; keys are lost
        # if any of them was a failover.
        table = self._redis_outages.setdefault(server, {})
        if not table:
            server.go_down()
        table[i] = isinstance(f, RedisFailover)

    def _redis_up(self, server, i: int) -> None:
        table = self._redis_outages[server]
        lose = table.pop(i)
        self._redis_lost[server] = self._redis_lost.get(server, False) or lose
        if not table:
            server.come_up(lose_keys=self._redis_lost.pop(server))

    def _roll(self, r: ResolvedFault) -> None:
        """Schedule each gateway's drain, restart and return, one after another."""
        f = r.fault
        layer = self.parts_connections
        step = f.for_s / len(r.gateways)
        for k, gw in enumerate(r.gateways):
            self.ctx.call_later(k * step, layer.drain, gw)
            self.ctx.call_later(k * step + f.drain_s, layer.restarted, gw)
            self.ctx.call_later(k * step + f.drain_s + f.restart_s, layer.ready, gw)

    @staticmethod
    def _set(table: dict, part, i: int, value: float) -> None:
        table.setdefault(part, {})[i] = value

    @staticmethod
    def _unset(table: dict, part, i: int) -> dict:
        left = table[part]
        del left[i]
        return left

    def _go_down(self, part) -> None:
        n = self._down.get(part, 0)
        self._down[part] = n + 1
        if n == 0:
            if hasattr(part, "crash"):
                part.crash()
            else:  # a balancer node: it only stops taking connections
                part.up = False

    def _come_up(self, part) -> None:
        n = self._down[part] - 1
        self._down[part] = n
        if n == 0:
            if hasattr(part, "restart"):
                part.restart()
            else:
                part.up = True

    def go_down(self, part) -> None:
        """Take ``part`` down for a cause of its own (a control plane's OOM kill); faults count with it."""
        self._go_down(part)

    def come_up(self, part) -> None:
        """End the cause :meth:`go_down` started; ``part`` is up once no fault holds it down either."""
        self._come_up(part)

    # -- results
    def summary(self) -> list[dict]:
        """Each fault: ``{kind, at_s, for_s, targets}`` (target names)."""
        return [{"kind": r.kind, "at_s": r.fault.at_s, "for_s": r.fault.for_s, "targets": r.targets}
                for r in self.resolved]

    def events(self) -> list[dict]:
        """The event log as records."""
        return [{"t_s": t, "fault": i, "kind": kind, "event": what, "targets": list(names)}
                for t, i, kind, what, names in self.log]


__all__ = ["FaultTimeline", "FleetParts", "ResolvedFault", "resolve"]
