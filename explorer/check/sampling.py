r"""Sampled curvatures judged as estimators: k independent draws and their mean.

A curvature whose tags say ``sampled`` (the Monte Carlo Fisher, K-FAC with sampled
targets) is a random matrix :math:`\hat C`; one draw can be far from R (a sampled
label rarely lands on a rare class) without any bug. So the battery builds
k = ``sampled_draws`` draws :math:`\hat C_1, …, \hat C_k` with independent
generators (seeded ``seed + j · DRAW_STRIDE``; draw 0 is the single-draw generator)
and judges their mean :math:`\bar C_k` wherever it would judge C. Beside it:

* one-draw error :math:`e(1) = \sqrt{\tfrac1k Σ_j ‖\hat C_j − R‖_F^2} / ‖R‖_F`
  (root mean square over the draws: one draw's error, estimated k times);
* k-draw error :math:`e(k) = ‖\bar C_k − R‖_F / ‖R‖_F`;
* one-draw variance :math:`v = \tfrac1k Σ_j ‖\hat C_j − \bar C_k‖_F^2 / ‖R‖_F^2`.

For an unbiased estimator :math:`E[e(k)^2] = e(1)^2 / k`; for one with bias b,
:math:`e(k)^2 ≈ b^2 + v/k` stays near b. The ``unbiased`` verdict passes when
:math:`e(k) ≤ \max(\text{tol}, c · e(1)/\sqrt k)` with slack c =
``unbiased_slack`` (2: a draw of the error rarely exceeds twice its root mean
square). With k = 8 and c = 2 a bias fails once :math:`b^2 > 0.75\,v`: it is larger
than the spread of one draw.

A point whose k-draw mean misses that bound or the scale tolerance gets more
draws (doubling, up to ``sampled_draws_max``) before it is judged: a heavy-tailed
estimator's few draws can all miss the rare events that carry its expectation,
and then both e(k) and the estimated e(1) are wrong together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

#: Seeds of the draws: ``seed + j · DRAW_STRIDE`` (away from the probe seeds).
DRAW_STRIDE = 7919


def draw_generators(seed: int, count: int) -> list[torch.Generator]:
    """``count`` independent CPU generators; the first is seeded ``seed``."""
    return [
        torch.Generator(device="cpu").manual_seed(seed + j * DRAW_STRIDE)
        for j in range(count)
    ]


@dataclass(frozen=True)
class DrawStatistics:
    """The k draws of a sampled curvature against R.

    Attributes:
        draws: k.
        mean: The k-draw mean (P, P).
        draw_error: e(1), the root mean square relative error of one draw.
        mean_error: e(k), the relative error of the mean.
        variance: v, the mean squared deviation of a draw from the mean, over ‖R‖².
    """

    draws: int
    mean: Tensor
    draw_error: float = math.nan
    mean_error: float = math.nan
    variance: float = math.nan

    def bound(self, tol: float, slack: float) -> float:
        """max(tol, c · e(1) / √k): what e(k) may be for an unbiased estimator."""
        return max(tol, slack * self.draw_error / math.sqrt(self.draws))


def draw_statistics(
    draws: Sequence[Tensor], reference: Tensor | None
) -> DrawStatistics:
    """e(1), e(k) and v of dense draws (P, P) against R (NaN without R)."""
    stack = torch.stack(list(draws))
    mean = stack.mean(0)
    k = stack.shape[0]
    if reference is None:
        return DrawStatistics(k, mean)
    r_norm = float(torch.linalg.matrix_norm(reference))
    if not r_norm > 0:
        return DrawStatistics(k, mean)
    squared = (stack - reference).pow(2).sum(dim=(1, 2))
    spread = (stack - mean).pow(2).sum(dim=(1, 2))
    return DrawStatistics(
        draws=k,
        mean=mean,
        draw_error=math.sqrt(float(squared.mean())) / r_norm,
        mean_error=float(torch.linalg.matrix_norm(mean - reference)) / r_norm,
        variance=float(spread.mean()) / r_norm**2,
    )
