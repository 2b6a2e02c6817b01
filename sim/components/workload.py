"""Open-loop clients: Poisson (or evenly spaced) arrivals following a piecewise-linear rate schedule.

Each client population (one per region) issues requests as a
non-homogeneous Poisson process with rate ``share x r(t)`` (requests per
second), where r(t) is the workload's ``rate_schedule``: steps, and linear
ramps from the previous rate. Arrival times are drawn exactly by inverting
the cumulative rate: with E ~ Exp(1), the next arrival is the t where the
integral of the rate since the last arrival reaches E. Each request goes to a
service drawn from the workload's mix and to one node of the region's
balancer, picked uniformly (DNS answers with every node).

Counts: ``issued`` requests; the set of requests in flight, for the
conservation check.
"""

from __future__ import annotations

import bisect
import math
from collections import deque

from sim.config.distributions import Constant, Exponential
from sim.config.models import ClientPolicy, RateStep
from sim.engine import Sampler, SimContext, UniformStream

from .request import CLIENT_TIMEOUT, OK, Request

#: How far ahead a client population issues its requests (s); see ``_batch``.
LOOKAHEAD_S = 0.05


def rate_breakpoints(schedule: list[RateStep]) -> list[tuple[float, float]]:
    """The schedule as (time, rate) points, linear in between; the last rate holds forever.

    A step is a jump (two points at one time); a ramp is a line from the
    previous rate to the new one over ``ramp_s``.
    """
    points: list[tuple[float, float]] = []
    rate = 0.0
    for step in schedule:
        if step.ramp_s > 0:
            points.append((step.at_s, rate))
            points.append((step.at_s + step.ramp_s, step.rate_per_s))
        else:
            points.append((step.at_s, rate))
            points.append((step.at_s, step.rate_per_s))
        rate = step.rate_per_s
    return points


class RateFunction:
    """r(t) and the inversion of its integral, scaled by ``scale``."""

    def __init__(self, schedule: list[RateStep], scale: float = 1.0,
                 spikes: list[tuple[float, float, float]] = ()):
        pts = rate_breakpoints(schedule)
        self.times = [t for t, _ in pts]
        self.rates = [r * scale for _, r in pts]
        # A spike by 1 changes no rate; cutting the schedule at its window would still move
        # arrival times by a rounding (a ramp integrated in two pieces), so it cuts nothing.
        spikes = [s for s in spikes if s[2] != 1.0]
        if spikes:
            self._apply_spikes(spikes)

    def _left(self, t: float) -> float:
        """The rate just before ``t``."""
        i = bisect.bisect_left(self.times, t)
        if i < len(self.times) and self.times[i] == t:
            return self.rates[i]
        return self.rate(t)

    def _apply_spikes(self, spikes: list[tuple[float, float, float]]) -> None:
        """Multiply the rate by ``factor`` on each ``[start, end)`` (load spikes; they stack)."""
        def factor(t: float) -> float:
            f = 1.0
            for start, end, k in spikes:
                if start <= t < end:
                    f *= k
            return f

        cuts = sorted({*self.times, *[t for s, e, _ in spikes for t in (s, e)]})
        times, rates = [], []
        for a, b in zip(cuts, cuts[1:], strict=False):
            f = factor((a + b) / 2)
            times += [a, b]
            rates += [self.rate(a) * f, self._left(b) * f]
        last = cuts[-1]
        times.append(last)
        rates.append(self.rate(last) * factor(last))
        self.times, self.rates = times, rates

    def rate(self, t: float) -> float:
        """r(t) in requests per second (``scale`` and spikes applied): 0 before the schedule, the new rate at a step."""
        i = bisect.bisect_right(self.times, t) - 1
        if i < 0:
            return 0.0
        if i + 1 >= len(self.times):
            return self.rates[-1]
        t0, t1 = self.times[i], self.times[i + 1]
        r0, r1 = self.rates[i], self.rates[i + 1]
        return r0 if t1 == t0 else r0 + (r1 - r0) * (t - t0) / (t1 - t0)

    def integral(self, a: float, b: float) -> float:
        """The expected number of arrivals in [a, b]."""
        total = 0.0
        edges = sorted({a, b, *[t for t in self.times if a < t < b]})
        for lo, hi in zip(edges, edges[1:], strict=False):
            mid = (lo + hi) / 2
            total += self.rate(mid) * (hi - lo)  # exact: r is linear on [lo, hi]
        return total

    def advance(self, t: float, e: float) -> float:
        """The time after ``t`` where the integral of r from ``t`` reaches ``e`` (inf if never)."""
        ts, rs = self.times, self.rates
        i = bisect.bisect_right(ts, t) - 1
        while True:
            if i + 1 >= len(ts):
                r = rs[-1] if i >= 0 else 0.0
                return t + e / r if r > 0 else math.inf
            if i < 0:
                t, i = ts[0], 0
                continue
            t1 = ts[i + 1]
            if t1 <= t:
                i += 1
                continue
            r0, r1 = rs[i], rs[i + 1]
            slope = (r1 - r0) / (t1 - ts[i])
            rt = r0 + slope * (t - ts[i])
            area = (rt + r1) / 2 * (t1 - t)
            if e <= area:
                if slope == 0.0:
                    return t + e / rt
                # r(t) dt + slope dt^2 / 2 = e, in the cancellation-free form.
                return t + 2 * e / (rt + math.sqrt(max(rt * rt + 2 * slope * e, 0.0)))
            e -= area
            t = t1
            i += 1


class RetryBudget:
    """A client-side retry budget: expiring deposits per call plus a per-second reserve.

    See :class:`sim.config.models.ClientRetryBudget`. Deposits live in a deque
    of (expiry time, tokens) and are spent oldest first; the reserve refills
    continuously up to ``min_retries_per_s x ttl_s``.
    """

    def __init__(self, ratio: float, min_per_s: float, ttl_s: float):
        self.ratio = ratio
        self.min_per_s = min_per_s
        self.ttl_s = ttl_s
        self.deposits: deque[list[float]] = deque()
        self.reserve = min_per_s * ttl_s
        self._t = 0.0

    def deposit(self, now: float) -> None:
        """Deposit a call's ``ratio`` tokens, which expire ``ttl_s`` seconds after ``now``."""
        if self.ratio > 0:
            self.deposits.append([now + self.ttl_s, self.ratio])

    def withdraw(self, now: float) -> bool:
        """Spend one token if there is one; True when the retry may go."""
        self.reserve = min(self.min_per_s * self.ttl_s, self.reserve + (now - self._t) * self.min_per_s)
        self._t = now
        d = self.deposits
        while d and d[0][0] <= now:
            d.popleft()
        need = 1.0
        while d and need > 1e-12:
            take = min(need, d[0][1])
            d[0][1] -= take
            need -= take
            if d[0][1] <= 1e-12:
                d.popleft()
        if need <= 1e-12:
            return True
        if self.reserve >= need:
            self.reserve -= need
            return True
        return False


class Call:
    """One client call: its tries, until one succeeds or the client gives up.

    Attributes:
        t0: when the call was made (s); counted: made after warm-up.
        service: the service; tries: tries made; current: the try awaited.
        client: index of the client (SDK instance) making it; outcome: final.
    """

    __slots__ = ("t0", "counted", "service", "k", "tries", "current", "client", "outcome", "backend_tries")

    def __init__(self, t0: float, counted: bool, service: str, k: int, client: int):
        self.t0 = t0
        self.counted = counted
        self.service = service
        self.k = k
        self.tries = 0
        self.current = None
        self.client = client
        self.outcome = None
        self.backend_tries = 0


class ClientPopulation:
    """The clients of one region.

    Calls arrive as an open-loop process; each call makes tries (fleet
    requests) as the workload's :class:`~sim.config.models.ClientPolicy`
    says: per-try timeout, back-off, retry token bucket (AWS SDK standard
    mode). KPIs count calls: a call succeeds when one of its tries does.

    Counts: ``issued`` tries, ``calls``, ``retries``, ``client_timeouts``,
    ``retries_denied`` (token bucket empty); the live calls and live tries,
    for the conservation checks.

    Args:
        ctx: simulation context.
        name: ``clients.<region>``; its streams are prefixed with it.
        region: the region.
        rate: the population's own rate function (share and load spikes included).
        services: (name, share, request-size distribution) of each service.
        nodes: the region's balancer nodes.
        recorder: where outcomes go.
        arrivals: ``poisson`` or ``deterministic`` (``workload.arrivals``).
        policy: the client policy (``workload.client``; the config holds its defaults).
    """

    def __init__(self, ctx: SimContext, name: str, region: str, rate: RateFunction,
                 services: list[tuple[str, float, object]], nodes: list, recorder,
                 arrivals: str, policy: ClientPolicy):
        if not nodes:
            raise ValueError(f"{name}: no balancer node to connect to")
        self.ctx = ctx
        self.env = ctx.env
        self._later = ctx.call_later
        self._at = ctx.call_at
        self.name = name
        self.region = region
        self.rate = rate
        self.nodes = nodes
        self.recorder = recorder
        self.warmup_s = ctx.warmup_s
        self.stop_s = ctx.duration_s
        self.policy = policy
        unit = Exponential(mean=1.0) if arrivals == "poisson" else Constant(value=1.0)
        self._gap = Sampler(unit, ctx.rng(f"{name}.arrivals"))
        self._uniform = UniformStream(ctx.rng(f"{name}.choices"))
        self._retry_uniform = UniformStream(ctx.rng(f"{name}.retries"))
        self.service_names = [s for s, _, _ in services]
        cum, acc = [], 0.0
        for _, share, _ in services:
            acc += share
            cum.append(acc)
        cum[-1] = 1.0
        self.service_cum = cum
        self.req_bytes = [Sampler(d, ctx.rng(f"{name}.{s}.request_bytes")) for s, _, d in services]
        self.simple = policy.max_attempts == 1 and policy.timeout_s is None
        bucket = policy.token_bucket
        self.tokens = [bucket.capacity] * policy.clients if bucket is not None else None
        rb = policy.retry_budget
        self.budgets = ([RetryBudget(rb.retry_ratio, rb.min_retries_per_s, rb.ttl_s) for _ in range(policy.clients)]
                        if rb is not None else None)
        # Whole run, for the conservation checks.
        self.issued = 0
        self.answered = 0
        self.calls = 0
        # The calls made after the warm-up (the cohort requests.offered counts) and
        # what happened to them: the figures results() reports.
        self.counted = {"calls": 0, "tries": 0, "retries": 0, "client_timeouts": 0, "retries_denied": 0,
                        "answered": 0, "answered_with_backend_tries": 0, "backend_tries": 0}
        self.retries = 0
        self.client_timeouts = 0
        self.retries_denied = 0
        self.live: set[Call] = set()
        self.live_tries: set[Request] = set()
        self.rate_factor = 1.0
        self._next_t = 0.0

    def set_rate_factor(self, factor: float) -> None:
        """Record the load-spike factor in force (for reports).

        The spike itself is part of the population's rate function, built with
        the fault timeline before t=0, so look-ahead batching stays exact.
        """
        self.rate_factor = factor

    def start(self) -> None:
        """Draw the first arrival and schedule the first batch of calls there, if it comes before ``duration_s``."""
        self._next_t = self.rate.advance(0.0, self._gap.draw())
        if self._next_t < self.stop_s:
            self._later(self._next_t, self._batch)

    def _batch(self, _value) -> None:
        """Make every call due in the next ``LOOKAHEAD_S`` now.

        Each call's first try is scheduled to reach the balancer at its issue
        time plus the hop's latency, exactly as if it had been sent at its
        issue time, so one event per batch replaces one event per call.
        Nothing in the fleet sees a try before it reaches the balancer. A
        batch never spans the end of the warm-up, so the window's byte counts
        are exact.
        """
        now = self.env._now
        end = now + LOOKAHEAD_S
        if now < self.warmup_s < end:
            end = self.warmup_s
        stop = self.stop_s
        advance = self.rate.advance
        gap = self._gap.draw
        t = self._next_t
        while t < end and t < stop:
            self._call(t, now)
            t = advance(t, gap())
        self._next_t = t
        if t < stop:
            self._later((end if end > t else t) - now, self._batch)

    def _call(self, t: float, now: float) -> None:
        u = self._uniform
        k = 0 if len(self.service_cum) == 1 else bisect.bisect_right(self.service_cum, u())
        if k >= len(self.service_cum):
            k = len(self.service_cum) - 1
        counted = t >= self.warmup_s
        if self.simple:
            # One try, no client timeout: the request is the call (no Call record).
            req = Request(t, counted, self.service_names[k], self.req_bytes[k].draw(), self)
            self.calls += 1
            self.issued += 1
            if counted:
                c = self.counted
                c["calls"] += 1
                c["tries"] += 1
            self.live.add(req)
            self.recorder.call_sent(t, counted)
            nodes = self.nodes
            node = nodes[0] if len(nodes) == 1 else nodes[int(u() * len(nodes))]
            if node.up:  # (inlined from _send for performance reasons)
                node.link_in.send_at(t, req.req_bytes, node.accept, req)
            else:
                self._send(req, t, now)
            return
        n = self.policy.clients
        client = 0 if n == 1 else int(u() * n)
        call = Call(t, counted, self.service_names[k], k, client)
        if self.budgets is not None:
            self.budgets[client].deposit(t)
        self.calls += 1
        if counted:
            self.counted["calls"] += 1
        self.live.add(call)
        self.recorder.arrival(t, counted)
        self._try(call, t, now)

    def results(self) -> dict:
        """Result hook: the calls made after the warm-up and what became of them.

        ``calls``, their ``tries`` (first tries and retries), ``retries``,
        ``client_timeouts``, ``retries_denied``; ``answered`` calls, of which
        ``answered_with_backend_tries`` reached a backend at least once, and
        the ``backend_tries`` gateways sent for them (for the amplification).
        The same cohort as ``requests.offered``.
        """
        return dict(self.counted)

    @property
    def tries_in_flight(self) -> int:
        """Tries sent and not answered (a simple client's calls are its tries)."""
        return len(self.live) if self.simple else len(self.live_tries)

    def _try(self, call: Call, t: float, now: float) -> None:
        """Send a try of ``call`` that leaves at ``t`` (>= now)."""
        k = call.k
        req = Request(t, call.counted, call.service, self.req_bytes[k].draw(), self)
        req.call = call
        call.tries += 1
        call.current = req
        self.issued += 1
        if call.counted:
            self.counted["tries"] += 1
        self.live_tries.add(req)
        self.recorder.try_sent(t)
        if self.policy.timeout_s is not None:
            self._at(t + self.policy.timeout_s, self._timed_out, req)
        self._send(req, t, now)

    def _send(self, req: Request, t: float, now: float) -> None:
        """Pick a balancer node and put the try on its way, leaving at ``t``."""
        nodes = self.nodes
        node = nodes[0] if len(nodes) == 1 else nodes[int(self._uniform() * len(nodes))]
        if not node.up:
            # DNS stops answering with a node that is down (an AZ outage).
            up = [n for n in nodes if n.up]
            if up:
                node = up[0] if len(up) == 1 else up[int(self._uniform() * len(up))]
        node.link_in.send_at(t, req.req_bytes, node.accept, req)

    def on_response(self, req: Request) -> None:
        """A try's answer reached the client."""
        if self.simple:
            try:
                self.live.remove(req)
            except KeyError:
                raise RuntimeError(f"{self.name}: a request was answered twice or was never issued") from None
            self.answered += 1
            if req.counted:
                self._counted_answer(req.backend_tries)
            self.recorder.completion(self.env._now, req.t0, req.counted, req.outcome)
            return
        try:
            self.live_tries.remove(req)
        except KeyError:
            raise RuntimeError(f"{self.name}: a request was answered twice or was never issued") from None
        self.answered += 1
        call = req.call
        if call.outcome is not None:  # a late answer of a call already over
            if call.counted and req.backend_tries:
                c = self.counted
                c["backend_tries"] += req.backend_tries
                if not call.backend_tries:  # the call did reach a backend: it joins the denominator now
                    c["answered_with_backend_tries"] += 1
            call.backend_tries += req.backend_tries
            return
        call.backend_tries += req.backend_tries
        if call.current is not req:
            return  # the client stopped waiting for this try; its answer is wasted
        self._try_over(call, req.outcome)

    def _timed_out(self, req: Request) -> None:
        call = req.call
        if call.current is not req:
            return  # answered (or timed out) already
        self.client_timeouts += 1
        if call.counted:
            self.counted["client_timeouts"] += 1
        self._try_over(call, CLIENT_TIMEOUT)

    def _try_over(self, call: Call, outcome: str) -> None:
        call.current = None
        policy = self.policy
        if outcome == OK:
            if self.tokens is not None:
                tb = policy.token_bucket
                self.tokens[call.client] = min(tb.capacity, self.tokens[call.client] + tb.success_refund)
            self._finish(call, OK)
            return
        if call.tries >= policy.max_attempts:
            self._finish(call, outcome)
            return
        if self.tokens is not None:
            tb = policy.token_bucket
            cost = tb.timeout_retry_cost if outcome == CLIENT_TIMEOUT else tb.retry_cost
            if self.tokens[call.client] < cost:
                self.retries_denied += 1
                if call.counted:
                    self.counted["retries_denied"] += 1
                self._finish(call, outcome)
                return
            self.tokens[call.client] -= cost
        if self.budgets is not None and not self.budgets[call.client].withdraw(self.env._now):
            self.retries_denied += 1
            if call.counted:
                self.counted["retries_denied"] += 1
            self._finish(call, outcome)
            return
        self.retries += 1
        if call.counted:
            self.counted["retries"] += 1
        b = policy.backoff
        delay = min(b.max_s, b.base_s * 2.0 ** (call.tries - 1))
        if b.jitter == "full":
            delay *= self._retry_uniform()
        self._later(delay, self._retry, call)

    def _retry(self, call: Call) -> None:
        now = self.env._now
        self._try(call, now, now)

    def _counted_answer(self, backend_tries: int) -> None:
        c = self.counted
        c["answered"] += 1
        c["backend_tries"] += backend_tries
        if backend_tries:
            c["answered_with_backend_tries"] += 1

    def _finish(self, call: Call, outcome: str) -> None:
        call.outcome = outcome
        if call.counted:
            self._counted_answer(call.backend_tries)
        try:
            self.live.remove(call)
        except KeyError:
            raise RuntimeError(f"{self.name}: a call was answered twice or was never made") from None
        self.recorder.completion(self.env._now, call.t0, call.counted, outcome)
