"""The loop's own settings: how long, on what data order, what to record, where.

:class:`RunSettings` is everything :func:`~explorer.runs.loop.execute` needs besides
the problem and the update rule — steps, seed, batch sizes, iterate averaging, the
record plan, device and dtype — as a frozen, validated record. A
:class:`~explorer.runs.config.RunConfig` is a problem, a rule and these settings.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from explorer.options import Option

AVERAGING = ("none", "uniform", "ema")

#: One declaration per field of :class:`RunSettings` (validation, ``--help``, widgets).
SETTINGS_OPTIONS: tuple[Option, ...] = (
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
)

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


@dataclass(frozen=True)
class RunSettings:
    """How a run loops and records (frozen, hashable, validated on construction).

    Attributes: one per option of :data:`SETTINGS_OPTIONS` (their help says what
    each means).

    Example:
        >>> settings = RunSettings(steps=3).replace(seed=2)
        >>> settings.steps, settings.seed, settings.dtype
        (3, 2, 'float64')
        >>> RunSettings(steps=-1)
        Traceback (most recent call last):
        ...
        ValueError: run option 'steps' = -1 is out of range; expected an integer in [0, 1e+07]
    """

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

    def __post_init__(self) -> None:
        for option in SETTINGS_OPTIONS:
            value = option.validate(getattr(self, option.name), where="run")
            object.__setattr__(self, option.name, value)
        if not _DEVICE.fullmatch(self.device):
            raise ValueError(
                f"run option 'device' = {self.device!r} is invalid; expected 'auto', "
                "'cpu', 'cuda' or 'cuda:N'"
            )

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The field names, in order."""
        return tuple(option.name for option in SETTINGS_OPTIONS)

    def replace(self, **changes: Any) -> RunSettings:
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSettings:
        """Settings from :meth:`to_dict` data.

        Raises:
            ValueError: An unknown field or an invalid value.
        """
        unknown = sorted(set(data) - set(cls.names()))
        if unknown:
            raise ValueError(
                f"run settings have no field {unknown[0]!r}; fields: "
                f"{', '.join(cls.names())}"
            )
        return cls(**dict(data))


def problem_run_defaults(problem: str) -> dict[str, Any]:
    """The run settings problem ``problem`` declares in place of the generic ones.

    Raises:
        ValueError: An unknown problem, or a declared setting that is not a field
            of :class:`RunSettings` or is out of its range (a registration error).
    """
    from explorer.problems.spec import PROBLEMS

    declared = dict(PROBLEMS[problem].run_defaults)
    try:
        RunSettings.from_dict(declared)
    except ValueError as error:
        raise ValueError(f"problem {problem!r} run_defaults: {error}") from None
    return declared


def settings_options(problem: str | None = None) -> tuple[Option, ...]:
    """:data:`SETTINGS_OPTIONS` with ``problem``'s declared defaults in place.

    What "default" means for a run on ``problem``: widgets start there, links and
    configs omit values equal to it, and ``--help`` can name it.

    Example:
        >>> [o.default for o in settings_options("stream_logreg")
        ...  if o.name == "batch_size"]
        [100]
    """
    declared = problem_run_defaults(problem) if problem is not None else {}
    return tuple(
        dataclasses.replace(option, default=declared[option.name])
        if option.name in declared
        else option
        for option in SETTINGS_OPTIONS
    )


def problem_settings(problem: str, **changes: Any) -> RunSettings:
    """The default settings of runs on ``problem``, with ``changes`` applied.

    Example:
        >>> problem_settings("digits_mlp").curvature_batch_size
        128
        >>> problem_settings("linreg_2d", steps=3).curvature_batch_size is None
        True
    """
    return RunSettings.from_dict({**problem_run_defaults(problem), **changes})
