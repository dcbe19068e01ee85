r"""Sophia, AdaHessian and Muon: first-order rules with their own curvature state.

Each rule is one :class:`~explorer.optimizers.base.Transform` holding its own
moving averages (no damped solve, no ``with_curvature``), followed by
:func:`~explorer.optimizers.transforms.scale_by_step_size` (δ = −lr·u) or, for Muon,
returning the step itself (its two parameter groups have two learning rates).

* **Sophia** (Liu et al. 2023, Algorithm 3)::

      m ← β₁ m + (1 − β₁) g
      every k steps (the first included): h ← β₂ h + (1 − β₂) ĥ
      θ ← θ − lr·(clip(m / max(γ h, ε), 1) + wd·θ)

  with ĥ the Gauss-Newton-Bartlett diagonal B·ĝ⊙ĝ (``estimator="gnb"``, E = diag F)
  or Hutchinson's u ⊙ Hu with u ~ N(0, I) (``"hutchinson"``, Sophia-H, E = diag H),
  both from :mod:`explorer.curvature.diagonal_estimators` on the step's curvature
  batch with the step's generator. clip(·, 1) clips every coordinate to [−1, 1]:
  where h is small or negative the step falls back to lr·sign(m). h starts at 0 and
  is not bias-corrected (as in the paper), so early steps are mostly clipped.
* **AdaHessian** (Yao et al. 2021)::

      m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) D⊙D
      θ ← θ − lr·(m̂ / (v̂^{k/2} + ε) + wd·θ),   m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ)

  with D the Hutchinson diagonal (Rademacher probes, spatially averaged over
  convolution kernels), recomputed every ``update_interval`` steps and reused in
  between (the EMA still advances every step, as in the reference implementation).
* **Muon** (Jordan et al. 2024; Liu et al. 2025): for each parameter tensor of ≥ 2
  dimensions of an ``nn.Module`` model, viewed as a matrix G (rows = first
  dimension, columns = the rest)::

      M ← μ M + G,   U = G + μ M (Nesterov) or M
      O = orth(U) ≈ U (Uᵀ U)^{-1/2} = (U Uᵀ)^{-1/2} U = P Qᵀ  (U = P Σ Qᵀ)
      ΔW = −lr · s · O,   s = √max(1, rows/cols) (Keller Jordan) or 0.2·√max(rows, cols)

  orth by ``ns_steps`` quintic Newton–Schulz iterations X ← aX + (bA + cA²)X,
  A = X Xᵀ, (a, b, c) = (3.4445, −4.7750, 2.0315), after X = U/‖U‖_F; or exactly by
  the SVD. The implied preconditioner is (M Mᵀ)^{-1/2}: Shampoo's left factor with
  the right factor R = I and exponent −1/2 instead of −1/4, built from the
  momentum's own Gram matrix, not a curvature in the Fisher/GGN sense (it whitens the
  update's singular values, whatever the loss). Every other tensor (biases, gains,
  every parameter of a problem without a model) gets Adam with its own options.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from explorer.curvature.diagonal_estimators import gnb_diagonal, hutchinson_diagonal
from explorer.optimizers.base import StepContext, Transform, chain
from explorer.optimizers.options import eps_option, lr_option
from explorer.optimizers.rules import FIRST_ORDER, RuleSpec
from explorer.optimizers.transforms import descend, scale_by_step_size
from explorer.options import Option
from explorer.problems.base import Problem, parameter_matrices

#: Sophia's curvature estimators.
SOPHIA_ESTIMATORS = ("gnb", "hutchinson")
#: Muon's orthogonalizations.
ORTHOGONALIZATIONS = ("newton_schulz", "svd")
#: Muon's update scales: Keller Jordan's √max(1, rows/cols), Moonlight's
#: 0.2·√max(rows, cols) (matches AdamW's update RMS, Liu et al. 2025).
MUON_SCALES = ("keller", "moonlight")
#: The quintic Newton–Schulz coefficients (a, b, c) of Jordan et al. 2024.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


# ------------------------------------------------------------------- options
def _decay(name: str, default: float, what: str, high: float = 0.99999) -> Option:
    return Option(name, default, f"Decay {what}.", low=0.0, high=high)


def _weight_decay() -> Option:
    return Option(
        "weight_decay",
        0.0,
        "Decoupled weight decay wd: the step also subtracts lr·wd·θ.",
        low=0.0,
        high=10.0,
    )


def _interval(default: int, what: str) -> Option:
    return Option("update_interval", default, what, low=1, high=100_000)


def sophia_options() -> tuple[Option, ...]:
    return (
        lr_option(0.05),
        _decay("beta1", 0.96, "β₁ of the gradient's moving average m", high=0.999),
        _decay("beta2", 0.99, "β₂ of the curvature's moving average h"),
        Option(
            "gamma",
            0.01,
            "γ in clip(m / max(γh, ε), 1): smaller γ clips fewer coordinates.",
            low=0.0,
            high=1e6,
            low_exclusive=True,
            log=True,
        ),
        eps_option(1e-12, "ε, the floor of γh in the denominator."),
        _interval(10, "Refresh the curvature estimate every k steps (k = 10)."),
        Option(
            "estimator",
            "gnb",
            "'gnb': Gauss-Newton-Bartlett B·ĝ⊙ĝ at targets sampled from the model "
            "(E = diag F); 'hutchinson': u⊙Hu with u ~ N(0, I) (Sophia-H, "
            "E = diag H).",
            choices=SOPHIA_ESTIMATORS,
        ),
        Option(
            "samples",
            1,
            "Draws averaged per estimate: sampled targets (gnb) or probes "
            "(hutchinson).",
            low=1,
            high=10_000,
        ),
        _weight_decay(),
    )


def adahessian_options() -> tuple[Option, ...]:
    return (
        lr_option(0.05),
        _decay("beta1", 0.9, "β₁ of the gradient's moving average m", high=0.999),
        _decay("beta2", 0.999, "β₂ of the moving average v of D⊙D"),
        eps_option(1e-4, "ε added to v̂^{k/2} in the denominator."),
        Option(
            "hessian_power",
            1.0,
            "Hessian power k in v̂^{k/2} (1: Newton-like, 0: momentum SGD).",
            low=0.0,
            high=1.0,
        ),
        Option(
            "probes",
            1,
            "Rademacher probes per Hutchinson estimate (one Hessian-vector "
            "product each).",
            low=1,
            high=10_000,
        ),
        Option(
            "spatial_averaging",
            True,
            "Average D over each convolution kernel's spatial block (their eq. 10).",
        ),
        _interval(1, "Recompute D every k steps (reused in between)."),
        _weight_decay(),
    )


def muon_options() -> tuple[Option, ...]:
    return (
        lr_option(0.05),
        Option(
            "momentum",
            0.95,
            "Momentum μ of M ← μM + G.",
            low=0.0,
            high=0.999,
        ),
        Option("nesterov", True, "Orthogonalize G + μM instead of M."),
        Option(
            "orthogonalization",
            "newton_schulz",
            "'newton_schulz': ns_steps quintic iterations (singular values end in "
            "about [0.7, 1.2]); 'svd': exactly P Qᵀ of U = P Σ Qᵀ.",
            choices=ORTHOGONALIZATIONS,
        ),
        Option(
            "ns_steps",
            5,
            "Newton–Schulz iterations.",
            low=1,
            high=100,
        ),
        Option(
            "scale",
            "keller",
            "Update scale s: 'keller' √max(1, rows/cols); 'moonlight' "
            "0.2·√max(rows, cols) (AdamW's update RMS, Liu et al. 2025).",
            choices=MUON_SCALES,
        ),
        _weight_decay(),
        Option(
            "adam_lr",
            0.05,
            "Learning rate of the Adam fallback (biases, gains, problems without "
            "a model).",
            low=0.0,
            high=1e3,
            low_exclusive=True,
            log=True,
        ),
        Option("adam_beta1", 0.9, "β₁ of the Adam fallback.", low=0.0, high=0.999),
        Option("adam_beta2", 0.999, "β₂ of the Adam fallback.", low=0.0, high=0.99999),
        eps_option(1e-8, "ε of the Adam fallback.", name="adam_eps"),
    )


# -------------------------------------------------------------------- Sophia
class SophiaState(NamedTuple):
    """Step count t, the gradient average m (P,) and the curvature average h (P,)."""

    count: int
    first: Tensor
    hessian: Tensor


def sophia_estimate(
    ctx: StepContext, estimator: str, samples: int
) -> tuple[Tensor, dict[str, float]]:
    """ĥ (P,) at θ_k on the step's curvature batch, and its cost for ``ctx.info``.

    GNB: ``samples`` backward passes at sampled targets (counted as extra gradient
    evaluations through ``loss_evals``); Hutchinson: ``samples`` Hessian-vector
    products with Gaussian probes, no spatial averaging (Sophia-H).
    """
    batch = ctx.curvature_batch
    if estimator == "gnb":
        estimate = gnb_diagonal(
            ctx.problem, ctx.theta, batch, ctx.generator, samples=samples
        )
        return estimate, {"loss_evals": float(samples)}
    estimate, products = hutchinson_diagonal(
        ctx.problem,
        ctx.theta,
        batch,
        ctx.generator,
        probes=samples,
        distribution="gaussian",
        spatial_averaging=False,
    )
    return estimate, {"curvature_products": float(products)}


def scale_by_sophia(
    beta1: float,
    beta2: float,
    gamma: float,
    eps: float,
    interval: int,
    estimator: str,
    samples: int,
    weight_decay: float = 0.0,
) -> Transform:
    """Sophia's direction u = clip(m / max(γh, ε), 1) + wd·θ (module docstring).

    Reports ``clip_fraction`` (coordinates at ±1) and the estimate's cost.
    """

    def init(theta: Tensor) -> SophiaState:
        return SophiaState(0, torch.zeros_like(theta), torch.zeros_like(theta))

    def update(
        updates: Tensor, state: SophiaState, ctx: StepContext
    ) -> tuple[Tensor, SophiaState, StepContext]:
        first = beta1 * state.first + (1 - beta1) * updates
        hessian = state.hessian
        if state.count % interval == 0:
            estimate, cost = sophia_estimate(ctx, estimator, samples)
            hessian = beta2 * hessian + (1 - beta2) * estimate
            ctx = ctx.report(**cost)
        ratio = first / torch.clamp(gamma * hessian, min=eps)
        direction = ratio.clamp(-1.0, 1.0)
        clipped = float((ratio.abs() >= 1).double().mean())
        if weight_decay:
            direction = direction + weight_decay * ctx.theta
        new = SophiaState(state.count + 1, first, hessian)
        return direction, new, ctx.report(clip_fraction=clipped)

    return Transform(init, update)


def build_sophia(options: dict[str, Any], *_: Any) -> Transform:
    return chain(
        scale_by_sophia(
            options["beta1"],
            options["beta2"],
            options["gamma"],
            options["eps"],
            options["update_interval"],
            options["estimator"],
            options["samples"],
            options["weight_decay"],
        ),
        scale_by_step_size(options["lr"]),
    )


# ---------------------------------------------------------------- AdaHessian
class AdaHessianState(NamedTuple):
    """Step count t, moments m and v (P,), and the latest Hutchinson diagonal D."""

    count: int
    first: Tensor
    second: Tensor
    diagonal: Tensor


def scale_by_adahessian(
    beta1: float,
    beta2: float,
    eps: float,
    power: float,
    probes: int,
    spatial_averaging: bool,
    interval: int,
    weight_decay: float = 0.0,
) -> Transform:
    """AdaHessian's direction u = m̂ / (v̂^{k/2} + ε) + wd·θ; reports the products."""

    def init(theta: Tensor) -> AdaHessianState:
        zeros = torch.zeros_like(theta)
        return AdaHessianState(0, zeros, zeros, zeros)

    def update(
        updates: Tensor, state: AdaHessianState, ctx: StepContext
    ) -> tuple[Tensor, AdaHessianState, StepContext]:
        diagonal = state.diagonal
        if state.count % interval == 0:
            diagonal, products = hutchinson_diagonal(
                ctx.problem,
                ctx.theta,
                ctx.curvature_batch,
                ctx.generator,
                probes=probes,
                distribution="rademacher",
                spatial_averaging=spatial_averaging,
            )
            ctx = ctx.report(curvature_products=float(products))
        count = state.count + 1
        first = beta1 * state.first + (1 - beta1) * updates
        second = beta2 * state.second + (1 - beta2) * diagonal * diagonal
        first_hat = first / (1 - beta1**count)
        second_hat = second / (1 - beta2**count)
        direction = first_hat / (second_hat.pow(power / 2) + eps)
        if weight_decay:
            direction = direction + weight_decay * ctx.theta
        return direction, AdaHessianState(count, first, second, diagonal), ctx

    return Transform(init, update)


def build_adahessian(options: dict[str, Any], *_: Any) -> Transform:
    return chain(
        scale_by_adahessian(
            options["beta1"],
            options["beta2"],
            options["eps"],
            options["hessian_power"],
            options["probes"],
            options["spatial_averaging"],
            options["update_interval"],
            options["weight_decay"],
        ),
        scale_by_step_size(options["lr"]),
    )


# ---------------------------------------------------------------------- Muon
def newton_schulz(matrix: Tensor, steps: int = 5) -> Tensor:
    """The quintic Newton–Schulz approximation of the polar factor P Qᵀ of G.

    X = G/(‖G‖_F + 10⁻⁷), then ``steps`` times X ← aX + (bA + cA²)X with A = X Xᵀ on
    the wide orientation (rows ≤ cols, so A is the smaller Gram matrix). Each step
    maps every singular value σ of X by φ(σ) = aσ + bσ³ + cσ⁵; the coefficients
    trade exactness for speed: after 5 steps the singular values lie in about
    [0.7, 1.2], not at 1 (Jordan et al. 2024).
    """
    a, b, c = NS_COEFFICIENTS
    tall = matrix.shape[0] > matrix.shape[1]
    x = matrix.T if tall else matrix
    x = x / (x.norm() + 1e-7)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def svd_orthogonalize(matrix: Tensor) -> Tensor:
    """P Qᵀ of the thin SVD G = P Σ Qᵀ, singular values below
    max(rows, cols)·eps·σ_max dropped (so a zero or rank-deficient G keeps only its
    range; a zero matrix gives zero).
    """
    left, values, right = torch.linalg.svd(matrix, full_matrices=False)
    if values.numel() == 0 or float(values.max()) == 0:
        return torch.zeros_like(matrix)
    tolerance = max(matrix.shape) * torch.finfo(matrix.dtype).eps * values.max()
    keep = (values > tolerance).to(matrix.dtype)
    return (left * keep) @ right


def muon_scale(rows: int, cols: int, scale: str) -> float:
    """The scale √max(1, rows/cols) ('keller') or 0.2·√max(rows, cols)."""
    if scale == "moonlight":
        return 0.2 * math.sqrt(max(rows, cols))
    return math.sqrt(max(1.0, rows / cols))


def muon_matrices(problem: Problem) -> list[tuple[slice, int, int]]:
    """(span in θ, rows, cols) of each tensor Muon orthogonalizes: every parameter
    of ≥ 2 dimensions of an ``nn.Module`` model (a problem without a model has none).
    """
    if problem.model is None:
        return []
    return [
        (t.span, t.rows, t.cols) for t in parameter_matrices(problem) if t.is_matrix
    ]


class MuonState(NamedTuple):
    """Step count t of the Adam fallback, Muon's momentum M (P,; zero outside the
    matrices) and the fallback's moments m, v (P,; used outside them).
    """

    count: int
    momentum: Tensor
    first: Tensor
    second: Tensor


def muon(
    lr: float,
    momentum: float,
    nesterov: bool,
    orthogonalization: str,
    ns_steps: int,
    scale: str,
    weight_decay: float,
    adam: tuple[float, float, float, float],
) -> Transform:
    """Muon on the matrices, Adam elsewhere; returns the step δ itself.

    ``adam`` is (lr, β₁, β₂, ε) of the fallback. Reports ``alpha = lr`` (Muon's).
    """
    adam_lr, beta1, beta2, adam_eps = adam
    orthogonalize: Callable[[Tensor], Tensor] = (
        svd_orthogonalize
        if orthogonalization == "svd"
        else lambda matrix: newton_schulz(matrix, ns_steps)
    )

    def init(theta: Tensor) -> MuonState:
        zeros = torch.zeros_like(theta)
        return MuonState(0, zeros, zeros, zeros)

    def update(
        updates: Tensor, state: MuonState, ctx: StepContext
    ) -> tuple[Tensor, MuonState, StepContext]:
        matrices = muon_matrices(ctx.problem)
        in_muon = torch.zeros(updates.numel(), dtype=torch.bool, device=updates.device)
        step = torch.empty_like(updates)
        velocity = state.momentum.clone()
        for span, rows, cols in matrices:
            in_muon[span] = True
            buffer = momentum * state.momentum[span] + updates[span]
            velocity[span] = buffer
            direction = updates[span] + momentum * buffer if nesterov else buffer
            ortho = orthogonalize(direction.view(rows, cols)).reshape(-1)
            step[span] = descend(muon_scale(rows, cols, scale) * ortho, lr)
        if weight_decay:
            step[in_muon] -= lr * weight_decay * ctx.theta[in_muon]
        # Adam on everything else (its moments advance only where it acts)
        rest = ~in_muon
        count = state.count + 1
        first, second = state.first.clone(), state.second.clone()
        if bool(rest.any()):
            g = updates[rest]
            first[rest] = beta1 * state.first[rest] + (1 - beta1) * g
            second[rest] = beta2 * state.second[rest] + (1 - beta2) * g * g
            first_hat = first[rest] / (1 - beta1**count)
            second_hat = second[rest] / (1 - beta2**count)
            direction = first_hat / (second_hat.sqrt() + adam_eps)
            if weight_decay:
                direction = direction + weight_decay * ctx.theta[rest]
            step[rest] = descend(direction, adam_lr)
        return step, MuonState(count, velocity, first, second), ctx.report(alpha=lr)

    return Transform(init, update)


def build_muon(options: dict[str, Any], *_: Any) -> Transform:
    return muon(
        options["lr"],
        options["momentum"],
        options["nesterov"],
        options["orthogonalization"],
        options["ns_steps"],
        options["scale"],
        options["weight_decay"],
        (
            options["adam_lr"],
            options["adam_beta1"],
            options["adam_beta2"],
            options["adam_eps"],
        ),
    )


# --------------------------------------------------------------------- specs
SOPHIA = RuleSpec(
    key="sophia",
    label="Sophia",
    build=build_sophia,
    options=sophia_options(),
    description=(
        "m ← β₁m + (1−β₁)g; every k steps h ← β₂h + (1−β₂)ĥ with ĥ the "
        "Gauss-Newton-Bartlett diagonal B·ĝ⊙ĝ at targets sampled from the model "
        "(E ĥ = diag F) or Hutchinson's u⊙Hu; θ ← θ − α·clip(m / max(γh, ε), 1), "
        "each coordinate clipped to [−1, 1] (sign descent where h is small or "
        "negative)."
    ),
    family=FIRST_ORDER,
    reference="Liu, Li, Hall, Liang & Ma 2023 (Sophia), Algorithm 3",
    color="#8ca252",
    theory="preconditioners",
)
ADAHESSIAN = RuleSpec(
    key="adahessian",
    label="AdaHessian",
    build=build_adahessian,
    options=adahessian_options(),
    description=(
        "Adam with the squared gradient replaced by D⊙D, D = z⊙Hz the Hutchinson "
        "diagonal (Rademacher z, spatially averaged over convolution kernels): "
        "θ ← θ − α·m̂ / (v̂^{k/2} + ε), bias-corrected moving averages m of g and v "
        "of D⊙D."
    ),
    family=FIRST_ORDER,
    reference="Yao, Gholami, Shen, Mustafa, Keutzer & Mahoney 2021 (AdaHessian)",
    color="#d6616b",
    theory="preconditioners",
)
MUON = RuleSpec(
    key="muon",
    label="Muon",
    build=build_muon,
    options=muon_options(),
    description=(
        "For each weight matrix: M ← μM + G, ΔW = −α·s·O with O = (UUᵀ)^{-1/2}U the "
        "orthogonalized momentum U (M, or G + μM with Nesterov), by 5 quintic "
        "Newton–Schulz steps or the SVD. Its implied preconditioner (MMᵀ)^{-1/2} is "
        "Shampoo's left factor with R = I and exponent −1/2 on the momentum's own "
        "Gram matrix: not a curvature in the Fisher/GGN sense. Biases, gains and "
        "models without nn.Module get Adam."
    ),
    family=FIRST_ORDER,
    reference="Jordan et al. 2024 (Muon); Liu et al. 2025 (Muon is scalable)",
    color="#7b4173",
    theory="preconditioners",
)
