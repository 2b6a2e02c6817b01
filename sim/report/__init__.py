"""Run report: turns the result files of one run folder into a single HTML page,
and a comparison folder (several variants of one experiment) into another."""

from sim.report.comparison import write_comparison
from sim.report.html import PANEL_BUILDERS, Panel, RunData, load_run, write_report

__all__ = ["PANEL_BUILDERS", "Panel", "RunData", "load_run", "write_comparison", "write_report"]
