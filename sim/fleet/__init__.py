"""The fleet layer: plans a fleet's component graph, builds and runs it, applies its faults.

- :mod:`.graph`: the component graph worked out once from the validated
  config (pools and backend groups, the hops between them) and its checks
  (:class:`FleetError` for a half-wired fleet, before t=0).
- :mod:`.build`: :class:`Fleet` builds the components from that graph, runs
  one replication and collects each component's result hook into the
  summary (:mod:`sim.metrics.summary`).
- :mod:`.faults`: the fault timeline, applied to the built fleet.
"""

from .build import ConservationError, Fleet
from .graph import FleetError, instance_counts, plan

__all__ = ["ConservationError", "Fleet", "FleetError", "instance_counts", "plan"]
