"""Bring your own curvature: the check battery, its report and its JSON summary.

``run_battery(["my_key"])`` measures a registered curvature against its reference on
small problems and judges every declared property; :func:`check_plugin` loads a
plugin file first, :func:`check_isolated` each plugin file in a process of its own
under a time limit (what the command line runs). :func:`report_html` and
:func:`write_report` turn the result into a self-contained interactive page;
``CheckReport.to_dict()`` is the JSON summary.
"""

from explorer.check.battery import run_battery
from explorer.check.html import report_html, write_report, write_summary
from explorer.check.isolation import check_isolated
from explorer.check.loading import check_plugin, load_targets
from explorer.check.report import Section, curvature_sections, overview_table
from explorer.check.results import (
    CheckReport,
    CostResult,
    CurvatureResult,
    PointResult,
    ProblemResult,
    RaceEntry,
    Verdict,
)
from explorer.check.settings import (
    DEFAULT_PROBLEMS,
    CheckSettings,
    ProblemChoice,
)

__all__ = [
    "DEFAULT_PROBLEMS",
    "CheckReport",
    "CheckSettings",
    "CostResult",
    "CurvatureResult",
    "PointResult",
    "ProblemChoice",
    "ProblemResult",
    "RaceEntry",
    "Section",
    "Verdict",
    "check_isolated",
    "check_plugin",
    "curvature_sections",
    "load_targets",
    "overview_table",
    "report_html",
    "run_battery",
    "write_report",
    "write_summary",
]
