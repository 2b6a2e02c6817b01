"""Price presets for cross-AZ, cross-region and internet bytes and for regional balancers.

One preset per provider, in US dollars, for a US region (us-east-1, us-central1,
East US), as each provider's pricing page lists them; docs/facts.md#cross-az-and-egress-prices
and #balancer-prices give the pages. Prices change: a preset is a starting
point, and ``cost.prices`` overrides any field (``provider: custom`` gives
them all).

Conventions:

- ``cross_az_per_gb`` is the whole price of a byte crossing between two AZs
  of a region once, every billed side included (AWS bills $0.01/GB to the
  sender and $0.01/GB to the receiver: $0.02).
- ``gb_bytes``: the provider's unit, 1e9 bytes (GB) or 2^30 (GiB, Google).
- A balancer's capacity unit (AWS LCU/NLCU, Azure Application Gateway
  capacity unit) is charged for the largest of its dimensions modelled here:
  processed bytes per hour and new connections per second.
"""

from __future__ import annotations

GIB = float(2**30)

_AWS_NLB = {"hourly": 0.0225, "capacity_unit_hourly": 0.006, "capacity_unit_gb_per_hour": 1.0,
            "capacity_unit_new_connections_per_s": 800.0, "per_gb": 0.0, "cross_az_billed": True}
_AWS_ALB = {"hourly": 0.0225, "capacity_unit_hourly": 0.008, "capacity_unit_gb_per_hour": 1.0,
            "capacity_unit_new_connections_per_s": 25.0, "per_gb": 0.0, "cross_az_billed": False}

PRESETS: dict[str, dict] = {
    "aws": {"gb_bytes": 1e9, "cross_az_per_gb": 0.02, "cross_region_per_gb": 0.02,
            "internet_egress_per_gb": 0.09, "l4": _AWS_NLB, "l7": _AWS_ALB},
    "gcp": {"gb_bytes": GIB, "cross_az_per_gb": 0.01, "cross_region_per_gb": 0.02,
            "internet_egress_per_gb": 0.12,
            "l4": {"hourly": 0.025, "capacity_unit_hourly": 0.0, "capacity_unit_gb_per_hour": None,
                   "capacity_unit_new_connections_per_s": None, "per_gb": 0.008, "cross_az_billed": True},
            "l7": {"hourly": 0.025, "capacity_unit_hourly": 0.0, "capacity_unit_gb_per_hour": None,
                   "capacity_unit_new_connections_per_s": None, "per_gb": 0.008, "cross_az_billed": True}},
    "azure": {"gb_bytes": 1e9, "cross_az_per_gb": 0.0, "cross_region_per_gb": 0.02,
              "internet_egress_per_gb": 0.087,
              "l4": {"hourly": 0.025, "capacity_unit_hourly": 0.0, "capacity_unit_gb_per_hour": None,
                     "capacity_unit_new_connections_per_s": None, "per_gb": 0.005, "cross_az_billed": True},
              "l7": {"hourly": 0.246, "capacity_unit_hourly": 0.008, "capacity_unit_gb_per_hour": 1.0,
                     "capacity_unit_new_connections_per_s": 50.0, "per_gb": 0.0, "cross_az_billed": True}},
}
"""Each provider's prices as ``cost.prices`` takes them (see the module docstring)."""

HOURS_PER_MONTH = 730.0
"""The providers' billing month (8,760 hours a year / 12)."""

__all__ = ["GIB", "HOURS_PER_MONTH", "PRESETS"]
