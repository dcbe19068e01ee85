r"""What the check battery runs and the thresholds of its verdicts.

Every threshold is a plain number in :class:`CheckSettings`, stated in the report next
to the measured value, so a verdict can always be traced to one inequality:

* symmetric (always): :math:`‖C − C^\top‖_F / ‖C‖_F ≤` ``symmetry_tol``;
* positive semi-definite (when declared): :math:`λ_{\min}(\tfrac12(C + C^\top)) ≥
  −`\ ``psd_tol`` :math:`· \max_i |λ_i|`, i.e. :math:`x^\top C x ≥ 0` for every x up to
  rounding;
* scale (when a reference R is declared or given): :math:`1/s ≤ \operatorname{tr} C /
  \operatorname{tr} R ≤ s` with :math:`s =` ``scale_tol`` (1.5 by default: a forgotten
  1/N, a sum over outputs or a factor 2 fails, K-FAC's sampling error passes);
* exact (when declared, with a reference): :math:`‖C − R‖_F / ‖R‖_F ≤` ``exact_tol``;
* well-formed (always): it builds and multiplies at every point without raising, with
  the right shape and finite entries;
* coverage (always, dense points): no parameter tensor has all-zero rows and columns
  in C (:math:`‖C_{p,:}‖_F ≤` ``coverage_tol`` :math:`· ‖C‖_F`) while R's are not,
  unless the operator declares it ``none`` in ``op.coverage()`` (then it passes and
  the parameters are named: leaving a parameter out on purpose is honest);
* unbiased (sampled curvatures without a declared structure, see
  :mod:`explorer.check.sampling`): the error of the mean of k = ``sampled_draws``
  draws :math:`e(k) ≤ \max(` ``exact_tol`` :math:`, c · e(1)/\sqrt k)` with c =
  ``unbiased_slack``. Sampled curvatures are judged on that k-draw mean everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: The default problems: small enough for dense references in a fraction of a second.
DEFAULT_PROBLEMS: tuple[str, ...] = ("linreg_2d", "moons_mlp", "digits_mlp")

#: Options applied to a problem the battery runs unless the user sets them: keeps
#: the dense matrices small (digits MLP 64-8-10: P = 610).
SMALL_OPTIONS: dict[str, dict[str, Any]] = {"digits_mlp": {"hidden": (8,)}}

#: The rules the curvature races against (through ``precondition``).
RACE_RULES: tuple[str, ...] = ("natural_gradient", "gauss_newton", "kfac", "sgd")

#: Rules whose damping follows ``CheckSettings.damping`` (the plain damped steps).
DAMPED_RULES = frozenset({"precondition", "natural_gradient", "gauss_newton"})

#: The reference when a curvature declares none and none is given.
FALLBACK_REFERENCE = "fisher"


@dataclass(frozen=True)
class ProblemChoice:
    """A problem key and its options.

    Attributes:
        key: A key of ``explorer.PROBLEMS``.
        options: Its options (:data:`SMALL_OPTIONS` filled in for unset ones).
    """

    key: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, key: str, options: Mapping[str, Any] | None = None) -> ProblemChoice:
        """``key`` with the battery's small defaults under ``options``."""
        return cls(key, {**SMALL_OPTIONS.get(key, {}), **dict(options or {})})

    def describe(self) -> str:
        """``key`` or ``key (name=value, ...)``."""
        if not self.options:
            return self.key
        items = ", ".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.key} ({items})"


def problem_choices(
    problems: Iterable[str | ProblemChoice | tuple[str, Mapping[str, Any]]] | None,
) -> tuple[ProblemChoice, ...]:
    """Normalises keys, ``(key, options)`` pairs or choices into choices."""
    out = []
    for item in DEFAULT_PROBLEMS if problems is None else problems:
        if isinstance(item, ProblemChoice):
            out.append(item)
        elif isinstance(item, str):
            out.append(ProblemChoice.of(item))
        else:
            key, options = item
            out.append(ProblemChoice.of(key, options))
    if not out:
        raise ValueError("the check needs at least one problem")
    return tuple(out)


@dataclass(frozen=True)
class CheckSettings:
    """What to run and how strictly to judge (see the module docstring).

    Attributes:
        problems: The problems (default :data:`DEFAULT_PROBLEMS`, small options).
        reference: The reference curvature R; None uses each curvature's declared
            reference, or ``"fisher"`` for informative metrics only.
        curvature_options: Options of the checked curvature (and of its race run).
        steps: Length of the reference run and of the race.
        points: Points along the reference run where matrices are compared
            (evenly spread; θ₀ and the end included).
        path_rule: The rule of the reference run.
        damping: λ of the damped directions, condition numbers, generalized
            spectra and of the damped race rules.
        race: Run the optimization race.
        race_rules: The competitors of ``precondition`` with the checked curvature.
        baselines: Built-in approximations measured beside it for context; None
            picks ``kfac`` and ``diag_<reference>``.
        seed: Seeds the problems, runs and sampling curvatures.
        symmetry_tol: Largest relative asymmetry ‖C − Cᵀ‖_F / ‖C‖_F.
        psd_tol: Largest negative eigenvalue, relative to max |λ|.
        scale_tol: Largest factor s between tr C and tr R.
        exact_tol: Largest relative Frobenius error of a curvature declared exact.
        dense_max_params: Dense checks up to this P; probes and Lanczos above.
        timing_repeats: Repeats per timed operation (the median is reported).
        sampled_draws: k, the independent draws of a sampled curvature (their
            mean is judged; 1 judges one draw and skips ``unbiased``).
        sampled_draws_max: Where the mean of k draws misses the ``unbiased``
            bound or the scale, the draws are doubled up to this many before the
            point is judged (a bias must survive more evidence).
        unbiased_slack: c in e(k) ≤ max(tol, c · e(1)/√k).
        coverage_tol: A parameter's rows count as zero below this fraction of ‖C‖_F.
        nearest_keys: Candidates of the nearest reference (None: every key of
            :data:`~explorer.check.nearest.NEAREST_KEYS` that is registered).
        precision: Also build C in float32 at θ₀ and compare with float64.
    """

    problems: tuple[ProblemChoice, ...] = ()
    reference: str | None = None
    curvature_options: Mapping[str, Any] = field(default_factory=dict)
    steps: int = 20
    points: int = 3
    path_rule: str = "natural_gradient"
    damping: float = 0.1
    race: bool = True
    race_rules: tuple[str, ...] = RACE_RULES
    baselines: tuple[str, ...] | None = None
    seed: int = 0
    symmetry_tol: float = 1e-8
    psd_tol: float = 1e-8
    scale_tol: float = 1.5
    exact_tol: float = 1e-6
    dense_max_params: int = 2000
    timing_repeats: int = 5
    sampled_draws: int = 8
    sampled_draws_max: int = 64
    unbiased_slack: float = 2.0
    coverage_tol: float = 1e-12
    nearest_keys: tuple[str, ...] | None = None
    precision: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "problems", problem_choices(self.problems or None))
        checks = {
            "steps": self.steps >= 1,
            "points": self.points >= 1,
            "damping": self.damping >= 0,
            "symmetry_tol": self.symmetry_tol >= 0,
            "psd_tol": self.psd_tol >= 0,
            "scale_tol": self.scale_tol >= 1,
            "exact_tol": self.exact_tol >= 0,
            "dense_max_params": self.dense_max_params >= 1,
            "timing_repeats": self.timing_repeats >= 1,
            "sampled_draws": 1 <= self.sampled_draws <= 1000,
            "sampled_draws_max": self.sampled_draws <= self.sampled_draws_max <= 10_000,
            "unbiased_slack": self.unbiased_slack >= 1,
            "coverage_tol": 0 <= self.coverage_tol < 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(
                    f"check setting {name} = {getattr(self, name)!r} is out of range"
                )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the JSON summary."""
        return {
            "problems": [
                {"key": p.key, "options": _plain(p.options)} for p in self.problems
            ],
            "reference": self.reference,
            "curvature_options": _plain(self.curvature_options),
            "steps": self.steps,
            "points": self.points,
            "path_rule": self.path_rule,
            "damping": self.damping,
            "race": self.race,
            "race_rules": list(self.race_rules),
            "baselines": None if self.baselines is None else list(self.baselines),
            "seed": self.seed,
            "thresholds": {
                "symmetry_tol": self.symmetry_tol,
                "psd_tol": self.psd_tol,
                "scale_tol": self.scale_tol,
                "exact_tol": self.exact_tol,
                "unbiased_slack": self.unbiased_slack,
                "coverage_tol": self.coverage_tol,
            },
            "dense_max_params": self.dense_max_params,
            "sampled_draws": self.sampled_draws,
            "sampled_draws_max": self.sampled_draws_max,
            "nearest_keys": (
                None if self.nearest_keys is None else list(self.nearest_keys)
            ),
            "precision": self.precision,
        }


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
