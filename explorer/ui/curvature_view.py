"""The Curvature page's parts: its controls, the cached computation of matrices,
spectra and quality, and the tabs that show them (the page script lays them out).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pandas as pd
import streamlit as st

import explorer as ex
from explorer.plots import (
    difference_figure,
    matrices_figure,
    quality_bars_figure,
    spectrum_figure,
)
from explorer.server import views
from explorer.server.views import CurvatureAnalysis
from explorer.ui import pageurl, state
from explorer.ui.computed import cached_figure, computed
from explorer.ui.results import plot
from explorer.ui.views import Point, damping_input

#: Curvatures shown on a first visit (those the problem supports).
DEFAULT_CURVATURES = ("fisher", "ggn", "hessian", "ef", "kfac")
SCALES = ("signed", "log")
GENERALIZED = "view.generalized"  # asked for generalized spectra without dense C
TABS = ("Matrices", "Differences", "Spectra", "Generalized spectra", "Quality")


def applicable(problem: ex.Problem) -> list[str]:
    """Curvature keys that can be built on ``problem`` (``spec.incompatibility``)."""
    return [
        key
        for key, spec in ex.CURVATURES.items()
        if spec.selectable and spec.incompatibility(problem) is None
    ]


def analyse(
    point: Point,
    curvatures: tuple[str, ...],
    reference: str,
    damping: float,
    k: int,
) -> CurvatureAnalysis | None:
    """Every selected curvature at the point, measured, computed on a worker.

    Two computations: the matrices and spectra (independent of λ) and the
    generalized spectra and quality at λ, so changing λ recomputes only the
    second, and the first is shown while the second runs. Without dense matrices
    the generalized spectra wait for a click (:data:`GENERALIZED`): they cost
    most of the time. Failures of one curvature (e.g. a plugin that raises) are
    recorded per curvature. Returns None while the first computation waits (the
    page shows the queue).
    """
    dense = point.problem.num_params <= state.engine_or_stop().limits.max_dense_p
    common = (point.config, point.theta, point.key, curvatures, reference)
    key = (point.config, point.key, curvatures, reference, k, dense)
    base = computed(
        "curvature",
        views.curvature_matrices,
        *common,
        k,
        dense,
        key_parts=key,
        label="Curvature matrices and spectra",
    )
    if base is None:
        return None
    generalized = dense or bool(st.session_state.get(GENERALIZED))
    measured = computed(
        "curvature.quality",
        views.curvature_quality,
        *common,
        damping,
        k,
        dense,
        generalized,
        key_parts=(*key, damping, generalized),
        label="Generalized spectra and quality" if generalized else "Quality",
    )
    if measured is None:
        return base
    return dataclasses.replace(
        base,
        generalized=measured.generalized,
        qualities=measured.qualities,
        errors={**base.errors, **measured.errors},
    )


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
                row[item.name.replace("_", " ")] = table_value(
                    getattr(quality, item.name)
                )
        rows.append(row)
    return rows


def table_value(value: Any) -> Any:
    """A cell as a reader expects it: 4 significant digits (``-1e-16``, not
    ``-0.0000000000000001``), ``∞`` for an infinite condition number and ``—``
    where there is no number.

    >>> [table_value(v) for v in (None, float("inf"), float("nan"), -1e-16, 0.123456)]
    ['—', '∞', '—', '-1e-16', '0.1235']
    """
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    number = float(value)
    if math.isnan(number):
        return "—"
    if math.isinf(number):
        return "∞" if number > 0 else "−∞"
    return f"{number:.4g}"


def view_params(keys: list[str]) -> tuple[pageurl.ViewParam, ...]:
    """The page's controls as URL parameters (``v.curvatures=fisher,ggn`` …)."""
    return (
        pageurl.ViewParam("curvatures", "view.curvatures", pageurl.choices(keys)),
        pageurl.ViewParam("reference", "view.reference", pageurl.choice(keys)),
        pageurl.ViewParam("damping", "view.damping", pageurl.number(0.0, 1e8)),
        pageurl.ViewParam("scale", "view.scale", pageurl.choice(SCALES)),
    )


def _label(key: str) -> str:
    return ex.CURVATURES[key].label


def sidebar_controls(keys: list[str]) -> tuple[str, float, str]:
    """(reference curvature, damping λ, heatmap scale)."""
    if st.session_state.get("view.reference") not in keys:
        st.session_state["view.reference"] = "fisher" if "fisher" in keys else keys[0]
    reference = st.selectbox(
        "Reference",
        keys,
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
        list(SCALES),
        horizontal=True,
        key="view.scale",
        help="Signed values on a diverging scale, or log₁₀|C|.",
    )
    return reference, damping, scale


def curvature_picker(keys: list[str]) -> tuple[str, ...]:
    """The curvatures to show (any registered one the problem supports)."""
    shown = st.session_state.get("view.curvatures")
    if shown is None:
        shown = [k for k in DEFAULT_CURVATURES if k in keys]
    st.session_state["view.curvatures"] = [k for k in shown if k in keys]
    chosen = st.multiselect(
        "Curvatures",
        keys,
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
            limit = state.engine_or_stop().limits.max_dense_p
            st.info(
                f"P = {point.problem.num_params:,} is above this server's limit of "
                f"{limit:,} for dense matrices (EXPLORER_MAX_DENSE_P): no heatmaps; "
                "spectra and quality use matrix-free Lanczos and probes."
            )
        elif analysis.matrices:
            labelled = {_label(k): m for k, m in analysis.matrices.items()}
            figure = cached_figure(
                f"matrices|{point.key}|{tuple(labelled)}|{scale}",
                lambda: matrices_figure(labelled, scale=scale, blocks=blocks),
            )
            plot(figure, "matrices")
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
        if not analysis.dense and not st.session_state.get(GENERALIZED):
            st.info(
                f"P = {point.problem.num_params:,}: without dense matrices each "
                "generalized spectrum is a Lanczos run with a conjugate-gradient "
                "solve per product, about 10 s per curvature on two cores."
            )
            if st.button("Compute the generalized spectra", key="view.generalize"):
                st.session_state[GENERALIZED] = True
                st.rerun()
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
