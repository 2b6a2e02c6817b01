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

from sim.config.distributions import Constant, Exponential
from sim.config.models import RateStep
from sim.engine import Sampler, SimContext, UniformStream

from .request import Request

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

    def __init__(self, schedule: list[RateStep], scale: float = 1.0):
        pts = rate_breakpoints(schedule)
        self.times = [t for t, _ in pts]
        self.rates = [r * scale for _, r in pts]

    def rate(self, t: float) -> float:
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


class ClientPopulation:
    """The clients of one region.

    Args:
        ctx: simulation context.
        name: ``clients.<region>``; its streams are prefixed with it.
        region: the region.
        rate: the population's own rate function (already scaled by its share).
        services: (name, share, request-size distribution) of each service.
        nodes: the region's balancer nodes.
        network: for the client-to-node links.
        recorder: where outcomes go.
    """

    def __init__(self, ctx: SimContext, name: str, region: str, rate: RateFunction,
                 services: list[tuple[str, float, object]], nodes: list, recorder,
                 arrivals: str = "poisson"):
        if not nodes:
            raise ValueError(f"{name}: no balancer node to connect to")
        self.ctx = ctx
        self.env = ctx.env
        self._later = ctx.call_later
        self.name = name
        self.region = region
        self.rate = rate
        self.nodes = nodes
        self.recorder = recorder
        self.warmup_s = ctx.warmup_s
        self.stop_s = ctx.duration_s
        unit = Exponential(mean=1.0) if arrivals == "poisson" else Constant(value=1.0)
        self._gap = Sampler(unit, ctx.rng(f"{name}.arrivals"))
        self._uniform = UniformStream(ctx.rng(f"{name}.choices"))
        self.service_names = [s for s, _, _ in services]
        cum, acc = [], 0.0
        for _, share, _ in services:
            acc += share
            cum.append(acc)
        cum[-1] = 1.0
        self.service_cum = cum
        self.req_bytes = [Sampler(d, ctx.rng(f"{name}.{s}.request_bytes")) for s, _, d in services]
        self.issued = 0
        self.live: set[Request] = set()
        self._next_t = 0.0

    def start(self) -> None:
        self._next_t = self.rate.advance(0.0, self._gap.draw())
        if self._next_t < self.stop_s:
            self._later(self._next_t, self._batch)

    def _batch(self, _value) -> None:
        """Issue every request due in the next ``LOOKAHEAD_S`` now.

        Each request's first hop is scheduled to end at its issue time plus
        the hop's latency, exactly as if it had been sent at its issue time,
        so one event per batch replaces one event per request. Nothing in
        the fleet sees a request before it reaches the balancer. A batch never
        spans the end of the warm-up, so the window's byte counts are exact.
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
            self._issue(t, now)
            t = advance(t, gap())
        self._next_t = t
        if t < stop:
            self._later((end if end > t else t) - now, self._batch)

    def _issue(self, t: float, now: float) -> None:
        u = self._uniform
        k = 0 if len(self.service_cum) == 1 else bisect.bisect_right(self.service_cum, u())
        if k >= len(self.service_cum):
            k = len(self.service_cum) - 1
        counted = t >= self.warmup_s
        req = Request(t, counted, self.service_names[k], self.req_bytes[k].draw(), self)
        self.issued += 1
        self.live.add(req)
        self.recorder.arrival(t, counted)
        nodes = self.nodes
        node = nodes[0] if len(nodes) == 1 else nodes[int(u() * len(nodes))]
        node.link_in.send_after(t - now, req.req_bytes, node.accept, req)

    def on_response(self, req: Request) -> None:
        """The response reached the client."""
        try:
            self.live.remove(req)
        except KeyError:
            raise RuntimeError(f"{self.name}: a request was answered twice or was never issued") from None
        self.recorder.completion(self.env._now, req.t0, req.counted, req.outcome)
