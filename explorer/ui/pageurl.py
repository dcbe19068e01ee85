"""Every page's state in its URL: the shared experiment plus the page's own view.

The Compare page's link holds the experiment (:mod:`explorer.ui.urlstate`); the
Curvature and Landscape pages add their own controls as ``v.<name>`` parameters,
so a copied ``/curvature?problem=…&v.reference=ggn&v.damping=0.01`` reopens the
same view. A page declares its parameters as :class:`ViewParam` s (a widget key and
how its value reads and writes as text); :func:`open_page` seeds those widgets from
a link once per session and reports every value it had to ignore, and
:func:`write_page_url` puts the current state back in the address bar.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st

from explorer.runs import Experiment
from explorer.ui import state
from explorer.ui.urlstate import format_value, to_query

PREFIX = "v."


@dataclass(frozen=True)
class ViewParam:
    """One control of a page, as a URL parameter ``v.<name>``.

    Attributes:
        name: The parameter's name after ``v.``.
        key: The widget's session-state key.
        decode: Text -> widget value; raises ``ValueError`` (with the allowed
            values) for text it cannot accept.
        encode: Widget value -> text (default: :func:`format_value`).
    """

    name: str
    key: str
    decode: Callable[[str], Any]
    encode: Callable[[Any], str] = format_value


def choice(allowed: Sequence[str]) -> Callable[[str], str]:
    """A decoder that accepts one of ``allowed``."""

    def decode(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return text

    return decode


def choices(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    """A decoder of a comma list, each one of ``allowed``."""

    def decode(text: str) -> list[str]:
        items = [item for item in text.split(",") if item]
        unknown = [item for item in items if item not in allowed]
        if unknown:
            raise ValueError(
                f"{', '.join(unknown)} not available here; expected some of "
                f"{', '.join(allowed)}"
            )
        return items

    return decode


def number(low: float, high: float, *, integer: bool = False) -> Callable[[str], Any]:
    """A decoder of a finite number in [low, high]."""

    def decode(text: str) -> Any:
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise ValueError("expected a number") from None
        if not low <= value <= high:  # NaN fails too
            raise ValueError(f"expected a number in [{low:g}, {high:g}]")
        return value

    return decode


def open_page(page: str) -> list[str]:
    """Seeds the experiment from the link when a session starts on ``page`` and
    returns the warnings about the link's ignored parameters (on every rerun of
    this page, so they stay on screen).
    """
    key = f"{page}.url_warnings"
    if not st.session_state.get(state.SEEDED):
        linked = "problem" in st.query_params
        state.compare_context()
        st.session_state[key] = list(st.session_state.get(state.WARNINGS, []))
        # a shared view link shows the paths and points it was copied with
        st.session_state[state.VIEW_LINK] = linked
    return list(st.session_state.get(key, []))


def seed_view(page: str, params: Sequence[ViewParam]) -> list[str]:
    """Sets the widgets of ``params`` from the link, once per session and page.

    Returns:
        One warning per ``v.`` parameter that was not valid (its widget keeps its
        default) or that this page does not have; the same on every rerun.
    """
    done, kept = f"{page}.url_read", f"{page}.view_warnings"
    if st.session_state.get(done):
        return list(st.session_state.get(kept, []))
    st.session_state[done] = True
    query = st.query_params.to_dict()
    warnings = []
    known = {param.name: param for param in params}
    for name, text in query.items():
        if not name.startswith(PREFIX):
            continue
        param = known.get(name[len(PREFIX) :])
        if param is None:
            warnings.append(f"ignored unknown parameter {name!r} of the {page} page")
            continue
        try:
            st.session_state[param.key] = param.decode(text)
        except ValueError as error:
            warnings.append(f"ignored {name}={text!r}: {error}")
    st.session_state[kept] = warnings
    return list(warnings)


def write_page_url(experiment: Experiment, params: Sequence[ViewParam]) -> None:
    """The experiment and this page's controls into the address bar."""
    query = dict(to_query(experiment))
    for param in params:
        value = st.session_state.get(param.key)
        if value is not None:
            query[PREFIX + param.name] = param.encode(value)
    if st.query_params.to_dict() != query:
        st.query_params.from_dict(query)
