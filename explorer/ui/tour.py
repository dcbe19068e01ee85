"""The Paper tour page's Streamlit parts: cached preset results, cards, hand-over.

The numbers and figures come from :mod:`explorer.presets` (no Streamlit there); this
module caches them per (preset, size), draws one card per preset, and opens a
preset's experiment on the Compare page through the same URL state every page uses.
The loaded preset and size are in the URL too (``?preset=…&size=…``), so a copied
link reopens the tour at that claim.
"""

from __future__ import annotations

import re

import streamlit as st
from streamlit.errors import StreamlitAPIException

from explorer.presets import (
    PRESETS,
    SIZES,
    Preset,
    PresetResult,
    format_number,
    run_preset,
)
from explorer.runs import Experiment
from explorer.ui import state
from explorer.ui.results import plot
from explorer.ui.urlstate import to_query

ACTIVE = "tour.active"  # key of the loaded preset
SIZE = "tour.size"
COMPARE_PAGE = "app_pages/compare.py"
SIZE_LABELS = {
    "small": "quick (the CI size, seconds)",
    "full": "full (more seeds and points)",
}


@st.cache_data(show_spinner=False, max_entries=64)
def load(key: str, size: str) -> PresetResult:
    """:func:`explorer.presets.run_preset`, cached per (preset, size)."""
    return run_preset(key, size)


def seed_from_url() -> list[str]:
    """Opens the preset a link names (``?preset=key&size=small``) once per session.

    Returns:
        A warning for each parameter the link holds that the tour ignores.
    """
    if st.session_state.get("tour.url_read"):
        return []
    st.session_state["tour.url_read"] = True
    query = st.query_params.to_dict()
    warnings = []
    size = query.get("size")
    if size in SIZES:
        st.session_state[SIZE] = size
    elif size is not None:
        warnings.append(f"ignored size={size!r}: expected one of {', '.join(SIZES)}")
    key = query.get("preset")
    if key in PRESETS:
        st.session_state[ACTIVE] = key
    elif key is not None:
        warnings.append(f"ignored unknown preset {key!r}; the presets are listed below")
    for name in sorted(set(query) - {"size", "preset"}):
        warnings.append(f"ignored unknown parameter {name!r}")
    return warnings


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|$~])")


def plain(text: str) -> str:
    r"""``text`` shown literally inside Markdown: ``θ*`` stays ``θ*`` instead of
    opening italics, ``$`` does not start LaTeX.

    Example:
        >>> print(plain("‖θ* − θ‖"))
        ‖θ\* − θ‖
    """
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def size_picker() -> str:
    """The size radio (quick by default: a first Load answers in seconds)."""
    st.session_state.setdefault(SIZE, "small")
    return st.radio(
        "Size",
        SIZES,
        key=SIZE,
        horizontal=True,
        format_func=SIZE_LABELS.get,
        help="The same presets run at both sizes; the test suite checks the quick one.",
    )


def _activate(key: str) -> None:
    st.session_state[ACTIVE] = key


def _write_url(key: str, size: str) -> None:
    query = {"preset": key, "size": size}
    if st.query_params.to_dict() != query:
        st.query_params.from_dict(query)


def card(preset: Preset, size: str) -> None:
    """Title, plain-words explanation, formula, reference, Load and (if loaded) results."""
    st.subheader(preset.title, anchor=preset.key)
    st.markdown(preset.explanation)
    st.latex(preset.formula)
    st.caption(f"Reference: {preset.reference} · preset `{preset.key}`")
    st.button(
        "Load",
        key=f"tour.load.{preset.key}",
        on_click=_activate,
        args=(preset.key,),
        help="Runs this preset and shows its plots and the live check.",
    )
    if st.session_state.get(ACTIVE) == preset.key:
        _write_url(preset.key, size)
        show(preset, size)


def show(preset: Preset, size: str) -> None:
    """Runs (or fetches) the preset and shows its badge, numbers, plots and links."""
    with st.spinner(f"Running {preset.title.lower()}…"):
        try:
            result = load(preset.key, size)
        except (ValueError, ArithmeticError, RuntimeError) as error:
            st.error(f"This preset could not run: {error}")
            return
    check = result.check
    badge = ("✓ " if check.passed else "✗ ") + check.badge
    (st.success if check.passed else st.error)(badge)
    lines = [
        f"- **{plain(m.name)}** = {plain(format_number(float(m.value)))} "
        f"({plain(m.tolerance)}) — {plain(m.meaning)}"
        for m in check.measurements
    ]
    st.markdown("\n".join(lines))
    for note in result.notes:
        st.caption(note)
    st.caption(f"Computed in {check.seconds:.1f} s at the {size} size.")
    for index, (name, figure) in enumerate(result.figures.items()):
        plot(figure, name, key=f"tour.fig.{preset.key}.{index}")
    for label, experiment in result.experiments.items():
        if st.button(
            f"Open in Compare: {label}",
            key=f"tour.open.{preset.key}.{label}",
            help="Loads this experiment into the Compare page (and its URL).",
        ):
            open_in_compare(experiment)


def open_in_compare(experiment: Experiment) -> None:
    """Hands ``experiment`` to the Compare page, puts it in the URL and goes there.

    When the page runs on its own (tests, ``streamlit run app_pages/tour.py``) there is
    no Compare page to switch to; the URL then holds the experiment and a note says
    how to open it.
    """
    query = to_query(experiment)
    state.hand_over(experiment)
    try:
        st.switch_page(COMPARE_PAGE, query_params=query)
    except StreamlitAPIException:  # standalone: no Compare page registered
        st.query_params.from_dict(query)
        text = "&".join(f"{name}={value}" for name, value in query.items())
        st.info(f"Open the Compare page with `?{text}` to run this experiment.")
