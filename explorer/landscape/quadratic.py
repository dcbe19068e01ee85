r"""Quadratic models of h at a point, and their level sets in 2-D.

At θ, curvature C gives the model

.. math:: M_C(δ) = h(θ) + g^\top δ + \tfrac12 δ^\top (C + λI) δ.

Its level sets are conics: ellipses when C + λI is positive definite (F, G and EF
are PSD), hyperbolas when it is indefinite (the Hessian at a saddle: the model is
unbounded below), and parabolas or pairs of lines when it is singular. The level
through θ itself (M = h(θ)) is the natural one to draw: every model's curve passes
through the current point, and its shape shows where that model thinks the minimum
is. :meth:`QuadraticModel.level_set` returns what exists, branch by branch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from explorer.curvature import CURVATURES
from explorer.landscape.grid import check_two_param
from explorer.problems.base import Batch, Problem

#: Curves of a level set with their parameters spread over this many points.
CURVE_POINTS = 200


@dataclass(frozen=True)
class QuadraticModel:
    """The quadratic model of one curvature at a point of a 2-parameter problem.

    Attributes:
        key: The curvature key.
        label: Its label.
        theta: The point θ (2,).
        value: h(θ).
        grad: g (2,).
        matrix: C + λI (2, 2), symmetrized.
        damping: λ.
        eigenvalues: (2,) ascending, of C + λI.
        eigenvectors: (2, 2) columns.
        kind: ``"elliptic"`` (positive definite: bounded below), ``"hyperbolic"``
            (indefinite: unbounded below, a saddle), ``"parabolic"`` (singular,
            one zero eigenvalue), ``"flat"`` (zero matrix) or ``"concave"``
            (negative definite: unbounded below).
        center: θ − (C + λI)⁻¹ g when C + λI is invertible (the model's minimum
            when elliptic, its saddle when hyperbolic), else None.
    """

    key: str
    label: str
    theta: Tensor
    value: float
    grad: Tensor
    matrix: Tensor
    damping: float
    eigenvalues: Tensor
    eigenvectors: Tensor
    kind: str
    center: Tensor | None

    @property
    def bounded(self) -> bool:
        """Whether the model has a minimum (positive definite)."""
        return self.kind == "elliptic"

    @property
    def minimum_value(self) -> float | None:
        """Min M (elliptic only): h − ½ gᵀ(C + λI)⁻¹g."""
        if self.center is None or not self.bounded:
            return None
        delta = self.center - self.theta
        return self.value + 0.5 * float(self.grad.dot(delta))

    def evaluate(self, points: Tensor) -> Tensor:
        """M at points (K, 2) -> (K,)."""
        delta = points.double() - self.theta
        quad = 0.5 * ((delta @ self.matrix) * delta).sum(1)
        return self.value + delta @ self.grad + quad

    def level_set(
        self, level: float | None = None, extent: float = 10.0, num: int = CURVE_POINTS
    ) -> list[Tensor]:
        """The curve(s) {θ' : M(θ' − θ) = level} as a list of (n, 2) point arrays.

        Args:
            level: The model value (default h(θ): the curve through θ).
            extent: Unbounded branches are drawn out to about this distance from θ.
            num: Points per branch.

        Returns:
            One array per branch (an ellipse is one closed branch, a hyperbola two,
            a degenerate conic one or two lines); empty when the level is not
            attained (e.g. below an ellipse's minimum).
        """
        c = (self.value if level is None else float(level)) - self.value
        lam, vecs = self.eigenvalues, self.eigenvectors
        b = vecs.T @ self.grad  # g in eigen-coordinates
        curves = _conic(lam, b, c, extent, num)
        return [self.theta + u @ vecs.T for u in curves]


def _zero(value: float, scale: float) -> bool:
    return abs(value) <= 1e-12 * max(scale, 1e-300)


def _conic(lam: Tensor, b: Tensor, c: float, extent: float, num: int) -> list[Tensor]:
    """Solutions u of Σ ½λ_i u_i² + b_i u_i = c, branch by branch (CPU float64)."""
    scale = float(lam.abs().max()) if lam.numel() else 0.0
    l1, l2 = float(lam[0]), float(lam[1])
    b1, b2 = float(b[0]), float(b[1])
    t = torch.linspace(-1.0, 1.0, num, dtype=torch.float64)
    zero1, zero2 = _zero(l1, scale), _zero(l2, scale)
    if not zero1 and not zero2:
        shift = torch.tensor([-b1 / l1, -b2 / l2], dtype=torch.float64)
        r = c + b1 * b1 / (2 * l1) + b2 * b2 / (2 * l2)
        reach = extent + float(shift.norm())
        if l1 * l2 > 0:  # ellipse (or nothing)
            if r / l1 <= 0:
                return [shift.unsqueeze(0)] if r == 0 else []
            angle = math.pi * (t + 1)
            a1, a2 = math.sqrt(2 * r / l1), math.sqrt(2 * r / l2)
            u = torch.stack([a1 * torch.cos(angle), a2 * torch.sin(angle)], 1)
            return [u + shift]
        # hyperbola: ½l1 w1² + ½l2 w2² = r with l1 < 0 < l2 (ascending order)
        if r == 0:
            slope = math.sqrt(-l1 / l2)
            w1 = reach * t
            return [
                torch.stack([w1, slope * w1], 1) + shift,
                torch.stack([w1, -slope * w1], 1) + shift,
            ]
        if r > 0:  # branches open along w2
            a2, a1 = math.sqrt(2 * r / l2), math.sqrt(2 * r / -l1)
            top = math.acosh(max(reach / a2, 1.0)) + 0.5
            s = top * t
            return [
                torch.stack([a1 * torch.sinh(s), sign * a2 * torch.cosh(s)], 1) + shift
                for sign in (1.0, -1.0)
            ]
        a1, a2 = math.sqrt(2 * r / l1), math.sqrt(2 * r / -l2)
        top = math.acosh(max(reach / a1, 1.0)) + 0.5
        s = top * t
        return [
            torch.stack([sign * a1 * torch.cosh(s), a2 * torch.sinh(s)], 1) + shift
            for sign in (1.0, -1.0)
        ]
    if zero1 and zero2:  # flat: the line bᵀu = c
        norm = math.hypot(b1, b2)
        if norm == 0:
            return []
        base = torch.tensor([b1, b2], dtype=torch.float64) * c / norm**2
        along = torch.tensor([-b2, b1], dtype=torch.float64) / norm
        return [base + (extent * t).unsqueeze(1) * along]
    # one zero eigenvalue: swap so that l1 ≠ 0 and l2 = 0
    swap = zero1
    if swap:
        l1, b1, b2 = l2, b2, b1
    if not _zero(b2, max(abs(b1), 1e-300) + abs(b2)):  # parabola u2(u1)
        u1 = -b1 / l1 + (extent + abs(b1 / l1)) * t
        u2 = (c - 0.5 * l1 * u1**2 - b1 * u1) / b2
        curves = [torch.stack([u1, u2], 1)]
    else:  # ½l1 u1² + b1 u1 = c: zero, one or two lines u1 = root
        disc = b1 * b1 + 2 * l1 * c
        if disc < 0:
            return []
        roots = {(-b1 + sign * math.sqrt(disc)) / l1 for sign in (1.0, -1.0)}
        curves = [
            torch.stack([torch.full_like(t, root), extent * t], 1) for root in roots
        ]
    return [curve.flip(1) for curve in curves] if swap else curves


def _kind(values: Tensor) -> str:
    scale = float(values.abs().max())
    if scale == 0:
        return "flat"
    zeros = [_zero(float(v), scale) for v in values]
    if any(zeros):
        return "parabolic"
    if bool((values > 0).all()):
        return "elliptic"
    if bool((values < 0).all()):
        return "concave"
    return "hyperbolic"


def quadratic_model(
    problem: Problem,
    theta: Tensor,
    curvature: str,
    damping: float = 0.0,
    batch: Batch | None = None,
    *,
    seed: int = 0,
) -> QuadraticModel:
    """The model M_C(δ) of curvature ``curvature`` at θ (2-parameter problems).

    Example:
        >>> import explorer as ex
        >>> p = ex.problem("rosenbrock")
        >>> model = quadratic_model(p, p.theta0, "hessian")
        >>> model.kind
        'elliptic'
    """
    check_two_param(problem)
    spec = CURVATURES[curvature]
    theta = problem.check_theta(theta.to(dtype=problem.dtype, device=problem.device))
    value, grad = problem.value_and_grad(theta, batch)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    op = spec.build(problem, theta, batch=batch, generator=generator)
    matrix = op.dense().double().cpu()
    matrix = 0.5 * (matrix + matrix.T) + float(damping) * torch.eye(
        2, dtype=torch.float64
    )
    values, vectors = torch.linalg.eigh(matrix)
    kind = _kind(values)
    grad = grad.double().cpu()
    theta64 = theta.double().cpu()
    center = None
    if kind not in ("parabolic", "flat"):
        center = theta64 - torch.linalg.solve(matrix, grad)
    return QuadraticModel(
        key=curvature,
        label=spec.label,
        theta=theta64,
        value=float(value),
        grad=grad,
        matrix=matrix,
        damping=float(damping),
        eigenvalues=values,
        eigenvectors=vectors,
        kind=kind,
        center=center,
    )


def quadratic_models(
    problem: Problem,
    theta: Tensor,
    curvatures: Sequence[str] = ("fisher", "ef", "hessian", "ggn"),
    damping: float = 0.0,
    batch: Batch | None = None,
) -> dict[str, QuadraticModel]:
    """:func:`quadratic_model` for several curvatures at the same point."""
    return {
        key: quadratic_model(problem, theta, key, damping, batch) for key in curvatures
    }
