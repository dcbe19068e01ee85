"""The symmetric operators the spectral tools accept.

Every function in :mod:`explorer.spectra` takes a *symmetric operator*: anything with
``size`` (P), ``dtype``, ``device``, ``products`` (a counter) and ``matvec(v)`` for
v (P,). Every :class:`~explorer.curvature.base.LinearOperator` qualifies: a
:class:`~explorer.CurvatureOperator`, and the operator algebra's results
(:mod:`explorer.curvature.algebra`), among them
:class:`~explorer.curvature.algebra.DenseOperator` (a tensor) and
:class:`~explorer.curvature.algebra.RestrictedOperator` (one diagonal block of
another operator). :func:`as_operator` turns a tensor into a ``DenseOperator``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from explorer.curvature.algebra import DenseOperator


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


def as_operator(obj: Any, key: str = "matrix") -> SymmetricOperator:
    """``obj`` itself when it is an operator; a (symmetrized)
    :class:`~explorer.curvature.algebra.DenseOperator` for a tensor.
    """
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
