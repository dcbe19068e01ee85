"""The Sweep page: a grid run on the engine shows the library's numbers."""

from __future__ import annotations

import numpy as np
import pytest

import explorer as ex
from explorer.sweeps import best_settings, log_spaced
from tests.app_helpers import figures, page, run_until_done, settle
from tests.plotly_json import array


def run_sweep(at):
    next(b for b in at.button if b.label == "Run sweep").click()
    return run_until_done(at)


@pytest.fixture(scope="module")
def finished():
    at = settle(page("sweep"))
    at.selectbox(key="sw.problem").set_value("linreg_2d")
    settle(at)
    at.multiselect(key="sw.rules").set_value(["sgd", "natural_gradient"])
    at.number_input(key="sw.seeds").set_value(2)
    at.number_input(key="sw.steps").set_value(6)
    settle(at)
    at.number_input(key="sw.sgd.lr.n").set_value(3)
    at.number_input(key="sw.natural_gradient.lr.n").set_value(2)
    at.number_input(key="sw.natural_gradient.damping.n").set_value(2)
    settle(at)
    return run_sweep(at)


def library_config():
    return ex.SweepConfig(
        "linreg_2d",
        {
            "sgd": {"lr": log_spaced(0.01, 0.3, 3)},
            "natural_gradient": {
                "lr": log_spaced(0.1, 3.0, 2),
                "damping": log_spaced(1e-4, 1.0, 2),
                "damping_adaptation": ["fixed"],
            },
        },
        seeds=(0, 1),
        steps=6,
    )


def test_the_page_states_the_trial_count_and_a_measured_estimate(finished):
    texts = [m.value for m in finished.markdown]
    assert any("**14 trials** · about" in t and "measured" in t for t in texts)
    assert not finished.exception


def test_the_heatmaps_are_the_librarys_mean_final_loss(finished):
    frame = ex.sweep(library_config()).to_frame()
    charts = figures(finished)
    grids = {
        c["data"][0]["name"]: c for c in charts if c["data"][0].get("type") == "heatmap"
    }
    assert set(grids) == {"sgd", "natural_gradient"}
    sgd = frame[frame.rule == "sgd"].groupby("lr")["final_loss"].mean()
    z = array(grids["sgd"]["data"][0]["z"])[0]
    assert np.allclose(z, np.log10(sgd.sort_index().to_numpy()), rtol=1e-12, atol=0)
    ng = frame[frame.rule == "natural_gradient"]
    means = ng.groupby(["damping", "lr"])["final_loss"].mean().unstack()
    z = array(grids["natural_gradient"]["data"][0]["z"])
    assert np.allclose(z, np.log10(means.to_numpy()), rtol=1e-12, atol=0)


def test_the_summary_is_the_librarys_best_setting_with_downloads(finished):
    buttons = {b.proto.label: b for b in finished.get("download_button")}
    assert set(buttons) == {"Parquet", "CSV", "JSON", "HTML report", "sweep.toml"}
    assert "Open the tuned settings in Compare" in [b.label for b in finished.button]
    table = finished.dataframe[0].value
    assert list(table["rule"]) == ["sgd", "natural_gradient"]
    best = best_settings(ex.sweep(library_config()).to_frame())
    assert np.allclose(
        table["mean final loss"], best["mean_final_loss"], rtol=1e-12, atol=0
    )
