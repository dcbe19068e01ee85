"""What one request may cost on a shared server, set by the teacher in one place.

Every limit has an environment variable (the README's Docker section lists them) and
is checked *before* the work starts: a refusal names the limit, the variable that
sets it and what to change. The same limits are checked twice: by the web process
with what it knows (steps, optimizers, the problem's size once it has been built)
and by the worker right after it builds the problem, before the first step.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass


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
    """

    max_dense_p: int = 3000
    max_steps: int = 20_000
    max_steps_x_p: float = 5e8
    max_rules: int = 8
    jobs_per_session: int = 3
    job_seconds: float = 300.0
    autostart_steps: int = 5000
    max_sweep_trials: int = 500

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

    def run_refusal(self, steps: int, num_params: int) -> str | None:
        """Why one run of ``steps`` on ``num_params`` parameters is refused, or None."""
        if steps > self.max_steps:
            return _refuse(
                f"{steps:,} steps", self.max_steps, "max_steps", "lower Steps"
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
}


def _refuse(what: str, limit: float, field: str, change: str) -> str:
    shown = f"{limit:,}" if isinstance(limit, int) else f"{limit:.3g}"
    return (
        f"{what} is above this server's limit of {shown} ({ENVIRONMENT[field]}): "
        f"{change}, or ask whoever runs the server to raise the limit."
    )
