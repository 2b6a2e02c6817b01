"""Host health as one gateway sees it: outlier detection, active health checks, panic.

Each gateway instance keeps, per cluster, a :class:`HostHealth`
(:mod:`.hosts`): which hosts its outlier detector (:mod:`.outlier`) has
ejected and which fail its active health checks (:mod:`.checker`). A host is
used by the load balancer only if neither excludes it; when the healthy
share falls below ``common_lb_config.healthy_panic_threshold`` the balancer
uses every host (Envoy's panic mode). A change of health reaches the
balancer as Envoy delivers it to its workers, at once or after the cluster's
update merge window, and then switches the cluster's picker
(:class:`sim.components.lb.HostSelector`), so the per-request path never
tests health.

This package has the shape every subsystem takes (see ``sim/README.md``):
its config models (:class:`sim.config.models.OutlierDetection`,
:class:`sim.config.models.HealthCheck`), these component modules, one result
hook (:meth:`HostHealth.results`, whose figures
:func:`sim.metrics.summary.health_results` merges into ``summary.json``), a
report panel (:mod:`sim.report.health`) and its tests
(``tests/test_health.py``, ``tests/test_outlier_envoy_rules.py``).

What a try's outcome means to the detector is
:data:`sim.components.request.HOST_STATUS`. Randomness comes from streams of
the gateway's own, ``<gateway>.<service>.outlier`` and
``<gateway>.<service>.health_check``, so switching these features on shifts
no other component's draws.

Counts (measurement window): ejections enforced by reason, detected by
reason, ``overflow`` (ejections refused by max_ejection_percent); probes sent
(per host), failures, timeouts. The change log of healthy and ejected hosts
and probes per second cover the whole run, like the other time series.

Where this departs from Envoy: a crashed gateway keeps its detectors' state
when it restarts (a restarted Envoy starts afresh); with no healthy host and
a panic threshold of 0 Envoy answers 503 (no healthy upstream), here every
host is used; only tries the gateway reports through ``cluster.observe``
reach the detector (answers, per-try and route timeouts).
"""

from .checker import PROBE_BYTES, HealthChecker, Probe
from .hosts import HostHealth, make_host_health, per_second_means
from .outlier import (
    CONSECUTIVE_5XX,
    CONSECUTIVE_GATEWAY_FAILURE,
    FAILURE_PERCENTAGE,
    SUCCESS_RATE,
    OutlierDetector,
)

__all__ = ["CONSECUTIVE_5XX", "CONSECUTIVE_GATEWAY_FAILURE", "FAILURE_PERCENTAGE", "PROBE_BYTES", "SUCCESS_RATE",
           "HealthChecker", "HostHealth", "OutlierDetector", "Probe", "make_host_health", "per_second_means"]
