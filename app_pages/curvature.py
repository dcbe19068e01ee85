import streamlit as st

from explorer.ui import curvature_view as cv
from explorer.ui import pageurl, state
from explorer.ui.text import plain
from explorer.ui.theory import theory_link
from explorer.ui.views import problem_and_point

st.title("Curvature")
st.markdown(
    "Every curvature matrix of the mean loss at one point: heatmaps, their "
    "differences, spectra, generalized spectra and how well each approximates a "
    f"reference. Definitions: {theory_link('ggn', 'GGN')}, {theory_link('fisher', 'Fisher')}, "
    f"{theory_link('ef', 'empirical Fisher')}, {theory_link('kfac', 'K-FAC')}."
)
warnings = pageurl.open_page("curvature")
with st.sidebar:
    point = problem_and_point()
    keys = cv.applicable(point.problem)
    params = cv.view_params(keys)
    warnings += pageurl.seed_view("curvature", params)
    reference, damping, scale = cv.sidebar_controls(keys)
for warning in warnings:
    st.warning(warning)
chosen = cv.curvature_picker(keys)
pageurl.write_page_url(state.compare_context()[0], params)
if not chosen:
    st.info("Choose at least one curvature above.")
    st.stop()
covered = cv.coverages(point, chosen)  # structure only: shown while matrices compute
for note in cv.coverage_warnings(covered):
    st.warning(note)
analysis = cv.analyse(point, chosen, reference, damping, 10)
if analysis is None:
    st.stop()
st.caption(f"At {plain(point.description)}.")
for key, error in analysis.errors.items():
    st.warning(f"**{key}**: {error}")
cv.show(analysis, point, reference, scale, covered)
