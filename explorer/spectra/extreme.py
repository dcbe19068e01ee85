"""One entry point for eigenvalues: dense when small, Lanczos when large; blocks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from explorer.curvature.algebra import restrict
from explorer.spectra.dense import DENSE_EIGEN_MAX_PARAMS, dense_eigenpairs
from explorer.spectra.lanczos import lanczos
from explorer.spectra.operators import SymmetricOperator, as_operator
from explorer.spectra.result import Eigenpairs, check_which, select_indices

#: ``method="auto"`` uses the dense solver up to this many parameters.
AUTO_DENSE_MAX_PARAMS = 1024

METHODS = ("auto", "dense", "lanczos")


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method = {method!r} must be one of {', '.join(METHODS)}")
    return method


def has_cached_dense(op: SymmetricOperator) -> bool:
    """Whether a dense copy of ``op`` (or of the operator it restricts) exists:
    ``op.has_dense`` of a :class:`~explorer.curvature.base.LinearOperator`.
    """
    return bool(getattr(op, "has_dense", False))


def use_dense(op: SymmetricOperator, k: int, which: str, method: str) -> bool:
    """Whether ``method`` resolves to the dense solver for this request."""
    _check_method(method)
    if method != "auto":
        return method == "dense"
    wanted = 2 * k if which == "both" else k
    cached = has_cached_dense(op)
    return (
        op.size <= AUTO_DENSE_MAX_PARAMS
        or (cached and op.size <= DENSE_EIGEN_MAX_PARAMS)
        or 3 * wanted >= op.size
    )


def eigenpairs(
    op: SymmetricOperator | Tensor,
    k: int = 10,
    which: str = "largest",
    *,
    method: str = "auto",
    vectors: bool = False,
    generator: torch.Generator | None = None,
    tol: float | None = None,
    max_products: int | None = None,
) -> Eigenpairs:
    """The k extreme eigenpairs, by the dense solver or by Lanczos.

    Args:
        op: A symmetric operator or a (P, P) tensor.
        k: How many (per end for ``which="both"``).
        which: ``"largest"``, ``"smallest"``, ``"both"`` or ``"magnitude"``.
        method: ``"dense"``, ``"lanczos"`` or ``"auto"`` (dense up to P = 1,024, when
            the dense matrix is already cached, or when k is a large share of P).
        vectors: Also return eigenvectors.
        generator: Lanczos' random start.
        tol: Lanczos' relative residual tolerance.
        max_products: Lanczos' product budget.

    Returns:
        :class:`Eigenpairs`, ascending.
    """
    op = as_operator(op)
    which = check_which(which)
    if not k >= 1:
        raise ValueError(f"k = {k} must be at least 1")
    if use_dense(op, k, which, method):
        full = dense_eigenpairs(op, vectors=vectors)
        idx = select_indices(full.eigenvalues, k, which)
        vecs = None
        if full.eigenvectors is not None:
            vecs = full.eigenvectors[:, idx.to(full.eigenvectors.device)]
        return Eigenpairs(
            eigenvalues=full.eigenvalues[idx],
            eigenvectors=vecs,
            residuals=full.residuals[idx],
            converged=True,
            method="dense",
            products=full.products,
            size=full.size,
            which=which,
        )
    return lanczos(
        op,
        k,
        which,
        vectors=vectors,
        generator=generator,
        tol=tol,
        max_products=max_products,
    )


def block_spectra(
    op: SymmetricOperator,
    blocks: Sequence[tuple[str, slice]] | None = None,
    k: int | None = 10,
    which: str = "largest",
    *,
    method: str = "auto",
    generator: torch.Generator | None = None,
) -> dict[str, Eigenpairs]:
    """Eigenvalues of each diagonal block C[s, s] (one per layer by default).

    Args:
        op: A curvature operator (its ``problem.blocks()`` give the default blocks)
            or any symmetric operator with explicit ``blocks``.
        blocks: ``((name, slice), ...)``; default ``op.problem.blocks()``.
        k: Eigenvalues per block (per end for ``which="both"``); None for all of
            them (dense; refused for blocks above the dense limit).
        which: As in :func:`eigenpairs`.
        method: As in :func:`eigenpairs`, per block. With ``"auto"``, a dense matrix
            of the whole operator that is already cached is sliced, not recomputed.
        generator: Lanczos' random starts.

    Returns:
        ``{block name: Eigenpairs}`` in block order.
    """
    if blocks is None:
        problem = getattr(op, "problem", None)
        if problem is None:
            raise ValueError("pass blocks=((name, slice), ...) for this operator")
        blocks = problem.blocks()
    out: dict[str, Eigenpairs] = {}
    for name, span in blocks:
        block = restrict(op, span, name)
        if k is None:
            out[name] = dense_eigenpairs(block, vectors=False)
            continue
        out[name] = eigenpairs(
            block, k, which, method=method, generator=generator, vectors=False
        )
    return out


def condition_number(values: Tensor, damping: float = 0.0) -> float:
    """(λ_max + λ)/(λ_min + λ) from eigenvalues; inf when λ_min + λ ≤ 0."""
    low, high = float(values.min()) + damping, float(values.max()) + damping
    if low <= 0:
        return float("inf")
    return high / low
