r"""K-FAC: Kronecker-factored approximate curvature (Martens & Grosse 2015), for
convolutions (KFC, Grosse & Martens 2016) and for linear layers with weight sharing
(K-FAC-expand and K-FAC-reduce, Eschenhagen et al. 2023).

For a linear layer s = W̄ ā with ā = [a; 1], the Fisher block is approximated by

.. math:: F_l \approx A_l \otimes S_l, \quad A_l = \frac1N \sum_n ā_n ā_n^\top, \quad
   S_l = \frac1N \sum_n \sum_k δ_{nk} δ_{nk}^\top

where δ_nk = ∂s/∂z_nᵀ r_nk back-propagates an output factor r: the columns of
F_R(z)^{1/2} (``output_factor="exact"``, often called KFLR; curvlinops'
``fisher_type="type-2"``), gradients of targets sampled from the model (``"mc"``,
each of the ``mc_samples`` columns scaled by 1/√mc_samples) or of the labels
(``"empirical"``), or no backward pass at all: ``"identity"`` sets S = I (FOOF,
below). Layers are independent (block-diagonal). In row-major order of
the (out, in + 1) matrix V̄ = [V_W, v_b] the block acts as V̄ ↦ S V̄ A, i.e. the
matrix kron(S, A).

Two paths compute the factors, with the same 1/N convention:

* a plain MLP (:func:`~explorer.curvature.mlp.mlp_layers`): the hand-written
  :class:`~explorer.curvature.mlp.MLPForward` pass. Every layer sees one (N, D)
  input, so there is no shared dimension and expand = reduce;
* any other model: :mod:`explorer.curvature.kfac_modules`, for every ``nn.Linear``
  (inputs (N, ..., D_in), the middle dimensions shared) and ``nn.Conv2d`` (groups = 1;
  patches by ``unfold``, the output locations shared). With R shared positions,
  ``kfac_approx="expand"`` uses A = (1/(NR)) Σ_{n,r} ā āᵀ and
  S = (1/N) Σ_{n,r,k} δ δᵀ; ``"reduce"`` uses A = (1/N) Σ_n â â ᵀ with
  â_n = [(1/R) Σ_r a_nr; 1] and S = (1/N) Σ_{n,k} (Σ_r δ)(Σ_r δ)ᵀ (curvlinops'
  conventions; the derivation is in that module).

``separate_weight_and_bias=True`` (curvlinops' default; here False keeps the joined
block) splits each layer into a weight block kron(S, A_WW) on V_W (out, in) and a
bias block kron(S, A_bb) = S on v_b (A_bb = 1), with the weight–bias interactions
zero: the joined matrix with A's bias row and column cleared off its diagonal.

Parameters of other modules (LayerNorm, Embedding, grouped convolutions, bare
tensors) have zero rows and columns: their modules' blocks in ``block_spans`` are
zero blocks and :meth:`kronecker_factors` lists only covered blocks, so
:meth:`~explorer.curvature.base.CurvatureOperator.coverage` reports them ``"none"``.
There ``solve(b, λ)`` returns b/λ in both damping modes: C + λI is λI on
those coordinates, and factored damping, which splits √λ between the two factors
of a block, has no block to split it in. With λ = 0 and uncovered coordinates the
system is singular and the solve raises.

**FOOF** (``output_factor="identity"``; Benzing 2022, "Gradient Descent on Neurons
and its Link to Approximate Second-Order Optimization") is forward-only K-FAC: S = I,
so the block is kron(I, A) and the damped step per layer is
ΔV̄ = −α G (A + λI)⁻¹ with ``damping_mode="exact"`` (G the layer's (out, in + 1)
gradient). kron(I, A) is exactly the Gauss-Newton matrix of a squared error on the
layer's pre-activations, (1/2N) Σ_n ‖W̄ ā_n − t_n‖²: the step moves the weights so
that the pre-activations follow their own gradient step in the least-squares sense
("gradient descent on neurons"). It ignores the back-propagated curvature, so its
scale is not the Fisher's by design: tr C = out · tr A, against tr S · tr A for
K-FAC; the learning rate absorbs the difference.

It is exact for a single linear layer with a Gaussian output (claim C7), and for
deep linear networks with weight sharing in the expand and reduce settings of
Eschenhagen et al. (tests/curvature/test_kfac_modules.py).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from explorer.curvature.base import CurvatureOperator
from explorer.curvature.kfac_modules import (
    KFAC_APPROXIMATIONS,
    LayerStatistics,
    input_factor,
    module_statistics,
    output_factor,
)
from explorer.curvature.mlp import MLPForward, mlp_layers
from explorer.curvature.solvers import IndefiniteCurvatureError, require_finite
from explorer.curvature.tags import KFAC_LAYERS, KroneckerBlock, Tags
from explorer.options import Option
from explorer.problems.base import LinearLayer, Problem


@dataclass(frozen=True)
class _Block:
    """One Kronecker block: part ``"layer"`` (weight and bias jointly, V̄ = [V_W, v_b]),
    ``"weight"`` (V_W) or ``"bias"`` (v_b as an (out, 1) matrix) of layer ``layer``.
    """

    layer: int
    part: str
    span: slice


class LayerKroneckerOperator(CurvatureOperator):
    """What K-FAC and EKFAC share: the covered layers, their factors A_l and S_l,
    and the layout of their blocks in θ (one per layer, or per weight and per
    bias), with parameters of other modules uncovered (zero rows and columns).

    Subclasses declare an ``output_factor`` option (``"exact"``, ``"mc"``,
    ``"empirical"`` and, for K-FAC, ``"identity"``), ``mc_samples``,
    ``kfac_approx`` and ``separate_weight_and_bias``.

    Attributes:
        layers: The covered layers, in θ order (for a convolution ``in_features``
            is C_in·k_h·k_w).
        input_factors: A per layer, joined: ((in [+ 1])², bias row and column last).
        output_factors: S per layer ((out)²).
    """

    abstract = True
    needs = (KFAC_LAYERS,)
    reference = "fisher"

    def _setup(self) -> None:
        self.layers, statistics = self._statistics()
        approx, n = self.options["kfac_approx"], self.batch.size
        self.input_factors: list[Tensor] = [
            input_factor(stats.inputs, layer.bias is not None, approx)
            for layer, stats in zip(self.layers, statistics, strict=True)
        ]
        self.output_factors: list[Tensor] = [
            torch.eye(layer.out_features, dtype=self.dtype, device=self.device)
            if stats.grads is None
            else output_factor(stats.grads, approx, n)
            for layer, stats in zip(self.layers, statistics, strict=True)
        ]
        self._blocks = self._layout()
        covered = torch.zeros(self.size, dtype=torch.bool, device=self.device)
        for block in self._blocks:
            covered[block.span] = True
        #: Coordinates outside every Kronecker block (zero rows and columns), or None.
        self._uncovered: Tensor | None = None if bool(covered.all()) else ~covered
        spans = [block.span for block in self._blocks]
        if self._uncovered is not None:
            for _, span in self.problem.blocks():
                spans.extend(_runs(self._uncovered, span))
        self._spans = tuple(sorted(spans, key=lambda span: span.start))
        self._finish(statistics)

    def _finish(self, statistics: list[LayerStatistics]) -> None:
        """Hook after the factors and the layout exist; ``statistics`` are the
        layers' per-example inputs and output gradients (EKFAC corrects with them).
        """

    def _statistics(self) -> tuple[tuple[LinearLayer, ...], list[LayerStatistics]]:
        """The covered layers and, per layer, inputs a (N, R, D_in) and output
        gradients δ (K, N, R, D_out) (None with ``output_factor="identity"``: no
        backward pass). A plain MLP has R = 1 (the fast path).
        """
        inputs, _ = self.batch
        forward_only = self.options["output_factor"] == "identity"
        layers = mlp_layers(self.problem)
        if layers is None:
            found, statistics = module_statistics(
                self.problem,
                self.theta,
                inputs,
                None if forward_only else self._output_factors,
            )
            return tuple(item.layer for item in found), statistics
        forward = MLPForward(layers, self.theta, inputs)
        if forward_only:
            deltas: list[Tensor | None] = [None] * len(layers)
        else:
            factors = self._output_factors(forward.outputs)  # (N, C, K)
            deltas = list(forward.backprop(factors.permute(2, 0, 1)))
        statistics = [
            LayerStatistics(a.unsqueeze(1), None if d is None else d.unsqueeze(2))
            for a, d in zip(forward.inputs_to, deltas, strict=True)
        ]
        return tuple(layer.linear for layer in layers), statistics

    def _output_factors(self, outputs: Tensor) -> Tensor:
        """The output factor r (N, C, K) at ``outputs`` (N, C), per ``output_factor``."""
        return self.problem.loss.output_factors(
            outputs,
            self.options["output_factor"],
            self.batch.targets,
            self.options["mc_samples"],
            self.generator,
        )

    def _layout(self) -> tuple[_Block, ...]:
        """The Kronecker blocks in θ order: one per layer, or with
        ``separate_weight_and_bias`` one for each weight and each bias.
        """
        blocks = []
        for index, layer in enumerate(self.layers):
            if self.options["separate_weight_and_bias"] and layer.bias is not None:
                blocks.append(_Block(index, "weight", layer.weight))
                blocks.append(_Block(index, "bias", layer.bias))
            else:
                blocks.append(_Block(index, "layer", layer.span))
        return tuple(sorted(blocks, key=lambda block: block.span.start))

    # ------------------------------------------------------------ structure
    @property
    def block_spans(self) -> tuple[slice, ...]:
        """Diagonal blocks tiling θ, in θ order: one per Kronecker block (a layer's
        weight and bias by default, each weight and each bias with
        ``separate_weight_and_bias``), and the zero blocks of uncovered parameters
        (one per module, as in ``problem.blocks()``), which have no factors.
        """
        return self._spans

    def block_factors(self, index: int) -> tuple[Tensor, Tensor]:
        """(S, A) of the ``index``-th block: the layer's joined A, or its weight
        part A_WW, or its bias part A_bb (1 × 1).
        """
        block = self._blocks[index]
        a = self.input_factors[block.layer]
        s = self.output_factors[block.layer]
        n = self.layers[block.layer].in_features
        if block.part == "weight":
            a = a[:n, :n]
        elif block.part == "bias":
            a = a[n:, n:]
        return s, a

    # ------------------------------------------------------------ layout
    def _block_matrix(self, rows: Tensor, block: _Block) -> Tensor:
        """(K, P) -> the block's matrix (K, m, n): V̄ (out, in [+1]), V_W or v_b."""
        k = rows.shape[0]
        layer = self.layers[block.layer]
        if block.part == "bias":
            return rows[:, block.span].unsqueeze(-1)
        weight = rows[:, layer.weight].view(k, layer.out_features, layer.in_features)
        if block.part == "weight" or layer.bias is None:
            return weight
        return torch.cat([weight, rows[:, layer.bias].unsqueeze(-1)], -1)

    def _apply(
        self, matrix: Tensor, transform: Callable[[int, Tensor], Tensor]
    ) -> Tensor:
        """``transform(index, block matrix)`` on every block of the columns of
        ``matrix`` (P, K); zero outside every block.
        """
        rows = matrix.T
        out = torch.zeros_like(rows)
        for index, block in enumerate(self._blocks):
            result = transform(index, self._block_matrix(rows, block))
            layer = self.layers[block.layer]
            if block.part == "bias":
                out[:, block.span] = result[..., 0]
                continue
            out[:, layer.weight] = result[..., : layer.in_features].reshape(
                rows.shape[0], -1
            )
            if block.part == "layer" and layer.bias is not None:
                out[:, layer.bias] = result[..., -1]
        return out.T


#: K-FAC's options that EKFAC shares (and FOOF, K-FAC's ``output_factor="identity"``).
MC_SAMPLES_OPTION = Option(
    "mc_samples",
    1,
    "Sampled targets per example for output_factor='mc'.",
    low=1,
    high=1000,
)
KFAC_APPROX_OPTION = Option(
    "kfac_approx",
    "expand",
    "For layers with weight sharing (sequences, convolutions): 'expand' treats "
    "shared positions like examples, 'reduce' aggregates them per example first "
    "(Eschenhagen et al. 2023; the same for plain MLPs).",
    choices=KFAC_APPROXIMATIONS,
)
SEPARATE_WEIGHT_AND_BIAS_OPTION = Option(
    "separate_weight_and_bias",
    False,
    "Separate Kronecker blocks for a layer's weight and bias (curvlinops' "
    "default is true); false keeps one joined [W, b] block per layer.",
)


class KFACOperator(LayerKroneckerOperator):
    """Block-diagonal Kronecker-factored Fisher for ``nn.Linear`` and ``nn.Conv2d``
    layers (other parameters uncovered); with ``output_factor="identity"``, FOOF.

    Attributes:
        layers: The covered layers, in θ order (for a convolution ``in_features``
            is C_in·k_h·k_w).
        input_factors: A per layer, joined: ((in [+ 1])², bias row and column last).
        output_factors: S per layer ((out)²; the identity for FOOF).
    """

    key = "kfac"
    label = "K-FAC"
    description = (
        "Per nn.Linear / nn.Conv2d layer A ⊗ S with A = E[ā āᵀ] (layer inputs or "
        "patches) and S = E[δ δᵀ] (back-propagated output factors), expand or reduce "
        "over shared positions; block-diagonal across layers, other parameters "
        "uncovered. With output_factor='identity' (FOOF, forward-only) S = I: its "
        "scale differs from the Fisher's by design (tr C = out·tr A)."
    )
    declared = Tags(psd=True, block_diagonal=True, kronecker=True, exact_solve=False)
    options_schema = (
        Option(
            "output_factor",
            "exact",
            "How S is formed: 'exact' (the output Fisher's square root, KFLR), 'mc' "
            "(targets sampled from the model), 'empirical' (the labels) or "
            "'identity' (FOOF, Benzing 2022: S = I, forward-only; the Gauss-Newton "
            "matrix of a squared error on the layer outputs, not the Fisher's scale: "
            "tr C = out·tr A).",
            choices=("exact", "mc", "empirical", "identity"),
        ),
        MC_SAMPLES_OPTION,
        KFAC_APPROX_OPTION,
        SEPARATE_WEIGHT_AND_BIAS_OPTION,
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

    def kronecker_factors(self) -> tuple[KroneckerBlock, ...]:
        """Per block: C[V̄, V̄] = S ⊗ A in the row-major order of V̄ = [V_W, v_b]
        (or of V_W, or of v_b as an (out, 1) matrix); covered blocks only.
        """
        out = []
        for index, block in enumerate(self._blocks):
            layer = self.layers[block.layer]
            if block.part == "layer":
                weight = torch.arange(layer.weight.start, layer.weight.stop)
                grid = weight.view(layer.out_features, layer.in_features)
                if layer.bias is not None:
                    bias = torch.arange(layer.bias.start, layer.bias.stop)
                    grid = torch.cat([grid, bias.unsqueeze(1)], 1)
                indices = grid.reshape(-1)
            else:
                indices = torch.arange(block.span.start, block.span.stop)
            s, a = self.block_factors(index)
            out.append(KroneckerBlock(indices, s, a))
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

    # ---------------------------------------------------------- operator
    def _matmat(self, matrix: Tensor) -> Tensor:
        def product(index: int, v_bar: Tensor) -> Tensor:
            s, a = self.block_factors(index)
            return s @ v_bar @ a

        return self._apply(matrix, product)

    def _diag(self) -> Tensor:
        ones = torch.ones(self.size, 1, dtype=self.dtype, device=self.device)

        def diagonal(index: int, v_bar: Tensor) -> Tensor:
            s, a = self.block_factors(index)
            return (s.diagonal()[:, None] * a.diagonal()[None, :]).expand_as(v_bar)

        return self._apply(ones, diagonal)[:, 0]

    def _solve(self, rhs: Tensor, damping: float, **_: object) -> Tensor:
        if self._uncovered is not None and damping <= 0:
            # zero rows and columns: C + λI is singular there
            raise IndefiniteCurvatureError(self.key, damping, 0.0)
        column = rhs.unsqueeze(1) if rhs.dim() == 1 else rhs
        inverse = (
            self._exact_inverse
            if self.options["damping_mode"] == "exact"
            else (self._factored_inverse)
        )
        out = self._apply(column, lambda index, v_bar: inverse(index, v_bar, damping))
        if self._uncovered is not None:
            out[self._uncovered] = column[self._uncovered] / damping
        return out.squeeze(1) if rhs.dim() == 1 else out

    def factored_damping(self, index: int, damping: float) -> tuple[float, float]:
        """(π√λ, √λ/π) with π² = (tr A / dim A) / (tr S / dim S) for the
        ``index``-th block (the ``index``-th layer unless weight and bias are
        separate).
        """
        s, a = self.block_factors(index)
        a_mean = float(a.diagonal().mean())
        s_mean = float(s.diagonal().mean())
        pi = (a_mean / s_mean) ** 0.5 if a_mean > 0 and s_mean > 0 else 1.0
        root = damping**0.5
        return pi * root, root / pi

    def _factored_inverse(self, index: int, v_bar: Tensor, damping: float) -> Tensor:
        s, a = self.block_factors(index)
        a_damp, s_damp = self.factored_damping(index, damping)
        a_chol = _cholesky(a, a_damp, self.key, damping)
        s_chol = _cholesky(s, s_damp, self.key, damping)
        left = torch.cholesky_solve(v_bar, s_chol)  # S_λ⁻¹ V̄
        return torch.cholesky_solve(left.transpose(-1, -2), a_chol).transpose(-1, -2)

    def _exact_inverse(self, index: int, v_bar: Tensor, damping: float) -> Tensor:
        s, a = self.block_factors(index)
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


def _runs(mask: Tensor, span: slice) -> list[slice]:
    """The maximal runs of True in ``mask[span]`` (P,) bool, as slices of θ."""
    inside = mask[span]
    if bool(inside.all()):
        return [span]
    if not bool(inside.any()):
        return []
    padded = torch.cat([inside.new_zeros(1), inside, inside.new_zeros(1)]).to(
        torch.int8
    )
    edges = torch.diff(padded)
    starts = (edges == 1).nonzero().flatten().tolist()
    stops = (edges == -1).nonzero().flatten().tolist()
    return [
        slice(span.start + a, span.start + b)
        for a, b in zip(starts, stops, strict=True)
    ]


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
