"""Two sessions with different seeds and learning rates each see their own data.

The views' caches (the engine's results, the worker's points, the figures) are
shared by every session of the server, so each key must be the full frozen
configuration: the problem's (seed and options), the runs' and the view's. And a
session whose settings changed since its last comparison must not draw that
comparison's paths on the new problem (before: a seed-5 session was shown its
seed-0, lr-0.05 path on the seed-5 contours).
"""

from __future__ import annotations

import numpy as np
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

import explorer as ex
from explorer.runs import ProblemConfig
from explorer.runs.loop import warm_up_torch_func
from explorer.ui.views import EARLIER_RUNS
from tests.app_helpers import ROOT, figures, run_until_done, settle
from tests.plotly_json import array

pytestmark = pytest.mark.slow

STEPS = 5


@pytest.fixture(autouse=True)
def _clear_caches():
    st.cache_data.clear()
    st.cache_resource.clear()
    # torch.func's one-time jvp compilation parses source (ast) on the in-process
    # worker's thread; concurrent with AppTest's own parsing, Python 3.11 can fail
    # with "AST constructor recursion depth mismatch": done here first, once
    warm_up_torch_func()


def _session(seed: int, lr: float) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    query = {"problem": "linreg_2d", "rules": "sgd", "r0.lr": repr(lr)}
    query["steps"] = str(STEPS)
    if seed:
        query["seed"] = str(seed)
    at.query_params.update(query)
    run_until_done(at)
    assert not at.exception
    return at


def _landscape(at: AppTest) -> dict:
    settle(at.switch_page("app_pages/landscape.py"))
    assert not at.exception
    (figure,) = [f for f in figures(at) if f["data"][0]["type"] == "contour"]
    return figure


def _paths(figure: dict) -> dict[str, np.ndarray]:
    """The drawn paths, (steps + 1, 2) each, by trace name."""
    return {
        t["name"]: np.stack([array(t["x"]), array(t["y"])], axis=1)
        for t in figure["data"]
        if t.get("mode") == "lines+markers"
    }


def _expected_path(seed: int, lr: float) -> np.ndarray:
    """The library's own run of that configuration (no app, no cache)."""
    config = ex.RunConfig(
        "linreg_2d", rule="sgd", rule_options={"lr": lr}, steps=STEPS, seed=seed
    )
    return ex.run(config).trajectory.numpy()


def _contour_matches(figure: dict, seed: int) -> bool:
    """Whether the contour's losses are the objective of the seed's problem, at
    nine grid points (corners, edge midpoints, centre) evaluated directly.
    """
    contour = figure["data"][0]
    xs, ys, losses = (array(contour[k]) for k in ("x", "y", "customdata"))
    problem = ProblemConfig("linreg_2d", seed=seed, device="cpu").build()
    picks = [0, len(xs) // 2, len(xs) - 1]
    expected = [
        float(problem.objective(torch.tensor([xs[j], ys[i]], dtype=torch.float64)))
        for i in picks
        for j in picks
    ]
    shown = [losses[i, j] for i in picks for j in picks]
    return np.allclose(shown, expected, rtol=1e-10, atol=0.0)


def _set_compare(at: AppTest, seed: int, lr: float) -> None:
    """Changes seed and lr on the Compare page without pressing Run."""
    at.switch_page("app_pages/compare.py").run()
    (rule_id,) = at.session_state["cmp.rule_ids"]
    at.number_input(key="cmp.run.seed").set_value(seed)
    at.number_input(key=f"cmp.r{rule_id}.sgd.lr").set_value(lr)
    at.run()
    assert not at.exception


def test_two_sessions_see_their_own_paths_and_contours():
    a = _session(seed=0, lr=0.05)
    figure_a = _landscape(a)
    assert _contour_matches(figure_a, seed=0)
    path_a = _paths(figure_a)["sgd"]
    np.testing.assert_allclose(path_a, _expected_path(0, 0.05), rtol=1e-12)

    # B ran the same comparison as A, then changed to seed 5 and lr 0.5
    b = _session(seed=0, lr=0.05)
    _set_compare(b, seed=5, lr=0.5)
    figure_b = _landscape(b)
    assert _contour_matches(figure_b, seed=5)
    assert not _contour_matches(figure_b, seed=0)  # the seeds' data differ
    assert _paths(figure_b) == {}, "a path of other settings on seed 5's contours"
    note = EARLIER_RUNS.format(count=1)
    assert note in [info.value for info in b.info]
    assert [o for o in b.selectbox(key="view.point").options] == ["initial point θ₀"]

    # B runs its settings: its own path, on its own contours
    b.switch_page("app_pages/compare.py").run()
    b.button[0].click()
    run_until_done(b)
    figure_b = _landscape(b)
    assert _contour_matches(figure_b, seed=5)
    path_b = _paths(figure_b)["sgd"]
    expected_b = _expected_path(5, 0.5)
    np.testing.assert_allclose(path_b, expected_b, rtol=1e-12)
    assert not np.allclose(path_b, path_a)  # another learning rate, another path

    # A's page is still A's
    figure_a = _landscape(a)
    assert _contour_matches(figure_a, seed=0)
    np.testing.assert_allclose(_paths(figure_a)["sgd"], path_a, rtol=0, atol=0)


def test_the_curvature_page_measures_the_sessions_own_problem():
    """The Hessian at the last point each session can pick is its seed's (linear
    least squares: XᵀX/N of that seed's data), though A looked at the same run first.
    """
    a = _session(seed=0, lr=0.05)
    b = _session(seed=0, lr=0.05)
    _set_compare(b, seed=5, lr=0.5)
    for at, seed in ((a, 0), (b, 5)):
        settle(at.switch_page("app_pages/curvature.py"))
        assert not at.exception
        picker = at.selectbox(key="view.point")
        picker.set_value(picker.options[-1])
        at.multiselect(key="view.curvatures").set_value(["hessian"])
        settle(at)
        assert not at.exception
        problem = ProblemConfig("linreg_2d", seed=seed, device="cpu").build()
        theta = problem.theta0
        if picker.options[-1] != "initial point θ₀":
            theta = at.session_state["cmp.job"].histories()["sgd"].trajectory[-1]
        expected = torch.func.hessian(problem.objective)(theta.clone())
        analysis = at.session_state["view.tickets"]["curvature"].result
        torch.testing.assert_close(
            analysis.matrices["hessian"], expected, rtol=1e-10, atol=1e-12
        )
