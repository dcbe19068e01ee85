"""Uploaded plugins belong to the session that uploaded them.

Before: with code upload on, one student's plugin appeared in every session's
lists (it was registered for the whole server process) and its file was written to
a predictable shared path (``<tmp>/explorer-uploads/<digest>/``).
"""

from __future__ import annotations

import re
import stat
import tempfile
import textwrap
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import explorer as ex
from explorer.plugins import listed, load_private_plugin
from explorer.server.tasks import PluginSources, WorkerCache
from explorer.ui.check import ALLOW_UPLOAD, UPLOAD_FOLDER_KEY
from tests.app_helpers import ROOT, settle

KEY = "test_private_upload"
CODE = textwrap.dedent(
    f"""
    import explorer as ex

    @ex.register_curvature("{KEY}", label="private Fisher", reference="fisher",
                           psd=True)
    def private(problem, theta, batch=None):
        return ex.curvature("fisher", problem, theta, batch=batch).dense()
    """
)

PROBLEM_KEY = "test_private_problem"
#: The example plugin problem under a key of its own (uploaded by one session).
PROBLEM_CODE = (
    (ROOT / "examples" / "plugins" / "digits_convnet.py")
    .read_text(encoding="utf-8")
    .replace('key="digits_convnet"', f'key="{PROBLEM_KEY}"')
)


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    monkeypatch.setenv(ALLOW_UPLOAD, "1")
    monkeypatch.delenv("EXPLORER_PLUGINS", raising=False)
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    for registry in (ex.CURVATURES, ex.PROBLEMS):
        for key in (KEY, PROBLEM_KEY):
            if key in registry:
                registry.unregister(key)


def _check_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app_pages" / "check.py"), default_timeout=90)
    at.run()
    assert not at.exception
    return at


def _paste(at: AppTest, code: str) -> None:
    at.text_area[0].input(code)
    at.button[0].click().run()
    assert not at.exception


def _curvature_choices(at: AppTest) -> list[str]:
    """The keys of the Check page's "Curvature to check" list (``label (key, …)``)."""
    return [re.search(r"\((\w+), [^()]*\)$", o)[1] for o in at.selectbox[0].options]


def test_an_upload_is_listed_for_its_session_only_from_a_private_folder():
    a, b = _check_page(), _check_page()
    _paste(a, CODE)
    assert KEY in a.success[0].value
    a.run()
    b.run()
    assert KEY in _curvature_choices(a)
    assert KEY not in _curvature_choices(b)
    assert "kfac" in _curvature_choices(b)  # B's list is there, without A's
    assert KEY not in b.selectbox[1].options  # nor as B's reference
    assert KEY in a.selectbox[1].options

    # the file: in A's own folder, made by mkdtemp (0o700), not a shared path
    path = Path(ex.CURVATURES[KEY].source)
    folder = path.parent
    assert folder == Path(a.session_state[UPLOAD_FOLDER_KEY]).resolve()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert path.read_text() == CODE
    shared = Path(tempfile.gettempdir(), "explorer-uploads").resolve()
    assert shared not in path.parents

    # B pasting the same code gets it too (one registration, not a clash); a
    # third session still does not see it
    _paste(b, CODE)
    assert KEY in b.success[0].value
    b.run()
    c = _check_page()
    assert KEY in _curvature_choices(b) and KEY in _curvature_choices(a)
    assert KEY not in _curvature_choices(c)
    assert UPLOAD_FOLDER_KEY not in c.session_state  # no folder for no upload


def test_the_curvature_pages_list_leaves_out_another_sessions_upload():
    a = _check_page()
    _paste(a, CODE)
    owner = a.session_state["server.session"]
    assert KEY in listed(ex.CURVATURES, owner)
    assert KEY not in listed(ex.CURVATURES, "another session")
    assert KEY not in listed(ex.CURVATURES)  # nor for a session that uploaded nothing
    assert "fisher" in listed(ex.CURVATURES, "another session")

    b = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    b.query_params.update({"problem": "linreg_2d", "rules": "sgd", "steps": "2"})
    b.run()
    settle(b.switch_page("app_pages/curvature.py"))
    assert not b.exception
    options = b.multiselect(key="view.curvatures").options
    assert "Fisher" in " ".join(options) and "private Fisher" not in options


def test_a_worker_registers_an_upload_for_the_task_s_session_only(tmp_path):
    worker = WorkerCache()
    worker.ensure_plugins(PluginSources(uploaded=(("mine.py", CODE),), owner="s1"))
    assert KEY in ex.CURVATURES  # the worker's task can use it
    assert KEY in listed(ex.CURVATURES, "s1")
    assert KEY not in listed(ex.CURVATURES, "s2")
    source = Path(ex.CURVATURES[KEY].source)
    assert stat.S_IMODE(source.parent.stat().st_mode) == 0o700


def test_an_edited_upload_replaces_its_own_registration(tmp_path):
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    first = load_private_plugin(CODE, folder / "mine.py", owner="s1")
    assert first.ok and first.keys == (KEY,)
    edited = CODE.replace("private Fisher", "private Fisher, edited")
    again = load_private_plugin(edited, folder / "mine.py", owner="s1")
    assert again.ok and again.keys == (KEY,)
    assert ex.CURVATURES[KEY].label == "private Fisher, edited"
    assert listed(ex.CURVATURES, "s1").count(KEY) == 1
    assert KEY not in listed(ex.CURVATURES, "s2")


def test_a_link_naming_another_sessions_upload_is_ignored(tmp_path):
    """A hand-typed link with another session's problem or curvature key gets the
    warnings an unknown key gets, never that session's code (it is not in the
    reader's lists either); the uploader's own link keeps both."""
    from explorer.runs.experiment import Experiment, RuleChoice
    from explorer.ui.urlstate import from_query

    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    assert load_private_plugin(CODE, folder / "curvature.py", owner="s1").ok
    assert load_private_plugin(PROBLEM_CODE, folder / "problem.py", owner="s1").ok
    default = Experiment(problem="linreg_2d", rules=(RuleChoice("sgd"),))
    link = {"problem": PROBLEM_KEY, "rules": "precondition", "r0.curvature": KEY}

    for owner in ("s2", None):
        experiment, warnings = from_query(link, default, owner=owner)
        assert experiment.problem == "linreg_2d"
        assert experiment.rules[0].rule == "precondition"
        assert "curvature" not in experiment.rules[0].options
        assert f"ignored unknown problem {PROBLEM_KEY!r}" in warnings
        assert (
            f"ignored rule precondition curvature={KEY!r}: unknown curvature"
            in warnings
        )

    mine, warnings = from_query(link, default, owner="s1")
    assert warnings == []
    assert mine.problem == PROBLEM_KEY
    assert mine.rules[0].options["curvature"] == KEY


def test_the_app_opened_on_another_sessions_upload_link_falls_back():
    a = _check_page()
    _paste(a, CODE)
    b = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    b.query_params.update(
        {"problem": "linreg_2d", "rules": "precondition", "r0.curvature": KEY}
    )
    b.run()
    assert not b.exception
    shown = " ".join(w.value for w in b.warning)
    assert f"curvature={KEY!r}: unknown curvature" in shown
    assert b.session_state["cmp.experiment"].rules[0].options.get("curvature") != KEY
