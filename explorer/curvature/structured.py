"""Diagonal and block-diagonal approximations of any registered curvature.

``diag_<key>`` keeps the exact diagonal of ``<key>``; ``block_<key>`` keeps its
per-layer blocks (weight and bias of one linear layer together, or one parameter
tensor for models without layers). Both are the algebra's
:class:`~explorer.curvature.algebra.DiagonalMatrixOperator` /
:class:`~explorer.curvature.algebra.BlockDiagonalMatrixOperator` of the base curvature's
numbers, so they have closed-form solves; both are PSD exactly where their base is.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from explorer.curvature.algebra import (
    BlockDiagonalMatrixOperator,
    DelegatingOperator,
    DiagonalMatrixOperator,
)
from explorer.curvature.base import CurvatureOperator, unit_columns
from explorer.curvature.registry import CURVATURES
from explorer.curvature.tags import Tags
from explorer.problems.base import Problem


class _OfBase(DelegatingOperator):
    """Shared by the diagonal and block forms: the base curvature and its tags."""

    abstract = True
    base_key: ClassVar[str] = ""

    @classmethod
    def tags_for(
        cls, problem: Problem | None = None, options: dict[str, Any] | None = None
    ) -> Tags:
        """The declared structure, PSD and sampled as the base curvature is on
        ``problem`` (with its default options).
        """
        base = CURVATURES[cls.base_key].tags(problem)
        return cls.declared.replace(psd=base.psd, sampled=base.sampled)

    @classmethod
    def incompatibility(
        cls, problem: Problem, options: dict[str, Any] | None = None
    ) -> str | None:
        return CURVATURES[cls.base_key].incompatibility(problem)

    def _build_base(self) -> CurvatureOperator:
        return CURVATURES[self.base_key].build(
            self.problem, self.theta, batch=self.batch, generator=self.generator
        )


class DiagonalOperator(_OfBase):
    """diag(C) of a base curvature C (``base_key``)."""

    declared = Tags(symmetric=True, diagonal=True, block_diagonal=True)

    def _setup(self) -> None:
        base = self._build_base()
        self.linear = DiagonalMatrixOperator(base.diag(), key=self.key, tags=self.tags)
        self.products += base.products

    @property
    def diagonal(self) -> Tensor:
        """The diagonal (P,)."""
        return self.linear.diagonal


class BlockDiagonalOperator(_OfBase):
    """The per-layer diagonal blocks of a base curvature C (``base_key``)."""

    declared = Tags(symmetric=True, block_diagonal=True)

    def _setup(self) -> None:
        base = self._build_base()
        blocks = self.problem.blocks()
        self.block_names = [name for name, _ in blocks]
        spans = [span for _, span in blocks]
        matrices = []
        for span in spans:
            columns = unit_columns(
                self.size, span.start, span.stop, self.dtype, self.device
            )
            matrices.append(base.matmat(columns)[span])
        self.linear = BlockDiagonalMatrixOperator(
            spans, matrices, self.size, key=self.key, tags=self.tags
        )
        self.products += base.products

    @property
    def spans(self) -> tuple[slice, ...]:
        """The blocks' parameter spans."""
        return self.linear.spans

    @property
    def blocks(self) -> list[Tensor]:
        """The dense blocks, in span order."""
        return self.linear.blocks


def diagonal_of(key: str, base_label: str, reference: str) -> type:
    """A :class:`DiagonalOperator` subclass for base curvature ``key``."""
    return type(
        f"Diag{key.title().replace('_', '')}Operator",
        (DiagonalOperator,),
        {
            "key": f"diag_{key}",
            "label": f"Diagonal of the {base_label}",
            "description": f"The exact diagonal of the {base_label}, zero elsewhere.",
            "base_key": key,
            "reference": reference,
        },
    )


def blocks_of(key: str, base_label: str, reference: str) -> type:
    """A :class:`BlockDiagonalOperator` subclass for base curvature ``key``."""
    return type(
        f"Block{key.title().replace('_', '')}Operator",
        (BlockDiagonalOperator,),
        {
            "key": f"block_{key}",
            "label": f"Layer-block-diagonal {base_label}",
            "description": (
                f"The {base_label} restricted to per-layer diagonal blocks "
                "(cross-layer terms dropped)."
            ),
            "base_key": key,
            "reference": reference,
        },
    )
