import streamlit as st

from explorer.ui import landscape_view as lv
from explorer.ui import pageurl, state
from explorer.ui.theory import theory_link
from explorer.ui.views import problem_and_point

st.title("Landscape")
st.markdown(
    "The loss around the optimizers' paths. For two-parameter problems: the exact "
    "contours, every path, the field of preconditioned directions −(C + λI)⁻¹g and "
    "the quadratic models of the curvatures at a point (Kunstner et al. 2019, "
    f"figures 1–2). For larger models: planes and lines through parameter space "
    f"({theory_link('spectra', 'details')})."
)
warnings = pageurl.open_page("landscape")
with st.sidebar:
    point = problem_and_point()
    params = lv.view_params(point)
    warnings += pageurl.seed_view("landscape", params)
    damping, resolution = lv.sidebar_controls(point)
for warning in warnings:
    st.warning(warning)
if point.problem.num_params == 2:
    lv.show_two_parameter(point, damping, resolution)
else:
    lv.show_planes(point, resolution)
pageurl.write_page_url(state.compare_context()[0], params)
