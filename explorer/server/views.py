"""The views' computations, run on a worker: curvature analyses and landscapes.

Each function is called as ``fn(worker, channel, *args)`` by
:func:`~explorer.server.tasks.call_task`; ``worker`` is the process's
:class:`~explorer.server.tasks.WorkerCache`. The Curvature page is split in two so
that a new damping λ costs only what depends on λ: :func:`curvature_matrices` builds
the operators, their dense matrices and spectra (kept on the worker for the next
call), :func:`curvature_quality` measures generalized spectra and approximation
quality at one λ from them. Landscapes return finished figures, built once with the
result and cached with it. Each asks its channel between steps (one curvature, one
matrix, one spectrum, one grid) whether to stop (:func:`~explorer.server.tasks.
stop_if_asked`), so Stop and a closed tab end it within a step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from explorer import landscape as scape
from explorer.curvature.registry import curvature
from explorer.landscape.trajectories import finite_trajectory
from explorer.plots import contour_figure, interpolation_figure, plane_figure
from explorer.plots.theme import plain_keys, plain_text
from explorer.runs import History, ProblemConfig
from explorer.server.tasks import stop_if_asked
from explorer.spectra import (
    approximation_quality,
    dense_eigenpairs,
    eigenpairs,
    generalized_spectrum,
)

#: Failures of one curvature that the view reports instead of raising.
VIEW_ERRORS = (ValueError, ArithmeticError, RuntimeError)


@dataclass
class CurvatureAnalysis:
    """What the Curvature page draws for one point and a set of curvatures."""

    matrices: dict[str, torch.Tensor] = field(default_factory=dict)
    spectra: dict[str, Any] = field(default_factory=dict)
    generalized: dict[str, Any] = field(default_factory=dict)
    qualities: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    dense: bool = True


class PointCache:
    """The operators of one point and what was computed from them, kept on the
    worker: another reference, λ or set of curvatures at the same point reuses
    every matrix and spectrum already built.
    """

    def __init__(self, problem: Any, theta: torch.Tensor) -> None:
        self.problem, self.theta = problem, theta
        self.operators: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.matrices: dict[str, torch.Tensor] = {}
        self.spectra: dict[str, Any] = {}

    def operator(self, key: str) -> Any | None:
        if key not in self.operators and key not in self.errors:
            try:
                self.operators[key] = curvature(key, self.problem, self.theta)
            except VIEW_ERRORS as error:
                self.errors[key] = str(error)
        return self.operators.get(key)

    def matrix(self, key: str) -> torch.Tensor | None:
        if key not in self.matrices and self.operator(key) is not None:
            self.matrices[key] = self.operators[key].dense()
        return self.matrices.get(key)


def _keys(curvatures: tuple[str, ...], reference: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*curvatures, reference, "hessian")))


def _point(worker, config, theta, point_key) -> PointCache:
    return worker.memo(
        f"point|{point_key}", lambda: PointCache(worker.problem(config), theta)
    )


def curvature_matrices(
    worker: Any,
    channel: Any,
    config: ProblemConfig,
    theta: torch.Tensor,
    point_key: str,
    curvatures: tuple[str, ...],
    reference: str,
    k: int,
    dense: bool,
) -> CurvatureAnalysis:
    """Dense matrices and spectra (or Lanczos extremes when not ``dense``)."""
    point = _point(worker, config, theta, point_key)
    out = CurvatureAnalysis(dense=dense)
    wanted = curvatures if reference in curvatures else (*curvatures, reference)
    for key in (*wanted, "hessian"):
        stop_if_asked(channel)
        point.operator(key)
    for key in wanted:
        if point.operator(key) is None:
            continue
        try:
            if dense:
                stop_if_asked(channel)
                out.matrices[key] = point.matrix(key)
            if key not in curvatures:
                continue
            stop_if_asked(channel)
            if key not in point.spectra:
                point.spectra[key] = (
                    dense_eigenpairs(point.matrix(key), vectors=False)
                    if dense
                    else [
                        eigenpairs(point.operators[key], k=k, which="largest"),
                        eigenpairs(point.operators[key], k=k, which="smallest"),
                    ]
                )
            out.spectra[key] = point.spectra[key]
        except VIEW_ERRORS as error:
            out.errors[key] = str(error)
    out.errors = {
        **{k: e for k, e in point.errors.items() if k in wanted},
        **out.errors,
    }
    return out


def curvature_quality(
    worker: Any,
    channel: Any,
    config: ProblemConfig,
    theta: torch.Tensor,
    point_key: str,
    curvatures: tuple[str, ...],
    reference: str,
    damping: float,
    k: int,
    dense: bool,
    generalized: bool = True,
) -> CurvatureAnalysis:
    """Generalized spectra of (C + λI)⁻¹H and quality against the reference at λ.

    Reuses the worker's operators of the point (their dense matrices included),
    so a new λ never rebuilds a matrix or re-decomposes a spectrum of C alone.
    ``generalized=False`` skips the generalized spectra (without dense matrices
    they are Lanczos runs with a CG solve per product: most of the cost).
    """
    point = _point(worker, config, theta, point_key)
    operators = {}
    for key in _keys(curvatures, reference):
        stop_if_asked(channel)
        operators[key] = point.operator(key)
    operators = {key: op for key, op in operators.items() if op is not None}
    out = CurvatureAnalysis(dense=dense)
    hessian, ref = operators.get("hessian"), operators.get(reference)
    for key in curvatures:
        operator = operators.get(key)
        if operator is None:
            continue
        stop_if_asked(channel)
        if hessian is not None and generalized:
            try:
                out.generalized[key] = generalized_spectrum(
                    point.matrix("hessian") if dense else hessian,
                    point.matrix(key) if dense else operator,
                    damping=damping,
                    k=None if dense else k,
                    which="both" if not dense else "largest",
                )
            except VIEW_ERRORS as error:
                out.errors[f"{key} (generalized)"] = str(error)
        if ref is not None:
            stop_if_asked(channel)
            try:
                out.qualities[key] = approximation_quality(
                    operator, ref, damping=damping
                )
            except VIEW_ERRORS as error:
                out.errors[f"{key} vs {reference}"] = str(error)
    return out


def two_parameter_figure(
    worker: Any,
    channel: Any,
    config: ProblemConfig,
    runs: dict[str, History],
    fields: tuple[str, ...],
    models: tuple[str, ...],
    model_center: tuple[float, float],
    damping: float,
    resolution: int,
) -> tuple[Any, dict[str, str]]:
    """Contours with the runs' paths, direction fields and quadratic models.

    The arrow fields are computed on their own coarse grid
    (:data:`~explorer.landscape.ARROW_RESOLUTION` points per axis, whatever the
    contours' ``resolution``); only the first of ``fields`` is shown at first, the
    gradient and the other fields are one click on the legend away.

    Returns:
        (figure, notes): notes say where a field or model is undefined and why.
    """
    problem = worker.problem(config)
    points = [finite_trajectory(run)[0] for run in runs.values()]
    box = scape.default_box(problem, torch.cat(points) if points else None)
    grid = scape.loss_grid(problem, box, resolution)
    notes: dict[str, str] = {}
    field_ = None
    stop_if_asked(channel)
    if fields:
        field_ = scape.direction_field(
            problem, fields, damping, box, resolution=scape.ARROW_RESOLUTION
        )
        for name, (count, reason) in getattr(field_, "failures", {}).items():
            notes[f"field {name}"] = f"undefined at {count} grid points: {reason}"
    quadratic = None
    stop_if_asked(channel)
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
        grid,
        plain_keys(runs) or None,
        field=field_,
        visible_fields=fields[:1],
        models=quadratic,
        animate=bool(runs),
    )
    return figure, notes


def plane_figures(
    worker: Any,
    channel: Any,
    config: ProblemConfig,
    theta: torch.Tensor,
    runs: dict[str, History],
    kind: str,
    resolution: int,
    seed: int,
    line_to: str | None = None,
) -> dict[str, Any]:
    """Planes and slices through parameter space for P > 2.

    Every plane (PCA, random, eigenvector) shows the runs' projected paths, on a
    grid that covers them and the plane's origin θ, with each path's distance
    from the plane. The 1-D line goes from θ₀ to the end of the run labelled
    ``line_to`` (default: the first run with a path).
    """
    problem = worker.problem(config)
    figures: dict[str, Any] = {}
    paths = {
        label: run
        for label, run in runs.items()
        if run.trajectory is not None and run.trajectory.shape[0] > 2
    }
    trajectories = [finite_trajectory(run)[0] for run in paths.values()]
    cover = None
    if kind == "pca" and paths:
        plane = scape.pca_plane(trajectories)
        name = "PCA plane of the paths"
    elif kind == "random":
        generator = torch.Generator().manual_seed(seed)
        plane = scape.random_plane(problem, theta, generator)
        name = "Random filter-normalized plane"
        cover = ((-1.0, 1.0), (-1.0, 1.0))  # the scale of θ's filters
    elif kind == "eigenvectors":
        plane = scape.eigenvector_plane(curvature("hessian", problem, theta))
        name = "Plane of the top two Hessian eigenvectors"
    else:
        plane = None
    stop_if_asked(channel)
    if plane is not None:
        grid = scape.plane_loss_grid(
            problem, plane, resolution=resolution, paths=trajectories, cover=cover
        )
        figures[name] = plane_figure(plane, grid, plain_keys(paths) or None)
    stop_if_asked(channel)
    if paths:
        label = line_to if line_to in paths else next(iter(paths))
        final = finite_trajectory(paths[label])[0][-1].to(problem.dtype)
        line = scape.interpolate(problem, problem.theta0, final)
        figures[f"From θ₀ to the end of {label}"] = interpolation_figure(
            line, names=("θ₀", f"{plain_text(label)} end")
        )
    return figures


def battery(worker: Any, channel: Any, key: str, settings: Any) -> Any:
    """The check battery for ``key``, its progress streamed to the page."""
    from explorer.check import run_battery

    del worker

    def progress(fraction: float, text: str) -> None:
        channel.progress(int(1000 * fraction), 1000, {"text": text})

    return run_battery([key], settings, progress)
