"""The optimization race: the checked curvature as an optimizer against the classics.

The curvature runs through the generic ``precondition`` rule,
δ = −α(C + λI)⁻¹g, with the same λ, step size, seed, data and starting point as
``natural_gradient`` and ``gauss_newton`` (which are the same rule with C = F and
C = G); ``kfac`` and ``sgd`` keep their own defaults. A run that cannot start (a
rule that needs linear layers on a model without them) or that raises is a
``"skipped"`` or ``"error"`` entry, never an exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from explorer.check.point import describe_error
from explorer.check.results import RaceEntry
from explorer.check.settings import DAMPED_RULES, CheckSettings, ProblemChoice
from explorer.problems.base import Problem
from explorer.runs import History, ProblemConfig, RunConfig, run


def problem_config(choice: ProblemChoice, settings: CheckSettings) -> ProblemConfig:
    """The battery's problem on ``choice``: CPU, float64, the settings' seed."""
    return ProblemConfig(
        choice.key, choice.options, seed=settings.seed, dtype="float64", device="cpu"
    )


def race_config(
    choice: ProblemChoice,
    rule: str,
    settings: CheckSettings,
    *,
    curvature: str | None = None,
    options: Mapping[str, Any] | None = None,
    label: str | None = None,
) -> RunConfig:
    """The :class:`~explorer.RunConfig` of one race entry (CPU, float64)."""
    rule_options: dict[str, Any] = dict(options or {})
    if curvature is not None:
        rule_options["curvature"] = curvature
    if rule in DAMPED_RULES:
        rule_options.setdefault("damping", settings.damping)
    return RunConfig(
        problem=choice.key,
        problem_options=dict(choice.options),
        rule=rule,
        rule_options=rule_options,
        steps=settings.steps,
        seed=settings.seed,
        device="cpu",
        dtype="float64",
        label=label,
    )


def summarize(label: str, history: History) -> RaceEntry:
    """The :class:`RaceEntry` of a finished run."""
    frame = history.to_frame()
    losses = frame["loss"].to_numpy(float)
    finite = losses[np.isfinite(losses)]
    last = frame.iloc[-1] if len(frame) else None
    return RaceEntry(
        label=label,
        rule=history.rule,
        status=history.status,
        message=history.message,
        final_loss=float(losses[-1]) if len(losses) else float("nan"),
        best_loss=float(finite.min()) if len(finite) else float("nan"),
        steps=int(last["step"]) if last is not None else 0,
        wall_time=float(last["wall_time"]) if last is not None else float("nan"),
        curvature_products=(
            float(last["curvature_products"]) if last is not None else float("nan")
        ),
    )


def race_entry(
    problem: Problem,
    choice: ProblemChoice,
    rule: str,
    settings: CheckSettings,
    *,
    curvature: str | None = None,
    options: Mapping[str, Any] | None = None,
    label: str | None = None,
) -> tuple[RaceEntry, History | None]:
    """Runs one entry on ``problem`` (built from :func:`problem_config`); returns its
    summary and history (None when it did not run).
    """
    name = label or rule
    try:
        config = race_config(
            choice, rule, settings, curvature=curvature, options=options, label=label
        )
        history = run(config, problem=problem)
    except ValueError as error:  # cannot run here (e.g. K-FAC without layers)
        return RaceEntry(name, rule, "skipped", str(error)), None
    except Exception as error:  # a plugin raising inside a step
        return RaceEntry(name, rule, "error", describe_error(error)), None
    return summarize(name, history), history
