"""Streamlit widgets generated from declared :class:`~explorer.options.Option` schemas.

One function turns any option (of a problem, a rule, a curvature or a run) into the
right widget with its help text and range, so a newly registered problem or rule gets
its controls without page changes. Widget state lives under explicit keys; a page
"seeds" those keys from an experiment (a URL, a preset) with :func:`seed`, and the
widgets then show those values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import streamlit as st

from explorer.options import Option

#: Labels for option names that do not read well as words.
LABELS = {
    "lr": "Learning rate α",
    "damping": "Damping λ",
    "momentum": "Momentum μ",
    "cg_maxiter": "CG iterations (max)",
    "cg_rtol": "CG tolerance",
    "cg_warm_start": "CG warm start",
    "lm_omega": "LM factor ω",
    "lm_interval": "LM interval T",
    "lm_reject": "LM rejects bad steps",
    "ema": "Curvature EMA β",
    "beta1": "β₁",
    "beta2": "β₂",
    "eps": "ε",
    "theta0": "Start θ₀",
    "num_samples": "Examples N",
    "sigma": "Likelihood σ",
    "dim": "Dimension d",
    "dtype": "Floating point",
    "mc_samples": "MC samples",
    "samples": "Samples k",
    "average_decay": "Average decay β",
}


def title_of(name: str) -> str:
    """An option's label: ``curvature_batch_size`` -> ``Curvature batch size``."""
    return LABELS.get(name, name.replace("_", " ").capitalize())


def widget_value(option: Option, value: Any) -> Any:
    """``value`` in the widget's own type (lists of numbers are edited as text)."""
    if option.choices is not None or option.kind == "bool":
        return value
    if option.kind in ("ints", "floats"):
        if value is None:
            return ""
        items = value if isinstance(value, (tuple, list)) else (value,)
        return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in items)
    if option.kind == "str":
        return "" if value is None else str(value)
    if value is None:
        return None
    return int(value) if option.kind == "int" else float(value)


def seed(option: Option, key: str, value: Any) -> None:
    """Sets widget ``key`` to show ``value`` on the next render."""
    st.session_state[key] = widget_value(option, value)


def option_widget(
    option: Option,
    key: str,
    *,
    container: Any = st,
    disabled: bool = False,
    label: str | None = None,
    help_suffix: str = "",
) -> Any:
    """Draws ``option`` under ``key``; returns its validated value.

    The first render shows the option's default unless :func:`seed` set the key.
    Invalid free text (lists of numbers) shows an error and yields the default.
    """
    if key not in st.session_state:
        seed(option, key, option.default)
    label = label or title_of(option.name)
    common = {
        "key": key,
        "help": f"{option.help} Allowed: {option.range_text()}.{help_suffix}",
        "disabled": disabled,
    }
    if option.choices is not None:
        if st.session_state[key] not in option.choices:
            st.session_state[key] = option.default
        return container.selectbox(label, list(option.choices), **common)
    if option.kind == "bool":
        return container.checkbox(label, **common)
    if option.kind in ("int", "float"):
        return _number(option, label, container, common)
    raw = container.text_input(label, **common)
    if raw.strip() == "" and (option.nullable or option.default is None):
        return None
    try:
        return option.validate(raw)
    except ValueError as error:
        container.error(str(error))
        return option.default


def _number(option: Option, label: str, container: Any, common: dict) -> Any:
    is_int = option.kind == "int"
    cast = int if is_int else float
    kwargs: dict[str, Any] = {}
    if option.low is not None and not option.low_exclusive:
        kwargs["min_value"] = cast(option.low)
    if option.high is not None:
        kwargs["max_value"] = cast(option.high)
    current = st.session_state.get(common["key"])
    if is_int:
        kwargs["step"] = 1
    else:
        kwargs["format"] = "%.3e" if option.log else "%.4g"
        if option.log and current:
            kwargs["step"] = 10.0 ** math.floor(math.log10(abs(float(current))))
    if current is not None:  # keep the seeded value inside the widget's bounds
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        if (low is not None and current < low) or (high is not None and current > high):
            st.session_state[common["key"]] = widget_value(option, option.default)
    result = container.number_input(label, **kwargs, **common)
    if result is None:
        return None if (option.nullable or option.default is None) else option.default
    try:
        return option.validate(result)
    except ValueError as error:
        container.error(str(error))
        return option.default


def options_form(
    schema: tuple[Option, ...],
    key_prefix: str,
    *,
    container: Any = st,
    columns: int = 2,
    disabled: bool = False,
    skip: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Widgets for every option of ``schema`` in a grid; returns all values."""
    shown = [option for option in schema if option.name not in skip]
    result: dict[str, Any] = {}
    if not shown:
        return result
    grid = container.columns(min(columns, len(shown)))
    for index, option in enumerate(shown):
        result[option.name] = option_widget(
            option,
            f"{key_prefix}.{option.name}",
            container=grid[index % len(grid)],
            disabled=disabled,
        )
    return result


def seed_form(
    schema: tuple[Option, ...], key_prefix: str, values: Mapping[str, Any]
) -> None:
    """Seeds every option of ``schema``: ``values`` where given, defaults elsewhere."""
    for option in schema:
        seed(
            option,
            f"{key_prefix}.{option.name}",
            values.get(option.name, option.default),
        )


def non_default(
    schema: tuple[Option, ...], values: Mapping[str, Any]
) -> dict[str, Any]:
    """Only the values that differ from their declared defaults."""
    defaults = {option.name: option.default for option in schema}
    return {k: v for k, v in values.items() if k in defaults and v != defaults[k]}
