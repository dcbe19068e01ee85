"""The operator base classes: :class:`LinearOperator` and :class:`CurvatureOperator`.

:class:`LinearOperator` is a P × P matrix known through products, with no problem
attached: ``size``, ``dtype``, ``device``, a ``products`` counter, declared
:class:`~explorer.curvature.tags.Tags` and ``matvec``, ``matmat``, ``dense`` (with a
size guard), ``diag`` and ``solve``. The solver follows the declared structure:
a diagonal operator divides, a block-diagonal one factorizes its blocks, anything
else is factorized densely by Cholesky when small and solved by conjugate gradients
otherwise. The small operator algebra (:mod:`explorer.curvature.algebra`) builds on it.

:class:`CurvatureOperator` is a curvature matrix of a problem at a fixed θ, built from
``(problem, theta, batch=None, generator=None, **options)`` and immutable afterwards.
A subclass writes one of ``_matvec``, ``_matmat`` or ``_dense``; the base classes
supply the rest and replace none of a subclass's cheaper closed forms. Public methods
validate and count curvature-vector products (``products``), then call the private
hook.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import Tensor

from explorer.curvature.coverage import coverage_from_mask, coverage_from_spans
from explorer.curvature.solvers import (
    IndefiniteCurvatureError,
    conjugate_gradient,
    damped_cholesky,
    solve_with_factor,
)
from explorer.curvature.tags import LINEAR_LAYERS, KroneckerBlock, Requirement, Tags
from explorer.options import Option, resolve_options
from explorer.problems.base import Batch, Problem

#: ``dense()`` refuses matrices larger than this (overridable per call).
DENSE_LIMIT_BYTES = 2 * 2**30
#: ``solve`` factorizes the dense matrix (or a block) up to this P, and uses CG above.
DENSE_SOLVE_MAX_PARAMS = 6000
#: Working memory aimed at per block of columns in blockwise products.
BLOCK_BYTES = 256 * 2**20

_HOOKS = ("_matvec", "_matmat", "_dense")


class DenseTooLargeError(ValueError):
    """A dense P × P matrix was requested that would not fit the memory limit."""


def unit_columns(
    size: int, start: int, stop: int, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """Columns ``start:stop`` of the (size × size) identity, shape (size, stop − start)."""
    columns = torch.zeros(size, stop - start, dtype=dtype, device=device)
    columns[torch.arange(start, stop), torch.arange(stop - start)] = 1
    return columns


def _fold_legacy_flags(cls: type) -> None:
    """``psd = True`` / ``exact = True`` / ``needs_layers = True`` class attributes
    (the plugin interface before tags) become part of ``declared`` / ``needs``.
    """
    own = cls.__dict__
    flags = {
        name: own[name]
        for name in ("psd", "exact")
        if name in own and isinstance(own[name], bool)
    }
    if flags:
        cls.declared = dataclasses.replace(cls.declared, **flags)
        for name in flags:
            delattr(cls, name)
    if isinstance(own.get("needs_layers"), bool):
        if own["needs_layers"] and LINEAR_LAYERS not in cls.needs:
            cls.needs = (*cls.needs, LINEAR_LAYERS)
        delattr(cls, "needs_layers")


class LinearOperator:
    """A P × P matrix known through products, with declared structure.

    A subclass writes one of ``_matvec``, ``_matmat`` or ``_dense`` (and may replace
    ``_diag``, ``_solve`` and ``_block`` with closed forms). Structure is declared:
    the class attribute ``declared`` holds the :class:`Tags` of every instance unless
    ``__init__`` is given instance ``tags`` (an algebra result takes its operands').

    Attributes:
        key: A short name for messages (the registry key for curvatures).
        label: A human-readable name.
        tags: The declared :class:`Tags` of this instance.
        products: Matrix-vector products performed so far (cost accounting).
    """

    key: str = "C"
    label: str = "Linear operator"
    declared: ClassVar[Tags] = Tags()
    #: Set on intermediate base classes that implement no product themselves.
    abstract: ClassVar[bool] = True

    def __init__(
        self,
        size: int,
        dtype: torch.dtype,
        device: torch.device | str,
        *,
        key: str | None = None,
        label: str | None = None,
        tags: Tags | None = None,
    ) -> None:
        if int(size) < 1:
            raise ValueError(f"an operator needs size ≥ 1, got {size}")
        self._size = int(size)
        self._dtype = dtype
        self._device = torch.device(device)
        if key is not None:
            self.key = key
        if label:
            self.label = label
        elif key is not None:
            self.label = key
        self._tags = type(self).declared if tags is None else tags
        self.products = 0
        self._dense_cache: Tensor | None = None
        self._factor_cache: tuple[float, Any] | None = None  # (λ, factor(s))

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _fold_legacy_flags(cls)
        if cls.__dict__.get("abstract", False):
            return
        cls.abstract = False
        if not any(
            getattr(cls, hook) is not getattr(LinearOperator, hook) for hook in _HOOKS
        ):
            raise TypeError(f"{cls.__name__} must implement _matvec, _matmat or _dense")

    # ------------------------------------------------------------ structure
    @property
    def tags(self) -> Tags:
        """The declared structure of this operator."""
        return self._tags

    @property
    def psd(self) -> bool:
        """Declared positive semi-definite."""
        return self._tags.psd

    @property
    def exact(self) -> bool:
        """Declared exactly the matrix its name defines."""
        return self._tags.exact

    @property
    def block_spans(self) -> tuple[slice, ...] | None:
        """The diagonal blocks where ``tags.block_diagonal``; None otherwise."""
        return None

    def kronecker_factors(self) -> tuple[KroneckerBlock, ...]:
        """The factors of each block where ``tags.kronecker``."""
        raise ValueError(f"{self.key} is not declared Kronecker-factored")

    # ----------------------------------------------------------------- sizes
    @property
    def size(self) -> int:
        """P."""
        return self._size

    @property
    def shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def element_size(self) -> int:
        return torch.empty((), dtype=self.dtype).element_size()

    @property
    def dense_bytes(self) -> int:
        """Memory a dense copy would take."""
        return self.size**2 * self.element_size

    @property
    def has_dense(self) -> bool:
        """Whether a dense copy exists already (``dense()`` costs no products)."""
        return self._dense_cache is not None

    @property
    def has_closed_form_solve(self) -> bool:
        """Whether ``solve`` is cheaper than a dense factorization or CG: declared
        diagonal or block-diagonal, or a class that replaces the generic solver.
        """
        return (
            self._tags.diagonal
            or self._tags.block_diagonal
            or type(self)._solve is not LinearOperator._solve
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r}, P={self.size})"

    # ------------------------------------------------------------ validation
    def _check_vector(self, v: Tensor, name: str = "v") -> Tensor:
        if not isinstance(v, Tensor) or v.shape != (self.size,):
            shape = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise ValueError(f"{name} has shape {shape}; expected ({self.size},)")
        return v.to(dtype=self.dtype, device=self.device)

    def _check_matrix(self, matrix: Tensor, name: str = "V") -> Tensor:
        if (
            not isinstance(matrix, Tensor)
            or matrix.dim() != 2
            or matrix.shape[0] != self.size
        ):
            shape = (
                tuple(matrix.shape)
                if isinstance(matrix, Tensor)
                else type(matrix).__name__
            )
            raise ValueError(f"{name} has shape {shape}; expected ({self.size}, K)")
        return matrix.to(dtype=self.dtype, device=self.device)

    # --------------------------------------------------------------- products
    def matvec(self, v: Tensor) -> Tensor:
        """C v for v (P,)."""
        v = self._check_vector(v)
        self.products += 1
        with torch.no_grad():
            return self._matvec(v)

    def matmat(self, matrix: Tensor) -> Tensor:
        """C V for V (P, K)."""
        matrix = self._check_matrix(matrix)
        self.products += matrix.shape[1]
        with torch.no_grad():
            return self._matmat(matrix)

    def __matmul__(self, other: Tensor) -> Tensor:
        return self.matvec(other) if other.dim() == 1 else self.matmat(other)

    def _matvec(self, v: Tensor) -> Tensor:
        if type(self)._matmat is not LinearOperator._matmat:
            return self._matmat(v.unsqueeze(1)).squeeze(1)
        return self._dense_cached() @ v

    def _matmat(self, matrix: Tensor) -> Tensor:
        if type(self)._matvec is not LinearOperator._matvec:
            return torch.stack([self._matvec(col) for col in matrix.T], 1)
        return self._dense_cached() @ matrix

    # ------------------------------------------------------------------ dense
    def column_block_size(self) -> int:
        """How many columns one blockwise product handles (memory-bounded)."""
        per_column = self.size * self.element_size
        return int(max(1, min(self.size, BLOCK_BYTES // per_column)))

    def dense(self, max_bytes: int | None = None) -> Tensor:
        """The P × P matrix, refused above ``max_bytes`` (default 2 GiB)."""
        limit = DENSE_LIMIT_BYTES if max_bytes is None else max_bytes
        if self.dense_bytes > limit:
            raise DenseTooLargeError(
                f"a dense {self.label} with P = {self.size:,} needs "
                f"{self.dense_bytes / 2**20:,.0f} MiB, above the limit of "
                f"{limit / 2**20:,.0f} MiB; use matrix-free methods (matvec, Lanczos, "
                "CG) or a smaller model"
            )
        return self._dense_cached().clone()

    def _dense_cached(self) -> Tensor:
        if self._dense_cache is None:
            with torch.no_grad():
                self._dense_cache = self._dense()
        return self._dense_cache

    def _dense(self) -> Tensor:
        """Default: products with blocks of identity columns (P products)."""
        self.products += self.size
        out = torch.empty(self.size, self.size, dtype=self.dtype, device=self.device)
        step = self.column_block_size()
        for start in range(0, self.size, step):
            stop = min(start + step, self.size)
            columns = unit_columns(self.size, start, stop, self.dtype, self.device)
            out[:, start:stop] = self._matmat(columns)
        return out

    def _block(self, span: slice) -> Tensor:
        """The diagonal block C[span, span] (|span| products unless dense exists)."""
        if self._dense_cache is not None:
            return self._dense_cache[span, span]
        columns = unit_columns(
            self.size, span.start, span.stop, self.dtype, self.device
        )
        self.products += span.stop - span.start
        return self._matmat(columns)[span]

    # --------------------------------------------------------------- diagonal
    def diag(self) -> Tensor:
        """The diagonal (P,)."""
        with torch.no_grad():
            return self._diag()

    def _diag(self) -> Tensor:
        """Default: the dense diagonal when small, else blocks of unit columns."""
        if self._dense_cache is not None or self.dense_bytes <= BLOCK_BYTES:
            return self._dense_cached().diagonal().clone()
        out = torch.empty(self.size, dtype=self.dtype, device=self.device)
        step = self.column_block_size()
        for start in range(0, self.size, step):
            stop = min(start + step, self.size)
            columns = unit_columns(self.size, start, stop, self.dtype, self.device)
            self.products += stop - start
            block = self._matmat(columns)
            out[start:stop] = block[start:stop].diagonal()
        return out

    # ------------------------------------------------------------------ solve
    def solve(self, rhs: Tensor, damping: float = 0.0, **cg_options: Any) -> Tensor:
        """(C + λI)⁻¹ b for b (P,) or (P, K).

        By the declared structure: a diagonal divides, a block-diagonal factorizes
        each block; otherwise dense Cholesky up to P = 6,000 and conjugate gradients
        above (``cg_options`` such as ``rtol`` and ``maxiter`` are passed on).
        Subclasses replace this with closed forms (K-FAC).

        Raises:
            IndefiniteCurvatureError: C + λI is not positive definite; the message
                gives the smallest eigenvalue where known and the remedy.
        """
        damping = check_damping(damping)
        rhs = (
            self._check_vector(rhs, "b")
            if rhs.dim() == 1
            else self._check_matrix(rhs, "b")
        )
        with torch.no_grad():
            return self._solve(rhs, damping, **cg_options)

    def _solve(self, rhs: Tensor, damping: float, **cg_options: Any) -> Tensor:
        if self._tags.diagonal:
            return diagonal_solve(self._diag(), rhs, damping, self.key)
        spans = self.block_spans if self._tags.block_diagonal else None
        if spans is not None and all(
            s.stop - s.start <= DENSE_SOLVE_MAX_PARAMS for s in spans
        ):
            return self._block_solve(spans, rhs, damping)
        if (
            self.size <= DENSE_SOLVE_MAX_PARAMS
            and self.dense_bytes <= DENSE_LIMIT_BYTES
        ):
            return solve_with_factor(self._factor(damping), rhs)
        columns = rhs.unsqueeze(1) if rhs.dim() == 1 else rhs
        solutions = [self._cg(col, damping, **cg_options) for col in columns.T]
        out = torch.stack(solutions, 1)
        return out.squeeze(1) if rhs.dim() == 1 else out

    def _factor(self, damping: float) -> Tensor:
        """chol(C + λI), kept for the last λ: repeated solves (Lanczos over
        (C + λI)⁻¹, several right-hand sides) factorize once.
        """
        if self._factor_cache is None or self._factor_cache[0] != damping:
            factor = damped_cholesky(self._dense_cached(), damping, self.key)
            self._factor_cache = (damping, factor)
        return self._factor_cache[1]

    def _block_solve(
        self, spans: tuple[slice, ...], rhs: Tensor, damping: float
    ) -> Tensor:
        """Per-block Cholesky, factors kept for the last λ. Parameters outside every
        block have zero rows (declared block-diagonal), so there x = b / λ.
        """
        if self._factor_cache is None or self._factor_cache[0] != damping:
            factors = [
                damped_cholesky(self._block(span), damping, self.key) for span in spans
            ]
            self._factor_cache = (damping, factors)
        factors = self._factor_cache[1]
        covered = torch.zeros(self.size, dtype=torch.bool, device=self.device)
        out = torch.empty_like(rhs)
        for span, factor in zip(spans, factors, strict=True):
            out[span] = solve_with_factor(factor, rhs[span])
            covered[span] = True
        if not bool(covered.all()):
            if damping <= 0:
                raise IndefiniteCurvatureError(self.key, damping, 0.0)
            out[~covered] = rhs[~covered] / damping
        return out

    def _cg(self, rhs: Tensor, damping: float, **cg_options: Any) -> Tensor:
        def damped(v: Tensor) -> Tensor:
            self.products += 1
            return self._matvec(v) + damping * v

        result = conjugate_gradient(damped, rhs, **cg_options)
        if result.negative_curvature:
            raise IndefiniteCurvatureError(self.key, damping, None)
        return result.solution


class CurvatureOperator(LinearOperator):
    """A curvature matrix of the objective h at θ on a batch (1/N convention).

    Class attributes (declared, not guessed):
        key: Registry key.
        label: Human-readable name.
        description: The definition in words.
        declared: The :class:`Tags` that hold on every problem; ``tags_for`` refines
            them for a problem and options. (A plugin may still write ``psd = True``
            or ``exact = True`` as class attributes: they are folded into
            ``declared``.)
        needs: :class:`Requirement` s on the problem (K-FAC: an MLP).
        reference: The exact matrix it approximates (``"fisher"``, ``"ggn"``...), if
            any: the default reference for approximation-quality checks.
        options_schema: Declared options.

    Attributes:
        problem: The problem.
        theta: The point (P,), detached.
        batch: The examples the curvature averages over.
        generator: The ``torch.Generator`` for any sampling (seed 0 when omitted).
        options: The resolved options.
        tags: ``tags_for(problem, options)``.
        products: Curvature-vector products performed so far (cost accounting).
    """

    key = "custom"
    label = "Custom curvature"
    description: ClassVar[str] = ""
    needs: ClassVar[tuple[Requirement, ...]] = ()
    reference: ClassVar[str | None] = None
    options_schema: ClassVar[tuple[Option, ...]] = ()
    abstract = True

    def __init__(
        self,
        problem: Problem,
        theta: Tensor,
        batch: Batch | None = None,
        generator: torch.Generator | None = None,
        **options: Any,
    ) -> None:
        self.problem = problem
        self.theta = problem.check_theta(theta).detach()
        self.batch = problem.resolve_batch(batch)  # batch=-1: a ValueError, named
        if self.batch.size < 1:
            raise ValueError("the batch is empty; curvature needs at least one example")
        self.generator = (
            torch.Generator(device="cpu").manual_seed(0)
            if generator is None
            else generator
        )
        self.options = resolve_options(
            self.options_schema, options, where=f"curvature {self.key!r}"
        )
        reason = type(self).incompatibility(problem, self.options)
        if reason is not None:
            raise ValueError(reason)
        super().__init__(
            self.theta.numel(),
            self.theta.dtype,
            self.theta.device,
            tags=type(self).tags_for(problem, self.options),
        )
        self._setup()

    def _setup(self) -> None:
        """Precomputation at construction (linearizations, factors)."""

    # ------------------------------------------------------------ structure
    @classmethod
    def tags_for(
        cls, problem: Problem | None = None, options: dict[str, Any] | None = None
    ) -> Tags:
        """The :class:`Tags` of this curvature on ``problem`` with ``options``.

        Without a problem: what holds on every problem. The default is the class's
        ``declared`` tags; classes whose structure depends on the problem or the
        options override this (the GGN is PSD iff the loss is convex).
        """
        return cls.declared

    @classmethod
    def incompatibility(
        cls, problem: Problem, options: dict[str, Any] | None = None
    ) -> str | None:
        """Why this curvature cannot be built on ``problem``, with the remedy; or
        None when it can.
        """
        for requirement in cls.needs:
            reason = requirement.incompatibility(cls.label, problem)
            if reason is not None:
                return reason
        return None

    @classmethod
    def resolved(cls, options: dict[str, Any] | None) -> dict[str, Any]:
        """``options`` validated against ``options_schema``, defaults filled in."""
        return resolve_options(
            cls.options_schema, dict(options or {}), where=f"curvature {cls.key!r}"
        )

    @property
    def block_spans(self) -> tuple[slice, ...] | None:
        """One block per layer (``problem.blocks()``) where block-diagonal."""
        if not self._tags.block_diagonal:
            return None
        return tuple(span for _, span in self.problem.blocks())

    def coverage(self) -> dict[str, str]:
        """For each named parameter, how this matrix keeps it (a kind of
        :data:`~explorer.curvature.coverage.COVERAGE_KINDS`).

        Derived from the declared structure: a diagonal operator keeps diagonals, a
        Kronecker-factored one the parameters inside its factors' blocks, a
        block-diagonal one those inside its blocks; anything else keeps every
        parameter in full. A parameter outside every block is ``none``.
        """
        declared = type(self).declared_coverage(self.problem, self.options)
        if declared is not None:
            return declared
        tags, problem = self._tags, self.problem
        if tags.kronecker:
            kept = torch.zeros(self.size, dtype=torch.bool)
            for block in self.kronecker_factors():
                kept[block.indices.cpu()] = True
            return coverage_from_mask(problem, kept, "kronecker")
        return coverage_from_spans(problem, self.block_spans or (), "block")

    @classmethod
    def declared_coverage(
        cls, problem: Problem, options: dict[str, Any] | None = None
    ) -> dict[str, str] | None:
        """The coverage the declared tags decide without building the operator, or
        None where only an instance knows (its Kronecker factors, or blocks other
        than one per module).

        Diagonal: every parameter ``diagonal``; neither block-diagonal nor
        Kronecker: ``full``; block-diagonal with the default one block per module
        (``problem.blocks()`` holds every parameter): ``block``.
        """
        tags = cls.tags_for(problem, options)
        if tags.diagonal:
            return dict.fromkeys(problem.param_names, "diagonal")
        if not tags.block_diagonal:
            return dict.fromkeys(problem.param_names, "full")
        if tags.kronecker or cls.block_spans is not CurvatureOperator.block_spans:
            return None
        spans = [span for _, span in problem.blocks()]
        return coverage_from_spans(problem, spans, "block")

    # ----------------------------------------------------------------- sizes
    @property
    def element_size(self) -> int:
        return self.theta.element_size()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(key={self.key!r}, P={self.size}, "
            f"N={self.batch.size}, options={self.options})"
        )

    def column_block_size(self) -> int:
        """How many columns one blockwise product handles (memory-bounded)."""
        per_column = max(1, self.batch.size) * max(1, self.problem.num_outputs) * 32
        per_column = max(per_column, self.size) * self.element_size
        return int(max(1, min(self.size, BLOCK_BYTES // per_column)))


def check_damping(damping: float) -> float:
    """``damping`` as a float; ValueError unless finite and ≥ 0."""
    value = float(damping)
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"damping = {damping!r} must be a finite number ≥ 0")
    return value


def diagonal_solve(diagonal: Tensor, rhs: Tensor, damping: float, key: str) -> Tensor:
    """(diag(d) + λI)⁻¹ b for b (P,) or (P, K); refuses d + λ ≤ 0."""
    shifted = diagonal + damping
    if float(shifted.min()) <= 0:
        raise IndefiniteCurvatureError(key, damping, float(shifted.min()))
    return rhs / (shifted if rhs.dim() == 1 else shifted.unsqueeze(1))
