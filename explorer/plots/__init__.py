"""Pure Plotly figure builders (no Streamlit): data in, ``go.Figure`` out.

Colours come from :mod:`explorer.plots.theme`: one per rule and per curvature,
shared by every figure. :func:`write_html` bundles figures into one offline page.
"""

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

__all__ = [
    "block_spectra_figure",
    "contour_figure",
    "curvature_color",
    "decision_boundary_figure",
    "density_figure",
    "difference_figure",
    "field_traces",
    "figures_to_html",
    "fitted_curves_figure",
    "hyperparameter_figure",
    "interpolation_figure",
    "kl_figure",
    "loss_figure",
    "matrices_figure",
    "matrix_heatmap",
    "model_traces",
    "path_traces",
    "plane_figure",
    "quality_bars_figure",
    "quality_figure",
    "rule_color",
    "run_color",
    "run_report",
    "spectrum_figure",
    "write_html",
    "write_report",
]
