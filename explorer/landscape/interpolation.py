"""The loss along the straight line between two parameter vectors."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from explorer.landscape.evaluate import objective_at
from explorer.problems.base import Problem


@dataclass(frozen=True)
class LineSlice:
    """h((1 − α) θ_a + α θ_b) for a range of α.

    Attributes:
        alphas: (K,) positions; 0 is θ_a, 1 is θ_b.
        loss: (K,) training loss.
        test_loss: (K,) test loss, or None when the problem has no test set.
        distance: ‖θ_b − θ_a‖.
    """

    alphas: Tensor
    loss: Tensor
    test_loss: Tensor | None
    distance: float


def interpolate(
    problem: Problem,
    theta_a: Tensor,
    theta_b: Tensor,
    num: int = 51,
    span: tuple[float, float] = (-0.25, 1.25),
) -> LineSlice:
    """The 1-D slice through θ_a (α = 0) and θ_b (α = 1) (Goodfellow et al. 2015).

    Args:
        problem: The problem.
        theta_a: Where the line starts (α = 0), (P,).
        theta_b: Where it is aimed at (α = 1), (P,): e.g. the end of a run.
        num: Points evenly spaced over ``span``; α = 0 and α = 1 are added when
            the spacing misses them, so the curve passes exactly through h(θ_a)
            and h(θ_b).
        span: The range of α.

    Example:
        >>> import explorer as ex, torch
        >>> p = ex.problem("rosenbrock")
        >>> line = interpolate(p, p.theta0, torch.ones(2, dtype=torch.float64), num=3,
        ...                    span=(0.0, 1.0))
        >>> float(line.loss[-1])
        0.0
    """
    if num < 2:
        raise ValueError(f"num = {num} must be at least 2")
    if not span[1] > span[0]:
        raise ValueError(f"span = {span!r} must have lo < hi")
    a = theta_a.double().cpu()
    b = theta_b.double().cpu()
    alphas = _with_ends(torch.linspace(span[0], span[1], num, dtype=torch.float64))
    thetas = a + alphas.unsqueeze(1) * (b - a)
    loss = objective_at(problem, thetas).double().cpu()
    test = problem.test_batch()
    test_loss = (
        None if test is None else objective_at(problem, thetas, test).double().cpu()
    )
    return LineSlice(alphas, loss, test_loss, float((b - a).norm()))


def _with_ends(alphas: Tensor) -> Tensor:
    """``alphas`` (K,) ascending with 0 and 1 in it exactly when inside its range
    (a grid point within 1e-9 of one is set to it; otherwise it is inserted).
    """
    lo, hi = float(alphas[0]), float(alphas[-1])
    for end in (0.0, 1.0):
        if not lo <= end <= hi:
            continue
        nearest = int((alphas - end).abs().argmin())
        if abs(float(alphas[nearest]) - end) <= 1e-9:
            alphas[nearest] = end
        else:
            alphas = torch.sort(torch.cat([alphas, alphas.new_tensor([end])])).values
    return alphas
