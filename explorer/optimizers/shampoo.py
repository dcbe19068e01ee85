r"""Shampoo and SOAP: Kronecker-factored preconditioners per parameter tensor.

Both rules view every parameter tensor as a matrix G of shape m × n, m = shape[0],
n = prod(shape[1:]), in the row-major order of θ; 1-D tensors (biases, gains) and
scalars are treated elementwise. They need the tensor shapes, so their state is
laid out at the first update (from ``ctx.problem``); every update is a pure
function of (gradient, state).

**Shampoo** (Gupta, Koren & Singer 2018, with the conventions of Distributed
Shampoo, Shi et al. 2023). Per matrix tensor, at step t = 1, 2, ...:

.. math:: L_t = β_2 L_{t-1} + (1-β_2) G G^\top, \quad
   R_t = β_2 R_{t-1} + (1-β_2) G^\top G

(β₂ = 1: the plain sums L_t = L_{t-1} + G Gᵀ of the original paper). Every
``update_interval`` steps (at t = 1, 1 + k, 1 + 2k, ...) the root inverses
P_L = (L̂ + εI)^{-1/4} and P_R = (R̂ + εI)^{-1/4} are recomputed by ``eigh`` in
float64, with L̂ = L_t / (1 − β₂ᵗ) (bias correction, as Distributed Shampoo; none
for β₂ = 1) and eigenvalues below zero (round-off) clamped to zero. The direction is
D = P_L G P_R, i.e. vec D = (L ⊗ R)^{-1/4} vec G up to the ε and bias-correction
scalars: the inverse fourth root of L ⊗ R (see :mod:`explorer.curvature.shampoo`
for the curvature this implies). A 1-D tensor uses a single diagonal factor
s_t = β₂ s_{t-1} + (1 − β₂) g² (the sum for β₂ = 1) and D = g ⊘ (ŝ + ε)^{1/2}
(Adagrad-like, every step), as Distributed Shampoo does for 1-D tensors.

Grafting (``grafting``) keeps Shampoo's direction and borrows a simpler method's
per-tensor step length: D ← D · ‖D_graft‖ / ‖D‖ with D_graft = g (``"sgd"``) or
Adam's m̂ ⊘ (√v̂ + ε_g) with its own β's (``"adam"``); ``"none"`` keeps D. Before
``start_preconditioning_step`` the grafted direction itself is used (the factors
still accumulate). Then optional heavy-ball momentum and δ = −lr·u.

**SOAP** (Vyas et al. 2024, "SOAP: Improving and Stabilizing Shampoo using Adam",
Algorithm 1). Per matrix tensor with L, R the ``shampoo_beta`` moving averages of
G Gᵀ and Gᵀ G and Q_L, Q_R their eigenvectors:

1. G' = Q_Lᵀ G Q_R;
2. M ← β₁ M + (1 − β₁) G (kept in the original space), M' = Q_Lᵀ M Q_R;
3. V' ← β₂ V' + (1 − β₂) G' ⊙ G' (kept in the rotated space);
4. N' = M̂' ⊘ (√V̂' + ε) with M̂' = M'/(1 − β₁ˢ), V̂' = V'/(1 − β₂ˢ);
5. u = Q_L N' Q_Rᵀ, δ = −lr·u;
6. L, R ← their moving averages with the current G; every
   ``precondition_frequency`` Adam steps Q_L, Q_R ← eigenvectors of L, R.

1-D tensors run plain Adam (the same β's, ε and counter s).

Where this SOAP deviates from the paper or its reference code, deliberately:

* The first update only initializes L, R (from that gradient) and Q_L, Q_R (by
  ``eigh``) and takes no step, as the reference implementation does "so that we
  never use the current gradients in the projection"; the Adam counter s starts at
  the second update.
* Every refresh is a full ``eigh`` in float64 (eigenvalues ascending), not the
  reference code's one step of power iteration with QR; V' is kept as it is across
  a refresh, its coordinates matched by eigenvalue order (the reference code
  sorts its estimates and permutes V' to match, the same correspondence).
* Bias correction as in ``torch.optim.Adam`` (m̂ / (√v̂ + ε)) rather than folding
  √(1 − β₂ˢ)/(1 − β₁ˢ) into the step size (which places ε differently); with this
  choice SOAP with fixed identity (or signed permutation) eigenbases is Adam exactly.
* No dimension cap (``max_precond_dim``), no merging of dimensions, no weight
  decay, no gradient normalization.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from explorer.optimizers.base import StepContext, Transform, chain
from explorer.optimizers.options import eps_option, lr_option
from explorer.optimizers.rules import RuleSpec
from explorer.optimizers.transforms import scale_by_step_size, trace
from explorer.options import Option
from explorer.problems.base import ParameterMatrix, parameter_matrices

GRAFTINGS = ("none", "sgd", "adam")


# --------------------------------------------------------------------- layout
def _views(ctx: StepContext, theta_size: int) -> tuple[ParameterMatrix, ...]:
    views = parameter_matrices(ctx.problem)
    total = sum(v.span.stop - v.span.start for v in views)
    if total != theta_size:
        raise ValueError(
            f"the parameter shapes of problem {ctx.problem.key!r} cover {total} "
            f"entries but θ has {theta_size}"
        )
    return views


def matrix_power(matrix: Tensor, power: float, eps: float) -> Tensor:
    """(A + εI)^power of a symmetric PSD A by ``eigh`` in float64 (eigenvalues
    below zero are round-off and clamped to zero).
    """
    values, vectors = torch.linalg.eigh(matrix.to(torch.float64))
    scaled = (values.clamp(min=0.0) + eps).pow(power)
    return ((vectors * scaled) @ vectors.T).to(matrix.dtype)


def eigenvectors(matrix: Tensor) -> Tensor:
    """The eigenvectors of a symmetric matrix (columns, eigenvalues ascending),
    by ``eigh`` in float64.
    """
    return torch.linalg.eigh(matrix.to(torch.float64))[1].to(matrix.dtype)


def _accumulate(old: Tensor, new: Tensor, beta: float) -> Tensor:
    """β·old + (1 − β)·new, or the plain sum old + new for β = 1."""
    return old + new if beta == 1 else beta * old + (1 - beta) * new


# -------------------------------------------------------------------- Shampoo
class ShampooTensor(NamedTuple):
    """One tensor's Shampoo state: L and R with their root inverses P_L, P_R
    (matrix tensors), or the diagonal accumulator s in ``left`` (1-D: the others
    None); the grafting Adam moments (None unless ``grafting="adam"``).
    """

    left: Tensor
    right: Tensor | None
    left_root: Tensor | None
    right_root: Tensor | None
    graft_first: Tensor | None
    graft_second: Tensor | None


class ShampooState(NamedTuple):
    """Updates taken so far, and the per-tensor state (None before the first)."""

    count: int
    tensors: tuple[ShampooTensor, ...] | None


def scale_by_shampoo(
    beta2: float,
    eps: float,
    update_interval: int,
    grafting: str,
    graft_beta1: float,
    graft_beta2: float,
    graft_eps: float,
    start_preconditioning_step: int,
) -> Transform:
    """Shampoo's grafted direction per tensor (the module docstring's formulas).

    Reports ``shampoo_root_update`` (1 when the root inverses were recomputed this
    step) and ``shampoo_graft_ratio`` (the mean over tensors of ‖D_graft‖/‖D‖).
    """
    if grafting not in GRAFTINGS:
        raise ValueError(f"grafting = {grafting!r}; valid: {', '.join(GRAFTINGS)}")

    def init(theta: Tensor) -> ShampooState:
        return ShampooState(0, None)

    def fresh(view: ParameterMatrix, like: Tensor) -> ShampooTensor:
        graft = grafting == "adam"
        zeros = torch.zeros(view.span.stop - view.span.start, dtype=like.dtype)
        zeros = zeros.to(like.device)
        moments = (zeros.clone(), zeros.clone()) if graft else (None, None)
        if not view.is_matrix:
            return ShampooTensor(zeros.clone(), None, None, None, *moments)
        left = torch.zeros(view.rows, view.rows, dtype=like.dtype, device=like.device)
        right = torch.zeros(view.cols, view.cols, dtype=like.dtype, device=like.device)
        return ShampooTensor(left, right, None, None, *moments)

    def update(
        updates: Tensor, state: ShampooState, ctx: StepContext
    ) -> tuple[Tensor, ShampooState, StepContext]:
        views = _views(ctx, updates.numel())
        tensors = state.tensors or tuple(fresh(view, updates) for view in views)
        count = state.count + 1
        refresh = (count - 1) % update_interval == 0
        correction = 1.0 if beta2 == 1 else 1 - beta2**count
        out = torch.empty_like(updates)
        new_tensors, ratios = [], []
        for view, old in zip(views, tensors, strict=True):
            g = updates[view.span]
            if view.is_matrix:
                grad = g.view(view.rows, view.cols)
                left = _accumulate(old.left, grad @ grad.T, beta2)
                right = _accumulate(old.right, grad.T @ grad, beta2)
                left_root, right_root = old.left_root, old.right_root
                if refresh or left_root is None:
                    left_root = matrix_power(left / correction, -0.25, eps)
                    right_root = matrix_power(right / correction, -0.25, eps)
                direction = (left_root @ grad @ right_root).reshape(-1)
            else:
                left = _accumulate(old.left, g * g, beta2)
                right = left_root = right_root = None
                direction = g / (left / correction + eps).sqrt()
            first, second = old.graft_first, old.graft_second
            if grafting == "adam":
                first = graft_beta1 * first + (1 - graft_beta1) * g
                second = graft_beta2 * second + (1 - graft_beta2) * g * g
                first_hat = first / (1 - graft_beta1**count)
                second_hat = second / (1 - graft_beta2**count)
                grafted = first_hat / (second_hat.sqrt() + graft_eps)
            else:
                grafted = g
            if count < start_preconditioning_step:
                direction = grafted
            elif grafting != "none":
                norm = direction.norm()
                if float(norm) > 0:
                    ratio = grafted.norm() / norm
                    ratios.append(float(ratio))
                    direction = direction * ratio
            out[view.span] = direction
            new_tensors.append(
                ShampooTensor(left, right, left_root, right_root, first, second)
            )
        report = {"shampoo_root_update": float(refresh)}
        if ratios:
            report["shampoo_graft_ratio"] = sum(ratios) / len(ratios)
        return out, ShampooState(count, tuple(new_tensors)), ctx.report(**report)

    return Transform(init, update)


# ----------------------------------------------------------------------- SOAP
class SOAPTensor(NamedTuple):
    """One tensor's SOAP state: L, R and their eigenvectors Q_L, Q_R (None for
    1-D tensors), the first moment M (original space) and the second moment V
    (rotated space for matrix tensors).
    """

    left: Tensor | None
    right: Tensor | None
    left_basis: Tensor | None
    right_basis: Tensor | None
    first: Tensor
    second: Tensor


class SOAPState(NamedTuple):
    """Adam steps taken s (the first update takes none), and the per-tensor state."""

    count: int
    tensors: tuple[SOAPTensor, ...] | None


def scale_by_soap(
    beta1: float,
    beta2: float,
    shampoo_beta: float,
    eps: float,
    precondition_frequency: int,
) -> Transform:
    """SOAP's direction u (the module docstring's steps 1–6).

    Reports ``soap_basis_update`` (1 when Q_L, Q_R were recomputed this step).
    """

    def init(theta: Tensor) -> SOAPState:
        return SOAPState(0, None)

    def start(view: ParameterMatrix, g: Tensor) -> SOAPTensor:
        zeros = torch.zeros_like(g)
        if not view.is_matrix:
            return SOAPTensor(None, None, None, None, zeros, zeros.clone())
        grad = g.view(view.rows, view.cols)
        left = (1 - shampoo_beta) * grad @ grad.T
        right = (1 - shampoo_beta) * grad.T @ grad
        return SOAPTensor(
            left, right, eigenvectors(left), eigenvectors(right), zeros, zeros.clone()
        )

    def update(
        updates: Tensor, state: SOAPState, ctx: StepContext
    ) -> tuple[Tensor, SOAPState, StepContext]:
        views = _views(ctx, updates.numel())
        if state.tensors is None:  # initialize the eigenbases; take no step
            tensors = tuple(start(view, updates[view.span]) for view in views)
            out = torch.zeros_like(updates)
            return out, SOAPState(0, tensors), ctx.report(soap_basis_update=1.0)
        count = state.count + 1
        refresh = count % precondition_frequency == 0
        out = torch.empty_like(updates)
        new_tensors = []
        for view, old in zip(views, state.tensors, strict=True):
            g = updates[view.span]
            first = beta1 * old.first + (1 - beta1) * g
            if not view.is_matrix:
                second = beta2 * old.second + (1 - beta2) * g * g
                first_hat = first / (1 - beta1**count)
                second_hat = second / (1 - beta2**count)
                out[view.span] = first_hat / (second_hat.sqrt() + eps)
                new_tensors.append(old._replace(first=first, second=second))
                continue
            q_left, q_right = old.left_basis, old.right_basis
            grad = g.view(view.rows, view.cols)
            rotated = q_left.T @ grad @ q_right
            first_rotated = q_left.T @ first.view(view.rows, view.cols) @ q_right
            second = beta2 * old.second + (1 - beta2) * rotated.reshape(-1) ** 2
            first_hat = first_rotated.reshape(-1) / (1 - beta1**count)
            second_hat = second / (1 - beta2**count)
            normalized = (first_hat / (second_hat.sqrt() + eps)).view_as(grad)
            out[view.span] = (q_left @ normalized @ q_right.T).reshape(-1)
            left = shampoo_beta * old.left + (1 - shampoo_beta) * grad @ grad.T
            right = shampoo_beta * old.right + (1 - shampoo_beta) * grad.T @ grad
            if refresh:
                q_left, q_right = eigenvectors(left), eigenvectors(right)
            new_tensors.append(SOAPTensor(left, right, q_left, q_right, first, second))
        return (
            out,
            SOAPState(count, tuple(new_tensors)),
            ctx.report(soap_basis_update=float(refresh)),
        )

    return Transform(init, update)


# ---------------------------------------------------------------- rule specs
def shampoo_options() -> tuple[Option, ...]:
    return (
        lr_option(0.01),
        Option(
            "beta2",
            1.0,
            "Decay β₂ of the factors L, R (and of the 1-D accumulator): "
            "L ← β₂L + (1−β₂)GGᵀ; 1 sums them (L ← L + GGᵀ, the original paper).",
            low=0.0,
            high=1.0,
        ),
        eps_option(
            1e-12, "ε in the root inverses (L + εI)^(-1/4), and in (Σg² + ε)^(-1/2)."
        ),
        Option(
            "update_interval",
            1,
            "Recompute the root inverses every k steps (at steps 1, 1 + k, ...).",
            low=1,
            high=100_000,
        ),
        Option(
            "grafting",
            "adam",
            "Per tensor, rescale Shampoo's direction to the norm of: 'adam' "
            "(m̂/(√v̂+ε)), 'sgd' (the gradient) or 'none' (keep it).",
            choices=GRAFTINGS,
        ),
        Option(
            "graft_beta1",
            0.9,
            "β₁ of the grafted Adam's first moment.",
            low=0.0,
            high=0.999,
        ),
        Option(
            "graft_beta2",
            0.999,
            "β₂ of the grafted Adam's second moment.",
            low=0.0,
            high=0.99999,
        ),
        Option(
            "graft_eps",
            1e-8,
            "ε of the grafted Adam's denominator √v̂ + ε.",
            low=0.0,
            high=1.0,
            low_exclusive=True,
            log=True,
        ),
        Option(
            "start_preconditioning_step",
            1,
            "Use the grafted direction alone before this step (the factors still "
            "accumulate); 1 preconditions from the first step.",
            low=1,
            high=100_000,
        ),
        Option(
            "momentum",
            0.0,
            "Heavy-ball momentum μ on the grafted direction: v ← μv + u (0: off).",
            low=0.0,
            high=0.999,
        ),
    )


def soap_options() -> tuple[Option, ...]:
    return (
        lr_option(0.01),
        Option("beta1", 0.95, "Decay β₁ of the first moment M.", low=0.0, high=0.999),
        Option(
            "beta2",
            0.95,
            "Decay β₂ of the rotated second moment V'.",
            low=0.0,
            high=0.99999,
        ),
        Option(
            "shampoo_beta",
            0.95,
            "Decay of the factors L, R: L ← βL + (1−β)GGᵀ.",
            low=0.0,
            high=0.99999,
        ),
        eps_option(1e-8, "ε added to √V̂' in the denominator."),
        Option(
            "precondition_frequency",
            10,
            "Recompute the eigenbases Q_L, Q_R every f Adam steps.",
            low=1,
            high=100_000,
        ),
    )


def build_shampoo(options: dict[str, Any], *_: Any) -> Transform:
    return chain(
        scale_by_shampoo(
            beta2=options["beta2"],
            eps=options["eps"],
            update_interval=options["update_interval"],
            grafting=options["grafting"],
            graft_beta1=options["graft_beta1"],
            graft_beta2=options["graft_beta2"],
            graft_eps=options["graft_eps"],
            start_preconditioning_step=options["start_preconditioning_step"],
        ),
        trace(options["momentum"]),
        scale_by_step_size(options["lr"]),
    )


def build_soap(options: dict[str, Any], *_: Any) -> Transform:
    return chain(
        scale_by_soap(
            beta1=options["beta1"],
            beta2=options["beta2"],
            shampoo_beta=options["shampoo_beta"],
            eps=options["eps"],
            precondition_frequency=options["precondition_frequency"],
        ),
        scale_by_step_size(options["lr"]),
    )


SHAMPOO = RuleSpec(
    key="shampoo",
    label="Shampoo",
    build=build_shampoo,
    options=shampoo_options(),
    description=(
        "Per tensor G (m × n): L ← β₂L + (1−β₂)GGᵀ, R ← β₂R + (1−β₂)GᵀG, "
        "δ = −α·L^(-1/4) G R^(-1/4) (roots every k steps; 1-D tensors "
        "diagonal), rescaled to the norm of a grafted Adam or SGD step."
    ),
    reference="Gupta, Koren & Singer 2018; Shi et al. 2023 (Distributed Shampoo)",
    color="#c49c94",
    theory="preconditioners",
)

SOAP = RuleSpec(
    key="soap",
    label="SOAP",
    build=build_soap,
    options=soap_options(),
    description=(
        "Adam in Shampoo's eigenbasis: per tensor G' = Q_Lᵀ G Q_R, Adam moments in "
        "the rotated space, δ = −α·Q_L (M̂'/(√V̂'+ε)) Q_Rᵀ, with Q_L, Q_R the "
        "eigenvectors of L, R refreshed every f steps; 1-D tensors plain Adam."
    ),
    reference="Vyas et al. 2024",
    color="#ad494a",
    theory="preconditioners",
)
