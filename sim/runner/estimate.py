"""How big a run is, worked out before it starts: requests, events, wall time and memory.

``fleetsim check`` prints the estimate; ``fleetsim run`` prints it and refuses,
unless given ``--yes``, a run whose events exceed ``--max-events`` or whose
memory exceeds what the machine has available, naming the fields that drive
the size. Every figure is a rough estimate (printed with ``~`` and two
significant digits): the constants below were measured once, on one machine,
from real runs, and say where they came from. They are meant to tell a run
of seconds from one of hours, and one that fits in memory from one that
cannot, not to predict a run to the second.

Measurements (2 cores, Python 3.11, Dec 2026; scratch scripts ran
``run_replication`` and ``run_experiment`` each in a fresh process and read
the manifest, ``time.process_time()`` and ``ru_maxrss``):

- ``fleetsim run experiments/quickstart.yaml --replications 1 --jobs 1``:
  manifest ``events`` 1,419,292 for ``requests_simulated`` 202,496 (7.01
  events per request) in 8.35 s of wall time (170,000 events/s); two more
  in-process runs took 4.7 and 5.2 s of CPU (270,000-300,000 events/s) but 12
  and 14 s of wall time, the machine being shared (load average ~4).
- The quickstart fleet for 30 s with one feature switched on at a time:
  base 7.01 events per request; a client ``timeout_s`` 8.01 (one timer per
  try); gateway retry policies with ``per_try_timeout_s`` 7.02 (their timers
  are batched: no event of their own unless a retry happens); active health
  checks every 1 s on 4 gateways x 6 hosts, +2,034 events for 720 probes (2.8
  per probe); outlier detection every 1 s, +120 events for 120 intervals.
- The quickstart fleet at 300 requests/s for 12 s with health checks every
  0.1 s and 0.5 s (0.5 s initial jitter, so every gateway has traffic by its
  first probe): +12,307 events for 2,880 probes, +2,821 for 576 (4.3 and 4.9
  per probe). A gateway with no request sent when its first probe ends
  probes every ``no_traffic_interval_s`` (60 s) instead: fewer events.
- ``experiments/retry_storm.yaml`` as is: 8.07 events per request; its
  ``naive`` variant (3 client attempts, 2 gateway retries, a 4x slowdown):
  32.7 events per request (2.3 tries per call), 237,000 events/s of CPU.
- 1 request/s for 20,000 and 80,000 s: 8.7 events per request, i.e. ~1.7
  events per simulated second beyond the requests (batches and steps).
- Peak memory of a whole run in one process, over the process's start (~130
  MB with the simulator imported): 1 request/s for 20,000 / 40,000 / 80,000
  simulated seconds, 1 replication: +36 / +70 / +134 MB (~1.8 kB per
  simulated second); 4 replications of 40,000 s: +137 MB (each replication
  held after the first adds ~0.6 kB per simulated second); with the HTML
  report, +48 MB (20,000 s, 1 replication) and +56 MB (40,000 s, 4): ~2.5 kB
  per simulated second at most; 40 gateways instead of 4: +15 MB over 40,000
  s (~10 bytes per gateway per simulated second: each gateway's tries series).
- The fleet itself (10 s at 100 requests/s): 400 gateways x 600 backends
  +25 MB, 400 x 60 +7 MB, 4 x 6,000 +48 MB; fitted: ~13 kB per gateway, ~8 kB
  per backend, ~65 bytes per gateway-host pair.
- Requests in flight (30 s constant service time, no limits): 10,000 in
  flight +10 MB, 100,000 +82 MB: ~0.8 kB per request in flight.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sim.config.models import Experiment

if TYPE_CHECKING:
    from sim.components.workload import RateFunction

#: Events per client call, a fleet without client timeouts (quickstart: 7.01).
EVENTS_PER_CALL = 7.0
#: Extra events per try when the client has a ``timeout_s`` (its timer; 8.01 - 7.01).
EVENTS_PER_CLIENT_TIMEOUT = 1.0
#: Events per active health-check probe, at one probe per ``interval_s`` per
#: gateway and host (2.8-4.9 measured).
EVENTS_PER_PROBE = 4.5
#: Events per outlier-detection interval of one gateway's cluster (120 for 120).
EVENTS_PER_OUTLIER_INTERVAL = 1.0
#: Events per simulated second whatever the load (~1.7 measured at 1 request/s).
EVENTS_PER_SIM_SECOND = 2.0
#: Events simulated per second of wall time by one process: the plain
#: ``fleetsim run`` of quickstart above (170,000/s); CPU-time rates were
#: 237,000-300,000/s, a shared machine's wall-time rates as low as 100,000/s.
EVENTS_PER_WALL_S = 170_000.0
#: Wall seconds a run spends outside simulation: start-up, spawning workers,
#: writing, the report (a 30 s quickstart run with --jobs 2: 11 s in all, of
#: which the runner's manifest counts 7.7 s and simulation ~5 s).
FIXED_WALL_S = 5.0

MB = 1_000_000
#: Resident memory of a Python process with the simulator imported (~126-135 MB measured).
PROCESS_BYTES = 135 * MB
#: Per simulated second, a replication being simulated and collected (1.8 kB measured).
SERIES_BYTES_RUNNING = 1_800.0
#: Per simulated second, each replication's result held by the runner (0.6 kB measured).
SERIES_BYTES_STORED = 600.0
#: Per simulated second, the HTML report (1.4-2.4 kB measured).
SERIES_BYTES_REPORT = 2_500.0
#: Per simulated second, each extra per-instance series (gateway tries, health views).
SERIES_BYTES_PER_SERIES = 12.0
#: Per gateway instance, per backend instance, per gateway-host pair (13 kB, 8 kB, 65 B fitted).
GATEWAY_BYTES = 15_000.0
BACKEND_BYTES = 10_000.0
PAIR_BYTES = 100.0
#: Per request in flight (0.8 kB measured).
IN_FLIGHT_BYTES = 1_000.0

#: ``fleetsim run`` refuses more events than this without ``--yes`` (~30 min at the rate above).
DEFAULT_MAX_EVENTS = 300_000_000


@dataclass(frozen=True)
class Size:
    """The estimate of one experiment (all its replications).

    Attributes:
        exp: The experiment.
        requests: Client calls over all replications (the rate schedule's
            integral over the duration, load spikes included).
        events: Simulation events over all replications.
        events_if_retrying: Events should every call use every retry its
            client and gateways allow (equal to ``events`` without retries).
        peak_rate: The highest total rate of the schedule (requests/s), spikes included.
        in_flight: Requests in flight at worst: the peak rate for as long as
            a call can last (the route's or the client's timeout), plus every
            backend's workers and queue; at most the requests of a replication.
        memory: Bytes by cause: ``processes``, ``time series``, ``fleet``,
            ``in flight``, ``report``.
        wall_s: Wall seconds.
        processes: Processes that hold a replication at once.
    """

    exp: Experiment
    requests: float
    events: float
    events_if_retrying: float
    peak_rate: float
    in_flight: float
    memory: dict[str, float]
    wall_s: float
    processes: int

    @property
    def memory_bytes(self) -> float:
        """Peak resident memory of the whole run, all processes together."""
        return sum(self.memory.values())


@dataclass(frozen=True)
class Estimate:
    """The estimate of one ``fleetsim run``: one experiment, or its variants.

    Attributes:
        sizes: One :class:`Size` per experiment run (one per variant).
        side_by_side: Variants run at once, one process each (else one after the other).
        jobs: Processes the run may use.
    """

    sizes: list[Size]
    side_by_side: bool = False
    jobs: int = 1

    @property
    def requests(self) -> float:
        """Client calls, every variant and replication."""
        return sum(s.requests for s in self.sizes)

    @property
    def events(self) -> float:
        """Simulation events, every variant and replication."""
        return sum(s.events for s in self.sizes)

    @property
    def events_if_retrying(self) -> float:
        """Events should every call retry as often as allowed."""
        return sum(s.events_if_retrying for s in self.sizes)

    @property
    def wall_s(self) -> float:
        """Wall seconds, variants side by side sharing the processes."""
        if self.side_by_side:
            parallel = max(1, min(self.jobs, len(self.sizes), os.cpu_count() or 1))
            return sum(s.wall_s for s in self.sizes) / parallel
        return sum(s.wall_s for s in self.sizes)

    @property
    def memory_bytes(self) -> float:
        """Peak memory: the variants running at once together, or the largest one."""
        each = sorted((s.memory_bytes for s in self.sizes), reverse=True)
        if self.side_by_side:
            # One parent plus a process per variant running at once.
            return PROCESS_BYTES + sum(each[: max(1, min(self.jobs, len(each)))])
        return each[0]

    @property
    def largest(self) -> Size:
        """The variant with the most events (the one to blame for the size)."""
        return max(self.sizes, key=lambda s: (s.events, s.memory_bytes))

    def describe(self) -> str:
        """The estimate in one phrase, e.g. ``~2.1 M requests, ~18 M events, ~40 s, ~150 MB``."""
        if endless(self):
            return "endless (an infinite duration or rate)"
        text = (f"~{count(self.requests)} requests, ~{count(self.events)} events, "
                f"~{duration(self.wall_s)}, ~{size_bytes(self.memory_bytes)}")
        if self.events_if_retrying > 1.5 * self.events:
            text += f" (up to ~{count(self.events_if_retrying)} events if every call retries)"
        return text


def variants_side_by_side(variants: dict[str, Experiment], jobs: int) -> bool:
    """Whether ``run_variants`` runs whole variants in parallel, one process each.

    It does when there are too few replications to keep ``jobs`` workers busy
    otherwise. The runner and the estimate both ask this function, so the
    estimate describes the run that happens.

    Args:
        variants: The variants to run.
        jobs: Processes the run may use.

    Returns:
        True for variants side by side, False for one after the other.
    """
    return jobs > 1 and len(variants) > 1 and all(v.replications < jobs for v in variants.values())


def rate_functions(exp: Experiment) -> list[RateFunction]:
    """Each client population's rate, with its share and load spikes, as the fleet builds it.

    Args:
        exp: The experiment.

    Returns:
        One :class:`~sim.components.workload.RateFunction` per client population.
    """
    # Imported here: the CLI imports this module to build its parser, and
    # the simulator's components (SimPy) are not needed for that.
    from sim.components.workload import RateFunction

    out = []
    for region, pop in exp.topology.clients.items():
        spikes = [(f.at_s, f.at_s + f.for_s, f.factor) for f in exp.faults
                  if f.kind == "load_spike" and f.target.region in (None, region)]
        out.append(RateFunction(exp.workload.rate_schedule, pop.share, spikes))
    return out


def _hosts_by_pool(exp: Experiment) -> dict[str, list[int]]:
    """Per gateway pool, the hosts of each cluster (one per service) in the pool's region."""
    topo = exp.topology
    region_of = {az: r for r, reg in topo.regions.items() for az in reg.azs}
    out = {}
    for pool, gp in topo.gateways.items():
        region = region_of.get(gp.az)
        out[pool] = [sum(n for az, n in svc.instances_per_az.items() if region_of.get(az) == region)
                     for svc in topo.services.values()]
    return out


def estimate_size(exp: Experiment, *, jobs: int = 1, report: bool = True) -> Size:
    """Estimate one experiment's run (all its replications) before it starts.

    Args:
        exp: The validated experiment.
        jobs: Processes the run may use for its replications.
        report: Whether the run writes the HTML report.

    Returns:
        The estimate; infinite figures for an unbounded run.
    """
    from sim.components.workload import LOOKAHEAD_S

    topo = exp.topology
    dur = exp.duration_s
    reps = exp.replications
    rates = rate_functions(exp)
    if math.isfinite(dur):
        calls = sum(r.integral(0.0, dur) for r in rates)
        peak = sum(max(r.rates, default=0.0) for r in rates)
    else:
        calls = math.inf if any(r.rates[-1] > 0 for r in rates) else 0.0
        peak = sum(max(r.rates, default=0.0) for r in rates)
    policy = exp.workload.client
    per_call = EVENTS_PER_CALL + (EVENTS_PER_CLIENT_TIMEOUT if policy.timeout_s is not None else 0.0)

    hosts = _hosts_by_pool(exp)
    gateways = sum(gp.instances for gp in topo.gateways.values())
    backends = sum(n for svc in topo.services.values() for n in svc.instances_per_az.values())
    pairs = sum(gp.instances * sum(hosts[p]) for p, gp in topo.gateways.items())
    probes_per_s = intervals_per_s = 0.0
    health_views = 0
    retry_factor = float(policy.max_attempts)
    for pool, gp in topo.gateways.items():
        cl = gp.cluster
        if cl.health_check is not None:
            probes_per_s += gp.instances * sum(hosts[pool]) / cl.health_check.interval_s
        if cl.outlier_detection is not None:
            intervals_per_s += gp.instances * len(hosts[pool]) / cl.outlier_detection.interval_s
        if cl.health_check is not None or cl.outlier_detection is not None:
            health_views += gp.instances * len(hosts[pool])
    gw_retries = max((gp.route.retry_policy.num_retries for gp in topo.gateways.values()
                      if gp.route.retry_policy is not None), default=0)
    retry_factor *= 1 + gw_retries

    per_rep = (calls * per_call + dur * (EVENTS_PER_SIM_SECOND + probes_per_s * EVENTS_PER_PROBE
                                         + intervals_per_s * EVENTS_PER_OUTLIER_INTERVAL))
    events = per_rep * reps

    # Memory. A call lives at most until the client's timeout (every try) or
    # the gateway's route timeout; backends may keep working on an abandoned
    # request, at most as many as their workers and queues hold.
    route_s = max(gp.route.timeout_s for gp in topo.gateways.values())
    life_s = route_s if policy.timeout_s is None else min(route_s, policy.timeout_s) * policy.max_attempts
    # An unbounded queue (queue_limit null) holds at most what the run issues.
    backend_slots = sum((svc.workers + (calls if svc.queue_limit is None else svc.queue_limit))
                        * sum(svc.instances_per_az.values()) for svc in topo.services.values())
    # Never more than the run issues (a long timeout on a short run).
    in_flight = min(peak * (life_s + LOOKAHEAD_S) + backend_slots, calls)
    parallel = 1 if jobs <= 1 or reps <= 1 else min(jobs, reps)
    series_per_s = SERIES_BYTES_RUNNING + SERIES_BYTES_PER_SERIES * (gateways + 5 * health_views)
    one_rep = {
        "time series": dur * series_per_s,
        "fleet": gateways * GATEWAY_BYTES + backends * BACKEND_BYTES + pairs * PAIR_BYTES,
        "in flight": in_flight * IN_FLIGHT_BYTES,
    }
    memory = {
        # The runner's process, and one per replication running in a worker.
        "processes": PROCESS_BYTES * (1 + (parallel if parallel > 1 else 0)),
        "time series": one_rep["time series"] * parallel + dur * SERIES_BYTES_STORED * reps,
        "fleet": one_rep["fleet"] * parallel,
        "in flight": one_rep["in flight"] * parallel,
        "report": dur * SERIES_BYTES_REPORT if report else 0.0,
    }
    cpus = max(1, min(parallel, os.cpu_count() or 1))
    wall = FIXED_WALL_S + events / EVENTS_PER_WALL_S / cpus
    return Size(exp=exp, requests=calls * reps, events=events, events_if_retrying=events * retry_factor,
                peak_rate=peak, in_flight=in_flight, memory=memory, wall_s=wall, processes=parallel)


def estimate_run(exp: Experiment, variants: dict[str, Experiment] | None = None, *, jobs: int = 1,
                 report: bool = True) -> Estimate:
    """Estimate a ``fleetsim run``: the experiment, or each of its variants as the runner schedules them.

    Args:
        exp: The experiment (the base, with variants).
        variants: Its variants, if any; then the variants are what runs.
        jobs: ``--jobs``.
        report: Whether the run writes HTML reports.

    Returns:
        The estimate.
    """
    if not variants:
        return Estimate([estimate_size(exp, jobs=jobs, report=report)], jobs=jobs)
    side = variants_side_by_side(variants, jobs)
    # Side by side, each variant runs its replications in one worker process
    # (jobs=1: a size with one process, the worker's).
    sizes = [estimate_size(v, jobs=1 if side else jobs, report=report) for v in variants.values()]
    return Estimate(sizes, side_by_side=side, jobs=jobs)


def available_memory() -> float | None:
    """Bytes of memory available to a new process, or None when unknown.

    Reads ``MemAvailable`` from ``/proc/meminfo`` (free memory plus what the
    kernel can reclaim), else asks ``os.sysconf`` for the free pages.
    """
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


Locate = Callable[[tuple], tuple[str, int | None]]


def too_big(est: Estimate, *, max_events: float, available: float | None,
            locate: Locate) -> tuple[tuple, str, bool] | None:
    """Why ``fleetsim run`` refuses this run, or None when it may run.

    A run is refused when its events exceed ``max_events`` or its memory
    exceeds ``available`` (``--yes`` overrides both: the estimate is rough),
    and always when it could never end (an infinite duration or rate). The
    reason names the fields that drive the size, each with its place
    (``line N`` in the same file, or the file and line it came from).

    Args:
        est: The run's estimate.
        max_events: The events limit (``--max-events``).
        available: Bytes of memory available, or None to skip that check.
        locate: Maps a dotted path (a tuple) to its ``(file, line)``.

    Returns:
        The path to blame (a tuple), the reason, and whether ``--yes``
        overrides the refusal; or None.
    """
    big = est.largest
    exp = big.exp
    rate_path = _peak_rate_path(exp)
    if endless(est):
        path = ("duration_s",) if not math.isfinite(exp.duration_s) else rate_path
        value = exp.duration_s if path == ("duration_s",) else big.peak_rate
        return path, f"{_num(value)}: the run would never end; give a finite value", False
    if not est.events <= max_events:
        path = _event_blame(exp, big.peak_rate, rate_path)
        text = _event_phrase(exp, big.peak_rate, rate_path, path, _at(locate, path))
        return path, (f"{text} is ~{count(est.requests)} requests (~{count(est.events)} events, "
                      f"~{duration(est.wall_s)}): more than --max-events {max_events:.3g}"), True
    if available is not None and not est.memory_bytes <= available:
        path, text = memory_blame(est, locate)
        return path, (f"{text}: the run needs ~{size_bytes(est.memory_bytes)} of memory, more than the "
                      f"{size_bytes(available)} available"), True
    return None


def memory_blame(est: Estimate, locate: Locate) -> tuple[tuple, str]:
    """The field behind the largest part of the run's memory, and a phrase naming the fields.

    Args:
        est: The run's estimate.
        locate: Maps a dotted path (a tuple) to its ``(file, line)``.

    Returns:
        The path (a tuple) and the phrase, e.g. ``1e+06 s of per-second series x 2 replications``.
    """
    big = est.largest
    path = _memory_path(big, _peak_rate_path(big.exp))
    return path, _memory_phrase(big, path, _at(locate, path))


def endless(est: Estimate) -> bool:
    """Whether the run could never end (an infinite duration or rate): refused even with ``--yes``."""
    return not math.isfinite(est.events)


def _at(locate: Locate, blamed: tuple) -> Callable[[tuple], str]:
    """Names a path with its place, ``line N`` when in the same file as ``blamed``."""
    here = locate(blamed)[0]

    def at(path: tuple) -> str:
        f, line = locate(path)
        name = ".".join(map(str, path))
        if line is None:
            return f"{name}, {f}"
        return f"{name}, line {line}" if f == here else f"{name}, {f}:{line}"

    return at


def _peak_rate_path(exp: Experiment) -> tuple:
    steps = exp.workload.rate_schedule
    i = max(range(len(steps)), key=lambda k: steps[k].rate_per_s)
    return ("workload", "rate_schedule", i, "rate_per_s")


def _event_blame(exp: Experiment, peak: float, rate_path: tuple) -> tuple:
    """The field furthest above its usual value: ten minutes, 10,000 requests/s, ten replications."""
    excess = {("duration_s",): exp.duration_s / 600, rate_path: peak / 10_000,
              ("replications",): exp.replications / 10}
    return max(excess, key=lambda p: excess[p])


def _event_phrase(exp: Experiment, peak: float, rate_path: tuple, blame: tuple, at) -> str:
    """``1e+12 s x up to 3000 requests/s (workload..., line 14) x 2 replications (replications, line 20)``."""
    reps = exp.replications
    parts = {("duration_s",): f"{_num(exp.duration_s)} s",
             rate_path: f"up to {_num(peak)} requests/s",
             ("replications",): f"{reps} replication{'s' if reps != 1 else ''}"}
    others = [f"{parts[p]} ({at(p)})" for p in parts if p != blame and (p != ("replications",) or reps > 1)]
    return " x ".join([parts[blame], *others])


def _memory_path(s: Size, rate_path: tuple) -> tuple:
    """The field behind the largest part of the memory."""
    part = max(("time series", "fleet", "in flight"), key=lambda k: s.memory[k])
    if part == "time series":
        return ("duration_s",)
    if part == "in flight":
        return rate_path
    sizes = _instance_fields(s.exp)
    return max(sizes, key=lambda p: sizes[p])


def _memory_phrase(s: Size, path: tuple, at) -> str:
    exp = s.exp
    if path == ("duration_s",):
        reps = exp.replications
        return (f"{_num(exp.duration_s)} s of per-second series x {reps} replication{'s' if reps != 1 else ''}"
                + (f" ({at(('replications',))})" if reps > 1 else ""))
    if path[0] == "workload":
        return f"up to {_num(s.peak_rate)} requests/s puts ~{count(s.in_flight)} requests in flight at worst"
    sizes = _instance_fields(exp)
    return f"{sizes[path]:,} instances (a fleet of ~{count(sum(sizes.values()))})"


def _instance_fields(exp: Experiment) -> dict[tuple, int]:
    """Every field that sets a number of instances, and its value."""
    topo = exp.topology
    out = {("topology", "gateways", p, "instances"): gp.instances for p, gp in topo.gateways.items()}
    for name, svc in topo.services.items():
        for az, n in svc.instances_per_az.items():
            out[("topology", "services", name, "instances_per_az", az)] = n
    return out


# ------------------------------------------------------------------ formatting


def _num(x: float) -> str:
    """A user's number back, short: ``3000``, ``1e+12``, ``inf``."""
    if not math.isfinite(x):
        return str(x)
    return f"{x:g}"


def _sig2(x: float) -> str:
    """``x`` to two significant digits, without a trailing ``.0``."""
    if x >= 10:
        return f"{round(x, -int(math.floor(math.log10(x))) + 1):,.0f}"
    return f"{x:.2g}"


def count(x: float) -> str:
    """A count as ``390``, ``2.1 k``, ``18 M``, ``3.4 G``; beyond, ``3e+15``."""
    if not math.isfinite(x):
        return "unbounded"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            if x >= 1000 * scale and unit == "G":
                return f"{x:.1g}"
            return f"{_sig2(x / scale)} {unit}"
    return _sig2(x) if x > 0 else "0"


def duration(seconds: float) -> str:
    """Wall time as ``40 s``, ``12 min``, ``3.5 h``, ``2.0 days``, ``6 years``, ``3e+06 years``."""
    if not math.isfinite(seconds):
        return "forever"
    for unit, scale in (("years", 365.25 * 86400), ("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= scale * (2 if unit in ("years", "days") else 1):
            v = seconds / scale
            return f"{v:.1g} {unit}" if v >= 1e4 else f"{_sig2(v)} {unit}"
    return f"{_sig2(max(seconds, 1.0))} s"


def size_bytes(n: float) -> str:
    """Bytes as ``150 MB``, ``2.1 GB``, ``3 TB``; beyond, ``4e+06 TB``."""
    if not math.isfinite(n):
        return "unbounded memory"
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            v = n / scale
            return f"{v:.1g} {unit}" if v >= 1e4 else f"{_sig2(v)} {unit}"
    return f"{_sig2(max(n / 1e6, 0.01))} MB"
