"""An experiment as plain data: a problem, the optimizers to compare, the settings.

An :class:`Experiment` holds only what a person chose (non-default values), so it
is what a URL, a preset or a page hands around; :meth:`Experiment.run_configs`
turns it into validated :class:`~explorer.runs.config.RunConfig` s, one per
:class:`RuleChoice`. :data:`DEFAULT_EXPERIMENT` is the comparison a first visit to
the app runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from explorer.problems.base import Problem
from explorer.runs.config import MAX_LABEL_LENGTH, ProblemConfig, RunConfig
from explorer.runs.settings import RunSettings, problem_settings


@dataclass(frozen=True)
class RuleChoice:
    """One optimizer in the comparison: a rule key, its non-default options, a label."""

    rule: str
    options: Mapping[str, Any] = field(default_factory=dict)
    label: str | None = None

    def display_name(self) -> str:
        return self.label or self.rule


@dataclass(frozen=True)
class Experiment:
    """Everything that defines a comparison (and nothing derived).

    Attributes:
        problem: A key of ``explorer.PROBLEMS``.
        problem_options: Its non-default options.
        rules: The optimizers, in display order.
        run_options: Non-default loop settings shared by every run (``steps``,
            ``seed``, ``curvature_batch_size``...).

    Example:
        >>> experiment = Experiment("linreg_2d", rules=(RuleChoice("sgd"),
        ...     RuleChoice("sgd", {"lr": 0.5})), run_options={"steps": 3})
        >>> [c.display_label for c in experiment.run_configs()]
        ['sgd', 'sgd #2']
    """

    problem: str
    problem_options: Mapping[str, Any] = field(default_factory=dict)
    rules: tuple[RuleChoice, ...] = ()
    run_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> RunSettings:
        """The loop settings every run shares: the problem's defaults, then
        ``run_options``.
        """
        return problem_settings(self.problem, **self.run_options)

    @property
    def problem_config(self) -> ProblemConfig:
        """What builds the experiment's problem (the same for every run)."""
        return ProblemConfig.of(self.problem, self.problem_options, self.settings)

    def build_problem(self) -> Problem:
        """The experiment's problem, built once by the caller and passed along."""
        return self.problem_config.build()

    def run_configs(self) -> list[RunConfig]:
        """One :class:`~explorer.RunConfig` per rule; labels made unique."""
        configs, seen = [], {}
        settings = self.settings
        for choice in self.rules:
            name = choice.display_name()
            seen[name] = seen.get(name, 0) + 1
            suffix = "" if seen[name] == 1 else f" #{seen[name]}"
            # the suffix stays within the label limit (a long name is shortened)
            label = name[: MAX_LABEL_LENGTH - len(suffix)] + suffix if suffix else name
            configs.append(
                RunConfig(
                    problem=self.problem,
                    problem_options=dict(self.problem_options),
                    rule=choice.rule,
                    rule_options=dict(choice.options),
                    label=label if label != choice.rule else None,
                    settings=settings,
                )
            )
        return configs


#: The app's default comparison, sized to finish in a few seconds on 2 CPU cores
#: (``benchmarks/bench_rules.py`` prints its time): the digits MLP 64-32-10
#: (P = 2,410) with full-batch gradients and curvature on 128 examples (the
#: problem's own default), so the exact Fisher and GGN steps are 20 CG iterations of
#: cheap products rather than a dense P × P factorization.
DEFAULT_EXPERIMENT = Experiment(
    problem="digits_mlp",
    rules=tuple(
        RuleChoice(rule)
        for rule in ("sgd", "adam", "natural_gradient", "gauss_newton", "kfac")
    ),
    run_options={},
)
