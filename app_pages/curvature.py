import pandas as pd
import streamlit as st

import explorer as ex
from explorer.plots import (
    difference_figure,
    matrices_figure,
    quality_bars_figure,
    spectrum_figure,
)
from explorer.ui import curvature_view as cv
from explorer.ui.results import plot
from explorer.ui.theory import theory_link
from explorer.ui.views import problem_and_point

st.title("Curvature")
st.markdown(
    "Every curvature matrix of the mean loss at one point: heatmaps, their "
    "differences, spectra, generalized spectra and how well each approximates a "
    f"reference. Definitions: {theory_link('ggn', 'GGN')}, {theory_link('fisher', 'Fisher')}, "
    f"{theory_link('ef', 'empirical Fisher')}, {theory_link('kfac', 'K-FAC')}."
)
with st.sidebar:
    point = problem_and_point()
    keys = cv.applicable(point.problem)
    reference = st.selectbox(
        "Reference",
        keys,
        index=keys.index("fisher"),
        key="view.reference",
        format_func=lambda k: ex.CURVATURES[k].label,
        help="What the differences and the quality table compare against.",
    )
    damping = st.number_input(
        "Damping λ",
        min_value=0.0,
        value=1e-3,
        format="%.2e",
        key="view.damping",
        help="λ in (C + λI)⁻¹g for the step "
        "cosines, condition numbers and the generalized spectrum.",
    )
    scale = st.radio(
        "Heatmap scale",
        ["signed", "log"],
        horizontal=True,
        key="view.scale",
        help="Signed values on a diverging scale, or log₁₀|C|.",
    )
chosen = st.multiselect(
    "Curvatures",
    keys,
    default=[k for k in ("fisher", "ggn", "hessian", "ef", "kfac") if k in keys],
    key="view.curvatures",
    format_func=lambda k: ex.CURVATURES[k].label,
    help="Any registered curvature, plugins included.",
)
if not chosen:
    st.info("Choose at least one curvature above.")
    st.stop()
analysis = cv.analyse(point.key, point, tuple(chosen), reference, float(damping), 10)
st.caption(f"At {point.description}.")
for key, error in analysis.errors.items():
    st.warning(f"**{key}**: {error}")
tabs = st.tabs(["Matrices", "Differences", "Spectra", "Generalized spectra", "Quality"])
with tabs[0]:
    if not analysis.dense:
        st.info(
            f"P = {point.problem.num_params:,} is above {cv.DENSE_VIEW_MAX:,}: no "
            "heatmaps; spectra and quality use matrix-free Lanczos and probes."
        )
    elif analysis.matrices:
        plot(
            matrices_figure(
                {ex.CURVATURES[k].label: m for k, m in analysis.matrices.items()},
                scale=scale,
                blocks=point.problem.blocks(),
            ),
            "matrices",
        )
with tabs[1]:
    reference_matrix = analysis.matrices.get(reference)
    if reference_matrix is None:
        reference_matrix = cv.analyse(
            point.key, point, (reference,), reference, float(damping), 10
        ).matrices.get(reference)
    others = [k for k in analysis.matrices if k != reference]
    if reference_matrix is None or not others:
        st.info("Choose a curvature besides the reference (dense sizes only).")
    for key in others:
        plot(
            difference_figure(
                analysis.matrices[key],
                reference_matrix,
                names=(key, reference),
                blocks=point.problem.blocks(),
            ),
            f"difference-{key}",
        )
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
        "Hessian perfectly; their spread is the condition number the optimizer sees."
    )
    if analysis.generalized:
        plot(
            spectrum_figure(
                analysis.generalized,
                reference_line=1.0,
                title="Generalized spectrum of (C + λI)⁻¹H",
            ),
            "generalized",
        )
with tabs[4]:
    if analysis.qualities:
        st.dataframe(pd.DataFrame(cv.quality_rows(analysis.qualities)), hide_index=True)
        plot(quality_bars_figure(analysis.qualities), "quality")
