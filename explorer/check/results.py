"""The structured result of the check battery (dataclasses, JSON via ``to_dict``).

A :class:`CheckReport` holds one :class:`CurvatureResult` per checked curvature. Each
has its :class:`Verdict` per property (pass, fail, or skipped with the reason) and,
per problem, a :class:`ProblemResult`: the measurements at points of the reference
run (:class:`PointResult`), the same for built-in baselines, the cost of products
(:class:`CostResult`) and the optimization race (:class:`RaceEntry`). Tensors and
histories stay on the objects for the figures; ``to_dict`` keeps the numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from explorer.check.nearest import NearestReference
from explorer.check.settings import CheckSettings
from explorer.spectra.quality import ApproximationQuality

PASS, FAIL, SKIPPED = "pass", "fail", "skipped"


def clean(value: Any) -> Any:
    """JSON-safe data: NaN and ±inf become None, tuples lists, tensors lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Tensor):
        return clean(value.tolist())
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


@dataclass(frozen=True)
class PointResult:
    """One curvature measured at one point of the reference run.

    Attributes:
        curvature: The measured curvature's key.
        problem: The problem key.
        step: The step of the reference run (0 = θ₀).
        error: Why it could not be measured (the plugin raised, returned the wrong
            shape or non-finite entries), or None.
        method: ``"dense"`` or ``"estimated"`` (probes and Lanczos).
        asymmetry: ‖C − Cᵀ‖_F / ‖C‖_F.
        min_eigenvalue: λ_min of the symmetric part ½(C + Cᵀ).
        max_abs_eigenvalue: max |λ| of the symmetric part.
        trace: tr C.
        reference_trace: tr R.
        quality: Approximation metrics against the reference (None on error).
        generalized_min: Smallest eigenvalue of (C + λI)⁻¹(R + λI).
        generalized_max: Largest eigenvalue of (C + λI)⁻¹(R + λI).
        notes: Caveats (indefinite solves, estimated quantities).
        eigenvalues: Eigenvalues of ½(C + Cᵀ) (all when dense, top ones otherwise).
        reference_eigenvalues: The same for R.
        generalized: All eigenvalues of (C + λI)⁻¹(R + λI) (dense only).
        matrix: C itself at the last point (dense only), for the heatmaps.
        reference_matrix: R at the last point.
        nearest: The reference C behaves like (scale and residual), or None.
        metrics: :func:`~explorer.check.metrics.preconditioner_metrics` of C
            against R (dense points; empty otherwise).
        preconditioned_eigenvalues: For a preconditioner plugin (P ≈ C⁻¹, judged
            as C = P⁻¹): the eigenvalues of P·R, ascending (dense only).
        uncovered: Parameter tensors whose rows and columns are zero in C but not
            in R (dense only).
        coverage: The operator's declared ``op.coverage()`` (None when unknown).
        draws: k, the draws averaged for a sampled curvature (1 otherwise).
        draw_error: e(1) of :mod:`explorer.check.sampling` (NaN for one draw).
        mean_error: e(k).
        draw_variance: The relative one-draw variance v.
    """

    curvature: str
    problem: str
    step: int
    error: str | None = None
    method: str = "dense"
    asymmetry: float = math.nan
    min_eigenvalue: float = math.nan
    max_abs_eigenvalue: float = math.nan
    trace: float = math.nan
    reference_trace: float = math.nan
    quality: ApproximationQuality | None = None
    generalized_min: float = math.nan
    generalized_max: float = math.nan
    notes: tuple[str, ...] = ()
    eigenvalues: Tensor | None = field(default=None, repr=False)
    reference_eigenvalues: Tensor | None = field(default=None, repr=False)
    generalized: Tensor | None = field(default=None, repr=False)
    matrix: Tensor | None = field(default=None, repr=False)
    reference_matrix: Tensor | None = field(default=None, repr=False)
    nearest: NearestReference | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    preconditioned_eigenvalues: Tensor | None = field(default=None, repr=False)
    uncovered: tuple[str, ...] = ()
    coverage: dict[str, str] | None = None
    draws: int = 1
    draw_error: float = math.nan
    mean_error: float = math.nan
    draw_variance: float = math.nan

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def trace_ratio(self) -> float:
        """The trace ratio tr C / tr R (NaN when tr R is not positive)."""
        if not self.reference_trace > 0:
            return math.nan
        return self.trace / self.reference_trace

    @property
    def relative_min_eigenvalue(self) -> float:
        """λ_min / max |λ| (0 for the zero matrix)."""
        if not self.max_abs_eigenvalue > 0:
            return 0.0 if self.max_abs_eigenvalue == 0 else math.nan
        return self.min_eigenvalue / self.max_abs_eigenvalue

    @property
    def generalized_condition(self) -> float:
        """κ of (C + λI)⁻¹(R + λI): max/min eigenvalue (1 = perfect)."""
        if not self.generalized_min > 0:
            return math.inf if self.generalized_min <= 0 else math.nan
        return self.generalized_max / self.generalized_min

    def row(self) -> dict[str, Any]:
        """The numbers of this point (a row of the report's tables)."""
        quality = self.quality
        return {
            "curvature": self.curvature,
            "problem": self.problem,
            "step": self.step,
            "error": self.error,
            "method": self.method,
            "asymmetry": self.asymmetry,
            "relative_min_eigenvalue": self.relative_min_eigenvalue,
            "trace_ratio": self.trace_ratio,
            "relative_frobenius_error": (
                quality.relative_frobenius_error if quality else math.nan
            ),
            "cosine": quality.cosine if quality else math.nan,
            "top_overlap": quality.top_overlap if quality else math.nan,
            "condition": quality.condition if quality else math.nan,
            "reference_condition": quality.reference_condition if quality else math.nan,
            "generalized_min": self.generalized_min,
            "generalized_max": self.generalized_max,
            "generalized_condition": self.generalized_condition,
            "nearest": self.nearest.to_dict() if self.nearest else None,
            "nearest_reference": self.nearest.to_dict() if self.nearest else None,
            "uncovered": list(self.uncovered),
            "coverage": self.coverage,
            "draws": self.draws,
            "draw_error": self.draw_error,
            "mean_error": self.mean_error,
            "draw_variance": self.draw_variance,
            "metrics": self.metrics,
            "preconditioned_eigenvalues": self.preconditioned_eigenvalues,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class CostResult:
    """Measured cost of one curvature at θ₀, and of a gradient for scale.

    Attributes:
        curvature: The key.
        setup_seconds: Building the operator (factors, linearizations).
        dense_seconds: Its first dense matrix (0 when it came with the build).
        matvec_seconds: One product C v (median).
        solve_seconds: One damped solve (C + λI)⁻¹g (NaN when it failed).
        grad_seconds: One gradient of the mean loss (median).
        build_products: Products the operator counted while building its matrix.
    """

    curvature: str
    setup_seconds: float
    dense_seconds: float
    matvec_seconds: float
    solve_seconds: float
    grad_seconds: float
    build_products: int = 0

    def relative(self, seconds: float) -> float:
        """``seconds`` in units of one gradient."""
        return seconds / self.grad_seconds if self.grad_seconds > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "curvature": self.curvature,
            "setup_seconds": self.setup_seconds,
            "dense_seconds": self.dense_seconds,
            "matvec_seconds": self.matvec_seconds,
            "solve_seconds": self.solve_seconds,
            "grad_seconds": self.grad_seconds,
            "build_products": self.build_products,
            "matvec_per_gradient": self.relative(self.matvec_seconds),
            "setup_per_gradient": self.relative(self.setup_seconds),
            "solve_per_gradient": self.relative(self.solve_seconds),
        }


@dataclass(frozen=True)
class RaceEntry:
    """One run of the optimization race.

    Attributes:
        label: The run's name (the curvature key for the checked curvature).
        rule: Its update rule.
        status: The history's status, or ``"skipped"`` when it could not run.
        message: Why it stopped or was skipped.
        final_loss: Training loss at the last recorded step.
        best_loss: Lowest training loss recorded.
        steps: Steps completed.
        wall_time: Seconds in the optimizer.
        curvature_products: Cumulative curvature-vector products.
    """

    label: str
    rule: str
    status: str
    message: str = ""
    final_loss: float = math.nan
    best_loss: float = math.nan
    steps: int = 0
    wall_time: float = math.nan
    curvature_products: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ProblemResult:
    """Everything measured for one curvature on one problem.

    Attributes:
        problem: The key.
        options: Its options.
        description: Key and options in words.
        num_params: P.
        num_examples: N.
        reference: The reference curvature's key.
        points: The checked curvature at each point.
        baselines: ``{key: [PointResult per point]}`` for built-in approximations.
        cost: The checked curvature's cost (None when it failed at θ₀).
        reference_cost: The reference's cost.
        race: The race, the checked curvature first.
        histories: ``{label: History}`` of the race (for the figures).
        notes: Caveats (a reference run that stopped early...).
        staleness: For each dense point after θ₀, ``(step, ‖C(θ₀) − R(θ_s)‖_F /
            ‖R(θ_s)‖_F, ‖C(θ_s) − R(θ_s)‖_F / ‖R(θ_s)‖_F)``: a curvature never
            refreshed since θ₀ against a fresh one.
        precision: C built in float32 at θ₀ against float64:
            ``relative_difference`` ‖C₃₂ − C₆₄‖_F / ‖C₆₄‖_F and the nearest
            reference's residual in each (``residual_float32``,
            ``residual_float64``); None when not measured.
    """

    problem: str
    options: dict[str, Any]
    description: str
    num_params: int
    num_examples: int
    reference: str
    points: tuple[PointResult, ...]
    baselines: dict[str, tuple[PointResult, ...]] = field(default_factory=dict)
    cost: CostResult | None = None
    reference_cost: CostResult | None = None
    race: tuple[RaceEntry, ...] = ()
    histories: dict[str, Any] = field(default_factory=dict, repr=False)
    notes: tuple[str, ...] = ()
    staleness: tuple[tuple[int, float, float], ...] = ()
    precision: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "problem": self.problem,
            "options": self.options,
            "num_params": self.num_params,
            "num_examples": self.num_examples,
            "reference": self.reference,
            "points": [p.row() for p in self.points],
            "baselines": {
                key: [p.row() for p in points] for key, points in self.baselines.items()
            },
            "cost": self.cost.to_dict() if self.cost else None,
            "reference_cost": (
                self.reference_cost.to_dict() if self.reference_cost else None
            ),
            "race": [entry.to_dict() for entry in self.race],
            "staleness": [
                {"step": step, "stale_error": stale, "fresh_error": fresh}
                for step, stale, fresh in self.staleness
            ],
            "precision": self.precision,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Verdict:
    """Pass, fail or skipped for one property, with the worst measured value.

    Attributes:
        name: ``"well_formed"``, ``"symmetric"``, ``"psd"``, ``"scale"``, ``"exact"``,
            ``"coverage"`` or ``"unbiased"``.
        title: The property in words.
        status: ``"pass"``, ``"fail"`` or ``"skipped"``.
        why: Why it is checked (``"always"``, ``"declared psd=True"``...) or, when
            skipped, why not.
        measured: The worst value over every point of every problem.
        threshold: The inequality it must satisfy, in words.
        where: Where the worst value occurred.
        detail: A sentence for humans (errors named here).
    """

    name: str
    title: str
    status: str
    why: str
    measured: float = math.nan
    threshold: str = ""
    where: str = ""
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class CurvatureResult:
    """The battery's result for one curvature.

    Attributes:
        key: The curvature key.
        label: Its label.
        source: ``"builtin"`` or the plugin it came from.
        psd: Declared positive semi-definite.
        exact: Declared exact.
        declared_reference: The reference it declares (or None).
        reference: The reference it was compared with.
        reference_role: ``"declared"``, ``"given"`` (by the caller) or ``"default"``
            (informative only: the scale is not judged).
        verdicts: One per property.
        problems: One per problem.
        seconds: Time the battery spent on it.
        nearest_reference: The reference with the smallest mean residual over
            every point of every problem (median scale, mean residual).
        declared_coverage: ``{problem key: op.coverage()}`` at θ₀.
        inverse: Registered as a preconditioner P ≈ C⁻¹ (judged as C = P⁻¹).
    """

    key: str
    label: str
    source: str
    psd: bool
    exact: bool
    declared_reference: str | None
    reference: str
    reference_role: str
    verdicts: tuple[Verdict, ...]
    problems: tuple[ProblemResult, ...]
    seconds: float = 0.0
    nearest_reference: NearestReference | None = None
    declared_coverage: dict[str, dict[str, str]] = field(default_factory=dict)
    inverse: bool = False

    @property
    def passed(self) -> bool:
        """Every declared property holds."""
        return not any(v.failed for v in self.verdicts)

    def verdict(self, name: str) -> Verdict:
        """The verdict called ``name``."""
        for verdict in self.verdicts:
            if verdict.name == name:
                return verdict
        raise KeyError(name)

    def failures(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.failed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "source": self.source,
            "declared": {
                "psd": self.psd,
                "exact": self.exact,
                "reference": self.declared_reference,
            },
            "reference": self.reference,
            "reference_role": self.reference_role,
            "inverse": self.inverse,
            "nearest_reference": (
                self.nearest_reference.to_dict() if self.nearest_reference else None
            ),
            "declared_coverage": self.declared_coverage,
            "passed": self.passed,
            "verdicts": {v.name: v.to_dict() for v in self.verdicts},
            "problems": [p.to_dict() for p in self.problems],
            "seconds": self.seconds,
        }


def failure_line(error: str) -> str:
    """The line of an error text that says what went wrong (a traceback's last)."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else str(error)


@dataclass(frozen=True)
class CheckReport:
    """The battery's result for every checked curvature.

    Attributes:
        curvatures: One result per curvature.
        settings: What ran.
        sources: Plugin files or entry points that were loaded: ``{"source",
            "keys", "error", "status"}`` records, ``status`` being ``"ok"``,
            ``"failed"`` (it did not import, or the check process died) or
            ``"timed out"``. A record with an error fails the report: a plugin
            that cannot be checked is not a plugin that passed.
        seconds: Total time.
    """

    curvatures: tuple[CurvatureResult, ...]
    settings: CheckSettings
    sources: tuple[dict[str, Any], ...] = ()
    seconds: float = 0.0

    @property
    def failed_sources(self) -> list[dict[str, Any]]:
        """The plugins that could not be checked (import error, time limit...)."""
        return [source for source in self.sources if source.get("error")]

    @property
    def passed(self) -> bool:
        """Every plugin loaded and every declared property of every curvature
        holds.
        """
        return not self.failed_sources and all(c.passed for c in self.curvatures)

    @property
    def exit_code(self) -> int:
        """0 when everything declared holds, 1 otherwise (for CI)."""
        return 0 if self.passed else 1

    def result(self, key: str) -> CurvatureResult:
        """The result of curvature ``key``."""
        for result in self.curvatures:
            if result.key == key:
                return result
        raise KeyError(key)

    def summary_lines(self) -> list[str]:
        """One line per failed plugin and per verdict: what a CI log shows."""
        lines = [
            f"FAIL  plugin {source['source']}: {failure_line(source['error'])}"
            for source in self.failed_sources
        ]
        for result in self.curvatures:
            head = "PASS" if result.passed else "FAIL"
            lines.append(f"{head}  {result.key} ({result.label}) vs {result.reference}")
            if result.nearest_reference is not None:
                lines.append(
                    f"  nearest reference: {result.nearest_reference.sentence()}"
                )
            for v in result.verdicts:
                value = "" if math.isnan(v.measured) else f"{v.measured:.4g}"
                where = f" at {v.where}" if v.where else ""
                if v.status == SKIPPED:
                    if value:
                        shown = f"; measured {value}{where}"
                    else:
                        shown = f" ({v.detail})" if v.detail else ""
                    lines.append(f"  SKIPPED {v.title}: {v.why}{shown}")
                    continue
                text = (
                    f"  {v.status.upper():7s} {v.title} = {value} (need {v.threshold})"
                )
                text += where
                if v.failed and v.detail:
                    text += f": {v.detail}"
                lines.append(text)
        return lines

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary (NaN and inf as null)."""
        return clean(
            {
                "format": "curvature-explorer/check",
                "version": 1,
                "passed": self.passed,
                "exit_code": self.exit_code,
                "seconds": self.seconds,
                "settings": self.settings.to_dict(),
                "sources": list(self.sources),
                "curvatures": {c.key: c.to_dict() for c in self.curvatures},
            }
        )
