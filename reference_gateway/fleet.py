"""The reference real fleet, started from the same experiment the simulator runs.

One description, two executions: :class:`RealFleet` reads a validated
:class:`~sim.config.models.Experiment` and runs it on real processes, all
listening on 127.0.0.1 and started, watched and stopped by
:class:`~reference_gateway.harness.Harness`:

- the region's balancer is HAProxy in TCP mode (``haproxy_config``), in front
  of every gateway instance;
- each gateway instance is an Envoy 1.40 (``--concurrency`` = the pool's
  ``workers``) with the bootstrap :func:`~reference_gateway.envoy_config.envoy_bootstrap`
  generates from the pool: routes, retry policy, cluster, breakers, outlier
  detection, health checks;
- every backend instance of every service is a listener of one uvloop backend
  process (:mod:`reference_gateway.backend`) with the service's workers, queue
  limit, service-time distribution, error probability and per-instance
  service-time factor;
- the workload is the open-loop generator (:mod:`reference_gateway.loadgen`)
  with the experiment's rate schedule and arrival process, aimed at HAProxy;
- ``backend_slowdown`` and ``error_burst`` faults are switched on and off at
  their times through the backends' admin endpoint;
- with a ``redis_token_bucket`` rate limit, a Redis and the rate-limit sidecar
  (:mod:`reference_gateway.ratelimit_sidecar`, which every Envoy calls through
  ext_authz) are started afresh before each run; a ``redis_down`` fault, which
  must last to the end of the run, stops Redis at its time (its command
  counts are read just before).

Names match the simulator's: backend instances ``<service>-<az>-<i>``, gateway
instances ``<pool>-<i>`` (sent to the backends as ``x-fleetsim-gateway``), so
counters compare one to one.

Timing: the load generator's t = 0 is a wall-clock instant agreed before it
starts; the fault switches, the end of the warm-up (where Envoy's and the
backends' counters are reset) and Envoy's outlier event times are all placed
on that clock. Envoys are restarted before every run, so each run starts
from cold connection pools and fresh outlier state, as a simulated
replication does.

Pinning (when the machine has two or more CPUs): HAProxy and the Envoys on
CPU 0, the backends and the load generator on CPU 1, so that the gateway's
CPU and latency are not disturbed by the Python processes.

Not run by the reference fleet (refused with the field's path): more than one
region, client retries (``workload.client.max_attempts`` > 1), and the fault
kinds ``instance_crash``, ``az_outage`` and ``load_spike``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from sim.components.workload import RateFunction
from sim.config.distributions import Constant
from sim.config.models import BackendSlowdown, ErrorBurst, Experiment, RedisDown
from sim.config.naming import backend_name, gateway_name
from sim.files import atomic_write_json

from . import envoy_config, haproxy_config, measure
from .harness import (
    Harness,
    HarnessError,
    envoy_base_id,
    envoy_binary,
    free_ports,
    http_ready,
    redis_argv,
    redis_ready,
)

SUPPORTED_FAULTS = (BackendSlowdown, ErrorBurst, RedisDown)
LOAD_LEAD_S = 2.0
"""Seconds between starting the load generator and its t = 0. It starts in about
0.7 s on a quiet machine; one that starts late sends its first requests in a
burst to catch up, which would change what is measured (a run whose
generator fell behind is marked disturbed)."""

#: The backends' queue limit for a service whose queue is unbounded (queue_limit: null):
#: larger than any bounded run's requests.
UNBOUNDED_QUEUE = 2**31 - 1


class UnsupportedByReference(ValueError):
    """The experiment asks for something the reference fleet does not run."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{path}: {reason}" for path, reason in problems))


def unsupported(exp: Experiment) -> list[tuple[str, str]]:
    """(dotted path, reason) for every part of ``exp`` the reference fleet cannot run."""
    out = []
    topo = exp.topology
    if len(topo.regions) != 1:
        out.append(("topology.regions", "the reference fleet runs one region on loopback"))
    if exp.workload.client.max_attempts > 1:
        out.append(("workload.client.max_attempts", "the load generator does not retry"))
    for i, f in enumerate(exp.faults):
        if not isinstance(f, SUPPORTED_FAULTS):
            out.append((f"faults.{i}.kind", f"{f.kind} is not run by the reference fleet "
                                            "(backend_slowdown, error_burst and redis_down are)"))
        elif isinstance(f, RedisDown) and f.at_s + f.for_s < exp.duration_s:
            out.append((f"faults.{i}.for_s", "the reference fleet does not restart Redis within a run: "
                                             "let a redis_down last to the end"))
    rl = topo.rate_limit
    if rl is not None and rl.algorithm != "redis_token_bucket":
        out.append(("topology.rate_limit.algorithm", "the reference fleet's sidecar runs the redis_token_bucket script"))
    elif rl is not None and rl.key != "global":
        out.append(("topology.rate_limit.key", "the reference fleet's sidecar keeps one global key"))
    return out


def backend_instances(exp: Experiment) -> dict[str, list[tuple[str, str]]]:
    """Per service, its instances as (name, az), in the simulator's order."""
    out = {}
    for svc, cfg in exp.topology.services.items():
        out[svc] = [(backend_name(svc, az, i), az) for az, n in cfg.instances_per_az.items() for i in range(n)]
    return out


def gateway_instances(exp: Experiment) -> list[tuple[str, str]]:
    """Every gateway instance as (name, pool), in the simulator's order."""
    return [(gateway_name(pool, i), pool) for pool, cfg in exp.topology.gateways.items() for i in range(cfg.instances)]


def fault_targets(exp: Experiment, fault) -> list[str]:
    """Backend instance names a backend fault hits (every given field must match)."""
    t = fault.target
    region_of = {az: r for r, reg in exp.topology.regions.items() for az in reg.azs}
    names = []
    for svc, insts in backend_instances(exp).items():
        for name, az in insts:
            if ((t.service is None or t.service == svc) and (t.az is None or t.az == az)
                    and (t.region is None or t.region == region_of.get(az))
                    and (t.instance is None or t.instance == name)):
                names.append(name)
    return names


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy


def _http(method: str, url: str, body: Any = None, timeout: float = 5.0) -> bytes:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json"} if data else {})
    with _OPENER.open(req, timeout=timeout) as resp:
        return resp.read()


def _mean_bytes(dist) -> int:
    return int(dist.value) if isinstance(dist, Constant) else max(0, round(dist.mean))


@dataclass
class RealRun:
    """What one run of the real fleet measured. Times are seconds on the load's clock."""

    start_at: float
    warmup_s: float
    duration_s: float
    t_sched: np.ndarray
    latency: np.ndarray
    status: np.ndarray
    load_meta: dict
    backends: dict[str, dict]
    gateways: dict[str, dict]
    clusters: dict[str, dict]
    haproxy: list[dict]
    cpu_s: dict[str, float]
    busy: Any
    outlier_events: list[dict] = field(default_factory=list)
    fault_times: list[tuple[float, str]] = field(default_factory=list)
    redis: dict = field(default_factory=dict)  # EVALSHA calls and usec_per_call over the window
    ratelimit: dict = field(default_factory=dict)  # the sidecar's counts over the window

    def window(self) -> np.ndarray:
        """Mask of the requests scheduled inside the measurement window."""
        return (self.t_sched >= self.warmup_s) & (self.t_sched < self.duration_s)


class RealFleet:
    """The experiment's topology as real processes. Use as a context manager.

    ``start()`` starts backends and HAProxy, ``run(exp, seed)`` restarts the
    Envoys and runs one load, ``close()`` stops everything.
    """

    def __init__(self, exp: Experiment, run_dir: str | Path, *, pin: bool = True):
        problems = unsupported(exp)
        if problems:
            raise UnsupportedByReference(problems)
        self.exp = exp
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.harness = Harness(self.run_dir)
        ncpu = os.cpu_count() or 1
        self.gateway_cpus = {0} if pin and ncpu >= 2 else None
        self.python_cpus = {1} if pin and ncpu >= 2 else None
        self.backends = backend_instances(exp)
        self.gateways = gateway_instances(exp)
        n_backend = sum(len(v) for v in self.backends.values())
        ports = free_ports(n_backend + 2 * len(self.gateways) + 4)
        it = iter(ports)
        self.backend_ports = {svc: [next(it) for _ in insts] for svc, insts in self.backends.items()}
        self.backend_admin = next(it)
        self.listen_port = next(it)
        self.envoy_ports = {name: (next(it), next(it)) for name, _ in self.gateways}
        self.redis_port = next(it)
        self.ratelimit_port = next(it)
        # A unix socket's path is limited to 107 bytes: it lives in a short
        # private directory, removed on close, not in the (deep) run folder.
        self._sock_dir = Path(tempfile.mkdtemp(prefix="fleetsim-"))
        self.haproxy_socket = self._sock_dir / "haproxy.sock"
        self._envoy_topology: str | None = None
        self._runs = 0

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> RealFleet:
        self.harness.__enter__()
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.harness.close()
        shutil.rmtree(self._sock_dir, ignore_errors=True)

    def start(self) -> None:
        self._start_backends()
        self._start_haproxy()

    def _backend_spec(self) -> dict:
        instances = []
        for svc, insts in self.backends.items():
            cfg = self.exp.topology.services[svc]
            for (name, _az), port in zip(insts, self.backend_ports[svc], strict=True):
                ov = cfg.instance_overrides.get(name)
                instances.append({
                    # An unbounded queue (null) as a limit no bounded reference run can reach.
                    "name": name, "port": port, "workers": cfg.workers,
                    "queue_limit": UNBOUNDED_QUEUE if cfg.queue_limit is None else cfg.queue_limit,
                    "service_time_s": cfg.service_time_s.model_dump(mode="json", by_alias=True),
                    "service_time_factor": ov.service_time_factor if ov else 1.0,
                    "error_probability": cfg.error_probability,
                    "response_bytes": _mean_bytes(cfg.response_bytes),
                })
        return {"admin_port": self.backend_admin, "seed": self.exp.seed, "instances": instances}

    def _start_backends(self) -> None:
        spec = self.run_dir / "backends.json"
        atomic_write_json(spec, self._backend_spec())
        self.harness.start("backends", [sys.executable, "-m", "reference_gateway.backend", "--spec", str(spec)],
                           ready=lambda: http_ready(f"http://127.0.0.1:{self.backend_admin}/ready"),
                           cpus=self.python_cpus)

    def _start_haproxy(self) -> None:
        region = next(iter(self.exp.topology.regions))
        balancer = self.exp.topology.balancers[region]
        cfg = self.run_dir / "haproxy.cfg"
        gws = [(name, self.envoy_ports[name][0]) for name, _ in self.gateways]
        haproxy_config.write_haproxy_config(cfg, balancer, gws, listen_port=self.listen_port,
                                            stats_socket=self.haproxy_socket)
        self.harness.start("haproxy", haproxy_config.haproxy_argv(cfg),
                           ready=lambda: haproxy_config.haproxy_ready(self.haproxy_socket), cpus=self.gateway_cpus)

    def _start_envoys(self, exp: Experiment) -> None:
        """(Re)start every Envoy with ``exp``'s gateway pools: fresh pools and outlier state."""
        envoy = envoy_binary()
        for name, pool_name in self.gateways:
            if name in self.harness.procs:
                self.harness.stop(name)
            pool = exp.topology.gateways[pool_name]
            listen, admin = self.envoy_ports[name]
            boot = self.run_dir / f"{name}.envoy.yaml"
            events = self.run_dir / f"{name}.outlier.jsonl"
            events.unlink(missing_ok=True)
            rl = exp.topology.rate_limit
            za = pool.cluster.common_lb_config.zone_aware_lb_config
            local = None
            if za is not None:  # zone-aware routing: the node's zone and the local cluster of gateways
                local = [(exp.topology.gateways[p].az, self.envoy_ports[g][0])
                         for g, p in self.gateways if p in (za.local_cluster or [])]
            envoy_config.write_bootstrap(boot, pool, exp.topology, listen_port=listen, admin_port=admin,
                                         backend_ports=self.backend_ports, node_id=name,
                                         outlier_event_log=events, rate_limit=rl,
                                         ratelimit_port=self.ratelimit_port if rl is not None else None,
                                         zone=pool.az if za is not None else None, local_cluster=local)
            argv = envoy_config.envoy_command(envoy, boot, pool, base_id=envoy_base_id(admin), log_level="warning")
            self.harness.start(name, argv, ready=lambda a=admin: http_ready(f"http://127.0.0.1:{a}/ready"),
                               cpus=self.gateway_cpus)

    def _start_rate_limit(self, exp: Experiment) -> None:
        """(Re)start Redis (empty) and the rate-limit sidecar for a run with a rate limit."""
        for name in ("ratelimit", "redis"):
            self.harness.stop(name)
        rl = exp.topology.rate_limit
        if rl is None:
            return
        rdir = self.run_dir / "redis"
        rdir.mkdir(exist_ok=True)
        self.harness.start("redis", redis_argv(self.redis_port, rdir), ready=lambda: redis_ready(self.redis_port),
                           cpus=self.python_cpus)
        spec = self.run_dir / "ratelimit.json"
        atomic_write_json(spec, {"port": self.ratelimit_port, "redis_port": self.redis_port, "limit": rl.limit,
                                 "burst": rl.burst, "window_ms": round(rl.window_s * 1000), "key": rl.key,
                                 "failure_mode_deny": rl.failure_mode_deny})
        self.harness.start("ratelimit", [sys.executable, "-m", "reference_gateway.ratelimit_sidecar",
                                         "--spec", str(spec)],
                           ready=lambda: http_ready(f"http://127.0.0.1:{self.ratelimit_port}/__stats"),
                           cpus=self.python_cpus)

    def _redis_counts(self) -> dict:
        """Redis's EVALSHA count and mean time per call (INFO commandstats), since the last reset."""
        stats = measure.redis_info(self.redis_port).get("cmdstat_evalsha", {})
        return {"calls": stats.get("calls", 0), "usec_per_call": stats.get("usec_per_call")}

    def _ratelimit_admin(self, path: str) -> dict:
        method = "POST" if path == "/__reset" else "GET"
        body = _http(method, f"http://127.0.0.1:{self.ratelimit_port}{path}", {} if method == "POST" else None)
        return json.loads(body) if body else {}

    # ------------------------------------------------------------ one run
    def _faults(self, exp: Experiment) -> list[tuple[float, dict, str]]:
        """(time, admin body, label) switches for the run's faults, in time order."""
        base = {name: exp.topology.services[svc].error_probability
                for svc, insts in self.backends.items() for name, _ in insts}
        out = []
        for f in exp.faults:
            if isinstance(f, RedisDown):
                out.append((f.at_s, "redis_down", "redis stopped"))
                continue
            names = fault_targets(exp, f)
            if isinstance(f, BackendSlowdown):
                out.append((f.at_s, {"instances": names, "service_time_factor": f.factor}, f"slowdown x{f.factor:g} on"))
                out.append((f.at_s + f.for_s, {"instances": names, "service_time_factor": 1.0}, "slowdown off"))
            else:
                for name in names:
                    p = max(base[name], f.error_probability)
                    out.append((f.at_s, {"instances": [name], "error_probability": p}, f"errors {p:g} on {name}"))
                    out.append((f.at_s + f.for_s, {"instances": [name], "error_probability": base[name]},
                                f"errors off on {name}"))
        return sorted((x for x in out if x[0] < exp.duration_s), key=lambda x: x[0])

    def run(self, exp: Experiment | None = None, *, seed: int = 1, tag: str = "run") -> RealRun:
        """Run ``exp``'s workload and faults once (default: the fleet's own experiment).

        ``exp`` may differ from the fleet's in its workload, faults, duration
        and gateway settings (Envoys are restarted with its pools), not in its
        backends or balancer.
        """
        exp = exp or self.exp
        if backend_instances(exp) != self.backends or len(gateway_instances(exp)) != len(self.gateways):
            raise ValueError("a run may change the workload, faults and gateway settings, not the fleet's parts")
        problems = unsupported(exp)
        if problems:
            raise UnsupportedByReference(problems)
        self._check_alive()
        self._runs += 1
        self._admin("POST", "/fault", {"clear": True})
        self._start_rate_limit(exp)
        self._start_envoys(exp)
        self._admin("POST", "/reset", {})

        wl = exp.workload
        svc = next(iter(wl.services or exp.topology.services))
        schedule = [s.model_dump(mode="json") for s in wl.rate_schedule]
        expected = RateFunction(list(wl.rate_schedule)).integral(0.0, exp.duration_s)
        peak = max(s["rate_per_s"] for s in schedule)
        route_timeout = max(p.route.timeout_s for p in exp.topology.gateways.values())
        timeout = wl.client.timeout_s or route_timeout + 1.0
        start_at = time.time() + LOAD_LEAD_S
        spec = {
            "target": f"127.0.0.1:{self.listen_port}", "path": f"/{svc}/x", "seed": seed,
            "rate_schedule": schedule, "arrivals": wl.arrivals, "duration_s": exp.duration_s,
            "max_requests": int(expected * 1.5 + 6 * math.sqrt(expected + 1) + 1000),
            "timeout_s": timeout, "max_connections": 1024, "start_at": start_at,
            "processes": 1 if peak <= 1500 else 2,
        }
        spec_path = self.run_dir / f"{tag}.load.json"
        out = self.run_dir / f"{tag}.load.npz"
        atomic_write_json(spec_path, spec)
        out.unlink(missing_ok=True)

        switches = self._faults(exp)
        fault_times: list[tuple[float, str]] = []
        envoy_admins = [self.envoy_ports[name][1] for name, _ in self.gateways]
        marks: dict[str, Any] = {}

        def timeline() -> None:
            try:
                follow_plan()
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread below
                marks["error"] = e

        def follow_plan() -> None:
            plan = [(exp.warmup_s, None, "warm-up over")] + switches + [(exp.duration_s, "end", "load over")]
            for t, body, label in sorted(plan, key=lambda x: x[0]):
                delay = start_at + t - time.time()
                if delay > 0 and stop.wait(delay):
                    return
                if body == "end":
                    # While the generator still lives: a process's CPU is lost when it exits.
                    if "busy" in marks:
                        marks["busy_report"] = marks["busy"].stop()
                    if "redis" in self.harness.procs and "redis" not in marks:
                        marks["redis"] = self._redis_counts()
                elif body == "redis_down":
                    marks["redis"] = self._redis_counts()  # its counts die with it
                    self.harness.stop("redis")
                elif body is None:
                    for a in envoy_admins:
                        measure.envoy_reset_counters(a)
                    self._admin("POST", "/reset", {})
                    marks["haproxy"] = measure.haproxy_stats(self.haproxy_socket)
                    marks["cpu"] = self._cpu()
                    marks["busy"] = measure.Busyness()
                    marks["busy"].start(self._pids())
                    if "ratelimit" in self.harness.procs:
                        measure.redis_command(self.redis_port, "CONFIG", "RESETSTAT")
                        self._ratelimit_admin("/__reset")
                else:
                    self._admin("POST", "/fault", body)
                fault_times.append((time.time() - start_at, label))

        stop = threading.Event()
        thread = threading.Thread(target=timeline, name="fleet-timeline", daemon=True)
        load_name = f"loadgen-{self._runs}"
        self.harness.start(load_name, [sys.executable, "-m", "reference_gateway.loadgen",
                                       "--spec", str(spec_path), "--out", str(out)],
                           cpus=self.python_cpus)
        thread.start()
        proc = self.harness.procs[load_name]
        bound = start_at - time.time() + exp.duration_s + timeout + 30
        try:
            rc = proc.popen.wait(timeout=max(bound, 5))
        except Exception:
            self.harness.stop(load_name)
            raise HarnessError(load_name, f"did not finish within {bound:.0f} s", proc.log_path) from None
        finally:
            stop.set()
            thread.join(timeout=10)
        busy = marks.get("busy_report")
        self.harness.stop(load_name)
        self._check_alive()
        if "error" in marks:  # a fault switch or a counter reset failed: the run is not what was asked
            raise marks["error"]
        if rc != 0 or not out.exists():
            raise HarnessError(load_name, f"exited with {rc}", proc.log_path)
        from .loadgen import load_result

        res = load_result(out)
        stats = json.loads(self._admin("GET", "/stats"))["instances"]
        gateways, clusters, outlier = {}, {}, []
        for name, _ in self.gateways:
            a = self.envoy_ports[name][1]
            gateways[name] = measure.envoy_stats(a)
            clusters[name] = measure.envoy_cluster_hosts(a)
            outlier += [dict(ev, gateway=name) for ev in read_outlier_events(
                self.run_dir / f"{name}.outlier.jsonl", start_at)]
        ratelimit = self._ratelimit_admin("/__stats") if "ratelimit" in self.harness.procs else {}
        redis = marks.get("redis", {})
        haproxy = _haproxy_delta(marks.get("haproxy", []), measure.haproxy_stats(self.haproxy_socket))
        cpu_end = self._cpu()
        cpu0 = marks.get("cpu", {})
        cpu = {k: v - cpu0.get(k, 0.0) for k, v in cpu_end.items()}
        measured = {"backends": stats, "gateways": gateways, "clusters": clusters, "cpu_s": cpu,
                    "haproxy": haproxy,
                    "busy": dataclasses.asdict(busy) if busy is not None else None,
                    "outlier_events": outlier, "fault_times": fault_times, "load_meta": res["meta"],
                    "redis": redis, "ratelimit": ratelimit}
        atomic_write_json(self.run_dir / f"{tag}.measured.json", measured)
        return RealRun(start_at=start_at, warmup_s=exp.warmup_s, duration_s=exp.duration_s,
                       t_sched=res["t_sched"], latency=res["latency"], status=res["status"],
                       load_meta=res["meta"], backends=stats, gateways=gateways, clusters=clusters,
                       haproxy=haproxy, cpu_s=cpu, busy=busy,
                       outlier_events=sorted(outlier, key=lambda e: e["t"]), fault_times=fault_times,
                       redis=redis, ratelimit=ratelimit)

    def direct(self, *, rate: float, duration_s: float, seed: int = 1, tag: str = "direct") -> np.ndarray:
        """Latencies (s) of a light load sent straight to the first backend, past HAProxy and Envoy.

        Calibration uses it to split the chain's fixed cost between the hops.
        """
        port = next(iter(self.backend_ports.values()))[0]
        spec = {"target": f"127.0.0.1:{port}", "path": "/direct", "seed": seed,
                "rate_schedule": [{"at_s": 0, "rate_per_s": rate}], "arrivals": "poisson",
                "duration_s": duration_s, "max_requests": int(rate * duration_s * 2 + 100),
                "timeout_s": 2.0, "max_connections": 256, "start_at": time.time() + LOAD_LEAD_S}
        spec_path, out = self.run_dir / f"{tag}.load.json", self.run_dir / f"{tag}.load.npz"
        atomic_write_json(spec_path, spec)
        out.unlink(missing_ok=True)
        name = f"loadgen-{tag}"
        proc = self.harness.start(name, [sys.executable, "-m", "reference_gateway.loadgen", "--spec",
                                         str(spec_path), "--out", str(out)], cpus=self.python_cpus)
        try:
            rc = proc.popen.wait(timeout=duration_s + 30)
        finally:
            self.harness.stop(name)
        if rc != 0 or not out.exists():
            raise HarnessError(name, f"exited with {rc}", proc.log_path)
        from .loadgen import load_result

        res = load_result(out)
        keep = (res["status"] == 200) & (res["t_sched"] >= 0.5)
        return res["latency"][keep]

    def _admin(self, method: str, path: str, body: Any = None) -> bytes:
        """A call to the backends' admin endpoint; a dead backend process is named."""
        try:
            return _http(method, f"http://127.0.0.1:{self.backend_admin}{path}", body)
        except OSError as e:
            time.sleep(0.3)  # a process killed a moment ago is not reaped yet
            self._check_alive()
            raise HarnessError("backends", f"admin {method} {path} failed: {e}",
                               self.harness.procs["backends"].log_path) from None

    def _check_alive(self) -> None:
        """A server that died during a run is an error that names it, not a silent bad row."""
        for name, p in self.harness.procs.items():
            if not name.startswith("loadgen") and not p.alive():
                raise HarnessError(name, f"died during the run (exit {p.popen.poll()})", p.log_path)

    # ------------------------------------------------------------ measurement helpers
    def _pids(self) -> list[int]:
        """The harness, its processes and their children (the generator's workers)."""
        ours = {os.getpid()} | {p.pid for p in self.harness.procs.values() if p.alive()}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    ppid = int(measure.proc_stat_fields(int(entry))[4])
                except (OSError, ValueError, IndexError):
                    continue
                if ppid in ours:
                    ours.add(int(entry))
        return sorted(ours)

    def _cpu(self) -> dict[str, float]:
        out = {}
        for name, p in self.harness.procs.items():
            try:
                out[name] = measure.proc_cpu_seconds(p.pid)
            except OSError:
                pass
        return out

    def backend_overshoot(self) -> dict[str, list[float]]:
        """The backends' recent timer errors (seconds), per instance."""
        return json.loads(_http("GET", f"http://127.0.0.1:{self.backend_admin}/overshoot"))


def _haproxy_delta(before: list[dict], after: list[dict]) -> list[dict]:
    """HAProxy server rows with ``stot`` (sessions) as a difference over the window."""
    start = {(r.get("pxname"), r.get("svname")): r for r in before}
    rows = []
    for r in after:
        b = start.get((r.get("pxname"), r.get("svname")), {})
        row = dict(r)
        for key in ("stot", "bin", "bout"):
            try:
                row[key] = int(r.get(key) or 0) - int(b.get(key) or 0)
            except ValueError:
                pass
        rows.append(row)
    return rows


def read_outlier_events(path: Path, start_at: float) -> list[dict]:
    """Envoy's outlier event log as dicts with ``t`` (seconds since ``start_at``)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        ev = json.loads(line)
        ts = ev.get("timestamp")
        if ts:
            ev["t"] = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() - start_at
        out.append(ev)
    return out
