"""Presets about optimizer runs: C4 (invariance), C5 (damping), C6 (efficiency)."""

from __future__ import annotations

from explorer.presets import invariance, training
from explorer.presets.base import Preset
from explorer.presets.helpers import fixed
from explorer.ui.urlstate import Experiment, RuleChoice

CATALOG: list[Preset] = []
_add = CATALOG.append

_MOONS = {"hidden": (8,), "num_samples": 100}
_MOONS_SMALL = {"hidden": (4,), "num_samples": 40}
_SIGMA = {"start_mean": -0.5, "start_sigma": 0.7, "num_samples": 100}

# ----------------------------------------------------------------------- C4


def _gaussian_fit(parameterization: str) -> Experiment:
    return Experiment(
        "gaussian_fit",
        {"parameterization": parameterization, **_SIGMA},
        (
            RuleChoice("natural_gradient", fixed(0.1, 0.0)),
            RuleChoice("sgd", {"lr": 0.1}),
        ),
        {"steps": 20},
    )


_add(
    Preset(
        key="c4_smooth_reparameterization",
        claim="C4",
        title="(μ, σ) or (μ, log σ): natural gradient does not care, for small steps",
        explanation=(
            "Fitting a Gaussian in (μ, σ) or in (μ, log σ) describes the same "
            "distributions. Natural-gradient paths in the two coordinates become "
            "identical as the step size shrinks, gradient-descent paths do not."
        ),
        formula=(
            r"F_\phi = J^\top F_\theta J,\; g_\phi = J^\top g_\theta \;\Rightarrow\; "
            r"J\,\delta\phi = \delta\theta + O(\mathrm{lr}^2), \quad "
            r"J = \partial\theta / \partial\phi"
        ),
        reference="Martens 2020, §13; Amari 1998",
        problem="gaussian_fit",
        problem_options=_SIGMA,
        compute=invariance.smooth_reparameterization,
        figures=("paths in (μ, σ)", "gap against step size"),
        experiments={
            "(μ, σ)": _gaussian_fit("sigma"),
            "(μ, log σ)": _gaussian_fit("log_sigma"),
        },
        sizes={
            "small": {
                "lrs": (0.2, 0.1, 0.05),
                "time": 2.0,
                "shown_lr": 0.1,
                "grid": 30,
            },
            "full": {
                "lrs": (0.2, 0.1, 0.05, 0.025),
                "time": 2.0,
                "shown_lr": 0.1,
                "grid": 80,
            },
        },
    )
)
_LOGREG = {"num_samples": 200, "theta0": (1.0, 0.5)}
_add(
    Preset(
        key="c4_affine_reparameterization",
        claim="C4",
        title="Affine coordinates: natural gradient exactly invariant, GD not",
        explanation=(
            "Writing the weights as θ = Aφ + b changes the gradient by Aᵀ and the "
            "Fisher by AᵀFA, and the two changes cancel in the natural-gradient step "
            "at any step size. Gradient descent moves differently in φ, and damping "
            "adds λI in the wrong coordinates, which breaks the exact cancellation."
        ),
        formula=(
            r"A\,\delta\phi = -A\,(A^\top F A)^{-1} A^\top g = -F^{-1}g = \delta\theta"
            r"\quad(\lambda = 0)"
        ),
        reference="Martens 2020, §13; Amari 1998",
        problem="logreg_2d",
        problem_options=_LOGREG,
        compute=invariance.affine_reparameterization,
        figures=("paths in θ", "gap against damping"),
        experiments={
            "θ coordinates": Experiment(
                "logreg_2d",
                _LOGREG,
                (
                    RuleChoice("natural_gradient", fixed(0.2, 0.0)),
                    RuleChoice("sgd", {"lr": 1.0}),
                ),
                {"steps": 15},
            )
        },
        sizes={
            "small": {
                "run_options": {"steps": 8},
                "matrix": ((2.0, 1.0), (0.0, 0.5)),
                "offset": (0.3, -0.2),
                "dampings": (1e-2, 1.0),
                "grid": 30,
            },
            "full": {
                "matrix": ((2.0, 1.0), (0.0, 0.5)),
                "offset": (0.3, -0.2),
                "dampings": (1e-3, 1e-2, 1e-1, 1.0),
                "grid": 80,
            },
        },
    )
)

# ----------------------------------------------------------------------- C5
_add(
    Preset(
        key="c5_levenberg_marquardt",
        claim="C5",
        title="Undamped steps blow up, Levenberg–Marquardt recovers",
        explanation=(
            "An undamped Gauss-Newton step jumps to the minimum of a quadratic model "
            "that is only trustworthy nearby, and the loss explodes; a large fixed "
            "damping keeps steps tiny and stalls. Levenberg–Marquardt compares the "
            "actual and predicted decrease (ρ) and adapts λ, so it makes fast, safe "
            "progress."
        ),
        formula=(
            r"\rho = \frac{h(\theta + \delta) - h(\theta)}{M(\delta) - M(0)};\;\; "
            r"\rho > \tfrac34: \lambda \leftarrow \omega\lambda,\;\; "
            r"\rho < \tfrac14: \lambda \leftarrow \lambda/\omega"
        ),
        reference="Martens 2020, §10; Martens 2010; Moré 1978",
        problem="moons_mlp",
        problem_options=_MOONS,
        compute=training.levenberg_marquardt,
        figures=("loss", "ρ, λ and α"),
        experiments={
            "three damping choices": Experiment(
                "moons_mlp",
                _MOONS,
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
)
_add(
    Preset(
        key="c5_large_damping",
        claim="C5",
        title="λ → ∞: natural gradient becomes gradient descent",
        explanation=(
            "With a huge damping the curvature hardly matters: the step is the "
            "gradient divided by λ. Scaling the learning rate by λ gives gradient "
            "descent back, up to a difference that shrinks like 1/λ."
        ),
        formula=(
            r"\lambda\,(F + \lambda I)^{-1} g = g - \frac{F g}{\lambda} + "
            r"O(\lambda^{-2})"
        ),
        reference="Martens 2020, §10",
        problem="moons_mlp",
        problem_options=_MOONS,
        compute=training.large_damping,
        figures=("loss at the largest λ", "difference against λ"),
        experiments={
            "gradient descent vs heavily damped natural gradient": Experiment(
                "moons_mlp",
                _MOONS,
                (
                    RuleChoice("sgd", {"lr": 0.5}, "gradient descent"),
                    RuleChoice("natural_gradient", fixed(5e3, 1e4)),
                ),
                {"steps": 20},
            )
        },
        sizes={
            "small": {
                "problem_options": _MOONS_SMALL,
                "run_options": {"steps": 10},
                "dampings": (1e2, 1e3, 1e4),
            },
            "full": {"dampings": (1e1, 1e2, 1e3, 1e4, 1e5)},
        },
    )
)

# ----------------------------------------------------------------------- C6
_STREAM = {"dim": 5, "signal": 1.0, "eval_size": 100_000}
_add(
    Preset(
        key="c6_fisher_efficiency",
        claim="C6",
        title="Averaging reaches the Fisher-efficient rate P/(2k)",
        explanation=(
            "No method can beat an excess loss of about P/(2k) after seeing k "
            "samples of a well-specified model. Constant-step SGD with iterate "
            "averaging and natural gradient both get there, while the last SGD "
            "iterate keeps bouncing around above it."
        ),
        formula=(
            r"\mathbb{E}\,h(\bar\theta_k) - h(\theta^*) \approx \frac{P}{2k}, \quad "
            r"\bar\theta_k = \frac1k\sum_{t \le k}\theta_t"
        ),
        reference="Martens 2020, §12; Polyak & Juditsky 1992; Amari 1998",
        problem="stream_logreg",
        problem_options=_STREAM,
        compute=training.fisher_efficiency,
        figures=("excess loss against samples",),
        experiments={
            "averaged SGD and natural gradient": Experiment(
                "stream_logreg",
                _STREAM,
                (
                    RuleChoice("sgd", {"lr": 1.0}, "averaged SGD"),
                    RuleChoice(
                        "natural_gradient",
                        fixed(0.2, 1e-3),
                        "averaged natural gradient",
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
)
_BUDGET = {
    "dim": 10,
    "input_correlation": 0.98,
    "signal": 3.0,
    "eval_size": 50_000,
}
_add(
    Preset(
        key="c6_small_budget",
        claim="C6",
        title="A small budget of iterations: second order far ahead",
        explanation=(
            "Asymptotically averaging makes SGD as good as natural gradient, but "
            "with ill-conditioned inputs and only a few large-batch iterations the "
            "curvature step is far ahead. SGD gets its best learning rate from a "
            "grid and still trails."
        ),
        formula=(
            r"\theta_{t+1} = \theta_t - (F + \lambda I)^{-1} g_t "
            r"\quad\text{vs}\quad \theta_{t+1} = \theta_t - \alpha\, g_t"
        ),
        reference="Martens 2020, §12",
        problem="stream_logreg",
        problem_options=_BUDGET,
        compute=training.small_budget,
        figures=("excess loss per iteration",),
        experiments={
            "natural gradient vs SGD": Experiment(
                "stream_logreg",
                _BUDGET,
                (
                    RuleChoice("natural_gradient", {}, "natural gradient"),
                    RuleChoice("sgd", {"lr": 0.3}, "SGD lr=0.3"),
                    RuleChoice("sgd", {"lr": 1.0}, "SGD lr=1"),
                    RuleChoice("sgd", {"lr": 3.0}, "SGD lr=3"),
                ),
                {"steps": 10, "batch_size": 1000},
            )
        },
        sizes={"small": {"seeds": (0, 1)}, "full": {"seeds": (0, 1, 2, 3)}},
    )
)
