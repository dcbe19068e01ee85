"""AppTest of the grouped Problem selector, the problem card and the Curvature
page's coverage map and heatmap scale, on tiny configurations."""

import pytest
import streamlit as st

import explorer as ex
from explorer.problems.spec import PROBLEM_GROUPS
from explorer.ui.compare import grouped_problems, problem_choice
from tests.app_helpers import figure_titled, page, run_until_done, settle
from tests.ui.conftest import LAYERNORM_KEY, LAYERNORM_LABEL


@pytest.fixture(autouse=True)
def _clear_caches():
    st.cache_data.clear()
    st.cache_resource.clear()


def card_text(at) -> str:
    return "\n".join(m.value for m in at.sidebar.markdown)


def curvature_summary(problem: ex.Problem) -> str:
    """The card's expander label, from the registry (all dense at these sizes)."""
    specs = [s for s in ex.CURVATURES.values() if s.selectable]
    refused = [s.label for s in specs if s.incompatibility(problem) is not None]
    text = f"Curvatures: {len(specs) - len(refused)} dense"
    return text + (
        f" · {len(refused)} unavailable ({', '.join(refused)})" * bool(refused)
    )


def test_the_selector_shows_groups_and_a_switch_to_another_group_works():
    at = run_until_done(page("compare", problem="linreg_2d", rules="sgd", steps="2"))
    assert not at.exception
    selector = at.selectbox(key="cmp.problem")
    assert selector.options == [problem_choice(k) for k in grouped_problems()]
    groups = [option.split(" · ")[0] for option in selector.options]
    assert groups == sorted(groups, key=PROBLEM_GROUPS.index)
    assert {"toys", "networks", "real data"} <= set(groups)
    assert selector.value == "linreg_2d"
    assert "toys · Linear regression (2 weights)" in selector.options
    # the card: two weights, the data's size, the likelihood, the curvatures
    linreg = ex.problem("linreg_2d")
    text = card_text(at)
    assert "**Linear regression (2 weights)** (toys)" in text
    assert f"P = 2 parameters · N = {linreg.num_examples:,} train (no test set)" in text
    assert f"Likelihood: {linreg.loss.describe()}" in text
    assert curvature_summary(linreg) in [e.label for e in at.sidebar.expander]

    # toys → networks in one choice: its comparison runs, its card replaces this one
    at.selectbox(key="cmp.problem").set_value("moons_mlp")
    run_until_done(at)
    assert not at.exception
    assert at.query_params["problem"] in ("moons_mlp", ["moons_mlp"])
    assert list(at.dataframe[0].value["optimizer"]) == ["sgd"]
    moons = ex.problem("moons_mlp")
    weights = (2 * 16 + 16) + (16 * 2 + 2)  # MLP 2-16-2
    assert moons.num_params == weights == 82
    text = card_text(at)
    assert "**Two moons (small MLP)** (networks)" in text
    assert "MLP 2-16-2, tanh" in text
    test = moons.test_batch().size
    assert f"P = 82 parameters · N = {moons.num_examples:,} train / {test:,} test" in (
        text
    )
    assert "Linear regression" not in text


def test_a_plugin_problem_is_listed_under_yours_with_its_card(layernorm_problem):
    at = run_until_done(page("compare", problem=LAYERNORM_KEY, rules="sgd", steps="2"))
    assert not at.exception
    options = at.selectbox(key="cmp.problem").options
    assert options[-1] == f"yours · {LAYERNORM_LABEL}"  # declared "networks"
    problem = ex.problem(LAYERNORM_KEY)
    weights = (3 * 4 + 4) + (4 + 4) + (4 * 3 + 3)  # fc1, norm, fc2
    assert problem.num_params == weights == 39
    text = card_text(at)
    assert f"**{LAYERNORM_LABEL}** (yours)" in text
    assert "MLP 3-4-3 with a LayerNorm" in text and "P = 39 parameters" in text
    assert curvature_summary(problem) in [e.label for e in at.sidebar.expander]


def test_the_curvature_page_names_uncovered_parameters_and_its_scale(
    layernorm_problem,
):
    at = settle(page("curvature", problem=LAYERNORM_KEY, rules="sgd", steps="2"))
    assert not at.exception
    warnings = [w.value for w in at.warning]
    (coverage,) = [w for w in warnings if "uncovered" in w]
    assert "K-FAC leaves 2 of 6 parameter tensors uncovered" in coverage
    assert "not covered: norm.weight, norm.bias" in coverage
    (table,) = [f.value for f in at.dataframe if "parameter" in f.value.columns]
    rows = table.set_index("parameter")
    assert list(rows.index) == list(ex.problem(LAYERNORM_KEY).param_names)
    assert rows.loc["norm.weight", "K-FAC"] == "✗ not covered"
    assert rows.loc["norm.weight", "module"] == "LayerNorm"
    assert rows.loc["fc1.weight", "K-FAC"] == "Kronecker block"
    assert set(rows["Hessian"]) == {"full"}
    assert [t.label for t in at.tabs][-1] == "Coverage"
    # the heatmaps say which scale they drew; the control defaults to auto
    assert at.radio(key="view.scale").value == "auto"
    title = figure_titled(at, "curvature matrices")["layout"]["title"]["text"]
    assert "colours" in title
    # switching the scale redraws on it
    at.radio(key="view.scale").set_value("log")
    settle(at)
    title = figure_titled(at, "curvature matrices")["layout"]["title"]["text"]
    assert "log₁₀|C| colours" in title and "(auto)" not in title
    assert at.query_params["v.scale"] in ("log", ["log"])
