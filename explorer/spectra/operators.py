"""The symmetric operators the spectral tools accept, and two small adapters.

Every function in :mod:`explorer.spectra` takes a *symmetric operator*: anything with
``size`` (P), ``dtype``, ``device``, ``products`` (a counter) and ``matvec(v)`` for
v (P,). :class:`~explorer.curvature.CurvatureOperator` qualifies, so does
:class:`DenseOperator` (a tensor) and :class:`BlockRestriction` (one diagonal block of
another operator). :func:`as_operator` turns a tensor into a :class:`DenseOperator`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from explorer.curvature.base import DENSE_LIMIT_BYTES, DenseTooLargeError
from explorer.curvature.solvers import damped_cholesky, solve_with_factor


@runtime_checkable
class SymmetricOperator(Protocol):
    """A symmetric P × P matrix known through products."""

    products: int

    @property
    def size(self) -> int: ...

    @property
    def dtype(self) -> torch.dtype: ...

    @property
    def device(self) -> torch.device: ...

    def matvec(self, v: Tensor) -> Tensor:
        """C v for v (P,)."""
        ...


class DenseOperator:
    """A dense symmetric (P, P) tensor as an operator (tests, small matrices).

    Args:
        matrix: The (P, P) matrix; only its symmetric part (M + Mᵀ)/2 is used.
        key: A short name for messages.
        label: A human-readable name.
        psd: Whether the matrix is declared positive semi-definite.
    """

    exact = True
    reference = None

    def __init__(
        self, matrix: Tensor, key: str = "matrix", label: str = "", psd: bool = False
    ) -> None:
        if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(
                f"matrix has shape {tuple(matrix.shape)}; expected a square (P, P)"
            )
        self.matrix = 0.5 * (matrix + matrix.T)
        self.key = key
        self.label = label or key
        self.psd = psd
        self.products = 0
        self._factor: tuple[float, Tensor] | None = None  # (λ, chol(C + λI))

    @property
    def size(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return self.matrix.dtype

    @property
    def device(self) -> torch.device:
        return self.matrix.device

    def matvec(self, v: Tensor) -> Tensor:
        self.products += 1
        return self.matrix @ v

    def matmat(self, matrix: Tensor) -> Tensor:
        self.products += matrix.shape[1]
        return self.matrix @ matrix

    def dense(self, max_bytes: int | None = None) -> Tensor:
        return self.matrix.clone()

    def diag(self) -> Tensor:
        return self.matrix.diagonal().clone()

    def solve(self, rhs: Tensor, damping: float = 0.0, **_: Any) -> Tensor:
        damping = float(damping)
        if self._factor is None or self._factor[0] != damping:  # once per λ
            self._factor = (damping, damped_cholesky(self.matrix, damping, self.key))
        return solve_with_factor(self._factor[1], rhs)


class BlockRestriction:
    """The diagonal block C[s, s] of an operator for a slice ``s`` of parameters.

    A product embeds v (|s|,) into zeros (P,), multiplies by C and keeps the slice:
    one product of the parent per product of the block.
    """

    exact = True
    reference = None

    def __init__(self, parent: SymmetricOperator, span: slice, name: str = "") -> None:
        start, stop, step = span.indices(parent.size)
        if step != 1 or stop <= start:
            raise ValueError(f"block {span} must be a non-empty contiguous slice")
        self.parent = parent
        self.span = slice(start, stop)
        self.key = f"{getattr(parent, 'key', 'C')}[{name or f'{start}:{stop}'}]"
        self.label = self.key
        self.psd = bool(getattr(parent, "psd", False))
        self.products = 0

    @property
    def size(self) -> int:
        return self.span.stop - self.span.start

    @property
    def dtype(self) -> torch.dtype:
        return self.parent.dtype

    @property
    def device(self) -> torch.device:
        return self.parent.device

    def matvec(self, v: Tensor) -> Tensor:
        full = torch.zeros(self.parent.size, dtype=self.dtype, device=self.device)
        full[self.span] = v
        self.products += 1
        return self.parent.matvec(full)[self.span]

    def dense(self, max_bytes: int | None = None) -> Tensor:
        limit = DENSE_LIMIT_BYTES if max_bytes is None else max_bytes
        element = torch.empty((), dtype=self.dtype).element_size()
        if self.size**2 * element > limit:
            raise DenseTooLargeError(
                f"a dense block of size {self.size:,} exceeds {limit / 2**20:,.0f} MiB"
            )
        cached = getattr(self.parent, "_dense_cache", None)
        if cached is not None:
            return cached[self.span, self.span].clone()
        columns = torch.zeros(
            self.parent.size, self.size, dtype=self.dtype, device=self.device
        )
        columns[self.span] = torch.eye(self.size, dtype=self.dtype, device=self.device)
        self.products += self.size
        if hasattr(self.parent, "matmat"):
            block = self.parent.matmat(columns)[self.span]
        else:
            block = torch.stack([self.parent.matvec(c) for c in columns.T], 1)
            block = block[self.span]
        return 0.5 * (block + block.T)


def as_operator(obj: Any, key: str = "matrix") -> SymmetricOperator:
    """``obj`` itself when it is an operator; a :class:`DenseOperator` for a tensor."""
    if isinstance(obj, Tensor):
        return DenseOperator(obj, key=key)
    if isinstance(obj, SymmetricOperator):
        return obj
    raise ValueError(
        f"expected a curvature operator or a (P, P) tensor, got {type(obj).__name__}"
    )


def operator_key(op: Any) -> str:
    """The operator's registry key, or ``"C"``."""
    return str(getattr(op, "key", "C"))


def random_vector(
    size: int,
    like: Tensor | None,
    generator: torch.Generator | None,
    kind: str = "normal",
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | None = None,
) -> Tensor:
    """A random (P,) vector drawn on the generator's device (CPU by default).

    Drawing on the generator's device and then moving it gives the same vector on
    CPU and GPU for the same seed.

    Args:
        size: P.
        like: A tensor whose dtype and device the result takes (or pass them).
        generator: The ``torch.Generator`` (a fresh seed-0 one when None).
        kind: ``"normal"`` (standard Gaussian) or ``"rademacher"`` (±1).
        dtype: Overrides ``like``'s dtype.
        device: Overrides ``like``'s device.
    """
    if generator is None:
        generator = torch.Generator(device="cpu").manual_seed(0)
    dtype = dtype or (like.dtype if like is not None else torch.float64)
    device = device or (like.device if like is not None else torch.device("cpu"))
    where = generator.device
    if kind == "rademacher":
        draw = torch.randint(0, 2, (size,), generator=generator, device=where)
        draw = 2.0 * draw.to(torch.float64) - 1.0
    elif kind == "normal":
        draw = torch.randn(size, generator=generator, device=where, dtype=torch.float64)
    else:
        raise ValueError(f"probe kind = {kind!r} must be 'normal' or 'rademacher'")
    return draw.to(device=device, dtype=dtype)
