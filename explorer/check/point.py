r"""Measurements of one curvature C against a reference R at one point θ.

Dense (P ≤ ``dense_max_params``): the matrices themselves.

* asymmetry :math:`‖C − C^\top‖_F / ‖C‖_F` and the eigenvalues of the symmetric
  part :math:`\tfrac12 (C + C^\top)` (whose sign decides :math:`x^\top C x ≥ 0`);
* traces, and :func:`~explorer.spectra.approximation_quality` (relative Frobenius
  error, cosine of the damped directions :math:`−(C + λI)^{-1} g` and
  :math:`−(R + λI)^{-1} g` computed with C's *own* solver, as an optimizer would,
  top-eigenvector overlap, condition numbers);
* the generalized spectrum of :math:`(C + λI)^{-1} (R + λI)`: all ones when C = R,
  its spread :math:`κ = θ_{\max}/θ_{\min}` is the condition number an optimizer
  preconditioned by C faces on R's damped quadratic model.

Matrix-free (larger P): asymmetry from probe pairs, using
:math:`E[(u^\top A v)^2] = ‖A‖_F^2` for independent Rademacher u, v; extreme
eigenvalues by Lanczos; traces by Hutchinson; quality estimated from probes; no
generalized spectrum.

Whatever the plugin does (raises, returns the wrong shape, NaN), the result is a
:class:`~explorer.check.results.PointResult` whose ``error`` names the problem.
"""

from __future__ import annotations

import math
import statistics
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from explorer.check.results import CostResult, PointResult
from explorer.check.settings import CheckSettings
from explorer.curvature.algebra import DenseOperator
from explorer.curvature.registry import CURVATURES
from explorer.curvature.solvers import IndefiniteCurvatureError
from explorer.spectra.dense import symmetric_eigh
from explorer.spectra.extreme import eigenpairs
from explorer.spectra.generalized import generalized_spectrum
from explorer.spectra.operators import random_vector
from explorer.spectra.quality import approximation_quality
from explorer.spectra.slq import hutchinson_trace

#: Probe pairs for the matrix-free asymmetry, probes for traces.
NUM_PROBES = 8
#: Top eigenvalues drawn in the spectra overlay when P is too large for all of them.
TOP_EIGENVALUES = 20


def describe_error(error: BaseException) -> str:
    """``Type: message (file:line in function)`` naming the innermost frame."""
    text = f"{type(error).__name__}: {error}"
    frames = traceback.extract_tb(error.__traceback__)
    if frames:
        last = frames[-1]
        text += f" ({last.filename.rsplit('/', 1)[-1]}:{last.lineno} in {last.name})"
    return text


def median_time(function: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``function()`` over ``repeats`` calls (seconds)."""
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        function()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def _check_vector(out: Any, size: int, what: str) -> Tensor:
    if not isinstance(out, Tensor):
        raise ValueError(f"{what} returned {type(out).__name__}, not a tensor")
    if tuple(out.shape) != (size,):
        raise ValueError(
            f"{what} returned shape {tuple(out.shape)}; expected ({size},)"
        )
    if not torch.isfinite(out).all():
        raise ValueError(f"{what} returned NaN or inf entries")
    return out


def _check_matrix(matrix: Any, size: int) -> Tensor:
    if not isinstance(matrix, Tensor) or tuple(matrix.shape) != (size, size):
        shape = tuple(matrix.shape) if isinstance(matrix, Tensor) else type(matrix)
        raise ValueError(f"dense() returned shape {shape}; expected ({size}, {size})")
    if not torch.isfinite(matrix).all():
        raise ValueError("the matrix has NaN or inf entries")
    return matrix


@dataclass
class Built:
    """An operator built at θ, its dense matrix (or None) and its measured cost."""

    operator: Any
    matrix: Tensor | None
    cost: CostResult | None


def build_and_time(
    key: str,
    problem: Any,
    theta: Tensor,
    grad: Tensor,
    settings: CheckSettings,
    options: Mapping[str, Any],
    *,
    dense: bool,
    timing: bool,
) -> Built:
    """Builds curvature ``key`` at θ, validates one product (and the dense matrix).

    With ``timing``: the setup (construction and first product, which builds any
    cached matrix), the median product, the dense matrix and one damped solve, in
    seconds, next to the median gradient.

    Raises:
        Exception: Whatever the curvature raised, or ``ValueError`` for a product of
            the wrong shape or with non-finite entries.
    """
    size = problem.num_params
    generator = torch.Generator(device="cpu").manual_seed(settings.seed)
    probe_generator = torch.Generator(device="cpu").manual_seed(settings.seed + 1)
    probe = random_vector(size, theta, probe_generator)
    tic = time.perf_counter()
    operator = CURVATURES[key].build(problem, theta, generator=generator, **options)
    _check_vector(operator.matvec(probe), size, f"{key}: C v")
    setup = time.perf_counter() - tic
    matvec = median_time(lambda: operator.matvec(probe), settings.timing_repeats)
    matrix, dense_seconds, before = None, 0.0, operator.products
    if dense:
        tic = time.perf_counter()
        matrix = _check_matrix(operator.dense(), size)
        dense_seconds = time.perf_counter() - tic
    if not timing:
        return Built(operator, matrix, None)
    try:
        tic = time.perf_counter()
        operator.solve(grad, settings.damping)
        solve = time.perf_counter() - tic
    except Exception:  # reported by the quality notes; here only the time is missing
        solve = math.nan
    gradient = median_time(
        lambda: problem.value_and_grad(theta), settings.timing_repeats
    )
    cost = CostResult(
        curvature=key,
        setup_seconds=setup,
        dense_seconds=dense_seconds,
        matvec_seconds=matvec,
        solve_seconds=solve,
        grad_seconds=gradient,
        build_products=int(operator.products - before),
    )
    return Built(operator, matrix, cost)


@dataclass
class ReferencePoint:
    """The reference R at one point of the run, computed once and shared.

    Attributes:
        key: R's key.
        problem: The problem.
        theta: θ (P,).
        step: The step of the reference run.
        grad: ∇h(θ).
        operator: R (None on error).
        matrix: R dense (None when matrix-free or on error).
        eigenvalues: R's eigenvalues (all when dense, the top ones otherwise).
        cost: R's cost (at θ₀ only).
        error: Why R could not be built.
    """

    key: str
    problem: Any
    theta: Tensor
    step: int
    grad: Tensor
    operator: Any = None
    matrix: Tensor | None = None
    eigenvalues: Tensor | None = None
    cost: CostResult | None = None
    error: str | None = None

    @property
    def dense(self) -> bool:
        return self.matrix is not None


def reference_point(
    key: str,
    problem: Any,
    theta: Tensor,
    step: int,
    settings: CheckSettings,
    *,
    timing: bool = False,
) -> ReferencePoint:
    """Builds R at θ (its dense matrix and eigenvalues when P is small)."""
    theta = theta.to(dtype=problem.dtype, device=problem.device)
    grad = problem.grad(theta)
    point = ReferencePoint(key, problem, theta, step, grad)
    dense = problem.num_params <= settings.dense_max_params
    try:
        built = build_and_time(
            key, problem, theta, grad, settings, {}, dense=dense, timing=timing
        )
        point.operator, point.matrix, point.cost = (
            built.operator,
            built.matrix,
            built.cost,
        )
        if dense:
            point.eigenvalues, _ = symmetric_eigh(built.matrix, vectors=False)
        else:
            point.eigenvalues = _top_eigenvalues(built.operator, settings)
    except Exception as error:  # a reference that fails is reported, not raised
        point.error = describe_error(error)
    return point


def _top_eigenvalues(operator: Any, settings: CheckSettings) -> Tensor:
    generator = torch.Generator(device="cpu").manual_seed(settings.seed)
    k = min(TOP_EIGENVALUES, operator.size)
    pairs = eigenpairs(
        operator, k, "largest", method="lanczos", generator=generator, max_products=400
    )
    return pairs.eigenvalues


def measure_point(
    key: str,
    reference: ReferencePoint,
    settings: CheckSettings,
    options: Mapping[str, Any] | None = None,
    *,
    keep_matrix: bool = False,
    timing: bool = False,
) -> tuple[PointResult, CostResult | None]:
    """Everything the battery measures of curvature ``key`` at one point.

    Args:
        key: The curvature.
        reference: R at the point (from :func:`reference_point`).
        settings: Damping, tolerances and sizes.
        options: The curvature's options.
        keep_matrix: Keep C and R on the result (for heatmaps).
        timing: Also measure the cost (:class:`CostResult`).

    Returns:
        The :class:`PointResult` (with ``error`` set when the curvature failed) and
        the cost (None unless ``timing`` and it built).
    """
    problem, theta = reference.problem, reference.theta
    where = {"curvature": key, "problem": problem.key, "step": reference.step}
    dense = reference.problem.num_params <= settings.dense_max_params
    try:
        built = build_and_time(
            key,
            problem,
            theta,
            reference.grad,
            settings,
            dict(options or {}),
            dense=dense,
            timing=timing,
        )
    except Exception as error:  # the plugin's failure is the finding, not a crash
        return PointResult(**where, error=describe_error(error)), None
    notes: list[str] = []
    if reference.error:
        notes.append(f"reference {reference.key!r} failed: {reference.error}")
    try:
        fields = (
            _dense_fields(built, reference, settings, notes)
            if dense
            else _probe_fields(built, reference, settings, notes)
        )
    except Exception as error:  # e.g. a matvec that fails only on some vectors
        return PointResult(**where, error=describe_error(error)), built.cost
    if keep_matrix and dense:
        fields["matrix"] = built.matrix
        fields["reference_matrix"] = reference.matrix
    return PointResult(**where, notes=tuple(notes), **fields), built.cost


def _quality(built: Built, reference: ReferencePoint, settings, method, notes):
    if reference.operator is None:
        return None
    try:
        return approximation_quality(
            built.operator,
            reference.operator,
            reference.grad,
            settings.damping,
            method=method,
            num_probes=NUM_PROBES * 2,
            generator=torch.Generator(device="cpu").manual_seed(settings.seed),
        )
    except Exception as error:
        notes.append(f"approximation quality failed: {describe_error(error)}")
        return None


def _dense_fields(
    built: Built, reference: ReferencePoint, settings: CheckSettings, notes: list[str]
) -> dict[str, Any]:
    matrix = built.matrix
    norm = float(torch.linalg.matrix_norm(matrix))
    asymmetry = (
        float(torch.linalg.matrix_norm(matrix - matrix.T)) / norm if norm else 0.0
    )
    values, _ = symmetric_eigh(matrix, vectors=False)
    fields: dict[str, Any] = {
        "method": "dense",
        "asymmetry": asymmetry,
        "min_eigenvalue": float(values[0]),
        "max_abs_eigenvalue": float(values.abs().max()),
        "trace": float(matrix.trace()),
        "eigenvalues": values,
        "quality": _quality(built, reference, settings, "dense", notes),
    }
    if reference.matrix is None:
        return fields
    fields["reference_trace"] = float(reference.matrix.trace())
    fields["reference_eigenvalues"] = reference.eigenvalues
    eye = torch.eye(matrix.shape[0], dtype=matrix.dtype, device=matrix.device)
    target = DenseOperator(reference.matrix + settings.damping * eye, key=reference.key)
    try:
        pencil = generalized_spectrum(target, built.operator, settings.damping)
    except IndefiniteCurvatureError as error:
        notes.append(f"generalized spectrum: {error}")
    except Exception as error:
        notes.append(f"generalized spectrum failed: {describe_error(error)}")
    else:
        fields["generalized"] = pencil.eigenvalues
        fields["generalized_min"] = float(pencil.eigenvalues.min())
        fields["generalized_max"] = float(pencil.eigenvalues.max())
    return fields


def _probe_fields(
    built: Built, reference: ReferencePoint, settings: CheckSettings, notes: list[str]
) -> dict[str, Any]:
    op = built.operator
    like = reference.theta
    generator = torch.Generator(device="cpu").manual_seed(settings.seed)
    mismatch = squares = 0.0
    for _ in range(NUM_PROBES):
        u = random_vector(op.size, like, generator, "rademacher")
        v = random_vector(op.size, like, generator, "rademacher")
        cu = _check_vector(op.matvec(u), op.size, "C u")
        cv = _check_vector(op.matvec(v), op.size, "C v")
        mismatch += float(u.dot(cv) - v.dot(cu)) ** 2
        squares += float(cv.pow(2).sum())
    ends = eigenpairs(
        op, 1, "both", method="lanczos", generator=generator, max_products=300
    )
    if not ends.converged:
        notes.append("the extreme eigenvalues did not converge in 300 products")
    values = ends.eigenvalues
    asymmetry = math.sqrt(mismatch / squares) if squares else 0.0
    if asymmetry > settings.symmetry_tol:
        notes.append(
            "C is not symmetric: Lanczos assumes symmetry, so the extreme eigenvalues "
            "are unreliable"
        )
    trace_generator = torch.Generator(device="cpu").manual_seed(settings.seed)
    fields: dict[str, Any] = {
        "method": "estimated",
        "asymmetry": asymmetry,
        "min_eigenvalue": float(values.min()),
        "max_abs_eigenvalue": float(values.abs().max()),
        "trace": hutchinson_trace(op, NUM_PROBES * 2, generator=trace_generator).value,
        "eigenvalues": _top_eigenvalues(op, settings),
        "quality": _quality(built, reference, settings, "estimated", notes),
    }
    notes.append(
        f"P = {op.size:,} > {settings.dense_max_params:,}: asymmetry, traces and "
        "quality are estimated from random probes, extreme eigenvalues by Lanczos; "
        "no generalized spectrum"
    )
    if reference.operator is not None:
        trace_generator = torch.Generator(device="cpu").manual_seed(settings.seed)
        fields["reference_trace"] = hutchinson_trace(
            reference.operator, NUM_PROBES * 2, generator=trace_generator
        ).value
        fields["reference_eigenvalues"] = reference.eigenvalues
    return fields
