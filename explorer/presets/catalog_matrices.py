"""Presets about curvature matrices at a point: C1, C2, C7 and the quadratic models."""

from __future__ import annotations

from explorer.presets import matrices
from explorer.presets.base import Preset
from explorer.ui.urlstate import Experiment, RuleChoice

CATALOG: list[Preset] = []
_add = CATALOG.append

_MOONS = {"hidden": (8,), "num_samples": 100}
_MOONS_SMALL = {"hidden": (4,), "num_samples": 40}

# ----------------------------------------------------------------------- C1
_add(
    Preset(
        key="c1_fisher_equals_ggn",
        claim="C1",
        title="Fisher = Gauss-Newton for matching losses",
        explanation=(
            "When the network outputs the natural parameter of the likelihood "
            "(Gaussian mean, Bernoulli or softmax logits), averaging over the model's "
            "own predictions gives exactly the Gauss-Newton matrix, so natural "
            "gradient and Gauss-Newton take the same steps. With a non-matching "
            "likelihood, such as a Gaussian whose mean is tanh of the output, the two "
            "matrices differ."
        ),
        formula=(
            r"F = \frac1N\sum_i J_i^\top\, \mathbb{E}_{y\sim R(\cdot\mid z_i)}"
            r"\big[\nabla_z L\,\nabla_z L^\top\big] J_i"
            r" = \frac1N\sum_i J_i^\top \nabla_z^2 L\, J_i = G"
        ),
        reference="Martens 2020, §9; Schraudolph 2002",
        problem="moons_mlp",
        problem_options=_MOONS,
        compute=matrices.fisher_equals_ggn,
        figures=(
            "F and G, matching",
            "F and G, non-matching",
            "natural gradient vs Gauss-Newton",
        ),
        experiments={
            "natural gradient vs Gauss-Newton": Experiment(
                "moons_mlp",
                _MOONS,
                (RuleChoice("natural_gradient"), RuleChoice("gauss_newton")),
                {"steps": 20},
            )
        },
        sizes={
            "small": {
                "problem_options": _MOONS_SMALL,
                "run_options": {"steps": 5},
                "matching": {
                    "Gaussian (linreg_2d)": ("linreg_2d", {"num_samples": 40}),
                    "Bernoulli (logreg_2d)": ("logreg_2d", {"num_samples": 40}),
                    "categorical (moons_mlp)": ("moons_mlp", _MOONS_SMALL),
                },
                "non_matching": {
                    "Gaussian with tanh mean (tiny_tanh)": (
                        "tiny_tanh",
                        {"loss": "gaussian_tanh_mean", "num_samples": 20},
                    ),
                    "Gaussian mean and scale (gaussian_fit)": (
                        "gaussian_fit",
                        {"num_samples": 20},
                    ),
                },
            },
            "full": {
                "matching": {
                    "Gaussian (linreg_2d)": ("linreg_2d", {"num_samples": 200}),
                    "Bernoulli (logreg_2d)": ("logreg_2d", {"num_samples": 200}),
                    "categorical (moons_mlp)": ("moons_mlp", _MOONS),
                },
                "non_matching": {
                    "Gaussian with tanh mean (tiny_tanh)": (
                        "tiny_tanh",
                        {"loss": "gaussian_tanh_mean"},
                    ),
                    "Gaussian mean and scale (gaussian_fit)": ("gaussian_fit", {}),
                },
            },
        },
    )
)

# ----------------------------------------------------------------------- C2
_add(
    Preset(
        key="c2_hessian_ggn_residual",
        claim="C2",
        title="Hessian = GGN + residual; the GGN stays PSD",
        explanation=(
            "The Hessian is the Gauss-Newton matrix plus a term weighted by the "
            "residuals that carries the network's own curvature. That term can make "
            "the Hessian indefinite, while the Gauss-Newton matrix of a convex loss "
            "never has a negative eigenvalue."
        ),
        formula=(
            r"H = G + \frac1N\sum_i\sum_c \big[\nabla_z L(y_i, z_i)\big]_c\,"
            r"\nabla^2_\theta z_{i,c}, \qquad G \succeq 0"
        ),
        reference="Schraudolph 2002; Martens 2020, §8",
        problem="moons_mlp",
        problem_options=_MOONS,
        compute=matrices.hessian_ggn_residual,
        figures=("spectra of H and G", "H, G and the residual"),
        sizes={"small": {"problem_options": _MOONS_SMALL}},
    )
)
_add(
    Preset(
        key="c2_interpolation",
        claim="C2",
        title="Hessian = GGN at an interpolating solution",
        explanation=(
            "The residual term is weighted by how wrong each prediction is. Where the "
            "model fits every example exactly, the weights are zero and the Hessian "
            "equals the Gauss-Newton matrix."
        ),
        formula=(
            r"\nabla_z L(y_i, z_i) = 0 \;\;\forall i \quad\Longrightarrow\quad H = G"
        ),
        reference="Martens 2020, §8; Schraudolph 2002",
        problem="tiny_tanh",
        problem_options={"noise": 0.0},
        compute=matrices.interpolation,
        figures=("‖H − G‖ along the way to θ*", "spectra at θ₀ and θ*"),
        sizes={
            "small": {"solution": (1.5, 1.0), "points": 8},
            "full": {"solution": (1.5, 1.0), "points": 25},
        },
    )
)

# ----------------------------------------------------------------------- QM
_add(
    Preset(
        key="quadratic_models",
        claim="QM",
        title="Quadratic models: G bounded below, H not",
        explanation=(
            "Second-order methods jump to the minimum of a local quadratic model of "
            "the loss. The Gauss-Newton model is the loss of the linearized network, "
            "so it always has a minimum; where the Hessian has negative curvature, "
            "its model is a saddle that promises an unbounded decrease."
        ),
        formula=(
            r"M_C(\delta) = h + g^\top\delta + \tfrac12\,\delta^\top C\,\delta,"
            r"\qquad M_G(\delta) = \frac{1}{2N}\sum_i \|r_i + J_i\delta\|^2 \ge 0"
        ),
        reference="Martens 2020, §8; Martens 2010",
        problem="tiny_tanh",
        compute=matrices.quadratic_model_bounds,
        figures=("models on the landscape", "slice along v_min"),
        sizes={
            "small": {"point": (1.25, -2.5), "distance": 3.0, "resolution": 30},
            "full": {"point": (1.25, -2.5), "distance": 3.0, "resolution": 80},
        },
    )
)

# ----------------------------------------------------------------------- C7
_NETWORK = {"width": 6, "inputs": 5, "outputs": 3, "num_samples": 64}
_NETWORK_SMALL = {**_NETWORK, "num_samples": 32}
_add(
    Preset(
        key="c7_kfac_exact",
        claim="C7",
        title="K-FAC is exact for one linear layer with a Gaussian output",
        explanation=(
            "For a single linear layer with a Gaussian output the Fisher is the "
            "input second moments times a constant output precision: exactly a "
            "Kronecker product, so K-FAC loses nothing. A softmax output makes the "
            "output factor depend on the example and K-FAC becomes approximate."
        ),
        formula=(
            r"F = \frac1N\sum_i \bar a_i\bar a_i^\top \otimes \frac{I}{\sigma^2} = "
            r"A \otimes S"
        ),
        reference="Martens & Grosse 2015, §3",
        problem=None,
        compute=matrices.kfac_exact,
        figures=("K-FAC and F", "K − F"),
        sizes={
            "small": {"network": _NETWORK_SMALL, "damping": 1e-3},
            "full": {"network": _NETWORK, "damping": 1e-3},
        },
    )
)
_add(
    Preset(
        key="c7_kfac_depth",
        claim="C7",
        title="K-FAC's error grows with depth and for cross-entropy",
        explanation=(
            "With hidden layers K-FAC drops the correlations between layers and "
            "assumes inputs and back-propagated signals are independent. Its error "
            "against the exact Fisher becomes measurable, and its damped step turns "
            "away from the natural gradient's."
        ),
        formula=(
            r"F \approx \mathrm{blockdiag}_l\,(A_l \otimes S_l), \quad "
            r"A_l = \mathbb{E}[\bar a_l \bar a_l^\top],\; "
            r"S_l = \mathbb{E}[\delta_l\delta_l^\top]"
        ),
        reference="Martens & Grosse 2015",
        problem=None,
        compute=matrices.kfac_depth,
        figures=("error against depth", "step cosine against depth"),
        sizes={
            "small": {
                "network": _NETWORK_SMALL,
                "depths": (1, 2, 3),
                "damping": 1e-3,
            },
            "full": {"network": _NETWORK, "depths": (1, 2, 3, 4), "damping": 1e-3},
        },
    )
)
