"""What a preset is: a claim, its configuration, its measurements and its figures.

A :class:`Preset` is plain data: texts (title, explanation, formula, reference), its
problem (key and options, declared once), the optimizer comparisons it runs (each a
:class:`Comparison`: rules and run settings, never the problem again), a size table,
and two functions. ``measure(setup) -> Measured`` computes the evidence: a list of
:class:`Measurement` objects, each a real measured number with the tolerance (or
closed form) it must meet, and the plain data the figures need (histories, grids,
arrays, tensors). ``draw(setup, measured) -> {name: figure}`` turns that data into
figures with the builders of :mod:`explorer.plots` and computes nothing.
:class:`CheckResult` turns the measurements into the badge the tour shows, e.g.
``max |F − G| = 4.4e-16 ≤ 1e-12 ✓``.

A computation module declares each :class:`Study` (the figures' names, ``measure``
and ``draw``); a catalog module is a :class:`Catalog`: its presets' texts in
Markdown (:func:`preset_texts`), then one :meth:`Catalog.add` per preset with its
study, problem, comparisons and sizes.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from explorer.plots import Figure
from explorer.presets.helpers import problem_on_cpu
from explorer.problems.base import Problem
from explorer.runs import Experiment, RuleChoice

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
class Comparison:
    """An optimizer comparison of a preset: an :class:`Experiment` without its problem.

    The preset supplies the problem (key and options at each size);
    :meth:`Preset.setup` puts the two together.

    Attributes:
        rules: The optimizers, in display order.
        run_options: Non-default loop settings (full size; a size's
            ``run_options`` are merged in).
        problem_options: Options that differ from the preset's problem options where
            the claim needs it (e.g. the other parameterization); they win over the
            size's problem options.
    """

    rules: tuple[RuleChoice, ...]
    run_options: Mapping[str, Any] = field(default_factory=dict)
    problem_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Measured:
    """What a preset's ``measure`` returns: numbers, and the data the figures need.

    Attributes:
        measurements: The numbers the check is about.
        data: Plain data for ``draw`` (histories, grids, arrays, tensors; no
            figures), read as ``measured["name"]``.
        notes: Short remarks the page shows under the badge.
        experiments: Experiments decided by the measurement (e.g. the best of a
            grid), replacing the preset's own; None keeps them.
    """

    measurements: tuple[Measurement, ...]
    data: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    experiments: Mapping[str, Experiment] | None = None

    def __getitem__(self, name: str) -> Any:
        return self.data[name]


@dataclass(frozen=True)
class Setup:
    """A preset resolved at one size: what its ``measure`` and ``draw`` receive.

    Attributes:
        key: The preset key.
        size: ``"small"`` or ``"full"``.
        problem: The problem key (None: the preset builds its own problem).
        problem_options: Problem options at this size.
        experiments: Label -> :class:`Experiment` at this size (may be empty).
        params: Everything else at this size (seeds, grids, steps...).
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

    def build_problem(self) -> Problem:
        """The preset's problem at this size, on the CPU in float64."""
        if self.problem is None:
            raise ValueError(f"preset {self.key!r} builds its own problem")
        return problem_on_cpu(self.problem, self.problem_options)

    def __getitem__(self, name: str) -> Any:
        return self.params[name]


Measure = Callable[[Setup], Measured]
Draw = Callable[[Setup, Measured], Mapping[str, Figure]]


class Study:
    """What a preset computes and shows: the names of its figures, then the two
    functions, which attach themselves with :meth:`measures` and :meth:`draws`::

        MC_FISHER = Study("error against samples")


        @MC_FISHER.measures
        def measure_mc_fisher(setup: Setup) -> Measured: ...


        @MC_FISHER.draws
        def draw_mc_fisher(setup: Setup, measured: Measured) -> Figures: ...

    Attributes:
        figures: The names ``draw`` returns, in the order the page shows them.
        measure: ``setup -> Measured``: the numbers and the figures' data.
        draw: ``(setup, measured) -> {name: figure}``.
    """

    def __init__(self, *figures: str) -> None:
        self.figures: tuple[str, ...] = figures
        self.measure: Measure | None = None
        self.draw: Draw | None = None

    def measures(self, function: Measure) -> Measure:
        """Decorator: ``function`` is this study's ``measure``."""
        self.measure = function
        return function

    def draws(self, function: Draw) -> Draw:
        """Decorator: ``function`` is this study's ``draw``."""
        self.draw = function
        return function


@dataclass(frozen=True)
class Preset:
    """One reproducible claim.

    Attributes:
        key: Short stable snake_case key (tests and the page use it).
        claim: ``"C1"`` … ``"C7"`` (THEORY.md §5), ``"QM"`` (quadratic models) or
            ``"PC"`` (which matrix a preconditioner estimates).
        title: A short title.
        explanation: Two sentences in plain words.
        formula: The formula in LaTeX (without dollar signs).
        reference: Where the claim comes from (paper, section or figure).
        problem: The main problem key; None where the claim needs a problem the
            registry does not have (``measure`` builds it).
        measure: ``setup -> Measured``: the numbers and the figures' data.
        draw: ``(setup, measured) -> {name: figure}``, with the names of
            ``figures``.
        figures: Names of the figures the page shows, in order.
        problem_options: The problem's options (full size; ``sizes`` may
            override).
        experiments: Label -> :class:`Comparison` for claims about an optimizer
            comparison (the Compare page can open each); full size.
        params: Parameters of ``measure`` at every size.
        sizes: Size -> overrides: ``problem_options`` and ``run_options`` (merged
            into the problem options and every experiment) and parameters.
    """

    key: str
    claim: str
    title: str
    explanation: str
    formula: str
    reference: str
    problem: str | None
    measure: Measure
    draw: Draw
    figures: tuple[str, ...]
    problem_options: Mapping[str, Any] = field(default_factory=dict)
    experiments: Mapping[str, Comparison] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    sizes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.experiments and self.problem is None:
            raise ValueError(f"preset {self.key!r} has experiments but no problem")

    def setup(self, size: str = "full") -> Setup:
        """The preset resolved at ``size``.

        Raises:
            ValueError: An unknown size.
        """
        if size not in SIZES:
            raise ValueError(f"size = {size!r} must be one of {', '.join(SIZES)}")
        params = {**dict(self.params), **dict(self.sizes.get(size, {}))}
        problem_options = {
            **dict(self.problem_options),
            **dict(params.pop("problem_options", {})),
        }
        run_changes = dict(params.pop("run_options", {}))
        experiments = {
            label: Experiment(
                self.problem,
                {**problem_options, **dict(comparison.problem_options)},
                tuple(comparison.rules),
                {**dict(comparison.run_options), **run_changes},
            )
            for label, comparison in self.experiments.items()
        }
        return Setup(self.key, size, self.problem, problem_options, experiments, params)


_HEADER = re.compile(r"`(?P<key>\w+)` · (?P<claim>\w+)")
_BODY = re.compile(
    r"(?P<explanation>.+?)\$\$(?P<formula>.+?)\$\$\s*Reference:(?P<reference>.+)",
    re.S,
)


def preset_texts(markdown: str) -> dict[str, dict[str, str]]:
    r"""Presets' texts from Markdown: ``{key: {claim, title, explanation, formula,
    reference}}``, one section per preset, lines wrapped freely::

        ## The title
        `the_key` · C1

        The explanation, two sentences in plain words.

        $$
        the formula in LaTeX
        $$

        Reference: where the claim comes from

    Raises:
        ValueError: A section that does not have this form (naming it).

    Example:
        >>> texts = preset_texts('''
        ... ## One is one
        ... `c0_one` · C0
        ...
        ... One equals
        ... one. Always.
        ...
        ... $$ 1 = 1 $$
        ...
        ... Reference: arithmetic
        ... ''')
        >>> texts["c0_one"]["explanation"], texts["c0_one"]["formula"]
        ('One equals one. Always.', '1 = 1')
    """
    texts = {}
    for section in re.split(r"^## ", textwrap.dedent(markdown), flags=re.M)[1:]:
        title, header, body = section.split("\n", 2)
        head, parts = _HEADER.fullmatch(header.strip()), _BODY.fullmatch(body.strip())
        if head is None or parts is None:
            raise ValueError(
                f"preset texts {title.strip()!r} must read: title, `key` · claim, "
                "explanation, $$ formula $$, Reference: …"
            )
        words = {
            name: " ".join(text.split()) for name, text in parts.groupdict().items()
        }
        texts[head["key"]] = {"claim": head["claim"], "title": title.strip(), **words}
    return texts


class Catalog:
    """The presets of one catalog module: texts in Markdown, configuration in code.

    Args:
        texts: The presets' texts (see :func:`preset_texts`).
    """

    def __init__(self, texts: str) -> None:
        self.texts = preset_texts(texts)
        self.presets: list[Preset] = []

    def add(self, key: str, study: Study, **config: Any) -> Preset:
        """Declares preset ``key`` from its texts, its ``study`` and ``config`` (the
        other fields of :class:`Preset`: problem and its options, experiments,
        params, sizes).

        Raises:
            ValueError: No texts for ``key``, or a study without its functions.
        """
        if key not in self.texts:
            raise ValueError(f"preset {key!r} has no texts; known: {list(self.texts)}")
        if study.measure is None or study.draw is None:
            raise ValueError(f"preset {key!r}: its study lacks a measure or a draw")
        preset = Preset(
            key=key,
            **self.texts[key],
            measure=study.measure,
            draw=study.draw,
            figures=study.figures,
            **config,
        )
        self.presets.append(preset)
        return preset

    def __iter__(self) -> Iterator[Preset]:
        unused = sorted(set(self.texts) - {preset.key for preset in self.presets})
        if unused:
            raise ValueError(f"texts without a preset: {unused}")
        return iter(self.presets)


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
    figures: Mapping[str, Figure]
    experiments: Mapping[str, Experiment]
    notes: tuple[str, ...] = ()
