"""Curvature matrices as operators; the ``CURVATURES`` registry.

Built-ins: ``hessian``, ``ggn``, ``fisher``, ``fisher_mc``, ``ef``, ``kfac``,
``shampoo`` (Shampoo's implied (L ⊗ R)/tr L per tensor), the
diagonals ``diag_ggn``, ``diag_fisher``, ``diag_ef``, ``diag_hessian``, the
stochastic diagonals ``sophia_gnb`` (Sophia's Gauss-Newton-Bartlett) and
``adahessian`` (Hutchinson; Sophia-H with Gaussian probes), the layer blocks
``block_ggn``, ``block_fisher`` and ``matrix`` (a user-supplied tensor).
Each registration line carries the facts about its key: its colour in every figure
and its section of the Theory page; structure (PSD, diagonal, Kronecker...) is
declared by the operator class (:mod:`explorer.curvature.tags`).
"""

from explorer.curvature.algebra import (
    DenseOperator,
    add,
    combine,
    restrict,
    scale,
)
from explorer.curvature.base import (
    CurvatureOperator,
    DenseTooLargeError,
    LinearOperator,
)
from explorer.curvature.diagonal_estimators import (
    HutchinsonDiagonalOperator,
    SophiaGNBOperator,
)
from explorer.curvature.ekfac import EKFACOperator
from explorer.curvature.empirical_fisher import EmpiricalFisherOperator
from explorer.curvature.fisher import FisherOperator, MCFisherOperator
from explorer.curvature.ggn import GGNOperator
from explorer.curvature.hessian import HessianOperator
from explorer.curvature.kfac import KFACOperator
from explorer.curvature.matrix import MatrixOperator
from explorer.curvature.registry import (
    CURVATURES,
    CurvatureSpec,
    curvature,
    register_curvature,
    spec_for_class,
)
from explorer.curvature.shampoo import ShampooOperator
from explorer.curvature.solvers import IndefiniteCurvatureError, conjugate_gradient
from explorer.curvature.structured import blocks_of, diagonal_of
from explorer.curvature.tags import (
    KFAC_LAYERS,
    LINEAR_LAYERS,
    MLP,
    Requirement,
    Tags,
)

_ = CURVATURES.register  # one line per curvature below; order = UI order
S = spec_for_class

_("hessian", S(HessianOperator, color="#d62728", theory="hessian"))
_("ggn", S(GGNOperator, color="#1f77b4", theory="ggn"))
_("fisher", S(FisherOperator, color="#2ca02c", theory="fisher"))
_("fisher_mc", S(MCFisherOperator, color="#98df8a", theory="fisher"))
_("ef", S(EmpiricalFisherOperator, color="#ff7f0e", theory="ef"))
_("kfac", S(KFACOperator, color="#9467bd", theory="kfac"))
_("ekfac", S(EKFACOperator, color="#c5b0d5", theory="preconditioners"))
_("shampoo", S(ShampooOperator, color="#c49c94", theory="preconditioners"))
_("diag_ggn", S(diagonal_of("ggn", "GGN", "ggn"), color="#aec7e8", theory="kfac"))
_(
    "diag_fisher",
    S(diagonal_of("fisher", "Fisher", "fisher"), color="#17becf", theory="kfac"),
)
_(
    "diag_ef",
    S(diagonal_of("ef", "empirical Fisher", "ef"), color="#ffbb78", theory="kfac"),
)
_(
    "diag_hessian",
    S(diagonal_of("hessian", "Hessian", "hessian"), color="#ff9896", theory="kfac"),
)
_("sophia_gnb", S(SophiaGNBOperator, color="#9c9ede", theory="preconditioners"))
_(
    "adahessian",
    S(HutchinsonDiagonalOperator, color="#e7ba52", theory="preconditioners"),
)
_("block_ggn", S(blocks_of("ggn", "GGN", "ggn"), color="#393b79", theory="kfac"))
_(
    "block_fisher",
    S(blocks_of("fisher", "Fisher", "fisher"), color="#637939", theory="kfac"),
)
_("matrix", S(MatrixOperator, selectable=False, color="#8c564b", theory="setting"))
del _, S

__all__ = [
    "CURVATURES",
    "KFAC_LAYERS",
    "LINEAR_LAYERS",
    "MLP",
    "CurvatureOperator",
    "CurvatureSpec",
    "DenseOperator",
    "DenseTooLargeError",
    "IndefiniteCurvatureError",
    "LinearOperator",
    "Requirement",
    "Tags",
    "add",
    "combine",
    "conjugate_gradient",
    "curvature",
    "register_curvature",
    "restrict",
    "scale",
]
