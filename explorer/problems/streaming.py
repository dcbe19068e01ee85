"""``stream_logreg``: well-specified logistic regression with fresh samples each step.

The setting of claim C6 (Fisher efficiency): x ~ N(0, Σ) with Σ_ij = ρ^|i−j|,
y ~ Bernoulli(sigmoid(θ*ᵀx)) with θ* known. ``inputs``/``targets`` hold a large fixed
evaluation sample so ``objective(θ) − objective(θ*)`` estimates the excess loss.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from explorer.options import Option
from explorer.problems.base import Batch, Problem, problem_from_model
from explorer.problems.likelihoods import BernoulliLoss
from explorer.problems.models import mlp
from explorer.problems.spec import BuildContext, ProblemSpec, TinyCase

#: The most values (eval_size × dim) the fixed evaluation sample may hold: 20 M
#: floats, 160 MB in float64 (2,000,000 × 10,000 would be 160 GB).
MAX_EVAL_VALUES = 20_000_000


def stream_num_params(options: dict[str, Any]) -> int:
    """P = d, after refusing an evaluation sample above :data:`MAX_EVAL_VALUES`
    (checked here, before anything is drawn, and again by the builder).

    Raises:
        ValueError: ``eval_size × dim`` is above :data:`MAX_EVAL_VALUES`.
    """
    dim, size = options["dim"], options["eval_size"]
    if dim * size > MAX_EVAL_VALUES:
        raise ValueError(
            f"problem 'stream_logreg': eval_size × dim = {size:,} × {dim:,} = "
            f"{size * dim:,} values, above the limit of {MAX_EVAL_VALUES:,}; lower "
            "eval_size or dim"
        )
    return dim


def _covariance_root(dim: int, correlation: float) -> Tensor:
    index = torch.arange(dim, dtype=torch.float64)
    covariance = correlation ** (index[:, None] - index[None, :]).abs()
    return torch.linalg.cholesky(covariance)


def build_stream_logreg(options: dict[str, Any], context: BuildContext) -> Problem:
    dim = stream_num_params(options)  # refuses a too large sample before drawing
    root = _covariance_root(dim, options["input_correlation"])
    theta_star = (
        options["signal"]
        / math.sqrt(dim)
        * torch.randn(dim, generator=context.generator, dtype=torch.float64)
    )

    def draw(size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x = torch.randn(size, dim, generator=generator, dtype=torch.float64) @ root.T
        p = torch.sigmoid(x @ theta_star)
        y = (torch.rand(size, generator=generator, dtype=torch.float64) < p).double()
        return x, y.unsqueeze(1)

    def stream(size: int, generator: torch.Generator) -> Batch:
        x, y = draw(size, generator)
        return Batch(context.tensor(x), context.tensor(y))

    eval_x, eval_y = draw(options["eval_size"], context.generator)
    model = mlp((dim, 1), bias=False).double()
    with torch.no_grad():
        model[0].weight.zero_()
    return problem_from_model(
        model,
        context.dtype,
        context.device,
        key="stream_logreg",
        label=f"Streaming logistic regression, d = {dim}",
        loss=BernoulliLoss(1),
        inputs=context.tensor(eval_x),
        targets=context.tensor(eval_y),
        options=options,
        description=STREAM_LOGREG.description,
        stream_fn=stream,
        theta_star=context.tensor(theta_star),
        coordinate_names=("θ₁", "θ₂") if dim == 2 else None,
        view_box=((-3.0, 3.0), (-3.0, 3.0)) if dim == 2 else None,
    )


STREAM_LOGREG = ProblemSpec(
    key="stream_logreg",
    label="Streaming logistic regression",
    architecture="logistic regression on fresh samples",
    build=build_stream_logreg,
    count_params=stream_num_params,  # d weights, no bias
    options=(
        Option("dim", 5, "Dimension d = P of x and θ.", low=1, high=10_000),
        Option(
            "input_correlation",
            0.5,
            "ρ in Σ_ij = ρ^|i−j|: larger values make the Fisher ill-conditioned.",
            low=0.0,
            high=0.99,
        ),
        Option(
            "signal",
            2.0,
            "‖θ*‖ scale: larger means more confident labels.",
            low=0.0,
            high=20.0,
        ),
        Option(
            "eval_size",
            50_000,
            "Size of the fixed sample on which the population loss is estimated "
            "(eval_size × dim at most 20,000,000).",
            low=100,
            high=2_000_000,
        ),
    ),
    description=(
        "A well-specified logistic regression with known θ* that draws fresh samples "
        "every step. With k samples seen, the best possible excess loss is about "
        "P/(2k) (Fisher efficiency): natural gradient and averaged SGD both reach it."
    ),
    group="toys",
    tags=frozenset({"classification", "streaming"}),
    # 100 fresh samples per step. With one sample a step, the curvature rules at
    # lr = 1 fit each sample's noise (the rank-one Fisher is nearly singular and LM
    # lowers λ on a one-example batch): their population loss climbs from 0.69 to
    # 18–61 while SGD's falls. Fisher efficiency at batch size 1 needs a decaying
    # step or iterate averaging (the C6 tour presets).
    run_defaults={"batch_size": 100},
    # 20 fresh samples per step in runs; curvature tests use the evaluation sample.
    test_cases=(TinyCase("stream", {"dim": 3, "eval_size": 200}, batch_size=20),),
)
