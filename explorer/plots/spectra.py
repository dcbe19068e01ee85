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


#: Two spectra whose eigenvalues differ by at most this × their largest |λ| are
#: identical: one hides under the other, so the legend says "identical to …".
IDENTICAL_RTOL = 1e-10
#: Rank axes spanning at most this many ranks get one tick per rank (Plotly would
#: otherwise tick halves: ranks 0.5, 1.5).
RANK_TICKS = 10


def identical_spectra(
    first: tuple[np.ndarray, np.ndarray, int],
    second: tuple[np.ndarray, np.ndarray, int],
    rtol: float = IDENTICAL_RTOL,
) -> bool:
    """Whether two (values, ranks, P) series have the same ranks and eigenvalues
    within ``rtol`` · max|λ|.

    Example:
        >>> ranks = np.arange(1, 4)
        >>> a = (np.array([3.0, 2.0, 1.0]), ranks, 3)
        >>> b = (np.array([3.0, 2.0, 1.0 + 1e-14]), ranks, 3)
        >>> identical_spectra(a, b), identical_spectra(a, (a[0] * 2, ranks, 3))
        (True, False)
    """
    (a, ranks_a, size_a), (b, ranks_b, size_b) = first, second
    if size_a != size_b or a.shape != b.shape or not np.array_equal(ranks_a, ranks_b):
        return False
    if not a.size:
        return True
    scale = max(np.abs(a).max(), np.abs(b).max())
    return bool(np.abs(a - b).max() <= rtol * scale)


def _twins(labels: list[str], series: list) -> dict[str, str]:
    """``{label: the first earlier label with an identical spectrum}``."""
    twins: dict[str, str] = {}
    for index, label in enumerate(labels):
        for earlier in range(index):
            if labels[earlier] in twins:
                continue  # compare with the first of each group only
            if identical_spectra(series[earlier], series[index]):
                twins[label] = labels[earlier]
                break
    return twins


def _rank_ticks(figure: go.Figure, ranks: list[np.ndarray], col: int | None) -> None:
    """Whole-number ticks on a linear rank axis (one per rank when few)."""
    where = {"row": 1, "col": col} if col else {}
    pooled = np.concatenate(ranks) if ranks else np.array([1])
    span = pooled.max() - pooled.min() if pooled.size else 0
    ticks = {"dtick": 1, "tick0": 1} if span <= RANK_TICKS else {}
    figure.update_xaxes(tickformat="d", **ticks, **where)


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
    axis instead of two clumps at the ends of one long rank axis. A spectrum
    identical to an earlier one (Fisher and GGN for a matching loss) would hide under
    it: its legend entries say "identical to …" and it is drawn as larger open
    rings around the first.

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
    twins = _twins(list(spectra), series)
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
        twin = twins.get(label)
        same = f", identical to {twin}" if twin else ""
        hover = (
            f"<b>{label}</b>{same}<br>rank %{{x}}<br>"
            f"λ = %{{customdata{NUMBER}}}<extra></extra>"
        )
        # A twin is drawn over its original: rings around its markers, not on them.
        ring = {"size": 13, "line": {"width": 2, "color": color}} if twin else {}
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
                        name=label + same,
                        legendgroup=label,
                        showlegend=label not in shown,
                        marker={
                            "color": color,
                            "size": 6,
                            **({**ring, "symbol": "circle-open"} if twin else {}),
                        },
                        line={
                            "color": color,
                            "width": 1,
                            "dash": "dot" if twin else "solid",
                        },
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
                name = f"{label}{suffix}{same}"
                if twin and not symbol.endswith("-open"):
                    symbol += "-open"
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
                        marker={"color": color, "size": 7, "symbol": symbol, **ring},
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
    if not log_x:
        for part, col in ((1, 1), (2, 2)) if split else ((None, None),):
            panel = [
                r[(r <= size / 2) == (part == 1)] if part else r
                for _, r, size in series
            ]
            _rank_ticks(figure, panel, col)
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
    "relative_frobenius_error": ("‖C − R‖<sub>F</sub> / ‖R‖<sub>F</sub>", True),
    "cosine": ("cos∠(d<sub>C</sub>, d<sub>R</sub>)", False),
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
