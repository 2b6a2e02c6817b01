"""Small experiments as plain data, for deterministic tests."""

from __future__ import annotations

import copy
from pathlib import Path

from sim.config.models import Experiment

BASE = {
    "name": "exact",
    "topology": {
        "name": "exact",
        "regions": {"r1": {"azs": ["a1", "a2"]}},
        "network": {"same_az_s": 0.001, "cross_az_s": 0.002, "cross_region_s": 0.03, "internet_s": 0.01},
        "clients": {"r1": {"share": 1.0}},
        "balancers": {"r1": {"policy": "round_robin", "cross_zone": False}},
        "gateways": {"gw": {"az": "a1", "instances": 1, "workers": 1, "cpu_time_s": 0.0001,
                            "route": {"timeout_s": 10.0}}},
        "services": {"api": {"instances_per_az": {"a1": 1}, "workers": 1, "queue_limit": 10,
                             "service_time_s": 0.005, "request_bytes": 1000, "response_bytes": 5000}},
    },
    "workload": {"arrivals": "deterministic", "rate_schedule": [{"at_s": 0, "rate_per_s": 1.0}]},
    "duration_s": 3.5,
    "warmup_s": 0.0,
    "seed": 1,
}


def experiment(**changes) -> Experiment:
    """BASE with ``changes`` applied; keys are dotted paths (``topology__gateways__gw__workers``)."""
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        node = data
        parts = key.split("__")
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = value
    return Experiment.model_validate(data)


def run_logged(exp: Experiment, setup=None):
    """Run ``exp``; the log holds (issue time, latency, outcome) of each call, in order of answer.

    ``setup(fleet)`` runs after the fleet is built and before t=0.
    """
    from sim.fleet import Fleet

    fleet = Fleet(exp)
    if setup is not None:
        setup(fleet)
    log = []
    orig = fleet.recorder.completion

    def completion(now, t0, counted, outcome):
        log.append((round(t0, 9), round(now - t0, 9), outcome))
        orig(now, t0, counted, outcome)

    fleet.recorder.completion = completion
    result = fleet.run()
    fleet.check_conservation()
    return fleet, log, result


def started_cluster(hosts: int, duration_s: float, **cluster):
    """A fleet with one gateway routing to ``hosts`` hosts, and that gateway's cluster, health started."""
    from sim.fleet import Fleet

    exp = experiment(topology__gateways__gw__cluster=cluster,
                     topology__services__api__instances_per_az={"a1": hosts}, duration_s=duration_s)
    fleet = Fleet(exp)
    c = fleet.gateways["gw"][0].clusters["api"]
    c.health.start()
    return fleet, c


def at(fleet, t: float, action) -> None:
    """Run ``action()`` at time ``t`` (and everything scheduled before it)."""
    fleet.ctx.call_later(t - fleet.ctx.now, lambda _: action())


def variants_experiment_file(tmp_path) -> Path:
    """A short two-variant experiment file (``base`` and a slower ``slower``) on the quickstart topology."""
    topology = Path(__file__).resolve().parent.parent / "topologies" / "two_az_basic.yaml"
    exp = Path(tmp_path) / "v.yaml"
    exp.write_text(f"""
name: variants-demo
topology: {topology}
workload:
  rate_schedule: [{{at_s: 0, rate_per_s: 300}}]
duration_s: 6
warmup_s: 1
seed: 3
variants:
  base: {{}}
  slower:
    topology.services.api.service_time_s: {{dist: lognormal, median: 0.024, p99: 0.12}}
""")
    return exp
