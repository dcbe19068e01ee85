"""What a run is, as primitives: :class:`ProblemConfig` and :class:`RunConfig`.

A :class:`RunConfig` is a problem (key and options), an update rule (key and
options), the loop's :class:`~explorer.runs.settings.RunSettings` and a display
label. It is frozen and hashable — the cache key in the app and the
reproducibility record on disk — and validated once, on construction: the rule's
options are resolved there and kept (:meth:`RunConfig.resolved_rule_options`), so
nothing downstream validates them again.

:class:`ProblemConfig` is the part that builds the problem (key, options, seed,
dtype, device); :meth:`ProblemConfig.build` is the one place a problem is built
from keys.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from explorer.optimizers.frozen import FrozenOptions, ResolvedOptions, freeze
from explorer.optimizers.rules import RULES
from explorer.options import Option, resolve_options
from explorer.problems.base import Problem
from explorer.problems.spec import PROBLEMS, problem
from explorer.runs.settings import SETTINGS_OPTIONS, RunSettings, problem_settings

#: The most characters a run's label may have (a legend entry, not a document).
MAX_LABEL_LENGTH = 80

LABEL_OPTION = Option(
    "label",
    None,
    "Display name (default: the rule key); lets one rule appear twice. Plain text, "
    f"one line of at most {MAX_LABEL_LENGTH} characters.",
    kind="str",
    nullable=True,
)


def validate_label(label: str | None) -> str | None:
    """``label`` when it is a run label: one line of plain text of at most
    :data:`MAX_LABEL_LENGTH` characters (None: the rule key).

    Labels are shown as typed (pages escape Markdown and HTML), but the length and
    the single line are checked here, once, so the library, the command line and
    the app refuse the same labels.

    Raises:
        ValueError: Too long (the message names the limit, not the text), or
            with a control character (a line break, a tab...).

    Example:
        >>> validate_label("sgd, lr 0.5")
        'sgd, lr 0.5'
        >>> validate_label("x" * 81)
        Traceback (most recent call last):
        ...
        ValueError: run label has 81 characters, more than the limit of 80
    """
    label = LABEL_OPTION.validate(label, where="run")
    if label is None:
        return None
    if len(label) > MAX_LABEL_LENGTH:
        raise ValueError(
            f"run label has {len(label):,} characters, more than the limit of "
            f"{MAX_LABEL_LENGTH}"
        )
    if any(unicodedata.category(char) == "Cc" for char in label):
        raise ValueError(
            f"run label {label!r} has a control character (a line break, a tab...); "
            "a label is one line of plain text"
        )
    return label


#: Declared scalar fields of :class:`RunConfig` (``--help``, flags, widgets).
RUN_OPTIONS: tuple[Option, ...] = (*SETTINGS_OPTIONS, LABEL_OPTION)

#: The keys of :meth:`RunConfig.to_dict`, in order.
FIELDS: tuple[str, ...] = (
    "problem",
    "problem_options",
    "rule",
    "rule_options",
    *(option.name for option in RUN_OPTIONS),
)


def _frozen_mapping(name: str, value: Any) -> FrozenOptions:
    value = value or {}
    if not isinstance(value, Mapping):
        raise ValueError(f"run option {name!r} = {value!r} must be a mapping")
    return freeze(dict(value))


@dataclass(frozen=True)
class ProblemConfig:
    """Everything that builds a problem (frozen: a cache key for built problems).

    Attributes:
        problem: A key of ``explorer.PROBLEMS``.
        options: Its options (validated).
        seed: Seeds the data and θ₀.
        dtype: ``"float64"`` or ``"float32"``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Example:
        >>> config = ProblemConfig("linreg_2d", {"num_samples": 20}, seed=3)
        >>> config.build().num_examples
        20
    """

    problem: str
    options: Mapping[str, Any] = field(default_factory=FrozenOptions)
    seed: int = 0
    dtype: str = "float64"
    device: str = "auto"

    def __post_init__(self) -> None:
        spec = PROBLEMS[self.problem]
        options = _frozen_mapping("problem_options", self.options)
        resolve_options(spec.options, options, where=f"problem {self.problem!r}")
        object.__setattr__(self, "options", options)

    @classmethod
    def of(
        cls, problem: str, options: Mapping[str, Any], settings: RunSettings
    ) -> ProblemConfig:
        """The problem of runs with ``settings`` (their seed, dtype and device)."""
        return cls(
            problem,
            options,
            seed=settings.seed,
            dtype=settings.dtype,
            device=settings.device,
        )

    def build(self) -> Problem:
        """The problem (a new instance; callers that share one cache it)."""
        return problem(
            self.problem,
            dtype=self.dtype,
            device=self.device,
            seed=self.seed,
            **dict(self.options),
        )

    def replace(self, **changes: Any) -> ProblemConfig:
        """A copy with ``changes`` (e.g. ``device="cpu"`` for the views)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, init=False)
class RunConfig:
    """One optimizer run, as primitives (frozen, hashable, JSON-able).

    Options may be given as dicts with lists; they are stored as
    :class:`~explorer.optimizers.FrozenOptions` (tuples), so configs hash and compare
    by value. The loop settings are keyword arguments (``steps=``, ``seed=``…) or a
    :class:`RunSettings`; each is also readable as an attribute (``config.steps``).
    Everything is validated here, so an invalid hyper-parameter raises a
    ``ValueError`` naming the value and the range before any work starts.

    Attributes:
        problem: A key of ``explorer.PROBLEMS``.
        problem_options: Its options.
        rule: A key of ``explorer.RULES``.
        rule_options: Its options as given (and, for curvature rules, the
            curvature's); :meth:`resolved_rule_options` has every default too.
        settings: Steps, seed, batch sizes, averaging, record plan, device, dtype.
        label: Display name (None: the rule key).

    Example:
        >>> cfg = RunConfig("linreg_2d", rule="gauss_newton", steps=3)
        >>> cfg == RunConfig("linreg_2d", {}, "gauss_newton", steps=3), cfg.steps
        (True, 3)
        >>> RunConfig("linreg_2d", rule_options={"lr": -1})
        Traceback (most recent call last):
        ...
        ValueError: rule 'sgd' option 'lr' = -1 is out of range; expected a number in (0, 1000]
    """

    problem: str
    problem_options: FrozenOptions
    rule: str
    rule_options: FrozenOptions
    settings: RunSettings
    label: str | None
    _resolved: ResolvedOptions = field(init=False, compare=False, repr=False)

    def __init__(
        self,
        problem: str,
        problem_options: Mapping[str, Any] | None = None,
        rule: str = "sgd",
        rule_options: Mapping[str, Any] | None = None,
        *,
        settings: RunSettings | None = None,
        label: str | None = None,
        **setting_fields: Any,
    ) -> None:
        set_ = object.__setattr__
        problem_config = ProblemConfig(problem, problem_options or {})
        set_(self, "problem", problem)
        set_(self, "problem_options", problem_config.options)
        set_(self, "rule", rule)
        rule_options = _frozen_mapping("rule_options", rule_options)
        set_(self, "rule_options", rule_options)
        set_(self, "_resolved", RULES[rule].resolve(rule_options))
        unknown = sorted(set(setting_fields) - set(RunSettings.names()))
        if unknown:
            raise ValueError(
                f"run config has no field {unknown[0]!r}; fields: {', '.join(FIELDS)}"
            )
        base = settings if settings is not None else problem_settings(problem)
        set_(self, "settings", base.replace(**setting_fields))
        set_(self, "label", validate_label(label))

    def __getattr__(self, name: str) -> Any:
        # ``config.steps`` and friends read the settings (called only for names
        # that are not attributes of the config itself).
        settings = self.__dict__.get("settings")
        if settings is not None and name in RunSettings.names():
            return getattr(settings, name)
        raise AttributeError(
            f"{type(self).__name__!r} object has no attribute {name!r}"
        )

    # ------------------------------------------------------------- accessors
    @property
    def display_label(self) -> str:
        """``label``, or the rule key."""
        return self.label or self.rule

    def resolved_rule_options(self) -> ResolvedOptions:
        """The rule's options with every default filled in (resolved once, when the
        config was made).
        """
        return self._resolved

    @property
    def problem_config(self) -> ProblemConfig:
        """What builds this run's problem."""
        return ProblemConfig.of(self.problem, self.problem_options, self.settings)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes`` (any field or loop setting; validated again)."""
        fields = {
            "problem": self.problem,
            "problem_options": self.problem_options,
            "rule": self.rule,
            "rule_options": self.rule_options,
            "label": self.label,
        }
        settings = changes.pop("settings", self.settings)
        fields.update(changes)
        return RunConfig(settings=settings, **fields)

    # -------------------------------------------------------------- encoding
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data: one flat table (options as dicts and lists)."""
        return {
            "problem": self.problem,
            "problem_options": self.problem_options.to_dict(),
            "rule": self.rule,
            "rule_options": self.rule_options.to_dict(),
            **self.settings.to_dict(),
            "label": self.label,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """A config from :meth:`to_dict` data (or a JSON/TOML file's table).

        Raises:
            ValueError: An unknown field or an invalid value.
        """
        unknown = sorted(set(data) - set(FIELDS))
        if unknown:
            raise ValueError(
                f"run config has no field {unknown[0]!r}; fields: {', '.join(FIELDS)}"
            )
        if "problem" not in data:
            raise ValueError("run config needs a 'problem'")
        return cls(**dict(data))
