"""The Curvature page's helpers on real problems: layer names for the heatmaps,
the scale a network's heatmap takes, and the coverage map (its shortcut agrees with
the operators' own ``coverage()``; an uncovered LayerNorm is named)."""

import numpy as np
import pytest

import explorer as ex
from explorer.curvature.coverage import COVERAGE_WORDS
from explorer.plots import matrices_figure
from explorer.plots.matrices import BLANK_SHARE, FAINT, ROBUST_QUANTILE
from explorer.ui import curvature_view as cv


def test_digits_layers_are_named_by_module_path_and_class():
    problem = ex.problem("digits_mlp")
    first = 64 * 32 + 32  # the first nn.Linear's weight and bias
    assert cv.layer_blocks(problem) == (
        ("0 · Linear", slice(0, first)),
        ("2 · Linear", slice(first, first + 32 * 10 + 10)),
    )
    # a problem without an nn.Module keeps its parameters' own names
    rosenbrock = ex.problem("rosenbrock")
    assert [n for n, _ in cv.layer_blocks(rosenbrock)] == [
        n for n, _ in rosenbrock.blocks()
    ]


def test_a_network_hessian_heatmap_takes_the_scale_its_numbers_ask_for():
    problem = ex.problem("moons_mlp")  # P = 82: 2-16-2
    hessian = ex.curvature("hessian", problem, problem.theta0).dense()
    values = np.abs(hessian.numpy())
    nonzero = values[values > 0]
    robust = np.percentile(nonzero, 100 * ROBUST_QUANTILE)  # the signed range…
    bound = robust if values.max() > 2 * robust else values.max()
    share = float(np.mean(nonzero <= FAINT * bound))  # …and what it leaves ≈ 0
    assert share > BLANK_SHARE  # measured: 75% of its nonzero cells
    figure = matrices_figure(
        {"Hessian": hessian}, "auto", blocks=cv.layer_blocks(problem)
    )
    title = figure.layout.title.text
    assert f"log₁₀|C| colours (auto): signed, {share:.0%} of Hessian's" in title
    assert figure.layout.xaxis.ticktext == ("0 · Linear", "2 · Linear")
    assert figure.layout.xaxis.tickvals == ((0 + 47) / 2, (48 + 81) / 2)


def test_coverage_shortcut_agrees_with_every_operator():
    problem = ex.problem("moons_mlp", hidden=(4,), num_samples=40)
    for key in cv.applicable(problem):
        built = ex.curvature(key, problem, problem.theta0).coverage()
        assert cv.coverage_of(problem, key) == built, key


def test_kfac_leaves_a_layernorm_uncovered_and_the_table_says_so(layernorm_problem):
    problem = ex.problem(layernorm_problem.key)
    assert "kfac" in cv.applicable(problem)
    covered = {key: cv.coverage_of(problem, key) for key in ("hessian", "kfac")}
    assert covered["kfac"] == {
        "fc1.weight": "kronecker",
        "fc1.bias": "kronecker",
        "norm.weight": "none",
        "norm.bias": "none",
        "fc2.weight": "kronecker",
        "fc2.bias": "kronecker",
    }
    rows = {row["parameter"]: row for row in cv.coverage_rows(problem, covered)}
    assert rows["norm.weight"] == {
        "parameter": "norm.weight",
        "module": "LayerNorm",
        "shape": "4",
        "Hessian": "full",
        "K-FAC": "✗ not covered",
    }
    assert rows["fc1.weight"]["shape"] == "4 × 3"
    assert rows["fc1.weight"]["K-FAC"] == "Kronecker block"
    (warning,) = cv.coverage_warnings(covered)
    assert "K-FAC leaves 2 of 6 parameter tensors uncovered" in warning
    assert "not covered: norm.weight, norm.bias" in warning
    assert set(cv.COVERAGE_CELLS) == set(COVERAGE_WORDS)
    assert "none" not in {v.lower() for v in cv.COVERAGE_CELLS.values()}


def test_a_failing_curvature_reports_its_coverage_as_unknown(monkeypatch):
    problem = ex.problem("moons_mlp", hidden=(4,), num_samples=40)

    def broken(*args, **kwargs):
        raise RuntimeError("plugin exploded")

    monkeypatch.setattr(cv.ex, "curvature", broken)
    with pytest.raises(RuntimeError):
        cv.coverage_of(problem, "kfac")  # K-FAC must be built to be asked
    assert cv.coverage_of(problem, "diag_ggn") == dict.fromkeys(
        problem.param_names, "diagonal"
    )  # a diagonal one is answered by its tags alone
    notes = cv.coverage_warnings({"kfac": "RuntimeError: plugin exploded"})
    assert notes == [
        "**K-FAC**: its coverage is unknown (RuntimeError: plugin exploded)."
    ]
