"""Spectra, matrices, landscapes, function space and HTML pages: trace names,
counts and lengths from small real inputs."""

import numpy as np
import pytest
import torch

import explorer as ex
from explorer import landscape as scape
from explorer import plots
from explorer import spectra as sp
from tests.plotly_json import array


@pytest.fixture(scope="module")
def moons_ops():
    problem = ex.problem("moons_mlp", hidden=(4,), num_samples=40)
    theta = problem.theta0 + 0.3
    return problem, {
        key: ex.curvature(key, problem, theta) for key in ("hessian", "ggn", "kfac")
    }


def test_spectrum_figure_shows_negative_eigenvalues(moons_ops):
    problem, ops = moons_ops
    spectra = {key: sp.dense_eigenpairs(op, vectors=False) for key, op in ops.items()}
    figure = plots.spectrum_figure(spectra)
    names = [t.name for t in figure.data]
    assert names[:2] == ["hessian", "hessian (λ < 0)"] and "ggn (λ < 0)" not in names
    assert "ggn (|λ| ≈ 0)" in names  # rounding noise of a PSD matrix, not curvature
    negative = figure.data[1]
    values = spectra["hessian"].eigenvalues.numpy()
    tiny = 1e-12 * np.abs(values).max()  # softmax's shift invariance: exact zeros
    assert len(negative.x) == int((values < -tiny).sum()) > 0
    assert (array(negative.y) > 0).all() and (array(negative.customdata) < 0).all()
    assert negative.marker.color == plots.curvature_color("hessian")
    assert figure.layout.yaxis.type == "log"
    assert (
        sum(len(t.x) for t in figure.data if t.legendgroup == "ggn")
        == problem.num_params
    )


def test_spectrum_figure_splits_top_and_bottom(moons_ops):
    _, ops = moons_ops
    op = ops["hessian"]
    ends = [sp.lanczos(op, 3, "largest"), sp.lanczos(op, 2, "smallest")]
    figure = plots.spectrum_figure({"hessian": ends}, reference_line=1.0)
    assert figure.layout.annotations[0].text == "largest eigenvalues"
    left = [t for t in figure.data if t.xaxis == "x"]
    right = [t for t in figure.data if t.xaxis == "x2"]
    assert sum(len(t.x) for t in left) == 3 and sum(len(t.x) for t in right) == 2
    assert max(array(right[0].x)) == op.size
    linear = plots.spectrum_figure({"h": op.dense().diagonal()}, scale="linear")
    assert len(linear.data) == 1 and len(linear.data[0].x) == op.size


def test_density_block_and_quality_figures(moons_ops):
    problem, ops = moons_ops
    densities = {key: sp.spectral_density(op, 2, 10) for key, op in ops.items()}
    figure = plots.density_figure(densities, num=50)
    assert [t.name.split(" ")[0] for t in figure.data] == list(ops)
    assert all(len(t.x) == 50 for t in figure.data)
    assert min(array(figure.data[0].x)) < 0  # the Hessian's negative part
    blocks = sp.block_spectra(ops["ggn"], k=3)
    strips = plots.block_spectra_figure(blocks, key="ggn")
    assert strips.data[0].name == "λ > 0" and len(strips.data[0].x) == 3 * len(
        problem.layers
    )
    quality = {
        "kfac": sp.approximation_quality(
            ops["kfac"], ex.curvature("fisher", problem, ops["kfac"].theta)
        )
    }
    bars = plots.quality_bars_figure(quality)
    assert len(bars.data) == 4 and bars.data[0].x == ("kfac",)
    frame = sp.quality_along_trajectory(
        problem, torch.stack([ops["kfac"].theta, problem.theta0]), "kfac", max_points=2
    )
    lines = plots.quality_figure({"kfac": frame})
    assert len(lines.data) == 5 and all(len(t.x) == 2 for t in lines.data)


def test_matrix_heatmaps_signed_log_pooled_and_differences(moons_ops):
    problem, ops = moons_ops
    hessian, ggn = ops["hessian"].dense(), ops["ggn"].dense()
    signed = plots.matrix_heatmap(hessian, "H", blocks=problem.blocks())
    trace = signed.data[0]
    assert trace.zmid == 0 and trace.zmin == -trace.zmax
    assert array(trace.z).shape == hessian.shape
    assert len(signed.layout.shapes) == 2 * (len(problem.blocks()) - 1)
    logged = plots.matrix_heatmap(hessian, "H", scale="log")
    np.testing.assert_allclose(array(logged.data[0].customdata), hessian.numpy())
    pooled = plots.matrix_heatmap(torch.eye(30, dtype=torch.float64), max_size=10)
    assert (
        array(pooled.data[0].z).shape == (10, 10)
        and "pooled 3×3" in pooled.layout.title.text
    )
    # Signed: a block's largest-|value| entry (the diagonal stays 1, not a grey 1/3);
    # log: its mean |entry| (3 ones among 9 cells).
    assert array(pooled.data[0].z)[0, 0] == 1.0 and array(pooled.data[0].z)[0, 1] == 0
    pooled_log = plots.matrix_heatmap(
        torch.eye(30, dtype=torch.float64), scale="log", max_size=10
    )
    assert array(pooled_log.data[0].customdata)[0, 0] == pytest.approx(1 / 3)
    diff = plots.difference_figure(ggn, hessian, ("G", "H"))
    np.testing.assert_allclose(array(diff.data[0].z), (ggn - hessian).numpy())
    rel = float(
        torch.linalg.matrix_norm(ggn - hessian) / torch.linalg.matrix_norm(hessian)
    )
    assert f"{rel:.3g}" in diff.layout.title.text
    side = plots.matrices_figure({"H": hessian, "G": ggn})
    assert len(side.data) == 2 and side.data[0].zmax == side.data[1].zmax
    with pytest.raises(ValueError, match="scale"):
        plots.matrix_heatmap(hessian, scale="abs")


def test_contour_figure_with_paths_field_models_and_animation(rosenbrock_runs):
    problem = ex.problem("rosenbrock")
    grid = scape.loss_grid(problem, resolution=30)
    field = scape.direction_field(problem, ["ggn"], damping=1e-3, resolution=4)
    models = scape.quadratic_models(problem, problem.theta0, ["ggn", "hessian"])
    figure = plots.contour_figure(
        grid, rosenbrock_runs, field=field, models=models, animate=True
    )
    kinds = [t.type for t in figure.data]
    assert kinds[0] == "contour"
    paths = figure.data[1:4]
    assert [t.name for t in paths] == ["sgd (diverged)", "natural_gradient", "newton"]
    for trace, run in zip(paths[1:], list(rosenbrock_runs.values())[1:]):
        np.testing.assert_allclose(array(trace.x), run.trajectory[:, 0].numpy())
    arrows = [
        t for t in figure.data if t.legendgroup and t.legendgroup.startswith("field:")
    ]
    assert [t.name for t in arrows] == ["−g (gradient)", "−(ggn + λI)⁻¹g"]
    curves = [t for t in figure.data if t.legendgroup == "model:hessian"]
    assert curves and "model of hessian" in curves[0].name
    steps = sorted(
        {s for run in rosenbrock_runs.values() for s in run.trajectory_steps}
    )
    assert [f.name for f in figure.frames] == [str(s) for s in steps]
    assert len(figure.frames[0].data) == 3 and list(figure.frames[0].traces) == [
        1,
        2,
        3,
    ]
    assert len(figure.layout.sliders[0].steps) == len(steps)
    assert np.isclose(array(figure.data[0].customdata), grid.values.numpy()).all()


def test_plane_and_interpolation_figures(moons_runs):
    runs, problem = moons_runs
    trajectories = [run.trajectory for run in runs.values()]
    plane = scape.pca_plane(trajectories)
    grid = scape.plane_loss_grid(problem, plane, resolution=6, paths=trajectories)
    figure = plots.plane_figure(plane, grid, runs)
    assert figure.data[0].type == "contour"
    paths = [t for t in figure.data if t.xaxis == "x" and t.type == "scatter"]
    distances = [t for t in figure.data if t.xaxis == "x2"]
    assert [t.name for t in paths] == list(runs)
    assert [t.name for t in distances] == [f"{label}: distance" for label in runs]
    first = runs["sgd"]
    assert len(distances[0].x) == len(first.trajectory_steps)
    line = scape.interpolate(problem, first.trajectory[0], first.trajectory[-1], num=7)
    inter = plots.interpolation_figure(line, ("start", "end"))
    assert [t.name for t in inter.data] == ["training loss", "test loss"]
    assert len(inter.data[0].x) == 7


def test_function_space_figures(moons_runs):
    runs, problem = moons_runs
    grids = {
        label: scape.decision_boundary(problem, run.trajectory[-1], resolution=8)
        for label, run in runs.items()
    }
    figure = plots.decision_boundary_figure(
        problem, grids, runs, background="kfac", steps={"sgd": 5}
    )
    assert figure.data[0].type == "heatmap"
    boundaries = [t for t in figure.data if t.type == "contour"]
    assert [t.name for t in boundaries] == ["sgd (step 5)", "kfac"]
    assert boundaries[1].line.color == plots.rule_color("kfac")
    assert [t.name for t in figure.data if t.type == "scatter"] == [
        "class 0 (training data)",
        "class 1 (training data)",
    ]
    kls = {label: scape.kl_along_run(problem, run) for label, run in runs.items()}
    kl = plots.kl_figure(kls, runs)
    assert [t.name for t in kl.data] == list(runs) and len(kl.data[0].x) == 5
    tanh = ex.problem("tiny_tanh")
    curves = {
        "a": scape.fitted_curve(
            tanh, torch.tensor([1.0, 1.0], dtype=torch.float64), num=9
        )
    }
    fitted = plots.fitted_curves_figure(tanh, curves)
    assert [t.name for t in fitted.data] == ["training data", "a"] and len(
        fitted.data[1].x
    ) == 9


def test_html_page_embeds_plotly_once(tmp_path, rosenbrock_runs):
    problem = ex.problem("rosenbrock")
    figures = plots.run_report(rosenbrock_runs, problem, resolution=20)
    assert list(figures)[:4] == [
        "Loss per iteration",
        "Loss against wall time",
        "Loss against curvature-vector products",
        "Damping, reduction ratio and step size",
    ]
    assert "Loss landscape and paths" in figures
    path = plots.write_html(figures, tmp_path / "page.html", title="Rosenbrock")
    text = path.read_text(encoding="utf-8")
    assert text.count("<h2>") == len(figures)
    assert text.count("Plotly.newPlot") == len(figures)
    assert "<script src=" not in text and len(text) > 1_000_000  # plotly.js inlined
    with pytest.raises(ValueError, match="at least one"):
        plots.figures_to_html({})


def test_write_report_for_the_run_commands(tmp_path, moons_runs):
    runs, problem = moons_runs
    path = plots.write_report(runs, tmp_path / "runs.html", problem)
    text = path.read_text(encoding="utf-8")
    assert "Curvature Explorer: moons_mlp" in text and "sgd: ok" in text
    assert "Paths in the PCA plane" in text and "Decision boundaries" in text
