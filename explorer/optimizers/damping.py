r"""Tikhonov damping λ: fixed, or adapted by Levenberg–Marquardt from the ratio ρ.

The quadratic model of h around θ with the damped curvature is

.. math:: M(δ) = h(θ) + g^\top δ + \tfrac12 δ^\top (C + λI) δ,

and the reduction ratio compares the actual change of h with the predicted one,

.. math:: ρ = \frac{h(θ + δ) - h(θ)}{M(δ) - M(0)}.

Levenberg–Marquardt (THEORY.md §3): every T steps, if ρ > 3/4 then λ ← ω·λ, if
ρ < 1/4 then λ ← λ/ω, with ω = 2/3 for T = 1 and (19/20)^T otherwise (Martens &
Grosse 2015). Both h values use the same gradient mini-batch.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

from explorer.optimizers.base import StepContext, Transform

ADAPTATIONS = ("fixed", "lm")

#: λ never grows beyond this under Levenberg–Marquardt.
MAX_DAMPING = 1e10


def default_omega(interval: int) -> float:
    """ω = 2/3 when adapting every step, (19/20)^T when every T > 1 steps.

    Example:
        >>> default_omega(1), round(default_omega(5), 4)
        (0.6666666666666666, 0.7738)
    """
    return 2.0 / 3.0 if interval == 1 else (19.0 / 20.0) ** interval


def reduction_ratio(actual: float, predicted: float) -> float:
    """ρ = actual / predicted change; NaN unless the model predicts a decrease.

    Example:
        >>> reduction_ratio(-0.5, -1.0)
        0.5
        >>> math.isnan(reduction_ratio(-0.5, 0.0))
        True
    """
    if not (predicted < 0 and math.isfinite(predicted) and math.isfinite(actual)):
        return math.nan
    return actual / predicted


def lm_adjust(
    damping: float,
    rho: float,
    omega: float,
    min_damping: float = 0.0,
    max_damping: float = MAX_DAMPING,
) -> float:
    """One Levenberg–Marquardt update of λ from ρ (NaN counts as a bad step).

    Example:
        >>> lm_adjust(1.0, 0.9, 0.5), lm_adjust(1.0, 0.5, 0.5), lm_adjust(1.0, 0.1, 0.5)
        (0.5, 1.0, 2.0)
    """
    if rho > 0.75:
        damping = omega * damping
    elif not rho >= 0.25:  # also NaN
        damping = damping / omega
    return min(max(damping, min_damping), max_damping)


class DampingState(NamedTuple):
    """The current λ and the inner transforms' state."""

    damping: float
    inner: Any


def with_damping(
    inner: Transform,
    damping: float,
    adaptation: str = "fixed",
    omega: float | None = None,
    interval: int = 1,
    min_damping: float = 1e-8,
    reject: bool = True,
    track_rho: bool = False,
) -> Transform:
    r"""Provides ``ctx.damping`` = λ to ``inner`` and, for ``"lm"``, adapts it.

    Args:
        inner: The transforms that need λ (the solve, the step size).
        damping: λ, or its starting value under adaptation.
        adaptation: ``"fixed"`` or ``"lm"`` (Levenberg–Marquardt).
        omega: ω in (0, 1); default :func:`default_omega` of ``interval``.
        interval: Adapt λ every this many steps (ρ is computed every step).
        min_damping: The floor of λ under adaptation.
        reject: Under ``"lm"``, a step that increases h on the batch is not taken
            (δ = 0, the inner state is kept) and λ grows at once.
        track_rho: Compute ρ under fixed damping too (one more evaluation of h).

    Reports ``damping`` (the λ used), and where computed ``rho``, ``loss_evals``
    and ``rejected``.
    """
    omega = default_omega(interval) if omega is None else omega

    def init(theta: Tensor) -> DampingState:
        return DampingState(float(damping), inner.init(theta))

    def update(
        updates: Tensor, state: DampingState, ctx: StepContext
    ) -> tuple[Tensor, DampingState, StepContext]:
        lam = state.damping
        delta, inner_state, out = inner.update(
            updates, state.inner, ctx.replace(damping=lam, damped_product=None)
        )
        out = out.report(damping=lam)
        if adaptation == "fixed" and not track_rho:
            return delta, DampingState(lam, inner_state), out
        actual, predicted = _changes(delta, lam, ctx, out)
        rho = reduction_ratio(actual, predicted)
        out = out.report(rho=rho, loss_evals=1.0)
        if adaptation == "fixed":
            return delta, DampingState(lam, inner_state), out
        rejected = reject and not actual <= 0  # an increase, or NaN
        if rejected:
            delta, inner_state = torch.zeros_like(delta), state.inner
        if rejected or (ctx.step + 1) % interval == 0:
            lam = lm_adjust(lam, rho, omega, min_damping)
        out = out.report(rejected=float(rejected))
        return delta, DampingState(lam, inner_state), out

    return Transform(init, update)


def _changes(
    delta: Tensor, damping: float, ctx: StepContext, out: StepContext
) -> tuple[float, float]:
    """(h(θ + δ) − h(θ), M(δ) − M(0)) on the step's gradient batch."""
    if out.damped_product is not None and out.damped_product[0] is delta:
        product = out.damped_product[1]
    else:
        if out.curvature is None:
            raise RuntimeError("the reduction ratio needs ctx.curvature")
        product = out.curvature.matvec(delta) + damping * delta
    predicted = float(ctx.grad.dot(delta) + 0.5 * delta.dot(product))
    actual = float(ctx.objective(ctx.theta + delta) - ctx.loss)
    return actual, predicted
