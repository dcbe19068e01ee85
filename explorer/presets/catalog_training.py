"""Presets about optimizer runs: C4 (invariance), C5 (damping), C6 (efficiency)."""

from __future__ import annotations

from explorer.presets import invariance, training
from explorer.presets.base import Catalog, Comparison
from explorer.presets.helpers import MOONS, MOONS_SMALL, fixed
from explorer.runs import RuleChoice

CATALOG = Catalog(
    r"""
## (μ, σ) or (μ, log σ): natural gradient does not care, for small steps
`c4_smooth_reparameterization` · C4

Fitting a Gaussian in (μ, σ) or in (μ, log σ) describes the same distributions.
Natural-gradient paths in the two coordinates become identical as the step size
shrinks, gradient-descent paths do not.

$$
F_\phi = J^\top F_\theta J,\; g_\phi = J^\top g_\theta \;\Rightarrow\; J\,\delta\phi
= \delta\theta + O(\mathrm{lr}^2), \quad J = \partial\theta / \partial\phi
$$

Reference: Martens 2020, §13; Amari 1998

## Affine coordinates: natural gradient exactly invariant, GD not
`c4_affine_reparameterization` · C4

Writing the weights as θ = Aφ + b changes the gradient by Aᵀ and the Fisher by AᵀFA,
and the two changes cancel in the natural-gradient step at any step size. Gradient
descent moves differently in φ, and damping adds λI in the wrong coordinates, which
breaks the exact cancellation.

$$
A\,\delta\phi = -A\,(A^\top F A)^{-1} A^\top g = -F^{-1}g =
\delta\theta\quad(\lambda = 0)
$$

Reference: Martens 2020, §13; Amari 1998

## Undamped steps blow up, Levenberg–Marquardt recovers
`c5_levenberg_marquardt` · C5

An undamped Gauss-Newton step jumps to the minimum of a quadratic model that is only
trustworthy nearby, and the loss explodes; a large fixed damping keeps steps tiny
and stalls. Levenberg–Marquardt compares the actual and predicted decrease (ρ) and
adapts λ, so it makes fast, safe progress.

$$
\rho = \frac{h(\theta + \delta) - h(\theta)}{M(\delta) - M(0)};\;\; \rho > \tfrac34:
\lambda \leftarrow \omega\lambda,\;\; \rho < \tfrac14: \lambda \leftarrow
\lambda/\omega
$$

Reference: Martens 2020, §10; Martens 2010; Moré 1978

## λ → ∞: natural gradient becomes gradient descent
`c5_large_damping` · C5

With a huge damping the curvature hardly matters: the step is the gradient divided
by λ. Scaling the learning rate by λ gives gradient descent back, up to a difference
that shrinks like 1/λ.

$$
\lambda\,(F + \lambda I)^{-1} g = g - \frac{F g}{\lambda} + O(\lambda^{-2})
$$

Reference: Martens 2020, §10

## Averaging reaches the Fisher-efficient rate P/(2k)
`c6_fisher_efficiency` · C6

No method can beat an excess loss of about P/(2k) after seeing k samples of a
well-specified model. Constant-step SGD with iterate averaging and natural gradient
both get there, while the last SGD iterate keeps bouncing around above it.

$$
\mathbb{E}\,h(\bar\theta_k) - h(\theta^*) \approx \frac{P}{2k}, \quad \bar\theta_k =
\frac1k\sum_{t \le k}\theta_t
$$

Reference: Martens 2020, §12; Polyak & Juditsky 1992; Amari 1998

## A small budget of iterations: second order far ahead
`c6_small_budget` · C6

Asymptotically averaging makes SGD as good as natural gradient, but with
ill-conditioned inputs and only a few large-batch iterations the curvature step is
far ahead. SGD gets its best learning rate from a grid and still trails.

$$
\theta_{t+1} = \theta_t - (F + \lambda I)^{-1} g_t \quad\text{vs}\quad \theta_{t+1}
= \theta_t - \alpha\, g_t
$$

Reference: Martens 2020, §12
"""
)


# ----------------------------------------------------------------------- C4
def _gaussian_fit(parameterization: str) -> Comparison:
    """Natural gradient and gradient descent on the Gaussian fit in one
    parameterization (the claim's one problem option that differs).
    """
    return Comparison(
        (
            RuleChoice("natural_gradient", fixed(0.1, 0.0)),
            RuleChoice("sgd", {"lr": 0.1}),
        ),
        {"steps": 20},
        problem_options={"parameterization": parameterization},
    )


CATALOG.add(
    "c4_smooth_reparameterization",
    invariance.SMOOTH,
    problem="gaussian_fit",
    problem_options={"start_mean": -0.5, "start_sigma": 0.7, "num_samples": 100},
    experiments={
        "(μ, σ)": _gaussian_fit("sigma"),
        "(μ, log σ)": _gaussian_fit("log_sigma"),
    },
    sizes={
        "small": {"lrs": (0.2, 0.1, 0.05), "grid": 30},
        "full": {"lrs": (0.2, 0.1, 0.05, 0.025), "grid": 80},
    },
    params={"time": 2.0, "shown_lr": 0.1},
)
CATALOG.add(
    "c4_affine_reparameterization",
    invariance.AFFINE,
    problem="logreg_2d",
    problem_options={"num_samples": 200, "theta0": (1.0, 0.5)},
    experiments={
        "θ coordinates": Comparison(
            (
                RuleChoice("natural_gradient", fixed(0.2, 0.0)),
                RuleChoice("sgd", {"lr": 1.0}),
            ),
            {"steps": 15},
        )
    },
    sizes={
        "small": {"run_options": {"steps": 8}, "dampings": (1e-2, 1.0), "grid": 30},
        "full": {"dampings": (1e-3, 1e-2, 1e-1, 1.0), "grid": 80},
    },
    params={"matrix": ((2.0, 1.0), (0.0, 0.5)), "offset": (0.3, -0.2)},
)

# ----------------------------------------------------------------------- C5
CATALOG.add(
    "c5_levenberg_marquardt",
    training.LEVENBERG_MARQUARDT,
    problem="moons_mlp",
    problem_options=MOONS,
    experiments={
        "three damping choices": Comparison(
            (
                RuleChoice(
                    "gauss_newton",
                    fixed(1.0, 1e-8, track_rho=True),
                    "undamped (λ = 1e-8)",
                ),
                RuleChoice(
                    "gauss_newton",
                    fixed(1.0, 100.0, track_rho=True),
                    "fixed λ = 100",
                ),
                RuleChoice("gauss_newton", {}, "Levenberg–Marquardt"),
            ),
            {"steps": 20},
        )
    },
    sizes={
        "small": {
            "problem_options": {"hidden": (8,), "num_samples": 60},
            "run_options": {"steps": 10},
        }
    },
)
CATALOG.add(
    "c5_large_damping",
    training.LARGE_DAMPING,
    problem="moons_mlp",
    problem_options=MOONS,
    experiments={
        "gradient descent vs heavily damped natural gradient": Comparison(
            (
                RuleChoice("sgd", {"lr": 0.5}, "gradient descent"),
                RuleChoice("natural_gradient", fixed(5e3, 1e4)),
            ),
            {"steps": 20},
        )
    },
    sizes={
        "small": {
            "problem_options": MOONS_SMALL,
            "run_options": {"steps": 10},
            "dampings": (1e2, 1e3, 1e4),
        },
        "full": {"dampings": (1e1, 1e2, 1e3, 1e4, 1e5)},
    },
)

# ----------------------------------------------------------------------- C6
CATALOG.add(
    "c6_fisher_efficiency",
    training.FISHER_EFFICIENCY,
    problem="stream_logreg",
    problem_options={"dim": 5, "signal": 1.0, "eval_size": 100_000},
    experiments={
        "averaged SGD and natural gradient": Comparison(
            (
                RuleChoice("sgd", {"lr": 1.0}, "averaged SGD"),
                RuleChoice(
                    "natural_gradient", fixed(0.2, 1e-3), "averaged natural gradient"
                ),
            ),
            {
                "steps": 100,
                "batch_size": 50,
                "curvature_batch_size": 100,
                "averaging": "uniform",
                "record_steps": 12,
                "record_log": True,
            },
        )
    },
    sizes={
        "small": {"run_options": {"steps": 60}, "seeds": (0, 1, 2, 3)},
        "full": {"seeds": tuple(range(8))},
    },
)
CATALOG.add(
    "c6_small_budget",
    training.SMALL_BUDGET,
    problem="stream_logreg",
    problem_options={
        "dim": 10,
        "input_correlation": 0.98,
        "signal": 3.0,
        "eval_size": 50_000,
    },
    experiments={
        "natural gradient vs SGD": Comparison(
            (
                RuleChoice("natural_gradient", {}, "natural gradient"),
                *(
                    RuleChoice("sgd", {"lr": lr}, f"SGD lr={lr:g}")
                    for lr in (0.3, 1.0, 3.0)
                ),
            ),
            {"steps": 10, "batch_size": 1000},
        )
    },
    sizes={"small": {"seeds": (0, 1)}, "full": {"seeds": (0, 1, 2, 3)}},
)
