"""Curves against a parameter, with bands and reference lines; grids of final values.

The paper tour's generic figures: lines against a step size, a damping, a sample
count or a distance (log axes, closed-form reference lines), a mean with a shaded
band over seeds, and one heatmap per method of a final value over an (lr, λ) grid.

Example:
    >>> figure = curves_figure(
    ...     [Curve("error", [1, 4, 16], [1.0, 0.5, 0.25]),
    ...      reference_curve("∝ 1/√k", [1, 4, 16], [1.0, 0.5, 0.25])],
    ...     title="Monte Carlo error", x_title="k", y_title="error", log="xy")
    >>> [trace.name for trace in figure.data], figure.layout.xaxis.type
    (['error', '∝ 1/√k'], 'log')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.plots.common import NUMBER, nan_to_none
from explorer.plots.theme import SEQUENTIAL, apply_layout

#: A neutral colour for reference lines (closed forms, bounds).
REFERENCE_COLOR = "#555555"


@dataclass(frozen=True)
class Curve:
    """One line of a :func:`curves_figure`.

    Attributes:
        name: Legend entry.
        x: Abscissae.
        y: Ordinates (NaN: gap).
        color: Line colour.
        dash: ``"solid"``, ``"dash"``, ``"dot"``…
        markers: Draw markers too.
        band: Optional (low, high) arrays drawn as a shaded band.
    """

    name: str
    x: Sequence[float]
    y: Sequence[float]
    color: str = REFERENCE_COLOR
    dash: str = "solid"
    markers: bool = True
    band: tuple[Sequence[float], Sequence[float]] | None = None


def reference_curve(
    name: str,
    x: Sequence[float],
    y: Sequence[float],
    color: str = REFERENCE_COLOR,
    dash: str = "dash",
) -> Curve:
    """A line without markers: a closed form, a bound or a constant to compare with."""
    return Curve(name, x, y, color, dash, markers=False)


def _band_fill(color: str) -> str:
    if color.startswith("#") and len(color) == 7:
        red, green, blue = (int(color[i : i + 2], 16) for i in (1, 3, 5))
        return f"rgba({red},{green},{blue},0.18)"
    return "rgba(120,120,120,0.18)"


def _positive(values: np.ndarray, log: bool) -> np.ndarray:
    """``values`` with non-positive entries as gaps on a log axis."""
    return np.where(values > 0, values, np.nan) if log else values


def curves_figure(
    curves: Sequence[Curve],
    *,
    title: str,
    x_title: str,
    y_title: str,
    log: str = "",
    height: int = 460,
) -> go.Figure:
    """Lines (with optional shaded bands) against a common kind of x.

    Args:
        curves: The lines, in legend order; a band is drawn under its line.
        title: Figure title.
        x_title: X-axis title with units.
        y_title: Y-axis title with units.
        log: The log axes: ``""``, ``"x"``, ``"y"`` or ``"xy"`` (on a log y axis
            non-positive values become gaps).
        height: Pixels.
    """
    if set(log) - {"x", "y"}:
        raise ValueError(f"log = {log!r} must be '', 'x', 'y' or 'xy'")
    log_y = "y" in log
    figure = go.Figure()
    for curve in curves:
        xs = np.asarray(curve.x, float)
        ys = _positive(np.asarray(curve.y, float), log_y)
        if curve.band is not None:
            low, high = (np.asarray(b, float) for b in curve.band)
            figure.add_trace(
                go.Scatter(
                    x=np.concatenate([xs, xs[::-1]]),
                    y=nan_to_none(np.concatenate([high, _positive(low, log_y)[::-1]])),
                    mode="lines",
                    fill="toself",
                    fillcolor=_band_fill(curve.color),
                    line={"width": 0},
                    hoverinfo="skip",
                    name=f"{curve.name} (band)",
                    legendgroup=curve.name,
                    showlegend=False,
                )
            )
        figure.add_trace(
            go.Scatter(
                x=xs,
                y=nan_to_none(ys),
                mode="lines+markers" if curve.markers else "lines",
                name=curve.name,
                legendgroup=curve.name,
                line={"color": curve.color, "dash": curve.dash, "width": 2},
                marker={"size": 6},
                hovertemplate=(
                    f"<b>{curve.name}</b><br>{x_title} = %{{x{NUMBER}}}<br>"
                    f"{y_title} = %{{y{NUMBER}}}<extra></extra>"
                ),
            )
        )
    apply_layout(
        figure,
        title=title,
        xaxis={"title": x_title, "type": "log" if "x" in log else "linear"},
        yaxis={"title": y_title, "type": "log" if log_y else "linear"},
        height=height,
    )
    return figure


def grid_heatmaps(
    grids: Mapping[str, np.ndarray],
    xs: Sequence[float],
    ys: Sequence[float],
    *,
    title: str,
    x_title: str,
    y_title: str,
    quantity: str,
    floor: float,
    ceiling: float,
) -> go.Figure:
    """One heatmap per name of log₁₀(value) on a shared colour scale.

    Args:
        grids: Name -> values (len(ys), len(xs)); NaN or inf (diverged) are blank.
        xs: Column coordinates (e.g. learning rates), shown as categories.
        ys: Row coordinates (e.g. damping values).
        title: Figure title.
        x_title: X-axis title.
        y_title: Y-axis title.
        quantity: What the values are (hover and colour-bar title).
        floor: Values below (e.g. exact zeros: solved to rounding) are drawn here.
        ceiling: Values above (no progress, or blown up but finite) are drawn here.
    """
    names = list(grids)
    low, high = math.log10(floor), math.log10(ceiling)
    figure = make_subplots(rows=1, cols=len(names), subplot_titles=names)
    labels_x = [f"{x:g}" for x in xs]
    labels_y = [f"{y:g}" for y in ys]
    for col, name in enumerate(names, start=1):
        values = np.asarray(grids[name], float)
        shown = np.where(
            np.isfinite(values), np.log10(np.clip(values, floor, ceiling)), np.nan
        )
        figure.add_trace(
            go.Heatmap(
                z=shown,
                x=labels_x,
                y=labels_y,
                customdata=values,
                zmin=low,
                zmax=high,
                colorscale=SEQUENTIAL,
                showscale=col == len(names),
                colorbar={"title": f"log₁₀ {quantity}"},
                name=name,
                hovertemplate=(
                    f"<b>{name}</b><br>{x_title} = %{{x}}<br>{y_title} = %{{y}}<br>"
                    f"{quantity} = %{{customdata{NUMBER}}}<extra></extra>"
                ),
            ),
            row=1,
            col=col,
        )
        figure.update_xaxes(title_text=x_title, type="category", row=1, col=col)
        figure.update_yaxes(type="category", row=1, col=col)
    figure.update_yaxes(title_text=y_title, row=1, col=1)
    apply_layout(figure, title=title, height=420, margin={"t": 90})
    return figure
