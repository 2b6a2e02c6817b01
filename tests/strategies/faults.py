"""The fault timeline (BackendSlowdown, ErrorBurst, InstanceCrash, AzOutage, LoadSpike, RollingRestart, FaultTarget).

1-3 faults of any kind, overlapping or not, targeting real parts (a
backend or gateway instance, a service, an AZ, a region, or everything),
placed in one of the ways :data:`tests.strategies.registry.FAULT_MODES`
names:

- ``to_end``: one fault ends at the last instant of the run (the others
  anywhere, from t=0): recovery is not judged, so any start is accepted,
  the warm-up included;
- ``judged``: every fault ends at least 8 s (``hold_s + smooth_s``) before
  the end of the run's whole seconds (``floor(duration_s)``) and starts
  after the warm-up and at 1 s or later;
- ``refused``: a timeline the fleet must refuse with an error naming the
  path at fault: a fault inside the warm-up, one starting before second 1, a
  run too short to judge the recovery, a fault past the end, a target that matches nothing, a load
  spike targeting a service, an AZ outage with a target.

Times are multiples of 1/8 s (so a window ending at ``duration_s`` does so
exactly) or any float.
"""

from __future__ import annotations

import math

from hypothesis import strategies as st

from sim.metrics.recovery import RECOVERY_RULES

from .distributions import floats
from .registry import Options, Plan, extension

#: Fault kinds that hit Redis servers, drawn when the topology has Redis.
REDIS_FAULTS = ("redis_down", "redis_slowdown", "redis_failover")

#: Seconds that must follow the last fault for its recovery to be judged.
JUDGE_S = RECOVERY_RULES["hold_s"] + RECOVERY_RULES["smooth_s"]


def times(lo: float, hi: float):
    """A time in [lo, hi]: a multiple of 1/8 s, or any float."""
    if hi <= lo:
        return st.just(lo)
    grid = st.integers(min_value=int(-(-lo * 8 // 1)), max_value=int(hi * 8)).map(lambda k: k / 8)
    return st.one_of(grid.filter(lambda t: lo <= t <= hi), floats(lo, hi))


@st.composite
def targets(draw, plan: Plan, kind: str) -> dict:
    """A target that matches: fields of one real part (a backend, or for a crash a gateway too), or none."""
    parts = [{"instance": n, "service": s, "az": az, "region": plan.az_region[az]} for n, s, az in plan.backends]
    if kind == "instance_crash":
        parts += [{"instance": n, "az": az, "region": plan.az_region[az]} for n, az in plan.gateways]
    part = draw(st.sampled_from(parts))
    keys = draw(st.lists(st.sampled_from(sorted(part)), unique=True, max_size=len(part)))
    return {k: part[k] for k in keys}


@st.composite
def faults(draw, plan: Plan, opts: Options, at_s: float, for_s: float, redis: tuple[str, ...] = ()) -> dict:
    """One fault of an allowed kind in the window ``[at_s, at_s + for_s)``; Redis faults when ``redis`` names servers."""
    # Redis faults only for the whole schema: relations that restrict the kinds keep their own.
    # With Redis in the fleet, half the faults hit it (it is drawn in few fleets).
    if redis and opts.fault_kinds == Options().fault_kinds and draw(st.booleans()):
        kind = draw(st.sampled_from(REDIS_FAULTS))
    else:
        kind = draw(st.sampled_from(opts.fault_kinds))
    f: dict = {"kind": kind, "at_s": at_s, "for_s": for_s}
    if kind in REDIS_FAULTS:
        if kind == "redis_slowdown":
            f["factor"] = draw(st.sampled_from([0.5, 10.0, 1000.0]) | floats(0.1, 100.0))
        # Always a target (an empty one hits every server), so the field is drawn for each kind.
        f["target"] = draw(st.sampled_from([{}, {"instance": draw(st.sampled_from(redis))}]))
        return f
    if kind == "az_outage":
        f["az"] = draw(st.sampled_from(plan.azs_with_parts))
        if draw(st.booleans()):
            f["target"] = {}  # the only target an outage takes
        return f
    if kind == "load_spike":
        f["factor"] = draw(st.sampled_from([0.5, 1.0, 3.0]) | floats(0.1, 5.0))
        if draw(st.booleans()):
            f["target"] = {"region": draw(st.sampled_from(plan.clients))}
        return f
    if kind == "rolling_restart":
        # Each gateway gets for_s / n; drain and restart take a quarter of the shortest share.
        share = for_s / (4 * max(1, len(plan.gateways)))
        f.update(drain_s=draw(st.sampled_from([0.0, share])), restart_s=draw(st.sampled_from([0.0, share])))
        if draw(st.booleans()):
            f["pool"] = draw(st.sampled_from(sorted(plan.pools)))
        if draw(st.booleans()):
            name, az = draw(st.sampled_from(plan.gateways))
            f["target"] = draw(st.sampled_from([{"instance": name}, {"az": az}, {}]))
        return f
    if kind == "backend_slowdown":
        f["factor"] = draw(st.sampled_from([0.5, 1.0, 4.0]) | floats(0.1, 20.0))
    elif kind == "error_burst":
        f["error_probability"] = draw(st.sampled_from(opts.error_probabilities))
    target = draw(targets(plan, kind))
    if target or draw(st.booleans()):
        f["target"] = target
    return f


@st.composite
def windows(draw, lo: float, hi: float) -> tuple[float, float]:
    """A window [at, at + for) inside [lo, hi]."""
    at = draw(times(lo, hi - 1 / 8))
    end = draw(times(at + 1 / 8, hi))
    return at, end - at


@st.composite
def timelines(draw, plan: Plan, opts: Options, redis: tuple[str, ...] = ()) -> list[dict]:
    """1-3 faults placed in one of the modes ``opts`` allows (see the module docstring); ``redis``: its servers."""
    dur, warm = plan.duration_s, plan.warmup_s
    modes = [m for m in opts.fault_modes if m != "none"]
    # Judged recovery needs 8 whole seconds after the faults, and a whole second before them.
    lo = max(1.0, warm)
    judged_end = math.floor(dur) - JUDGE_S
    if judged_end < lo + 1 / 8:
        modes = [m for m in modes if m != "judged"]
    mode = draw(st.sampled_from(modes))
    n = draw(st.integers(min_value=1, max_value=3))
    out = []
    if mode == "to_end":
        last = draw(st.integers(min_value=0, max_value=n - 1))
        for i in range(n):
            if i == last:
                at = draw(times(0.0, dur - 1 / 8))
                window = (at, dur - at)
            else:
                window = draw(windows(0.0, dur))
            out.append(draw(faults(plan, opts, *window, redis)))
        return out
    if mode == "judged":
        return [draw(faults(plan, opts, *draw(windows(lo, judged_end)), redis)) for _ in range(n)]
    # refused: one fault that must be refused, among valid ones reaching the end.
    out = [draw(faults(plan, opts, *draw(windows(0.0, dur)), redis)) for _ in range(n - 1)]
    problems = ["too_short", "past_the_end", "no_match", "spike_target", "outage_target"]
    if warm >= 1 / 8:
        problems.append("in_warmup")
    elif dur >= 1 + JUDGE_S:
        problems.append("before_second_one")
    problem = draw(st.sampled_from(problems))
    if problem == "in_warmup":  # ends before the run does, so recovery would be judged
        at = draw(times(0.0, warm - 1 / 8))
        bad = draw(faults(plan, opts, at, 1 / 8, redis))
        if dur < at + 1 / 8 + JUDGE_S:
            problem = "too_short"
    if problem == "before_second_one":  # no warm-up: judged, but no whole second before it
        at = draw(times(0.0, 1 - 1 / 8))
        bad = draw(faults(plan, opts, at, 1 / 8, redis))
    elif problem == "too_short":
        lo_short = max(0.0, math.floor(dur) - JUDGE_S - 1 / 8 + 1e-9)
        at, length = draw(windows(lo_short, dur - 1 / 8)) if dur - 1 / 8 > lo_short + 1 / 8 else (0.0, dur / 2)
        bad = draw(faults(plan, opts, at, length, redis))
    elif problem == "past_the_end":
        at = draw(times(0.0, dur - 1 / 8))
        bad = draw(faults(plan, opts, at, dur - at + draw(st.sampled_from([1 / 8, 1.0])), redis))
    elif problem == "no_match":
        bad = {"kind": "instance_crash", "at_s": 0.0, "for_s": dur, "target": {"instance": "nobody-0"}}
    elif problem == "spike_target":
        bad = {"kind": "load_spike", "at_s": 0.0, "for_s": dur, "factor": 2.0,
               "target": {"service": next(iter(plan.services))}}
    else:
        bad = {"kind": "az_outage", "at_s": 0.0, "for_s": dur, "az": plan.azs_with_parts[0],
               "target": {"az": plan.azs_with_parts[0]}}
    out.insert(draw(st.integers(min_value=0, max_value=len(out))), bad)
    return out


@extension("experiment", "faults", order=10)
def _faults(plan: Plan, place, node: dict, opts: Options):
    r = node.get("topology", {}).get("redis")
    if r is None:
        servers: tuple[str, ...] = ()
    elif r.get("placement") == "per_az":
        servers = tuple(f"redis-{az}" for az in sorted({az for az, _ in plan.pools.values()}))
    else:
        servers = ("redis",)
    return timelines(plan, opts, servers)
