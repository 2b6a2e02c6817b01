"""Statistical tests: fleetsim's queues against closed forms (docs/design.md#testing).

Each runs independent replications with the warm-up removed; the analytic
value must lie inside the 99% confidence interval and the interval must be
narrower than the stated tolerance.
"""

from __future__ import annotations

import pytest

from sim.analytic import (
    ekm1_mean_in_system,
    erlang_b,
    erlang_c,
    jackson_tandem_sojourn_s,
    md1_mean_wait_s,
    mm1_mean_sojourn_s,
    mmc_mean_wait_s,
    mmck_blocking,
    mmck_mean_wait_s,
)
from sim.metrics.summary import rows_by_name

from .stats import assert_matches, ci, load, replicate

pytestmark = pytest.mark.slow


def _backend(res, svc="api"):
    return res["summary"]["backend"][svc]


def test_mmc_mean_wait_and_p_wait_match_erlang_c():
    exp = load("mmc.yaml")
    lam = exp.workload.rate_schedule[0].rate_per_s
    mu = 1 / exp.topology.services["api"].service_time_s.mean
    c = exp.topology.services["api"].workers
    runs = replicate(exp)
    waits = [_backend(r)["mean_wait_ms"] / 1000 for r in runs]
    p_wait = [_backend(r)["p_wait"] for r in runs]
    util = [_backend(r)["utilization"] for r in runs]
    assert_matches(waits, mmc_mean_wait_s(lam, mu, c), 0.10, "M/M/4 mean wait (s)")
    assert_matches(p_wait, erlang_c(c, lam / mu), 0.05, "M/M/4 P(wait)")
    assert_matches(util, lam / (c * mu), 0.02, "M/M/4 utilization")


def test_mmck_blocking_matches_finite_queue_formula():
    # c = 4, 4 waiting slots (K = 8), rho = 0.95: blocking is a few percent.
    exp = load("mmc.yaml", ["topology.services.api.queue_limit=4",
                            "workload.rate_schedule.0.rate_per_s=380", "duration_s=120"])
    lam, mu, c, k = 380.0, 100.0, 4, 8
    runs = replicate(exp)
    blocking = [_backend(r)["rejected"] / _backend(r)["attempts"] for r in runs]
    waits = [_backend(r)["mean_wait_ms"] / 1000 for r in runs]
    # The client sees each rejection as a 503 overflow.
    for r in runs:
        s = r["summary"]
        assert s["requests"]["failed"].get("backend_overflow", 0) > 0
    assert_matches(blocking, mmck_blocking(lam, mu, c, k), 0.08, "M/M/4/8 blocking")
    assert_matches(waits, mmck_mean_wait_s(lam, mu, c, k), 0.08, "M/M/4/8 mean wait of admitted (s)")


def test_md1_mean_wait_matches_pollaczek_khinchine():
    # The M/M/c fleet (no gateway or network delay) with one worker and a
    # constant 10 ms service: an M/D/1 queue at rho = 0.7. Pollaczek-Khinchine:
    # Wq = rho S / (2 (1 - rho)); P(wait) = rho (Poisson arrivals see the
    # time average) and so is the utilization.
    lam, s = 70.0, 0.01
    exp = load("mmc.yaml", ["topology.services.api.workers=1", f"topology.services.api.service_time_s={s}",
                            f"workload.rate_schedule.0.rate_per_s={lam}", "replications=20"])
    runs = replicate(exp)
    waits = [_backend(r)["mean_wait_ms"] / 1000 for r in runs]
    assert_matches(waits, md1_mean_wait_s(lam, s), 0.05, "M/D/1 mean wait (s)")
    assert_matches([_backend(r)["p_wait"] for r in runs], lam * s, 0.02, "M/D/1 P(wait)")
    assert_matches([_backend(r)["utilization"] for r in runs], lam * s, 0.02, "M/D/1 utilization")


@pytest.mark.parametrize("service", ["exponential", "constant"])
def test_loss_system_blocking_matches_erlang_b(service):
    # queue_limit 0: the backend is an M/G/4/4 loss system; at a = lambda / mu
    # = 3 Erlangs, Erlang B gives the share of attempts the backend rejects,
    # whatever the service-time distribution beyond its mean (insensitivity).
    lam, mean_s, c = 300.0, 0.01, 4
    sets = ["topology.services.api.queue_limit=0", f"workload.rate_schedule.0.rate_per_s={lam}",
            "duration_s=125", "warmup_s=5"]
    if service == "constant":
        sets.append(f"topology.services.api.service_time_s={mean_s}")
    exp = load("mmc.yaml", sets)
    api = exp.topology.services["api"]
    assert (api.service_time_s.dist, api.service_time_s.mean, api.workers) == (service, mean_s, c)
    runs = replicate(exp)
    blocking = [_backend(r)["rejected"] / _backend(r)["attempts"] for r in runs]
    kendall = {"exponential": "M", "constant": "D"}[service]
    assert_matches(blocking, erlang_b(c, lam * mean_s), 0.03, f"M/{kendall}/4/4 blocking")
    # No wait: an admitted attempt always finds a free worker.
    assert all(_backend(r)["p_wait"] == 0.0 for r in runs)


def test_tandem_sojourn_matches_jackson():
    exp = load("tandem.yaml")
    lam = exp.workload.rate_schedule[0].rate_per_s
    mu1 = 1 / exp.topology.gateways["gw"].cpu_time_s.mean
    mu2 = 1 / exp.topology.services["api"].service_time_s.mean
    runs = replicate(exp)
    latency = [r["summary"]["latency_ms"]["mean"] / 1000 for r in runs]
    assert_matches(latency, jackson_tandem_sojourn_s(lam, [(mu1, 1), (mu2, 1)]), 0.06, "tandem sojourn (s)")


def _in_system(run, hosts):
    window = run["summary"]["simulated_s"] - run["summary"]["warmup_s"]
    rows = rows_by_name(run["instances"]["backend"])  # unequal_hosts.yaml asks for instance results
    return [rows[h]["in_system_s"] / window for h in hosts]


HOSTS = ["api-a1-0", "api-a1-1", "api-a1-2", "api-a1-3"]


def test_random_split_gives_mm1_per_host_and_round_robin_gives_e4m1():
    rand = replicate(load("unequal_hosts.yaml", ["topology.gateways.gw.cluster.lb_policy=RANDOM"]))
    rr = replicate(load("unequal_hosts.yaml", ["topology.gateways.gw.cluster.lb_policy=ROUND_ROBIN"]))
    lam = 120 / 4
    for k, host in enumerate(HOSTS):
        mu = 100.0 if k < 2 else 50.0
        # Little's law: L = lambda W.
        assert_matches([_in_system(r, HOSTS)[k] for r in rand], lam * mm1_mean_sojourn_s(lam, mu), 0.12,
                       f"RANDOM {host} mean in system")
        assert_matches([_in_system(r, HOSTS)[k] for r in rr], ekm1_mean_in_system(4, lam, mu), 0.12,
                       f"ROUND_ROBIN {host} mean in system")


def test_least_request_p2c_narrows_queue_spread_vs_round_robin():
    # At 80% load on the slow hosts, where the choice of policy matters most.
    busy = ["workload.rate_schedule.0.rate_per_s=160"]
    p2c = replicate(load("unequal_hosts.yaml", busy))
    rr = replicate(load("unequal_hosts.yaml", [*busy, "topology.gateways.gw.cluster.lb_policy=ROUND_ROBIN"]))

    def spread(run):
        # Mean in system on the slow hosts minus on the fast ones (unbiased,
        # unlike max - min, so it can be compared with the closed form).
        q = _in_system(run, HOSTS)
        return (q[2] + q[3]) / 2 - (q[0] + q[1]) / 2

    diff = [spread(b) - spread(a) for a, b in zip(p2c, rr, strict=True)]
    mean, half = ci(diff)
    assert mean - half > 0, f"P2C does not narrow the spread: {mean:.3f} +/- {half:.3f}"
    # Round robin leaves the slow hosts with about 2.6 in system against 0.5 on
    # the fast ones (E4/M/1, closed form); P2C steers work away from the long
    # queues and keeps the spread under half of that.
    rr_spread = ekm1_mean_in_system(4, 40, 50) - ekm1_mean_in_system(4, 40, 100)
    assert_matches([spread(b) for b in rr], rr_spread, 0.12, "ROUND_ROBIN spread of mean in system")
    p2c_spread, p2c_half = ci([spread(a) for a in p2c])
    assert p2c_spread + p2c_half < 0.5 * rr_spread, f"P2C spread {p2c_spread:.3f} +/- {p2c_half:.3f}"
    # P2C sends the slow hosts less than their round-robin quarter.
    def attempts(run, hosts):
        rows = rows_by_name(run["instances"]["backend"])
        return sum(rows[h]["attempts"] for h in hosts)

    slow_share = [attempts(r, HOSTS[2:]) / attempts(r, HOSTS) for r in p2c]
    m, h = ci(slow_share)
    assert m + h < 0.5


def test_gateway_retry_amplification_and_failure_match_independent_failures():
    from sim.analytic import retry_amplification, retry_failure_probability

    exp = load("retries.yaml")
    f = exp.topology.services["api"].error_probability
    n = exp.topology.gateways["gw"].route.retry_policy.num_retries
    runs = replicate(exp)
    amp = [r["summary"]["retries"]["amplification"] for r in runs]
    fail = [r["summary"]["requests"]["failed"].get("backend_error", 0) / r["summary"]["requests"]["offered"]
            for r in runs]
    assert_matches(amp, retry_amplification(f, n), 0.01, "retry amplification")
    assert_matches(fail, retry_failure_probability(f, n), 0.0, "client-visible failure", abs_width=0.004)


def test_client_retries_follow_the_same_closed_form():
    from sim.analytic import retry_amplification, retry_failure_probability

    exp = load("retries.yaml", ["topology.gateways.gw.route.retry_policy=null",
                                "workload.client.max_attempts=3", "workload.client.backoff.base_s=0.001"])
    f = 0.3
    runs = replicate(exp)
    tries = [r["summary"]["client"]["tries"] / r["summary"]["client"]["calls"] for r in runs]
    fail = [r["summary"]["requests"]["failed"].get("backend_error", 0) / r["summary"]["requests"]["offered"]
            for r in runs]
    assert_matches(tries, retry_amplification(f, 2), 0.01, "client tries per call")
    assert_matches(fail, retry_failure_probability(f, 2), 0.0, "client-visible failure", abs_width=0.004)


def test_max_requests_overflow_matches_mmck_blocking():
    # Zero latency: requests in flight to the cluster = customers in the backend
    # station, so max_requests = K turns the M/M/4 station into M/M/4/K.
    exp = load("mmc.yaml", ["topology.gateways.gw.cluster.circuit_breakers.max_requests=8",
                            "workload.rate_schedule.0.rate_per_s=380", "duration_s=120"])
    runs = replicate(exp)
    frac = [r["summary"]["retries"]["overflow"]["max_requests"] / r["summary"]["requests"]["offered"]
            for r in runs]
    assert_matches(frac, mmck_blocking(380.0, 100.0, 4, 8), 0.08, "max_requests overflow fraction")
