r"""Exponential moving averages of curvature across refreshes (K-FAC style).

At the r-th refresh (r = 0, 1, ...) the curvature becomes

.. math:: \bar C_r = β_r \bar C_{r-1} + (1 - β_r) C_r, \quad
   β_r = \min(β, 1 - 1/(r + 1)),

so early refreshes average uniformly (no bias towards the first, as in Martens &
Grosse 2015) and later ones forget at rate β. The average is the operator algebra's
:func:`~explorer.curvature.algebra.combine`, materialized in the structure the
curvature declares, so the averaged operator keeps its cheap solve:

* K-FAC: the factors A_l and S_l separately (the classic K-FAC statistics);
* declared diagonal: the diagonal; declared block-diagonal: each block;
* anything else, including curvatures registered by users: the dense P × P matrix,
  allowed up to :data:`EMA_DENSE_MAX_PARAMS` parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from explorer.curvature.algebra import combine
from explorer.curvature.base import LinearOperator
from explorer.curvature.kfac import KFACOperator
from explorer.curvature.registry import CurvatureSpec
from explorer.problems.base import Problem

#: A dense moving average is refused above this many parameters (P² floats).
EMA_DENSE_MAX_PARAMS = 4000


def ema_decay(decay: float, refresh: int) -> float:
    """β_r = min(β, 1 − 1/(r + 1)) for the r-th refresh (0-based).

    Example:
        >>> [round(ema_decay(0.95, r), 3) for r in range(4)]
        [0.0, 0.5, 0.667, 0.75]
    """
    return min(decay, 1.0 - 1.0 / (refresh + 1))


def ema_incompatibility(
    spec: CurvatureSpec, problem: Problem, options: Mapping[str, Any] | None = None
) -> str | None:
    """Why a moving average of curvature ``spec`` is impossible on ``problem``, or
    None: unstructured curvatures are averaged densely, up to P = 4,000.
    """
    tags = spec.tags(problem, dict(options or {}))
    if (
        tags.diagonal
        or tags.block_diagonal
        or problem.num_params <= EMA_DENSE_MAX_PARAMS
    ):
        return None
    return (
        f"a moving average of curvature {spec.key!r} is kept as a dense P × P matrix, "
        f"but P = {problem.num_params:,} > {EMA_DENSE_MAX_PARAMS:,}; set ema = 0 or "
        "use a structured curvature (kfac, diag_*, block_*)"
    )


def ema_combine(
    old: LinearOperator, new: LinearOperator, decay: float
) -> LinearOperator:
    """β·old + (1 − β)·new, keeping the declared structure of the operands.

    Neither operator is modified; the result's ``products`` counts what ``new`` cost
    plus any products spent here (a dense copy of ``old`` when it had none). Its key
    is ``new``'s (error messages name the curvature the user chose); it is not
    declared exact (an average over points is no curvature at one point).
    """
    keep = 1.0 - decay
    if isinstance(new, KFACOperator) and isinstance(old, KFACOperator):
        return new.with_factors(
            [
                decay * a + keep * b
                for a, b in zip(old.input_factors, new.input_factors, strict=True)
            ],
            [
                decay * s + keep * t
                for s, t in zip(old.output_factors, new.output_factors, strict=True)
            ],
        )
    before = old.products
    out = combine(
        [(decay, old), (keep, new)],
        key=new.key,
        label=f"{new.label} (moving average)",
        max_dense_params=EMA_DENSE_MAX_PARAMS,
        exact=False,
    )
    out.products = new.products + (old.products - before)
    return out
