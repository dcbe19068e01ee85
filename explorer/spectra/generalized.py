r"""How well C preconditions A: the spectrum of :math:`(C + λI)^{-1} A`.

The eigenvalues θ of the pencil :math:`A x = θ (C + λI) x` are those of the
preconditioned matrix. With a perfect preconditioner (C = A, λ = 0) they all equal
one; their spread (the condition number of the preconditioned system) bounds how
fast a preconditioned method converges, and values far from one show directions
where C over- or under-estimates A. With A the Hessian this is the quality of C as a
Newton substitute; with A a reference matrix (the Fisher for K-FAC) it compares an
approximation with what it approximates.

"(C + λI)⁻¹" means exactly what ``C.solve(·, λ)`` applies, i.e. what an optimizer
preconditions with (for K-FAC with factored Tikhonov damping, the factored inverse).
Write :math:`S = (C + λI)^{-1}` for it (symmetric positive definite).

* Small P: :math:`S = L L^\top` (Cholesky of S applied to the identity) and the
  symmetric eigenproblem of :math:`L^\top A L`, which is similar to S A.
* Large P: Lanczos on :math:`A S`, which is self-adjoint in the S-inner product
  :math:`⟨x, y⟩_S = x^\top S y` and similar to S A. Each step costs one product of
  A and one solve with C + λI (closed forms for diagonal, block and K-FAC;
  conjugate gradients otherwise); an eigenvector x of S A is S y for the Ritz
  vector y of A S.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from explorer.curvature.base import DenseTooLargeError
from explorer.curvature.solvers import IndefiniteCurvatureError
from explorer.spectra.dense import DENSE_EIGEN_MAX_PARAMS, symmetric_eigh
from explorer.spectra.extreme import use_dense
from explorer.spectra.lanczos import thick_restart_lanczos
from explorer.spectra.operators import (
    SymmetricOperator,
    as_operator,
    operator_key,
)
from explorer.spectra.result import Eigenpairs, check_which, select_indices


def _check_pair(target: SymmetricOperator, preconditioner: SymmetricOperator) -> None:
    if target.size != preconditioner.size:
        raise ValueError(
            f"target has P = {target.size} but the preconditioner has "
            f"P = {preconditioner.size}"
        )


def _dense_generalized(
    target: SymmetricOperator,
    preconditioner: SymmetricOperator,
    damping: float,
    vectors: bool,
) -> tuple[Tensor, Tensor | None]:
    matrix = target.dense()
    eye = torch.eye(target.size, dtype=target.dtype, device=target.device)
    inverse = preconditioner.solve(eye, damping)  # S = (C + λI)⁻¹, (P, P)
    inverse = 0.5 * (inverse + inverse.T)
    factor, info = torch.linalg.cholesky_ex(inverse)
    if int(info) != 0:
        raise IndefiniteCurvatureError(
            operator_key(preconditioner),
            damping,
            float(torch.linalg.eigvalsh(inverse)[0]),
        )
    sym = factor.T @ matrix @ factor  # Lᵀ A L, similar to S A
    values, vecs = symmetric_eigh(sym, vectors)
    if vecs is not None:  # x = L y: S A x = L Lᵀ A L y = θ L y, and xᵀ S⁻¹ x = 1
        vecs = factor @ vecs
    return values, vecs


def damped_solver(op: SymmetricOperator, damping: float) -> Callable[[Tensor], Tensor]:
    """``v -> (C + λI)⁻¹ v`` exactly as ``op.solve(v, λ)``.

    Dense solves factorize C + λI once per λ (the operators cache the factor), so
    Lanczos over this map costs one triangular solve pair per step.
    """
    return lambda v: op.solve(v, damping)


def generalized_spectrum(
    target: SymmetricOperator | Tensor,
    preconditioner: SymmetricOperator | Tensor,
    damping: float = 0.0,
    k: int | None = None,
    which: str = "both",
    *,
    method: str = "auto",
    vectors: bool = False,
    generator: torch.Generator | None = None,
    tol: float | None = None,
    max_products: int | None = None,
) -> Eigenpairs:
    """Eigenvalues of (C + λI)⁻¹ A, i.e. of the pencil A x = θ (C + λI) x.

    Args:
        target: A, e.g. the Hessian (or a reference matrix such as the Fisher).
        preconditioner: C, e.g. K-FAC, the GGN or the empirical Fisher.
        damping: λ ≥ 0 added to C.
        k: How many eigenvalues (per end for ``which="both"``); None for all
            (dense only).
        which: ``"both"`` (default: the extremes that define the condition number),
            ``"largest"``, ``"smallest"`` or ``"magnitude"``.
        method: ``"auto"``, ``"dense"`` or ``"lanczos"``.
        vectors: Also return the eigenvectors x of (C + λI)⁻¹A, normalized so that
            xᵀ (C + λI) x = 1.
        generator: Lanczos' random start.
        tol: Lanczos' relative residual tolerance.
        max_products: Lanczos' budget in products of A.

    Returns:
        :class:`Eigenpairs` of the pencil, ascending. ``products`` counts products
        of A only (solves with C + λI are extra).

    Raises:
        IndefiniteCurvatureError: C + λI is not positive definite.

    Example:
        >>> import torch
        >>> a = torch.diag(torch.tensor([2.0, 8.0], dtype=torch.float64))
        >>> c = torch.diag(torch.tensor([1.0, 2.0], dtype=torch.float64))
        >>> [round(x, 12) for x in generalized_spectrum(a, c).eigenvalues.tolist()]
        [2.0, 4.0]
    """
    target, preconditioner = as_operator(target, "A"), as_operator(preconditioner, "C")
    _check_pair(target, preconditioner)
    damping = float(damping)
    if not damping >= 0:
        raise ValueError(f"damping = {damping!r} must be ≥ 0")
    which = check_which(which)
    before = target.products
    count = target.size if k is None else int(k)
    dense = k is None or use_dense(target, count, which, method)
    if dense:
        if target.size > DENSE_EIGEN_MAX_PARAMS:
            raise DenseTooLargeError(
                f"the dense generalized eigensolver handles at most "
                f"{DENSE_EIGEN_MAX_PARAMS:,} parameters (P = {target.size:,}); "
                "pass k for Lanczos"
            )
        values, vecs = _dense_generalized(target, preconditioner, damping, vectors)
        idx = select_indices(values, count, which) if k is not None else None
        if idx is not None:
            values = values[idx]
            vecs = None if vecs is None else vecs[:, idx.to(vecs.device)]
        return Eigenpairs(
            values,
            vecs,
            torch.zeros_like(values),
            True,
            "dense",
            target.products - before,
            target.size,
            "all" if k is None else which,
        )

    solve = damped_solver(preconditioner, damping)

    like = torch.empty(0, dtype=target.dtype, device=target.device)
    values, vecs, residuals, converged, _ = thick_restart_lanczos(
        target.matvec,
        target.size,
        like,
        k=count,
        which=which,
        tol=tol,
        max_steps=max_products,
        generator=generator,
        vectors=vectors,
        mass=solve,
        apply_to_mass=True,
        mass_vectors=True,
    )
    return Eigenpairs(
        values,
        vecs,
        residuals,
        converged,
        "lanczos",
        target.products - before,
        target.size,
        which,
    )
