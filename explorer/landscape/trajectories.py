"""Reading parameter trajectories out of runs (``History`` objects or tensors)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor


def trajectory_of(run: Any) -> tuple[Tensor, list[int]]:
    """(θ (T, P) CPU float64, steps) of a ``History`` or of a (T, P) tensor.

    Raises:
        ValueError: The history kept no trajectory.
    """
    if isinstance(run, Tensor):
        if run.dim() != 2:
            raise ValueError(
                f"trajectory has shape {tuple(run.shape)}; expected (T, P)"
            )
        return run.double().cpu(), list(range(run.shape[0]))
    thetas = getattr(run, "trajectory", None)
    if thetas is None:
        label = getattr(run, "label", "this run")
        raise ValueError(f"{label!r} kept no parameter trajectory")
    return thetas.double().cpu(), [int(s) for s in run.trajectory_steps]


def finite_trajectory(run: Any) -> tuple[Tensor, list[int]]:
    """:func:`trajectory_of` cut before the first non-finite row (a diverged run)."""
    thetas, steps = trajectory_of(run)
    finite = torch.isfinite(thetas).all(1)
    if not bool(finite.all()):
        stop = int((~finite).nonzero()[0])
        thetas, steps = thetas[:stop], steps[:stop]
    return thetas, steps


def theta_at(run: Any, step: int | None = None) -> tuple[int, Tensor]:
    """(the recorded step used, θ) nearest to ``step`` (default: the last finite)."""
    thetas, steps = finite_trajectory(run)
    if not steps:
        raise ValueError("the trajectory has no finite point")
    if step is None:
        return steps[-1], thetas[-1]
    index = min(range(len(steps)), key=lambda i: (abs(steps[i] - step), -steps[i]))
    return steps[index], thetas[index]


def as_runs(runs: Any) -> dict[str, Any]:
    """``{label: run}`` from a mapping, a sequence of histories or a single one."""
    if isinstance(runs, Mapping):
        return dict(runs)
    if isinstance(runs, (list, tuple)):
        out = {}
        for index, run in enumerate(runs):
            label = getattr(run, "label", None) or f"run {index + 1}"
            while label in out:
                label = f"{label}′"
            out[label] = run
        return out
    return {getattr(runs, "label", None) or "run": runs}
