"""The battery's report as sections of tables and Plotly figures.

The HTML page (:mod:`explorer.check.html`) and the app's "Check your approximation"
page draw the same :class:`Section` list, so what a researcher sees in the browser
and in the file a CI job archives is identical. The figures are built by
:mod:`explorer.plots.check` (spectra overlays, quality along a run, heatmaps, loss
curves); this module chooses the sections, writes their texts and the tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from explorer.check.results import CheckReport, CurvatureResult, PointResult
from explorer.plots import Figure
from explorer.plots.check import (
    HEATMAP_CELLS,
    generalized_figures,
    matrix_figures,
    quality_figures,
    race_figures,
    spectra_figures,
)

#: Columns of the quality table: metric -> header.
QUALITY_COLUMNS: dict[str, str] = {
    "asymmetry": "‖C − Cᵀ‖/‖C‖",
    "relative_min_eigenvalue": "min λ / max|λ|",
    "trace_ratio": "tr C / tr R",
    "relative_frobenius_error": "‖C − R‖/‖R‖",
    "cosine": "cos∠(C step, R step)",
    "top_overlap": "top-k overlap",
    "condition": "κ(C + λI)",
    "generalized_condition": "κ((C+λI)⁻¹(R+λI))",
}


@dataclass
class Section:
    """A heading with text, tables and figures.

    Attributes:
        title: The heading.
        text: A paragraph of plain text.
        tables: ``(caption, DataFrame)`` pairs.
        figures: ``(caption, figure)`` pairs.
    """

    title: str
    text: str = ""
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[tuple[str, Figure]] = field(default_factory=list)


# ---------------------------------------------------------------------- tables
def overview_table(report: CheckReport) -> pd.DataFrame:
    """One row per curvature: verdict, reference and failed properties."""
    rows = []
    for result in report.curvatures:
        rows.append(
            {
                "curvature": result.key,
                "label": result.label,
                "verdict": "PASS" if result.passed else "FAIL",
                "reference": f"{result.reference} ({result.reference_role})",
                "failed": ", ".join(v.name for v in result.failures()) or "—",
                "source": result.source,
            }
        )
    return pd.DataFrame(rows)


def verdict_table(result: CurvatureResult) -> pd.DataFrame:
    """One row per property."""
    return pd.DataFrame(
        [
            {
                "property": v.title,
                "status": v.status,
                "worst measured": v.measured,
                "threshold": v.threshold,
                "where": v.where,
                "checked because": v.why,
                "detail": v.detail,
            }
            for v in result.verdicts
        ]
    )


def _point_row(point: PointResult, role: str) -> dict[str, Any]:
    metrics = point.metrics()
    row = {
        "problem": point.problem,
        "step": point.step,
        "curvature": point.curvature,
        "role": role,
    }
    row.update({header: metrics[name] for name, header in QUALITY_COLUMNS.items()})
    row["error or notes"] = point.error or "; ".join(point.notes)
    return row


def quality_table(result: CurvatureResult) -> pd.DataFrame:
    """Every point of every problem: the checked curvature, then the baselines."""
    rows = []
    for problem in result.problems:
        for index, point in enumerate(problem.points):
            rows.append(_point_row(point, "checked"))
            for points in problem.baselines.values():
                if index < len(points):
                    rows.append(_point_row(points[index], "baseline"))
    return pd.DataFrame(rows)


def _ms(seconds: float) -> float:
    return 1e3 * seconds


def cost_table(result: CurvatureResult) -> pd.DataFrame:
    """Measured seconds at θ₀, in milliseconds and in gradients."""
    rows = []
    for problem in result.problems:
        for cost, role in ((problem.cost, "checked"), (problem.reference_cost, "ref")):
            if cost is None:
                continue
            rows.append(
                {
                    "problem": problem.problem,
                    "P": problem.num_params,
                    "curvature": f"{cost.curvature} ({role})",
                    "gradient (ms)": _ms(cost.grad_seconds),
                    "setup (ms)": _ms(cost.setup_seconds),
                    "product C v (ms)": _ms(cost.matvec_seconds),
                    "product / gradient": cost.relative(cost.matvec_seconds),
                    "damped solve (ms)": _ms(cost.solve_seconds),
                    "solve / gradient": cost.relative(cost.solve_seconds),
                    "dense matrix (ms)": _ms(cost.dense_seconds),
                }
            )
    return pd.DataFrame(rows)


def race_table(result: CurvatureResult) -> pd.DataFrame:
    """Every race entry of every problem."""
    rows = []
    for problem in result.problems:
        for entry in problem.race:
            rows.append(
                {
                    "problem": problem.problem,
                    "run": entry.label,
                    "rule": entry.rule,
                    "status": entry.status,
                    "final loss": entry.final_loss,
                    "best loss": entry.best_loss,
                    "steps": entry.steps,
                    "wall time (s)": entry.wall_time,
                    "curvature products": entry.curvature_products,
                    "message": entry.message,
                }
            )
    return pd.DataFrame(rows)


# -------------------------------------------------------------------- sections
def _declared(result: CurvatureResult) -> str:
    declared = (
        f"declares psd={result.psd}, exact={result.exact}, "
        f"reference={result.declared_reference!r}"
    )
    role = {
        "declared": "its declared reference",
        "given": "the reference given for this check",
        "default": "a default reference (informative only; the scale is not judged)",
    }[result.reference_role]
    return (
        f"{result.label} ({result.key}, from {result.source}) {declared}. It is "
        f"compared with {result.reference}, {role}."
    )


def curvature_sections(result: CurvatureResult, damping: float) -> list[Section]:
    """The sections of one curvature's report."""
    notes = sorted(
        {note for problem in result.problems for note in problem.notes}
        | {
            f"{p.problem}, step {p.step}: {p.error}"
            for problem in result.problems
            for p in problem.points
            if p.error
        }
    )
    sections = [
        Section(
            "Verdicts",
            _declared(result)
            + " Each property is judged at every point of every problem; the worst "
            "value counts. Undeclared properties are skipped but still measured.",
            tables=[("", verdict_table(result))],
        ),
        Section(
            "Approximation quality along the reference run",
            f"C against R at each point (θ₀, middle, end), beside built-in baselines. "
            f"Directions d = −(M + λI)⁻¹g with λ = {damping:g}, solved by each "
            "matrix's own solver, as an optimizer would.",
            tables=[("", quality_table(result))],
            figures=quality_figures(result),
        ),
        Section(
            "Spectra",
            "Eigenvalues of C, of the reference and of the baselines at the last "
            "point (log scale: open diamonds are negative eigenvalues).",
            figures=spectra_figures(result),
        ),
        Section(
            "Generalized spectra",
            "How well C preconditions the damped reference: the eigenvalues of "
            "(C + λI)⁻¹(R + λI) are all 1 when C = R; their spread is the condition "
            "number the preconditioned optimizer faces.",
            figures=generalized_figures(result, damping),
        ),
        Section(
            "Matrices",
            "C and R side by side, and their difference, at the last point "
            f"(pooled to at most {HEATMAP_CELLS} cells per side).",
            figures=matrix_figures(result),
        ),
        Section(
            "Cost",
            "Measured at θ₀ (medians; shared machines make these noisy): one "
            "product C v and one damped solve, in milliseconds and in units of one "
            "gradient of the mean loss.",
            tables=[("", cost_table(result))],
        ),
    ]
    race = race_table(result)
    if len(race):
        sections.append(
            Section(
                "Optimization race",
                f"C drives the generic rule precondition, δ = −α(C + λI)⁻¹g, with the "
                f"same λ = {damping:g}, step size, seed, data and start as "
                "natural_gradient and gauss_newton; kfac and sgd keep their "
                "defaults.",
                tables=[("", race)],
                figures=race_figures(result),
            )
        )
    if notes:
        sections.append(Section("Notes", " • ".join(notes)))
    return sections


def format_number(value: Any) -> str:
    """Four significant digits; a dash for NaN and None."""
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        return f"{value:.4g}"
    return str(value)
