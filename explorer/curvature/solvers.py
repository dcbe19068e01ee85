r"""Linear solvers for damped curvature systems :math:`(C + λI)x = b`.

Dense systems use a Cholesky factorization; large ones use conjugate gradients on
matrix-vector products. Both refuse an indefinite system with
:class:`IndefiniteCurvatureError` naming the remedy instead of returning NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


class IndefiniteCurvatureError(ArithmeticError):
    """``C + λI`` is not positive definite, so the damped step is undefined.

    Attributes:
        key: The curvature's key.
        damping: The λ that was used.
        min_eigenvalue: The smallest eigenvalue of ``C + λI`` (or the negative
            curvature found by CG), where known.
    """

    def __init__(self, key: str, damping: float, min_eigenvalue: float | None) -> None:
        self.key = key
        self.damping = float(damping)
        self.min_eigenvalue = None if min_eigenvalue is None else float(min_eigenvalue)
        found = (
            f"its smallest eigenvalue is {self.min_eigenvalue:.3g}"
            if self.min_eigenvalue is not None
            else "conjugate gradients met negative curvature"
        )
        #: What was found, without a remedy (callers that know the damping
        #: schedule or the solver's options compose their own).
        self.finding = (
            f"{key} + λI with λ = {damping:.3g} is not positive definite ({found})."
        )
        super().__init__(f"{self.finding} Remedy: {self.remedy}")

    @property
    def remedy(self) -> str:
        if self.min_eigenvalue is not None:
            needed = self.damping - self.min_eigenvalue
            more = f"raise the damping above {needed:.3g}"
        else:
            more = "raise the damping"
        return (
            f"{more}, or use a PSD curvature such as 'ggn' or 'fisher' "
            "(the Gauss-Newton and Fisher matrices are PSD for convex losses)."
        )


class NonFiniteCurvatureError(ArithmeticError):
    """The curvature holds inf or NaN entries: the parameters or the network's
    outputs overflowed, so the run has diverged (it is not a question of damping).
    """

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(
            f"the {key} curvature holds non-finite entries (the parameters or the "
            "outputs overflowed)"
        )


def require_finite(matrix: Tensor, key: str) -> None:
    """Raises :class:`NonFiniteCurvatureError` unless every entry is finite."""
    if not bool(torch.isfinite(matrix).all()):
        raise NonFiniteCurvatureError(key)


def damped_cholesky(matrix: Tensor, damping: float, key: str = "C") -> Tensor:
    """The lower Cholesky factor of ``matrix + damping·I``.

    Raises:
        IndefiniteCurvatureError: The damped matrix is not positive definite; the
            error carries its smallest eigenvalue and the remedy.
        NonFiniteCurvatureError: ``matrix`` holds inf or NaN.
    """
    require_finite(matrix, key)
    damped = matrix.clone()
    damped.diagonal().add_(damping)
    factor, info = torch.linalg.cholesky_ex(damped)
    if int(info) != 0:
        min_eig = torch.linalg.eigvalsh(damped)[0]
        raise IndefiniteCurvatureError(key, damping, float(min_eig))
    return factor


def solve_with_factor(factor: Tensor, rhs: Tensor) -> Tensor:
    """``(L Lᵀ)⁻¹ rhs`` for ``rhs`` (P,) or (P, K)."""
    column = rhs.unsqueeze(-1) if rhs.dim() == 1 else rhs
    solution = torch.cholesky_solve(column, factor)
    return solution.squeeze(-1) if rhs.dim() == 1 else solution


def cholesky_solve(
    matrix: Tensor, rhs: Tensor, damping: float, key: str = "C"
) -> Tensor:
    """Solves ``(matrix + damping·I) x = rhs`` by Cholesky; ``rhs`` is (P,) or (P, K)."""
    return solve_with_factor(damped_cholesky(matrix, damping, key), rhs)


@dataclass(frozen=True)
class CGResult:
    """Outcome of :func:`conjugate_gradient`.

    Attributes:
        solution: The iterate x (P,).
        iterations: Matrix-vector products used.
        residual_norm: ‖b − A x‖ at the end.
        converged: Whether the relative tolerance was met.
        negative_curvature: Whether a direction with pᵀAp ≤ 0 stopped the run.
    """

    solution: Tensor
    iterations: int
    residual_norm: float
    converged: bool
    negative_curvature: bool


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor],
    rhs: Tensor,
    *,
    x0: Tensor | None = None,
    rtol: float = 1e-10,
    maxiter: int | None = None,
    stop_at_negative_curvature: bool = True,
) -> CGResult:
    """Conjugate gradients for the symmetric system ``A x = rhs``.

    Args:
        matvec: ``v -> A v`` for (P,) vectors.
        rhs: The right-hand side b (P,).
        x0: Warm start (Martens 2010 warm-starts from the previous step).
        rtol: Stop when ‖r‖ ≤ rtol · ‖b‖.
        maxiter: At most this many products (default 10·P, capped at 10,000).
        stop_at_negative_curvature: Return the current iterate when pᵀAp ≤ 0
            (truncated Newton); otherwise keep going.

    Returns:
        A :class:`CGResult`.
    """
    size = rhs.numel()
    maxiter = min(10 * size, 10_000) if maxiter is None else int(maxiter)
    x = torch.zeros_like(rhs) if x0 is None else x0.clone()
    residual = rhs - matvec(x) if x0 is not None else rhs.clone()
    iterations = 1 if x0 is not None else 0
    direction = residual.clone()
    rr = residual.dot(residual)
    target = rtol * rhs.norm()
    negative = False
    while iterations < maxiter and rr.sqrt() > target:
        product = matvec(direction)
        iterations += 1
        curvature = direction.dot(product)
        if curvature <= 0:
            negative = True
            if stop_at_negative_curvature:
                break
        step = rr / curvature
        x = x + step * direction
        residual = residual - step * product
        rr_next = residual.dot(residual)
        direction = residual + (rr_next / rr) * direction
        rr = rr_next
    norm = float(rr.sqrt())
    return CGResult(x, iterations, norm, norm <= float(target), negative)
