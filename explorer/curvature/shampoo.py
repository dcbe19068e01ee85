r"""Shampoo's implied matrix at θ (Morwani et al. 2025, "A New Perspective on
Shampoo's Preconditioner").

Every parameter tensor is viewed as a matrix of shape m × n with m = shape[0] and
n = prod(shape[1:]) (a 1-D tensor of length m, or a scalar, as an m × 1 matrix), in
the row-major order of θ. With per-example "gradient" matrices
:math:`G_{nk} = \operatorname{mat}(J_n^\top r_{nk})` restricted to that tensor,

.. math:: L = \frac1N \sum_{n,k} G_{nk} G_{nk}^\top, \quad
   R = \frac1N \sum_{n,k} G_{nk}^\top G_{nk}, \quad
   C_{\text{tensor}} = \frac{L \otimes R}{\operatorname{tr} L}

("Shampoo²"). Since tr(L ⊗ R) = tr L · tr R and tr L = tr R = (1/N) Σ ‖G‖²_F, the
block has the trace of E[vec G vec Gᵀ], the exact block it approximates. The
output factors r_nk (N, C, K) are, per ``gradients``:

* ``"exact"``: the columns of the output Fisher's square root F_R(z_n) = R_n R_nᵀ,
  so Σ_k vec G_nk vec G_nkᵀ averages to the exact Fisher block (the GGN block for
  matching likelihoods, which all the explorer's convex losses are);
* ``"mc"``: ∇_z L at ``mc_samples`` targets sampled from the model, each scaled by
  1/√mc_samples (an unbiased estimate of the same);
* ``"empirical"``: ∇_z L at the labels, the per-example gradients Shampoo's own
  statistics are built from in training.

**Which power the update rule applies.** In row-major vec,
vec(L^{-1/4} G R^{-1/4}) = (L ⊗ R)^{-1/4} vec G = (tr L)^{-1/4} C^{-1/4} vec G:
Shampoo's update (``explorer.optimizers.shampoo``) applies the inverse *fourth*
root of this C (the inverse square root of the Shampoo preconditioner
(L ⊗ R)^{1/2}, whose square is L ⊗ R), up to the scalar (tr L)^{-1/4}; full-matrix
Adagrad would apply the inverse square root of the exact block. (The rule's L and
R also sum, or average, over steps rather than over examples at one θ.)

**Structure.** One Kronecker block per tensor: ``kronecker_factors()`` gives
``KroneckerBlock(indices, L, R / tr L)`` with the indices of the tensor in the
row-major order of its m × n view (the K-FAC convention: ``left`` acts on rows).
For a 1-D tensor R = tr L, so its block is the dense L = (1/N) Σ g gᵀ — the same
formula, and exactly the corresponding block of E[g gᵀ] (a dense block, not a
diagonal). A 2-D tensor with m = 1 (a linear model's weight) likewise gets its
exact block R. Tensors are independent: C is zero between different tensors.

The diagonal blocks ``block_spans`` are the repository's one per module
(``problem.blocks()``); inside a module with a weight and a bias, C is
block-diagonal again (weight block, bias block), so such a module's block is not a
single Kronecker product. The ``kronecker`` tag (each block of ``block_spans`` one
Kronecker product) is therefore declared only on problems whose every module owns
one tensor; :meth:`kronecker_factors` lists the per-tensor blocks everywhere and
:meth:`coverage` calls every parameter ``"kronecker"``.

``solve(b, λ)`` is exact: with L = U diag(a) Uᵀ and R / tr L = V diag(b) Vᵀ, a
tensor's block of (C + λI)⁻¹ maps X (m × n) to U [(Uᵀ X V) ⊘ (a bᵀ + λ)] Vᵀ.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from explorer.curvature.base import CurvatureOperator
from explorer.curvature.linearization import (
    JACOBIAN_CHUNK_BYTES,
    FunctionalLinearization,
)
from explorer.curvature.solvers import IndefiniteCurvatureError, require_finite
from explorer.curvature.tags import KroneckerBlock, Requirement, Tags
from explorer.options import Option
from explorer.problems.base import Problem, parameter_matrices

GRADIENTS = ("exact", "mc", "empirical")


def _no_model(problem: Problem) -> str | None:
    return None if isinstance(problem.model, nn.Module) else "no nn.Module model"


#: Per-example gradients through the parameter tensors of an ``nn.Module``.
MODEL = Requirement(
    "model",
    "an nn.Module model (per-example gradients of its parameter tensors, each "
    "viewed as a matrix)",
    _no_model,
    "Use 'ef', 'ggn', 'fisher' or a diagonal approximation instead, or build the "
    "problem from a module (ex.problem_from_module).",
)


class ShampooOperator(CurvatureOperator):
    """Per parameter tensor (L ⊗ R) / tr L from per-example gradient matrices
    (block-diagonal across tensors; Morwani et al. 2025).

    Attributes:
        tensors: The :class:`~explorer.problems.base.ParameterMatrix` of every
            parameter tensor.
        left_factors: L per tensor (m, m).
        right_factors: R / tr L per tensor (n, n) (zero where tr L = 0).
        traces: tr L = tr R per tensor.
    """

    key = "shampoo"
    label = "Shampoo (L ⊗ R / tr L)"
    description = (
        "Per parameter tensor (as an m × n matrix) (L ⊗ R)/tr L with "
        "L = (1/N) Σ G Gᵀ, R = (1/N) Σ GᵀG over per-example gradient matrices "
        "(Shampoo², Morwani et al. 2025): the trace of each exact block; tensors "
        "independent, a 1-D tensor's block the dense (1/N) Σ g gᵀ."
    )
    declared = Tags(psd=True, block_diagonal=True)
    needs = (MODEL,)
    reference = "fisher"
    options_schema = (
        Option(
            "gradients",
            "exact",
            "Per-example gradient matrices from: 'exact' (the columns of the output "
            "Fisher's square root: E[vec G vec Gᵀ] is the exact Fisher = GGN block), "
            "'mc' (targets sampled from the model) or 'empirical' (the labels, what "
            "Shampoo sees in training).",
            choices=GRADIENTS,
        ),
        Option(
            "mc_samples",
            1,
            "Sampled targets per example for gradients='mc'.",
            low=1,
            high=1000,
        ),
    )

    @classmethod
    def tags_for(
        cls, problem: Problem | None = None, options: dict[str, Any] | None = None
    ) -> Tags:
        """Sampled with ``gradients="mc"``; Kronecker (each module block one
        Kronecker product) exactly on problems whose every module owns one tensor.
        """
        resolved = cls.resolved(options)
        kronecker = problem is not None and _one_tensor_per_block(problem)
        return cls.declared.replace(
            sampled=resolved["gradients"] == "mc", kronecker=kronecker
        )

    @classmethod
    def declared_coverage(
        cls, problem: Problem, options: dict[str, Any] | None = None
    ) -> dict[str, str] | None:
        """Every parameter tensor is its own Kronecker-factored block."""
        return dict.fromkeys(problem.param_names, "kronecker")

    def coverage(self) -> dict[str, str]:
        return type(self).declared_coverage(self.problem, self.options)

    # ------------------------------------------------------------- factors
    def _setup(self) -> None:
        self.tensors = parameter_matrices(self.problem)
        inputs = self.batch.inputs
        with torch.no_grad():
            outputs = self.problem.predict(self.theta, inputs)
        factors = self._output_factors(outputs)  # (N, C, K)
        n, c = outputs.shape
        lefts = [
            torch.zeros(t.rows, t.rows, dtype=self.dtype, device=self.device)
            for t in self.tensors
        ]
        rights = [
            torch.zeros(t.cols, t.cols, dtype=self.dtype, device=self.device)
            for t in self.tensors
        ]
        # per-example Jacobians (N, C, P) in chunks of examples below a memory bound
        per_example = max(1, c * self.size * self.element_size)
        chunk = max(1, JACOBIAN_CHUNK_BYTES // per_example)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            jacobian = FunctionalLinearization(
                self.problem, self.theta, inputs[start:stop]
            ).jacobian()
            grads = torch.einsum("ncp,nck->nkp", jacobian, factors[start:stop])
            grads = grads.reshape(-1, self.size)  # one row per (example, column)
            for index, t in enumerate(self.tensors):
                g = grads[:, t.span].reshape(-1, t.rows, t.cols)
                lefts[index] += torch.einsum("bij,bkj->ik", g, g)
                rights[index] += torch.einsum("bji,bjk->ik", g, g)
        self.left_factors: list[Tensor] = [left / n for left in lefts]
        self.traces: list[float] = [float(left.trace()) for left in self.left_factors]
        self.right_factors: list[Tensor] = [
            right / n / trace if trace > 0 else torch.zeros_like(right)
            for right, trace in zip(rights, self.traces, strict=True)
        ]
        self._eigen: list[tuple[Tensor, Tensor, Tensor, Tensor]] | None = None

    def _output_factors(self, outputs: Tensor) -> Tensor:
        """The output factors r (N, C, K) at ``outputs`` (N, C), per ``gradients``."""
        return self.problem.loss.output_factors(
            outputs,
            self.options["gradients"],
            self.batch.targets,
            self.options["mc_samples"],
            self.generator,
        )

    # ------------------------------------------------------------ structure
    def kronecker_factors(self) -> tuple[KroneckerBlock, ...]:
        """Per tensor: C[idx, idx] = kron(L, R / tr L), ``idx`` the tensor's
        indices in the row-major order of its m × n view (every tensor, also where
        the ``kronecker`` tag is not declared because a module owns several).
        """
        return tuple(
            KroneckerBlock(
                torch.arange(t.span.start, t.span.stop, device=self.device),
                left,
                right,
            )
            for t, left, right in zip(
                self.tensors, self.left_factors, self.right_factors, strict=True
            )
        )

    def _apply(self, matrix: Tensor, transform) -> Tensor:
        """``transform(index, X (K, m, n))`` on each tensor of the columns (P, K)."""
        rows = matrix.T
        out = torch.empty_like(rows)
        k = rows.shape[0]
        for index, t in enumerate(self.tensors):
            block = rows[:, t.span].reshape(k, t.rows, t.cols)
            out[:, t.span] = transform(index, block).reshape(k, -1)
        return out.T

    # ------------------------------------------------------------- operator
    def _matmat(self, matrix: Tensor) -> Tensor:
        def product(index: int, x: Tensor) -> Tensor:
            return self.left_factors[index] @ x @ self.right_factors[index]

        return self._apply(matrix, product)

    def _diag(self) -> Tensor:
        out = torch.empty(self.size, dtype=self.dtype, device=self.device)
        for t, left, right in zip(
            self.tensors, self.left_factors, self.right_factors, strict=True
        ):
            out[t.span] = torch.outer(left.diagonal(), right.diagonal()).reshape(-1)
        return out

    def _eigendecompositions(self) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
        """(a, U, b, V) per tensor with L = U diag(a) Uᵀ, R/tr L = V diag(b) Vᵀ."""
        if self._eigen is None:
            eigen = []
            for left, right in zip(self.left_factors, self.right_factors, strict=True):
                require_finite(left, self.key)
                require_finite(right, self.key)
                a, u = torch.linalg.eigh(left)
                b, v = torch.linalg.eigh(right)
                # Gram matrices: eigenvalues below zero are round-off
                eigen.append((a.clamp(min=0.0), u, b.clamp(min=0.0), v))
            self._eigen = eigen
        return self._eigen

    def _solve(self, rhs: Tensor, damping: float, **_: object) -> Tensor:
        eigen = self._eigendecompositions()
        for a, _, b, _ in eigen:
            smallest = float((a[:, None] * b[None, :]).min()) + damping
            if smallest <= 0:
                raise IndefiniteCurvatureError(self.key, damping, smallest)

        def inverse(index: int, x: Tensor) -> Tensor:
            a, u, b, v = eigen[index]
            spectrum = a[:, None] * b[None, :] + damping
            return u @ ((u.T @ x @ v) / spectrum) @ v.T

        column = rhs.unsqueeze(1) if rhs.dim() == 1 else rhs
        out = self._apply(column, inverse)
        return out.squeeze(1) if rhs.dim() == 1 else out


def _one_tensor_per_block(problem: Problem) -> bool:
    """Whether every block of ``problem.blocks()`` holds exactly one tensor."""
    return len(problem.blocks()) == len(problem.param_names)
