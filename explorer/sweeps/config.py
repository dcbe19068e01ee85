r"""What a sweep runs: a grid over each rule's options, crossed with seeds.

A :class:`SweepConfig` names a problem, for each rule a grid ``{option: [values]}``
and the seeds; :meth:`SweepConfig.trials` expands it into :class:`Trial` s, one
validated :class:`~explorer.RunConfig` each (an unknown rule or option, or a value
outside its range, raises ``ValueError`` naming it before any work). A trial's id is
a stable hash of its config's plain data, so a results file from an earlier sweep
is matched trial by trial (resume, and caching across sessions).

``sample = n`` keeps a random subset of n grid points per rule (drawn with
``sample_seed``; every seed runs each kept point), as random search over the same
grid does.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from explorer.optimizers.rules import RULES
from explorer.runs.config import RunConfig

#: Grids larger than this are refused unless ``max_trials`` says otherwise.
MAX_TRIALS = 10_000


def log_spaced(low: float, high: float, count: int, digits: int = 3) -> list[float]:
    """``count`` values from ``low`` to ``high``, equally spaced in log, rounded to
    ``digits`` significant digits (so grid labels read 0.001, 0.0215, 0.464, 10).

    Example:
        >>> log_spaced(0.001, 10, 4)
        [0.001, 0.0215, 0.464, 10.0]
    """
    if not (low > 0 and high > 0):
        raise ValueError(
            f"a log-spaced grid needs positive ends, got {low!r}, {high!r}"
        )
    if not (isinstance(count, int) and count >= 1):
        raise ValueError(f"count = {count!r} must be an integer ≥ 1")
    if count == 1 or low == high:
        return [float(f"{low:.{digits}g}")]
    ratio = (high / low) ** (1.0 / (count - 1))
    values = [float(f"{low * ratio**i:.{digits}g}") for i in range(count)]
    return sorted(set(values))


@dataclass(frozen=True)
class Trial:
    """One point of the grid with one seed.

    Attributes:
        trial_id: A stable hash of ``config`` (16 hex digits).
        rule: The rule key.
        seed: The seed.
        options: The swept options' values at this point (``{}``: the defaults).
        config: The run.
    """

    trial_id: str
    rule: str
    seed: int
    options: Mapping[str, Any]
    config: RunConfig


def trial_id(config: RunConfig) -> str:
    """16 hex digits of the SHA-256 of the config's canonical JSON."""
    text = json.dumps(config.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SweepConfig:
    """A grid of runs.

    Attributes:
        problem: A key of ``explorer.PROBLEMS``.
        rules: ``{rule: {option: [values…]}}``; an empty grid ``{}`` runs the rule
            with its defaults once per seed.
        seeds: The seeds every grid point runs with.
        steps: Steps per run.
        problem_options: The problem's options.
        settings: Other loop settings (``batch_size``, ``dtype``…).
        sample: Keep at most this many grid points per rule, drawn at random
            (None: the whole grid).
        sample_seed: The seed of that draw.
        divergence_factor: A run whose loss exceeds this multiple of its initial loss
            stops early with status ``"diverged"`` (Kunstner et al. 2019 use 100).
        target_loss: The loss ``steps_to_target`` counts the steps to (None: none).
        max_trials: The largest number of trials accepted.

    Example:
        >>> config = SweepConfig("linreg_2d", {"sgd": {"lr": [0.1, 0.3]}}, seeds=(0, 1))
        >>> [(t.rule, t.options["lr"], t.seed) for t in config.trials()]
        [('sgd', 0.1, 0), ('sgd', 0.1, 1), ('sgd', 0.3, 0), ('sgd', 0.3, 1)]
    """

    problem: str
    rules: Mapping[str, Mapping[str, Sequence[Any]]]
    seeds: Sequence[int] = (0,)
    steps: int = 40
    problem_options: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    sample: int | None = None
    sample_seed: int = 0
    divergence_factor: float = 100.0
    target_loss: float | None = None
    max_trials: int = MAX_TRIALS

    def __post_init__(self) -> None:
        if not self.rules:
            raise ValueError("the sweep has no rules; give at least one")
        for rule, grid in self.rules.items():
            RULES[rule]  # an unknown key: a ValueError listing the known ones
            if not isinstance(grid, Mapping):
                raise ValueError(f"rule {rule!r}: its grid must be a table of lists")
            for option, values in grid.items():
                if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
                    raise ValueError(
                        f"rule {rule!r} option {option!r}: give a list of values, "
                        f"got {values!r}"
                    )
                if not values:
                    raise ValueError(f"rule {rule!r} option {option!r}: empty list")
        seeds = list(self.seeds)
        if not seeds:
            raise ValueError("the sweep has no seeds; give at least one")
        if any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds):
            raise ValueError(f"seeds = {seeds!r} must be integers ≥ 0")
        if not (isinstance(self.steps, int) and self.steps >= 1):
            raise ValueError(f"steps = {self.steps!r} must be an integer ≥ 1")
        if self.sample is not None and self.sample < 1:
            raise ValueError(f"sample = {self.sample!r} must be ≥ 1 or None")
        if not self.divergence_factor > 1:
            raise ValueError(
                f"divergence_factor = {self.divergence_factor!r} must be above 1"
            )
        total = self.size()
        if total > self.max_trials:
            raise ValueError(
                f"the sweep has {total:,} trials, above the limit of "
                f"{self.max_trials:,}; shrink the grid or raise max_trials"
            )

    # ----------------------------------------------------------------- grid
    def points(self, rule: str) -> list[dict[str, Any]]:
        """The grid points of ``rule`` (after sampling), in grid order."""
        grid = self.rules[rule]
        names = list(grid)
        points = [
            dict(zip(names, values, strict=True))
            for values in itertools.product(*(grid[n] for n in names))
        ]
        if self.sample is not None and self.sample < len(points):
            chosen = random.Random(f"{self.sample_seed}:{rule}").sample(
                range(len(points)), self.sample
            )
            points = [points[i] for i in sorted(chosen)]
        return points

    def size(self) -> int:
        """The number of trials."""
        per_rule = 0
        for grid in self.rules.values():
            count = 1
            for values in grid.values():
                count *= len(values)
            if self.sample is not None:
                count = min(count, self.sample)
            per_rule += count
        return per_rule * len(list(self.seeds))

    def trials(self) -> list[Trial]:
        """Every trial, validated (rule by rule, point by point, seed by seed).

        Raises:
            ValueError: An unknown option or a value out of its range, naming the
                rule, the option and the range.
        """
        out = []
        for rule in self.rules:
            for options in self.points(rule):
                for seed in self.seeds:
                    config = RunConfig(
                        self.problem,
                        self.problem_options,
                        rule,
                        options,
                        **{**dict(self.settings), "steps": self.steps, "seed": seed},
                    )
                    out.append(Trial(trial_id(config), rule, seed, options, config))
        return out

    def swept_options(self) -> list[str]:
        """Every option name some rule sweeps (the result table's columns)."""
        names: dict[str, None] = {}
        for grid in self.rules.values():
            names.update(dict.fromkeys(grid))
        return list(names)
