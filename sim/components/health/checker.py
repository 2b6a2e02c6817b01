"""Envoy's active health checker for one gateway's cluster.

Follows source/extensions/health_checkers/common/health_checker_base_impl.cc
and the HTTP checker (see :class:`sim.config.models.HealthCheck`). A probe
is real load: it crosses the gateway's network links to the host and back
and is served by the backend like a request (a worker, a service time, the
backend's errors, its crash and refusal while down). Its draws (interval
and initial jitter) come from the stream ``<gateway>.<service>.health_check``.

Where this departs from Envoy: a probe takes one service time of the service
(the backend has no separate cost for a health endpoint yet) and rides a
connection that is always open (no connect round trip after a failed check);
a crashed gateway sends no probes.
"""

from __future__ import annotations

import math

from sim.components.request import CONNECT_FAILURE, HOST_STATUS, OK, UPSTREAM_RESET, Attempt
from sim.config.models import HealthCheck
from sim.engine import SimContext, UniformStream

from .envoy_time import ms

#: Bytes of a health-check request and of its answer on the wire.
PROBE_BYTES = 150

# Envoy's HealthTransition.
UNCHANGED, CHANGED, CHANGE_PENDING = 0, 1, 2


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

    def __init__(self, ctx: SimContext, name: str, config: HealthCheck, health, cluster, gateway):
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
        self.interval_ms = ms(config.interval_s)
        # Envoy's fallbacks between intervals are resolved in the config (HealthCheck).
        self.unhealthy_ms = ms(config.unhealthy_interval_s)
        self.unhealthy_edge_ms = ms(config.unhealthy_edge_interval_s)
        self.healthy_edge_ms = ms(config.healthy_edge_interval_s)
        self.no_traffic_ms = ms(config.no_traffic_interval_s)
        self.no_traffic_healthy_ms = ms(config.no_traffic_healthy_interval_s)
        self.initial_jitter_ms = ms(config.initial_jitter_s)
        self.interval_jitter_ms = ms(config.interval_jitter_s)
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
        """Start the measurement window of the probe counters now (``probes_ts`` keeps the whole run)."""
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
        self.cluster.probe_out[i].send(PROBE_BYTES, backend.accept, probe)

    def _replied(self, probe: Probe) -> None:
        """The backend answered (or refused, or reset): the answer travels back."""
        if probe.abandoned:  # the checker closed the connection at its timeout
            return
        self.cluster.probe_back[probe.host].send(PROBE_BYTES, self._arrived, probe)

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

    def results(self) -> dict:
        """Result hook: the window's probe counters and the whole run's probes per second.

        ``probes``, ``failures``, ``timeouts`` and ``probes_by_host`` count the
        measurement window; ``probes_ts`` counts probes sent in each simulated
        second of the whole run.
        """
        return {"probes": self.probes, "failures": self.failures, "timeouts": self.timeouts,
                "probes_by_host": list(self.probes_by_host), "probes_ts": self.probes_ts}


__all__ = ["PROBE_BYTES", "HealthChecker", "Probe"]
