"""The Curvature page's parts: its controls, the cached computation of matrices,
spectra and quality, and the tabs that show them (the page script lays them out).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import streamlit as st
import torch

import explorer as ex
from explorer.plots import (
    difference_figure,
    matrices_figure,
    quality_bars_figure,
    spectrum_figure,
)
from explorer.spectra import (
    approximation_quality,
    dense_eigenpairs,
    eigenpairs,
    generalized_spectrum,
)
from explorer.ui.results import plot
from explorer.ui.views import Point, damping_input

#: Heatmaps and exact spectra up to this many parameters.
DENSE_VIEW_MAX = 3000
#: Curvatures shown on a first visit (those the problem supports).
DEFAULT_CURVATURES = ("fisher", "ggn", "hessian", "ef", "kfac")
TABS = ("Matrices", "Differences", "Spectra", "Generalized spectra", "Quality")


@dataclass
class CurvatureAnalysis:
    """Everything the page draws for one point and a set of curvatures."""

    matrices: dict[str, torch.Tensor] = field(default_factory=dict)
    spectra: dict[str, Any] = field(default_factory=dict)
    generalized: dict[str, Any] = field(default_factory=dict)
    qualities: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    dense: bool = True


def applicable(problem: ex.Problem) -> list[str]:
    """Curvature keys that can be built on ``problem`` (``spec.incompatibility``)."""
    return [
        key
        for key, spec in ex.CURVATURES.items()
        if spec.selectable and spec.incompatibility(problem) is None
    ]


@st.cache_data(max_entries=8, show_spinner="Computing curvature matrices and spectra…")
def analyse(
    point_key: str,
    _point: Point,
    curvatures: tuple[str, ...],
    reference: str,
    damping: float,
    k: int,
) -> CurvatureAnalysis:
    """Builds every selected curvature at the point and measures it.

    Cached by ``point_key`` and the selections; failures (e.g. a user plugin that
    raises) are recorded per curvature, never raised.
    """
    del point_key
    problem, theta = _point.problem, _point.theta
    dense = problem.num_params <= DENSE_VIEW_MAX
    out = CurvatureAnalysis(dense=dense)
    operators = {}
    for key in dict.fromkeys((*curvatures, reference, "hessian")):
        try:
            operators[key] = ex.curvature(key, problem, theta)
        except (ValueError, ArithmeticError, RuntimeError) as error:
            out.errors[key] = str(error)
    if dense and reference not in curvatures and reference in operators:
        try:  # the differences compare against it
            out.matrices[reference] = operators[reference].dense()
        except (ValueError, ArithmeticError, RuntimeError) as error:
            out.errors[reference] = str(error)
    for key in curvatures:
        operator = operators.get(key)
        if operator is None:
            continue
        try:
            if dense:
                out.matrices[key] = operator.dense()
                out.spectra[key] = dense_eigenpairs(operator, vectors=False)
            else:
                out.spectra[key] = [
                    eigenpairs(operator, k=k, which="largest"),
                    eigenpairs(operator, k=k, which="smallest"),
                ]
        except (ValueError, ArithmeticError, RuntimeError) as error:
            out.errors[key] = str(error)
            continue
        hessian, ref = operators.get("hessian"), operators.get(reference)
        if hessian is not None:
            try:
                out.generalized[key] = generalized_spectrum(
                    hessian,
                    operator,
                    damping=damping,
                    k=None if dense else k,
                    which="both" if not dense else "largest",
                )
            except (ValueError, ArithmeticError, RuntimeError) as error:
                out.errors[f"{key} (generalized)"] = str(error)
        if ref is not None:
            try:
                out.qualities[key] = approximation_quality(
                    operator, ref, damping=damping
                )
            except (ValueError, ArithmeticError, RuntimeError) as error:
                out.errors[f"{key} vs {reference}"] = str(error)
    return out


def quality_rows(qualities: dict[str, Any]) -> list[dict[str, Any]]:
    """The approximation-quality table, one row per curvature."""
    rows = []
    for key, quality in qualities.items():
        row = {"curvature": ex.CURVATURES[key].label if key in ex.CURVATURES else key}
        for item in dataclasses.fields(quality):
            if item.name in (
                "relative_frobenius_error",
                "cosine",
                "top_overlap",
                "trace_ratio",
                "condition",
                "reference_condition",
                "method",
            ):
                row[item.name.replace("_", " ")] = getattr(quality, item.name)
        rows.append(row)
    return rows


def _label(key: str) -> str:
    return ex.CURVATURES[key].label


def sidebar_controls(keys: list[str]) -> tuple[str, float, str]:
    """(reference curvature, damping λ, heatmap scale)."""
    reference = st.selectbox(
        "Reference",
        keys,
        index=keys.index("fisher") if "fisher" in keys else 0,
        key="view.reference",
        format_func=_label,
        help="What the differences and the quality table compare against.",
    )
    damping = damping_input(
        "view.damping",
        1e-3,
        "λ in (C + λI)⁻¹g for the step cosines, condition numbers and the "
        "generalized spectrum.",
    )
    scale = st.radio(
        "Heatmap scale",
        ["signed", "log"],
        horizontal=True,
        key="view.scale",
        help="Signed values on a diverging scale, or log₁₀|C|.",
    )
    return reference, damping, scale


def curvature_picker(keys: list[str]) -> tuple[str, ...]:
    """The curvatures to show (any registered one the problem supports)."""
    chosen = st.multiselect(
        "Curvatures",
        keys,
        default=[k for k in DEFAULT_CURVATURES if k in keys],
        key="view.curvatures",
        format_func=_label,
        help="Any registered curvature, plugins included.",
    )
    return tuple(chosen)


def show(analysis: CurvatureAnalysis, point: Point, reference: str, scale: str) -> None:
    """The five tabs of an analysis."""
    blocks = point.problem.blocks()
    tabs = st.tabs(list(TABS))
    with tabs[0]:
        if not analysis.dense:
            st.info(
                f"P = {point.problem.num_params:,} is above {DENSE_VIEW_MAX:,}: no "
                "heatmaps; spectra and quality use matrix-free Lanczos and probes."
            )
        elif analysis.matrices:
            labelled = {_label(k): m for k, m in analysis.matrices.items()}
            plot(matrices_figure(labelled, scale=scale, blocks=blocks), "matrices")
    with tabs[1]:
        reference_matrix = analysis.matrices.get(reference)
        others = [k for k in analysis.matrices if k != reference]
        if reference_matrix is None or not others:
            st.info("Choose a curvature besides the reference (dense sizes only).")
        for key in others:
            figure = difference_figure(
                analysis.matrices[key],
                reference_matrix,
                names=(key, reference),
                blocks=blocks,
            )
            plot(figure, f"difference-{key}")
    with tabs[2]:
        st.caption(
            "|λ| on a log axis; negative eigenvalues are open diamonds (the Hessian "
            "can be indefinite, the GGN and the Fisher cannot)."
        )
        if analysis.spectra:
            plot(spectrum_figure(analysis.spectra), "spectra")
    with tabs[3]:
        st.caption(
            "Eigenvalues of (C + λI)⁻¹H: all equal to 1 means C preconditions the "
            "Hessian perfectly; their spread is the condition number the optimizer "
            "sees."
        )
        if analysis.generalized:
            figure = spectrum_figure(
                analysis.generalized,
                reference_line=1.0,
                title="Generalized spectrum of (C + λI)⁻¹H",
            )
            plot(figure, "generalized")
    with tabs[4]:
        if analysis.qualities:
            rows = pd.DataFrame(quality_rows(analysis.qualities))
            st.dataframe(rows, hide_index=True)
            plot(quality_bars_figure(analysis.qualities), "quality")
