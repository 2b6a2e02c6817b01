"""HTML report comparing the variants of one experiment.

A comparison folder (written by ``sim.runner.run_variants``) holds
``comparison.json``::

    {"experiment", "description", "seed", "replications", "baseline",
     "variants": [{"name", "dir": "variants/<name>", "overrides": {path: value}}],
     "kpis": {...}}

and one complete run folder per variant.  ``kpis`` (written here, by
:func:`write_comparison_json`) holds every KPI of every variant
(:mod:`sim.metrics.kpis`) with its 95 % half-width over the replications and
the difference to the baseline variant (``baseline``, the first unless
chosen) with a paired t-test's p-value (the variants share their seeds).  :func:`write_comparison` reads every
variant with :func:`sim.report.common.load_run` and writes
``<folder>/report.html``: a headline generated from the data (each variant's
recovery verdict: recovered and when, metastable with its evidence, not
recovered within the run (run longer), or each replication's when they
disagree; a fleet already failing before the fault; how many backend tries
each sent per client call, and the cross-AZ bytes and mean latency when those
differ), a summary table (resilience, latency, cross-AZ bytes,
failures), every KPI against the baseline (:func:`kpi_panel`), goodput and amplification over time with every variant overlaid,
offered load against backend attempts per variant, and relative links to
each variant's own report.  It also (re)writes those variant reports; all the
pages load one shared ``<folder>/plotly.min.js``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import pathlib
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sim.files import atomic_write_json
from sim.metrics.kpis import (
    ALPHA,
    Estimate,
    compare_kpis,
    estimates_from_summary,
    kpi_estimates,
    kpi_meta,
)
from sim.report.common import (
    C_OFFERED,
    COMPARISON_FILE,
    EXTERNAL_ENDPOINTS,
    REPORT_FILE,
    Column,
    Fault,
    HeaderItems,
    Panel,
    RunData,
    as_number,
    bytes_decimals,
    bytes_unit,
    count_label,
    cross_az_bytes,
    dig,
    esc,
    figure_html,
    fmt_bytes,
    fmt_value,
    header_cell,
    load_run,
    page_html,
    panels_html,
    pretty_key,
    relative_url,
    run_builders,
    safe_rel_dir,
    shade_time,
    table,
    write_atomic,
    write_plotly_js,
)
from sim.report.controlplane import (
    control_plane_comparison_panel,
    control_plane_headline,
    control_plane_only,
)
from sim.report.html import write_run_page
from sim.report.resilience import (
    END_WINDOW_S,
    MIXED,
    VERDICT_LABELS,
    Recovery,
    RecoveryRules,
    amplification_per_s,
    baseline_flag,
    client_tries_per_call,
    end_share,
    fault_noun,
    fmt_pct,
    fmt_seconds,
    metastable_detail,
    mixed_phrase,
    parse_recovery,
    ratio_over,
    recovery_rule,
    replication_count,
    replication_phrase,
    verdict_phrase,
)
from sim.report.tls import tls_comparison_panel

log = logging.getLogger(__name__)

#: One colour per variant, in the order of comparison.json (Okabe-Ito first).
VARIANT_COLOURS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9",
                   "#000000", "#882255", "#44aa99", "#999933", "#aa4499", "#332288")


@dataclass
class Variant:
    """One variant of the comparison and the figures the report shows for it."""

    name: str
    #: Folder relative to the comparison folder (POSIX separators, no "..").
    rel_dir: str
    overrides: Mapping[str, Any]
    colour: str
    data: RunData | None = None
    error: str | None = None
    #: Every KPI over the replications (:func:`run_kpis`), once read.
    estimates: dict[str, Estimate] | None = None

    @property
    def recovery(self) -> Recovery | None:
        """The recovery verdict of the variant's ``summary.json``; None without a fault or data."""
        return parse_recovery(self.data.summary) if self.data else None

    @property
    def href(self) -> str:
        """Relative URL of the variant's own report (not yet HTML-escaped)."""
        return urllib.parse.quote(f"{self.rel_dir}/{REPORT_FILE}")

    @property
    def report_exists(self) -> bool:
        """Whether the variant's own ``report.html`` is on disk."""
        return self.data is not None and (self.data.run_dir / REPORT_FILE).is_file()

    def amplification_after(self) -> float | None:
        """Backend tries per client call after the fault (from the time series)."""
        rec = self.recovery
        if self.data is None or rec is None or rec.fault_end_s is None:
            return None
        return ratio_over(self.data, "attempts", "offered", rec.fault_end_s)

    def amplification(self) -> float | None:
        """Backend tries per client call over the measurement window (``retries.amplification``)."""
        if self.data is None:
            return None
        return as_number(dig(self.data.summary, ("retries", "amplification")))

    def value(self, *path: str) -> tuple[float | None, float | None]:
        """A value of the variant's ``summary.json`` and its 95 % half-width (``None`` if absent)."""
        if self.data is None:
            return None, None
        return (as_number(dig(self.data.summary, path)),
                as_number(dig(self.data.summary.get("ci95"), path)))

    def cross_az(self) -> tuple[float | None, float | None]:
        """Cross-AZ bytes over the measurement window, and per request offered (``None`` if unknown)."""
        found = cross_az_bytes(self.data.summary) if self.data else None
        if found is None:
            return None, None
        offered = self.value("requests", "offered")[0]
        return found[0], (found[0] / offered if offered else None)


def load_comparison(run_dir: pathlib.Path) -> tuple[dict[str, Any], list[Variant]]:
    """Read ``comparison.json`` and every variant's run folder.

    Raises ``FileNotFoundError`` naming the path when ``comparison.json`` is
    missing.  A variant whose folder cannot be read is kept with its ``error``.
    """
    run_dir = pathlib.Path(run_dir)
    path = run_dir / COMPARISON_FILE
    if not path.is_file():
        raise FileNotFoundError(f"comparison not found: {path}")
    with path.open(encoding="utf-8") as fh:
        meta = json.load(fh)
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    entries = meta.get("variants") if isinstance(meta.get("variants"), list) else []
    variants: list[Variant] = []
    seen: set[str] = set()
    for i, entry in enumerate(e for e in entries if isinstance(e, Mapping)):
        name = str(entry.get("name") or f"variant-{i + 1}")
        while name in seen:
            name += "'"
        seen.add(name)
        overrides = entry.get("overrides")
        variant = Variant(name=name, rel_dir=safe_rel_dir(entry, name),
                          overrides=overrides if isinstance(overrides, Mapping) else {},
                          colour=VARIANT_COLOURS[i % len(VARIANT_COLOURS)])
        try:
            variant.data = load_run(run_dir / variant.rel_dir)
        except (OSError, ValueError) as exc:
            log.warning("comparison: variant %s could not be read: %s", name, exc)
            variant.error = f"{type(exc).__name__}: {exc}"
        variants.append(variant)
    return meta, variants


# --------------------------------------------------------------------------
# Every KPI, with confidence intervals and the difference to the baseline
# --------------------------------------------------------------------------

#: Where a run folder keeps each replication's full result (``rep-NNN.json``, with its ``summary``).
REPLICATIONS_DIR = "replications"


def replication_summaries(run_dir: pathlib.Path) -> list[dict[str, Any]] | None:
    """Each replication's ``summary`` from ``run_dir/replications/rep-*.json``, in replication order.

    Returns None when the folder has none, or when one cannot be read (the
    run's combined ``summary.json`` is then used, without pairing).
    """
    paths = sorted(pathlib.Path(run_dir, REPLICATIONS_DIR).glob("rep-*.json"))
    out = []
    for path in paths:
        try:
            with path.open(encoding="utf-8") as fh:
                summary = json.load(fh).get("summary")
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("comparison: %s unreadable (%s); using the run's summary.json", path, exc)
            return None
        if not isinstance(summary, dict):
            return None
        out.append(summary)
    return out or None


def run_kpis(data: RunData) -> dict[str, Estimate]:
    """Every KPI of a run: from its replications when stored, else from its ``summary.json`` (means and ci95)."""
    reps = replication_summaries(data.run_dir)
    if reps is not None and len(reps) == data.replications:
        return kpi_estimates(reps)
    return estimates_from_summary(data.summary)


def _estimates(v: Variant) -> dict[str, Estimate]:
    if v.estimates is None:
        v.estimates = run_kpis(v.data) if v.data is not None else {}
    return v.estimates


def common_random_numbers(variants: Sequence[Variant]) -> bool:
    """Whether the runs share their seeds replication by replication (same seed, same replications)."""
    loaded = _loaded(variants)
    seeds = {json.dumps(v.data.summary.get("seed")) for v in loaded}
    reps = {v.data.replications for v in loaded}
    return len(loaded) > 1 and len(seeds) == 1 and len(reps) == 1 and "null" not in seeds


def choose_baseline(variants: Sequence[Variant], wanted: str | None) -> str | None:
    """The baseline's name: ``wanted`` when it is a readable variant, else the first readable one."""
    names = [v.name for v in _loaded(variants)]
    if wanted in names:
        return wanted
    if wanted is not None:
        log.warning("comparison: baseline %r is not a readable variant; using %s", wanted,
                    names[0] if names else None)
    return names[0] if names else None


def kpi_comparison(variants: Sequence[Variant], baseline: str | None) -> dict[str, Any] | None:
    """Every KPI of every readable variant and the differences to ``baseline`` (:func:`compare_kpis`).

    Paired t-tests when the variants share seeds (:func:`common_random_numbers`), Welch's otherwise.
    None without a readable variant.
    """
    loaded = _loaded(variants)
    base = choose_baseline(variants, baseline)
    if base is None:
        return None
    return compare_kpis({v.name: _estimates(v) for v in loaded}, base,
                        paired=common_random_numbers(loaded))


def write_comparison_json(run_dir: pathlib.Path, baseline: str | None = None) -> dict[str, Any]:
    """Add the numbers to a comparison folder's ``comparison.json`` (atomically) and return it.

    Sets ``baseline`` (``baseline`` when given, else the file's own, else the
    first variant) and ``kpis`` (:func:`kpi_comparison`); every other key is
    kept as the runner wrote it.

    Raises:
        FileNotFoundError: ``comparison.json`` is absent.
        OSError: It cannot be written.
    """
    return _update_numbers(pathlib.Path(run_dir), baseline)[0]


def _compared_runs(run_dir: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path] | None:
    """The two run folders of a ``fleetsim compare`` folder (``kind: runs``), else None."""
    try:
        meta = json.loads((run_dir / COMPARISON_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    runs = meta.get("runs") if isinstance(meta, dict) and meta.get("kind") == "runs" else None
    if isinstance(runs, list) and len(runs) == 2 and all(isinstance(r, dict) and r.get("path") for r in runs):
        return pathlib.Path(runs[0]["path"]), pathlib.Path(runs[1]["path"])
    return None


def _update_numbers(run_dir: pathlib.Path, baseline: str | None) -> tuple[dict[str, Any], list[Variant]]:
    meta, variants = load_comparison(run_dir)
    numbers = kpi_comparison(variants, baseline or meta.get("baseline"))
    meta = dict(meta)
    meta["baseline"] = numbers["baseline"] if numbers else None
    meta["kpis"] = numbers
    atomic_write_json(run_dir / COMPARISON_FILE, meta)
    return meta, variants


def _row_format(name: str, cells: Sequence[tuple[float | None, float | None]]):
    """How a KPI row prints: (format of a value and half-width, format of a signed difference, unit shown)."""
    meta = kpi_meta(name)
    values = [m for m, _ in cells if m is not None]
    cis = [h for _, h in cells if h is not None]
    if meta.unit in ("B", "B/s", "B/request"):
        unit = bytes_unit(max((abs(x) for x in [*values, *cis]), default=0.0))
        decimals = bytes_decimals(values, unit)
        suffix = meta.unit[1:]

        def fmt(x: float, hw: float | None = None) -> str:
            text = fmt_bytes(x, unit, decimals) + suffix
            return text + (f" ± {fmt_bytes(hw, unit, decimals)}" if hw else "")
        return fmt, ""
    scale, shown = (100.0, "%") if meta.unit == "ratio" else (1.0, "" if meta.unit == "count" else meta.unit)
    column = Column.of(values, cis, scale=scale, integer=meta.unit == "count")

    def fmt(x: float, hw: float | None = None) -> str:
        return column(x, hw)
    return fmt, shown


def _p_text(p: float | None) -> str:
    if p is None:
        return "no test (one replication)"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _delta_html(name: str, d: Mapping[str, Any], fmt) -> str:
    """The difference to the baseline under a value: signed, with its interval, relative change and p-value.

    ``fmt`` is the format of the row's differences (:func:`_row_format` of every difference of the row).
    """
    diff, hw, rel, p = d.get("diff"), d.get("ci95"), d.get("relative"), d.get("p_value")
    if diff is None:
        return ""
    text = ("−" if diff < 0 else "+") + fmt(abs(diff), hw)
    if rel is not None and diff != 0:
        text += f" ({rel:+.1%})".replace("-", "−")
    text += f" · {_p_text(p)}"
    better = kpi_meta(name).better
    cls = "ns"
    if d.get("significant"):
        cls = "sig" if better is None else ("better" if (diff < 0) == (better == "lower") else "worse")
    return f'<br><span class="delta {cls}">Δ {esc(text)}</span>'


def kpi_panel_html(numbers: Mapping[str, Any] | None, order: Sequence[str], *, noun: str = "variant") -> str:
    """The table of every KPI (rows, by group) for every run (columns), with the differences to the baseline.

    Args:
        numbers: :func:`kpi_comparison`'s result.
        order: The runs' names, in column order.
        noun: What a run is called in the notes ("variant", "run").

    Returns:
        Trusted markup ("" without numbers).
    """
    if not numbers:
        return ""
    base = numbers["baseline"]
    rows = numbers["kpis"]
    shown = [n for n, r in rows.items() if not r["same"]]
    names = [n for n in order if any(n in r["values"] for r in rows.values())]
    head = "<th>KPI</th>" + "".join(
        f"<th>{esc(n)}" + ('<br><span class="unit">baseline</span>' if n == base else "") + "</th>" for n in names)
    body, group = [], None
    for name in shown:
        row = rows[name]
        if row["group"] != group:
            group = row["group"]
            body.append(f'<tr class="group"><td colspan="{len(names) + 1}">{esc(group)}</td></tr>')
        cells = [(row["values"].get(n, {}).get("mean"), row["values"].get(n, {}).get("ci95")) for n in names]
        fmt, unit = _row_format(name, cells)
        dfmt = _row_format(name, [(abs(d["diff"]), d.get("ci95")) for d in row["vs_baseline"].values()])[0]
        better = {"lower": " (lower is better)", "higher": " (higher is better)"}.get(row["better"], "")
        tds = [f'<td title="{esc(name + better)}"><code>{esc(name)}</code>'
               + (f' <span class="unit">{esc(unit)}</span>' if unit else "") + "</td>"]
        for n, (mean, hw) in zip(names, cells, strict=True):
            if mean is None:
                tds.append("<td>—</td>")
                continue
            cell = esc(fmt(mean, hw)).replace(" ± ", "&nbsp;±&nbsp;")
            d = row["vs_baseline"].get(n)
            if d is not None:
                cell += _delta_html(name, d, dfmt)
            tds.append(f"<td>{cell}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    html = ('<div class="scroll"><table class="kpi allkpis"><thead><tr>' + head + "</tr></thead><tbody>"
            + "".join(body) + "</tbody></table></div>")
    notes = [f"Each value is the mean over the replications ± the 95 % confidence half-width (Student t); "
             f"Δ is the difference to the baseline {noun}, {base}, with its own 95 % half-width, the relative "
             f"change and the p-value of {numbers['test']} (significant below {ALPHA:g}: green when better, "
             "orange when worse, grey when not significant). Ratios are in percent and their differences in "
             "percentage points. Counts and bytes are per replication over the measurement window."]
    folded = numbers.get("folded") or []
    if folded:
        items = []
        for name in folded:
            v = next(iter(rows[name]["values"].values()))
            fmt, unit = _row_format(name, [(v["mean"], None)])
            items.append(f"{name} = {fmt(v['mean'])}{(' ' + unit) if unit else ''}")
        notes.append(f"The same in every {noun}, so left out of the table: " + "; ".join(items) + ".")
    return html + "".join(f'<p class="note">{esc(n)}</p>' for n in notes)


# --------------------------------------------------------------------------
# Headline
# --------------------------------------------------------------------------


def _loaded(variants: Sequence[Variant]) -> list[Variant]:
    return [v for v in variants if v.data is not None]


def _fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"


def _amplification_phrase(v: Variant) -> str:
    after = v.amplification_after()
    if after is not None:
        return f"{_fmt_ratio(after)} backend tries per call after the fault"
    total = v.amplification()
    return f"{_fmt_ratio(total)} backend tries per call" if total is not None else ""


def variant_outcome(v: Variant) -> str:
    """The variant's recovery verdict, or what stands in for one.

    ``recovered``, ``metastable``, ``not_recovered_within_run`` (inconclusive:
    run longer), ``mixed`` (replications disagree), ``no-fault``, ``unknown``
    or ``error``.  A summary from before verdicts were recorded gives
    ``recovered``, ``metastable`` or ``mixed`` from its booleans.
    """
    if v.data is None:
        return "error"
    rec = v.recovery
    return "no-fault" if rec is None else rec.outcome


def variant_phrase(v: Variant) -> str:
    """One variant's outcome as plain text, for the headline.

    For example "metastable: goodput 0.0 req/s at the end against a target of
    899.7 req/s, trend ~0 req/s per s, backlog growing (+0.9 calls in flight
    per s); 9.3 backend tries per call after the fault", "recovered in 8.0 s
    after the slowdown ended (1.2 backend tries per call after the fault)" or
    "not recovered within the run: still climbing (+12.0 req/s per s) — run
    longer", then "; the fleet was already failing before the fault (85 % of
    calls succeeded)" when it was.
    """
    if v.data is None:
        return "could not be read"
    rec = v.recovery
    amp = _amplification_phrase(v)
    if rec is None:
        goodput = as_number(v.data.summary.get("goodput_rps"))
        text = "no fault"
        if goodput is not None:
            text += f" (goodput {fmt_value(goodput)} req/s)"
        return text
    noun = fault_noun(v.data.faults)
    outcome = rec.outcome
    replications = replication_count(v.data)
    details = []
    text = verdict_phrase(rec, replications, noun)
    if outcome == "recovered":
        text += f" after {noun} ended"
    elif outcome == "metastable" and not metastable_detail(rec):
        # A summary from before verdicts were recorded: no evidence but the goodput at the end.
        share, where = end_share(v.data, rec)
        if share is not None:
            details.append(f"goodput {fmt_pct(share)} of baseline {where}")
    if amp:
        details.append(amp)
    if details:
        text += f"; {', '.join(details)}" if ":" in text else f" ({', '.join(details)})"
    flag = baseline_flag(rec, replications)
    return text + (f"; {flag}" if flag else "")


def headline_html(variants: Sequence[Variant]) -> str:
    """The sentence at the top: every variant's outcome, then what set them apart."""
    if not variants:
        return '<p class="headline">This comparison lists no variants.</p>'
    if control_plane_only(variants):
        return control_plane_headline(variants)
    parts = [f'<span class="v-{esc(variant_outcome(v))}"><strong>{esc(v.name)}</strong>: '
             f"{esc(variant_phrase(v))}</span>" for v in variants]
    html = f'<p class="headline">{"; ".join(parts)}.</p>'
    stuck = [v for v in variants if variant_outcome(v) == "metastable"]
    recovered = [v for v in variants if variant_outcome(v) == "recovered"]
    amp = {v.name: v.amplification_after() for v in stuck + recovered}
    if stuck and recovered and all(a is not None for a in amp.values()):
        def span(group: list[Variant]) -> str:
            lo, hi = min(amp[v.name] for v in group), max(amp[v.name] for v in group)
            return _fmt_ratio(lo) if _fmt_ratio(lo) == _fmt_ratio(hi) else \
                f"{_fmt_ratio(lo)}–{_fmt_ratio(hi)}"
        what = "the metastable variant" if len(stuck) == 1 else "the metastable variants"
        why = (f"After the fault, {what} sent {span(stuck)} backend tries per client call; "
               f"those that recovered sent {span(recovered)}.")
        if min(amp[v.name] for v in stuck) > max(amp[v.name] for v in recovered):
            why += " The extra tries (retries) kept the backends saturated after the trigger was gone."
        html += f'<p class="headline-why">{esc(why)}</p>'
    traffic = traffic_sentence(variants)
    if traffic:
        html += f'<p class="headline-why">{esc(traffic)}</p>'
    return html


#: Cross-AZ bytes that differ by less than this share are not called different.
CROSS_AZ_SAME = 0.05


def traffic_sentence(variants: Sequence[Variant]) -> str:
    """Cross-AZ bytes (and mean latency) of each variant, when the variants' cross-AZ bytes differ.

    For example "Cross-AZ bytes per replication: on 646.2 MB (6.8 kB per
    request), off 322.2 MB (3.4 kB per request); off sends 50 % fewer than
    on. Mean latency: on 40.63 ± 0.02 ms, off 40.31 ± 0.03 ms."  Plain text;
    ``""`` with fewer than two variants with bytes, or when they agree.
    """
    shown = [(v, *v.cross_az()) for v in _loaded(variants)]
    shown = [(v, cross, per) for v, cross, per in shown if cross is not None]
    if len(shown) < 2:
        return ""
    low = min(shown, key=lambda x: x[1])
    high = max(shown, key=lambda x: x[1])
    if high[1] <= 0 or (high[1] - low[1]) / high[1] < CROSS_AZ_SAME:
        return ""
    totals = _bytes_texts([cross for _, cross, _ in shown])
    per_request = _bytes_texts([per for _, _, per in shown])
    items = []
    for (v, _, per), total, per_text in zip(shown, totals, per_request, strict=True):
        items.append(f"{v.name} {total}" + (f" ({per_text} per request)" if per is not None
                                            else ""))
    reps = max(v.data.replications for v, _, _ in shown)
    text = (f"Cross-AZ bytes{' per replication (mean)' if reps > 1 else ''}: "
            + ", ".join(items) + "; ")
    fewer = fmt_pct(1 - low[1] / high[1])
    text += (f"{low[0].name} sends {fewer} fewer than {high[0].name}." if len(shown) == 2 else
             f"the fewest: {low[0].name}, {fewer} fewer than {high[0].name}.")
    latency = [(v, *v.value("latency_ms", "mean")) for v, _, _ in shown]
    latency = [(v, x, h) for v, x, h in latency if x is not None]
    if latency:
        column = Column.of([x for _, x, _ in latency], [h for _, _, h in latency])
        text += " Mean latency: " + ", ".join(f"{v.name} {column(x, h)} ms"
                                              for v, x, h in latency) + "."
    return text


# --------------------------------------------------------------------------
# Panels
# --------------------------------------------------------------------------


def _name_cell(v: Variant, link: bool = False) -> str:
    swatch = f'<span class="swatch" style="background:{esc(v.colour)}"></span> '
    cell = f"{swatch}<strong>{esc(v.name)}</strong>"
    return cell + (f'<br><span class="sublink">{_link_cell(v, "open its report")}</span>'
                   if link else "")


def _outcome_cell(v: Variant) -> str:
    """The verdict badge, each replication's verdict when they disagree, and the baseline flag."""
    outcome = variant_outcome(v)
    rec = v.recovery
    label = {"no-fault": "no fault", "error": "unreadable", "unknown": "—"}.get(
        outcome, VERDICT_LABELS.get(outcome, outcome))
    lines = []
    if outcome == MIXED and rec is not None and v.data is not None:
        if rec.by_replication:
            lines = [f"replication {r.number}: {replication_phrase(r)}" for r in rec.by_replication]
        else:  # a summary from before verdicts were recorded
            label = mixed_phrase(rec, replication_count(v.data))
    cell = f'<span class="badge {esc(outcome)}">{esc(label)}</span>'
    cell += "".join(f'<br><span class="cause">{esc(line)}</span>' for line in lines)
    if rec is not None and v.data is not None and rec.degraded_before:
        flag = baseline_flag(rec, replication_count(v.data))
        cell += f'<br><span class="badge flag" title="{esc(flag)}">already failing before the fault</span>'
        if rec.baseline_success_ratio is not None:
            cell += f'<br><span class="cause">{esc(_flag_detail(flag))}</span>'
    return cell


def _flag_detail(flag: str) -> str:
    """The part of a baseline flag in brackets ("85 % of calls succeeded"), or the flag."""
    return flag[flag.rindex("(") + 1:-1] if flag.endswith(")") and "(" in flag else flag


def _flag_text(value: bool | float | None, replications: int | None) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "—"
    if replications:
        return f"{round(value * replications)} of {replications}"
    return fmt_pct(value)


def _failure_counts(v: Variant) -> dict[str, float] | None:
    failed = dig(v.data.summary, ("requests", "failed")) if v.data else None
    if not isinstance(failed, Mapping):
        return None
    counts = {str(k): as_number(x) for k, x in failed.items()}
    return {k: x for k, x in counts.items() if x is not None}


def _failures_cells(variants: Sequence[Variant]) -> list[str]:
    """The failed-requests cell of each variant: the total, then each cause; one precision for all."""
    counts = [_failure_counts(v) for v in variants]
    totals = [sum(c.values()) if c is not None else None for c in counts]
    cis = [{k: v.value("requests", "failed", k)[1] for k in c} if c else {}
           for v, c in zip(variants, counts, strict=True)]
    all_cis = [h for d in cis for h in d.values()]
    # The causes' half-widths set the precision of the totals too (they have none of their own).
    total_col = Column.of(totals, all_cis, integer=True)
    cause_col = Column.of([x for c in counts if c for x in c.values()], all_cis, integer=True)
    cells = []
    for c, total, ci in zip(counts, totals, cis, strict=True):
        if c is None:
            cells.append("—")
            continue
        lines = [f"<strong>{esc(total_col(total))}</strong>"]
        for cause in sorted(c, key=lambda k: -c[k]):
            lines.append(f'<span class="cause">{esc(pretty_key(cause))} '
                         f"{esc(cause_col(c[cause], ci.get(cause)))}</span>")
        cells.append("<br>".join(lines))
    return cells


def _link_cell(v: Variant, text: str | None = None) -> str:
    label = esc(text) if text else f"{esc(v.rel_dir)}/{esc(REPORT_FILE)}"
    link = f'<a href="{esc(v.href)}">{label}</a>'
    if not v.report_exists:
        link += ' <span class="muted">(not written)</span>'
    return link


#: Tries per client call are printed with this many decimals.
RATIO_DECIMALS = 2


def _number_cells(variants: Sequence[Variant], path: Sequence[str], *,
                  decimals: int | None = None, integer: bool = False) -> list[str]:
    """One summary value (± half-width) per variant, with one precision for the column."""
    pairs = [v.value(*path) for v in variants]
    column = Column.of([x for x, _ in pairs], [h for _, h in pairs], integer=integer,
                       decimals=decimals)
    return [esc(column(x, h)) if x is not None else "—" for x, h in pairs]


def _bytes_texts(values: Sequence[float | None]) -> list[str]:
    """Byte counts in one decimal unit and precision for all (the largest value's); plain text."""
    known = [abs(x) for x in values if x is not None]
    if not known:
        return ["—"] * len(values)
    unit = bytes_unit(max(known))
    decimals = bytes_decimals(known, unit)
    return [fmt_bytes(x, unit, decimals) if x is not None else "—" for x in values]


def _bytes_cells(values: Sequence[float | None]) -> list[str]:
    """:func:`_bytes_texts`, escaped for a table column."""
    return [esc(t) for t in _bytes_texts(values)]


def summary_panel(variants: Sequence[Variant]) -> Panel:
    """The comparison table: one row per variant, one column per figure that any variant has.

    Resilience (outcome, recovery time, goodput before, during and after the
    faults, amplification), client latency (mean and p99), cross-AZ bytes (in
    all and per request) and failures.  Columns no variant has a value for
    (the fault columns of a run without faults, bytes of an old run) are left
    out; each column has one precision for every row.
    """
    loaded = [v for v in variants if v.data is not None]
    n_reps = max((v.data.replications for v in loaded), default=1)
    per_rep = count_label(n_reps)
    recs = [v.recovery for v in loaded]
    faulty = any(r is not None for r in recs)

    def rec_time(v: Variant, rec: Recovery | None) -> str:
        outcome = rec.outcome if rec is not None else None
        if rec is not None and outcome == MIXED and rec.by_replication:
            times = [f"replication {r.number}: {fmt_seconds(r.recovery_s)}"
                     for r in rec.by_replication if r.recovery_s is not None]
            return "<br>".join(esc(t) for t in times) if times else "—"
        if rec is not None and rec.recovery_s is not None:
            text = esc(fmt_seconds(rec.recovery_s))
        elif outcome == "metastable":
            text = '<span class="bad">not recovered</span>'
        elif outcome == "not_recovered_within_run":
            text = ('<span class="warnbg">not yet</span><br>'
                    '<span class="muted">run longer</span>')
        else:
            text = "—"
        if rec is not None and not rec.by_replication and isinstance(rec.metastable, float):
            text += (f'<br><span class="muted">metastable in '
                     f"{esc(_flag_text(rec.metastable, replication_count(v.data)))}</span>")
        return text

    def goodput_cells(attr: str, key: str, share: bool) -> list[str]:
        values = [getattr(r, attr) if r is not None else None for r in recs]
        cis = [v.value("recovery", key)[1] for v in loaded]
        column = Column.of(values, cis)
        cells = []
        for value, rec in zip(values, recs, strict=True):
            if value is None:
                cells.append("—")
                continue
            text = esc(column(value))
            pct = rec.share(value) if rec is not None and share else None
            if pct is not None:
                text += f'<br><span class="muted">{esc(fmt_pct(pct))}</span>'
            cells.append(text)
        return cells

    ratio = Column(RATIO_DECIMALS)
    cross = [v.cross_az() for v in loaded]
    columns: list[tuple[str, list[str]]] = [
        ("Outcome", [_outcome_cell(v) for v in loaded]),
    ]
    if faulty:
        columns += [
            (header_cell("Recovery time", "s after the fault"),
             [rec_time(v, r) for v, r in zip(loaded, recs, strict=True)]),
            (header_cell("Goodput before", "req/s"),
             goodput_cells("before", "goodput_before_rps", False)),
            (header_cell("during", "req/s · of before"),
             goodput_cells("during", "goodput_during_rps", True)),
            (header_cell("after", "req/s · of before"),
             goodput_cells("after", "goodput_after_rps", True)),
            (header_cell("at the end", f"last {END_WINDOW_S} s, of before"),
             [esc(fmt_pct(x)) if (x := end_share(v.data, r)[0] if r is not None else None)
              is not None else "—" for v, r in zip(loaded, recs, strict=True)]),
        ]
    else:
        columns.append((header_cell("Goodput", "req/s"),
                        _number_cells(loaded, ("goodput_rps",))))
    columns += [
        (header_cell("Amplification", "backend tries / call"),
         _number_cells(loaded, ("retries", "amplification"), decimals=RATIO_DECIMALS)),
        (header_cell("after the fault", "backend tries / call"),
         [esc(ratio(a)) if (a := v.amplification_after()) is not None else "—"
          for v in loaded]),
        (header_cell("Client tries", "per call"),
         [esc(ratio(c)) if (c := client_tries_per_call(v.data.summary)) else "—"
          for v in loaded]),
        (header_cell("Latency mean", "ms"), _number_cells(loaded, ("latency_ms", "mean"))),
        (header_cell("p99", "ms"), _number_cells(loaded, ("latency_ms", "p99"))),
        (header_cell("Cross-AZ bytes", per_rep), _bytes_cells([c[0] for c in cross])),
        (header_cell("per request", "offered"),
         _bytes_cells([c[1] for c in cross])),
        (header_cell("Cost", "$ / month at production_rps"),
         _number_cells(loaded, ("cost", "monthly_dollars"), integer=True)),
        (header_cell("per million", "calls, $"),
         _number_cells(loaded, ("cost", "per_million_calls"), decimals=3)),
        (header_cell("Failed requests", per_rep, "by cause"), _failures_cells(loaded)),
    ]
    # A column without a value for any variant says nothing: leave it out.
    columns = [c for c in columns
               if c[0] == "Outcome" or any(cell not in ("—", "") for cell in c[1])]

    headers = ["Variant"] + [h for h, _ in columns]
    rows, i = [], 0
    for v in variants:
        if v.data is None:
            rows.append([_name_cell(v, link=True), _outcome_cell(v),
                         f'<span class="error">{esc(v.error)}</span>']
                        + [""] * (len(columns) - 2))
            continue
        rows.append([_name_cell(v, link=True)] + [cells[i] for _, cells in columns])
        i += 1
    notes = []
    if faulty:
        notes.append("Goodput in successful responses per second; percentages are of the "
                     "goodput before the fault.")
    notes.append("Amplification: backend tries sent by the gateways per client call over the "
                 "measurement window" + ("; “after the fault”: the same from the end of the "
                                         "last fault to the end of the run (per-second series)."
                                         if faulty else "."))
    if any(c[0] is not None for c in cross):
        notes.append(f"Cross-AZ bytes: bytes sent between two different AZs (excluding "
                     f"{'/'.join(sorted(EXTERNAL_ENDPOINTS))}) over the measurement window; "
                     "per request: divided by the requests offered in it.")
    if any(v.value("cost", "monthly_dollars")[0] is not None for v in loaded):
        notes.append("Cost: dollars a month at each variant's declared production_rps, scaled "
                     "linearly from the simulated window (summary.json cost).")
    if per_rep:
        notes.append(f"Counts and bytes are means per replication over the {n_reps} "
                     "replications; ± values are 95 % confidence-interval half-widths.")
    body = ('<div class="scroll">' + table(headers, rows, cls="kpi compare") + "</div>"
            f'<p class="note">{esc(" ".join(notes))}'
            + (f" {_rules_note(loaded)}" if faulty else "") + "</p>")
    return Panel("Summary", body, "summary")


def _rules_of(variants: Sequence[Variant]) -> list[RecoveryRules | None]:
    """The recovery rules of each variant with a recovery verdict (None: not recorded)."""
    return [rec.rules for v in variants if (rec := v.recovery) is not None]


def _rules_note(variants: Sequence[Variant]) -> str:
    """The recovery rules the variants were judged by, from their summaries (trusted HTML)."""
    rules = _rules_of(variants)
    known = [r for r in rules if r is not None]
    note = recovery_rule(known[0] if known else None)
    if len(set(rules)) > 1:
        note += (" The variants' summaries do not all record the same rules; each variant's "
                 "own report states the rules it was judged by.")
    return note


def _faults_of(variants: Sequence[Variant]) -> list[Fault]:
    """Every distinct fault window across the variants, by start."""
    seen: dict[tuple[str, float, float], Fault] = {}
    for v in _loaded(variants):
        for f in v.data.faults:
            seen.setdefault((f.kind, f.start_s, f.end_s), f)
    return sorted(seen.values(), key=lambda f: (f.start_s, f.end_s))


def _warmup_of(variants: Sequence[Variant]) -> float | None:
    for v in _loaded(variants):
        if v.data.warmup_s:
            return v.data.warmup_s
    return None


def _with_series(variants: Sequence[Variant], column: str) -> list[Variant]:
    return [v for v in _loaded(variants)
            if v.data.timeseries is not None and v.data.timeseries.get(column) is not None]


def goodput_panel(variants: Sequence[Variant]) -> Panel | None:
    """Goodput (req/s) over simulated time, variants overlaid, with the recovery threshold; None without the series."""
    shown = _with_series(variants, "goodput")
    if not shown:
        return None
    fig = go.Figure()
    for v in shown:
        ts = v.data.timeseries
        fig.add_trace(go.Scatter(x=ts.t, y=ts.columns["goodput"], name=esc(v.name), mode="lines",
                                 line={"color": v.colour, "width": 2},
                                 hovertemplate="%{y:,.1f} req/s"))
    recs = [r for r in (v.recovery for v in shown) if r is not None]
    targets = [r.target for r in recs if r.target is not None]
    thresholds = {r.rules.threshold for r in recs if r.rules is not None}
    note = ""
    if targets:
        lo, hi = min(targets), max(targets)
        target = sum(targets) / len(targets)
        label = (f"{fmt_pct(next(iter(thresholds)))} of pre-fault goodput"
                 if len(thresholds) == 1 else "recovery target")
        fig.add_hline(y=target, line={"color": "#52606d", "width": 1.5, "dash": "dash"},
                      annotation_text=label, annotation_position="bottom left",
                      annotation_font={"size": 11, "color": "#52606d"})
        if hi - lo > 0.02 * hi:
            note = (f" The dashed line is the mean of the variants' recovery targets "
                    f"({fmt_value(target)} req/s, {label}); their own targets range from "
                    f"{fmt_value(lo)} to {fmt_value(hi)} req/s.")
    shade_time(fig, _warmup_of(variants), _faults_of(variants))
    fig.update_xaxes(title_text="simulated time (s)")
    fig.update_yaxes(title_text="goodput (req/s)", rangemode="tozero")
    body = figure_html(fig, "fig-cmp-goodput", 420)
    body += ('<p class="note">Successful responses per second (mean across replications); '
             f"fault windows shaded.{esc(note)}</p>")
    return Panel("Goodput over time", body, "goodput")


def amplification_panel(variants: Sequence[Variant]) -> Panel | None:
    """Backend tries per client call in each second, variants overlaid; None without the series."""
    shown = []
    for v in _loaded(variants):
        ts = v.data.timeseries
        attempts = amplification_per_s(ts)[0] if ts is not None else None
        if attempts is not None:
            shown.append((v, attempts))
    if not shown:
        return None
    fig = go.Figure()
    for v, attempts in shown:
        fig.add_trace(go.Scatter(x=v.data.timeseries.t, y=attempts, name=esc(v.name),
                                 mode="lines", line={"color": v.colour, "width": 2},
                                 hovertemplate="%{y:.2f}"))
    fig.add_hline(y=1, line={"color": "#9aa5b1", "width": 1, "dash": "dot"},
                  annotation_text="1 = no retries", annotation_position="bottom right",
                  annotation_font={"size": 11, "color": "#52606d"})
    shade_time(fig, _warmup_of(variants), _faults_of(variants))
    fig.update_xaxes(title_text="simulated time (s)")
    fig.update_yaxes(title_text="backend tries per client call", rangemode="tozero")
    body = figure_html(fig, "fig-cmp-amplification", 380)
    body += ('<p class="note">Per second: backend tries sent by the gateways (first tries and '
             "retries) divided by the client calls offered in that second. A variant that keeps "
             "a high amplification after the fault window keeps its backends saturated with "
             "retries.</p>")
    return Panel("Retry amplification over time", body, "amplification")


def load_panel(variants: Sequence[Variant]) -> Panel | None:
    """Per variant, client calls offered and backend tries sent per second; None without both series."""
    shown = [v for v in _with_series(variants, "offered")
             if v.data.timeseries.get("attempts") is not None]
    if not shown:
        return None
    n = len(shown)
    fig = make_subplots(rows=n, cols=1, shared_xaxes=True, vertical_spacing=min(0.08, 0.3 / n),
                        subplot_titles=[esc(v.name) for v in shown])
    for row, v in enumerate(shown, 1):
        ts = v.data.timeseries
        fig.add_trace(go.Scatter(x=ts.t, y=ts.columns["offered"], name="offered (client calls)",
                                 legendgroup="offered", showlegend=row == 1, mode="lines",
                                 line={"color": C_OFFERED, "width": 1.5, "dash": "dot"},
                                 hovertemplate="%{y:,.0f} /s"), row=row, col=1)
        fig.add_trace(go.Scatter(x=ts.t, y=ts.columns["attempts"],
                                 name=f"{esc(v.name)}: backend attempts", mode="lines",
                                 line={"color": v.colour, "width": 2},
                                 hovertemplate="%{y:,.0f} /s"), row=row, col=1)
        fig.update_yaxes(title_text="per s", rangemode="tozero", row=row, col=1)
    shade_time(fig, _warmup_of(variants), _faults_of(variants), rows=range(1, n + 1))
    fig.update_xaxes(title_text="simulated time (s)", row=n, col=1)
    for ann in fig.layout.annotations:  # subplot titles: left-aligned, bold
        if ann.text in {esc(v.name) for v in shown}:
            ann.update(x=0, xanchor="left", font={"size": 12, "color": "#1f2933"},
                       text=f"<b>{ann.text}</b>")
    height = 110 + 190 * n
    body = figure_html(fig, "fig-cmp-load", height,
                       layout={"margin": {"l": 64, "r": 24, "t": 76, "b": 48}})
    body += ('<p class="note">Client calls offered per second (dotted) against the backend '
             "tries the gateways sent (solid): the gap is the extra load retries added.</p>")
    return Panel("Offered load vs backend attempts", body, "load")


def _override_text(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def variants_panel(variants: Sequence[Variant]) -> Panel | None:
    """Each variant's overrides (dotted path = value) and a link to its own report; None without variants."""
    if not variants:
        return None
    rows = []
    for v in variants:
        if v.overrides:
            items = "".join(f"<li><code>{esc(k)}</code> = <code>{esc(_override_text(x))}</code>"
                            "</li>" for k, x in v.overrides.items())
            overrides = f'<ul class="overrides">{items}</ul>'
        else:
            overrides = '<span class="muted">none (the base experiment)</span>'
        rows.append([_name_cell(v), overrides, _link_cell(v)])
    body = table(["Variant", "Overrides (dotted path = value)", "Report"], rows,
                 cls="kpi variants")
    body += ('<p class="note">All variants share the seed, so they see the same arrivals and '
             "service times where their configurations agree (common random numbers).</p>")
    return Panel("Variants", body, "variants")


# --------------------------------------------------------------------------
# Page
# --------------------------------------------------------------------------

COMPARISON_CSS = """
main, header.page, footer.page { max-width:1360px; }
.headline { font-size:16px; line-height:1.6; margin:6px 0 6px; padding:12px 16px;
            background:var(--card); border:1px solid var(--line); border-radius:8px; }
.headline-why { margin:0 0 14px; color:var(--fg); }
.v-metastable strong, .v-error strong { color:#b44d00; }
.v-recovered strong { color:#007a5a; }
.v-mixed strong, .v-not_recovered_within_run strong { color:#8a5a00; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px;
         font-weight:600; white-space:nowrap; background:#e4e7eb; color:#3e4c59; }
.badge.recovered { background:#d7f0e5; color:#006647; }
.badge.metastable, .badge.error { background:#fbe0d0; color:#9a3f00; }
.badge.mixed, .badge.not_recovered_within_run { background:#fcefc7; color:#7a5200; }
.badge.flag { background:#fbe0d0; color:#9a3f00; font-weight:500; margin-top:3px; }
table.compare { font-size:13px; }
table.compare th:nth-child(2), table.compare td:nth-child(2) { text-align:left; }
table.compare td { white-space:nowrap; padding:6px 8px; }
table.compare th { padding:6px 8px; vertical-align:bottom; }
table.compare td:last-child { white-space:normal; min-width:170px; }
table.compare .sublink { font-size:11px; }
table.compare .sublink a { color:var(--accent); }
table.compare .cause { color:var(--muted); font-size:12px; white-space:nowrap; }
table.variants td, table.variants th { text-align:left; }
table.variants td:first-child { width:180px; }
table.variants td:last-child { width:260px; font-size:12px; }
ul.overrides { margin:0; padding-left:16px; text-align:left; }
table.allkpis { font-size:13px; }
table.allkpis td { white-space:nowrap; }
table.allkpis tr.group td { background:#f5f7fa; font-weight:600; text-align:left; color:var(--muted);
                            font-size:12px; text-transform:uppercase; letter-spacing:.05em; }
.delta { font-size:11px; }
.delta.better { color:#007a5a; font-weight:600; }
.delta.worse { color:#b44d00; font-weight:600; }
.delta.sig { font-weight:600; }
.delta.ns { color:var(--muted); }
ul.overrides code { overflow-wrap:anywhere; }
"""


def _header(meta: Mapping[str, Any], variants: Sequence[Variant], run_dir: pathlib.Path) -> str:
    first = next((v.data.summary for v in _loaded(variants)), {})
    items = HeaderItems()
    add = items.add

    add("seed", meta.get("seed", first.get("seed")))
    add("replications", meta.get("replications", first.get("replications")))
    add("variants", len(variants))
    add("simulated", first.get("simulated_s"), "s")
    add("warm-up", first.get("warmup_s"), "s")
    add("run id", run_dir.name)
    dl = "".join(f"<div><dt>{esc(k)}</dt><dd>{v}</dd></div>" for k, v in items)
    experiment = meta.get("experiment") or run_dir.name
    description = meta.get("description")
    desc_html = f'<p class="description">{esc(description)}</p>' if description else ""
    return (f'<header class="page"><p class="kicker">fleetsim comparison of variants</p>'
            f"<h1>{esc(experiment)}</h1>{desc_html}"
            + (f'<dl class="meta">{dl}</dl>' if dl else "")
            + headline_html(variants) + "</header>")


def _footer(run_dir: pathlib.Path) -> str:
    generated = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f'<footer class="page"><dl><dt>report</dt><dd>generated {esc(generated)} from '
            f"<code>{esc(run_dir)}</code></dd></dl></footer>")


def kpi_panel(variants: Sequence[Variant], numbers: Mapping[str, Any] | None) -> Panel | None:
    """Every KPI of every variant with its 95 % interval and the difference to the baseline; None without."""
    html = kpi_panel_html(numbers, [v.name for v in variants])
    if not html:
        return None
    return Panel(f"Every KPI against the baseline ({numbers['baseline']})", html, "kpis")


def render_comparison(meta: Mapping[str, Any], variants: Sequence[Variant],
                      run_dir: pathlib.Path, plotly_src: str | None = None) -> str:
    """The comparison page: the header with the headline, the summary table, then the panels.

    ``plotly_src`` is the relative URL of a shared ``plotly.min.js``; ``None``
    inlines plotly.js.  The KPI table uses ``meta["kpis"]`` when present,
    else computes it (baseline ``meta["baseline"]`` or the first variant).
    """
    numbers = meta.get("kpis") if isinstance(meta.get("kpis"), Mapping) else None
    if numbers is None:
        numbers = kpi_comparison(variants, meta.get("baseline"))
    cmp_panel = run_builders((lambda vs: kpi_panel(vs, numbers),), variants)
    if control_plane_only(variants):  # no requests ran: the request panels would be empty
        panels = [*cmp_panel, *run_builders((control_plane_comparison_panel, variants_panel), variants)]
    else:
        panels = [summary_panel(variants), *cmp_panel,
                  *run_builders((goodput_panel, amplification_panel, load_panel, tls_comparison_panel,
                                 control_plane_comparison_panel, variants_panel), variants)]
    title = f"{meta.get('experiment') or run_dir.name} — fleetsim comparison"
    return page_html(title, _header(meta, variants, run_dir), panels_html(panels),
                     _footer(run_dir), COMPARISON_CSS, plotly_src=plotly_src)


def write_comparison(run_dir: pathlib.Path, *, self_contained: bool = False,
                     variant_reports: bool = True, baseline: str | None = None) -> pathlib.Path:
    """Write the pages of a comparison folder (atomically): its ``report.html`` and the variants'.

    ``comparison.json`` gets its numbers first (:func:`write_comparison_json`).

    plotly.js is written once, as ``run_dir/plotly.min.js``, and every page
    loads it by its relative path (``plotly.min.js`` from the comparison,
    ``../../plotly.min.js`` from ``variants/<name>/report.html``), so N
    variants cost one copy of plotly.js (~4.7 MB), not N + 1.

    Args:
        run_dir: The comparison folder (it holds ``comparison.json``).
        self_contained: Inline plotly.js in the comparison page, so that page
            alone is one file to share; the variant pages still share
            ``plotly.min.js`` (``write_report(variant_dir, self_contained=True)``
            makes one of them self-contained).
        variant_reports: Also (re)write each readable variant's
            ``report.html``, sharing the folder's ``plotly.min.js``; ``False``
            leaves the variant pages as they are.
        baseline: The variant the others are compared with (default: the
            one ``comparison.json`` names, else the first).

    Returns:
        The comparison page's path.

    Raises:
        FileNotFoundError: ``comparison.json`` is absent (the message names the path).
        OSError: A file cannot be read or written.
    """
    run_dir = pathlib.Path(run_dir).absolute()
    runs = _compared_runs(run_dir)
    if runs is not None:  # a folder fleetsim compare wrote: compare its two runs again
        return compare_runs(*runs, run_dir) / REPORT_FILE
    meta, variants = _update_numbers(run_dir, baseline)
    pages = _loaded(variants) if variant_reports else []
    plotly_js = write_plotly_js(run_dir) if pages or not self_contained else None
    for v in pages:
        write_run_page(v.data, plotly_js)
    src = None if self_contained or plotly_js is None else relative_url(plotly_js, run_dir)
    return write_atomic(run_dir / REPORT_FILE,
                        render_comparison(meta, variants, run_dir, plotly_src=src))


# --------------------------------------------------------------------------
# Two run folders: fleetsim compare
# --------------------------------------------------------------------------


class RunFolderError(Exception):
    """A path given to ``fleetsim compare`` that is not a finished run folder."""

    def __init__(self, path: pathlib.Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _read_run_folder(path: pathlib.Path) -> RunData:
    """A finished run folder's results, or :class:`RunFolderError` saying why it is not one."""
    from sim.runner.run import INCOMPLETE

    if not path.exists():
        raise RunFolderError(path, "no such folder")
    if not path.is_dir():
        raise RunFolderError(path, "is a file, expected a run folder")
    if (path / INCOMPLETE).exists():
        raise RunFolderError(path, "an incomplete run (it holds INCOMPLETE): finish it with "
                                   f"fleetsim run EXPERIMENT --run-dir {path}")
    if not (path / "summary.json").is_file():
        if (path / COMPARISON_FILE).is_file():
            first = sorted(p.name for p in (path / "variants").glob("*") if p.is_dir())
            hint = f", e.g. {path / 'variants' / first[0]}" if first else ""
            raise RunFolderError(path, "a comparison of variants, not one run: compare two of its variant "
                                       f"folders{hint}")
        raise RunFolderError(path, "not a run folder (no summary.json)")
    try:
        return load_run(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunFolderError(path, f"summary.json is not valid JSON or UTF-8 ({exc})") from exc


def _run_name(data: RunData) -> str:
    experiment = data.summary.get("experiment")
    name = data.run_dir.name
    return f"{experiment}/{name}" if isinstance(experiment, str) and experiment and experiment != name else name


def runs_panel(variants: Sequence[Variant]) -> Panel:
    """The two runs: experiment, folder, seed, replications and a link to each one's report."""
    rows = []
    for v in variants:
        s = v.data.summary
        rows.append([_name_cell(v), esc(s.get("experiment")), f"<code>{esc(v.data.run_dir)}</code>",
                     esc(s.get("seed")), esc(v.data.replications), _link_cell(v, "open its report")])
    body = table(["Run", "Experiment", "Folder", "Seed", "Replications", "Report"], rows, cls="kpi variants")
    paired = common_random_numbers(variants)
    body += ('<p class="note">'
             + ("Both runs have the same seed and replications, so replication r of one shares its random "
                "streams with replication r of the other where their configurations agree (common random "
                "numbers): the differences are tested pairwise." if paired else
                "The runs differ in seed or replications: the differences are tested with Welch's t-test "
                "(independent samples).") + "</p>")
    return Panel("Runs", body, "runs")


def default_compare_dir(root: pathlib.Path = pathlib.Path("results") / "compare") -> pathlib.Path:
    """A new folder ``results/compare/<UTC time>`` (``-2``, ``-3``... if taken)."""
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path, k = root / stamp, 1
    while path.exists():
        k += 1
        path = root / f"{stamp}-{k}"
    return path


def compare_runs(run_a: pathlib.Path, run_b: pathlib.Path, out: pathlib.Path | None = None) -> pathlib.Path:
    """Compare two run folders: ``out/comparison.json`` and a self-contained ``out/report.html``.

    Every KPI of both runs (from their stored replications, else their
    ``summary.json``) with its 95 % half-width, and B's difference to A (the
    baseline) with its p-value: paired when both runs share seed and
    replications (:func:`common_random_numbers`), Welch's otherwise.

    Args:
        run_a: The baseline run folder.
        run_b: The run compared with it.
        out: The folder to write (default :func:`default_compare_dir`).

    Returns:
        ``out``.

    Raises:
        RunFolderError: A path is missing, a file, an incomplete run, a
            comparison of variants, or has no readable ``summary.json``.
        OSError: ``out`` cannot be written.
    """
    datas = [_read_run_folder(pathlib.Path(run_a)), _read_run_folder(pathlib.Path(run_b))]
    out = pathlib.Path(out) if out is not None else default_compare_dir()
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(20, "is a file, expected a folder", str(out))
    names = [_run_name(d) for d in datas]
    if names[0] == names[1]:
        names = [f"{names[0]} (A)", f"{names[1]} (B)"]
    variants = []
    for i, (data, name) in enumerate(zip(datas, names, strict=True)):
        rel = pathlib.PurePath(os.path.relpath(data.run_dir.absolute(), out.absolute())).as_posix()
        variants.append(Variant(name=name, rel_dir=rel, overrides={}, colour=VARIANT_COLOURS[i], data=data))
    numbers = kpi_comparison(variants, names[0])
    meta = {"kind": "runs", "experiment": f"{names[0]} vs {names[1]}", "baseline": names[0],
            "runs": [{"name": n, "path": str(d.run_dir.absolute()), "experiment": d.summary.get("experiment"),
                      "seed": d.summary.get("seed"), "replications": d.replications}
                     for n, d in zip(names, datas, strict=True)],
            "kpis": numbers}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / COMPARISON_FILE, meta)
    panels = [summary_panel(variants),
              *run_builders((lambda vs: kpi_panel(vs, numbers), goodput_panel, amplification_panel, load_panel,
                             tls_comparison_panel, control_plane_comparison_panel, runs_panel), variants)]
    header = (f'<header class="page"><p class="kicker">fleetsim comparison of two runs</p>'
              f"<h1>{esc(names[1])} against {esc(names[0])}</h1>" + headline_html(variants) + "</header>")
    page = page_html(f"{names[1]} vs {names[0]} — fleetsim comparison", header, panels_html(panels),
                     _footer(out), COMPARISON_CSS)
    write_atomic(out / REPORT_FILE, page)
    return out
