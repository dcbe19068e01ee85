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
    summary_figure,
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
        side_by_side: Figures in a grid of ``columns`` (HTML report) instead of
            one under the other.
        folded: Tables start folded (long tables fold anyway).
        columns: Figures per row when ``side_by_side``.
    """

    title: str
    text: str = ""
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[tuple[str, Figure]] = field(default_factory=list)
    side_by_side: bool = False
    folded: bool = False
    columns: int = 3


@dataclass
class Summary:
    """The one-screen summary of one curvature (what the report leads with).

    Attributes:
        key: The curvature key.
        label: Its label.
        passed: Every declared property holds.
        reference: The reference it was compared with, and its role.
        chips: ``(name, status, title)`` per verdict.
        nearest: The nearest-reference sentence (None when not measured).
        coverage: The coverage verdict's detail (None when absent).
        figure: Small multiples of the relative error per problem (None when
            nothing was measured).
    """

    key: str
    label: str
    passed: bool
    reference: str
    chips: list[tuple[str, str, str]]
    nearest: str | None = None
    coverage: str | None = None
    figure: Figure | None = None


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
    metrics = point.row()
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


# --------------------------------------------------------------------- summary
def _verdict(result: CurvatureResult, name: str) -> Any | None:
    for verdict in result.verdicts:
        if verdict.name == name:
            return verdict
    return None


def summary(result: CurvatureResult) -> Summary:
    """The summary card of one curvature; fields the battery did not measure stay
    None (and render nothing).
    """
    nearest = getattr(result, "nearest_reference", None)
    coverage = _verdict(result, "coverage")
    coverage_text = None
    if coverage is not None and (coverage.detail or coverage.status != "skipped"):
        coverage_text = f"{coverage.title}: {coverage.status}"
        if coverage.detail:
            coverage_text += f" ({coverage.detail})"
    return Summary(
        key=result.key,
        label=result.label,
        passed=result.passed,
        reference=f"{result.reference} ({result.reference_role})",
        chips=[(v.name, v.status, v.title) for v in result.verdicts],
        nearest=nearest.sentence() if nearest is not None else None,
        coverage=coverage_text,
        figure=summary_figure(result),
    )


# ------------------------------------------------------ preconditioner quality
def _metrics_of(point: PointResult) -> dict[str, Any]:
    """The point's :func:`~explorer.check.metrics.preconditioner_metrics` (or {})."""
    value = getattr(point, "metrics", None)
    return value if isinstance(value, dict) else {}


def _mean(values: list[float]) -> float:
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _preconditioner_row(point: PointResult, role: str) -> dict[str, Any] | None:
    metrics = _metrics_of(point)
    eigenvalues = getattr(point, "preconditioned_eigenvalues", None)
    if not metrics and eigenvalues is None:
        return None
    rayleigh = metrics.get("rayleigh") or {}
    cosines = list((metrics.get("block_cosines") or {}).values())
    kron = list((metrics.get("kronecker_efficiency") or {}).values())
    row: dict[str, Any] = {
        "problem": point.problem,
        "step": point.step,
        "curvature": point.curvature,
        "role": role,
        "κ((C+λI)⁻¹(R+λI))": metrics.get("preconditioned_condition", math.nan),
        "κ(R+λI)": metrics.get("reference_condition", math.nan),
        "Rayleigh top": rayleigh.get("top", math.nan),
        "Rayleigh bulk": rayleigh.get("bulk", math.nan),
        "top k": rayleigh.get("k", math.nan),
        "min block cosine": min(cosines) if cosines else math.nan,
        "Kronecker efficiency": _mean([k.get("efficiency") for k in kron]),
    }
    if eigenvalues is not None and len(eigenvalues):
        low, high = float(eigenvalues.min()), float(eigenvalues.max())
        row["κ(P·R)"] = high / low if low > 0 else math.nan
    reasons = [
        str(metrics[k])
        for k in ("preconditioned_condition_reason", "reference_condition_reason")
        if metrics.get(k)
    ]
    if reasons:
        row["why undefined"] = "; ".join(reasons)
    return row


def preconditioner_table(result: CurvatureResult) -> pd.DataFrame:
    """Per point: κ before and after preconditioning, Rayleigh quotients, the worst
    block cosine and the mean Kronecker efficiency (C first, then the baselines).
    """
    rows = []
    for problem in result.problems:
        for index, point in enumerate(problem.points):
            rows.append(_preconditioner_row(point, "checked"))
            for points in problem.baselines.values():
                if index < len(points):
                    rows.append(_preconditioner_row(points[index], "baseline"))
    return pd.DataFrame([r for r in rows if r is not None])


def kronecker_table(result: CurvatureResult) -> pd.DataFrame:
    """Per Kronecker block at the last measured point of each problem: C's error,
    the best error any A ⊗ B reaches (Van Loan–Pitsianis) and their ratio.
    """
    rows = []
    for problem in result.problems:
        measured = [
            p for p in problem.points if _metrics_of(p).get("kronecker_efficiency")
        ]
        if not measured:
            continue
        point = measured[-1]
        for name, entry in _metrics_of(point)["kronecker_efficiency"].items():
            rows.append(
                {
                    "problem": problem.problem,
                    "step": point.step,
                    "block": name,
                    "m × n": f"{entry.get('m')} × {entry.get('n')}",
                    "C's error ‖C − R‖/‖R‖ on the block": entry.get(
                        "achieved", math.nan
                    ),
                    "best A ⊗ B error": entry.get("best", math.nan),
                    "efficiency (best / C)": entry.get("efficiency", math.nan),
                }
            )
    return pd.DataFrame(rows)


def staleness_table(result: CurvatureResult) -> pd.DataFrame:
    """Per problem and step: the error of C(θ₀) never refreshed, against a fresh C."""
    rows = []
    for problem in result.problems:
        for step, stale, fresh in getattr(problem, "staleness", None) or ():
            rows.append(
                {
                    "problem": problem.problem,
                    "step": step,
                    "stale ‖C(θ₀) − R‖/‖R‖": stale,
                    "fresh ‖C(θ) − R‖/‖R‖": fresh,
                    "stale / fresh": stale / fresh if fresh else math.nan,
                }
            )
    return pd.DataFrame(rows)


def precision_table(result: CurvatureResult) -> pd.DataFrame:
    """Per problem: C in float32 against float64 at θ₀."""
    rows = []
    for problem in result.problems:
        precision = getattr(problem, "precision", None)
        if precision:
            row = {"problem": problem.problem}
            row.update({PRECISION_COLUMNS.get(k, k): v for k, v in precision.items()})
            rows.append(row)
    return pd.DataFrame(rows)


#: The precision dict's keys as column headers.
PRECISION_COLUMNS = {
    "relative_difference": "‖C₃₂ − C₆₄‖ / ‖C₆₄‖",
    "residual_float64": "nearest-reference residual, float64",
    "residual_float32": "nearest-reference residual, float32",
}


def preconditioner_section(result: CurvatureResult, damping: float) -> Section | None:
    """The "Preconditioner quality" section, or None when nothing was measured."""
    tables = [
        (
            "Per point (dense points only). κ: condition numbers with λ = "
            f"{damping:g} (1 = perfect preconditioner; κ(R + λI) is what plain "
            "gradient descent faces). Rayleigh: mean uᵀCu / λ(R) over R's top-k and "
            "bulk eigenvectors (1 = C has R's curvature there). Block cosine: "
            "⟨C, R⟩ / (‖C‖‖R‖) of one diagonal block, the worst block.",
            preconditioner_table(result),
        ),
        (
            "Kronecker efficiency at the last point: C's error on each block against "
            "the best error of any A ⊗ B of that block's size (Van Loan–Pitsianis); "
            "1 = C's factors are the best possible, lower = room left by the factor "
            "estimator rather than by the Kronecker structure.",
            kronecker_table(result),
        ),
        (
            "Staleness: C built at θ₀ and never refreshed, against C rebuilt at each "
            "point (both against R there).",
            staleness_table(result),
        ),
        (
            "Precision: C built in float32 against float64 at θ₀.",
            precision_table(result),
        ),
    ]
    tables = [(caption, frame) for caption, frame in tables if len(frame)]
    if not tables:
        return None
    return Section(
        "Preconditioner quality",
        "How well C works as a preconditioner for R, the numbers papers report.",
        tables=tables,
    )


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
            side_by_side=True,
        ),
        Section(
            "Spectra",
            "Eigenvalues of C, of the reference and of the baselines at the last "
            "point (log scale: open diamonds are negative eigenvalues).",
            figures=spectra_figures(result),
            side_by_side=True,
        ),
        Section(
            "Generalized spectra",
            "How well C preconditions the damped reference: the eigenvalues of "
            "(C + λI)⁻¹(R + λI) are all 1 when C = R; their spread is the condition "
            "number the preconditioned optimizer faces.",
            figures=generalized_figures(result, damping),
            side_by_side=True,
        ),
        Section(
            "Matrices",
            "C and R side by side, and their difference, at the last point "
            f"(pooled to at most {HEATMAP_CELLS} cells per side).",
            figures=matrix_figures(result),
            side_by_side=True,
            columns=2,
        ),
        Section(
            "Cost",
            "Measured at θ₀ (medians; shared machines make these noisy): one "
            "product C v and one damped solve, in milliseconds and in units of one "
            "gradient of the mean loss.",
            tables=[("", cost_table(result))],
        ),
    ]
    quality = preconditioner_section(result, damping)
    if quality is not None:
        sections.insert(2, quality)
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
                side_by_side=True,
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
