r"""Function space: what the network computes, not where its parameters are.

* :func:`decision_boundary`: class probabilities on a grid of a 2-D input space
  (``moons_mlp``), so each run's boundary can be drawn at a chosen step.
* :func:`fitted_curve`: the predictive mean E[y | x] along a 1-D input (regression).
* :func:`successive_kl`: :math:`\frac1N \sum_i \mathrm{KL}(R(z_i(θ_t)) \| R(z_i(θ_{t+1})))`
  between successive iterates: the natural-gradient step is the steepest descent
  step inside a KL trust region (Martens 2020, §5), so its KL per step is controlled
  while plain gradient steps can jump.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from explorer.landscape.grid import Grid2D
from explorer.landscape.trajectories import finite_trajectory
from explorer.problems.base import Batch, Problem


@dataclass(frozen=True)
class InputGrid:
    """Predictions on a grid of a 2-D input space.

    Attributes:
        probability: :class:`Grid2D` of p(class 1 | x) for binary problems, of the
            largest class probability otherwise.
        classes: (ny, nx) predicted class indices.
        num_classes: Number of classes.
    """

    probability: Grid2D
    classes: Tensor
    num_classes: int


def _check_inputs_2d(problem: Problem) -> None:
    if not problem.inputs.dtype.is_floating_point:  # token ids: no plane to grid
        raise ValueError(
            f"problem {problem.key!r} has {problem.inputs.dtype} inputs (indices); "
            "a decision boundary needs real-valued 2-D inputs (N, 2)"
        )
    if problem.inputs.dim() != 2 or problem.inputs.shape[1] != 2:
        raise ValueError(
            f"problem {problem.key!r} has inputs of shape {tuple(problem.inputs.shape)}; "
            "a decision boundary needs 2-D inputs (N, 2)"
        )
    if not problem.loss.classification:
        raise ValueError(f"problem {problem.key!r} is not a classification problem")


def input_box(problem: Problem, margin: float = 0.1) -> tuple[tuple[float, float], ...]:
    """The training inputs' range per coordinate, widened by ``margin``."""
    inputs = problem.inputs.double().cpu()
    lo, hi = inputs.min(0).values, inputs.max(0).values
    pad = margin * (hi - lo).clamp_min(1e-6)
    return tuple((float(a), float(b)) for a, b in zip(lo - pad, hi + pad))


def decision_boundary(
    problem: Problem,
    theta: Tensor,
    box: tuple[tuple[float, float], tuple[float, float]] | None = None,
    resolution: int = 100,
) -> InputGrid:
    """Class probabilities of the model θ on a grid of a 2-D input space.

    The boundary is the 0.5 level of ``probability`` for binary problems.
    """
    _check_inputs_2d(problem)
    if resolution < 2:
        raise ValueError(f"resolution = {resolution} must be at least 2")
    (x0, x1), (y0, y1) = box or input_box(problem)
    xs = torch.linspace(x0, x1, resolution, dtype=torch.float64)
    ys = torch.linspace(y0, y1, resolution, dtype=torch.float64)
    shell = Grid2D(xs, ys, torch.empty(0))
    inputs = shell.points().to(dtype=problem.dtype, device=problem.device)
    theta = theta.to(dtype=problem.dtype, device=problem.device)
    with torch.no_grad():
        mean = problem.loss.mean(problem.predict(theta, inputs)).double().cpu()
    if mean.shape[1] == 1:  # Bernoulli: p(class 1)
        probability, classes, count = mean[:, 0], (mean[:, 0] > 0.5).long(), 2
    elif mean.shape[1] == 2:
        probability, classes, count = mean[:, 1], mean.argmax(1), 2
    else:
        probability, classes = mean.max(1)
        count = mean.shape[1]
    shape = (resolution, resolution)
    title = "p(class 1 | x)" if count == 2 else "max class probability"
    grid = Grid2D(xs, ys, probability.reshape(shape), "x₁", "x₂", title)
    return InputGrid(grid, classes.reshape(shape), count)


def regression_input(problem: Problem) -> int:
    """The one input column that varies (1-D regression), or a ValueError.

    Inputs such as [1, x] (a constant bias column) count as 1-D.
    """
    if problem.loss.classification:
        raise ValueError(f"problem {problem.key!r} is a classification problem")
    inputs = problem.inputs
    if inputs.dim() != 2:
        raise ValueError(f"inputs of shape {tuple(inputs.shape)} are not (N, D)")
    if not inputs.dtype.is_floating_point:  # indices have no axis to sweep
        raise ValueError(
            f"problem {problem.key!r} has {inputs.dtype} inputs (indices); fitted "
            "curves need a real-valued input"
        )
    varying = [
        j
        for j in range(inputs.shape[1])
        if float(inputs[:, j].max() - inputs[:, j].min()) > 0
    ]
    if len(varying) != 1:
        raise ValueError(
            f"problem {problem.key!r} has {len(varying)} varying input columns; "
            "fitted curves need exactly one (1-D regression)"
        )
    return varying[0]


def fitted_curve(
    problem: Problem, theta: Tensor, num: int = 200, margin: float = 0.05
) -> tuple[Tensor, Tensor]:
    """(x (num,), E[y | x] (num, C)) along the single varying input of a regression.

    Constant input columns (a bias column) keep their value.
    """
    column = regression_input(problem)
    inputs = problem.inputs.double().cpu()
    lo, hi = float(inputs[:, column].min()), float(inputs[:, column].max())
    pad = margin * (hi - lo)
    xs = torch.linspace(lo - pad, hi + pad, num, dtype=torch.float64)
    grid = inputs[:1].repeat(num, 1)
    grid[:, column] = xs
    theta = theta.to(dtype=problem.dtype, device=problem.device)
    with torch.no_grad():
        outputs = problem.predict(
            theta, grid.to(dtype=problem.dtype, device=problem.device)
        )
        mean = problem.loss.mean(outputs).double().cpu()
    return xs, mean


def successive_kl(
    problem: Problem, thetas: Tensor, batch: Batch | None = None
) -> Tensor:
    """Mean KL(R(z(θ_t)) ‖ R(z(θ_{t+1}))) over examples, for t = 0..T−2 -> (T−1,).

    Args:
        problem: The problem (its likelihood's ``kl``).
        thetas: Iterates (T, P).
        batch: The inputs to compare predictions on (default: the training set).
    """
    if thetas.dim() != 2 or thetas.shape[1] != problem.num_params:
        raise ValueError(
            f"thetas has shape {tuple(thetas.shape)}; expected (T, {problem.num_params})"
        )
    batch = batch or problem.batch()
    out = torch.empty(max(0, thetas.shape[0] - 1), dtype=torch.float64)
    previous = None
    with torch.no_grad():
        for index, theta in enumerate(thetas):
            theta = theta.to(dtype=problem.dtype, device=problem.device)
            outputs = problem.predict(theta, batch.inputs)
            if previous is not None:
                out[index - 1] = float(problem.loss.kl(previous, outputs).mean())
            previous = outputs
    return out


def kl_along_run(problem: Problem, run: Any, batch: Batch | None = None) -> Any:
    """:func:`successive_kl` of a ``History``'s trajectory as a DataFrame.

    Columns ``step`` (the later iterate of each pair) and ``kl``. When the history
    kept a subsample of steps, the KL is between successive *recorded* iterates.
    """
    import pandas as pd

    thetas, steps = finite_trajectory(run)
    kl = successive_kl(problem, thetas, batch)
    return pd.DataFrame({"step": steps[1:], "kl": kl.numpy()})
