"""DNS-based global balancing: health checks of each region, resolvers with TTL caches, policies.

:class:`Gslb` is the DNS service: it checks every region's endpoint from
``checkers`` locations (:class:`sim.config.models.GslbHealthCheck`) and
answers a resolver's query with a region by the policy
(:class:`sim.config.models.Gslb`). :class:`GslbEntry` stands where a
balancer node stands for one region's clients (as
:class:`sim.components.balancer.DirectEntry` does): for each try it asks
one of the region's resolvers, which answers from its cache or queries the
GSLB when its TTL has run out, and hands the try to a balancer node of the
answered region that is up. Failover time is therefore detection (the
checkers) plus what is left of each resolver's TTL.

A region's endpoint is healthy, for the checkers, while one of its balancer
nodes is up with a gateway up behind it (what a probe through the balancer
would see).

Where this departs from DNS: a resolver's answer is decided when the try
is batched (at most ``LOOKAHEAD_S``, 50 ms, before it leaves), from the
GSLB's view then; a resolver asks again only when a call needs it (as real
resolvers do), so a resolver without calls keeps its stale answer.

Random streams: ``gslb.checks`` (checker phases), ``gslb.<region>.resolvers``
(resolver phases, which resolver a call uses, weighted answers).
"""

from __future__ import annotations

import math

from sim.config.models import Gslb as GslbConfig
from sim.engine import SimContext, UniformStream

from .request import Request

#: Resolution of the ground-truth health log (seconds): the failover timeline's clock.
TRUTH_STEP_S = 0.1


class Gslb:
    """The DNS service: region health as its checkers see it, and answers by policy.

    Args:
        ctx: simulation context.
        config: the topology's ``gslb``.
        regions: region -> its balancer nodes (regions with a balancer).
    """

    def __init__(self, ctx: SimContext, config: GslbConfig, regions: dict[str, list]):
        self.ctx = ctx
        self.env = ctx.env
        self.config = config
        self.regions = dict(regions)
        self.names = sorted(self.regions)
        hc = config.health_check
        self.hc = hc
        u = UniformStream(ctx.rng("gslb.checks"))
        # Per region and checker: its view (True healthy), its run of probes disagreeing with it.
        self.view = {r: [True] * hc.checkers for r in self.names}
        self._run = {r: [0] * hc.checkers for r in self.names}
        self._phase = {r: [u() * hc.interval_s for _ in range(hc.checkers)] for r in self.names}
        self.healthy = dict.fromkeys(self.names, True)
        #: (t, region, healthy) whenever the GSLB's view of a region changes.
        self.changes: list[tuple[float, str, bool]] = []
        #: (t, region, healthy) whenever a region's endpoint really changes (every TRUTH_STEP_S).
        self.truth: list[tuple[float, str, bool]] = []
        self._truth_now = dict.fromkeys(self.names, True)
        self._truth_k = 0
        self.queries = 0

    def endpoint_up(self, region: str) -> bool:
        """A probe through the region's balancer would succeed: a node up with a gateway up."""
        return any(n.up and any(g.up for g in n.targets) for n in self.regions[region])

    def start(self) -> None:
        """Arm every checker's first probe and the ground-truth log."""
        for r in self.names:
            for c, phase in enumerate(self._phase[r]):
                self.ctx.call_later(phase, self._probe, (r, c))
        self.ctx.call_later(0.0, self._log_truth)

    def _log_truth(self, _value=None) -> None:
        now = self.env._now
        for r in self.names:
            up = self.endpoint_up(r)
            if up != self._truth_now[r]:
                self._truth_now[r] = up
                self.truth.append((now, r, up))
        self._truth_k += 1
        nxt = self._truth_k * TRUTH_STEP_S  # on a fixed grid, free of accumulated rounding
        if nxt < self.ctx.duration_s:
            self.ctx.call_later(nxt - now, self._log_truth)

    def _probe(self, key: tuple[str, int]) -> None:
        region, _ = key
        if self.endpoint_up(region):
            self._result(key, True)
        else:
            self.ctx.call_later(self.hc.timeout_s, self._result_failed, key)
        self.ctx.call_later(self.hc.interval_s, self._probe, key)

    def _result_failed(self, key: tuple[str, int]) -> None:
        self._result(key, False)

    def _result(self, key: tuple[str, int], ok: bool) -> None:
        region, c = key
        view = self.view[region]
        run = self._run[region]
        if ok == view[c]:
            run[c] = 0
            return
        run[c] += 1
        if run[c] >= self.hc.failure_threshold:
            view[c] = ok
            run[c] = 0
            healthy = sum(view) / len(view) > self.hc.healthy_fraction
            if healthy != self.healthy[region]:
                self.healthy[region] = healthy
                self.changes.append((self.env._now, region, healthy))

    def answer(self, client_region: str, uniform: UniformStream) -> str:
        """The region a resolver of ``client_region`` is told now, by the policy."""
        self.queries += 1
        cfg = self.config
        ok = [r for r in self.names if self.healthy[r]] or self.names  # none healthy: all count (Route 53)
        lat = cfg.latency_s.get(client_region, {})
        if cfg.policy == "failover":
            return cfg.primary if cfg.primary in ok else cfg.secondary if cfg.secondary in ok else cfg.primary
        if cfg.policy == "weighted":
            weights = [(r, cfg.weights.get(r, 0.0)) for r in ok]
            total = sum(w for _, w in weights)
            if total <= 0:
                weights = [(r, cfg.weights.get(r, 0.0)) for r in self.names]
                total = sum(w for _, w in weights)
            x = uniform() * total
            for r, w in weights:
                x -= w
                if x < 0 and w > 0:
                    return r
            return next(r for r, w in reversed(weights) if w > 0)
        if cfg.policy == "geo" and client_region in ok:
            return client_region
        # latency (and geo's fallback): the lowest extra latency; the client's own region counts 0
        # unless given; ties by name.
        return min(ok, key=lambda r: (lat.get(r, 0.0 if r == client_region else math.inf), r))

    def results(self) -> dict:
        """Result hook: GSLB view changes, ground-truth changes (whole run), queries answered."""
        return {"changes": [list(c) for c in self.changes], "truth": [list(c) for c in self.truth],
                "queries": self.queries}


class _ReturnPath:
    """Delays a response by the extra cross-region latency before the client sees it."""

    __slots__ = ("later", "client", "delay")

    def __init__(self, ctx: SimContext, client, delay: float):
        self.later = ctx.call_later
        self.client = client
        self.delay = delay

    def on_response(self, req: Request) -> None:
        req.client = self.client
        self.later(self.delay, self.client.on_response, req)


class GslbEntry:
    """Where one region's clients' tries enter the fleet through DNS.

    Stands where a balancer node stands for the client (``up``, ``link_in``,
    ``send_at``). Counts (whole run): tries per second by answered
    region (``by_region_ts``) and in the window by region (``tries``).
    """

    def __init__(self, ctx: SimContext, name: str, region: str, gslb: Gslb):
        self.ctx = ctx
        self._later = ctx.call_later
        self.name = name
        self.region = region
        self.gslb = gslb
        cfg = gslb.config
        self.up = True
        self.link_in = self  # the client sends through send_at below
        self.accept = None  # (the client passes it to send_at, which picks the real node)
        self.uniform = UniformStream(ctx.rng(f"gslb.{region}.resolvers"))
        n = cfg.resolvers
        u = self.uniform
        self.ttl = []
        for _ in range(n):
            extends = cfg.ttl_extending_fraction > 0 and u() < cfg.ttl_extending_fraction
            self.ttl.append(max(cfg.ttl_s, cfg.extended_ttl_s) if extends else cfg.ttl_s)
        self.expires = [u() * ttl for ttl in self.ttl]  # fetched at a uniform time in the last TTL
        self.cached = [gslb.answer(region, u) for _ in range(n)]
        self.nodes = {r: gslb.regions[r] for r in gslb.names}
        lat = cfg.latency_s.get(region, {})
        self.extra = {r: lat.get(r, 0.0) for r in gslb.names}
        self._return = {r: _ReturnPath(ctx, None, self.extra[r]) for r in gslb.names if self.extra[r] > 0}
        n_s = max(1, math.ceil(ctx.duration_s))
        self.by_region_ts = {r: [0] * n_s for r in gslb.names}
        self.reset()

    def reset(self) -> None:
        """Start the measurement window of ``tries`` now."""
        self.tries = dict.fromkeys(self.gslb.names, 0)

    def results(self) -> dict:
        """Result hook: tries by answered region (window) and per second (whole run)."""
        return {"tries": dict(self.tries), "by_region_ts": {r: list(v) for r, v in self.by_region_ts.items()}}

    def resolve(self, t: float) -> str:
        """The region a call leaving at ``t`` is sent to: a resolver's cached answer, refreshed if expired."""
        u = self.uniform
        i = int(u() * len(self.cached))
        if t >= self.expires[i]:
            self.cached[i] = self.gslb.answer(self.region, u)
            self.expires[i] = t + self.ttl[i]
        return self.cached[i]

    def send_at(self, t: float, nbytes: float, _accept, req: Request) -> None:
        """The client's try leaves at ``t``: resolve, pick a node of the answered region, send."""
        region = self.resolve(t)
        nodes = self.nodes[region]
        up = [n for n in nodes if n.up] or nodes
        node = up[0] if len(up) == 1 else up[int(self.uniform() * len(up))]
        sec = int(t)
        series = self.by_region_ts[region]
        if sec < len(series):
            series[sec] += 1
        if t >= self.ctx.warmup_s:
            self.tries[region] += 1
        path = self._return.get(region)
        extra = 0.0
        if path is not None:
            extra = path.delay
            if path.client is None:
                path.client = req.client
            req.client = path
        node.link_in.send_at(t + extra, nbytes, node.accept, req)


def failover_times(truth: list, series: dict[str, list[int]], moved: float = 0.95, window_s: int = 10) -> list[dict]:
    """Per region failure (ground truth), when the traffic answered with it had moved away.

    Args:
        truth: ``(t, region, up)`` ground-truth changes.
        series: region -> tries sent to it per second (all client regions).
        moved: the share of the region's pre-failure traffic that must have left.
        window_s: seconds averaged, before the failure for the base rate and
            after it for the test (so one quiet second of a noisy series does
            not count as moved).

    Returns:
        One row per failure: ``region``, ``failed_at_s``, ``moved_at_s`` (the
        middle of the first ``window_s`` seconds after the failure over which
        the region got on average at most 1 - ``moved`` of its mean
        per-second tries over the ``window_s`` seconds before it; None if
        never), ``time_to_move_s``.
    """
    out = []
    for t, region, up in truth:
        if up:
            continue
        s = series.get(region, [])
        start = int(t)
        before = s[max(0, start - window_s):start]
        base = sum(before) / len(before) if before else 0.0
        moved_at = None
        for sec in range(start + 1, len(s) - window_s + 1):
            if sum(s[sec:sec + window_s]) / window_s <= (1 - moved) * base:
                moved_at = sec + window_s / 2
                break
        out.append({"region": region, "failed_at_s": t, "moved_at_s": moved_at,
                    "time_to_move_s": moved_at - t if moved_at is not None else None})
    return out


__all__ = ["TRUTH_STEP_S", "Gslb", "GslbEntry", "failover_times"]
