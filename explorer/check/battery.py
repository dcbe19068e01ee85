"""The check battery: run every measurement and verdict for some curvatures.

For each problem (default: ``linreg_2d``, ``moons_mlp``, ``digits_mlp`` with 8 hidden
units), a short reference run (``natural_gradient`` by default) provides points θ₀,
the middle and the end. At each point every checked curvature C is compared with its
reference R (:mod:`explorer.check.point`), beside built-in baselines (K-FAC and the
reference's diagonal) for context; at θ₀ the cost of C's products and solves is
measured against a gradient; then C drives ``precondition`` in a race against
``natural_gradient``, ``gauss_newton``, ``kfac`` and ``sgd`` (:mod:`explorer.check.race`).
The verdicts (:mod:`explorer.check.verdicts`) judge only declared properties, plus
coverage (always) and, for sampled estimators, unbiasedness.

Shared per point, across every checked curvature: R, and the nearest-reference
candidates (dense matrices, or Rademacher probes and their products when P >
``dense_max_params``), built once. Per curvature and problem: the staleness of C(θ₀)
along the run (dense points) and C in float32 at θ₀ against float64. A sampled
curvature costs k = ``sampled_draws`` builds per dense point; nothing else does.

Example:
    >>> from explorer.check import CheckSettings, run_battery
    >>> settings = CheckSettings(problems=["linreg_2d"], steps=2, race=False)
    >>> report = run_battery(["kfac"], settings)
    >>> report.passed, report.result("kfac").verdict("scale").status
    (True, 'pass')
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from explorer.check.nearest import aggregate
from explorer.check.point import (
    ReferencePoint,
    candidate_matrices,
    candidate_probes,
    describe_error,
    is_inverse,
    measure,
    measure_point,
    precision,
    reference_point,
)
from explorer.check.race import problem_config, race_entry
from explorer.check.results import (
    CheckReport,
    CurvatureResult,
    PointResult,
    ProblemResult,
    RaceEntry,
)
from explorer.check.settings import FALLBACK_REFERENCE, CheckSettings, ProblemChoice
from explorer.check.verdicts import verdicts
from explorer.curvature.registry import CURVATURES
from explorer.landscape.trajectories import finite_trajectory
from explorer.optimizers.rules import RULES
from explorer.problems.spec import PROBLEMS
from explorer.runs.history import History
from explorer.spectra.quality import subsample

#: ``progress(fraction in [0, 1], message)``.
ProgressFn = Callable[[float, str], None]


class _Progress:
    """Counts units of work and reports the fraction done."""

    def __init__(self, total: int, callback: ProgressFn | None) -> None:
        self.total, self.done, self.callback = max(1, total), 0, callback

    def __call__(self, message: str, units: int = 1) -> None:
        if self.callback is not None:
            self.callback(min(1.0, self.done / self.total), message)
        self.done += units

    def finish(self, message: str) -> None:
        if self.callback is not None:
            self.callback(1.0, message)


def reference_of(key: str, settings: CheckSettings) -> tuple[str, str]:
    """(reference key, role): ``"given"``, ``"declared"`` or ``"default"``."""
    if settings.reference:
        return settings.reference, "given"
    declared = CURVATURES[key].reference
    if declared:
        return declared, "declared"
    return FALLBACK_REFERENCE, "default"


def default_baselines(reference: str, exclude: Iterable[str]) -> tuple[str, ...]:
    """``kfac`` and ``diag_<reference>`` where registered, minus ``exclude``."""
    skip = set(exclude)
    wanted = ("kfac", f"diag_{reference}")
    return tuple(key for key in wanted if key in CURVATURES and key not in skip)


def validate_settings(settings: CheckSettings) -> None:
    """Raises ValueError for a key of ``settings`` no registry holds (a problem, a
    rule, a baseline or the given reference): what no curvature can be blamed for.
    """
    for choice in settings.problems:
        PROBLEMS[choice.key]  # UnknownKeyError (a ValueError) names the known keys
    for rule in (*settings.race_rules, settings.path_rule):
        RULES[rule]
    for key in settings.baselines or ():
        CURVATURES[key]
    if settings.reference:
        CURVATURES[settings.reference]


def _validate(keys: list[str], settings: CheckSettings) -> None:
    if not keys:
        raise ValueError("no curvature to check")
    for key in keys:
        CURVATURES[key]  # UnknownKeyError (a ValueError) names the known keys
        CURVATURES[reference_of(key, settings)[0]]
    validate_settings(settings)


class _ProblemRun:
    """Everything shared by the curvatures checked on one problem."""

    def __init__(
        self, choice: ProblemChoice, settings: CheckSettings, tick: _Progress
    ) -> None:
        self.choice, self.settings, self.tick = choice, settings, tick
        self.problem = problem_config(choice, settings).build()
        self.notes: list[str] = []
        self.race: dict[str, tuple[RaceEntry, History | None]] = {}
        tick(f"{choice.key}: reference run ({settings.path_rule})")
        entry, history = race_entry(self.problem, choice, settings.path_rule, settings)
        self.race[settings.path_rule] = (entry, history)
        self.thetas, self.steps = self._points(history, entry)
        self._references: dict[str, list[ReferencePoint]] = {}
        self._baselines: dict[str, dict[str, tuple[PointResult, ...]]] = {}
        self._candidates: dict[int, Any] = {}
        self._problem32: Any = None

    def _points(self, history: History | None, entry: RaceEntry):
        theta0 = self.problem.theta0.detach().double().cpu()
        if history is None:
            self.notes.append(
                f"the reference run could not run ({entry.message}); only θ₀ is checked"
            )
            return [theta0], [0]
        if history.status != "ok":
            self.notes.append(
                f"the reference run stopped early ({history.status}: "
                f"{history.message}); points come from its finite part"
            )
        thetas, steps = finite_trajectory(history)
        if not steps:
            return [theta0], [0]
        chosen = subsample(len(steps), self.settings.points)
        return [thetas[i] for i in chosen], [steps[i] for i in chosen]

    def references(self, key: str) -> list[ReferencePoint]:
        """R at every point (built once per reference key)."""
        if key not in self._references:
            points = []
            for index, (theta, step) in enumerate(
                zip(self.thetas, self.steps, strict=True)
            ):
                self.tick(f"{self.choice.key}: reference {key} at step {step}")
                point = reference_point(
                    key, self.problem, theta, step, self.settings, timing=index == 0
                )
                self._attach_candidates(index, point)
                points.append(point)
            self._references[key] = points
        return self._references[key]

    def _attach_candidates(self, index: int, point: ReferencePoint) -> None:
        """The nearest-reference candidates at point ``index``: built once, shared
        by every reference key and checked curvature (R itself reused).
        """
        if index not in self._candidates:
            if point.dense:
                known = {point.key: point.matrix}
                self._candidates[index] = candidate_matrices(
                    self.problem, point.theta, self.settings, known
                )
            else:
                self._candidates[index] = candidate_probes(
                    self.problem, point.theta, self.settings
                )
        if point.dense:
            point.candidates = self._candidates[index]
        else:
            point.probed = self._candidates[index]

    def problem32(self) -> Any:
        """The problem in float32 (same data and seed), for the precision check."""
        if self._problem32 is None:
            config = problem_config(self.choice, self.settings)
            self._problem32 = config.replace(dtype="float32").build()
        return self._problem32

    def baselines(self, reference: str, exclude: str) -> dict[str, tuple]:
        """Built-in approximations of ``reference`` at every point."""
        if reference not in self._baselines:
            keys = self.settings.baselines
            if keys is None:
                keys = default_baselines(reference, ())
            out = {}
            for key in keys:
                self.tick(f"{self.choice.key}: baseline {key}")
                if RULES["precondition"].incompatibility(
                    self.problem, {"curvature": key}
                ):
                    continue
                points = tuple(
                    measure_point(key, ref, self.settings)[0]
                    for ref in self.references(reference)
                )
                if any(p.ok for p in points):
                    out[key] = points
            self._baselines[reference] = out
        return {k: v for k, v in self._baselines[reference].items() if k != exclude}

    def race_baselines(self) -> None:
        for rule in self.settings.race_rules:
            if rule not in self.race:
                self.tick(f"{self.choice.key}: race {rule}")
                self.race[rule] = race_entry(
                    self.problem, self.choice, rule, self.settings
                )

    def check(self, key: str) -> ProblemResult:
        """Measures curvature ``key`` here (points, cost, race)."""
        settings, options = self.settings, dict(self.settings.curvature_options)
        reference, _ = reference_of(key, settings)
        base = {
            "problem": self.choice.key,
            "options": dict(self.choice.options),
            "description": self.choice.describe(),
            "num_params": self.problem.num_params,
            "num_examples": self.problem.num_examples,
            "reference": reference,
        }
        # whether C can be built here (a preconditioner plugin cannot drive the race,
        # which then says so, but is still measured)
        reason = CURVATURES[key].incompatibility(self.problem, options)
        if reason:
            return ProblemResult(**base, points=(), notes=(f"skipped: {reason}",))
        refs = self.references(reference)
        baselines = self.baselines(reference, exclude=key)
        points, cost, matrices = [], None, []
        for index, ref in enumerate(refs):
            self.tick(f"{self.choice.key}: {key} at step {ref.step}")
            point, measured, matrix = measure(
                key,
                ref,
                settings,
                options,
                keep_matrix=index == len(refs) - 1,
                timing=index == 0,
            )
            points.append(point)
            matrices.append(matrix)
            cost = cost or measured
        notes = list(self.notes)
        staleness = _staleness(refs, matrices)
        measured_precision = self._precision(key, options, refs[0], points[0], notes)
        race, histories = self._race(key, options)
        return ProblemResult(
            **base,
            points=tuple(points),
            baselines=baselines,
            cost=cost,
            reference_cost=refs[0].cost,
            race=race,
            histories=histories,
            notes=tuple(notes),
            staleness=staleness,
            precision=measured_precision,
        )

    def _precision(self, key, options, ref, point, notes):
        if not self.settings.precision or not point.ok:
            return None
        nearest = point.nearest.key if point.nearest else None
        try:
            return precision(
                key, self.problem32(), ref, self.settings, options, nearest
            )
        except Exception as error:  # float32 is informative: a failure is a note
            notes.append(f"float32 precision check failed: {describe_error(error)}")
            return None

    def _race(self, key: str, options: Mapping[str, Any]):
        if not self.settings.race:
            return (), {}
        self.race_baselines()
        self.tick(f"{self.choice.key}: race {key}")
        taken = set(self.settings.race_rules) | {self.settings.path_rule}
        label = key if key not in taken else f"{key} (precondition)"
        mine = race_entry(
            self.problem,
            self.choice,
            "precondition",
            self.settings,
            curvature=key,
            options=options,
            label=label,
        )
        entries = [mine, *(self.race[r] for r in self.settings.race_rules)]
        histories = {e.label: h for e, h in entries if h is not None}
        return tuple(e for e, _ in entries), histories


def _staleness(refs: list[ReferencePoint], matrices: list) -> tuple:
    """(step, ‖C(θ₀) − R(θ_s)‖/‖R(θ_s)‖, ‖C(θ_s) − R(θ_s)‖/‖R(θ_s)‖) per later
    dense point.
    """
    out = []
    first = matrices[0] if matrices else None
    for ref, matrix in zip(refs[1:], matrices[1:], strict=True):
        if first is None or matrix is None or ref.matrix is None:
            continue
        norm = float(ref.matrix.norm())
        if not norm > 0:
            continue
        stale = float((first - ref.matrix).norm()) / norm
        fresh = float((matrix - ref.matrix).norm()) / norm
        out.append((ref.step, stale, fresh))
    return tuple(out)


def _units(keys: list[str], settings: CheckSettings) -> int:
    references = {reference_of(k, settings)[0] for k in keys}
    baselines = 2 if settings.baselines is None else len(settings.baselines)
    per_problem = 1 + len(references) * (settings.points + baselines)
    per_problem += len(keys) * settings.points
    if settings.race:
        per_problem += len(settings.race_rules) + len(keys)
    return per_problem * len(settings.problems)


def run_battery(
    keys: Iterable[str],
    settings: CheckSettings | None = None,
    progress: ProgressFn | None = None,
    *,
    sources: Iterable[Mapping[str, Any]] = (),
) -> CheckReport:
    """Runs the battery on registered curvatures.

    Args:
        keys: Keys of ``explorer.CURVATURES`` (plugins or built-ins).
        settings: What to run and the thresholds (default :class:`CheckSettings`).
        progress: Called as ``progress(fraction, message)`` before each unit of work.
        sources: Where the curvatures came from (for the report).

    Returns:
        A :class:`~explorer.check.results.CheckReport`. A curvature that raises,
        returns the wrong shape, NaN or a non-symmetric matrix gets failing
        verdicts that name the problem; nothing it does raises out of here.

    Raises:
        ValueError: An unknown curvature, reference, problem, rule or option (a
            usage error, before any work).
    """
    settings = settings or CheckSettings()
    keys = list(dict.fromkeys(keys))
    _validate(keys, settings)
    start = time.perf_counter()
    tick = _Progress(_units(keys, settings), progress)
    per_key: dict[str, list[ProblemResult]] = {key: [] for key in keys}
    seconds = dict.fromkeys(keys, 0.0)
    for choice in settings.problems:
        here = _ProblemRun(choice, settings, tick)
        for key in keys:
            tic = time.perf_counter()
            per_key[key].append(here.check(key))
            seconds[key] += time.perf_counter() - tic
    results = []
    for key in keys:
        spec = CURVATURES[key]
        reference, role = reference_of(key, settings)
        problems = per_key[key]
        points = [p for result in problems for p in result.points]
        tags = spec.tags(None, dict(settings.curvature_options))
        coverage = {
            result.problem: result.points[0].coverage
            for result in problems
            if result.points and result.points[0].coverage is not None
        }
        results.append(
            CurvatureResult(
                key=key,
                label=spec.label,
                source=spec.source,
                psd=spec.psd,
                exact=spec.exact,
                declared_reference=spec.reference,
                reference=reference,
                reference_role=role,
                verdicts=verdicts(points, spec, reference, role, settings, tags),
                problems=tuple(problems),
                seconds=seconds[key],
                nearest_reference=aggregate([p.nearest for p in points if p.ok]),
                declared_coverage=coverage,
                inverse=is_inverse(spec),
            )
        )
    tick.finish("done")
    return CheckReport(
        curvatures=tuple(results),
        settings=settings,
        sources=tuple(dict(s) for s in sources),
        seconds=time.perf_counter() - start,
    )
