"""``matrix``: a user-supplied dense P × P matrix as a curvature operator."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from explorer.curvature.algebra import DelegatingOperator, DenseOperator
from explorer.curvature.tags import Tags
from explorer.options import Option
from explorer.problems.base import Batch, Problem


class MatrixOperator(DelegatingOperator):
    """A given dense matrix (``matrix=``, shape (P, P), finite) as a curvature.

    The matrix is used as given (symmetry is not enforced; the approximation check
    reports it); the option ``psd`` declares positive semi-definiteness.
    """

    key = "matrix"
    label = "User-supplied matrix"
    description = "A dense P × P matrix supplied by the user."
    options_schema = (
        Option("psd", False, "Declare the matrix positive semi-definite."),
    )

    @classmethod
    def tags_for(
        cls, problem: Problem | None = None, options: dict[str, Any] | None = None
    ) -> Tags:
        """What the user declares: PSD (and so symmetric) iff ``psd=True``."""
        psd = bool(cls.resolved(options)["psd"])
        return Tags(psd=psd, symmetric=psd)

    def __init__(
        self,
        problem: Problem,
        theta: Tensor,
        batch: Batch | None = None,
        generator: torch.Generator | None = None,
        *,
        matrix: Tensor | None = None,
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
        super().__init__(problem, theta, batch, generator, **options)

    def _setup(self) -> None:
        self.linear = DenseOperator(
            self._matrix, key=self.key, symmetrize=False, tags=self.tags
        )
