"""Colours per rule, and the training-curve figures built from real histories."""

import numpy as np
import pytest
import torch

import explorer as ex
from explorer.plots import hyperparameter_figure, loss_figure
from explorer.plots.theme import (
    GRADIENT_COLOR,
    curvature_color,
    hashed_color,
    rule_color,
    run_styles,
)
from explorer.ui.theory import ANCHORS
from tests.plotly_json import array

BUILTIN_CURVATURES = [k for k, s in ex.CURVATURES.items() if s.source == "builtin"]
BUILTIN_RULES = list(ex.RULES)


def test_every_builtin_curvature_declares_a_distinct_colour():
    colours = {key: ex.CURVATURES[key].color for key in BUILTIN_CURVATURES}
    assert all(isinstance(c, str) and c.startswith("#") for c in colours.values())
    assert len(set(colours.values())) == len(colours), colours
    assert GRADIENT_COLOR not in colours.values()
    for key, colour in colours.items():
        assert curvature_color(key) == colour


def test_rules_share_their_curvatures_colours_and_unknown_keys_hash():
    for key in BUILTIN_RULES:
        spec = ex.RULES[key]
        expected = spec.color or ex.CURVATURES[spec.curvature].color
        assert rule_color(key) == expected, key
        if spec.color is None:  # an alias wears its curvature's colour
            assert rule_color(key) == curvature_color(spec.curvature)
    assert rule_color("natural_gradient") == ex.CURVATURES["fisher"].color
    assert rule_color("newton") == ex.CURVATURES["hessian"].color
    assert rule_color("kfac") == ex.CURVATURES["kfac"].color
    # rules with their own colour (first-order ones, and Hessian-free, which would
    # otherwise look like Gauss-Newton) are told apart from every other rule
    colours = [rule_color(key) for key in BUILTIN_RULES]
    assert len(set(colours)) == len(colours), dict(zip(BUILTIN_RULES, colours))
    # the generic rule takes the chosen curvature's colour, its own without one
    assert rule_color("precondition", "kfac") == ex.CURVATURES["kfac"].color
    assert rule_color("precondition", "diag_ggn") == ex.CURVATURES["diag_ggn"].color
    assert rule_color("precondition") == ex.RULES["precondition"].color
    assert rule_color("precondition", "a_plugin") == hashed_color("curvature:a_plugin")
    # unknown keys: deterministic, different, and not any declared colour
    assert rule_color("my_plugin_rule") == hashed_color("rule:my_plugin_rule")
    assert rule_color("my_plugin_rule") != rule_color("another_rule")
    assert curvature_color("user_curvature").startswith("hsl(")
    assert curvature_color("gradient") == GRADIENT_COLOR


def test_a_registered_curvature_brings_its_colour_and_anchor():
    @ex.register_curvature("t_coloured", reference="fisher", color="#123456", psd=True)
    def coloured(problem, theta, batch=None):
        return torch.eye(problem.num_params, dtype=theta.dtype)

    @ex.register_curvature("t_plain")
    def plain(problem, theta, batch=None):
        return torch.eye(problem.num_params, dtype=theta.dtype)

    try:
        assert curvature_color("t_coloured") == "#123456"
        assert rule_color("precondition", "t_coloured") == "#123456"
        assert ex.CURVATURES["t_coloured"].theory == ex.CURVATURES["fisher"].theory
        assert curvature_color("t_plain") == hashed_color("curvature:t_plain")
        assert ex.CURVATURES["t_plain"].theory in ANCHORS
    finally:
        ex.CURVATURES.unregister("t_coloured")
        ex.CURVATURES.unregister("t_plain")


def test_every_spec_links_an_existing_theory_section():
    for key, spec in ex.CURVATURES.items():
        assert spec.theory in ANCHORS, (key, spec.theory)
    for key, spec in ex.RULES.items():
        assert spec.theory in ANCHORS, (key, spec.theory)
    # facts that moved onto the specs from the pages' tables
    assert ex.RULES["natural_gradient"].theory == "fisher"
    assert ex.RULES["diag_natural_gradient"].theory == "kfac"
    assert ex.RULES["hessian_free"].theory == "updates"
    assert ex.CURVATURES["block_ggn"].theory == "kfac"


def test_runs_of_the_same_rule_get_different_dashes(rosenbrock_runs):
    runs = dict(rosenbrock_runs)
    runs["sgd again"] = runs["sgd"]
    styles = run_styles(runs)
    assert styles["sgd"][0] == styles["sgd again"][0] == ex.RULES["sgd"].color
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


def test_exact_zeros_do_not_force_a_linear_loss_axis():
    """Newton reaches Rosenbrock's minimum 0 exactly while SGD diverges (stopped
    once its loss grew a millionfold, 24 → 1.6e7): a linear axis would flatten
    every curve but SGD's (issue 12)."""
    import explorer as ex
    from explorer.plots.training import loss_figure

    runs = ex.compare("rosenbrock", ["sgd", "newton"], steps=50)
    losses = {label: min(h.metrics["loss"]) for label, h in runs.items()}
    assert losses["newton"] == 0.0 and max(runs["sgd"].metrics["loss"]) > 1e6
    assert runs["sgd"].status == "diverged"
    figure = loss_figure(runs)
    assert figure.layout.yaxis.type == "log"
    notes = [a.text for a in figure.layout.annotations]
    assert any("exactly 0" in text for text in notes), notes
