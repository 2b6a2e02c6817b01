"""The "Geography and cost" report panel (sim/report/geo.py), from result files only."""

from __future__ import annotations

import pathlib

from sim.report.common import RunData, TimeSeries
from sim.report.geo import geo_panel

CONFIG = """
topology:
  regions:
    east: {azs: [e1, e2]}
    west: {azs: [w1]}
"""

SUMMARY = {
    "replications": 1,
    "bytes_by_purpose": {"client": {"internet->e1": 1000, "e1->internet": 5000},
                         "gateway_backend": {"e1->e2": 700, "e2->e1": 3000, "e1->e1": 9000},
                         "balancer_gateway": {"e1->w1": 10}},
    "cost": {"provider": "aws", "production_rps": 20000.0, "simulated_rps": 1900.0, "monthly_dollars": 35454.6,
             "per_million_calls": 0.6746, "monthly_by_purpose": {"client": 26188.4, "gateway_backend": 3527.6},
             "monthly_by_relation": {"cross_az": 7107.1, "cross_region": 0.0, "internet_out": 26188.4},
             "balancers": {"east": {"kind": "l4", "monthly_dollars": 2159.1}}},
    "gslb": {"policy": "geo", "ttl_s": 60, "failover_by_region": {
        "east": {"failed_at_s": 100.0, "detection_s": 88.9, "time_to_move_s": 145.0}}},
    "zone_routing": {"gw-e1/api": {"local_fraction": 0.6667, "zone_routing_all_directly": 0,
                                   "zone_routing_sampled": 400, "zone_routing_cross_zone": 200,
                                   "states": {"residual": 2}, "tries_by_az": {"e1": 400, "e2": 200}}},
}


def test_panel_shows_dollars_scaling_sankey_failover_and_zone_routing():
    ts = TimeSeries(t=[0.0, 1.0, 2.0], columns={"dns_east": [100.0, 50.0, 0.0], "dns_west": [100.0, 150.0, 200.0]},
                    replications=1)
    panel = geo_panel(RunData(pathlib.Path("."), SUMMARY, timeseries=ts, config_text=CONFIG))
    assert panel is not None and panel.title == "Geography and cost"
    html = panel.html
    assert "$35,455 a month" in html and "20,000 calls/s" in html and "$0.67" in html
    assert "Scaled linearly from the 1,900 calls/s simulated" in html
    assert "fig-geo-sankey" in html and "e1 (east)" in html and "from e1 (east)" in html
    assert "9.00 kB" in html  # the same-AZ bytes, stated rather than drawn
    assert "fig-geo-failover" in html and "88.9 s" in html and "145.0 s" in html
    assert "66.7 %" in html and "residual (2)" in html


def test_no_panel_without_geo_figures():
    assert geo_panel(RunData(pathlib.Path("."), {"bytes_by_az_pair": {"a->b": 1}})) is None
