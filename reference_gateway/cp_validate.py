"""Scenario g: real runs of the reference control plane and their simulated counterparts.

The experiment (``experiments/reference/g_control_plane.yaml``) names the
gateways (Envoys), the services, the deploy (services added) and the restart
(when, and for how long); the real side runs :func:`~reference_gateway.xds_fleet.run_control_plane`
with those, the simulated side the same experiment with two measured inputs:
the resources' encoded sizes (:func:`reference_gateway.xds_resources.sizes`,
from the same protobuf messages the server sends) and the control plane's
actual down time (the restarted server needs a moment to start; the simulated
``down_s`` is the measured mean). Nothing is fitted to the outcomes compared.

Metrics (``scenarios.GOALS``): ``push_bytes`` and ``resync_bytes`` (encoded
DiscoveryResponse bytes; simulator ``control_plane.push_bytes`` and
``resync_bytes``), ``pushes`` (gateways that received the push), ``resync_s``
(from the kill until every gateway has reconnected and resynced;
``control_plane.resync_s``). ``push_convergence_s`` and the server's CPU
are recorded in ``measured.json`` but not judged: the simulator's per-resource
costs are not calibrated against this Python server.
"""

from __future__ import annotations

import math
from pathlib import Path

from sim.config.models import Experiment

from .scenarios import Observation

METRICS = ("push_bytes", "resync_bytes", "pushes", "resync_s")


def _events(exp: Experiment) -> tuple[int, float]:
    cp = exp.control_plane
    added = next(e.services for e in cp.events if e.event == "deploy")
    down = next(e.down_s for e in cp.events if e.event == "replica_restart")
    return added, down


def real_observation(exp: Experiment, run_dir: Path) -> Observation:
    """One real run of scenario g at ``exp``'s settings."""
    from .xds_fleet import run_control_plane

    cp = exp.control_plane
    added, down = _events(exp)
    m = run_control_plane(run_dir, n=cp.gateways, services=cp.resources.services, added=added,
                          delta=cp.push.mode == "delta", down_s=down)
    obs = Observation(values={k: float(m[k]) for k in METRICS})
    obs.values["down_s"] = float(m["down_s"])
    return obs


def sim_experiment(exp: Experiment, measured_down_s: float) -> Experiment:
    """``exp`` with the encoded sizes of the reference server's resources and the measured down time."""
    from .xds_resources import sizes

    cp = exp.control_plane
    added, _ = _events(exp)
    res = cp.resources.model_copy(update=sizes(cp.resources.services, added))
    events = [e.model_copy(update={"down_s": measured_down_s}) if e.event == "replica_restart" else e
              for e in cp.events]
    data = exp.model_dump(mode="json", by_alias=True)
    data["control_plane"] = cp.model_copy(update={"resources": res, "events": events}).model_dump(
        mode="json", by_alias=True)
    return Experiment.model_validate(data)


def sim_observation(result: dict) -> Observation:
    """Scenario g's metrics from one simulated replication."""
    cp = result["summary"]["control_plane"]
    values = {k: (math.nan if cp.get(k) is None else float(cp[k])) for k in METRICS}
    return Observation(values=values)


def simulate(exp: Experiment, real: list[Observation], replications: int) -> list[Observation]:
    """``replications`` simulated replications with the real runs' mean down time."""
    from sim.fleet import Fleet

    downs = [o.values["down_s"] for o in real if "down_s" in o.values]
    sim_exp = sim_experiment(exp, sum(downs) / len(downs) if downs else _events(exp)[1])
    return [sim_observation(Fleet(sim_exp, r).run()) for r in range(replications)]
