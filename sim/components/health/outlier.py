"""Envoy's outlier detector for one gateway's cluster.

Follows source/common/upstream/outlier_detection_impl.cc (see
:class:`sim.config.models.OutlierDetection`): consecutive 5xx and gateway
failures checked on every try's outcome, an interval tick that returns hosts
whose ejection time has passed, ejects success-rate (and failure-percentage)
outliers and lowers the ejection multiplier of hosts back in service. What a
try's outcome means to it is :data:`sim.components.request.HOST_STATUS`.
Its draws (enforcing percentages, ejection jitter) come from the stream
``<gateway>.<service>.outlier``.
"""

from __future__ import annotations

import math

from sim.components.request import HOST_STATUS, OK
from sim.config.models import OutlierDetection
from sim.engine import SimContext, UniformStream

from .envoy_time import EPS, ms

_GATEWAY_ERRORS = (502, 503, 504)

# Ejection reasons: Envoy's OutlierEjectionType, lower case.
CONSECUTIVE_5XX = "consecutive_5xx"
CONSECUTIVE_GATEWAY_FAILURE = "consecutive_gateway_failure"
SUCCESS_RATE = "success_rate"
FAILURE_PERCENTAGE = "failure_percentage"


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

    def __init__(self, ctx: SimContext, name: str, config: OutlierDetection, health):
        self.env = ctx.env
        self.later = ctx.call_later
        self.config = config
        self.health = health
        self.n = n = health.n
        self.uniform = UniformStream(ctx.rng(f"{name}.outlier"))
        self.interval_s = config.interval_s
        self.base_s = config.base_ejection_time_s
        self.max_s = config.max_ejection_time_s  # default max(300 s, base), resolved in OutlierDetection
        self.jitter_ms = ms(config.max_ejection_time_jitter_s)
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
        """Start the measurement window of ``ejections``, ``detected`` and ``overflow`` now."""
        self.ejections: dict[str, int] = {}
        self.detected: dict[str, int] = {}
        self.overflow = 0

    def start(self) -> None:
        """Arm the first interval tick, ``interval_s`` seconds from now; each tick arms the next."""
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
            if ejected[i] and self.ejection_time_s(i) <= now - self.last_ejection[i] + EPS:
                self.uneject(i)
        total, succeeded = self.total, self.succeeded
        self.total = [0] * self.n
        self.succeeded = [0] * self.n
        self._success_rate_ejections(total, succeeded)
        for i in range(self.n):
            # Back in service for at least an interval: the multiplier decays.
            t = self.last_unejection[i]
            if not ejected[i] and t is not None and now - t + EPS >= self.interval_s and self.multiplier[i]:
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

    def results(self) -> dict:
        """Window counters: ``ejections`` and ``detected`` by reason, ``overflow``."""
        return {"ejections": dict(self.ejections), "detected": dict(self.detected), "overflow": self.overflow}


__all__ = ["CONSECUTIVE_5XX", "CONSECUTIVE_GATEWAY_FAILURE", "FAILURE_PERCENTAGE", "SUCCESS_RATE",
           "OutlierDetector"]
