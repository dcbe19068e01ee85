"""The Curvature page's computations, cached: matrices, spectra and quality."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import streamlit as st
import torch

import explorer as ex
from explorer.spectra import (
    approximation_quality,
    dense_eigenpairs,
    eigenpairs,
    generalized_spectrum,
)
from explorer.ui.views import Point

#: Heatmaps and exact spectra up to this many parameters.
DENSE_VIEW_MAX = 3000


@dataclass
class CurvatureAnalysis:
    """Everything the page draws for one point and a set of curvatures."""

    matrices: dict[str, torch.Tensor] = field(default_factory=dict)
    spectra: dict[str, Any] = field(default_factory=dict)
    generalized: dict[str, Any] = field(default_factory=dict)
    qualities: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    dense: bool = True


def applicable(problem: ex.Problem) -> list[str]:
    """Curvature keys that can be built on ``problem``."""
    keys = []
    for key, spec in ex.CURVATURES.items():
        if not spec.selectable:
            continue
        if key == "kfac" and not problem.layers:
            continue
        keys.append(key)
    return keys


@st.cache_data(max_entries=8, show_spinner="Computing curvature matrices and spectra…")
def analyse(
    point_key: str,
    _point: Point,
    curvatures: tuple[str, ...],
    reference: str,
    damping: float,
    k: int,
) -> CurvatureAnalysis:
    """Builds every selected curvature at the point and measures it.

    Cached by ``point_key`` and the selections; failures (e.g. a user plugin that
    raises) are recorded per curvature, never raised.
    """
    del point_key
    problem, theta = _point.problem, _point.theta
    dense = problem.num_params <= DENSE_VIEW_MAX
    out = CurvatureAnalysis(dense=dense)
    operators = {}
    for key in dict.fromkeys((*curvatures, reference, "hessian")):
        try:
            operators[key] = ex.curvature(key, problem, theta)
        except (ValueError, ArithmeticError, RuntimeError) as error:
            out.errors[key] = str(error)
    if dense and reference not in curvatures and reference in operators:
        try:  # the differences compare against it
            out.matrices[reference] = operators[reference].dense()
        except (ValueError, ArithmeticError, RuntimeError) as error:
            out.errors[reference] = str(error)
    for key in curvatures:
        operator = operators.get(key)
        if operator is None:
            continue
        try:
            if dense:
                out.matrices[key] = operator.dense()
                out.spectra[key] = dense_eigenpairs(operator, vectors=False)
            else:
                out.spectra[key] = [
                    eigenpairs(operator, k=k, which="largest"),
                    eigenpairs(operator, k=k, which="smallest"),
                ]
        except (ValueError, ArithmeticError, RuntimeError) as error:
            out.errors[key] = str(error)
            continue
        hessian, ref = operators.get("hessian"), operators.get(reference)
        if hessian is not None:
            try:
                out.generalized[key] = generalized_spectrum(
                    hessian,
                    operator,
                    damping=damping,
                    k=None if dense else k,
                    which="both" if not dense else "largest",
                )
            except (ValueError, ArithmeticError, RuntimeError) as error:
                out.errors[f"{key} (generalized)"] = str(error)
        if ref is not None:
            try:
                out.qualities[key] = approximation_quality(
                    operator, ref, damping=damping
                )
            except (ValueError, ArithmeticError, RuntimeError) as error:
                out.errors[f"{key} vs {reference}"] = str(error)
    return out


def quality_rows(qualities: dict[str, Any]) -> list[dict[str, Any]]:
    """The approximation-quality table, one row per curvature."""
    rows = []
    for key, quality in qualities.items():
        row = {"curvature": ex.CURVATURES[key].label if key in ex.CURVATURES else key}
        for item in dataclasses.fields(quality):
            if item.name in (
                "relative_frobenius_error",
                "cosine",
                "top_overlap",
                "trace_ratio",
                "condition",
                "reference_condition",
                "method",
            ):
                row[item.name.replace("_", " ")] = getattr(quality, item.name)
        rows.append(row)
    return rows
