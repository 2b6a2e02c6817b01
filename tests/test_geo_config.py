"""Bad geography and cost settings: one located line each from `fleetsim check`, exit status 2."""

from __future__ import annotations

import pytest

from sim.cli import main

BASE = """\
name: geo
topology:
  name: t
  regions:
    r1: {azs: [a1, a2]}
    r2: {azs: [b1]}
  clients:
    r1: {share: 1.0}
  balancers:
    r1: {kind: l4}
  gateways:
    gw1:
      az: a1
      instances: 1
      cluster: {common_lb_config: {zone_aware_lb_config: {local_cluster: [gw1]}}}
  services:
    api: {instances_per_az: {a1: 1, a2: 1}, service_time_s: 0.01}
  gslb: {policy: failover, primary: r1, secondary: r1}
workload:
  rate_schedule: [{at_s: 0, rate_per_s: 10}]
duration_s: 2
cost: {provider: aws}
"""

CASES = {
    "unknown local cluster pool": ("local_cluster: [gw1]", "local_cluster: [gw9]",
                                   "zone_aware_lb_config.local_cluster.0", "unknown gateway pool"),
    "zone-aware and locality weights": ("{local_cluster: [gw1]}}}",
                                        "{local_cluster: [gw1]}, locality_weighted_lb_config: {}}}",
                                        "common_lb_config", "cannot both be set"),
    "GSLB region without a balancer": ("secondary: r1", "secondary: r2", "gslb.secondary", "has no balancer"),
    "extending resolvers without their TTL": ("secondary: r1}", "secondary: r1, ttl_extending_fraction: 0.1}",
                                              "gslb", "extended_ttl_s is required"),
    "custom prices missing": ("cost: {provider: aws}", "cost: {provider: custom}", "cost.prices", "required"),
    "unknown AZ priority": ("{common_lb_config:", "{priorities: {zz: 1}, common_lb_config:",
                            "cluster.priorities.zz", "unknown AZ"),
}


def test_base_is_valid(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text(BASE)
    assert main(["check", str(path)]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_bad_setting_is_one_located_error(name, tmp_path, capsys):
    old, new, where, reason = CASES[name]
    assert BASE.count(old) == 1
    path = tmp_path / "exp.yaml"
    path.write_text(BASE.replace(old, new))
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert where in err and reason in err and "exp.yaml" in err, err
