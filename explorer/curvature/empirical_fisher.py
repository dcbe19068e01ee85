r"""The empirical Fisher: the uncentred covariance of per-example gradients.

.. math:: \tilde F = \frac1N \sum_n \nabla_θ L_n \nabla_θ L_n^\top
   = \frac1N \sum_n J_n^\top r_n r_n^\top J_n, \quad r_n = \nabla_z L(y_n, z_n)

It uses the *training labels*, so it is not the Fisher; Kunstner, Balles & Hennig
(2019) show how its preconditioned directions can be badly distorted.
"""

from __future__ import annotations

from torch import Tensor

from explorer.curvature.gram import OutputGramOperator
from explorer.curvature.tags import Tags


class EmpiricalFisherOperator(OutputGramOperator):
    """EF = (1/N) Σ g_n g_nᵀ with per-example gradients g_n from the labels."""

    key = "ef"
    label = "Empirical Fisher"
    description = (
        "EF = (1/N) Σ_n ∇L_n ∇L_nᵀ with the training labels: not the Fisher, and "
        "often a poor preconditioner (Kunstner et al. 2019)."
    )
    declared = Tags(psd=True, exact=True)

    def _prepare_outputs(self) -> None:
        self.residuals = self.problem.loss.output_grad(self.outputs, self.targets)

    def output_product(self, u: Tensor) -> Tensor:
        return self.residuals * (self.residuals * u).sum(-1, keepdim=True)

    def output_factors(self) -> tuple[Tensor, Tensor | None]:
        return self.residuals.unsqueeze(-1), None
