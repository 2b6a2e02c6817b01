"""Engine benchmark: fleetsim's callback engine against naive SimPy, in one run.

Run from the project root::

    .venv/bin/python bench/bench_engine.py           # full run, a few minutes
    .venv/bin/python bench/bench_engine.py --quick   # smaller, well under a minute

What it measures (docs/design.md#speed), all in one process on one machine, so
that the *ratios* mean something on a shared, noisy 2-core box:

1. An M/M/c station through fleetsim's own parts: a Poisson source written
   with the engine (:class:`~sim.engine.SimContext`, :class:`~sim.engine.Sampler`,
   timed callbacks scheduled with ``ctx.call_later`` instead of processes)
   feeding one :class:`~sim.components.backend.BackendInstance`.
2. The same M/M/c written the way a competent SimPy user writes it: a process
   per customer and ``simpy.Resource`` (see :func:`mmc_naive_simpy`).
3. The quickstart experiment's request path through :class:`sim.fleet.Fleet`.
4. The same path written naively in SimPy, one process per request (see
   :func:`path_naive_simpy`), with its parameters read from the same loaded
   experiment so the two stay in step.
5. Peak resident memory of a fleetsim run of at least 2,000,000 requests
   (300,000 with ``--quick``), in a child process.

Timed measurements 1-4 are interleaved (1, 2, 3, 4, 1, 2, 3, 4, ...) and
repeated ``--repeats`` times (3); each uses the same seed every time, so the
work is identical and only the machine's noise varies. The figure reported is
the **best** (highest throughput) of the repeats, because noise on a shared
machine only ever slows a run down; every repeat is shown in parentheses.

Output is ``name: value`` lines (the value is the first token after the
colon; anything after it is a note). The last line is
``speedup_vs_naive_simpy: X`` (M/M/c, fleetsim over naive SimPy). Targets:
M/M/c >= 5x, path >= 4x, peak RSS < 300 MB. The exit status is 1 when a
sanity check (M/M/c waits within 10% of Erlang C, path mean latencies within
15% of each other) fails, since a speedup between two models that disagree
means nothing.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import math
import random  # noqa: TID251 - the naive baselines' locally seeded scalar source, see module notes
import resource
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import simpy

from sim.analytic import mmc_mean_wait_s
from sim.components.backend import BackendInstance
from sim.components.request import LOCAL_REPLY_BYTES, Attempt
from sim.components.workload import RateFunction
from sim.config import Constant, Exponential, Gamma, Lognormal, Service, Uniform, load_experiment
from sim.config.models import Experiment
from sim.engine import Sampler, SimContext
from sim.fleet import Fleet

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "experiments" / "quickstart.yaml"

MMC_SERVERS = 4
MMC_RHO = 0.8
MMC_SERVICE_MEAN_S = 0.010
MMC_SEED = 7
PATH_SEED_OFFSET = 1000  # the naive path's seed is the experiment's seed plus this

TARGET_MMC_SPEEDUP = 5.0
TARGET_PATH_SPEEDUP = 4.0
TARGET_RSS_MB = 300.0
MMC_WAIT_TOLERANCE = 0.10
PATH_LATENCY_TOLERANCE = 0.15

OK = "ok"


def events_scheduled(env: simpy.Environment) -> int:
    """Events SimPy has scheduled so far (its ``_eid`` counter, read from its repr)."""
    text = repr(env._eid)
    return int(text[text.index("(") + 1 : text.rindex(")")])


# --------------------------------------------------------------------------- 1. M/M/c, fleetsim


class PoissonSource:
    """Poisson arrivals of :class:`Attempt` records into a backend, engine style.

    Each arrival is one scheduled callback (``ctx.call_later``) whose value is
    the new attempt; the callback hands it to the backend's ``accept`` and
    schedules the next arrival, the way ``sim/components/network.Link.send``
    delivers a record: no process, no per-customer generator.
    """

    def __init__(self, ctx: SimContext, name: str, rate_per_s: float, customers: int,
                 backend: BackendInstance, on_reply):
        self.gap = Sampler(Exponential(mean=1.0 / rate_per_s), ctx.rng(f"{name}.arrivals")).draw
        self.accept = backend.accept
        self.backend = backend
        self.on_reply = on_reply
        self.left = customers
        self.later = ctx.call_later
        self.scheduler = "ctx.call_later"

    def start(self) -> None:
        self._next()

    def _arrive(self, attempt: Attempt) -> None:
        self.accept(attempt)
        self._next()

    def _next(self) -> None:
        if not self.left:
            return
        self.left -= 1
        attempt = Attempt(None, None, 0, self.backend)
        attempt.on_reply = self.on_reply
        self.later(self.gap(), self._arrive, attempt)


class CountingSink:
    """Counts the attempts the backend answers (its ``on_reply``)."""

    __slots__ = ("done",)

    def __init__(self):
        self.done = 0

    def reply(self, _attempt: Attempt) -> None:
        self.done += 1


def mmc_fleetsim(customers: int, seed: int = MMC_SEED) -> dict:
    """M/M/c through ``BackendInstance``; returns wall time, completions and mean wait."""
    mu = 1.0 / MMC_SERVICE_MEAN_S
    lam = MMC_RHO * MMC_SERVERS * mu
    t0, c0 = time.perf_counter(), time.process_time()
    ctx = SimContext(seed)
    config = Service(instances_per_az={"az1": 1}, workers=MMC_SERVERS, queue_limit=10**9,
                     service_time_s=Exponential(mean=MMC_SERVICE_MEAN_S))
    backend = BackendInstance(ctx, "mmc-az1-0", config, "mmc", "az1")
    sink = CountingSink()
    source = PoissonSource(ctx, "source", lam, customers, backend, sink.reply)
    source.start()
    ctx.run(math.inf)  # the engine's run loop, as Fleet.run uses it
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if sink.done != customers:
        raise RuntimeError(f"fleetsim M/M/c: {sink.done} of {customers} customers completed")
    return {"wall_s": wall, "cpu_s": cpu, "customers": sink.done, "mean_wait_s": backend.wait_sum_s / backend.wait_n,
            "events": events_scheduled(ctx.env), "scheduler": source.scheduler}


# --------------------------------------------------------------------------- 2. M/M/c, naive SimPy


def mmc_naive_simpy(customers: int, seed: int = MMC_SEED) -> dict:
    """M/M/c as a competent SimPy user writes it (the textbook bank/carwash pattern).

    A source process yields exponential gaps and starts one process per
    customer; a customer requests a ``simpy.Resource(capacity=c)`` in a
    ``with`` block, yields a timeout of its service time and releases. Variates
    come from a locally seeded ``random.Random`` (scalar calls returning Python
    floats: cheaper per call than numpy's scalar API for exponentials and
    without numpy-scalar arithmetic, so the baseline is not made slow on
    purpose). Statistics are two running sums, not lists.
    """
    mu = 1.0 / MMC_SERVICE_MEAN_S
    lam = MMC_RHO * MMC_SERVERS * mu
    t0, c0 = time.perf_counter(), time.process_time()
    env = simpy.Environment()
    server = simpy.Resource(env, capacity=MMC_SERVERS)
    rng = random.Random(seed)
    totals = {"wait_s": 0.0, "done": 0}

    def customer(service_s: float):
        arrived = env.now
        with server.request() as req:
            yield req
            totals["wait_s"] += env.now - arrived
            yield env.timeout(service_s)
        totals["done"] += 1

    def source():
        expo = rng.expovariate
        for _ in range(customers):
            yield env.timeout(expo(lam))
            env.process(customer(expo(mu)))

    env.process(source())
    env.run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if totals["done"] != customers:
        raise RuntimeError(f"naive M/M/c: {totals['done']} of {customers} customers completed")
    return {"wall_s": wall, "cpu_s": cpu, "customers": totals["done"], "mean_wait_s": totals["wait_s"] / customers,
            "events": events_scheduled(env)}


# --------------------------------------------------------------------------- 3. request path, fleetsim


def load_path_experiment(duration_s: float, warmup_s: float = 0.0) -> Experiment:
    """The quickstart experiment, one replication, with the given duration and warm-up."""
    sets = [f"duration_s={duration_s}", f"warmup_s={warmup_s}", "replications=1"]
    return load_experiment(QUICKSTART, sets).config


def path_fleetsim(exp: Experiment) -> dict:
    """Build and run the quickstart fleet (building is timed too; it is milliseconds)."""
    t0, c0 = time.perf_counter(), time.process_time()
    result = Fleet(exp).run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    summary = result["summary"]
    return {"wall_s": wall, "cpu_s": cpu, "requests": result["requests"], "events": result["events"],
            "bytes_by_az_pair": summary["bytes_by_az_pair"],
            "mean_latency_s": summary["latency_ms"]["mean"] / 1000.0,
            "succeeded": summary["requests"]["succeeded"], "failed": summary["requests"]["failed"]}


# --------------------------------------------------------------------------- 4. request path, naive SimPy


def naive_variate(dist, rng: random.Random):
    """A zero-argument callable drawing ``dist`` with Python's ``random`` (floats)."""
    if isinstance(dist, Constant):
        value = float(dist.value)
        return lambda: value
    if isinstance(dist, Exponential):
        return functools.partial(rng.expovariate, 1.0 / dist.mean_value)
    if isinstance(dist, Lognormal):
        return functools.partial(rng.lognormvariate, dist.mu, dist.sigma)
    if isinstance(dist, Gamma):
        return functools.partial(rng.gammavariate, dist.shape, dist.scale)
    if isinstance(dist, Uniform):
        return functools.partial(rng.uniform, dist.low, dist.high)
    raise NotImplementedError(f"naive model: no sampler for {dist!r}")


def path_naive_simpy(exp: Experiment, seed: int) -> dict:
    """The quickstart request path as a competent SimPy user would write it.

    One process per request (plus one per backend attempt, so that the route
    timeout can race it), ``simpy.Resource`` for every finite resource:

    - arrivals: a generator process yields exponential gaps (Poisson at the
      workload's rate; thinning if the rate varies within the run) and starts
      one ``request`` process per arrival; the client picks a balancer node of
      its region uniformly (DNS answers with every node);
    - client -> balancer node: an internet hop (``yield env.timeout``);
    - the node forwards round robin over its gateways (every gateway of the
      region with ``cross_zone``, else its own AZ's), one hop;
    - gateway worker CPU: ``simpy.Resource(workers)``, held for ``cpu_time_s``;
    - router: LEAST_REQUEST as power-of-``choice_count`` choices on the
      gateway's own active-request counts, then
      ``yield attempt | env.timeout(route_timeout)``: the attempt process hops
      to the backend, is refused (503) if the backend's bounded queue is full,
      else holds one of the backend's ``simpy.Resource(workers)`` for its
      service time, fails with ``error_probability``, and hops back. If the
      timeout wins the client gets 504 and the backend still does the work;
    - keep-alive connections, as fleetsim's HTTP/1.1 pool: each gateway keeps
      a count of idle connections per backend; an attempt takes one, or opens
      one for a round trip (``yield env.timeout`` of the hop there and back),
      and gives it back when its answer arrives (not after a route timeout);
    - response: back over gateway -> node -> client in one timeout (the sum of
      the two hops' latencies, as fleetsim's balancer does);
    - statistics: latencies of successes appended to a list, outcomes and
      bytes per (source AZ, destination AZ) in dicts.

    Variates come from one locally seeded ``random.Random`` (scalar calls);
    distributions and every topology parameter are read from ``exp``. Only the
    features the quickstart uses are modelled; anything else raises
    ``NotImplementedError`` rather than silently diverging.
    """
    topo = exp.topology
    if len(topo.clients) != 1 or len(topo.regions) != 1:
        raise NotImplementedError("naive model: one region, one client population")
    mix = exp.workload.services or {next(iter(topo.services)): 1.0}
    if len(mix) != 1:
        raise NotImplementedError("naive model: one service")
    svc_name = next(iter(mix))
    svc = topo.services[svc_name]
    if svc.instance_overrides:
        raise NotImplementedError("naive model: no per-instance overrides")
    region = next(iter(topo.regions))
    bal = topo.balancers[region]
    if bal.policy != "round_robin":
        raise NotImplementedError("naive model: round-robin balancer only")

    t_start, c_start = time.perf_counter(), time.process_time()
    env = simpy.Environment()
    rng = random.Random(seed)
    uniform = rng.random
    duration = exp.duration_s

    net = topo.network
    hop_by_relation = {
        "same_az": naive_variate(net.same_az_s, rng),
        "cross_az": naive_variate(net.cross_az_s, rng),
        "internet": naive_variate(net.internet_s, rng),
    }

    def hop(src: str, dst: str):
        if "internet" in (src, dst):
            return hop_by_relation["internet"]
        return hop_by_relation["same_az" if src == dst else "cross_az"]

    bytes_by_pair: dict[tuple[str, str], float] = defaultdict(float)
    outcomes: dict[str, int] = defaultdict(int)
    latencies: list[float] = []

    class Backend:
        def __init__(self, az: str):
            self.az = az
            self.res = simpy.Resource(env, capacity=svc.workers)
            self.workers = svc.workers
            self.queue_limit = svc.queue_limit
            self.service = naive_variate(svc.service_time_s, rng)
            self.resp_bytes = naive_variate(svc.response_bytes, rng)
            self.error_probability = svc.error_probability

    backends = [Backend(az) for az in sorted(svc.instances_per_az) for _ in range(svc.instances_per_az[az])]

    class Gateway:
        def __init__(self, pool):
            if pool.cluster.lb_policy != "LEAST_REQUEST":
                raise NotImplementedError("naive model: LEAST_REQUEST clusters only")
            self.az = pool.az
            self.cpu = simpy.Resource(env, capacity=pool.workers)
            self.cpu_time = naive_variate(pool.cpu_time_s, rng)
            self.route_timeout_s = pool.route.timeout_s
            self.choices = pool.cluster.least_request_lb_config.choice_count
            self.active = [0] * len(backends)
            self.idle = [0] * len(backends)  # idle keep-alive connections per backend
            self.hop_out = [hop(self.az, b.az) for b in backends]

    gateways_by_az: dict[str, list[Gateway]] = defaultdict(list)
    for pool in topo.gateways.values():
        for _ in range(pool.instances):
            gateways_by_az[pool.az].append(Gateway(pool))
    all_gateways = [g for az in sorted(gateways_by_az) for g in gateways_by_az[az]]

    class Node:
        def __init__(self, az: str):
            self.az = az
            self.targets = all_gateways if bal.cross_zone else gateways_by_az[az]
            self.rr = int(uniform() * len(self.targets))

    nodes = [Node(az) for az in sorted(gateways_by_az)]
    internet = hop_by_relation["internet"]
    req_bytes_draw = naive_variate(svc.request_bytes, rng)

    def attempt(gw: Gateway, host: int, nbytes: float, abandoned: list):
        be = backends[host]
        if gw.idle[host]:
            gw.idle[host] -= 1
        else:
            yield env.timeout(gw.hop_out[host]() + hop(be.az, gw.az)())  # connect
        bytes_by_pair[gw.az, be.az] += nbytes
        yield env.timeout(gw.hop_out[host]())
        res = be.res
        if res.count >= be.workers and len(res.queue) >= be.queue_limit:
            outcome, resp = "backend_overflow", LOCAL_REPLY_BYTES
        else:
            with res.request() as slot:
                yield slot
                yield env.timeout(be.service())
            if be.error_probability and uniform() < be.error_probability:
                outcome, resp = "backend_error", LOCAL_REPLY_BYTES
            else:
                outcome, resp = OK, be.resp_bytes()
        bytes_by_pair[be.az, gw.az] += resp
        yield env.timeout(hop(be.az, gw.az)())
        if not abandoned:
            gw.idle[host] += 1
        return outcome, resp

    def request(node: Node, nbytes: float):
        t0 = env.now
        bytes_by_pair["internet", node.az] += nbytes
        yield env.timeout(internet())
        targets = node.targets
        i = node.rr
        node.rr = (i + 1) % len(targets)
        gw = targets[i]
        bytes_by_pair[node.az, gw.az] += nbytes
        yield env.timeout(hop(node.az, gw.az)())
        with gw.cpu.request() as worker:
            yield worker
            yield env.timeout(gw.cpu_time())
        active = gw.active
        n = len(active)
        host = int(uniform() * n)
        for _ in range(gw.choices - 1):
            j = int(uniform() * n)
            if active[j] < active[host]:
                host = j
        active[host] += 1
        abandoned: list = []
        upstream = env.process(attempt(gw, host, nbytes, abandoned))
        done = yield upstream | env.timeout(gw.route_timeout_s)
        if upstream in done:
            outcome, resp = done[upstream]
        else:
            abandoned.append(True)  # the connection is reset, not reused
            outcome, resp = "route_timeout", LOCAL_REPLY_BYTES
        active[host] -= 1
        bytes_by_pair[gw.az, node.az] += resp
        bytes_by_pair[node.az, "internet"] += resp
        yield env.timeout(hop(gw.az, node.az)() + internet())
        outcomes[outcome] += 1
        if outcome == OK:
            latencies.append(env.now - t0)

    rate = RateFunction(exp.workload.rate_schedule, next(iter(topo.clients.values())).share)
    window = [t for t in rate.times if t < duration] + [duration]
    peak = max(rate.rate(t) for t in window)
    steady = all(rate.rate(t) == peak for t in window) and rate.rate(0.0) == peak
    issued = 0

    def arrivals():
        nonlocal issued
        gap = functools.partial(rng.expovariate, peak)
        while True:
            yield env.timeout(gap())
            if env.now >= duration:
                return
            if not steady and uniform() * peak >= rate.rate(env.now):
                continue  # thinning: a rejected candidate arrival
            issued += 1
            node = nodes[0] if len(nodes) == 1 else nodes[int(uniform() * len(nodes))]
            env.process(request(node, req_bytes_draw()))

    env.process(arrivals())
    env.run(until=duration)
    wall, cpu = time.perf_counter() - t_start, time.process_time() - c_start
    return {"wall_s": wall, "cpu_s": cpu, "requests": issued, "events": events_scheduled(env),
            "mean_latency_s": sum(latencies) / len(latencies) if latencies else math.nan,
            "succeeded": outcomes[OK],
            "failed": {k: v for k, v in sorted(outcomes.items()) if k != OK},
            "bytes_by_az_pair": {f"{a}->{b}": round(v) for (a, b), v in sorted(bytes_by_pair.items())}}


# --------------------------------------------------------------------------- 5. peak RSS


def duration_for_requests(exp: Experiment, requests: int) -> float:
    """Seconds of the experiment's rate schedule whose expected arrivals exceed ``requests``
    by four standard deviations (Poisson), rounded up to a whole second."""
    share = sum(c.share for c in exp.topology.clients.values())
    rate = RateFunction(exp.workload.rate_schedule, share)
    target = requests + 4.0 * math.sqrt(requests)
    return float(math.ceil(rate.advance(0.0, target)))


def rss_child(requests: int) -> None:
    """Run in the child: the quickstart fleet for >= ``requests`` requests; print JSON."""
    base = load_experiment(QUICKSTART, ["replications=1"]).config
    duration = duration_for_requests(base, requests)
    exp = load_experiment(QUICKSTART, [f"duration_s={duration}", "replications=1"]).config
    t0 = time.perf_counter()
    result = Fleet(exp).run()
    wall = time.perf_counter() - t0
    print(json.dumps({"requests": result["requests"], "duration_s": duration, "wall_s": wall,
                      "events": result["events"],
                      "self_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def run_rss_child(requests: int) -> dict:
    """Run :func:`rss_child` in a fresh interpreter; add the parent's view of its peak RSS.

    ``RUSAGE_CHILDREN.ru_maxrss`` is the largest peak RSS among the children
    waited for so far (KiB on Linux); call this for the biggest run first.
    """
    cmd = [sys.executable, str(Path(__file__).resolve()), "--rss-child", str(requests)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"RSS child failed ({proc.returncode}):\n{proc.stderr}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["children_maxrss_kib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return out


# --------------------------------------------------------------------------- driver


def fmt_rate(x: float) -> str:
    return f"{x:.0f}"


def runs_note(values: list[float], fmt=fmt_rate) -> str:
    return f"best of {len(values)}: {', '.join(fmt(v) for v in values)}"


def rel(a: float, b: float) -> float:
    return (a - b) / b


def cross_az_bytes(by_pair: dict[str, float]) -> float:
    """Bytes on hops between two different AZs (``"a->b"`` keys; the internet excluded)."""
    total = 0.0
    for key, nbytes in by_pair.items():
        src, dst = key.split("->")
        if src != dst and "internet" not in (src, dst):
            total += nbytes
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller run, well under a minute")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats per measurement (3)")
    ap.add_argument("--no-rss", action="store_true", help="skip the peak-RSS child run")
    ap.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rss_child is not None:
        rss_child(args.rss_child)
        return 0

    quick = args.quick
    customers = 100_000 if quick else 400_000
    path_duration = 10.0 if quick else 40.0
    rss_requests = 300_000 if quick else 2_000_000
    rss_label = "300k" if quick else "2M"

    exp = load_path_experiment(path_duration)
    naive_seed = exp.seed + PATH_SEED_OFFSET
    mu = 1.0 / MMC_SERVICE_MEAN_S
    lam = MMC_RHO * MMC_SERVERS * mu

    print(f"# fleetsim engine benchmark ({'quick' if quick else 'full'}); python {sys.version.split()[0]}, "
          f"simpy {simpy.__version__}")
    print(f"# {args.repeats} interleaved repeats per timed measurement, same seed each time; "
          f"reported value = best (highest throughput)")
    print(f"mmc_params: c={MMC_SERVERS} rho={MMC_RHO} mean_service_s={MMC_SERVICE_MEAN_S} "
          f"customers={customers}")
    print(f"path_params: experiment={exp.name} duration_s={path_duration:g} warmup_s=0 "
          f"rate_per_s={exp.workload.rate_schedule[0].rate_per_s:g}")
    sys.stdout.flush()

    benches = {
        "mmc_fleetsim": lambda: mmc_fleetsim(customers),
        "mmc_naive": lambda: mmc_naive_simpy(customers),
        "path_fleetsim": lambda: path_fleetsim(exp),
        "path_naive": lambda: path_naive_simpy(exp, naive_seed),
    }
    runs: dict[str, list[dict]] = defaultdict(list)
    for _ in range(args.repeats):
        for key, bench in benches.items():
            # Collect the previous run's garbage (a Fleet is full of cycles) outside the timing,
            # so that no measurement pays for another's.
            gc.collect()
            runs[key].append(bench())

    def rates(key: str, unit: str, clock: str = "wall_s") -> list[float]:
        return [r[unit] / r[clock] for r in runs[key]]

    mmc_fs = rates("mmc_fleetsim", "customers")
    mmc_nv = rates("mmc_naive", "customers")
    path_fs = rates("path_fleetsim", "requests")
    path_nv = rates("path_naive", "requests")
    speed_mmc = max(mmc_fs) / max(mmc_nv)
    speed_path = max(path_fs) / max(path_nv)
    ok = True

    print(f"mmc_fleetsim_customers_per_s: {max(mmc_fs):.0f}  ({runs_note(mmc_fs)}; "
          f"target: >= {TARGET_MMC_SPEEDUP:g}x naive, got {speed_mmc:.2f}x)")
    print(f"mmc_naive_simpy_customers_per_s: {max(mmc_nv):.0f}  ({runs_note(mmc_nv)})")
    fs0, nv0 = runs["mmc_fleetsim"][0], runs["mmc_naive"][0]
    print(f"mmc_fleetsim_source_scheduler: {fs0['scheduler']}")
    print(f"mmc_fleetsim_events_per_customer: {fs0['events'] / fs0['customers']:.2f}")
    print(f"mmc_naive_simpy_events_per_customer: {nv0['events'] / nv0['customers']:.2f}")
    erlang = mmc_mean_wait_s(lam, mu, MMC_SERVERS)
    print(f"mmc_erlang_c_mean_wait_ms: {1000 * erlang:.3f}")
    for key, label in (("mmc_fleetsim", "fleetsim"), ("mmc_naive", "naive_simpy")):
        w = runs[key][0]["mean_wait_s"]
        good = abs(rel(w, erlang)) <= MMC_WAIT_TOLERANCE
        ok &= good
        print(f"mmc_{label}_mean_wait_ms: {1000 * w:.3f}  ({100 * rel(w, erlang):+.1f}% vs Erlang C; "
              f"tolerance {100 * MMC_WAIT_TOLERANCE:.0f}%: {'ok' if good else 'MISMATCH'})")

    print(f"path_fleetsim_requests_per_s: {max(path_fs):.0f}  ({runs_note(path_fs)}; "
          f"target: >= {TARGET_PATH_SPEEDUP:g}x naive, got {speed_path:.2f}x)")
    print(f"path_naive_simpy_requests_per_s: {max(path_nv):.0f}  ({runs_note(path_nv)})")
    pf, pn = runs["path_fleetsim"][0], runs["path_naive"][0]
    cross_fs = cross_az_bytes(pf["bytes_by_az_pair"]) / pf["requests"]
    cross_nv = cross_az_bytes(pn["bytes_by_az_pair"]) / pn["requests"]
    print(f"path_fleetsim_events_per_request: {pf['events'] / pf['requests']:.2f}")
    print(f"path_naive_simpy_events_per_request: {pn['events'] / pn['requests']:.2f}")
    print(f"path_fleetsim_requests: {pf['requests']}  (succeeded {pf['succeeded']}, failed {pf['failed']})")
    print(f"path_naive_simpy_requests: {pn['requests']}  (succeeded {pn['succeeded']}, failed {pn['failed']})")
    print(f"path_fleetsim_mean_latency_ms: {1000 * pf['mean_latency_s']:.2f}")
    d = rel(pn["mean_latency_s"], pf["mean_latency_s"])
    good = abs(d) <= PATH_LATENCY_TOLERANCE
    ok &= good
    print(f"path_naive_simpy_mean_latency_ms: {1000 * pn['mean_latency_s']:.2f}  ({100 * d:+.1f}% vs "
          f"fleetsim; tolerance {100 * PATH_LATENCY_TOLERANCE:.0f}%: {'ok' if good else 'MISMATCH'})")
    d = rel(cross_nv, cross_fs)
    good = abs(d) <= PATH_LATENCY_TOLERANCE
    ok &= good
    print(f"path_fleetsim_cross_az_bytes_per_request: {cross_fs:.0f}")
    print(f"path_naive_simpy_cross_az_bytes_per_request: {cross_nv:.0f}  ({100 * d:+.1f}% vs fleetsim; "
          f"tolerance {100 * PATH_LATENCY_TOLERANCE:.0f}%: {'ok' if good else 'MISMATCH'})")
    cpu_mmc = max(rates("mmc_fleetsim", "customers", "cpu_s")) / max(rates("mmc_naive", "customers", "cpu_s"))
    cpu_path = max(rates("path_fleetsim", "requests", "cpu_s")) / max(rates("path_naive", "requests", "cpu_s"))
    print(f"speedup_mmc_by_cpu_time: {cpu_mmc:.2f}  (same runs, process CPU seconds instead of wall)")
    print(f"speedup_path_by_cpu_time: {cpu_path:.2f}  (same runs, process CPU seconds instead of wall)")
    sys.stdout.flush()

    if not args.no_rss:
        child = run_rss_child(rss_requests)
        mb = child["children_maxrss_kib"] / 1024.0
        verdict = "ok" if mb < TARGET_RSS_MB else "OVER"
        print(f"peak_rss_{rss_label}_requests_mb: {mb:.1f}  (target: < {TARGET_RSS_MB:g} MB: {verdict}; "
              f"child RUSAGE_CHILDREN ru_maxrss)")
        print(f"requests_in_rss_run: {child['requests']}  (simulated {child['duration_s']:g} s of "
              f"{exp.name} in {child['wall_s']:.1f} s wall, "
              f"{child['requests'] / child['wall_s']:.0f} requests/s)")

    print(f"speedup_path_vs_naive_simpy: {speed_path:.2f}")
    print(f"speedup_vs_naive_simpy: {speed_mmc:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
