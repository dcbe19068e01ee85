r"""Tikhonov damping λ: fixed, or adapted by Levenberg–Marquardt from the ratio ρ.

The quadratic model of h around θ with the damped curvature is

.. math:: M(δ) = h(θ) + g^\top δ + \tfrac12 δ^\top (C + λI) δ,

and the reduction ratio compares the actual change of h with the predicted one,

.. math:: ρ = \frac{h(θ + δ) - h(θ)}{M(δ) - M(0)}.

Levenberg–Marquardt (THEORY.md §3): every T steps, if ρ > 3/4 then λ ← ω·λ, if
ρ < 1/4 then λ ← λ/ω, with ω = 2/3 for T = 1 and (19/20)^T otherwise (Martens &
Grosse 2015). Both h values use the same gradient mini-batch.

An indefinite C + λI (a Hessian away from a minimum) has no damped Newton step.
``on_indefinite`` chooses what happens then:

* ``"stop"``: the run stops with status ``indefinite`` and the remedy;
* ``"raise_damping"``: the textbook damped Newton (Nocedal & Wright 2006, §3.4): λ is
  raised past the most negative eigenvalue, λ' = max(λ/ω, −λ_min(C) + m) with the
  margin m = max(0.1·|λ_min(C)|, λ_floor), and the step is retried (under ``"lm"``
  the raised λ is kept and adapted from there on);
* ``"negative_curvature"``: a step along the eigenvector v of λ_min(C) < 0, the
  saddle-free Newton step restricted to it (Dauphin et al. 2014),
  δ = −α (gᵀv / |λ_min|) v, a descent direction whatever the sign of v.

Each records ``indefinite = 1`` and ``min_curvature`` = λ_min(C) in the history.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

from explorer.curvature.solvers import IndefiniteCurvatureError
from explorer.optimizers.base import StepContext, Transform

ADAPTATIONS = ("fixed", "lm")
ON_INDEFINITE = ("stop", "raise_damping", "negative_curvature")

#: How often one step may raise λ before giving up (λ grows at least 1/ω each time).
MAX_RAISES = 60

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
    on_indefinite: str = "stop",
    escape_lr: float = 1.0,
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
        on_indefinite: What an indefinite C + λI does (module docstring):
            ``"stop"``, ``"raise_damping"`` or ``"negative_curvature"``.
        escape_lr: The step size α of a negative-curvature step (the rule's lr;
            1 for the optimal step size, whose α* is undefined there).

    Reports ``damping`` (the λ used), and where computed ``rho``, ``loss_evals``,
    ``rejected``, ``indefinite`` and ``min_curvature``.
    """
    omega = default_omega(interval) if omega is None else omega
    if on_indefinite not in ON_INDEFINITE:
        raise ValueError(
            f"on_indefinite = {on_indefinite!r}; choose one of {', '.join(ON_INDEFINITE)}"
        )

    def init(theta: Tensor) -> DampingState:
        return DampingState(float(damping), inner.init(theta))

    def attempt(updates: Tensor, state: DampingState, ctx: StepContext, lam: float):
        delta, inner_state, out = inner.update(
            updates, state.inner, ctx.replace(damping=lam, damped_product=None)
        )
        return delta, inner_state, out.report(damping=lam)

    def update(
        updates: Tensor, state: DampingState, ctx: StepContext
    ) -> tuple[Tensor, DampingState, StepContext]:
        lam = state.damping
        if on_indefinite == "stop":
            delta, inner_state, out = attempt(updates, state, ctx, lam)
        else:
            try:
                delta, inner_state, out = attempt(updates, state, ctx, lam)
            except IndefiniteCurvatureError as error:
                if on_indefinite == "negative_curvature":
                    delta, out = negative_curvature_step(ctx, lam, error, escape_lr)
                    inner_state = state.inner
                else:
                    delta, inner_state, out, lam = _raise_until_definite(
                        attempt, updates, state, ctx, lam, error, omega, min_damping
                    )
                if adaptation == "lm":  # LM keeps the raised λ; fixed λ returns
                    state = DampingState(lam, state.inner)
        if adaptation == "fixed" and not track_rho:
            return delta, DampingState(state.damping, inner_state), out
        actual, predicted = _changes(delta, lam, ctx, out)
        rho = reduction_ratio(actual, predicted)
        out = out.report(rho=rho, loss_evals=1.0)
        if adaptation == "fixed":
            return delta, DampingState(state.damping, inner_state), out
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


def _curvature_minimum(error: IndefiniteCurvatureError) -> float | None:
    """λ_min(C) from an error about C + λI (None where only CG saw it)."""
    if error.min_eigenvalue is None:
        return None
    return error.min_eigenvalue - error.damping


def raised_damping(
    damping: float, min_curvature: float | None, omega: float, floor: float
) -> float:
    """λ' = max(λ/ω, −λ_min(C) + max(0.1·|λ_min(C)|, floor)): past the most
    negative eigenvalue with a margin; ten times λ when λ_min(C) is unknown.

    Example:
        >>> raised_damping(0.1, -2.0, 2 / 3, 1e-8)
        2.2
        >>> raised_damping(0.1, None, 2 / 3, 1e-8)
        1.0
    """
    grown = damping / omega
    if min_curvature is None:
        return max(grown, 10 * damping, 10 * floor)
    margin = max(0.1 * abs(min_curvature), floor)
    return min(max(grown, -min_curvature + margin), MAX_DAMPING)


def _raise_until_definite(attempt, updates, state, ctx, lam, error, omega, min_damping):
    """Retries the step with λ raised past λ_min(C) until C + λI is definite."""
    first_minimum = _curvature_minimum(error)
    for _ in range(MAX_RAISES):
        lam = raised_damping(
            lam, _curvature_minimum(error), omega, max(min_damping, 1e-12)
        )
        try:
            delta, inner_state, out = attempt(updates, state, ctx, lam)
        except IndefiniteCurvatureError as again:
            error = again
            if lam >= MAX_DAMPING:
                break
            continue
        minimum = first_minimum if first_minimum is not None else math.nan
        out = out.report(indefinite=1.0, min_curvature=minimum)
        return delta, inner_state, out, lam
    raise error


def negative_curvature_step(
    ctx: StepContext, damping: float, error: IndefiniteCurvatureError, alpha: float
) -> tuple[Tensor, StepContext]:
    r"""δ = −α (gᵀv / |λ_min|) v along the eigenvector v of C's smallest eigenvalue.

    The saddle-free Newton step (Dauphin et al. 2014) restricted to v: its
    directional derivative −α (gᵀv)² / |λ_min| is never positive. Where gᵀv
    vanishes (exactly at a saddle), the length is that of ‖g‖ / |λ_min|, with
    the sign of a descent in curvature.
    """
    # imported here: only this rare path needs the spectra layer
    from explorer.spectra.extreme import eigenpairs

    operator = ctx.curvature
    if operator is None:
        raise error
    generator = torch.Generator(device="cpu").manual_seed(ctx.step)
    pairs = eigenpairs(operator, 1, "smallest", vectors=True, generator=generator)
    value, vector = float(pairs.eigenvalues[0]), pairs.eigenvectors[:, 0]
    if not value < 0:  # the damped solve failed for another reason
        raise error
    slope = float(ctx.grad.dot(vector))
    length = (
        abs(slope)
        if abs(slope) > 1e-12 * float(ctx.grad.norm())
        else float(ctx.grad.norm())
    )
    sign = 1.0 if slope >= 0 else -1.0
    delta = -alpha * sign * (length / abs(value)) * vector
    out = ctx.report(damping=damping, alpha=alpha, indefinite=1.0, min_curvature=value)
    return delta, out
