"""The Landscape page's parts: its controls and its cached grids, fields, models and
planes (the page script only lays them out).
"""

from __future__ import annotations

import streamlit as st

from explorer.curvature.registry import CURVATURES
from explorer.server import views
from explorer.server.limits import format_bytes
from explorer.ui import pageurl, state
from explorer.ui.computed import computed
from explorer.ui.curvature_view import applicable
from explorer.ui.results import plot
from explorer.ui.views import Point, damping_input

PLANES = {
    "pca": "PCA of the paths (Li et al. 2018)",
    "random": "random, filter-normalized",
    "eigenvectors": "top Hessian eigenvectors",
}


def sidebar_controls(point: Point) -> tuple[float, int]:
    """(damping λ, grid points per axis)."""
    damping = damping_input(
        "scape.damping",
        1e-6,
        "λ in the fields and models; a tiny λ keeps singular curvatures solvable.",
    )
    # defaults go through the session state so that a link can set the widgets
    st.session_state.setdefault(
        "scape.resolution", 101 if point.problem.num_params == 2 else 21
    )
    resolution = st.slider(
        "Grid resolution", 11, 201, key="scape.resolution", help="Points per axis."
    )
    return damping, int(resolution)


def view_params(point: Point) -> tuple[pageurl.ViewParam, ...]:
    """The page's controls as URL parameters (``v.fields=fisher,ef`` …)."""
    keys = applicable(point.problem)
    return (
        pageurl.ViewParam("damping", "scape.damping", pageurl.number(0.0, 1e8)),
        pageurl.ViewParam(
            "resolution", "scape.resolution", pageurl.number(11, 201, integer=True)
        ),
        pageurl.ViewParam("fields", "scape.fields", pageurl.choices(keys)),
        pageurl.ViewParam("models", "scape.models", pageurl.choices(keys)),
        pageurl.ViewParam("plane", "scape.kind", pageurl.choice(list(PLANES))),
        # a run's label: checked against the runs once they are there
        pageurl.ViewParam("line", "scape.line", str),
    )


def _curvature_picker(label: str, keys: list[str], default: list[str], **kw) -> tuple:
    key = kw["key"]
    shown = st.session_state.get(key)
    if shown is None:
        shown = default
    st.session_state[key] = [k for k in shown if k in keys]
    chosen = st.multiselect(
        label, keys, format_func=lambda k: CURVATURES[k].label, **kw
    )
    return tuple(chosen)


def grid_allowed(point: Point, resolution: int) -> bool:
    """Whether this server computes a resolution² grid on the point's P
    (``Limits.grid_refusal``, EXPLORER_MAX_GRID_X_P); says why not, before any
    grid is allocated, and what the grid costs otherwise.
    """
    num_params = point.problem.num_params
    refusal = state.engine_or_stop().limits.grid_refusal(resolution, num_params)
    if refusal is not None:
        st.error(f"Not started: {refusal}")
        return False
    st.caption(
        f"Grid: {resolution} × {resolution} = {resolution**2:,} loss evaluations "
        f"on P = {num_params:,} (θ copies: {format_bytes(resolution**2 * num_params * 8)})."
    )
    return True


def show_two_parameter(point: Point, damping: float, resolution: int) -> None:
    """Contours, paths, direction fields and quadratic models (P = 2)."""
    if not grid_allowed(point, resolution):
        return
    keys = applicable(point.problem)
    fields = _curvature_picker(
        "Direction fields",
        keys,
        ["fisher", "ef"],
        key="scape.fields",
        help="Arrows −(C + λI)⁻¹g on a grid; the plain gradient −g is drawn too.",
    )
    models = _curvature_picker(
        "Quadratic models at the point",
        keys,
        [],
        key="scape.models",
        help="Level sets of h + gᵀδ + ½δᵀ(C + λI)δ through θ: "
        "ellipses when C + λI is positive definite, hyperbolas when not.",
    )
    center = tuple(float(v) for v in point.theta)
    result = computed(
        "landscape",
        views.two_parameter_figure,
        point.config,
        point.runs,
        fields,
        models,
        center,
        damping,
        resolution,
        key_parts=point.cache_key(fields, models, center, damping, resolution),
        label="Contours, paths and fields",
    )
    if result is None:
        return
    figure, notes = result
    for name, note in notes.items():
        st.info(f"**{name}**: {note}")
    if point.runs:
        st.caption(
            "Paths come from the Compare page's last run; paths that coincide (natural "
            "gradient and Gauss-Newton for matching likelihoods) are drawn on top of "
            "each other. The slider and ▶ play / ⏸ pause replay them step by step."
        )
    if fields:
        st.caption(
            f"Arrows: {CURVATURES[fields[0]].label} field shown; the gradient and "
            "the other fields are in the legend (click to show)."
        )
    plot(figure, "landscape")


def show_planes(point: Point, resolution: int) -> None:
    """A plane through parameter space and a 1-D interpolation (P > 2)."""
    if not grid_allowed(point, resolution):
        return
    if st.session_state.get("scape.kind") not in PLANES:
        st.session_state["scape.kind"] = "pca" if point.runs else "random"
    kind = st.radio(
        "Plane", list(PLANES), horizontal=True, key="scape.kind", format_func=PLANES.get
    )
    if kind == "pca" and not point.runs:
        st.info(
            "Run a comparison on the Compare page first: the PCA plane is spanned "
            "by the paths."
        )
    line_to = None
    if point.runs:
        if st.session_state.get("scape.line") not in point.runs:
            st.session_state["scape.line"] = next(iter(point.runs))
        line_to = st.selectbox(
            "Line from θ₀ to the end of",
            list(point.runs),
            key="scape.line",
            help="The 1-D slice below: the loss along the straight line from θ₀ "
            "through the final θ of this run (α = 1).",
        )
    figures = computed(
        "landscape.planes",
        views.plane_figures,
        point.config,
        point.theta,
        point.runs,
        kind,
        resolution,
        point.seed,
        line_to,
        key_parts=point.cache_key(kind, resolution, point.seed, line_to),
        label="The loss on the plane",
    )
    for name, figure in (figures or {}).items():
        plot(figure, name)
