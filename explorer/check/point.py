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

Beside these, at every point: the nearest reference (:mod:`explorer.check.nearest`;
dense, or estimated from the same Rademacher probes for every candidate when
matrix-free), and on dense points the parameters C leaves uncovered (zero rows and
columns where R has none) and :func:`~explorer.check.metrics.preconditioner_metrics`.

A sampled curvature (tags ``sampled``) is measured as the mean of
``settings.sampled_draws`` independent draws on dense points
(:mod:`explorer.check.sampling`); matrix-free points measure one draw. A
preconditioner plugin (registered with ``inverse=True``: it builds P ≈ C⁻¹) is
measured as C = P⁻¹ (dense inverse; conjugate gradients on P when matrix-free), and
the eigenvalues of P·R are reported.

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

from explorer.check.nearest import (
    NEAREST_KEYS,
    ProbeProducts,
    candidate_curvature,
    fit,
    nearest_dense,
    nearest_probed,
)
from explorer.check.results import CostResult, PointResult
from explorer.check.sampling import DrawStatistics, draw_generators, draw_statistics
from explorer.check.settings import CheckSettings
from explorer.curvature.algebra import DenseOperator, MatvecOperator
from explorer.curvature.coverage import parameter_spans
from explorer.curvature.registry import CURVATURES, CurvatureSpec
from explorer.curvature.solvers import IndefiniteCurvatureError, conjugate_gradient
from explorer.curvature.tags import Tags
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
        candidates: Dense matrices of the nearest-reference candidates (shared by
            every curvature checked at this point).
        probed: Probes and candidates' products (matrix-free points).
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
    candidates: dict[str, Tensor] | None = None
    probed: ProbeProducts | None = None

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


def is_inverse(spec: CurvatureSpec) -> bool:
    """Registered as a preconditioner P ≈ C⁻¹ (``register_curvature(inverse=True)``)."""
    return bool(getattr(spec.build, "inverse", False))


def candidate_keys(settings: CheckSettings) -> tuple[str, ...]:
    """The registered nearest-reference candidates (variants of registered ones
    included).
    """
    keys = NEAREST_KEYS if settings.nearest_keys is None else settings.nearest_keys
    return tuple(k for k in keys if candidate_curvature(k)[0] in CURVATURES)


def _candidate(key: str, problem: Any, theta: Tensor, settings: CheckSettings):
    base, options = candidate_curvature(key)
    if CURVATURES[base].incompatibility(problem, options):
        return None
    generator = torch.Generator(device="cpu").manual_seed(settings.seed)
    return CURVATURES[base].build(problem, theta, generator=generator, **options)


def candidate_matrices(
    problem: Any,
    theta: Tensor,
    settings: CheckSettings,
    known: dict[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Dense matrices of every candidate the problem can build (``known`` reused;
    a candidate that raises is left out).
    """
    out = {}
    for key in candidate_keys(settings):
        if known and key in known:
            out[key] = known[key]
            continue
        try:
            operator = _candidate(key, problem, theta, settings)
            if operator is not None:
                out[key] = _check_matrix(operator.dense(), problem.num_params)
        except Exception:  # an incompatible candidate is no finding about C
            continue
    return out


def candidate_probes(
    problem: Any, theta: Tensor, settings: CheckSettings
) -> ProbeProducts:
    """Rademacher probes Z (P, m) and R Z of every buildable candidate."""
    generator = torch.Generator(device="cpu").manual_seed(settings.seed + 2)
    probes = torch.stack(
        [
            random_vector(problem.num_params, theta, generator, "rademacher")
            for _ in range(NUM_PROBES * 2)
        ],
        dim=1,
    )
    products = {}
    for key in candidate_keys(settings):
        try:
            operator = _candidate(key, problem, theta, settings)
            if operator is not None:
                products[key] = torch.stack(
                    [operator.matvec(z) for z in probes.T], dim=1
                )
        except Exception:  # an incompatible candidate is no finding about C
            continue
    return ProbeProducts(probes, products)


def _inverted(key: str, built: Built, dense: bool) -> Built:
    """C = P⁻¹ of a preconditioner P (dense inverse, or CG on P)."""
    op = built.operator
    tags = _plain_tags(op.tags)
    if dense:
        inverse = torch.linalg.inv(built.matrix)
        if not torch.isfinite(inverse).all():
            raise ValueError("the preconditioner P is singular: P⁻¹ has NaN or inf")
        return Built(
            DenseOperator(inverse, key=key, symmetrize=False, tags=tags),
            inverse,
            built.cost,
        )

    def solve(v: Tensor) -> Tensor:
        return conjugate_gradient(
            op.matvec, v, stop_at_negative_curvature=False
        ).solution

    return Built(
        MatvecOperator(solve, op.size, op.dtype, op.device, key=key), None, built.cost
    )


def _plain_tags(tags: Tags) -> Tags:
    """The tags of a dense stand-in (a mean of draws, P⁻¹): no structure to exploit."""
    return Tags(psd=tags.psd, symmetric=tags.symmetric, sampled=tags.sampled)


def structured_reference(reference: Tensor | None, operator: Any) -> Tensor | None:
    """What a sampled C's mean should converge to: R restricted to C's declared
    structure (its diagonal for a diagonal C, its diagonal blocks for a
    block-diagonal one), R itself for an unstructured C; None for a Kronecker C,
    whose mean is a product of averaged factors, not a restriction of R.
    """
    if reference is None:
        return None
    tags = operator.tags
    if tags.kronecker:
        return None
    if tags.diagonal:
        return torch.diag(reference.diagonal())
    if tags.block_diagonal and operator.block_spans is not None:
        out = torch.zeros_like(reference)
        for span in operator.block_spans:
            out[span, span] = reference[span, span]
        return out
    return reference


def _mean_of_draws(
    key: str,
    built: Built,
    reference: ReferencePoint,
    settings: CheckSettings,
    options: Mapping[str, Any],
) -> tuple[Built, DrawStatistics]:
    """The mean of ``settings.sampled_draws`` draws (draw 0 is ``built``), extended
    to ``settings.sampled_draws_max`` where that mean looks biased or off scale.

    Why extend: a heavy-tailed estimator (Sophia's B·ĝ⊙ĝ where the model is
    confident: a few flipped sampled labels carry the whole expectation) can show k
    similar draws that all miss those rare events, so both its mean and its
    estimated one-draw error are too small. A finding of bias must survive more
    evidence; an unbiased estimator's mean then closes in, a biased one's does not.
    """
    problem, size = reference.problem, reference.problem.num_params
    target = structured_reference(reference.matrix, built.operator)
    generators = draw_generators(settings.seed, settings.sampled_draws_max)
    draws = [built.matrix]
    count = settings.sampled_draws
    while True:
        for generator in generators[len(draws) : count]:
            op = CURVATURES[key].build(
                problem, reference.theta, generator=generator, **options
            )
            draws.append(_check_matrix(op.dense(), size))
        stats = draw_statistics(draws, target)
        if count >= settings.sampled_draws_max or _looks_unbiased(
            stats, target, settings
        ):
            break
        count = min(2 * count, settings.sampled_draws_max)
    tags = _plain_tags(built.operator.tags)
    mean = DenseOperator(stats.mean, key=key, symmetrize=False, tags=tags)
    return Built(mean, stats.mean, built.cost), stats


def _looks_unbiased(
    stats: DrawStatistics, target: Tensor | None, settings: CheckSettings
) -> bool:
    """The k-draw mean within the ``unbiased`` bound and its trace within the scale
    tolerance of the target's (True where there is nothing to compare with).
    """
    if target is None or math.isnan(stats.mean_error):
        return True
    if stats.mean_error > stats.bound(settings.exact_tol, settings.unbiased_slack):
        return False
    reference_trace = float(target.trace())
    if not reference_trace > 0:
        return True
    ratio = float(stats.mean.trace()) / reference_trace
    s = settings.scale_tol
    return 1 / s <= ratio <= s


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
    point, cost, _ = measure(
        key, reference, settings, options, keep_matrix=keep_matrix, timing=timing
    )
    return point, cost


def measure(
    key: str,
    reference: ReferencePoint,
    settings: CheckSettings,
    options: Mapping[str, Any] | None = None,
    *,
    keep_matrix: bool = False,
    timing: bool = False,
) -> tuple[PointResult, CostResult | None, Tensor | None]:
    """:func:`measure_point`, also returning the dense C that was judged (the
    k-draw mean, P⁻¹) or None.
    """
    problem, theta = reference.problem, reference.theta
    options = dict(options or {})
    where = {"curvature": key, "problem": problem.key, "step": reference.step}
    dense = reference.problem.num_params <= settings.dense_max_params
    spec = CURVATURES[key]
    extra: dict[str, Any] = {}
    notes: list[str] = []
    try:
        built = build_and_time(
            key,
            problem,
            theta,
            reference.grad,
            settings,
            options,
            dense=dense,
            timing=timing,
        )
        preconditioner = built.matrix
        extra["coverage"] = _declared_coverage(built.operator, notes)
        kronecker = _kronecker(built.operator)
        if is_inverse(spec):
            built = _inverted(key, built, dense)
            kronecker = None
        if built.operator.tags.sampled and settings.sampled_draws > 1:
            if dense:
                built, stats = _mean_of_draws(key, built, reference, settings, options)
                extra.update(
                    draws=stats.draws,
                    draw_error=stats.draw_error,
                    mean_error=stats.mean_error,
                    draw_variance=stats.variance,
                )
                kronecker = None
            else:
                notes.append(
                    "matrix-free: one draw of the sampled curvature is measured"
                )
    except Exception as error:  # the plugin's failure is the finding, not a crash
        return PointResult(**where, error=describe_error(error)), None, None
    if reference.error:
        notes.append(f"reference {reference.key!r} failed: {reference.error}")
    try:
        if dense:
            fields = _dense_fields(built, reference, settings, notes)
            fields.update(
                _dense_extras(key, built, reference, settings, notes, kronecker)
            )
            if preconditioner is not None and is_inverse(spec):
                fields["preconditioned_eigenvalues"] = _preconditioned(
                    preconditioner, reference
                )
        else:
            fields = _probe_fields(built, reference, settings, notes)
            if reference.probed is not None:
                fields["nearest"] = nearest_probed(
                    built.operator.matvec, reference.probed, key, settings.scale_tol
                )
                notes.append(
                    "nearest reference estimated from "
                    f"{reference.probed.probes.shape[1]} Rademacher probes"
                )
    except Exception as error:  # e.g. a matvec that fails only on some vectors
        return PointResult(**where, error=describe_error(error)), built.cost, None
    if keep_matrix and dense:
        fields["matrix"] = built.matrix
        fields["reference_matrix"] = reference.matrix
    result = PointResult(**where, notes=tuple(notes), **extra, **fields)
    return result, built.cost, built.matrix


def _declared_coverage(operator: Any, notes: list[str]) -> dict[str, str] | None:
    try:
        return dict(operator.coverage())
    except Exception as error:  # a plain LinearOperator has no problem to name
        notes.append(f"declared coverage unavailable: {describe_error(error)}")
        return None


def _kronecker(operator: Any):
    if not operator.tags.kronecker:
        return None
    try:
        return operator.kronecker_factors()
    except Exception:  # the metrics then skip the Kronecker efficiency
        return None


def _preconditioned(preconditioner: Tensor, reference: ReferencePoint):
    """Eigenvalues of P·R, ascending (real parts: P, R symmetric PSD make them
    real, similar to P^½ R P^½).
    """
    if reference.matrix is None:
        return None
    values = torch.linalg.eigvals(preconditioner @ reference.matrix).real
    return values.sort().values


def uncovered_parameters(
    problem: Any, matrix: Tensor, reference: Tensor, tol: float
) -> tuple[str, ...]:
    """Parameter tensors whose rows and columns are all zero in C (below ``tol``
    · ‖C‖_F) while R's are not (above ``tol`` · ‖R‖_F).
    """
    c_norm = float(torch.linalg.matrix_norm(matrix))
    r_norm = float(torch.linalg.matrix_norm(reference))
    out = []
    for name, span in parameter_spans(problem).items():
        c_part = float(matrix[span].norm()) + float(matrix[:, span].norm())
        r_part = float(reference[span].norm()) + float(reference[:, span].norm())
        if c_part <= tol * c_norm and r_part > tol * r_norm:
            out.append(name)
    return tuple(out)


def _dense_extras(
    key: str,
    built: Built,
    reference: ReferencePoint,
    settings: CheckSettings,
    notes: list[str],
    kronecker: Any,
) -> dict[str, Any]:
    """Nearest reference, uncovered parameters and preconditioner metrics."""
    matrix, fields = built.matrix, {}
    if reference.candidates:
        fields["nearest"] = nearest_dense(
            matrix, reference.candidates, key, settings.scale_tol
        )
    if reference.matrix is None:
        return fields
    problem = reference.problem
    fields["uncovered"] = uncovered_parameters(
        problem, matrix, reference.matrix, settings.coverage_tol
    )
    try:
        from explorer.check.metrics import preconditioner_metrics

        fields["metrics"] = preconditioner_metrics(
            matrix,
            reference.matrix,
            settings.damping,
            problem.blocks(),
            kronecker_blocks=kronecker,
        )
    except Exception as error:  # informative numbers: a failure is a note
        notes.append(f"preconditioner metrics failed: {describe_error(error)}")
    return fields


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


def precision(
    key: str,
    problem32: Any,
    reference: ReferencePoint,
    settings: CheckSettings,
    options: Mapping[str, Any],
    nearest_key: str | None,
) -> dict[str, float] | None:
    """C built in float32 against float64 at ``reference``'s θ (dense only).

    ``relative_difference`` = ‖C₃₂ − C₆₄‖_F / ‖C₆₄‖_F; ``residual_float32`` and
    ``residual_float64``: the residual of each against the float64 matrix of the
    nearest reference. A sampled curvature compares one draw with the same seed (in
    float32 a sampled target may differ from float64's, which shows here too).
    """
    if reference.problem.num_params > settings.dense_max_params:
        return None
    spec = CURVATURES[key]

    def build(problem: Any, dtype: torch.dtype) -> Tensor:
        generator = torch.Generator(device="cpu").manual_seed(settings.seed)
        theta = reference.theta.to(dtype=dtype)
        matrix = spec.build(problem, theta, generator=generator, **options).dense()
        matrix = _check_matrix(matrix, problem.num_params)
        if is_inverse(spec):
            matrix = torch.linalg.inv(matrix)
        return matrix.to(torch.float64)

    c64 = build(reference.problem, torch.float64)
    c32 = build(problem32, torch.float32)
    norm = float(torch.linalg.matrix_norm(c64))
    out = {
        "relative_difference": (
            float(torch.linalg.matrix_norm(c32 - c64)) / norm if norm else 0.0
        )
    }
    if nearest_key and reference.candidates and nearest_key in reference.candidates:
        target = reference.candidates[nearest_key]
        out["residual_float64"] = fit(c64, target)[1]
        out["residual_float32"] = fit(c32, target)[1]
    return out
