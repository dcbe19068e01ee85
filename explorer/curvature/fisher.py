r"""The Fisher information matrix, exact and Monte Carlo.

.. math:: F = \frac1N \sum_n J_n^\top F_R(z_n) J_n, \quad
   F_R(z) = E_{y \sim R(y|z)}[\nabla_z L \nabla_z L^\top]

The expectation is over the *model's* predictive distribution, not the labels. For
matching likelihoods F_R equals the output Hessian, so F = GGN (claim C1). The MC
estimate replaces F_R by (1/k) Σ_s u_s u_sᵀ with u_s = ∇_z L(ŷ_s, z), ŷ_s ~ R(·|z):
unbiased, with an error shrinking like 1/√k.
"""

from __future__ import annotations

import torch
from torch import Tensor

from explorer.curvature.gram import OutputGramOperator
from explorer.curvature.tags import Tags
from explorer.options import Option


class FisherOperator(OutputGramOperator):
    """F = (1/N) Σ Jᵀ F_R(z) J with the closed-form output Fisher (exact expectation)."""

    key = "fisher"
    label = "Fisher (exact)"
    description = (
        "F = (1/N) Σ_n J_nᵀ F_R(z_n) J_n with the output Fisher in closed form: the "
        "exact expectation over the model's predictive distribution."
    )
    declared = Tags(psd=True, exact=True)

    def _prepare_outputs(self) -> None:
        self._product = self.problem.loss.output_fisher_product(self.outputs)

    def output_product(self, u: Tensor) -> Tensor:
        return self._product(u)

    def output_factors(self) -> tuple[Tensor, Tensor | None]:
        return self.problem.loss.output_fisher_sqrt(self.outputs), None


class MCFisherOperator(OutputGramOperator):
    """F̂ = (1/N) Σ_n (1/k) Σ_s J_nᵀ u_ns u_nsᵀ J_n with targets sampled from the model."""

    key = "fisher_mc"
    label = "Fisher (Monte Carlo)"
    description = (
        "The Fisher with the expectation replaced by k targets sampled from the "
        "model per example: unbiased, error shrinking like 1/√k."
    )
    declared = Tags(psd=True, sampled=True)
    reference = "fisher"
    options_schema = (
        Option(
            "samples",
            1,
            "Targets sampled from the model per example (k).",
            low=1,
            high=10_000,
        ),
    )

    def _prepare_outputs(self) -> None:
        loss, k = self.problem.loss, self.options["samples"]
        grads = [
            loss.output_grad(self.outputs, loss.sample(self.outputs, self.generator))
            for _ in range(k)
        ]
        # (N, C, k), scaled so that M_n = U_n U_nᵀ.
        self.sampled_grads = torch.stack(grads, -1) / k**0.5

    def output_product(self, u: Tensor) -> Tensor:
        coefficients = torch.einsum("nck,...nc->...nk", self.sampled_grads, u)
        return torch.einsum("nck,...nk->...nc", self.sampled_grads, coefficients)

    def output_factors(self) -> tuple[Tensor, Tensor | None]:
        return self.sampled_grads, None
