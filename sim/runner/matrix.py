"""The decision matrix: several preset topologies through the same experiment, one table.

A matrix file (``experiments/matrices/decision_matrix.yaml``) names an experiment and a
set of presets, each a topology file with, optionally, changes to the
experiment for that preset alone (``set``: dotted paths, as ``--set``) and
monthly charges the simulator does not model (``extra_costs``)::

    name: decision_matrix
    experiment: ../experiments/decision_matrix.yaml
    presets:
      envoy_edge: {label: Envoy distributed edge, topology: ../topologies/presets/envoy_edge.yaml}
      alb_waf:
        label: cloud ALB + WAF
        topology: ../topologies/presets/alb_waf.yaml
        extra_costs: [{item: AWS WAF requests, per_million_calls_usd: 0.60}]

Each preset runs the experiment with its topology in place of the
experiment's (:func:`load_matrix`); the experiment's variants are the
scenarios, so every preset sees the same workload, faults and seed (common
random numbers). :func:`run_matrix` writes one variant comparison per preset
under ``presets/<name>/`` and the table, a row per preset and scenario, as
``matrix.json``, ``matrix.md`` and ``report.html``:

- latency: p50 and p99 of the measurement window (ms);
- resilience: the share of answered calls that failed, over the fault's
  window (the whole measurement window when the scenario has no fault), and
  the run's recovery verdict;
- cost, per month at the simulated rate: bytes and balancers (the
  experiment's ``cost``), the gateways' provisioned vCPUs (the topology's
  ``cpu_pricing``), the extra costs, and their sum; cross-AZ dollars apart.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.config.errors import ConfigError, Issue
from sim.config.loader import LoadedExperiment, load_experiment, load_topology, read_yaml
from sim.config.pricing import HOURS_PER_MONTH
from sim.files import atomic_write_json, atomic_write_text
from sim.fleet import FleetError, plan

SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600.0
PRESET_KEYS = {"label", "topology", "set", "extra_costs"}
EXTRA_COST_KEYS = {"item", "monthly_usd", "per_million_calls_usd"}


@dataclass(frozen=True)
class ExtraCost:
    """A monthly charge outside the model: flat, or per million calls at the simulated rate."""

    item: str
    monthly_usd: float = 0.0
    per_million_calls_usd: float = 0.0

    def monthly(self, calls_per_s: float) -> float:
        """Dollars a month at ``calls_per_s`` calls a second (a 730-hour month)."""
        return self.monthly_usd + self.per_million_calls_usd * calls_per_s * SECONDS_PER_MONTH / 1e6


@dataclass
class Preset:
    """One column of the article's matrix: a topology and what is priced beside it."""

    name: str
    label: str
    topology: Path
    sets: dict[str, Any] = field(default_factory=dict)
    extra_costs: list[ExtraCost] = field(default_factory=list)
    loaded: LoadedExperiment | None = None


@dataclass
class Matrix:
    """A loaded matrix file: its experiment and presets, each preset's experiment loaded."""

    name: str
    path: Path
    experiment: Path
    presets: list[Preset]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def load_matrix(path: str | Path, sets: list[str] | tuple[str, ...] = ()) -> Matrix:
    """Read a matrix file and load the experiment once per preset.

    Args:
        path: The matrix YAML.
        sets: ``dotted.path=value`` changes to every preset's experiment (as ``--set``),
            applied after the preset's own.

    Raises:
        ConfigError: anything wrong with the matrix file, a preset's topology or the
            experiment with a preset in place; every problem of every preset at once.
    """
    path = Path(path)
    doc = read_yaml(path, str(path))
    data = doc.data
    label = str(path)

    def issue(p: tuple, reason: str) -> Issue:
        file, line = doc.positions.get(p, (label, None))
        return Issue(file, line, ".".join(map(str, p)), reason)

    if not isinstance(data, dict):
        raise ConfigError([Issue(label, None, "", "expected a mapping with name, experiment and presets")])
    issues = [issue((k,), "unknown field (fields: experiment, name, presets)")
              for k in data if k not in ("name", "experiment", "presets")]
    name = data.get("name")
    if not isinstance(name, str) or not name:
        issues.append(issue(("name",), "required: the matrix's name (its results folder)"))
    exp_ref = data.get("experiment")
    exp_path = None
    if not isinstance(exp_ref, str):
        issues.append(issue(("experiment",), "required: the experiment file every preset runs"))
    else:
        exp_path = path.parent / exp_ref
        if not exp_path.is_file():
            issues.append(issue(("experiment",), f"{exp_ref}: no such file"))
    raw = data.get("presets")
    if not isinstance(raw, dict) or not raw:
        issues.append(issue(("presets",), "required: a mapping of preset names to their topology files"))
        raw = {}
    presets: list[Preset] = []
    for pname, entry in raw.items():
        P = ("presets", pname)
        if not isinstance(entry, dict):
            issues.append(issue(P, "expected a mapping with label and topology"))
            continue
        issues += [issue(P + (k,), f"unknown field (fields: {', '.join(sorted(PRESET_KEYS))})")
                   for k in entry if k not in PRESET_KEYS]
        topo = entry.get("topology")
        if not isinstance(topo, str):
            issues.append(issue(P + ("topology",), "required: the preset's topology file"))
            continue
        topo_path = path.parent / topo
        if not topo_path.is_file():
            issues.append(issue(P + ("topology",), f"{topo}: no such file"))
            continue
        psets = entry.get("set") or {}
        if not isinstance(psets, dict):
            issues.append(issue(P + ("set",), "expected a mapping of dotted paths to values"))
            psets = {}
        extras = []
        for i, item in enumerate(entry.get("extra_costs") or []):
            E = P + ("extra_costs", i)
            if not isinstance(item, dict) or not isinstance(item.get("item"), str):
                issues.append(issue(E, "expected {item: NAME, monthly_usd: N} or {item: NAME, per_million_calls_usd: N}"))
                continue
            bad = [k for k in item if k not in EXTRA_COST_KEYS]
            if bad:
                issues.append(issue(E + (bad[0],), f"unknown field (fields: {', '.join(sorted(EXTRA_COST_KEYS))})"))
                continue
            nums = {k: item.get(k, 0.0) for k in ("monthly_usd", "per_million_calls_usd")}
            wrong = [k for k, v in nums.items() if not _number(v)]
            if wrong:
                issues.append(issue(E + (wrong[0],), f"expected a number of dollars, at least 0, got {nums[wrong[0]]!r}"))
                continue
            extras.append(ExtraCost(item["item"], float(nums["monthly_usd"]), float(nums["per_million_calls_usd"])))
        lab = entry.get("label", pname)
        presets.append(Preset(str(pname), str(lab), topo_path, dict(psets), extras))
    if issues:
        raise ConfigError(issues)

    if sets:
        load_experiment(exp_path, sets)  # a bad --set is reported once, as the command line's

    for preset in presets:
        try:
            topo_data = read_yaml(preset.topology, str(preset.topology)).data
            load_topology(preset.topology)  # its own problems, located in its own file
        except ConfigError as e:
            issues += e.issues
            continue
        assignments = [f"topology={json.dumps(topo_data)}",
                       f"topology_file={json.dumps(str(preset.topology.resolve()))}"]
        assignments += [f"{k}={json.dumps(v)}" for k, v in preset.sets.items()]
        where = issue(("presets", preset.name), "")
        try:
            preset.loaded = load_experiment(exp_path, [*assignments, *sets])
        except ConfigError as e:
            for i in e.issues:
                # Located at the preset: the problem comes from putting it in the experiment.
                issues.append(Issue(where.file, where.line, f"presets.{preset.name}: {i.path}",
                                    f"{i.reason} (in {i.file}{'' if i.line is None else f':{i.line}'})"))
            continue
        for vname, exp in [("", preset.loaded.config), *preset.loaded.variants.items()]:
            try:
                plan(exp)  # the wiring, and fault windows the run can judge
            except FleetError as e:
                at = ".".join(map(str, e.path))
                issues.append(Issue(where.file, where.line,
                                    f"presets.{preset.name}: {f'variants.{vname}.' if vname else ''}{at}", e.reason))
    if issues:
        raise ConfigError(issues)
    return Matrix(name, path, exp_path, presets)


# --------------------------------------------------------------------------- the table


def _fault_window(summary: dict, warmup_s: float, simulated_s: float) -> tuple[float, float]:
    """The window resilience is judged over: the faults' span, else the measurement window."""
    spans = [(f["at_s"], f["at_s"] + f["for_s"]) for f in summary.get("faults") or [] if "at_s" in f]
    if spans:
        return min(a for a, _ in spans), max(b for _, b in spans)
    return warmup_s, simulated_s


def failed_share(timeseries: Path, start_s: float, end_s: float) -> float | None:
    """Failed share of the calls answered in [start_s, end_s), every replication pooled."""
    answered = good = 0.0
    with open(timeseries, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if start_s <= float(row["t_s"]) < end_s:
                answered += float(row["throughput"])
                good += float(row["goodput"])
    return (answered - good) / answered if answered > 0 else None


def _ci(summary: dict, *path: str) -> float | None:
    node: Any = summary.get("ci95") or {}
    for p in path:
        node = node.get(p) if isinstance(node, dict) else None
    return node if isinstance(node, int | float) else None


def row_for(preset: Preset, scenario: str, run_dir: Path) -> dict:
    """One row of the matrix from a finished run folder."""
    s = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    lat = s.get("latency_ms") or {}
    window = _fault_window(s, float(s.get("warmup_s") or 0.0), float(s["simulated_s"]))
    rec = s.get("recovery") or {}
    cost = s.get("cost") or {}
    rate = float(cost.get("production_rps") or s.get("throughput_rps") or 0.0)
    pools = (s.get("gateway_cpu") or {}).get("pools") or {}
    compute = sum(float(p.get("provisioned_cost_usd_per_month") or 0.0) for p in pools.values())
    extras = {e.item: e.monthly(rate) for e in preset.extra_costs}
    bytes_and_balancers = float(cost.get("monthly_dollars") or 0.0)
    return {
        "preset": preset.name,
        "label": preset.label,
        "scenario": scenario,
        "p50_ms": lat.get("p50"),
        "p50_ms_ci95": _ci(s, "latency_ms", "p50"),
        "p99_ms": lat.get("p99"),
        "p99_ms_ci95": _ci(s, "latency_ms", "p99"),
        "goodput_rps": s.get("goodput_rps"),
        "failed_share": failed_share(run_dir / "timeseries.csv", *window),
        "judged_window_s": list(window),
        "recovery": rec.get("verdict", "no fault"),
        "recovery_s": rec.get("recovery_s"),
        "calls_per_s_priced": rate,
        "monthly_usd": bytes_and_balancers + compute + sum(extras.values()),
        "bytes_and_balancers_usd": bytes_and_balancers,
        "cross_az_usd": float((cost.get("monthly_by_relation") or {}).get("cross_az") or 0.0),
        "gateway_compute_usd": compute,
        "extra_costs_usd": extras,
        "run_dir": str(run_dir),
    }


def _f(value: Any, spec: str) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


def _pm(r: dict, key: str) -> str:
    """A value with its 95% half-width across replications, when there are several."""
    ci = r.get(f"{key}_ci95")
    return _f(r[key], ".1f") + ("" if ci is None else f" ± {_f(ci, '.1f')}")


COLUMNS = [
    ("preset", "preset", lambda r: r["label"]),
    ("scenario", "scenario", lambda r: r["scenario"]),
    ("p50_ms", "p50 ms", lambda r: _pm(r, "p50_ms")),
    ("p99_ms", "p99 ms", lambda r: _pm(r, "p99_ms")),
    ("failed_share", "failed during fault", lambda r: _f(None if r["failed_share"] is None
                                                          else 100 * r["failed_share"], ".2f") + " %"),
    ("recovery", "recovery", lambda r: r["recovery"]),
    ("monthly_usd", "$/month", lambda r: "$" + _f(r["monthly_usd"], ",.0f")),
    ("cross_az_usd", "cross-AZ $/month", lambda r: "$" + _f(r["cross_az_usd"], ",.0f")),
    ("gateway_compute_usd", "gateway vCPU $/month", lambda r: "$" + _f(r["gateway_compute_usd"], ",.0f")),
]

NOTES = (
    "Latency: p50 and p99 of every call in the measurement window (ms; with several replications, "
    "their mean ± the 95% half-width). Failed during fault: the share "
    "of calls answered in the fault's window that failed (the whole measurement window for a scenario "
    "without a fault). $/month at the simulated rate: bytes and balancers (the experiment's cost), "
    "the gateways' provisioned vCPUs (the topology's cpu_pricing), and each preset's extra costs "
    "(docs/presets.md); cross-AZ dollars are part of the first."
)


def matrix_markdown(name: str, rows: list[dict]) -> str:
    """``matrix.md``: the table as Markdown, and what its columns mean."""
    head = "| " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    rule = "|" + "|".join(" --- " for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(fmt(r).replace("|", "\\|") for _, _, fmt in COLUMNS) + " |" for r in rows]
    return f"# {name}\n\n" + "\n".join([head, rule, *body]) + f"\n\n{NOTES}\n"


def write_matrix_html(run_dir: Path, name: str, rows: list[dict], presets: list[Preset]) -> Path:
    """``report.html``: the table, the extra costs, and links to each preset's comparison."""
    from sim.report.common import Panel, esc, page_html, panels_html, table, write_atomic

    cells = [[esc(fmt(r)) for _, _, fmt in COLUMNS] for r in rows]
    matrix = Panel("Decision matrix", table([esc(h) for _, h, _ in COLUMNS], cells)
                   + f'<p class="note">{esc(NOTES)}</p>', "matrix")
    extra_rows = [[esc(p.label), esc(e.item),
                   esc(f"${e.monthly_usd:,.2f}" if e.monthly_usd else ""),
                   esc(f"${e.per_million_calls_usd:,.2f}" if e.per_million_calls_usd else "")]
                  for p in presets for e in p.extra_costs]
    extras = Panel("Extra costs outside the model", table(
        ["preset", "item", "per month", "per million calls"], extra_rows) if extra_rows
        else "<p>none</p>", "extra-costs")
    links = "".join(f'<li><a href="{esc(f"presets/{p.name}/report.html")}">{esc(p.label)}</a>: '
                    f"<code>{esc(p.topology.name)}</code></li>" for p in presets)
    runs = Panel("Each preset's scenarios side by side", f"<ul>{links}</ul>", "presets")
    header = ('<header class="page"><p class="kicker">fleetsim decision matrix</p>'
              f"<h1>{esc(name)}</h1></header>")
    footer = f'<footer class="page"><dl><dt>files</dt><dd><code>{esc(run_dir)}</code></dd></dl></footer>'
    return write_atomic(run_dir / "report.html",
                        page_html(f"{name}: decision matrix", header, panels_html([matrix, extras, runs]), footer))


def run_matrix(matrix: Matrix, out: Path = Path("results"), *, jobs: int = 1, run_dir: Path | None = None,
               show_progress: bool = True, report: bool = True) -> Path:
    """Run every preset through the experiment's scenarios and write the table.

    Returns:
        The matrix folder (``out/<name>/<run-id>/`` unless ``run_dir`` is given).
    """
    from .run import mark_complete, mark_incomplete, new_run_dir, run_experiment, run_variants

    first = matrix.presets[0].loaded.config
    run_dir = run_dir or new_run_dir(Path(out), first.model_copy(update={"name": matrix.name}))
    mark_incomplete(run_dir, f"the decision matrix {matrix.name}")
    rows = []
    for preset in matrix.presets:
        loaded = preset.loaded
        pdir = run_dir / "presets" / preset.name
        if loaded.variants:
            run_variants(loaded.config, loaded.variants, out, jobs=jobs, run_dir=pdir,
                         show_progress=show_progress, report=report)
            for scenario in loaded.variants:
                rows.append(row_for(preset, scenario, pdir / "variants" / scenario))
        else:
            run_experiment(loaded.config, out, jobs=jobs, run_dir=pdir, show_progress=show_progress, report=report)
            rows.append(row_for(preset, "base", pdir))
    atomic_write_json(run_dir / "matrix.json", {
        "matrix": matrix.name, "file": str(matrix.path), "experiment": str(matrix.experiment),
        "presets": [{"name": p.name, "label": p.label, "topology": str(p.topology), "set": p.sets,
                     "extra_costs": [vars(e) for e in p.extra_costs]} for p in matrix.presets],
        "rows": rows,
    })
    atomic_write_text(run_dir / "matrix.md", matrix_markdown(matrix.name, rows))
    if report:
        write_matrix_html(run_dir, matrix.name, rows, matrix.presets)
    mark_complete(run_dir)
    return run_dir
