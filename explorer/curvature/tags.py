"""Declared structure of a linear operator, and what a curvature needs from a problem.

Structure is declared, not sniffed (as in lineax): every operator class states what it
is in a :class:`Tags` (PSD, symmetric, diagonal, block-diagonal, Kronecker-factored,
exact, sampled, and whether ``solve`` applies exactly (C + λI)⁻¹), and every curvature
class states what it needs from a problem as :class:`Requirement` s. Facts that depend
on the problem or the options (the GGN is PSD only for a convex loss; K-FAC's damped
solve is exact only with ``damping_mode="exact"``) are answered by the class method
``tags_for(problem, options)``; the instance (``op.tags``) and the registry's spec
(``CURVATURES[key].tags(problem, options)``) both ask that one method.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from explorer.curvature.kfac_modules import is_supported
from explorer.curvature.mlp import mlp_layers
from explorer.problems.base import Problem


@dataclass(frozen=True)
class Tags:
    """What a P × P operator C is, as declared by its class.

    Attributes:
        psd: Positive semi-definite: xᵀ C x ≥ 0 for every x.
        symmetric: C = Cᵀ.
        diagonal: Zero off the diagonal.
        block_diagonal: Zero outside the diagonal blocks ``op.block_spans`` (for a
            curvature, one block per layer: ``problem.blocks()``).
        kronecker: Each diagonal block is a Kronecker product of two factors
            (``op.kronecker_factors()``); implies ``block_diagonal``.
        exact: Exactly the matrix its name defines (no sampling, no structural
            approximation).
        sampled: Depends on random draws from the operator's generator.
        exact_solve: ``solve(b, λ)`` returns (C + λI)⁻¹ b (up to rounding or the CG
            tolerance); False where a different damping is applied by design
            (K-FAC's factored Tikhonov damping).

    Example:
        >>> Tags(psd=True).symmetric, Tags(diagonal=True).block_diagonal
        (True, False)
    """

    psd: bool = False
    symmetric: bool = True
    diagonal: bool = False
    block_diagonal: bool = False
    kronecker: bool = False
    exact: bool = False
    sampled: bool = False
    exact_solve: bool = True

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, bool):
                raise TypeError(f"tag {field.name} = {value!r} must be a bool")
        if self.kronecker and not self.block_diagonal:
            raise ValueError("kronecker=True needs block_diagonal=True (per block)")

    def replace(self, **changes: bool) -> Tags:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, bool]:
        """``{tag: value}`` (for JSON and listings)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Requirement:
    """Something a curvature needs from a problem.

    Attributes:
        name: A short name (``"mlp"``).
        needs: What is needed, in words, completing "<curvature> needs ...".
        missing: ``problem -> None`` when it has it, else what it has instead (in
            words, completing "problem 'x' has ...").
        remedy: What to use instead.
    """

    name: str
    needs: str
    missing: Callable[[Problem], str | None]
    remedy: str

    def incompatibility(self, label: str, problem: Problem) -> str | None:
        """Why ``label`` cannot be built on ``problem``, or None."""
        found = self.missing(problem)
        if found is None:
            return None
        return (
            f"{label} needs {self.needs}; problem {problem.key!r} has {found}. "
            f"{self.remedy}"
        )


def _not_an_mlp(problem: Problem) -> str | None:
    if mlp_layers(problem) is not None:
        return None
    return "none" if not problem.layers else "other modules too"


def _no_linear_layers(problem: Problem) -> str | None:
    return None if problem.layers else "none"


def _no_kfac_layers(problem: Problem) -> str | None:
    model = problem.model
    if not isinstance(model, nn.Module):
        return "no nn.Module model"
    if any(is_supported(module) for module in model.modules()):
        return None
    return f"a model ({type(model).__name__}) without one"


#: A model made only of ``nn.Linear`` layers and elementwise activations (K-FAC's
#: fast MLP path; K-FAC itself needs only :data:`KFAC_LAYERS`).
MLP = Requirement(
    "mlp",
    "a model made of nn.Linear layers with elementwise activations",
    _not_an_mlp,
    "Use 'fisher', 'ggn' or a diagonal approximation instead.",
)

#: At least one ``nn.Linear`` or ``nn.Conv2d`` (groups = 1, zero padding) layer in
#: ``problem.model`` (K-FAC; parameters of other modules are left uncovered).
KFAC_LAYERS = Requirement(
    "kfac_layers",
    "a model with at least one nn.Linear or nn.Conv2d layer (Conv2d with groups=1 "
    "and zero padding)",
    _no_kfac_layers,
    "Use 'fisher', 'ggn' or a diagonal approximation instead.",
)

#: At least one ``nn.Linear`` layer (``problem.layers`` is not empty).
LINEAR_LAYERS = Requirement(
    "linear_layers",
    "a model with nn.Linear layers",
    _no_linear_layers,
    "Use 'fisher', 'ggn' or a diagonal approximation instead.",
)


@dataclass(frozen=True)
class KroneckerBlock:
    """One diagonal block of a Kronecker-factored operator.

    ``C[indices][:, indices] = kron(left, right)``: ``indices`` (m·n,) lists the
    block's parameters in the row-major order of an (m, n) matrix (for a linear
    layer: V̄ = [V_W, v_b] of shape (out, in + 1)).

    Attributes:
        indices: Parameter indices (m·n,), int64.
        left: The (m, m) factor (K-FAC: S, the output-side factor).
        right: The (n, n) factor (K-FAC: A, the input-side factor).
    """

    indices: Tensor
    left: Tensor
    right: Tensor
