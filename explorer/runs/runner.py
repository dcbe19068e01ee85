"""Run update rules on problems: :func:`run`, :func:`run_on`, :func:`compare`.

Every entry point goes through the same two steps: a problem is built once
(:meth:`~explorer.runs.config.ProblemConfig.build`) or handed in, and each rule is
prepared once — its options resolved, checked against the problem and turned into
an :class:`~explorer.optimizers.UpdateRule` — before the loop
(:func:`~explorer.runs.loop.execute`) runs it. :func:`run` is deterministic: the
same config gives an identical :class:`~explorer.runs.history.History` (timings
aside).

Randomness comes from three ``torch.Generator`` streams seeded from ``seed``: the
data order (gradient mini-batches; fresh samples for streaming problems), the
curvature mini-batches, and the rule's own sampling (MC Fisher targets, K-FAC). So
runs that differ only in the rule see the same initialization and the same data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from explorer.optimizers.base import UpdateRule
from explorer.optimizers.rules import RULES
from explorer.problems.base import Problem
from explorer.problems.spec import PROBLEMS
from explorer.runs.config import ProblemConfig, RunConfig
from explorer.runs.experiment import Experiment
from explorer.runs.history import History
from explorer.runs.loop import Cancel, Progress, execute
from explorer.runs.settings import RunSettings, problem_settings


def prepare_rule(
    problem: Problem, rule: str, options: Mapping[str, Any] | None = None
) -> UpdateRule:
    """The update rule ``rule`` with ``options``, checked against ``problem``.

    Raises:
        ValueError: An invalid option, or a rule that cannot run on this problem
            (e.g. K-FAC without linear layers); the message says why.
    """
    spec = RULES[rule]
    resolved = spec.resolve(options)
    reason = spec.incompatibility(problem, resolved)
    if reason is not None:
        raise ValueError(f"rule {rule!r} cannot run on {problem.key!r}: {reason}")
    return spec.create(resolved)


def run_on(
    problem: Problem,
    rule: str,
    options: Mapping[str, Any] | None = None,
    settings: RunSettings | None = None,
    *,
    label: str | None = None,
    progress: Progress | None = None,
    cancel: Cancel = None,
) -> History:
    """Runs rule ``rule`` on a problem you built (inside the registry or not).

    The history has no :class:`RunConfig` (``history.config is None``): the problem
    is not described by registry keys. It records the rule's resolved options and
    the settings instead.

    Args:
        problem: Any :class:`~explorer.Problem` (e.g. one reparameterized by hand).
        rule: A key of ``explorer.RULES``.
        options: The rule's options (and its curvature's).
        settings: Steps, seed, batch sizes... (default: the registered problem's
            defaults, :func:`~explorer.runs.settings.problem_settings`; the generic
            :class:`RunSettings` for a problem built by hand).
        label: Display name (default: the rule key).
        progress: As in :func:`run`.
        cancel: As in :func:`run`.

    Example:
        >>> import explorer as ex
        >>> p = ex.problem("linreg_2d", num_samples=20)
        >>> h = run_on(p, "gauss_newton", {"damping": 0.0}, RunSettings(steps=1))
        >>> h.status, h.config is None, h.last("grad_norm") < 1e-10
        ('ok', True, True)
    """
    prepared = prepare_rule(problem, rule, options)
    return execute(
        settings or _default_settings(problem),
        problem,
        prepared,
        label=label,
        progress=progress,
        cancel=cancel,
    )


def run(
    config: RunConfig,
    progress: Progress | None = None,
    cancel: Cancel = None,
    *,
    problem: Problem | None = None,
) -> History:
    """Runs one config and returns its :class:`~explorer.runs.history.History`.

    A run never raises for numerical trouble: a non-finite loss or iterate stops it
    with status ``"diverged"``, an indefinite ``C + λI`` with ``"indefinite"`` (the
    message names the remedy), other numerical errors with ``"error"``.

    Args:
        config: What to run.
        progress: Called as ``progress(step, total, metrics)`` after each recorded
            step (``metrics`` is that row of the history, plus its ``label``).
        cancel: A ``threading.Event`` (or a callable returning True) checked before
            every step; the run then stops with status ``"cancelled"``.
        problem: ``config.problem_config.build()`` when the caller already has it
            (several runs on one problem build it once).

    Raises:
        ValueError: The rule cannot run on this problem (e.g. K-FAC without linear
            layers), or an invalid batch size; raised before any step.
    """
    problem = config.problem_config.build() if problem is None else problem
    prepared = prepare_rule(problem, config.rule, config.resolved_rule_options())
    return _execute(config, problem, prepared, progress, cancel)


def _execute(
    config: RunConfig,
    problem: Problem,
    rule: UpdateRule,
    progress: Progress | None,
    cancel: Cancel,
) -> History:
    history = execute(
        config.settings,
        problem,
        rule,
        label=config.display_label,
        progress=progress,
        cancel=cancel,
    )
    history.config = config
    return history


def run_configs(
    configs: Sequence[RunConfig],
    *,
    problem: Problem | None = None,
    progress: Progress | None = None,
    cancel: Cancel = None,
) -> dict[str, History]:
    """Runs several configs, building each distinct problem once.

    Everything is checked before the first step: labels are distinct and every
    rule can run on its problem.

    Args:
        configs: The runs, in order.
        problem: The (shared) problem of every config, when the caller built it.
        progress: As in :func:`run`; ``metrics["label"]`` names the run.
        cancel: As in :func:`run`; once set, the remaining runs stop at step 0.

    Returns:
        ``{label: History}`` in the order given.

    Raises:
        ValueError: Two runs with the same label, or a rule that cannot run.
    """
    labels = [config.display_label for config in configs]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(
            f"runs with the same label {duplicates[0]!r}; give each a distinct 'label'"
        )
    problems: dict[ProblemConfig, Problem] = {}
    prepared = []
    for config in configs:
        on = problem
        if on is None:
            key = config.problem_config
            if key not in problems:
                problems[key] = key.build()
            on = problems[key]
        prepared.append(
            (config, on, prepare_rule(on, config.rule, config.resolved_rule_options()))
        )
    return {
        config.display_label: _execute(config, on, rule, progress, cancel)
        for config, on, rule in prepared
    }


def run_experiment(
    experiment: Experiment,
    *,
    problem: Problem | None = None,
    progress: Progress | None = None,
    cancel: Cancel = None,
) -> dict[str, History]:
    """``{label: History}`` of every rule of ``experiment`` (same data and start).

    Args:
        experiment: What to run.
        problem: ``experiment.build_problem()`` when the caller already has it.
        progress: As in :func:`run`.
        cancel: As in :func:`run`.
    """
    configs = experiment.run_configs()
    if problem is None:
        problem = experiment.build_problem()
    return run_configs(configs, problem=problem, progress=progress, cancel=cancel)


RuleEntry = str | Mapping[str, Any] | RunConfig


def comparison_configs(
    problem: str, rules: Iterable[RuleEntry], **shared: Any
) -> list[RunConfig]:
    """The configs :func:`compare` runs (see its arguments)."""
    return [_entry_config(problem, entry, shared) for entry in rules]


def compare(
    problem: str,
    rules: Iterable[RuleEntry],
    *,
    progress: Progress | None = None,
    cancel: Cancel = None,
    **shared: Any,
) -> dict[str, History]:
    """Runs several rules on the same problem, initialization and data order.

    Args:
        problem: A key of ``explorer.PROBLEMS``.
        rules: Rule keys, or mappings of :class:`RunConfig` fields (at least
            ``rule``; e.g. ``{"rule": "sgd", "rule_options": {"lr": 0.5},
            "label": "sgd, lr 0.5"}``), or complete configs.
        progress: As in :func:`run`; ``metrics["label"]`` names the run.
        cancel: As in :func:`run`; once set, the remaining runs stop at step 0.
        **shared: :class:`RunConfig` fields common to every run (``steps``,
            ``seed``, ``batch_size``, ``problem_options``...).

    Returns:
        ``{label: History}`` in the order given (the label is the rule key unless
        set).

    Raises:
        ValueError: An invalid config, a rule that cannot run on the problem, or two
            runs with the same label; all checked before the first run starts.

    Example:
        >>> hs = compare("linreg_2d", ["sgd", "gauss_newton"], steps=2)
        >>> list(hs), [h.status for h in hs.values()]
        (['sgd', 'gauss_newton'], ['ok', 'ok'])
    """
    configs = comparison_configs(problem, rules, **shared)
    return run_configs(configs, progress=progress, cancel=cancel)


def _entry_config(
    problem: str, entry: RuleEntry, shared: Mapping[str, Any]
) -> RunConfig:
    if isinstance(entry, RunConfig):
        if entry.problem != problem:
            raise ValueError(
                f"config for rule {entry.rule!r} is on problem {entry.problem!r}, "
                f"not {problem!r}"
            )
        return entry
    fields = {"problem": problem, **shared}
    if isinstance(entry, str):
        fields["rule"] = entry
    elif isinstance(entry, Mapping):
        if "rule" not in entry:
            raise ValueError(f"rule entry {dict(entry)!r} needs a 'rule' key")
        fields.update(entry)
    else:
        raise ValueError(
            f"rule entry {entry!r} must be a rule key, a mapping or a RunConfig"
        )
    return RunConfig.from_dict(fields)


def _default_settings(problem: Problem) -> RunSettings:
    if problem.key in PROBLEMS:
        return problem_settings(problem.key)
    return RunSettings()
