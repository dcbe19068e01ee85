"""``matrix``: a user-supplied dense P × P matrix as a curvature operator."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from explorer.curvature.base import CurvatureOperator
from explorer.problems.base import Batch, Problem


class MatrixOperator(CurvatureOperator):
    """Wraps a given dense matrix (``matrix=``, shape (P, P), finite).

    Symmetry is not enforced here (the approximation check reports it); ``psd=``
    declares positive semi-definiteness.
    """

    key = "matrix"
    label = "User-supplied matrix"
    description = "A dense P × P matrix supplied by the user."
    exact = False

    def __init__(
        self,
        problem: Problem,
        theta: Tensor,
        batch: Batch | None = None,
        generator: torch.Generator | None = None,
        *,
        matrix: Tensor | None = None,
        psd: bool = False,
        **options: Any,
    ) -> None:
        if not isinstance(matrix, Tensor):
            raise ValueError("curvature 'matrix' needs matrix=<a (P, P) torch.Tensor>")
        size = problem.num_params
        if matrix.shape != (size, size):
            raise ValueError(
                f"matrix has shape {tuple(matrix.shape)}; expected ({size}, {size})"
            )
        if not torch.isfinite(matrix).all():
            raise ValueError("matrix contains non-finite values (NaN or inf)")
        self._matrix = matrix.to(dtype=theta.dtype, device=theta.device)
        self._declared_psd = bool(psd)
        super().__init__(problem, theta, batch, generator, **options)

    @property
    def psd(self) -> bool:  # type: ignore[override]
        return self._declared_psd

    def _dense(self) -> Tensor:
        return self._matrix
