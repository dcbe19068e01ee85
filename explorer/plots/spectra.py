"""Spectra: eigenvalue overlays (negative ones visible), densities, blocks, quality."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.plots.common import NUMBER, nan_to_none, to_numpy, use_log
from explorer.plots.theme import apply_layout, curvature_color
from explorer.spectra.result import Eigenpairs
from explorer.spectra.slq import SpectralDensity


def _ranks(pairs: Eigenpairs | Any) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues sorted descending and their ranks in the full spectrum (1 = largest)."""
    if isinstance(pairs, Eigenpairs):
        values = to_numpy(pairs.eigenvalues)[::-1]
        size, which, count = pairs.size, pairs.which, len(values)
        if which in ("all", "largest", "magnitude"):
            ranks = np.arange(1, count + 1)
        elif which == "smallest":
            ranks = np.arange(size - count + 1, size + 1)
        else:  # both: the top half are ranks 1.., the bottom half ..P
            top = count - count // 2
            ranks = np.concatenate(
                [np.arange(1, top + 1), np.arange(size - count // 2 + 1, size + 1)]
            )
        return values, ranks
    values = np.sort(to_numpy(pairs))[::-1]
    return values, np.arange(1, len(values) + 1)


def _key_of(label: str, keys: Mapping[str, str] | None) -> str:
    return (keys or {}).get(label, label)


def _is_split(series: list[tuple[np.ndarray, np.ndarray, int]]) -> bool:
    """Whether the ranks hold both ends of a spectrum with a gap between them."""
    if any(len(ranks) >= size for _, ranks, size in series):
        return False  # a whole spectrum: one axis shows it best
    top = any(len(r) and r.min() <= size / 2 for _, r, size in series)
    bottom = any(len(r) and r.max() > size / 2 for _, r, size in series)
    return top and bottom


def _series(pairs: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """(values, ranks, P) of one Eigenpairs, eigenvalue array or list of Eigenpairs."""
    if isinstance(pairs, (list, tuple)) and pairs and isinstance(pairs[0], Eigenpairs):
        parts = [_ranks(p) for p in pairs]
        values = np.concatenate([v for v, _ in parts])
        ranks = np.concatenate([r for _, r in parts])
        order = np.argsort(ranks)
        return values[order], ranks[order], pairs[0].size
    values, ranks = _ranks(pairs)
    size = pairs.size if isinstance(pairs, Eigenpairs) else len(values)
    return values, ranks, size


def spectrum_figure(
    spectra: Mapping[str, Eigenpairs | Any],
    scale: str = "log",
    *,
    title: str = "",
    keys: Mapping[str, str] | None = None,
    reference_line: float | None = None,
    log_x: bool = False,
    zero_tol: float = 1e-12,
) -> go.Figure:
    """Eigenvalues of several matrices against their rank (1 = largest).

    On the log scale the y axis shows |λ|: positive eigenvalues are filled circles,
    negative ones open diamonds in the same colour with their own legend entry, so
    the Hessian's negative curvature is visible next to the PSD matrices. Hover
    shows the signed value. When the data hold the top and the bottom of a spectrum
    (Lanczos at both ends), the two ends get side-by-side panels with a shared y
    axis instead of two clumps at the ends of one long rank axis.

    Args:
        spectra: ``{label: Eigenpairs, a list of them (e.g. top and bottom) or
            eigenvalues}``; labels are curvature keys or are mapped to keys by
            ``keys`` (for colours).
        scale: ``"log"`` (|λ|, log axis) or ``"linear"`` (signed λ).
        title: Figure title.
        keys: ``{label: curvature key}`` for colours when labels are not keys.
        reference_line: A horizontal line (e.g. 1 for generalized spectra).
        log_x: Log rank axis (many eigenvalues).
        zero_tol: On the log scale, |λ| ≤ zero_tol · max|λ| is numerically zero
            (rounding makes PSD matrices show ±1e-18): drawn as open triangles at
            that level, not as spurious negative curvature.
    """
    if scale not in ("log", "linear"):
        raise ValueError(f"scale = {scale!r} must be 'log' or 'linear'")
    series = [_series(pairs) for pairs in spectra.values()]
    split = _is_split(series)
    if split:
        figure = make_subplots(
            rows=1,
            cols=2,
            shared_yaxes=True,
            horizontal_spacing=0.04,
            subplot_titles=("largest eigenvalues", "smallest eigenvalues"),
        )
    else:
        figure = go.Figure()
    for (label, _), (values, ranks, size) in zip(spectra.items(), series):
        color = curvature_color(_key_of(label, keys))
        hover = f"<b>{label}</b><br>rank %{{x}}<br>λ = %{{customdata{NUMBER}}}<extra></extra>"
        parts = (
            [(ranks <= size / 2, 1), (ranks > size / 2, 2)]
            if split
            else [(np.ones(len(ranks), bool), None)]
        )
        shown: set[str] = set()
        for part, col in parts:
            where = {"row": 1, "col": col} if col else {}
            if scale == "linear":
                if not part.any():
                    continue
                figure.add_trace(
                    go.Scatter(
                        x=ranks[part],
                        y=values[part],
                        customdata=values[part],
                        mode="lines+markers",
                        name=label,
                        legendgroup=label,
                        showlegend=label not in shown,
                        marker={"color": color, "size": 6},
                        line={"color": color, "width": 1},
                        hovertemplate=hover,
                    ),
                    **where,
                )
                shown.add(label)
                continue
            tiny = zero_tol * (np.abs(values).max() if len(values) else 0.0)
            for kind, suffix, symbol in (
                ("positive", "", "circle"),
                ("negative", " (λ < 0)", "diamond-open"),
                ("zero", " (|λ| ≈ 0)", "triangle-down-open"),
            ):
                select = {
                    "positive": values > tiny,
                    "negative": values < -tiny,
                    "zero": np.abs(values) <= tiny,
                }[kind]
                mask = part & select
                if not mask.any():
                    continue
                name = f"{label}{suffix}"
                shown_y = (
                    np.abs(values[mask])
                    if kind != "zero"
                    else np.full(int(mask.sum()), max(tiny, 1e-300))
                )
                figure.add_trace(
                    go.Scatter(
                        x=ranks[mask],
                        y=shown_y,
                        customdata=values[mask],
                        mode="markers",
                        name=name,
                        legendgroup=label,
                        showlegend=name not in shown,
                        marker={"color": color, "size": 7, "symbol": symbol},
                        hovertemplate=hover,
                    ),
                    **where,
                )
                shown.add(name)
    if reference_line is not None:
        figure.add_hline(
            y=abs(reference_line) if scale == "log" else reference_line,
            line={"dash": "dot", "color": "#555"},
            annotation_text=f"{reference_line:g}",
        )
    y_title = (
        "|eigenvalue| (log scale; open diamonds: λ < 0)"
        if scale == "log"
        else "eigenvalue λ"
    )
    x_type = "log" if log_x else "linear"
    figure.update_xaxes(title_text="rank (1 = largest eigenvalue)", type=x_type)
    figure.update_yaxes(type="log" if scale == "log" else "linear")
    figure.update_yaxes(title_text=y_title, **({"row": 1, "col": 1} if split else {}))
    apply_layout(figure, title=title or "Eigenvalues", margin={"t": 90})
    return figure


def density_figure(
    densities: Mapping[str, SpectralDensity],
    *,
    sigma: float | None = None,
    num: int = 512,
    log_y: bool = True,
    title: str = "",
    keys: Mapping[str, str] | None = None,
) -> go.Figure:
    """Smoothed spectral densities (SLQ) on a signed eigenvalue axis.

    The x axis is linear and includes negative eigenvalues (left of the dotted zero
    line); the y axis is logarithmic by default so that the bulk near zero and the
    few outliers are both visible.
    """
    figure = go.Figure()
    for label, density in densities.items():
        kernel = sigma if sigma is not None else density.default_sigma()
        grid = density.grid(num, kernel)
        ys = to_numpy(density.evaluate(grid, kernel))
        if log_y:
            ys = np.maximum(ys, 1e-12 * max(ys.max(), 1e-300))
        color = curvature_color(_key_of(label, keys))
        figure.add_trace(
            go.Scatter(
                x=to_numpy(grid),
                y=ys,
                mode="lines",
                name=f"{label} (trace ≈ {density.trace():.4g})",
                line={"color": color, "width": 2},
                hovertemplate=(
                    f"<b>{label}</b><br>λ = %{{x{NUMBER}}}<br>density %{{y{NUMBER}}}"
                    "<extra></extra>"
                ),
            )
        )
    figure.add_vline(x=0.0, line={"dash": "dot", "color": "#555"})
    apply_layout(
        figure,
        title=title or "Spectral density (stochastic Lanczos quadrature)",
        xaxis={"title": "eigenvalue λ"},
        yaxis={
            "title": "density φ(λ)" + (" (log scale)" if log_y else ""),
            "type": "log" if log_y else "linear",
        },
    )
    return figure


def block_spectra_figure(
    blocks: Mapping[str, Eigenpairs], *, title: str = "", key: str = ""
) -> go.Figure:
    """Per-layer eigenvalues as strips (one column per block), |λ| on a log axis."""
    figure = go.Figure()
    color = curvature_color(key) if key else "#1f77b4"
    for sign, suffix, symbol in ((1, "λ > 0", "circle"), (-1, "λ < 0", "diamond-open")):
        xs, ys, raw = [], [], []
        for name, pairs in blocks.items():
            values = to_numpy(pairs.eigenvalues)
            mask = values > 0 if sign > 0 else values < 0
            xs += [f"{name} ({pairs.size:,} params)"] * int(mask.sum())
            ys += list(np.abs(values[mask]))
            raw += list(values[mask])
        if xs:
            figure.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    customdata=raw,
                    mode="markers",
                    name=suffix,
                    marker={"color": color, "symbol": symbol, "size": 8},
                    hovertemplate=(
                        f"block %{{x}}<br>λ = %{{customdata{NUMBER}}}<extra></extra>"
                    ),
                )
            )
    apply_layout(
        figure,
        title=title or "Eigenvalues of each layer's diagonal block",
        xaxis={"title": "layer (block)", "type": "category"},
        yaxis={"title": "|eigenvalue| (log scale)", "type": "log"},
    )
    return figure


#: Quality metrics drawn along a trajectory: column -> (title, log axis).
QUALITY_ROWS: dict[str, tuple[str, bool]] = {
    "relative_frobenius_error": ("‖C − R‖_F / ‖R‖_F", True),
    "cosine": ("cos∠(d_C, d_R)", False),
    "top_overlap": ("top-k eigenvector overlap", False),
    "trace_ratio": ("tr C / tr R", False),
    "condition": ("cond(C + λI)", True),
}


def quality_figure(
    frames: Mapping[str, Any], *, title: str = "", keys: Mapping[str, str] | None = None
) -> go.Figure:
    """Approximation quality against the step (one line per approximation).

    Args:
        frames: ``{label: DataFrame}`` from
            :func:`~explorer.spectra.quality_along_trajectory` (labels are curvature
            keys, or mapped to keys by ``keys``).
        title: Figure title.
        keys: ``{label: curvature key}`` for colours.
    """
    rows = list(QUALITY_ROWS)
    figure = make_subplots(
        rows=len(rows),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.05,
        subplot_titles=[QUALITY_ROWS[r][0] for r in rows],
    )
    for row, column in enumerate(rows, start=1):
        values = []
        for label, frame in frames.items():
            ys = frame[column].to_numpy(float)
            values.append(ys)
            figure.add_trace(
                go.Scatter(
                    x=frame["step"].to_numpy(),
                    y=nan_to_none(ys),
                    mode="lines+markers",
                    name=label,
                    legendgroup=label,
                    showlegend=row == 1,
                    line={"color": curvature_color(_key_of(label, keys))},
                    hovertemplate=(
                        f"<b>{label}</b><br>step %{{x}}<br>{QUALITY_ROWS[column][0]} = "
                        f"%{{y{NUMBER}}}<extra></extra>"
                    ),
                ),
                row=row,
                col=1,
            )
        log = QUALITY_ROWS[column][1] and use_log(values, True)
        figure.update_yaxes(type="log" if log else "linear", row=row, col=1)
    figure.update_xaxes(title_text="iteration", row=len(rows), col=1)
    apply_layout(
        figure, title=title or "Approximation quality along the run", height=900
    )
    return figure


def quality_bars_figure(qualities: Mapping[str, Any], *, title: str = "") -> go.Figure:
    """Approximation metrics of several curvatures at one point, side by side.

    Args:
        qualities: ``{label: ApproximationQuality}``.
        title: Figure title.
    """
    metrics = ["relative_frobenius_error", "cosine", "top_overlap", "trace_ratio"]
    figure = make_subplots(
        rows=1, cols=len(metrics), subplot_titles=[QUALITY_ROWS[m][0] for m in metrics]
    )
    for col, metric in enumerate(metrics, start=1):
        for label, quality in qualities.items():
            value = float(getattr(quality, metric))
            figure.add_trace(
                go.Bar(
                    x=[label],
                    y=[value if np.isfinite(value) else None],
                    name=label,
                    legendgroup=label,
                    showlegend=col == 1,
                    marker={"color": curvature_color(quality.curvature)},
                    hovertemplate=(
                        f"<b>{label}</b> vs {quality.reference}<br>"
                        f"{QUALITY_ROWS[metric][0]} = %{{y{NUMBER}}}<extra></extra>"
                    ),
                ),
                row=1,
                col=col,
            )
    apply_layout(
        figure, title=title or "Approximation quality", height=440, margin={"t": 100}
    )
    return figure
