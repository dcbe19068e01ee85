"""AppTest of every page with tiny configurations."""

import re

import pytest
import streamlit as st

import explorer as ex
from explorer.runs import Experiment, RuleChoice
from explorer.ui import exports
from tests.app_helpers import (
    ROOT,
    figure_titled,
    page,
    run_until_done,
    settle,
    trace_names,
)
from tests.plotly_json import array


@pytest.fixture(autouse=True)
def _clear_caches():
    st.cache_data.clear()
    st.cache_resource.clear()


def _warnings(at):
    return [w.value for w in at.warning]


def test_compare_runs_the_configuration_in_the_url():
    at = run_until_done(
        page(
            "compare",
            problem="linreg_2d",
            rules="sgd,gauss_newton,ef_natural_gradient",
            steps="8",
        )
    )
    assert not at.exception
    assert at.selectbox(key="cmp.problem").value == "linreg_2d"
    assert at.number_input(key="cmp.run.steps").value == 8
    loss = figure_titled(at, "loss against iteration")
    assert trace_names(loss) == ["sgd", "gauss_newton", "ef_natural_gradient"]
    assert array(loss["data"][0]["x"]).tolist() == list(range(9))  # steps 0..8
    landscape = figure_titled(at, "landscape")
    assert trace_names(landscape)[1:4] == ["sgd", "gauss_newton", "ef_natural_gradient"]
    assert [t.label for t in at.tabs][:3] == [
        "Loss",
        "Damping λ · ratio ρ · step α",
        "Parameter space",
    ]
    table = at.dataframe[0].value
    assert list(table["optimizer"]) == ["sgd", "gauss_newton", "ef_natural_gradient"]
    # Gauss-Newton solves linear least squares: its final loss is the least-squares one
    problem = ex.problem("linreg_2d")
    x, y = problem.inputs, problem.targets[:, 0]
    best = ex.problem("linreg_2d").objective(
        __import__("torch").linalg.lstsq(x, y.unsqueeze(1)).solution[:, 0]
    )
    assert table["final loss"][1] == pytest.approx(float(best), rel=1e-6)


def test_run_button_and_url_follow_the_widgets():
    at = run_until_done(page("compare", problem="linreg_2d", rules="sgd", steps="3"))
    at.number_input(key="cmp.run.steps").set_value(5)
    at.button[[b.label for b in at.button].index("Run")].click()
    run_until_done(at)
    assert not at.exception
    assert at.query_params["steps"] == ["5"] or at.query_params["steps"] == "5"
    assert int(at.dataframe[0].value["gradient evaluations"][0]) >= 5


def test_natural_gradient_and_gauss_newton_note_for_matching_losses():
    at = run_until_done(
        page(
            "compare",
            problem="logreg_2d",
            rules="natural_gradient,gauss_newton",
            steps="3",
        )
    )
    notes = " ".join(i.value for i in at.info)
    assert "Natural gradient = Gauss-Newton here" in notes
    table = at.dataframe[0].value
    assert table["final loss"][0] == pytest.approx(table["final loss"][1], rel=1e-12)
    at = run_until_done(
        page(
            "compare",
            problem="linreg_2d",
            **{"p.loss": "gaussian_tanh_mean"},
            rules="natural_gradient,gauss_newton",
            steps="3",
        )
    )
    assert "F ≠ G here" in " ".join(i.value for i in at.info)


def test_failures_are_messages_and_other_rules_still_run():
    at = run_until_done(
        page(
            "compare",
            problem="rosenbrock",
            rules="kfac,sgd,newton",
            steps="20",
            **{"r1.lr": "0.01", "r2.damping": "0", "r2.damping_adaptation": "fixed"},
        )
    )
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "kfac" in errors and "nn.Linear" in errors
    assert list(at.dataframe[0].value["optimizer"]) == ["sgd", "newton"]


def test_indefinite_hessian_gets_a_warning_with_the_remedy():
    at = run_until_done(
        page(
            "compare",
            problem="tiny_tanh",
            rules="newton",
            steps="5",
            **{
                "p.theta0": "0.01,0.01",
                "r0.damping": "0",
                "r0.damping_adaptation": "fixed",
                "r0.on_indefinite": "stop",
            },
        )
    )
    assert not at.exception
    text = " ".join(_warnings(at))
    assert "indefinite" in text and "damping" in text


def test_divergence_gets_a_warning():
    at = run_until_done(
        page(
            "compare", problem="rosenbrock", rules="sgd", steps="30", **{"r0.lr": "0.5"}
        )
    )
    assert not at.exception
    assert any("diverged" in w for w in _warnings(at))


def test_bad_url_parameters_are_ignored_with_a_warning():
    at = run_until_done(
        page(
            "compare",
            problem="linreg_2d",
            rules="sgd,nonsense",
            steps="3",
            **{"r0.lr": "-1", "p.num_samples": "abc"},
        )
    )
    assert not at.exception
    text = " ".join(_warnings(at))
    assert "nonsense" in text and "lr" in text and "num_samples" in text
    assert list(at.dataframe[0].value["optimizer"]) == ["sgd"]


def test_exported_csv_has_one_row_per_run_and_step():
    # reproduce.py is run as its own process in tests/ui/test_exports.py (it pins
    # torch to one thread, which exec-ing it here would do to the whole session).
    experiment = Experiment(
        "logreg_2d",
        {"num_samples": 200},
        (RuleChoice("sgd", {"lr": 0.5}), RuleChoice("kfac")),
        {"steps": 4, "seed": 2},
    )
    histories = {c.display_label: ex.run(c) for c in experiment.run_configs()}
    csv = exports.histories_csv(histories)
    assert csv.splitlines()[0].startswith("run,rule,status,step,loss")
    assert len(csv.splitlines()) == 1 + 2 * 5


@pytest.mark.parametrize(
    ("name", "query"),
    [
        ("curvature", {"problem": "moons_mlp", "p.num_samples": "40", "p.hidden": "4"}),
        ("curvature", {"problem": "tiny_tanh"}),
        ("landscape", {"problem": "tiny_tanh"}),
        ("landscape", {"problem": "moons_mlp", "p.num_samples": "40"}),
        ("theory", {}),
    ],
)
def test_other_pages_render(name, query):
    at = settle(page(name, **query))
    assert not at.exception
    if name != "theory":
        assert at.get("plotly_chart")


def test_curvature_page_shows_fisher_equals_ggn_for_cross_entropy():
    at = page(
        "curvature", problem="moons_mlp", **{"p.num_samples": "40", "p.hidden": "4"}
    )
    settle(at)
    difference = figure_titled(at, "ggn − fisher")
    title = difference["layout"]["title"]["text"]
    measured = float(re.search(r"= ([-+0-9.e]+)\)", title).group(1))
    assert measured < 1e-12, title  # softmax cross-entropy: F = G (claim C1)


def test_app_navigation_reaches_every_page():
    """Visits every page of app.py's ``st.navigation`` list (read from its source)."""
    import ast

    from streamlit.testing.v1 import AppTest

    def literal(node):
        return node.value if isinstance(node, ast.Constant) else None

    pages = {}  # script -> the title its st.Page declares
    for node in ast.walk(ast.parse((ROOT / "app.py").read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "Page":
            keywords = {k.arg: literal(k.value) for k in node.keywords}
            pages[literal(node.args[0])] = keywords.get("title")
    assert len(pages) >= 6 and "app_pages/compare.py" in pages, pages

    def page_title(script):
        """The page's own ``st.title("...")`` (else the navigation title)."""
        for node in ast.walk(ast.parse((ROOT / script).read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", "") == "title"
                and node.args
                and isinstance(literal(node.args[0]), str)
            ):
                return literal(node.args[0])
        return pages[script]

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.query_params["problem"] = "linreg_2d"
    at.query_params["rules"] = "sgd"
    at.query_params["steps"] = "2"
    run_until_done(at)
    assert not at.exception
    for script in pages:
        at.switch_page(script).run()
        assert not at.exception, (script, [e.value for e in at.exception])
        titles = [element.value for element in at.title]
        assert page_title(script) in titles, (script, titles)
    # back on the Compare page, the settings survived the trip
    at.switch_page("app_pages/compare.py").run()
    assert not at.exception
    assert at.selectbox(key="cmp.problem").value == "linreg_2d"
    assert at.number_input(key="cmp.run.steps").value == 2


def test_two_sessions_see_only_their_own_configuration_and_results():
    query = {"problem": "linreg_2d", "rules": "sgd", "steps": "15"}
    first = run_until_done(page("compare", **query, seed="1"))
    second = run_until_done(page("compare", **query, seed="2"))
    jobs = [at.session_state["cmp.job"] for at in (first, second)]
    assert jobs[0] is not jobs[1] and jobs[0].session != jobs[1].session
    losses = [job.histories()["sgd"].metrics["loss"] for job in jobs]
    assert losses[0] != losses[1]  # different seeds, different data
    assert losses[0] == ex.run(jobs[0].configs[0]).metrics["loss"]
    # only an identical configuration shares a result: a third session, seed 1
    third = run_until_done(page("compare", **query, seed="1"))
    job = third.session_state["cmp.job"]
    assert job.states[0].cached and job.histories()["sgd"].same_as(
        jobs[0].histories()["sgd"]
    )
    assert any("from the server's cache" in c.value for c in third.caption)


def test_a_large_link_waits_for_run_and_a_limit_is_refused_by_name():
    at = page("compare", problem="linreg_2d", rules="sgd", steps="10000")
    at.run()
    assert "cmp.job" not in at.session_state
    assert any("press **Run**" in info.value for info in at.info), at.info
    at = page("compare", problem="linreg_2d", rules="sgd", steps="30000")
    at.run()
    # refused before Run, with the estimate beside it: Run cannot be pressed
    assert next(b for b in at.button if b.label == "Run").disabled
    assert "cmp.job" not in at.session_state
    assert any("EXPLORER_MAX_STEPS" in error.value for error in at.error), at.error
    assert any(c.value.startswith("Estimate: about") for c in at.caption)


def test_an_oversized_model_is_refused_before_it_is_built(monkeypatch):
    """hidden=4096,4096,4096,4096 took a session from 75 MB to 2.3 GB (issue 16)."""
    from explorer.runs import ProblemConfig

    built = []
    original = ProblemConfig.build

    def spy(config):
        built.append(dict(config.options).get("hidden"))
        return original(config)

    monkeypatch.setattr(ProblemConfig, "build", spy)
    wide = "4096,4096,4096,4096"
    at = page(
        "compare", problem="digits_mlp", rules="sgd", steps="5", **{"p.hidden": wide}
    )
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    # the link's options are set aside with a warning that names the limit …
    assert any("EXPLORER_MAX_PARAMS" in w.value for w in at.warning), at.warning
    assert "hidden" not in at.session_state["cmp.experiment"].problem_options
    # … and typed into the form they are refused by name before anything is built
    at.session_state["cmp.p.digits_mlp.hidden"] = wide
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("EXPLORER_MAX_PARAMS" in e.value for e in at.error), at.error
    assert (4096,) * 4 not in built, "the oversized model was built"


def test_the_quality_table_reads_as_numbers():
    at = settle(
        page(
            "curvature", problem="moons_mlp", **{"p.num_samples": "40", "p.hidden": "4"}
        )
    )
    # the quality table (the Coverage tab holds a table of words, one per parameter)
    (table,) = [f.value for f in at.dataframe if "cosine" in f.value.columns]
    cells = table.drop(columns=["curvature", "method"]).to_numpy().ravel()
    assert len(cells) and all(isinstance(cell, str) for cell in cells)
    assert not {"None", "nan", "inf", "Infinity"} & set(cells)
    for cell in cells:
        assert cell in ("—", "∞") or len(cell.lstrip("-").replace(".", "")) <= 9, cell
