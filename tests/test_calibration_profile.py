"""Calibration profiles: a topology includes one; its values fill what the topology leaves unset."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from sim.config import ConfigError, load_experiment
from sim.fleet import Fleet
from sim.metrics.summary import rows_by_name

PROFILE = """\
version: 1
measured: {host: test}
network:
  same_az_s: {dist: empirical, quantiles: [[0, 0.00004], [0.5, 0.00006], [1, 0.0002]]}
  internet_s: {dist: constant, value: 0.0001}
gateway:
  cpu_time_s: {dist: constant, value: 0.00007}
backend:
  timer_error_s: {quantiles: [[0, -0.0005], [1, 0.0015]]}
"""

TOPOLOGY = """\
name: t
calibration: prof.yaml
regions: {r: {azs: [a]}}
clients: {r: {share: 1.0}}
balancers: {r: {}}
network:
  cross_az_s: 0.001
gateways:
  gw: {az: a, instances: 1, workers: 1}
  gw2: {az: a, instances: 1, workers: 1, cpu_time_s: 0.0002}
services:
  api:
    instances_per_az: {a: 1}
    workers: 1
    service_time_s: {dist: constant, value: 0.004}
"""

EXPERIMENT = """\
name: e
topology: topo.yaml
workload:
  arrivals: deterministic
  rate_schedule: [{at_s: 0, rate_per_s: 20}]
duration_s: 50
seed: 3
output: {instances: true}   # per-instance counters
"""


def _write(tmp_path: Path, profile: str = PROFILE, topology: str = TOPOLOGY) -> Path:
    (tmp_path / "prof.yaml").write_text(profile)
    (tmp_path / "topo.yaml").write_text(topology)
    (tmp_path / "exp.yaml").write_text(EXPERIMENT)
    return tmp_path / "exp.yaml"


def test_profile_fills_unset_fields_and_topology_wins(tmp_path):
    topo = load_experiment(_write(tmp_path)).config.topology
    assert topo.network.same_az_s.dist == "empirical"
    assert topo.network.internet_s.value == pytest.approx(0.0001)
    assert topo.network.cross_az_s.value == pytest.approx(0.001)  # the topology's own
    assert topo.gateways["gw"].cpu_time_s.value == pytest.approx(0.00007)
    assert topo.gateways["gw2"].cpu_time_s.value == pytest.approx(0.0002)  # the topology's own
    assert topo.services["api"].timer_error_s.quantiles[0] == (0.0, -0.0005)
    assert topo.calibration == "prof.yaml"


def test_forced_profile_replaces_the_topologys(tmp_path):
    exp = _write(tmp_path)
    other = tmp_path / "other.yaml"
    other.write_text(PROFILE.replace("0.00007", "0.00009"))
    topo = load_experiment(exp, calibration=other).config.topology
    assert topo.gateways["gw"].cpu_time_s.value == pytest.approx(0.00009)


def test_override_applies_after_the_profile(tmp_path):
    exp = _write(tmp_path)
    topo = load_experiment(exp, ["topology.gateways.gw.cpu_time_s=0.0003"]).config.topology
    assert topo.gateways["gw"].cpu_time_s.value == pytest.approx(0.0003)


def test_bad_profile_value_is_located_in_the_profile(tmp_path):
    exp = _write(tmp_path, PROFILE.replace("value: 0.00007", "value: -1"))
    with pytest.raises(ConfigError) as e:
        load_experiment(exp)
    text = str(e.value.issues[0])
    assert text.startswith(f"{tmp_path / 'prof.yaml'}:7: gateway.cpu_time_s.value: calibration profile")


def test_missing_profile_names_the_topology_field(tmp_path):
    exp = _write(tmp_path, topology=TOPOLOGY.replace("prof.yaml", "nope.yaml"))
    with pytest.raises(ConfigError) as e:
        load_experiment(exp)
    issue = e.value.issues[0]
    assert issue.file == str(tmp_path / "topo.yaml") and issue.line == 2
    assert issue.path == "topology.calibration" and "no such file" in issue.reason


def test_unknown_profile_field_is_refused(tmp_path):
    exp = _write(tmp_path, PROFILE + "extra: 1\n")
    with pytest.raises(ConfigError) as e:
        load_experiment(exp)
    assert e.value.issues[0].path == "extra"


def test_timer_error_table_must_be_ordered(tmp_path):
    bad = PROFILE.replace("[[0, -0.0005], [1, 0.0015]]", "[[0, 0.001], [1, -0.001]]")
    with pytest.raises(ConfigError) as e:
        load_experiment(_write(tmp_path, bad))
    assert "non-decreasing" in e.value.issues[0].reason


def test_timer_error_shifts_service_time_by_its_mean(tmp_path):
    """A deterministic D/D/1 station: every request takes 4 ms + U(-0.5, 1.5) ms of timer error.

    The backend's busy time per request is then 4 ms + 0.5 ms on average; with
    1,000 requests the sample mean of U(-0.5, 1.5) ms has sd 0.577/sqrt(1000)
    = 0.018 ms, so 4.5 ms +- 0.1 ms is a > 5-sigma band.
    """
    loaded = load_experiment(_write(tmp_path))
    res = Fleet(loaded.config, 0).run()
    st = rows_by_name(res["instances"]["backend"])["api-a-0"]
    per_request = st["busy_s"] / st["served"]
    assert st["served"] > 900
    assert per_request == pytest.approx(0.0045, abs=0.0001)


def test_timer_error_floors_service_time_at_zero(tmp_path):
    """A service time of 0 plus an error in [-0.5, 1.5] ms is max(0, error): mean 0.5625 ms.

    E[max(0, U(-0.5, 1.5))] = (1.5^2 / 2) / 2 = 0.5625 ms; the sd of the mean
    over ~1,000 draws is < 0.02 ms.
    """
    topo = TOPOLOGY.replace("{dist: constant, value: 0.004}", "0")
    loaded = load_experiment(_write(tmp_path, topology=topo))
    res = Fleet(loaded.config, 0).run()
    st = rows_by_name(res["instances"]["backend"])["api-a-0"]
    assert st["busy_s"] / st["served"] == pytest.approx(0.0005625, abs=0.0001)
    assert np.isfinite(st["busy_s"])


def test_reference_topology_loads_with_the_committed_profile():
    root = Path(__file__).resolve().parent.parent
    loaded = load_experiment(root / "experiments" / "reference" / "a_load.yaml")
    topo = loaded.config.topology
    assert topo.services["api"].timer_error_s is not None
    assert topo.gateways["gw"].cpu_time_s.mean > 0
    assert set(loaded.variants) == {"u30", "u60", "u80", "u90"}


def test_profile_text_is_documented():
    from sim.config import calibration

    assert "calibration: FILE" in textwrap.dedent(calibration.__doc__)


def test_profile_fills_redis_script_time_only_where_the_topology_has_redis(tmp_path):
    profile = PROFILE + "redis:\n  evalsha_time_s: {dist: constant, value: 0.000017}\n"
    with_redis = TOPOLOGY + ("rate_limit: {algorithm: redis_token_bucket, limit: 10, burst: 5}\n"
                             "redis: {az: a}\n")
    topo = load_experiment(_write(tmp_path, profile, with_redis)).config.topology
    assert topo.redis.evalsha_time_s.value == pytest.approx(0.000017)
    own = with_redis.replace("redis: {az: a}", "redis: {az: a, evalsha_time_s: 0.00001}")
    topo = load_experiment(_write(tmp_path, profile, own)).config.topology
    assert topo.redis.evalsha_time_s.value == pytest.approx(0.00001)  # the topology's own
    topo = load_experiment(_write(tmp_path, profile)).config.topology
    assert topo.redis is None  # no Redis is made for the profile's figure


def test_handshake_cpu_fills_tls_added_by_an_override_a_set_or_a_variant(tmp_path):
    """The profile fills a pool once every change is made: TLS that an override, --set or a
    variant gives a pool gets the handshake CPU measured for its version and certificate, and a
    variant that changes the version gets that version's figures, not the base's."""
    profile = PROFILE.replace("  cpu_time_s: {dist: constant, value: 0.00007}\n",
                              "  cpu_time_s: {dist: constant, value: 0.00007}\n"
                              "  handshake_cpu_s:\n"
                              "    TLSv1_3/ecdsa_p256: {full_s: 0.0004, resumed_s: 0.0003}\n"
                              "    TLSv1_2/ecdsa_p256: {full_s: 0.0006, resumed_s: 0.0002}\n")
    exp = _write(tmp_path, profile)
    exp.write_text(EXPERIMENT.replace("arrivals: deterministic\n", "arrivals: deterministic\n  connections: {clients: 4}\n")
                   + "overrides:\n  gateways.gw.tls: {tls_version: TLSv1_3}\n"
                   "variants:\n  tls12: {topology.gateways.gw.tls.tls_version: TLSv1_2}\n"
                   "  rsa: {topology.gateways.gw.tls.certificate: rsa_2048}\n")
    loaded = load_experiment(exp, ["topology.gateways.gw2.tls.tls_version=TLSv1_2"])
    tls = loaded.config.topology.gateways["gw"].tls
    assert (tls.full_handshake_cpu_s, tls.resumed_handshake_cpu_s) == (0.0004, 0.0003)
    tls2 = loaded.config.topology.gateways["gw2"].tls  # TLS from --set
    assert (tls2.full_handshake_cpu_s, tls2.resumed_handshake_cpu_s) == (0.0006, 0.0002)
    v12 = loaded.variants["tls12"].topology.gateways["gw"].tls
    assert (v12.full_handshake_cpu_s, v12.resumed_handshake_cpu_s) == (0.0006, 0.0002)
    # Nothing measured for RSA: the preset, not the ECDSA figures.
    from sim.config.models import HANDSHAKE_CPU_PRESETS_S
    rsa = loaded.variants["rsa"].topology.gateways["gw"].tls
    assert (rsa.full_handshake_cpu_s, rsa.resumed_handshake_cpu_s) == HANDSHAKE_CPU_PRESETS_S[("TLSv1_3", "rsa_2048")]
