r"""Fields of preconditioned directions :math:`-(C + λI)^{-1} \nabla h` on 2-D grids.

Kunstner, Balles & Hennig (2019, figure 1) draw these arrows for the gradient, the
Fisher and the empirical Fisher on linear regression: the natural gradient points at
the minimum from everywhere, the empirical-Fisher field is distorted. Any curvature
key (built-in or registered) can be drawn; points where C + λI is indefinite, or the
step is otherwise undefined, are NaN and counted in ``failures``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from explorer.curvature import CURVATURES, IndefiniteCurvatureError
from explorer.landscape.grid import Box, check_two_param, default_box
from explorer.problems.base import Batch, Problem

#: The key used for the plain negative gradient in :class:`DirectionField`.
GRADIENT = "gradient"

#: Points per axis of a field meant to be drawn as arrows on top of contours and
#: paths: a dozen or so read well (the paper tour's C3 figure draws 11); the cost
#: is one curvature solve per point.
ARROW_RESOLUTION = 13


@dataclass(frozen=True)
class DirectionField:
    """Directions at the points of a grid.

    Attributes:
        points: (M, 2) grid points (row-major over ``ys`` then ``xs``).
        directions: key -> (M, 2) steps −(C + λI)⁻¹g (``"gradient"``: −g); NaN
            where undefined.
        damping: λ.
        failures: key -> how many points had no direction, and why (first reason).
        xs: (nx,) grid abscissae.
        ys: (ny,) grid ordinates.
    """

    points: Tensor
    directions: dict[str, Tensor]
    damping: float
    xs: Tensor
    ys: Tensor
    failures: dict[str, tuple[int, str]] = field(default_factory=dict)

    def unit(self, key: str) -> Tensor:
        """Directions of ``key`` normalized to unit length (M, 2)."""
        d = self.directions[key]
        return d / d.norm(dim=1, keepdim=True).clamp_min(1e-300)

    def angle_to(self, key: str, target: Tensor) -> Tensor:
        """Angle in degrees (M,) between each direction and the way to ``target``."""
        d = self.directions[key]
        way = target.double().cpu().unsqueeze(0) - self.points
        cos = (d * way).sum(1) / (d.norm(dim=1) * way.norm(dim=1)).clamp_min(1e-300)
        return torch.rad2deg(torch.arccos(cos.clamp(-1, 1)))


def direction_field(
    problem: Problem,
    curvatures: Sequence[str] = ("fisher", "ef"),
    damping: float = 0.0,
    box: Box | None = None,
    resolution: int = ARROW_RESOLUTION,
    batch: Batch | None = None,
    *,
    include_gradient: bool = True,
    seed: int = 0,
) -> DirectionField:
    """−(C + λI)⁻¹ g at every point of a resolution × resolution grid.

    Args:
        problem: A 2-parameter problem.
        curvatures: Curvature keys (any registered, e.g. ``"fisher"``, ``"ef"``,
            ``"hessian"``, ``"kfac"``).
        damping: λ ≥ 0.
        box: The window (default the problem's ``view_box``).
        resolution: Points per axis (≥ 2).
        batch: The examples (default: the training set).
        include_gradient: Add the plain −g under the key ``"gradient"``.
        seed: Seeds each point's generator (sampled curvatures are reproducible).

    Returns:
        :class:`DirectionField` (CPU float64).
    """
    check_two_param(problem)
    for key in curvatures:
        CURVATURES[key]  # unknown keys fail before any work
    damping = float(damping)
    if not damping >= 0:
        raise ValueError(f"damping = {damping!r} must be ≥ 0")
    if resolution < 2:
        raise ValueError(f"resolution = {resolution} must be at least 2")
    (x0, x1), (y0, y1) = box or default_box(problem)
    xs = torch.linspace(x0, x1, resolution, dtype=torch.float64)
    ys = torch.linspace(y0, y1, resolution, dtype=torch.float64)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    keys = ([GRADIENT] if include_gradient else []) + list(curvatures)
    out = {key: torch.full_like(points, float("nan")) for key in keys}
    failures: dict[str, list] = {key: [0, ""] for key in keys}
    refused = {key: CURVATURES[key].incompatibility(problem) for key in curvatures}
    for index, point in enumerate(points):
        theta = point.to(dtype=problem.dtype, device=problem.device)
        grad = problem.grad(theta, batch)
        if not torch.isfinite(grad).all():
            for key in keys:
                _fail(failures, key, "the gradient is not finite here")
            continue
        if include_gradient:
            out[GRADIENT][index] = -grad.double().cpu()
        for key in curvatures:
            if refused[key] is not None:  # cannot be built on this problem at all
                _fail(failures, key, refused[key])
                continue
            generator = torch.Generator(device="cpu").manual_seed(seed)
            try:
                op = CURVATURES[key].build(
                    problem, theta, batch=batch, generator=generator
                )
                step = -op.solve(grad, damping)
            except IndefiniteCurvatureError as error:
                _fail(failures, key, str(error))
                continue
            except (ValueError, RuntimeError) as error:  # singular, NaN, ...
                _fail(failures, key, str(error))
                continue
            if torch.isfinite(step).all():
                out[key][index] = step.double().cpu()
            else:
                _fail(failures, key, "the step is not finite here")
    return DirectionField(
        points=points,
        directions=out,
        damping=damping,
        xs=xs,
        ys=ys,
        failures={k: (v[0], v[1]) for k, v in failures.items() if v[0]},
    )


def _fail(failures: dict[str, list], key: str, reason: str) -> None:
    failures[key][0] += 1
    if not failures[key][1]:
        failures[key][1] = reason
