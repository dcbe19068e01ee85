"""The run spine: settings, configs, experiments, the loop, histories, runners.

The flow every page, command, preset and check takes::

    Experiment ──run_configs()──▶ RunConfig ──problem_config.build()──▶ Problem
        │                             │                                   │
        └── URL codec, presets        └── prepare_rule (resolved once) ───┴─▶ execute
                                                                              │
                                                                History ◀─────┘

Modules: :mod:`~explorer.runs.settings` (the loop's own settings),
:mod:`~explorer.runs.config` (:class:`ProblemConfig`, :class:`RunConfig`),
:mod:`~explorer.runs.experiment` (:class:`Experiment`, :class:`RuleChoice`),
:mod:`~explorer.runs.history`, :mod:`~explorer.runs.loop` (:func:`execute`) and
:mod:`~explorer.runs.runner` (:func:`run`, :func:`run_on`, :func:`compare`).
"""

from explorer.runs.config import RUN_OPTIONS, ProblemConfig, RunConfig
from explorer.runs.experiment import DEFAULT_EXPERIMENT, Experiment, RuleChoice
from explorer.runs.history import (
    COLUMNS,
    STATUSES,
    History,
    histories_from_json,
    histories_to_json,
    load_histories,
    save_histories,
)
from explorer.runs.loop import Cancel, Progress, execute
from explorer.runs.runner import (
    compare,
    comparison_configs,
    prepare_rule,
    run,
    run_configs,
    run_experiment,
    run_on,
)
from explorer.runs.settings import SETTINGS_OPTIONS, RunSettings

__all__ = [
    "COLUMNS",
    "DEFAULT_EXPERIMENT",
    "RUN_OPTIONS",
    "SETTINGS_OPTIONS",
    "STATUSES",
    "Cancel",
    "Experiment",
    "History",
    "ProblemConfig",
    "Progress",
    "RuleChoice",
    "RunConfig",
    "RunSettings",
    "compare",
    "comparison_configs",
    "execute",
    "histories_from_json",
    "histories_to_json",
    "load_histories",
    "prepare_rule",
    "run",
    "run_configs",
    "run_experiment",
    "run_on",
    "save_histories",
]
