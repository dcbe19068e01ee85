"""Declarative options: one schema drives validation, defaults, help text and widgets.

Every problem, curvature and update rule declares its options as a tuple of
:class:`Option`. :func:`resolve_options` fills defaults and raises a ``ValueError``
naming the bad value and the allowed range, so errors surface before any work starts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    """One validated option.

    Attributes:
        name: The keyword name.
        default: The documented default (its type sets the option's kind unless
            ``kind`` is given; ``None`` means "unset" and needs ``kind``).
        help: One sentence for ``--help`` and the UI tooltip.
        choices: Allowed values, if the option is categorical.
        low: Inclusive lower bound for numbers (or for each entry of an int tuple).
        high: Inclusive upper bound.
        kind: One of ``"int"``, ``"float"``, ``"str"``, ``"bool"``, ``"ints"`` (a tuple
            of ints, e.g. hidden sizes) or ``"floats"`` (a tuple of numbers, e.g. a
            starting point); inferred from ``default`` when omitted.
        low_exclusive: Whether ``low`` itself is excluded (e.g. a positive scale).
        nullable: Whether ``None`` is allowed.
        log: A hint for widgets: the number spans decades (learning rates, damping).
        max_items: For ``"ints"`` and ``"floats"``: the most entries a list may have
            (e.g. hidden layers), so that the length has a ceiling like each entry.
    """

    name: str
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    kind: str = ""
    low_exclusive: bool = False
    nullable: bool = False
    log: bool = False
    max_items: int | None = None

    def __post_init__(self) -> None:
        if not self.kind:
            object.__setattr__(self, "kind", _infer_kind(self.default))
        if self.default is not None:
            self.validate(self.default, where="default of")

    def range_text(self) -> str:
        """The allowed values in words, for error messages and help."""
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "bool":
            return "true or false"
        if self.kind == "str":
            return "any text"
        lo = "(" if self.low_exclusive else "["
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        interval = f"{lo}{low}, {high}]"
        if self.kind in ("ints", "floats"):
            what = "integers" if self.kind == "ints" else "numbers"
            most = "" if self.max_items is None else f"at most {self.max_items} "
            return f"a list of {most}{what}, each in {interval}"
        return f"{'an integer' if self.kind == 'int' else 'a number'} in {interval}"

    def validate(self, value: Any, where: str = "") -> Any:
        """Returns ``value`` coerced to the option's kind, or raises ``ValueError``."""
        label = f"{where} option {self.name!r}".strip()
        if value is None:
            if self.nullable or self.default is None:
                return None
            raise ValueError(f"{label} is None; expected {self.range_text()}")
        try:
            coerced = _coerce(self.kind, value)
        except (TypeError, ValueError):
            raise ValueError(
                f"{label} = {value!r} is invalid; expected {self.range_text()}"
            ) from None
        if self.choices is not None and coerced not in self.choices:
            raise ValueError(
                f"{label} = {value!r} is invalid; expected {self.range_text()}"
            )
        numbers = coerced if self.kind in ("ints", "floats") else (coerced,)
        if self.max_items is not None and len(numbers) > self.max_items:
            raise ValueError(
                f"{label} has {len(numbers)} entries, more than {self.max_items}; "
                f"expected {self.range_text()}"
            )
        if self.kind in ("int", "float", "ints", "floats"):
            for number in numbers:
                if not _in_range(number, self.low, self.high, self.low_exclusive):
                    raise ValueError(
                        f"{label} = {value!r} is out of range; expected "
                        f"{self.range_text()}"
                    )
        return coerced


def _infer_kind(default: Any) -> str:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, str):
        return "str"
    if isinstance(default, (tuple, list)):
        return "floats" if any(isinstance(v, float) for v in default) else "ints"
    raise TypeError(f"cannot infer the kind of option default {default!r}")


def _coerce(kind: str, value: Any) -> Any:
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError(value)
    if kind == "int":
        if isinstance(value, bool):
            raise TypeError(value)
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return int(value)
    if kind == "float":
        if isinstance(value, bool):
            raise TypeError(value)
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(value)
        return number
    if kind == "str":
        if not isinstance(value, str):
            raise TypeError(value)
        return value
    if kind in ("ints", "floats"):
        scalar = "int" if kind == "ints" else "float"
        if isinstance(value, str):
            parts = [p for p in value.replace(" ", "").strip("()[]").split(",") if p]
            return tuple(
                _coerce(scalar, float(p) if scalar == "float" else int(p))
                for p in parts
            )
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (_coerce(scalar, value),)
        if isinstance(value, Sequence):
            return tuple(_coerce(scalar, v) for v in value)
        raise TypeError(value)
    raise ValueError(f"unknown option kind {kind!r}")


def _in_range(x: float, low: float | None, high: float | None, low_excl: bool) -> bool:
    if low is not None and (x < low or (low_excl and x == low)):
        return False
    return high is None or x <= high


def resolve_options(
    schema: Sequence[Option], given: Mapping[str, Any] | None, where: str
) -> dict[str, Any]:
    """Validates ``given`` against ``schema`` and fills in defaults.

    Args:
        schema: The declared options.
        given: User-supplied values (may be ``None``).
        where: A label for error messages, e.g. ``"problem 'digits_mlp'"``.

    Returns:
        A new dict with one validated value per declared option.

    Raises:
        ValueError: An unknown option name (the message lists the valid ones), a
            value outside its range, or a number given as a string (``lr="0.1"``).
    """
    given = dict(given or {})
    names = [opt.name for opt in schema]
    unknown = sorted(set(given) - set(names))
    if unknown:
        valid = ", ".join(names) or "(none)"
        raise ValueError(
            f"{where} has no option {unknown[0]!r}; valid options: {valid}"
        )
    for opt in schema:
        value = given.get(opt.name)
        # Option.validate parses text (URL query values, form fields); a Python
        # caller's "0.1" is a mistake a config would otherwise store as a string
        if isinstance(value, str) and opt.kind in ("int", "float"):
            try:
                hint = f" (write {opt.name}={_coerce(opt.kind, value)!r}, no quotes)"
            except (TypeError, ValueError):
                hint = ""
            raise ValueError(
                f"{where} option {opt.name!r} = {value!r} is a string; expected "
                f"{opt.range_text()}{hint}"
            )
    return {
        opt.name: opt.validate(given.get(opt.name, opt.default), where=where)
        for opt in schema
    }
