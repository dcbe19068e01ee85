"""Streamlit widgets generated from declared :class:`~explorer.options.Option` schemas.

One function turns any option (of a problem, a rule, a curvature or a run) into the
right widget with its help text and range, so a newly registered problem or rule gets
its controls without page changes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import streamlit as st

from explorer.options import Option


def _title(name: str) -> str:
    return name.replace("_", " ").capitalize()


def option_widget(
    option: Option,
    value: Any,
    key: str,
    *,
    container: Any = st,
    disabled: bool = False,
    label: str | None = None,
) -> Any:
    """Draws ``option`` with current ``value``; returns the validated new value.

    Invalid free-text entries (lists of numbers) show an error and keep ``value``.
    """
    label = label or _title(option.name)
    common = {
        "key": key,
        "help": option.help + f" Allowed: {option.range_text()}.",
        "disabled": disabled,
    }
    if option.choices is not None:
        choices = list(option.choices)
        index = choices.index(value) if value in choices else 0
        return container.selectbox(label, choices, index=index, **common)
    if option.kind == "bool":
        return container.checkbox(label, value=bool(value), **common)
    if option.kind in ("int", "float"):
        return _number(option, value, label, container, common)
    text = (
        ""
        if value is None
        else ",".join(
            f"{v:g}" if isinstance(v, float) else str(v)
            for v in (value if isinstance(value, tuple) else (value,))
        )
    )
    if option.kind == "str":
        text = "" if value is None else str(value)
    raw = container.text_input(label, value=text, **common)
    if raw.strip() == "" and (option.nullable or option.default is None):
        return None
    try:
        return option.validate(raw)
    except ValueError as error:
        container.error(str(error))
        return value


def _number(
    option: Option, value: Any, label: str, container: Any, common: dict
) -> Any:
    is_int = option.kind == "int"
    low = option.low
    if low is not None and option.low_exclusive:
        low = None  # Streamlit bounds are inclusive; validation below catches it
    kwargs: dict[str, Any] = {
        "min_value": (int(low) if is_int else float(low)) if low is not None else None,
        "max_value": (
            (int(option.high) if is_int else float(option.high))
            if option.high is not None
            else None
        ),
    }
    if is_int:
        kwargs["step"] = 1
    else:
        kwargs["format"] = "%.3e" if option.log else "%.4g"
        magnitude = abs(float(value)) if value not in (None, 0) else 1.0
        kwargs["step"] = 10 ** math.floor(math.log10(magnitude)) if option.log else None
        if kwargs["step"] is None:
            del kwargs["step"]
    shown = None if value is None else int(value) if is_int else float(value)
    result = container.number_input(label, value=shown, **kwargs, **common)
    if result is None:
        return None if (option.nullable or option.default is None) else value
    try:
        return option.validate(result)
    except ValueError as error:
        container.error(str(error))
        return value


def options_form(
    schema: tuple[Option, ...],
    values: Mapping[str, Any],
    key_prefix: str,
    *,
    container: Any = st,
    columns: int = 2,
    disabled: bool = False,
    skip: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Widgets for every option of ``schema`` in a grid; returns all values."""
    shown = [option for option in schema if option.name not in skip]
    result = dict(values)
    if not shown:
        return result
    grid = container.columns(min(columns, len(shown)))
    for index, option in enumerate(shown):
        current = values.get(option.name, option.default)
        result[option.name] = option_widget(
            option,
            current,
            f"{key_prefix}.{option.name}",
            container=grid[index % len(grid)],
            disabled=disabled,
        )
    return result


def non_default(
    schema: tuple[Option, ...], values: Mapping[str, Any]
) -> dict[str, Any]:
    """Only the values that differ from their declared defaults."""
    defaults = {option.name: option.default for option in schema}
    return {k: v for k, v in values.items() if k in defaults and v != defaults[k]}
