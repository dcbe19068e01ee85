r"""A small algebra of linear operators whose results declare their structure.

Operands and results are :class:`~explorer.curvature.base.LinearOperator` s (a
:class:`~explorer.curvature.CurvatureOperator` is one), and every result states its
:class:`~explorer.curvature.tags.Tags` from its operands':

* :class:`DenseOperator`: a (P, P) tensor (symmetrized unless told not to);
  :class:`DiagonalMatrixOperator`: a diagonal (P,); :class:`BlockDiagonalMatrixOperator`: dense
  blocks on contiguous spans; :class:`MatvecOperator`: a ``v -> C v`` function.
* :func:`add` (:class:`SumOperator`): A + B + ...; PSD, symmetric, diagonal and
  block-diagonal when every term is (block-diagonal on shared blocks).
* :func:`scale` (:class:`ScaledOperator`): c·A; keeps PSD for c ≥ 0, keeps every
  structural tag (a scaled Kronecker product scales one factor), solves through A's
  solver: (cA + λI)⁻¹ = A's (A + (λ/c) I)⁻¹ / c.
* :func:`restrict` (:class:`RestrictedOperator`): the diagonal block C[s, s] of a
  contiguous parameter span s; keeps PSD, symmetric, diagonal and block-diagonal.
* :func:`combine`: Σ c_i A_i *materialized* in the structure the tags allow (a
  diagonal, blocks, or a dense matrix); what a moving average of curvatures keeps.

Each operator's ``products`` counts its own products; operands count theirs.

Example:
    >>> import torch
    >>> a = DenseOperator(torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64),
    ...                   psd=True)
    >>> b = DiagonalMatrixOperator(torch.tensor([1.0, 3.0], dtype=torch.float64), psd=True)
    >>> c = add(a, scale(0.5, b))
    >>> c.tags.psd, c.tags.diagonal, c.dense().tolist()
    (True, False, [[2.5, 1.0], [1.0, 3.5]])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from explorer.curvature.base import CurvatureOperator, LinearOperator
from explorer.curvature.solvers import IndefiniteCurvatureError
from explorer.curvature.tags import KroneckerBlock, Tags

#: What :class:`~explorer.spectra.operators.SymmetricOperator` objects that are not
#: LinearOperators are taken to be.
_PROTOCOL_TAGS = Tags(symmetric=True)


def tags_of(op: Any) -> Tags:
    """``op.tags`` for a LinearOperator; symmetric only for other product objects."""
    tags = getattr(op, "tags", None)
    return tags if isinstance(tags, Tags) else _PROTOCOL_TAGS


def _check_spans(spans: Sequence[slice], size: int) -> tuple[slice, ...]:
    out, previous = [], 0
    for span in spans:
        start, stop, step = span.indices(size)
        if step != 1 or stop <= start or start < previous:
            raise ValueError(
                f"block {span} must be a non-empty contiguous slice after the "
                f"previous block, inside 0..{size}"
            )
        out.append(slice(start, stop))
        previous = stop
    return tuple(out)


# ------------------------------------------------------------------ leaves
class DenseOperator(LinearOperator):
    """A (P, P) tensor as an operator.

    Args:
        matrix: The (P, P) matrix.
        key: A short name for messages.
        label: A human-readable name (default: ``key``).
        psd: Declared positive semi-definite.
        symmetrize: Keep only the symmetric part (M + Mᵀ)/2 (default); with False the
            matrix is used as given and declared symmetric only when ``psd``.
        tags: Declared tags, replacing the ones above.

    ``solve`` factorizes C + λI once per λ (Cholesky) and reuses the factor.
    """

    label = "Dense matrix"

    def __init__(
        self,
        matrix: Tensor,
        key: str = "matrix",
        label: str = "",
        psd: bool = False,
        *,
        symmetrize: bool = True,
        tags: Tags | None = None,
    ) -> None:
        if (
            not isinstance(matrix, Tensor)
            or matrix.dim() != 2
            or matrix.shape[0] != matrix.shape[1]
        ):
            shape = (
                tuple(matrix.shape)
                if isinstance(matrix, Tensor)
                else type(matrix).__name__
            )
            raise ValueError(f"matrix has shape {shape}; expected a square (P, P)")
        self.matrix = 0.5 * (matrix + matrix.T) if symmetrize else matrix
        declared = Tags(psd=psd, symmetric=symmetrize or psd, exact=True)
        super().__init__(
            matrix.shape[0],
            matrix.dtype,
            matrix.device,
            key=key,
            label=label or key,
            tags=declared if tags is None else tags,
        )
        self._dense_cache = self.matrix

    def _matmat(self, matrix: Tensor) -> Tensor:
        return self.matrix @ matrix

    def _dense(self) -> Tensor:
        return self.matrix

    def dense(self, max_bytes: int | None = None) -> Tensor:
        """A copy of the matrix (it exists already, so no size limit applies)."""
        return self.matrix.clone()

    def _diag(self) -> Tensor:
        return self.matrix.diagonal().clone()


class DiagonalMatrixOperator(LinearOperator):
    """diag(d) for d (P,): products, dense, diagonal and solve in closed form."""

    label = "Diagonal matrix"

    def __init__(
        self,
        diagonal: Tensor,
        key: str = "diag",
        label: str = "",
        psd: bool = False,
        *,
        tags: Tags | None = None,
    ) -> None:
        if not isinstance(diagonal, Tensor) or diagonal.dim() != 1:
            raise ValueError("diagonal must be a (P,) tensor")
        self.diagonal = diagonal
        declared = Tags(psd=psd, diagonal=True, exact=True)
        super().__init__(
            diagonal.numel(),
            diagonal.dtype,
            diagonal.device,
            key=key,
            label=label or key,
            tags=declared if tags is None else tags,
        )
        if not self.tags.diagonal:
            raise ValueError("a DiagonalMatrixOperator must be declared diagonal")

    def _matmat(self, matrix: Tensor) -> Tensor:
        return self.diagonal.unsqueeze(1) * matrix

    def _dense(self) -> Tensor:
        return torch.diag(self.diagonal)

    def _diag(self) -> Tensor:
        return self.diagonal.clone()

    def _block(self, span: slice) -> Tensor:
        return torch.diag(self.diagonal[span])


class BlockDiagonalMatrixOperator(LinearOperator):
    """Dense blocks B_i on contiguous parameter spans s_i, zero elsewhere.

    Args:
        spans: Ascending, non-overlapping contiguous slices.
        blocks: (|s_i|, |s_i|) matrices.
        size: P (parameters outside every span have zero rows and columns).
        key, label, psd, tags: As for :class:`DenseOperator`.
    """

    label = "Block-diagonal matrix"

    def __init__(
        self,
        spans: Sequence[slice],
        blocks: Sequence[Tensor],
        size: int,
        key: str = "blocks",
        label: str = "",
        psd: bool = False,
        *,
        tags: Tags | None = None,
    ) -> None:
        self.spans = _check_spans(spans, size)
        self.blocks = list(blocks)
        if not self.blocks or len(self.blocks) != len(self.spans):
            raise ValueError(
                f"got {len(self.blocks)} blocks for {len(self.spans)} spans"
            )
        for span, block in zip(self.spans, self.blocks, strict=True):
            width = span.stop - span.start
            if tuple(block.shape) != (width, width):
                raise ValueError(
                    f"block for {span} has shape {tuple(block.shape)}; expected "
                    f"({width}, {width})"
                )
        first = self.blocks[0]
        declared = Tags(psd=psd, block_diagonal=True, exact=True)
        super().__init__(
            size,
            first.dtype,
            first.device,
            key=key,
            label=label or key,
            tags=declared if tags is None else tags,
        )
        if not self.tags.block_diagonal:
            raise ValueError(
                "a BlockDiagonalMatrixOperator must be declared block-diagonal"
            )

    @property
    def block_spans(self) -> tuple[slice, ...]:
        return self.spans

    def _matmat(self, matrix: Tensor) -> Tensor:
        out = torch.zeros_like(matrix)
        for span, block in zip(self.spans, self.blocks, strict=True):
            out[span] = block @ matrix[span]
        return out

    def _dense(self) -> Tensor:
        out = torch.zeros(self.size, self.size, dtype=self.dtype, device=self.device)
        for span, block in zip(self.spans, self.blocks, strict=True):
            out[span, span] = block
        return out

    def _diag(self) -> Tensor:
        out = torch.zeros(self.size, dtype=self.dtype, device=self.device)
        for span, block in zip(self.spans, self.blocks, strict=True):
            out[span] = block.diagonal()
        return out

    def _block(self, span: slice) -> Tensor:
        for own, block in zip(self.spans, self.blocks, strict=True):
            if (own.start, own.stop) == (span.start, span.stop):
                return block
        return super()._block(span)


class MatvecOperator(LinearOperator):
    """An operator known only through a function ``v (P,) -> C v (P,)``.

    The function's output shape is checked on every product.
    """

    label = "Matrix-free operator"

    def __init__(
        self,
        matvec: Callable[[Tensor], Tensor],
        size: int,
        dtype: torch.dtype,
        device: torch.device | str,
        key: str = "matvec",
        label: str = "",
        *,
        tags: Tags | None = None,
    ) -> None:
        self.function = matvec
        super().__init__(size, dtype, device, key=key, label=label or key, tags=tags)

    def _matvec(self, v: Tensor) -> Tensor:
        out = self.function(v)
        if not isinstance(out, Tensor) or out.shape != v.shape:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"curvature {self.key!r} matvec returned {shape}; expected "
                f"{tuple(v.shape)}"
            )
        return out


# --------------------------------------------------------------- combinators
def _same_space(operators: Sequence[Any]) -> tuple[int, torch.dtype, torch.device]:
    first = operators[0]
    for op in operators[1:]:
        if op.size != first.size:
            raise ValueError(
                f"operators of different sizes: P = {first.size} and P = {op.size}"
            )
    return first.size, first.dtype, torch.device(first.device)


def _shared_spans(operators: Sequence[Any]) -> tuple[slice, ...] | None:
    """The common blocks of block-diagonal or diagonal operands, else None."""
    spans: tuple[slice, ...] | None = None
    for op in operators:
        tags = tags_of(op)
        if tags.diagonal:  # compatible with any blocks
            continue
        if not tags.block_diagonal:
            return None
        own = tuple((s.start, s.stop) for s in op.block_spans)
        if spans is None:
            spans = tuple(slice(a, b) for a, b in own)
        elif tuple((s.start, s.stop) for s in spans) != own:
            return None
    return spans


def _sum_tags(operators: Sequence[Any], coefficients: Sequence[float]) -> Tags:
    tags = [tags_of(op) for op in operators]
    return Tags(
        psd=all(t.psd and c >= 0 for t, c in zip(tags, coefficients, strict=True)),
        symmetric=all(t.symmetric for t in tags),
        diagonal=all(t.diagonal for t in tags),
        block_diagonal=_shared_spans(operators) is not None,
        exact=all(t.exact for t in tags),
        sampled=any(t.sampled for t in tags),
    )


class SumOperator(LinearOperator):
    """A₁ + A₂ + ... (lazy: every product is one product of each term)."""

    label = "Sum"

    def __init__(self, *terms: Any, key: str | None = None) -> None:
        if not terms:
            raise ValueError("a sum needs at least one term")
        size, dtype, device = _same_space(terms)
        self.terms = terms
        self._spans = _shared_spans(terms)
        name = key or " + ".join(str(getattr(t, "key", "C")) for t in terms)
        super().__init__(
            size, dtype, device, key=name, tags=_sum_tags(terms, [1.0] * len(terms))
        )

    @property
    def block_spans(self) -> tuple[slice, ...] | None:
        return self._spans

    def _matmat(self, matrix: Tensor) -> Tensor:
        return sum(_public_matmat(term, matrix) for term in self.terms)

    def _diag(self) -> Tensor:
        return sum(term.diag() for term in self.terms)

    def _dense(self) -> Tensor:
        if all(hasattr(t, "dense") for t in self.terms):
            return sum(t.dense() for t in self.terms)
        return super()._dense()


class ScaledOperator(LinearOperator):
    """c·A for a number c (lazy)."""

    label = "Scaled"

    def __init__(self, coefficient: float, operator: Any, key: str | None = None):
        self.coefficient = float(coefficient)
        if self.coefficient != self.coefficient or abs(self.coefficient) == float(
            "inf"
        ):
            raise ValueError(f"coefficient = {coefficient!r} must be finite")
        self.operator = operator
        inner = tags_of(operator)
        tags = inner.replace(
            psd=inner.psd and self.coefficient >= 0,
            exact_solve=inner.exact_solve if self.coefficient > 0 else True,
        )
        name = key or f"{self.coefficient:g}·{getattr(operator, 'key', 'C')}"
        super().__init__(
            operator.size, operator.dtype, operator.device, key=name, tags=tags
        )

    @property
    def block_spans(self) -> tuple[slice, ...] | None:
        return self.operator.block_spans if self.tags.block_diagonal else None

    @property
    def has_dense(self) -> bool:
        return self._dense_cache is not None or bool(
            getattr(self.operator, "has_dense", False)
        )

    @property
    def has_closed_form_solve(self) -> bool:
        c = self.coefficient
        return c == 0 or (
            c > 0 and bool(getattr(self.operator, "has_closed_form_solve", False))
        )

    def kronecker_factors(self) -> tuple[KroneckerBlock, ...]:
        return tuple(
            KroneckerBlock(b.indices, self.coefficient * b.left, b.right)
            for b in self.operator.kronecker_factors()
        )

    def _matmat(self, matrix: Tensor) -> Tensor:
        return self.coefficient * _public_matmat(self.operator, matrix)

    def _diag(self) -> Tensor:
        return self.coefficient * self.operator.diag()

    def _dense(self) -> Tensor:
        return self.coefficient * self.operator.dense()

    def _block(self, span: slice) -> Tensor:
        inner = getattr(self.operator, "_block", None)
        if inner is None:
            return super()._block(span)
        return self.coefficient * inner(span)

    def _solve(self, rhs: Tensor, damping: float, **cg_options: Any) -> Tensor:
        c = self.coefficient
        if c > 0 and hasattr(self.operator, "solve"):
            return self.operator.solve(rhs, damping / c, **cg_options) / c
        if c == 0:
            if damping <= 0:
                raise IndefiniteCurvatureError(self.key, damping, 0.0)
            return rhs / damping
        return super()._solve(rhs, damping, **cg_options)


class RestrictedOperator(LinearOperator):
    """The diagonal block C[s, s] of an operator for a contiguous span s.

    A product embeds v (|s|,) into zeros (P,), multiplies by C and keeps the span:
    one product of the parent per product of the block. The dense block is sliced
    from the parent's dense matrix when that exists.
    """

    label = "Restriction"

    def __init__(self, parent: Any, span: slice, name: str = "") -> None:
        start, stop, step = span.indices(parent.size)
        if step != 1 or stop <= start:
            raise ValueError(f"block {span} must be a non-empty contiguous slice")
        self.parent = parent
        self.span = slice(start, stop)
        inner = tags_of(parent)
        self._spans = self._inner_spans(parent, inner)
        tags = Tags(
            psd=inner.psd,
            symmetric=inner.symmetric,
            diagonal=inner.diagonal,
            block_diagonal=self._spans is not None,
            exact=inner.exact,
            sampled=inner.sampled,
        )
        key = f"{getattr(parent, 'key', 'C')}[{name or f'{start}:{stop}'}]"
        super().__init__(
            stop - start, parent.dtype, parent.device, key=key, label=key, tags=tags
        )

    def _inner_spans(self, parent: Any, inner: Tags) -> tuple[slice, ...] | None:
        if not inner.block_diagonal:
            return None
        out = []
        for span in parent.block_spans:
            start, stop = (
                max(span.start, self.span.start),
                min(span.stop, self.span.stop),
            )
            if stop > start:
                out.append(slice(start - self.span.start, stop - self.span.start))
        return tuple(out) or None

    @property
    def block_spans(self) -> tuple[slice, ...] | None:
        return self._spans

    @property
    def has_dense(self) -> bool:
        return self._dense_cache is not None or bool(
            getattr(self.parent, "has_dense", False)
        )

    def _embed(self, matrix: Tensor) -> Tensor:
        full = torch.zeros(
            self.parent.size, matrix.shape[1], dtype=self.dtype, device=self.device
        )
        full[self.span] = matrix
        return full

    def _matmat(self, matrix: Tensor) -> Tensor:
        return _public_matmat(self.parent, self._embed(matrix))[self.span]

    def _dense(self) -> Tensor:
        cached = _parent_dense(self.parent)
        if cached is not None:
            return cached[self.span, self.span].clone()
        eye = torch.eye(self.size, dtype=self.dtype, device=self.device)
        self.products += self.size
        block = _public_matmat(self.parent, self._embed(eye))[self.span]
        return 0.5 * (block + block.T) if self.tags.symmetric else block


def _parent_dense(parent: Any) -> Tensor | None:
    if isinstance(parent, LinearOperator):
        return parent._dense_cached() if parent.has_dense else None
    cached = getattr(parent, "_dense_cache", None)
    return cached if isinstance(cached, Tensor) else None


def _public_matmat(op: Any, matrix: Tensor) -> Tensor:
    """``op.matmat`` (counting the operand's products), or matvecs column by column."""
    if hasattr(op, "matmat"):
        return op.matmat(matrix)
    return torch.stack([op.matvec(col) for col in matrix.T], 1)


# ----------------------------------------------------------------- functions
def add(*operators: Any) -> SumOperator:
    """A₁ + A₂ + ... as a :class:`SumOperator`."""
    return SumOperator(*operators)


def scale(coefficient: float, operator: Any) -> ScaledOperator:
    """c·A as a :class:`ScaledOperator`."""
    return ScaledOperator(coefficient, operator)


def restrict(operator: Any, span: slice, name: str = "") -> RestrictedOperator:
    """The diagonal block C[span, span] as a :class:`RestrictedOperator`."""
    return RestrictedOperator(operator, span, name)


def combine(
    terms: Sequence[tuple[float, Any]],
    *,
    key: str | None = None,
    label: str | None = None,
    max_dense_params: int | None = None,
    **tag_overrides: bool,
) -> LinearOperator:
    """Σ c_i A_i, materialized in the structure the operands' tags allow.

    Diagonal operands give a :class:`DiagonalMatrixOperator` (from their diagonals),
    block-diagonal ones on shared blocks a :class:`BlockDiagonalMatrixOperator` (from their
    blocks), anything else a :class:`DenseOperator` (refused above
    ``max_dense_params``). The result holds no reference to the operands.

    Args:
        terms: ``((c_1, A_1), (c_2, A_2), ...)``.
        key: The result's key (default: the last operand's).
        label: The result's label.
        max_dense_params: Refuse a dense result above this P (ValueError).
        **tag_overrides: Tags to replace in the result (e.g. ``exact=False``).
    """
    if not terms:
        raise ValueError("combine needs at least one (coefficient, operator) term")
    coefficients = [float(c) for c, _ in terms]
    operators = [op for _, op in terms]
    size, _, _ = _same_space(operators)
    tags = _sum_tags(operators, coefficients).replace(**tag_overrides)
    key = key or str(getattr(operators[-1], "key", "C"))
    names = {"key": key, "label": label or key, "tags": tags}
    if tags.diagonal:
        diagonal = sum(c * op.diag() for c, op in zip(coefficients, operators))
        return DiagonalMatrixOperator(diagonal, **names)
    spans = _shared_spans(operators) if tags.block_diagonal else None
    if spans is not None:
        blocks = [
            sum(c * _block_of(op, span) for c, op in zip(coefficients, operators))
            for span in spans
        ]
        return BlockDiagonalMatrixOperator(spans, blocks, size, **names)
    if max_dense_params is not None and size > max_dense_params:
        raise ValueError(
            f"Σ c_i A_i of unstructured operators is kept as a dense P × P matrix, but "
            f"P = {size:,} > {max_dense_params:,}"
        )
    matrix = sum(c * op.dense() for c, op in zip(coefficients, operators))
    return DenseOperator(matrix, symmetrize=False, **names)


def _block_of(op: Any, span: slice) -> Tensor:
    if tags_of(op).diagonal:
        return torch.diag(op.diag()[span])
    block = getattr(op, "_block", None)
    if block is not None:
        return block(span)
    return restrict(op, span).dense()


# ------------------------------------------------------------ curvatures
class DelegatingOperator(CurvatureOperator):
    """A curvature whose matrix is a :class:`LinearOperator` ``self.linear`` that
    ``_setup`` builds; every hook delegates to it.

    Products spent inside ``linear`` on behalf of this operator are charged to this
    operator's ``products``. ``solve`` uses ``linear``'s solver when that is declared
    exact, and this operator's own (by its declared tags) otherwise.
    """

    abstract = True
    linear: LinearOperator

    def _charged(self, function: Callable[..., Tensor], *args: Any, **kw: Any):
        before = self.linear.products
        out = function(*args, **kw)
        self.products += self.linear.products - before
        return out

    @property
    def has_dense(self) -> bool:
        return self._dense_cache is not None or self.linear.has_dense

    def _delegates_solve(self) -> bool:
        return self.linear.tags.exact_solve or not self.tags.exact_solve

    @property
    def has_closed_form_solve(self) -> bool:
        if self._delegates_solve():
            return self.linear.has_closed_form_solve
        return self.tags.diagonal or self.tags.block_diagonal  # the base solver

    def _matvec(self, v: Tensor) -> Tensor:
        return self._charged(self.linear._matvec, v)

    def _matmat(self, matrix: Tensor) -> Tensor:
        return self._charged(self.linear._matmat, matrix)

    def _dense(self) -> Tensor:
        return self._charged(self.linear._dense_cached)

    def _diag(self) -> Tensor:
        return self._charged(self.linear._diag)

    def _block(self, span: slice) -> Tensor:
        return self._charged(self.linear._block, span)

    def _solve(self, rhs: Tensor, damping: float, **cg_options: Any) -> Tensor:
        if self._delegates_solve():
            return self._charged(self.linear._solve, rhs, damping, **cg_options)
        return super()._solve(rhs, damping, **cg_options)


__all__ = [
    "BlockDiagonalMatrixOperator",
    "DelegatingOperator",
    "DenseOperator",
    "DiagonalMatrixOperator",
    "MatvecOperator",
    "RestrictedOperator",
    "ScaledOperator",
    "SumOperator",
    "add",
    "combine",
    "restrict",
    "scale",
]
