r"""Extreme eigenpairs by thick-restart Lanczos on matrix-vector products.

For a symmetric operator C (P × P) known only through products, the Krylov basis
:math:`Q_m = [q_1, …, q_m]` (orthonormal, kept fully reorthogonalized by two passes
of classical Gram–Schmidt) satisfies

.. math:: C Q_m = Q_m H_m + β_m q_{m+1} e_m^\top,  \qquad H_m = Q_m^\top C Q_m,

so the Ritz pairs :math:`(θ_i, Q_m s_i)` of the small matrix :math:`H_m` have residual
norms :math:`‖C y_i − θ_i y_i‖ = β_m |s_{m,i}|` at no extra cost. When the basis is
full, the wanted Ritz vectors and :math:`q_{m+1}` are kept and the basis is expanded
again (thick restart, Wu & Simon 2000), which keeps the memory at (m + 1) vectors of
length P: no P × P matrix is ever formed, so millions of parameters on a GPU work.
All vectors live on the operator's device in its dtype; only the m × m problem goes
to the CPU.

A *mass* operator M (symmetric positive definite) turns the same recursion into the
M-inner-product Lanczos for the generalized problem :math:`A x = θ M x`, used by
:func:`explorer.spectra.generalized_spectrum`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from explorer.curvature.algebra import DenseOperator
from explorer.spectra.operators import SymmetricOperator, random_vector
from explorer.spectra.result import Eigenpairs, check_which, select_indices

Apply = Callable[[Tensor], Tensor]


def default_tolerance(dtype: torch.dtype) -> float:
    """Relative residual tolerance: 1e-8 in float64, 1e-4 in float32."""
    return 1e-8 if dtype == torch.float64 else 1e-4


def default_basis_size(size: int, wanted: int) -> int:
    """ARPACK's rule ``max(2·wanted + 1, 20)``, capped at P."""
    return min(size, max(2 * wanted + 1, 20))


class KrylovBasis:
    """An (M-)orthonormal Krylov basis with its projected matrix H = Qᵀ A Q.

    Args:
        apply: ``v -> A v`` (or ``M⁻¹ A v`` for a generalized problem).
        size: P.
        capacity: The largest basis m (m + 1 rows of storage).
        like: A tensor giving dtype and device.
        mass: ``v -> M v`` for the M-inner product, or None (Euclidean).
        generator: Draws replacement directions after a breakdown.
        apply_to_mass: Call ``apply`` on M q instead of q (saves a product when the
            operator is A·M, as in :func:`~explorer.spectra.generalized_spectrum`).
    """

    def __init__(
        self,
        apply: Apply,
        size: int,
        capacity: int,
        like: Tensor,
        mass: Apply | None = None,
        generator: torch.Generator | None = None,
        apply_to_mass: bool = False,
    ) -> None:
        self.apply = apply
        self.apply_to_mass = apply_to_mass and mass is not None
        self.mass = mass
        self.size = size
        self.capacity = capacity
        self.generator = generator
        self.vectors = torch.zeros(
            capacity + 1, size, dtype=like.dtype, device=like.device
        )
        self.mass_vectors = (
            torch.zeros_like(self.vectors) if mass is not None else self.vectors
        )
        self.projected = torch.zeros(capacity, capacity, dtype=torch.float64)
        self.length = 0  # vectors whose column of H is known
        self.beta = 0.0  # coupling of the last vector to the next one
        self.steps = 0  # products with ``apply``
        self.scale = 0.0  # largest |H| entry seen: the breakdown threshold's scale
        self.local_start = 0  # columns from here on follow the 3-term recurrence
        self.exhausted = False  # the basis spans an invariant subspace of size P

    # -------------------------------------------------------------- helpers
    def _orthogonalize(self, w: Tensor, count: int) -> tuple[Tensor, Tensor]:
        """Removes the first ``count`` basis directions from w.

        Classical Gram–Schmidt repeated while a pass shrinks w by more than 30%
        (at most three passes: "twice is enough" unless w was mostly cancelled).
        """
        basis, mass_basis = self.vectors[:count], self.mass_vectors[:count]
        coefficients = torch.zeros(count, dtype=w.dtype, device=w.device)
        norm = float(w.norm())
        for _ in range(3):
            step = mass_basis @ w
            w = w - step @ basis
            coefficients = coefficients + step
            new_norm = float(w.norm())
            if new_norm > 0.7 * norm:
                break
            norm = new_norm
        return w, coefficients

    def _normalize(self, w: Tensor) -> tuple[Tensor, Tensor, float]:
        mw = self.mass(w) if self.mass is not None else w
        norm = float(torch.dot(w, mw).clamp_min(0).sqrt())
        return w, mw, norm

    def start(self, vector: Tensor) -> None:
        """Sets q₁ = v / ‖v‖ (M-norm) and empties the basis."""
        w, mw, norm = self._normalize(vector)
        if not norm > 0:
            raise ValueError("the starting vector is zero")
        self.vectors[0] = w / norm
        if self.mass is not None:
            self.mass_vectors[0] = mw / norm
        self.length, self.beta, self.exhausted = 0, 0.0, False
        self.local_start = 0
        self.projected.zero_()

    def _fresh_direction(self, count: int) -> bool:
        """Fills row ``count`` with a random unit vector orthogonal to the basis."""
        for _ in range(3):
            w = random_vector(self.size, self.vectors, self.generator)
            w, _ = self._orthogonalize(w, count)
            w, mw, norm = self._normalize(w)
            if norm > 1e-8:
                self.vectors[count] = w / norm
                if self.mass is not None:
                    self.mass_vectors[count] = mw / norm
                return True
        return False

    def expand(self, stop: int) -> None:
        """Adds columns to H until the basis holds ``stop`` vectors."""
        eps = torch.finfo(self.vectors.dtype).eps
        for j in range(self.length, stop):
            source = self.mass_vectors if self.apply_to_mass else self.vectors
            w = self.apply(source[j])
            self.steps += 1
            local = None
            if j >= self.local_start:
                # The three-term recurrence first (two cheap vector operations):
                # A q_j = β_{j−1} q_{j−1} + α_j q_j + β_j q_{j+1}. The full pass
                # that follows then removes only rounding, usually in one sweep.
                alpha = torch.dot(self.mass_vectors[j], w)
                w = w - alpha * self.vectors[j]
                local = [(j, alpha)]
                if j >= 1 and self.beta:
                    w = w - self.beta * self.vectors[j - 1]
                    local.append((j - 1, self.beta))
            w, coefficients = self._orthogonalize(w, j + 1)
            for index, value in local or ():
                coefficients[index] += value
            column = coefficients.double().cpu()
            self.projected[: j + 1, j] = column
            self.projected[j, : j + 1] = column
            self.length = j + 1
            self.scale = max(self.scale, float(column.abs().max()))
            w, mw, beta = self._normalize(w)
            if j + 1 >= self.size:  # the basis spans the whole space: exact
                self.beta, self.exhausted = 0.0, True
                return
            if beta <= 10 * eps * max(self.scale, 1e-300) or beta == 0.0:
                # An invariant subspace: C Q = Q H exactly; continue elsewhere.
                self.beta = 0.0
                if not self._fresh_direction(j + 1):
                    self.exhausted = True
                    return
            else:
                self.beta = beta
                self.vectors[j + 1] = w / beta
                if self.mass is not None:
                    self.mass_vectors[j + 1] = mw / beta

    def ritz(self) -> tuple[Tensor, Tensor, Tensor]:
        """Ritz values (ascending), vectors S of H and residual norms β|s_m|."""
        m = self.length
        values, vectors = torch.linalg.eigh(self.projected[:m, :m])
        residuals = self.beta * vectors[m - 1].abs()
        return values, vectors, residuals

    def restart(self, keep: Tensor, values: Tensor, vectors: Tensor) -> None:
        """Keeps Ritz vectors ``Q S[:, keep]`` and the next direction q_{m+1}."""
        m, count = self.length, int(keep.numel())
        coefficients = vectors[:, keep].to(self.vectors)
        kept = coefficients.T @ self.vectors[:m]
        nxt = self.vectors[m].clone()
        self.vectors[:count] = kept
        self.vectors[count] = nxt
        if self.mass is not None:
            kept_mass = coefficients.T @ self.mass_vectors[:m]
            nxt_mass = self.mass_vectors[m].clone()
            self.mass_vectors[:count] = kept_mass
            self.mass_vectors[count] = nxt_mass
        self.projected.zero_()
        self.projected[:count, :count] = torch.diag(values[keep])
        self.length = count
        # q_{m+1} couples to every kept Ritz vector (an arrow, not a tridiagonal):
        # its column is found by full Gram–Schmidt alone.
        self.local_start = count + 1

    def ritz_vectors(self, vectors: Tensor, idx: Tensor, mass: bool = False) -> Tensor:
        """Q S[:, idx] (or (M Q) S[:, idx] with ``mass``) as (P, K)."""
        m = self.length
        basis = self.mass_vectors if mass else self.vectors
        return basis[:m].T @ vectors[:, idx].to(self.vectors)


def thick_restart_lanczos(
    apply: Apply,
    size: int,
    like: Tensor,
    *,
    k: int,
    which: str = "largest",
    tol: float | None = None,
    max_steps: int | None = None,
    basis_size: int | None = None,
    generator: torch.Generator | None = None,
    start: Tensor | None = None,
    vectors: bool = True,
    mass: Apply | None = None,
    apply_to_mass: bool = False,
    mass_vectors: bool = False,
) -> tuple[Tensor, Tensor | None, Tensor, bool, int]:
    """The engine behind :func:`lanczos` on plain callables.

    ``mass``, ``apply_to_mass`` and ``mass_vectors`` (return M y instead of the Ritz
    vectors y) serve the generalized problem.

    Returns:
        ``(values (K,) ascending, vectors (P, K) or None, residuals (K,), converged,
        steps)``.
    """
    which = check_which(which)
    if not k >= 1:
        raise ValueError(f"k = {k} must be at least 1")
    wanted = min(size, 2 * k if which == "both" else k)
    m = basis_size or default_basis_size(size, wanted)
    m = min(size, max(m, min(size, wanted + 2)))
    tol = default_tolerance(like.dtype) if tol is None else float(tol)
    max_steps = max(10 * m, 300) if max_steps is None else int(max_steps)
    generator = generator or torch.Generator(device="cpu").manual_seed(0)

    basis = KrylovBasis(
        apply,
        size,
        m,
        like,
        mass=mass,
        generator=generator,
        apply_to_mass=apply_to_mass,
    )
    first = start if start is not None else random_vector(size, like, generator)
    basis.start(first.to(dtype=like.dtype, device=like.device))

    def check() -> tuple[Tensor, Tensor, Tensor, Tensor, bool]:
        values, svecs, residuals = basis.ritz()
        idx = select_indices(values, k, which)
        norm = max(float(values.abs().max()), 1e-300)
        done = bool((residuals[idx] <= tol * norm).all()) or basis.exhausted
        return values, svecs, residuals, idx, done

    while True:
        # Expand one step at a time and test convergence as soon as enough Ritz
        # pairs exist (an m × m eigenproblem per step: negligible next to a product).
        while basis.length < m:
            basis.expand(basis.length + 1)
            stalled = basis.exhausted or basis.steps >= max_steps
            if basis.length >= min(m, wanted + 1) or stalled:
                values, svecs, residuals, idx, converged = check()
                if converged or stalled:
                    break
        else:
            values, svecs, residuals, idx, converged = check()
        if converged or basis.steps >= max_steps or basis.exhausted:
            break
        keep = _keep_indices(values, idx, m, which)
        basis.restart(keep, values, svecs)

    eigvecs = basis.ritz_vectors(svecs, idx, mass_vectors) if vectors else None
    return values[idx], eigvecs, residuals[idx], converged, basis.steps


def _keep_indices(values: Tensor, wanted: Tensor, m: int, which: str) -> Tensor:
    """The Ritz vectors kept at a restart: the wanted ones and half the rest.

    Keeping a few more than wanted (nearest to the wanted end) speeds up convergence;
    at least two slots stay free for new directions.
    """
    n = values.numel()
    count = min(m - 2, wanted.numel() + max(1, (m - wanted.numel()) // 2))
    count = max(count, min(wanted.numel(), m - 1))
    if which == "largest":
        return torch.arange(n - count, n)
    if which == "smallest":
        return torch.arange(0, count)
    if which == "both":
        low = (count + 1) // 2
        high = count - low
        return torch.unique(
            torch.cat([torch.arange(0, low), torch.arange(n - high, n)])
        )
    order = values.abs().argsort(descending=True)[:count]
    return order.sort().values


def lanczos(
    op: SymmetricOperator,
    k: int = 6,
    which: str = "largest",
    *,
    tol: float | None = None,
    max_products: int | None = None,
    basis_size: int | None = None,
    generator: torch.Generator | None = None,
    start: Tensor | None = None,
    vectors: bool = True,
) -> Eigenpairs:
    """The k extreme eigenpairs of a symmetric operator from products only.

    Thick-restart Lanczos with full reorthogonalization (module docstring). Memory
    is ``basis_size + 1`` vectors of length P; the cost is one ``op.matvec`` per
    step, so build the operator once (the MLP products cache the forward pass) and
    pass it here.

    Args:
        op: Any symmetric operator (``matvec``, ``size``, ``dtype``, ``device``).
        k: How many eigenpairs (per end for ``which="both"``).
        which: ``"largest"`` (algebraic, the default), ``"smallest"`` (algebraic:
            the most negative Hessian eigenvalues), ``"both"`` (k at each end) or
            ``"magnitude"``.
        tol: Stop when every wanted residual ‖C y − θ y‖ ≤ tol · max|θ| (default
            1e-8 in float64, 1e-4 in float32; eigenvalue errors are about the square
            of that, relative to the gap).
        max_products: Give up after this many products (default
            ``max(10·basis_size, 300)``); ``converged`` then says False.
        basis_size: Krylov vectors kept (default ``max(2·wanted + 1, 20)``).
        generator: For the random start (seed 0 when None): deterministic.
        start: An explicit starting vector (P,) instead.
        vectors: Also return the eigenvectors (P, K).

    Returns:
        :class:`Eigenpairs` in ascending order with residual norms.

    Example:
        >>> import torch
        >>> matrix = torch.diag(torch.arange(1.0, 101.0, dtype=torch.float64))
        >>> pairs = lanczos(matrix_operator(matrix), k=3)
        >>> [round(x, 6) for x in pairs.top(3).tolist()]
        [100.0, 99.0, 98.0]
    """
    before = op.products
    like = torch.empty(0, dtype=op.dtype, device=op.device)
    values, vecs, residuals, converged, _ = thick_restart_lanczos(
        op.matvec,
        op.size,
        like,
        k=k,
        which=which,
        tol=tol,
        max_steps=max_products,
        basis_size=basis_size,
        generator=generator,
        start=start,
        vectors=vectors,
    )
    return Eigenpairs(
        eigenvalues=values,
        eigenvectors=vecs,
        residuals=residuals,
        converged=converged,
        method="lanczos",
        products=op.products - before,
        size=op.size,
        which=which,
    )


def matrix_operator(matrix: Tensor) -> SymmetricOperator:
    """Shorthand for :class:`~explorer.curvature.algebra.DenseOperator` (doctests)."""
    return DenseOperator(matrix)
