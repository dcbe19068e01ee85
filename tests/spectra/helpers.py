"""Operators with known spectra for the spectral tests."""

import torch

from explorer.curvature.algebra import DenseOperator


def rotated(values, seed=0):
    """Q diag(values) Qᵀ with a seeded random orthogonal Q (float64)."""
    values = torch.as_tensor(values, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(
        torch.randn(len(values), len(values), generator=generator, dtype=torch.float64)
    )
    return (q * values) @ q.T


class NoDense(DenseOperator):
    """A product-only operator: asking for the dense matrix is an error."""

    def dense(self, max_bytes=None):
        raise AssertionError("the Lanczos path must not form a dense matrix")
