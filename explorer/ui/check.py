"""Streamlit parts of the "Check your approximation" page.

Plugins come from the ``plugins/`` folder next to ``app.py``, ``EXPLORER_PLUGINS`` and
entry points (``explorer.ui.plugins.load_app_plugins``, once per process).
Uploading or typing plugin code executes arbitrary Python on the server, so it is off
unless the server sets ``EXPLORER_ALLOW_CODE_UPLOAD=1``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import streamlit as st

from explorer.check import (
    CheckReport,
    CheckSettings,
    curvature_sections,
    overview_table,
    report_html,
)
from explorer.check.report import summary
from explorer.curvature.registry import CURVATURES
from explorer.plugins import PluginReport, load_private_plugin
from explorer.problems.spec import PROBLEMS
from explorer.server import views
from explorer.server.tasks import PluginSources
from explorer.ui import state
from explorer.ui.computed import computed
from explorer.ui.text import plain

#: The server setting that enables executing uploaded or typed plugin code.
ALLOW_UPLOAD = "EXPLORER_ALLOW_CODE_UPLOAD"

#: Session-state keys of the last battery result, the pending request and the
#: uploaded plugin sources.
RESULT_KEY = "check_result"
REQUEST_KEY = "check_request"
UPLOADED_KEY = "check_uploaded_sources"
UPLOAD_FOLDER_KEY = "check_upload_folder"

UPLOAD_OFF = (
    "Uploading or typing plugin code is **off**: the code would run as Python on "
    f"this server with its permissions. For a local, single-user server, start it "
    f"with `{ALLOW_UPLOAD}=1` to enable it. Otherwise put plugin files in `plugins/` "
    "next to `app.py` or list them in `EXPLORER_PLUGINS`, and restart."
)
UPLOAD_ON = (
    f"Code upload is **on** (`{ALLOW_UPLOAD}=1`): anything loaded here runs as "
    "Python on this server. Use this only on a local, single-user server."
)


def upload_allowed() -> bool:
    """Whether the server explicitly enabled executing uploaded code."""
    return os.environ.get(ALLOW_UPLOAD, "").strip().lower() in ("1", "true", "yes")


def checkable_keys() -> list[str]:
    """Plugins first, then built-in approximations that declare a reference."""
    keys = state.listed(CURVATURES)  # not another session's uploads
    plugins = [k for k in keys if CURVATURES[k].source != "builtin"]
    builtins = [
        k
        for k in keys
        if CURVATURES[k].source == "builtin"
        and CURVATURES[k].reference
        and CURVATURES[k].selectable
    ]
    return plugins + builtins


def problem_keys() -> list[str]:
    """The problems this session may check on (not another session's uploads)."""
    return state.listed(PROBLEMS)


def reference_keys() -> list[str]:
    """The curvatures this session may pick as the reference."""
    return [k for k in state.listed(CURVATURES) if CURVATURES[k].selectable]


def describe_key(key: str) -> str:
    spec = CURVATURES[key]
    origin = "built-in" if spec.source == "builtin" else Path(spec.source).name
    return f"{spec.label} ({key}, {origin})"


def show_plugin_reports(reports: list[PluginReport]) -> None:
    """Failures as warnings, successes in one caption."""
    for report in reports:
        if not report.ok:
            st.warning(f"Plugin {report.summary()}")
    loaded = [r.summary() for r in reports if r.ok]
    if loaded:
        st.caption("Loaded plugins: " + "; ".join(loaded))


def upload_folder() -> Path:
    """This session's private folder for uploaded plugin files: made by
    ``tempfile.mkdtemp`` (mode 0o700, a random name), so no other session or user
    can guess, read or replace a file in it.
    """
    folder = st.session_state.get(UPLOAD_FOLDER_KEY)
    if folder is None or not Path(folder).is_dir():
        folder = tempfile.mkdtemp(prefix="explorer-upload-")
        st.session_state[UPLOAD_FOLDER_KEY] = folder
    return Path(folder)


def _load_code(text: str, name: str) -> None:
    digest = hashlib.sha1(text.encode()).hexdigest()[:12]
    if st.session_state.get("check_loaded_code") == digest:
        return
    path = (upload_folder() / (Path(name).stem or "plugin")).with_suffix(".py")
    # registered for this session only: the other sessions' lists leave it out
    report = load_private_plugin(text, path, owner=state.session_id())
    if report.ok:  # the workers load it too, before this session's battery
        sources = [item for item in uploaded_sources() if item[0] != path.name]
        st.session_state[UPLOADED_KEY] = [*sources, (path.name, text)]
    st.session_state["check_loaded_code"] = digest
    st.session_state["check_code_report"] = report


def code_upload() -> None:
    """The upload and paste boxes when allowed; the explanation otherwise."""
    if not upload_allowed():
        st.info(UPLOAD_OFF)
        return
    st.warning(UPLOAD_ON)
    file = st.file_uploader("Upload a plugin file", type=["py"])
    if file is not None:
        _load_code(file.getvalue().decode("utf-8"), file.name)
    with st.form("check_code"):
        text = st.text_area("…or paste plugin code", height=200)
        if st.form_submit_button("Load this code") and text.strip():
            _load_code(text, "pasted_plugin.py")
    report = st.session_state.get("check_code_report")
    if report is not None:
        (st.success if report.ok else st.error)(report.summary())


def request_battery(key: str, settings: CheckSettings) -> None:
    """Remembers what the page should compute (the battery runs on a worker)."""
    st.session_state[REQUEST_KEY] = (key, settings)
    st.session_state.pop(RESULT_KEY, None)


def battery_result() -> dict[str, Any] | None:
    """The requested battery's report with its HTML and JSON, once computed.

    Waits for it in a progress view (place in the queue, then the battery's own
    progress); an invalid choice (a problem option out of range...) shows an
    error and returns None.
    """
    request = st.session_state.get(REQUEST_KEY)
    if request is None:
        return st.session_state.get(RESULT_KEY)
    key, settings = request
    report = computed(
        "check",
        views.battery,
        key,
        settings,
        key_parts=(key, repr(settings), uploaded_sources()),
        label="The check battery",
        plugins=plugin_sources(),
    )
    if report is None:
        return None
    result = {
        "report": report,
        "html": report_html(report),
        "json": json.dumps(report.to_dict(), indent=2, ensure_ascii=False),
    }
    st.session_state[RESULT_KEY] = result
    st.session_state.pop(REQUEST_KEY, None)
    return result


def uploaded_sources() -> tuple[tuple[str, str], ...]:
    """Plugin code this session uploaded or pasted, as (name, text) pairs."""
    return tuple(st.session_state.get(UPLOADED_KEY, ()))


def plugin_sources() -> PluginSources:
    """The app's plugins and this session's uploads, for the worker to load."""
    app = state.engine_or_stop().plugins or PluginSources()
    return dataclasses.replace(
        app, uploaded=uploaded_sources(), owner=state.session_id()
    )


def stochastic_note(key: str) -> str | None:
    """Plain words on what a sampled curvature's verdicts mean, or None for a
    deterministic one.
    """
    spec = CURVATURES.get(key)
    if spec is None or not spec.tags().sampled:
        return None
    return (
        f"**{spec.label} is a stochastic estimator.** Each time it is built it draws "
        "at random (labels from the model's own predictions, or probe vectors), so "
        "any single draw is off by a random amount, most where the model is "
        "confident (a sampled label then rarely falls on an unlikely class). The "
        "battery therefore judges it as an estimator: its scale and nearest reference "
        "come from the mean of several independent draws (more where that mean still "
        "looks off), and the *unbiased* verdict asks that the mean's error shrink like "
        "1/√draws; the spread of one draw is reported, not failed. A real bug stays "
        "off on average."
    )


#: The report's sections that start open on the page.
OPEN_SECTIONS = ("Verdicts", "Preconditioner quality")

#: A verdict's status as a coloured Markdown badge.
BADGES = {"pass": "green", "fail": "red", "skipped": "gray"}


def verdict_badges(chips: list[tuple[str, str, str]]) -> str:
    """``(name, status, title)`` per verdict as one line of Markdown badges."""
    return " ".join(
        f":{BADGES.get(status, 'gray')}-badge[{name}: {status}]"
        for name, status, _ in chips
    )


def show_headline(report: CheckReport) -> None:
    """Per curvature: the nearest reference (the headline), the verdicts as badges
    and the small-multiples figure of the relative error.
    """
    for curvature in report.curvatures:
        card = summary(curvature)
        if card.nearest:
            sentence = card.nearest[:1].upper() + card.nearest[1:]
            st.markdown(f"#### {plain(card.label)} (`{card.key}`): {sentence}")
        else:
            st.markdown(f"#### {plain(card.label)} (`{card.key}`)")
        st.markdown(verdict_badges(card.chips))
        if card.coverage:
            st.caption(card.coverage)
        if card.figure is not None:
            st.plotly_chart(
                card.figure, width="stretch", key=f"check-{card.key}-summary"
            )


def show_report(result: dict[str, Any]) -> None:
    """Headline, verdicts, sections (tables and figures) and the two downloads."""
    report: CheckReport = result["report"]
    show_headline(report)
    for curvature in report.curvatures:
        note = stochastic_note(curvature.key)
        if note is not None:
            st.info(note)
    (st.success if report.passed else st.error)(
        "Every declared property holds."
        if report.passed
        else "A declared property fails: "
        + "; ".join(
            f"{c.key}: " + ", ".join(v.name for v in c.failures())
            for c in report.curvatures
            if not c.passed
        )
    )
    st.dataframe(overview_table(report), hide_index=True)
    name = "-".join(c.key for c in report.curvatures)
    left, right = st.columns(2)
    left.download_button(
        "Download the HTML report", result["html"], f"check-{name}.html", "text/html"
    )
    right.download_button(
        "Download the JSON summary",
        result["json"],
        f"check-{name}.json",
        "application/json",
    )
    for curvature in report.curvatures:
        for section in curvature_sections(curvature, report.settings.damping):
            expanded = section.title in OPEN_SECTIONS
            with st.expander(section.title, expanded=expanded):
                if section.text:
                    st.caption(section.text)
                for caption, frame in section.tables:
                    if caption:
                        st.caption(caption)
                    st.dataframe(frame, hide_index=True)
                for caption, figure in section.figures:
                    key = f"check-{name}-{section.title}-{caption}"
                    st.plotly_chart(figure, width="stretch", key=key)
