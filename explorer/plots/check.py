"""The check battery's figures: quality along the run, spectra, matrices, the race.

Each function takes one curvature's result of the battery (an
:class:`explorer.check.CurvatureResult`, read through its attributes only, so this
module does not depend on :mod:`explorer.check`) and returns ``(caption, figure)``
pairs, one or two per problem, built from the figures of :mod:`explorer.plots`.
:func:`figure_fragment` renders one figure for an HTML page.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go

from explorer.plots.matrices import difference_figure, matrices_figure
from explorer.plots.spectra import QUALITY_ROWS, quality_figure, spectrum_figure
from explorer.plots.training import loss_figure

#: Heatmaps are pooled to at most this many cells per side (keeps the page small).
HEATMAP_CELLS = 100

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
    rows = [p.metrics() for p in points if p.ok]
    return pd.DataFrame(rows, columns=["step", *QUALITY_ROWS])


def quality_figures(result: Any) -> Captioned:
    """C and the baselines against R at each point of the reference run."""
    out = []
    for problem in result.problems:
        frames = {result.key: _frame(problem.points)}
        frames.update({k: _frame(v) for k, v in problem.baselines.items()})
        frames = {k: f for k, f in frames.items() if len(f)}
        if frames:
            title = f"{problem.description}: approximations of {problem.reference}"
            out.append((problem.description, quality_figure(frames, title=title)))
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
        out.append((problem.description, figure))
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
        out.append((problem.description, figure))
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
            out.append((f"{name}: loss {against}", figure))
    return out


def figure_fragment(figure: go.Figure, embed_script: bool) -> str:
    """One figure as an HTML fragment; with ``embed_script`` plotly.js is inlined
    (the first figure of a page: the page then opens offline).
    """
    return figure.to_html(
        full_html=False,
        include_plotlyjs=embed_script,
        config={"displaylogo": False, "responsive": True},
    )
