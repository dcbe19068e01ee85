"""Diagonal and block-diagonal approximations of any registered curvature.

``diag_<key>`` keeps the exact diagonal of ``<key>``; ``block_<key>`` keeps its
per-layer blocks (weight and bias of one linear layer together, or one parameter
tensor for models without layers). Both have closed-form solves.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from explorer.curvature.base import CurvatureOperator
from explorer.curvature.solvers import IndefiniteCurvatureError, cholesky_solve


class DiagonalOperator(CurvatureOperator):
    """diag(C) of a base curvature C (``base_key``)."""

    base_key: ClassVar[str] = ""
    exact = False

    def _setup(self) -> None:
        from explorer.curvature.registry import CURVATURES

        base = CURVATURES[self.base_key].build(
            self.problem, self.theta, batch=self.batch, generator=self.generator
        )
        self.diagonal = base.diag()
        self.products += base.products
        self._psd = base.psd

    @property
    def psd(self) -> bool:  # type: ignore[override]
        return self._psd

    def _matmat(self, matrix: Tensor) -> Tensor:
        return self.diagonal.unsqueeze(1) * matrix

    def _dense(self) -> Tensor:
        return torch.diag(self.diagonal)

    def _diag(self) -> Tensor:
        return self.diagonal.clone()

    def _solve(self, rhs: Tensor, damping: float, **_: Any) -> Tensor:
        shifted = self.diagonal + damping
        if float(shifted.min()) <= 0:
            raise IndefiniteCurvatureError(self.key, damping, float(shifted.min()))
        return rhs / (shifted if rhs.dim() == 1 else shifted.unsqueeze(1))


class BlockDiagonalOperator(CurvatureOperator):
    """The per-layer diagonal blocks of a base curvature C (``base_key``)."""

    base_key: ClassVar[str] = ""
    exact = False

    def _setup(self) -> None:
        from explorer.curvature.registry import CURVATURES

        base = CURVATURES[self.base_key].build(
            self.problem, self.theta, batch=self.batch, generator=self.generator
        )
        self.spans = [span for _, span in self.problem.blocks()]
        self.block_names = [name for name, _ in self.problem.blocks()]
        self.blocks: list[Tensor] = []
        for span in self.spans:
            columns = torch.zeros(
                self.size, span.stop - span.start, dtype=self.dtype, device=self.device
            )
            columns[span, :] = torch.eye(
                span.stop - span.start, dtype=self.dtype, device=self.device
            )
            self.blocks.append(base.matmat(columns)[span])
        self.products += base.products
        self._psd = base.psd

    @property
    def psd(self) -> bool:  # type: ignore[override]
        return self._psd

    def _matmat(self, matrix: Tensor) -> Tensor:
        out = torch.zeros_like(matrix)
        for span, block in zip(self.spans, self.blocks, strict=True):
            out[span] = block @ matrix[span]
        return out

    def _dense(self) -> Tensor:
        return torch.block_diag(*self.blocks)

    def _diag(self) -> Tensor:
        return torch.cat([block.diagonal() for block in self.blocks])

    def _solve(self, rhs: Tensor, damping: float, **_: Any) -> Tensor:
        out = torch.zeros_like(rhs)
        for span, block in zip(self.spans, self.blocks, strict=True):
            out[span] = cholesky_solve(block, rhs[span], damping, self.key)
        return out


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
