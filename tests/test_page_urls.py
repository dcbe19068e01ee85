"""One default per problem in the app, no stale results, every page's state in its
URL, and a visible warning for every ignored link parameter (issue 12)."""

import pytest
import streamlit as st

from explorer.runs import DEFAULT_EXPERIMENT
from explorer.ui.urlstate import from_query
from tests.app_helpers import page, run_until_done, settle


@pytest.fixture(autouse=True)
def _clear_caches():
    st.cache_data.clear()
    st.cache_resource.clear()


def _warnings(at):
    return " ".join(w.value for w in at.warning)


def test_switching_problem_takes_the_new_problems_defaults_and_clears_results():
    at = run_until_done(page("compare", problem="digits_mlp", rules="sgd",
                             **{"p.hidden": "4", "p.train_size": "40"}, steps="3"))  # fmt: skip
    assert at.number_input(key="cmp.run.curvature_batch_size").value == 128
    assert len(at.dataframe) >= 1  # digits results on screen
    at.number_input(key="cmp.run.seed").set_value(2)  # a setting the user chose
    at.selectbox(key="cmp.problem").set_value("stream_logreg")
    at = run_until_done(at)
    assert not at.exception
    # digits' 128-example curvature batch does not carry over; the user's seed and
    # steps do; stream_logreg's own batch of 100 fresh samples is there
    assert at.number_input(key="cmp.run.curvature_batch_size").value is None
    assert at.number_input(key="cmp.run.batch_size").value == 100
    assert at.number_input(key="cmp.run.seed").value == 2
    assert at.number_input(key="cmp.run.steps").value == 3
    # the table on screen is the new problem's (it ran on its own), not digits'
    table = at.dataframe[0].value
    assert list(table["optimizer"]) == ["sgd"]
    assert at.query_params["problem"] == "stream_logreg"
    assert "curvature_batch_size" not in at.query_params
    # and the same defaults as a link to it (the CLI and library: test_problem_defaults)
    linked, _ = from_query({"problem": "stream_logreg", "rules": "sgd", "seed": "2",
                            "steps": "3"}, DEFAULT_EXPERIMENT)  # fmt: skip
    assert at.session_state["cmp.experiment"].settings == linked.settings


@pytest.mark.parametrize(
    ("name", "query", "expected"),
    [
        ("compare", {"problem": "linreg_2d", "steps": "2", "r0.lr": "nan"},
         "r0.lr='nan': there is no rules= parameter"),
        ("compare", {"problem": "linreg_2d", "steps": "2", "rules": "sgd",
                     "device": "cuda"}, "CUDA is not available"),
        ("compare", {"problem": "linreg_2d", "steps": "2", "rules": "sgd",
                     "colour": "red"}, "unknown parameter 'colour'"),
        ("curvature", {"problem": "nope"}, "unknown problem 'nope'"),
        ("curvature", {"problem": "linreg_2d", "v.reference": "nope"},
         "v.reference='nope'"),
        ("curvature", {"problem": "linreg_2d", "v.zoom": "2"},
         "unknown parameter 'v.zoom'"),
        ("tour", {"preset": "nope"}, "unknown preset 'nope'"),
    ],
)  # fmt: skip
def test_every_ignored_link_parameter_gets_a_visible_warning(name, query, expected):
    import torch

    if "device" in query and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    at = page(name, **query)
    # the warning comes with the first render (the views need not finish)
    at = run_until_done(at) if name == "compare" else at.run()
    assert not at.exception
    assert expected in _warnings(at)


def test_the_curvature_page_writes_and_restores_its_view_in_the_url():
    at = settle(page("curvature", problem="linreg_2d", rules="sgd", steps="2"))
    assert not at.exception
    at.selectbox(key="view.reference").set_value("ggn")
    at.multiselect(key="view.curvatures").set_value(["ggn", "ef"])
    at.number_input(key="view.damping").set_value(0.5)
    at = settle(at)
    query = {k: at.query_params[k] for k in at.query_params}
    assert query["problem"] == "linreg_2d"
    assert query["v.reference"] == "ggn"
    assert query["v.curvatures"] == "ggn,ef"
    assert float(query["v.damping"]) == 0.5
    # a new session opened on that link shows the same view
    again = settle(page("curvature", **query))
    assert not again.exception and not again.warning
    assert again.selectbox(key="view.reference").value == "ggn"
    assert again.multiselect(key="view.curvatures").value == ["ggn", "ef"]
    assert again.number_input(key="view.damping").value == 0.5
