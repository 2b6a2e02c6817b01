"""A Redis server as the rate limiters use it: one thread, FIFO, one call at a time.

Redis runs commands on a single thread, so calls queue. A call (one round
trip from a gateway: the token-bucket script, or INCRBY and EXPIRE
pipelined) costs the server ``io_time_s`` plus each command's time
(``evalsha_time_s`` for the script, ``command_time_s`` for INCRBY and
EXPIRE), times the slowdown factor in force when it starts. The commands run
atomically when the call starts service, in arrival order, on the server's
own key state:

- :meth:`RedisServer.token_bucket`: the source article's Lua script, a hash
  of ``tokens`` and ``last_refill`` per key;
- :meth:`RedisServer.fixed_window`: envoyproxy/ratelimit's counter per key
  and window.

Faults (:mod:`sim.fleet.faults`): :meth:`RedisServer.go_down` fails the
calls it holds and refuses new ones (each answered at once, as a refused
connection is); :meth:`RedisServer.come_up` serves again, without its keys
after a failover.

Counts (measurement window): ``calls`` served, ``commands``, ``busy_s``,
``refused`` (while down), ``failed`` (held when it went down); the server
time of each call served (queue wait plus service) in ``response``.
"""

from __future__ import annotations

import math
from collections import deque

from sim.config.models import Redis as RedisConfig
from sim.engine import Sampler, SimContext
from sim.metrics.histogram import LogHistogram

#: Commands per call of each limiter kind.
EVALSHA = "evalsha"
INCRBY_EXPIRE = "incrby_expire"


class RedisServer:
    """One single-threaded Redis server.

    Args:
        ctx: simulation context.
        name: ``redis`` or ``redis-<az>``; its streams are ``<name>.evalsha_time``,
            ``<name>.command_time`` and ``<name>.io_time``.
        config: the validated ``topology.redis``.
        az: the server's AZ.
    """

    def __init__(self, ctx: SimContext, name: str, config: RedisConfig, az: str):
        self.ctx = ctx
        self.env = ctx.env
        self._later = ctx.call_later
        self.name = name
        self.az = az
        self._eval = Sampler(config.evalsha_time_s, ctx.rng(f"{name}.evalsha_time")).draw
        self._cmd = Sampler(config.command_time_s, ctx.rng(f"{name}.command_time")).draw
        self._io = Sampler(config.io_time_s, ctx.rng(f"{name}.io_time")).draw
        self.queue: deque = deque()
        self.in_service = None
        self.up = True
        self.slowdown_factor = 1.0
        self.epoch = 0  # bumped when it goes down: a service in progress then is void
        self.hashes: dict[str, list[float]] = {}  # token bucket: key -> [tokens, last_refill]
        self.windows: dict[str, tuple[int, int]] = {}  # fixed window: key -> (window index, count)
        self.busy_s = 0.0
        self.reset()

    def reset(self) -> None:
        """Start the measurement window now."""
        now = self.env._now
        self.busy_s = math.fsum(t - now for t, _ in self.ctx.pending(self._done))
        self.calls = 0
        self.commands = 0
        self.refused = 0
        self.failed = 0
        self.max_queue = len(self.queue)
        self.response = LogHistogram()

    def finish(self) -> None:
        """Close the window now: drop service time scheduled beyond it."""
        now = self.env._now
        self.busy_s -= math.fsum(t - now for t, _ in self.ctx.pending(self._done))

    # -- the scripts, run atomically at the start of a call's service
    def token_bucket(self, key: str, now: float, limit: float, burst: float, window_s: float) -> bool:
        """The article's script: refill by elapsed time over the window times the limit, capped at burst.

        ``now`` is the caller's clock (seconds); a key not stored yet has
        ``burst`` tokens and last_refill 0. Returns whether a token was taken.
        """
        h = self.hashes.get(key)
        if h is None:
            tokens, last = burst, 0.0
        else:
            tokens, last = h
        new_tokens = min(burst, tokens + (now - last) / window_s * limit)
        if new_tokens >= 1:
            self.hashes[key] = [new_tokens - 1, now]
            return True
        self.hashes[key] = [new_tokens, now]
        return False

    def fixed_window(self, key: str, now: float, unit_s: float, requests_per_unit: int) -> bool:
        """envoyproxy/ratelimit: INCRBY 1 on ``<key>_<window start>`` (EXPIRE unit); over when count > limit.

        A window's counter expires with the window, so one counter per key is kept.
        """
        w = int(now // unit_s)
        cur = self.windows.get(key)
        count = cur[1] + 1 if cur is not None and cur[0] == w else 1
        self.windows[key] = (w, count)
        return count <= requests_per_unit

    # -- calls
    def arrive(self, call) -> None:
        """A call reaches the server (a scheduled callback); ``call.back`` carries the answer."""
        call.t_server = self.env._now
        if not self.up:
            self.refused += 1
            call.error = True
            call.back.send(call.resp_bytes, call.on_answer, call)
            return
        if self.in_service is None:
            self._start(call)
        else:
            self.queue.append(call)
            if len(self.queue) > self.max_queue:
                self.max_queue = len(self.queue)

    def _start(self, call) -> None:
        self.in_service = call
        rl = call.limit
        if call.kind == EVALSHA:
            call.allowed = self.token_bucket(call.key, call.now, rl.limit, rl.burst, rl.window_s)
            s = self._io() + self._eval()
            self.commands += 1
        else:
            call.allowed = self.fixed_window(call.key, call.now, rl.unit_s, rl.requests_per_unit)
            s = self._io() + self._cmd() + self._cmd()
            self.commands += 2
        s *= self.slowdown_factor
        self.busy_s += s
        self._later(s, self._done, self.epoch)

    def _done(self, epoch: int) -> None:
        if epoch != self.epoch:  # it went down during this service; the call was failed then
            return
        call = self.in_service
        self.in_service = None
        self.calls += 1
        self.response.add(self.env._now - call.t_server)
        call.back.send(call.resp_bytes, call.on_answer, call)
        if self.queue:
            self._start(self.queue.popleft())

    # -- faults
    def go_down(self) -> None:
        """Stop now: the call in service and those queued fail (their connections are reset)."""
        if not self.up:
            raise RuntimeError(f"{self.name} is already down")
        self.up = False
        self.epoch += 1
        now = self.env._now
        held = list(self.queue)
        self.queue.clear()
        if self.in_service is not None:
            # Its service slice ends now, not when it was scheduled to.
            for t, e in self.ctx.pending(self._done):
                if e == self.epoch - 1:
                    self.busy_s -= t - now
            held.insert(0, self.in_service)
            self.in_service = None
        self.failed += len(held)
        for call in held:
            call.error = True
            call.back.send(call.resp_bytes, call.on_answer, call)

    def come_up(self, lose_keys: bool) -> None:
        """Serve again; ``lose_keys``: a promoted replica without the latest state (buckets start afresh)."""
        if self.up:
            raise RuntimeError(f"{self.name} is not down")
        self.up = True
        if lose_keys:
            self.hashes.clear()
            self.windows.clear()

    def results(self, window_s: float) -> dict:
        """Result hook: calls and commands served, utilisation, server time per call, refusals."""
        resp = self.response
        return {"name": self.name, "az": self.az, "calls": self.calls, "commands": self.commands,
                "busy_s": self.busy_s, "utilization": self.busy_s / window_s if window_s > 0 else math.nan,
                "calls_per_s": self.calls / window_s if window_s > 0 else math.nan,
                "server_ms_mean": 1000 * resp.mean if resp.count else math.nan,
                "server_ms_p99": 1000 * resp.quantile(0.99) if resp.count else math.nan,
                "refused": self.refused, "failed": self.failed, "max_queue": self.max_queue,
                "keys": len(self.hashes) + len(self.windows)}


__all__ = ["EVALSHA", "INCRBY_EXPIRE", "RedisServer"]
