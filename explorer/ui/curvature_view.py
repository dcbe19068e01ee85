"""The Curvature page's parts: its controls, the cached computation of matrices,
spectra and quality, and the tabs that show them (the page script lays them out).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pandas as pd
import streamlit as st
import torch

import explorer as ex
from explorer.curvature.base import CurvatureOperator
from explorer.curvature.coverage import COVERAGE_WORDS, describe_coverage, uncovered
from explorer.plots import (
    difference_figure,
    matrices_figure,
    quality_bars_figure,
    spectrum_figure,
)
from explorer.plots.matrices import SCALES
from explorer.server import views
from explorer.server.views import CurvatureAnalysis
from explorer.ui import pageurl, state
from explorer.ui.computed import cached_figure, computed
from explorer.ui.results import plot
from explorer.ui.text import plain
from explorer.ui.views import Point, damping_input

#: Curvatures shown on a first visit (those the problem supports).
DEFAULT_CURVATURES = ("fisher", "ggn", "hessian", "ef", "kfac")
#: The heatmap scale control (``auto``, the default: log₁₀|C| where the signed
#: colours would leave a panel blank, see ``explorer.plots.matrices.choose_scale``).
SCALE_WORDS = {"auto": "auto", "signed": "signed", "log": "log₁₀|C|"}
GENERALIZED = "view.generalized"  # asked for generalized spectra without dense C
TABS = (
    "Matrices",
    "Differences",
    "Spectra",
    "Generalized spectra",
    "Quality",
    "Coverage",
)
#: A coverage kind as a table cell (never the bare word "none": the uncovered
#: parameters must stand out, and a cell reading "none" looks like missing data).
COVERAGE_CELLS = {
    "full": "full",
    "block": "layer block",
    "kronecker": "Kronecker block",
    "diagonal": "diagonal",
    "none": "✗ not covered",
}
#: Failures of a curvature while its coverage is read (a plugin that raises).
COVERAGE_ERRORS = (ValueError, ArithmeticError, RuntimeError)


def applicable(problem: ex.Problem) -> list[str]:
    """Curvature keys that can be built on ``problem`` (``spec.incompatibility``),
    of those this session may list (not another session's uploaded plugins).
    """
    specs = {key: ex.CURVATURES[key] for key in state.listed(ex.CURVATURES)}
    return [
        key
        for key, spec in specs.items()
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
        format_func=SCALE_WORDS.get,
        help="Signed values on a diverging scale, or log₁₀|C|. Auto draws log₁₀|C| "
        "when on the signed scale more than half of some matrix's nonzero cells "
        "would look like 0 (a network's bulk far below its largest block), signed "
        "otherwise; the figure's title says which it drew.",
    )
    return reference, damping, scale


def layer_blocks(problem: ex.Problem) -> tuple[tuple[str, slice], ...]:
    """``problem.blocks()`` (one per module) named as the heatmaps' axes show them:
    the module's path and class (``"0 · Linear"``, ``"ln_f · LayerNorm"``); a
    bare parameter keeps its name.
    """
    modules = dict(problem.model.named_modules()) if problem.model is not None else {}
    named = []
    for name, span in problem.blocks():
        module = modules.get(name) if name else None
        label = f"{name} · {type(module).__name__}" if module is not None else name
        named.append((label, span))
    return tuple(named)


def coverage_of(problem: ex.Problem, key: str) -> dict[str, str]:
    """Per named parameter, how curvature ``key`` keeps it on ``problem``
    (:meth:`~explorer.curvature.base.CurvatureOperator.coverage`).

    Coverage is structure, not values: where the declared tags decide it
    (``declared_coverage``) nothing is built; otherwise (K-FAC: its Kronecker
    factors say which parameters they hold) the operator is built on one example
    at θ₀ and asked, which takes milliseconds.
    """
    spec = ex.CURVATURES[key]
    if spec.build.coverage is CurvatureOperator.coverage:
        declared = spec.build.declared_coverage(problem)
        if declared is not None:
            return declared
    one = problem.batch(torch.arange(1, device=problem.inputs.device))
    return ex.curvature(key, problem, problem.theta0, batch=one).coverage()


@st.cache_data(max_entries=256, show_spinner=False)
def _cached_coverage(
    problem_key: str, key: str, _problem: ex.Problem
) -> dict[str, str] | str:
    """:func:`coverage_of`, once per problem configuration and curvature; the
    error text where building the curvature failed.
    """
    try:
        return coverage_of(_problem, key)
    except COVERAGE_ERRORS as error:
        return f"{type(error).__name__}: {error}"


def coverages(point: Point, keys: tuple[str, ...]) -> dict[str, dict[str, str] | str]:
    """The coverage of each of ``keys`` on the point's problem (cached)."""
    problem_key = repr(point.config)
    return {key: _cached_coverage(problem_key, key, point.problem) for key in keys}


def coverage_rows(
    problem: ex.Problem, covered: dict[str, dict[str, str] | str]
) -> list[dict[str, Any]]:
    """The coverage table: one row per named parameter (the class of the module
    that owns it, its shape), one column per curvature holding its coverage kind
    (:data:`COVERAGE_CELLS`: short enough that five curvatures fit side by side; the
    caption spells each out in ``COVERAGE_WORDS``).
    """
    modules = dict(problem.model.named_modules()) if problem.model is not None else {}
    rows = []
    for name, shape in zip(problem.param_names, problem.param_shapes, strict=True):
        owner = modules.get(name.rpartition(".")[0])  # "": the model owns it
        row = {
            "parameter": name,
            "module": type(owner).__name__ if owner is not None else "—",
            "shape": " × ".join(map(str, shape)) or "scalar",
        }
        for key, coverage in covered.items():
            row[_label(key)] = (
                "unknown (failed)"
                if isinstance(coverage, str)
                else COVERAGE_CELLS[coverage[name]]
            )
        rows.append(row)
    return rows


def coverage_warnings(covered: dict[str, dict[str, str] | str]) -> list[str]:
    """One warning per curvature that leaves parameters uncovered (or failed)."""
    notes = []
    for key, coverage in covered.items():
        if isinstance(coverage, str):
            name = plain(_label(key))
            notes.append(f"**{name}**: its coverage is unknown ({coverage}).")
            continue
        missing = uncovered(coverage)
        if missing:
            notes.append(
                f"**{plain(_label(key))} leaves {len(missing)} of {len(coverage)} "
                f"parameter tensors uncovered**: {describe_coverage(coverage)}. Their "
                "rows and columns are zero: its heatmap is 0 there, its spectrum has "
                "one zero eigenvalue per uncovered entry, and a damped step "
                "(C + λI)⁻¹g moves them by g/λ. See the Coverage tab."
            )
    return notes


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


def show(
    analysis: CurvatureAnalysis,
    point: Point,
    reference: str,
    scale: str,
    covered: dict[str, dict[str, str] | str] | None = None,
) -> None:
    """The tabs of an analysis (:data:`TABS`); ``covered`` from :func:`coverages`."""
    blocks = layer_blocks(point.problem)
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
                f"matrices|{point.key}|{tuple(analysis.matrices)}|{tuple(labelled)}|"
                f"{scale}",
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
    with tabs[5]:
        show_coverage(point.problem, covered or {})


def show_coverage(
    problem: ex.Problem, covered: dict[str, dict[str, str] | str]
) -> None:
    """The coverage map: per curvature a sentence, per parameter its kind."""
    if not covered:
        st.info("Choose a curvature to see which parameters it keeps.")
        return
    lines = []
    for key, coverage in covered.items():
        if isinstance(coverage, str):
            lines.append(f"- **{_label(key)}**: unknown ({coverage})")
        elif len(set(coverage.values())) == 1:
            (kind,) = set(coverage.values())
            lines.append(
                f"- **{_label(key)}**, every parameter tensor: {COVERAGE_WORDS[kind]}"
            )
        else:
            lines.append(f"- **{_label(key)}** {describe_coverage(coverage)}")
    st.markdown("\n".join(lines))
    st.dataframe(pd.DataFrame(coverage_rows(problem, covered)), hide_index=True)
    st.caption(
        "From most to least kept: "
        + "; ".join(
            f"**{COVERAGE_CELLS[kind]}**: {words}"
            for kind, words in COVERAGE_WORDS.items()
        )
        + ". Declared by each curvature's structure (its tags, blocks and Kronecker "
        "factors), not measured from its values."
    )
