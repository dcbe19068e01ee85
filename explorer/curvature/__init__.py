"""Curvature matrices as operators; the ``CURVATURES`` registry.

Built-ins: ``hessian``, ``ggn``, ``fisher``, ``fisher_mc``, ``ef``, ``kfac``, the
diagonals ``diag_ggn``, ``diag_fisher``, ``diag_ef``, ``diag_hessian``, the layer
blocks ``block_ggn``, ``block_fisher`` and ``matrix`` (a user-supplied tensor).
"""

from explorer.curvature.base import CurvatureOperator, DenseTooLargeError
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
from explorer.curvature.solvers import IndefiniteCurvatureError, conjugate_gradient
from explorer.curvature.structured import blocks_of, diagonal_of

_ = CURVATURES.register  # one line per curvature below; order = UI order

_("hessian", spec_for_class(HessianOperator))
_("ggn", spec_for_class(GGNOperator, psd=True))
_("fisher", spec_for_class(FisherOperator))
_("fisher_mc", spec_for_class(MCFisherOperator))
_("ef", spec_for_class(EmpiricalFisherOperator))
_("kfac", spec_for_class(KFACOperator))
_("diag_ggn", spec_for_class(diagonal_of("ggn", "GGN", "ggn"), psd=True))
_("diag_fisher", spec_for_class(diagonal_of("fisher", "Fisher", "fisher"), psd=True))
_("diag_ef", spec_for_class(diagonal_of("ef", "empirical Fisher", "ef"), psd=True))
_("diag_hessian", spec_for_class(diagonal_of("hessian", "Hessian", "hessian")))
_(
    "block_ggn",
    spec_for_class(blocks_of("ggn", "GGN", "ggn"), psd=True, needs_layers=False),
)
_("block_fisher", spec_for_class(blocks_of("fisher", "Fisher", "fisher"), psd=True))
_("matrix", spec_for_class(MatrixOperator, selectable=False))
del _

__all__ = [
    "CURVATURES",
    "CurvatureOperator",
    "CurvatureSpec",
    "DenseTooLargeError",
    "IndefiniteCurvatureError",
    "conjugate_gradient",
    "curvature",
    "register_curvature",
]
