"""The :class:`CurvatureOperator` base class: a P × P matrix at a fixed θ.

An operator is built from ``(problem, theta, batch=None, generator=None, **options)``
and is immutable afterwards. A subclass writes one of ``_matvec``, ``_matmat`` or
``_dense``; the base class supplies ``matvec``, ``matmat``, ``dense`` (with a size
guard), ``diag`` and ``solve`` (Cholesky when dense, conjugate gradients otherwise)
and replaces none of a subclass's cheaper closed forms. Public methods validate and
count curvature-vector products (``products``), then call the private hook.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from explorer.curvature.linearization import identity_columns
from explorer.curvature.solvers import (
    IndefiniteCurvatureError,
    conjugate_gradient,
    damped_cholesky,
    solve_with_factor,
)
from explorer.options import Option, resolve_options
from explorer.problems.base import Batch, Problem

#: ``dense()`` refuses matrices larger than this (overridable per call).
DENSE_LIMIT_BYTES = 2 * 2**30
#: ``solve`` factorizes the dense matrix up to this P, and uses CG above it.
DENSE_SOLVE_MAX_PARAMS = 6000
#: Working memory aimed at per block of columns in blockwise products.
BLOCK_BYTES = 256 * 2**20


class DenseTooLargeError(ValueError):
    """A dense P × P matrix was requested that would not fit the memory limit."""


class CurvatureOperator:
    """A curvature matrix of the objective h at θ on a batch (1/N convention).

    Class attributes (declared, not guessed):
        key: Registry key.
        label: Human-readable name.
        description: The definition in words.
        psd: Whether the matrix is positive semi-definite for every input.
        exact: Whether it is the exact matrix its name defines (no sampling, no
            structural approximation).
        reference: The exact matrix it approximates (``"fisher"``, ``"ggn"``...), if
            any: the default reference for approximation-quality checks.
        options_schema: Declared options.
        needs_layers: Whether it needs the problem's linear layers (K-FAC, blocks).

    Attributes:
        problem: The problem.
        theta: The point (P,), detached.
        batch: The examples the curvature averages over.
        generator: The ``torch.Generator`` for any sampling (seed 0 when omitted).
        options: The resolved options.
        products: Curvature-vector products performed so far (cost accounting).
    """

    key: ClassVar[str] = "custom"
    label: ClassVar[str] = "Custom curvature"
    description: ClassVar[str] = ""
    psd: ClassVar[bool] = False
    exact: ClassVar[bool] = False
    reference: ClassVar[str | None] = None
    options_schema: ClassVar[tuple[Option, ...]] = ()
    needs_layers: ClassVar[bool] = False

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
        self.batch = problem.batch() if batch is None else batch
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
        self.products = 0
        self._dense_cache: Tensor | None = None
        self._factor_cache: tuple[float, Tensor] | None = None  # (λ, chol(C + λI))
        self._setup()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        hooks = ("_matvec", "_matmat", "_dense")
        if not any(
            getattr(cls, hook) is not getattr(CurvatureOperator, hook) for hook in hooks
        ):
            raise TypeError(f"{cls.__name__} must implement _matvec, _matmat or _dense")

    def _setup(self) -> None:
        """Precomputation at construction (linearizations, factors)."""

    # ----------------------------------------------------------------- sizes
    @property
    def size(self) -> int:
        """P."""
        return self.theta.numel()

    @property
    def shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    @property
    def dtype(self) -> torch.dtype:
        return self.theta.dtype

    @property
    def device(self) -> torch.device:
        return self.theta.device

    @property
    def dense_bytes(self) -> int:
        """Memory a dense copy would take."""
        return self.size**2 * self.theta.element_size()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(key={self.key!r}, P={self.size}, "
            f"N={self.batch.size}, options={self.options})"
        )

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
        if type(self)._matmat is not CurvatureOperator._matmat:
            return self._matmat(v.unsqueeze(1)).squeeze(1)
        return self._dense_cached() @ v

    def _matmat(self, matrix: Tensor) -> Tensor:
        if type(self)._matvec is not CurvatureOperator._matvec:
            return torch.stack([self._matvec(col) for col in matrix.T], 1)
        return self._dense_cached() @ matrix

    # ------------------------------------------------------------------ dense
    def column_block_size(self) -> int:
        """How many columns one blockwise product handles (memory-bounded)."""
        per_column = max(1, self.batch.size) * max(1, self.problem.num_outputs) * 32
        per_column = max(per_column, self.size) * self.theta.element_size()
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
            columns = identity_columns(self.size, start, stop, self.theta).T
            out[:, start:stop] = self._matmat(columns)
        return out

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
            columns = identity_columns(self.size, start, stop, self.theta).T
            self.products += stop - start
            block = self._matmat(columns)
            out[start:stop] = block[start:stop].diagonal()
        return out

    # ------------------------------------------------------------------ solve
    def solve(self, rhs: Tensor, damping: float = 0.0, **cg_options: Any) -> Tensor:
        """(C + λI)⁻¹ b for b (P,) or (P, K).

        Dense Cholesky up to P = 6,000, conjugate gradients above (``cg_options``
        such as ``rtol`` and ``maxiter`` are passed on); closed forms where the
        structure allows (diagonal, blocks, K-FAC).

        Raises:
            IndefiniteCurvatureError: C + λI is not positive definite; the message
                gives the smallest eigenvalue where known and the remedy.
        """
        damping = _check_damping(damping)
        rhs = (
            self._check_vector(rhs, "b")
            if rhs.dim() == 1
            else self._check_matrix(rhs, "b")
        )
        with torch.no_grad():
            return self._solve(rhs, damping, **cg_options)

    def _solve(self, rhs: Tensor, damping: float, **cg_options: Any) -> Tensor:
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

    def _cg(self, rhs: Tensor, damping: float, **cg_options: Any) -> Tensor:
        def damped(v: Tensor) -> Tensor:
            self.products += 1
            return self._matvec(v) + damping * v

        result = conjugate_gradient(damped, rhs, **cg_options)
        if result.negative_curvature:
            raise IndefiniteCurvatureError(self.key, damping, None)
        return result.solution


def _check_damping(damping: float) -> float:
    value = float(damping)
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"damping = {damping!r} must be a finite number ≥ 0")
    return value
