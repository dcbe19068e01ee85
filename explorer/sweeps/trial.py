"""One trial on any worker: run its config, stop it early when it runs away.

:func:`run_trial` takes and returns plain data (a config dict in, a row and a loss
curve out), so the same function runs in-process, on threads or on Dask worker
processes, and its result does not depend on where it ran.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from explorer.runs.config import RunConfig
from explorer.runs.runner import run


class _Runaway:
    """A cancel flag that trips once the loss exceeds ``factor`` × the first one."""

    def __init__(self, factor: float) -> None:
        self.factor, self.first, self.tripped = factor, math.nan, False

    def progress(self, step: int, total: int, metrics: Mapping[str, Any]) -> None:
        loss = float(metrics.get("loss", math.nan))
        if step == 0 or math.isnan(self.first):
            self.first = loss
        elif loss > self.factor * abs(self.first) or not math.isfinite(loss):
            self.tripped = True

    def __call__(self) -> bool:
        return self.tripped


def run_trial(
    config: Mapping[str, Any],
    divergence_factor: float,
    target_loss: float | None = None,
    threads: int | None = 1,
    *,
    stop: Callable[[], bool] | None = None,
    problem: Any = None,
) -> dict[str, Any]:
    """Runs one trial from ``RunConfig.to_dict()`` data.

    Args:
        config: The run's plain data.
        divergence_factor: Stop early, as ``"diverged"``, when the loss exceeds this
            multiple of the initial loss.
        target_loss: ``steps_to_target`` counts the steps to reach it.
        threads: torch threads inside the trial (1 on a worker, so that N workers use
            N cores); None leaves the setting alone.
        stop: Checked every step: once True the trial ends as ``"cancelled"`` (the
            app's Stop; a runaway loss ends it as ``"diverged"``).
        problem: The config's problem, already built (a worker's cache); None
            builds it.

    Returns:
        ``{"status", "message", "final_loss", "best_loss", "steps_to_target",
        "steps_run", "wall_time", "grad_evals", "curvature_products", "curve",
        "curve_steps", "trial_seconds"}``: the curve is the loss at the recorded
        steps ``curve_steps`` (every step unless the settings' record plan thins
        them).
    """
    start = time.perf_counter()
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        guard = _Runaway(divergence_factor)
        stopped = guard if stop is None else (lambda: guard() or stop())
        history = run(
            RunConfig.from_dict(config), guard.progress, stopped, problem=problem
        )
    finally:
        if threads is not None:
            torch.set_num_threads(previous)
    losses = [float(x) for x in history.column("loss")]
    status, message = history.status, history.message
    if guard.tripped and status == "cancelled":
        status = "diverged"
        message = (
            f"the loss exceeded {divergence_factor:g} × its initial value; stopped "
            "early (a result, not a failure)"
        )
    finite = [x for x in losses if math.isfinite(x)]
    steps = history.steps
    reached = (
        next((s for s, x in zip(steps, losses) if x <= target_loss), None)
        if target_loss is not None
        else None
    )
    return {
        "status": status,
        "message": message,
        "final_loss": losses[-1] if losses else math.nan,
        "best_loss": min(finite) if finite else math.nan,
        "steps_to_target": math.nan if reached is None else float(reached),
        "steps_run": float(steps[-1]) if steps else 0.0,
        "wall_time": history.last("wall_time") if len(history) else 0.0,
        "grad_evals": history.last("grad_evals") if len(history) else 0.0,
        "curvature_products": (
            history.last("curvature_products") if len(history) else 0.0
        ),
        "curve": losses,
        "curve_steps": [int(s) for s in steps],
        "trial_seconds": time.perf_counter() - start,
    }


def trial_task(
    worker: Any,
    channel: Any,
    config: Mapping[str, Any],
    divergence_factor: float,
    target_loss: float | None = None,
) -> dict[str, Any]:
    """:func:`run_trial` as one task of the app's engine (``Engine.view_task``): on
    the worker's cached problem, stopped by the page's Stop.
    """
    problem = worker.problem(RunConfig.from_dict(config).problem_config)
    return run_trial(
        config,
        divergence_factor,
        target_loss,
        1,
        stop=channel.cancelled,
        problem=problem,
    )
