"""Gateway CPU by cause, and the gateway that keeps the account (TLS handshakes, access logs).

:class:`CpuAccount` holds the CPU seconds (of one worker) and the event
counts of one gateway instance by cause, over the measurement window. A cause
is one entry of :data:`CPU_CAUSES` and a ``charge`` where it happens: the
control plane's ``config_apply`` is charged by :meth:`AccountedGateway.apply_config`
(the control plane also counts every gateway's apply CPU itself, accounted
pools or not).

:class:`AccountedGateway` is a :class:`~sim.components.gateway.GatewayInstance`
that keeps the account, built only for pools with TLS, access logging or CPU
costs, or when clients hold connections (``workload.connections``); other
pools keep the plain gateway, so a fleet without these features runs exactly
as before. It adds to the worker queue:

- a new connection's TLS handshake: the first request on it carries the
  handshake kind (set by the connection layer, :mod:`sim.components.tls`)
  and its worker slice is the handshake's CPU plus the request's, so
  reconnect herds queue behind one another and delay requests;
- access-log lines (:class:`~sim.config.models.AccessLog`): a sampled
  answered request puts a line job of ``cpu_per_line_s`` (plus
  ``sync_write_s`` with ``flush: sync``) in the worker queue; with ``sync``
  the response leaves when the job is done, with ``async`` at once.

Retries, upstream connections, responses and health-check probes are
counted in the account (count x ``cpu_costs``) without taking worker time.
"""

from __future__ import annotations

from collections import deque

from sim.config.models import GatewayPool
from sim.engine import SimContext, UniformStream

from .gateway import GatewayInstance
from .request import GATEWAY_RESET, OK

#: The causes of gateway CPU, in the order results list them.
CPU_CAUSES = ("tls_full_handshake", "tls_resumed_handshake", "request", "retry", "upstream_connect",
              "response", "health_check", "access_log", "config_apply")

#: Causes that take worker time in the simulation (the rest are counted only).
QUEUED_CAUSES = frozenset({"tls_full_handshake", "tls_resumed_handshake", "request", "access_log", "config_apply"})

_HANDSHAKE_CAUSE = {"full": "tls_full_handshake", "resumed": "tls_resumed_handshake"}


class CpuAccount:
    """CPU seconds and events by cause, for one gateway instance's measurement window."""

    __slots__ = ("seconds", "events")

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        """Start the window now."""
        self.seconds = dict.fromkeys(CPU_CAUSES, 0.0)
        self.events = dict.fromkeys(CPU_CAUSES, 0)

    def charge(self, cause: str, seconds: float, events: int = 1) -> None:
        """Add ``events`` of ``cause`` costing ``seconds`` in all."""
        self.seconds[cause] += seconds
        self.events[cause] += events

    def results(self) -> dict:
        """``{"cpu_s": {cause: s}, "events": {cause: n}}``."""
        return {"cpu_s": dict(self.seconds), "events": dict(self.events)}


class LogJob:
    """An access-log line waiting for (or on) a worker.

    ``outcome`` is None until a crash resets it, as a request's, so the
    gateway's worker bookkeeping treats it like one.
    """

    __slots__ = ("req", "cpu_s", "sync", "outcome", "resp_outcome", "resp_bytes")

    def __init__(self, req, cpu_s: float, sync: bool, resp_outcome: str, resp_bytes: float):
        self.req = req
        self.cpu_s = cpu_s
        self.sync = sync
        self.outcome = None
        self.resp_outcome = resp_outcome
        self.resp_bytes = resp_bytes


class AccountedGateway(GatewayInstance):
    """A gateway instance with a CPU account, handshakes and access logs on its workers.

    Args: as :class:`GatewayInstance`; its access-log sampling draws from
    ``<name>.access_log``.
    """

    def __init__(self, ctx: SimContext, name: str, config: GatewayPool, az: str):
        self.cpu = CpuAccount()
        super().__init__(ctx, name, config, az)
        tls = config.tls
        self._hs_cpu = {"full": tls.full_handshake_cpu_s, "resumed": tls.resumed_handshake_cpu_s} if tls else {}
        self.log = config.access_log
        self._log_u = UniformStream(ctx.rng(f"{name}.access_log")) if self.log is not None else None
        self.log_lines = 0
        self.log_bytes = 0
        self.on_restart: list = []  # callbacks(gateway) when the process comes back (new own keys)
        self._queued_at: deque[float] = deque()  # when each item of self.queue joined it, in order
        self.wait_s = 0.0
        self.waited = 0
        self.started = 0

    def reset(self) -> None:
        """Start the measurement window now (the account too)."""
        super().reset()
        self.cpu.reset()
        self.log_lines = 0
        self.log_bytes = 0
        self.wait_s = 0.0  # worker-queue waits of items that started in the window
        self.waited = 0
        self.started = 0

    def apply_config(self, cpu_s: float) -> None:
        """As :meth:`GatewayInstance.apply_config`, charged to ``config_apply`` (the control plane's pushes)."""
        self.cpu.charge("config_apply", cpu_s)
        super().apply_config(cpu_s)

    # -- worker CPU: the slice is the request's own plus its connection's handshake
    def _slice(self, req) -> float:
        s = self._cpu()
        self.cpu.charge("request", s)
        kind = getattr(req, "handshake", None)
        if kind is not None:
            req.handshake = None  # charged once, even if the request is queued again
            hs = self._hs_cpu.get(kind)
            if hs is not None:
                self.cpu.charge(_HANDSHAKE_CAUSE[kind], hs)
                s += hs
        return s

    def accept(self, req) -> None:
        """A request arrives from the balancer (a scheduled callback)."""
        req.gateway = self
        if not self.up:
            self.resets += 1
            self._answer(req, GATEWAY_RESET, 0.0)
            return
        if self.busy < self.workers:
            self.busy += 1
            self._start(item=req)
        else:
            self.queue.append(req)
            self._queued_at.append(self.env._now)

    def _run_cpu(self, item) -> None:
        """Start ``item``, just taken from the head of the queue (its wait ends now)."""
        w = self.env._now - self._queued_at.popleft()
        self.wait_s += w
        self.waited += 1
        self._start(item)

    def _start(self, item) -> None:
        """Put ``item`` (a request, or a log line) on a worker now."""
        self.started += 1
        if item.__class__ is LogJob:
            s = item.cpu_s
            self.cpu.charge("access_log", s)
        else:
            s = self._slice(item)
        self.busy_s += s
        self._later(s, self._cpu_done, item)

    def _cpu_done(self, item) -> None:
        if item.__class__ is not LogJob:
            super()._cpu_done(item)
            return
        self._log_done(item)

    def use_rate_limit(self, filt) -> None:
        """As :meth:`GatewayInstance.use_rate_limit`; a log line leaving a worker still ends as one."""
        super().use_rate_limit(filt)
        limited = self._cpu_done  # the rate-limited request path

        def done(item) -> None:
            if item.__class__ is LogJob:
                self._log_done(item)
            else:
                limited(item)

        self._cpu_done = done

    def _log_done(self, item: LogJob) -> None:
        if item.outcome is not None:  # reset by a crash while on the worker
            return
        item.outcome = OK
        if self.queue:
            self._run_cpu(self.queue.popleft())
        else:
            self.busy -= 1
        if item.sync:
            req = item.req
            req.lb_node.respond(req)

    # -- access logging at the answer
    def _answer(self, req, outcome: str, resp_bytes: float) -> None:
        if req.__class__ is LogJob:  # a crash resets a line job
            req.outcome = GATEWAY_RESET
            self.resets -= 1  # not a request
            if req.sync:
                r = req.req
                r.outcome = GATEWAY_RESET
                r.resp_bytes = 0.0
                r.lb_node.respond(r)
            return
        log = self.log
        if log is None or not self.up:
            super()._answer(req, outcome, resp_bytes)
            return
        rate = log.success_sample if outcome == OK else log.failure_sample
        if rate < 1.0 and not self._log_u() < rate:
            super()._answer(req, outcome, resp_bytes)
            return
        self.log_lines += 1
        self.log_bytes += log.bytes_per_line
        sync = log.flush == "sync"
        job = LogJob(req, log.cpu_per_line_s + (log.sync_write_s if sync else 0.0), sync, outcome, resp_bytes)
        if sync:
            # The answer is decided (timeouts leave it alone) but leaves after the write.
            req.outcome = outcome
            req.resp_bytes = resp_bytes
        else:
            super()._answer(req, outcome, resp_bytes)
        if self.busy < self.workers:
            self.busy += 1
            self._start(job)
        else:
            self.queue.append(job)
            self._queued_at.append(self.env._now)

    def crash(self) -> None:
        """Go down now (as the plain gateway); the queue's join times go with its items."""
        super().crash()
        self._queued_at.clear()

    def restart(self) -> None:
        """Come back up after a crash: keys it made itself are new (the callbacks say so)."""
        super().restart()
        for cb in self.on_restart:
            cb(self)

    def results(self) -> dict:
        """The plain gateway's results plus the account and the worker queue's waits.

        Adds ``cpu_s`` and ``cpu_events`` by cause, ``log_lines``,
        ``log_bytes``, ``worker_wait_s`` (waits for a worker, summed) and
        ``worker_starts`` (items put on a worker).
        """
        out = super().results()
        costs = self.config.cpu_costs
        acct = self.cpu
        if costs is not None:
            # Counted-only causes: events x cost, from the counters the gateway already keeps.
            retries = sum(out["retries_by_reason"].values())
            probes = 0
            for c in self.clusters.values():
                if c.health is not None and getattr(c.health, "checker", None) is not None:
                    probes += c.health.checker.probes
            for cause, n, cost in (("retry", retries, costs.per_retry_s),
                                   ("upstream_connect", out["connects"], costs.upstream_connect_s),
                                   ("response", out["requests"], costs.response_s),
                                   ("health_check", probes, costs.health_check_s)):
                acct.seconds[cause] = n * cost
                acct.events[cause] = n
        out["cpu_s"] = dict(acct.seconds)
        out["cpu_events"] = dict(acct.events)
        out["log_lines"] = self.log_lines
        out["log_bytes"] = self.log_bytes
        out["worker_wait_s"] = self.wait_s
        out["worker_starts"] = self.started
        return out


__all__ = ["CPU_CAUSES", "QUEUED_CAUSES", "AccountedGateway", "CpuAccount", "LogJob"]
