r"""First-order transforms: momentum, Adam's scaling and the step size.

Each function returns a :class:`~explorer.optimizers.base.Transform`. The incoming
vector u is a descent *direction up to sign* (the gradient, or a preconditioned
gradient); only :func:`scale_by_step_size` turns it into the step δ = −α·u.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from explorer.optimizers.base import StepContext, Transform


def descend(direction: Tensor, alpha: float | Tensor) -> Tensor:
    """δ = −α·u: the one place where a direction becomes a step (the sign flip)."""
    return -alpha * direction


class TraceState(NamedTuple):
    """Momentum buffer v (P,), zero before the first step."""

    velocity: Tensor


def trace(momentum: float, nesterov: bool = False) -> Transform:
    r"""Heavy-ball momentum: v ← μ v + u, output v (or u + μ v with Nesterov).

    With μ = 0 the transform is the identity. The convention is PyTorch's
    ``torch.optim.SGD`` with ``dampening=0``.
    """

    def init(theta: Tensor) -> TraceState:
        return TraceState(torch.zeros_like(theta))

    def update(
        updates: Tensor, state: TraceState, ctx: StepContext
    ) -> tuple[Tensor, TraceState, StepContext]:
        if momentum == 0:
            return updates, state, ctx
        velocity = momentum * state.velocity + updates
        out = updates + momentum * velocity if nesterov else velocity
        return out, TraceState(velocity), ctx

    return Transform(init, update)


class AdamState(NamedTuple):
    """Step count t and the first and second moment estimates m, v (P,)."""

    count: int
    first: Tensor
    second: Tensor


def scale_by_adam(beta1: float, beta2: float, eps: float) -> Transform:
    r"""Adam's direction u = m̂ / (√v̂ + ε) (Kingma & Ba 2015).

    m ← β₁ m + (1 − β₁) g, v ← β₂ v + (1 − β₂) g², m̂ = m / (1 − β₁ᵗ),
    v̂ = v / (1 − β₂ᵗ); the same arithmetic as ``torch.optim.Adam``.
    """

    def init(theta: Tensor) -> AdamState:
        return AdamState(0, torch.zeros_like(theta), torch.zeros_like(theta))

    def update(
        updates: Tensor, state: AdamState, ctx: StepContext
    ) -> tuple[Tensor, AdamState, StepContext]:
        count = state.count + 1
        first = beta1 * state.first + (1 - beta1) * updates
        second = beta2 * state.second + (1 - beta2) * updates * updates
        first_hat = first / (1 - beta1**count)
        second_hat = second / (1 - beta2**count)
        direction = first_hat / (second_hat.sqrt() + eps)
        return direction, AdamState(count, first, second), ctx

    return Transform(init, update)


def scale_by_step_size(lr: float) -> Transform:
    """δ = −lr·u, and reports ``alpha = lr``."""

    def init(theta: Tensor) -> tuple[()]:
        return ()

    def update(
        updates: Tensor, state: tuple[()], ctx: StepContext
    ) -> tuple[Tensor, tuple[()], StepContext]:
        return descend(updates, lr), state, ctx.report(alpha=lr)

    return Transform(init, update)
