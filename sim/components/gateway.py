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

A fault may crash an instance (:meth:`GatewayInstance.crash`): every request
in it is answered ``gateway_reset`` and it refuses requests until restarted.

Counts (measurement window): ``requests`` routed, ``busy_s`` worker-seconds,
``timeouts``, ``resets`` (by a crash); ``queue_len``, ``busy`` at the end.
"""

from __future__ import annotations

import math
from collections import deque

from sim.config.models import GatewayPool
from sim.engine import FixedDelayTimers, Sampler, SimContext, UniformStream

from .health import make_host_health
from .lb import HostSelector
from .locality import LocalitySelector, uses_localities
from .network import GATEWAY_BACKEND, HEALTH_CHECK
from .pool import ON_CONNECTION, ConnectionPool
from .ratelimit import DENIED_OUTCOME
from .request import (
    GATEWAY_RESET,
    LOCAL_REPLY_BYTES,
    OK,
    OVERFLOW_MAX_REQUESTS,
    PER_TRY_TIMEOUT,
    ROUTE_TIMEOUT,
    Attempt,
    Request,
)
from .router import BackOff, RetryRules, retry_limit


def _answered(req: Request) -> bool:
    return req.outcome is not None


def _try_over(attempt: Attempt) -> bool:
    return attempt.abandoned or attempt.request.attempt is not attempt


def _no_detector(host: int, outcome: str) -> None:
    """``UpstreamCluster.observe`` without outlier detection: one cheap call per try."""


class UpstreamCluster:
    """One gateway instance's view of one service: hosts, active counts, policy, links.

    ``pick`` picks a host among those in use (see :meth:`use_hosts`);
    ``observe(host, outcome)`` reports every finished try to the outlier
    detector (a no-op without one); ``health`` is the
    :class:`~sim.components.health.HostHealth` (None without outlier
    detection and health checks).
    """

    __slots__ = ("service", "hosts", "active", "sent", "pick", "links_out", "links_back", "rq_active",
                 "max_requests", "retries_active", "overflow_max_requests", "retry_overflow",
                 "per_try_timeouts", "retries_by_reason", "selector", "observe", "health", "pool", "jitter",
                 "probe_out", "probe_back")

    def __init__(self, service: str, hosts: list, active: list[int], policy, links_out: list, links_back: list,
                 max_requests: int):
        self.service = service
        self.hosts = hosts
        self.active = active
        self.selector = policy  # a HostSelector, or any policy with a fixed host set
        self.pick = policy.pick
        self.observe = _no_detector
        self.health = None
        self.pool = None  # the gateway's ConnectionPool for this cluster
        self.jitter = None  # uniform [0, 1) draws for this cluster's retry back-off
        self.links_out = links_out
        self.links_back = links_back
        self.probe_out = links_out  # health-check probes' links (their own purpose when wired by a gateway)
        self.probe_back = links_back
        self.rq_active = 0  # tries in flight (Envoy upstream_rq_active)
        self.retries_active = 0  # retries scheduled or in flight (the max_retries resource)
        self.max_requests = max_requests
        self.reset()

    def reset(self) -> None:
        """Start the measurement window of this cluster's counters (and its hosts' health counters) now."""
        self.sent = [0] * len(self.hosts)  # tries sent to each host in the measurement window
        self.overflow_max_requests = 0
        self.retry_overflow = 0
        self.per_try_timeouts = 0
        self.retries_by_reason: dict[str, int] = {}
        if self.health is not None:
            self.health.reset()
        if isinstance(self.selector, LocalitySelector):
            self.selector.reset()

    def results(self) -> dict:
        """Result hook: tries sent, per-try timeouts, breaker refusals and retries by reason."""
        return {"tries": sum(self.sent), "per_try_timeouts": self.per_try_timeouts,
                "overflow_max_requests": self.overflow_max_requests, "retry_overflow": self.retry_overflow,
                "retries_by_reason": dict(self.retries_by_reason)}

    def use_hosts(self, hosts: list[int] | None, panic: bool) -> None:
        """Pick among ``hosts`` from now on (None: every host; ``panic``: every host, Envoy's panic mode)."""
        self.pick = self.selector.use(hosts, panic)


class GatewayInstance:
    """One gateway process.

    Args:
        ctx: simulation context.
        name: ``<pool>-<i>``; its random streams are prefixed with it:
            ``<name>.cpu_time``, and per cluster ``<name>.<service>.lb`` (host
            picks) and ``<name>.<service>.backoff`` (retry back-off jitter).
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
        self._timers = FixedDelayTimers(ctx.env, config.route.timeout_s, self._route_timeout,
                                        is_done=_answered)
        self._route_timeout_s = config.route.timeout_s
        policy = config.route.retry_policy
        self.retry = RetryRules(policy) if policy is not None else None
        self._per_try = None
        if self.retry is not None and self.retry.per_try_timeout_s is not None:
            self._per_try = FixedDelayTimers(ctx.env, self.retry.per_try_timeout_s, self._per_try_timeout,
                                             is_done=_try_over)
        self.clusters: dict[str, UpstreamCluster] = {}
        self.pools: dict[str, ConnectionPool] = {}
        self.busy = 0
        self.queue: deque[Request] = deque()
        self._on_reply = self._upstream_replied
        # Busy time adds each CPU slice when it starts and is corrected once at
        # each edge of the window for slices that straddle it.
        self.busy_s = 0.0
        # Tries sent upstream in each simulated second (retries included).
        self.tries_ts = [0] * max(1, math.ceil(ctx.duration_s))
        self.up = True  # False while crashed (a fault): balancer nodes skip it
        self.rate_limit = None  # a filter of sim.components.ratelimit, set by use_rate_limit
        self.reset()

    # -- wiring (before t=0)
    def add_cluster(self, service: str, hosts: list, network, local_cluster: dict[str, int] | None = None) -> None:
        """Route ``service`` to ``hosts`` (backend instances) over ``network``.

        ``local_cluster``: the local cluster's gateway instances per AZ, for
        zone-aware routing (:mod:`.locality`).
        """
        active = [0] * len(hosts)
        # Each cluster has its own streams for host picks and for retry back-off
        # jitter, so turning retries on (or adding a cluster) shifts no other picks.
        picks = UniformStream(self.ctx.rng(f"{self.name}.{service}.lb"))
        if uses_localities(self.config.cluster):
            policy = LocalitySelector(self.config.cluster, [h.az for h in hosts], [h.lb_weight for h in hosts],
                                      active, picks, UniformStream(self.ctx.rng(f"{self.name}.{service}.locality")),
                                      self.az, local_cluster)
        else:
            policy = HostSelector(self.config.cluster, [h.lb_weight for h in hosts], active, picks)
        out = [network.link(self.az, h.az, GATEWAY_BACKEND) for h in hosts]
        back = [network.link(h.az, self.az, GATEWAY_BACKEND) for h in hosts]
        self.pools[service] = ConnectionPool(self.ctx, self.config.cluster, out, back,
                                             self._put_on_wire, self._pool_failed)
        cluster = self.clusters[service] = UpstreamCluster(service, hosts, active, policy, out, back,
                                                           self.config.cluster.circuit_breakers.max_requests)
        cluster.pool = self.pools[service]
        if self.config.cluster.health_check is not None:
            cluster.probe_out = [network.link(self.az, h.az, HEALTH_CHECK) for h in hosts]
            cluster.probe_back = [network.link(h.az, self.az, HEALTH_CHECK) for h in hosts]
        if self.retry is not None:
            cluster.jitter = UniformStream(self.ctx.rng(f"{self.name}.{service}.backoff"))
        # Outlier detection and active health checks (sim.components.health); None without them.
        cluster.health = make_host_health(self.ctx, f"{self.name}.{service}", self.config.cluster, cluster, self)

    def reset(self) -> None:
        """Start the measurement window now (called at the end of the warm-up)."""
        now = self.env._now
        # A request answered while in CPU was reset by a crash: its slice ended then.
        self.busy_s = math.fsum(t - now for t, r in self.ctx.pending(self._cpu_done) if r.outcome is None)
        self.requests = 0
        self.timeouts = 0
        self.resets = 0  # requests reset by a crash, or arriving while down
        for c in self.clusters.values():
            c.reset()
        for p in self.pools.values():
            p.reset()

    # -- worker CPU
    def accept(self, req: Request) -> None:
        """A request arrives from the balancer (a scheduled callback)."""
        req.gateway = self
        if not self.up:  # it crashed while the request was on its way
            self.resets += 1
            self._answer(req, GATEWAY_RESET, 0.0)
            return
        if self.busy < self.workers:
            self.busy += 1
            s = self._cpu()  # (inlined from _run_cpu for performance reasons)
            self.busy_s += s
            self._later(s, self._cpu_done, req)
        else:
            self.queue.append(req)

    def _run_cpu(self, req: Request) -> None:
        s = self._cpu()
        self.busy_s += s
        self._later(s, self._cpu_done, req)

    def _cpu_done(self, req: Request) -> None:
        if req.outcome is not None:  # reset by a crash while in CPU; the worker was freed then
            return
        # _next_in_cpu and _route, inlined: this runs once per request, and two calls
        # cost a measurable share of the quickstart path (bench/bench_engine.py).
        # Keep the three in step.
        if self.queue and self.busy <= self.workers:  # fewer workers while a config apply holds one
            self._run_cpu(self.queue.popleft())
        else:
            self.busy -= 1
        self.requests += 1
        cluster = self.clusters[req.service]
        req.cluster = cluster
        if self.retry is not None:
            req.retries = 0
            req.backoff = None
            req.tried = None
        req.deadline = self.env._now + self._route_timeout_s
        self._timers.start(req)
        self._send(req, cluster, False)

    # -- rate-limit filter (sim.components.ratelimit), before the router
    def use_rate_limit(self, filt) -> None:
        """Pass every request through ``filt`` before the router.

        The CPU-done callback is swapped for one that calls the filter, so a
        gateway without a filter pays nothing for this.
        """
        self.rate_limit = filt
        self._cpu_done = self._cpu_done_limited

    def _cpu_done_limited(self, req: Request) -> None:
        if req.outcome is not None:  # reset by a crash while in CPU
            return
        if not self.rate_limit.blocking:
            self._next_in_cpu()
        self.rate_limit.check(req)

    def _next_in_cpu(self) -> None:
        if self.queue and self.busy <= self.workers:  # fewer workers while a config apply holds one
            self._run_cpu(self.queue.popleft())
        else:
            self.busy -= 1

    def after_rate_limit(self, req: Request, verdict: int) -> None:
        """The filter's verdict (:mod:`sim.components.ratelimit`): route the request, or answer 429 or 500."""
        if req.outcome is not None:  # reset by a crash while waiting for it (the crash freed its worker)
            return
        if self.rate_limit.blocking:
            self._next_in_cpu()
        outcome = DENIED_OUTCOME.get(verdict)
        if outcome is not None:
            self._answer(req, outcome, LOCAL_REPLY_BYTES)
            return
        self._route(req)

    def _route(self, req: Request) -> None:
        """The router: the request's cluster, fresh retry state, the route timeout, the first try."""
        self.requests += 1
        cluster = self.clusters[req.service]
        req.cluster = cluster
        if self.retry is not None:
            req.retries = 0
            req.backoff = None
            req.tried = None
        req.deadline = self.env._now + self._route_timeout_s
        self._timers.start(req)
        self._send(req, cluster, False)

    def _send(self, req: Request, cluster: UpstreamCluster, is_retry: bool) -> None:
        """Start one try: the max_requests breaker, a host, the per-try timer, the hop."""
        if cluster.rq_active >= cluster.max_requests:
            cluster.overflow_max_requests += 1
            if is_retry:
                cluster.retries_active -= 1
            self._answer(req, OVERFLOW_MAX_REQUESTS, LOCAL_REPLY_BYTES)
            return
        rules = self.retry
        i = cluster.pick()
        if rules is not None and rules.previous_hosts and req.tried:
            # Envoy's previous_hosts predicate: re-pick up to
            # host_selection_retry_max_attempts times, then take the last pick.
            for _ in range(rules.host_selection_max_attempts):
                if i not in req.tried:
                    break
                i = cluster.pick()
        cluster.active[i] += 1
        cluster.rq_active += 1
        cluster.sent[i] += 1
        self.tries_ts[int(self.env._now)] += 1
        req.backend_tries += 1
        attempt = Attempt(req, cluster, i, cluster.hosts[i], self._on_reply, is_retry, req.deadline)
        req.attempt = attempt
        if rules is not None:
            if rules.previous_hosts:
                if req.tried is None:
                    req.tried = [i]
                else:
                    req.tried.append(i)
        pool = cluster.pool
        if pool.busy[i] < pool.conns[i] * pool.streams_per_conn:
            # A free connection (inlined from ConnectionPool.acquire for performance reasons).
            pool.busy[i] += 1
            attempt.conn = ON_CONNECTION
            self._put_on_wire(attempt)
        else:
            pool.acquire(i, attempt)

    def _put_on_wire(self, attempt: Attempt) -> None:
        """The try has a connection: start its per-try timer and send it to its host.

        Envoy starts the per-try timeout when the connection pool is ready
        (UpstreamRequest::onPoolReady), so connecting and waiting as pending
        count against the route timeout only.
        """
        if self._per_try is not None:
            self._per_try.start(attempt)
            per_try_end = self.env._now + self.retry.per_try_timeout_s
            if per_try_end < attempt.deadline:
                attempt.deadline = per_try_end
        attempt.cluster.links_out[attempt.host].send(attempt.request.req_bytes, attempt.backend.accept, attempt)

    def _pool_failed(self, attempt: Attempt, outcome: str) -> None:
        """The try got no connection (pending overflow, connect failure)."""
        req = attempt.request
        if req.attempt is not attempt:
            return
        req.attempt = None
        attempt.abandoned = True
        self._release(attempt)
        attempt.cluster.observe(attempt.host, outcome)
        self._try_failed(req, outcome, LOCAL_REPLY_BYTES)

    def _upstream_replied(self, attempt: Attempt) -> None:
        """The backend answered; carry the answer back over the network."""
        attempt.cluster.links_back[attempt.host].send(attempt.resp_bytes, self._response_arrived, attempt)

    def _release(self, attempt: Attempt) -> None:
        """The try is over for the gateway: its host and breaker counts drop."""
        cluster = attempt.cluster
        cluster.active[attempt.host] -= 1
        cluster.rq_active -= 1
        if attempt.is_retry:
            cluster.retries_active -= 1
        cluster.pool.release(attempt)

    def _response_arrived(self, attempt: Attempt) -> None:
        if attempt.abandoned:
            return
        self._release(attempt)
        req = attempt.request
        req.attempt = None  # break the request-attempt cycle so refcounting frees both
        outcome = attempt.outcome
        if attempt.cluster.health is not None:
            attempt.cluster.observe(attempt.host, outcome)
        if outcome == OK or self.retry is None:
            self._answer(req, outcome, attempt.resp_bytes)
        else:
            self._try_failed(req, outcome, attempt.resp_bytes)

    def _try_failed(self, req: Request, outcome: str, resp_bytes: float) -> None:
        """A try ended with ``outcome``: retry it if the policy and the breakers allow."""
        rules = self.retry
        if rules is None or req.retries >= rules.num_retries or not rules.retriable(outcome):
            self._answer(req, outcome, resp_bytes)
            return
        cluster = req.cluster
        if cluster.retries_active >= retry_limit(self.config.cluster.circuit_breakers, cluster.rq_active):
            cluster.retry_overflow += 1
            self._answer(req, outcome, resp_bytes)
            return
        cluster.retries_active += 1
        req.retries += 1
        cluster.retries_by_reason[outcome] = cluster.retries_by_reason.get(outcome, 0) + 1
        if req.backoff is None:
            req.backoff = BackOff(rules.base_ms, rules.max_ms)
        self._later(req.backoff.next_ms(cluster.jitter()) / 1000.0, self._retry, req)

    def _retry(self, req: Request) -> None:
        if req.outcome is not None:  # the route timeout fired during the back-off
            req.cluster.retries_active -= 1
            return
        self._send(req, req.cluster, True)

    def _answer(self, req: Request, outcome: str, resp_bytes: float) -> None:
        req.outcome = outcome
        req.resp_bytes = resp_bytes
        req.lb_node.respond(req)

    def _per_try_timeout(self, attempt: Attempt) -> None:
        req = attempt.request
        if attempt.abandoned or req.attempt is not attempt:
            return
        attempt.abandoned = True
        req.attempt = None
        self._release(attempt)
        attempt.cluster.per_try_timeouts += 1
        attempt.cluster.observe(attempt.host, PER_TRY_TIMEOUT)
        self._try_failed(req, PER_TRY_TIMEOUT, LOCAL_REPLY_BYTES)

    def _route_timeout(self, req: Request) -> None:
        if req.outcome is not None:
            return
        self.timeouts += 1
        attempt = req.attempt
        if attempt is not None:  # else it is between tries, in its back-off
            req.attempt = None
            attempt.abandoned = True
            attempt.cluster.observe(attempt.host, ROUTE_TIMEOUT if attempt.conn == ON_CONNECTION else None)
            self._release(attempt)
        self._answer(req, ROUTE_TIMEOUT, LOCAL_REPLY_BYTES)

    # -- config applies (sim.components.controlplane)
    def apply_config(self, cpu_s: float) -> None:
        """Apply an xDS response: one worker fewer for requests during ``cpu_s`` seconds.

        Envoy applies configuration on its main thread and hands it to the
        workers; here the apply takes one of the ``workers`` from requests (a
        request in CPU finishes first; queued ones wait), so capacity drops
        briefly. The control plane counts the CPU seconds; ``busy_s`` does not.
        """
        self.workers -= 1
        self._later(cpu_s, self._apply_done, None)

    def _apply_done(self, _value=None) -> None:
        self.workers += 1
        while self.queue and self.busy < self.workers and self.up:
            self.busy += 1
            self._run_cpu(self.queue.popleft())

    def finish(self) -> None:
        """Close the window now: drop CPU time scheduled beyond it."""
        now = self.env._now
        self.busy_s -= math.fsum(t - now for t, r in self.ctx.pending(self._cpu_done) if r.outcome is None)

    # -- faults (sim.components.faults)
    def crash(self) -> None:
        """Go down now: every request here is answered ``gateway_reset``, its try abandoned.

        Requests waiting for CPU, in CPU, and routed but unanswered (a try in
        flight or in its back-off) lose their client connection: the client
        gets ``gateway_reset`` (no bytes: a TCP reset). Tries in flight are
        abandoned and released as on a route timeout, so a late backend answer
        is discarded and the host's active count drops. Until :meth:`restart`,
        arriving requests are reset too and balancer nodes skip this instance.
        """
        if not self.up:
            raise RuntimeError(f"gateway {self.name} is already down")
        now = self.env._now
        self.up = False
        in_cpu = sorted(((t, r) for t, r in self.ctx.pending(self._cpu_done) if r.outcome is None),
                        key=lambda e: e[0])
        for t_end, _ in in_cpu:
            self.busy_s -= t_end - now  # the slice ends now, not at its scheduled end
        waiting = list(self.queue)
        self.queue.clear()
        self.busy = 0
        # Every routed request holds a route timer until it fires; those not yet
        # answered are the ones in the router.
        routed = [r for r in self._timers.items() if r.outcome is None]
        attempts = [r.attempt for r in routed if r.attempt is not None]  # else in its back-off
        for attempt in attempts:
            attempt.request.attempt = None
            attempt.abandoned = True
        # Tries waiting for a connection first: a connection freed below must not be
        # handed to one of them (nor opened for one).
        attempts.sort(key=lambda a: a.conn == ON_CONNECTION)
        for attempt in attempts:
            self._release(attempt)
        for pool in self.pools.values():
            pool.close_all()  # the process's connections died with it
        reset = [r for _, r in in_cpu] + waiting + routed
        if self.rate_limit is not None:
            reset += self.rate_limit.drop_pending()  # awaiting Redis's verdict
        self.resets += len(reset)
        for req in reset:
            self._answer(req, GATEWAY_RESET, 0.0)

    def restart(self) -> None:
        """Come back up, empty (a crash emptied it)."""
        if self.up:
            raise RuntimeError(f"gateway {self.name} is not down")
        self.up = True

    def check_limits(self) -> None:
        """Raise if a worker or circuit-breaker limit is exceeded now, or a count disagrees with the tries.

        For tests, which call it at many instants of a run; nothing in a run
        calls it. Checked, from the requests this instance holds (in CPU,
        waiting for it, routed and not answered, in a retry back-off):

        - workers: ``busy`` is the requests in CPU, at most ``workers``, and
          none waits while a worker is free;
        - per cluster, ``max_requests``: the tries in flight (Envoy's
          upstream_rq_active), which are the live tries' own count, per host
          as in total;
        - retries in flight or in back-off are the live retries plus the
          back-offs scheduled, within ``max_retries``, or with a retry budget
          within its allowance at ``max_requests`` active requests (a budget
          is checked when a retry is admitted, as Envoy does: retries
          admitted stay when active requests later drop, so at an arbitrary
          instant this is the bound that must hold);
        - the cluster's connection pool (:meth:`ConnectionPool.check_limits`).

        Raises:
            RuntimeError: naming the gateway, the cluster, the time and each problem.
        """
        now = self.env._now
        problems = []
        in_cpu = sum(1 for _, r in self.ctx.pending(self._cpu_done) if r.outcome is None)
        if self.rate_limit is not None and self.rate_limit.blocking:
            in_cpu += self.rate_limit.blocked()  # workers held waiting for Redis
        # (a config apply takes a worker away while requests may still hold every worker)
        if not 0 <= self.busy <= self.config.workers or self.busy != in_cpu:
            problems.append(f"{self.busy} workers busy ({in_cpu} requests in CPU or blocked), of {self.config.workers}")
        if self.queue and self.busy < self.workers:
            problems.append(f"{len(self.queue)} requests wait for CPU while {self.workers - self.busy} workers are free")
        tries: dict[str, list[Attempt]] = {svc: [] for svc in self.clusters}
        for req in self._timers.items():
            if req.outcome is None and req.attempt is not None:
                tries[req.attempt.cluster.service].append(req.attempt)
        backing_off = dict.fromkeys(self.clusters, 0)
        for _, req in self.ctx.pending(self._retry):
            backing_off[req.cluster.service] += 1
        breakers = self.config.cluster.circuit_breakers
        budget = breakers.retry_budget
        if budget is None:
            max_retries = breakers.max_retries
        else:
            max_retries = max(budget.min_retry_concurrency,
                              int(budget.budget_percent / 100.0 * breakers.max_requests))
        for svc, c in self.clusters.items():
            live = tries[svc]
            where = f"cluster {svc}: "
            if not 0 <= c.rq_active <= c.max_requests:
                problems.append(f"{where}{c.rq_active} requests active, limit max_requests {c.max_requests}")
            per_host = [0] * len(c.hosts)
            for a in live:
                per_host[a.host] += 1
            if c.rq_active != len(live) or c.active != per_host:
                problems.append(f"{where}{c.rq_active} active ({c.active} per host) but {len(live)} tries in "
                                f"flight ({per_host})")
            retries = sum(1 for a in live if a.is_retry) + backing_off[svc]
            if c.retries_active != retries:
                problems.append(f"{where}{c.retries_active} retries active but {retries} retries in flight "
                                "or in back-off")
            if not 0 <= c.retries_active <= max_retries:
                problems.append(f"{where}{c.retries_active} retries active, limit "
                                f"{'max_retries' if budget is None else 'the retry budget'} {max_retries}")
            try:
                c.pool.check_limits(self.ctx, live)
            except RuntimeError as e:
                problems.append(f"{where}{e}")
        if problems:
            raise RuntimeError(f"gateway {self.name} at t={now!r}: " + "; ".join(problems))

    def results(self) -> dict:
        """Result hook: this instance's counters with its clusters' and connection pools' summed.

        ``tries_ts`` is the tries sent in each simulated second (whole run);
        the tries each host got are in each cluster's ``sent``.
        """
        clusters = [c.results() for c in self.clusters.values()]
        pools = [p.results() for p in self.pools.values()]
        reasons: dict[str, int] = {}
        for c in clusters:
            for k, v in c["retries_by_reason"].items():
                reasons[k] = reasons.get(k, 0) + v
        out = {"requests": self.requests, "busy_s": self.busy_s, "workers": self.config.workers,
               "timeouts": self.timeouts, "resets": self.resets, "up": self.up,
               "queue_len": len(self.queue), "busy": self.busy,
               "active": sum(sum(c.active) for c in self.clusters.values())}
        for key in ("tries", "per_try_timeouts", "overflow_max_requests", "retry_overflow"):
            out[key] = sum(c[key] for c in clusters)
        out["retries_by_reason"] = reasons
        for key in ("connects", "connect_timeouts", "cx_overflow", "pending_overflow"):
            out[key] = sum(p[key] for p in pools)
        out["tries_ts"] = self.tries_ts
        return out


__all__ = ["GatewayInstance", "UpstreamCluster"]
