"""The optimization loop behind :func:`explorer.run`: steps, costs and recording.

:func:`execute` needs only the loop's :class:`~explorer.runs.settings.RunSettings`,
a problem and an :class:`~explorer.optimizers.UpdateRule`; it knows nothing of
registries or configs.

Each step draws a gradient mini-batch, evaluates h and ∇h there, picks the curvature
batch, lets the rule compute δ, and moves θ ← θ + δ. Metrics are evaluated only at
the recorded steps and outside the timed region, so ``wall_time`` is the optimizer's
own time.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from explorer.autodiff import FORWARD_AD_LOCK
from explorer.curvature.solvers import (
    IndefiniteCurvatureError,
    NonFiniteCurvatureError,
)
from explorer.optimizers.base import StepContext, UpdateRule
from explorer.problems.base import Batch, Problem
from explorer.runs.history import COLUMNS, History, trajectory_plan
from explorer.runs.remedies import diverged_message, indefinite_message
from explorer.runs.settings import RunSettings

#: Called as ``progress(step, total, metrics)`` after each recorded step.
Progress = Callable[[int, int, dict[str, Any]], None]
#: A ``threading.Event``, or a callable returning True once the run should stop.
Cancel = Any

#: Generator streams derived from the seed (seed + stream · 2³²).
DATA_STREAM, CURVATURE_STREAM, RULE_STREAM = 0, 1, 2


def seeded_generator(seed: int, stream: int) -> torch.Generator:
    """An independent CPU generator for ``stream`` of run ``seed``."""
    return torch.Generator(device="cpu").manual_seed(seed + stream * 2**32)


def record_plan(steps: int, count: int | None, log: bool) -> list[int]:
    """The steps whose metrics are recorded: 0, the last, and ``count`` in all.

    Example:
        >>> record_plan(10, None, False)
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
        >>> record_plan(10, 2, False), record_plan(1000, 3, True)
        ([0, 5, 10], [0, 1, 32, 1000])
    """
    if count is None or count >= steps:
        return list(range(steps + 1))
    points = np.geomspace(1, steps, count) if log else np.linspace(0, steps, count + 1)
    return sorted({0, steps} | {int(p) for p in np.rint(points)})


class Averager:
    """The averaged iterate θ̄_k: uniform (Polyak) or exponential, from a start step."""

    def __init__(self, mode: str, start: int, decay: float, theta: Tensor) -> None:
        self.mode, self.start, self.decay = mode, start, decay
        self.count = 0
        self.value: Tensor | None = None
        self.update(0, theta)

    def update(self, step: int, theta: Tensor) -> None:
        if self.mode == "none":
            return
        if step < self.start or self.value is None:
            self.value = theta
            self.count = 1 if step >= self.start else 0
            return
        self.count += 1
        if self.count == 1:
            self.value = theta
        elif self.mode == "uniform":
            self.value = self.value + (theta - self.value) / self.count
        else:
            self.value = self.decay * self.value + (1 - self.decay) * theta


class Recorder:
    """Collects the rows of a :class:`History` and the kept trajectory."""

    def __init__(self, settings: RunSettings, problem: Problem) -> None:
        self.problem = problem
        self.plan = set(
            record_plan(settings.steps, settings.record_steps, settings.record_log)
        )
        self.keep = set(trajectory_plan(settings.steps, problem.num_params))
        self.metrics: dict[str, list[float]] = {name: [] for name in COLUMNS}
        self.rows: dict[int, int] = {}  # step -> row index
        self.trajectory: list[Tensor] = []
        self.trajectory_steps: list[int] = []
        self.test = problem.test_batch()
        self.loss_star = math.nan
        if problem.theta_star is not None:
            self.loss_star = float(problem.objective(problem.theta_star))

    def wants(self, step: int) -> bool:
        return step in self.plan and step not in self.rows

    def evaluate(self, theta: Tensor, averaged: Tensor | None) -> dict[str, float]:
        """Loss and accuracy at θ on the training (or evaluation) set and the test set."""
        problem, nan = self.problem, math.nan
        row = dict.fromkeys(
            ("loss", "test_loss", "accuracy", "test_accuracy", "averaged_loss"), nan
        )
        with torch.no_grad():
            outputs = problem.predict(theta)
            row["loss"] = float(problem.loss.value(outputs, problem.targets))
            accuracy = problem.loss.accuracy(outputs, problem.targets)
            if accuracy is not None:
                row["accuracy"] = float(accuracy)
            if self.test is not None:
                outputs = problem.predict(theta, self.test.inputs)
                row["test_loss"] = float(problem.loss.value(outputs, self.test.targets))
                accuracy = problem.loss.accuracy(outputs, self.test.targets)
                if accuracy is not None:
                    row["test_accuracy"] = float(accuracy)
            if averaged is not None:
                row["averaged_loss"] = float(problem.objective(averaged))
        row["excess_loss"] = row["loss"] - self.loss_star
        return row

    def append(self, step: int, row: dict[str, float]) -> dict[str, float]:
        full = {name: math.nan for name in COLUMNS}
        full.update(row)
        full["step"] = float(step)
        self.rows[step] = len(self.metrics["step"])
        for name in COLUMNS:
            self.metrics[name].append(float(full[name]))
        return full

    def set_grad_norm(self, step: int, value: float) -> None:
        if step in self.rows:
            self.metrics["grad_norm"][self.rows[step]] = value

    def keep_theta(self, step: int, theta: Tensor) -> None:
        if step in self.keep:
            self.trajectory.append(theta.detach().to("cpu", torch.float64).clone())
            self.trajectory_steps.append(step)

    def history(
        self,
        rule: UpdateRule,
        label: str,
        settings: RunSettings,
        status: str,
        message: str,
    ) -> History:
        trajectory = torch.stack(self.trajectory) if self.trajectory else None
        return History(
            config=None,
            rule=rule.key,
            label=label,
            rule_options=rule.options,
            settings=settings,
            status=status,
            message=message,
            metrics=self.metrics,
            trajectory=trajectory,
            trajectory_steps=self.trajectory_steps,
        )


def gradient_batch_size(settings: RunSettings, problem: Problem) -> int | None:
    """The configured batch size; None (full batch) means 1 for streaming problems."""
    if settings.batch_size is None and problem.is_streaming:
        return 1
    return settings.batch_size


def curvature_batch(
    problem: Problem,
    batch: Batch,
    size: int | None,
    generator: torch.Generator,
) -> tuple[Batch, int]:
    """(the curvature batch, examples drawn for it beyond the gradient batch)."""
    full = not problem.is_streaming and batch.size >= problem.num_examples
    if size is None or (full and size >= batch.size):
        return batch, 0
    if full:
        return problem.sample_batch(size, generator), 0
    if size <= batch.size:
        return Batch(batch.inputs[:size], batch.targets[:size]), 0
    extra = problem.sample_batch(size, generator)
    return extra, extra.size


class LazyCurvatureBatch:
    """One step's curvature batch, drawn on first use.

    Rules without curvature draw none; ``extra`` counts the examples drawn beyond
    the gradient batch.
    """

    def __init__(
        self,
        problem: Problem,
        batch: Batch,
        size: int | None,
        generator: torch.Generator,
    ) -> None:
        self.args = (problem, batch, size, generator)
        self.batch: Batch | None = None
        self.extra = 0

    def __call__(self) -> Batch:
        if self.batch is None:
            self.batch, self.extra = curvature_batch(*self.args)
        return self.batch


def _cancelled(cancel: Cancel) -> bool:
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


def _finite(value: Tensor) -> bool:
    return bool(torch.isfinite(value).all())


#: A finite loss counts as diverged once it exceeds h₀ + GROWTH_LIMIT·(|h₀| + 1):
#: four orders of magnitude above the starting loss's scale (the +1 keeps a start
#: near zero from flagging ordinary noise).
GROWTH_LIMIT = 1e4


def _runaway_growth(recorder: Recorder, step: int) -> str | None:
    """What grew, when the loss recorded at ``step`` ran away from h₀; else None."""
    rows, losses = recorder.rows, recorder.metrics["loss"]
    if step not in rows or 0 not in rows:
        return None
    start, now = losses[rows[0]], losses[rows[step]]
    if now <= start + GROWTH_LIMIT * (abs(start) + 1.0):
        return None
    return f"the loss grew from {start:.3g} to {now:.3g}"


_WARM_UP_LOCK = threading.Lock()


def warm_up_torch_func() -> None:
    """:func:`_warm_up_torch_func` once per process, whichever thread asks first
    (the others wait for it: two threads importing torch._dynamo at once race).
    """
    with _WARM_UP_LOCK:
        _warm_up_torch_func()


@functools.cache
def _warm_up_torch_func() -> None:
    """Runs one tiny vmapped vector-Jacobian product, once per process.

    torch.func imports ``torch._dynamo`` (with sympy) and ``torch._decomp`` the
    first time a batched product runs, and compiles its forward-mode
    decompositions on the first jvp (≈1.5 s once per process). Done before any clock
    starts, so the first curvature rule of a process is not charged for it:
    natural gradient and Gauss-Newton (the same steps on a matching loss) differed
    16× in wall time, whichever ran first paying the import.
    """
    x = torch.ones(2, dtype=torch.float64)
    _, pullback = torch.func.vjp(torch.tanh, x)
    torch.func.vmap(pullback)(torch.eye(2, dtype=torch.float64))
    # Forward-AD levels are process-wide: a warm-up on one worker thread must not
    # interleave with another thread's jvp (or warm-up).
    with FORWARD_AD_LOCK:
        torch.func.jvp(torch.tanh, (x,), (x,))  # registers the jvp decompositions


def _step_row(delta: Tensor, info: dict[str, float]) -> dict[str, float]:
    """What row k records about the update that produced θ_k."""
    picked = {key: info[key] for key in ("damping", "rho", "alpha") if key in info}
    indefinite = float(info.get("indefinite", 0.0))
    return {"update_norm": float(delta.norm()), "indefinite": indefinite, **picked}


def execute(
    settings: RunSettings,
    problem: Problem,
    rule: UpdateRule,
    *,
    label: str | None = None,
    progress: Progress | None = None,
    cancel: Cancel = None,
) -> History:
    """Runs ``rule`` on ``problem`` for ``settings.steps`` steps (see the module).

    Args:
        settings: Steps, seed, batch sizes, averaging and the record plan.
        problem: The problem (θ₀, data); never modified.
        rule: The update rule, built from resolved options.
        label: The history's display name (default: the rule key).
        progress: Called as ``progress(step, total, metrics)`` after each recorded
            step (``metrics`` is that row, plus its ``label``).
        cancel: A ``threading.Event`` (or a callable returning True) checked before
            every step; the run then stops with status ``"cancelled"``.
    """
    label = label or rule.key
    warm_up_torch_func()
    data_gen = seeded_generator(settings.seed, DATA_STREAM)
    curvature_gen = seeded_generator(settings.seed, CURVATURE_STREAM)
    rule_gen = seeded_generator(settings.seed, RULE_STREAM)
    batch_size = gradient_batch_size(settings, problem)
    recorder = Recorder(settings, problem)
    theta = problem.theta0.clone()
    averager = Averager(
        settings.averaging, settings.average_start, settings.average_decay, theta
    )
    state = rule.init(theta)
    costs = dict.fromkeys(
        ("wall_time", "grad_evals", "curvature_products", "examples"), 0.0
    )
    last_row: dict[str, float] = {}  # what the update that produced θ reported
    status, message, good_step = "ok", "", 0

    def record(step: int, current: Tensor, step_row: dict[str, float]) -> bool:
        """Evaluates and appends row ``step``; False if its loss is not finite."""
        row = recorder.evaluate(current, averager.value)
        if not math.isfinite(row["loss"]):
            return False
        full = recorder.append(step, {**row, **costs, **step_row})
        if progress is not None:
            progress(step, settings.steps, {**full, "label": label})
        return True

    record(0, theta, last_row)
    recorder.keep_theta(0, theta)
    for k in range(settings.steps):
        if _cancelled(cancel):
            status, message = (
                "cancelled",
                f"cancelled after {k} of {settings.steps} steps",
            )
            break
        start = time.perf_counter()
        batch = problem.sample_batch(batch_size, data_gen)
        loss, grad = problem.value_and_grad(theta, batch)
        recorder.set_grad_norm(k, float(grad.norm()))
        if not (_finite(loss) and _finite(grad)):
            what = f"the loss on the batch is {float(loss):.3g}"
            status, message = "diverged", diverged_message(k + 1, what, rule.options)
            break
        curvature_source = LazyCurvatureBatch(
            problem, batch, settings.curvature_batch_size, curvature_gen
        )
        ctx = StepContext(
            problem, theta, loss, grad, batch, rule_gen, k, curvature_source
        )
        try:
            delta, state, info = rule.update(grad, state, ctx)
        except IndefiniteCurvatureError as error:
            status = "indefinite"
            message = indefinite_message(k + 1, error, rule.options)
            break
        except NonFiniteCurvatureError as error:
            status, message = (
                "diverged",
                diverged_message(k + 1, str(error), rule.options),
            )
            break
        except (ValueError, ArithmeticError, RuntimeError) as error:
            status = "error"
            message = f"stopped at step {k + 1}: {type(error).__name__}: {error}"
            break
        candidate = theta + delta
        costs["wall_time"] += time.perf_counter() - start
        costs["grad_evals"] += 1 + info.get("loss_evals", 0.0)
        costs["curvature_products"] += info.get("curvature_products", 0.0)
        costs["examples"] += batch.size + curvature_source.extra
        if not _finite(candidate):
            what = "the parameters became non-finite"
            status, message = "diverged", diverged_message(k + 1, what, rule.options)
            break
        saved = (averager.value, averager.count)
        averager.update(k + 1, candidate)
        step_row = _step_row(delta, info)
        if recorder.wants(k + 1) and not record(k + 1, candidate, step_row):
            averager.value, averager.count = saved
            what = "the loss became non-finite"
            status, message = "diverged", diverged_message(k + 1, what, rule.options)
            break
        theta, last_row, good_step = candidate, step_row, k + 1
        recorder.keep_theta(good_step, theta)
        growth = _runaway_growth(recorder, good_step)
        if growth is not None:
            status, message = (
                "diverged",
                diverged_message(good_step, growth, rule.options),
            )
            break
    if status != "ok" and recorder.wants(good_step):
        record(good_step, theta, last_row)
    if status == "ok":
        batch = problem.sample_batch(batch_size, data_gen)
        recorder.set_grad_norm(good_step, float(problem.grad(theta, batch).norm()))
    return recorder.history(rule, label, settings, status, message)
