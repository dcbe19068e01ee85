r"""``heteroscedastic_1d``: a tanh MLP predicting a mean and a log-variance.

Targets y = sin(x) + σ(x)·ε with noise that grows with |x|,
σ(x) = ``noise``·(0.2 + |x|), x ~ U(−3, 3), ε ~ N(0, 1). A 1-H-2 tanh MLP outputs
z = (μ(x), s(x)) with s = log σ², fitted by the Gaussian NLL
½(s + (y − μ)² e^{−s}) (:class:`GaussianHeteroscedasticLoss`).

The smallest network where the place one splits network and loss matters (Martens 2020,
section 9): (μ, log σ²) is not the Gaussian's natural parameter, so the Fisher
differs from the GGN, and the output Hessian [[v, r v], [r v, ½ r² v]]
(r = y − μ, v = e^{−s}) has determinant −½ r² v² < 0 wherever y ≠ μ, so the GGN,
unlike the Fisher, can have negative eigenvalues.
"""

from __future__ import annotations

from typing import Any

import torch

from explorer.options import Option
from explorer.problems.base import Problem, problem_from_model
from explorer.problems.likelihoods import GaussianHeteroscedasticLoss
from explorer.problems.models import init_uniform, mlp, mlp_num_params
from explorer.problems.networks import split, test_fraction_option
from explorer.problems.spec import BuildContext, ProblemSpec, TinyCase

#: Inputs are drawn uniformly from [−X_RANGE, X_RANGE].
X_RANGE = 3.0
#: The noise's standard deviation at x = 0, in units of ``noise``: it keeps the
#: variance away from zero, where the likelihood would be unbounded.
NOISE_FLOOR = 0.2


def noise_std(x: torch.Tensor, noise: float) -> torch.Tensor:
    """σ(x) = noise·(0.2 + |x|), the true standard deviation of y given x."""
    return noise * (NOISE_FLOOR + x.abs())


def build_heteroscedastic_1d(options: dict[str, Any], context: BuildContext) -> Problem:
    n = options["num_samples"]
    # drawn on the CPU in float64, then moved: a seed means the same data everywhere
    draw = torch.rand(n, 1, generator=context.generator, dtype=torch.float64)
    x = (2 * draw - 1) * X_RANGE
    eps = torch.randn(n, 1, generator=context.generator, dtype=torch.float64)
    y = torch.sin(x) + noise_std(x, options["noise"]) * eps
    train, test = split(n, options["test_fraction"], context.generator)
    if len(train) < 2:
        raise ValueError(
            f"num_samples = {n} with test_fraction = {options['test_fraction']:g} "
            f"leaves {len(train)} training example(s); at least 2 are needed"
        )
    hidden = options["hidden"]
    model = mlp((1, hidden, 2), "tanh").double()
    init_uniform(model, context.generator)
    return problem_from_model(
        model,
        context.dtype,
        context.device,
        key="heteroscedastic_1d",
        label=f"Heteroscedastic 1-D regression, MLP 1-{hidden}-2 (μ, log σ²)",
        loss=GaussianHeteroscedasticLoss(1),
        **context.data_fields(x, y, train, test),
        options=options,
        description=HETEROSCEDASTIC_1D.description,
    )


HETEROSCEDASTIC_1D = ProblemSpec(
    key="heteroscedastic_1d",
    label="Heteroscedastic regression (mean and variance)",
    architecture="MLP 1-16-2, tanh, outputs (μ, log σ²)",
    build=build_heteroscedastic_1d,
    count_params=lambda options: mlp_num_params((1, options["hidden"], 2)),
    options=(
        Option(
            "num_samples", 200, "Number of points (train + test).", low=8, high=100_000
        ),
        Option(
            "hidden",
            16,
            "Width H of the one hidden layer of the 1-H-2 tanh MLP.",
            low=1,
            high=4096,
        ),
        Option(
            "noise",
            0.15,
            "Noise scale c: y = sin(x) + c·(0.2 + |x|)·ε, so the standard deviation "
            "grows with |x|.",
            low=1e-3,
            high=10.0,
        ),
        test_fraction_option(0.2),
    ),
    description=(
        "y = sin(x) + noise whose standard deviation grows with |x|, fitted by a "
        "small tanh MLP that outputs a mean μ(x) and a log-variance s(x) = log σ²(x), "
        "with the Gaussian NLL ½(s + (y − μ)²·e^(−s)) (½log 2π dropped), mean over "
        "examples. (μ, log σ²) is not the Gaussian's natural parameter, so the "
        "Fisher (diag(e^(−s), ½) in the outputs, always PSD) differs from the GGN; "
        "the output Hessian has determinant −½(y − μ)²e^(−2s) < 0 wherever y ≠ μ, "
        "so the GGN can have negative eigenvalues: how the model is split into "
        "network and loss decides what Gauss-Newton means (Martens 2020, §9)."
    ),
    group="networks",
    tags=frozenset({"regression"}),
    test_cases=(TinyCase("heteroscedastic", {"num_samples": 40, "hidden": 4}),),
)
