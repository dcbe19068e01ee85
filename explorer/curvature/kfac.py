r"""K-FAC: Kronecker-factored approximate curvature (Martens & Grosse 2015).

For a linear layer s = W̄ ā with ā = [a; 1], the Fisher block is approximated by

.. math:: F_l \approx A_l \otimes S_l, \quad A_l = \frac1N \sum_n ā_n ā_n^\top, \quad
   S_l = \frac1N \sum_n \sum_k δ_{nk} δ_{nk}^\top

where δ_nk = ∂s/∂z_nᵀ r_nk back-propagates an output factor r: the columns of
F_R(z)^{1/2} (``output_factor="exact"``, often called KFLR), gradients of targets
sampled from the model (``"mc"``) or of the labels (``"empirical"``). Layers are
independent (block-diagonal). In row-major order of the (out, in + 1) matrix
V̄ = [V_W, v_b] the block acts as V̄ ↦ S V̄ A, i.e. the matrix kron(S, A).

It is exact for a single linear layer with a Gaussian output (claim C7).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from explorer.curvature.base import CurvatureOperator
from explorer.curvature.mlp import MLPForward, mlp_layers
from explorer.curvature.solvers import IndefiniteCurvatureError, require_finite
from explorer.curvature.tags import MLP, KroneckerBlock, Tags
from explorer.options import Option
from explorer.problems.base import LinearLayer, Problem


class KFACOperator(CurvatureOperator):
    """Block-diagonal Kronecker-factored Fisher for MLPs."""

    key = "kfac"
    label = "K-FAC"
    description = (
        "Per linear layer A ⊗ S with A = E[ā āᵀ] (layer inputs) and S = E[δ δᵀ] "
        "(back-propagated output factors); block-diagonal across layers."
    )
    declared = Tags(psd=True, block_diagonal=True, kronecker=True, exact_solve=False)
    needs = (MLP,)
    reference = "fisher"
    options_schema = (
        Option(
            "output_factor",
            "exact",
            "How S is formed: 'exact' (the output Fisher's square root, KFLR), 'mc' "
            "(targets sampled from the model) or 'empirical' (the labels).",
            choices=("exact", "mc", "empirical"),
        ),
        Option(
            "mc_samples",
            1,
            "Sampled targets per example for output_factor='mc'.",
            low=1,
            high=1000,
        ),
        Option(
            "damping_mode",
            "factored",
            "How solve(b, λ) damps: 'factored' Tikhonov (A + π√λ I)⁻¹ ⊗ (S + √λ/π I)⁻¹ "
            "(Martens & Grosse 2015) or 'exact' (A ⊗ S + λI)⁻¹ via eigendecompositions.",
            choices=("factored", "exact"),
        ),
    )

    @classmethod
    def tags_for(
        cls, problem: Problem | None = None, options: dict[str, Any] | None = None
    ) -> Tags:
        """Sampled with ``output_factor="mc"``; the damped solve is (C + λI)⁻¹
        only with ``damping_mode="exact"`` (factored Tikhonov damping otherwise).
        """
        resolved = cls.resolved(options)
        return cls.declared.replace(
            sampled=resolved["output_factor"] == "mc",
            exact_solve=resolved["damping_mode"] == "exact",
        )

    def _setup(self) -> None:
        layers = mlp_layers(self.problem)
        if layers is None:  # refused by the MLP requirement before _setup
            raise ValueError(type(self).incompatibility(self.problem))
        inputs, _ = self.batch
        forward = MLPForward(layers, self.theta, inputs)
        factors = self._output_factors(forward.outputs)  # (N, C, K)
        deltas = forward.backprop(factors.permute(2, 0, 1))
        n = self.batch.size
        self.layers: tuple[LinearLayer, ...] = tuple(layer.linear for layer in layers)
        self.input_factors: list[Tensor] = []
        self.output_factors: list[Tensor] = []
        for layer, a, delta in zip(self.layers, forward.inputs_to, deltas, strict=True):
            if layer.bias is not None:
                a = torch.cat([a, torch.ones_like(a[:, :1])], 1)
            self.input_factors.append(a.T @ a / n)
            flat = delta.reshape(-1, delta.shape[-1])
            self.output_factors.append(flat.T @ flat / n)

    def _output_factors(self, outputs: Tensor) -> Tensor:
        loss, mode = self.problem.loss, self.options["output_factor"]
        if mode == "exact":
            return loss.output_fisher_sqrt(outputs)
        if mode == "empirical":
            return loss.output_grad(outputs, self.batch.targets).unsqueeze(-1)
        k = self.options["mc_samples"]
        grads = [
            loss.output_grad(outputs, loss.sample(outputs, self.generator))
            for _ in range(k)
        ]
        return torch.stack(grads, -1) / k**0.5

    # ------------------------------------------------------------ structure
    @property
    def block_spans(self) -> tuple[slice, ...]:
        """One block per linear layer (weight and bias)."""
        return tuple(layer.span for layer in self.layers)

    def kronecker_factors(self) -> tuple[KroneckerBlock, ...]:
        """Per layer: C[V̄, V̄] = S ⊗ A in the row-major order of V̄ = [V_W, v_b]."""
        out = []
        for layer, a, s in zip(
            self.layers, self.input_factors, self.output_factors, strict=True
        ):
            weight = torch.arange(layer.weight.start, layer.weight.stop)
            grid = weight.view(layer.out_features, layer.in_features)
            if layer.bias is not None:
                bias = torch.arange(layer.bias.start, layer.bias.stop)
                grid = torch.cat([grid, bias.unsqueeze(1)], 1)
            out.append(KroneckerBlock(grid.reshape(-1), s, a))
        return tuple(out)

    def with_factors(
        self, input_factors: Sequence[Tensor], output_factors: Sequence[Tensor]
    ) -> KFACOperator:
        """A copy with other factors A_l and S_l (a moving average of them), with
        every cached product of this one dropped.
        """
        out = copy.copy(self)
        out.input_factors = list(input_factors)
        out.output_factors = list(output_factors)
        out._dense_cache = None
        out._factor_cache = None
        return out

    # ------------------------------------------------------------ layout
    def _layer_matrix(self, vectors: Tensor, layer: LinearLayer) -> Tensor:
        """(K, P) -> V̄ (K, out, in [+1])."""
        k = vectors.shape[0]
        weight = vectors[:, layer.weight].view(k, layer.out_features, layer.in_features)
        if layer.bias is None:
            return weight
        return torch.cat([weight, vectors[:, layer.bias].unsqueeze(-1)], -1)

    def _apply(self, matrix: Tensor, transform) -> Tensor:
        rows = matrix.T
        out = torch.zeros_like(rows)
        for index, layer in enumerate(self.layers):
            result = transform(index, self._layer_matrix(rows, layer))
            out[:, layer.weight] = result[..., : layer.in_features].reshape(
                rows.shape[0], -1
            )
            if layer.bias is not None:
                out[:, layer.bias] = result[..., -1]
        return out.T

    # ---------------------------------------------------------- operator
    def _matmat(self, matrix: Tensor) -> Tensor:
        def product(index: int, v_bar: Tensor) -> Tensor:
            return self.output_factors[index] @ v_bar @ self.input_factors[index]

        return self._apply(matrix, product)

    def _diag(self) -> Tensor:
        ones = torch.ones(self.size, 1, dtype=self.dtype, device=self.device)

        def diagonal(index: int, v_bar: Tensor) -> Tensor:
            s_diag = self.output_factors[index].diagonal()
            a_diag = self.input_factors[index].diagonal()
            return (s_diag[:, None] * a_diag[None, :]).expand_as(v_bar)

        return self._apply(ones, diagonal)[:, 0]

    def _solve(self, rhs: Tensor, damping: float, **_: object) -> Tensor:
        column = rhs.unsqueeze(1) if rhs.dim() == 1 else rhs
        inverse = (
            self._exact_inverse
            if self.options["damping_mode"] == "exact"
            else (self._factored_inverse)
        )
        out = self._apply(column, lambda index, v_bar: inverse(index, v_bar, damping))
        return out.squeeze(1) if rhs.dim() == 1 else out

    def factored_damping(self, index: int, damping: float) -> tuple[float, float]:
        """(π√λ, √λ/π) with π² = (tr A / dim A) / (tr S / dim S)."""
        a, s = self.input_factors[index], self.output_factors[index]
        a_mean = float(a.diagonal().mean())
        s_mean = float(s.diagonal().mean())
        pi = (a_mean / s_mean) ** 0.5 if a_mean > 0 and s_mean > 0 else 1.0
        root = damping**0.5
        return pi * root, root / pi

    def _factored_inverse(self, index: int, v_bar: Tensor, damping: float) -> Tensor:
        a, s = self.input_factors[index], self.output_factors[index]
        a_damp, s_damp = self.factored_damping(index, damping)
        a_chol = _cholesky(a, a_damp, self.key, damping)
        s_chol = _cholesky(s, s_damp, self.key, damping)
        left = torch.cholesky_solve(v_bar, s_chol)  # S_λ⁻¹ V̄
        return torch.cholesky_solve(left.transpose(-1, -2), a_chol).transpose(-1, -2)

    def _exact_inverse(self, index: int, v_bar: Tensor, damping: float) -> Tensor:
        a, s = self.input_factors[index], self.output_factors[index]
        require_finite(a, self.key)
        require_finite(s, self.key)
        a_vals, a_vecs = torch.linalg.eigh(a)
        s_vals, s_vecs = torch.linalg.eigh(s)
        # Gram matrices: eigenvalues below zero are round-off.
        a_vals, s_vals = a_vals.clamp(min=0.0), s_vals.clamp(min=0.0)
        spectrum = s_vals[:, None] * a_vals[None, :] + damping
        if float(spectrum.min()) <= 0:
            raise IndefiniteCurvatureError(self.key, damping, float(spectrum.min()))
        rotated = s_vecs.T @ v_bar @ a_vecs
        return s_vecs @ (rotated / spectrum) @ a_vecs.T


def _cholesky(matrix: Tensor, shift: float, key: str, damping: float) -> Tensor:
    """The Cholesky factor of one damped Kronecker factor ``matrix + shift·I``.

    The factors are Gram matrices (PSD by construction), so with λ > 0 every
    shifted factor is positive definite in exact arithmetic. A shift below the
    round-off of the factor's entries (a nearly rank-deficient factor from a
    one-example batch, with a lopsided π) can still fail numerically; it is then
    raised to that round-off level, which changes no digit that was meaningful.
    """
    require_finite(matrix, key)
    eye = torch.eye(matrix.shape[0], dtype=matrix.dtype, device=matrix.device)
    factor, info = torch.linalg.cholesky_ex(matrix + shift * eye)
    if int(info) != 0 and shift > 0:
        scale = float(matrix.diagonal().abs().max())
        noise = matrix.shape[0] * torch.finfo(matrix.dtype).eps * scale
        factor, info = torch.linalg.cholesky_ex(matrix + max(shift, 10 * noise) * eye)
    if int(info) != 0:
        smallest = float(torch.linalg.eigvalsh(matrix)[0]) + shift
        raise IndefiniteCurvatureError(key, damping, smallest)
    return factor
