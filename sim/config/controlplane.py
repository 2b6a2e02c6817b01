"""The control plane's schema: replicas, xDS resources, push policy, gateway subscribers, events.

An experiment's optional ``control_plane`` section. Without it nothing of the
control plane is built and a run is byte-identical to one before it existed.

Names follow Istio's where Istio has the knob (``PILOT_DEBOUNCE_AFTER`` is
``debounce_after_s``, ``PILOT_DEBOUNCE_MAX`` ``debounce_max_s``,
``PILOT_PUSH_THROTTLE`` ``push_throttle``, ``PILOT_MAX_REQUESTS_PER_SECOND``
``max_requests_per_s``) and Envoy's for the xDS client (the stream's
reconnect back-off, 500 ms initial and 30 s maximum, jittered). Defaults are
Istio's and Envoy's (docs/facts.md#control-plane-pushes); throttle and request
limit left ``null`` resolve to Istio's rule min(15 + 5 x cores, 100).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, model_validator

from .models import Probability, StrictModel
from .models import _fill as fill


class XdsResources(StrictModel):
    """The configuration each gateway subscribes to, and each resource's serialised size (bytes).

    Four resource types, as Envoy's ADS carries them: ``listeners`` (LDS) of
    ``listener_bytes`` each; one route configuration (RDS) of
    ``route_base_bytes`` plus ``route_bytes_per_service`` per service; one
    cluster (CDS) of ``cluster_bytes`` per service; one ClusterLoadAssignment
    (EDS) per service of ``cla_base_bytes`` plus ``endpoint_bytes`` per
    endpoint. So the configuration grows with ``services``.

    Framing: each response costs ``response_overhead_bytes`` (type URL,
    version, nonce); delta xDS wraps each resource in a ``Resource`` message
    (``delta_resource_overhead_bytes``: its name and version). Resources are
    changed or added, never removed, by the events modelled.
    """

    services: int = Field(default=100, ge=1)
    listeners: int = Field(default=2, ge=1)
    listener_bytes: float = Field(default=1500.0, gt=0)
    route_base_bytes: float = Field(default=200.0, ge=0)
    route_bytes_per_service: float = Field(default=150.0, ge=0)
    cluster_bytes: float = Field(default=600.0, gt=0)
    cla_base_bytes: float = Field(default=60.0, gt=0)
    endpoints_per_service: int = Field(default=3, ge=0)
    endpoint_bytes: float = Field(default=50.0, ge=0)
    response_overhead_bytes: float = Field(default=120.0, ge=0)
    delta_resource_overhead_bytes: float = Field(default=30.0, ge=0)


class Debounce(StrictModel):
    """Istio's push debounce: wait ``debounce_after_s`` without a change, at most ``debounce_max_s``."""

    debounce_after_s: float = Field(default=0.1, ge=0, description="PILOT_DEBOUNCE_AFTER (100 ms).")
    debounce_max_s: float = Field(default=10.0, ge=0, description="PILOT_DEBOUNCE_MAX (10 s).")


class Canary(StrictModel):
    """Push a new version to ``fraction`` of the gateways first, the rest after ``hold_s`` unless rolled back."""

    fraction: float = Field(gt=0, lt=1)
    hold_s: float = Field(gt=0)


class Rollback(StrictModel):
    """Roll a bad version back: on ``nack_threshold`` NACKs, or ``error_detect_s`` after errors begin."""

    nack_threshold: int = Field(default=1, ge=1, description="NACKs of one version that trigger a rollback.")
    error_detect_s: float = Field(default=30.0, gt=0, description=(
        "Time from the first gateway applying a version that raises error rates until the rollback "
        "(alerting and the decision)."))


class Push(StrictModel):
    """How changes reach the gateways.

    ``mode``: ``sotw`` (state of the world: a Listener or Cluster response
    carries every resource of the type; routes and endpoints are sent per
    resource, as xDS allows) or ``delta`` (changed and removed resources
    only). ``resync``: what a reconnecting gateway receives: ``full`` (the
    whole configuration) or ``changed`` (a delta client's
    ``initial_resource_versions`` let the server send only what it lacks;
    state of the world always resyncs in full).
    """

    mode: Literal["sotw", "delta"] = "sotw"
    resync: Literal["full", "changed"] = "full"
    debounce: Debounce = Debounce()
    push_throttle: int | None = Field(default=None, ge=1, description=(
        "PILOT_PUSH_THROTTLE: concurrent pushes per replica; null: min(15 + 5 x cores, 100)."))
    max_requests_per_s: float | None = Field(default=None, gt=0, description=(
        "PILOT_MAX_REQUESTS_PER_SECOND: new xDS streams admitted per second per replica (a stream that "
        "would wait over 1 s is refused and backs off); null: min(15 + 5 x cores, 100)."))
    canary: Canary | None = None
    rollback: Rollback | None = None


class Reconnect(StrictModel):
    """The gateway's xDS stream back-off after a lost stream (Envoy: jittered exponential, 0.5 s to 30 s).

    Attempt k (from 0) waits min(``max_s``, ``initial_s`` x 2^k); with
    ``jitter: full`` a uniform draw in [0, that) instead.
    """

    initial_s: float = Field(default=0.5, gt=0)
    max_s: float = Field(default=30.0, gt=0)
    jitter: Literal["full", "none"] = "full"


class Subscribers(StrictModel):
    """The gateways as xDS clients: applying config, memory, restarts.

    Applying a response costs ``apply_cpu_base_s`` plus ``apply_cpu_per_resource_s``
    per resource received (in the data-plane mode on one of the gateway's
    workers, so requests wait). ``apply_leak_bytes`` (a fault: 0 = none) is
    kept after every apply; past ``memory_limit_bytes`` the gateway is
    OOM-killed, restarts after ``restart_s`` and reconnects. With
    ``local_cache`` it restarts from its last good configuration on disk;
    without, it serves nothing until the control plane answers.
    """

    apply_cpu_base_s: float = Field(default=0.002, ge=0)
    apply_cpu_per_resource_s: float = Field(default=20e-6, ge=0)
    memory_bytes: float = Field(default=60e6, gt=0, description="Resident memory after a start.")
    memory_limit_bytes: float = Field(default=512e6, gt=0)
    apply_leak_bytes: float = Field(default=0.0, ge=0)
    restart_s: float = Field(default=5.0, gt=0)
    local_cache: bool = True
    bad_version_error_probability: Probability = Field(default=1.0, description=(
        "In mode data_plane, the share of requests a gateway fails (503 bad_config) while it runs a "
        "version marked 'errors'."))


class ConfigChange(StrictModel):
    """Changes to the configuration at ``at_s``.

    ``endpoint_churn``: the endpoints of ``services`` services change (one
    ClusterLoadAssignment each), spread evenly over ``over_s`` (0: at once).
    ``deploy``: ``services`` services change their cluster, endpoints and
    route (``add``: new services, growing the configuration). ``bad``:
    ``nack`` (every gateway rejects it and keeps its last good config) or
    ``errors`` (accepted, but the gateways running it fail requests).
    Services are taken in turn, from service 0.
    """

    event: Literal["endpoint_churn", "deploy"]
    at_s: float = Field(ge=0)
    services: int = Field(ge=1)
    over_s: float = Field(default=0.0, ge=0)
    add: bool = False
    bad: Literal["none", "nack", "errors"] = "none"


class ReplicaRestart(StrictModel):
    """Replica ``replica`` (null: every replica) dies at ``at_s`` and is back ``down_s`` later."""

    event: Literal["replica_restart"]
    at_s: float = Field(ge=0)
    down_s: float = Field(gt=0)
    replica: int | None = Field(default=None, ge=0)


CpEvent = Annotated[ConfigChange | ReplicaRestart, Field(discriminator="event")]


class ControlPlane(StrictModel):
    """An xDS control plane (Istio-like) and the gateways subscribed to it.

    ``mode``: ``data_plane`` (every gateway instance of the topology
    subscribes; config applies cost its workers CPU, OOM kills crash it) or
    ``control_plane_only`` (``gateways`` lightweight subscribers and no
    requests: for thousands of gateways, when only the control plane's
    traffic is asked about; the workload's rates must then be 0).

    Each replica has ``cores`` cores; a stream attempt costs ``cpu_per_stream_s``
    (refused or not), a response ``cpu_per_push_s`` plus
    ``cpu_per_resource_s`` per resource serialised, then leaves through
    the replica's egress at ``egress_bytes_per_s`` (null: unlimited) and
    reaches the gateway ``latency_s`` later (ACKs take as long back).
    """

    mode: Literal["data_plane", "control_plane_only"] = "data_plane"
    gateways: int | None = Field(default=None, ge=1, description=(
        "Subscribers in control_plane_only mode (required there); in data_plane mode the topology's "
        "gateway instances."))
    replicas: int = Field(default=1, ge=1)
    cores: int = Field(default=2, ge=1)
    cpu_per_push_s: float = Field(default=0.0005, ge=0)
    cpu_per_resource_s: float = Field(default=20e-6, ge=0)
    cpu_per_stream_s: float = Field(default=0.001, ge=0, description=(
        "CPU for each stream a gateway opens on an up replica (the mTLS handshake, authentication, "
        "gRPC set-up), whether the request limit then admits it or not."))
    egress_bytes_per_s: float | None = Field(default=125e6, gt=0)
    latency_s: float = Field(default=0.0005, ge=0)
    resources: XdsResources = XdsResources()
    push: Push = Push()
    reconnect: Reconnect = Reconnect()
    subscribers: Subscribers = Subscribers()
    events: list[CpEvent] = []

    @model_validator(mode="after")
    def _istio_auto(self) -> ControlPlane:
        auto = min(15 + 5 * self.cores, 100)
        if self.push.push_throttle is None or self.push.max_requests_per_s is None:
            push = self.push.model_copy(update={
                "push_throttle": self.push.push_throttle if self.push.push_throttle is not None else auto,
                "max_requests_per_s": (self.push.max_requests_per_s if self.push.max_requests_per_s is not None
                                       else float(auto))})
            fill(self, "push", push)
        return self


def backoff_bound_s(r: Reconnect, attempt: int) -> float:
    """min(max_s, initial_s x 2^attempt): the back-off (or its jitter's upper bound) before attempt+1."""
    if attempt > 60:
        return r.max_s
    return min(r.max_s, r.initial_s * math.pow(2.0, attempt))


__all__ = ["Canary", "ConfigChange", "ControlPlane", "CpEvent", "Debounce", "Push", "Reconnect", "ReplicaRestart",
           "Rollback", "Subscribers", "XdsResources", "backoff_bound_s"]
