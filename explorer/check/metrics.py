"""How well a curvature C preconditions its reference R: the numbers papers report.

Pure functions on dense float64 matrices (P × P), no state. With damping λ:

* preconditioned condition number κ((C + λI)⁻¹(R + λI)) = μ_max / μ_min over the
  generalized eigenvalues μ of R + λI against C + λI (1 when C = R), beside
  κ(R + λI), the condition number plain gradient descent faces on the damped
  reference;
* Rayleigh quotients uᵢᵀ C uᵢ / λᵢ(R) in R's eigenbasis (1 when C = R), averaged over
  R's top eigen-directions and over the rest of its numerical range (the bulk);
* per parameter block b the matrix cosine ⟨C_bb, R_bb⟩_F / (‖C_bb‖_F ‖R_bb‖_F);
* per Kronecker block, how close its factors come to the best Kronecker product
  approximation of the exact block (Van Loan & Pitsianis 1993).

:func:`preconditioner_metrics` returns them as one JSON-able dict (floats, ints,
strings, nested dicts; NaN where a number is undefined, with a ``*_reason`` key that
says why).

Example:
    >>> import torch
    >>> r = torch.diag(torch.tensor([4.0, 1.0], dtype=torch.float64))
    >>> m = preconditioner_metrics(r, r, 0.0, [("w", slice(0, 2))])
    >>> m["preconditioned_condition"], m["reference_condition"]
    (1.0, 4.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from explorer.curvature.tags import KroneckerBlock

#: Rayleigh quotients use R's eigenvalues above this fraction of its largest one
#: (smaller ones are rounding noise of a rank-deficient R: dividing by them means
#: nothing).
RAYLEIGH_RTOL = 1e-8

#: A relative error below this is round-off: such a block's factors count as optimal
#: (efficiency 1) even when the best error is an even smaller round-off.
ROUNDOFF = 1e-10

#: At most this many of R's top eigen-directions count as "top" (and at most P // 4).
RAYLEIGH_TOP = 10


def _symmetric(matrix: Tensor) -> Tensor:
    matrix = matrix.detach().to(torch.float64)
    return 0.5 * (matrix + matrix.T)


def _damped(matrix: Tensor, damping: float) -> Tensor:
    eye = torch.eye(matrix.shape[0], dtype=matrix.dtype, device=matrix.device)
    return matrix + damping * eye


def generalized_eigenvalues(
    matrix: Tensor, reference: Tensor, damping: float
) -> Tensor:
    """Ascending eigenvalues μ of (C + λI)⁻¹(R + λI), both symmetrized.

    With the Cholesky factor C + λI = L Lᵀ they are the eigenvalues of the symmetric
    L⁻¹ (R + λI) L⁻ᵀ (similar to (C + λI)⁻¹(R + λI)), so they are real.

    Args:
        matrix: C (P, P).
        reference: R (P, P).
        damping: λ ≥ 0.

    Returns:
        (P,) float64, ascending.

    Raises:
        torch.linalg.LinAlgError: C + λI is not positive definite.
    """
    c = _damped(_symmetric(matrix), damping)
    r = _damped(_symmetric(reference), damping)
    factor = torch.linalg.cholesky(c)
    left = torch.linalg.solve_triangular(factor, r, upper=False)  # L⁻¹ R
    whitened = torch.linalg.solve_triangular(factor, left.T, upper=False)  # L⁻¹RL⁻ᵀ
    return torch.linalg.eigvalsh(_symmetric(whitened))


def _condition(eigenvalues: Tensor, what: str) -> tuple[float, str | None]:
    """max/min of positive eigenvalues, or NaN with the reason."""
    low, high = float(eigenvalues.min()), float(eigenvalues.max())
    if not low > 0:
        return math.nan, f"{what} has a non-positive eigenvalue ({low:.3g})"
    return high / low, None


def preconditioned_condition(
    matrix: Tensor, reference: Tensor, damping: float
) -> tuple[float, str | None]:
    """κ((C + λI)⁻¹(R + λI)) = μ_max/μ_min, or (NaN, why) when undefined."""
    try:
        mu = generalized_eigenvalues(matrix, reference, damping)
    except torch.linalg.LinAlgError:
        return math.nan, f"C + λI is not positive definite (λ = {damping:g})"
    return _condition(mu, "(C + λI)⁻¹(R + λI)")


def reference_condition(reference: Tensor, damping: float) -> tuple[float, str | None]:
    """κ(R + λI) = λ_max/λ_min (what gradient descent on R + λI faces)."""
    eigenvalues = torch.linalg.eigvalsh(_damped(_symmetric(reference), damping))
    return _condition(eigenvalues, "R + λI")


def rayleigh_top_count(size: int) -> int:
    """How many of R's eigen-directions are "top": k = min(10, P // 4), at least 1."""
    return max(1, min(RAYLEIGH_TOP, size // 4))


def rayleigh_quotients(matrix: Tensor, reference: Tensor) -> dict[str, Any]:
    """Mean of uᵢᵀ C uᵢ / λᵢ(R) over R's top-k and over its bulk eigenvectors.

    R's eigenpairs (λᵢ, uᵢ) are sorted descending; only λᵢ > RAYLEIGH_RTOL·λ₁ count.
    The top k = :func:`rayleigh_top_count` (P) of them (fewer when R's numerical rank
    is smaller) are "top", the remaining ones "bulk" (NaN when none remain). Both
    are 1 when C = R; above 1, C overestimates the curvature in those directions.

    Returns:
        ``{"top": float, "bulk": float, "k": int, "bulk_size": int}``.
    """
    c, r = _symmetric(matrix), _symmetric(reference)
    eigenvalues, vectors = torch.linalg.eigh(r)
    eigenvalues, vectors = eigenvalues.flip(0), vectors.flip(1)
    largest = float(eigenvalues[0]) if eigenvalues.numel() else 0.0
    if not largest > 0:
        return {"top": math.nan, "bulk": math.nan, "k": 0, "bulk_size": 0}
    kept = int((eigenvalues > RAYLEIGH_RTOL * largest).sum())
    quotients = (vectors[:, :kept] * (c @ vectors[:, :kept])).sum(0)
    quotients = quotients / eigenvalues[:kept]
    k = min(rayleigh_top_count(c.shape[0]), kept)
    bulk = quotients[k:]
    return {
        "top": float(quotients[:k].mean()),
        "bulk": float(bulk.mean()) if bulk.numel() else math.nan,
        "k": k,
        "bulk_size": int(bulk.numel()),
    }


def matrix_cosine(a: Tensor, b: Tensor) -> float:
    """⟨A, B⟩_F / (‖A‖_F ‖B‖_F); NaN when either is zero."""
    norm = float(torch.linalg.norm(a) * torch.linalg.norm(b))
    if not norm > 0:
        return math.nan
    return float((a * b).sum()) / norm


def block_cosines(
    matrix: Tensor, reference: Tensor, blocks: Sequence[tuple[str, slice]]
) -> dict[str, float]:
    """Per block name, the matrix cosine of the diagonal blocks C_bb and R_bb."""
    c, r = matrix.detach().double(), reference.detach().double()
    return {name: matrix_cosine(c[span, span], r[span, span]) for name, span in blocks}


def rearrange(block: Tensor, m: int, n: int) -> Tensor:
    """Van Loan–Pitsianis rearrangement of an (mn, mn) matrix to (m², n²).

    With row-major indices (i·n + j), R̃[(i, k), (j, l)] = R[i·n + j, k·n + l], so
    that (A ⊗ B)~ = vec(A) vec(B)ᵀ: Kronecker rank 1 becomes matrix rank 1, and
    ‖R − A ⊗ B‖_F = ‖R̃ − vec(A) vec(B)ᵀ‖_F.
    """
    return block.reshape(m, n, m, n).permute(0, 2, 1, 3).reshape(m * m, n * n)


def nearest_kronecker(block: Tensor, m: int, n: int) -> tuple[Tensor, Tensor]:
    """The best A ⊗ B (A: m × m, B: n × n) to an (mn, mn) matrix in Frobenius norm:
    the top singular pair of :func:`rearrange` (block), A = √σ₁ u₁, B = √σ₁ v₁.
    """
    u, s, vh = torch.linalg.svd(rearrange(block.double(), m, n), full_matrices=False)
    root = s[0].sqrt()
    return (root * u[:, 0]).reshape(m, m), (root * vh[0]).reshape(n, n)


def best_kronecker_error(block: Tensor, m: int, n: int) -> float:
    """The least ‖R − A ⊗ B‖_F / ‖R‖_F over A, B: √(Σ_{i≥2} σᵢ²) / ‖R‖_F (σ of R̃)."""
    singular = torch.linalg.svdvals(rearrange(block.double(), m, n))
    total = float(singular.square().sum())
    if not total > 0:
        return 0.0
    tail = float(singular[1:].square().sum())
    return math.sqrt(max(tail, 0.0) / total)


def _block_name(
    indices: Tensor, blocks: Sequence[tuple[str, slice]], index: int
) -> str:
    low, high = int(indices.min()), int(indices.max())
    for name, span in blocks:
        if span.start <= low and high < span.stop:
            return name
    return f"block {index}"


def kronecker_efficiency(
    reference: Tensor,
    kronecker_blocks: Sequence[KroneckerBlock],
    blocks: Sequence[tuple[str, slice]] = (),
) -> dict[str, dict[str, Any]]:
    """Per Kronecker block: achieved error, best possible error, their ratio.

    For block b with C_b = left ⊗ right (m × m and n × n) on ``indices``:
    ``achieved`` = ‖C_b − R_b‖_F/‖R_b‖_F, ``best`` = the error of the best
    Kronecker product approximation of R_b (:func:`best_kronecker_error`) and
    ``efficiency`` = best / achieved (1 = the factors are optimal, smaller = room
    left by the structure's estimator, not by the structure itself; 1 when C's error
    is round-off, below :data:`ROUNDOFF`). Names come from the parameter
    ``blocks`` that contain the indices (suffixed when one holds several Kronecker
    blocks), else ``"block i"``.
    """
    r = reference.detach().to(torch.float64)
    out: dict[str, dict[str, Any]] = {}
    for index, kron in enumerate(kronecker_blocks):
        indices = kron.indices.to(torch.long)
        m, n = kron.left.shape[0], kron.right.shape[0]
        exact = r[indices][:, indices]
        approx = torch.kron(kron.left.double(), kron.right.double())
        norm = float(torch.linalg.norm(exact))
        if norm > 0:
            achieved = float(torch.linalg.norm(approx - exact)) / norm
        else:
            achieved = 0.0 if float(torch.linalg.norm(approx)) == 0 else math.inf
        best = best_kronecker_error(exact, m, n)
        efficiency = best / achieved if achieved > ROUNDOFF else 1.0
        name = _block_name(indices, blocks, index)
        if name in out:
            name = f"{name} #{sum(k.startswith(name) for k in out) + 1}"
        out[name] = {
            "m": m,
            "n": n,
            "achieved": achieved if math.isfinite(achieved) else math.nan,
            "best": best,
            "efficiency": efficiency,
        }
    return out


def preconditioner_metrics(
    matrix: Tensor,
    reference: Tensor,
    damping: float,
    blocks: Sequence[tuple[str, slice]],
    kronecker_blocks: Sequence[KroneckerBlock] | None = None,
) -> dict[str, Any]:
    """Every preconditioner-quality number of C against R at one point.

    Args:
        matrix: C (P, P), any float dtype (computed in float64).
        reference: R (P, P).
        damping: λ ≥ 0 of the damped matrices.
        blocks: ``(name, slice)`` parameter blocks (``problem.blocks()``).
        kronecker_blocks: C's Kronecker blocks (``op.kronecker_factors()``), or None.

    Returns:
        ``preconditioned_condition`` and ``reference_condition`` (floats, NaN with
        ``preconditioned_condition_reason`` / ``reference_condition_reason`` when
        undefined), ``rayleigh`` (:func:`rayleigh_quotients`), ``block_cosines``
        (``{name: float}``) and, with ``kronecker_blocks``, ``kronecker_efficiency``
        (:func:`kronecker_efficiency`).
    """
    c = matrix.detach().to(torch.float64)
    r = reference.detach().to(torch.float64)
    out: dict[str, Any] = {"damping": float(damping)}
    for key, (value, reason) in (
        ("preconditioned_condition", preconditioned_condition(c, r, damping)),
        ("reference_condition", reference_condition(r, damping)),
    ):
        out[key] = value
        if reason is not None:
            out[f"{key}_reason"] = reason
    out["rayleigh"] = rayleigh_quotients(c, r)
    out["block_cosines"] = block_cosines(c, r, blocks)
    if kronecker_blocks is not None:
        out["kronecker_efficiency"] = kronecker_efficiency(r, kronecker_blocks, blocks)
    return out
