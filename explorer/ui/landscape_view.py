"""The Landscape page's computations, cached: grids, fields, models and planes."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st
import torch

from explorer import landscape as scape
from explorer.curvature.registry import curvature
from explorer.landscape.trajectories import finite_trajectory
from explorer.plots import contour_figure, interpolation_figure, plane_figure
from explorer.ui.views import Point


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
