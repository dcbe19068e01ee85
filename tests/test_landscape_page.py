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
