r"""How good is an approximation C of a reference R? Numbers, and numbers along a run.

For operators at the same θ (THEORY.md §4):

* relative Frobenius error :math:`‖C − R‖_F / ‖R‖_F`: dense when P is small,
  otherwise estimated from random probes, :math:`‖M‖_F^2 = E‖M v‖^2` for
  :math:`E[v v^\top] = I`;
* cosine between the damped preconditioned directions
  :math:`d_C = −(C + λI)^{-1} g` and :math:`d_R = −(R + λI)^{-1} g`;
* overlap of the top-k eigenvector subspaces, :math:`‖U_C^\top U_R‖_F^2 / k` ∈ [0, 1];
* trace ratio tr(C)/tr(R) and the condition numbers of C + λI and R + λI.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from explorer.curvature.solvers import IndefiniteCurvatureError
from explorer.spectra.dense import symmetric_eigh
from explorer.spectra.extreme import condition_number, eigenpairs
from explorer.spectra.operators import SymmetricOperator, operator_key, random_vector

#: Dense (exact) quality metrics up to this many parameters.
QUALITY_DENSE_MAX_PARAMS = 3000


@dataclass(frozen=True)
class ApproximationQuality:
    """Approximation metrics of C against R at one point.

    Attributes:
        curvature: C's key.
        reference: R's key.
        damping: λ used for the directions and condition numbers.
        relative_frobenius_error: ‖C − R‖_F / ‖R‖_F.
        cosine: cos∠(d_C, d_R) of the damped directions (NaN when a damped matrix
            is indefinite; ``notes`` says which).
        top_overlap: ‖U_Cᵀ U_R‖_F² / k for the top-k eigenvectors.
        trace_ratio: tr(C) / tr(R).
        condition: cond(C + λI) (inf when not positive definite).
        reference_condition: cond(R + λI).
        k: Eigenvectors in the overlap.
        method: ``"dense"`` (exact) or ``"estimated"`` (probes and Lanczos).
        num_probes: Probes behind the estimates (0 when dense).
        notes: Human-readable caveats.
    """

    curvature: str
    reference: str
    damping: float
    relative_frobenius_error: float
    cosine: float
    top_overlap: float
    trace_ratio: float
    condition: float
    reference_condition: float
    k: int
    method: str
    num_probes: int = 0
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain data (notes as a list)."""
        data = asdict(self)
        data["notes"] = list(self.notes)
        return data


#: The numeric fields of :class:`ApproximationQuality` (columns of the trajectory frame).
QUALITY_METRICS = (
    "relative_frobenius_error",
    "cosine",
    "top_overlap",
    "trace_ratio",
    "condition",
    "reference_condition",
)


def _direction(
    op: SymmetricOperator, grad: Tensor, damping: float, notes: list[str]
) -> Tensor | None:
    try:
        return -op.solve(grad, damping)
    except IndefiniteCurvatureError as error:
        notes.append(f"{operator_key(op)}: {error}")
        return None


def _cosine(a: Tensor | None, b: Tensor | None) -> float:
    if a is None or b is None:
        return math.nan
    denominator = float(a.norm() * b.norm())
    return float(a.dot(b)) / denominator if denominator > 0 else math.nan


def _overlap(a: Tensor, b: Tensor) -> float:
    k = min(a.shape[1], b.shape[1])
    return float((a[:, :k].T @ b[:, :k]).pow(2).sum()) / k


def _dense_metrics(
    op: SymmetricOperator, ref: SymmetricOperator, k: int, damping: float
) -> dict[str, float]:
    c, r = op.dense(), ref.dense()
    c, r = 0.5 * (c + c.T), 0.5 * (r + r.T)
    ref_norm = float(torch.linalg.matrix_norm(r))
    error = float(torch.linalg.matrix_norm(c - r))
    c_values, c_vectors = symmetric_eigh(c)
    r_values, r_vectors = symmetric_eigh(r)
    ref_trace = float(r.trace())
    return {
        "relative_frobenius_error": error / ref_norm if ref_norm > 0 else math.inf,
        "top_overlap": _overlap(c_vectors.flip(1)[:, :k], r_vectors.flip(1)[:, :k]),
        "trace_ratio": float(c.trace()) / ref_trace if ref_trace != 0 else math.nan,
        "condition": condition_number(c_values, damping),
        "reference_condition": condition_number(r_values, damping),
    }


def _estimated_metrics(
    op: SymmetricOperator,
    ref: SymmetricOperator,
    k: int,
    damping: float,
    num_probes: int,
    generator: torch.Generator,
    notes: list[str],
) -> dict[str, float]:
    like = torch.empty(0, dtype=op.dtype, device=op.device)
    diff_sq = ref_sq = c_trace = r_trace = 0.0
    for _ in range(num_probes):
        v = random_vector(op.size, like, generator, "rademacher")
        cv, rv = op.matvec(v), ref.matvec(v)
        diff_sq += float((cv - rv).pow(2).sum())
        ref_sq += float(rv.pow(2).sum())
        c_trace += float(v.dot(cv))
        r_trace += float(v.dot(rv))
    pairs = {}
    for name, operator in (("c", op), ("r", ref)):
        top = eigenpairs(
            operator, k, "largest", method="lanczos", vectors=True, generator=generator
        )
        ends = eigenpairs(
            operator, 1, "both", method="lanczos", generator=generator, max_products=300
        )
        if not ends.converged:
            notes.append(
                f"{operator_key(operator)}: the smallest eigenvalue did not converge in "
                "300 products; its condition number is approximate"
            )
        pairs[name] = (top, ends)
    (c_top, c_ends), (r_top, r_ends) = pairs["c"], pairs["r"]
    return {
        "relative_frobenius_error": math.sqrt(diff_sq / ref_sq)
        if ref_sq > 0
        else math.inf,
        "top_overlap": _overlap(c_top.top_vectors(k), r_top.top_vectors(k)),
        "trace_ratio": c_trace / r_trace if r_trace != 0 else math.nan,
        "condition": condition_number(c_ends.eigenvalues, damping),
        "reference_condition": condition_number(r_ends.eigenvalues, damping),
    }


def approximation_quality(
    op: SymmetricOperator,
    reference: SymmetricOperator,
    grad: Tensor | None = None,
    damping: float = 1e-3,
    *,
    k: int = 5,
    method: str = "auto",
    num_probes: int = 16,
    generator: torch.Generator | None = None,
) -> ApproximationQuality:
    """Compares an approximation C with a reference R at the same point.

    Args:
        op: C, e.g. ``ex.curvature("kfac", p, theta)``.
        reference: R, e.g. ``ex.curvature("fisher", p, theta)``.
        grad: g for the preconditioned directions (default: the problem's gradient
            at the operator's θ on its batch).
        damping: λ ≥ 0 for the directions and condition numbers.
        k: Top eigenvectors in the overlap.
        method: ``"dense"`` (exact; P ≤ 3,000 by default with ``"auto"``),
            ``"estimated"`` (probes and Lanczos only, no P × P matrix) or ``"auto"``.
        num_probes: Rademacher probes for the estimated Frobenius norms and traces.
        generator: For probes and Lanczos starts (seed 0 when None).

    Returns:
        :class:`ApproximationQuality`.

    Example:
        >>> import explorer as ex
        >>> p = ex.problem("linreg_2d")
        >>> f, g = (ex.curvature(key, p, p.theta0) for key in ("fisher", "ggn"))
        >>> q = approximation_quality(f, g)
        >>> round(q.relative_frobenius_error, 12), round(q.cosine, 12)
        (0.0, 1.0)
    """
    if op.size != reference.size:
        raise ValueError(
            f"the operators have different sizes: P = {op.size} and {reference.size}"
        )
    if method not in ("auto", "dense", "estimated"):
        raise ValueError(f"method = {method!r} must be 'auto', 'dense' or 'estimated'")
    damping = float(damping)
    if not damping >= 0:
        raise ValueError(f"damping = {damping!r} must be ≥ 0")
    k = max(1, min(int(k), op.size))
    generator = generator or torch.Generator(device="cpu").manual_seed(0)
    dense = method == "dense" or (
        method == "auto" and op.size <= QUALITY_DENSE_MAX_PARAMS
    )
    notes: list[str] = []
    if grad is None:
        problem = getattr(op, "problem", None)
        if problem is None:
            raise ValueError("pass grad= for operators that carry no problem")
        grad = problem.grad(op.theta, op.batch)
    grad = grad.to(dtype=op.dtype, device=op.device)
    cosine = _cosine(
        _direction(op, grad, damping, notes),
        _direction(reference, grad, damping, notes),
    )
    if dense:
        metrics = _dense_metrics(op, reference, k, damping)
        probes = 0
    else:
        metrics = _estimated_metrics(
            op, reference, k, damping, num_probes, generator, notes
        )
        probes = num_probes
    return ApproximationQuality(
        curvature=operator_key(op),
        reference=operator_key(reference),
        damping=damping,
        cosine=cosine,
        k=k,
        method="dense" if dense else "estimated",
        num_probes=probes,
        notes=tuple(notes),
        **metrics,
    )


def _trajectory_of(
    trajectory: Any, steps: Sequence[int] | None
) -> tuple[Tensor, list[int]]:
    if isinstance(trajectory, Tensor):
        thetas = trajectory
        steps = list(range(thetas.shape[0])) if steps is None else list(steps)
    else:
        thetas = getattr(trajectory, "trajectory", None)
        if thetas is None:
            raise ValueError(
                "this history kept no parameter trajectory; rerun with a trajectory"
            )
        steps = list(trajectory.trajectory_steps) if steps is None else list(steps)
    if thetas.dim() != 2 or thetas.shape[0] != len(steps):
        raise ValueError(
            f"trajectory of shape {tuple(thetas.shape)} does not match {len(steps)} steps"
        )
    return thetas, steps


def subsample(count: int, max_points: int) -> list[int]:
    """At most ``max_points`` indices of range(count), evenly spread, ends included."""
    if count <= max_points:
        return list(range(count))
    if max_points < 2:
        return [count - 1]
    raw = torch.linspace(0, count - 1, max_points).round().long().tolist()
    return sorted(set(raw))


def quality_along_trajectory(
    problem: Any,
    trajectory: Any,
    curvature: str,
    reference: str | None = None,
    *,
    steps: Sequence[int] | None = None,
    damping: float = 1e-3,
    max_points: int = 20,
    k: int = 5,
    method: str = "auto",
    num_probes: int = 16,
    seed: int = 0,
    batch: Any = None,
    curvature_options: dict[str, Any] | None = None,
) -> Any:
    """:func:`approximation_quality` of curvature vs reference at points of a run.

    Args:
        problem: The run's problem.
        trajectory: A ``History`` (its ``trajectory`` and ``trajectory_steps``) or a
            (T, P) tensor of parameters.
        curvature: Key of C in ``ex.CURVATURES`` (built-in or registered).
        reference: Key of R (default: C's declared reference).
        steps: The steps of a tensor trajectory's rows (default 0..T−1).
        damping: λ.
        max_points: Evaluate at most this many points, evenly spread (first and
            last included).
        k: Eigenvectors in the overlap.
        method: As in :func:`approximation_quality`.
        num_probes: As in :func:`approximation_quality`.
        seed: Each point's operators get a generator with this seed, so sampled
            curvatures (MC Fisher, K-FAC) are reproducible.
        batch: The examples (default: the whole training set).
        curvature_options: Options for C's builder.

    Returns:
        A ``pandas.DataFrame`` with a ``step`` column and :data:`QUALITY_METRICS`.
    """
    import pandas as pd

    from explorer.curvature import CURVATURES

    spec = CURVATURES[curvature]
    reference = reference or spec.reference
    if reference is None:
        raise ValueError(
            f"curvature {curvature!r} declares no reference; pass reference= (e.g. "
            "'fisher', 'ggn' or 'hessian')"
        )
    CURVATURES[reference]  # an unknown key fails here, before any work
    thetas, all_steps = _trajectory_of(trajectory, steps)
    rows = []
    for index in subsample(len(all_steps), max_points):
        theta = thetas[index].to(dtype=problem.dtype, device=problem.device)
        if not torch.isfinite(theta).all():
            break
        generator = torch.Generator(device="cpu").manual_seed(seed)
        op = CURVATURES[curvature].build(
            problem,
            theta,
            batch=batch,
            generator=generator,
            **(curvature_options or {}),
        )
        ref = CURVATURES[reference].build(
            problem, theta, batch=batch, generator=torch.Generator().manual_seed(seed)
        )
        quality = approximation_quality(
            op,
            ref,
            damping=damping,
            k=k,
            method=method,
            num_probes=num_probes,
            generator=generator,
        )
        row = {"step": int(all_steps[index])}
        row.update({name: getattr(quality, name) for name in QUALITY_METRICS})
        rows.append(row)
    return pd.DataFrame(rows, columns=["step", *QUALITY_METRICS])
