"""One gateway's view of one cluster's hosts: who is usable, panic, and when the balancer learns it.

:class:`HostHealth` holds the two detectors' verdicts per host (ejected by
outlier detection, failing active health checks) and delivers them to the
cluster's load balancer the way Envoy's cluster manager does, through the
update merge window. Its result hook, :meth:`HostHealth.results`, gives the
detectors' counters and the per-second host-state series.
"""

from __future__ import annotations

import math

from sim.config.models import Cluster
from sim.engine import SimContext

from .checker import HealthChecker
from .envoy_time import EPS, ms
from .outlier import OutlierDetector


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
        self._out_of_window_s = (ms(self.merge_window_s) + 1) / 1000.0
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
        out_of_window = now - self.delivered_s + EPS >= self._out_of_window_s
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
        if getattr(self.cluster.selector, "own_panic", False):
            # A picker with priorities or localities (sim.components.locality) decides panic per
            # priority level itself: it needs the healthy hosts whatever the cluster-wide share.
            self.cluster.use_hosts(healthy if h < n else None, False)
        elif panic:
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

    def results(self, n_seconds: int, end_s: float) -> dict:
        """This cluster's health results (the summary's words).

        Returns ``outlier`` (:meth:`OutlierDetector.results`, or None),
        ``health_check`` (:meth:`HealthChecker.results`, or None) and
        ``series``: per second, the time-averaged ``healthy_hosts``,
        ``ejected_hosts``, ``hc_failed_hosts`` and ``panic_clusters`` (1 while
        in panic), over the whole run.
        """
        series = {key: per_second_means(self.changes, field, n_seconds, end_s)
                  for field, key in ((1, "healthy_hosts"), (2, "ejected_hosts"), (3, "hc_failed_hosts"),
                                     (4, "panic_clusters"))}
        return {"outlier": self.outlier.results() if self.outlier is not None else None,
                "health_check": self.checker.results() if self.checker is not None else None,
                "series": series}


def make_host_health(ctx: SimContext, name: str, config: Cluster, cluster, gateway) -> HostHealth | None:
    """The cluster's :class:`HostHealth`, or None when neither detector is configured."""
    if config.outlier_detection is None and config.health_check is None:
        return None
    return HostHealth(ctx, name, config, cluster, gateway)


def per_second_means(changes: list[tuple], field: int, n: int, end_s: float) -> list[float]:
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


__all__ = ["HostHealth", "make_host_health", "per_second_means"]
