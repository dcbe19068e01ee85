"""Heatmaps of curvature matrices: signed (diverging) or log-magnitude, and differences."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import Tensor

from explorer.plots.common import NUMBER
from explorer.plots.theme import DIVERGING, SEQUENTIAL, apply_layout

#: Matrices larger than this are average-pooled for display (the browser's limit).
MAX_CELLS = 400


def pool(matrix: Tensor, max_size: int = MAX_CELLS) -> tuple[np.ndarray, int]:
    """Average-pools (P, P) into at most max_size² cells; returns (array, factor)."""
    matrix = matrix.detach().double().cpu()
    size = matrix.shape[0]
    factor = max(1, math.ceil(size / max_size))
    if factor == 1:
        return matrix.numpy(), 1
    padded_size = math.ceil(size / factor) * factor
    padded = torch.full((padded_size, padded_size), float("nan"), dtype=torch.float64)
    padded[:size, :size] = matrix
    blocks = padded.view(padded_size // factor, factor, padded_size // factor, factor)
    return torch.nanmean(blocks, dim=(1, 3)).numpy(), factor


def _check_scale(scale: str) -> str:
    if scale not in ("signed", "log"):
        raise ValueError(f"scale = {scale!r} must be 'signed' or 'log'")
    return scale


def heatmap_trace(
    matrix: Tensor,
    scale: str = "signed",
    *,
    limit: float | None = None,
    floor: float | None = None,
    max_size: int = MAX_CELLS,
    name: str = "",
    showscale: bool = True,
) -> tuple[go.Heatmap, int]:
    """One heatmap trace and the pooling factor used.

    ``"signed"``: a diverging scale centred at zero, symmetric ±``limit``
    (default max|M|). ``"log"``: log₁₀|M| from ``floor`` (default max|M|·1e-10) up;
    hover always shows the signed value.
    """
    _check_scale(scale)
    values, factor = pool(matrix, max_size)
    size = values.shape[0]
    index = np.arange(size) * factor
    magnitude = float(np.nanmax(np.abs(values))) if values.size else 0.0
    hover = (
        f"{name}<br>row %{{y}}, column %{{x}}<br>value %{{customdata{NUMBER}}}"
        + (f"<br>(mean of {factor}×{factor} cells)" if factor > 1 else "")
        + "<extra></extra>"
    )
    if scale == "signed":
        bound = limit if limit is not None else (magnitude or 1.0)
        trace = go.Heatmap(
            z=values,
            x=index,
            y=index,
            customdata=values,
            colorscale=DIVERGING,
            zmid=0.0,
            zmin=-bound,
            zmax=bound,
            colorbar={"title": "value"},
            hovertemplate=hover,
            showscale=showscale,
            name=name,
        )
    else:
        low = floor if floor is not None else (magnitude or 1.0) * 1e-10
        logs = np.log10(np.maximum(np.abs(values), low))
        trace = go.Heatmap(
            z=logs,
            x=index,
            y=index,
            customdata=values,
            colorscale=SEQUENTIAL,
            zmin=math.log10(low),
            colorbar={"title": "log₁₀|value|"},
            hovertemplate=hover,
            showscale=showscale,
            name=name,
        )
    return trace, factor


def _block_lines(figure: go.Figure, blocks, row=None, col=None) -> None:
    kwargs = {"row": row, "col": col} if row is not None else {}
    for _, span in blocks or ():
        edge = span.start - 0.5
        if edge > 0:
            figure.add_vline(x=edge, line={"color": "#444", "width": 1}, **kwargs)
            figure.add_hline(y=edge, line={"color": "#444", "width": 1}, **kwargs)


def matrix_heatmap(
    matrix: Tensor,
    title: str = "",
    scale: str = "signed",
    *,
    blocks: Sequence[tuple[str, slice]] | None = None,
    max_size: int = MAX_CELLS,
) -> go.Figure:
    """A heatmap of one (P, P) matrix (rows top to bottom, as it is printed).

    Args:
        matrix: The matrix.
        title: Figure title.
        scale: ``"signed"`` (diverging, zero white) or ``"log"`` (log₁₀|M|).
        blocks: ``problem.blocks()`` to draw the layer boundaries.
        max_size: Larger matrices are average-pooled (noted in the hover).
    """
    trace, factor = heatmap_trace(matrix, scale, max_size=max_size, name=title)
    figure = go.Figure(trace)
    _block_lines(figure, blocks)
    pooled = f" (pooled {factor}×{factor})" if factor > 1 else ""
    apply_layout(
        figure,
        title=(title or "Matrix") + pooled,
        xaxis={"title": "parameter index (column)", "constrain": "domain"},
        yaxis={
            "title": "parameter index (row)",
            "autorange": "reversed",
            "scaleanchor": "x",
        },
        height=560,
    )
    return figure


def matrices_figure(
    matrices: Mapping[str, Tensor],
    scale: str = "signed",
    *,
    title: str = "",
    blocks: Sequence[tuple[str, slice]] | None = None,
    max_size: int = 200,
    shared_scale: bool = False,
    columns: int = 3,
) -> go.Figure:
    """Several matrices in a grid, each with its magnitude in its title.

    With ``shared_scale`` every panel uses one colour scale (compare magnitudes);
    by default each panel is scaled by its own max|C| (compare structure: one large
    matrix, such as the empirical Fisher far from the optimum, would otherwise wash
    the others out). The hover always shows the exact value.
    """
    if not matrices:
        raise ValueError("pass at least one matrix")
    names = list(matrices)
    peaks = {n: float(m.detach().abs().max()) or 1.0 for n, m in matrices.items()}
    magnitude = max(peaks.values())
    cols = max(1, min(columns, len(names)))
    rows = math.ceil(len(names) / cols)
    titles = [f"{name}<br><sup>max |C| = {peaks[name]:.3g}</sup>" for name in names]
    figure = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=titles,
        horizontal_spacing=0.08,
        vertical_spacing=0.12,
    )
    size = int(next(iter(matrices.values())).shape[0])
    for index, name in enumerate(names):
        row, col = divmod(index, cols)
        limit = magnitude if shared_scale else peaks[name]
        matrix = matrices[name] if shared_scale else matrices[name] / limit
        trace, _ = heatmap_trace(
            matrix,
            scale,
            limit=1.0 if not shared_scale else magnitude,
            floor=(magnitude if shared_scale else 1.0) * 1e-10,
            max_size=max_size,
            name=name,
            showscale=index == len(names) - 1,
        )
        trace.customdata = pool(matrices[name], max_size)[0]  # exact values on hover
        if not shared_scale:
            trace.colorbar = {
                "title": "value ÷ panel max"
                if scale == "signed"
                else "log₁₀(|value| ÷ max)"
            }
        figure.add_trace(trace, row=row + 1, col=col + 1)
        figure.update_yaxes(autorange="reversed", row=row + 1, col=col + 1)
        if size <= 16:  # small matrices: one tick per parameter
            figure.update_xaxes(dtick=1, row=row + 1, col=col + 1)
            figure.update_yaxes(dtick=1, row=row + 1, col=col + 1)
        _block_lines(figure, blocks, row=row + 1, col=col + 1)
    figure.update_xaxes(title_text="parameter index", row=rows, col=1)
    figure.update_yaxes(title_text="parameter index", row=1, col=1)
    apply_layout(figure, title=title or "Curvature matrices", height=380 * rows + 80)
    return figure


def difference_figure(
    matrix: Tensor,
    reference: Tensor,
    names: tuple[str, str] = ("C", "R"),
    *,
    blocks: Sequence[tuple[str, slice]] | None = None,
    max_size: int = MAX_CELLS,
) -> go.Figure:
    """C − R on a diverging scale, titled with ‖C − R‖_F / ‖R‖_F."""
    if matrix.shape != reference.shape:
        raise ValueError(
            f"shapes differ: {tuple(matrix.shape)} and {tuple(reference.shape)}"
        )
    diff = matrix.double() - reference.double()
    norm = float(torch.linalg.matrix_norm(reference.double()))
    rel = float(torch.linalg.matrix_norm(diff)) / norm if norm > 0 else math.inf
    return matrix_heatmap(
        diff,
        f"{names[0]} − {names[1]}  (‖{names[0]} − {names[1]}‖_F / ‖{names[1]}‖_F = "
        f"{rel:.3g})",
        "signed",
        blocks=blocks,
        max_size=max_size,
    )
