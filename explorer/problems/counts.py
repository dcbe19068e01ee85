"""``poisson_2d``: Poisson regression of counts on two weights, log or softplus link.

The smallest model where the choice of link decides whether natural gradient and
Gauss-Newton agree: with the log link the outputs are the Poisson's natural
parameter, so F = G (claim C1); with the softplus link they are not, and the GGN
(built from the output Hessian, which depends on the counts) differs from the
Fisher. The counts are drawn from the model itself at known weights θ*, so the
model is well specified.
"""

from __future__ import annotations

from typing import Any

import torch

from explorer.options import Option
from explorer.problems.base import Problem, problem_from_model
from explorer.problems.likelihoods import PoissonLoss
from explorer.problems.models import mlp
from explorer.problems.spec import (
    BuildContext,
    ProblemSpec,
    TinyCase,
    check_length,
    theta0_option,
)


def build_poisson_2d(options: dict[str, Any], context: BuildContext) -> Problem:
    check_length(options["theta0"], 2, "theta0")
    check_length(options["true_theta"], 2, "true_theta")
    loss = PoissonLoss(1, link=options["link"])
    n = options["num_samples"]
    # correlated inputs, as in linreg_2d, so the Fisher is not diagonal
    root = torch.tensor([[1.0, 0.0], [0.6, 0.8]], dtype=torch.float64)
    x = torch.randn(n, 2, generator=context.generator, dtype=torch.float64) @ root.T
    theta_star = torch.tensor(options["true_theta"], dtype=torch.float64)
    rate = loss.rate((x @ theta_star).unsqueeze(1))
    y = torch.poisson(rate, generator=context.generator)
    model = mlp((2, 1), bias=False).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([options["theta0"]], dtype=torch.float64))
    return problem_from_model(
        model,
        context.dtype,
        context.device,
        key="poisson_2d",
        label=f"Poisson regression, 2 weights ({options['link']} link)",
        loss=loss,
        inputs=context.tensor(x),
        targets=context.tensor(y),
        options=options,
        description=POISSON_2D.description,
        theta_star=context.tensor(theta_star),
        coordinate_names=("θ₁", "θ₂"),
        view_box=((-2.5, 2.5), (-2.5, 2.5)),
    )


POISSON_2D = ProblemSpec(
    key="poisson_2d",
    label="Poisson regression (2 weights)",
    architecture="Poisson GLM, 2 weights",
    build=build_poisson_2d,
    count_params=lambda options: 2,
    options=(
        Option(
            "link",
            "log",
            "Rate λ(z): 'log' (λ = exp z, the natural parameter: F = G) or "
            "'softplus' (λ = log(1 + eᶻ): F ≠ G).",
            choices=PoissonLoss.links,
        ),
        Option("num_samples", 500, "Number of examples N.", low=2, high=1_000_000),
        theta0_option((-1.5, 1.5), "Starting weights (θ₁, θ₂)."),
        Option(
            "true_theta",
            (0.8, -0.4),
            "The weights θ* the counts are drawn with.",
            kind="floats",
            low=-5.0,
            high=5.0,
        ),
    ),
    description=(
        "Counts y ~ Poisson(λ(θᵀx)) on two correlated inputs, fitted by the Poisson "
        "NLL λ − y·log λ (log y! dropped), mean over examples. With the log link "
        "the Fisher equals the GGN and the Hessian; with the softplus link the GGN "
        "depends on the counts and differs from the Fisher."
    ),
    group="toys",
    tags=frozenset({"two_param", "regression", "counts"}),
    test_cases=(
        TinyCase("poisson_log", {"num_samples": 40}),
        TinyCase("poisson_softplus", {"num_samples": 40, "link": "softplus"}),
    ),
)
