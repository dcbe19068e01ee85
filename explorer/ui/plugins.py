"""Plugins for the app: loaded once per server process, reported on the pages."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from explorer.plugins import PluginReport, load_plugins


@st.cache_resource(show_spinner=False)
def load_app_plugins(folder: str) -> list[PluginReport]:
    """Loads ``plugins/`` next to the app, ``EXPLORER_PLUGINS`` and entry points.

    Cached per server process; a broken plugin yields a report (shown on the Check
    page), never an exception.
    """
    return load_plugins(folder=folder)


def app_plugin_folder() -> str:
    """The ``plugins/`` folder next to ``app.py``."""
    return str(Path(__file__).resolve().parents[2] / "plugins")
