"""The battery's report as sections of tables and Plotly figures.

The HTML page (:mod:`explorer.check.html`) and the app's "Check your approximation"
page draw the same :class:`Section` list, so what a researcher sees in the browser
and in the file a CI job archives is identical. Figures come from
:mod:`explorer.plots` (spectra overlays, quality along a run, heatmaps, loss curves).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from explorer.check.results import CheckReport, CurvatureResult, PointResult
from explorer.plots import (
    difference_figure,
    loss_figure,
    matrices_figure,
    quality_figure,
    spectrum_figure,
)

#: Heatmaps are pooled to at most this many cells per side (keeps the page small).
HEATMAP_CELLS = 100

#: Columns of the quality table: metric -> header.
QUALITY_COLUMNS: dict[str, str] = {
    "asymmetry": "‖C − Cᵀ‖/‖C‖",
    "relative_min_eigenvalue": "λ_min/max|λ|",
    "trace_ratio": "tr C / tr R",
    "relative_frobenius_error": "‖C − R‖/‖R‖",
    "cosine": "cos∠(d_C, d_R)",
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
    figures: list[tuple[str, go.Figure]] = field(default_factory=list)


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


# --------------------------------------------------------------------- figures
def _last_ok(points: tuple[PointResult, ...]) -> PointResult | None:
    for point in reversed(points):
        if point.ok:
            return point
    return None


def _frame(points: tuple[PointResult, ...]) -> pd.DataFrame:
    rows = [p.metrics() for p in points if p.ok]
    return pd.DataFrame(rows, columns=["step", *QUALITY_COLUMNS])


def quality_figures(result: CurvatureResult) -> list[tuple[str, go.Figure]]:
    out = []
    for problem in result.problems:
        frames = {result.key: _frame(problem.points)}
        frames.update({k: _frame(v) for k, v in problem.baselines.items()})
        frames = {k: f for k, f in frames.items() if len(f)}
        if frames:
            title = f"{problem.description}: approximations of {problem.reference}"
            out.append((problem.description, quality_figure(frames, title=title)))
    return out


def spectra_figures(result: CurvatureResult) -> list[tuple[str, go.Figure]]:
    out = []
    for problem in result.problems:
        point = _last_ok(problem.points)
        if point is None or point.eigenvalues is None:
            continue
        spectra = {result.key: point.eigenvalues}
        if point.reference_eigenvalues is not None:
            spectra[problem.reference] = point.reference_eigenvalues
        for key, points in problem.baselines.items():
            match = [p for p in points if p.step == point.step and p.ok]
            if match and match[0].eigenvalues is not None:
                spectra[key] = match[0].eigenvalues
        title = (
            f"{problem.description}, step {point.step}: eigenvalues of C, the "
            f"reference {problem.reference} and the baselines"
        )
        figure = spectrum_figure(spectra, title=title, log_x=problem.num_params > 50)
        out.append((problem.description, figure))
    return out


def generalized_figures(
    result: CurvatureResult, damping: float
) -> list[tuple[str, go.Figure]]:
    out = []
    for problem in result.problems:
        point = _last_ok(problem.points)
        if point is None:
            continue
        spectra = {}
        if point.generalized is not None:
            spectra[result.key] = point.generalized
        for key, points in problem.baselines.items():
            match = [
                p for p in points if p.step == point.step and p.generalized is not None
            ]
            if match:
                spectra[key] = match[0].generalized
        if not spectra:
            continue
        title = (
            f"{problem.description}, step {point.step}: eigenvalues of "
            f"(C + λI)⁻¹(R + λI), R = {problem.reference}, λ = {damping:g} "
            "(all 1 = perfect)"
        )
        figure = spectrum_figure(
            spectra,
            title=title,
            reference_line=1.0,
            log_x=problem.num_params > 50,
        )
        out.append((problem.description, figure))
    return out


def matrix_figures(result: CurvatureResult) -> list[tuple[str, go.Figure]]:
    out = []
    for problem in result.problems:
        point = _last_ok(problem.points)
        if point is None or point.matrix is None or point.reference_matrix is None:
            continue
        where = f"{problem.description}, step {point.step}"
        both = {result.key: point.matrix, problem.reference: point.reference_matrix}
        out.append(
            (
                f"{where}: C and R",
                matrices_figure(
                    both, title=f"{where}: C and R", max_size=HEATMAP_CELLS
                ),
            )
        )
        names = (result.key, problem.reference)
        figure = difference_figure(
            point.matrix, point.reference_matrix, names, max_size=HEATMAP_CELLS
        )
        out.append((f"{where}: C − R", figure))
    return out


def race_figures(result: CurvatureResult) -> list[tuple[str, go.Figure]]:
    out = []
    for problem in result.problems:
        if not problem.histories:
            continue
        name = problem.description
        out.append(
            (
                f"{name}: loss per iteration",
                loss_figure(
                    problem.histories,
                    metrics=("loss",),
                    title=f"{name}: training loss per iteration",
                ),
            )
        )
        out.append(
            (
                f"{name}: loss against wall time",
                loss_figure(
                    problem.histories,
                    x="wall_time",
                    metrics=("loss",),
                    title=f"{name}: training loss against wall time",
                ),
            )
        )
    return out


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
