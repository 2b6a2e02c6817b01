"""Run report: the result files of a run folder, or of a comparison folder, as one HTML page.

A run folder (one experiment) gets one page; a comparison folder (several
variants of one experiment) gets another.
"""

from sim.report.comparison import write_comparison
from sim.report.html import PANEL_BUILDERS, Panel, RunData, load_run, write_report

__all__ = ["PANEL_BUILDERS", "Panel", "RunData", "load_run", "write_comparison", "write_report"]
