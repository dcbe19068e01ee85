"""Spectra of curvature matrices and the quality of approximations (THEORY.md §4).

* :func:`dense_eigenpairs`: every eigenpair of a small operator (size-guarded).
* :func:`lanczos` / :func:`eigenpairs`: the top-k and bottom-k eigenpairs from
  products only (no P × P matrix; GPU-capable).
* :func:`spectral_density`: stochastic Lanczos quadrature; :func:`hutchinson_trace`.
* :func:`block_spectra`: per-layer blocks.
* :func:`generalized_spectrum`: the spectrum of (C + λI)⁻¹A.
* :func:`approximation_quality` and :func:`quality_along_trajectory`.
"""

from explorer.spectra.dense import DENSE_EIGEN_MAX_PARAMS, dense_eigenpairs, eigenvalues
from explorer.spectra.extreme import block_spectra, condition_number, eigenpairs
from explorer.spectra.generalized import generalized_spectrum
from explorer.spectra.lanczos import lanczos
from explorer.spectra.operators import SymmetricOperator, as_operator
from explorer.spectra.quality import (
    QUALITY_METRICS,
    ApproximationQuality,
    approximation_quality,
    quality_along_trajectory,
)
from explorer.spectra.result import Eigenpairs
from explorer.spectra.slq import (
    SpectralDensity,
    TraceEstimate,
    hutchinson_trace,
    spectral_density,
)

__all__ = [
    "DENSE_EIGEN_MAX_PARAMS",
    "QUALITY_METRICS",
    "ApproximationQuality",
    "Eigenpairs",
    "SpectralDensity",
    "SymmetricOperator",
    "TraceEstimate",
    "approximation_quality",
    "as_operator",
    "block_spectra",
    "condition_number",
    "dense_eigenpairs",
    "eigenpairs",
    "eigenvalues",
    "generalized_spectrum",
    "hutchinson_trace",
    "lanczos",
    "quality_along_trajectory",
    "spectral_density",
]
