"""The "Geography and cost" panel: traffic between AZs and regions, dollars, DNS failover, zone routing.

Data (all optional; a run without any of it has no panel):

* ``summary.json`` ``bytes_by_purpose`` (else ``bytes_by_az_pair``): a Sankey
  of the bytes between endpoints (the internet, each AZ labelled with its
  region) by purpose; bytes that stay inside an AZ are left out of the
  diagram and stated in words;
* ``summary.json`` ``cost``: dollars a month at the declared production rate
  and per million calls, by purpose, by relation and per balancer, with
  the linear scaling stated;
* ``summary.json`` ``gslb`` and ``timeseries.csv`` ``dns_<region>``: the
  failover timeline (tries per second answered with each region, the
  failure, the GSLB's detection, the 95 % moved mark);
* ``summary.json`` ``zone_routing``: each pool's share of tries kept in its
  own AZ and Envoy's zone-routing counters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go

from sim.report.common import Panel, RunData, as_number, dig, esc, figure_html, pretty_key, table
from sim.report.numbers import fmt_bytes

PURPOSE_COLOURS = {"client": "rgba(0,114,178,0.45)", "balancer_gateway": "rgba(230,159,0,0.5)",
                   "gateway_backend": "rgba(213,94,0,0.5)", "health_check": "rgba(0,158,115,0.5)",
                   "gateway_redis": "rgba(204,121,167,0.5)", "logs": "rgba(86,180,233,0.5)"}
OTHER_COLOUR = "rgba(120,120,120,0.4)"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def geo_present(data: RunData) -> bool:
    """Whether the run has anything for this panel (cost, GSLB or zone routing)."""
    s = data.summary
    return any(isinstance(s.get(k), Mapping) and s.get(k) for k in ("cost", "gslb", "zone_routing"))


def _region_of(data: RunData) -> dict[str, str]:
    regions = _mapping(dig(data.config, ("topology", "regions")))
    return {str(az): str(r) for r, spec in regions.items() for az in (_mapping(spec).get("azs") or [])}


def _dollars(v: Any) -> str:
    x = as_number(v)
    return "n/a" if x is None else f"${x:,.0f}" if abs(x) >= 100 else f"${x:,.2f}"


def sankey_html(data: RunData) -> str:
    """The Sankey of bytes between endpoints by purpose (same-AZ bytes stated in words)."""
    by_purpose = _mapping(data.summary.get("bytes_by_purpose"))
    if not by_purpose:
        pairs = _mapping(data.summary.get("bytes_by_az_pair"))
        by_purpose = {"all": pairs} if pairs else {}
    if not by_purpose:
        return ""
    region = _region_of(data)

    def label(end: str) -> str:
        return f"{end} ({region[end]})" if end in region else end

    sources: list[str] = []
    targets: list[str] = []
    link_s: list[int] = []
    link_t: list = []
    values, colours, hover = [], [], []
    same_az = 0.0
    for purpose, pairs in by_purpose.items():
        for key, b in _mapping(pairs).items():
            v = as_number(b)
            if v is None or "->" not in str(key) or v <= 0:
                continue
            src, dst = str(key).split("->", 1)
            if src == dst:
                same_az += v
                continue
            if label(src) not in sources:
                sources.append(label(src))
            if label(dst) not in targets:
                targets.append(label(dst))
            link_s.append(sources.index(label(src)))
            link_t.append(label(dst))  # an index once every source is known (below)
            values.append(v)
            colours.append(PURPOSE_COLOURS.get(str(purpose), OTHER_COLOUR))
            hover.append(f"{esc(pretty_key(str(purpose)))}: {esc(fmt_bytes(v))}")
    if not values:
        return f'<p class="lead">Every byte stayed inside its AZ ({esc(fmt_bytes(same_az))}).</p>'
    nodes = [f"from {s}" for s in sources] + [f"to {t}" for t in targets]
    link_t = [len(sources) + targets.index(t) for t in link_t]
    fig = go.Figure(go.Sankey(
        node={"label": [esc(n) for n in nodes], "pad": 14, "thickness": 14},
        link={"source": link_s, "target": link_t, "value": values, "color": colours,
              "customdata": hover, "hovertemplate": "%{customdata}<extra></extra>"},
    ))
    legend = ", ".join(f'<span style="color:{c.replace("0.45", "1").replace("0.5", "1")}">■</span> '
                       f"{esc(pretty_key(p))}" for p, c in PURPOSE_COLOURS.items() if p in by_purpose)
    body = figure_html(fig, "fig-geo-sankey", max(300, 60 + 40 * max(len(sources), len(targets))),
                       hovermode="closest")
    body += (f'<p class="note">Bytes in the measurement window between the internet and each AZ and '
             f"between AZs, by purpose{': ' + legend if legend else ''}. Not drawn: "
             f"{esc(fmt_bytes(same_az))} that stayed inside an AZ.</p>")
    return body


def cost_html(data: RunData) -> str:
    """Dollars a month at the production rate, by purpose, relation and balancer."""
    cost = _mapping(data.summary.get("cost"))
    if not cost:
        return ""
    rps = as_number(cost.get("production_rps"))
    sim_rps = as_number(cost.get("simulated_rps"))
    head = (f'<p class="lead"><strong>{esc(_dollars(cost.get("monthly_dollars")))} a month</strong> at '
            f"{esc(f'{rps:,.0f}' if rps is not None else 'n/a')} calls/s "
            f"({esc(str(cost.get('provider', '')))} prices), "
            f"<strong>{esc(_dollars(cost.get('per_million_calls')))}</strong> per million calls. "
            f"Scaled linearly from the {esc(f'{sim_rps:,.0f}' if sim_rps is not None else 'n/a')} calls/s "
            "simulated: the window's bytes and balancer connections per call times the production rate "
            "over a 730-hour month; balancer hourly charges are per balancer and not scaled.</p>")
    rows = [[esc(pretty_key(str(p))), esc(_dollars(v))]
            for p, v in sorted(_mapping(cost.get("monthly_by_purpose")).items(), key=lambda kv: -(as_number(kv[1]) or 0))]
    rows += [[esc(f"balancer {r} ({_mapping(b).get('kind', '')})"), esc(_dollars(_mapping(b).get("monthly_dollars")))]
             for r, b in _mapping(cost.get("balancers")).items()]
    by_rel = [[esc(pretty_key(str(k))), esc(_dollars(v))] for k, v in _mapping(cost.get("monthly_by_relation")).items()]
    return (head + '<div class="cols"><div>' + table(["Bytes by purpose, balancers", "$ / month"], rows)
            + "</div><div>" + table(["Bytes by relation", "$ / month"], by_rel) + "</div></div>")


def failover_html(data: RunData) -> str:
    """The failover timeline: tries per second answered with each region, failure and detection marked."""
    gslb = _mapping(data.summary.get("gslb"))
    if not gslb:
        return ""
    body = ""
    ts = data.timeseries
    series = {c[len("dns_"):]: ts.get(c) for c in (ts.columns if ts is not None else {}) if c.startswith("dns_")}
    series = {r: v for r, v in series.items() if v is not None}
    rows = []
    fig = go.Figure() if series else None
    for region, v in sorted(series.items()):
        fig.add_trace(go.Scatter(x=ts.t, y=v, mode="lines", name=esc(region)))
    for region, row in _mapping(gslb.get("failover_by_region")).items():
        failed = as_number(_mapping(row).get("failed_at_s"))
        det = as_number(_mapping(row).get("detection_s"))
        moved = as_number(_mapping(row).get("time_to_move_s"))
        rows.append([esc(region), esc("n/a" if failed is None else f"{failed:.1f} s"),
                     esc("n/a" if det is None else f"{det:.1f} s"), esc("n/a" if moved is None else f"{moved:.1f} s")])
        if fig is not None and failed is not None:
            fig.add_vline(x=failed, line_dash="dot", line_color="#d55e00", annotation_text=esc(f"{region} fails"))
            if det is not None:
                fig.add_vline(x=failed + det, line_dash="dash", line_color="#0072b2", annotation_text="detected")
            if moved is not None:
                fig.add_vline(x=failed + moved, line_dash="dash", line_color="#009e73", annotation_text="95 % moved")
    if fig is not None:
        fig.update_xaxes(title_text="time (s)")
        fig.update_yaxes(title_text="tries/s answered with region")
        body += figure_html(fig, "fig-geo-failover", 320)
    body += (f'<p class="note">DNS policy <code>{esc(gslb.get("policy"))}</code>, TTL '
             f"{esc(gslb.get('ttl_s'))} s. Failover time is detection by the GSLB's health checks plus what "
             "was left of each resolver's TTL; it is not a parameter.</p>")
    if rows:
        body += table(["Region", "Failed at", "Detected after", "95 % of traffic moved after"], rows)
    return body


def zone_html(data: RunData) -> str:
    """Per pool and service: share of tries kept in the pool's AZ and Envoy's zone-routing counters."""
    zr = _mapping(data.summary.get("zone_routing"))
    if not zr:
        return ""
    rows = []
    for key, row in zr.items():
        r = _mapping(row)
        frac = as_number(r.get("local_fraction"))
        states = "; ".join(f"{esc(k)} ({esc(v)})" for k, v in _mapping(r.get("states")).items())
        rows.append([esc(key), esc("n/a" if frac is None else f"{100 * frac:.1f} %"),
                     esc(f"{as_number(r.get('zone_routing_all_directly')) or 0:,.0f}"),
                     esc(f"{as_number(r.get('zone_routing_sampled')) or 0:,.0f}"),
                     esc(f"{as_number(r.get('zone_routing_cross_zone')) or 0:,.0f}"), states])
    return ("<h3>Zone-aware routing</h3>"
            + table(["Pool / service", "Tries kept in the pool's AZ", "all directly", "sampled", "cross zone",
                     "state (instances)"], rows))


def geo_panel(data: RunData) -> Panel | None:
    """The panel (None when the run has no cost, GSLB or zone-routing figures)."""
    if not geo_present(data):
        return None
    parts = [cost_html(data), sankey_html(data), failover_html(data), zone_html(data)]
    return Panel("Geography and cost", "".join(p for p in parts if p), "geo")


__all__ = ["geo_panel", "geo_present"]
