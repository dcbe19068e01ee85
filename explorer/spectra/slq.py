r"""Spectral density by stochastic Lanczos quadrature; trace by Hutchinson.

For a probe v with ‖v‖ = 1, m Lanczos steps started at v give a tridiagonal
:math:`T_m = S \operatorname{diag}(θ) S^\top`, and the Gauss quadrature

.. math:: v^\top f(C) v \approx \sum_{j=1}^m τ_j f(θ_j), \qquad τ_j = S_{1j}^2,

is exact for polynomials f of degree < 2m. Averaging over probes drawn with
:math:`E[v v^\top] = I/P` estimates :math:`\frac1P \operatorname{tr} f(C)`, i.e. the
spectral density :math:`φ(t) = \frac1P \sum_i δ(t − λ_i)` smoothed by a Gaussian
kernel (Ghorbani, Krishnan & Xiao 2019). The weights of each probe sum to one, so the
density integrates to one, and its first two moments are the Hutchinson estimates of
tr(C)/P and tr(C²)/P from the same probes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from explorer.spectra.lanczos import KrylovBasis
from explorer.spectra.operators import SymmetricOperator, random_vector


@dataclass(frozen=True)
class SpectralDensity:
    """Quadrature nodes and weights of stochastic Lanczos quadrature.

    Attributes:
        nodes: (n_probes, m) Ritz values θ of each probe's Lanczos run (CPU float64;
            padded with zero-weight entries when a run stopped early).
        weights: (n_probes, m) weights τ, each row summing to one.
        size: P.
        products: Matrix-vector products spent.
        probe: ``"rademacher"`` or ``"normal"``.
    """

    nodes: Tensor
    weights: Tensor
    size: int
    products: int
    probe: str = "rademacher"

    @property
    def num_probes(self) -> int:
        return int(self.nodes.shape[0])

    @property
    def num_steps(self) -> int:
        return int(self.nodes.shape[1])

    def moment(self, order: int) -> float:
        """Estimate of (1/P) tr(Cᵏ) = ∫ tᵏ φ(t) dt (exact in the quadrature for k < 2m)."""
        return float((self.weights * self.nodes**order).sum(1).mean())

    def trace(self) -> float:
        """Estimate of tr(C) = P · first moment."""
        return self.size * self.moment(1)

    def support(self) -> tuple[float, float]:
        """(smallest, largest) node with positive weight: about λ_min, λ_max."""
        live = self.nodes[self.weights > 0]
        return float(live.min()), float(live.max())

    def default_sigma(self) -> float:
        """Kernel width: 1% of the spread of the nodes (or of their size)."""
        low, high = self.support()
        spread = high - low
        return 0.01 * spread if spread > 0 else 1e-3 * max(abs(high), 1.0)

    def grid(self, num: int = 512, sigma: float | None = None) -> Tensor:
        """An evenly spaced grid (num,) covering the support plus 5σ each side."""
        sigma = self.default_sigma() if sigma is None else float(sigma)
        low, high = self.support()
        return torch.linspace(
            low - 5 * sigma, high + 5 * sigma, num, dtype=torch.float64
        )

    def evaluate(
        self, grid: Tensor | None = None, sigma: float | None = None
    ) -> Tensor:
        r"""The smoothed density φ_σ(t) on ``grid`` (G,).

        .. math:: φ_σ(t) = \frac{1}{n_v} \sum_{l} \sum_j τ_{lj}
                  \frac{1}{σ\sqrt{2π}} e^{-(t − θ_{lj})^2 / (2σ^2)}

        Args:
            grid: Points t (G,) (default :meth:`grid`).
            sigma: Gaussian kernel width (default :meth:`default_sigma`).
        """
        sigma = self.default_sigma() if sigma is None else float(sigma)
        if not sigma > 0:
            raise ValueError(f"sigma = {sigma!r} must be positive")
        grid = self.grid(sigma=sigma) if grid is None else grid.double().cpu()
        nodes, weights = self.nodes.reshape(-1), self.weights.reshape(-1)
        live = weights > 0
        nodes, weights = nodes[live], weights[live]
        out = torch.zeros_like(grid)
        for chunk in torch.split(torch.arange(nodes.numel()), 4096):
            diff = (grid.unsqueeze(1) - nodes[chunk].unsqueeze(0)) / sigma
            out += (weights[chunk] * torch.exp(-0.5 * diff**2)).sum(1)
        return out / (self.num_probes * sigma * math.sqrt(2 * math.pi))

    def to_dict(self, num: int = 256) -> dict:
        """Plain data for JSON: the density on a grid, moments and the trace."""
        grid = self.grid(num)
        return {
            "grid": grid.tolist(),
            "density": self.evaluate(grid).tolist(),
            "sigma": self.default_sigma(),
            "trace": self.trace(),
            "moments": [self.moment(1), self.moment(2)],
            "support": list(self.support()),
            "num_probes": self.num_probes,
            "num_steps": self.num_steps,
            "products": self.products,
        }


def lanczos_quadrature(
    op: SymmetricOperator, probe: Tensor, steps: int
) -> tuple[Tensor, Tensor]:
    """Gauss quadrature nodes and weights (m,) for vᵀ f(C) v / ‖v‖² from m steps.

    Stops early (fewer nodes) when the Krylov space becomes invariant.
    """
    steps = min(int(steps), op.size)
    like = torch.empty(0, dtype=op.dtype, device=op.device)
    basis = KrylovBasis(op.matvec, op.size, steps, like)
    basis.start(probe)
    while basis.length < steps:
        basis.expand(basis.length + 1)
        if basis.beta == 0.0:  # invariant: the quadrature is exact already
            break
    projected = basis.projected[: basis.length, : basis.length]
    nodes, vectors = torch.linalg.eigh(projected)
    return nodes, vectors[0] ** 2


def spectral_density(
    op: SymmetricOperator,
    num_probes: int = 4,
    num_steps: int = 40,
    *,
    generator: torch.Generator | None = None,
    probe: str = "rademacher",
) -> SpectralDensity:
    """Stochastic Lanczos quadrature of a symmetric operator (module docstring).

    Costs ``num_probes · num_steps`` products and (num_steps + 1) vectors of memory.

    Args:
        op: Any symmetric operator.
        num_probes: Independent probes (more: less variance in the density).
        num_steps: Lanczos steps per probe (more: finer resolution of the spectrum,
            and moments exact up to order 2·num_steps − 1).
        generator: For the probes (seed 0 when None): deterministic.
        probe: ``"rademacher"`` (±1 entries, the lower-variance Hutchinson probe) or
            ``"normal"``.

    Returns:
        :class:`SpectralDensity`; ``evaluate(grid)`` gives the smoothed density.

    Example:
        >>> import torch
        >>> from explorer.curvature.algebra import DenseOperator
        >>> op = DenseOperator(torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)))
        >>> density = spectral_density(op, num_probes=2, num_steps=3)
        >>> round(density.moment(1), 12)  # tr(C)/P, exact here since vᵢ² = 1
        2.0
    """
    if num_probes < 1 or num_steps < 1:
        raise ValueError(
            f"num_probes = {num_probes} and num_steps = {num_steps} must be ≥ 1"
        )
    generator = generator or torch.Generator(device="cpu").manual_seed(0)
    before = op.products
    like = torch.empty(0, dtype=op.dtype, device=op.device)
    steps = min(num_steps, op.size)
    nodes = torch.zeros(num_probes, steps, dtype=torch.float64)
    weights = torch.zeros_like(nodes)
    for index in range(num_probes):
        vector = random_vector(op.size, like, generator, probe)
        values, taus = lanczos_quadrature(op, vector, steps)
        nodes[index, : values.numel()] = values
        weights[index, : taus.numel()] = taus
    return SpectralDensity(nodes, weights, op.size, op.products - before, probe)


@dataclass(frozen=True)
class TraceEstimate:
    """Hutchinson's estimate of tr(C).

    Attributes:
        value: The mean of vᵀ C v over probes.
        stderr: Its standard error (NaN with one probe).
        num_probes: Probes used (= products).
    """

    value: float
    stderr: float
    num_probes: int


def hutchinson_trace(
    op: SymmetricOperator,
    num_probes: int = 16,
    *,
    generator: torch.Generator | None = None,
    probe: str = "rademacher",
) -> TraceEstimate:
    """tr(C) ≈ (1/n) Σ vᵀ C v with E[v vᵀ] = I (Hutchinson 1989).

    With Rademacher probes the variance is 2 Σ_{i≠j} C_ij², zero for diagonal C.

    Example:
        >>> import torch
        >>> from explorer.curvature.algebra import DenseOperator
        >>> op = DenseOperator(torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)))
        >>> hutchinson_trace(op, 4).value
        6.0
    """
    if num_probes < 1:
        raise ValueError(f"num_probes = {num_probes} must be at least 1")
    generator = generator or torch.Generator(device="cpu").manual_seed(0)
    like = torch.empty(0, dtype=op.dtype, device=op.device)
    samples = []
    for _ in range(num_probes):
        v = random_vector(op.size, like, generator, probe)
        samples.append(float(torch.dot(v, op.matvec(v))))
    values = torch.tensor(samples, dtype=torch.float64)
    stderr = float(values.std() / math.sqrt(num_probes)) if num_probes > 1 else math.nan
    return TraceEstimate(float(values.mean()), stderr, num_probes)
