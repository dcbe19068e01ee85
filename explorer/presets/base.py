"""What a preset is: a claim, its configuration, its figures and its numeric check.

A :class:`Preset` is plain data: texts (title, explanation, formula, reference), the
configuration it runs (problem and options, and an
:class:`~explorer.ui.urlstate.Experiment` where the claim is about an optimizer
comparison), the names of the figures that make the point, the sizes it can run at,
and the function that computes the evidence. The evidence is a list of
:class:`Measurement` objects, each a real measured number with the tolerance (or closed
form) it must meet; :class:`CheckResult` turns them into the badge the tour shows,
e.g. ``max |F − G| = 4.4e-16 ≤ 1e-12 ✓``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import plotly.graph_objects as go

from explorer.ui.urlstate import Experiment

#: The sizes every preset runs at: ``"small"`` (CI and quick looks, seconds on 2 CPU
#: cores) and ``"full"`` (the page's default: smoother curves, more seeds).
SIZES: tuple[str, ...] = ("small", "full")


def format_number(value: float) -> str:
    """A measured number for a badge: 3 significant digits, exponent when tiny.

    Example:
        >>> format_number(4.44e-16), format_number(0.8689), format_number(12.0)
        ('4.44e-16', '0.869', '12')
    """
    text = f"{value:.3g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        return f"{mantissa}e{int(exponent)}"
    return text


@dataclass(frozen=True)
class Measurement:
    """One measured number and the bound it must meet.

    Attributes:
        name: What was measured, as the badge prints it (``"max |F − G|"``).
        value: The measured number.
        low: It must be at least this (None: no lower bound).
        high: It must be at most this (None: no upper bound).
        meaning: One plain sentence on what the number shows.
    """

    name: str
    value: float
    low: float | None = None
    high: float | None = None
    meaning: str = ""

    @property
    def passed(self) -> bool:
        """Finite and within the bounds."""
        value = float(self.value)
        if not math.isfinite(value):
            return False
        return (self.low is None or value >= self.low) and (
            self.high is None or value <= self.high
        )

    @property
    def tolerance(self) -> str:
        """The bound as text: ``"≤ 1e-12"``, ``"≥ 0.01"`` or ``"in [0.5, 2]"``."""
        if self.low is not None and self.high is not None:
            return f"in [{format_number(self.low)}, {format_number(self.high)}]"
        if self.high is not None:
            return f"≤ {format_number(self.high)}"
        if self.low is not None:
            return f"≥ {format_number(self.low)}"
        return ""

    def text(self) -> str:
        """``name = value bound ✓`` (or ✗)."""
        mark = "✓" if self.passed else "✗"
        return (
            f"{self.name} = {format_number(float(self.value))} {self.tolerance} {mark}"
        )


@dataclass(frozen=True)
class CheckResult:
    """The outcome of a preset's numeric check.

    Attributes:
        key: The preset.
        size: The size it ran at.
        measurements: The measured numbers with their bounds.
        seconds: Wall time of the computation.
    """

    key: str
    size: str
    measurements: tuple[Measurement, ...]
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """Every measurement within its bounds (and at least one)."""
        return bool(self.measurements) and all(m.passed for m in self.measurements)

    @property
    def badge(self) -> str:
        """All measurements on one line, e.g. ``max |F − G| = 0 ≤ 1e-12 ✓``."""
        return " · ".join(m.text() for m in self.measurements)

    def failure_message(self) -> str:
        """The measurements that failed, with their numbers (for test output)."""
        failed = [m.text() for m in self.measurements if not m.passed]
        return f"{self.key} ({self.size}): " + ("; ".join(failed) or "no measurement")


@dataclass(frozen=True)
class Evidence:
    """What a preset's computation returns.

    Attributes:
        measurements: The numbers the check is about.
        figures: Figure name -> Plotly figure (empty when figures were not asked for).
        notes: Short remarks the page shows under the badge.
        experiments: Experiments decided by the computation (e.g. the best of a
            grid), replacing the preset's own; None keeps them.
    """

    measurements: tuple[Measurement, ...]
    figures: Mapping[str, go.Figure] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    experiments: Mapping[str, Experiment] | None = None


@dataclass(frozen=True)
class Setup:
    """A preset resolved at one size: what its computation receives.

    Attributes:
        key: The preset key.
        size: ``"small"`` or ``"full"``.
        problem: The problem key (None: the preset builds its own problem).
        problem_options: Problem options at this size.
        experiments: Label -> :class:`Experiment` at this size (may be empty).
        params: Everything else the computation needs at this size (seeds, grids,
            steps...).
    """

    key: str
    size: str
    problem: str | None
    problem_options: Mapping[str, Any]
    experiments: Mapping[str, Experiment]
    params: Mapping[str, Any]

    @property
    def experiment(self) -> Experiment:
        """The first (usually only) experiment."""
        if not self.experiments:
            raise ValueError(f"preset {self.key!r} has no experiment")
        return next(iter(self.experiments.values()))

    def __getitem__(self, name: str) -> Any:
        return self.params[name]


Compute = Callable[[Setup, bool], Evidence]


@dataclass(frozen=True)
class Preset:
    """One reproducible claim.

    Attributes:
        key: Short stable snake_case key (tests and the page use it).
        claim: ``"C1"`` … ``"C7"`` (THEORY.md §5) or ``"QM"`` (quadratic models).
        title: A short title.
        explanation: Two sentences in plain words.
        formula: The formula in LaTeX (without dollar signs).
        reference: Where the claim comes from (paper, section or figure).
        problem: The main problem key; None where the claim needs a problem the
            registry does not have (the computation builds it).
        problem_options: Its options (full size; ``sizes`` may override).
        compute: ``(setup, figures) -> Evidence``.
        figures: Names of the figures the page shows, in order.
        experiments: Label -> :class:`Experiment` for claims about an optimizer
            comparison (the Compare page can open each); full size.
        sizes: Size -> overrides: ``problem_options`` and ``run_options`` (merged
            into the problem options and every experiment) and any other parameter.
    """

    key: str
    claim: str
    title: str
    explanation: str
    formula: str
    reference: str
    problem: str | None
    compute: Compute
    figures: tuple[str, ...]
    problem_options: Mapping[str, Any] = field(default_factory=dict)
    experiments: Mapping[str, Experiment] = field(default_factory=dict)
    sizes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def setup(self, size: str = "full") -> Setup:
        """The preset resolved at ``size``.

        Raises:
            ValueError: An unknown size.
        """
        if size not in SIZES:
            raise ValueError(f"size = {size!r} must be one of {', '.join(SIZES)}")
        params = dict(self.sizes.get(size, {}))
        problem_changes = dict(params.pop("problem_options", {}))
        run_changes = dict(params.pop("run_options", {}))
        experiments = {
            label: _resized(experiment, self.problem, problem_changes, run_changes)
            for label, experiment in self.experiments.items()
        }
        return Setup(
            key=self.key,
            size=size,
            problem=self.problem,
            problem_options={**dict(self.problem_options), **problem_changes},
            experiments=experiments,
            params=params,
        )


def _resized(
    experiment: Experiment,
    problem: str | None,
    problem_changes: Mapping,
    run_changes: Mapping,
) -> Experiment:
    """``experiment`` with a size's overrides (problem ones only on ``problem``)."""
    problem_options = dict(experiment.problem_options)
    if experiment.problem == problem:
        problem_options.update(problem_changes)
    return replace(
        experiment,
        problem_options=problem_options,
        run_options={**dict(experiment.run_options), **run_changes},
    )


@dataclass(frozen=True)
class PresetResult:
    """A preset's check and figures at one size (what the tour page shows).

    Attributes:
        check: The :class:`CheckResult`.
        figures: Name -> figure, in the preset's order.
        experiments: The experiments that ran (label -> :class:`Experiment`).
        notes: Remarks to show under the badge.
    """

    check: CheckResult
    figures: Mapping[str, go.Figure]
    experiments: Mapping[str, Experiment]
    notes: tuple[str, ...] = ()
