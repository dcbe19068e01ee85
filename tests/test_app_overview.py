"""The app boots and its pages render without exceptions (AppTest)."""

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.plotly_json import array

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture(autouse=True)
def _clear_caches():
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()


def test_overview_renders_a_matrix():
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    at.selectbox[0].set_value("linreg_2d").run()
    at.selectbox[1].set_value("ggn").run()
    assert not at.exception
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert figure["data"][0]["type"] == "heatmap"
    assert array(figure["data"][0]["z"]).shape == (2, 2)
