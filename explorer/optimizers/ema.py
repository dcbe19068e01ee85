r"""Exponential moving averages of curvature across refreshes (K-FAC style).

At the r-th refresh (r = 0, 1, ...) the curvature becomes

.. math:: \bar C_r = β_r \bar C_{r-1} + (1 - β_r) C_r, \quad
   β_r = \min(β, 1 - 1/(r + 1)),

so early refreshes average uniformly (no bias towards the first, as in Martens &
Grosse 2015) and later ones forget at rate β. What is averaged depends on the
operator's structure, so the averaged operator keeps its cheap solve:

* K-FAC: the factors A_l and S_l separately (the classic K-FAC statistics);
* diagonal: the diagonal; layer blocks: each block;
* anything else, including curvatures registered by users: the dense P × P matrix,
  allowed up to :data:`EMA_DENSE_MAX_PARAMS` parameters.
"""

from __future__ import annotations

import copy

from torch import Tensor

from explorer.curvature.base import CurvatureOperator
from explorer.curvature.kfac import KFACOperator
from explorer.curvature.registry import CurvatureSpec
from explorer.curvature.structured import BlockDiagonalOperator, DiagonalOperator

#: A dense moving average is refused above this many parameters (P² floats).
EMA_DENSE_MAX_PARAMS = 4000

_STRUCTURED = (KFACOperator, DiagonalOperator, BlockDiagonalOperator)


def ema_decay(decay: float, refresh: int) -> float:
    """β_r = min(β, 1 − 1/(r + 1)) for the r-th refresh (0-based).

    Example:
        >>> [round(ema_decay(0.95, r), 3) for r in range(4)]
        [0.0, 0.5, 0.667, 0.75]
    """
    return min(decay, 1.0 - 1.0 / (refresh + 1))


def ema_incompatibility(spec: CurvatureSpec, num_params: int) -> str | None:
    """Why a moving average of curvature ``spec`` is impossible for P, or None."""
    build = spec.build
    if isinstance(build, type) and issubclass(build, _STRUCTURED):
        return None
    if num_params <= EMA_DENSE_MAX_PARAMS:
        return None
    return (
        f"a moving average of curvature {spec.key!r} is kept as a dense P × P matrix, "
        f"but P = {num_params:,} > {EMA_DENSE_MAX_PARAMS:,}; set ema = 0 or use a "
        "structured curvature (kfac, diag_*, block_*)"
    )


class AveragedOperator(CurvatureOperator):
    """A dense moving average of a curvature, with the source's key and PSD flag."""

    label = "Averaged curvature"
    description = "An exponential moving average of a curvature across refreshes."

    def __init__(self, source: CurvatureOperator, matrix: Tensor) -> None:
        self._matrix = matrix
        self.key = source.key  # error messages name the curvature the user chose
        self.label = f"{source.label} (moving average)"
        self._psd = source.psd
        super().__init__(source.problem, source.theta, source.batch, source.generator)

    @property
    def psd(self) -> bool:  # type: ignore[override]
        return self._psd

    def _dense(self) -> Tensor:
        return self._matrix


def ema_combine(
    old: CurvatureOperator, new: CurvatureOperator, decay: float
) -> CurvatureOperator:
    """β·old + (1 − β)·new, keeping the structure of ``new`` where it has one.

    Neither operator is modified; the result's ``products`` counts what ``new`` cost
    plus any products spent here (a dense copy of ``old`` when it had none).
    """
    keep = 1.0 - decay
    if isinstance(new, KFACOperator) and isinstance(old, KFACOperator):
        out = copy.copy(new)
        out.input_factors = [
            decay * a + keep * b
            for a, b in zip(old.input_factors, new.input_factors, strict=True)
        ]
        out.output_factors = [
            decay * s + keep * t
            for s, t in zip(old.output_factors, new.output_factors, strict=True)
        ]
        return out
    if isinstance(new, DiagonalOperator) and isinstance(old, DiagonalOperator):
        out = copy.copy(new)
        out.diagonal = decay * old.diagonal + keep * new.diagonal
        return out
    if isinstance(new, BlockDiagonalOperator) and isinstance(
        old, BlockDiagonalOperator
    ):
        out = copy.copy(new)
        out.blocks = [
            decay * a + keep * b for a, b in zip(old.blocks, new.blocks, strict=True)
        ]
        return out
    before = old.products
    old_dense = old.dense()
    new_dense = new.dense()
    out = AveragedOperator(new, decay * old_dense + keep * new_dense)
    out.products = new.products + (old.products - before)
    return out
