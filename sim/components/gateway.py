"""Envoy-like gateway instances: worker CPU, router with a route timeout, clusters.

A request reaching a gateway instance first needs a worker: the instance's
``workers`` threads serve requests FIFO, each request costing ``cpu_time_s``
(seconds of one worker). Then the router picks a host of the request's
service in the instance's cluster (``lb_policy``, see :mod:`.lb`), starts the
route timeout (Envoy ``timeout``, default 15 s) and sends the attempt. The
backend's answer is relayed to the client. If the route timeout fires first,
the client gets 504 (``route_timeout``) at once, the upstream request is reset
(its host's active count drops, as Envoy's does) and the backend's late answer
is discarded.

Counts (measurement window): ``requests`` routed, ``busy_s`` worker-seconds,
``timeouts``; ``queue_len``, ``busy`` at the end.
"""

from __future__ import annotations

import math
from collections import deque

from sim.config.models import GatewayPool
from sim.engine import FixedDelayTimers, Sampler, SimContext, UniformStream

from .lb import make_policy
from .request import LOCAL_REPLY_BYTES, ROUTE_TIMEOUT, Attempt, Request


def _answered(req: Request) -> bool:
    return req.outcome is not None


class UpstreamCluster:
    """One gateway instance's view of one service: hosts, active counts, policy, links."""

    __slots__ = ("service", "hosts", "active", "sent", "pick", "links_out", "links_back")

    def __init__(self, service: str, hosts: list, active: list[int], policy, links_out: list, links_back: list):
        self.service = service
        self.hosts = hosts
        self.active = active
        self.sent = [0] * len(hosts)  # attempts sent to each host in the measurement window
        self.pick = policy.pick
        self.links_out = links_out
        self.links_back = links_back


class GatewayInstance:
    """One gateway process.

    Args:
        ctx: simulation context.
        name: ``<pool>-<i>``; its random streams are prefixed with it.
        config: the pool's validated model.
        az: the instance's AZ.
    """

    def __init__(self, ctx: SimContext, name: str, config: GatewayPool, az: str):
        self.ctx = ctx
        self.env = ctx.env
        self._later = ctx.call_later
        self.name = name
        self.config = config
        self.az = az
        self.workers = config.workers
        self._cpu = Sampler(config.cpu_time_s, ctx.rng(f"{name}.cpu_time")).draw
        self._uniform = UniformStream(ctx.rng(f"{name}.lb"))
        self._timers = FixedDelayTimers(ctx.env, config.route.timeout_s, self._route_timeout,
                                        is_done=_answered)
        self.clusters: dict[str, UpstreamCluster] = {}
        self.busy = 0
        self.queue: deque[Request] = deque()
        self._on_reply = self._upstream_replied
        # Busy time adds each CPU slice when it starts and is corrected once at
        # each edge of the window for slices that straddle it.
        self.busy_s = 0.0
        self.reset()

    # -- wiring (before t=0)
    def add_cluster(self, service: str, hosts: list, network) -> None:
        """Route ``service`` to ``hosts`` (backend instances) over ``network``."""
        active = [0] * len(hosts)
        policy = make_policy(self.config.cluster, [h.lb_weight for h in hosts], active, self._uniform)
        out = [network.link(self.az, h.az) for h in hosts]
        back = [network.link(h.az, self.az) for h in hosts]
        self.clusters[service] = UpstreamCluster(service, hosts, active, policy, out, back)

    def reset(self) -> None:
        """Start the measurement window now (called at the end of the warm-up)."""
        now = self.env._now
        self.busy_s = math.fsum(t - now for t, _ in self.ctx.pending(self._cpu_done))
        self.requests = 0
        self.timeouts = 0
        for c in self.clusters.values():
            c.sent = [0] * len(c.hosts)

    # -- worker CPU
    def accept(self, req: Request) -> None:
        """A request arrives from the balancer (a scheduled callback)."""
        req.gateway = self
        if self.busy < self.workers:
            self.busy += 1
            self._run_cpu(req)
        else:
            self.queue.append(req)

    def _run_cpu(self, req: Request) -> None:
        s = self._cpu()
        self.busy_s += s
        self._later(s, self._cpu_done, req)

    def _cpu_done(self, req: Request) -> None:
        if self.queue:
            self._run_cpu(self.queue.popleft())
        else:
            self.busy -= 1
        self._route(req)

    # -- router
    def _route(self, req: Request) -> None:
        self.requests += 1
        cluster = self.clusters[req.service]
        i = cluster.pick()
        cluster.active[i] += 1
        cluster.sent[i] += 1
        attempt = Attempt(req, cluster, i, cluster.hosts[i])
        attempt.on_reply = self._on_reply
        req.attempt = attempt
        self._timers.start(req)
        cluster.links_out[i].send(req.req_bytes, attempt.backend.accept, attempt)

    def _upstream_replied(self, attempt: Attempt) -> None:
        """The backend answered; carry the answer back over the network."""
        attempt.cluster.links_back[attempt.host].send(attempt.resp_bytes, self._response_arrived, attempt)

    def _response_arrived(self, attempt: Attempt) -> None:
        if attempt.abandoned:
            return
        attempt.cluster.active[attempt.host] -= 1
        req = attempt.request
        req.attempt = None  # break the request-attempt cycle so refcounting frees both
        req.outcome = attempt.outcome
        req.resp_bytes = attempt.resp_bytes
        req.lb_node.respond(req)

    def _route_timeout(self, req: Request) -> None:
        if req.outcome is not None:
            return
        self.timeouts += 1
        attempt = req.attempt
        req.attempt = None
        attempt.abandoned = True
        attempt.cluster.active[attempt.host] -= 1
        req.outcome = ROUTE_TIMEOUT
        req.resp_bytes = LOCAL_REPLY_BYTES
        req.lb_node.respond(req)

    def finish(self) -> None:
        """Close the window now: drop CPU time scheduled beyond it."""
        now = self.env._now
        self.busy_s -= math.fsum(t - now for t, _ in self.ctx.pending(self._cpu_done))

    def stats(self) -> dict:
        return {"requests": self.requests, "busy_s": self.busy_s, "timeouts": self.timeouts,
                "workers": self.workers, "queue_len": len(self.queue), "busy": self.busy,
                "active": {c.service: sum(c.active) for c in self.clusters.values()},
                "sent": {c.service: {h.name: n for h, n in zip(c.hosts, c.sent, strict=True)}
                         for c in self.clusters.values()}}


__all__ = ["GatewayInstance", "UpstreamCluster"]
