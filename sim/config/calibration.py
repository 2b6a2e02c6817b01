"""Calibration profiles: what the reference fleet measured, for topologies to include.

``fleetsim calibrate`` measures, on real Envoy, HAProxy and backends on this
machine, the figures the simulator cannot know: the latency of a loopback
hop, Envoy's CPU per request, and how far the backends' timers miss. It writes
them as a profile YAML::

    version: 1
    measured: {at: 2026-11-27T10:00:00Z, host: ..., envoy: 1.40.0, ...}   # free-form
    network:
      same_az_s: {dist: empirical, quantiles: [[0, 0.00005], ..., [1, 0.0011]]}
      internet_s: {dist: empirical, quantiles: [...]}
    gateway:
      cpu_time_s: {dist: gamma, mean: 0.000071, cv: 0.3}
      handshake_cpu_s: {TLSv1_3/ecdsa_p256: {full_s: 0.00059, resumed_s: 0.00056}}
    backend:
      timer_error_s: {quantiles: [[0, -0.0005], ..., [1, 0.0021]]}
    redis:
      evalsha_time_s: {dist: constant, value: 0.000017}

A topology includes one with ``calibration: FILE`` (relative to the topology
file). Every field the profile gives fills the topology where the topology
leaves it unset: ``network.*``; ``cpu_time_s`` of every gateway pool; the
handshake CPU of every TLS listener of the measured version and certificate;
``timer_error_s`` of every service; ``evalsha_time_s`` of the topology's
``redis`` (when it has one: Redis's time per script call depends on the call
rate, so it is measured at the reference fleet's rate). A field the topology sets itself wins, and
overrides and ``--set`` apply after the profile, as to any other value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from .distributions import Distribution
from .models import StrictModel, TimerError

PROFILE_VERSION = 1


class NetworkCalibration(StrictModel):
    """Measured one-way latencies, by the relation of a hop's two ends (as :class:`~sim.config.models.Network`)."""

    same_az_s: Distribution | None = None
    cross_az_s: Distribution | None = None
    cross_region_s: Distribution | None = None
    internet_s: Distribution | None = None


class HandshakeCalibration(StrictModel):
    """Measured worker CPU of one TLS version and certificate's handshakes (seconds)."""

    full_s: float | None = Field(default=None, ge=0)
    resumed_s: float | None = Field(default=None, ge=0)


class GatewayCalibration(StrictModel):
    """Measured gateway CPU, for every pool's ``cpu_time_s`` (and TLS handshakes)."""

    cpu_time_s: Distribution | None = Field(default=None, description="CPU per proxied request.")
    handshake_cpu_s: dict[str, HandshakeCalibration] = Field(default={}, description=(
        "Keyed '<tls_version>/<certificate>' (TLSv1_3/ecdsa_p256): fills full_handshake_cpu_s and "
        "resumed_handshake_cpu_s of every pool whose listener has that version and certificate."))


class BackendCalibration(StrictModel):
    """Measured backend timer error, for every service's ``timer_error_s``."""

    timer_error_s: TimerError | None = None


class RedisCalibration(StrictModel):
    """Measured Redis server time per call of the token-bucket script, for ``redis.evalsha_time_s``."""

    evalsha_time_s: Distribution | None = None


class CalibrationProfile(StrictModel):
    """A calibration profile as ``fleetsim calibrate`` writes it."""

    version: int = Field(default=PROFILE_VERSION, ge=PROFILE_VERSION, le=PROFILE_VERSION)
    measured: dict[str, Any] = Field(default={}, description="Where, when and how: free-form.")
    network: NetworkCalibration = NetworkCalibration()
    gateway: GatewayCalibration = GatewayCalibration()
    backend: BackendCalibration = BackendCalibration()
    redis: RedisCalibration = RedisCalibration()


def validate_profile(data: Any) -> CalibrationProfile:
    """The profile model of plain data (raises pydantic's ValidationError)."""
    return CalibrationProfile.model_validate(data)


def fill_topology(topology: dict, profile: dict) -> list[tuple[tuple, tuple]]:
    """Copy the profile's fields into plain topology data where it has none.

    Returns (topology path, profile path) for every field filled, so that the
    loader can point errors in a filled value at the profile's line.
    """
    filled: list[tuple[tuple, tuple]] = []
    net = profile.get("network") or {}
    if net:
        tnet = topology.setdefault("network", {})
        if isinstance(tnet, dict):
            for key, value in net.items():
                if value is not None and key not in tnet:
                    tnet[key] = value
                    filled.append((("network", key), ("network", key)))
    cpu = (profile.get("gateway") or {}).get("cpu_time_s")
    if cpu is not None:
        for name, pool in (topology.get("gateways") or {}).items():
            if isinstance(pool, dict) and "cpu_time_s" not in pool:
                pool["cpu_time_s"] = cpu
                filled.append((("gateways", name, "cpu_time_s"), ("gateway", "cpu_time_s")))
    handshakes = (profile.get("gateway") or {}).get("handshake_cpu_s") or {}
    for name, pool in (topology.get("gateways") or {}).items():
        tls = pool.get("tls") if isinstance(pool, dict) else None
        if not isinstance(tls, dict):
            continue
        key = f"{tls.get('tls_version', 'TLSv1_3')}/{tls.get('certificate', 'ecdsa_p256')}"
        measured = handshakes.get(key) or {}
        for src, dst in (("full_s", "full_handshake_cpu_s"), ("resumed_s", "resumed_handshake_cpu_s")):
            if measured.get(src) is not None and dst not in tls:
                tls[dst] = measured[src]
                filled.append((("gateways", name, "tls", dst), ("gateway", "handshake_cpu_s", key, src)))
    err = (profile.get("backend") or {}).get("timer_error_s")
    if err is not None:
        for name, svc in (topology.get("services") or {}).items():
            if isinstance(svc, dict) and "timer_error_s" not in svc:
                svc["timer_error_s"] = err
                filled.append((("services", name, "timer_error_s"), ("backend", "timer_error_s")))
    evalsha = (profile.get("redis") or {}).get("evalsha_time_s")
    redis = topology.get("redis")
    if evalsha is not None and isinstance(redis, dict) and "evalsha_time_s" not in redis:
        redis["evalsha_time_s"] = evalsha
        filled.append((("redis", "evalsha_time_s"), ("redis", "evalsha_time_s")))
    return filled


def profile_errors(data: Any) -> list[tuple[tuple, str]]:
    """(path, reason) for each problem of a profile's plain data; empty when valid."""
    try:
        validate_profile(data)
    except ValidationError as e:
        return [(tuple(err["loc"]), err["msg"].removeprefix("Value error, ")) for err in e.errors()]
    return []


def resolve(topology_file: Path | None, ref: str) -> Path:
    """The profile path ``ref`` as written in a topology file."""
    p = Path(ref)
    if p.is_absolute() or topology_file is None:
        return p
    return topology_file.parent / p
