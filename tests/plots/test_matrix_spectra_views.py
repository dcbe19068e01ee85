"""The Curvature page's figures as a reader sees them: colour ranges that show the
bulk of a heavy-tailed matrix, notes instead of blank squares, identical spectra
named, whole-number ranks, rendered titles, full log-tick labels and titles that
clear the panel titles. Numbers are compared with independent NumPy references."""

import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

import explorer as ex
from explorer import plots
from explorer import spectra as sp
from explorer.plots.curves import Curve, curves_figure, grid_heatmaps
from explorer.plots.matrices import FAINT, ROBUST_QUANTILE
from explorer.plots.theme import SUBPLOT_TITLE_LINE, TITLE_LINE, apply_layout
from tests.plotly_json import array


def heavy_tailed(size: int, seed: int = 0) -> torch.Tensor:
    """A symmetric matrix of N(0, 1) entries with six entries of 10⁴ (a few huge
    curvatures among many moderate ones, as in a network's GGN)."""
    generator = np.random.default_rng(seed)
    values = generator.standard_normal((size, size))
    values = (values + values.T) / np.sqrt(2)
    for i, j in ((0, 0), (1, 1), (2, 5)):
        values[i, j] = values[j, i] = 1e4
    return torch.from_numpy(values)


def neutral_fraction(trace) -> float:
    """Fraction of cells drawn within FAINT of the colour range from the neutral
    colour (zmid), read from the figure's z and zmin/zmax."""
    z = array(trace.z)
    half = (trace.zmax - trace.zmin) / 2
    return float(np.mean(np.abs(z - trace.zmid) <= FAINT * half))


# ----------------------------------------------------------------- 1. colours
def test_a_few_huge_entries_do_not_wash_out_a_signed_heatmap():
    matrix = heavy_tailed(300)
    figure = plots.matrix_heatmap(matrix, "G")
    trace = figure.data[0]
    magnitudes = np.abs(matrix.numpy()).ravel()
    expected = np.percentile(magnitudes[magnitudes > 0], 100 * ROBUST_QUANTILE)
    assert trace.zmax == pytest.approx(expected) and trace.zmin == -trace.zmax
    # Scaled by max|C| = 1e4, every N(0, 1) entry would be drawn neutral.
    assert np.mean(magnitudes <= FAINT * magnitudes.max()) > 0.999
    assert neutral_fraction(trace) < 0.15
    # The reader is told: the colour bar's ends and title, and the figure title.
    saturated = int((magnitudes > expected).sum())
    assert trace.colorbar.ticktext[0].startswith("≤") and "saturated" in (
        trace.colorbar.title.text
    )
    assert trace.colorbar.ticktext[-1].startswith("≥")
    assert f"{saturated:,} of {magnitudes.size:,} cells saturate" in (
        figure.layout.title.text
    )


def test_a_mild_tail_keeps_the_full_range_and_says_nothing():
    generator = np.random.default_rng(1)
    matrix = torch.from_numpy(generator.uniform(-1, 1, (40, 40)))
    trace = plots.matrix_heatmap(matrix, "U").data[0]
    assert trace.zmax == pytest.approx(float(matrix.abs().max()))
    assert trace.colorbar.ticktext is None and "saturated" not in str(
        trace.colorbar.title.text
    )


def test_large_matrices_are_pooled_by_their_largest_entry_with_a_note():
    matrix = heavy_tailed(450)  # three times max_size: 3 × 3 blocks
    figure = plots.matrix_heatmap(matrix, "G", max_size=150)
    z = array(figure.data[0].z)
    blocks = matrix.numpy().reshape(150, 3, 150, 3).transpose(0, 2, 1, 3)
    blocks = blocks.reshape(150, 150, 9)
    reference = np.take_along_axis(
        blocks, np.abs(blocks).argmax(axis=2)[..., None], axis=2
    )[..., 0]
    np.testing.assert_array_equal(z, reference)
    assert "pooled 3×3" in figure.layout.title.text
    assert "largest-|value| entry" in figure.data[0].hovertemplate
    # Mean pooling would cancel the signed entries towards grey; this does not.
    assert neutral_fraction(figure.data[0]) < 0.05
    log = plots.matrix_heatmap(matrix, "G", scale="log", max_size=150)
    np.testing.assert_allclose(array(log.data[0].customdata), np.abs(blocks).mean(2))


def test_matrices_figure_panels_use_their_own_robust_range():
    tailed, mild = heavy_tailed(120), torch.eye(120, dtype=torch.float64)
    figure = plots.matrices_figure({"tailed": tailed, "mild": mild})
    first, second = figure.data
    magnitudes = np.abs(tailed.numpy()).ravel()
    bound = np.percentile(magnitudes[magnitudes > 0], 100 * ROBUST_QUANTILE)
    # Drawn in units of the panel's range, hover in the matrix's own units.
    np.testing.assert_allclose(array(first.z) * bound, tailed.numpy())
    np.testing.assert_allclose(array(first.customdata), tailed.numpy())
    assert (first.zmin, first.zmax) == (second.zmin, second.zmax) == (-1.0, 1.0)
    assert neutral_fraction(first) < 0.15
    titles = [a.text for a in figure.layout.annotations]
    assert "cells saturate" in titles[0] and "saturate" not in titles[1]
    shared = plots.matrices_figure({"tailed": tailed, "mild": mild}, shared_scale=True)
    assert shared.data[0].zmax == shared.data[1].zmax == pytest.approx(bound)


def test_a_bulk_far_below_the_largest_block_suggests_the_log_scale():
    matrix = torch.full((60, 60), 1e-3, dtype=torch.float64)
    matrix[50:, 50:] = 1.0  # one layer's block 1000× the rest (a network Hessian)
    figure = plots.matrix_heatmap(matrix, "H")
    assert neutral_fraction(figure.data[0]) > 0.9  # the truth on a linear scale…
    assert "log scale" in figure.layout.title.text  # …and the way to see the rest


# ------------------------------------------------------------- 2. differences
def test_identical_matrices_give_a_note_not_a_grey_square():
    problem = ex.problem("moons_mlp", hidden=(4,), num_samples=40)
    theta = problem.theta0 + 0.3
    fisher = ex.curvature("fisher", problem, theta).dense()
    figure = plots.difference_figure(fisher, fisher.clone(), ("ggn", "fisher"))
    assert not any(isinstance(t, go.Heatmap) for t in figure.data)
    (note,) = figure.layout.annotations
    assert "identical to fisher" in note.text and "= 0" in note.text
    # The title still ends with the relative Frobenius error the page reads.
    assert figure.layout.title.text.endswith("‖fisher‖<sub>F</sub> = 0)")
    assert figure.layout.height <= 200


def test_round_off_differences_are_stated_not_drawn():
    generator = torch.Generator().manual_seed(0)
    reference = torch.randn(30, 30, dtype=torch.float64, generator=generator)
    noise = 1e-16 * torch.randn(30, 30, dtype=torch.float64, generator=generator)
    figure = plots.difference_figure(reference + noise, reference, ("C", "R"))
    assert not figure.data
    worst = float(((reference + noise) - reference).abs().max())
    assert 0 < worst < 1e-14
    text = figure.layout.annotations[0].text
    assert "round-off" in text and f"max |C − R| = {worst:.2g}" in text
    # The same size of difference in float32 matrices is far below their round-off;
    # 1e-3 of the largest entry is not, and is drawn.
    single = reference.float()
    assert not plots.difference_figure(single + 1e-7, single).data
    real = plots.difference_figure(reference + 1e-3 * reference.abs().max(), reference)
    assert isinstance(real.data[0], go.Heatmap)


# ----------------------------------------------------------------- 3. spectra
def test_identical_spectra_are_named_in_the_legend():
    generator = np.random.default_rng(2)
    fisher = np.sort(generator.exponential(size=12))
    spectra = {
        "fisher": fisher,
        "ggn": fisher * (1 + 1e-13),  # equal to round-off
        "hessian": fisher - 0.5,  # different (and indefinite)
    }
    figure = plots.spectrum_figure(spectra)
    names = {t.legendgroup: [] for t in figure.data}
    for trace in figure.data:
        names[trace.legendgroup].append(trace.name)
    assert names["ggn"] and all("identical to fisher" in n for n in names["ggn"])
    assert not any("identical" in n for n in names["fisher"] + names["hessian"])
    # The twin is drawn as open rings larger than the markers it would hide.
    ring = next(t for t in figure.data if t.legendgroup == "ggn")
    first = next(t for t in figure.data if t.legendgroup == "fisher")
    assert ring.marker.symbol.endswith("-open") and ring.marker.size > first.marker.size
    linear = plots.spectrum_figure(spectra, scale="linear")
    assert "identical to fisher" in linear.data[1].name
    assert "identical" not in linear.data[2].name


def test_fisher_and_ggn_spectra_of_a_matching_likelihood_are_identical():
    problem = ex.problem("moons_mlp", hidden=(4,), num_samples=40)
    theta = problem.theta0 + 0.3
    spectra = {
        key: sp.dense_eigenpairs(ex.curvature(key, problem, theta), vectors=False)
        for key in ("fisher", "ggn", "hessian")
    }
    figure = plots.spectrum_figure(spectra)
    legend = [t.name for t in figure.data if t.showlegend is not False]
    assert "ggn, identical to fisher" in legend
    assert not any("hessian" in n and "identical" in n for n in legend)


# ------------------------------------------------------------------- 4. ranks
def test_rank_axes_have_whole_number_ticks():
    few = plots.spectrum_figure({"ggn": np.array([3.0, 2.0, 1.0])})
    assert few.layout.xaxis.tickformat == "d" and few.layout.xaxis.dtick == 1
    many = plots.spectrum_figure({"ggn": np.linspace(1, 50, 50)})
    assert many.layout.xaxis.tickformat == "d"
    assert many.layout.xaxis.dtick is None  # Plotly's own ticks are ≥ 1 apart here
    problem = ex.problem("moons_mlp", hidden=(4,), num_samples=40)
    op = ex.curvature("hessian", problem, problem.theta0 + 0.3)
    ends = [sp.lanczos(op, 3, "largest"), sp.lanczos(op, 2, "smallest")]
    split = plots.spectrum_figure({"hessian": ends})
    for axis in (split.layout.xaxis, split.layout.xaxis2):
        assert axis.tickformat == "d" and axis.dtick == 1


# ------------------------------------------------------------------ 5. titles
def _texts(figure: go.Figure) -> list[str]:
    """Every title, axis title, colour-bar title and annotation of a figure."""
    layout = figure.layout
    texts = [layout.title.text]
    texts += [a.title.text for a in (*figure.select_xaxes(), *figure.select_yaxes())]
    texts += [a.text for a in layout.annotations]
    texts += [t.colorbar.title.text for t in figure.data if isinstance(t, go.Heatmap)]
    texts += [t.name for t in figure.data]
    return [t for t in texts if t]


#: TeX that Plotly shows verbatim: x_{…}, x^{…}, \commands, ‖·‖_F and one-letter
#: subscripts such as d_C or θ_t (not keys such as fisher_mc).
TEX = re.compile(
    r"_\{|\^\{|\\[a-zA-Z]|[‖)\]]_[A-Za-z]|(?<![\w])[A-Za-zα-ω]_[A-Za-z0-9](?!\w)"
)


def test_titles_are_unicode_and_html_not_tex():
    problem = ex.problem("moons_mlp", hidden=(4,), num_samples=40)
    theta = problem.theta0 + 0.3
    ops = {k: ex.curvature(k, problem, theta) for k in ("hessian", "ggn", "kfac")}
    hessian, ggn = ops["hessian"].dense(), ops["ggn"].dense()
    spectra = {k: sp.dense_eigenpairs(op, vectors=False) for k, op in ops.items()}
    quality = sp.approximation_quality(
        ops["kfac"], ex.curvature("fisher", problem, theta)
    )
    frame = pd.DataFrame(
        {"step": [0, 1], **{c: [0.5, 0.25] for c in plots.spectra.QUALITY_ROWS}}
    )
    figures = [
        plots.matrix_heatmap(hessian, "H"),
        plots.matrix_heatmap(hessian, "H", scale="log", max_size=10),
        plots.matrices_figure({"H": hessian, "G": ggn}),
        plots.difference_figure(ggn, hessian, ("G", "H")),
        plots.difference_figure(ggn, ggn.clone(), ("G", "G")),
        plots.spectrum_figure(spectra),
        plots.density_figure(
            {k: sp.spectral_density(op, 2, 10) for k, op in ops.items()}, num=20
        ),
        plots.block_spectra_figure(sp.block_spectra(ops["ggn"], k=2), key="ggn"),
        plots.quality_figure({"kfac": frame}),
        plots.quality_bars_figure({"kfac": quality}),
        curves_figure(
            [Curve("a", [1, 2], [1, 2])], title="t", x_title="x", y_title="y"
        ),
        grid_heatmaps(
            {"a": np.ones((2, 2))},
            [1, 2],
            [1, 2],
            title="t",
            x_title="x",
            y_title="y",
            quantity="q",
            floor=1e-3,
            ceiling=10,
        ),
    ]
    texts = [text for figure in figures for text in _texts(figure)]
    assert texts and not [t for t in texts if TEX.search(t)]
    assert any("<sub>F</sub>" in t for t in texts)  # ‖C − R‖_F, rendered by Plotly
    for tex in ("‖C − R‖_F", "θ_{t+1}", "cos∠(d_C, d_R)", "θ_t", r"\lambda"):
        assert TEX.search(tex), tex  # the pattern finds what it must…
    assert not TEX.search("fisher_mc (λ < 0)")  # …and leaves keys alone


# -------------------------------------------------------------- 6. log ticks
def test_log_axes_label_full_values_not_lone_digits(rosenbrock_runs):
    """Plotly labels intermediate log ticks with their first digit ("2" for 20)
    unless told otherwise: every log axis built through the theme is told."""
    figures = [
        curves_figure(
            [Curve("a", [1, 30], [0.2, 5.0])],
            title="t",
            x_title="x",
            y_title="y",
            log="xy",
        ),
        plots.loss_figure(rosenbrock_runs),
        plots.spectrum_figure({"ggn": np.array([30.0, 2.0, 0.5])}, log_x=True),
        plots.hyperparameter_figure(rosenbrock_runs),
    ]
    axes = [
        axis
        for figure in figures
        for axis in (*figure.select_xaxes(), *figure.select_yaxes())
        if axis.type == "log"
    ]
    assert len(axes) >= 5
    for axis in axes:
        assert axis.minorloglabels == "complete"  # 20, not "2"
        assert axis.exponentformat == "power"  # 10⁻⁵, not 10µ
    own = apply_layout(go.Figure(), yaxis={"type": "log", "exponentformat": "e"})
    assert own.layout.yaxis.exponentformat == "e"  # a builder's choice stays


# ---------------------------------------------------------------- 7. headroom
def test_the_title_clears_the_panel_titles():
    matrix = torch.eye(4, dtype=torch.float64)
    figures = {
        "matrices": plots.matrices_figure({"A": matrix, "B": 2 * matrix}),
        "quality": plots.quality_figure(
            {
                "k": pd.DataFrame(
                    {"step": [0], **{c: [1.0] for c in plots.spectra.QUALITY_ROWS}}
                )
            }
        ),
    }
    for name, figure in figures.items():
        layout = figure.layout
        top = [a for a in layout.annotations if a.y == 1.0 and a.yref == "paper"]
        lines = max(a.text.count("<br>") + 1 for a in top)
        # Panel titles rise from the top of the plot area, 16 px font with leading;
        # the title's bottom sits above them and its top inside the margin.
        panel_height = lines * 1.2 * top[0].font.size
        assert layout.title.yref == "paper" and layout.title.yanchor == "bottom"
        assert layout.title.pad.b >= panel_height, name
        assert layout.margin.t >= max(80, layout.title.pad.b + TITLE_LINE), name
        assert layout.title.pad.b == SUBPLOT_TITLE_LINE * lines + 10
    plain = plots.spectrum_figure({"ggn": np.array([3.0, 1.0])}, scale="linear")
    assert plain.layout.title.yref is None  # one line, no panels: Plotly's place


def test_the_matrix_grid_hides_its_unused_cells():
    """Five matrices on a grid of six: the sixth cell was an empty panel."""
    matrices = {f"m{i}": torch.eye(4, dtype=torch.float64) * (i + 1) for i in range(5)}
    figure = plots.matrices_figure(matrices)
    layout = figure.to_plotly_json()["layout"]
    axes = sorted(k for k in layout if re.fullmatch(r"xaxis\d*", k))
    used = {trace.xaxis for trace in figure.data}
    assert len(axes) > len(used) == 5
    for name in axes:
        ref = "x" + name[len("xaxis") :]
        shown = layout[name].get("visible", True)
        assert shown == (ref in used), name
