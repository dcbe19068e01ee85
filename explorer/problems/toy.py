"""Two-parameter problems: the pictures where every curvature can be seen.

``gaussian_fit`` (reparameterization invariance), ``linreg_2d`` and ``logreg_2d``
(the empirical-Fisher figures of Kunstner, Balles & Hennig 2019), ``tiny_tanh``
(non-convex, Hessian indefinite in places) and ``rosenbrock`` (as a Gaussian
least-squares problem so GGN and Fisher exist).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from explorer.options import Option
from explorer.problems.base import Problem, problem_from_model
from explorer.problems.likelihoods import (
    BernoulliLoss,
    GaussianLoss,
    GaussianMeanScaleLoss,
)
from explorer.problems.models import mlp
from explorer.problems.spec import (
    BuildContext,
    ProblemSpec,
    TinyCase,
    check_length,
    loss_option,
    regression_loss,
    sigma_option,
    theta0_option,
)


def _randn(context: BuildContext, *shape: int) -> Tensor:
    return torch.randn(*shape, generator=context.generator, dtype=torch.float64)


def _set_theta(model: nn.Module, values: tuple[float, ...]) -> nn.Module:
    with torch.no_grad():
        flat = torch.tensor(values, dtype=torch.float64)
        offset = 0
        for param in model.parameters():
            param.copy_(flat[offset : offset + param.numel()].view(param.shape))
            offset += param.numel()
    return model


# --------------------------------------------------------------- gaussian_fit
def build_gaussian_fit(options: dict[str, Any], context: BuildContext) -> Problem:
    parameterization = options["parameterization"]
    n = options["num_samples"]
    samples = options["true_mean"] + options["true_sigma"] * _randn(context, n, 1)
    start_sigma = options["start_sigma"]
    scale = math.log(start_sigma) if parameterization == "log_sigma" else start_sigma
    theta0 = context.tensor([options["start_mean"], scale])
    scale_name = "log σ" if parameterization == "log_sigma" else "σ"

    def predict(theta: Tensor, inputs: Tensor) -> Tensor:
        return theta.unsqueeze(0).expand(inputs.shape[0], 2)

    box = ((-3.0, 4.0), (-2.5, 2.0) if parameterization == "log_sigma" else (0.1, 5.0))
    return Problem(
        key="gaussian_fit",
        label=f"Gaussian fit in (μ, {scale_name})",
        loss=GaussianMeanScaleLoss(parameterization),
        theta0=theta0,
        inputs=context.tensor(torch.zeros(n, 1)),
        targets=context.tensor(samples),
        predict_fn=predict,
        param_names=("mu", "log_sigma" if parameterization == "log_sigma" else "sigma"),
        param_shapes=((1,), (1,)),
        options=options,
        description=GAUSSIAN_FIT.description,
        coordinate_names=("μ", scale_name),
        view_box=box,
    )


GAUSSIAN_FIT = ProblemSpec(
    key="gaussian_fit",
    label="Gaussian fit (μ, σ)",
    architecture="two parameters (μ, σ) of a Gaussian",
    build=build_gaussian_fit,
    count_params=lambda options: 2,
    options=(
        Option(
            "parameterization",
            "sigma",
            "Coordinates of the scale: 'sigma' (σ itself) or 'log_sigma' (log σ). "
            "Natural gradient is invariant to this choice in the small-step limit.",
            choices=("sigma", "log_sigma"),
        ),
        Option("num_samples", 200, "Number of samples y_i.", low=2, high=100_000),
        Option(
            "true_mean",
            1.0,
            "Mean of the data-generating Gaussian.",
            low=-100,
            high=100,
        ),
        Option(
            "true_sigma",
            1.5,
            "Std. dev. of the data-generating Gaussian.",
            low=1e-3,
            high=100,
        ),
        Option("start_mean", -1.5, "Starting μ.", low=-100, high=100),
        Option(
            "start_sigma",
            0.4,
            "Starting σ (given as σ in both parameterizations, so runs start at the "
            "same distribution).",
            low=1e-3,
            high=100,
        ),
    ),
    description=(
        "Fit the mean μ and scale σ of a 1-D Gaussian to samples by maximum "
        "likelihood, h = mean_i (y_i − μ)²/(2σ²) + log σ. Two parameters, so the "
        "Fisher diag(1/σ², 2/σ²) can be drawn; the (μ, log σ) parameterization shows "
        "natural gradient's reparameterization invariance."
    ),
    group="toys",
    tags=frozenset({"two_param", "regression"}),
    test_cases=(
        # σ stays positive under the small perturbation
        TinyCase("gaussian_fit_sigma", {"num_samples": 30}, perturbation=0.05),
        TinyCase(
            "gaussian_fit_log", {"num_samples": 30, "parameterization": "log_sigma"}
        ),
    ),
)


# ------------------------------------------------------------------ linreg_2d
LINREG_DATA = (
    "lognormal",
    "well_specified",
    "misspecified_noise",
    "misspecified_model",
)


def _linreg_data(kind: str, n: int, context: BuildContext) -> tuple[Tensor, Tensor]:
    """Inputs [1, x] and targets, following Kunstner et al. (2019), section 3."""
    if kind == "lognormal":
        feature = (0.75 * _randn(context, n, 1)).exp()
        inputs = torch.cat([torch.ones(n, 1, dtype=torch.float64), feature], 1)
        targets = inputs @ torch.tensor([[2.0], [2.0]], dtype=torch.float64)
        return inputs, targets + _randn(context, n, 1)
    feature = _randn(context, n, 1)
    inputs = torch.cat([torch.ones(n, 1, dtype=torch.float64), feature], 1)
    targets = inputs @ torch.tensor([[1.0], [1.0]], dtype=torch.float64)
    noise = _randn(context, n, 1)
    if kind == "misspecified_noise":
        return inputs, targets + 2.0 * noise
    if kind == "misspecified_model":
        return inputs, targets + 0.5 * feature**2 + noise
    return inputs, targets + noise


def build_linreg_2d(options: dict[str, Any], context: BuildContext) -> Problem:
    check_length(options["theta0"], 2, "theta0")
    inputs, targets = _linreg_data(options["data"], options["num_samples"], context)
    model = _set_theta(mlp((2, 1), bias=False).double(), options["theta0"])
    box = (
        ((-1.0, 5.0), (-1.0, 5.0))
        if options["data"] == "lognormal"
        else (
            (-1.5, 3.5),
            (-1.5, 3.5),
        )
    )
    return problem_from_model(
        model,
        context.dtype,
        context.device,
        key="linreg_2d",
        label="Linear regression, 2 weights",
        loss=regression_loss(options["loss"], 1, options["sigma"]),
        inputs=context.tensor(inputs),
        targets=context.tensor(targets),
        options=options,
        description=LINREG_2D.description,
        coordinate_names=("θ₁ (bias)", "θ₂ (slope)"),
        view_box=box,
    )


LINREG_2D = ProblemSpec(
    key="linreg_2d",
    label="Linear regression (2 weights)",
    architecture="linear model, 2 weights",
    build=build_linreg_2d,
    count_params=lambda options: 2,
    options=(
        Option(
            "data",
            "lognormal",
            "'lognormal': inputs [1, x] with x log-normal, strongly correlated "
            "(Kunstner et al. 2019, figure 1); 'well_specified': x ~ N(0, 1) with unit "
            "noise; 'misspecified_noise': noise std 2 while the model states 1; "
            "'misspecified_model': a quadratic term the model lacks.",
            choices=LINREG_DATA,
        ),
        Option("num_samples", 1000, "Number of examples N.", low=2, high=1_000_000),
        loss_option(),
        sigma_option(),
        theta0_option((-0.5, 3.0), "Starting weights (θ₁, θ₂)."),
    ),
    description=(
        "Linear regression y = θ₁ + θ₂ x + noise with correlated inputs [1, x]. The "
        "Hessian equals the GGN and the Fisher (constant), but the empirical Fisher "
        "depends on the residuals, so its preconditioned directions are distorted."
    ),
    group="toys",
    tags=frozenset({"two_param", "regression"}),
    test_cases=(
        TinyCase("linreg_gaussian", {"num_samples": 50}),
        TinyCase("linreg_tanh_mean", {"num_samples": 50, "loss": "gaussian_tanh_mean"}),
    ),
)


# ------------------------------------------------------------------ logreg_2d
LOGREG_DATA = ("well_specified", "misspecified_noise", "misspecified")


def _logreg_data(kind: str, n: int, context: BuildContext) -> tuple[Tensor, Tensor]:
    """Two Gaussian classes, as in Kunstner et al. (2019), figure 2."""
    half = n // 2
    if kind == "misspecified_noise":
        means, mixes = (1.5, -1.5), (3.0 * torch.eye(2), torch.eye(2))
    elif kind == "misspecified":
        mix_a = 1.5 * torch.tensor([[1.0, -0.6], [-0.6, 1.0]])
        mix_b = 1.5 * torch.tensor([[1.0, 0.6], [0.6, 1.0]])
        means, mixes = (1.0, -1.0), (mix_a, mix_b)
    else:
        means, mixes = (1.0, -1.0), (2.0 * torch.eye(2), 2.0 * torch.eye(2))
    sizes = (half, n - half)
    parts = [
        mean + _randn(context, size, 2) @ mix.double()
        for mean, mix, size in zip(means, mixes, sizes, strict=True)
    ]
    labels = [torch.zeros(sizes[0], 1), torch.ones(sizes[1], 1)]
    return torch.cat(parts), torch.cat(labels).double()


def build_logreg_2d(options: dict[str, Any], context: BuildContext) -> Problem:
    check_length(options["theta0"], 2, "theta0")
    inputs, targets = _logreg_data(options["data"], options["num_samples"], context)
    model = _set_theta(mlp((2, 1), bias=False).double(), options["theta0"])
    return problem_from_model(
        model,
        context.dtype,
        context.device,
        key="logreg_2d",
        label="Logistic regression, 2 weights",
        loss=BernoulliLoss(1),
        inputs=context.tensor(inputs),
        targets=context.tensor(targets),
        options=options,
        description=LOGREG_2D.description,
        coordinate_names=("θ₁", "θ₂"),
        view_box=((-4.0, 3.0), (-4.0, 3.0)),
    )


LOGREG_2D = ProblemSpec(
    key="logreg_2d",
    label="Logistic regression (2 weights)",
    architecture="logistic regression, 2 weights",
    build=build_logreg_2d,
    count_params=lambda options: 2,
    options=(
        Option(
            "data",
            "well_specified",
            "Two Gaussian classes: 'well_specified' (equal isotropic covariances), "
            "'misspecified_noise' (unequal scales) or 'misspecified' (opposite "
            "correlations), as in Kunstner et al. (2019), figure 2.",
            choices=LOGREG_DATA,
        ),
        Option("num_samples", 1000, "Number of examples N.", low=2, high=1_000_000),
        theta0_option((2.0, 0.5), "Starting weights (θ₁, θ₂)."),
    ),
    description=(
        "Logistic regression p(y = 1 | x) = sigmoid(θᵀx) without bias on two "
        "Gaussian classes. Bernoulli likelihood: Fisher = GGN = Hessian; the "
        "empirical Fisher matches them only near the optimum of a well-specified model."
    ),
    group="toys",
    tags=frozenset({"two_param", "classification"}),
    test_cases=(TinyCase("logreg", {"num_samples": 50}),),
)


# ------------------------------------------------------------------ tiny_tanh
def build_tiny_tanh(options: dict[str, Any], context: BuildContext) -> Problem:
    check_length(options["theta0"], 2, "theta0")
    n = options["num_samples"]
    x = 4.0 * torch.rand(n, 1, generator=context.generator, dtype=torch.float64) - 2.0
    true_w1, true_w2 = 1.5, 1.0
    y = true_w2 * torch.tanh(true_w1 * x) + options["noise"] * _randn(context, n, 1)
    model = _set_theta(mlp((1, 1, 1), "tanh", bias=False).double(), options["theta0"])
    return problem_from_model(
        model,
        context.dtype,
        context.device,
        key="tiny_tanh",
        label="Tiny tanh network y ≈ w₂·tanh(w₁·x)",
        loss=regression_loss(options["loss"], 1, options["sigma"]),
        inputs=context.tensor(x),
        targets=context.tensor(y),
        options=options,
        description=TINY_TANH.description,
        coordinate_names=("w₁", "w₂"),
        view_box=((-3.0, 3.0), (-3.0, 3.0)),
    )


TINY_TANH = ProblemSpec(
    key="tiny_tanh",
    label="Tiny tanh network (2 weights)",
    architecture="one tanh unit, 2 weights",
    build=build_tiny_tanh,
    count_params=lambda options: 2,
    options=(
        Option("num_samples", 64, "Number of examples N.", low=2, high=100_000),
        Option("noise", 0.1, "Std. dev. of the label noise.", low=0.0, high=10.0),
        loss_option(),
        sigma_option(),
        theta0_option((0.3, -1.5), "Starting weights (w₁, w₂)."),
    ),
    description=(
        "A two-weight network y ≈ w₂·tanh(w₁·x) fitted to data from w = (1.5, 1). "
        "Non-convex: (w₁, w₂) and (−w₁, −w₂) fit equally well and the origin is a "
        "saddle, so the Hessian is indefinite in places while the GGN stays PSD."
    ),
    group="toys",
    tags=frozenset({"two_param", "regression"}),
    test_cases=(
        TinyCase("tiny_tanh", {"num_samples": 20}),
        TinyCase("tiny_tanh_mean", {"num_samples": 20, "loss": "gaussian_tanh_mean"}),
    ),
)


# ----------------------------------------------------------------- rosenbrock
def build_rosenbrock(options: dict[str, Any], context: BuildContext) -> Problem:
    check_length(options["theta0"], 2, "theta0")
    a, root_b = options["a"], math.sqrt(options["b"])

    def predict(theta: Tensor, inputs: Tensor) -> Tensor:
        residual_map = torch.stack([theta[0], root_b * (theta[1] - theta[0] ** 2)])
        return residual_map.unsqueeze(0).expand(inputs.shape[0], 2)

    return Problem(
        key="rosenbrock",
        label="Rosenbrock as least squares",
        # ‖y − z‖²/(2σ²) with σ² = ½ gives exactly (a − θ₁)² + b(θ₂ − θ₁²)².
        loss=GaussianLoss(2, sigma=math.sqrt(0.5)),
        theta0=context.tensor(options["theta0"]),
        inputs=context.tensor(torch.zeros(1, 1)),
        targets=context.tensor([[a, 0.0]]),
        predict_fn=predict,
        param_names=("theta",),
        param_shapes=((2,),),
        options=options,
        description=ROSENBROCK.description,
        coordinate_names=("θ₁", "θ₂"),
        view_box=((-2.0, 2.0), (-1.0, 3.0)),
    )


ROSENBROCK = ProblemSpec(
    key="rosenbrock",
    label="Rosenbrock (least squares)",
    architecture="the Rosenbrock function as a Gaussian residual",
    build=build_rosenbrock,
    count_params=lambda options: 2,
    options=(
        Option("a", 1.0, "Location of the minimum (a, a²).", low=-10.0, high=10.0),
        Option("b", 100.0, "Curvature of the valley.", low=1e-3, high=1e4),
        theta0_option((-1.2, 1.0), "Starting point (θ₁, θ₂)."),
    ),
    description=(
        "h(θ) = (a − θ₁)² + b(θ₂ − θ₁²)² written as one example with two Gaussian "
        "outputs z = (θ₁, √b(θ₂ − θ₁²)), targets (a, 0) and σ² = ½, so the "
        "Gauss-Newton matrix and the Fisher exist and equal 2JᵀJ."
    ),
    group="toys",
    tags=frozenset({"two_param", "regression"}),
    test_cases=(TinyCase("rosenbrock"),),
)
