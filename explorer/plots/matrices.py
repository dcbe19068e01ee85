"""Heatmaps of curvature matrices: signed (diverging) or log-magnitude, and differences.

Curvature matrices of networks are heavy-tailed: a few entries (the output biases, a
saturated unit's diagonal) are a hundred times the bulk. A diverging scale spanning
±max|C| maps nearly every cell to the neutral colour, and the figure looks like a
blank square. A signed heatmap therefore spans ± a robust magnitude, the 99th
percentile of the nonzero |entries| (when the largest entry is more than twice it),
saturates the entries beyond, and says so on its colour bar and in its title.

Where even that range leaves most nonzero cells indistinguishable from zero (a
network Hessian whose output-layer block is a hundred times its first layer's), the
signed picture is a blank square whichever range it takes: ``scale="auto"`` (the
Curvature page's default) then draws log₁₀|C| instead, and every figure states the
scale it drew and, for ``auto``, why (see :func:`choose_scale`).

Network matrices are read by layer: with ``blocks`` (``problem.blocks()``, one per
module) the figures draw the block boundaries and name the layers on the axes.

Matrices larger than the browser can draw are shown block by block: on the signed
scale each cell is the entry of largest magnitude of its block, sign kept (averaging
signed entries cancels them to grey); on the log scale it is the mean |entry|.
A difference C − R that is zero, or round-off, is a one-line note, not a grey square.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import Tensor

from explorer.plots.common import NUMBER, to_numpy
from explorer.plots.theme import DIVERGING, SEQUENTIAL, apply_layout

#: Matrices larger than this are pooled for display (the browser's limit).
MAX_CELLS = 400
#: A signed heatmap spans ± this quantile of the nonzero |entries| (None: max|C|)…
ROBUST_QUANTILE = 0.99
#: …when the largest |entry| exceeds that quantile by more than this factor (below
#: it the tail leaves most of the colour range to the bulk, and nothing saturates).
ROBUST_RATIO = 2.0
#: Relative size, in units of the working precision's ε, of a difference that is
#: round-off: |C − R| ≤ max(1e-10, 100 ε) · max(|C|, |R|) is "equal to round-off".
ROUNDOFF_ULPS = 100.0
ROUNDOFF_FLOOR = 1e-10
#: Cells within this fraction of the colour range of 0 are indistinguishable from
#: the neutral colour; when most cells are, the figure suggests the log scale (the
#: bulk of a network's Hessian is often 100× below its largest block).
FAINT = 0.05

#: ``scale="auto"`` draws log₁₀|C| when, on the signed scale, more than this share
#: of a panel's *nonzero* cells would be within :data:`FAINT` of the colour range of
#: 0 (exact zeros are structure, e.g. a diagonal or block-diagonal matrix, not a
#: washed-out bulk): the same threshold at which a signed figure says "try the log
#: scale".
BLANK_SHARE = 0.5
#: Matrices up to this size get one tick per parameter and are read entry by entry;
#: ``auto`` keeps them signed, where an entry's sign is the lesson (an indefinite
#: Hessian of two weights), and block names give way to parameter indices.
SMALL_MATRIX = 16
#: The scales a matrix figure accepts (``auto``: chosen by :func:`choose_scale`).
SCALES = ("auto", "signed", "log")
#: A layer narrower than this share of θ gets a boundary but no axis label (labels
#: of a transformer's LayerNorm gains would overprint their neighbours).
LABEL_SHARE = 1 / 40
BLOCK_LINE = {"color": "#444", "width": 1}

#: A log-magnitude heatmap starts at this quantile of the |entries| above
#: round-off (:func:`log_floor`): its colours span the decades the matrix fills, not
#: ten decades down to round-off, and only the lowest 1% share the floor's colour.
LOG_QUANTILE = 0.01

#: What a pooled cell shows, per scale (see :func:`pool`).
POOLING = {"signed": "absmax", "log": "absmean"}
POOLING_WORDS = {
    "mean": "mean of",
    "absmax": "largest-|value| entry of",
    "absmean": "mean |value| of",
}


def pool(
    matrix: Tensor | np.ndarray, max_size: int = MAX_CELLS, how: str = "mean"
) -> tuple[np.ndarray, int]:
    """Pools (P, P) into at most max_size² cells of f × f blocks; returns (array, f).

    ``how``: ``"mean"`` (signed block mean), ``"absmax"`` (the block's entry of
    largest magnitude, with its sign) or ``"absmean"`` (mean |entry|). The last block
    of a row may be smaller than f × f (P need not divide). A matrix that fits is
    returned as it is (f = 1), signed whatever ``how``.

    Example:
        >>> m = np.array([[1.0, -3.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
        >>> pool(m, 2, "absmax")[0].tolist(), pool(m, 2, "absmean")[0].tolist()
        ([[-3.0, 0.0], [0.0, 5.0]], [[1.5, 0.0], [0.0, 5.0]])
    """
    if how not in POOLING_WORDS:
        raise ValueError(f"how = {how!r} must be one of {', '.join(POOLING_WORDS)}")
    values = to_numpy(matrix)
    size = values.shape[0]
    factor = max(1, math.ceil(size / max_size))
    if factor == 1:
        return values, 1
    cells = math.ceil(size / factor)
    padded = np.full((cells * factor, cells * factor), np.nan)
    padded[:size, :size] = values
    # (cells, cells, f²): one row of f² entries per block, NaN padding at the edge.
    blocks = padded.reshape(cells, factor, cells, factor).transpose(0, 2, 1, 3)
    blocks = blocks.reshape(cells, cells, factor * factor)
    if how == "mean":
        return np.nanmean(blocks, axis=2), factor
    if how == "absmean":
        return np.nanmean(np.abs(blocks), axis=2), factor
    largest = np.nanargmax(np.abs(blocks), axis=2)  # every block has a real entry
    return np.take_along_axis(blocks, largest[..., None], axis=2)[..., 0], factor


@dataclass(frozen=True)
class ColourRange:
    """The colour range ±``bound`` of a signed heatmap.

    Attributes:
        bound: The diverging scale spans [−bound, bound].
        peak: max |value| of the values drawn.
        saturated: How many values lie beyond ±bound (drawn in the end colours).
        cells: How many values there are.
        faint: The fraction of them within :data:`FAINT` · bound of 0.
        blank: The fraction of the *nonzero* ones within :data:`FAINT` · bound of
            0: cells that hold a value but are drawn as if they held none.
    """

    bound: float
    peak: float
    saturated: int
    cells: int
    faint: float = 0.0
    blank: float = 0.0

    @property
    def clipped(self) -> bool:
        return self.saturated > 0


def signed_range(
    values: np.ndarray,
    quantile: float | None = ROBUST_QUANTILE,
    limit: float | None = None,
) -> ColourRange:
    """The colour range of a signed heatmap of ``values``.

    bound = ``limit`` if given; else q, the ``quantile`` of the nonzero finite
    |values|, when max|values| > :data:`ROBUST_RATIO` · q; else max|values| (1 for
    an all-zero matrix).

    Example:
        >>> values = np.r_[np.ones(999), -1e6]  # one huge entry among many ones
        >>> colours = signed_range(values)
        >>> colours.bound, colours.saturated, colours.faint
        (1.0, 1, 0.0)
        >>> signed_range(values, quantile=None).faint  # ±1e6: the ones look like 0
        0.999
        >>> signed_range(np.r_[np.zeros(99), 1.0]).blank  # zeros are not washed out
        0.0
    """
    magnitudes = np.abs(values[np.isfinite(values)])
    peak = float(magnitudes.max()) if magnitudes.size else 0.0
    if limit is not None:
        bound = float(limit)
    else:
        bound = peak
        nonzero = magnitudes[magnitudes > 0]
        if quantile is not None and nonzero.size:
            robust = float(np.quantile(nonzero, quantile))
            if peak > ROBUST_RATIO * robust:
                bound = robust
        bound = bound or 1.0
    saturated = int((magnitudes > bound).sum())
    faint = float((magnitudes <= FAINT * bound).mean()) if magnitudes.size else 1.0
    nonzero = magnitudes[magnitudes > 0]
    blank = float((nonzero <= FAINT * bound).mean()) if nonzero.size else 0.0
    return ColourRange(bound, peak, saturated, int(values.size), faint, blank)


@dataclass(frozen=True)
class ScaleChoice:
    """The colour scale a matrix figure draws, and why.

    Attributes:
        scale: ``"signed"`` or ``"log"``: what is drawn.
        asked: What the caller asked for (``"auto"``, ``"signed"`` or ``"log"``).
        blank: Per panel, the share of its nonzero cells a signed scale draws as
            ≈ 0 (:attr:`ColourRange.blank`); panels that are all zero or round-off
            next to the others are left out.
    """

    scale: str
    asked: str
    blank: Mapping[str, float]

    @property
    def washed_out(self) -> dict[str, float]:
        """The panels a signed scale would leave blank (share > :data:`BLANK_SHARE`)."""
        return {n: b for n, b in self.blank.items() if b > BLANK_SHARE}

    @property
    def note(self) -> str:
        """The scale in words, for the figure's title."""
        if self.scale == "signed":
            return "signed colours" + " (auto)" * (self.asked == "auto")
        if self.asked != "auto":
            return "log₁₀|C| colours"
        worst = max(self.washed_out, key=self.washed_out.get)
        return (
            f"log₁₀|C| colours (auto): signed, {self.washed_out[worst]:.0%} of "
            f"{worst}'s nonzero cells would look ≈ 0"
        )


def choose_scale(
    panels: Mapping[str, np.ndarray],
    scale: str = "auto",
    quantile: float | None = ROBUST_QUANTILE,
) -> ScaleChoice:
    """The scale to draw ``panels`` (name -> values as drawn, i.e. pooled) with.

    ``"signed"`` and ``"log"`` are kept. ``"auto"`` is ``"log"`` when any panel
    larger than :data:`SMALL_MATRIX` would look blank on its signed range
    (:func:`signed_range`): more than :data:`BLANK_SHARE` of its nonzero cells
    within :data:`FAINT` of 0. Otherwise it is ``"signed"``, which also shows signs.

    Example:
        >>> bulk = np.full((20, 20), 1e-3); bulk[15:, 15:] = 1.0  # one loud block
        >>> choice = choose_scale({"H": bulk})
        >>> choice.scale, choice.washed_out
        ('log', {'H': 0.9375})
        >>> choose_scale({"H": bulk}, "signed").scale
        'signed'
        >>> choose_scale({"H": bulk[15:, 15:]}).scale  # 5 × 5: read entry by entry
        'signed'
    """
    if scale not in SCALES:
        raise ValueError(f"scale = {scale!r} must be one of {', '.join(SCALES)}")
    peaks = {
        name: float(np.nanmax(np.abs(v))) if v.size else 0.0
        for name, v in panels.items()
    }
    largest = max(peaks.values(), default=0.0)
    blank = {
        name: signed_range(values, quantile).blank
        for name, values in panels.items()
        if peaks[name] > ROUNDOFF_FLOOR * largest and values.shape[0] > SMALL_MATRIX
    }
    drawn = scale
    if scale == "auto":
        drawn = "log" if any(b > BLANK_SHARE for b in blank.values()) else "signed"
    return ScaleChoice(drawn, scale, blank)


def _number(value: float) -> str:
    """Three significant digits with a real minus sign."""
    return f"{value:.3g}".replace("-", "−")


def _signed_colorbar(title: str, bound: float, clipped: bool) -> dict:
    """A colour bar for ±bound; a clipped one marks its ends ≤ −bound and ≥ bound."""
    if not clipped:
        return {"title": title}
    ticks = [-bound, -bound / 2, 0.0, bound / 2, bound]
    text = [f"≤ {_number(-bound)}", _number(-bound / 2), "0", _number(bound / 2)]
    return {
        "title": f"{title}<br>(saturated beyond ±{_number(bound)})",
        "tickvals": ticks,
        "ticktext": [*text, f"≥ {_number(bound)}"],
    }


def _check_scale(scale: str) -> str:
    if scale not in ("signed", "log"):
        raise ValueError(f"scale = {scale!r} must be 'signed' or 'log'")
    return scale


def _hover(name: str, factor: int, how: str) -> str:
    # a pooled cell sits at its block's centre (cell_centres)
    where = (
        "row %{y}, column %{x}"
        if factor == 1
        else "rows ≈ %{y:.0f}, columns ≈ %{x:.0f}"
    )
    pooled = f"<br>({POOLING_WORDS[how]} {factor}×{factor} cells)" if factor > 1 else ""
    return f"{name}<br>{where}<br>value %{{customdata{NUMBER}}}{pooled}<extra></extra>"


def cell_centres(cells: int, factor: int) -> np.ndarray:
    """Where the pooled cells sit in parameter indices: at the centre of their
    f × f block, so cell i spans [i·f − ½, (i + 1)·f − ½] and a layer boundary at
    index s − ½ falls on a cell edge whenever f divides s.

    Example:
        >>> cell_centres(3, 1).tolist(), cell_centres(3, 4).tolist()
        ([0.0, 1.0, 2.0], [1.5, 5.5, 9.5])
    """
    return np.arange(cells) * factor + (factor - 1) / 2


def _trace(
    values: np.ndarray,
    factor: int,
    scale: str,
    *,
    unit: float = 1.0,
    limit: float | None = None,
    floor: float | None = None,
    quantile: float | None = ROBUST_QUANTILE,
    name: str = "",
    showscale: bool = True,
    colorbar_title: str | None = None,
) -> tuple[go.Heatmap, ColourRange | None]:
    """The heatmap of pooled ``values`` drawn as values ÷ ``unit`` (hover: values).

    Returns the trace and, on the signed scale, its :class:`ColourRange` (in the
    drawn units).
    """
    shown = values / unit
    index = cell_centres(values.shape[0], factor)
    common = {
        "x": index,
        "y": index,
        "customdata": values,
        "hovertemplate": _hover(name, factor, POOLING[scale]),
        "showscale": showscale,
        "name": name,
    }
    if scale == "signed":
        colours = signed_range(shown, quantile, limit)
        trace = go.Heatmap(
            z=shown,
            colorscale=DIVERGING,
            zmid=0.0,
            zmin=-colours.bound,
            zmax=colours.bound,
            colorbar=_signed_colorbar(
                colorbar_title or "value", colours.bound, colours.clipped
            ),
            **common,
        )
        return trace, colours
    low = floor if floor is not None else log_floor(shown)
    trace = go.Heatmap(
        z=np.log10(np.maximum(np.abs(shown), low)),
        colorscale=SEQUENTIAL,
        zmin=math.log10(low),
        colorbar={"title": colorbar_title or "log₁₀|value|"},
        **common,
    )
    return trace, None


def log_floor(values: np.ndarray, quantile: float = LOG_QUANTILE) -> float:
    """Where a log₁₀|C| colour scale starts: the ``quantile`` of the |values| above
    round-off (:data:`ROUNDOFF_FLOOR` · max|values|), or that round-off level when
    none is above it (1e-10 for an all-zero matrix). Zeros and smaller values are
    drawn in the floor's colour.

    Example:
        >>> values = np.r_[np.zeros(50), 1e-17, np.logspace(-3, 0, 100)]
        >>> round(float(np.log10(log_floor(values))), 2)  # zeros, round-off left out
        -2.97
    """
    magnitudes = np.abs(values[np.isfinite(values)])
    peak = float(magnitudes.max()) if magnitudes.size else 0.0
    roundoff = (peak or 1.0) * ROUNDOFF_FLOOR
    above = magnitudes[magnitudes > roundoff]
    if not above.size:
        return roundoff
    return max(roundoff, float(np.quantile(above, quantile)))


def heatmap_trace(
    matrix: Tensor,
    scale: str = "signed",
    *,
    limit: float | None = None,
    floor: float | None = None,
    max_size: int = MAX_CELLS,
    name: str = "",
    showscale: bool = True,
    quantile: float | None = ROBUST_QUANTILE,
) -> tuple[go.Heatmap, int]:
    """One heatmap trace and the pooling factor used.

    ``"signed"``: a diverging scale centred at zero, symmetric ±``limit`` (default:
    the robust range of :func:`signed_range`; entries beyond saturate and the colour
    bar says so). ``"log"``: log₁₀|M| from ``floor`` (default :func:`log_floor`) up;
    hover always shows the value (pooled: see :data:`POOLING`).
    """
    _check_scale(scale)
    values, factor = pool(matrix, max_size, POOLING[scale])
    trace, _ = _trace(
        values,
        factor,
        scale,
        limit=limit,
        floor=floor,
        quantile=quantile,
        name=name,
        showscale=showscale,
    )
    return trace, factor


def _block_lines(figure: go.Figure, blocks, row=None, col=None) -> None:
    kwargs = {"row": row, "col": col} if row is not None else {}
    for _, span in blocks or ():
        edge = span.start - 0.5
        if edge > 0:
            figure.add_vline(x=edge, line=BLOCK_LINE, **kwargs)
            figure.add_hline(y=edge, line=BLOCK_LINE, **kwargs)


def block_ticks(
    blocks: Sequence[tuple[str, slice]] | None, size: int
) -> tuple[list[float], list[str]] | None:
    """Axis ticks naming the layers: one at the centre of every block of at least
    :data:`LABEL_SHARE` of the ``size`` parameters, labelled with its name.

    None (parameter indices instead) without blocks, with a single block, or for a
    matrix of at most :data:`SMALL_MATRIX` parameters (one tick per parameter).

    Example:
        >>> block_ticks([("0 · Linear", slice(0, 80)), ("2 · Linear", slice(80, 100))],
        ...             100)
        ([39.5, 89.5], ['0 · Linear', '2 · Linear'])
        >>> block_ticks([("ln", slice(0, 1)), ("fc", slice(1, 100))], 100)
        ([50.0], ['fc'])
    """
    if not blocks or len(blocks) < 2 or size <= SMALL_MATRIX:
        return None
    values, names = [], []
    for name, span in blocks:
        if span.stop - span.start >= LABEL_SHARE * size:
            values.append((span.start + span.stop - 1) / 2)
            names.append(name)
    return values, names


def _axis_ticks(blocks, size: int) -> tuple[dict, dict, str]:
    """(x axis, y axis, axis title) settings: layer names, one tick per parameter
    for small matrices, or Plotly's own parameter-index ticks.
    """
    ticks = block_ticks(blocks, size)
    if ticks is not None:
        values, names = ticks
        layers = {"tickmode": "array", "tickvals": values, "ticktext": names}
        return {**layers, "tickangle": -30}, layers, "layer (parameter blocks)"
    if size <= SMALL_MATRIX:
        return {"dtick": 1}, {"dtick": 1}, "parameter index"
    return {}, {}, "parameter index"


def _clip_note(colours: ColourRange | None, quantile: float | None) -> str:
    """What a reader must know about a saturated colour range ("" when none)."""
    if colours is None or not colours.clipped:
        return ""
    source = (
        f" ({quantile * 100:g}th percentile of |C|)" if quantile is not None else ""
    )
    return (
        f"colours clipped at ±{_number(colours.bound)}{source}: "
        f"{colours.saturated:,} of {colours.cells:,} cells saturate "
        f"(max {_number(colours.peak)})"
    )


def _faint_note(colours: ColourRange | None) -> str:
    """The hint that most cells look neutral on this scale ("" when few do)."""
    if colours is None or colours.blank <= BLANK_SHARE or colours.peak == 0:
        return ""
    return f"{colours.faint:.0%} of cells ≈ 0 on this scale: try the log scale"


def _with_notes(title: str, notes: Sequence[str]) -> str:
    """A title with a small second line of notes."""
    notes = [n for n in notes if n]
    return title + (f"<br><sup>{'; '.join(notes)}</sup>" if notes else "")


def matrix_heatmap(
    matrix: Tensor,
    title: str = "",
    scale: str = "signed",
    *,
    blocks: Sequence[tuple[str, slice]] | None = None,
    max_size: int = MAX_CELLS,
    quantile: float | None = ROBUST_QUANTILE,
) -> go.Figure:
    """A heatmap of one (P, P) matrix (rows top to bottom, as it is printed).

    Args:
        matrix: The matrix.
        title: Figure title.
        scale: ``"signed"`` (diverging, zero white), ``"log"`` (log₁₀|M|) or
            ``"auto"`` (log where signed would look blank: :func:`choose_scale`).
        blocks: ``problem.blocks()`` (names as they should read) to draw the
            layer boundaries and name the layers on the axes.
        max_size: Larger matrices are pooled (noted in the title and the hover).
        quantile: The signed colour range's quantile of |entries| (see
            :func:`signed_range`); None spans ±max|M|.
    """
    choice = _resolve_scale(matrix, scale, max_size, quantile, title or "the matrix")
    scale = choice.scale
    values, factor = pool(matrix, max_size, POOLING[scale])
    trace, colours = _trace(values, factor, scale, quantile=quantile, name=title)
    figure = go.Figure(trace)
    _block_lines(figure, blocks)
    size = int(matrix.shape[0])
    notes = [choice.note, _clip_note(colours, quantile), _faint_note(colours)]
    if factor > 1:
        notes.insert(1, f"each cell: {POOLING_WORDS[POOLING[scale]]} its block")
    if not np.any(values):
        notes.append("all entries are 0")
    pooled = f" (pooled {factor}×{factor})" if factor > 1 else ""
    x_ticks, y_ticks, axis = _axis_ticks(blocks, size)
    apply_layout(
        figure,
        title=_with_notes((title or "Matrix") + pooled, notes),
        xaxis={"title": f"{axis} (column)", "constrain": "domain", **x_ticks},
        yaxis={
            "title": f"{axis} (row)",
            "autorange": "reversed",
            "scaleanchor": "x",
            **y_ticks,
        },
        height=560,
    )
    return figure


def _resolve_scale(
    matrix: Tensor, scale: str, max_size: int, quantile: float | None, name: str
) -> ScaleChoice:
    """:func:`choose_scale` for one matrix, judged on the cells a signed figure
    draws (its pooled largest-|value| entries).
    """
    if scale not in SCALES:
        raise ValueError(f"scale = {scale!r} must be one of {', '.join(SCALES)}")
    if scale != "auto":
        return ScaleChoice(scale, scale, {})
    return choose_scale({name: pool(matrix, max_size, "absmax")[0]}, scale, quantile)


def matrices_figure(
    matrices: Mapping[str, Tensor],
    scale: str = "signed",
    *,
    title: str = "",
    blocks: Sequence[tuple[str, slice]] | None = None,
    max_size: int = 200,
    shared_scale: bool = False,
    columns: int = 3,
    quantile: float | None = ROBUST_QUANTILE,
) -> go.Figure:
    """Several matrices in a grid, each with its magnitude in its title.

    With ``shared_scale`` every panel uses one colour scale (compare magnitudes: on
    the signed scale, the widest of the panels' robust ranges); by default each
    panel is drawn in units of its own range (compare structure: one large matrix,
    such as the empirical Fisher far from the optimum, would otherwise wash the
    others out): its robust range on the signed scale (:func:`signed_range`), its
    max|C| on the log scale. A panel's title says where its colours saturate; the
    hover always shows the exact value.

    ``scale="auto"`` draws every panel on one kind of scale, log₁₀|C| when any
    panel would look blank on the signed one (:func:`choose_scale`), so that the
    panels stay comparable; the title says which scale was drawn and why.
    ``blocks`` (``problem.blocks()``, names as they should read) draws the layer
    boundaries in every panel and names the layers on the axes (row names on the
    first column only: every panel has the same layers).
    """
    if scale not in SCALES:
        raise ValueError(f"scale = {scale!r} must be one of {', '.join(SCALES)}")
    if not matrices:
        raise ValueError("pass at least one matrix")
    names = list(matrices)
    choice = ScaleChoice(scale, scale, {})
    if scale == "auto":  # judged on the cells a signed figure would draw
        signed = {name: pool(m, max_size, "absmax")[0] for name, m in matrices.items()}
        choice = choose_scale(signed, scale, quantile)
    scale = choice.scale
    how = POOLING[scale]
    pooled = {name: pool(m, max_size, how) for name, m in matrices.items()}
    peaks = {n: float(np.abs(to_numpy(m)).max()) for n, m in matrices.items()}
    magnitude = max(peaks.values()) or 1.0
    ranges = (
        {n: signed_range(pooled[n][0], quantile) for n in names}
        if scale == "signed"
        else {}
    )
    shared_bound = max((r.bound for r in ranges.values()), default=1.0)
    # one floor for every log panel (one colour bar): the lowest panel's, so that
    # no panel has more than LOG_QUANTILE of its cells at the floor
    log_units = {n: 1.0 if shared_scale else (peaks[n] or 1.0) for n in names}
    shared_floor = min(log_floor(pooled[n][0] / log_units[n]) for n in names)
    cols = max(1, min(columns, len(names)))
    rows = math.ceil(len(names) / cols)
    drawn: dict[str, tuple[go.Heatmap, ColourRange | None]] = {}
    for index, name in enumerate(names):
        values, factor = pooled[name]
        if scale == "signed":
            unit = 1.0 if shared_scale else ranges[name].bound
            limit = shared_bound if shared_scale else 1.0
            floor = None
        else:
            unit = log_units[name]
            limit = None
            floor = shared_floor
        drawn[name] = _trace(
            values,
            factor,
            scale,
            unit=unit,
            limit=limit,
            floor=floor,
            name=name,
            showscale=index == len(names) - 1,
        )
    titles = [_panel_title(n, peaks[n], magnitude, drawn[n][1], scale) for n in names]
    figure = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=titles,
        horizontal_spacing=0.08,
        vertical_spacing=0.12,
    )
    size = int(next(iter(matrices.values())).shape[0])
    x_ticks, y_ticks, axis = _axis_ticks(blocks, size)
    clipped = any(c is not None and c.clipped for _, c in drawn.values())
    for index, name in enumerate(names):
        row, col = divmod(index, cols)
        trace, colours = drawn[name]
        if not shared_scale:
            trace.colorbar = (
                _signed_colorbar("value ÷ its panel's range", 1.0, clipped)
                if scale == "signed"
                else {"title": "log₁₀(|value| ÷ max)"}
            )
        elif colours is not None:
            trace.colorbar = _signed_colorbar("value", colours.bound, clipped)
        figure.add_trace(trace, row=row + 1, col=col + 1)
        figure.update_yaxes(autorange="reversed", row=row + 1, col=col + 1)
        figure.update_xaxes(**x_ticks, row=row + 1, col=col + 1)
        # every panel has the same layers: their names once, left of the first column
        row_names = col == 0 or "tickvals" not in y_ticks
        figure.update_yaxes(
            **y_ticks, showticklabels=row_names, row=row + 1, col=col + 1
        )
        _block_lines(figure, blocks, row=row + 1, col=col + 1)
    for index in range(len(names), rows * cols):  # the grid's unused cells
        row, col = divmod(index, cols)
        figure.update_xaxes(visible=False, row=row + 1, col=col + 1)
        figure.update_yaxes(visible=False, row=row + 1, col=col + 1)
    figure.update_xaxes(title_text=axis, row=rows, col=1)
    figure.update_yaxes(title_text=axis, row=1, col=1)
    factor = next(iter(pooled.values()))[1]
    notes = [
        choice.note,
        f"each cell: {POOLING_WORDS[how]} a {factor}×{factor} block" * (factor > 1),
    ]
    faint = [
        name
        for name, (_, colours) in drawn.items()
        if _faint_note(colours) and peaks[name] > ROUNDOFF_FLOOR * magnitude
    ]
    if faint:
        notes.append(
            f"most cells of {', '.join(faint)} ≈ 0 on this scale: try the log scale"
        )
    apply_layout(
        figure,
        title=_with_notes(title or "Curvature matrices", notes),
        height=380 * rows + 80,
    )
    return figure


def _panel_title(
    name: str, peak: float, largest: float, colours: ColourRange | None, scale: str
) -> str:
    """``name`` over its max |C|, where its colours saturate, or that it is ≈ 0."""
    facts = [f"max |C| = {peak:.3g}"]
    if peak == 0:
        facts.append("all entries 0")
    elif peak <= ROUNDOFF_FLOOR * largest:
        facts.append("round-off next to the other panels")
    elif scale == "signed" and colours is not None and colours.clipped:
        facts.append(f"{colours.saturated:,} cells saturate")
    return f"{name}<br><sup>{', '.join(facts)}</sup>"


def roundoff_tolerance(*matrices: Tensor) -> float:
    """The relative size of a round-off difference between ``matrices``:
    max(:data:`ROUNDOFF_FLOOR`, :data:`ROUNDOFF_ULPS` · ε) for the least precise
    floating dtype among them.

    Example:
        >>> roundoff_tolerance(torch.zeros(1, dtype=torch.float32))
        1.1920928955078125e-05
        >>> roundoff_tolerance(torch.zeros(1, dtype=torch.float64))
        1e-10
    """
    eps = max(
        (torch.finfo(m.dtype).eps for m in matrices if m.dtype.is_floating_point),
        default=torch.finfo(torch.float64).eps,
    )
    return max(ROUNDOFF_FLOOR, ROUNDOFF_ULPS * eps)


def note_figure(title: str, text: str) -> go.Figure:
    """A short figure holding one line of text where a heatmap would say nothing."""
    figure = go.Figure()
    figure.add_annotation(
        text=text,
        xref="paper",
        yref="paper",
        x=0.5,
        y=0.5,
        showarrow=False,
        font={"size": 14, "color": "#333"},
    )
    apply_layout(
        figure,
        title=title,
        xaxis={"visible": False},
        yaxis={"visible": False},
        height=150,
        margin={"t": 50, "b": 10},
    )
    return figure


def difference_figure(
    matrix: Tensor,
    reference: Tensor,
    names: tuple[str, str] = ("C", "R"),
    *,
    blocks: Sequence[tuple[str, slice]] | None = None,
    max_size: int = MAX_CELLS,
    rtol: float | None = None,
) -> go.Figure:
    """C − R on a diverging scale, titled with ‖C − R‖_F / ‖R‖_F (the title always
    ends "= <that ratio>)", whichever form the figure takes).

    When max|C − R| ≤ ``rtol`` · max(max|C|, max|R|) (default
    :func:`roundoff_tolerance`) the heatmap would be one neutral square: the figure
    is then a one-line note that C is identical to R (max |C − R| = 0) or equal to
    round-off (max |C − R| stated).
    """
    if matrix.shape != reference.shape:
        raise ValueError(
            f"shapes differ: {tuple(matrix.shape)} and {tuple(reference.shape)}"
        )
    c, r = names
    diff = matrix.double() - reference.double()
    worst = float(diff.abs().max()) if diff.numel() else 0.0
    scale = max(float(matrix.abs().max()), float(reference.abs().max()), 0.0)
    tolerance = rtol if rtol is not None else roundoff_tolerance(matrix, reference)
    norm = float(torch.linalg.matrix_norm(reference.double()))
    rel = float(torch.linalg.matrix_norm(diff)) / norm if norm > 0 else math.inf
    if worst == 0.0:
        rel = 0.0  # also when R = 0: C = R = 0
    frobenius = f"‖{c} − {r}‖<sub>F</sub> / ‖{r}‖<sub>F</sub> = {rel:.3g}"
    if worst == 0.0:
        return note_figure(
            f"{c} − {r}: identical ({frobenius})",
            f"{c} is identical to {r} (max |{c} − {r}| = 0): nothing to draw",
        )
    if worst <= tolerance * scale:
        return note_figure(
            f"{c} − {r}: round-off only ({frobenius})",
            f"{c} equals {r} up to round-off: max |{c} − {r}| = {worst:.2g} "
            f"= {worst / scale:.2g} × the largest |entry|",
        )
    return matrix_heatmap(
        diff, f"{c} − {r}  ({frobenius})", "signed", blocks=blocks, max_size=max_size
    )
