"""AppTest of the Landscape page for P > 2: the 1-D line goes to the chosen run."""

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.app_helpers import ROOT, figure_titled, run_until_done, settle
from tests.plotly_json import array


@pytest.fixture(autouse=True)
def _clear_caches():
    st.cache_data.clear()
    st.cache_resource.clear()


def test_the_line_goes_to_the_end_of_the_run_picked_on_the_page():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.query_params.update(
        {
            "problem": "moons_mlp",
            "p.num_samples": "40",
            "p.hidden": "4",
            "rules": "sgd,kfac",
            "steps": "4",
        }
    )
    run_until_done(at)
    assert not at.exception
    settle(at.switch_page("app_pages/landscape.py"))
    assert not at.exception
    picker = at.selectbox(key="scape.line")
    assert list(picker.options) == ["sgd", "kfac"] and picker.value == "sgd"
    figure_titled(at, "to sgd end")
    picker.set_value("kfac")
    settle(at)
    assert not at.exception
    line = figure_titled(at, "to kfac end")
    train = next(t for t in line["data"] if t["name"] == "training loss")
    alphas, losses = array(train["x"]), array(train["y"])
    job = at.session_state["cmp.job"]
    history = job.histories()["kfac"]
    problem = history.config.problem_config.replace(device="cpu").build()
    final = float(problem.objective(history.trajectory[-1]))
    assert losses[alphas == 1.0].tolist() == pytest.approx([final], rel=1e-12)
    assert np.isfinite(losses).all()


def test_a_grid_above_the_limit_is_refused_before_it_is_computed():
    """201 × 201 on a large model tried to allocate 27.5 GB (issue 16): now the
    page names the limit and the largest resolution that fits, and computes
    nothing."""
    at = AppTest.from_file(
        str(ROOT / "app_pages" / "landscape.py"), default_timeout=180
    )
    at.query_params.update(
        {"problem": "digits_mlp", "rules": "sgd", "steps": "3", "v.resolution": "201"}
    )
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    (error,) = [e.value for e in at.error if "EXPLORER_MAX_GRID_X_P" in e.value]
    assert "201 × 201 grid on P = 2,410" in error and "to 101 or less" in error
    assert "view.tickets" not in at.session_state  # nothing was submitted
    at.slider(key="scape.resolution").set_value(41).run()
    assert not any("EXPLORER_MAX_GRID_X_P" in e.value for e in at.error)
    assert any("41 × 41 = 1,681 loss evaluations" in c.value for c in at.caption)
