"""What one request may cost on a shared server, set by the teacher in one place.

Every limit has an environment variable (the README's Docker section lists them) and
is checked *before* the work starts: a refusal names the limit, the variable that
sets it and what to change. The same limits are checked twice: by the web process
with what it knows (steps, optimizers, the parameter count P from the problem's
options *before* it is built, :func:`~explorer.problems.spec.estimate_num_params`)
and by the worker before it builds the problem and again before the first step.

:func:`estimate_run` is what the pages show before Run: the memory one run holds
(its working vectors, the recorded metrics and the kept trajectory) and a rough
time, from P, the examples per step, the steps and the optimizer's family.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from explorer.runs.history import COLUMNS, TRAJECTORY_LIMIT


class LimitExceeded(ValueError):
    """A request above one of the server's limits (the message says which)."""


@dataclass(frozen=True)
class Limits:
    """The server's limits per request.

    Attributes:
        max_dense_p: Largest parameter count P for dense P × P matrices
            (heatmaps and exact spectra; above it the views go matrix-free).
        max_steps: Largest number of optimizer steps per run.
        max_steps_x_p: Largest steps × P per run (a proxy for its time and for
            the memory of its recorded trajectory).
        max_rules: Optimizers per comparison.
        jobs_per_session: Jobs one browser session may have queued or running at
            once (a comparison, a curvature view, a landscape, a battery).
        job_seconds: Wall-clock limit of one job on a worker; a run over it stops
            with its partial history, a computation that does not stop is ended by
            restarting its worker.
        autostart_steps: A configuration that arrives by URL starts on its own
            only up to this many optimizer steps in all (optimizers × steps);
            above it, the page waits for Run.
        max_sweep_trials: Trials of one sweep on the Sweep page (each trial is one
            run, queued in turn with every other session's work).
        max_params: Largest parameter count P of a problem, checked from its
            options before it is built (1,000,000 float64 parameters are 8 MB per
            vector; a run keeps about :data:`VECTORS_PER_RUN` of them).
        max_run_mb: Largest estimated memory of one run in MiB
            (:func:`estimate_run`: working vectors, recorded metrics, trajectory).
        max_grid_x_p: Largest landscape grid points × P (resolution² · P): each
            point is a copy of θ and a full-batch loss.
        lease_seconds: A session that has not been heard from (no script run, no
            progress poll) for this long is taken as gone, and its work is
            cancelled (a closed tab; ``Dispatcher.renew``).
    """

    max_dense_p: int = 3000
    max_steps: int = 20_000
    max_steps_x_p: float = 5e8
    max_rules: int = 8
    jobs_per_session: int = 3
    job_seconds: float = 300.0
    autostart_steps: int = 5000
    max_sweep_trials: int = 500
    max_params: int = 1_000_000
    max_run_mb: float = 1024.0
    max_grid_x_p: float = 2.5e7
    lease_seconds: float = 60.0

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Limits:
        """Reads ``EXPLORER_MAX_DENSE_P``, ``EXPLORER_MAX_STEPS``, … (see ENVIRONMENT).

        Raises:
            ValueError: a variable holds something that is not a positive number.
        """
        values = {}
        for item in dataclasses.fields(cls):
            name = ENVIRONMENT[item.name]
            text = environ.get(name, "").strip()
            if not text:
                continue
            try:
                number = float(text)
            except ValueError:
                raise ValueError(f"{name}={text!r} is not a number") from None
            if not number > 0:
                raise ValueError(f"{name}={text!r} must be positive")
            values[item.name] = int(number) if item.type == "int" else number
        return cls(**values)

    # ------------------------------------------------------------- refusals
    def comparison_refusal(self, rules: int, steps: int) -> str | None:
        """Why a comparison of ``rules`` optimizers × ``steps`` is refused, or None."""
        if rules > self.max_rules:
            return _refuse(
                f"{rules} optimizers", self.max_rules, "max_rules", "remove some"
            )
        if steps > self.max_steps:
            return _refuse(
                f"{steps:,} steps", self.max_steps, "max_steps", "lower Steps"
            )
        return None

    def problem_refusal(self, num_params: int | None) -> str | None:
        """Why a problem of ``num_params`` parameters is refused, or None (also
        when P is unknown before building: a plugin that declares no count).

        >>> Limits(max_params=1000).problem_refusal(2410)[:61]
        "P = 2,410 parameters is above this server's limit of 1,000 (E"
        """
        if num_params is not None and num_params > self.max_params:
            return _refuse(
                f"P = {num_params:,} parameters",
                self.max_params,
                "max_params",
                "choose smaller layers",
            )
        return None

    def grid_refusal(self, resolution: int, num_params: int) -> str | None:
        """Why a landscape of resolution × resolution points on ``num_params``
        parameters is refused, or None.
        """
        cost = resolution * resolution * num_params
        if cost > self.max_grid_x_p:
            largest = max_resolution(self.max_grid_x_p, num_params)
            return _refuse(
                f"a {resolution} × {resolution} grid on P = {num_params:,} "
                f"({cost:.3g} grid points × P)",
                self.max_grid_x_p,
                "max_grid_x_p",
                f"lower the grid resolution to {largest} or less",
            )
        return None

    def run_refusal(
        self, steps: int, num_params: int, estimate: RunEstimate | None = None
    ) -> str | None:
        """Why one run of ``steps`` on ``num_params`` parameters is refused, or None.

        ``estimate`` (:func:`estimate_run`) adds the memory limit.
        """
        if steps > self.max_steps:
            return _refuse(
                f"{steps:,} steps", self.max_steps, "max_steps", "lower Steps"
            )
        refusal = self.problem_refusal(num_params)
        if refusal is not None:
            return refusal
        if estimate is not None and estimate.memory_bytes > self.max_run_mb * MiB:
            return _refuse(
                f"one run's estimated memory of {format_bytes(estimate.memory_bytes)}",
                self.max_run_mb,
                "max_run_mb",
                "lower Steps, record fewer steps, or choose a smaller model",
            )
        cost = steps * num_params
        if cost > self.max_steps_x_p:
            return _refuse(
                f"steps × P = {steps:,} × {num_params:,} = {cost:.3g}",
                self.max_steps_x_p,
                "max_steps_x_p",
                "lower Steps or choose a smaller model",
            )
        return None

    def sweep_refusal(self, trials: int, steps: int) -> str | None:
        """Why a sweep of ``trials`` runs of ``steps`` steps is refused, or None."""
        if trials > self.max_sweep_trials:
            return _refuse(
                f"{trials:,} trials",
                self.max_sweep_trials,
                "max_sweep_trials",
                "shrink the grid or use fewer seeds (or run it with "
                "`python -m explorer sweep` on your own machine)",
            )
        if steps > self.max_steps:
            return _refuse(
                f"{steps:,} steps", self.max_steps, "max_steps", "lower Steps"
            )
        return None

    def dense_refusal(self, num_params: int) -> str | None:
        """Why dense P × P matrices of ``num_params`` are refused, or None."""
        if num_params > self.max_dense_p:
            return _refuse(
                f"dense matrices of P = {num_params:,}",
                self.max_dense_p,
                "max_dense_p",
                "choose a smaller model (the matrix-free views still work)",
            )
        return None

    def needs_confirmation(self, steps: int, rules: int) -> str | None:
        """Why a configuration from a URL should wait for Run, or None to start it."""
        total = steps * max(1, rules)
        if total > self.autostart_steps:
            return (
                f"This link asks for {rules} optimizer(s) × {steps:,} steps = "
                f"{total:,} steps, more than this server starts on its own "
                f"({self.autostart_steps:,}, EXPLORER_AUTOSTART_STEPS): press **Run** "
                "to start it."
            )
        return None


#: The environment variable of each limit.
ENVIRONMENT = {
    "max_dense_p": "EXPLORER_MAX_DENSE_P",
    "max_steps": "EXPLORER_MAX_STEPS",
    "max_steps_x_p": "EXPLORER_MAX_STEPS_X_P",
    "max_rules": "EXPLORER_MAX_RULES",
    "jobs_per_session": "EXPLORER_JOBS_PER_SESSION",
    "job_seconds": "EXPLORER_JOB_SECONDS",
    "autostart_steps": "EXPLORER_AUTOSTART_STEPS",
    "max_sweep_trials": "EXPLORER_MAX_SWEEP_TRIALS",
    "max_params": "EXPLORER_MAX_PARAMS",
    "max_run_mb": "EXPLORER_MAX_RUN_MB",
    "max_grid_x_p": "EXPLORER_MAX_GRID_X_P",
    "lease_seconds": "EXPLORER_LEASE_SECONDS",
}

MiB = 2**20
#: Float64 vectors of length P one run holds besides the history: θ, the gradient,
#: the step, the optimizer's state (momenta, a second moment, an average) and the
#: temporaries of a curvature product or a CG solve.
VECTORS_PER_RUN = 8
#: Bytes of one recorded metric: a Python float (24) and its slot in a list (8).
BYTES_PER_METRIC = 32
#: A rough time model, fitted on two cores to MLPs (the digits MLP at P = 2,410
#: and 19,210, linreg_2d): per step a fixed cost plus this many seconds per
#: example × parameter; curvature rules take about :data:`CURVATURE_FACTOR` times
#: as long. Convolutions and attention cost more per parameter (each weight is used
#: at many positions), up to 100 times on the 14 × 14 CNN.
STEP_SECONDS = 1e-3
SECONDS_PER_EXAMPLE_PARAM = 1.5e-9
CURVATURE_FACTOR = 3.0


@dataclass(frozen=True)
class RunEstimate:
    """What one run will roughly cost, before it starts.

    Attributes:
        num_params: P.
        memory_bytes: Working vectors (VECTORS_PER_RUN · P · 8) + recorded metrics
            (rows · len(COLUMNS) · BYTES_PER_METRIC) + kept trajectory (points · P · 8).
        seconds: steps · (STEP_SECONDS + SECONDS_PER_EXAMPLE_PARAM · examples · P ·
            factor), factor CURVATURE_FACTOR for a curvature rule, else 1.
    """

    num_params: int
    memory_bytes: int
    seconds: float


def estimate_run(
    num_params: int,
    steps: int,
    examples: int,
    *,
    curvature: bool = False,
    record_steps: int | None = None,
) -> RunEstimate:
    """The memory and rough time of one run (see :class:`RunEstimate`).

    Args:
        num_params: P.
        steps: Optimizer steps.
        examples: Examples per gradient (the batch size, or N for full batch).
        curvature: Whether the rule takes curvature steps.
        record_steps: Recorded rows besides step 0 (None: every step).

    Example:
        >>> e = estimate_run(2, 10_000_000, 1000)  # linreg_2d, 10 M steps
        >>> format_bytes(e.memory_bytes), format_seconds(e.seconds)
        ('5.1 GiB', '2.8 h')
    """
    rows = steps + 1 if record_steps is None else min(steps, record_steps) + 1
    if (steps + 1) * num_params <= TRAJECTORY_LIMIT:
        points = steps + 1
    else:
        points = min(steps + 1, max(2, TRAJECTORY_LIMIT // num_params))
    memory = (
        VECTORS_PER_RUN * num_params * 8
        + rows * len(COLUMNS) * BYTES_PER_METRIC
        + points * num_params * 8
    )
    factor = CURVATURE_FACTOR if curvature else 1.0
    per_step = STEP_SECONDS + SECONDS_PER_EXAMPLE_PARAM * examples * num_params * factor
    return RunEstimate(num_params, int(memory), steps * per_step)


def max_resolution(max_grid_x_p: float, num_params: int) -> int:
    """The largest grid resolution r with r² · P within ``max_grid_x_p``.

    >>> max_resolution(2.5e7, 85_000)
    17
    """
    return math.isqrt(int(max_grid_x_p // max(1, num_params)))


def format_bytes(count: float) -> str:
    """A memory size in B, KiB, MiB or GiB, three significant digits.

    >>> format_bytes(3 * 2**30), format_bytes(1536)
    ('3 GiB', '1.5 KiB')
    """
    for unit, size in (("GiB", 2**30), ("MiB", MiB), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{int(count)} B"


def format_seconds(seconds: float) -> str:
    """A duration for a reader.

    >>> format_seconds(0.003), format_seconds(0.42), format_seconds(420)
    ('under 0.1 s', '0.4 s', '7 min')
    """
    if seconds < 0.1:
        return "under 0.1 s"
    if seconds < 1:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.2g} min"
    return f"{seconds / 3600:.2g} h"


def _refuse(what: str, limit: float, field: str, change: str) -> str:
    shown = f"{limit:,}" if isinstance(limit, int) else f"{limit:.3g}"
    return (
        f"{what} is above this server's limit of {shown} ({ENVIRONMENT[field]}): "
        f"{change}, or ask whoever runs the server to raise the limit."
    )


def estimate_config(config: Any, num_params: int, num_examples: int) -> RunEstimate:
    """:func:`estimate_run` of a :class:`~explorer.runs.RunConfig` on a problem of
    ``num_params`` parameters and ``num_examples`` training examples (its batch
    size when it has one).
    """
    from explorer.optimizers.rules import CURVATURE, RULES

    return estimate_run(
        num_params,
        config.steps,
        config.batch_size or num_examples,
        curvature=RULES[config.rule].family == CURVATURE,
        record_steps=config.record_steps,
    )
