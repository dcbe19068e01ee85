r"""Damped curvature steps: build the curvature, solve (C + λI) p = u, choose α.

The generic second-order step (THEORY.md §3) is

.. math:: δ = -α (C + λI)^{-1} g,

composed from three transforms that read the curvature C and the damping λ from
the step context:

* :func:`with_curvature` wraps the rest of a chain and provides C: any key of
  ``explorer.CURVATURES`` (including ones registered after import), refreshed every
  k steps, optionally as a moving average (:mod:`explorer.optimizers.ema`); it
  reports the curvature-vector products the step used.
* :func:`solve_damped` maps u to p = (C + λI)⁻¹u by the operator's own solver
  (closed forms for diagonal, block and K-FAC; dense Cholesky for small P) or by
  truncated, warm-started conjugate gradients on products (Martens 2010).
* :func:`scale_by_optimal_step` takes the step δ = −α* p that minimizes the quadratic
  model M(δ) = h + gᵀδ + ½ δᵀ(C + λI)δ along p: α* = gᵀp / pᵀ(C + λI)p.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor

from explorer.curvature.base import LinearOperator
from explorer.curvature.registry import curvature
from explorer.curvature.solvers import IndefiniteCurvatureError, conjugate_gradient
from explorer.optimizers.base import StepContext, Transform
from explorer.optimizers.ema import ema_combine, ema_decay
from explorer.optimizers.transforms import descend

SOLVERS = ("auto", "direct", "cg")
NEGATIVE_CURVATURE = ("error", "truncate")


class CurvatureState(NamedTuple):
    """The operator in use, how many refreshes built it, and the inner state."""

    operator: LinearOperator | None
    refreshes: int
    inner: Any


def with_curvature(
    inner: Transform,
    key: str,
    options: Mapping[str, Any] | None = None,
    refresh_every: int = 1,
    ema: float = 0.0,
) -> Transform:
    """Provides ``ctx.curvature`` to ``inner``: curvature ``key`` at θ_k.

    Args:
        inner: The transforms that use the curvature.
        key: A key of ``explorer.CURVATURES``.
        options: That curvature's options.
        refresh_every: Rebuild the curvature at steps 0, k, 2k, ... and reuse it in
            between (its dense factorization or factors included).
        ema: Moving-average decay β across refreshes (0: the latest only).

    Reports ``curvature_products`` (products this step, construction included) and
    ``refreshed`` (1 when the curvature was rebuilt).
    """
    options = dict(options or {})

    def init(theta: Tensor) -> CurvatureState:
        return CurvatureState(None, 0, inner.init(theta))

    def update(
        updates: Tensor, state: CurvatureState, ctx: StepContext
    ) -> tuple[Tensor, CurvatureState, StepContext]:
        operator, refreshes = state.operator, state.refreshes
        fresh = operator is None or ctx.step % refresh_every == 0
        if fresh:
            built = curvature(
                key,
                ctx.problem,
                ctx.theta,
                batch=ctx.curvature_batch,
                generator=ctx.generator,
                **options,
            )
            if ema > 0 and operator is not None:
                built = ema_combine(operator, built, ema_decay(ema, refreshes))
            operator, refreshes, start = built, refreshes + 1, 0
        else:
            start = operator.products
        out, inner_state, ctx = inner.update(
            updates, state.inner, ctx.replace(curvature=operator)
        )
        ctx = ctx.report(
            curvature_products=float(operator.products - start),
            refreshed=float(fresh),
        )
        return out, CurvatureState(operator, refreshes, inner_state), ctx

    return Transform(init, update)


class SolveState(NamedTuple):
    """The previous solution p (for warm starts), None before the first step."""

    previous: Tensor | None


def solve_damped(
    solver: str = "auto",
    cg_maxiter: int = 20,
    cg_rtol: float = 1e-6,
    warm_start: float = 0.0,
    negative_curvature: str = "error",
    dense_max_params: int = 1000,
) -> Transform:
    r"""U ↦ p = (C + λI)⁻¹ u with C = ``ctx.curvature`` and λ = ``ctx.damping``.

    Args:
        solver: ``"direct"``: the operator's ``solve`` (closed forms, dense
            Cholesky up to P = 6,000); ``"cg"``: conjugate gradients on products;
            ``"auto"``: ``"direct"`` when the operator has a closed form or
            P ≤ ``dense_max_params``, else ``"cg"``.
        cg_maxiter: At most this many CG iterations (products) per step.
        cg_rtol: CG stops when ‖r‖ ≤ rtol·‖u‖.
        warm_start: CG starts from this multiple of the previous step's p
            (Martens 2010 uses 0.95); 0 starts from zero.
        negative_curvature: When CG finds pᵀ(C + λI)p ≤ 0: ``"error"`` stops the run
            (:class:`~explorer.IndefiniteCurvatureError`); ``"truncate"`` keeps the
            iterate so far (truncated Newton), or a gradient step scaled by the
            magnitude of the curvature if there is none yet.
        dense_max_params: The largest P that ``"auto"`` factorizes densely.

    Reports ``cg_iterations`` when CG ran.
    """

    def init(theta: Tensor) -> SolveState:
        return SolveState(None)

    def update(
        updates: Tensor, state: SolveState, ctx: StepContext
    ) -> tuple[Tensor, SolveState, StepContext]:
        operator, damping = _curvature_and_damping(ctx)
        direct = solver == "direct" or (
            solver == "auto"
            and (operator.has_closed_form_solve or operator.size <= dense_max_params)
        )
        if direct:
            solution = operator.solve(updates, damping)
            return solution, SolveState(solution), ctx

        def damped(v: Tensor) -> Tensor:
            return operator.matvec(v) + damping * v

        x0 = None
        if warm_start > 0 and state.previous is not None:
            x0 = warm_start * state.previous
        result = conjugate_gradient(
            damped, updates, x0=x0, rtol=cg_rtol, maxiter=cg_maxiter
        )
        solution = result.solution
        if result.negative_curvature:
            if negative_curvature == "error":
                raise IndefiniteCurvatureError(operator.key, damping, None)
            if not bool(solution.any()):
                solution = _cauchy_direction(updates, damped)
        ctx = ctx.report(cg_iterations=float(result.iterations))
        return solution, SolveState(solution), ctx

    return Transform(init, update)


def _cauchy_direction(updates: Tensor, damped) -> Tensor:
    """U · ‖u‖² / |uᵀ(C + λI)u|: a gradient step scaled by the curvature's size."""
    norm2 = updates.dot(updates)
    curvature = updates.dot(damped(updates)).abs()
    scale = norm2 / torch.clamp(curvature, min=torch.finfo(updates.dtype).tiny)
    return updates * scale


def scale_by_optimal_step() -> Transform:
    r"""δ = −α* p with α* = gᵀp / pᵀ(C + λI)p (the minimizer of M along p).

    Reports ``alpha`` and leaves ``(δ, (C + λI)δ)`` in ``ctx.damped_product`` so the
    reduction ratio need not recompute it.

    Raises:
        IndefiniteCurvatureError: pᵀ(C + λI)p ≤ 0, so the model has no minimum
            along p.
    """

    def init(theta: Tensor) -> tuple[()]:
        return ()

    def update(
        updates: Tensor, state: tuple[()], ctx: StepContext
    ) -> tuple[Tensor, tuple[()], StepContext]:
        operator, damping = _curvature_and_damping(ctx)
        # Measured on p/‖p‖∞: pᵀ(C + λI)p of a tiny p underflows to 0 in floating
        # point, which would read as "not positive definite" for a PD matrix.
        size = float(updates.abs().max())
        if size == 0:  # no direction (a zero gradient): no step
            zero = torch.zeros_like(updates)
            ctx = ctx.report(alpha=0.0).replace(damped_product=(zero, zero))
            return zero, state, ctx
        unit = updates / size
        product = operator.matvec(unit) + damping * unit
        curvature = float(unit.dot(product))
        if not curvature > 0:
            rayleigh = curvature / max(float(unit.dot(unit)), 1e-300)
            raise IndefiniteCurvatureError(operator.key, damping, rayleigh)
        alpha = float(ctx.grad.dot(unit)) / curvature / size
        delta = descend(updates, alpha)
        ctx = ctx.report(alpha=alpha).replace(
            damped_product=(delta, descend(product * size, alpha))
        )
        return delta, state, ctx

    return Transform(init, update)


def _curvature_and_damping(ctx: StepContext) -> tuple[LinearOperator, float]:
    if ctx.curvature is None or ctx.damping is None:
        raise RuntimeError(
            "this transform needs ctx.curvature and ctx.damping: wrap it in "
            "with_curvature(with_damping(...))"
        )
    return ctx.curvature, ctx.damping
