r"""The generalized Gauss-Newton matrix (Schraudolph 2002).

.. math:: G = \frac1N \sum_n J_n^\top \nabla^2_z L(y_n, z_n) J_n

PSD whenever L is convex in z. The Hessian is G plus the residual term
:math:`\frac1N \sum_n \sum_c [\nabla_z L_n]_c \nabla^2_θ z_{n,c}` (THEORY.md §2).
For linear least squares G equals the Hessian exactly.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from explorer.curvature.gram import OutputGramOperator
from explorer.curvature.tags import Tags
from explorer.problems.base import Problem
from explorer.problems.likelihoods import symmetric_sqrt_factor


class GGNOperator(OutputGramOperator):
    """G = (1/N) Σ Jᵀ ∇²_z L J, with the labels' output Hessian."""

    key = "ggn"
    label = "Generalized Gauss-Newton (GGN)"
    description = (
        "G = (1/N) Σ_n J_nᵀ ∇²_z L(y_n, z_n) J_n: "
        "the Hessian without the residual term."
    )
    declared = Tags(exact=True)

    @classmethod
    def tags_for(
        cls, problem: Problem | None = None, options: dict[str, Any] | None = None
    ) -> Tags:
        """PSD exactly when the loss is convex in the outputs (its LossSpec says)."""
        convex = problem is not None and problem.loss.convex
        return cls.declared.replace(psd=convex)

    def _prepare_outputs(self) -> None:
        loss = self.problem.loss
        self._product = loss.output_hessian_product(self.outputs, self.targets)

    def output_product(self, u: Tensor) -> Tensor:
        return self._product(u)

    def output_factors(self) -> tuple[Tensor, Tensor | None]:
        hessians = self.problem.loss.output_hessian(self.outputs, self.targets)
        factors, signs = symmetric_sqrt_factor(hessians)
        return factors, (None if self.problem.loss.convex else signs)
