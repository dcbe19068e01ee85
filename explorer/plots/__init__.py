"""Pure Plotly figure builders (no Streamlit): data in, ``go.Figure`` out.

Colours come from :mod:`explorer.plots.theme`: one per rule and per curvature,
shared by every figure. :func:`write_html` bundles figures into one offline page.
Code outside this package and ``explorer/ui`` does not import plotly; it annotates
figures with :data:`Figure`.
"""

from typing import TypeAlias

import plotly.graph_objects as go

from explorer.plots.curves import (
    REFERENCE_COLOR,
    Curve,
    curves_figure,
    grid_heatmaps,
    reference_curve,
)
from explorer.plots.function_space import (
    decision_boundary_figure,
    fitted_curves_figure,
    kl_figure,
)
from explorer.plots.html import figures_to_html, write_html
from explorer.plots.landscape import (
    contour_figure,
    field_traces,
    interpolation_figure,
    model_traces,
    path_traces,
    plane_figure,
    point_traces,
)
from explorer.plots.matrices import difference_figure, matrices_figure, matrix_heatmap
from explorer.plots.report import run_report, write_report
from explorer.plots.spectra import (
    block_spectra_figure,
    density_figure,
    quality_bars_figure,
    quality_figure,
    spectrum_figure,
)
from explorer.plots.theme import curvature_color, rule_color, run_color
from explorer.plots.training import hyperparameter_figure, loss_figure

#: What every builder returns (a Plotly figure), for annotations elsewhere.
Figure: TypeAlias = go.Figure

__all__ = [
    "REFERENCE_COLOR",
    "Curve",
    "Figure",
    "block_spectra_figure",
    "contour_figure",
    "curvature_color",
    "curves_figure",
    "decision_boundary_figure",
    "density_figure",
    "difference_figure",
    "field_traces",
    "figures_to_html",
    "fitted_curves_figure",
    "grid_heatmaps",
    "hyperparameter_figure",
    "interpolation_figure",
    "kl_figure",
    "loss_figure",
    "matrices_figure",
    "matrix_heatmap",
    "model_traces",
    "path_traces",
    "plane_figure",
    "point_traces",
    "quality_bars_figure",
    "quality_figure",
    "reference_curve",
    "rule_color",
    "run_color",
    "run_report",
    "spectrum_figure",
    "write_html",
    "write_report",
]
