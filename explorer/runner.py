"""Run update rules on problems: :class:`RunConfig`, :func:`run` and :func:`compare`.

A :class:`RunConfig` is a frozen record of primitives (problem key and options, rule
key and options, steps, batch sizes, seed, averaging, device): the cache key in the
app and the reproducibility record on disk. :func:`run` is deterministic: the same
config gives an identical :class:`~explorer.history.History` (timings aside).

Randomness comes from three ``torch.Generator`` streams seeded from ``seed``: the
data order (gradient mini-batches; fresh samples for streaming problems), the
curvature mini-batches, and the rule's own sampling (MC Fisher targets, K-FAC). So
runs that differ only in the rule see the same initialization and the same data.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from explorer.history import History
from explorer.optimizers.frozen import FrozenOptions, freeze
from explorer.optimizers.loop import Progress, execute
from explorer.optimizers.rules import RULES
from explorer.options import Option, resolve_options
from explorer.problems.spec import PROBLEMS
from explorer.problems.spec import problem as build_problem

AVERAGING = ("none", "uniform", "ema")

#: Declared scalar fields of :class:`RunConfig` (validation, ``--help``, widgets).
RUN_OPTIONS: tuple[Option, ...] = (
    Option("steps", 50, "Number of updates.", low=0, high=10_000_000),
    Option(
        "seed",
        0,
        "Seeds the data, the initial parameters, the mini-batch order and any "
        "sampling.",
        low=0,
        high=2**32 - 1,
    ),
    Option(
        "batch_size",
        None,
        "Gradient mini-batch size; None = the full training set (streaming "
        "problems: 1 fresh sample per step).",
        low=1,
        high=10_000_000,
        kind="int",
        nullable=True,
    ),
    Option(
        "curvature_batch_size",
        None,
        "Examples the curvature averages over: None = the gradient batch; fewer = "
        "its first ones (a random subset for full-batch runs); more = an extra "
        "independent draw.",
        low=1,
        high=10_000_000,
        kind="int",
        nullable=True,
    ),
    Option(
        "averaging",
        "none",
        "Iterate averaging recorded as averaged_loss: 'uniform' (Polyak) or 'ema'.",
        choices=AVERAGING,
    ),
    Option(
        "average_start",
        0,
        "Averaging starts at this step (earlier, the average is the iterate).",
        low=0,
        high=10_000_000,
    ),
    Option(
        "average_decay",
        0.99,
        "Decay β of the exponential average θ̄ ← βθ̄ + (1 − β)θ.",
        low=0.0,
        high=0.999999,
    ),
    Option(
        "record_steps",
        None,
        "Record metrics at this many steps besides step 0 (the last included); "
        "None = every step.",
        low=1,
        high=10_000_000,
        kind="int",
        nullable=True,
    ),
    Option(
        "record_log",
        False,
        "Space the recorded steps geometrically (for log-log plots).",
    ),
    Option(
        "device",
        "auto",
        "'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'.",
    ),
    Option("dtype", "float64", "Floating point type.", choices=("float32", "float64")),
    Option(
        "label",
        None,
        "Display name (default: the rule key); lets one rule appear twice.",
        kind="str",
        nullable=True,
    ),
)

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")

#: The app's default comparison, sized to finish in a few seconds on 2 CPU cores
#: (``benchmarks/bench_rules.py`` prints its time): the digits MLP 64-32-10
#: (P = 2,410) with full-batch gradients and curvature on 128 examples, so the exact
#: Fisher and GGN steps are 20 CG iterations of cheap products rather than a dense
#: P × P factorization. Use as ``compare(**DEFAULT_COMPARISON)``.
DEFAULT_COMPARISON: dict[str, Any] = {
    "problem": "digits_mlp",
    "rules": ("sgd", "adam", "natural_gradient", "gauss_newton", "kfac"),
    "steps": 50,
    "curvature_batch_size": 128,
}


@dataclass(frozen=True)
class RunConfig:
    """One optimizer run, as primitives (frozen, hashable, JSON-able).

    Options may be given as dicts with lists; they are stored as
    :class:`~explorer.optimizers.FrozenOptions` (tuples), so configs hash and compare
    by value. Everything is validated here, so an invalid hyper-parameter raises a
    ``ValueError`` naming the value and the range before any work starts.

    Attributes:
        problem: A key of ``explorer.PROBLEMS``.
        problem_options: Its options.
        rule: A key of ``explorer.RULES``.
        rule_options: Its options (and, for curvature rules, the curvature's).
        steps, seed, batch_size, curvature_batch_size, averaging, average_start,
        average_decay, record_steps, record_log, device, dtype, label: See
            :data:`RUN_OPTIONS`.

    Example:
        >>> cfg = RunConfig("linreg_2d", rule="gauss_newton", steps=3)
        >>> cfg == RunConfig("linreg_2d", {}, "gauss_newton", steps=3)
        True
        >>> RunConfig("linreg_2d", rule_options={"lr": -1})
        Traceback (most recent call last):
        ...
        ValueError: rule 'sgd' option 'lr' = -1 is out of range; expected a number in (0, 1000]
    """

    problem: str
    problem_options: Mapping[str, Any] = field(default_factory=FrozenOptions)
    rule: str = "sgd"
    rule_options: Mapping[str, Any] = field(default_factory=FrozenOptions)
    steps: int = 50
    seed: int = 0
    batch_size: int | None = None
    curvature_batch_size: int | None = None
    averaging: str = "none"
    average_start: int = 0
    average_decay: float = 0.99
    record_steps: int | None = None
    record_log: bool = False
    device: str = "auto"
    dtype: str = "float64"
    label: str | None = None

    def __post_init__(self) -> None:
        problem_spec = PROBLEMS[self.problem]
        rule_spec = RULES[self.rule]
        set_ = object.__setattr__
        for name in ("problem_options", "rule_options"):
            value = getattr(self, name) or {}
            if not isinstance(value, Mapping):
                raise ValueError(f"run option {name!r} = {value!r} must be a mapping")
            set_(self, name, freeze(dict(value)))
        resolve_options(
            problem_spec.options,
            self.problem_options,
            where=f"problem {self.problem!r}",
        )
        rule_spec.resolve(self.rule_options)
        for option in RUN_OPTIONS:
            value = option.validate(getattr(self, option.name), where="run")
            set_(self, option.name, value)
        if not _DEVICE.fullmatch(self.device):
            raise ValueError(
                f"run option 'device' = {self.device!r} is invalid; expected 'auto', "
                "'cpu', 'cuda' or 'cuda:N'"
            )

    # ------------------------------------------------------------- accessors
    @property
    def display_label(self) -> str:
        """``label``, or the rule key."""
        return self.label or self.rule

    def resolved_rule_options(self) -> dict[str, Any]:
        """The rule's options with defaults filled in."""
        return RULES[self.rule].resolve(self.rule_options)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)

    # -------------------------------------------------------------- encoding
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (options as dicts and lists)."""
        out: dict[str, Any] = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            out[item.name] = (
                value.to_dict() if isinstance(value, FrozenOptions) else value
            )
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """A config from :meth:`to_dict` data (or a JSON/TOML file's table).

        Raises:
            ValueError: An unknown field or an invalid value.
        """
        names = [item.name for item in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(
                f"run config has no field {unknown[0]!r}; fields: {', '.join(names)}"
            )
        if "problem" not in data:
            raise ValueError("run config needs a 'problem'")
        return cls(**dict(data))


# --------------------------------------------------------------------- running
#: A ``threading.Event``, or a callable returning True once the run should stop.
Cancel = Any


def run(
    config: RunConfig,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> History:
    """Runs one config and returns its :class:`~explorer.history.History`.

    A run never raises for numerical trouble: a non-finite loss or iterate stops it
    with status ``"diverged"``, an indefinite ``C + λI`` with ``"indefinite"`` (the
    message names the remedy), other numerical errors with ``"error"``.

    Args:
        config: What to run.
        progress: Called as ``progress(step, total, metrics)`` after each recorded
            step (``metrics`` is that row of the history, plus its ``label``).
        cancel: A ``threading.Event`` (or a callable returning True) checked before
            every step; the run then stops with status ``"cancelled"``.

    Raises:
        ValueError: The rule cannot run on this problem (e.g. K-FAC without linear
            layers), or an invalid batch size; raised before any step.
    """
    problem = _build_problem(config)
    return _run_on(config, problem, progress, cancel)


def _build_problem(config: RunConfig):
    return build_problem(
        config.problem,
        dtype=config.dtype,
        device=config.device,
        seed=config.seed,
        **dict(config.problem_options),
    )


def _run_on(config: RunConfig, problem, progress, cancel) -> History:
    spec = RULES[config.rule]
    reason = spec.incompatibility(problem, config.rule_options)
    if reason is not None:
        raise ValueError(
            f"rule {config.rule!r} cannot run on {config.problem!r}: {reason}"
        )
    rule = spec.create(config.rule_options)
    return execute(config, problem, rule, progress=progress, cancel=cancel)


RuleEntry = str | Mapping[str, Any] | RunConfig


def compare(
    problem: str,
    rules: Iterable[RuleEntry],
    *,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
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
    configs = [_entry_config(problem, entry, shared) for entry in rules]
    labels = [config.display_label for config in configs]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(
            f"runs with the same label {duplicates[0]!r}; give each a distinct 'label'"
        )
    problems: dict[tuple, Any] = {}
    for config in configs:  # build and check everything before the first step
        key = (
            config.problem,
            config.problem_options,
            config.seed,
            config.dtype,
            config.device,
        )
        if key not in problems:
            problems[key] = _build_problem(config)
        reason = RULES[config.rule].incompatibility(problems[key], config.rule_options)
        if reason is not None:
            raise ValueError(
                f"rule {config.rule!r} cannot run on {problem!r}: {reason}"
            )
    out: dict[str, History] = {}
    for config in configs:
        key = (
            config.problem,
            config.problem_options,
            config.seed,
            config.dtype,
            config.device,
        )
        out[config.display_label] = _run_on(config, problems[key], progress, cancel)
    return out


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
