import streamlit as st

import explorer as ex
from explorer.ui import landscape_view as lv
from explorer.ui import state
from explorer.ui.curvature_view import applicable
from explorer.ui.results import plot
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
with st.sidebar:
    point = problem_and_point()
    damping = st.number_input(
        "Damping λ",
        min_value=0.0,
        value=1e-6,
        format="%.2e",
        key="scape.damping",
        help="λ in the fields and models; a tiny λ keeps singular curvatures solvable.",
    )
    resolution = st.slider(
        "Grid resolution",
        11,
        201,
        101 if point.problem.num_params == 2 else 21,
        key="scape.resolution",
        help="Points per axis.",
    )
problem = point.problem
_, _, job = state.compare_context()  # the Compare page's runs
runs = (
    {}
    if job is None or not job.done
    else {label: h for label, h in job.histories().items() if h.trajectory is not None}
)
key = f"{point.key}|{sorted(runs)}|{resolution}"
if problem.num_params == 2:
    keys = applicable(problem)
    fields = st.multiselect(
        "Direction fields",
        keys,
        default=[k for k in ("fisher", "ef") if k in keys],
        format_func=lambda k: ex.CURVATURES[k].label,
        key="scape.fields",
        help="Arrows −(C + λI)⁻¹g on a grid; the plain gradient −g is drawn too.",
    )
    models = st.multiselect(
        "Quadratic models at the point",
        keys,
        default=[],
        format_func=lambda k: ex.CURVATURES[k].label,
        key="scape.models",
        help="Level sets of h + gᵀδ + ½δᵀ(C + λI)δ through θ: "
        "ellipses when C + λI is positive definite, hyperbolas when not.",
    )
    center = tuple(float(v) for v in point.theta)
    figure, notes = lv.two_parameter_figure(
        key,
        point,
        runs,
        tuple(fields),
        tuple(models),
        center,
        float(damping),
        int(resolution),
    )
    for name, note in notes.items():
        st.info(f"**{name}**: {note}")
    if runs:
        st.caption(
            "Paths come from the Compare page's last run; paths that coincide (natural "
            "gradient and Gauss-Newton for matching likelihoods) are drawn on top of "
            "each other. The slider replays them step by step."
        )
    plot(figure, "landscape")
else:
    kind = st.radio(
        "Plane",
        ["pca", "random", "eigenvectors"],
        horizontal=True,
        key="scape.kind",
        index=0 if runs else 1,
        format_func={
            "pca": "PCA of the paths (Li et al. 2018)",
            "random": "random, filter-normalized",
            "eigenvectors": "top Hessian eigenvectors",
        }.get,
    )
    if kind == "pca" and not runs:
        st.info(
            "Run a comparison on the Compare page first: the PCA plane is spanned "
            "by the paths."
        )
    for name, figure in lv.plane_figures(
        key, point, runs, kind, int(resolution)
    ).items():
        plot(figure, name)
