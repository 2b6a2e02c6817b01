"""fleetsim validate: metric definitions, goals and gates, and the quick validation on the real fleet.

The quick validation (``fleetsim validate --quick``) calibrates and runs every
scenario on real HAProxy, Envoy and backends and in the simulator; the suite
fails when it fails (its gate: non-timing metrics within their goals, timing
metrics within twice their goals on a run the harness trusted).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reference_gateway.fleet import RealRun, fault_targets, unsupported
from reference_gateway.harness import listening
from reference_gateway.scenarios import SCENARIOS, Observation, compare, goal_of, real_observation
from sim.config import load_experiment

ROOT = Path(__file__).resolve().parent.parent
REQUIRED_KEYS = {"scenario", "metric", "measured", "simulated", "error", "goal", "pass"}


def _obs(metric: str, values: list[float], n: int = 0, trust: bool = True) -> list[Observation]:
    return [Observation(values={metric: v}, counts={metric: n}, trustworthy=trust) for v in values]


# --------------------------------------------------------------------------- goals and gates


def test_relative_goal_passes_and_fails_at_the_bound():
    real = _obs("p50_ms", [10.0, 10.2, 9.8])
    ok = compare("a", "p50_ms", real, _obs("p50_ms", [10.9, 10.9, 10.9]), quick=False)
    bad = compare("a", "p50_ms", real, _obs("p50_ms", [11.2, 11.2, 11.2]), quick=False)
    assert ok["error"] == pytest.approx(0.09) and ok["pass"]
    assert bad["error"] == pytest.approx(0.12) and not bad["pass"]
    assert REQUIRED_KEYS <= set(ok)


def test_fraction_goal_widens_to_the_binomial_ci():
    # p = 0.5 over n = 400 requests: 1.96 * sqrt(0.25 / 400) = 0.049 > 0.02.
    small = compare("d", "failure_fraction", _obs("failure_fraction", [0.5, 0.5, 0.5], n=400 // 3),
                    _obs("failure_fraction", [0.54] * 3), quick=False)
    assert small["measurement_ci95"] == pytest.approx(1.96 * math.sqrt(0.25 / 399), rel=1e-3)
    assert small["pass"]
    # With 30,000 requests the CI (0.0057) is narrower than 2 pp: 2 pp rules.
    big = compare("d", "failure_fraction", _obs("failure_fraction", [0.5] * 3, n=10_000),
                  _obs("failure_fraction", [0.525] * 3), quick=False)
    assert not big["pass"] and big["goal_value"] == pytest.approx(0.02)


def test_quick_gate_on_timing_metrics():
    real = _obs("p99_ms", [100.0] * 3)
    within_twice = compare("a", "p99_ms", real, _obs("p99_ms", [135.0] * 3), quick=True)
    beyond_twice = compare("a", "p99_ms", real, _obs("p99_ms", [145.0] * 3), quick=True)
    untrusted = compare("a", "p99_ms", _obs("p99_ms", [100.0] * 3, trust=False), _obs("p99_ms", [145.0] * 3),
                        quick=True)
    assert not within_twice["pass"] and within_twice["gate"]
    assert not beyond_twice["gate"]
    assert not untrusted["pass"] and untrusted["gate"] and not untrusted["trustworthy"]
    # A full run gates on pass; a non-timing metric gates on pass in a quick run too.
    assert not compare("a", "p99_ms", real, _obs("p99_ms", [135.0] * 3), quick=False)["gate"]
    frac = compare("c", "amplification", _obs("amplification", [1.10] * 3, n=1000),
                   _obs("amplification", [1.13] * 3), quick=True)
    assert not frac["gate"]


def test_nrmse_of_goodput_curves():
    real = [Observation(curve=[100.0, 100.0, 0.0, 100.0]) for _ in range(3)]
    sim = [Observation(curve=[100.0, 100.0, 30.0, 100.0]) for _ in range(3)]
    row = compare("f", "goodput_curve", real, sim, quick=False)
    # RMS of (0, 0, 30, 0) = 15; mean measured goodput = 75: 0.2.
    assert row["error"] == pytest.approx(0.2)
    assert not row["pass"] and row["goal"] == "NRMSE ≤ 15%"
    assert row["measured_curve"] == [100.0, 100.0, 0.0, 100.0]


def test_every_scenario_metric_has_a_goal():
    for sc in SCENARIOS.values():
        for metric in sc.metrics:
            assert goal_of(metric if metric != "share" else "share_x").value > 0


# --------------------------------------------------------------------------- metric definitions


def _run(t_sched, latency, status, backends=None, warmup=1.0, duration=5.0) -> RealRun:
    return RealRun(start_at=0.0, warmup_s=warmup, duration_s=duration, t_sched=np.asarray(t_sched, float),
                   latency=np.asarray(latency, float), status=np.asarray(status, np.int16), load_meta={},
                   backends=backends or {}, gateways={}, clusters={}, haproxy=[], cpu_s={}, busy=None)


def test_real_metrics_count_the_window_only():
    sc = SCENARIOS["a"]
    exp = load_experiment(sc.path).variants["u30"]
    # 5 requests before the warm-up, 40 inside (4 s), 3 of them failed.
    t = [0.1, 0.2, 0.3, 0.4, 0.5] + [1.0 + 0.1 * i for i in range(40)]
    lat = [0.01] * 45
    st = [200] * 42 + [503, 503, 0]
    obs = real_observation(sc, exp, _run(t, lat, st))
    # Answered and completed in [1, 5): the 40 in the window but the one never answered.
    assert obs.values["throughput_rps"] == pytest.approx(39 / 4)
    assert obs.values["p50_ms"] == pytest.approx(10.0)


def test_real_shares_and_amplification():
    c = SCENARIOS["c"]
    exp = load_experiment(c.path).variants["any_host"]
    backends = {"api-lo-0": {"requests": 50}, "api-lo-1": {"requests": 50}, "api-lo-2": {"requests": 10}}
    obs = real_observation(c, exp, _run([1.5] * 100, [0.01] * 100, [200] * 99 + [500], backends))
    assert obs.values["amplification"] == pytest.approx(1.1)
    assert obs.values["failure_fraction"] == pytest.approx(0.01)
    assert obs.counts["amplification"] == 100


def test_real_rate_limit_metrics():
    sc = SCENARIOS["rl"]
    exp = load_experiment(sc.path).variants["steady"]
    # Window [2, 18): 10 requests inside, 3 of them 429, 1 never answered; 2 before the warm-up.
    run = _run([0.5, 1.0] + [2.0 + i for i in range(10)], [0.01] * 12, [200, 429] + [200] * 6 + [429] * 3 + [0],
               warmup=2.0, duration=18.0)
    run.redis = {"calls": 3200, "usec_per_call": 19.5}
    obs = real_observation(sc, exp, run)
    assert obs.values["admitted"] == 6.0  # answered, not 429
    assert obs.values["redis_calls_per_s"] == pytest.approx(3200 / 16)
    assert obs.values["redis_usec_per_call"] == pytest.approx(19.5)


def test_reference_fleet_runs_only_the_sidecars_rate_limit():
    base = load_experiment(SCENARIOS["rl"].path).variants["redis_killed"]
    assert unsupported(base) == []
    exp = load_experiment(SCENARIOS["rl"].path, ["faults.0.for_s=2"]).config
    assert [p for p, _ in unsupported(exp)] == ["faults.0.for_s"]  # Redis is not restarted within a run
    rl = base.topology.rate_limit.model_copy(update={"key": "service"})
    exp = base.model_copy(update={"topology": base.topology.model_copy(update={"rate_limit": rl})})
    assert [p for p, _ in unsupported(exp)] == ["topology.rate_limit.key"]


# --------------------------------------------------------------------------- one description, two executions


def test_fault_targets_resolve_like_the_simulator():
    exp = load_experiment(SCENARIOS["c"].path).config
    assert fault_targets(exp, exp.faults[0]) == ["api-lo-2"]
    f = load_experiment(SCENARIOS["f"].path).config
    assert fault_targets(f, f.faults[0]) == ["api-lo-0", "api-lo-1", "api-lo-2"]


def test_reference_fleet_refuses_what_it_cannot_run():
    exp = load_experiment(SCENARIOS["a"].path, ["workload.client.max_attempts=3"]).config
    assert unsupported(exp) == [("workload.client.max_attempts", "the load generator does not retry")]


# --------------------------------------------------------------------------- the command


def _fleetsim(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "sim.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def test_unknown_scenario_is_one_clear_error(tmp_path):
    res = _fleetsim("validate", "z", "--out", str(tmp_path), timeout=60)
    assert res.returncode == 2
    assert "unknown scenario(s) z" in res.stderr and "Traceback" not in res.stderr


def test_missing_profile_is_one_clear_error(tmp_path):
    res = _fleetsim("validate", "a", "--profile", str(tmp_path / "nope.yaml"), "--out", str(tmp_path), timeout=60)
    assert res.returncode == 2
    assert "--profile" in res.stderr and "no such file" in res.stderr


def _listening_ports() -> set[int]:
    return {port for _addr, port in listening()}


@pytest.mark.realfleet
def test_quick_validation_on_the_real_fleet(tmp_path):
    """Calibrate, run every scenario on the real fleet and in the simulator, gate the result."""
    before = _listening_ports()
    res = _fleetsim("validate", "--quick", "--out", str(tmp_path), timeout=1500)
    run_dirs = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(run_dirs) == 1, res.stderr[-3000:]
    run_dir = run_dirs[0]
    assert (run_dir / "validation.json").exists(), res.stderr[-3000:]
    rows = json.loads((run_dir / "validation.json").read_text())
    assert rows, res.stderr[-3000:]
    for row in rows:
        assert REQUIRED_KEYS <= set(row)
    scenarios = {r["scenario"].split(":")[0] for r in rows}
    assert scenarios == set(SCENARIOS)
    assert (run_dir / "validation.html").read_text().count("<section") >= len(SCENARIOS)
    # The profile it measured loads into the reference topology.
    loaded = load_experiment(SCENARIOS["a"].path, calibration=run_dir / "calibration.yaml")
    assert loaded.config.topology.gateways["gw"].cpu_time_s.mean > 0
    # Every process was stopped: nothing recorded as running, nothing new listening.
    for pid_file in run_dir.rglob("pids.json"):
        assert json.loads(pid_file.read_text()).get("procs", {}) in ({}, []), pid_file
    assert not (_listening_ports() - before)
    failing = [f"{r['scenario']} {r['metric']}: measured {r['measured']}, simulated {r['simulated']}, "
               f"error {r['error']} (goal {r['goal']})" for r in rows if not r["gate"]]
    assert res.returncode == (1 if failing else 0), res.stderr[-3000:]
    assert not failing, "\n".join(failing)


@pytest.mark.realfleet
def test_a_dead_server_is_one_clear_error_and_nothing_is_left(tmp_path):
    """Kill the backends under a running fleet: the next run names them; closing leaves nothing listening."""
    import signal

    from reference_gateway.fleet import RealFleet
    from reference_gateway.harness import HarnessError, port_closed

    exp = load_experiment(SCENARIOS["b"].path, ["duration_s=2", "warmup_s=0.5"]).config
    before = _listening_ports()
    with RealFleet(exp, tmp_path / "fleet") as fleet:
        run = fleet.run(exp, seed=1, tag="ok")
        # Answered (a busy machine may turn some into 503s): the fleet serves.
        assert (run.status > 0).sum() > 0.9 * len(run.status) > 500 and (run.status == 200).any()
        ports = [p for ps in fleet.backend_ports.values() for p in ps] + [fleet.listen_port]
        os.kill(fleet.harness.procs["backends"].pid, signal.SIGKILL)
        with pytest.raises(HarnessError) as e:
            fleet.run(exp, seed=2, tag="dead")
        assert str(e.value).startswith("backends: died during the run")
    assert all(port_closed(p) for p in ports)
    assert not (_listening_ports() - before)


@pytest.mark.realfleet
def test_resume_runs_only_what_is_missing(tmp_path):
    """A validation interrupted after its real runs resumes without starting the real fleet again."""
    from reference_gateway.validate import validate

    run_dir = tmp_path / "run"
    (run_dir / "real-b").mkdir(parents=True)
    (run_dir / "calibration.yaml").write_text((ROOT / "results" / "validation" / "calibration.yaml").read_text())
    stored = [{"values": {"share_api-lo-0": 0.40, "share_api-lo-1": 0.40, "share_api-lo-2": 0.20},
               "counts": {"share_api-lo-0": 5000, "share_api-lo-1": 5000, "share_api-lo-2": 5000},
               "curve": None, "trustworthy": True, "note": ""}] * 3
    (run_dir / "real-b" / "observations.json").write_text(json.dumps({"b": stored}))
    out = validate(["b"], quick=True, resume=run_dir, replications=2, log=lambda _m: None)
    assert out == run_dir
    rows = json.loads((run_dir / "validation.json").read_text())
    assert [r["metric"] for r in rows] == ["share_api-lo-0", "share_api-lo-1", "share_api-lo-2"]
    assert [r["measured"] for r in rows] == [0.4, 0.4, 0.2]
    assert all(r["pass"] for r in rows)  # the simulated shares are ~0.40 / 0.40 / 0.20
    # No real fleet was started: no harness files, no load generator output.
    assert not (run_dir / "real-b" / "pids.json").exists()
    assert not list((run_dir / "real-b").glob("*.npz"))


def test_tls_scenario_metrics_and_connection_count():
    """Scenario t: the real client opens as many connections as the simulated run does (to one); the
    simulated CPU per connection is the handshake mix's plus one request's (a closed form); only
    variants whose phases give pure full and resumed handshakes (shared keys, round robin) carry
    the CPU per handshake type."""
    from reference_gateway.tls_scenario import (
        connections,
        machine_speed,
        runs_phases,
        sim_observation,
    )
    from sim.fleet import Fleet

    sc = SCENARIOS["t"]
    loaded = load_experiment(sc.path, list(sc.quick))
    assert set(sc.quick_variants) <= set(loaded.variants)
    for name in ("own_keys", "shared_keys"):
        exp = loaded.variants[name]
        result = Fleet(exp).run()
        pool = result["summary"]["connections"]["pools"]["gw"]
        # Deterministic arrivals every 10 ms for 6 s: 599 or 600 by the last instant's rounding.
        assert connections(exp) == 600 and abs(pool["connections_opened"] - 600) <= 1
        obs = sim_observation(exp, result)
        tls = exp.topology.gateways["gw"].tls
        request = exp.topology.gateways["gw"].cpu_time_s.mean
        events = result["summary"]["gateway_cpu"]["pools"]["gw"]["events_by_cause"]
        per_conn = (events["tls_full_handshake"] * tls.full_handshake_cpu_s
                    + events["tls_resumed_handshake"] * tls.resumed_handshake_cpu_s) / events["request"] + request
        assert obs.values["cpu_per_connection_ms"] == pytest.approx(1000 * per_conn, rel=0.01)
        assert runs_phases(exp) == (name == "shared_keys")
        assert obs.values["cpu_full_handshake_conn_ms"] == pytest.approx(1000 * (tls.full_handshake_cpu_s + request))
        if runs_phases(exp):
            assert obs.values["cpu_resumed_handshake_conn_ms"] == pytest.approx(
                1000 * (tls.resumed_handshake_cpu_s + request))
        else:
            assert "cpu_resumed_handshake_conn_ms" not in obs.values
    # The machine's speed: the real full-handshake phases' mean over the calibrated figure.
    real = [Observation(values={"cpu_full_handshake_conn_ms": x}) for x in (1.2, 1.4)]
    assert machine_speed(real, [obs, obs]) == pytest.approx(1.3 / obs.values["cpu_full_handshake_conn_ms"])
    assert machine_speed([], [obs]) == 1.0


def test_a_scenarios_timing_metrics_gate_as_timing_in_quick_runs():
    """Scenario d's fractions depend on the machine's speed there: in quick runs a miss within
    twice the goal does not fail the suite; the full run's pass holds them to the goal."""
    real = [Observation(values={"overflow_fraction": 0.49}, counts={"overflow_fraction": 100000})] * 3
    sim = [Observation(values={"overflow_fraction": 0.468})] * 3
    plain = compare("d", "overflow_fraction", real, sim, quick=True)
    timed = compare("d", "overflow_fraction", real, sim, quick=True, timing=True)
    assert not plain["gate"] and not plain["pass"] and not plain["timing"]
    assert timed["gate"] and not timed["pass"] and timed["timing"]
    assert SCENARIOS["d"].timing_metrics == ("overflow_fraction", "failure_fraction")
