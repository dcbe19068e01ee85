"""Network heatmaps read by layer: block boundaries and layer names on the axes,
and the log-magnitude scale chosen, from the numbers, where a signed scale would
draw a blank square. Expected values are computed here with NumPy from the same
matrices, then read back from the figure JSON."""

import numpy as np
import pytest
import torch

from explorer import plots
from explorer.plots.matrices import (
    BLANK_SHARE,
    FAINT,
    LOG_QUANTILE,
    ROBUST_QUANTILE,
    choose_scale,
)
from tests.plotly_json import array

BLOCKS = (("0 · Linear", slice(0, 40)), ("2 · Linear", slice(40, 60)))


def network_like(seed: int = 0) -> torch.Tensor:
    """60 × 60, symmetric: the first layer's block and the cross terms ~1e-3, the
    output layer's block ~1 (a network Hessian's usual shape)."""
    generator = np.random.default_rng(seed)
    values = generator.standard_normal((60, 60)) * 1e-3
    values[40:, 40:] = generator.standard_normal((20, 20))
    return torch.from_numpy((values + values.T) / 2)


def blank_share(matrix: np.ndarray) -> float:
    """The share of nonzero entries a signed scale draws within FAINT of 0, with
    that scale's robust range (the 99th percentile of the nonzero |entries| when
    the largest is more than twice it)."""
    magnitudes = np.abs(matrix[matrix != 0])
    bound = magnitudes.max()
    robust = np.percentile(magnitudes, 100 * ROBUST_QUANTILE)
    if bound > 2 * robust:
        bound = robust
    return float(np.mean(magnitudes <= FAINT * bound))


def test_a_loud_output_layer_gets_the_log_scale_and_says_why():
    matrix = network_like()
    share = blank_share(matrix.numpy())
    assert share > BLANK_SHARE  # the first layer's 1e-3 entries look like 0
    figure = plots.matrices_figure(
        {"H": matrix, "G": 2 * matrix}, "auto", blocks=BLOCKS
    )
    spec = figure.to_plotly_json()
    title = spec["layout"]["title"]["text"]
    assert f"log₁₀|C| colours (auto): signed, {share:.0%} of H's nonzero cells" in title
    first = spec["data"][0]
    # log₁₀(|C| ÷ max|C|), from the 1st percentile of |C| above round-off
    relative = np.abs(matrix.numpy()) / np.abs(matrix.numpy()).max()
    floor = np.quantile(relative[relative > 1e-10], LOG_QUANTILE)
    assert first["zmin"] == pytest.approx(np.log10(floor))
    np.testing.assert_allclose(
        array(first["z"]), np.log10(np.maximum(relative, floor)), rtol=1e-12
    )
    assert "zmid" not in first  # no diverging midpoint: a sequential scale
    # asked for signed, it is signed, and the figure says so and what to try
    signed = plots.matrices_figure({"H": matrix}, "signed", blocks=BLOCKS)
    signed_title = signed.layout.title.text
    assert "signed colours" in signed_title and "(auto)" not in signed_title
    assert "try the log scale" in signed_title
    assert signed.data[0].zmid == 0


def test_layers_are_named_on_the_axes_with_their_boundaries():
    matrix = network_like()
    figure = plots.matrices_figure({"H": matrix, "G": matrix}, "auto", blocks=BLOCKS)
    layout = figure.to_plotly_json()["layout"]
    centres = [(0 + 39) / 2, (40 + 59) / 2]
    for axis in ("xaxis", "xaxis2", "yaxis", "yaxis2"):
        assert layout[axis]["tickvals"] == centres, axis
        assert layout[axis]["ticktext"] == ["0 · Linear", "2 · Linear"], axis
    # row names once, left of the first column
    assert layout["yaxis"]["showticklabels"] and not layout["yaxis2"]["showticklabels"]
    assert layout["xaxis"]["title"]["text"] == "layer (parameter blocks)"
    # one vertical and one horizontal line per panel at the boundary 39 | 40
    lines = [(s["type"], s.get("x0"), s.get("y0")) for s in layout["shapes"]]
    assert len(lines) == 4
    assert sorted({s.get("x0") for s in layout["shapes"] if s["x0"] == s["x1"]}) == [
        39.5
    ]


def test_structural_zeros_and_small_matrices_stay_signed():
    """Exact zeros are structure (a block-diagonal or diagonal matrix), not a
    washed-out bulk; a matrix of ≤ 16 parameters is read entry by entry."""
    generator = np.random.default_rng(2)
    block = np.zeros((60, 60))
    block[:40, :40] = generator.uniform(0.5, 1.0, (40, 40))
    block[40:, 40:] = generator.uniform(0.5, 1.0, (20, 20))
    assert np.mean(block == 0) > 0.4 and blank_share(block) == 0.0
    choice = choose_scale({"K-FAC": block})
    assert (choice.scale, choice.washed_out) == ("signed", {})
    figure = plots.matrices_figure({"K-FAC": torch.from_numpy(block)}, "auto")
    assert "signed colours (auto)" in figure.layout.title.text
    small = network_like().numpy()[:16, :16].copy()
    small[12:, 12:] = 1.0  # one loud 4 × 4 block among 1e-3 entries
    assert blank_share(small) > BLANK_SHARE
    assert choose_scale({"H": small}).scale == "signed"
    # a panel at round-off next to the others has no say either
    tiny = choose_scale({"H": block, "R": network_like().numpy() * 1e-14})
    assert tiny.scale == "signed" and "R" not in tiny.blank


def test_one_matrix_heatmap_takes_auto_too():
    matrix = network_like()
    figure = plots.matrix_heatmap(matrix, "H", "auto", blocks=BLOCKS)
    assert "log₁₀|C| colours (auto)" in figure.layout.title.text
    assert figure.layout.xaxis.ticktext == ("0 · Linear", "2 · Linear")
    assert figure.layout.yaxis.title.text == "layer (parameter blocks) (row)"
    with pytest.raises(ValueError, match="auto, signed, log"):
        plots.matrices_figure({"H": matrix}, "linear")


def test_pooled_cells_sit_at_their_blocks_centres_so_boundaries_fall_on_edges():
    matrix = torch.eye(450, dtype=torch.float64)
    blocks = (("a", slice(0, 300)), ("b", slice(300, 450)))
    figure = plots.matrix_heatmap(matrix, "I", "signed", blocks=blocks, max_size=150)
    x = array(figure.data[0].x)
    assert x[:3].tolist() == [1.0, 4.0, 7.0]  # 3 × 3 blocks: centres 1, 4, 7
    # cell 100 covers parameters 300..302: its left edge is the boundary at 299.5
    assert x[100] - 1.5 == figure.layout.shapes[0].x0 == 299.5
    assert "rows ≈" in figure.data[0].hovertemplate
