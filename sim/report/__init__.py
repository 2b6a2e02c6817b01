"""Run report: turns the result files of one run folder into a single HTML page."""

from sim.report.html import PANEL_BUILDERS, Panel, RunData, load_run, write_report

__all__ = ["PANEL_BUILDERS", "Panel", "RunData", "load_run", "write_report"]
