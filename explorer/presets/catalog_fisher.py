"""Presets for C3: the empirical Fisher is not the Fisher (Kunstner et al. 2019)."""

from __future__ import annotations

from explorer.presets import empirical_fisher
from explorer.presets.base import Preset
from explorer.presets.helpers import fixed
from explorer.ui.urlstate import Experiment, RuleChoice

CATALOG: list[Preset] = []
_add = CATALOG.append

_MOONS = {"hidden": (8,), "num_samples": 100}
_MOONS_SMALL = {"hidden": (4,), "num_samples": 40}

# ----------------------------------------------------------------------- C3
_LOGNORMAL = {"data": "lognormal", "num_samples": 500}
_add(
    Preset(
        key="c3_ef_field",
        claim="C3",
        title="Natural gradient points at the minimum, the empirical Fisher does not",
        explanation=(
            "On linear regression the Fisher is the Hessian, so the natural-gradient "
            "step from any point lands on the minimum. The empirical Fisher is built "
            "from the residuals of the current fit instead, and its steps are bent "
            "away from the minimum."
        ),
        formula=(
            r"-F^{-1}g = \theta^* - \theta, \qquad \mathrm{EF} = \frac1N\sum_i "
            r"\nabla L_i \nabla L_i^\top \ne F"
        ),
        reference="Kunstner, Balles & Hennig 2019, figure 1",
        problem="linreg_2d",
        problem_options=_LOGNORMAL,
        compute=empirical_fisher.ef_field,
        figures=("vector fields",),
        experiments={
            "GD, NG and EF paths": Experiment(
                "linreg_2d",
                _LOGNORMAL,
                (
                    RuleChoice("sgd", {"lr": 0.1}),
                    RuleChoice("natural_gradient", fixed(0.3, 0.0)),
                    RuleChoice("ef_natural_gradient", fixed(0.3, 1e-8)),
                ),
                {"steps": 20},
            )
        },
        sizes={
            "small": {"damping": 0.0, "resolution": 7, "grid": 30},
            "full": {"damping": 0.0, "resolution": 11, "grid": 100},
        },
    )
)


def _specification_cases(size: int) -> dict:
    return {
        "linear regression, well-specified": (
            "linreg_2d",
            {"data": "well_specified", "num_samples": size},
            True,
        ),
        "linear regression, misspecified": (
            "linreg_2d",
            {"data": "misspecified_model", "num_samples": size},
            False,
        ),
        "logistic regression, well-specified": (
            "logreg_2d",
            {"data": "well_specified", "num_samples": size},
            True,
        ),
        "logistic regression, misspecified": (
            "logreg_2d",
            {"data": "misspecified", "num_samples": size},
            False,
        ),
    }


_add(
    Preset(
        key="c3_ef_specification",
        claim="C3",
        title="At the optimum EF ≈ F only for a well-specified model",
        explanation=(
            "At the minimum the empirical Fisher estimates the Fisher only if the "
            "labels really come from the model. With misspecified data (a missing "
            "quadratic term, classes the model cannot describe) their quadratic "
            "models have different shapes even at the optimum."
        ),
        formula=(
            r"\mathrm{EF}(\theta^*) = \frac1N\sum_i \nabla L_i\nabla L_i^\top "
            r"\;\to\; F(\theta^*) \text{ only if } y \sim R(\cdot\mid f(x;\theta^*))"
        ),
        reference="Kunstner, Balles & Hennig 2019, figure 2; Martens 2020, §11",
        problem="linreg_2d",
        compute=empirical_fisher.ef_specification,
        figures=tuple(_specification_cases(1)),
        sizes={
            "small": {
                "cases": _specification_cases(1000),
                "grid": 30,
                "field_resolution": 6,
            },
            "full": {
                "cases": _specification_cases(1000),
                "grid": 80,
                "field_resolution": 10,
            },
        },
    )
)

_FAR = {"data": "lognormal", "num_samples": 200, "theta0": (-10.0, 10.0)}
_add(
    Preset(
        key="c3_tuned_comparison",
        claim="C3",
        title="Tuned: natural gradient ≫ gradient descent ≥ empirical Fisher",
        explanation=(
            "Each method gets its best learning rate and damping from a grid. "
            "Natural gradient solves the regression in one step, while "
            "empirical-Fisher preconditioning does no better than plain gradient "
            "descent."
        ),
        formula=(
            r"\min_{\mathrm{lr},\,\lambda}\; h(\theta_T) - h(\theta^*), \quad "
            r"\theta_{t+1} = \theta_t - \mathrm{lr}\,(C + \lambda I)^{-1} g_t"
        ),
        reference="Kunstner, Balles & Hennig 2019, figure 3",
        problem="linreg_2d",
        problem_options=_FAR,
        compute=empirical_fisher.tuned_comparison,
        figures=("best-of-grid curves", "lr × damping grid"),
        experiments={
            "best of grid": Experiment(
                "linreg_2d",
                _FAR,
                (
                    RuleChoice("sgd", {"lr": 0.3}),
                    RuleChoice("natural_gradient", fixed(1.0, 1e-4)),
                    RuleChoice("ef_natural_gradient", fixed(100.0, 100.0)),
                ),
                {"steps": 30},
            )
        },
        sizes={
            "small": {
                "run_options": {"steps": 20},
                "gd_lrs": (0.03, 0.1, 0.3),
                "lrs": (0.1, 1.0, 10.0, 100.0),
                "dampings": (1e-4, 1.0, 100.0),
            },
            "full": {
                "gd_lrs": (0.01, 0.03, 0.1, 0.3, 1.0),
                "lrs": (0.01, 0.1, 1.0, 10.0, 100.0),
                "dampings": (1e-4, 1e-2, 1.0, 100.0),
            },
        },
    )
)

_STALL_RULES = (
    ("gradient descent", "sgd", {"lr": 0.3}),
    ("natural gradient", "natural_gradient", fixed(1.0, 0.0)),
    ("empirical Fisher", "ef_natural_gradient", fixed(1.0, 0.0)),
)
_add(
    Preset(
        key="c3_ef_stall",
        claim="C3",
        title="One weight: empirical-Fisher steps stall far from the optimum",
        explanation=(
            "Far from the optimum every residual is large, so the empirical Fisher "
            "grows like the squared distance while the gradient grows only like the "
            "distance. Its steps therefore shrink as 1/distance: the farther away, "
            "the slower it moves."
        ),
        formula=(
            r"g = m_2\,d,\quad \mathrm{EF} \approx m_4\,d^2 \;\Rightarrow\; "
            r"|\delta_{\mathrm{EF}}| \approx \frac{m_2}{m_4\,d}, \quad "
            r"m_k = \frac1N\sum_i x_i^k"
        ),
        reference="Kunstner, Balles & Hennig 2019, §3",
        problem=None,
        compute=empirical_fisher.ef_stall,
        figures=("distance to θ*", "EF step against distance"),
        sizes={
            "small": {
                "num_samples": 100,
                "distance": 100.0,
                "steps": 10,
                "rules": _STALL_RULES,
            },
            "full": {
                "num_samples": 200,
                "distance": 100.0,
                "steps": 30,
                "rules": _STALL_RULES,
            },
        },
    )
)
_add(
    Preset(
        key="c3_mc_fisher",
        claim="C3",
        title="The Monte Carlo Fisher converges to F",
        explanation=(
            "The Fisher is an average over targets drawn from the model, so drawing "
            "k such targets per example gives an unbiased estimate. Its error falls "
            "like one over the square root of k, unlike the empirical Fisher's, which "
            "does not go away."
        ),
        formula=(
            r"\hat F_k = \frac1N\sum_i\frac1k\sum_{s=1}^k J_i^\top u_{is}u_{is}^\top"
            r" J_i,\;\; u_{is} = \nabla_z L(\hat y_{is}, z_i),\;\; "
            r"\|\hat F_k - F\| = O(k^{-1/2})"
        ),
        reference="Martens 2020, §5 and §11; Kunstner, Balles & Hennig 2019",
        problem="moons_mlp",
        problem_options=_MOONS,
        compute=empirical_fisher.mc_fisher,
        figures=("error against samples",),
        sizes={
            "small": {
                "problem_options": _MOONS_SMALL,
                "samples": (1, 4, 16, 64),
                "seeds": (0, 1, 2),
            },
            "full": {"samples": (1, 4, 16, 64, 256), "seeds": tuple(range(8))},
        },
    )
)
