"""A sweep's figures: a heatmap per rule, the best-tuned curves, performance profiles.

* :func:`grid_figure`: log₁₀ of the mean final loss over one rule's (lr × λ) grid,
  the converged region outlined (every seed reached the target), diverged cells
  marked ×;
* :func:`tuned_curves_figure`: each rule's best-tuned setting, mean loss over seeds
  with a min–max band, on log axes when the losses span decades;
* :func:`profile_figure`: performance profiles ρ_s(τ) as step lines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from explorer.plots.common import NUMBER, nan_to_none
from explorer.plots.theme import SEQUENTIAL, apply_layout, rule_color

#: The outline of the converged region.
OUTLINE_COLOR = "#d62728"


def _label(value: Any) -> str:
    return (
        "—"
        if value is None
        else f"{value:g}"
        if isinstance(value, float)
        else str(value)
    )


def outline_segments(mask: np.ndarray) -> tuple[list, list]:
    """The edges between True and False cells of ``mask`` (rows × cols), and around
    True cells at the border, as one polyline in cell coordinates (cell (i, j) spans
    [j − ½, j + ½] × [i − ½, i + ½]), segments separated by None.
    """
    rows, cols = mask.shape
    padded = np.zeros((rows + 2, cols + 2), bool)
    padded[1:-1, 1:-1] = mask
    xs: list = []
    ys: list = []
    for i in range(rows + 1):  # horizontal edges below row i (padded i, i + 1)
        for j in range(cols):
            if padded[i, j + 1] != padded[i + 1, j + 1]:
                xs += [j - 0.5, j + 0.5, None]
                ys += [i - 0.5, i - 0.5, None]
    for j in range(cols + 1):  # vertical edges left of column j
        for i in range(rows):
            if padded[i + 1, j] != padded[i + 1, j + 1]:
                xs += [j - 0.5, j - 0.5, None]
                ys += [i - 0.5, i + 0.5, None]
    return xs, ys


def grid_figure(grid: Any, target: float, height: int | None = None) -> go.Figure:
    """One rule's heatmap (``grid``: an :class:`explorer.sweeps.analysis.RuleGrid`);
    a one-row grid (a single option swept) is drawn as a strip.
    """
    height = height or (240 if grid.y_name is None else 360)
    values = np.asarray(grid.final, float)
    positive = values[np.isfinite(values) & (values > 0)]
    floor = float(positive.min()) if positive.size else 1e-300
    shown = np.where(
        np.isfinite(values), np.log10(np.clip(values, floor, None)), np.nan
    )
    xs = [_label(x) for x in grid.xs]
    ys = [_label(y) for y in grid.ys]
    x_title = grid.x_name or ""
    y_title = grid.y_name or ""
    figure = go.Figure(
        go.Heatmap(
            z=shown,
            x=list(range(len(xs))),
            y=list(range(len(ys))),
            customdata=values,
            colorscale=SEQUENTIAL,
            colorbar={"title": "log₁₀ final loss"},
            hovertemplate=(
                f"{x_title} = %{{x}}<br>{y_title} = %{{y}}<br>"
                f"mean final loss = %{{customdata{NUMBER}}}<extra></extra>"
            ),
            name=grid.rule,
        )
    )
    lines_x, lines_y = outline_segments(grid.converged)
    if lines_x:
        figure.add_trace(
            go.Scatter(
                x=lines_x,
                y=lines_y,
                mode="lines",
                line={"color": OUTLINE_COLOR, "width": 3},
                name=f"reached {target:.4g}",
                hoverinfo="skip",
            )
        )
    rows, cols = np.nonzero(grid.diverged > 0)
    if rows.size:
        figure.add_trace(
            go.Scatter(
                x=cols.tolist(),
                y=rows.tolist(),
                mode="text",
                text=["×"] * rows.size,
                textfont={"size": 18, "color": "#ffffff"},
                name="× diverged",
                hovertext=[
                    f"{grid.diverged[i, j]:.0%} of seeds diverged"
                    for i, j in zip(rows, cols, strict=True)
                ],
                hoverinfo="text",
            )
        )
    others = f"; best over {', '.join(grid.others)}" if grid.others else ""
    apply_layout(
        figure,
        title=f"{grid.rule}: mean final loss{others}",
        height=height,
        showlegend=bool(lines_x) or bool(rows.size),
        legend={"orientation": "h", "y": -0.25, "x": 0, "xanchor": "left"},
    )
    figure.update_xaxes(
        title=x_title, tickvals=list(range(len(xs))), ticktext=xs, showgrid=False
    )
    figure.update_yaxes(
        title=y_title,
        tickvals=list(range(len(ys))),
        ticktext=ys,
        showgrid=False,
        showticklabels=grid.y_name is not None,
    )
    return figure


def tuned_curves_figure(
    curves: Mapping[str, Sequence[Sequence[float]]],
    steps: Mapping[str, Sequence[int]],
    *,
    title: str = "Best-tuned settings",
    target: float | None = None,
    height: int = 420,
) -> go.Figure:
    """Mean loss over seeds per name, with the min–max band over seeds.

    Args:
        curves: Name (a rule and its setting) -> one loss curve per seed.
        steps: Name -> the steps the curves were recorded at.
        title: Figure title.
        target: A dotted line at the target loss.
        height: Figure height.
    """
    figure = go.Figure()
    everything = []
    for name, runs in curves.items():
        length = min(len(run) for run in runs)
        stack = np.array([list(run)[:length] for run in runs], float)
        everything.append(stack[np.isfinite(stack)])
        x = list(steps[name])[:length]
        color = rule_color(name.split(" ", 1)[0])
        with np.errstate(all="ignore"):
            mean, low, high = (
                np.nanmean(stack, 0),
                np.nanmin(stack, 0),
                np.nanmax(stack, 0),
            )
        if len(runs) > 1:
            figure.add_trace(
                go.Scatter(
                    x=x + x[::-1],
                    y=nan_to_none(np.concatenate([high, low[::-1]])),
                    fill="toself",
                    line={"width": 0},
                    fillcolor=color,
                    opacity=0.18,
                    hoverinfo="skip",
                    showlegend=False,
                )
            )
        figure.add_trace(
            go.Scatter(
                x=x,
                y=nan_to_none(mean),
                mode="lines",
                name=name,
                line={"color": color, "width": 2.5},
                hovertemplate=f"{name}<br>step %{{x}}<br>loss %{{y{NUMBER}}}<extra></extra>",
            )
        )
    values = np.concatenate(everything) if everything else np.array([])
    positive = values[values > 0]
    log = (
        positive.size > 0
        and positive.size == values.size
        and (positive.max() / positive.min() > 100)
    )
    if target is not None and math.isfinite(target):
        figure.add_hline(
            y=target,
            line={"dash": "dot", "color": "#555555"},
            annotation_text=f"target {target:.4g}",
        )
    apply_layout(
        figure,
        title=title,
        height=height,
        xaxis={"title": "step"},
        yaxis={
            "title": "training loss (mean over seeds)",
            "type": "log" if log else "linear",
        },
    )
    return figure


def profile_figure(profile: pd.DataFrame, height: int = 380) -> go.Figure:
    """ρ_s(τ) per rule (``profile``: :func:`explorer.sweeps.performance_profile`)."""
    figure = go.Figure()
    taus = [float(t) for t in profile.index]
    for rule in profile.columns:
        figure.add_trace(
            go.Scatter(
                x=taus,
                y=profile[rule].tolist(),
                mode="lines+markers",
                line={"shape": "hv", "color": rule_color(rule), "width": 2.5},
                name=rule,
                hovertemplate=f"{rule}<br>τ = %{{x:.3g}}<br>ρ = %{{y:.0%}}<extra></extra>",
            )
        )
    apply_layout(
        figure,
        title="Performance profiles: share of problems within τ × the fastest",
        height=height,
        xaxis={"title": "τ (steps to target ÷ the fastest rule's)", "type": "log"},
        yaxis={"title": "share of problems ρ(τ)", "range": [-0.02, 1.02]},
    )
    return figure
