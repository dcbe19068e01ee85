r"""Stochastic diagonal curvature estimators of Sophia and AdaHessian.

Both are diagonal matrices diag(d) whose entries are random: the products,
``diag()`` and the solve are closed forms of d (P,), and no P × P matrix is ever
formed unless ``dense()`` is asked for. The estimators themselves are plain
functions (:func:`gnb_diagonal`, :func:`hutchinson_diagonal`) that the update rules
of :mod:`explorer.optimizers.diagonal_rules` call with the step's generator.

**Gauss-Newton-Bartlett** (``sophia_gnb``; Liu et al. 2023, Algorithm 2). Draw
ŷ_n ~ R(· | z_n) from the model's predictive distribution for each of the B examples,
take the gradient of the mean loss at those targets and square it::

    ĝ = ∇_θ (1/B) Σ_n L(ŷ_n, f(x_n; θ)) = (1/B) Σ_n J_nᵀ u_n,  u_n = ∇_z L(ŷ_n, z_n)
    d = B · ĝ ⊙ ĝ

Its expectation, with our losses (each ``L`` is the exact NLL −log r(y | z), so
E_ŷ[u uᵀ] = F_R(z) with no extra factor: the ½ of the Gaussian's ‖y − z‖²/(2σ²) is
part of the NLL, and PyTorch's ``loss_scale`` concerns only ``torch_loss``)::

    E[d] = B · (1/B²) Σ_{n,m} E[(J_nᵀ u_n) ⊙ (J_mᵀ u_m)]
         = (1/B) Σ_n diag(J_nᵀ E[u_n u_nᵀ] J_n)        (n ≠ m: E[u_n] = 0, independent)
         = diag((1/B) Σ_n J_nᵀ F_R(z_n) J_n) = diag(F),

the diagonal of the Fisher with THEORY.md's 1/N (N = B, the examples used). The
cross terms vanish because the score has mean zero, E_ŷ[∇_z L(ŷ, z)] = 0 (Bartlett's
first identity), and the factor B exactly undoes the 1/B² of squaring a mean. For
matching losses F = G (claim C1), so d estimates diag(GGN); for non-matching ones
(``gaussian_tanh_mean``, Poisson with a softplus link ...) it estimates diag(F) ≠
diag(G). Each draw is PSD (a square).

**Hutchinson** (``adahessian``; Yao et al. 2021; Bekas et al. 2007). With probes z
whose entries are independent, mean 0, variance 1 (Rademacher ±1 for AdaHessian,
standard normal for Sophia-H, Liu et al. 2023 Algorithm 1)::

    d = (1/k) Σ_s z_s ⊙ (H z_s),    E[d] = diag(H)   (E[z_i z_j] = δ_ij),

with H z_s exact Hessian-vector products. Averaging over all 2^P sign vectors gives
diag(H) exactly. AdaHessian's *spatial averaging* (their eq. 10) replaces d on each
convolution kernel (out, in, k_h, k_w) by its mean over the k_h × k_w block of each
(out, in) pair (for any kernel of ≥ 3 dimensions: the mean over the dimensions after
the first two); other tensors are left alone. The paper averages the signed d; the
authors' reference code averages |d|, which matters only for signs inside a block.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from explorer.curvature.algebra import DelegatingOperator, DiagonalMatrixOperator
from explorer.curvature.hessian import HessianOperator
from explorer.curvature.tags import Tags
from explorer.options import Option
from explorer.problems.base import Batch, Problem

#: Probe distributions of :func:`hutchinson_diagonal`.
PROBE_DISTRIBUTIONS = ("rademacher", "gaussian")


# ------------------------------------------------------------------ estimators
def subsample(batch: Batch, size: int | None, generator: torch.Generator) -> Batch:
    """``size`` examples of ``batch`` drawn without replacement (all when None or
    ≥ its size; then the generator is not touched).
    """
    if size is None or size >= batch.size:
        return batch
    order = torch.randperm(batch.size, generator=generator, device=generator.device)
    index = order[:size].to(batch.inputs.device)
    return Batch(batch.inputs[index], batch.targets[index])


def gnb_diagonal(
    problem: Problem,
    theta: Tensor,
    batch: Batch,
    generator: torch.Generator,
    samples: int = 1,
    batch_size: int | None = None,
) -> Tensor:
    r"""Sophia's Gauss-Newton-Bartlett diagonal (P,), averaged over ``samples`` draws.

    One forward pass on the (sub-sampled) batch, then per draw: targets
    ŷ = ``problem.loss.sample(z, generator)``, the output scores u = ∇_z L(ŷ, z)
    (B, C), one backward pass ĝ = Jᵀ u / B, and B·ĝ⊙ĝ (see the module docstring:
    E = diag(F) on the B examples).

    Args:
        problem: The problem (any model: the backward pass goes through its
            ``predict_fn``).
        theta: The point (P,).
        batch: The examples.
        generator: Draws the examples (when ``batch_size`` is set) and the targets.
        samples: Independent draws averaged (≥ 1).
        batch_size: Use this many examples of ``batch`` (None: all).
    """
    if samples < 1:
        raise ValueError(f"samples = {samples} must be at least 1")
    batch = subsample(batch, batch_size, generator)
    size, loss = batch.size, problem.loss
    total = torch.zeros_like(theta)
    with torch.enable_grad():
        point = theta.detach().requires_grad_(True)
        outputs = problem.predict(point, batch.inputs)
        detached = outputs.detach()
        for draw in range(samples):
            scores = loss.output_grad(detached, loss.sample(detached, generator))
            (grad,) = torch.autograd.grad(
                outputs,
                point,
                grad_outputs=scores / size,
                retain_graph=draw + 1 < samples,
            )
            total += size * grad * grad
    return total / samples


def draw_probes(
    size: int,
    count: int,
    generator: torch.Generator,
    dtype: torch.dtype,
    device: torch.device | str,
    distribution: str = "rademacher",
) -> Tensor:
    """``count`` probe vectors as the columns of a (size, count) matrix.

    Rademacher: entries ±1 with probability ½ (``torch.randint(0, 2)`` mapped to
    ±1); Gaussian: standard normal. Drawn on the generator's device (the same probes
    on CPU and GPU for one seed).
    """
    shape = (size, count)
    if distribution == "rademacher":
        bits = torch.randint(0, 2, shape, generator=generator, device=generator.device)
        draw = 2 * bits - 1
    elif distribution == "gaussian":
        draw = torch.randn(shape, generator=generator, device=generator.device)
    else:
        raise ValueError(
            f"distribution = {distribution!r}; expected one of {PROBE_DISTRIBUTIONS}"
        )
    return draw.to(dtype=dtype, device=device)


def probe_average(hessian_matmat: Callable[[Tensor], Tensor], probes: Tensor) -> Tensor:
    """(1/k) Σ_s z_s ⊙ (H z_s) for probes Z (P, k) and ``V -> H V``."""
    return (probes * hessian_matmat(probes)).mean(1)


def spatial_average(diagonal: Tensor, shapes: Sequence[tuple[int, ...]]) -> Tensor:
    """AdaHessian's spatial averaging of ``diagonal`` (P,) laid out as ``shapes``.

    A tensor of ≥ 3 dimensions (a convolution kernel (out, in, k_h, k_w)) gets, in
    every entry of each (out, in) kernel, the mean of its entries; every other
    tensor is returned unchanged.
    """
    pieces, offset = [], 0
    for shape in shapes:
        numel = math.prod(shape)
        piece = diagonal[offset : offset + numel]
        if len(shape) >= 3:
            kernels = piece.view(shape[0] * shape[1], -1)
            piece = kernels.mean(1, keepdim=True).expand_as(kernels).reshape(-1)
        pieces.append(piece)
        offset += numel
    if offset != diagonal.numel():
        raise ValueError(
            f"shapes hold {offset} entries; the diagonal has {diagonal.numel()}"
        )
    return torch.cat(pieces) if pieces else diagonal


def hutchinson_diagonal(
    problem: Problem,
    theta: Tensor,
    batch: Batch,
    generator: torch.Generator,
    probes: int = 1,
    distribution: str = "rademacher",
    spatial_averaging: bool = False,
) -> tuple[Tensor, int]:
    """Hutchinson's estimate of diag(H) (P,) and the Hessian-vector products spent.

    ``probes`` vectors from :func:`draw_probes`, exact products H Z from
    :class:`~explorer.curvature.hessian.HessianOperator` on ``batch``, then
    :func:`probe_average` and, if asked, :func:`spatial_average`.
    """
    if probes < 1:
        raise ValueError(f"probes = {probes} must be at least 1")
    hessian = HessianOperator(problem, theta, batch=batch, generator=generator)
    vectors = draw_probes(
        hessian.size, probes, generator, hessian.dtype, hessian.device, distribution
    )
    diagonal = probe_average(hessian.matmat, vectors)
    if spatial_averaging:
        diagonal = spatial_average(diagonal, problem.param_shapes)
    return diagonal, hessian.products


# ------------------------------------------------------------------- operators
class _EstimatedDiagonal(DelegatingOperator):
    """diag(d) with d from an estimator run once at construction."""

    abstract = True

    def _estimate(self) -> tuple[Tensor, int]:
        """(d (P,), products spent)."""
        raise NotImplementedError

    def _setup(self) -> None:
        diagonal, products = self._estimate()
        self.products += products
        self.linear = DiagonalMatrixOperator(diagonal, key=self.key, tags=self.tags)

    @property
    def diagonal(self) -> Tensor:
        """The estimated diagonal (P,)."""
        return self.linear.diagonal


class SophiaGNBOperator(_EstimatedDiagonal):
    """Sophia's Gauss-Newton-Bartlett diagonal: B·ĝ⊙ĝ with ĝ at sampled targets."""

    key = "sophia_gnb"
    label = "Sophia Gauss-Newton-Bartlett diagonal"
    description = (
        "d = B·ĝ⊙ĝ with ĝ = ∇(1/B)Σ_n L(ŷ_n, f(x_n; θ)) at targets ŷ_n drawn from "
        "the model: E[d] = diag(F), the diagonal of the Fisher (= GGN for matching "
        "losses); the cross terms vanish because the score has mean zero."
    )
    declared = Tags(psd=True, diagonal=True, block_diagonal=True, sampled=True)
    reference = "ggn"
    options_schema = (
        Option(
            "samples",
            1,
            "Independent draws of the targets averaged (each one backward pass).",
            low=1,
            high=10_000,
        ),
        Option(
            "batch_size",
            None,
            "Examples of the batch the estimate uses (drawn without replacement); "
            "None: all of them.",
            low=1,
            high=10**9,
            kind="int",
            nullable=True,
        ),
    )

    def _estimate(self) -> tuple[Tensor, int]:
        samples = self.options["samples"]
        diagonal = gnb_diagonal(
            self.problem,
            self.theta,
            self.batch,
            self.generator,
            samples=samples,
            batch_size=self.options["batch_size"],
        )
        return diagonal, samples  # one backward pass per draw


class HutchinsonDiagonalOperator(_EstimatedDiagonal):
    """AdaHessian's Hutchinson diagonal (1/k) Σ z ⊙ Hz, with spatial averaging."""

    key = "adahessian"
    label = "Hutchinson Hessian diagonal (AdaHessian)"
    description = (
        "d = (1/k) Σ_s z_s ⊙ (H z_s) with random probes z (Rademacher; Gaussian for "
        "Sophia-H): E[d] = diag(H); convolution kernels averaged over their spatial "
        "block. Not PSD."
    )
    declared = Tags(diagonal=True, block_diagonal=True, sampled=True)
    reference = "hessian"
    options_schema = (
        Option(
            "probes",
            10,
            "Probe vectors k averaged (one Hessian-vector product each).",
            low=1,
            high=10_000,
        ),
        Option(
            "spatial_averaging",
            True,
            "Average d over the spatial block of each convolution kernel (AdaHessian "
            "eq. 10); other tensors are unaffected.",
        ),
        Option(
            "distribution",
            "rademacher",
            "Probe entries: 'rademacher' (±1, AdaHessian) or 'gaussian' (N(0, 1), "
            "Sophia-H).",
            choices=PROBE_DISTRIBUTIONS,
        ),
    )

    def _estimate(self) -> tuple[Tensor, int]:
        return hutchinson_diagonal(
            self.problem,
            self.theta,
            self.batch,
            self.generator,
            probes=self.options["probes"],
            distribution=self.options["distribution"],
            spatial_averaging=self.options["spatial_averaging"],
        )
