"""Every summary figure as one flat KPI table, and the statistics to compare them.

One home for what a run's numbers are called, so the variant comparison
(:mod:`sim.report.comparison`), ``fleetsim compare``, the sweep report
(:mod:`sim.report.sweep`) and the CSV export share one vocabulary.

:func:`kpis` turns one ``summary.json`` (one replication's, or the means of
several) into ``{dotted name: float}``. Names carry their unit in the last
part, as the rest of the project does (``latency.p99_ms``, ``goodput_rps``,
``cross_az.bytes``, ``cost.monthly_usd``, ``gateway_cpu.cores_needed``); a
name without a unit suffix is a count, except the ratios (``utilization``,
``*_ratio``, ``*_rate``, ``*_share``), which are fractions in [0, 1].
:func:`kpi_meta` gives each name's unit, the direction that is better
(``"lower"``, ``"higher"`` or ``None`` when neither is: the offered load,
a utilisation), a label and its group. Sections a run lacks (cost, TLS,
rate limiting, the control plane, recovery) add no names.

Statistics across replications (independent, one seed stream each):

* :func:`estimate`: mean and the 95 % Student-t half-width,
  ``t(0.975, n-1) * s / sqrt(n)``;
* :func:`difference`: the difference of two estimates (``b - a``) with its
  95 % interval and a two-sided p-value. **Paired** (``ttest_rel``) when the
  two runs share their seeds replication by replication (common random
  numbers: variants of one experiment; two runs with the same seed and
  replications): the replications' differences are the sample. Otherwise
  **Welch's** t-test (unequal variances, Welch-Satterthwaite degrees of
  freedom). When every replication gives the same difference (no sampling
  variation; e.g. a count the change does not touch), the p-value is 1 for
  a zero difference and 0 otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from scipy import stats

#: Confidence level of every interval.
CONFIDENCE = 0.95
#: A difference is called significant below this p-value.
ALPHA = 0.05


def _num(value: Any) -> float | None:
    """A finite float, or None (bools count as 0/1: a verdict's yes/no)."""
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def _get(mapping: Any, *path: str) -> Any:
    cur = mapping
    for key in path:
        if not isinstance(cur, Mapping) or key not in cur:
            return None
        cur = cur[key]
    return cur


def _is_cross_az(pair: str) -> bool:
    src, _, dst = pair.partition("->")
    return src != dst and "internet" not in (src, dst)


class _Table(dict):
    def put(self, name: str, value: Any) -> None:
        v = _num(value)
        if v is not None:
            self[name] = v


def kpis(summary: Mapping[str, Any]) -> dict[str, float]:
    """Every figure of a ``summary.json`` as ``{dotted name: value}`` (finite values only).

    Args:
        summary: One replication's summary, or the combined summary of a run.

    Returns:
        The KPIs in a stable order (the summary's sections in order); see
        the module docstring for the names and :func:`kpi_meta` for units.
    """
    s = summary
    out = _Table()
    req = s.get("requests") or {}
    failed = req.get("failed") or {}
    out.put("requests.offered", req.get("offered"))
    out.put("requests.succeeded", req.get("succeeded"))
    if isinstance(failed, Mapping):
        out.put("requests.failed", sum(v for v in (_num(x) for x in failed.values()) if v is not None))
        for cause, n in sorted(failed.items()):
            out.put(f"requests.failed.{cause}", n)
    out.put("requests.in_flight", req.get("in_flight"))
    offered, succeeded = _num(req.get("offered")), _num(req.get("succeeded"))
    if offered and succeeded is not None:
        out.put("requests.success_ratio", succeeded / offered)
    out.put("throughput_rps", s.get("throughput_rps"))
    out.put("goodput_rps", s.get("goodput_rps"))
    for q in ("mean", "p50", "p90", "p99", "p999"):
        out.put(f"latency.{q}_ms", _get(s, "latency_ms", q))

    backends = s.get("backend") or {}
    busiest = [_num(_get(b, "utilization")) for b in backends.values()]
    busiest = [u for u in busiest if u is not None]
    if busiest:
        out.put("backend.busiest_utilization", max(busiest))
    for svc, b in backends.items():
        for key in ("utilization", "offered_utilization", "capacity_rps", "attempts", "rejected", "errors",
                    "mean_wait_ms", "p_wait", "mean_in_system", "wasted_work_s", "wasted_requests"):
            out.put(f"backend.{svc}.{key}", _get(b, key))
    for pool, g in (s.get("gateway") or {}).items():
        for key in ("utilization", "requests", "route_timeouts", "per_try_timeouts", "retries",
                    "overflow_max_requests", "retry_overflow", "connects", "connect_timeouts",
                    "cx_overflow", "pending_overflow"):
            out.put(f"gateway.{pool}.{key}", _get(g, key))

    client = s.get("client") or {}
    calls, tries = _num(client.get("calls")), _num(client.get("tries"))
    if calls and tries is not None:
        out.put("client.tries_per_call", tries / calls)
    for key in ("retries", "timeouts", "retries_denied"):
        out.put(f"client.{key}", client.get(key))
    retries = s.get("retries") or {}
    for key in ("amplification", "gateway_amplification", "gateway_retries"):
        out.put(f"retries.{key}", retries.get(key))
    for key, n in sorted((retries.get("overflow") or {}).items()):
        out.put(f"retries.overflow.{key}", n)
    for key, n in sorted((retries.get("by_reason") or {}).items()):
        out.put(f"retries.by_reason.{key}", n)

    pairs = s.get("bytes_by_az_pair")
    if isinstance(pairs, Mapping) and pairs:
        values = {k: _num(v) or 0.0 for k, v in pairs.items()}
        cross = math.fsum(v for k, v in values.items() if _is_cross_az(k))
        out.put("cross_az.bytes", cross)
        if offered:
            out.put("cross_az.bytes_per_request", cross / offered)
        out.put("network.bytes", math.fsum(values.values()))
        out.put("internet_egress.bytes", math.fsum(v for k, v in values.items() if k.endswith("->internet")))

    cost = s.get("cost")
    if isinstance(cost, Mapping):
        out.put("cost.monthly_usd", cost.get("monthly_dollars"))
        out.put("cost.per_million_calls_usd", cost.get("per_million_calls"))
        for rel, d in sorted((cost.get("monthly_by_relation") or {}).items()):
            out.put(f"cost.{rel}.monthly_usd", d)
        for purpose, d in sorted((cost.get("monthly_by_purpose") or {}).items()):
            out.put(f"cost.purpose.{purpose}.monthly_usd", d)
        bal = [_num(_get(b, "monthly_dollars")) for b in (cost.get("balancers") or {}).values()]
        if bal:
            out.put("cost.balancers.monthly_usd", math.fsum(b for b in bal if b is not None))

    cpu = s.get("gateway_cpu")
    if isinstance(cpu, Mapping):
        for key in ("cpu_s", "tls_cpu_s", "cores_used", "cores_at_target", "cores_needed"):
            out.put(f"gateway_cpu.{key}", cpu.get(key))
        out.put("gateway_cpu.monthly_usd", cpu.get("cost_usd_per_month"))
        causes: dict[str, float] = {}
        for pool, p in (cpu.get("pools") or {}).items():
            for key in ("utilization", "cores_used", "cores_needed", "tls_share", "mean_worker_wait_ms"):
                out.put(f"gateway_cpu.{pool}.{key}", _get(p, key))
            for cause, sec in (_get(p, "cpu_by_cause_s") or {}).items():
                if _num(sec) is not None:
                    causes[cause] = causes.get(cause, 0.0) + float(sec)
        for cause, sec in sorted(causes.items()):
            out.put(f"gateway_cpu.cause.{cause}_s", sec)
    usd = [out[k] for k in ("cost.monthly_usd", "gateway_cpu.monthly_usd") if k in out]
    if usd:
        out.put("total.monthly_usd", math.fsum(usd))

    conns = s.get("connections")
    if isinstance(conns, Mapping):
        out.put("tls.resumption_rate", conns.get("resumption_rate"))
        out.put("tls.full_handshakes", conns.get("full"))
        out.put("tls.resumed_handshakes", conns.get("resumed"))
        opened = [_num(_get(p, "connections_opened")) for p in (conns.get("pools") or {}).values()]
        if opened:
            out.put("connections.opened", math.fsum(o for o in opened if o is not None))
        for pool, p in (conns.get("pools") or {}).items():
            if _get(p, "tls"):
                out.put(f"tls.{pool}.resumption_rate", _get(p, "resumption_rate"))
    logs = s.get("access_log")
    if isinstance(logs, Mapping):
        pools = (logs.get("pools") or {}).values()
        out.put("access_log.lines", math.fsum(_num(_get(p, "lines")) or 0.0 for p in pools))
        out.put("access_log.bytes", math.fsum(_num(_get(p, "bytes")) or 0.0 for p in pools))
        out.put("access_log.cross_az_bytes", _get(logs, "cross_az_bytes_by_purpose", "logs"))

    rl = s.get("rate_limit")
    if isinstance(rl, Mapping):
        for key in ("checked", "allowed", "denied", "failed_open", "failed_closed", "admitted", "ideal_admitted",
                    "over_admitted", "under_admitted", "admitted_ratio", "timeouts", "errors", "calls",
                    "redis_calls_per_s"):
            out.put(f"rate_limit.{key}", rl.get(key))
        for q in ("mean", "p50", "p99"):
            out.put(f"rate_limit.latency_added.{q}_ms", _get(rl, "latency_added_ms", q))
        for server, r in (rl.get("redis") or {}).items():
            out.put(f"rate_limit.redis.{server}.utilization", _get(r, "utilization"))
            out.put(f"rate_limit.redis.{server}.server_p99_ms", _get(r, "server_ms_p99"))

    cp = s.get("control_plane")
    if isinstance(cp, Mapping):
        for key, v in cp.items():
            if not isinstance(v, Mapping | list | str) and v is not None:
                out.put(f"control_plane.{key}", v)

    rec = s.get("recovery")
    if isinstance(rec, Mapping):
        for key in ("goodput_before_rps", "goodput_during_rps", "goodput_after_rps", "recovery_s", "recovered",
                    "metastable", "baseline_success_ratio"):
            out.put(f"recovery.{key}", rec.get(key))
    outlier = s.get("outlier")
    if isinstance(outlier, Mapping):
        out.put("outlier.ejections", outlier.get("ejections"))
    checks = s.get("health_checks")
    if isinstance(checks, Mapping):
        for key in ("probes", "failures", "timeouts"):
            out.put(f"health_checks.{key}", checks.get(key))
    gslb = s.get("gslb")
    if isinstance(gslb, Mapping):
        out.put("gslb.queries", gslb.get("queries"))
        for region, row in sorted((gslb.get("failover_by_region") or {}).items()):
            out.put(f"gslb.{region}.detection_s", _get(row, "detection_s"))
            out.put(f"gslb.{region}.time_to_move_s", _get(row, "time_to_move_s"))
    return dict(out)


# --------------------------------------------------------------------------- metadata

@dataclass(frozen=True)
class KpiMeta:
    """What a KPI name means: its unit, the better direction, a label and its group."""

    name: str
    #: "ms", "s", "req/s", "/s", "B", "B/request", "$/month", "$", "cores", "ratio" or "count".
    unit: str
    #: "lower", "higher", or None (neither: a load, a configuration figure).
    better: str | None
    group: str
    label: str

    def to_dict(self) -> dict[str, Any]:
        """The meta as JSON (name left out: it is the key)."""
        return {"unit": self.unit, "better": self.better, "group": self.group, "label": self.label}


#: Better directions by name pattern, checked in this order: NEUTRAL (neither), HIGHER, then LOWER.
NEUTRAL = ("requests.offered", "requests.in_flight", "*utilization", "backend.*.capacity_rps", "backend.*.attempts",
           "backend.*.mean_in_system", "gateway.*.requests", "gateway.*.connects", "network.bytes",
           "rate_limit.checked", "rate_limit.ideal_admitted", "rate_limit.admitted", "rate_limit.allowed",
           "rate_limit.admitted_ratio", "rate_limit.calls", "rate_limit.redis_calls_per_s", "gateway_cpu.*.tls_share",
           "health_checks.probes", "outlier.ejections", "gslb.queries", "control_plane.gateways",
           "control_plane.replicas", "control_plane.resources", "control_plane.versions_cut",
           "control_plane.pushes", "control_plane.push_bytes", "control_plane.gateway_applies",
           "control_plane.reconnect_attempts", "connections.opened", "tls.resumed_handshakes",
           "recovery.baseline_success_ratio", "access_log.lines", "rate_limit.denied")
HIGHER = ("requests.succeeded", "requests.success_ratio", "throughput_rps", "goodput_rps", "tls.resumption_rate",
          "tls.*.resumption_rate", "recovery.goodput_*", "recovery.recovered")
LOWER = ("requests.failed*", "latency.*", "backend.*", "gateway.*", "client.*", "retries.*", "cross_az.*",
         "internet_egress.*", "cost.*", "total.*", "gateway_cpu.*", "tls.full_handshakes", "access_log.*",
         "rate_limit.*", "control_plane.*", "recovery.*", "health_checks.*", "gslb.*")

#: Unit by the name's ending, first match wins.
_UNITS = (("*_per_request", "B/request"), ("*bytes_per_s", "B/s"), ("*_ms", "ms"), ("*_rps", "req/s"),
          ("*_per_s", "/s"), ("*.monthly_usd", "$/month"), ("*_usd", "$"), ("*bytes", "B"), ("*cores*", "cores"),
          ("*utilization", "ratio"), ("*_ratio", "ratio"), ("*_rate", "ratio"), ("*_share", "ratio"),
          ("*.p_wait", "ratio"), ("recovery.recovered", "ratio"), ("recovery.metastable", "ratio"),
          ("*_s", "s"), ("client.tries_per_call", "tries/call"), ("retries.*amplification", "tries/call"))

_GROUPS = (("requests.*", "Requests"), ("throughput_rps", "Requests"), ("goodput_rps", "Requests"),
           ("latency.*", "Latency"), ("backend.*", "Backends"), ("gateway.*", "Gateways"),
           ("client.*", "Retries"), ("retries.*", "Retries"), ("cross_az.*", "Network"), ("network.*", "Network"),
           ("internet_egress.*", "Network"), ("cost.*", "Cost"), ("total.*", "Cost"),
           ("gateway_cpu.*", "Gateway CPU"), ("tls.*", "TLS"), ("connections.*", "TLS"),
           ("access_log.*", "Access logs"), ("rate_limit.*", "Rate limiting"), ("control_plane.*", "Control plane"),
           ("recovery.*", "Recovery"), ("outlier.*", "Health"), ("health_checks.*", "Health"), ("gslb.*", "GSLB"))

#: Groups in the order the reports show them.
GROUP_ORDER = ("Requests", "Latency", "Backends", "Gateways", "Retries", "Recovery", "Network", "Cost",
               "Gateway CPU", "TLS", "Access logs", "Rate limiting", "Control plane", "Health", "GSLB", "Other")


def _first(name: str, rules, default):
    for pattern, value in rules:
        if fnmatchcase(name, pattern):
            return value
    return default


def kpi_meta(name: str) -> KpiMeta:
    """Unit, better direction, group and label of a KPI name from :func:`kpis`."""
    if any(fnmatchcase(name, p) for p in NEUTRAL):
        better = None
    elif any(fnmatchcase(name, p) for p in HIGHER):
        better = "higher"
    elif any(fnmatchcase(name, p) for p in LOWER):
        better = "lower"
    else:
        better = None
    return KpiMeta(name=name, unit=_first(name, _UNITS, "count"), better=better,
                   group=_first(name, _GROUPS, "Other"), label=name.replace("_", " "))


def group_rank(name: str) -> int:
    """The position of a KPI's group in :data:`GROUP_ORDER` (for sorting)."""
    return GROUP_ORDER.index(kpi_meta(name).group)


# --------------------------------------------------------------------------- statistics

def t_quantile(n: int) -> float:
    """t(0.975, n-1): the factor of a 95 % half-width from n replications."""
    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1))


@dataclass(frozen=True)
class Estimate:
    """A KPI over replications: the mean, its 95 % half-width (None with one value) and the values."""

    mean: float
    half_width: float | None
    #: Replications with a finite value (the mean's sample size).
    n: int
    #: The per-replication values in replication order, NaN where a replication has none (None: only the mean
    #: and half-width are known, from a combined summary).
    values: tuple[float, ...] | None = None

    @property
    def sd(self) -> float | None:
        """The sample standard deviation across replications (None below two)."""
        if self.values is not None:
            vals = [v for v in self.values if math.isfinite(v)]
            if len(vals) < 2:
                return None
            return math.sqrt(math.fsum((v - self.mean) ** 2 for v in vals) / (len(vals) - 1))
        if self.half_width is None or self.n < 2:
            return None
        return self.half_width * math.sqrt(self.n) / t_quantile(self.n)

    def to_dict(self) -> dict[str, Any]:
        """``{"mean", "ci95", "n"}`` for JSON (ci95: the half-width, None with one replication)."""
        return {"mean": self.mean, "ci95": self.half_width, "n": self.n}


def estimate(values: Sequence[float | None]) -> Estimate | None:
    """Mean and 95 % Student-t half-width of the finite values (None when there are none).

    A missing or non-finite value (a replication where the figure is
    undefined, such as the recovery time of one that did not recover) is
    left out of the mean; ``n`` says how many counted, and ``values`` keeps
    NaN in its place so that replications stay paired.
    """
    kept = tuple(math.nan if v is None or not math.isfinite(v) else float(v) for v in values)
    vals = [v for v in kept if math.isfinite(v)]
    if not vals:
        return None
    n = len(vals)
    mean = math.fsum(vals) / n
    if n < 2:
        return Estimate(mean, None, 1, kept)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (n - 1))
    return Estimate(mean, t_quantile(n) * sd / math.sqrt(n), n, kept)


@dataclass(frozen=True)
class Difference:
    """``b - a`` for one KPI, its 95 % half-width, the relative change and the p-value of 'no difference'."""

    diff: float
    half_width: float | None
    #: diff / |a| (None when a is 0).
    relative: float | None
    p_value: float | None
    #: "paired t", "Welch t", or None (too few replications for a test).
    test: str | None

    @property
    def significant(self) -> bool:
        """Whether p < :data:`ALPHA`."""
        return self.p_value is not None and self.p_value < ALPHA

    def to_dict(self) -> dict[str, Any]:
        """For JSON: ``{"diff", "ci95", "relative", "p_value", "test", "significant"}``."""
        return {"diff": self.diff, "ci95": self.half_width, "relative": self.relative, "p_value": self.p_value,
                "test": self.test, "significant": self.significant}


def _degenerate_p(diff: float, scale: float) -> float:
    """The p-value when the difference has no sampling variation: 1 if it is zero (to rounding), else 0."""
    return 1.0 if abs(diff) <= 1e-12 * scale else 0.0


def difference(a: Estimate, b: Estimate, *, paired: bool) -> Difference:
    """The difference ``b - a`` and its significance.

    Args:
        a: The baseline's estimate.
        b: The other run's.
        paired: The replications share seeds pairwise (common random
            numbers): a paired t-test on the per-replication differences. It
            needs both runs' values with the same count; otherwise Welch's test
            is used.

    Returns:
        The difference; its half-width and p-value are None when a test is
        impossible (fewer than two replications on a side).
    """
    diff = b.mean - a.mean
    rel = diff / abs(a.mean) if a.mean else None
    pairs = []
    if paired and a.values is not None and b.values is not None and len(a.values) == len(b.values):
        pairs = [(x, y) for x, y in zip(a.values, b.values, strict=True) if math.isfinite(x) and math.isfinite(y)]
    if len(pairs) >= 2:
        d = [y - x for x, y in pairs]
        n = len(d)
        mean = math.fsum(d) / n
        sd = math.sqrt(math.fsum((x - mean) ** 2 for x in d) / (n - 1))
        scale = max(abs(a.mean), abs(b.mean))
        if sd <= 1e-12 * scale:
            return Difference(mean, 0.0, rel, _degenerate_p(mean, scale), "paired t")
        se = sd / math.sqrt(n)
        p = float(2 * stats.t.sf(abs(mean / se), n - 1))
        return Difference(mean, t_quantile(n) * se, rel, p, "paired t")
    sa, sb = a.sd, b.sd
    if sa is None or sb is None:
        return Difference(diff, None, rel, None, None)
    va, vb = sa * sa / a.n, sb * sb / b.n
    se = math.sqrt(va + vb)
    scale = max(abs(a.mean), abs(b.mean))
    if se <= 1e-12 * scale:
        return Difference(diff, 0.0, rel, _degenerate_p(diff, scale), "Welch t")
    df = (va + vb) ** 2 / ((va * va / (a.n - 1) if va else 0.0) + (vb * vb / (b.n - 1) if vb else 0.0))
    p = float(2 * stats.t.sf(abs(diff / se), df))
    return Difference(diff, float(stats.t.ppf(0.5 + CONFIDENCE / 2, df)) * se, rel, p, "Welch t")


def kpi_estimates(summaries: Sequence[Mapping[str, Any]]) -> dict[str, Estimate]:
    """Every KPI of a run from its per-replication summaries: name -> :class:`Estimate` (in first-seen order)."""
    tables = [kpis(s) for s in summaries]
    names: dict[str, None] = {}
    for t in tables:
        names.update(dict.fromkeys(t))
    out = {}
    for name in names:
        est = estimate([t.get(name) for t in tables])
        if est is not None:
            out[name] = est
    return out


def estimates_from_summary(summary: Mapping[str, Any]) -> dict[str, Estimate]:
    """KPIs of a combined ``summary.json`` alone (no per-replication values): means and its ``ci95``.

    For run folders without their replications; the half-widths are the
    summary's own (a KPI computed from several figures, such as a ratio,
    gets none). Such estimates can be compared with Welch's test only.
    """
    n = int(_num(summary.get("replications")) or 1)
    means = kpis(summary)
    ci = summary.get("ci95") if isinstance(summary.get("ci95"), Mapping) else {}
    halves = kpis(ci) if ci else {}
    out = {}
    for name, mean in means.items():
        # A derived name (a sum, a ratio) has no half-width of its own in the summary.
        derived = any(fnmatchcase(name, p) for p in _DERIVED)
        hw = halves.get(name) if n > 1 and not derived else None
        out[name] = Estimate(mean, hw, n if hw is not None else 1, None)
    return out


#: Derived names whose ci95 cannot be read off the summary's ci95 the same way.
_DERIVED = ("requests.failed", "requests.success_ratio", "backend.busiest_utilization", "client.tries_per_call",
            "cross_az.*", "network.bytes", "internet_egress.bytes", "cost.balancers.monthly_usd",
            "gateway_cpu.cause.*", "total.monthly_usd", "connections.opened", "access_log.lines", "access_log.bytes")


def same_everywhere(estimates: Sequence[Estimate | None], rel_tol: float = 1e-12) -> bool:
    """Whether a KPI has the same value in every run (so its column folds away): every mean equal."""
    if any(e is None for e in estimates) or not estimates:
        return False
    first = estimates[0].mean
    return all(abs(e.mean - first) <= rel_tol * max(abs(first), abs(e.mean)) for e in estimates[1:])


def compare_kpis(runs: Mapping[str, Mapping[str, Estimate]], baseline: str, *, paired: bool) -> dict[str, Any]:
    """Every KPI of every run side by side, with the difference to ``baseline``.

    Args:
        runs: Run (variant) name -> its KPI estimates (:func:`kpi_estimates`), in display order.
        baseline: The name of the run the others are compared with.
        paired: The runs share seeds replication by replication (common random numbers).

    Returns:
        ``{"baseline", "test", "confidence", "alpha", "folded": [names], "kpis": {name: {"unit", "better",
        "group", "label", "same": bool, "values": {run: {"mean","ci95","n"}}, "vs_baseline":
        {run: {"diff","ci95","relative","p_value","test","significant"}}}}}``: KPIs sorted by group; a KPI
        with the same value in every run has ``same: true`` and is listed in ``folded``.
    """
    if baseline not in runs:
        raise KeyError(f"baseline {baseline!r} is not one of {', '.join(runs)}")
    names: dict[str, None] = {}
    for est in runs.values():
        names.update(dict.fromkeys(est))
    order = sorted(names, key=lambda k: (group_rank(k), list(names).index(k)))
    out: dict[str, Any] = {}
    folded = []
    base = runs[baseline]
    for name in order:
        ests = [runs[r].get(name) for r in runs]
        same = len(runs) > 1 and same_everywhere(ests)
        if same:
            folded.append(name)
        row = {**kpi_meta(name).to_dict(), "same": same,
               "values": {r: e.to_dict() for r, e in zip(runs, ests, strict=True) if e is not None},
               "vs_baseline": {}}
        if name in base:
            for r, e in zip(runs, ests, strict=True):
                if r != baseline and e is not None:
                    row["vs_baseline"][r] = difference(base[name], e, paired=paired).to_dict()
        out[name] = row
    test = "paired t-test (common random numbers)" if paired else "Welch's t-test"
    return {"baseline": baseline, "test": test, "confidence": CONFIDENCE, "alpha": ALPHA, "folded": folded,
            "kpis": out}


__all__ = ["ALPHA", "CONFIDENCE", "GROUP_ORDER", "Difference", "Estimate", "KpiMeta", "compare_kpis", "difference",
           "estimate", "estimates_from_summary", "group_rank", "kpi_estimates", "kpi_meta", "kpis",
           "same_everywhere", "t_quantile"]
