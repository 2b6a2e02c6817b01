"""Backend service instances: a FIFO station with workers and a bounded queue.

An attempt that finds every worker busy waits in a FIFO queue of
``queue_limit`` slots; when the queue is full it is answered at once with 503
(``backend_overflow``). A served attempt takes ``service_time_s`` times the
instance's ``service_time_factor`` of one worker, then fails (500,
``backend_error``) with ``error_probability``. The instance works on an
attempt whether or not its caller is still waiting: time spent on an attempt
that was abandoned by the time it finished is *wasted work*.

Counts (measurement window, from the end of warm-up to the end of the run): ``attempts``,
``rejected``, ``errors``, ``served``; ``busy_s`` (worker-seconds busy),
``in_system_s`` (the time integral of attempts in the station, for the mean
number in system), ``wasted_s``; and over admitted attempts that arrived in
the window, ``wait_sum_s`` over the ``wait_n`` that have started service, ``waited``
(count that queued) and ``admitted``.
"""

from __future__ import annotations

import math
from collections import deque

from sim.config.models import Service
from sim.engine import Sampler, SimContext, UniformStream

from .request import BACKEND_ERROR, BACKEND_OVERFLOW, LOCAL_REPLY_BYTES, OK, Attempt


class BackendInstance:
    """One instance of a backend service.

    Args:
        ctx: simulation context (its ``warmup_s`` and ``duration_s`` bound the
            measurement window; a duration of 0 means no end).
        name: ``<service>-<az>-<i>``; also its random streams' prefix.
        config: the service's validated model.
        service: service name; az: the instance's AZ.
    """

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
        self.queue_limit = config.queue_limit
        self.error_probability = config.error_probability
        draw = Sampler(config.service_time_s, ctx.rng(f"{name}.service_time")).draw
        factor = self.service_time_factor
        self._service_time = draw if factor == 1.0 else (lambda: draw() * factor)
        self._resp_bytes = Sampler(config.response_bytes, ctx.rng(f"{name}.response_bytes")).draw
        self._coin = UniformStream(ctx.rng(f"{name}.errors"))
        self.busy = 0
        self.queue: deque[Attempt] = deque()
        # Time integrals add whole intervals as they become known (a service
        # time when it starts, a wait when it ends) and are corrected once at
        # each edge of the window (reset, finish) for what straddles it: no
        # per-event bookkeeping on the hot path.
        self._ws = 0.0
        self.busy_s = 0.0
        self.waiting_s = 0.0
        self.attempts = self.rejected = self.served = 0
        self.lifetime = [0, 0, 0]  # attempts, rejected, served before the last reset
        self.reset()

    def reset(self) -> None:
        """Start the measurement window now (called at the end of the warm-up)."""
        now = self._ws = self.env._now
        # What is in service now counts from now to its (scheduled) end; what is
        # waiting will add its whole wait when served, minus the part before now.
        self.busy_s = math.fsum(t - now for t, _ in self.ctx.pending(self._finish))
        self.waiting_s = -math.fsum(now - a.t_arrive for a in self.queue)
        life = self.lifetime
        life[0] += self.attempts
        life[1] += self.rejected
        life[2] += self.served
        self.attempts = 0
        self.rejected = 0
        self.served = 0
        self.errors = 0
        self.wasted_s = 0.0
        self.wait_sum_s = 0.0
        self.waited = 0
        self.dequeued = 0

    def accept(self, attempt: Attempt) -> None:
        """An attempt arrives (a scheduled callback)."""
        self.attempts += 1
        now = attempt.t_arrive = self.env._now
        if self.busy < self.workers:
            self.busy += 1
            self._start(attempt, now)
        elif len(self.queue) < self.queue_limit:
            self.waited += 1
            self.queue.append(attempt)
        else:
            self.rejected += 1
            attempt.outcome = BACKEND_OVERFLOW
            attempt.resp_bytes = LOCAL_REPLY_BYTES
            attempt.on_reply(attempt)

    def _start(self, attempt: Attempt, now: float) -> None:
        s = self._service_time()
        attempt.service_s = s
        self.busy_s += s
        self._later(s, self._finish, attempt)

    def _finish(self, attempt: Attempt) -> None:
        self.served += 1
        if attempt.abandoned:
            self.wasted_s += attempt.service_s
        if self.error_probability and self._coin() < self.error_probability:
            self.errors += 1
            attempt.outcome = BACKEND_ERROR
            attempt.resp_bytes = LOCAL_REPLY_BYTES
        else:
            attempt.outcome = OK
            attempt.resp_bytes = self._resp_bytes()
        queue = self.queue
        if queue:
            nxt = queue.popleft()
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

    @property
    def admitted(self) -> int:
        """Attempts that arrived in the window and were not rejected."""
        return self.attempts - self.rejected

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
        self.busy_s -= math.fsum(t - now for t, _ in self.ctx.pending(self._finish))
        self.waiting_s += math.fsum(now - a.t_arrive for a in self.queue)

    def check_conservation(self) -> None:
        """Every attempt ever received was rejected, served, or is here now."""
        a, r, s = (x + y for x, y in zip(self.lifetime, (self.attempts, self.rejected, self.served), strict=True))
        if a != r + s + len(self.queue) + self.busy:
            raise RuntimeError(f"backend {self.name}: {a} attempts != {r} rejected + {s} served "
                               f"+ {len(self.queue)} queued + {self.busy} in service")

    def stats(self) -> dict:
        return {
            "attempts": self.attempts, "rejected": self.rejected, "served": self.served,
            "errors": self.errors, "busy_s": self.busy_s, "in_system_s": self.in_system_s,
            "wasted_s": self.wasted_s, "wait_sum_s": self.wait_sum_s, "waited": self.waited,
            "admitted": self.admitted, "wait_n": self.wait_n, "workers": self.workers,
            "queue_len": len(self.queue), "busy": self.busy,
        }
