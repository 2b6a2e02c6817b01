"""The xDS configuration as versions of resource sets, and the bytes a response costs.

Four resource types (Envoy's ADS): listeners (LDS), one route configuration
(RDS), one cluster (CDS) and one ClusterLoadAssignment (EDS) per service.
Every resource of a type has the same size at a given number of services
(:class:`~sim.config.controlplane.XdsResources`), so a response's bytes are a
closed form of the counts it carries (:func:`response`), which the tests check
the simulated bytes against.

What a response carries (Envoy's xDS protocol, docs/facts.md#control-plane-pushes):

* state of the world: a Listener or Cluster response carries every resource
  of the type (the complete state, changed or not); a route or endpoint
  response carries the changed resources only (xDS groups these as the
  incremental variants do);
* delta: the changed resources only, each wrapped in a ``Resource`` message.

One response per type touched, each with its framing overhead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sim.config.controlplane import XdsResources

#: The types, in the order Envoy's ADS asks for them (CDS before EDS, LDS before RDS).
TYPES = ("cluster", "endpoint", "listener", "route")
#: Types whose state-of-the-world responses carry every resource of the type.
FULL_STATE_TYPES = frozenset({"listener", "cluster"})


@dataclass
class Version:
    """One configuration version: what changed since the previous one.

    Attributes:
        index: 0 for the configuration at t=0, then 1, 2, ...
        changed: type -> the ids of the resources changed or added.
        services: services in the configuration at this version.
        created_s: when the control plane cut it (after the debounce).
        first_change_s: the earliest change it carries (created_s for a rollback).
        bad: ``none``, ``nack`` or ``errors``.
        rollback_of: the bad version this one undoes (None otherwise).
    """

    index: int
    changed: dict[str, frozenset]
    services: int
    created_s: float = 0.0
    first_change_s: float = 0.0
    bad: str = "none"
    rollback_of: int | None = None
    extra: dict = field(default_factory=dict)


class ConfigStore:
    """The configuration's versions and the diffs between them."""

    def __init__(self, res: XdsResources):
        self.res = res
        self.versions = [Version(0, {}, res.services)]
        self._diffs: dict[tuple[int, int], dict[str, frozenset]] = {}

    @property
    def latest(self) -> Version:
        """The newest version."""
        return self.versions[-1]

    def commit(self, changed: dict[str, set], services: int, **kw) -> Version:
        """Cut a new version carrying ``changed`` (type -> ids) with ``services`` services."""
        v = Version(len(self.versions), {t: frozenset(ids) for t, ids in changed.items() if ids}, services, **kw)
        self.versions.append(v)
        return v

    def diff(self, have: int | None, target: int) -> dict[str, frozenset] | None:
        """Resources changed from version ``have`` to ``target`` (type -> ids); None: everything (no ``have``)."""
        if have is None:
            return None
        key = (have, target)
        d = self._diffs.get(key)
        if d is None:
            acc: dict[str, set] = {}
            for v in self.versions[have + 1: target + 1]:
                for t, ids in v.changed.items():
                    acc.setdefault(t, set()).update(ids)
            d = self._diffs[key] = {t: frozenset(ids) for t, ids in acc.items()}
        return d


def counts(res: XdsResources, services: int) -> dict[str, int]:
    """Resources of each type in a configuration of ``services`` services."""
    return {"cluster": services, "endpoint": services, "listener": res.listeners, "route": 1}


def sizes(res: XdsResources, services: int) -> dict[str, int]:
    """The serialised size of one resource of each type (bytes) at ``services`` services."""
    return {"cluster": res.cluster_bytes,
            "endpoint": res.cla_base_bytes + res.endpoint_bytes * res.endpoints_per_service,
            "listener": res.listener_bytes,
            "route": res.route_base_bytes + res.route_bytes_per_service * services}


def response(res: XdsResources, mode: str, services: int, diff: dict[str, frozenset] | None) -> tuple[float, int]:
    """(bytes, resources) of what one gateway is sent for ``diff`` (None: the whole configuration).

    One response per type touched; ``mode`` ``sotw`` or ``delta``.
    """
    n = counts(res, services)
    size = sizes(res, services)
    total_bytes = 0
    total_res = 0
    for t in TYPES:
        if diff is None:
            k = n[t]
        else:
            ids = diff.get(t)
            if not ids:
                continue
            k = n[t] if (mode == "sotw" and t in FULL_STATE_TYPES) else len(ids)
        per = size[t] + (res.delta_resource_overhead_bytes if mode == "delta" else 0)
        total_bytes += res.response_overhead_bytes + k * per
        total_res += k
    return total_bytes, total_res


__all__ = ["FULL_STATE_TYPES", "TYPES", "ConfigStore", "Version", "counts", "response", "sizes"]
