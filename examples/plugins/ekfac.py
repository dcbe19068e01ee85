"""Eigenvalue-corrected K-FAC (George et al. 2018) as a Curvature Explorer plugin.

K-FAC approximates each layer's Fisher block by A ⊗ S. EKFAC keeps K-FAC's Kronecker
eigenbasis Q_S ⊗ Q_A but replaces the eigenvalues λ_S λ_Aᵀ by the exact second
moments of the per-example gradients in that basis,

    s_ij = (1/N) Σ_n Σ_k ((Q_Sᵀ δ_nk)_i (Q_Aᵀ ā_n)_j)²,

which is the diagonal of the true Fisher block in the eigenbasis. Among matrices
diagonal in that basis it is the closest to the Fisher block in Frobenius norm, so it
is never worse than K-FAC there.

Load it with ``python -m explorer check examples/plugins/ekfac.py`` or
``--plugin examples/plugins/ekfac.py``; it registers the curvature ``ekfac``.
"""

from __future__ import annotations

import torch

import explorer as ex
from explorer.curvature import MLP, Tags
from explorer.curvature.kfac import KFACOperator
from explorer.curvature.mlp import MLPForward, mlp_layers


@ex.register_curvature(
    "ekfac", label="EKFAC (eigenvalue-corrected K-FAC)", reference="fisher"
)
class EKFACOperator(ex.CurvatureOperator):
    """Per layer (Q_S ⊗ Q_A) diag(s) (Q_S ⊗ Q_A)ᵀ with exact Fisher second moments."""

    # declared, not guessed: PSD, zero across layers, and built on an MLP only
    declared = Tags(psd=True, block_diagonal=True)
    needs = (MLP,)
    description = (
        "K-FAC's eigenbasis with the Fisher's exact second moments as eigenvalues."
    )

    def _setup(self) -> None:
        kfac = KFACOperator(self.problem, self.theta, self.batch, self.generator)
        forward = MLPForward(mlp_layers(self.problem), self.theta, self.batch.inputs)
        factors = self.problem.loss.output_fisher_sqrt(forward.outputs)  # (N, C, K)
        deltas = forward.backprop(factors.permute(2, 0, 1))  # each (K, N, out)
        self.layers = kfac.layers
        self.bases, self.scales = [], []
        for index, layer in enumerate(self.layers):
            _, basis_a = torch.linalg.eigh(kfac.input_factors[index])
            _, basis_s = torch.linalg.eigh(kfac.output_factors[index])
            a = forward.inputs_to[index]
            if layer.bias is not None:
                a = torch.cat([a, torch.ones_like(a[:, :1])], 1)
            rotated_delta = (deltas[index] @ basis_s).pow(2).sum(0)  # (N, out)
            rotated_input = (a @ basis_a).pow(2)  # (N, in [+1])
            self.bases.append((basis_s, basis_a))
            self.scales.append(rotated_delta.T @ rotated_input / self.batch.size)

    def _per_layer(self, matrix: torch.Tensor, scale_fn) -> torch.Tensor:
        out = torch.zeros_like(matrix)
        rows = matrix.T  # (K, P)
        k = rows.shape[0]
        for layer, (basis_s, basis_a), scale in zip(
            self.layers, self.bases, self.scales, strict=True
        ):
            weight = rows[:, layer.weight].view(
                k, layer.out_features, layer.in_features
            )
            if layer.bias is not None:
                weight = torch.cat([weight, rows[:, layer.bias].unsqueeze(-1)], -1)
            rotated = basis_s.T @ weight @ basis_a
            result = basis_s @ (scale_fn(scale) * rotated) @ basis_a.T
            out.T[:, layer.weight] = result[..., : layer.in_features].reshape(k, -1)
            if layer.bias is not None:
                out.T[:, layer.bias] = result[..., -1]
        return out

    def _matmat(self, matrix: torch.Tensor) -> torch.Tensor:
        return self._per_layer(matrix, lambda scale: scale)

    def _solve(self, rhs: torch.Tensor, damping: float, **_: object) -> torch.Tensor:
        if min(float(s.min()) for s in self.scales) + damping <= 0:
            raise ex.IndefiniteCurvatureError(self.key, damping, 0.0)
        column = rhs.unsqueeze(1) if rhs.dim() == 1 else rhs
        out = self._per_layer(column, lambda scale: 1.0 / (scale + damping))
        return out.squeeze(1) if rhs.dim() == 1 else out
