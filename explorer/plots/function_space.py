"""Function space: decision boundaries, fitted curves and the KL of each step."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import plotly.graph_objects as go

from explorer.landscape.function_space import InputGrid
from explorer.landscape.trajectories import as_runs
from explorer.plots.common import NUMBER, nan_to_none, to_numpy, use_log
from explorer.plots.theme import apply_layout, run_styles

#: Marker colours of the data's classes.
CLASS_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3")


def _data_traces(problem: Any) -> list[go.Scatter]:
    inputs = to_numpy(problem.inputs)
    targets = problem.targets.detach().cpu()
    labels = (
        targets.reshape(-1).long().numpy()
        if targets.dim() == 1 or targets.shape[-1] == 1
        else targets.argmax(-1).numpy()
    )
    traces = []
    for cls in np.unique(labels):
        mask = labels == cls
        traces.append(
            go.Scatter(
                x=inputs[mask, 0],
                y=inputs[mask, 1],
                mode="markers",
                name=f"class {int(cls)} (training data)",
                marker={
                    "color": CLASS_COLORS[int(cls) % len(CLASS_COLORS)],
                    "size": 6,
                    "opacity": 0.7,
                    "line": {"width": 0.5, "color": "white"},
                },
                hovertemplate=(
                    f"class {int(cls)}<br>x₁ = %{{x{NUMBER}}}<br>x₂ = %{{y{NUMBER}}}"
                    "<extra></extra>"
                ),
            )
        )
    return traces


def decision_boundary_figure(
    problem: Any,
    grids: Mapping[str, InputGrid],
    runs: Any = None,
    *,
    background: str | None = None,
    steps: Mapping[str, int] | None = None,
    title: str = "",
) -> go.Figure:
    """Each run's decision boundary p(class 1 | x) = ½ over the training data.

    Args:
        problem: A 2-D-input classification problem (its data are drawn).
        grids: ``{label: InputGrid}`` from
            :func:`~explorer.landscape.decision_boundary`, one per run.
        runs: The histories (for colours); default: colours by label order.
        background: A label whose probability map fills the background.
        steps: ``{label: step}`` shown in the legend.
        title: Figure title.

    Returns:
        Traces: the background (if any), one boundary contour per run, then one
        scatter per data class.
    """
    figure = go.Figure()
    styles = run_styles(as_runs(runs)) if runs is not None else {}
    if background is not None:
        grid = grids[background].probability
        figure.add_trace(
            go.Heatmap(
                x=to_numpy(grid.xs),
                y=to_numpy(grid.ys),
                z=to_numpy(grid.values),
                colorscale="RdBu_r",
                zmin=0.0,
                zmax=1.0,
                opacity=0.45,
                colorbar={"title": grid.quantity},
                name=f"{background}: {grid.quantity}",
                hovertemplate=(
                    f"x₁ = %{{x{NUMBER}}}<br>x₂ = %{{y{NUMBER}}}<br>{grid.quantity} = "
                    f"%{{z{NUMBER}}}<extra>{background}</extra>"
                ),
            )
        )
    for index, (label, input_grid) in enumerate(grids.items()):
        grid = input_grid.probability
        color = styles.get(label, (CLASS_COLORS[index % len(CLASS_COLORS)], "solid"))[0]
        step = (steps or {}).get(label)
        name = label if step is None else f"{label} (step {step})"
        figure.add_trace(
            go.Contour(
                x=to_numpy(grid.xs),
                y=to_numpy(grid.ys),
                z=to_numpy(grid.values),
                contours={"start": 0.5, "end": 0.5, "size": 1.0, "coloring": "none"},
                line={"color": color, "width": 3},
                showscale=False,
                showlegend=True,
                name=name,
                hovertemplate=f"{name}: p = ½<extra></extra>",
            )
        )
    for trace in _data_traces(problem):
        figure.add_trace(trace)
    apply_layout(
        figure,
        title=title or "Decision boundaries (p = ½) in input space",
        xaxis={"title": "input x₁"},
        yaxis={"title": "input x₂", "scaleanchor": "x"},
        height=600,
    )
    return figure


def fitted_curves_figure(
    problem: Any,
    curves: Mapping[str, tuple[Any, Any]],
    runs: Any = None,
    *,
    title: str = "",
) -> go.Figure:
    """The predictive mean E[y | x] of each run over the 1-D regression data.

    Args:
        problem: The regression problem (its data are drawn).
        curves: ``{label: (x (K,), mean (K, C))}`` from
            :func:`~explorer.landscape.fitted_curve`.
        runs: The histories (for colours).
        title: Figure title.
    """
    from explorer.landscape.function_space import regression_input

    column = regression_input(problem)
    figure = go.Figure()
    inputs, targets = to_numpy(problem.inputs), to_numpy(problem.targets)
    figure.add_trace(
        go.Scatter(
            x=inputs[:, column],
            y=targets.reshape(len(targets), -1)[:, 0],
            mode="markers",
            name="training data",
            marker={"color": "#999", "size": 5, "opacity": 0.6},
            hovertemplate=f"x = %{{x{NUMBER}}}<br>y = %{{y{NUMBER}}}<extra></extra>",
        )
    )
    styles = run_styles(as_runs(runs)) if runs is not None else {}
    for index, (label, (xs, mean)) in enumerate(curves.items()):
        color, dash = styles.get(
            label, (CLASS_COLORS[index % len(CLASS_COLORS)], "solid")
        )
        figure.add_trace(
            go.Scatter(
                x=to_numpy(xs),
                y=to_numpy(mean).reshape(len(to_numpy(xs)), -1)[:, 0],
                mode="lines",
                name=label,
                line={"color": color, "dash": dash, "width": 2.5},
                hovertemplate=(
                    f"<b>{label}</b><br>x = %{{x{NUMBER}}}<br>E[y | x] = %{{y{NUMBER}}}"
                    "<extra></extra>"
                ),
            )
        )
    apply_layout(
        figure,
        title=title or "Fitted curves (predictive mean)",
        xaxis={"title": "input x"},
        yaxis={"title": "target y / predictive mean E[y | x]"},
    )
    return figure


def kl_figure(
    frames: Mapping[str, Any],
    runs: Any = None,
    *,
    log_y: bool | str = "auto",
    title: str = "",
) -> go.Figure:
    """KL(R(θₜ) ‖ R(θₜ₊₁)) per step for each run (the size of each step in
    function space).

    Args:
        frames: ``{label: DataFrame(step, kl)}`` from
            :func:`~explorer.landscape.kl_along_run`.
        runs: The histories (for colours).
        log_y: Log y axis (``"auto"``: when the positive values span a decade;
            zero KLs, from rejected steps, then drop out of the plot).
        title: Figure title.
    """
    styles = run_styles(as_runs(runs)) if runs is not None else {}
    figure = go.Figure()
    values = [frame["kl"].to_numpy(float) for frame in frames.values()]
    log = use_log(values, log_y, zeros=True)
    for index, (label, frame) in enumerate(frames.items()):
        ys = frame["kl"].to_numpy(float)
        if log:  # a rejected step has KL 0: a gap on a log axis
            ys = np.where(ys > 0, ys, np.nan)
        color, dash = styles.get(
            label, (CLASS_COLORS[index % len(CLASS_COLORS)], "solid")
        )
        figure.add_trace(
            go.Scatter(
                x=frame["step"].to_numpy(),
                y=nan_to_none(ys),
                mode="lines+markers" if len(ys) <= 60 else "lines",
                name=label,
                line={"color": color, "dash": dash},
                marker={"size": 4},
                hovertemplate=(
                    f"<b>{label}</b><br>step %{{x}}<br>KL = %{{y{NUMBER}}} nats"
                    "<extra></extra>"
                ),
            )
        )
    apply_layout(
        figure,
        title=title
        or "Function-space step size: KL between successive predictive distributions",
        xaxis={"title": "iteration t + 1"},
        yaxis={
            "title": "mean KL(R(θ<sub>t</sub>) ‖ R(θ<sub>t+1</sub>)) (nats)"
            + (" (log)" if log else ""),
            "type": "log" if log else "linear",
            "exponentformat": "power",
        },
    )
    return figure
