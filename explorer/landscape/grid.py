"""Exact loss contours of 2-parameter problems on a grid."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from explorer.landscape.evaluate import objective_at
from explorer.problems.base import Batch, Problem

Box = tuple[tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class Grid2D:
    """Values on a rectangular grid.

    Attributes:
        xs: (nx,) first coordinate.
        ys: (ny,) second coordinate.
        values: (ny, nx) with ``values[i, j]`` at ``(xs[j], ys[i])`` (Plotly's
            ``z`` convention), CPU float64.
        x_label: Axis title of the first coordinate.
        y_label: Axis title of the second coordinate.
        quantity: What the values are (``"loss"``...).
    """

    xs: Tensor
    ys: Tensor
    values: Tensor
    x_label: str = "θ₁"
    y_label: str = "θ₂"
    quantity: str = "loss"

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.values.shape)  # type: ignore[return-value]

    def points(self) -> Tensor:
        """All grid points (ny·nx, 2) in row-major order of ``values``."""
        yy, xx = torch.meshgrid(self.ys, self.xs, indexing="ij")
        return torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)


def check_two_param(problem: Problem) -> None:
    if problem.num_params != 2:
        raise ValueError(
            f"problem {problem.key!r} has P = {problem.num_params:,} parameters; exact "
            "contours need P = 2 (use a trajectory plane for larger models)"
        )


def default_box(
    problem: Problem, points: Tensor | None = None, max_growth: float = 1.0
) -> Box:
    """The problem's ``view_box`` grown to include ``points`` (M, 2) with a margin.

    The box grows by at most ``max_growth`` times its own width and height on each
    side, so a diverging run (θ → 10⁹⁰) does not squash the picture; its path
    simply leaves the plot.
    """
    if problem.view_box is not None:
        (x0, x1), (y0, y1) = problem.view_box
    else:
        center = problem.theta0.detach().double().cpu()
        x0, x1 = float(center[0]) - 2, float(center[0]) + 2
        y0, y1 = float(center[1]) - 2, float(center[1]) + 2
    if points is not None and points.numel():
        finite = points[torch.isfinite(points).all(1)].double().cpu()
        if finite.numel():
            lo, hi = finite.min(0).values, finite.max(0).values
            pad = 0.05 * (hi - lo).clamp_min(1e-3)
            width, height = (x1 - x0) * max_growth, (y1 - y0) * max_growth
            x0 = max(min(x0, float(lo[0] - pad[0])), x0 - width)
            x1 = min(max(x1, float(hi[0] + pad[0])), x1 + width)
            y0 = max(min(y0, float(lo[1] - pad[1])), y0 - height)
            y1 = min(max(y1, float(hi[1] + pad[1])), y1 + height)
    return ((float(x0), float(x1)), (float(y0), float(y1)))


def loss_grid(
    problem: Problem,
    box: Box | None = None,
    resolution: int | tuple[int, int] = 200,
    batch: Batch | None = None,
    *,
    chunk: int | None = None,
) -> Grid2D:
    """h(θ) on a resolution × resolution grid of a 2-parameter problem.

    One batched call: every grid point goes through ``torch.func.vmap`` of
    ``problem.objective`` (:func:`~explorer.landscape.evaluate.objective_at`), so
    the values equal the objective exactly.

    Args:
        problem: A problem with P = 2.
        box: ((x_lo, x_hi), (y_lo, y_hi)); default the problem's ``view_box``.
        resolution: Points per axis (or (nx, ny)), at least 2.
        batch: The examples (default: the training set).
        chunk: Points per vmapped chunk (default: memory-bounded).

    Returns:
        :class:`Grid2D` with the problem's coordinate names as axis labels.

    Example:
        >>> import explorer as ex
        >>> p = ex.problem("rosenbrock")
        >>> grid = loss_grid(p, ((0.0, 2.0), (0.0, 2.0)), resolution=3)
        >>> float(grid.values[1, 1])  # θ = (1, 1), the minimum
        0.0
    """
    check_two_param(problem)
    nx, ny = (resolution, resolution) if isinstance(resolution, int) else resolution
    if nx < 2 or ny < 2:
        raise ValueError(f"resolution = {resolution!r} must be at least 2 per axis")
    (x0, x1), (y0, y1) = box or default_box(problem)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"box = {box!r} must have lo < hi on both axes")
    xs = torch.linspace(x0, x1, nx, dtype=torch.float64)
    ys = torch.linspace(y0, y1, ny, dtype=torch.float64)
    shell = Grid2D(xs, ys, torch.empty(0))
    values = objective_at(problem, shell.points(), batch, chunk=chunk)
    names = problem.coordinate_names or ("θ₁", "θ₂")
    return Grid2D(
        xs,
        ys,
        values.double().cpu().reshape(ny, nx),
        x_label=names[0],
        y_label=names[1],
    )
