"""The Paper tour page (AppTest): every preset loads with its badge and its charts."""

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer.presets import PRESETS
from tests.plotly_json import array

PAGE = str(Path(__file__).resolve().parents[1] / "app_pages" / "tour.py")
SLOW = {"c6_fisher_efficiency", "c3_tuned_comparison"}


@pytest.fixture(autouse=True)
def _clear_caches():
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()


def _page(**query) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    for name, value in query.items():
        at.query_params[name] = value
    at.run()
    assert not at.exception
    return at


def _figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def test_lists_every_claim_without_running_anything():
    at = _page()
    headers = [h.value for h in at.header]
    assert [h.split(" · ")[0] for h in headers] == [
        "C1",
        "C2",
        "C3",
        "C4",
        "C5",
        "C6",
        "C7",
        "QM",
        "PC",
    ]
    titles = {s.value for s in at.subheader}
    assert titles == {preset.title for preset in PRESETS.values()}
    assert len(at.latex) == len(PRESETS)
    assert not at.get("plotly_chart")  # nothing runs before Load
    assert at.radio(key="tour.size").value == "small"


def _param(key):
    return pytest.param(key, marks=pytest.mark.slow) if key in SLOW else key


@pytest.mark.parametrize("key", [_param(key) for key in PRESETS])
def test_load_shows_badge_and_charts(key):
    preset = PRESETS[key]
    at = _page()
    at.radio(key="tour.size").set_value("small").run()
    at.button(key=f"tour.load.{key}").click().run()
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    badges = [s.value for s in at.success]
    assert len(badges) == 1 and badges[0].startswith("✓ "), badges
    assert "=" in badges[0] and "✗" not in badges[0]
    figures = _figures(at)
    assert len(figures) == len(preset.figures)
    for figure in figures:
        assert figure["data"], figure["layout"].get("title")
        for trace in figure["data"]:
            for axis in ("x", "y", "z"):
                if isinstance(trace.get(axis), (list, dict)):
                    assert array(trace[axis]).size > 0
    assert dict(at.query_params) == {"preset": key, "size": "small"}


def test_changing_the_size_reruns_the_loaded_preset():
    at = _page(preset="c7_kfac_depth", size="small")
    assert "depth 2…3" in at.success[0].value
    at.radio(key="tour.size").set_value("full").run()
    assert not at.exception
    assert "depth 2…4" in at.success[0].value
    assert dict(at.query_params) == {"preset": "c7_kfac_depth", "size": "full"}


def test_badge_numbers_match_the_check():
    at = _page(preset="c2_interpolation", size="small")
    badge = at.success[0].value
    from explorer.presets import run_check

    assert run_check("c2_interpolation", "small").badge in badge
    figure = _figures(at)[0]
    names = [trace["name"] for trace in figure["data"]]
    relative = "‖H − G‖<sub>F</sub> / ‖G‖<sub>F</sub>"
    assert relative in names
    values = array(figure["data"][names.index(relative)]["y"])
    assert values.size == PRESETS["c2_interpolation"].setup("small")["points"]
    assert (values > 0).all()


def test_open_in_compare_puts_the_experiment_in_the_url():
    at = _page(preset="c5_levenberg_marquardt", size="small")
    buttons = [b for b in at.button if (b.key or "").startswith("tour.open.")]
    assert [b.label for b in buttons] == ["Open in Compare: three damping choices"]
    buttons[0].click().run()
    assert not at.exception
    query = dict(at.query_params)
    assert query["problem"] == "moons_mlp"
    assert query["rules"] == "gauss_newton,gauss_newton,gauss_newton"
    assert query["r0.damping"] == "1e-08"
    assert any("Compare page" in info.value for info in at.info)
