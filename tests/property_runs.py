"""Running drawn experiments for the property tests: loading, capped and checked runs, invariants, failure files.

- :func:`load` reads a drawn experiment the way ``fleetsim run`` does (YAML
  file, :func:`sim.config.load_experiment`: overrides and variants applied);
  :func:`assert_clean_refusal` is what a refused one must look like.
- :func:`checked_run` runs a fleet with an event cap and a wall-clock limit
  (no hang), calling every gateway's ``check_limits()`` (workers, circuit
  breakers, retry budgets, connection pools) every ``check_every_s`` of
  simulated time and at the end.
- :func:`check_invariants` checks a finished run: conservation of calls and
  tries, tries at the backends, the summary's figures (no negative, NaN only
  where documented as "no data", utilisations at most 1), counters against
  their per-second series.
- :func:`reproducible` writes a failing case's experiment as YAML under
  ``tests/failures/`` (git-ignored) and names the file in the failure, so
  ``fleetsim run tests/failures/<test>.yaml`` reruns it, and
  ``python -m tests.property_runs tests/failures/<test>.yaml`` rechecks every
  invariant on it.
- :func:`examples` is a test's example budget under the loaded Hypothesis
  profile (tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import signal
import sys
import tempfile
import threading
from pathlib import Path

from hypothesis import reject, settings
from hypothesis.errors import HypothesisException
from ruamel.yaml import YAML

from sim.components.health.checker import Probe
from sim.components.request import CLIENT_TIMEOUT, GATEWAY_RESET, STATUS
from sim.config import ConfigError, Experiment, dump_resolved, load_experiment
from sim.config.loader import LoadedExperiment
from sim.files import dumps
from sim.fleet import Fleet, FleetError
from sim.runner.estimate import estimate_size

FAILURES = Path(__file__).resolve().parent / "failures"

#: Every outcome a call can end with (requests.failed's keys and the err_<cause> series).
OUTCOMES = frozenset(STATUS) | {CLIENT_TIMEOUT, GATEWAY_RESET}


def examples(default: int, thorough: int) -> int:
    """A test's example budget: ``default``, or ``thorough`` under ``--hypothesis-profile=thorough``."""
    return thorough if settings.get_current_profile_name() == "thorough" else default


# ---------------------------------------------------------------- loading


def yaml_text(data: dict) -> str:
    """Plain data as YAML, written as :func:`sim.config.dump_resolved` writes."""
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False
    buf = io.StringIO()
    yaml.dump(data, buf)
    return buf.getvalue()


def load(data: dict | str) -> LoadedExperiment:
    """Load drawn data (or YAML text) from a file as ``fleetsim run`` does; raises ConfigError."""
    text = data if isinstance(data, str) else yaml_text(data)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "experiment.yaml"
        path.write_text(text, encoding="utf-8")
        return load_experiment(path)


def assert_clean_refusal(e: Exception) -> str:
    """A refusal must be a ConfigError or FleetError naming the path at fault; returns a label."""
    if isinstance(e, ConfigError):
        for issue in e.issues:
            assert issue.path and issue.reason, f"a ConfigError issue without a path or reason: {issue}"
        return "refused: " + ", ".join(sorted({i.path.split(".")[0] for i in e.issues}))
    assert isinstance(e, FleetError), f"refused with {type(e).__name__}, not a ConfigError or FleetError: {e}"
    assert e.path and e.reason, f"a FleetError without a path or reason: {e}"
    return f"refused by the fleet: {e.path[0]}"


def build(exp: Experiment, replication: int = 0) -> Fleet | None:
    """The built fleet, or None when it refuses ``exp`` (cleanly: :func:`assert_clean_refusal`)."""
    try:
        return Fleet(exp, replication)
    except HypothesisException:
        raise
    except Exception as e:  # noqa: BLE001 - any refusal is checked
        assert_clean_refusal(e)
        return None


# ---------------------------------------------------------------- known bugs

#: Simulator bugs the generators steer clear of, each kept as a strict xfail in
#: tests/test_property_regressions.py, where it is described. A run that ends in one
#: is rejected (not counted as an example), never passed.
KNOWN_BUGS: dict[str, str] = {}  # none open: the last (a zero baseline) was fixed with its regression test


def known_bug(e: BaseException) -> str | None:
    """The regression test of the known bug ``e`` is, if it is one."""
    if isinstance(e, ValueError):
        for pattern, test in KNOWN_BUGS.items():
            if re.search(pattern, str(e)):
                return test
    return None


# ---------------------------------------------------------------- capped, checked runs


class EventCapExceeded(AssertionError):
    """A run scheduled more events than its bound: a runaway (or a far too low estimate)."""


def event_cap(exp: Experiment) -> int:
    """The most events one replication of ``exp`` may schedule.

    20 times the runner's estimate should every call retry as often as its
    client and gateways allow (:func:`sim.runner.estimate.estimate_size`),
    plus 50,000: the estimate is rough (two significant figures, constants
    measured on larger fleets) and short runs are dominated by fixed costs.
    """
    size = estimate_size(exp, report=False)
    return int(20 * size.events_if_retrying / exp.replications) + 50_000


@contextlib.contextmanager
def wall_clock_limit(seconds: float):
    """Raise TimeoutError in the block after ``seconds`` of wall time (main thread, POSIX only)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise TimeoutError(f"the run took more than {seconds:g} s of wall time: a hang?")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def checked_run(exp: Experiment, replication: int = 0, *, check_every_s: float = 0.02, first_check_s: float = 0.0,
                wall_s: float = 60.0) -> tuple[Fleet, dict] | None:
    """Run one replication with an event cap, a wall-clock limit and the components' limit checks.

    Returns None when the fleet refuses ``exp`` (cleanly, or the test fails).

    Every ``check_every_s`` of simulated time (from ``first_check_s``) and at
    the end, every gateway's :meth:`~sim.components.gateway.GatewayInstance.check_limits`
    runs, and the events scheduled so far are held to :func:`event_cap`. The
    checks schedule events of their own but change no state, so the run's
    results are those of an unchecked run.
    """
    fleet = build(exp, replication)
    if fleet is None:
        return None
    ctx = fleet.ctx
    cap = event_cap(exp)
    gateways = fleet.all_gateways()

    def watch(_value=None) -> None:
        n = fleet.events_scheduled()
        if n > cap:
            raise EventCapExceeded(f"{n} events by t={ctx.now:g} s, over the cap of {cap} (see event_cap)")
        for gw in gateways:
            gw.check_limits()
        if ctx.now + check_every_s < exp.duration_s:
            ctx.call_later(check_every_s, watch)

    if first_check_s < exp.duration_s:
        ctx.call_later(first_check_s, watch)
    with wall_clock_limit(wall_s):
        try:
            result = fleet.run()
        except ValueError as e:
            if known_bug(e):
                reject()  # see KNOWN_BUGS
            raise
    watch()
    return fleet, result


# ---------------------------------------------------------------- invariants


def _walk(value, path=()):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, (*path, str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, (*path, str(i)))
    else:
        yield path, value


def nan_allowed(summary: dict, counters: dict, path: tuple[str, ...]) -> bool:
    """Whether the summary documents NaN ("no data") at ``path`` for this run.

    - ``latency_ms.*``: no counted call succeeded (sim.metrics.summary.summarise);
    - ``backend.<service>.mean_wait_ms``: no attempt that arrived in the window
      started service (``wait_n`` 0), ``p_wait``: none was admitted
      (sim.metrics.summary.backend_section);
    - ``retries.amplification``: no answered counted call reached a backend;
      ``retries.gateway_amplification``: the gateways routed no request in the
      window (sim.metrics.summary.retries_section);
    - ``connections[.pools.<pool>].resumption_rate``: no TLS handshake in the
      window; ``gateway_cpu.pools.<pool>.tls_share``: no CPU charged,
      ``mean_worker_wait_ms``: nothing put on a worker (sim.metrics.gateway_cpu);
    - ``gslb.failover_by_region.<region>.detection_s`` / ``time_to_move_s``:
      the failure was not detected, or its traffic had not moved, when the
      run ended (sim.metrics.summary.gslb_section);
    - ``rate_limit.latency_added_ms.*``: no remote check was decided in the
      window (sim.metrics.ratelimit);
    - ``rate_limit[.keys.<key>].admitted_ratio``: the ideal bucket admitted
      nothing (sim.metrics.ratelimit);
    - ``rate_limit.redis.<server>.server_ms_*``: the server answered no call
      (sim.components.redis).
    - ``zone_routing.<pool>/<service>.local_fraction``: the pool sent no try
      (sim.components.locality.pool_results);
    - ``cost.per_million_calls``: no call in the window and no production_rps
      (sim.metrics.cost.cost_section).
    """
    if path[0] == "latency_ms":
        return summary["requests"]["succeeded"] == 0
    if path[0] == "backend" and path[2] == "mean_wait_ms":
        return counters["backend"][path[1]]["wait_n"] == 0
    if path[0] == "backend" and path[2] == "p_wait":
        return counters["backend"][path[1]]["admitted"] == 0
    if path == ("retries", "amplification"):
        return sum(c["answered_with_backend_tries"] for c in counters["clients"].values()) == 0
    if path == ("retries", "gateway_amplification"):
        return sum(g["requests"] for g in counters["gateway"].values()) == 0
    if path == ("connections", "resumption_rate"):
        c = summary["connections"]
        return c["full"] + c["resumed"] == 0
    if path[0] == "connections" and path[-1] == "resumption_rate":
        hs = summary["connections"]["pools"][path[2]]["handshakes"]
        return hs["full"] + hs["resumed"] == 0
    if path[0] == "gateway_cpu" and path[-1] in ("tls_share", "utilization"):
        return summary["gateway_cpu"]["pools"][path[2]]["cpu_s"] == 0
    if path[:2] == ("gslb", "failover_by_region"):  # not detected, or not moved, before the run ended
        row = next(r for r in summary["gslb"]["failover"] if r["region"] == path[2])
        return row[path[3]] is None
    if path[:2] == ("rate_limit", "latency_added_ms"):  # no remote check decided in the window
        return summary["rate_limit"]["checked"] == 0
    if path[0] == "rate_limit" and path[-1] == "admitted_ratio":  # over an ideal bucket that admitted nothing
        node = summary
        for key in path[:-1]:
            node = node[key]
        return node["ideal_admitted"] == 0
    if path[:2] == ("rate_limit", "redis") and path[-1].startswith("server_ms_"):
        return summary["rate_limit"]["redis"][path[2]]["calls"] == 0
    if path[0] == "gateway_cpu" and path[-1] == "mean_worker_wait_ms":
        return counters["gateway"][path[2]]["worker_starts"] == 0
    if path[0] == "zone_routing" and path[2] == "local_fraction":
        return sum(summary["zone_routing"][path[1]]["tries_by_az"].values()) == 0
    if path == ("cost", "per_million_calls"):
        return summary["cost"]["production_rps"] == 0
    return False


#: Summary figures that may be negative: least-squares slopes of the recovery verdict.
MAY_BE_NEGATIVE = {("recovery", "goodput_trend_rps_per_s"), ("recovery", "backlog_trend_per_s")}


def infinite_capacity(exp: Experiment, service: str) -> bool:
    """Some instance of ``service`` serves at an infinite rate: workers over a mean service time of 0
    (or so small that the quotient overflows), as sim.fleet.capacity documents."""
    s = exp.topology.services[service]
    err = s.timer_error_s.mean if s.timer_error_s is not None else 0.0
    factors = [o.service_time_factor for o in s.instance_overrides.values()] + [1.0]
    means = [s.service_time_s.mean * f + err for f in factors]
    return any(m <= 0 or math.isinf(s.workers / m) for m in means)


def check_summary_figures(exp: Experiment, result: dict) -> None:
    """No negative figure, NaN only where documented (:func:`nan_allowed`), infinity only as a capacity."""
    summary, counters = result["summary"], result["counters"]
    for path, value in _walk(summary):
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        where = ".".join(path)
        if math.isnan(value):
            assert nan_allowed(summary, counters, path), f"summary {where} is NaN and there is data for it"
            continue
        if path in MAY_BE_NEGATIVE:
            continue
        assert value >= 0, f"summary {where} is negative: {value!r}"
        if math.isinf(value):
            assert path[0] == "backend" and path[2] == "capacity_rps" and infinite_capacity(exp, path[1]), (
                f"summary {where} is infinite")
    for group in ("backend", "gateway"):
        for name, figures in summary[group].items():
            assert figures["utilization"] <= 1 + 1e-9, f"{group}.{name}.utilization {figures['utilization']!r} > 1"
    for cause in summary["requests"]["failed"]:
        assert cause in OUTCOMES, f"unknown failure cause {cause!r}"


def check_series(exp: Experiment, result: dict) -> None:
    """Each counter with a per-second series equals the series summed over its window.

    Over the window (a whole-second warm-up): ``requests.offered`` and the
    ``offered`` series, ``throughput_rps``/``goodput_rps`` and the
    ``throughput``/``goodput`` series, the gateways' tries and the
    ``attempts`` series, ``health_checks.probes`` and ``health_check_probes``.
    Without a warm-up (every call counted): ``client.tries`` and ``tries``,
    ``requests.succeeded`` and ``goodput``, each ``requests.failed`` cause
    and its ``err_<cause>`` series, ``requests.in_flight`` and the last
    ``in_flight``.
    """
    s, ts, counters = result["summary"], result["timeseries"], result["counters"]
    n = math.ceil(exp.duration_s)
    for key, series in ts.items():
        assert len(series) == n, f"series {key} has {len(series)} seconds, the run {n}"
    w = exp.warmup_s
    window = exp.duration_s - w
    if w == int(w):
        w = int(w)
        assert sum(ts["offered"][w:]) == s["requests"]["offered"], "requests.offered != the offered series"
        assert s["throughput_rps"] == sum(ts["throughput"][w:]) / window, "throughput_rps != its series"
        assert s["goodput_rps"] == sum(ts["goodput"][w:]) / window, "goodput_rps != its series"
        tries = sum(g["tries"] for g in counters["gateway"].values())
        assert sum(ts["attempts"][w:]) == tries, f"gateway tries {tries} != the attempts series"
        assert sum(ts["health_check_probes"][w:]) == s["health_checks"]["probes"], "probes != their series"
    if exp.warmup_s == 0:
        req = s["requests"]
        assert sum(ts["tries"]) == s["client"]["tries"], "client.tries != the tries series"
        assert sum(ts["goodput"]) == req["succeeded"], "requests.succeeded != the goodput series"
        causes = {k[4:] for k in ts if k.startswith("err_")}
        assert causes == set(req["failed"]), f"failure causes {sorted(req['failed'])} != series {sorted(causes)}"
        for cause, count in req["failed"].items():
            assert sum(ts[f"err_{cause}"]) == count, f"requests.failed.{cause} != its err_ series"
        assert ts["in_flight"][-1] == req["in_flight"], "requests.in_flight != the last in_flight"


def check_tries(exp: Experiment, fleet: Fleet, result: dict) -> None:
    """Every try a gateway sent is accounted for at a backend, on the wire, pending, or failed before it.

    Over the whole run (checked for runs without a warm-up, when the window's
    counters cover the whole run):

    - at the gateway: tries <= requests routed + retries admitted, and at
      least that minus the refusals of max_requests, the route timeouts and
      gateway resets (a retry cancelled in its back-off) and the retries
      still active (in their back-off at the end);
    - at the backends: tries = attempts the backends received less the
      health-check probes + tries on the wire to them + tries waiting for a
      connection + pending overflows + connect timeouts + the rest: tries
      given up while waiting for a connection (by a route timeout or a
      gateway crash) and connections refused by a backend that was down,
      which no counter reports; the rest is at least 0, at most the route
      timeouts and gateway resets plus (with a backend ever down) the
      connects that did not time out; exactly 0 without them.
    """
    if exp.warmup_s != 0:
        return
    ctx = fleet.ctx
    gws = [g.results() for g in fleet.all_gateways()]
    tries = sum(g["tries"] for g in gws)
    routed = sum(g["requests"] for g in gws)
    retries = sum(sum(g["retries_by_reason"].values()) for g in gws)
    timeouts = sum(g["timeouts"] for g in gws)
    resets = sum(g["resets"] for g in gws)
    # Retries admitted and not yet released: in flight, or in their back-off (a retry cancelled
    # there by a route timeout or a crash is released when the back-off ends).
    retrying = sum(c.retries_active for g in fleet.all_gateways() for c in g.clusters.values())
    overflow_mr = sum(g["overflow_max_requests"] for g in gws)
    assert tries <= routed + retries, f"gateway tries {tries} > routed {routed} + retries {retries}"
    assert tries >= routed + retries - overflow_mr - timeouts - resets - retrying, (
        f"gateway tries {tries} < routed {routed} + retries {retries} - max_requests refusals {overflow_mr} - "
        f"timeouts {timeouts} - resets {resets} - retries active {retrying}")

    backends = fleet.all_backends()
    received = sum(b.results()["attempts"] for b in backends)
    on_wire = [a for b in backends for _, a in ctx.pending(b.accept)]
    probes_on_wire = sum(1 for a in on_wire if isinstance(a, Probe))
    probes = result["summary"]["health_checks"]["probes"]
    pending = sum(p.pending for g in fleet.all_gateways() for p in g.pools.values())
    failed = sum(g["pending_overflow"] + g["connect_timeouts"] for g in gws)
    reached = received - (probes - probes_on_wire)
    rest = tries - reached - (len(on_wire) - probes_on_wire) - pending - failed
    down = any(b.crashes for b in backends)
    connects = sum(g["connects"] - g["connect_timeouts"] for g in gws) if down else 0
    detail = (f"tries {tries} = reached {reached} + on the wire {len(on_wire) - probes_on_wire} + pending {pending} + "
              f"failed {failed} + rest {rest}")
    assert rest >= 0, f"tries at the backends: more tries reached them than were sent: {detail}"
    assert rest <= timeouts + resets + connects, (
        f"tries lost between gateways and backends: {detail}; the rest may be at most route timeouts "
        f"{timeouts} + gateway resets {resets} + connects {connects}")


def check_amplification(exp: Experiment, result: dict) -> None:
    """Without retries anywhere, amplification is exactly 1 (or NaN: no call reached a backend).

    Not checked with a client timeout: a call whose only try is answered
    after the client stopped waiting counts that try in the numerator and
    not in the denominator (a known bug, tests/test_property_regressions.py
    ``test_amplification_is_one_without_retries_when_clients_time_out``).
    """
    if exp.workload.client.timeout_s is not None:
        return
    retries = exp.workload.client.max_attempts > 1 or any(
        gp.route.retry_policy is not None and gp.route.retry_policy.num_retries > 0
        for gp in exp.topology.gateways.values())
    amp = result["summary"]["retries"]["amplification"]
    if not retries and not math.isnan(amp):
        assert amp == 1.0, f"retries.amplification {amp!r} without any retry"


def check_invariants(exp: Experiment, fleet: Fleet, result: dict) -> None:
    """Every invariant of a finished run (conservation, tries, figures, series)."""
    fleet.check_conservation()
    check_tries(exp, fleet, result)
    check_summary_figures(exp, result)
    check_series(exp, result)
    check_amplification(exp, result)


def summary_text(result: dict) -> str:
    """The summary as ``summary.json`` stores it (strict JSON, NaN as null)."""
    return dumps(result["summary"])


def assert_reruns_from_resolved(exp: Experiment, first: dict) -> None:
    """The resolved config reloads to the same experiment and reruns to the same summary (same seed)."""
    again = load(dump_resolved(exp)).config
    assert again == exp, "config.resolved.yaml does not load back to the same experiment"
    second = Fleet(again).run()
    if summary_text(second) != summary_text(first):
        third = Fleet(exp).run()  # which one moved: the rerun, or the resolved config?
        what = "the same experiment" if summary_text(third) != summary_text(first) else "the resolved config"
        raise AssertionError(f"{what} reran to a different summary: "
                             + _first_difference(first["summary"], second["summary"]))


def _first_difference(a: dict, b: dict) -> str:
    fa, fb = dict(_walk(json.loads(dumps(a)))), dict(_walk(json.loads(dumps(b))))
    for key in sorted(set(fa) | set(fb)):
        if fa.get(key) != fb.get(key):
            return f"{'.'.join(key)}: {fa.get(key)!r} then {fb.get(key)!r}"
    return "(no key differs)"


# ---------------------------------------------------------------- failure files


def write_failure(name: str, exp: Experiment | dict) -> Path:
    """Write ``exp`` (resolved) or drawn data as ``tests/failures/<name>.yaml``; returns the path."""
    FAILURES.mkdir(exist_ok=True)
    path = FAILURES / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.yaml"
    text = dump_resolved(exp) if isinstance(exp, Experiment) else yaml_text(exp)
    path.write_text(text, encoding="utf-8")
    return path


@contextlib.contextmanager
def reproducible(name: str, **cases: Experiment | dict):
    """On a failure in the block, write each case and name the files in the failure.

    ``cases``: label -> the experiment (or drawn data); each is written as
    ``tests/failures/<name>[.<label>].yaml`` (the first without a label).
    Hypothesis replays the minimal example last, so the files hold it.
    """
    try:
        yield
    except HypothesisException:
        raise
    except Exception as e:
        paths = []
        for i, (label, exp) in enumerate(cases.items()):
            paths.append(write_failure(name if i == 0 else f"{name}.{label}", exp))
        e.add_note("reproduce: " + "; ".join(f"{label}: fleetsim run {p}" for label, p in zip(cases, paths, strict=True))
                   + f" (recheck the invariants: python -m tests.property_runs {paths[0]})")
        raise


def main(argv: list[str]) -> int:
    """Recheck every invariant on the experiment files given (``python -m tests.property_runs FILE...``)."""
    for arg in argv:
        exp = load_experiment(arg).config
        ran = checked_run(exp)
        if ran is None:
            print(f"{arg}: refused by the fleet")
            continue
        fleet, result = ran
        check_invariants(exp, fleet, result)
        assert_reruns_from_resolved(exp, result)
        print(f"{arg}: every invariant holds")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
