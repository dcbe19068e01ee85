r"""GGN-type matrices :math:`C = \frac1N \sum_n J_n^\top M_n J_n`.

GGN, Fisher, MC Fisher and the empirical Fisher differ only in the C × C output
matrix :math:`M_n`; this base class owns the Jacobian products, the 1/N and the
exact diagonal (from a factorization :math:`M_n = R_n \operatorname{diag}(s_n) R_n^\top`).
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import Tensor

from explorer.curvature.base import CurvatureOperator
from explorer.curvature.linearization import as_rows, linearize
from explorer.curvature.mlp import MLPForward
from explorer.curvature.mlp_dense import dense_mlp_curvature


class OutputGramOperator(CurvatureOperator):
    """Base for C = (1/N) Σ_n J_nᵀ M_n J_n; subclasses define M_n."""

    def _setup(self) -> None:
        self.linearization = linearize(self.problem, self.theta, self.batch.inputs)
        self.outputs = self.linearization.outputs
        self.targets = self.batch.targets
        self._prepare_outputs()

    def _prepare_outputs(self) -> None:
        """Per-point precomputation on the outputs (samples, gradients)."""

    @abstractmethod
    def output_product(self, u: Tensor) -> Tensor:
        """M_n u_n for u (K, N, C)."""

    @abstractmethod
    def output_factors(self) -> tuple[Tensor, Tensor | None]:
        """(R (N, C, K), signs (N, K) or None) with M_n = R_n diag(s_n) R_nᵀ."""

    def _matmat(self, matrix: Tensor) -> Tensor:
        n = self.batch.size
        tangents = self.linearization.jvp(as_rows(matrix))
        return self.linearization.vjp(self.output_product(tangents) / n).T

    def output_matrices(self) -> Tensor:
        """M_n (N, C, C), from ``output_product`` on the identity."""
        n, c = self.outputs.shape
        eye = torch.eye(c, dtype=self.dtype, device=self.device)
        columns = self.output_product(
            eye.unsqueeze(1).expand(c, n, c)
        )  # [k, n, :] = M_n e_k
        return columns.permute(1, 2, 0)

    def _dense(self) -> Tensor:
        if isinstance(self.linearization, MLPForward):
            self.products += self.size  # counted like P products, for cost accounting
            scaled = self.output_matrices() / self.batch.size
            return dense_mlp_curvature(self.linearization, scaled, None)
        try:
            jacobian = self.linearization.jacobian()  # (N, C, P)
        except ValueError:  # above the Jacobian's memory limit: P products
            return super()._dense()
        # C = Σ_n J_nᵀ (M_n / N) J_n as one (P, N·C) @ (N·C, P) product: C
        # pull-backs per example instead of P push-forwards and P pull-backs
        self.products += self.size
        scaled = self.output_matrices() / self.batch.size
        weighted = torch.einsum("ncd,ndp->ncp", scaled, jacobian)
        flat = jacobian.reshape(-1, self.size)
        return flat.T @ weighted.reshape(-1, self.size)

    def _diag(self) -> Tensor:
        factors, signs = self.output_factors()
        return (
            self.linearization.squared_jacobian_diagonal(factors, signs)
            / self.batch.size
        )
