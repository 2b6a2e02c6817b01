"""Backend service instances: a station with workers and a bounded queue.

An attempt that finds every worker busy waits in a queue of ``queue_limit``
slots; when the queue is full it is answered at once with 503
(``backend_overflow``). A free worker takes the oldest waiting attempt
(``queue_discipline: fifo``) or the newest (``lifo``). A served attempt
takes ``service_time_s`` times the instance's ``service_time_factor`` (and
times a fault's ``slowdown_factor``) of one worker, then fails (500,
``backend_error``) with ``error_probability`` (or a fault's error burst,
whichever is higher). The instance works on an attempt whether or not its
caller is still waiting: time spent on an attempt that was abandoned by the
time it finished is *wasted work*. With ``drop_expired`` a worker first
sheds every attempt it would take whose caller's deadline
(``attempt.deadline``, Envoy's x-envoy-expected-rq-timeout-ms) has passed:
each is answered 503 at once (``backend_dropped_expired``) and costs no
service time. With ``lifo`` the worker takes from the newest end, so expired
attempts at the old end stay queued until they reach it.

Faults (:mod:`.faults`) call :meth:`BackendInstance.crash` and
:meth:`BackendInstance.restart`. A crash answers every waiting and in-service
attempt at once with ``upstream_reset`` (the work done on the in-service
ones counts as wasted); while down, an arriving attempt is answered at once
with ``connect_failure``; a restart brings the instance back empty.

Counts (measurement window, from the end of warm-up to the end of the run): ``attempts``,
``rejected``, ``refused`` (while down), ``dropped`` (expired), ``resets`` (by a
crash), ``errors``, ``served``; ``busy_s`` (worker-seconds busy),
``in_system_s`` (the time integral of attempts in the station, for the mean
number in system), ``wasted_s`` and ``wasted`` (tries served whose caller had
already stopped waiting: worker-seconds and requests, as a real backend
counts requests it finished for nobody); and over admitted attempts that arrived in
the window, ``wait_sum_s`` over the ``wait_n`` that have started service, ``waited``
(count that queued) and ``admitted``.
"""

from __future__ import annotations

import math
from collections import deque

from sim.config.models import Service
from sim.engine import Sampler, SimContext, UniformStream

from .request import (
    BACKEND_ERROR,
    BACKEND_OVERFLOW,
    CONNECT_FAILURE,
    DROPPED_EXPIRED,
    LOCAL_REPLY_BYTES,
    OK,
    UPSTREAM_RESET,
    Attempt,
)


class BackendInstance:
    """One instance of a backend service.

    Args:
        ctx: simulation context (its ``warmup_s`` and ``duration_s`` bound the
            measurement window; a duration of 0 means no end).
        name: ``<service>-<az>-<i>``; also its random streams' prefix.
        config: the service's validated model.
        service: service name; az: the instance's AZ.

    Attributes:
        up: False while crashed.
        slowdown_factor: multiplies the service time of every attempt that
            starts service while it is set (a fault's slowdown; 1.0 normally).
    """

    # Slots: attribute access on the hot path is a fixed offset, and an
    # instance this size would outgrow CPython's shared-key instance dicts
    # (30 keys), whose loss measured ~7% on the M/M/c benchmark.
    __slots__ = (
        "ctx", "env", "_later", "name", "service", "az", "config", "service_time_factor", "lb_weight",
        "workers", "queue_limit", "queue_discipline", "drop_expired", "error_probability", "_draw",
        "_slowdown", "_timer_error", "_service_time", "_resp_bytes", "_coin", "busy", "queue", "_take", "_done", "up",
        "_worker_slots", "_queue_slots", "_killed", "crashes", "_ws", "busy_s", "waiting_s", "attempts",
        "rejected", "served", "dropped", "resets", "refused", "lifetime", "errors", "wasted_s", "wasted",
        "wait_sum_s", "waited", "dequeued",
    )

    def __init__(self, ctx: SimContext, name: str, config: Service, service: str, az: str):
        self.ctx = ctx
        self.env = ctx.env
        self._later = ctx.call_later
        self.name = name
        self.service = service
        self.az = az
        self.config = config
        override = config.instance_overrides.get(name)
        self.service_time_factor = override.service_time_factor if override else 1.0
        self.lb_weight = override.lb_weight if override else 1
        self.workers = config.workers
        # null: unbounded. accept() admits while len(queue) < the limit; an int is never
        # as large as inf, so the comparison is exact and the hot path stays as it is.
        self.queue_limit = math.inf if config.queue_limit is None else config.queue_limit
        self.queue_discipline = config.queue_discipline
        self.drop_expired = config.drop_expired
        self.error_probability = config.error_probability
        self._draw = Sampler(config.service_time_s, ctx.rng(f"{name}.service_time")).draw
        self._slowdown = 1.0
        self._timer_error = (Sampler(config.timer_error_s, ctx.rng(f"{name}.timer_error")).draw
                             if config.timer_error_s is not None else None)
        self._set_service_time()
        self._resp_bytes = Sampler(config.response_bytes, ctx.rng(f"{name}.response_bytes")).draw
        self._coin = UniformStream(ctx.rng(f"{name}.errors"))
        self.busy = 0
        self.queue: deque[Attempt] = deque()
        # The options are fixed per instance, so each picks its code path once
        # here: FIFO and LIFO differ only in the bound pop, and the expiry check
        # exists only on instances that asked for it (no per-attempt cost otherwise).
        self._take = self.queue.popleft if self.queue_discipline == "fifo" else self.queue.pop
        # The scheduled end of service, bound once (ctx.pending finds entries by it).
        self._done = self._finish_dropping if self.drop_expired else self._finish
        self.up = True
        # While down the admission limits are 0 and -1, so accept() falls through
        # to its rare overflow branch, which tells a refusal from an overflow:
        # the up check costs nothing on the hot path.
        self._worker_slots = self.workers
        self._queue_slots = self.queue_limit
        # Attempts in service when the instance crashed: already answered, their
        # scheduled finish must do nothing.
        self._killed: set[Attempt] = set()
        self.crashes = 0
        # Time integrals add whole intervals as they become known (a service
        # time when it starts, a wait when it ends) and are corrected once at
        # each edge of the window (reset, finish) and at a crash for what
        # straddles it: no per-event bookkeeping on the hot path.
        self._ws = 0.0
        self.busy_s = 0.0
        self.waiting_s = 0.0
        self.attempts = self.rejected = self.served = self.dropped = self.resets = self.refused = 0
        # attempts, rejected, served, dropped, resets, refused before the last reset
        self.lifetime = [0, 0, 0, 0, 0, 0]
        self.reset()

    # -- fault hooks
    @property
    def slowdown_factor(self) -> float:
        """Multiplier of the service time of attempts that start service now (1.0 but in a slowdown fault)."""
        return self._slowdown

    @slowdown_factor.setter
    def slowdown_factor(self, factor: float) -> None:
        if not factor > 0:
            raise ValueError(f"backend {self.name}: slowdown factor must be positive, not {factor}")
        self._slowdown = factor
        self._set_service_time()

    def _set_service_time(self) -> None:
        draw = self._draw
        factor = self.service_time_factor * self._slowdown
        err = self._timer_error
        if err is not None:
            self._service_time = lambda: max(0.0, draw() * factor + err())
        else:
            self._service_time = draw if factor == 1.0 else (lambda: draw() * factor)

    def set_error_burst(self, probability: float | None) -> None:
        """Fail attempts with ``max(error_probability, probability)``; None ends the burst."""
        base = self.config.error_probability
        if probability is None:
            self.error_probability = base
        elif not 0.0 <= probability <= 1.0:
            raise ValueError(f"backend {self.name}: error probability {probability} is not in [0, 1]")
        else:
            self.error_probability = max(base, probability)

    def crash(self) -> None:
        """Go down now: reset every waiting and in-service attempt; refuse new ones."""
        if not self.up:
            raise RuntimeError(f"backend {self.name} is already down")
        now = self.env._now
        self.up = False
        self.crashes += 1
        self._worker_slots = 0
        self._queue_slots = -1
        killed = self._killed
        # Heap order is deterministic; answer in order of scheduled finish.
        in_service = sorted(((t, a) for t, a in self.ctx.pending(self._done) if a not in killed),
                            key=lambda e: e[0])
        for t_end, a in in_service:
            self.busy_s -= t_end - now  # the worker stops now, not at the scheduled end
            self.wasted_s += a.service_s - (t_end - now)
            killed.add(a)
        waiting = list(self.queue)
        self.queue.clear()
        for a in waiting:
            self.waiting_s += now - a.t_arrive
        self.busy = 0
        reset = [a for _, a in in_service] + waiting
        self.resets += len(reset)
        for a in reset:
            a.outcome = UPSTREAM_RESET
            a.resp_bytes = LOCAL_REPLY_BYTES
            a.on_reply(a)

    def restart(self) -> None:
        """Come back up, empty (a crash emptied it)."""
        if self.up:
            raise RuntimeError(f"backend {self.name} is not down")
        self.up = True
        self._worker_slots = self.workers
        self._queue_slots = self.queue_limit

    # -- window
    def _in_service(self) -> list[tuple[float, Attempt]]:
        """(scheduled end, attempt) of every attempt in service now."""
        killed = self._killed
        return [(t, a) for t, a in self.ctx.pending(self._done) if a not in killed]

    def reset(self) -> None:
        """Start the measurement window now (called at the end of the warm-up)."""
        now = self._ws = self.env._now
        # What is in service now counts from now to its (scheduled) end; what is
        # waiting will add its whole wait when served, minus the part before now.
        self.busy_s = math.fsum(t - now for t, _ in self._in_service())
        self.waiting_s = -math.fsum(now - a.t_arrive for a in self.queue)
        life = self.lifetime
        for i, n in enumerate((self.attempts, self.rejected, self.served, self.dropped, self.resets,
                               self.refused)):
            life[i] += n
        self.attempts = 0
        self.rejected = 0
        self.served = 0
        self.dropped = 0
        self.resets = 0
        self.refused = 0
        self.errors = 0
        self.wasted_s = 0.0
        self.wasted = 0
        self.wait_sum_s = 0.0
        self.waited = 0
        self.dequeued = 0

    # -- hot path
    def accept(self, attempt: Attempt) -> None:
        """An attempt arrives (a scheduled callback)."""
        self.attempts += 1
        now = attempt.t_arrive = self.env._now
        if self.busy < self._worker_slots:
            self.busy += 1
            self._start(attempt, now)
        elif len(self.queue) < self._queue_slots:
            self.waited += 1
            self.queue.append(attempt)
        elif not self.up:
            self.refused += 1
            attempt.outcome = CONNECT_FAILURE
            attempt.resp_bytes = LOCAL_REPLY_BYTES
            attempt.on_reply(attempt)
        else:
            self.rejected += 1
            attempt.outcome = BACKEND_OVERFLOW
            attempt.resp_bytes = LOCAL_REPLY_BYTES
            attempt.on_reply(attempt)

    def _start(self, attempt: Attempt, now: float) -> None:
        s = self._service_time()
        attempt.service_s = s
        self.busy_s += s
        self._later(s, self._done, attempt)

    def _finish(self, attempt: Attempt) -> None:
        killed = self._killed
        if killed and attempt in killed:
            killed.discard(attempt)  # reset by a crash, answered then
            return
        self.served += 1
        if attempt.abandoned:
            self.wasted_s += attempt.service_s
            self.wasted += 1
        if self.error_probability and self._coin() < self.error_probability:
            self.errors += 1
            attempt.outcome = BACKEND_ERROR
            attempt.resp_bytes = LOCAL_REPLY_BYTES
        else:
            attempt.outcome = OK
            attempt.resp_bytes = self._resp_bytes()
        if self.queue:
            nxt = self._take()
            now = self.env._now
            t = nxt.t_arrive
            self.waiting_s += now - t
            if t >= self._ws:
                self.wait_sum_s += now - t
                self.dequeued += 1
            self._start(nxt, now)
        else:
            self.busy -= 1
        attempt.on_reply(attempt)

    def _finish_dropping(self, attempt: Attempt) -> None:
        """:meth:`_finish` for ``drop_expired``: shed expired attempts before taking one."""
        if self.queue and attempt not in self._killed:
            self._shed_expired(self.env._now)
        BackendInstance._finish(self, attempt)

    def _shed_expired(self, now: float) -> None:
        """Answer 503 every attempt at the taking end of the queue whose deadline has passed."""
        queue = self.queue
        lifo = self.queue_discipline == "lifo"
        while queue:
            a = queue[-1] if lifo else queue[0]
            # Every Attempt has a deadline; one made without (a benchmark's) has inf.
            if a.deadline > now:
                return
            self._take()
            self.dropped += 1
            self.waiting_s += now - a.t_arrive
            a.outcome = DROPPED_EXPIRED
            a.resp_bytes = LOCAL_REPLY_BYTES
            a.on_reply(a)

    # -- results
    @property
    def admitted(self) -> int:
        """Attempts that arrived in the window and were neither rejected nor refused."""
        return self.attempts - self.rejected - self.refused

    @property
    def wait_n(self) -> int:
        """Attempts that arrived in the window and have started service."""
        return self.admitted - self.waited + self.dequeued

    @property
    def in_system_s(self) -> float:
        """Time integral of attempts in the station over the window (attempt-seconds)."""
        return self.busy_s + self.waiting_s

    def finish(self) -> None:
        """Close the window now: drop service beyond it, add waits up to it."""
        now = self.env._now
        self.busy_s -= math.fsum(t - now for t, _ in self._in_service())
        self.waiting_s += math.fsum(now - a.t_arrive for a in self.queue)

    def check_conservation(self) -> None:
        """Every attempt ever received was rejected, refused, served, dropped, reset, or is here now."""
        now = (self.attempts, self.rejected, self.served, self.dropped, self.resets, self.refused)
        a, r, s, d, x, f = (x + y for x, y in zip(self.lifetime, now, strict=True))
        if a != r + f + s + d + x + len(self.queue) + self.busy:
            raise RuntimeError(f"backend {self.name}: {a} attempts != {r} rejected + {f} refused + {s} served "
                               f"+ {d} dropped + {x} reset + {len(self.queue)} queued + {self.busy} in service")

    def results(self) -> dict:
        """Result hook: the window's counters and the state at the end (see the module docstring)."""
        return {
            "attempts": self.attempts, "rejected": self.rejected, "served": self.served,
            "errors": self.errors, "busy_s": self.busy_s, "in_system_s": self.in_system_s,
            "wasted_s": self.wasted_s, "wasted_requests": self.wasted,
            "wait_sum_s": self.wait_sum_s, "waited": self.waited,
            "admitted": self.admitted, "wait_n": self.wait_n, "workers": self.workers,
            "queue_len": len(self.queue), "busy": self.busy,
            "dropped": self.dropped, "resets": self.resets, "refused": self.refused,
            "crashes": self.crashes, "up": self.up,
        }
