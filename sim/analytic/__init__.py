"""Closed forms used to cross-check simulation runs.

Erlang B/C, M/M/1, M/M/c, M/M/c/K, M/D/1 and M/G/1 waits, Jackson tandem
networks, retry amplification under independent failures and Envoy's
zone-aware local share. Times are in seconds and rates per second; see
:mod:`sim.analytic.queues` for the formulas and their sources.
"""

from sim.analytic.queues import (
    ekm1_mean_in_system,
    erlang_b,
    erlang_c,
    jackson_tandem_sojourn_s,
    md1_mean_wait_s,
    mg1_mean_wait_s,
    mm1_mean_sojourn_s,
    mm1_mean_wait_s,
    mmc_mean_sojourn_s,
    mmc_mean_wait_s,
    mmck_blocking,
    mmck_mean_wait_s,
    retry_amplification,
    retry_failure_probability,
    zone_aware_local_fraction,
)

__all__ = [
    "ekm1_mean_in_system",
    "erlang_b",
    "erlang_c",
    "jackson_tandem_sojourn_s",
    "md1_mean_wait_s",
    "mg1_mean_wait_s",
    "mm1_mean_sojourn_s",
    "mm1_mean_wait_s",
    "mmc_mean_sojourn_s",
    "mmc_mean_wait_s",
    "mmck_blocking",
    "mmck_mean_wait_s",
    "retry_amplification",
    "retry_failure_probability",
    "zone_aware_local_fraction",
]
