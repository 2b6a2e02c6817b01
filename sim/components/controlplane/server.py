"""An xDS control plane (Istio-like replicas) and the gateways subscribed to it.

Each replica has ``cores`` CPU servers (FIFO) and one egress link (FIFO at
``egress_bytes_per_s``). Every stream a gateway opens costs
``cpu_per_stream_s`` (refused or admitted). Every response it receives is a job: CPU
(``cpu_per_push_s`` + ``cpu_per_resource_s`` per resource serialised), then
its bytes on the egress link, then ``latency_s`` to the gateway, which
applies it (CPU on the gateway) and ACKs or NACKs it.

Changes (:class:`~sim.config.controlplane.ConfigChange`) are debounced as
Istio's ``debounce`` does: a version is cut once no change came for
``debounce_after_s``, or ``debounce_max_s`` after the first. Then every
connected gateway is queued on its replica's push queue (one entry per
gateway; a gateway whose push is in progress is pushed again when it ends,
as Istio's PushQueue merges), and at most ``push_throttle`` pushes run at
once per replica (a slot is held through CPU and sending, not the ACK).

Streams: a gateway holds one stream to one replica. When the replica dies the
stream is lost and the gateway retries after min(max, initial x 2^k) (or a
uniform draw below it with full jitter, Envoy's back-off), on a replica that
is up, chosen uniformly. A replica admits ``max_requests_per_s`` new streams
per second (Istio's token bucket of burst 1); a stream that would wait more
than 1 s is refused (ResourceExhausted) and the gateway backs off again. An
admitted stream is answered at once (not throttled by the push queue): the
whole configuration (state of the world, or ``resync: full``) or what the
gateway lacks (delta with ``resync: changed``).

Gateways keep their last good configuration while disconnected (they serve
from it). A version marked ``nack`` is rejected by every gateway (it keeps
the previous one); ``errors`` is accepted but fails requests. With
``rollback`` the control plane cuts a version undoing a bad one on
``nack_threshold`` NACKs or ``error_detect_s`` after the first gateway ran
it; with ``canary`` a new version goes to ``fraction`` of the gateways (the
first ones by index) and to the rest ``hold_s`` later unless rolled back.

A fault ``apply_leak_bytes`` keeps memory after every apply; past
``memory_limit_bytes`` the gateway is OOM-killed, restarts ``restart_s``
later (from its local cache, or empty without one) and reconnects at once.

Counts cover the whole run (the warm-up included): a herd is what the
experiment is about. Random streams: ``<name>.replica`` (replica picks),
``<name>.backoff`` (back-off jitter).
"""

from __future__ import annotations

import math

from sim.components.request import BAD_CONFIG, LOCAL_REPLY_BYTES
from sim.config.controlplane import ControlPlane as ControlPlaneConfig
from sim.config.controlplane import backoff_bound_s
from sim.engine import SimContext, UniformStream

from .resources import ConfigStore, Version, counts, response

#: Istio's WaitForRequestLimit gives a new stream at most this long for a token (s).
REQUEST_LIMIT_WAIT_S = 1.0


class _Sub:
    """One subscribed gateway's xDS state."""

    __slots__ = ("i", "replica", "gen", "have", "connected", "attempt", "in_flight", "pending", "memory",
                 "up", "gw", "crashed", "outage", "admitting", "chain")

    def __init__(self, i: int, memory: float, gw=None):
        self.i = i
        self.replica: int | None = None
        self.gen = 0  # the stream's generation; a response of an older stream is dropped
        self.have: int | None = 0  # the version whose content it runs (None: no config)
        self.connected = False
        self.attempt = 0
        self.in_flight = False
        self.pending = False
        self.memory = memory
        self.up = True
        self.gw = gw
        self.crashed = False  # crashed by this control plane (OOM, or no config)
        self.outage: dict | None = None
        self.admitting = False  # an admission by a replica's request limit is scheduled
        self.chain = 0  # the reconnect loop's generation: a timer of an older loop is ignored


class _Replica:
    __slots__ = ("i", "up", "epoch", "cores_free", "cpu_q", "running", "link_free_at", "sending", "in_flight",
                 "queue", "next_token")

    def __init__(self, i: int, cores: int):
        self.i = i
        self.up = True
        self.epoch = 0
        self.cores_free = cores
        self.cpu_q: list = []
        self.running: dict = {}
        self.link_free_at = 0.0
        self.sending: dict = {}
        self.in_flight = 0
        self.queue: dict[int, None] = {}
        self.next_token = 0.0


class _Job:
    __slots__ = ("sub", "gen", "rep", "epoch", "kind", "target", "bytes", "resources", "cpu_s")

    def __init__(self, sub, rep, kind, target, nbytes, resources, cpu_s):
        self.sub = sub
        self.gen = sub.gen
        self.rep = rep
        self.epoch = rep.epoch
        self.kind = kind
        self.target = target
        self.bytes = nbytes
        self.resources = resources
        self.cpu_s = cpu_s


def _spread(bins: list[float], start: float, end: float, amount: float) -> None:
    """Add ``amount``, spread evenly over [start, end), to the per-second ``bins``."""
    n = len(bins)
    if end <= start:
        s = min(n - 1, int(start))
        bins[s] += amount
        return
    rate = amount / (end - start)
    t = start
    while t < end:
        s = int(t)
        if s >= n:
            bins[n - 1] += rate * (end - t)
            return
        nxt = min(end, s + 1.0)
        bins[s] += rate * (nxt - t)
        t = nxt


def nearest_rank(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` by nearest rank (0 for no values)."""
    if not values:
        return 0.0
    xs = sorted(values)
    return xs[max(0, math.ceil(q * len(xs)) - 1)]


class ControlPlane:
    """The control plane's replicas, its push queue and its subscribed gateways.

    Args:
        ctx: simulation context.
        name: prefix of its random streams (``<name>.replica``, ``<name>.backoff``).
        config: the validated ``control_plane`` section.
        gateways: in the data-plane mode, the gateway instances (each gets its
            config applies as worker CPU through ``apply_config`` and is crashed
            and restarted on an OOM kill); None in the control-plane-only mode,
            where ``config.gateways`` lightweight subscribers stand for them.
        down, up: take a gateway down and bring it back for an OOM kill (or a
            restart without configuration); the fleet passes its fault
            timeline's, which counts causes so an OOM kill and a fault compose.
            Default: the gateway's own ``crash`` and ``restart``.
    """

    def __init__(self, ctx: SimContext, name: str, config: ControlPlaneConfig, gateways: list | None = None,
                 down=None, up=None):
        self.ctx = ctx
        self.env = ctx.env
        self.later = ctx.call_later
        self.at = ctx.call_at
        self.name = name
        self.cfg = c = config
        self._down = down or (lambda gw: gw.crash())
        self._up = up or (lambda gw: gw.restart())
        self.store = ConfigStore(c.resources)
        self.mode = c.push.mode
        self.throttle = c.push.push_throttle
        self.token_s = 1.0 / c.push.max_requests_per_s
        mem = c.subscribers.memory_bytes
        if gateways is None:
            self.subs = [_Sub(i, mem) for i in range(c.gateways)]
        else:
            self.subs = [_Sub(i, mem, gw) for i, gw in enumerate(gateways)]
        self.n = len(self.subs)
        self.replicas = [_Replica(i, c.cores) for i in range(c.replicas)]
        self._pick = UniformStream(ctx.rng(f"{name}.replica"))
        self._jitter = UniformStream(ctx.rng(f"{name}.backoff"))
        self._bad_draw = UniformStream(ctx.rng(f"{name}.bad_config")) if gateways is not None else None
        self.services = c.resources.services
        self._cursor = 0  # services are changed in turn
        # Debounce state.
        self._pending: dict[str, set] = {}
        self._first_change: float | None = None
        self._last_change = 0.0
        self._debouncing = False
        self._pending_bad = "none"
        # Versions, canary and rollback.
        self.released = 0  # the newest version every gateway may run (a canary holds back the rest)
        self.canary: set[int] = set()
        self.canary_version: int | None = None
        self.rolled_back: set[int] = set()
        self.nacks: dict[int, int] = {}
        self.acks: dict[int, int] = {}
        self.errors_seen: set[int] = set()
        self.episodes: list[dict] = []
        # Counters (whole run).
        n_s = max(1, math.ceil(ctx.duration_s))
        self.n_s = n_s
        self.cpu_ts = [0.0] * n_s
        self.egress_ts = [0.0] * n_s
        self.attempts_ts = [0] * n_s
        self.queue_ts = [0] * n_s
        self.stale_ts = [0] * n_s
        self.connected_ts = [0] * n_s
        self.queue_peak = 0
        self.pushes = 0
        self.resyncs = 0
        self.push_bytes = 0.0
        self.resync_bytes = 0.0
        self.responses_lost = 0
        self.attempts = 0
        self.attempts_failed = 0
        self.attempts_refused = 0
        self.applies = 0
        self.apply_cpu_s = 0.0
        self.nack_count = 0
        self.oom_kills = 0
        self.outages: list[dict] = []
        # Gateway counts and their time integrals (gateway-seconds).
        self.n_current = self.n
        self.n_connected = 0
        self.n_unconfigured = 0
        self.n_bad = 0
        self._t = 0.0
        self.stale_gs = 0.0
        self.disconnected_gs = 0.0
        self.unconfigured_gs = 0.0
        self.bad_gs = 0.0

    # ------------------------------------------------------------------ time integrals
    def _advance(self) -> None:
        now = self.env._now
        dt = now - self._t
        if dt > 0:
            self.stale_gs += (self.n - self.n_current) * dt
            self.disconnected_gs += (self.n - self.n_connected) * dt
            self.unconfigured_gs += self.n_unconfigured * dt
            self.bad_gs += self.n_bad * dt
            self._t = now

    # ------------------------------------------------------------------ start
    def start(self) -> None:
        """Connect every gateway (in sync with version 0) and schedule the events."""
        for sub in self.subs:
            sub.replica = sub.i % len(self.replicas)
            sub.connected = True
        self.n_connected = self.n
        for ev in self.cfg.events:
            if ev.event == "replica_restart":
                targets = range(len(self.replicas)) if ev.replica is None else [ev.replica]
                for r in targets:
                    self.at(ev.at_s, self._replica_down, r)
                    self.at(ev.at_s + ev.down_s, self._replica_up, r)
            elif ev.event == "endpoint_churn" and ev.over_s > 0 and ev.services > 1:
                step = ev.over_s / ev.services
                for k in range(ev.services):
                    self.at(ev.at_s + k * step, self._change, (ev, 1))
            else:
                self.at(ev.at_s, self._change, (ev, ev.services))
        self.later(1.0, self._sample)

    def _sample(self, _v=None) -> None:
        s = min(self.n_s, math.ceil(self.env._now)) - 1
        q = sum(len(r.queue) for r in self.replicas)
        self.queue_ts[s] = q
        self.stale_ts[s] = self.n - self.n_current
        self.connected_ts[s] = self.n_connected
        if s + 2 < self.ctx.duration_s:
            self.later(1.0, self._sample)

    # ------------------------------------------------------------------ changes and debounce
    def _take_services(self, k: int) -> list[int]:
        ids = [(self._cursor + j) % self.services for j in range(k)]
        self._cursor = (self._cursor + k) % self.services
        return ids

    def _change(self, item) -> None:
        ev, k = item
        p = self._pending
        if ev.event == "endpoint_churn":
            p.setdefault("endpoint", set()).update(self._take_services(k))
        else:
            if ev.add:
                ids = list(range(self.services, self.services + k))
                self.services += k
            else:
                ids = self._take_services(k)
            p.setdefault("cluster", set()).update(ids)
            p.setdefault("endpoint", set()).update(ids)
            p.setdefault("route", set()).add(0)
            if ev.bad != "none":
                self._pending_bad = ev.bad
        now = self.env._now
        self._last_change = now
        if not self._debouncing:
            self._debouncing = True
            self._first_change = now
            self.at(now + self.cfg.push.debounce.debounce_after_s, self._debounce_check)

    def _debounce_check(self, _v=None) -> None:
        d = self.cfg.push.debounce
        now = self.env._now
        quiet_at = self._last_change + d.debounce_after_s
        max_at = self._first_change + d.debounce_max_s
        if now >= quiet_at or now >= max_at:
            changed, self._pending = self._pending, {}
            bad, self._pending_bad = self._pending_bad, "none"
            self._debouncing = False
            self._cut(changed, self._first_change, bad, None)
        else:
            self.at(min(quiet_at, max_at), self._debounce_check)

    def _cut(self, changed: dict, first_change: float, bad: str, rollback_of: int | None) -> Version:
        now = self.env._now
        self._advance()
        v = self.store.commit(changed, self.services, created_s=now, first_change_s=first_change, bad=bad,
                              rollback_of=rollback_of)
        # Every gateway is behind the new version now.
        self.n_current = 0
        self.episodes.append({"kind": "rollback" if rollback_of is not None else "version", "version": v.index,
                              "from_s": first_change, "t99": None, "t100": None})
        canary = self.cfg.push.canary
        if canary is not None and rollback_of is None:
            k = max(1, math.ceil(canary.fraction * self.n))
            self.canary = set(range(k))
            self.canary_version = v.index
            self.later(canary.hold_s, self._release, v.index)
            targets = [s for s in self.subs if s.i in self.canary]
        else:
            self.released = v.index
            self.canary = set()
            self.canary_version = None
            targets = self.subs
        for sub in targets:
            if sub.connected:
                self._enqueue(sub)
        for rep in self.replicas:
            if rep.up:
                self._pump(rep)
        return v

    def _release(self, index: int) -> None:
        if self.canary_version != index or index in self.rolled_back:
            return
        self.released = index
        self.canary = set()
        self.canary_version = None
        for sub in self.subs:
            if sub.connected:
                self._enqueue(sub)
        for rep in self.replicas:
            if rep.up:
                self._pump(rep)

    def _target(self, sub: _Sub) -> int:
        latest = self.store.latest.index
        return latest if (self.canary_version is None or sub.i in self.canary) else self.released

    # ------------------------------------------------------------------ pushes
    def _enqueue(self, sub: _Sub) -> None:
        if sub.in_flight:
            sub.pending = True
            return
        q = self.replicas[sub.replica].queue
        if sub.i not in q:
            q[sub.i] = None
            n = sum(len(r.queue) for r in self.replicas) if len(self.replicas) > 1 else len(q)
            if n > self.queue_peak:
                self.queue_peak = n

    def _pump(self, rep: _Replica) -> None:
        while rep.in_flight < self.throttle and rep.queue:
            i = next(iter(rep.queue))
            del rep.queue[i]
            sub = self.subs[i]
            if not sub.connected or sub.replica != rep.i:
                continue
            target = self._target(sub)
            if sub.have == target:
                continue
            diff = self.store.diff(sub.have, target)
            nbytes, nres = response(self.cfg.resources, self.mode, self.store.versions[target].services, diff)
            if nres == 0:
                continue
            job = _Job(sub, rep, "push", target, nbytes, nres, self.cfg.cpu_per_push_s
                       + self.cfg.cpu_per_resource_s * nres)
            sub.in_flight = True
            rep.in_flight += 1
            self._cpu(job)

    def _resync(self, sub: _Sub, rep: _Replica) -> None:
        target = self._target(sub)
        if self.mode == "sotw" or self.cfg.push.resync == "full" or sub.have is None:
            diff = None
        else:
            diff = self.store.diff(sub.have, target) if sub.have < target else {}
        nbytes, nres = response(self.cfg.resources, self.mode, self.store.versions[target].services, diff)
        job = _Job(sub, rep, "resync", target, nbytes, nres, self.cfg.cpu_per_push_s
                   + self.cfg.cpu_per_resource_s * nres)
        sub.in_flight = True
        self._cpu(job)

    def _cpu(self, job: _Job) -> None:
        rep = job.rep
        if rep.cores_free > 0:
            rep.cores_free -= 1
            self._start_cpu(job)
        else:
            rep.cpu_q.append(job)

    def _start_cpu(self, job: _Job) -> None:
        job.rep.running[job] = self.env._now
        self.later(job.cpu_s, self._cpu_done, job)

    def _cpu_done(self, job: _Job) -> None:
        rep = job.rep
        if job.epoch != rep.epoch:
            return
        start = rep.running.pop(job)
        _spread(self.cpu_ts, start, self.env._now, self.env._now - start)
        if rep.cpu_q:
            self._start_cpu(rep.cpu_q.pop(0))
        else:
            rep.cores_free += 1
        if job.kind == "stream":
            return
        now = self.env._now
        rate = self.cfg.egress_bytes_per_s
        if rate is None or job.bytes == 0:
            self._sent(job)
            return
        begin = max(now, rep.link_free_at)
        end = rep.link_free_at = begin + job.bytes / rate
        rep.sending[job] = begin
        self.at(end, self._sent, job)

    def _sent(self, job: _Job) -> None:
        rep = job.rep
        if job.epoch != rep.epoch:
            return
        now = self.env._now
        begin = rep.sending.pop(job, now)
        _spread(self.egress_ts, begin, now, job.bytes)
        sub = job.sub
        if job.kind == "push":
            self.pushes += 1
            self.push_bytes += job.bytes
            rep.in_flight -= 1
        else:
            self.resyncs += 1
            self.resync_bytes += job.bytes
        requeued = False
        if job.gen == sub.gen:
            sub.in_flight = False
            if job.resources:
                self.later(self.cfg.latency_s, self._deliver, job)
            else:
                self._installed(sub, job.target)
            if sub.pending and sub.connected:
                sub.pending = False
                self._enqueue(sub)
                requeued = True
        if job.kind == "push" or requeued:
            self._pump(rep)

    # ------------------------------------------------------------------ the gateway side
    def _deliver(self, job: _Job) -> None:
        sub = job.sub
        if job.gen != sub.gen or not sub.up:
            self.responses_lost += 1
            return
        s = self.cfg.subscribers
        cpu = s.apply_cpu_base_s + s.apply_cpu_per_resource_s * job.resources
        self.applies += 1
        self.apply_cpu_s += cpu
        if sub.gw is not None and cpu > 0 and sub.gw.up:
            sub.gw.apply_config(cpu)
        self.later(cpu, self._applied, job)

    def _applied(self, job: _Job) -> None:
        sub = job.sub
        if not sub.up or job.gen != sub.gen:
            self.responses_lost += 1
            return
        v = self.store.versions[job.target]
        if v.bad == "nack":
            self.later(self.cfg.latency_s, self._nack, v.index)
        else:
            self._installed(sub, job.target)
            self.later(self.cfg.latency_s, self._ack, v.index)
        leak = self.cfg.subscribers.apply_leak_bytes
        if leak > 0:
            sub.memory += leak
            if sub.memory > self.cfg.subscribers.memory_limit_bytes:
                self._oom(sub)

    def _installed(self, sub: _Sub, target: int) -> None:
        """Gateway ``sub`` runs version ``target`` from now on (unless it already runs a newer one)."""
        if sub.have is not None and sub.have >= target:
            self._resynced(sub)
            return
        self._advance()
        versions = self.store.versions
        if sub.have is None:
            self.n_unconfigured -= 1
            if sub.crashed and sub.gw is not None:
                self._up(sub.gw)
                sub.crashed = False
        elif versions[sub.have].bad == "errors":
            self.n_bad -= 1
            self._bad_config(sub, False)
        sub.have = target
        v = versions[target]
        if v.bad == "errors":
            self.n_bad += 1
            self._bad_config(sub, True)
            if v.index not in self.errors_seen:
                self.errors_seen.add(v.index)
                rb = self.cfg.push.rollback
                if rb is not None:
                    self.later(rb.error_detect_s, self._rollback, v.index)
        if target == self.store.latest.index:
            self.n_current += 1
            self._check_episodes()
        self._resynced(sub)

    def _resynced(self, sub: _Sub) -> None:
        o = sub.outage
        if o is not None and sub.connected:
            sub.outage = None
            o["remaining"] -= 1
            done = o["lost"] - o["remaining"]
            now = self.env._now - o["at_s"]
            if o["synced_99_s"] is None and done >= math.ceil(0.99 * o["lost"]):
                o["synced_99_s"] = now
            if o["remaining"] == 0:
                o["synced_s"] = now

    def _bad_config(self, sub: _Sub, bad: bool) -> None:
        """In the data-plane mode, make gateway ``sub`` fail requests (or stop failing them).

        An instance attribute ``accept`` stands in front of the class's method
        while the gateway runs a bad version, so a fleet without one pays nothing.
        """
        gw = sub.gw
        if gw is None:
            return
        if not bad:
            gw.__dict__.pop("accept", None)
            return
        p = self.cfg.subscribers.bad_version_error_probability
        draw = self._bad_draw
        accept = type(gw).accept.__get__(gw)

        def failing(req, _p=p, _draw=draw, _accept=accept, _gw=gw):
            if _draw() < _p and _gw.up:
                req.gateway = _gw
                _gw._answer(req, BAD_CONFIG, LOCAL_REPLY_BYTES)
            else:
                _accept(req)

        gw.accept = failing

    def _check_episodes(self) -> None:
        need99 = math.ceil(0.99 * self.n)
        now = self.env._now
        for e in self.episodes:
            if e["t100"] is not None:
                continue
            if e["t99"] is None and self.n_current >= need99:
                e["t99"] = now - e["from_s"]
            if self.n_current >= self.n:
                e["t100"] = now - e["from_s"]

    def _ack(self, index: int) -> None:
        self.acks[index] = self.acks.get(index, 0) + 1

    def _nack(self, index: int) -> None:
        self.nack_count += 1
        self.nacks[index] = k = self.nacks.get(index, 0) + 1
        rb = self.cfg.push.rollback
        if rb is not None and k >= rb.nack_threshold:
            self._rollback(index)

    def _rollback(self, index: int) -> None:
        if index in self.rolled_back:
            return
        self.rolled_back.add(index)
        bad = self.store.versions[index]
        if self.canary_version == index:
            self.canary_version = None
            self.canary = set()
        self._cut({t: set(ids) for t, ids in bad.changed.items()}, self.env._now, "none", index)

    def _oom(self, sub: _Sub) -> None:
        self.oom_kills += 1
        self._lose_stream(sub)
        sub.up = False
        if sub.gw is not None and not sub.crashed:
            self._down(sub.gw)
            sub.crashed = True
        self.later(self.cfg.subscribers.restart_s, self._restart, sub)

    def _restart(self, sub: _Sub) -> None:
        self._advance()
        sub.up = True
        sub.memory = self.cfg.subscribers.memory_bytes
        if not self.cfg.subscribers.local_cache and sub.have is not None:
            if self.store.versions[sub.have].bad == "errors":
                self.n_bad -= 1
                self._bad_config(sub, False)
            if sub.have == self.store.latest.index:
                self.n_current -= 1
            sub.have = None
            self.n_unconfigured += 1
        if sub.have is not None and sub.crashed:
            self._up(sub.gw)
            sub.crashed = False
        sub.attempt = 0
        sub.chain += 1
        self._attempt((sub, sub.chain))

    # ------------------------------------------------------------------ streams
    def _lose_stream(self, sub: _Sub) -> None:
        if sub.connected:
            self._advance()
            self.n_connected -= 1
            self.replicas[sub.replica].queue.pop(sub.i, None)
        sub.connected = False
        sub.gen += 1
        sub.in_flight = False
        sub.pending = False

    def _backoff(self, sub: _Sub) -> None:
        bound = backoff_bound_s(self.cfg.reconnect, sub.attempt)
        delay = bound * self._jitter() if self.cfg.reconnect.jitter == "full" else bound
        sub.attempt += 1
        self.later(delay, self._attempt, (sub, sub.chain))

    def _attempt(self, item) -> None:
        sub, chain = item
        if chain != sub.chain or not sub.up or sub.connected or sub.admitting:
            return
        now = self.env._now
        self.attempts += 1
        self.attempts_ts[min(self.n_s - 1, int(now))] += 1
        up = [r for r in self.replicas if r.up]
        if not up:
            self.attempts_failed += 1
            self._backoff(sub)
            return
        rep = up[int(self._pick() * len(up))] if len(up) > 1 else up[0]
        if self.cfg.cpu_per_stream_s > 0:
            # The handshake is done before the request limit is consulted.
            self._cpu(_Job(sub, rep, "stream", None, 0, 0, self.cfg.cpu_per_stream_s))
        t_ok = max(now, rep.next_token)
        if t_ok - now > REQUEST_LIMIT_WAIT_S:
            self.attempts_refused += 1
            self._backoff(sub)
            return
        rep.next_token = t_ok + self.token_s
        sub.admitting = True
        self.at(t_ok, self._admitted, (sub, rep, rep.epoch, sub.gen))

    def _admitted(self, item) -> None:
        sub, rep, epoch, gen = item
        sub.admitting = False
        if rep.epoch != epoch or not rep.up or sub.gen != gen or not sub.up:
            self.attempts_failed += 1
            if sub.up and not sub.connected and sub.gen == gen:
                self._backoff(sub)
            return
        self._advance()
        sub.connected = True
        sub.replica = rep.i
        sub.attempt = 0
        self.n_connected += 1
        self._resync(sub, rep)

    def _replica_down(self, r: int) -> None:
        rep = self.replicas[r]
        if not rep.up:
            return
        now = self.env._now
        rep.up = False
        rep.epoch += 1
        for start in rep.running.values():
            _spread(self.cpu_ts, start, now, now - start)
        rep.running.clear()
        rep.cpu_q.clear()
        rep.sending.clear()
        rep.cores_free = self.cfg.cores
        rep.in_flight = 0
        rep.queue.clear()
        rep.link_free_at = now
        lost = [s for s in self.subs if s.connected and s.replica == r]
        outage = {"replica": r, "at_s": now, "lost": len(lost), "remaining": len(lost),
                  "synced_99_s": None, "synced_s": None}
        self.outages.append(outage)
        for sub in lost:
            self._lose_stream(sub)
            sub.outage = outage
            sub.attempt = 0
            sub.chain += 1
            self._backoff(sub)

    def _replica_up(self, r: int) -> None:
        rep = self.replicas[r]
        rep.up = True
        rep.next_token = self.env._now

    def check(self) -> None:
        """Raise if a gateway count disagrees with the gateways' own state (for tests)."""
        connected = sum(1 for s in self.subs if s.connected)
        latest = self.store.latest.index
        current = sum(1 for s in self.subs if s.have == latest)
        unconfigured = sum(1 for s in self.subs if s.have is None)
        bad = sum(1 for s in self.subs if s.have is not None and self.store.versions[s.have].bad == "errors")
        in_flight = [sum(1 for s in self.subs if s.in_flight and s.connected and s.replica == r.i)
                     for r in self.replicas]
        problems = []
        kept = (self.n_connected, self.n_current, self.n_unconfigured, self.n_bad)
        seen = (connected, current, unconfigured, bad)
        if kept != seen:
            problems.append(f"counts (connected, current, unconfigured, bad) are {kept}, the gateways say {seen}")
        for r in self.replicas:
            if not 0 <= r.in_flight <= self.throttle:
                problems.append(f"replica {r.i}: {r.in_flight} pushes in progress, throttle {self.throttle}")
            if not r.up and (r.queue or in_flight[r.i]):
                problems.append(f"replica {r.i} is down but serves {len(r.queue)} queued, {in_flight[r.i]} in flight")
        if problems:
            raise RuntimeError(f"{self.name} at t={self.env._now!r}: " + "; ".join(problems))

    # ------------------------------------------------------------------ results
    def results(self) -> dict:
        """Result hook: the control plane's load, the pushes, convergence, staleness and reconnects.

        Whole-run counts; per-second series ``cpu_cores`` (busy core-seconds
        per second, all replicas), ``egress_bytes``, ``push_queue`` (gateways
        queued at each second's end), ``reconnect_attempts``,
        ``stale_gateways`` and ``connected_gateways``.
        """
        self._advance()
        versions = {}
        for e in self.episodes:
            v = self.store.versions[e["version"]]
            versions[f"v{v.index}"] = {
                "created_s": v.created_s, "first_change_s": v.first_change_s, "bad": v.bad,
                "rollback_of": v.rollback_of, "acks": self.acks.get(v.index, 0), "nacks": self.nacks.get(v.index, 0),
                "converged_99_s": e["t99"], "converged_s": e["t100"]}
        conv = [e["t100"] for e in self.episodes]
        conv99 = [e["t99"] for e in self.episodes]
        n_conf = counts(self.cfg.resources, self.services)
        return {
            "mode": self.cfg.mode, "push_mode": self.mode, "gateways": self.n, "replicas": len(self.replicas),
            "resources": sum(n_conf.values()),
            "cpu_s": math.fsum(self.cpu_ts), "cpu_cores_peak": max(self.cpu_ts),
            "cpu_cores_p99": nearest_rank(self.cpu_ts, 0.99),
            "egress_bytes": math.fsum(self.egress_ts), "egress_peak_bytes_per_s": max(self.egress_ts),
            "egress_p99_bytes_per_s": nearest_rank(self.egress_ts, 0.99),
            "pushes": self.pushes, "push_bytes": self.push_bytes, "resyncs": self.resyncs,
            "resync_bytes": self.resync_bytes, "responses_lost": self.responses_lost,
            "push_queue_peak": self.queue_peak,
            "versions_cut": len(self.store.versions) - 1,
            "rollbacks": len(self.rolled_back), "nacks": self.nack_count,
            "convergence_s": (max(conv) if conv and all(x is not None for x in conv) else None),
            "convergence_99_s": (max(conv99) if conv99 and all(x is not None for x in conv99) else None),
            "unconverged_versions": sum(1 for x in conv if x is None),
            "staleness_gateway_s": self.stale_gs, "disconnected_gateway_s": self.disconnected_gs,
            "unconfigured_gateway_s": self.unconfigured_gs, "bad_version_gateway_s": self.bad_gs,
            "reconnect_attempts": self.attempts, "reconnect_failed": self.attempts_failed,
            "reconnect_refused": self.attempts_refused,
            "reconnect_peak_per_s": max(self.attempts_ts),
            "resync_s": (max(o["synced_s"] for o in self.outages)
                         if self.outages and all(o["synced_s"] is not None for o in self.outages) else None),
            "resync_99_s": (max(o["synced_99_s"] for o in self.outages)
                            if self.outages and all(o["synced_99_s"] is not None for o in self.outages) else None),
            "gateway_applies": self.applies, "gateway_apply_cpu_s": self.apply_cpu_s, "oom_kills": self.oom_kills,
            "versions": versions,
            "outages": {f"{i}": {k: o[k] for k in ("replica", "at_s", "lost", "synced_99_s", "synced_s")}
                        for i, o in enumerate(self.outages)},
            "series": {"cpu_cores": self.cpu_ts, "egress_bytes": self.egress_ts, "push_queue": self.queue_ts,
                       "reconnect_attempts": self.attempts_ts, "stale_gateways": self.stale_ts,
                       "connected_gateways": self.connected_ts},
        }


__all__ = ["ControlPlane", "nearest_rank"]
