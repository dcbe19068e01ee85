"""Curvature Explorer: a visual laboratory for second-order optimization.

The public API (stable; notebooks and external checks rely on these names)::

    import explorer as ex
    p = ex.problem("digits_mlp", dtype=torch.float64, seed=0)
    op = ex.curvature("ggn", p, p.theta0)   # .matvec .matmat .dense .diag .solve

Every curvature matrix is that of the mean loss h(θ) = (1/N) Σ L(y_i, f(x_i; θ)) over
a flat parameter vector in the order of ``model.parameters()`` (THEORY.md).
"""

from explorer.curvature import (
    CURVATURES,
    CurvatureOperator,
    CurvatureSpec,
    DenseTooLargeError,
    IndefiniteCurvatureError,
    curvature,
    register_curvature,
)
from explorer.landscape import (
    decision_boundary,
    direction_field,
    interpolate,
    loss_grid,
    pca_plane,
    plane_loss_grid,
    quadratic_models,
)
from explorer.optimizers import RULES, RuleSpec, UpdateRule, register_rule
from explorer.options import Option
from explorer.problems import (
    PROBLEMS,
    Batch,
    LossSpec,
    Problem,
    ProblemSpec,
    TinyCase,
    problem,
    problem_from_module,
    register_problem,
)
from explorer.registry import Registry, UnknownKeyError
from explorer.runs import (
    Experiment,
    History,
    RuleChoice,
    RunConfig,
    RunSettings,
    compare,
    load_histories,
    run,
    run_on,
    save_histories,
)
from explorer.spectra import (
    Eigenpairs,
    SpectralDensity,
    approximation_quality,
    eigenpairs,
    generalized_spectrum,
    lanczos,
    spectral_density,
)
from explorer.sweeps import SweepConfig, SweepResult, sweep

__version__ = "0.1.0"

__all__ = [
    "CURVATURES",
    "PROBLEMS",
    "RULES",
    "Batch",
    "CurvatureOperator",
    "CurvatureSpec",
    "DenseTooLargeError",
    "Eigenpairs",
    "Experiment",
    "History",
    "IndefiniteCurvatureError",
    "LossSpec",
    "Option",
    "Problem",
    "ProblemSpec",
    "Registry",
    "RuleChoice",
    "RuleSpec",
    "RunConfig",
    "RunSettings",
    "SpectralDensity",
    "SweepConfig",
    "SweepResult",
    "TinyCase",
    "UnknownKeyError",
    "UpdateRule",
    "approximation_quality",
    "compare",
    "curvature",
    "decision_boundary",
    "direction_field",
    "eigenpairs",
    "generalized_spectrum",
    "interpolate",
    "lanczos",
    "load_histories",
    "loss_grid",
    "pca_plane",
    "plane_loss_grid",
    "problem",
    "problem_from_module",
    "quadratic_models",
    "register_curvature",
    "register_problem",
    "register_rule",
    "run",
    "run_on",
    "save_histories",
    "spectral_density",
    "sweep",
]
