"""Parameter space: loss contours with paths, direction fields, quadratic models, planes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from explorer.landscape.fields import GRADIENT, DirectionField
from explorer.landscape.grid import Grid2D
from explorer.landscape.interpolation import LineSlice
from explorer.landscape.plane import Plane
from explorer.landscape.quadratic import QuadraticModel
from explorer.landscape.trajectories import as_runs, finite_trajectory
from explorer.plots.common import NUMBER, arrow_segments, polyline, to_numpy
from explorer.plots.theme import (
    COLORBAR_BELOW,
    SEQUENTIAL,
    apply_layout,
    curvature_color,
    run_styles,
)

#: Animations show at most this many frames (steps are subsampled evenly).
MAX_FRAMES = 60

#: Arrow fields are thinned to at most this many arrows per axis, whatever the
#: field's own resolution: denser arrows bury the contours and the paths.
MAX_ARROWS_PER_AXIS = 15


def contour_trace(grid: Grid2D, log: bool = True, name: str = "loss") -> go.Contour:
    """The loss grid as filled contours.

    With ``log``: the colour is log₁₀(h − min h + ε) (works for negative losses
    too); the hover shows the exact h.
    """
    values = to_numpy(grid.values)
    finite = values[np.isfinite(values)]
    z, title = values, grid.quantity
    if log and finite.size:
        low = float(finite.min())
        spread = float(finite.max() - low)
        eps = max(spread * 1e-6, 1e-12)
        z = np.log10(np.where(np.isfinite(values), values - low + eps, np.nan))
        title = f"log₁₀({grid.quantity} − min + ε)"
    return go.Contour(
        x=to_numpy(grid.xs),
        y=to_numpy(grid.ys),
        z=z,
        customdata=values,
        colorscale=SEQUENTIAL,
        ncontours=30,
        contours={"coloring": "heatmap", "showlines": True},
        line={"width": 0.5, "color": "rgba(255,255,255,0.4)"},
        colorbar={**COLORBAR_BELOW, "title": {"text": title, "side": "top"}},
        name=name,
        showlegend=False,
        hovertemplate=(
            f"{grid.x_label} = %{{x{NUMBER}}}<br>{grid.y_label} = %{{y{NUMBER}}}<br>"
            f"{grid.quantity} = %{{customdata{NUMBER}}}<extra></extra>"
        ),
    )


def _path_points(
    run: Any, plane: Plane | None
) -> tuple[np.ndarray, list[int], np.ndarray | None]:
    thetas, steps = finite_trajectory(run)
    if plane is None:
        if thetas.shape[1] != 2:
            raise ValueError(
                f"paths have P = {thetas.shape[1]}; pass a plane to project them"
            )
        return to_numpy(thetas), steps, None
    coords, distance = plane.project(thetas)
    return to_numpy(coords), steps, to_numpy(distance)


def _losses(run: Any, steps: list[int]) -> np.ndarray:
    frame = run.to_frame() if hasattr(run, "to_frame") else None
    if frame is None:
        return np.full(len(steps), np.nan)
    lookup = dict(zip(frame["step"].astype(int), frame["loss"].astype(float)))
    return np.array([lookup.get(s, np.nan) for s in steps])


def path_traces(
    runs: Any,
    plane: Plane | None = None,
    upto: int | None = None,
    labels=("θ₁", "θ₂"),
    *,
    webgl: bool = False,
) -> list[go.Scatter | go.Scattergl]:
    """One line-with-markers trace per run (its path, up to step ``upto``).

    Hover: run, step, coordinates and the recorded loss (and, in a plane, the
    distance from it).

    With ``webgl``: ``Scattergl`` traces, which animations need (see
    :func:`_animation`).
    """
    kind = go.Scattergl if webgl else go.Scatter
    runs = as_runs(runs)
    styles = run_styles(runs)
    traces = []
    for label, run in runs.items():
        points, steps, distance = _path_points(run, plane)
        if upto is not None:
            keep = [i for i, s in enumerate(steps) if s <= upto] or [0]
            points, steps = points[keep], [steps[i] for i in keep]
            distance = None if distance is None else distance[keep]
        losses = _losses(run, steps)
        extra = np.stack(
            [
                np.asarray(steps, float),
                losses,
                distance if distance is not None else losses * np.nan,
            ],
            1,
        )
        hover = (
            f"<b>{label}</b><br>step %{{customdata[0]}}<br>{labels[0]} = %{{x{NUMBER}}}"
            f"<br>{labels[1]} = %{{y{NUMBER}}}<br>loss %{{customdata[1]{NUMBER}}}"
        )
        if distance is not None:
            hover += f"<br>distance from plane %{{customdata[2]{NUMBER}}}"
        color, dash = styles[label]
        status = getattr(run, "status", "ok")
        symbols = ["circle"] * len(steps)
        if symbols:
            symbols[0] = "square"
            symbols[-1] = (
                "x" if status not in ("ok", "cancelled") and upto is None else "diamond"
            )
        sizes = [5] * len(steps)
        if sizes:
            sizes[0] = sizes[-1] = 10
        traces.append(
            kind(
                x=points[:, 0],
                y=points[:, 1],
                customdata=extra,
                mode="lines+markers",
                name=label if status == "ok" else f"{label} ({status})",
                legendgroup=label,
                line={"color": color, "dash": dash, "width": 2},
                marker={"color": color, "symbol": symbols, "size": sizes},
                hovertemplate=hover + "<extra></extra>",
            )
        )
    return traces


def _animation(
    figure: go.Figure, runs: Any, plane: Plane | None, first: int, labels
) -> None:
    """Frames revealing every path up to step k, a slider, and play/pause buttons.

    The frames carry only the path traces (``traces`` = their indices), and those
    are ``Scattergl``. Why: for a frame whose traces are SVG ``scatter`` (an
    animatable type), Plotly.js replots just those traces and removes the layers of
    every other trace type in the subplot, the contour among them; it came back
    only with each frame's final redraw, so the contours vanished while the
    animation played. WebGL traces are not animatable: a frame of them is drawn by
    the full redraw (``redraw: true``), which keeps the contour, the arrows and
    the models in place.
    """
    all_steps = sorted(
        {s for run in as_runs(runs).values() for s in finite_trajectory(run)[1]}
    )
    if len(all_steps) > MAX_FRAMES:
        picks = np.unique(
            np.linspace(0, len(all_steps) - 1, MAX_FRAMES).round().astype(int)
        )
        all_steps = [all_steps[i] for i in picks]
    count = len(as_runs(runs))
    indices = list(range(first, first + count))
    frames = [
        go.Frame(
            data=path_traces(runs, plane, upto=step, labels=labels, webgl=True),
            traces=indices,
            name=str(step),
        )
        for step in all_steps
    ]
    figure.frames = frames
    slider = {
        "active": len(frames) - 1,
        "currentvalue": {"prefix": "step ", "xanchor": "right"},
        "x": 0.3,  # right of the two buttons
        "len": 0.7,
        "y": -0.3,
        "yanchor": "top",
        "pad": {"t": 0},
        "steps": [
            {
                "label": str(step),
                "method": "animate",
                "args": [
                    [str(step)],
                    {
                        "mode": "immediate",
                        "frame": {"duration": 0, "redraw": True},
                        "transition": {"duration": 0},
                    },
                ],
            }
            for step in all_steps
        ],
    }
    # fromcurrent: ▶ resumes where ⏸ stopped (Plotly starts over from the last frame)
    play = {
        "label": "▶ play",
        "method": "animate",
        "args": [
            None,
            {
                "frame": {"duration": 120, "redraw": True},
                "fromcurrent": True,
                "transition": {"duration": 0},
            },
        ],
    }
    # An animation to no frame ([None]) in "immediate" mode stops the running one.
    pause = {
        "label": "⏸ pause",
        "method": "animate",
        "args": [
            [None],
            {
                "frame": {"duration": 0, "redraw": False},
                "mode": "immediate",
                "transition": {"duration": 0},
            },
        ],
    }
    menu = {
        "type": "buttons",
        "direction": "left",
        "showactive": False,
        "x": 0.0,
        "y": -0.3,
        "yanchor": "top",
        "xanchor": "left",
        "buttons": [play, pause],
    }
    figure.update_layout(sliders=[slider], updatemenus=[menu])


def _thin(count: int, most: int) -> np.ndarray:
    """Every k-th of ``count`` indices (k the least stride leaving ≤ ``most``),
    centred: evenly spaced arrows whatever the field's resolution.
    """
    stride = max(1, -(-count // max(1, most)))
    kept = -(-count // stride)
    start = (count - 1 - (kept - 1) * stride) // 2
    return np.arange(start, count, stride)[:kept]


def field_traces(
    field: DirectionField,
    keys: Sequence[str] | None = None,
    *,
    length: float | None = None,
    labels: Mapping[str, str] | None = None,
    visible: Sequence[str] | None = None,
    max_per_axis: int = MAX_ARROWS_PER_AXIS,
) -> list[go.Scatter]:
    """Arrows of unit direction times ``length`` per key, thin and translucent.

    The field is thinned to at most ``max_per_axis`` arrows per axis (every k-th
    grid point), so at most ``max_per_axis``² arrows per key however fine the
    field; ``length`` defaults to 0.8 of the spacing of the drawn arrows. Each key
    is one trace in its curvature's colour; the legend names the step, e.g.
    −(fisher + λI)⁻¹g.

    Args:
        field: The directions.
        keys: Which keys to draw (default all).
        length: Arrow length in plot units.
        labels: Legend names by key (default −g, −(C + λI)⁻¹g).
        visible: The keys shown at first (default all); the others start as
            ``"legendonly"``, one click on their legend entry away.
        max_per_axis: The most arrows per axis.
    """
    keys = list(field.directions) if keys is None else list(keys)
    nx, ny = field.xs.numel(), field.ys.numel()
    columns, rows = _thin(nx, max_per_axis), _thin(ny, max_per_axis)
    # points are row-major over ys then xs (DirectionField)
    picks = (rows[:, None] * nx + columns[None, :]).reshape(-1)
    if length is None:
        xs, ys = to_numpy(field.xs), to_numpy(field.ys)
        dx = float(xs[columns[1]] - xs[columns[0]]) if columns.size > 1 else 1.0
        dy = float(ys[rows[1]] - ys[rows[0]]) if rows.size > 1 else 1.0
        length = 0.8 * min(dx, dy)
    points = to_numpy(field.points)[picks]
    traces = []
    for key in keys:
        vectors = to_numpy(field.unit(key))[picks] * length
        xs, ys = arrow_segments(points, vectors)
        name = (labels or {}).get(key) or (
            "−g (gradient)" if key == GRADIENT else f"−({key} + λI)⁻¹g"
        )
        failed = field.failures.get(key)
        if failed:
            name += f" — undefined at {failed[0]} points"
        line = {"color": curvature_color(key), "width": 1}
        shown = visible is None or key in visible
        traces.append(
            _line(
                xs,
                ys,
                name,
                f"field:{key}",
                line,
                opacity=0.6,
                visible=True if shown else "legendonly",
                hoverinfo="skip",
            )
        )
    return traces


def _line(xs, ys, name: str, group: str, line: dict, **extra: Any) -> go.Scatter:
    """A line trace (``None`` in ``xs``/``ys`` breaks it) in a legend group."""
    return go.Scatter(
        x=xs, y=ys, mode="lines", name=name, legendgroup=group, line=line, **extra
    )


#: What the legend adds to a quadratic model of each kind (through θ).
MODEL_NOTES: dict[str, str] = {
    "elliptic": "",
    "hyperbolic": " — indefinite: saddle, unbounded below",
    "concave": " — negative definite: unbounded below",
    "parabolic": " — singular: no unique minimum",
    "flat": " — zero matrix",
}


def model_traces(
    models: Mapping[str, QuadraticModel],
    extent: float = 10.0,
    *,
    rise: float | None = None,
) -> list[go.Scatter]:
    """Level sets M_C(δ) = h(θ) of each quadratic model (through θ), and centres.

    Ellipses for PD models; hyperbolas (both branches) for indefinite ones, named
    "unbounded below"; lines/parabolas for singular ones. A model's minimum is a
    filled star, a saddle an open star.

    With ``rise``: the level sets M_C = h(θ) + ``rise`` instead, without centres.
    At a minimum θ* (g = 0) the level through θ* is the point itself; a level a
    little above shows each model's ellipse: where it thinks the loss rises by
    ``rise`` (Kunstner et al. 2019, figure 2).
    """
    traces = []
    for key, model in models.items():
        color = curvature_color(key)
        if rise is None:
            level, name = None, f"model of {key}{MODEL_NOTES[model.kind]}"
            hover = f"{name}<br>level set M = h(θ)"
        else:
            level, name = model.value + rise, f"{model.label} model: h(θ*) + {rise:.3g}"
            hover = name
        xs, ys = polyline(model.level_set(level=level, extent=extent))
        line = {"color": color, "dash": "dash", "width": 2}
        group = f"model:{key}"
        traces.append(
            _line(xs, ys, name, group, line, hovertemplate=f"{hover}<extra></extra>")
        )
        if rise is None and model.center is not None:
            center = model.center.tolist()
            label = "minimum" if model.bounded else "stationary point"
            traces.append(
                go.Scatter(
                    x=[center[0]],
                    y=[center[1]],
                    mode="markers",
                    name=f"{label} of the {key} model",
                    legendgroup=group,
                    showlegend=False,
                    marker={
                        "symbol": "star" if model.bounded else "star-open",
                        "size": 13,
                        "color": color,
                    },
                    hovertemplate=(
                        f"{label} of the {key} model<br>(%{{x{NUMBER}}}, %{{y{NUMBER}}})"
                        "<extra></extra>"
                    ),
                )
            )
    return traces


def point_traces(points: Mapping[str, Sequence[float]]) -> list[go.Scatter]:
    """One black dot per named point ``{name: (x, y)}`` (e.g. where models are built)."""
    return [
        go.Scatter(
            x=[float(point[0])],
            y=[float(point[1])],
            mode="markers",
            name=name,
            marker={"symbol": "circle", "size": 11, "color": "#111111"},
        )
        for name, point in points.items()
    ]


def contour_figure(
    grid: Grid2D,
    runs: Any = None,
    *,
    field: DirectionField | None = None,
    field_keys: Sequence[str] | None = None,
    visible_fields: Sequence[str] | None = None,
    models: Mapping[str, QuadraticModel] | None = None,
    model_rise: float | None = None,
    points: Mapping[str, Sequence[float]] | None = None,
    animate: bool = False,
    log: bool = True,
    title: str = "",
) -> go.Figure:
    """The exact loss landscape of a 2-parameter problem with everything on top.

    Args:
        grid: :func:`~explorer.landscape.loss_grid` output.
        runs: Histories (``{label: History}``) whose paths are drawn.
        field: A direction field drawn as arrows (at most
            :data:`MAX_ARROWS_PER_AXIS` per axis; see :func:`field_traces`).
        field_keys: Which of its keys (default all).
        visible_fields: The keys shown at first (default all); the others are
            hidden until clicked in the legend.
        models: Quadratic models whose level sets through θ are drawn.
        model_rise: Draw the models' level sets h(θ) + ``model_rise`` instead
            (models built at a minimum; see :func:`model_traces`).
        points: Named points ``{name: (x, y)}`` drawn as dots on top.
        animate: Add a step slider and play/pause buttons revealing the paths
            (the paths are then WebGL traces; see :func:`_animation`).
        log: Colour by log₁₀(h − min h + ε).
        title: Figure title.

    Returns:
        Trace order: the contour, the paths (one per run), field arrows (one per
        key), model curves (one per model plus one per centre), the points.
    """
    figure = go.Figure(contour_trace(grid, log))
    labels = (grid.x_label, grid.y_label)
    animate = animate and runs is not None
    if runs is not None:
        for trace in path_traces(runs, labels=labels, webgl=animate):
            figure.add_trace(trace)
    if field is not None:
        for trace in field_traces(field, field_keys, visible=visible_fields):
            figure.add_trace(trace)
    if models:
        (x0, x1), (y0, y1) = (
            (float(grid.xs[0]), float(grid.xs[-1])),
            (float(grid.ys[0]), float(grid.ys[-1])),
        )
        extent = 2.0 * float(np.hypot(x1 - x0, y1 - y0))
        for trace in model_traces(models, extent, rise=model_rise):
            figure.add_trace(trace)
    for trace in point_traces(points or {}):
        figure.add_trace(trace)
    if animate:
        _animation(figure, runs, None, 1, labels)
    apply_layout(
        figure,
        title=title or "Loss landscape",
        xaxis={"title": grid.x_label, "range": [float(grid.xs[0]), float(grid.xs[-1])]},
        yaxis={"title": grid.y_label, "range": [float(grid.ys[0]), float(grid.ys[-1])]},
        height=720 if animate else 640,
        margin={"l": 70, "r": 20, "t": 60, "b": 220 if animate else 130},
    )
    return figure


def plane_figure(
    plane: Plane, grid: Grid2D, runs: Any = None, *, log: bool = True, title: str = ""
) -> go.Figure:
    """Loss in a plane with the projected paths, and each path's distance from it.

    Left: contours of h(o + a d₁ + b d₂) and the paths' least-squares projections.
    Right: ‖θ − projection‖ against the step: where it is large compared with the
    path's extent in the plane, the picture does not show the path faithfully.
    Without runs, the contours alone (no empty distance panel).
    """
    runs = as_runs(runs) if runs is not None else {}
    if runs:
        figure = make_subplots(
            rows=1,
            cols=2,
            column_widths=[0.68, 0.32],
            horizontal_spacing=0.12,
            subplot_titles=(
                "loss in the plane",
                "distance of each path from the plane",
            ),
        )
    else:
        figure = make_subplots(rows=1, cols=1)
    contour = contour_trace(grid, log)
    if runs:
        contour.colorbar.update(x=0.34, len=0.55, y=-0.2)
    figure.add_trace(contour, row=1, col=1)
    if runs:
        styles = run_styles(runs)
        for trace in path_traces(runs, plane, labels=plane.labels):
            figure.add_trace(trace, row=1, col=1)
        for label, run in runs.items():
            _, steps, distance = _path_points(run, plane)
            color, dash = styles[label]
            figure.add_trace(
                go.Scatter(
                    x=steps,
                    y=distance,
                    mode="lines",
                    name=f"{label}: distance",
                    legendgroup=label,
                    showlegend=False,
                    line={"color": color, "dash": dash},
                    hovertemplate=(
                        f"<b>{label}</b><br>step %{{x}}<br>distance %{{y{NUMBER}}}"
                        "<extra></extra>"
                    ),
                ),
                row=1,
                col=2,
            )
    # the grid's box (which covers the projected paths by default), as in
    # contour_figure: autorange would pad it with empty margins
    box = [
        [float(grid.xs[0]), float(grid.xs[-1])],
        [float(grid.ys[0]), float(grid.ys[-1])],
    ]
    figure.update_xaxes(title_text=plane.labels[0], range=box[0], row=1, col=1)
    figure.update_yaxes(title_text=plane.labels[1], range=box[1], row=1, col=1)
    if runs:
        figure.update_xaxes(title_text="iteration", row=1, col=2)
        figure.update_yaxes(
            title_text="‖θ − projection‖ (parameter units)", row=1, col=2
        )
    default = {
        "pca": "Loss in the plane of the trajectories' first two principal directions",
        "random": "Loss in a random filter-normalized plane",
        "eigenvectors": "Loss in the plane of the top two eigenvectors",
    }.get(plane.kind, "Loss in a plane")
    apply_layout(
        figure,
        title=title or default,
        height=600,
        margin={"l": 70, "r": 20, "t": 80, "b": 150},
    )
    return figure


def interpolation_figure(
    line: LineSlice, names: tuple[str, str] = ("θ_a", "θ_b"), *, title: str = ""
) -> go.Figure:
    """H along (1 − α)θ_a + αθ_b, with the test loss dashed where it exists."""
    figure = go.Figure()
    alphas = to_numpy(line.alphas)
    curves = [("training loss", line.loss, "solid")]
    if line.test_loss is not None:
        curves.append(("test loss", line.test_loss, "dash"))
    for name, values, dash in curves:
        figure.add_trace(
            go.Scatter(
                x=alphas,
                y=to_numpy(values),
                mode="lines",
                name=name,
                line={"dash": dash, "color": "#1f77b4"},
                hovertemplate=f"α = %{{x{NUMBER}}}<br>{name} %{{y{NUMBER}}}<extra></extra>",
            )
        )
    for alpha, name in ((0.0, names[0]), (1.0, names[1])):
        figure.add_vline(
            x=alpha, line={"dash": "dot", "color": "#555"}, annotation_text=name
        )
    apply_layout(
        figure,
        title=title
        or f"Loss along the line from {names[0]} to {names[1]} (‖Δθ‖ = {line.distance:.4g})",
        xaxis={"title": f"α (0 = {names[0]}, 1 = {names[1]})"},
        yaxis={"title": "loss"},
    )
    return figure


def distance_to(thetas: torch.Tensor, point: torch.Tensor) -> np.ndarray:
    """‖θ_t − point‖ for each row (helper for custom figures)."""
    return to_numpy((thetas.double() - point.double()).norm(dim=1))
