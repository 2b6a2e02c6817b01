"""Dollars from a run's bytes and balancers: the summary's ``cost`` section.

Inputs are result-hook figures only: bytes per purpose and AZ pair
(:meth:`sim.components.network.Network.bytes_by_purpose`) and each regional
balancer's kind and forwarded tries, over the measurement window. Prices are
the experiment's ``cost.prices`` (:class:`sim.config.models.Prices`).

Billing rules (docs/facts.md#cross-az-and-egress-prices, #balancer-prices):

- a byte between two AZs of one region costs ``cross_az_per_gb``, except
  between a balancer node and a gateway when the balancer kind's
  ``cross_az_billed`` is false (AWS ALB); between regions
  ``cross_region_per_gb``; from the fleet to the internet
  ``internet_egress_per_gb``; inside an AZ and from the internet, nothing;
- a balancer costs ``hourly`` per hour, ``per_gb`` per processed gigabyte
  (the bytes between its nodes and the gateways, both ways), and
  ``capacity_unit_hourly`` for each capacity unit, the largest of processed
  GB per hour over ``capacity_unit_gb_per_hour`` and new connections a
  second over ``capacity_unit_new_connections_per_s`` (each forwarded try
  opens a connection, as the simulator's balancer forwards them).

Scaling: per month at ``production_rps`` calls a second, every byte and
connection figure is the window's per call times that rate (linear); the
hourly charges are not scaled. Dollars per million calls divide the monthly
total by the calls of a month at that rate.
"""

from __future__ import annotations

from sim.config.pricing import HOURS_PER_MONTH

SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600.0

SCALING_NOTE = ("linear: the measurement window's bytes and balancer connections per call x production_rps; "
                "balancer hourly charges per balancer, unscaled")


def _relation(src: str, dst: str, az_region: dict[str, str]) -> str:
    if src == "internet":
        return "internet_in"
    if dst == "internet":
        return "internet_out"
    if src == dst:
        return "same_az"
    return "cross_az" if az_region[src] == az_region[dst] else "cross_region"


def bytes_by_relation(by_purpose: dict[str, dict[str, float]], az_region: dict[str, str]) -> dict[str, dict[str, float]]:
    """Per purpose, bytes by relation (same_az, cross_az, cross_region, internet_in, internet_out)."""
    out: dict[str, dict[str, float]] = {}
    for purpose, pairs in by_purpose.items():
        row = out.setdefault(purpose, {})
        for key, b in pairs.items():
            src, dst = key.split("->")
            rel = _relation(src, dst, az_region)
            row[rel] = row.get(rel, 0.0) + b
    return out


def cost_section(cost, by_purpose: dict[str, dict[str, float]], az_region: dict[str, str],
                 balancers: dict[str, dict], calls: int, window_s: float) -> dict:
    """``summary["cost"]``: dollars in the window, per million calls and per month, by purpose.

    Args:
        cost: the experiment's :class:`sim.config.models.Cost`.
        by_purpose: bytes per purpose and ``<src>-><dst>`` pair in the window.
        az_region: every AZ's region.
        balancers: region -> ``{"kind": "l4"|"l7", "tries": forwarded tries in the window}``.
        calls: client calls made in the window (``requests.offered``).
        window_s: the measurement window's length.
    """
    prices = cost.prices
    gb = prices.gb_bytes
    per_rel = {"cross_az": prices.cross_az_per_gb, "cross_region": prices.cross_region_per_gb,
               "internet_out": prices.internet_egress_per_gb}
    kind_of = {r: b["kind"] for r, b in balancers.items()}
    by_purpose_window: dict[str, float] = {}
    by_relation_window: dict[str, float] = {"cross_az": 0.0, "cross_region": 0.0, "internet_out": 0.0}
    for purpose, pairs in sorted(by_purpose.items()):
        total = 0.0
        for key, b in sorted(pairs.items()):
            src, dst = key.split("->")
            rel = _relation(src, dst, az_region)
            price = per_rel.get(rel, 0.0)
            if rel == "cross_az" and purpose == "balancer_gateway":
                kind = kind_of.get(az_region[src])
                if kind is not None and not getattr(prices, kind).cross_az_billed:
                    price = 0.0
            d = b / gb * price
            total += d
            if rel in by_relation_window:
                by_relation_window[rel] += d
        by_purpose_window[purpose] = total
    sim_rps = calls / window_s if window_s > 0 else 0.0
    rps = cost.production_rps if cost.production_rps is not None else sim_rps
    scale = (rps * SECONDS_PER_MONTH / calls) if calls else 0.0  # a month's calls per simulated call
    bal_out = {}
    for region, b in sorted(balancers.items()):
        bp = getattr(prices, b["kind"])
        processed = sum(v for key, v in by_purpose.get("balancer_gateway", {}).items()
                        if az_region.get(key.split("->")[0]) == region)
        gb_month = processed / gb * scale
        conns_per_s = b["tries"] / calls * rps if calls else 0.0
        units = 0.0
        if bp.capacity_unit_gb_per_hour is not None:
            units = max(units, gb_month / HOURS_PER_MONTH / bp.capacity_unit_gb_per_hour)
        if bp.capacity_unit_new_connections_per_s is not None:
            units = max(units, conns_per_s / bp.capacity_unit_new_connections_per_s)
        row = {"kind": b["kind"], "hourly_dollars": bp.hourly * HOURS_PER_MONTH, "capacity_units": units,
               "capacity_unit_dollars": units * bp.capacity_unit_hourly * HOURS_PER_MONTH,
               "processed_gb": gb_month, "processed_dollars": gb_month * bp.per_gb}
        row["monthly_dollars"] = row["hourly_dollars"] + row["capacity_unit_dollars"] + row["processed_dollars"]
        bal_out[region] = row
    bytes_monthly = sum(by_purpose_window.values()) * scale
    total = bytes_monthly + sum(r["monthly_dollars"] for r in bal_out.values())
    month_calls = rps * SECONDS_PER_MONTH
    return {
        "provider": cost.provider,
        "production_rps": rps,
        "simulated_rps": sim_rps,
        "scaling": SCALING_NOTE,
        "window_dollars": sum(by_purpose_window.values()),
        "monthly_dollars": total,
        "per_million_calls": total / month_calls * 1e6 if month_calls else float("nan"),
        "monthly_by_purpose": {p: d * scale for p, d in by_purpose_window.items()},
        "monthly_by_relation": {r: d * scale for r, d in by_relation_window.items()},
        "balancers": bal_out,
        "bytes_by_relation": bytes_by_relation(by_purpose, az_region),
    }


__all__ = ["SCALING_NOTE", "SECONDS_PER_MONTH", "bytes_by_relation", "cost_section"]
