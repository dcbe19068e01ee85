r"""Update rules as chains of small pure transforms on flat vectors (optax style).

A :class:`Transform` is a pair of pure functions::

    state = transform.init(theta)
    updates, state, ctx = transform.update(updates, state, ctx)

``updates`` (P,) enters as the gradient g and leaves as the step δ (θ ← θ + δ);
``state`` is an explicit immutable value (never mutated in place); ``ctx`` is the
:class:`StepContext` of this step. Transforms hand facts to later ones through
``ctx`` (the curvature operator, the damping λ) and report what the charts show
through ``ctx.info`` (λ, ρ, α, products used). :func:`chain` composes transforms
left to right. The sign flips in exactly one place:
:func:`~explorer.optimizers.transforms.scale_by_step_size` (δ = −α·u).

An :class:`UpdateRule` wraps a transform in the interface the runner uses,
``update(grad, state, ctx) -> (delta, state, info)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor

from explorer.curvature.base import CurvatureOperator
from explorer.problems.base import Batch, Problem


@dataclass(frozen=True)
class StepContext:
    """Everything one update may look at besides the incoming vector and its state.

    Attributes:
        problem: The problem being optimized.
        theta: The current iterate θ_k (P,).
        loss: h(θ_k) on ``batch`` (a scalar tensor).
        grad: ∇h(θ_k) on ``batch`` (P,), the vector the chain started from.
        batch: The gradient mini-batch.
        curvature_batch_fn: Returns the examples curvature matrices average over
            (drawn on first use, so rules without curvature draw none); None
            means the gradient batch. Read it through :attr:`curvature_batch`.
        generator: For any sampling a rule does (MC Fisher targets, K-FAC).
        step: The index k of this update (0 for the first).
        curvature: The curvature operator for this step (set by
            :func:`~explorer.optimizers.preconditioning.with_curvature`).
        damping: The Tikhonov damping λ for this step (set by
            :func:`~explorer.optimizers.damping.with_damping`).
        damped_product: ``(u, (C + λI) u)`` when a transform already computed that
            product for the vector ``u`` (reused by the reduction ratio ρ).
        info: Scalars for the history of this step.
    """

    problem: Problem
    theta: Tensor
    loss: Tensor
    grad: Tensor
    batch: Batch
    generator: torch.Generator
    step: int = 0
    curvature_batch_fn: Callable[[], Batch] | None = None
    curvature: CurvatureOperator | None = None
    damping: float | None = None
    damped_product: tuple[Tensor, Tensor] | None = None
    info: dict[str, float] = field(default_factory=dict)

    @property
    def curvature_batch(self) -> Batch:
        """The examples curvature matrices average over."""
        if self.curvature_batch_fn is None:
            return self.batch
        return self.curvature_batch_fn()

    def replace(self, **changes: Any) -> StepContext:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def report(self, **values: float) -> StepContext:
        """A copy whose ``info`` also holds ``values`` (later reports win)."""
        return dataclasses.replace(self, info={**self.info, **values})

    def objective(self, theta: Tensor) -> Tensor:
        """h(θ) on this step's gradient batch (for the reduction ratio ρ)."""
        with torch.no_grad():
            return self.problem.objective(theta, self.batch)


InitFn = Callable[[Tensor], Any]
UpdateFn = Callable[[Tensor, Any, StepContext], tuple[Tensor, Any, StepContext]]


class Transform(NamedTuple):
    """A pure gradient transformation: ``init(theta)`` and ``update(u, state, ctx)``."""

    init: InitFn
    update: UpdateFn


def chain(*transforms: Transform) -> Transform:
    """Applies ``transforms`` left to right; the state is the tuple of their states.

    Example:
        >>> from explorer.optimizers.transforms import trace, scale_by_step_size
        >>> sgd_momentum = chain(trace(0.9), scale_by_step_size(0.1))
    """

    def init(theta: Tensor) -> tuple[Any, ...]:
        return tuple(t.init(theta) for t in transforms)

    def update(
        updates: Tensor, state: tuple[Any, ...], ctx: StepContext
    ) -> tuple[Tensor, tuple[Any, ...], StepContext]:
        new_states = []
        for transform, inner in zip(transforms, state, strict=True):
            updates, inner, ctx = transform.update(updates, inner, ctx)
            new_states.append(inner)
        return updates, tuple(new_states), ctx

    return Transform(init, update)


@dataclass(frozen=True)
class UpdateRule:
    """An optimizer: ``init(theta) -> state``, ``update(grad, state, ctx)``.

    ``update`` returns ``(delta, state, info)``: the step δ (θ ← θ + δ), the new
    state and a dict of scalars for the history (``alpha``, ``damping``, ``rho``,
    ``curvature_products``, ``loss_evals`` ...).

    Attributes:
        key: The registry key that built it.
        transform: The composed transform.
        options: The resolved options (a reproducibility record).
    """

    key: str
    transform: Transform
    options: dict[str, Any] = field(default_factory=dict)

    def init(self, theta: Tensor) -> Any:
        return self.transform.init(theta)

    def update(
        self, grad: Tensor, state: Any, ctx: StepContext
    ) -> tuple[Tensor, Any, dict[str, float]]:
        delta, state, ctx = self.transform.update(grad, state, ctx.replace(info={}))
        return delta, state, dict(ctx.info)
