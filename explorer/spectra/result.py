"""The :class:`Eigenpairs` result shared by the dense and Lanczos eigensolvers."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Eigenpairs:
    """Eigenvalues (ascending) and optionally eigenvectors of a symmetric operator.

    Attributes:
        eigenvalues: (K,) in ascending order, on the CPU in float64.
        eigenvectors: (P, K) orthonormal columns matching ``eigenvalues`` (in the
            operator's dtype and device), or None when not requested. For a
            generalized problem A x = θ M x they are M-orthonormal.
        residuals: (K,) residual norms ‖C y − θ y‖ (zero-ish for the dense solver).
        converged: Whether every requested pair met the tolerance.
        method: ``"dense"`` or ``"lanczos"``.
        products: Matrix-vector products spent (0 for dense when the matrix was
            already cached).
        size: P, the operator's dimension.
        which: What was asked for: ``"all"``, ``"largest"``, ``"smallest"``,
            ``"both"`` or ``"magnitude"``.
    """

    eigenvalues: Tensor
    eigenvectors: Tensor | None
    residuals: Tensor
    converged: bool
    method: str
    products: int
    size: int
    which: str = "all"

    def __len__(self) -> int:
        return int(self.eigenvalues.numel())

    def top(self, k: int) -> Tensor:
        """The k largest eigenvalues, largest first (k,)."""
        return self.eigenvalues.flip(0)[:k]

    def bottom(self, k: int) -> Tensor:
        """The k smallest eigenvalues, smallest first (k,)."""
        return self.eigenvalues[:k]

    def top_vectors(self, k: int) -> Tensor:
        """Eigenvectors (P, k) of the k largest eigenvalues, largest first."""
        if self.eigenvectors is None:
            raise ValueError("eigenvectors were not computed; pass vectors=True")
        return self.eigenvectors.flip(1)[:, :k]

    @property
    def num_negative(self) -> int:
        """How many of the computed eigenvalues are below zero."""
        return int((self.eigenvalues < 0).sum())

    def to_dict(self) -> dict:
        """Plain data for JSON (eigenvalues ascending, no vectors)."""
        return {
            "eigenvalues": self.eigenvalues.tolist(),
            "residuals": self.residuals.tolist(),
            "converged": bool(self.converged),
            "method": self.method,
            "products": int(self.products),
            "size": int(self.size),
            "which": self.which,
        }


def select_indices(values: Tensor, k: int, which: str) -> Tensor:
    """Indices (ascending by value) of the wanted entries of ascending ``values``.

    ``which`` is ``"largest"``, ``"smallest"``, ``"both"`` (k at each end) or
    ``"magnitude"`` (k largest |value|).
    """
    n = values.numel()
    if which == "largest":
        idx = torch.arange(max(0, n - k), n)
    elif which == "smallest":
        idx = torch.arange(0, min(k, n))
    elif which == "both":
        idx = torch.unique(
            torch.cat([torch.arange(0, min(k, n)), torch.arange(max(0, n - k), n)])
        )
    elif which == "magnitude":
        order = values.abs().argsort(descending=True)[:k]
        idx = order.sort().values
    else:
        raise ValueError(
            f"which = {which!r} must be 'largest', 'smallest', 'both' or 'magnitude'"
        )
    return idx


def check_which(which: str) -> str:
    if which not in ("largest", "smallest", "both", "magnitude"):
        raise ValueError(
            f"which = {which!r} must be 'largest', 'smallest', 'both' or 'magnitude'"
        )
    return which
