r"""Exact eigen-decompositions of small curvature matrices, behind a size guard.

The full spectrum :math:`C = U \operatorname{diag}(λ) U^\top` costs O(P³) time and
P² memory, so it is refused above :data:`DENSE_EIGEN_MAX_PARAMS` parameters with a
:class:`~explorer.curvature.DenseTooLargeError` that points to Lanczos.
"""

from __future__ import annotations

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor

from explorer.curvature.base import DenseTooLargeError
from explorer.spectra.operators import SymmetricOperator, as_operator, operator_key
from explorer.spectra.result import Eigenpairs

#: The dense eigensolver refuses operators with more parameters than this.
DENSE_EIGEN_MAX_PARAMS = 6000


def symmetric_eigh(
    matrix: Tensor, vectors: bool = True
) -> tuple[Tensor, Tensor | None]:
    """``eigh`` of the symmetric part of ``matrix`` (P, P): (λ ascending, U or None).

    On the CPU LAPACK through NumPy (twice as fast as torch here, PERF_NOTES.md); on
    a GPU ``torch.linalg.eigh``. Eigenvalues come back as CPU float64, eigenvectors
    in the matrix's dtype and device.
    """
    sym = 0.5 * (matrix + matrix.T)
    if sym.device.type != "cpu":
        if vectors:
            values, vecs = torch.linalg.eigh(sym)
            return values.double().cpu(), vecs
        return torch.linalg.eigvalsh(sym).double().cpu(), None
    array = sym.detach().numpy()
    with threadpool_limits(limits=max(1, torch.get_num_threads()), user_api="blas"):
        if vectors:
            values, vecs = np.linalg.eigh(array)
            return torch.from_numpy(values).double(), torch.from_numpy(vecs).to(
                sym.dtype
            )
        values = np.linalg.eigvalsh(array)
    return torch.from_numpy(values).double(), None


def dense_eigenpairs(
    op: SymmetricOperator | Tensor,
    *,
    vectors: bool = True,
    max_params: int = DENSE_EIGEN_MAX_PARAMS,
) -> Eigenpairs:
    """All eigenvalues (ascending) and eigenvectors of a small operator.

    Args:
        op: A curvature operator (or anything with ``dense()``) or a (P, P) tensor.
        vectors: Also return the eigenvectors (P, P).
        max_params: Refuse operators larger than this.

    Returns:
        :class:`Eigenpairs` with ``method="dense"`` and ``which="all"``.

    Raises:
        DenseTooLargeError: P > ``max_params``.

    Example:
        >>> import torch
        >>> pairs = dense_eigenpairs(torch.tensor([[2.0, 1.0], [1.0, 2.0]]))
        >>> pairs.eigenvalues.tolist()
        [1.0, 3.0]
    """
    op = as_operator(op)
    if op.size > max_params:
        raise DenseTooLargeError(
            f"the dense eigensolver handles at most {max_params:,} parameters; "
            f"{operator_key(op)} has P = {op.size:,}. Use lanczos(op, k) for the "
            "extreme eigenvalues or spectral_density(op) for the whole spectrum"
        )
    before = op.products
    matrix = op.dense()
    values, vecs = symmetric_eigh(matrix, vectors)
    return Eigenpairs(
        eigenvalues=values,
        eigenvectors=vecs,
        residuals=torch.zeros_like(values),
        converged=True,
        method="dense",
        products=op.products - before,
        size=op.size,
        which="all",
    )


def eigenvalues(op: SymmetricOperator | Tensor) -> Tensor:
    """All eigenvalues (P,) ascending, CPU float64 (the dense solver, no vectors)."""
    return dense_eigenpairs(op, vectors=False).eigenvalues
