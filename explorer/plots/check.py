"""The check battery's figures: quality along the run, spectra, matrices, the race.

Each function takes one curvature's result of the battery (an
:class:`explorer.check.CurvatureResult`, read through its attributes only, so this
module does not depend on :mod:`explorer.check`) and returns ``(caption, figure)``
pairs, one or two per problem, built from the figures of :mod:`explorer.plots`.
:func:`figure_fragment` renders one figure for an HTML page.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import json
import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from explorer.plots.matrices import difference_figure, matrices_figure
from explorer.plots.spectra import QUALITY_ROWS, quality_figure, spectrum_figure
from explorer.plots.theme import apply_layout, curvature_color
from explorer.plots.training import loss_figure

#: Heatmaps are pooled to at most this many cells per side (keeps the page small:
#: a 48 × 48 panel still shows every layer's blocks of the default problems).
HEATMAP_CELLS = 48

#: Figure data is rounded to this many significant digits (and stored as float32
#: when that loses nothing more), which halves a page of spectra and heatmaps.
DATA_DIGITS = 6

#: A plotted range narrower than this fraction of its magnitude is "constant": its
#: axis gets an explicit ±:data:`FLAT_MARGIN` range and short ticks (else Plotly
#: ticks 1 − 4e-16 as 0.9999999999999995559).
FLAT_RTOL = 1e-9

#: The half-width of the range of a constant axis, as a fraction of its value.
FLAT_MARGIN = 0.05

#: Tick format of a constant axis: 4 significant digits, trailing zeros trimmed.
FLAT_TICKFORMAT = ".4~g"

#: The race's x axes: history column -> how captions and titles say it.
RACE_AXES = {"step": "per iteration", "wall_time": "against wall time"}

Captioned = list[tuple[str, go.Figure]]


def _last_ok(points: tuple[Any, ...]) -> Any | None:
    for point in reversed(points):
        if point.ok:
            return point
    return None


def _log_x(problem: Any) -> bool:
    """Spectra of more than 50 eigenvalues read best against log rank."""
    return problem.num_params > 50


def _frame(points: tuple[Any, ...]) -> pd.DataFrame:
    rows = [p.row() for p in points if p.ok]
    return pd.DataFrame(rows, columns=["step", *QUALITY_ROWS])


def summary_figure(result: Any) -> go.Figure | None:
    """Small multiples, one panel per problem: ‖C − R‖_F/‖R‖_F against the step of
    the reference run for the checked curvature and the baselines (log scale).
    None when no point was measured.
    """
    problems = [p for p in result.problems if any(q.ok for q in p.points)]
    if not problems:
        return None
    figure = make_subplots(
        rows=1,
        cols=len(problems),
        subplot_titles=[p.description for p in problems],
        horizontal_spacing=0.06,
    )
    shown: set[str] = set()
    for col, problem in enumerate(problems, start=1):
        series = {result.key: problem.points, **problem.baselines}
        for key, points in series.items():
            done = [p for p in points if p.ok and p.quality is not None]
            if not done:
                continue
            errors = [p.quality.relative_frobenius_error for p in done]
            # exact matches (error 0) sit at the floor of the log axis, not off it
            errors = [max(e, 1e-16) if math.isfinite(e) else None for e in errors]
            checked = key == result.key
            figure.add_trace(
                go.Scatter(
                    x=[p.step for p in done],
                    y=errors,
                    name=key,
                    legendgroup=key,
                    showlegend=key not in shown,
                    mode="lines+markers",
                    line={
                        "color": curvature_color(key),
                        "width": 3 if checked else 1.5,
                        "dash": "solid" if checked else "dot",
                    },
                    hovertemplate=f"{key}<br>step %{{x}}<br>error %{{y:.4g}}"
                    "<extra></extra>",
                ),
                row=1,
                col=col,
            )
            shown.add(key)
        figure.update_xaxes(title_text="step", row=1, col=col)
    figure.update_yaxes(type="log", exponentformat="power")
    figure.update_yaxes(title_text="‖C − R‖<sub>F</sub> / ‖R‖<sub>F</sub>", col=1)
    apply_layout(
        figure,
        height=280,
        title={"text": f"{result.key}: relative error against {result.reference}"},
        margin={"t": 80, "b": 50},
    )
    return steady_axes(figure)


def quality_figures(result: Any) -> Captioned:
    """C and the baselines against R at each point of the reference run."""
    out = []
    for problem in result.problems:
        frames = {result.key: _frame(problem.points)}
        frames.update({k: _frame(v) for k, v in problem.baselines.items()})
        frames = {k: f for k, f in frames.items() if len(f)}
        if frames:
            title = f"{problem.description}: approximations of {problem.reference}"
            figure = quality_figure(frames, title=title)
            out.append((problem.description, steady_axes(figure)))
    return out


def spectra_figures(result: Any) -> Captioned:
    """Eigenvalues of C, of R and of the baselines at the last point."""
    out = []
    for problem in result.problems:
        point = _last_ok(problem.points)
        if point is None or point.eigenvalues is None:
            continue
        spectra = {result.key: point.eigenvalues}
        if point.reference_eigenvalues is not None:
            spectra[problem.reference] = point.reference_eigenvalues
        for key, points in problem.baselines.items():
            match = [p for p in points if p.step == point.step and p.ok]
            if match and match[0].eigenvalues is not None:
                spectra[key] = match[0].eigenvalues
        title = (
            f"{problem.description}, step {point.step}: eigenvalues of C, the "
            f"reference {problem.reference} and the baselines"
        )
        figure = spectrum_figure(spectra, title=title, log_x=_log_x(problem))
        out.append((problem.description, steady_axes(figure)))
    return out


def generalized_figures(result: Any, damping: float) -> Captioned:
    """Eigenvalues of (C + λI)⁻¹(R + λI) at the last point (all 1: C = R)."""
    out = []
    for problem in result.problems:
        point = _last_ok(problem.points)
        if point is None:
            continue
        spectra = {}
        if point.generalized is not None:
            spectra[result.key] = point.generalized
        for key, points in problem.baselines.items():
            match = [
                p for p in points if p.step == point.step and p.generalized is not None
            ]
            if match:
                spectra[key] = match[0].generalized
        if not spectra:
            continue
        title = (
            f"{problem.description}, step {point.step}: eigenvalues of "
            f"(C + λI)⁻¹(R + λI), R = {problem.reference}, λ = {damping:g} "
            "(all 1 = perfect)"
        )
        figure = spectrum_figure(
            spectra, title=title, reference_line=1.0, log_x=_log_x(problem)
        )
        out.append((problem.description, steady_axes(figure)))
    return out


def matrix_figures(result: Any) -> Captioned:
    """C and R side by side, and C − R, at the last point (pooled)."""
    out = []
    for problem in result.problems:
        point = _last_ok(problem.points)
        if point is None or point.matrix is None or point.reference_matrix is None:
            continue
        where = f"{problem.description}, step {point.step}"
        both = {result.key: point.matrix, problem.reference: point.reference_matrix}
        side = matrices_figure(both, title=f"{where}: C and R", max_size=HEATMAP_CELLS)
        out.append((f"{where}: C and R", side))
        names = (result.key, problem.reference)
        figure = difference_figure(
            point.matrix, point.reference_matrix, names, max_size=HEATMAP_CELLS
        )
        out.append((f"{where}: C − R", figure))
    return out


def race_figures(result: Any) -> Captioned:
    """The race's training loss against iterations and against wall time."""
    out = []
    for problem in result.problems:
        if not problem.histories:
            continue
        name = problem.description
        for x, against in RACE_AXES.items():
            figure = loss_figure(
                problem.histories,
                x=x,
                metrics=("loss",),
                title=f"{name}: training loss {against}",
            )
            out.append((f"{name}: loss {against}", steady_axes(figure)))
    return out


# ------------------------------------------------------------ axes and size
def _axis_key(reference: str | None, letter: str) -> str:
    """``"x2"`` -> ``"xaxis2"`` (a trace's axis reference to its layout key)."""
    suffix = (reference or letter)[1:]
    return f"{letter}axis{suffix}"


def _numbers(values: Any) -> np.ndarray | None:
    """Finite float values of a trace attribute, None when not numeric."""
    if values is None:
        return None
    try:
        array = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError):
        return None
    return array[np.isfinite(array)]


def flat_range(values: np.ndarray, log: bool) -> list[float] | None:
    """The explicit range of a (numerically) constant axis, None otherwise.

    ±:data:`FLAT_MARGIN` around the value (in log10 units on a log axis; [−1, 1]
    around 0 on a linear one).
    """
    if values.size == 0:
        return None
    if log:
        values = values[values > 0]
        if values.size == 0:
            return None
    low, high = float(values.min()), float(values.max())
    size = max(abs(low), abs(high))
    if high - low > FLAT_RTOL * size:
        return None
    middle = 0.5 * (low + high)
    if log:
        return [
            math.log10(middle * (1 - FLAT_MARGIN)),
            math.log10(middle * (1 + FLAT_MARGIN)),
        ]
    if size == 0:
        return [-1.0, 1.0]
    return [middle - FLAT_MARGIN * size, middle + FLAT_MARGIN * size]


def steady_axes(figure: go.Figure) -> go.Figure:
    """Gives every axis whose plotted data is constant an explicit range and short
    ticks (:data:`FLAT_TICKFORMAT`, 3 of them); axes with a range set stay as set.
    Returns the figure.
    """
    values: dict[str, list[np.ndarray]] = {}
    for trace in figure.data:
        if trace.type not in ("scatter", "scattergl", "bar"):
            continue  # heatmap axes are cell positions
        for letter in ("x", "y"):
            numbers = _numbers(getattr(trace, letter, None))
            if numbers is not None:
                key = _axis_key(getattr(trace, f"{letter}axis", None), letter)
                values.setdefault(key, []).append(numbers)
    for key, arrays in values.items():
        axis = figure.layout[key]
        if axis is None or axis.range is not None:
            continue
        flat = flat_range(np.concatenate(arrays), log=axis.type == "log")
        if flat is not None:
            axis.update(range=flat, tickformat=FLAT_TICKFORMAT, nticks=3)
    return figure


def _compact_array(values: Any) -> Any:
    """A float array rounded to :data:`DATA_DIGITS` significant digits, as float32
    when every value fits it (Plotly writes it as base64 f4: 4 bytes a number).
    """
    try:
        array = np.asarray(values)
    except (TypeError, ValueError):
        return values
    if array.dtype.kind != "f" or array.size < 16:
        return values
    finite = np.abs(array[np.isfinite(array)])
    nonzero = finite[finite > 0]
    rounded = array.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(
            np.isfinite(rounded) & (rounded != 0),
            10.0 ** (DATA_DIGITS - 1 - np.floor(np.log10(np.abs(rounded)))),
            1.0,
        )
        rounded = np.where(scale > 0, np.round(rounded * scale) / scale, rounded)
    fits = nonzero.size == 0 or (nonzero.min() > 1e-30 and nonzero.max() < 1e30)
    return rounded.astype(np.float32) if fits else rounded


def compact(figure: go.Figure) -> go.Figure:
    """Rounds the numeric data of every trace (x, y, z, customdata) in place."""
    for trace in figure.data:
        for name in ("x", "y", "z", "customdata"):
            value = getattr(trace, name, None)
            if value is not None:
                trace[name] = _compact_array(value)
    return figure


def prepare(figure: go.Figure) -> go.Figure:
    """Constant axes steadied and data compacted (what every report figure gets)."""
    return compact(steady_axes(figure))


# ------------------------------------------------------------------- HTML
@functools.lru_cache(maxsize=1)
def _plotly_gzip_base64() -> str:
    """plotly.js gzipped and base64-encoded (4.8 MB -> 2.0 MB), computed once."""
    data = gzip.compress(get_plotlyjs().encode("utf-8"), 9, mtime=0)
    return base64.b64encode(data).decode("ascii")


#: Unpacks the embedded plotly.js once (DecompressionStream: Chrome 80, Firefox
#: 113, Safari 16.4), then draws every figure queued with ``checkPlot``.
LOADER = """<script type="application/octet-stream" id="plotly-gzip">%s</script>
<script>
(function () {
  var queue = [];
  window.checkTemplates = {};
  window.checkPlot = function (draw) { window.Plotly ? draw() : queue.push(draw); };
  function flush() { while (queue.length) { queue.shift()(); } }
  if (typeof DecompressionStream === "undefined") {
    document.addEventListener("DOMContentLoaded", function () {
      var note = document.createElement("p");
      note.textContent = "This browser cannot unpack the embedded charting library " +
        "(it needs DecompressionStream): the figures are not drawn.";
      document.body.insertBefore(note, document.body.firstChild);
    });
    return;
  }
  var text = atob(document.getElementById("plotly-gzip").textContent);
  var bytes = new Uint8Array(text.length);
  for (var i = 0; i < text.length; i++) { bytes[i] = text.charCodeAt(i); }
  var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  new Response(stream).text().then(function (source) {
    var script = document.createElement("script");
    script.textContent = source;
    document.head.appendChild(script);
    flush();
  });
})();
</script>"""


def _json(value: Any) -> str:
    """Compact JSON that cannot close the script element it sits in."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("</", "<\\/")


def figure_fragment(
    figure: go.Figure, embed_script: bool, templates: set[str] | None = None
) -> str:
    """One figure as an HTML fragment: a div and a script that draws it.

    With ``embed_script`` the fragment starts with :data:`LOADER` and plotly.js,
    gzipped and base64-encoded (the first figure of a page: the page then opens
    offline). Data is compacted (:func:`prepare`); the layout's template is written
    once per page: ``templates`` holds the ones already written (pass the same set
    for every figure of a page; None writes it with every figure).
    """
    spec = json.loads(prepare(figure).to_json())
    layout = spec.get("layout", {})
    template = layout.pop("template", None)
    digest = hashlib.sha1(_json(template).encode()).hexdigest()[:10]
    ident = f"plot-{hashlib.sha1(_json(spec).encode()).hexdigest()[:12]}"
    parts = [LOADER % _plotly_gzip_base64()] if embed_script else []
    if template is not None and (templates is None or digest not in templates):
        parts.append(
            f"<script>checkTemplates[{digest!r}] = {_json(template)};</script>"
        )
        if templates is not None:
            templates.add(digest)
    height = int(layout.get("height") or 450)
    use = f"layout.template = checkTemplates[{digest!r}]; " if template else ""
    config = {"displaylogo": False, "responsive": True}
    parts.append(
        f'<div id="{ident}" class="plot" style="height:{height}px;width:100%"></div>'
        f"<script>checkPlot(function () {{ var layout = {_json(layout)}; {use}"
        f'Plotly.newPlot("{ident}", {_json(spec.get("data", []))}, layout, '
        f"{_json(config)}); }});</script>"
    )
    return "\n".join(parts)
