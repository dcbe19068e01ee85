"""The tour's generic figures (curves, bands, grids, models at a minimum) and the
check battery's figures, from small inputs."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import explorer as ex
from explorer import landscape as scape
from explorer import plots
from explorer.plots.check import (
    figure_fragment,
    generalized_figures,
    matrix_figures,
    quality_figures,
    race_figures,
    spectra_figures,
)
from explorer.plots.spectra import QUALITY_ROWS
from tests.plotly_json import array


def test_curves_figure_log_axes_gaps_and_bands():
    figure = plots.curves_figure(
        [
            plots.Curve(
                "mean",
                [1, 2, 4],
                [1.0, 0.0, 0.25],
                "#2ca02c",
                band=([0.5] * 3, [2] * 3),
            ),
            plots.reference_curve("bound", [1, 2, 4], [1.0, 0.5, 0.25]),
        ],
        title="t",
        x_title="k",
        y_title="error",
        log="xy",
    )
    band, mean, bound = figure.data
    assert band.name == "mean (band)" and band.fill == "toself" and not band.showlegend
    assert band.fillcolor == "rgba(44,160,44,0.18)"
    assert list(mean.y) == [1.0, None, 0.25]  # zero: a gap on a log axis
    assert mean.mode == "lines+markers" and bound.mode == "lines"
    assert bound.line.dash == "dash" and bound.line.color == plots.REFERENCE_COLOR
    assert figure.layout.xaxis.type == figure.layout.yaxis.type == "log"
    linear = plots.curves_figure(
        [plots.Curve("c", [0, 1], [-1.0, 1.0])], title="", x_title="", y_title=""
    )
    assert list(linear.data[0].y) == [-1.0, 1.0]
    assert linear.layout.yaxis.type == "linear"
    with pytest.raises(ValueError, match="log"):
        plots.curves_figure([], title="", x_title="", y_title="", log="z")


def test_grid_heatmaps_clip_to_a_shared_scale():
    values = np.array([[0.0, 1e-3], [math.inf, 10.0]])
    figure = plots.grid_heatmaps(
        {"a": values, "b": values / 10},
        [0.1, 1.0],
        [1e-4, 1.0],
        title="grid",
        x_title="lr",
        y_title="λ",
        quantity="h − h*",
        floor=1e-6,
        ceiling=1.0,
    )
    first, second = figure.data
    z = array(first.z)
    assert z[0, 0] == -6 and np.isnan(z[1, 0]) and z[1, 1] == 0  # floor, blank, cap
    assert (first.zmin, first.zmax) == (second.zmin, second.zmax) == (-6, 0)
    assert not first.showscale and second.showscale
    assert list(first.x) == ["0.1", "1"] and list(first.y) == ["0.0001", "1"]


def test_models_at_a_minimum_and_points_on_the_landscape():
    problem = ex.problem("linreg_2d", num_samples=50)
    solution = torch.linalg.lstsq(problem.inputs, problem.targets).solution[:, 0]
    models = scape.quadratic_models(problem, solution, ("fisher", "ef"))
    grid = scape.loss_grid(problem, resolution=10)
    figure = plots.contour_figure(
        grid,
        models=models,
        model_rise=0.1,
        points={"θ*": solution.tolist()},
    )
    names = [trace.name for trace in figure.data]
    assert names[1:] == [
        f"{models['fisher'].label} model: h(θ*) + 0.1",
        f"{models['ef'].label} model: h(θ*) + 0.1",
        "θ*",
    ]  # no centres: at a minimum they are θ* itself
    ellipse = figure.data[1]
    xs, ys = (
        np.array([v for v in vs if v is not None]) for vs in (ellipse.x, ellipse.y)
    )
    values = models["fisher"].evaluate(torch.tensor(np.stack([xs, ys], 1)))
    assert torch.allclose(values, torch.full_like(values, models["fisher"].value + 0.1))
    assert figure.data[-1].x == (float(solution[0]),)
    through = plots.model_traces(models)
    assert [t.name for t in through][::2] == ["model of fisher", "model of ef"]


def _point(step, ok=True, size=3):
    values = torch.arange(1.0, size + 1, dtype=torch.float64)
    metrics = {"step": step, **{name: 0.5 for name in QUALITY_ROWS}}
    return SimpleNamespace(
        step=step,
        ok=ok,
        eigenvalues=values,
        reference_eigenvalues=values * 2,
        generalized=values / 2,
        matrix=torch.diag(values),
        reference_matrix=torch.eye(size, dtype=torch.float64),
        row=lambda: metrics,
    )


def test_check_figures_read_a_result_through_its_attributes():
    runs = ex.compare("linreg_2d", ["sgd"], steps=2, device="cpu")
    problem = SimpleNamespace(
        description="linreg_2d (P = 3)",
        reference="fisher",
        num_params=3,
        points=(_point(0), _point(2), _point(4, ok=False)),
        baselines={"kfac": (_point(0), _point(2))},
        histories=runs,
    )
    result = SimpleNamespace(key="mine", problems=(problem,))
    ((caption, quality),) = quality_figures(result)
    assert caption == "linreg_2d (P = 3)"
    assert {t.name for t in quality.data} == {"mine", "kfac"}
    ((_, spectra),) = spectra_figures(result)
    assert "step 2" in spectra.layout.title.text  # the last point that worked
    assert {t.legendgroup for t in spectra.data} >= {"mine", "fisher", "kfac"}
    ((_, generalized),) = generalized_figures(result, damping=1e-3)
    assert "λ = 0.001" in generalized.layout.title.text
    captions = [caption for caption, _ in matrix_figures(result)]
    assert captions == [
        "linreg_2d (P = 3), step 2: C and R",
        "linreg_2d (P = 3), step 2: C − R",
    ]
    race = race_figures(result)
    assert [caption for caption, _ in race] == [
        "linreg_2d (P = 3): loss per iteration",
        "linreg_2d (P = 3): loss against wall time",
    ]
    first = figure_fragment(race[0][1], embed_script=True)
    second = figure_fragment(race[1][1], embed_script=False)
    assert len(first) > 1_000_000 > len(second) and "Plotly.newPlot" in second
