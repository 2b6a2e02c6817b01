"""The gateway's rate-limit filter: a local token bucket, or a call to Redis.

A request that has had its CPU slice passes the filter before the router
(:meth:`sim.components.gateway.GatewayInstance.use_rate_limit` puts it
there; without a filter the gateway's path is untouched). The filter's key is
``global``, the destination service (a descriptor) or the client population
(``clients.<region>``, as an API key would be).

- :class:`LocalLimit`: Envoy's local rate limit. Each gateway instance has
  its own bucket per key, full at the start; a fill timer adds
  ``tokens_per_fill`` every ``fill_interval_s`` (at whole multiples of it
  from t = 0), capped at ``max_tokens``. Computed lazily at each request,
  which gives the same counts as the timer. No call, no latency.
- :class:`RemoteLimit`: the source article's Redis token bucket (one
  EVALSHA per request) or envoyproxy/ratelimit's fixed windows (INCRBY and
  EXPIRE pipelined), on the :class:`~sim.components.redis.RedisServer` of
  the gateway's placement. The call crosses the network (its own links:
  latency by AZ relation, bytes counted per AZ pair), waits for a connection
  when ``pipelining`` is off and every one of the gateway's ``connections``
  holds a call, queues at the server and comes back. If ``timeout_s``
  passes first, or Redis refuses the call, the request passes (fail-open)
  or gets 500 (``failure_mode_deny``). ``blocking``: the gateway worker waits
  for the answer and serves nothing else meanwhile (the article's first
  pitfall); otherwise it goes on to the next request, as Envoy does.

A denied request gets 429 (:data:`~sim.components.request.RATE_LIMITED`).

Accuracy: an :class:`IdealBucket` shared by the fleet runs a continuous
token bucket at ``global_limit_per_s`` with ``global_burst`` on the same
requests, as they reach the filter, with no delay and no failure: what a
perfect fleet-wide limiter would admit. Over- and under-admission are the
admitted count minus its count, per key.

Counts (measurement window), per key: ``checked``, ``allowed``, ``denied``
(429), ``failed_open`` and ``failed_closed`` (an error or a timeout let the
request through, or failed it with 500); per filter: ``timeouts``,
``errors`` (refused by a Redis down), ``calls``; the decision delay of each
request (``latency``); the requests admitted in each simulated second, per key.
"""

from __future__ import annotations

import math
from collections import deque

from sim.config.models import FixedWindow, LocalRateLimit, RedisTokenBucket
from sim.engine import FixedDelayTimers, SimContext
from sim.metrics.histogram import LogHistogram

from .redis import EVALSHA, INCRBY_EXPIRE, RedisServer
from .request import RATE_LIMIT_ERROR, RATE_LIMITED

ALLOW = 0
DENY = 1
FAIL_OPEN = 2
FAIL_CLOSED = 3

_VERDICTS = ("allowed", "denied", "failed_open", "failed_closed")


def key_of(kind: str, req) -> str:
    """The bucket key of ``req`` for a limit keyed by ``kind`` (``global``, ``service``, ``client``)."""
    if kind == "service":
        return req.service
    if kind == "client":
        return req.client.name
    return "global"


class IdealBucket:
    """A perfect fleet-wide token bucket per key: the accuracy figures' reference.

    Continuous refill at ``rate_per_s``, up to ``burst``, full at the start;
    it sees every request the filters see, when they see it.
    """

    def __init__(self, rate_per_s: float, burst: float, n_seconds: int, warmup_s: float):
        self.rate = rate_per_s
        self.burst = burst
        self.n = n_seconds
        self.warmup_s = warmup_s
        self.state: dict[str, list[float]] = {}
        self.admitted: dict[str, int] = {}  # in the measurement window
        self.admitted_ts: dict[str, list[int]] = {}

    def offer(self, key: str, now: float) -> None:
        """A request of ``key`` reaches a filter now."""
        s = self.state.get(key)
        if s is None:
            s = self.state[key] = [self.burst, now]
            self.admitted[key] = 0
            self.admitted_ts[key] = [0] * self.n
        tokens = min(self.burst, s[0] + (now - s[1]) * self.rate)
        s[1] = now
        if tokens >= 1:
            s[0] = tokens - 1
            if now >= self.warmup_s:
                self.admitted[key] += 1
            self.admitted_ts[key][min(self.n - 1, int(now))] += 1
        else:
            s[0] = tokens


class _Filter:
    """What both filters count; ``gateway.after_rate_limit(req, verdict)`` gets each verdict."""

    blocking = False

    def __init__(self, ctx: SimContext, name: str, key: str, ideal: IdealBucket, gateway):
        self.ctx = ctx
        self.env = ctx.env
        self.name = name
        self.key_kind = key
        self.ideal = ideal
        self.gateway = gateway
        self.n = max(1, math.ceil(ctx.duration_s))
        self.admitted_ts: dict[str, list[int]] = {}
        self.reset()

    def reset(self) -> None:
        """Start the measurement window now."""
        self.by_key: dict[str, list[int]] = {}  # key -> [checked, allowed, denied, failed_open, failed_closed]
        self.timeouts = 0
        self.errors = 0
        self.calls = 0
        self.latency = LogHistogram()

    def _count(self, key: str, verdict: int) -> None:
        row = self.by_key.get(key)
        if row is None:
            row = self.by_key[key] = [0, 0, 0, 0, 0]
        row[0] += 1
        row[verdict + 1] += 1
        if verdict == ALLOW or verdict == FAIL_OPEN:
            ts = self.admitted_ts.get(key)
            if ts is None:
                ts = self.admitted_ts[key] = [0] * self.n
            ts[min(self.n - 1, int(self.env._now))] += 1

    def drop_pending(self) -> list:
        """The gateway crashed: the requests awaiting a verdict, which it resets (none here)."""
        return []

    def blocked(self) -> int:
        """Workers held waiting for a verdict now (none here)."""
        return 0

    def results(self) -> dict:
        """Result hook: per key the verdicts; timeouts, errors, calls; decision delays; admitted per second."""
        return {"by_key": {k: dict(zip(("checked", *_VERDICTS), row, strict=True)) for k, row in self.by_key.items()},
                "timeouts": self.timeouts, "errors": self.errors, "calls": self.calls,
                "latency": self.latency, "admitted_ts": self.admitted_ts}


class LocalLimit(_Filter):
    """Envoy's local rate limit on one gateway instance (see the module docstring).

    Args:
        ctx: simulation context.
        name: ``<gateway>.rate_limit`` (it draws nothing).
        config: the validated ``topology.rate_limit`` (kind ``local``).
        ideal: the fleet's :class:`IdealBucket`.
        gateway: the instance it sits in.
    """

    def __init__(self, ctx: SimContext, name: str, config: LocalRateLimit, ideal: IdealBucket, gateway):
        tb = config.token_bucket
        self.max_tokens = tb.max_tokens
        self.per_fill = tb.tokens_per_fill
        self.interval = tb.fill_interval_s
        self.buckets: dict[str, list[int]] = {}  # key -> [tokens, fills counted]
        super().__init__(ctx, name, config.key, ideal, gateway)

    def check(self, req) -> None:
        """Decide at once: take a token of the request's key or deny."""
        now = self.env._now
        key = key_of(self.key_kind, req)
        self.ideal.offer(key, now)
        fills = int(now / self.interval)  # fill timer firings so far
        b = self.buckets.get(key)
        if b is None:
            b = self.buckets[key] = [self.max_tokens, fills]
        elif fills > b[1]:
            b[0] = min(self.max_tokens, b[0] + (fills - b[1]) * self.per_fill)
            b[1] = fills
        if b[0] > 0:
            b[0] -= 1
            verdict = ALLOW
        else:
            verdict = DENY
        self._count(key, verdict)  # no call: no latency added (the section reports 0)
        self.gateway.after_rate_limit(req, verdict)


class RedisCall:
    """One call from a gateway's filter to Redis (one round trip)."""

    __slots__ = ("req", "key", "now", "kind", "limit", "t0", "allowed", "error", "decided", "back",
                 "on_answer", "resp_bytes", "t_server")

    def __init__(self, req, key: str, now: float, kind: str, limit, back, on_answer, resp_bytes: int):
        self.req = req
        self.key = key
        self.now = now
        self.t0 = now
        self.kind = kind
        self.limit = limit
        self.back = back
        self.on_answer = on_answer
        self.resp_bytes = resp_bytes
        self.allowed = False
        self.error = False
        self.decided = False


def _decided(call: RedisCall) -> bool:
    return call.decided


class RemoteLimit(_Filter):
    """A remote limit (Redis token bucket or fixed window) on one gateway instance.

    Args:
        ctx: simulation context.
        name: ``<gateway>.rate_limit`` (it draws nothing; its links draw).
        config: the validated ``topology.rate_limit``.
        ideal: the fleet's :class:`IdealBucket`.
        gateway: the instance it sits in.
        server: the Redis it calls.
        link_out, link_back: the network hops to and from the server.
    """

    def __init__(self, ctx: SimContext, name: str, config: RedisTokenBucket | FixedWindow, ideal: IdealBucket,
                 gateway, server: RedisServer, link_out, link_back):
        self.config = config
        self.blocking = config.blocking
        self.server = server
        self.link_out = link_out
        self.link_back = link_back
        self.kind = EVALSHA if config.algorithm == "redis_token_bucket" else INCRBY_EXPIRE
        self.fail_verdict = FAIL_CLOSED if config.failure_mode_deny else FAIL_OPEN
        self.max_busy = math.inf if config.pipelining else config.connections
        self.busy = 0  # calls holding a connection (without pipelining, at most `connections`)
        self.waiting: deque[RedisCall] = deque()
        self.pending: dict[int, RedisCall] = {}  # id(req) -> its call, until the verdict
        self._timers = FixedDelayTimers(ctx.env, config.timeout_s, self._timed_out, is_done=_decided)
        super().__init__(ctx, name, config.key, ideal, gateway)

    def check(self, req) -> None:
        """Call Redis for the request's key; the verdict comes with the answer or the timeout."""
        now = self.env._now
        key = key_of(self.key_kind, req)
        self.ideal.offer(key, now)
        call = RedisCall(req, key, now, self.kind, self.config, self.link_back, self._answered,
                         self.config.response_bytes)
        self.pending[id(req)] = call
        self._timers.start(call)  # the RPC timeout covers waiting for a connection too
        if self.busy < self.max_busy:
            self._send(call)
        else:
            self.waiting.append(call)

    def _send(self, call: RedisCall) -> None:
        self.busy += 1
        self.calls += 1
        self.link_out.send(self.config.request_bytes, self.server.arrive, call)

    def _answered(self, call: RedisCall) -> None:
        """Redis's answer (or refusal) is back: free the connection, decide if not timed out."""
        self.busy -= 1
        while self.waiting and self.busy < self.max_busy:
            nxt = self.waiting.popleft()
            if not nxt.decided:  # a call that timed out while waiting is dropped, never sent
                self._send(nxt)
        if call.decided:
            return
        if call.error:
            self.errors += 1
            self._decide(call, self.fail_verdict)
        else:
            self._decide(call, ALLOW if call.allowed else DENY)

    def _timed_out(self, call: RedisCall) -> None:
        if call.decided:
            return
        self.timeouts += 1
        self._decide(call, self.fail_verdict)

    def _decide(self, call: RedisCall, verdict: int) -> None:
        call.decided = True
        req = call.req
        del self.pending[id(req)]
        if req.outcome is not None:  # reset by a crash of the gateway meanwhile
            return
        self.latency.add(self.env._now - call.t0)
        self._count(call.key, verdict)
        self.gateway.after_rate_limit(req, verdict)

    def drop_pending(self) -> list:
        """The gateway crashed: the requests awaiting a verdict (they are reset by it); their calls go on."""
        return [c.req for c in self.pending.values() if c.req.outcome is None]

    def blocked(self) -> int:
        """Workers held waiting for Redis now (blocking only)."""
        if not self.blocking:
            return 0
        return sum(1 for c in self.pending.values() if c.req.outcome is None)


#: The HTTP outcome of each verdict that fails a request.
DENIED_OUTCOME = {DENY: RATE_LIMITED, FAIL_CLOSED: RATE_LIMIT_ERROR}

__all__ = ["ALLOW", "DENIED_OUTCOME", "DENY", "FAIL_CLOSED", "FAIL_OPEN", "IdealBucket", "LocalLimit",
           "RedisCall", "RemoteLimit", "key_of"]
