"""Host health as one gateway sees it: outlier detection, active health checks, panic.

Each gateway instance keeps, per cluster, a :class:`HostHealth`: which hosts
its outlier detector has ejected and which fail its active health checks. A
host is used by the load balancer only if neither excludes it; when the
healthy share falls below ``common_lb_config.healthy_panic_threshold`` the
balancer uses every host (Envoy's panic mode). A change of health reaches
the balancer as Envoy delivers it to its workers, at once or after the
cluster's update merge window (see :class:`HostHealth`), and then switches
the cluster's picker (:class:`sim.components.lb.HostSelector`), so the
per-request path never tests health.

- :class:`OutlierDetector` follows source/common/upstream/
  outlier_detection_impl.cc (see :class:`sim.config.models.OutlierDetection`):
  consecutive 5xx and gateway failures checked on every try's outcome, an
  interval tick that returns hosts whose ejection time has passed, ejects
  success-rate (and failure-percentage) outliers and lowers the ejection
  multiplier of hosts back in service.
- :class:`HealthChecker` follows source/extensions/health_checkers/common/
  health_checker_base_impl.cc and the HTTP checker (see
  :class:`sim.config.models.HealthCheck`). A probe is real load: it crosses
  the gateway's network links to the host and back and is served by the
  backend like a request (a worker, a service time, the backend's errors,
  its crash and refusal while down).

What a try's outcome means to the detector (Envoy without
``split_external_local_origin_errors``: local-origin failures become HTTP
codes): 200 for ``ok``; 500 for a backend error; 503 for an overflow, a shed
expired attempt, a reset or a refused connection; 504 for a per-try or route
timeout.

Randomness (enforcing percentages, ejection jitter, probe jitter) comes from
streams of the gateway's own, ``<gateway>.<service>.outlier`` and
``<gateway>.<service>.health_check``, so switching these features on shifts
no other component's draws.

Counts (measurement window): ejections enforced by reason, detected by
reason, ``overflow`` (ejections refused by max_ejection_percent); probes sent
(per host), failures, timeouts. The change log of healthy and ejected hosts
and probes per second cover the whole run, like the other time series.

Where this departs from Envoy: a probe takes one service time of the
service (the backend has no separate cost for a health endpoint yet) and
rides a connection that is always open (no connect round trip after a failed
check); a crashed gateway sends no probes but keeps its detectors' state when
it restarts (a restarted Envoy starts afresh); with no healthy host and a
panic threshold of 0 Envoy answers 503 (no healthy upstream), here every host
is used; only tries the gateway reports through ``cluster.observe`` reach the
detector (answers, per-try and route timeouts).
"""

from __future__ import annotations

import math

from sim.config.models import Cluster, HealthCheck, OutlierDetection
from sim.engine import SimContext, UniformStream

from .request import (
    BACKEND_ERROR,
    BACKEND_OVERFLOW,
    CONNECT_FAILURE,
    DROPPED_EXPIRED,
    OK,
    PER_TRY_TIMEOUT,
    ROUTE_TIMEOUT,
    UPSTREAM_RESET,
    Attempt,
)

#: Bytes of a health-check request and of its answer on the wire.
PROBE_BYTES = 150

#: The HTTP status the outlier detector sees for each way a try can end at a host.
HOST_STATUS = {
    OK: 200,
    BACKEND_ERROR: 500,
    BACKEND_OVERFLOW: 503,
    DROPPED_EXPIRED: 503,
    UPSTREAM_RESET: 503,  # LocalOriginConnectFailed
    CONNECT_FAILURE: 503,  # LocalOriginConnectFailed
    PER_TRY_TIMEOUT: 504,  # LocalOriginTimeout
    ROUTE_TIMEOUT: 504,  # LocalOriginTimeout
}
_GATEWAY_ERRORS = (502, 503, 504)

# Ejection reasons: Envoy's OutlierEjectionType, lower case.
CONSECUTIVE_5XX = "consecutive_5xx"
CONSECUTIVE_GATEWAY_FAILURE = "consecutive_gateway_failure"
SUCCESS_RATE = "success_rate"
FAILURE_PERCENTAGE = "failure_percentage"

# Envoy's HealthTransition.
UNCHANGED, CHANGED, CHANGE_PENDING = 0, 1, 2

# Envoy compares whole milliseconds; sums of float seconds may fall an ulp short.
_EPS = 1e-9



def _ms(seconds: float) -> int:
    """A duration in whole milliseconds, as Envoy reads a protobuf Duration."""
    return round(seconds * 1000)


class HostHealth:
    """One gateway's view of one cluster's hosts.

    The detectors' state (``ejected``, ``hc_failed``) changes at once; the
    balancer sees it when Envoy's main thread posts the cluster's host set
    to the workers. A detector's change is a *mergeable* update (health
    only, no host added or removed), and Envoy delivers those through the
    cluster's update merge window W (``common_lb_config.update_merge_window``,
    default 1 s; source/common/upstream/cluster_manager_impl.cc,
    ``ClusterManagerImpl::scheduleUpdate`` and ``applyUpdates``):

    - if more than W has passed since the last delivery (whole milliseconds,
      ``delta_ms > W``), or W is 0, the update is delivered at once, and a
      pending merged delivery is cancelled;
    - otherwise it waits: the first such update arms a timer for W, later
      ones join it, and when it fires the host set *as it is then* is
      delivered.

    Each delivery restarts the window. The first update after start is
    always out of the window (Envoy's ``last_updated_`` starts at the
    clock's epoch). :meth:`set_ejected` and :meth:`set_hc_failed` without
    ``mergeable`` act like Envoy's non-mergeable updates (delivered at once,
    a pending merge cancelled): tests use them to set a state directly.

    Args:
        ctx: simulation context.
        name: ``<gateway>.<service>``; the streams of its detectors are prefixed with it.
        config: the gateway pool's cluster settings.
        cluster: the gateway's :class:`~sim.components.gateway.UpstreamCluster`
            (its ``use_hosts`` switches the picker; its ``hosts``, links and
            in-flight counts serve the health checker).
        gateway: the gateway instance (a crashed one, ``up`` False, probes nothing).

    Attributes:
        ejected, hc_failed: per host, excluded by outlier detection / by active health checks
            (the detectors' view, as Envoy's ``/clusters`` health flags).
        panic: the balancer uses every host (as last delivered).
        changes: ``(t, healthy, ejected, hc_failed, panic)`` at t=0, after every change of the
            detectors' view and after every delivery that switches panic.
        deliveries: ``(t, merged)`` of every delivery to the balancer (whole run).
        cluster_updated, cluster_updated_via_merge, update_merge_cancelled,
            update_out_of_merge_window: Envoy's ``cluster_manager.*`` counters of the same
            names, for this cluster (whole run).
    """

    def __init__(self, ctx: SimContext, name: str, config: Cluster, cluster, gateway):
        self.env = ctx.env
        self.later = ctx.call_later
        self.name = name
        self.cluster = cluster
        self.n = n = len(cluster.hosts)
        self.ejected = [False] * n
        self.hc_failed = [False] * n
        # Envoy rounds the percentage to a whole number.
        self.panic_threshold = round(config.common_lb_config.healthy_panic_threshold)
        self.panic = False
        self.changes: list[tuple[float, int, int, int, bool]] = [(0.0, n, 0, 0, False)]
        self.merge_window_s = config.common_lb_config.update_merge_window_s
        # Out of the window once delta_ms > W_ms, i.e. delta >= W_ms + 1 ms.
        self._out_of_window_s = (_ms(self.merge_window_s) + 1) / 1000.0
        self.delivered_s = -math.inf
        self._merge_armed = 0  # id of the armed merge timer; 0: none
        self._merge_ids = 0
        self.deliveries: list[tuple[float, bool]] = []
        self.cluster_updated = 0
        self.cluster_updated_via_merge = 0
        self.update_merge_cancelled = 0
        self.update_out_of_merge_window = 0
        self.outlier = None
        self.checker = None
        if config.outlier_detection is not None:
            self.outlier = OutlierDetector(ctx, name, config.outlier_detection, self)
            cluster.observe = self.outlier.observe
        if config.health_check is not None:
            self.checker = HealthChecker(ctx, name, config.health_check, self, cluster, gateway)

    def start(self) -> None:
        """Arm the outlier detector's interval and the first probes (at t=0)."""
        if self.outlier is not None:
            self.outlier.start()
        if self.checker is not None:
            self.checker.start()

    def reset(self) -> None:
        """Start the measurement window of the counters now."""
        if self.outlier is not None:
            self.outlier.reset()
        if self.checker is not None:
            self.checker.reset()

    def set_ejected(self, host: int, ejected: bool, mergeable: bool = False) -> None:
        """Set ``host``'s outlier state; the detector's change is ``mergeable``."""
        self.ejected[host] = ejected
        self._changed(mergeable)

    def set_hc_failed(self, host: int, failed: bool, mergeable: bool = False) -> None:
        """Set ``host``'s active health-check state; the checker's change is ``mergeable``."""
        self.hc_failed[host] = failed
        self._changed(mergeable)

    def usable(self, host: int) -> bool:
        """Neither detector excludes ``host``."""
        return not self.ejected[host] and not self.hc_failed[host]

    def _changed(self, mergeable: bool) -> None:
        """Envoy's priority-update callback: deliver now or join the merge window."""
        now = self.env._now
        window = self.merge_window_s
        out_of_window = now - self.delivered_s + _EPS >= self._out_of_window_s
        if window <= 0 or out_of_window or not mergeable:
            if window > 0:
                if mergeable:
                    self.update_out_of_merge_window += 1
                if self._merge_armed:
                    self._merge_armed = 0  # the timer, when it fires, finds itself disarmed
                    self.update_merge_cancelled += 1
            self.cluster_updated += 1
            self._deliver(False)
        else:
            if not self._merge_armed:
                self._merge_ids += 1
                self._merge_armed = self._merge_ids
                self.later(window, self._merge_fired, self._merge_ids)
            self._log()

    def _merge_fired(self, timer: int) -> None:
        """Envoy's applyUpdates: the merged updates reach the balancer."""
        if timer != self._merge_armed:
            return
        self._merge_armed = 0
        self.cluster_updated_via_merge += 1
        panic = self.panic
        self._deliver(True)
        if self.panic != panic:
            self._log()

    def _deliver(self, merged: bool) -> None:
        """The workers rebuild their host sets from the detectors' state now."""
        now = self.env._now
        self.delivered_s = now
        self.deliveries.append((now, merged))
        ej = self.ejected
        hc = self.hc_failed
        n = self.n
        healthy = [i for i in range(n) if not ej[i] and not hc[i]]
        h = len(healthy)
        # Envoy: panic when 100 x healthy / hosts < threshold. With no healthy
        # host and the threshold at 0 Envoy answers 503 (no healthy upstream);
        # the router here always needs a host, so every host is used then too.
        panic = h == 0 or 100.0 * h / n < self.panic_threshold
        if panic:
            self.cluster.use_hosts(None, True)
        elif h == n:
            self.cluster.use_hosts(None, False)
        else:
            self.cluster.use_hosts(healthy, False)
        self.panic = panic
        if not merged:
            self._log()

    def _log(self) -> None:
        ej = self.ejected
        hc = self.hc_failed
        h = sum(1 for i in range(self.n) if not ej[i] and not hc[i])
        self.changes.append((self.env._now, h, sum(ej), sum(hc), self.panic))


class OutlierDetector:
    """Envoy's outlier detector for one gateway's cluster (see :class:`OutlierDetection`).

    When an ejection or a return takes effect in the balancer (Envoy 1.40,
    measured on the reference fleet): the detector flags the host at once
    (``ejectHost`` / ``unejectHost`` set or clear FAILED_OUTLIER_CHECK, log
    the event and run the changed-state callbacks), and the cluster rebuilds
    its host set (``ClusterImplBase::reloadHealthyHosts``, upstream_impl.cc),
    but that rebuild reaches the workers' balancers through the cluster
    manager's update merge window (see :class:`HostHealth`): at once if the
    cluster's last delivery is more than ``update_merge_window`` (1 s by
    default) old, else when the merge timer, armed for one window by the
    first waiting update, fires. So the first ejection of a quiet cluster
    stops its traffic at once, while a host ejected again within a window of
    its return (``consecutive_5xx`` errors after the tick that returned it)
    keeps its share of the traffic for one whole window after that second
    ejection; a return within a window of the last delivery is likewise
    held back a window. The window does not depend on ``interval``,
    ``base_ejection_time``, ``max_ejection_percent`` or the ejection count.
    Meanwhile the flagged host's tries still count (its consecutive count
    runs past the threshold without a second ejection, Envoy's ``==`` test).

    Attributes:
        ejections: ejections enforced in the window, by reason.
        detected: outliers detected in the window, by reason, enforced or not.
        overflow: ejections refused by ``max_ejection_percent`` (Envoy's ejections_overflow).
        multiplier: per host, Envoy's ejectTimeBackoff.
        num_ejections: per host, over the whole run.
        log: ``(t, host, "eject" | "uneject", reason)`` over the whole run.
    """

    def __init__(self, ctx: SimContext, name: str, config: OutlierDetection, health: HostHealth):
        self.env = ctx.env
        self.later = ctx.call_later
        self.config = config
        self.health = health
        self.n = n = health.n
        self.uniform = UniformStream(ctx.rng(f"{name}.outlier"))
        self.interval_s = config.interval_s
        self.base_s = config.base_ejection_time_s
        self.max_s = config.max_ejection_time_s if config.max_ejection_time_s is not None \
            else max(300.0, self.base_s)
        self.jitter_ms = _ms(config.max_ejection_time_jitter_s)
        self.consecutive_5xx = config.consecutive_5xx
        self.consecutive_gateway_failure = config.consecutive_gateway_failure
        self.enforcing = {
            CONSECUTIVE_5XX: config.enforcing_consecutive_5xx,
            CONSECUTIVE_GATEWAY_FAILURE: config.enforcing_consecutive_gateway_failure,
            SUCCESS_RATE: config.enforcing_success_rate,
            FAILURE_PERCENTAGE: config.enforcing_failure_percentage,
        }
        self.c5xx = [0] * n
        self.cgw = [0] * n
        # The success-rate bucket being written this interval (Envoy swaps two).
        self.total = [0] * n
        self.succeeded = [0] * n
        self.multiplier = [0] * n
        self.num_ejections = [0] * n
        self.last_ejection: list[float | None] = [None] * n
        self.last_unejection: list[float | None] = [None] * n
        self.jitter_s = [0.0] * n
        self.active_ejections = 0
        self.log: list[tuple[float, int, str, str]] = []
        self.reset()

    def reset(self) -> None:
        self.ejections: dict[str, int] = {}
        self.detected: dict[str, int] = {}
        self.overflow = 0

    def start(self) -> None:
        self.later(self.interval_s, self._tick)

    # -- every try (sim.components.gateway calls cluster.observe)
    def observe(self, host: int, outcome: str) -> None:
        """A try to ``host`` ended with ``outcome`` (Envoy's putHttpResponseCode)."""
        if outcome == OK:
            self.total[host] += 1
            self.succeeded[host] += 1
            self.c5xx[host] = 0
            self.cgw[host] = 0
            return
        status = HOST_STATUS.get(outcome)
        if status is None:  # a local reply: the host never saw the try
            return
        self.total[host] += 1
        if status < 500:
            self.succeeded[host] += 1
            self.c5xx[host] = 0
            self.cgw[host] = 0
            return
        if status in _GATEWAY_ERRORS:
            self.cgw[host] += 1
            if self.cgw[host] == self.consecutive_gateway_failure:
                self._consecutive(host, CONSECUTIVE_GATEWAY_FAILURE)
        else:
            self.cgw[host] = 0
        self.c5xx[host] += 1
        # Envoy fires when the count reaches the threshold, not beyond it: a
        # host that stays ejected keeps counting and fires again only after
        # its count is reset (by this ejection, or when it returns).
        if self.c5xx[host] == self.consecutive_5xx:
            self._consecutive(host, CONSECUTIVE_5XX)

    def _consecutive(self, host: int, reason: str) -> None:
        if self.health.ejected[host]:
            return
        self.detected[reason] = self.detected.get(reason, 0) + 1
        self._eject(host, reason)
        if reason == CONSECUTIVE_5XX:
            self.c5xx[host] = 0
        else:
            self.cgw[host] = 0

    def _enforce(self, reason: str) -> bool:
        percent = self.enforcing[reason]
        return percent >= 100 or (percent > 0 and self.uniform() * 100.0 < percent)

    def _eject(self, host: int, reason: str) -> None:
        """Envoy's ejectHost: the max_ejection_percent guard, the enforcing draw, the multiplier."""
        config = self.config
        allowed = 100.0 * (self.active_ejections + 1) / self.n <= config.max_ejection_percent
        if config.always_eject_one_host and self.active_ejections == 0:
            allowed = True
        if not allowed:
            self.overflow += 1
            return
        if not self._enforce(reason):
            return
        now = self.env._now
        self.active_ejections += 1
        self.ejections[reason] = self.ejections.get(reason, 0) + 1
        self.num_ejections[host] += 1
        self.last_ejection[host] = now
        self.jitter_s[host] = int(self.uniform() * (self.jitter_ms + 1)) / 1000.0 if self.jitter_ms else 0.0
        if self.multiplier[host] * self.base_s < self.max_s + self.base_s:
            self.multiplier[host] += 1
        self.log.append((now, host, "eject", reason))
        self.health.set_ejected(host, True, mergeable=True)

    def uneject(self, host: int, why: str = "time") -> None:
        """Return ``host`` to service; its consecutive counts restart from 0."""
        self.active_ejections -= 1
        self.c5xx[host] = 0
        self.cgw[host] = 0
        now = self.env._now
        self.last_unejection[host] = now
        self.log.append((now, host, "uneject", why))
        self.health.set_ejected(host, False, mergeable=True)

    def ejection_time_s(self, host: int) -> float:
        """How long ``host``'s current (or next) ejection lasts, jitter included."""
        return min(self.base_s * self.multiplier[host], self.max_s) + self.jitter_s[host]

    # -- every interval
    def _tick(self, _value=None) -> None:
        """Envoy's onIntervalTimer."""
        now = self.env._now
        ejected = self.health.ejected
        for i in range(self.n):
            if ejected[i] and self.ejection_time_s(i) <= now - self.last_ejection[i] + _EPS:
                self.uneject(i)
        total, succeeded = self.total, self.succeeded
        self.total = [0] * self.n
        self.succeeded = [0] * self.n
        self._success_rate_ejections(total, succeeded)
        for i in range(self.n):
            # Back in service for at least an interval: the multiplier decays.
            t = self.last_unejection[i]
            if not ejected[i] and t is not None and now - t + _EPS >= self.interval_s and self.multiplier[i]:
                self.multiplier[i] -= 1
        self.later(self.interval_s, self._tick)

    def _success_rate_ejections(self, total: list[int], succeeded: list[int]) -> None:
        """Envoy's processSuccessRateEjections over the interval that just ended."""
        c = self.config
        n = self.n
        if n < c.success_rate_minimum_hosts and n < c.failure_percentage_minimum_hosts:
            return
        ejected = self.health.ejected
        sr_hosts: list[tuple[int, float]] = []
        fp_hosts: list[tuple[int, float]] = []
        for i in range(n):
            if ejected[i] or not total[i]:
                continue
            rate = succeeded[i] * 100.0 / total[i]
            if total[i] >= c.success_rate_request_volume:
                sr_hosts.append((i, rate))
            if total[i] >= c.failure_percentage_request_volume:
                fp_hosts.append((i, rate))
        if sr_hosts and len(sr_hosts) >= c.success_rate_minimum_hosts:
            mean = math.fsum(r for _, r in sr_hosts) / len(sr_hosts)
            stdev = math.sqrt(math.fsum((r - mean) ** 2 for _, r in sr_hosts) / len(sr_hosts))
            threshold = mean - c.success_rate_stdev_factor / 1000.0 * stdev
            for i, rate in sr_hosts:
                if rate < threshold:
                    self.detected[SUCCESS_RATE] = self.detected.get(SUCCESS_RATE, 0) + 1
                    self._eject(i, SUCCESS_RATE)
        if fp_hosts and len(fp_hosts) >= c.failure_percentage_minimum_hosts:
            for i, rate in fp_hosts:
                # A host the success-rate pass just ejected is not ejected twice.
                if 100.0 - rate >= c.failure_percentage_threshold and not ejected[i]:
                    self.detected[FAILURE_PERCENTAGE] = self.detected.get(FAILURE_PERCENTAGE, 0) + 1
                    self._eject(i, FAILURE_PERCENTAGE)


class Probe(Attempt):
    """One health-check request to one host; travels and is served like an attempt."""

    __slots__ = ("sent_s",)


class HealthChecker:
    """Envoy's active health checker for one gateway's cluster (see :class:`HealthCheck`).

    Attributes:
        probes: probes sent in the window; ``probes_by_host`` likewise per host.
        failures: failed checks in the window (Envoy's health_check.failure);
            ``timeouts`` of them timed out.
        probes_ts: probes sent in each simulated second (the whole run).
        transitions: ``(t, host, "unhealthy" | "healthy")`` over the whole run.
    """

    def __init__(self, ctx: SimContext, name: str, config: HealthCheck, health: HostHealth, cluster, gateway):
        self.env = ctx.env
        self.later = ctx.call_later
        self.config = config
        self.health = health
        self.cluster = cluster
        self.gateway = gateway
        self.n = n = health.n
        self.uniform = UniformStream(ctx.rng(f"{name}.health_check"))
        self.timeout_s = config.timeout_s
        # Envoy keeps every interval in whole milliseconds.
        self.interval_ms = _ms(config.interval_s)
        self.unhealthy_ms = _ms(config.unhealthy_interval_s) if config.unhealthy_interval_s else self.interval_ms
        self.unhealthy_edge_ms = (_ms(config.unhealthy_edge_interval_s) if config.unhealthy_edge_interval_s
                                  else self.unhealthy_ms)
        self.healthy_edge_ms = (_ms(config.healthy_edge_interval_s) if config.healthy_edge_interval_s
                                else self.interval_ms)
        self.no_traffic_ms = _ms(config.no_traffic_interval_s)
        self.no_traffic_healthy_ms = (_ms(config.no_traffic_healthy_interval_s)
                                      if config.no_traffic_healthy_interval_s else self.no_traffic_ms)
        self.initial_jitter_ms = _ms(config.initial_jitter_s)
        self.interval_jitter_ms = _ms(config.interval_jitter_s)
        self.jitter_percent = config.interval_jitter_percent
        self.retriable = frozenset(config.http_health_check.retriable_statuses)
        self.first = [True] * n
        self.num_healthy = [0] * n
        self.num_unhealthy = [0] * n
        self.inflight: list[Probe | None] = [None] * n
        self.traffic = False
        self.probes_ts = [0] * max(1, math.ceil(ctx.duration_s))
        self.transitions: list[tuple[float, int, str]] = []
        self.reset()

    def reset(self) -> None:
        self.probes = 0
        self.failures = 0
        self.timeouts = 0
        self.probes_by_host = [0] * self.n

    def start(self) -> None:
        """Envoy's onInitialInterval for every host."""
        for i in range(self.n):
            if self.initial_jitter_ms == 0:
                self.later(0.0, self._probe, i)
            else:
                self.later(self._with_jitter(0, self.initial_jitter_ms), self._probe, i)

    # -- intervals
    def _with_jitter(self, base_ms: int, jitter_ms: int) -> float:
        """Envoy's intervalWithJitter, in seconds: whole-millisecond uniform jitters, at least 1 ms."""
        mod = self.jitter_percent * base_ms // 100
        if mod > 0:
            base_ms += int(self.uniform() * mod)
        if jitter_ms > 0:
            base_ms += int(self.uniform() * jitter_ms)
        return max(1, base_ms) / 1000.0

    def _traffic_seen(self) -> bool:
        # Envoy asks whether the cluster ever opened an upstream connection
        # (upstream_cx_total used); here, whether it ever sent a try.
        if not self.traffic:
            cluster = self.cluster
            self.traffic = cluster.rq_active > 0 or any(cluster.sent)
        return self.traffic

    def _interval_s(self, passed: bool, transition: int) -> float:
        """Envoy's interval(state, changed_state), jitter included."""
        pending = transition == CHANGE_PENDING
        if self._traffic_seen():
            if passed:
                base = self.healthy_edge_ms if pending else self.interval_ms
            else:
                base = self.unhealthy_edge_ms if pending else self.unhealthy_ms
        else:
            base = self.no_traffic_healthy_ms if passed and not pending else self.no_traffic_ms
        return self._with_jitter(base, self.interval_jitter_ms)

    # -- one check
    def _probe(self, i: int) -> None:
        if not self.gateway.up:  # a crashed gateway sends nothing; look again an interval later
            self.later(self.interval_ms / 1000.0, self._probe, i)
            return
        now = self.env._now
        backend = self.cluster.hosts[i]
        probe = Probe(None, None, i, backend)
        probe.sent_s = now
        probe.deadline = now + self.timeout_s
        probe.on_reply = self._replied
        self.inflight[i] = probe
        self.probes += 1
        self.probes_by_host[i] += 1
        sec = int(now)
        if sec < len(self.probes_ts):
            self.probes_ts[sec] += 1
        self.later(self.timeout_s, self._timed_out, probe)
        self.cluster.links_out[i].send(PROBE_BYTES, backend.accept, probe)

    def _replied(self, probe: Probe) -> None:
        """The backend answered (or refused, or reset): the answer travels back."""
        if probe.abandoned:  # the checker closed the connection at its timeout
            return
        self.cluster.links_back[probe.host].send(PROBE_BYTES, self._arrived, probe)

    def _arrived(self, probe: Probe) -> None:
        i = probe.host
        if probe.abandoned or self.inflight[i] is not probe:
            return
        self.inflight[i] = None
        outcome = probe.outcome
        if outcome == OK:
            self._passed(i)
        elif outcome in (UPSTREAM_RESET, CONNECT_FAILURE):
            self._failed(i, network=True)  # Envoy's NETWORK failure: counts towards the threshold
        else:
            self._failed(i, network=False, retriable=HOST_STATUS.get(outcome, 503) in self.retriable)

    def _timed_out(self, probe: Probe) -> None:
        i = probe.host
        if self.inflight[i] is not probe:
            return
        probe.abandoned = True  # the backend's work on it is wasted
        self.inflight[i] = None
        self.timeouts += 1
        self._failed(i, network=True)

    def _passed(self, i: int) -> None:
        """Envoy's handleSuccess."""
        health = self.health
        self.num_unhealthy[i] = 0
        transition = UNCHANGED
        if health.hc_failed[i]:
            self.num_healthy[i] += 1
            if self.first[i] or self.num_healthy[i] == self.config.healthy_threshold:
                transition = CHANGED
                self.transitions.append((self.env._now, i, "healthy"))
                health.set_hc_failed(i, False, mergeable=True)
            else:
                transition = CHANGE_PENDING
        self.first[i] = False
        outlier = health.outlier
        if (outlier is not None and health.ejected[i] and not health.hc_failed[i]
                and outlier.config.successful_active_health_check_uneject_host):
            outlier.uneject(i, "health_check")
        self.later(self._interval_s(True, transition), self._probe, i)

    def _failed(self, i: int, network: bool, retriable: bool = False) -> None:
        """Envoy's handleFailure / setUnhealthy."""
        health = self.health
        self.num_healthy[i] = 0
        self.failures += 1
        transition = UNCHANGED
        if not health.hc_failed[i]:
            self.num_unhealthy[i] += 1
            # Hosts start healthy here, but Envoy holds a host unhealthy until
            # its first pass: a first check that fails leaves it unhealthy.
            if (self.first[i] or (not network and not retriable)
                    or self.num_unhealthy[i] == self.config.unhealthy_threshold):
                transition = CHANGED
                self.transitions.append((self.env._now, i, "unhealthy"))
                health.set_hc_failed(i, True, mergeable=True)
            else:
                transition = CHANGE_PENDING
        self.first[i] = False
        self.later(self._interval_s(False, transition), self._probe, i)


def make_host_health(ctx: SimContext, name: str, config: Cluster, cluster, gateway) -> HostHealth | None:
    """The cluster's :class:`HostHealth`, or None when neither detector is configured."""
    if config.outlier_detection is None and config.health_check is None:
        return None
    return HostHealth(ctx, name, config, cluster, gateway)


# --------------------------------------------------------------------------- results


def _per_second_means(changes: list[tuple], field: int, n: int, end_s: float) -> list[float]:
    """Time average of ``changes[k][field]`` over each second [s, s+1) up to ``end_s``."""
    out = [0.0] * n
    for k, entry in enumerate(changes):
        a = entry[0]
        b_end = changes[k + 1][0] if k + 1 < len(changes) else end_s
        v = float(entry[field])
        while a < b_end:
            s = int(a)
            if s >= n:
                break
            b = min(b_end, s + 1.0)
            out[s] += v * (b - a)
            a = b
    for s in range(n):
        width = min(1.0, end_s - s)
        if width > 0:
            out[s] /= width
    return out


def fleet_health_metrics(gateways: list, n_seconds: int, end_s: float, window_s: float) -> dict:
    """Outlier and health-check results of every gateway's clusters.

    Returns ``summary_outlier`` ({ejections, by_reason, detected, overflow}),
    ``summary_health_checks`` ({probes, probe_rate_per_s, failures, timeouts}),
    ``timeseries`` (per second: ``healthy_hosts``, ``ejected_hosts``,
    ``hc_failed_hosts`` time-averaged and summed over every gateway's view
    of every cluster; ``panic_clusters`` likewise; ``health_check_probes``
    sent), ``backends`` (probes received per backend name) and ``gateways``
    (per gateway name: probes, failures, ejections).
    """
    by_reason: dict[str, int] = {}
    detected: dict[str, int] = {}
    overflow = 0
    probes = failures = timeouts = 0
    probes_ts = [0] * n_seconds
    series = {"healthy_hosts": [0.0] * n_seconds, "ejected_hosts": [0.0] * n_seconds,
              "hc_failed_hosts": [0.0] * n_seconds, "panic_clusters": [0.0] * n_seconds}
    backends: dict[str, int] = {}
    per_gateway: dict[str, dict] = {}
    for gw in gateways:
        g = {"probes": 0, "failures": 0, "ejections": 0}
        for cluster in gw.clusters.values():
            health = getattr(cluster, "health", None)
            if health is None:
                continue
            for field, key in ((1, "healthy_hosts"), (2, "ejected_hosts"), (3, "hc_failed_hosts"),
                               (4, "panic_clusters")):
                col = series[key]
                for s, v in enumerate(_per_second_means(health.changes, field, n_seconds, end_s)):
                    col[s] += v
            od = health.outlier
            if od is not None:
                for k, v in od.ejections.items():
                    by_reason[k] = by_reason.get(k, 0) + v
                    g["ejections"] += v
                for k, v in od.detected.items():
                    detected[k] = detected.get(k, 0) + v
                overflow += od.overflow
            hc = health.checker
            if hc is not None:
                probes += hc.probes
                failures += hc.failures
                timeouts += hc.timeouts
                g["probes"] += hc.probes
                g["failures"] += hc.failures
                for s, v in enumerate(hc.probes_ts[:n_seconds]):
                    probes_ts[s] += v
                for host, v in zip(cluster.hosts, hc.probes_by_host, strict=True):
                    backends[host.name] = backends.get(host.name, 0) + v
        per_gateway[gw.name] = g
    return {
        "summary_outlier": {"ejections": sum(by_reason.values()), "by_reason": dict(sorted(by_reason.items())),
                            "detected": dict(sorted(detected.items())), "overflow": overflow},
        "summary_health_checks": {"probes": probes, "probe_rate_per_s": probes / window_s if window_s > 0 else 0.0,
                                  "failures": failures, "timeouts": timeouts},
        "timeseries": {**series, "health_check_probes": probes_ts},
        "backends": backends,
        "gateways": per_gateway,
    }


__all__ = ["HealthChecker", "HostHealth", "OutlierDetector", "Probe", "fleet_health_metrics", "make_host_health"]
