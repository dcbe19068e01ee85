"""Presets about curvature matrices at a point: C1, C2, C7 and the quadratic models."""

from __future__ import annotations

from explorer.presets import matrices
from explorer.presets.base import Catalog, Comparison
from explorer.presets.helpers import MOONS, MOONS_SMALL
from explorer.runs import RuleChoice

CATALOG = Catalog(
    r"""
## Fisher = Gauss-Newton for matching losses
`c1_fisher_equals_ggn` · C1

When the network outputs the natural parameter of the likelihood (Gaussian mean,
Bernoulli or softmax logits), averaging over the model's own predictions gives
exactly the Gauss-Newton matrix, so natural gradient and Gauss-Newton take the same
steps. With a non-matching likelihood, such as a Gaussian whose mean is tanh of the
output, the two matrices differ.

$$
F = \frac1N\sum_i J_i^\top\, \mathbb{E}_{y\sim R(\cdot\mid z_i)}\big[\nabla_z
L\,\nabla_z L^\top\big] J_i = \frac1N\sum_i J_i^\top \nabla_z^2 L\, J_i = G
$$

Reference: Martens 2020, §9; Schraudolph 2002

## Hessian = GGN + residual; the GGN stays PSD
`c2_hessian_ggn_residual` · C2

The Hessian is the Gauss-Newton matrix plus a term weighted by the residuals that
carries the network's own curvature. That term can make the Hessian indefinite,
while the Gauss-Newton matrix of a convex loss never has a negative eigenvalue.

$$
H = G + \frac1N\sum_i\sum_c \big[\nabla_z L(y_i, z_i)\big]_c\,\nabla^2_\theta
z_{i,c}, \qquad G \succeq 0
$$

Reference: Schraudolph 2002; Martens 2020, §8

## Hessian = GGN at an interpolating solution
`c2_interpolation` · C2

The residual term is weighted by how wrong each prediction is. Where the model fits
every example exactly, the weights are zero and the Hessian equals the Gauss-Newton
matrix.

$$
\nabla_z L(y_i, z_i) = 0 \;\;\forall i \quad\Longrightarrow\quad H = G
$$

Reference: Martens 2020, §8; Schraudolph 2002

## Quadratic models: G bounded below, H not
`quadratic_models` · QM

Second-order methods jump to the minimum of a local quadratic model of the loss. The
Gauss-Newton model is the loss of the linearized network, so it always has a
minimum; where the Hessian has negative curvature, its model is a saddle that
promises an unbounded decrease.

$$
M_C(\delta) = h + g^\top\delta + \tfrac12\,\delta^\top C\,\delta,\qquad M_G(\delta)
= \frac{1}{2N}\sum_i \|r_i + J_i\delta\|^2 \ge 0
$$

Reference: Martens 2020, §8; Martens 2010

## K-FAC is exact for one linear layer with a Gaussian output
`c7_kfac_exact` · C7

For a single linear layer with a Gaussian output the Fisher is the input second
moments times a constant output precision: exactly a Kronecker product, so K-FAC
loses nothing. A softmax output makes the output factor depend on the example and
K-FAC becomes approximate.

$$
F = \frac1N\sum_i \bar a_i\bar a_i^\top \otimes \frac{I}{\sigma^2} = A \otimes S
$$

Reference: Martens & Grosse 2015, §3

## K-FAC's error grows with depth and for cross-entropy
`c7_kfac_depth` · C7

With hidden layers K-FAC drops the correlations between layers and assumes inputs
and back-propagated signals are independent. Its error against the exact Fisher
becomes measurable, and its damped step turns away from the natural gradient's.

$$
F \approx \mathrm{blockdiag}_l\,(A_l \otimes S_l), \quad A_l = \mathbb{E}[\bar a_l
\bar a_l^\top],\; S_l = \mathbb{E}[\delta_l\delta_l^\top]
$$

Reference: Martens & Grosse 2015
"""
)


def _likelihoods(samples: int, moons: dict, few: int | None) -> dict:
    """C1's problems: matching likelihoods, and non-matching ones (``few``: their
    number of samples, None for the default).
    """
    fewer = {} if few is None else {"num_samples": few}
    return {
        "matching": {
            "Gaussian (linreg_2d)": ("linreg_2d", {"num_samples": samples}),
            "Bernoulli (logreg_2d)": ("logreg_2d", {"num_samples": samples}),
            "categorical (moons_mlp)": ("moons_mlp", moons),
        },
        "non_matching": {
            "Gaussian with tanh mean (tiny_tanh)": (
                "tiny_tanh",
                {"loss": "gaussian_tanh_mean", **fewer},
            ),
            "Gaussian mean and scale (gaussian_fit)": ("gaussian_fit", fewer),
        },
    }


CATALOG.add(
    "c1_fisher_equals_ggn",
    matrices.FISHER_EQUALS_GGN,
    problem="moons_mlp",
    problem_options=MOONS,
    experiments={
        "natural gradient vs Gauss-Newton": Comparison(
            (RuleChoice("natural_gradient"), RuleChoice("gauss_newton")),
            {"steps": 20},
        )
    },
    sizes={
        "small": {
            "problem_options": MOONS_SMALL,
            "run_options": {"steps": 5},
            **_likelihoods(40, MOONS_SMALL, few=20),
        },
        "full": _likelihoods(200, MOONS, few=None),
    },
)
CATALOG.add(
    "c2_hessian_ggn_residual",
    matrices.HESSIAN_GGN_RESIDUAL,
    problem="moons_mlp",
    problem_options=MOONS,
    sizes={"small": {"problem_options": MOONS_SMALL}},
)
CATALOG.add(
    "c2_interpolation",
    matrices.INTERPOLATION,
    problem="tiny_tanh",
    problem_options={"noise": 0.0},
    sizes={"small": {"points": 8}, "full": {"points": 25}},
    params={"solution": (1.5, 1.0)},
)
CATALOG.add(
    "quadratic_models",
    matrices.QUADRATIC_MODELS,
    problem="tiny_tanh",
    sizes={"small": {"resolution": 30}, "full": {"resolution": 80}},
    params={"point": (1.25, -2.5), "distance": 3.0},
)

#: The student networks of C7 at each size (their depth varies).
_NETWORK = {"width": 6, "inputs": 5, "outputs": 3, "num_samples": 64}
_NETWORKS = {"small": {**_NETWORK, "num_samples": 32}, "full": _NETWORK}
CATALOG.add(
    "c7_kfac_exact",
    matrices.KFAC_EXACT,
    problem=None,
    sizes={size: {"network": network} for size, network in _NETWORKS.items()},
    params={"damping": 1e-3},
)
CATALOG.add(
    "c7_kfac_depth",
    matrices.KFAC_DEPTH,
    problem=None,
    sizes={
        "small": {"network": _NETWORKS["small"], "depths": (1, 2, 3)},
        "full": {"network": _NETWORKS["full"], "depths": (1, 2, 3, 4)},
    },
    params={"damping": 1e-3},
)
