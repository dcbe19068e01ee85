"""The Landscape page's figures: animation frames that keep the contours, play and
pause, sparse arrow fields, paths in every plane, and the 1-D line to a chosen run.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

import explorer as ex
from explorer import landscape as scape
from explorer import plots
from explorer.landscape import DirectionField
from explorer.plots.landscape import MAX_ARROWS_PER_AXIS
from explorer.server import views
from explorer.server.tasks import WorkerCache
from tests.plotly_json import array

PAUSE_ARGS = [
    [None],
    {
        "frame": {"duration": 0, "redraw": False},
        "mode": "immediate",
        "transition": {"duration": 0},
    },
]


def _apply(figure, frame) -> list[dict]:
    """The traces after Plotly.js applies ``frame``: each of its traces is merged
    into the figure's trace of the same index in ``frame.traces`` (all when None).
    """
    data = [copy.deepcopy(trace.to_plotly_json()) for trace in figure.data]
    indices = list(frame.traces) if frame.traces is not None else range(len(frame.data))
    for index, update in zip(indices, frame.data):
        data[index] = {**data[index], **update.to_plotly_json()}
    return data


def _arrows(trace) -> tuple[np.ndarray, np.ndarray]:
    """(starts, shafts) (K, 2) of an arrow trace: 7 entries per arrow (shaft, None,
    two-stroke head, None), see ``plots.common.arrow_segments``."""
    xs, ys = list(trace.x), list(trace.y)
    assert len(xs) % 7 == 0
    starts = np.array([[xs[k], ys[k]] for k in range(0, len(xs), 7)], float)
    tips = np.array([[xs[k + 1], ys[k + 1]] for k in range(0, len(xs), 7)], float)
    return starts, tips - starts


# ------------------------------------------------------------------ animation
def test_frames_keep_the_contour_and_reveal_the_paths(rosenbrock_runs):
    problem = ex.problem("rosenbrock")
    grid = scape.loss_grid(problem, resolution=20)
    field = scape.direction_field(problem, ["ggn"], damping=1e-3, resolution=4)
    figure = plots.contour_figure(grid, rosenbrock_runs, field=field, animate=True)
    assert figure.data[0].type == "contour"
    paths = list(range(1, 1 + len(rosenbrock_runs)))
    z = array(figure.data[0].z)
    assert figure.frames
    for frame in figure.frames:
        assert list(frame.traces) == paths  # never the contour (0) nor the arrows
        # Plotly.js replots the traces of a frame alone when their type is
        # animatable (SVG "scatter") and then removes the layer of every other
        # type in the subplot: the contour. WebGL traces are drawn by the frame's
        # full redraw instead, which keeps it.
        assert [t.type for t in frame.data] == ["scattergl"] * len(paths)
        assert [figure.data[i].type for i in frame.traces] == ["scattergl"] * len(paths)
        assert frame.layout.to_plotly_json() == {}
        after = _apply(figure, frame)
        assert len(after) == len(figure.data)
        assert after[0]["type"] == "contour"
        np.testing.assert_array_equal(array(after[0]["z"]), z)
        step = int(frame.name)
        for index, run in zip(paths, rosenbrock_runs.values()):
            thetas, steps = scape.finite_trajectory(run)
            upto = [i for i, s in enumerate(steps) if s <= step]
            np.testing.assert_allclose(
                array(after[index]["x"]), thetas[upto, 0].numpy()
            )
    for step in figure.layout.sliders[0].steps:
        assert step.args[1]["frame"]["redraw"] is True  # WebGL needs the redraw


def test_play_and_pause_buttons(rosenbrock_runs):
    grid = scape.loss_grid(ex.problem("rosenbrock"), resolution=8)
    figure = plots.contour_figure(grid, rosenbrock_runs, animate=True)
    (menu,) = figure.layout.updatemenus
    buttons = {button.label: button for button in menu.buttons}
    assert set(buttons) == {"▶ play", "⏸ pause"}
    play, pause = buttons["▶ play"], buttons["⏸ pause"]
    assert play.method == pause.method == "animate"
    assert play.args[0] is None  # all frames…
    assert play.args[1]["fromcurrent"] is True  # …from where the pause left them
    sent = json.loads(figure.to_json())["layout"]["updatemenus"][0]["buttons"]
    assert [b["args"] for b in sent if b["label"] == "⏸ pause"] == [PAUSE_ARGS]
    still = plots.contour_figure(grid, rosenbrock_runs)
    assert not still.frames and not still.layout.updatemenus
    assert {t.type for t in still.data[1:]} == {"scatter"}  # SVG when not animated


# ------------------------------------------------------------------- arrows
def _synthetic_field(nx: int, ny: int) -> DirectionField:
    """Directions of known angle x + 2y (and not of unit length)."""
    xs = torch.linspace(-1.0, 1.0, nx, dtype=torch.float64)
    ys = torch.linspace(-2.0, 2.0, ny, dtype=torch.float64)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    angle = points[:, 0] + 2 * points[:, 1]
    d = 3.0 * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
    return DirectionField(
        points=points,
        directions={"gradient": d, "fisher": -d, "ef": d.flip(1)},
        damping=0.0,
        xs=xs,
        ys=ys,
    )


@pytest.mark.parametrize(
    ("nx", "ny"), [(7, 7), (15, 15), (16, 9), (40, 101), (101, 101)]
)
def test_arrow_fields_are_sparse_and_regular_whatever_the_grid(nx, ny):
    field = _synthetic_field(nx, ny)
    traces = plots.field_traces(field)
    assert len(traces) == 3
    for trace, key in zip(traces, ("gradient", "fisher", "ef")):
        starts, shafts = _arrows(trace)
        assert len(starts) <= MAX_ARROWS_PER_AXIS**2
        columns, rows = np.unique(starts[:, 0]), np.unique(starts[:, 1])
        assert len(columns) <= MAX_ARROWS_PER_AXIS >= len(rows)
        assert len(starts) == len(columns) * len(rows)
        if nx <= MAX_ARROWS_PER_AXIS:
            assert len(columns) == nx  # nothing thinned when already sparse
        for kept in (columns, rows):  # evenly spaced
            if len(kept) > 2:
                np.testing.assert_allclose(np.diff(kept), np.diff(kept)[0])
        # every arrow starts at a grid point and points along its direction there
        d = field.directions[key].numpy()
        at = {tuple(np.round(p, 12)) for p in field.points.numpy()}
        assert all(tuple(np.round(p, 12)) in at for p in starts)
        index = [
            int(np.argmin(np.abs(field.points.numpy() - p).sum(1))) for p in starts
        ]
        cos = (shafts * d[index]).sum(1) / (
            np.linalg.norm(shafts, axis=1) * np.linalg.norm(d[index], axis=1)
        )
        np.testing.assert_allclose(cos, 1.0, atol=1e-12)
        spacing = min(
            np.diff(columns)[0] if len(columns) > 1 else 1.0,
            np.diff(rows)[0] if len(rows) > 1 else 1.0,
        )
        np.testing.assert_allclose(np.linalg.norm(shafts, axis=1), 0.8 * spacing)
        assert trace.opacity < 1 and trace.line.width <= 1


def test_only_the_chosen_fields_start_visible():
    field = _synthetic_field(5, 5)
    traces = plots.field_traces(field, visible=["fisher"])
    assert [t.visible for t in traces] == ["legendonly", True, "legendonly"]
    assert all(t.visible is True for t in plots.field_traces(field))


def test_the_landscape_view_shows_one_sparse_field_at_first():
    config = ex.RunConfig("logreg_2d", {}, "sgd", {}, steps=3).problem_config
    config = config.replace(device="cpu")
    runs = ex.compare("logreg_2d", ["sgd", "natural_gradient"], steps=3, device="cpu")
    figure, _ = views.two_parameter_figure(
        WorkerCache(), None, config, dict(runs), ("fisher", "ef"), (), (0, 0), 1e-6, 41
    )
    fields = [t for t in figure.data if (t.legendgroup or "").startswith("field:")]
    assert [t.legendgroup for t in fields] == [
        "field:gradient",
        "field:fisher",
        "field:ef",
    ]
    shown = [t.legendgroup for t in fields if t.visible in (None, True)]
    assert shown == ["field:fisher"]
    assert all(t.visible == "legendonly" for t in fields if t.legendgroup != shown[0])
    for trace in fields:
        assert len(_arrows(trace)[0]) <= MAX_ARROWS_PER_AXIS**2
    assert figure.data[0].type == "contour" and array(figure.data[0].z).shape == (
        41,
        41,
    )


# ------------------------------------------------------------------- planes
@pytest.fixture(scope="module")
def moons(moons_runs):
    runs, problem = moons_runs
    config = next(iter(runs.values())).config.problem_config.replace(device="cpu")
    worker = WorkerCache()
    assert torch.equal(worker.problem(config).theta0, problem.theta0)
    return runs, problem, config, worker


def test_the_eigenvector_plane_shows_every_path_on_finite_contours(moons):
    runs, problem, config, worker = moons
    theta = problem.theta0
    figures = views.plane_figures(
        worker, None, config, theta, runs, "eigenvectors", 7, 0
    )
    figure = figures["Plane of the top two Hessian eigenvectors"]
    contour = figure.data[0]
    assert contour.type == "contour"
    values = array(contour.customdata)
    assert values.shape == (7, 7) and np.isfinite(values).all()
    assert np.isfinite(array(contour.z)).all()
    paths = [t for t in figure.data if t.xaxis == "x" and t.name in runs]
    assert [t.name for t in paths] == list(runs)
    (x0, x1), (y0, y1) = figure.layout.xaxis.range, figure.layout.yaxis.range
    xs, ys = array(contour.x), array(contour.y)
    assert (x0, x1) == (xs[0], xs[-1]) and (y0, y1) == (ys[0], ys[-1])
    # an independent plane: the top two eigenvectors of the dense Hessian
    hessian = torch.func.hessian(problem.objective)(theta)
    eigenvalues, vectors = torch.linalg.eigh(hessian)
    assert float(eigenvalues[-2] - eigenvalues[-3]) > 1e-3 * float(eigenvalues[-1])
    top = vectors[:, [-1, -2]].T  # (2, P)
    signs = []
    for trace, run in zip(paths, runs.values()):
        px, py = array(trace.x), array(trace.y)
        assert len(px) == len(run.trajectory) and np.isfinite(px).all()
        assert ((x0 <= px) & (px <= x1) & (y0 <= py) & (py <= y1)).all()
        reference = ((run.trajectory - theta) @ top.T).numpy()  # orthonormal basis
        signs = np.sign((np.stack([px, py], 1) * reference).sum(0))
        np.testing.assert_allclose(np.stack([px, py], 1), signs * reference, atol=1e-8)
    # the contour is the loss on that plane
    basis = torch.as_tensor(signs).unsqueeze(1) * top
    for i, j in ((0, 0), (3, 5), (6, 2)):
        point = theta + torch.tensor([xs[j], ys[i]], dtype=torch.float64) @ basis
        assert values[i, j] == pytest.approx(float(problem.objective(point)), rel=1e-8)
    distances = [t for t in figure.data if t.xaxis == "x2"]
    assert [t.name for t in distances] == [f"{label}: distance" for label in runs]
    assert all(np.isfinite(array(t.y)).all() for t in distances)


def test_the_random_plane_shows_the_paths_in_its_unit_box(moons):
    runs, problem, config, worker = moons
    figures = views.plane_figures(
        worker, None, config, problem.theta0, runs, "random", 5, 0
    )
    figure = figures["Random filter-normalized plane"]
    xs, ys = array(figure.data[0].x), array(figure.data[0].y)
    assert xs[0] <= -1 and xs[-1] >= 1 and ys[0] <= -1 and ys[-1] >= 1
    assert [t.name for t in figure.data if t.name in runs] == list(runs)
    assert [t.name for t in figure.data if t.xaxis == "x2"] == [
        f"{label}: distance" for label in runs
    ]
    alone = views.plane_figures(
        worker, None, config, problem.theta0, {}, "random", 5, 0
    )
    (figure,) = alone.values()  # no runs: no line, no empty distance panel
    assert [t.type for t in figure.data] == ["contour"]
    assert "xaxis2" not in figure.to_plotly_json()["layout"]


# --------------------------------------------------------------------- line
def _line_end(figure) -> tuple[float, float]:
    (train,) = [t for t in figure.data if t.name == "training loss"]
    alphas, losses = array(train.x), array(train.y)
    return float(losses[alphas == 0.0][0]), float(losses[alphas == 1.0][0])


def test_the_line_goes_to_the_chosen_runs_end(moons):
    runs, problem, config, worker = moons
    first, second = list(runs)
    ends = {}
    for chosen in (first, second):
        figures = views.plane_figures(
            worker, None, config, problem.theta0, runs, "pca", 4, 0, line_to=chosen
        )
        lines = [name for name in figures if name.startswith("From θ₀")]
        assert lines == [f"From θ₀ to the end of {chosen}"]
        start, end = _line_end(figures[lines[0]])
        final = runs[chosen].trajectory[-1]
        assert start == pytest.approx(
            float(problem.objective(problem.theta0)), rel=1e-12
        )
        assert end == pytest.approx(float(problem.objective(final)), rel=1e-12)
        ends[chosen] = end
    assert ends[first] != pytest.approx(ends[second], rel=1e-6)  # really two lines
    default = views.plane_figures(
        worker, None, config, problem.theta0, runs, "pca", 4, 0
    )
    assert f"From θ₀ to the end of {first}" in default
