"""The Landscape page's parts: its controls and its cached grids, fields, models and
planes (the page script only lays them out).
"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st
import torch

from explorer import landscape as scape
from explorer.curvature.registry import CURVATURES, curvature
from explorer.landscape.trajectories import finite_trajectory
from explorer.plots import contour_figure, interpolation_figure, plane_figure
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
    key = f"{point.key}|{point.runs_key}|{resolution}"
    figure, notes = two_parameter_figure(
        key, point, point.runs, fields, models, center, damping, resolution
    )
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
    key = f"{point.key}|{point.runs_key}|{resolution}"
    for name, figure in plane_figures(key, point, point.runs, kind, resolution).items():
        plot(figure, name)


@st.cache_data(max_entries=8, show_spinner="Evaluating the loss on the grid…")
def two_parameter_figure(
    key: str,
    _point: Point,
    _runs: dict,
    fields: tuple[str, ...],
    models: tuple[str, ...],
    model_center: tuple[float, float],
    damping: float,
    resolution: int,
) -> tuple[go.Figure, dict[str, str]]:
    """Contours with the runs' paths, direction fields and quadratic models.

    Returns:
        (figure, notes): notes say where a field or model is undefined and why.
    """
    del key
    problem = _point.problem
    points = [finite_trajectory(run)[0] for run in _runs.values()]
    box = scape.default_box(problem, torch.cat(points) if points else None)
    grid = scape.loss_grid(problem, box, resolution)
    notes: dict[str, str] = {}
    field = None
    if fields:
        field = scape.direction_field(problem, fields, damping, box, resolution=15)
        for name, (count, reason) in getattr(field, "failures", {}).items():
            notes[f"field {name}"] = f"undefined at {count} grid points: {reason}"
    quadratic = None
    if models:
        center = torch.tensor(model_center, dtype=problem.dtype)
        quadratic = scape.quadratic_models(problem, center, models, damping)
        for name, model in quadratic.items():
            if model.kind != "elliptic":
                notes[f"model {name}"] = f"the quadratic model is {model.kind}: " + (
                    "unbounded below (a saddle)"
                    if model.kind == "hyperbolic"
                    else "not strictly convex"
                )
    figure = contour_figure(
        grid, _runs or None, field=field, models=quadratic, animate=bool(_runs)
    )
    return figure, notes


@st.cache_data(max_entries=8, show_spinner="Evaluating the loss on the plane…")
def plane_figures(
    key: str, _point: Point, _runs: dict, kind: str, resolution: int
) -> dict[str, go.Figure]:
    """Planes and slices through parameter space for P > 2."""
    del key
    problem, theta = _point.problem, _point.theta
    figures: dict[str, go.Figure] = {}
    paths = {
        label: run
        for label, run in _runs.items()
        if run.trajectory is not None and run.trajectory.shape[0] > 2
    }
    if kind == "pca" and paths:
        trajectories = [finite_trajectory(run)[0] for run in paths.values()]
        plane = scape.pca_plane(trajectories)
        grid = scape.plane_loss_grid(
            problem, plane, resolution=resolution, paths=trajectories
        )
        figures["PCA plane of the paths"] = plane_figure(plane, grid, paths)
    elif kind == "random":
        generator = torch.Generator().manual_seed(0)
        plane = scape.random_plane(problem, theta, generator)
        grid = scape.plane_loss_grid(problem, plane, resolution=resolution)
        figures["Random filter-normalized plane"] = plane_figure(plane, grid)
    elif kind == "eigenvectors":
        plane = scape.eigenvector_plane(curvature("hessian", problem, theta))
        grid = scape.plane_loss_grid(problem, plane, resolution=resolution)
        figures["Plane of the top two Hessian eigenvectors"] = plane_figure(plane, grid)
    for label, run in paths.items():
        final = finite_trajectory(run)[0][-1].to(problem.dtype)
        line = scape.interpolate(problem, problem.theta0, final)
        figures[f"From θ₀ to the end of {label}"] = interpolation_figure(
            line, names=("θ₀", f"{label} end")
        )
        break
    return figures
