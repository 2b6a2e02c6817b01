"""The reference real fleet: fleetsim's predictions measured against real Envoy, HAProxy and backends.

Everything runs on this machine's loopback (127.0.0.1 only), started and
stopped by :mod:`.harness`:

- :mod:`.envoy_config`, :mod:`.haproxy_config`: the Envoy bootstrap and the
  HAProxy configuration, generated from the same topology the simulator runs
  (the reverse, a real bootstrap into a topology, is
  :mod:`sim.config.envoy_import`);
- :mod:`.backend`: uvloop backends with the service's workers, queue,
  service-time distribution and error probability, and admin counters;
- :mod:`.loadgen`: the open-loop Poisson load generator;
- :mod:`.measure`: Envoy admin stats, the HAProxy stats socket, Redis INFO,
  per-process CPU from /proc and how busy the machine was;
- :mod:`.fleet`: an experiment run on those processes;
- :mod:`.calibrate` (``fleetsim calibrate``), :mod:`.scenarios`,
  :mod:`.validate` (``fleetsim validate``) and :mod:`.report`
  (``validation.html``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["envoy_bootstrap", "envoy_command", "write_bootstrap"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the backend and the load generator import this
    # package and must start in a fraction of a second.
    if name in __all__:
        from . import envoy_config

        return getattr(envoy_config, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
