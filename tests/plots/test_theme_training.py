"""Colours per rule, and the training-curve figures built from real histories."""

import numpy as np
import pytest

from explorer.plots import hyperparameter_figure, loss_figure
from explorer.plots.theme import (
    CURVATURE_COLORS,
    RULE_COLORS,
    curvature_color,
    hashed_color,
    rule_color,
    run_styles,
)
from tests.plotly_json import array


def test_rules_share_their_curvatures_colours_and_unknown_keys_hash():
    assert rule_color("natural_gradient") == CURVATURE_COLORS["fisher"]
    assert rule_color("newton") == curvature_color("hessian")
    assert rule_color("precondition", "kfac") == curvature_color("kfac")
    assert rule_color("my_plugin_rule") == rule_color("my_plugin_rule")
    assert rule_color("my_plugin_rule") != rule_color("another_rule")
    assert curvature_color("user_curvature").startswith("hsl(")
    assert hashed_color("x") == "hsl(" + hashed_color("x")[4:]
    assert len(set(RULE_COLORS.values())) >= len(RULE_COLORS) - 1  # precondition aside


def test_runs_of_the_same_rule_get_different_dashes(rosenbrock_runs):
    runs = dict(rosenbrock_runs)
    runs["sgd again"] = runs["sgd"]
    styles = run_styles(runs)
    assert styles["sgd"][0] == styles["sgd again"][0] == RULE_COLORS["sgd"]
    assert styles["sgd"][1] != styles["sgd again"][1]


def test_loss_figure_has_one_trace_per_run_and_metric(rosenbrock_runs):
    figure = loss_figure(rosenbrock_runs, metrics=("loss",))
    lines = [t for t in figure.data if t.mode == "lines"]
    assert [t.name for t in lines] == ["sgd", "natural_gradient", "newton"]
    for trace, history in zip(lines, rosenbrock_runs.values()):
        assert len(trace.x) == len(history.to_frame())
        assert trace.line.color == rule_color(history.rule)
        np.testing.assert_allclose(
            np.array(trace.y, dtype=float), history.to_frame()["loss"], equal_nan=True
        )
    stopped = [t for t in figure.data if t.mode == "markers"]
    assert [t.name for t in stopped] == ["sgd: diverged"]
    assert figure.layout.yaxis.type == "log"  # positive losses spanning decades
    assert figure.layout.xaxis.title.text == "iteration"


def test_loss_against_work_skips_runs_without_products(rosenbrock_runs):
    figure = loss_figure(rosenbrock_runs, x="curvature_products", metrics=("loss",))
    names = [t.name for t in figure.data if t.mode == "lines"]
    assert names == ["natural_gradient", "newton"]
    assert "sgd" in figure.layout.annotations[0].text
    timed = loss_figure(rosenbrock_runs, x="wall_time", metrics=("loss", "test_loss"))
    assert all("(test)" not in t.name for t in timed.data)  # no test set: skipped
    with pytest.raises(ValueError, match="x ="):
        loss_figure(rosenbrock_runs, x="epochs")
    with pytest.raises(ValueError, match="metric"):
        loss_figure(rosenbrock_runs, metrics=("acc",))


def test_test_loss_is_dashed_and_linear_scale_for_negative_losses(moons_runs):
    runs, _ = moons_runs
    figure = loss_figure(runs)
    names = [t.name for t in figure.data]
    assert "kfac (test)" in names and "sgd (test)" in names
    test = next(t for t in figure.data if t.name == "kfac (test)")
    assert test.line.dash == "dash"
    assert loss_figure(runs, log_y=False).layout.yaxis.type == "linear"


def test_hyperparameter_figure_rows(rosenbrock_runs):
    figure = hyperparameter_figure(rosenbrock_runs)
    by_axis = {}
    for trace in figure.data:
        by_axis.setdefault(trace.yaxis, []).append(trace.name)
    # λ and ρ: the curvature rules; α: every rule that records one.
    assert by_axis["y"] == ["natural_gradient", "newton"]
    assert by_axis["y2"] == ["natural_gradient", "newton"]
    assert "sgd" in by_axis["y3"]
    assert figure.layout.yaxis.type == "log"
    assert [a.text for a in figure.layout.annotations][:3] == [
        "damping λ",
        "reduction ratio ρ",
        "step size α",
    ]
    first = figure.data[0]
    assert len(array(first.x)) == len(rosenbrock_runs["natural_gradient"].to_frame())
