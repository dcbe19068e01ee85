"""The "Check your approximation" page (AppTest) and plugins as optimizers."""

import json
import textwrap
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

import explorer as ex
from explorer.ui.check import ALLOW_UPLOAD
from tests.app_helpers import settle
from tests.plotly_json import array

PAGE = str(Path(__file__).resolve().parents[1] / "app_pages" / "check.py")
KEY = "test_page_damped_fisher"


@pytest.fixture(autouse=True)
def _clear_caches(monkeypatch):
    import streamlit as st

    monkeypatch.delenv(ALLOW_UPLOAD, raising=False)
    monkeypatch.delenv("EXPLORER_PLUGINS", raising=False)
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def registered():
    """A plugin registered in the test: the Fisher plus a little identity."""

    @ex.register_curvature(KEY, label="Fisher + 0.01·I", reference="fisher", psd=True)
    def damped_fisher(problem, theta, batch=None):
        fisher = ex.curvature("fisher", problem, theta, batch=batch).dense()
        return fisher + 0.01 * torch.eye(problem.num_params, dtype=theta.dtype)

    yield KEY
    ex.CURVATURES.unregister(KEY)


def _page():
    at = AppTest.from_file(PAGE, default_timeout=90)
    at.run()
    assert not at.exception
    return at


def _run_battery(at, key, steps=3):
    at.selectbox[0].set_value(key)
    at.multiselect[0].set_value(["linreg_2d"])
    at.number_input[0].set_value(steps)
    at.button[0].click().run()
    settle(at, run_first=False)
    assert not at.exception
    return at


def test_a_registered_plugin_is_an_optimizer_and_is_checked_on_the_page(registered):
    config = ex.RunConfig(
        problem="linreg_2d",
        rule="precondition",
        rule_options={"curvature": registered, "damping": 0.0},
        steps=3,
        device="cpu",
    )
    history = ex.run(config)
    losses = history.to_frame()["loss"].tolist()
    assert history.status == "ok" and losses[-1] < 0.5 * losses[0], losses

    at = _page()
    options = at.selectbox[0].options
    mine = "Fisher + 0.01·I (test_page_damped_fisher, plugin)"
    builtins = [o for o in options if o.endswith(", built-in)")]
    assert mine in options and options.index(mine) < options.index(builtins[0])
    assert "Uploading or typing plugin code is **off**" in at.info[0].value
    assert ALLOW_UPLOAD in at.info[0].value
    _run_battery(at, registered)
    assert [s.value for s in at.success] == ["Every declared property holds."]
    assert len(at.get("download_button")) == 2
    # the headline: the curvature and, once measured, the reference it behaves like
    (headline,) = [m.value for m in at.markdown if m.value.startswith("#### ")]
    assert f"(`{registered}`)" in headline
    result = at.session_state["check_result"]["report"].result(registered)
    if result.nearest_reference is not None:
        assert result.nearest_reference.sentence()[1:] in headline
    badges = [m.value for m in at.markdown if "-badge[" in m.value]
    assert badges and ":green-badge[scale: pass]" in badges[0]
    frames = [e.value for e in at.dataframe]
    quality = [f for f in frames if "κ((C+λI)⁻¹(R+λI))" in f.columns]
    if any(p.metrics for p in result.problems[0].points):
        # C = F + 0.01 I against F: preconditioned κ ≥ 1, well below κ(F + λI)
        kappa = quality[0]["κ((C+λI)⁻¹(R+λI))"].dropna()
        assert len(kappa) and (kappa >= 1 - 1e-9).all()
    figures = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    spectra = [f for f in figures if "eigenvalues of C" in f["layout"]["title"]["text"]]
    (spectrum,) = spectra
    names = [trace["name"] for trace in spectrum["data"]]
    assert registered in names and "fisher" in names
    values = array(spectrum["data"][names.index(registered)]["y"])
    assert values.shape == (2,) and (values > 0).all()
    race = [f for f in figures if "per iteration" in f["layout"]["title"]["text"]]
    assert registered in [trace["name"] for trace in race[0]["data"]]


def test_a_failing_plugin_shows_its_verdict_not_an_exception(tmp_path, monkeypatch):
    plugin = tmp_path / "raising.py"
    plugin.write_text(
        textwrap.dedent(
            """
            import explorer as ex

            @ex.register_curvature("test_page_raises", reference="fisher")
            def raises(problem, theta, batch=None):
                raise RuntimeError("the plugin exploded")
            """
        )
    )
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_module_here\n")
    monkeypatch.setenv("EXPLORER_PLUGINS", f"{plugin}:{broken}")
    try:
        at = _page()
        assert any("no_such_module_here" in w.value for w in at.warning)
        _run_battery(at, "test_page_raises", steps=2)
        (error,) = at.error
        assert "test_page_raises: well_formed" in error.value
        frames = [e.value for e in at.dataframe]
        verdicts = next(f for f in frames if "property" in f.columns)
        assert "the plugin exploded" in " ".join(verdicts["detail"])
    finally:
        for key in [k for k, s in ex.CURVATURES.items() if str(tmp_path) in s.source]:
            ex.CURVATURES.unregister(key)


def test_code_upload_needs_the_explicit_server_setting(monkeypatch):
    at = _page()
    assert not at.text_area
    monkeypatch.setenv(ALLOW_UPLOAD, "1")
    at = _page()
    assert "runs as Python on this server" in at.warning[0].value
    code = textwrap.dedent(
        """
        import torch
        import explorer as ex

        @ex.register_curvature("test_page_pasted", reference="fisher", psd=True)
        def pasted(problem, theta, batch=None):
            return ex.curvature("fisher", problem, theta, batch=batch).dense()
        """
    )
    try:
        at.text_area[0].input(code)
        at.button[0].click().run()
        assert not at.exception
        assert "test_page_pasted" in at.success[0].value
        assert any(
            option.startswith("test_page_pasted (test_page_pasted, pasted_plugin.py")
            for option in at.selectbox[0].options
        ), at.selectbox[0].options
    finally:
        if "test_page_pasted" in ex.CURVATURES:
            ex.CURVATURES.unregister("test_page_pasted")


def test_a_sampled_estimator_is_explained_not_called_a_scale_bug():
    """Before: the first screen failed the built-in fisher_mc as "a scale bug"."""
    at = _page()
    if at.selectbox[0].value == "fisher_mc":  # the first screen explains it
        notes = " ".join(info.value for info in at.info)
        assert "is a stochastic estimator" in notes
    at = _run_battery(at, "fisher_mc", steps=2)
    notes = " ".join(info.value for info in at.info)
    assert "is a stochastic estimator" in notes
    assert "judges it as an estimator" in notes
    assert "shrink like 1/√draws" in notes
    # and no verdict on the page calls one random draw a scale bug
    text = " ".join(str(frame.value.to_dict()) for frame in at.dataframe)
    assert "Scale" in text
    assert "a scale bug (a forgotten 1/N" not in text


def test_the_scale_verdict_of_a_sampled_estimator_speaks_of_its_draws():
    from explorer.check.results import PointResult
    from explorer.check.settings import CheckSettings
    from explorer.check.verdicts import scale

    point = PointResult("fisher_mc", "digits_mlp", 20, trace=6e-4, reference_trace=1.0)
    settings = CheckSettings()
    sampled = scale([point], "fisher", "declared", settings, sampled=True)
    fixed = scale([point], "fisher", "declared", settings, sampled=False)
    assert sampled.measured == fixed.measured == pytest.approx(6e-4)
    assert "sampled estimate" in sampled.detail and "scale bug (" not in sampled.detail
    assert "a scale bug (a forgotten 1/N" in fixed.detail
    deterministic = ex.CURVATURES["fisher"].tags().sampled
    assert ex.CURVATURES["fisher_mc"].tags().sampled and not deterministic
