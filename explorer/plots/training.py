"""Training curves: losses against iterations, time and work; λ, ρ and α traces."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.landscape.trajectories import as_runs
from explorer.plots.common import NUMBER, finite, nan_to_none, use_log
from explorer.plots.theme import METRIC_DASHES, apply_layout, run_styles

#: x-axis choices: history column -> axis title with units.
X_AXES: dict[str, str] = {
    "step": "iteration",
    "wall_time": "wall time (s)",
    "curvature_products": "cumulative curvature-vector products",
    "grad_evals": "cumulative gradient evaluations",
    "examples": "examples processed",
}

#: Metric column -> (legend suffix, y-axis title).
METRICS: dict[str, tuple[str, str]] = {
    "loss": ("", "training loss h(θ)"),
    "test_loss": (" (test)", "test loss"),
    "averaged_loss": (" (averaged iterate)", "loss at the averaged iterate"),
    "excess_loss": (" (excess)", "excess loss h(θ) − h(θ*)"),
    "accuracy": ("", "training accuracy"),
    "test_accuracy": (" (test)", "test accuracy"),
    "grad_norm": ("", "gradient norm ‖g‖"),
    "update_norm": ("", "update norm ‖δ‖"),
}


def _frames(runs: Any) -> dict[str, Any]:
    return {label: run.to_frame() for label, run in as_runs(runs).items()}


def loss_figure(
    runs: Any,
    x: str = "step",
    metrics: Sequence[str] = ("loss", "test_loss", "averaged_loss"),
    *,
    log_y: bool | str = "auto",
    log_x: bool = False,
    title: str | None = None,
) -> go.Figure:
    """Loss curves of several runs (one colour per rule, one dash per metric).

    Args:
        runs: ``{label: History}`` (as from ``ex.compare``), a list of histories or
            one history.
        x: The x column: ``"step"``, ``"wall_time"``, ``"curvature_products"``,
            ``"grad_evals"`` or ``"examples"``.
        metrics: History columns to draw; all-NaN ones are skipped.
        log_y: ``"auto"`` (log when all values are positive and span a decade),
            True or False.
        log_x: Log x axis (zero and negative x are dropped by Plotly).
        title: Figure title.

    Returns:
        A figure with one trace per (run, metric) that has data; runs whose x is
        always zero (e.g. SGD against curvature products) are listed in a note
        instead. A run that stopped early ends in an ✕ marker.
    """
    if x not in X_AXES:
        raise ValueError(f"x = {x!r} must be one of {', '.join(X_AXES)}")
    for metric in metrics:
        if metric not in METRICS:
            raise ValueError(f"metric {metric!r} must be one of {', '.join(METRICS)}")
    runs = as_runs(runs)
    frames = _frames(runs)
    styles = run_styles(runs)
    figure = go.Figure()
    skipped, values = [], []
    for label, frame in frames.items():
        color, dash = styles[label]
        xs = frame[x].to_numpy(float)
        if x != "step" and not np.any(xs[np.isfinite(xs)] > 0):
            skipped.append(label)
            continue
        for metric in metrics:
            ys = frame[metric].to_numpy(float)
            if not np.isfinite(ys).any():
                continue
            values.append(ys)
            suffix = METRICS[metric][0]
            line_dash = METRIC_DASHES.get(metric, "solid") if metric != "loss" else dash
            figure.add_trace(
                go.Scatter(
                    x=nan_to_none(xs),
                    y=nan_to_none(ys),
                    mode="lines",
                    name=f"{label}{suffix}",
                    legendgroup=label,
                    line={"color": color, "dash": line_dash, "width": 2},
                    customdata=frame["step"].to_numpy(),
                    hovertemplate=(
                        f"<b>{label}{suffix}</b><br>step %{{customdata}}<br>"
                        f"{X_AXES[x]} = %{{x{NUMBER}}}<br>{metric} = %{{y{NUMBER}}}"
                        "<extra></extra>"
                    ),
                )
            )
        run = runs[label]
        status = getattr(run, "status", "ok")
        if status != "ok" and len(frame):
            last = frame.iloc[-1]
            y_last = last[metrics[0]] if metrics else np.nan
            figure.add_trace(
                go.Scatter(
                    x=[last[x]],
                    y=[y_last if np.isfinite(y_last) else None],
                    mode="markers",
                    marker={"symbol": "x", "size": 12, "color": color},
                    name=f"{label}: {status}",
                    legendgroup=label,
                    hovertemplate=(
                        f"<b>{label}</b> stopped: {status}<br>"
                        f"{getattr(run, 'message', '')[:120]}<extra></extra>"
                    ),
                )
            )
    # Exact zeros (a run that reached the minimum of a zero-minimum loss, as Newton
    # on Rosenbrock) must not force a linear axis on which a diverged run's 1e226
    # flattens every other curve: they fall below the log axis, with a note.
    log = use_log(values, log_y, zeros=True)
    y_title = METRICS[metrics[0]][1] if len(metrics) == 1 else "loss"
    if log:
        y_title += " (log scale)"
    zeros = log and any((finite(v) == 0).any() for v in values)
    apply_layout(
        figure,
        title=title or f"Loss against {X_AXES[x]}",
        xaxis={"title": X_AXES[x], "type": "log" if log_x else "linear"},
        yaxis={"title": y_title, "type": "log" if log else "linear"},
    )
    if zeros:
        _corner_note(figure, "a loss of exactly 0 lies below the log axis", "bottom")
    if skipped:
        _corner_note(figure, f"no {X_AXES[x]}: {', '.join(skipped)}", "top")
    return figure


def _corner_note(figure: go.Figure, text: str, where: str) -> None:
    """A small grey note in the plot's bottom-left or top-right corner."""
    top = where == "top"
    figure.add_annotation(
        text=text,
        xref="paper",
        yref="paper",
        x=1.0 if top else 0.0,
        y=1.0 if top else 0.0,
        xanchor="right" if top else "left",
        yanchor="top" if top else "bottom",
        showarrow=False,
        font={"size": 11, "color": "#555"},
    )


#: The λ, ρ, α rows: column -> (y-axis title, log scale).
#: The ρ axis shows this range; ρ far outside it carries no extra information.
RHO_RANGE = (-1.0, 2.0)

HYPER_ROWS: dict[str, tuple[str, bool]] = {
    "damping": ("damping λ", True),
    "rho": ("reduction ratio ρ", False),
    "alpha": ("step size α", True),
}


def hyperparameter_figure(
    runs: Any, x: str = "step", title: str | None = None
) -> go.Figure:
    """λ, ρ and α against iterations, one row each, shared x axis.

    ρ = (h(θ + δ) − h(θ)) / (M(δ) − M(0)) is drawn with the Levenberg–Marquardt band
    [1/4, 3/4] shaded: inside it the quadratic model is trusted as is. Runs that do
    not record a quantity (SGD has no λ) have no trace in that row.
    """
    if x not in X_AXES:
        raise ValueError(f"x = {x!r} must be one of {', '.join(X_AXES)}")
    runs = as_runs(runs)
    frames = _frames(runs)
    styles = run_styles(runs)
    rows = list(HYPER_ROWS)
    figure = make_subplots(
        rows=len(rows),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
        subplot_titles=[HYPER_ROWS[r][0] for r in rows],
    )
    shown: set[str] = set()
    for row, column in enumerate(rows, start=1):
        values = []
        for label, frame in frames.items():
            ys = frame[column].to_numpy(float)
            if not np.isfinite(ys).any():
                continue
            values.append(ys)
            color, dash = styles[label]
            figure.add_trace(
                go.Scatter(
                    x=nan_to_none(frame[x].to_numpy(float)),
                    y=nan_to_none(ys),
                    mode="lines+markers" if len(ys) <= 60 else "lines",
                    marker={"size": 4},
                    name=label,
                    legendgroup=label,
                    showlegend=label not in shown,
                    line={"color": color, "dash": dash},
                    hovertemplate=(
                        f"<b>{label}</b><br>{X_AXES[x]} = %{{x{NUMBER}}}<br>"
                        f"{HYPER_ROWS[column][0]} = %{{y{NUMBER}}}<extra></extra>"
                    ),
                ),
                row=row,
                col=1,
            )
            shown.add(label)
        title_text, log = HYPER_ROWS[column]
        log = log and use_log(values, True)
        figure.update_yaxes(
            title_text=title_text + (" (log)" if log else ""),
            type="log" if log else "linear",
            row=row,
            col=1,
        )
        if column == "rho" and values:
            # ρ explodes when the predicted decrease is ~0 (near convergence); keep
            # the informative range and say so, the hover still has exact values.
            finite = np.concatenate([v[np.isfinite(v)] for v in values])
            low, high = RHO_RANGE
            if finite.size and (finite.min() < low or finite.max() > high):
                figure.update_yaxes(range=list(RHO_RANGE), row=row, col=1)
                figure.add_annotation(
                    text=f"axis clipped to [{low:g}, {high:g}]; hover for values",
                    xref=f"x{row if row > 1 else ''} domain",
                    yref=f"y{row if row > 1 else ''} domain",
                    x=1.0,
                    y=1.0,
                    xanchor="right",
                    yanchor="bottom",
                    showarrow=False,
                    font={"color": "#777", "size": 11},
                )
        if column == "rho":
            figure.add_hrect(
                y0=0.25,
                y1=0.75,
                fillcolor="#2ca02c",
                opacity=0.08,
                line_width=0,
                row=row,
                col=1,
            )
        if not values:
            figure.add_annotation(
                text="no run records this",
                xref=f"x{row if row > 1 else ''} domain",
                yref=f"y{row if row > 1 else ''} domain",
                x=0.5,
                y=0.5,
                showarrow=False,
                font={"color": "#777"},
            )
    figure.update_xaxes(title_text=X_AXES[x], row=len(rows), col=1)
    apply_layout(
        figure,
        title=title or "Damping λ, reduction ratio ρ and step size α",
        height=700,
    )
    return figure


def summary_rows(runs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per run: label, status, final losses and cost (for tables)."""
    rows = []
    for label, run in as_runs(runs).items():
        frame = run.to_frame()
        last = frame.iloc[-1] if len(frame) else None
        row: dict[str, Any] = {"run": label, "status": getattr(run, "status", "ok")}
        for column in (
            "loss",
            "test_loss",
            "test_accuracy",
            "wall_time",
            "grad_evals",
            "curvature_products",
        ):
            row[column] = float(last[column]) if last is not None else float("nan")
        rows.append(row)
    return rows
