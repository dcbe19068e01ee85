"""Presets for C3: the empirical Fisher is not the Fisher (Kunstner et al. 2019)."""

from __future__ import annotations

from explorer.presets import empirical_fisher
from explorer.presets.base import Catalog, Comparison
from explorer.presets.helpers import MOONS, MOONS_SMALL, fixed
from explorer.runs import RuleChoice

CATALOG = Catalog(
    r"""
## Natural gradient points at the minimum, the empirical Fisher does not
`c3_ef_field` · C3

On linear regression the Fisher is the Hessian, so the natural-gradient step from
any point lands on the minimum. The empirical Fisher is built from the residuals of
the current fit instead, and its steps are bent away from the minimum.

$$
-F^{-1}g = \theta^* - \theta, \qquad \mathrm{EF} = \frac1N\sum_i \nabla L_i \nabla
L_i^\top \ne F
$$

Reference: Kunstner, Balles & Hennig 2019, figure 1

## At the optimum EF ≈ F only for a well-specified model
`c3_ef_specification` · C3

At the minimum the empirical Fisher estimates the Fisher only if the labels really
come from the model. With misspecified data (a missing quadratic term, classes the
model cannot describe) their quadratic models have different shapes even at the
optimum.

$$
\mathrm{EF}(\theta^*) = \frac1N\sum_i \nabla L_i\nabla L_i^\top \;\to\; F(\theta^*)
\text{ only if } y \sim R(\cdot\mid f(x;\theta^*))
$$

Reference: Kunstner, Balles & Hennig 2019, figure 2; Martens 2020, §11

## Tuned: natural gradient ≫ gradient descent ≥ empirical Fisher
`c3_tuned_comparison` · C3

Each method gets its best learning rate and damping from a grid. Natural gradient
solves the regression in one step, while empirical-Fisher preconditioning does no
better than plain gradient descent.

$$
\min_{\mathrm{lr},\,\lambda}\; h(\theta_T) - h(\theta^*), \quad \theta_{t+1} =
\theta_t - \mathrm{lr}\,(C + \lambda I)^{-1} g_t
$$

Reference: Kunstner, Balles & Hennig 2019, figure 3

## One weight: empirical-Fisher steps stall far from the optimum
`c3_ef_stall` · C3

Far from the optimum every residual is large, so the empirical Fisher grows like the
squared distance while the gradient grows only like the distance. Its steps
therefore shrink as 1/distance: the farther away, the slower it moves.

$$
g = m_2\,d,\quad \mathrm{EF} \approx m_4\,d^2 \;\Rightarrow\; |\delta_{\mathrm{EF}}|
\approx \frac{m_2}{m_4\,d}, \quad m_k = \frac1N\sum_i x_i^k
$$

Reference: Kunstner, Balles & Hennig 2019, §3

## The Monte Carlo Fisher converges to F
`c3_mc_fisher` · C3

The Fisher is an average over targets drawn from the model, so drawing k such
targets per example gives an unbiased estimate. Its error falls like one over the
square root of k, unlike the empirical Fisher's, which does not go away.

$$
\hat F_k = \frac1N\sum_i\frac1k\sum_{s=1}^k J_i^\top u_{is}u_{is}^\top J_i,\;\;
u_{is} = \nabla_z L(\hat y_{is}, z_i),\;\; \|\hat F_k - F\| = O(k^{-1/2})
$$

Reference: Martens 2020, §5 and §11; Kunstner, Balles & Hennig 2019
"""
)


def _three_ways(*, gd: float, ng: tuple, ef: tuple, steps: int) -> Comparison:
    """Gradient descent (its lr), natural gradient and the empirical Fisher (their
    (lr, λ), λ fixed) for ``steps`` steps.
    """
    return Comparison(
        (
            RuleChoice("sgd", {"lr": gd}),
            RuleChoice("natural_gradient", fixed(*ng)),
            RuleChoice("ef_natural_gradient", fixed(*ef)),
        ),
        {"steps": steps},
    )


CATALOG.add(
    "c3_ef_field",
    empirical_fisher.EF_FIELD,
    problem="linreg_2d",
    problem_options={"data": "lognormal", "num_samples": 500},
    experiments={
        "GD, NG and EF paths": _three_ways(
            gd=0.1, ng=(0.3, 0.0), ef=(0.3, 1e-8), steps=20
        )
    },
    sizes={
        "small": {"resolution": 7, "grid": 30},
        "full": {"resolution": 11, "grid": 100},
    },
    params={"damping": 0.0},
)
CATALOG.add(
    "c3_ef_specification",
    empirical_fisher.EF_SPECIFICATION,
    problem="linreg_2d",
    sizes={
        "small": {"grid": 30, "field_resolution": 6},
        "full": {"grid": 80, "field_resolution": 10},
    },
    params={"cases": empirical_fisher.specification_cases(1000)},
)
CATALOG.add(
    "c3_tuned_comparison",
    empirical_fisher.TUNED_COMPARISON,
    problem="linreg_2d",
    problem_options={"data": "lognormal", "num_samples": 200, "theta0": (-10.0, 10.0)},
    experiments={
        "best of grid": _three_ways(gd=0.3, ng=(1.0, 1e-4), ef=(100.0, 100.0), steps=30)
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
CATALOG.add(
    "c3_ef_stall",
    empirical_fisher.EF_STALL,
    problem=None,
    sizes={
        "small": {"num_samples": 100, "steps": 10},
        "full": {"num_samples": 200, "steps": 30},
    },
    params={
        "distance": 100.0,
        "rules": (
            ("gradient descent", "sgd", {"lr": 0.3}),
            ("natural gradient", "natural_gradient", fixed(1.0, 0.0)),
            ("empirical Fisher", "ef_natural_gradient", fixed(1.0, 0.0)),
        ),
    },
)
CATALOG.add(
    "c3_mc_fisher",
    empirical_fisher.MC_FISHER,
    problem="moons_mlp",
    problem_options=MOONS,
    sizes={
        "small": {
            "problem_options": MOONS_SMALL,
            "samples": (1, 4, 16, 64),
            "seeds": (0, 1, 2),
        },
        "full": {"samples": (1, 4, 16, 64, 256), "seeds": tuple(range(8))},
    },
)
