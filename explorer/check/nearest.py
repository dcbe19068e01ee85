r"""Which known matrix a curvature behaves like: the nearest reference, scale included.

For a checked matrix C and every reference R the problem can build (the Hessian,
GGN, Fisher, sampled Fisher, empirical Fisher, their diagonals and K-FAC), the
least-squares scale and the relative residual

.. math::

    α = \frac{⟨C, R⟩_F}{‖R‖_F^2}, \qquad
    r = \frac{‖C − αR‖_F}{‖C‖_F} = \sqrt{1 − \cos^2(C, R)}

(:math:`\cos(C, R) = ⟨C, R⟩_F / (‖C‖_F ‖R‖_F)`) say "C ≈ α R, up to a fraction r of
C". The nearest reference has the smallest r; residuals within :data:`TIE` of the
smallest are ties, decided by the order of :data:`NEAREST_KEYS` (exact matrices
before approximations), so a curvature equal to both the GGN and the Fisher (a
matching loss) is named the GGN.

Matrix-free points estimate the three inner products from Rademacher probes z
(:math:`⟨A, B⟩_F = E[(A z)·(B z)]`, Hutchinson), with the same probes for every R.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from explorer.curvature.registry import CURVATURES

#: The candidates, exact matrices first (the order breaks ties).
NEAREST_KEYS: tuple[str, ...] = (
    "hessian",
    "ggn",
    "fisher",
    "fisher_mc",
    "ef",
    "diag_hessian",
    "diag_ggn",
    "diag_fisher",
    "diag_ef",
    "kfac",
    "kfac_empirical",
)

#: Candidates that are a registered curvature with options: key -> (curvature,
#: options, label). K-FAC of the empirical Fisher names an "empirical K-FAC",
#: which the plain candidates would call K-FAC (the Kronecker structure, not the
#: labels, dominates its distance to the full matrices).
CANDIDATE_VARIANTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "kfac_empirical": (
        "kfac",
        {"output_factor": "empirical"},
        "K-FAC of the empirical Fisher",
    ),
}

#: Residuals closer than this to the smallest one are ties (rounding of equal
#: matrices, e.g. the GGN and the Fisher of a matching loss).
TIE = 1e-9


#: The candidates in a sentence ("behaves like the GGN"); others use their label.
WORDS = {
    "hessian": "the Hessian",
    "ggn": "the GGN",
    "fisher": "the Fisher",
    "fisher_mc": "the Monte Carlo Fisher",
    "ef": "the empirical Fisher",
    "diag_hessian": "the Hessian's diagonal",
    "diag_ggn": "the GGN's diagonal",
    "diag_fisher": "the Fisher's diagonal",
    "diag_ef": "the empirical Fisher's diagonal",
    "kfac": "K-FAC",
    "kfac_empirical": "K-FAC of the empirical Fisher",
}


def _words(key: str, label: str) -> str:
    return WORDS.get(key, label)


@dataclass(frozen=True)
class NearestReference:
    """The reference R that C is closest to, up to a scale.

    Attributes:
        key: R's key (one of :data:`NEAREST_KEYS`).
        label: R's label.
        scale: α = ⟨C, R⟩_F / ‖R‖²_F (aggregated: the median over points).
        residual: ‖C − αR‖_F / ‖C‖_F (aggregated: the mean over points).
        candidates: ``(key, scale, residual)`` of every R, nearest first.
        scale_tol: s of the scale verdict: a scale outside [1/s, s] leads the
            sentence.
    """

    key: str
    label: str
    scale: float
    residual: float
    candidates: tuple[tuple[str, float, float], ...] = ()
    scale_tol: float = 1.5

    def sentence(self) -> str:
        """What C behaves like in plain words; a scale outside [1/s, s] leads.

        Example:
            >>> NearestReference("ggn", "GGN", 2.0, 0.0).sentence()
            'behaves like 2.00 × the GGN (ggn), residual 0.0 %'
        """
        what = f"{_words(self.key, self.label)} ({self.key})"
        residual = f"residual {100 * self.residual:.1f} %"
        s = self.scale_tol
        ok = self.scale > 0 and 1 / s <= self.scale <= s
        if not ok:
            return f"behaves like {self.scale:.2f} × {what}, {residual}"
        return f"behaves like {what}, scale {self.scale:.2f}, {residual}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "scale": self.scale,
            "residual": self.residual,
            "sentence": self.sentence(),
            "candidates": [list(c) for c in self.candidates],
        }


def candidate_label(key: str) -> str:
    """A candidate's label: its variant's, its curvature's, or the key."""
    if key in CANDIDATE_VARIANTS:
        return CANDIDATE_VARIANTS[key][2]
    return CURVATURES[key].label if key in CURVATURES else key


def candidate_curvature(key: str) -> tuple[str, dict[str, Any]]:
    """(curvature key, options) that build candidate ``key``."""
    if key in CANDIDATE_VARIANTS:
        base, options, _ = CANDIDATE_VARIANTS[key]
        return base, dict(options)
    return key, {}


def fit(matrix: Tensor, reference: Tensor) -> tuple[float, float]:
    """(α, r) of C ≈ αR from the dense matrices (r = 1 for R = 0, NaN for C = 0).

    r is computed as ‖C − αR‖_F / ‖C‖_F itself: the shortcut √(1 − cos²) loses half
    the digits (1e-8 for equal matrices), too coarse to tell ties.
    """
    scale, residual = fit_from_products(
        float((matrix * reference).sum()),
        float(matrix.pow(2).sum()),
        float(reference.pow(2).sum()),
    )
    if math.isfinite(residual) and scale != 0:
        norm = float(torch.linalg.matrix_norm(matrix))
        residual = float(torch.linalg.matrix_norm(matrix - scale * reference)) / norm
    return scale, residual


def fit_from_products(inner: float, c_squared: float, r_squared: float):
    """(α, r) from ⟨C, R⟩_F, ‖C‖²_F and ‖R‖²_F (exact or estimated)."""
    if not c_squared > 0:
        return math.nan, math.nan
    if not r_squared > 0:
        return 0.0, 1.0
    scale = inner / r_squared
    # ‖C − αR‖² = ‖C‖² − ⟨C, R⟩²/‖R‖²; clamped: estimates can undershoot zero.
    rest = max(0.0, c_squared - inner * scale)
    return scale, math.sqrt(rest / c_squared)


def rank(
    fits: Mapping[str, tuple[float, float]], scale_tol: float = 1.5
) -> NearestReference | None:
    """The nearest of ``{key: (α, r)}`` (ties by :data:`NEAREST_KEYS`' order)."""
    finite = {k: v for k, v in fits.items() if math.isfinite(v[1])}
    if not finite:
        return None
    best = min(r for _, r in finite.values())

    def order(key: str) -> tuple[float, int, str]:
        residual = finite[key][1]
        tied = best if residual <= best + TIE else residual
        index = NEAREST_KEYS.index(key) if key in NEAREST_KEYS else len(NEAREST_KEYS)
        return tied, index, key

    keys = sorted(finite, key=order)
    candidates = tuple((k, finite[k][0], finite[k][1]) for k in keys)
    key = keys[0]
    label = candidate_label(key)
    return NearestReference(key, label, *finite[key], candidates, scale_tol)


def nearest_dense(
    matrix: Tensor,
    references: Mapping[str, Tensor],
    exclude: str = "",
    scale_tol: float = 1.5,
) -> NearestReference | None:
    """The nearest of dense ``references`` to C (``exclude``: C's own key, whose
    variants are left out too: K-FAC is not named after its own empirical form).
    """
    fits = {k: fit(matrix, r) for k, r in references.items() if not _own(k, exclude)}
    return rank(fits, scale_tol)


def _own(candidate: str, exclude: str) -> bool:
    """Whether ``candidate`` is the checked curvature ``exclude`` or its variant."""
    return bool(exclude) and candidate_curvature(candidate)[0] == exclude


@dataclass
class ProbeProducts:
    """Random probes Z (P, m) and the products R Z of every reference (shared by
    every checked curvature at one matrix-free point).
    """

    probes: Tensor
    products: dict[str, Tensor]


def nearest_probed(
    matvec: Any, probed: ProbeProducts, exclude: str = "", scale_tol: float = 1.5
) -> NearestReference | None:
    """The nearest reference estimated from probes: ⟨C, R⟩ ≈ mean (Cz)·(Rz)."""
    cz = torch.stack([matvec(z) for z in probed.probes.T], dim=1)
    m = probed.probes.shape[1]
    c_squared = float(cz.pow(2).sum()) / m
    fits = {}
    for key, rz in probed.products.items():
        if _own(key, exclude):
            continue
        fits[key] = fit_from_products(
            float((cz * rz).sum()) / m, c_squared, float(rz.pow(2).sum()) / m
        )
    return rank(fits, scale_tol)


def aggregate(points: Sequence[NearestReference | None]) -> NearestReference | None:
    """Over points: the reference with the smallest mean residual among those
    measured at the most points, its median scale and mean residual.
    """
    measured = [p for p in points if p is not None]
    if not measured:
        return None
    per_key: dict[str, list[tuple[float, float]]] = {}
    for point in measured:
        for key, scale, residual in point.candidates:
            per_key.setdefault(key, []).append((scale, residual))
    most = max(len(v) for v in per_key.values())
    fits = {
        key: (
            statistics.median(s for s, _ in values),
            statistics.fmean(r for _, r in values),
        )
        for key, values in per_key.items()
        if len(values) == most
    }
    return rank(fits, measured[0].scale_tol)
