"""Run labels are plain text of bounded length, shown as typed on every page.

Before: a label ``[x](http://evil)`` was a live link and ``![i](http://evil/x.png)``
loaded a remote image on the Compare page (Streamlit renders status messages and
captions as Markdown), an ``<a href>`` in a label was a link in Plotly legends, and
a 10,000-character label was accepted.
"""

from __future__ import annotations

import json
import re

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import explorer as ex
from explorer.runs import Experiment, RuleChoice
from explorer.runs.config import MAX_LABEL_LENGTH
from explorer.runs.loop import warm_up_torch_func
from explorer.ui.text import plain
from explorer.ui.urlstate import from_query
from tests.app_helpers import ROOT, figures, run_until_done, settle

EVIL = '[x](http://evil) ![i](http://evil/x.png) <a href="http://evil">y</a>'
DIVERGES = EVIL + " 2"  # the run that stops, so a status message names it

#: Markdown that would render as a link, an image, an autolink or raw HTML:
#: ``[text](url)`` or ``![alt](url)`` whose brackets are not backslash-escaped,
#: ``<scheme:…>``, a bare ``http://`` or an HTML tag.
LIVE_MARKUP = re.compile(
    r"(?<!\\)\[[^\]]*(?<!\\)\]\s*(?<!\\)\("
    r"|(?<!\\)<[a-z]+:"
    r"|(?<!\\)<(a|img)\b"
    r"|https?://"
)


def _unescape(markdown: str) -> str:
    """CommonMark's backslash escapes undone: what the reader sees."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)


@pytest.fixture(autouse=True)
def _clear_caches():
    st.cache_data.clear()
    st.cache_resource.clear()
    # torch.func's one-time jvp compilation parses source (ast) on the in-process
    # worker's thread; concurrent with AppTest's own parsing, Python 3.11 can fail
    # with "AST constructor recursion depth mismatch": done here first, once
    warm_up_torch_func()


# ----------------------------------------------------------------- the limit
def test_a_10000_character_label_is_refused_naming_the_limit():
    long = "x" * 10_000
    for make in (
        lambda: ex.RunConfig("linreg_2d", label=long),
        lambda: ex.RunConfig.from_dict({"problem": "linreg_2d", "label": long}),
        lambda: Experiment(
            "linreg_2d", rules=(RuleChoice("sgd", label=long),)
        ).run_configs(),
    ):
        with pytest.raises(ValueError, match=f"limit of {MAX_LABEL_LENGTH}") as error:
            make()
        assert len(str(error.value)) < 200  # names the limit, does not echo the text
    assert MAX_LABEL_LENGTH == 80
    assert ex.RunConfig("linreg_2d", label="y" * 80).label == "y" * 80
    with pytest.raises(ValueError, match="one line of plain text"):
        ex.RunConfig("linreg_2d", label="two\nlines")


def test_duplicate_long_labels_stay_within_the_limit():
    name = "z" * MAX_LABEL_LENGTH
    rules = (RuleChoice("sgd", label=name), RuleChoice("adam", label=name))
    first, second = Experiment("linreg_2d", rules=rules).run_configs()
    assert first.label == name
    assert second.label == "z" * (MAX_LABEL_LENGTH - 3) + " #2"


def test_a_link_with_a_long_label_opens_without_it_and_says_so():
    query = {"problem": "linreg_2d", "rules": "sgd", "r0.label": "w" * 10_000}
    experiment, warnings = from_query(query, Experiment("linreg_2d"))
    assert experiment.rules[0].label is None
    assert any(f"limit of {MAX_LABEL_LENGTH}" in w for w in warnings)


# ------------------------------------------------------------- the escaping
@pytest.mark.parametrize(
    "text",
    [
        EVIL,
        "**bold** _it_ `code` ~~gone~~ $x^2$ :red[colour] :material/home:",
        "# heading",
        "- item",
        "> quote",
        "+ item",
        "a\\b \\[not a link\\](x)",
        "www.evil.com and http://evil.com/x",
        "&lt;a href&gt; &#91;",
        "K-FAC #2, lr 0.5 (α = 1)",
    ],
)
def test_plain_markdown_reads_as_typed_and_has_no_live_markup(text):
    escaped = plain(text)
    assert _unescape(escaped) == text
    assert not LIVE_MARKUP.search(escaped)
    assert not re.search(r"(?<!\\)[*_`~$\[\]<>&]", escaped.replace("\\\\", ""))
    assert not re.match(r"\s*[-+#>=]", escaped)


def test_the_checker_finds_live_markup_in_raw_labels():
    """The test's own detector is not vacuous: it flags the raw label."""
    assert LIVE_MARKUP.search(EVIL)
    assert LIVE_MARKUP.search("see https://evil.example")


# ---------------------------------------------------------------- the pages
def _markdown_texts(at: AppTest) -> list[str]:
    texts = []
    for kind in ("markdown", "caption", "info", "warning", "error", "success"):
        texts += [element.value for element in at.get(kind)]
    texts += [bar.proto.text for bar in at.get("progress")]
    return texts


def _figure_texts(at: AppTest) -> list[str]:
    """Every trace name, hover and title of the page's figures."""
    out = []
    for figure in figures(at):
        for trace in figure["data"]:
            out += [str(trace.get(k, "")) for k in ("name", "hovertemplate")]
        out.append(json.dumps(figure["layout"].get("title", "")))
    return out


def _assert_plain(at: AppTest, labels: list[str], legends: bool = True) -> None:
    texts = _markdown_texts(at)
    # the app's own links to its Theory page are meant; the label's never
    ours = re.compile(r"\[[^\]]*\]\(/theory[^)]*\)")
    live = [text for text in texts if LIVE_MARKUP.search(ours.sub("", text))]
    assert not live, live
    assert not [text for text in texts if "http://evil" in text]
    shown = " ".join(_figure_texts(at))
    assert "<a href" not in shown
    if legends:  # the labels are in the legends, as typed
        assert "&lt;a href" in shown
    for label in labels:
        assert any(plain(label) in text for text in texts), label


@pytest.mark.slow
def test_labels_render_as_text_on_compare_landscape_and_curvature():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.query_params.update(
        {
            "problem": "linreg_2d",
            "rules": "sgd,sgd",
            "r0.label": EVIL,
            "r1.label": DIVERGES,
            "r1.lr": "100.0",
            "steps": "5",
        }
    )
    run_until_done(at)
    assert not at.exception
    assert at.session_state["cmp.job"].histories()[DIVERGES].status == "diverged"
    _assert_plain(at, [DIVERGES])  # "**… 2** stopped (diverged: …)"

    settle(at.switch_page("app_pages/landscape.py"))
    assert not at.exception
    _assert_plain(at, [])

    settle(at.switch_page("app_pages/curvature.py"))
    at.selectbox(key="view.point").set_value(EVIL)
    settle(at)
    assert not at.exception
    _assert_plain(at, [f"{EVIL}, step 5"], legends=False)  # the caption "At …, step 5."


def test_the_html_report_shows_labels_as_text():
    """The downloaded report: header and every figure's legend and hover."""
    from explorer.ui import exports
    from explorer.ui.results import figures_for_export

    experiment = Experiment(
        "linreg_2d", rules=(RuleChoice("sgd", label=EVIL),), run_options={"steps": 3}
    )
    histories = ex.compare("linreg_2d", experiment.run_configs())
    page = exports.comparison_html(experiment, figures_for_export(histories))
    # Plotly's JSON writes < > / " as \uXXXX escapes: read them back
    decoded = re.sub(r"\\u([0-9a-f]{4})", lambda m: chr(int(m[1], 16)), page)
    decoded = decoded.replace('\\"', '"')
    assert '<a href="http://evil"' not in decoded
    assert "&lt;a href" in decoded
