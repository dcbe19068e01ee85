"""The Landscape page's parts: its controls and its cached grids, fields, models and
planes (the page script only lays them out).
"""

from __future__ import annotations

import streamlit as st

from explorer.curvature.registry import CURVATURES
from explorer.server import views
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
    resolution = st.slider(
        "Grid resolution",
        11,
        201,
        101 if point.problem.num_params == 2 else 21,
        key="scape.resolution",
        help="Points per axis.",
    )
    return damping, int(resolution)


def _curvature_picker(label: str, keys: list[str], default: list[str], **kw) -> tuple:
    chosen = st.multiselect(
        label,
        keys,
        default=[k for k in default if k in keys],
        format_func=lambda k: CURVATURES[k].label,
        **kw,
    )
    return tuple(chosen)


def show_two_parameter(point: Point, damping: float, resolution: int) -> None:
    """Contours, paths, direction fields and quadratic models (P = 2)."""
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
        key_parts=(
            point.key,
            point.runs_key,
            fields,
            models,
            center,
            damping,
            resolution,
        ),
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
            "each other. The slider replays them step by step."
        )
    plot(figure, "landscape")


def show_planes(point: Point, resolution: int) -> None:
    """A plane through parameter space and a 1-D interpolation (P > 2)."""
    kind = st.radio(
        "Plane",
        list(PLANES),
        horizontal=True,
        key="scape.kind",
        index=0 if point.runs else 1,
        format_func=PLANES.get,
    )
    if kind == "pca" and not point.runs:
        st.info(
            "Run a comparison on the Compare page first: the PCA plane is spanned "
            "by the paths."
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
        key_parts=(point.key, point.runs_key, kind, resolution, point.seed),
        label="The loss on the plane",
    )
    for name, figure in (figures or {}).items():
        plot(figure, name)
