r"""EKFAC: eigenvalue-corrected K-FAC (George et al. 2018, "Fast Approximate Natural
Gradient Descent in a Kronecker-factored Eigenbasis").

K-FAC approximates a layer's Fisher block C_l by kron(S, A) (row-major order of the
(out, in + 1) matrix V̄ = [V_W, v_b], :mod:`explorer.curvature.kfac`). With the
eigendecompositions S = Q_S Λ_S Q_Sᵀ and A = Q_A Λ_A Q_Aᵀ its eigenbasis is
Q = Q_S ⊗ Q_A and its eigenvalues λ_S,i λ_A,j. EKFAC keeps the basis and replaces
the eigenvalues by the second moments of the per-example gradients in it:

.. math:: C^{\mathrm{EKFAC}}_l = Q \operatorname{diag}(\mathrm{vec}\,E) Q^\top,
   \quad E_{ij} = \frac1N \sum_{n} \sum_k \big(Q_S^\top G_{nk} Q_A\big)_{ij}^2,

as a matrix V̄ ↦ Q_S (E ⊙ (Q_Sᵀ V̄ Q_A)) Q_Aᵀ. The G_nk are the (out, in + 1)
"per-example gradients" of the K output-factor columns (``output_factor`` as in
K-FAC: ``"exact"`` the output Fisher's square root, ``"mc"`` sampled targets,
``"empirical"`` the labels). Since Qᵀ vec(G) vec(G)ᵀ Q has diagonal vec(Qᵀ G Q)², E
is exactly the diagonal of Qᵀ C_l Q whenever C_l = (1/N) Σ_{n,k} vec G_nk vec G_nkᵀ:
EKFAC is the orthogonal (Frobenius) projection of C_l onto the matrices diagonal in
K-FAC's eigenbasis. K-FAC is one of those matrices, so per block
‖C^EKFAC − C_l‖_F ≤ ‖C^KFAC − C_l‖_F, with equality only where K-FAC's eigenvalues
are already C_l's diagonal in its basis (a single linear layer with a Gaussian
output: both are exact).

**What the per-example gradient is under weight sharing.** A layer applied at R
positions of example n (sequence positions, output locations of a convolution;
inputs ā_nr, back-propagated factors δ_nrk; :mod:`explorer.curvature.kfac_modules`)
has the gradient G_nk = Σ_r δ_nrk ā_nrᵀ of example n's loss, and the Fisher block
is (1/N) Σ_{n,k} vec G_nk vec G_nkᵀ exactly (one loss term per example, the
problems' (N, C) outputs). ``kfac_approx`` chooses only the eigenbasis (expand's or
reduce's A and S). ``correction`` chooses the gradients E is built from:

* ``"example"`` (default; curvlinops' ``EKFACLinearOperator`` and George et al.):
  G_nk = Σ_r δ_nrk ā_nrᵀ. Then E is the exact block's diagonal in the eigenbasis
  under both ``expand`` and ``reduce`` (with R = 1, an MLP, they coincide), and the
  Frobenius inequality above holds against the exact block.
* ``"position"``: each position counts as an example of its own, as expand treats
  positions in A and S: G_nrk = δ_nrk ā_nrᵀ and
  E_ij = (1/N) Σ_{n,r,k} (Q_Sᵀ δ_nrk)_i² (Q_Aᵀ ā_nr)_j². This is the diagonal in the
  eigenbasis of the *expanded* block (1/N) Σ_{n,r,k} vec(δ_nrk ā_nrᵀ) vec(·)ᵀ, which
  drops the cross-position terms r ≠ r' of the exact block. That is the exact
  block in Eschenhagen et al.'s expand setting (every position its own loss term,
  positions not mixed after the layer), and an approximation otherwise: against
  the exact block it need not beat K-FAC. It costs O(N R (out + in)) per layer
  instead of the per-example rotation's O(N (R (out² + in²) + out·in)).

The reduce eigenbasis with the ``"example"`` correction is the setting in which
EKFAC is the exact block's diagonal for every model (tests/curvature/test_ekfac.py).

``separate_weight_and_bias=True`` uses, like K-FAC, blocks on V_W (basis
Q_S ⊗ Q_{A_WW}, gradients δ aᵀ) and on v_b (basis Q_S, gradients δ); parameters of
other modules are uncovered: zero rows and columns, ``coverage()`` says ``none``,
and ``solve(b, λ)`` returns b/λ there.

The damped solve is exact and closed form: (C + λI)⁻¹ is diagonal in the same
basis, V̄ ↦ Q_S ((Q_Sᵀ V̄ Q_A) ⊘ (E + λ)) Q_Aᵀ. EKFAC is block-diagonal but not a
Kronecker product (E is not of rank one), so it declares ``kronecker=False``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from explorer.curvature.coverage import coverage_from_mask
from explorer.curvature.kfac import (
    KFAC_APPROX_OPTION,
    MC_SAMPLES_OPTION,
    SEPARATE_WEIGHT_AND_BIAS_OPTION,
    LayerKroneckerOperator,
)
from explorer.curvature.kfac_modules import LayerStatistics
from explorer.curvature.solvers import IndefiniteCurvatureError, require_finite
from explorer.curvature.tags import Tags
from explorer.options import Option
from explorer.problems.base import Problem

#: Per-example rotated gradients are formed for at most this many values at once.
_CHUNK_VALUES = 2**23

#: The gradients E is built from (module docstring).
CORRECTIONS = ("example", "position")


class EKFACOperator(LayerKroneckerOperator):
    """K-FAC's eigenbasis with the second moments of the per-example gradients as
    eigenvalues, per ``nn.Linear`` / ``nn.Conv2d`` block (other parameters
    uncovered).

    Attributes:
        layers, input_factors, output_factors: K-FAC's (the eigenbasis comes from
            them).
        bases: Per block (Q_S (out, out), Q_A (n, n)) with n = in + 1, in or 1 for
            a joined, weight or bias block.
        eigenvalues: Per block E (out, n) ≥ 0.
    """

    key = "ekfac"
    label = "EKFAC"
    description = (
        "K-FAC's Kronecker eigenbasis Q_S ⊗ Q_A per nn.Linear / nn.Conv2d layer with "
        "the eigenvalues replaced by the second moments of the per-example "
        "gradients in that basis: the exact Fisher block's diagonal in it (George "
        "et al. 2018); block-diagonal, not Kronecker; other parameters uncovered."
    )
    declared = Tags(psd=True, block_diagonal=True, kronecker=False, exact_solve=True)
    options_schema = (
        Option(
            "output_factor",
            "exact",
            "The Fisher the eigenbasis and the eigenvalues come from: 'exact' (the "
            "output Fisher's square root), 'mc' (targets sampled from the model) or "
            "'empirical' (the labels: the empirical Fisher's).",
            choices=("exact", "mc", "empirical"),
        ),
        MC_SAMPLES_OPTION,
        KFAC_APPROX_OPTION,
        SEPARATE_WEIGHT_AND_BIAS_OPTION,
        Option(
            "correction",
            "example",
            "The gradients the eigenvalues are second moments of, for layers with "
            "weight sharing: 'example' (each example's gradient, summed over "
            "positions: the exact block's diagonal in the eigenbasis; curvlinops) or "
            "'position' (each position as its own example, as expand treats them: "
            "drops cross-position terms). The same for plain MLPs.",
            choices=CORRECTIONS,
        ),
    )

    @classmethod
    def tags_for(
        cls, problem: Problem | None = None, options: dict[str, Any] | None = None
    ) -> Tags:
        """Sampled with ``output_factor="mc"``."""
        resolved = cls.resolved(options)
        return cls.declared.replace(sampled=resolved["output_factor"] == "mc")

    # ------------------------------------------------------------ setup
    def _finish(self, statistics: list[LayerStatistics]) -> None:
        """Eigenbases of the blocks' factors, and E from the per-example gradients."""
        self.bases: list[tuple[Tensor, Tensor]] = []
        self.eigenvalues: list[Tensor] = []
        for index, block in enumerate(self._blocks):
            s, a = self.block_factors(index)
            require_finite(s, self.key)
            require_finite(a, self.key)
            basis_s, basis_a = torch.linalg.eigh(s)[1], torch.linalg.eigh(a)[1]
            stats = statistics[block.layer]
            layer = self.layers[block.layer]
            inputs = stats.inputs  # (N, R, in)
            if block.part == "layer" and layer.bias is not None:
                inputs = torch.cat([inputs, torch.ones_like(inputs[..., :1])], -1)
            elif block.part == "bias":
                inputs = torch.ones_like(inputs[..., :1])
            self.bases.append((basis_s, basis_a))
            self.eigenvalues.append(
                self._correction(stats.grads @ basis_s, inputs @ basis_a)
            )

    def _correction(self, grads: Tensor, inputs: Tensor) -> Tensor:
        """E (out, n) from rotated gradients Q_Sᵀ δ (K, N, R, out) and rotated inputs
        Q_Aᵀ ā (N, R, n), per ``correction`` (module docstring).
        """
        n_examples = inputs.shape[0]
        if self.options["correction"] == "position" or inputs.shape[1] == 1:
            # Σ_{n,r} (Σ_k g̃²)_i ã²_j: no per-example matrices needed
            squared = grads.pow(2).sum(0).flatten(0, 1)  # (N·R, out)
            return squared.T @ inputs.pow(2).flatten(0, 1) / n_examples
        k, _, _, out = grads.shape
        per_example = k * out * inputs.shape[-1]
        step = max(1, _CHUNK_VALUES // max(1, per_example))
        total = grads.new_zeros(out, inputs.shape[-1])
        for start in range(0, n_examples, step):
            g = grads[:, start : start + step]  # (K, n, R, out)
            a = inputs[start : start + step]  # (n, R, in)
            # the rotated per-example gradient Q_Sᵀ G_nk Q_A = Σ_r g̃_nrk ã_nrᵀ
            rotated = torch.einsum("knri,nrj->knij", g, a)
            total += rotated.pow(2).sum((0, 1))
        return total / n_examples

    # ------------------------------------------------------------ structure
    def coverage(self) -> dict[str, str]:
        """``block`` for parameters inside a layer's block, ``none`` for the others
        (their blocks in ``block_spans`` are zero blocks).
        """
        kept = torch.zeros(self.size, dtype=torch.bool)
        for block in self._blocks:
            kept[block.span] = True
        return coverage_from_mask(self.problem, kept, "block")

    # ------------------------------------------------------------ operator
    def _in_basis(self, index: int, v_bar: Tensor, scale: Tensor) -> Tensor:
        """Q_S (scale ⊙ (Q_Sᵀ V̄ Q_A)) Q_Aᵀ for the ``index``-th block."""
        basis_s, basis_a = self.bases[index]
        rotated = basis_s.T @ v_bar @ basis_a
        return basis_s @ (scale * rotated) @ basis_a.T

    def _matmat(self, matrix: Tensor) -> Tensor:
        return self._apply(
            matrix,
            lambda index, v_bar: self._in_basis(index, v_bar, self.eigenvalues[index]),
        )

    def _diag(self) -> Tensor:
        ones = torch.ones(self.size, 1, dtype=self.dtype, device=self.device)

        def diagonal(index: int, v_bar: Tensor) -> Tensor:
            # C[(i, j), (i, j)] = Σ_{p,q} Q_S[i, p]² E[p, q] Q_A[j, q]²
            basis_s, basis_a = self.bases[index]
            values = basis_s.pow(2) @ self.eigenvalues[index] @ basis_a.pow(2).T
            return values.expand_as(v_bar)

        return self._apply(ones, diagonal)[:, 0]

    def _solve(self, rhs: Tensor, damping: float, **_: object) -> Tensor:
        if self._uncovered is not None and damping <= 0:
            # zero rows and columns: C + λI is singular there
            raise IndefiniteCurvatureError(self.key, damping, 0.0)
        smallest = min(float(values.min()) for values in self.eigenvalues) + damping
        if smallest <= 0:
            raise IndefiniteCurvatureError(self.key, damping, smallest)
        column = rhs.unsqueeze(1) if rhs.dim() == 1 else rhs
        out = self._apply(
            column,
            lambda index, v_bar: self._in_basis(
                index, v_bar, 1.0 / (self.eigenvalues[index] + damping)
            ),
        )
        if self._uncovered is not None:
            out[self._uncovered] = column[self._uncovered] / damping
        return out.squeeze(1) if rhs.dim() == 1 else out
