r"""Independent references and small problems the presets' checks need.

The checks compare the library's operators with routes that do not share their code:

* :func:`fisher_by_expectation`: the Fisher from its definition, an expectation over
  the *model's* targets, :math:`F = \frac1N \sum_i J_i^\top E_{y \sim R(\cdot|z_i)}
  [\nabla_z L \nabla_z L^\top] J_i`, by enumeration (Bernoulli, categorical) or
  Gauss–Hermite quadrature (Gaussians; exact, the integrand is a polynomial in y).
* :func:`residual_term`: :math:`\frac1N \sum_i \sum_c [\nabla_z L_i]_c \nabla^2_θ
  z_{i,c}` by autograd, so :math:`H = G + \text{residual}` can be checked.
* Problems that are not in the registry because they only make sense for one
  claim: an affine reparameterization of a problem, a one-weight regression, and
  small regression or classification MLPs of any depth.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.func import hessian, jacrev

from explorer.problems import likelihoods as lik
from explorer.problems.base import Problem, problem_from_model
from explorer.problems.models import init_uniform, mlp
from explorer.runs import (
    Experiment,
    History,
    ProblemConfig,
    RunConfig,
    run,
    run_configs,
)

#: Gauss–Hermite nodes per output dimension: exact for polynomials of degree ≤ 5.
QUADRATURE_NODES = 3

#: The two moons MLP several presets use: full size and small (CI) size.
MOONS = {"hidden": (8,), "num_samples": 100}
MOONS_SMALL = {"hidden": (4,), "num_samples": 40}


# ------------------------------------------------------------------ matrices
def relative_error(matrix: Tensor, reference: Tensor) -> float:
    """‖C − R‖_F / ‖R‖_F (inf when R = 0 and C ≠ 0)."""
    diff = float(torch.linalg.matrix_norm(matrix.double() - reference.double()))
    norm = float(torch.linalg.matrix_norm(reference.double()))
    if norm == 0:
        return 0.0 if diff == 0 else math.inf
    return diff / norm


def max_relative_difference(matrix: Tensor, reference: Tensor) -> float:
    """The entrywise max |C − R| / max |R|."""
    scale = float(reference.double().abs().max())
    diff = float((matrix.double() - reference.double()).abs().max())
    return diff / scale if scale > 0 else diff


def jacobian(problem: Problem, theta: Tensor) -> Tensor:
    """J (N, C, P): ∂z_i/∂θ on the training inputs, by reverse-mode autograd."""

    def outputs(point: Tensor) -> Tensor:
        return problem.predict(point)

    return jacrev(outputs)(theta.detach())


def _gauss_hermite(dim: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """Tensor-product nodes (K, dim) and weights (K,) for E over N(0, I_dim)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(QUADRATURE_NODES)
    weights = weights / math.sqrt(2 * math.pi)
    grid = list(itertools.product(range(QUADRATURE_NODES), repeat=dim))
    points = torch.tensor([[nodes[i] for i in row] for row in grid])
    mass = torch.tensor([math.prod(weights[i] for i in row) for row in grid])
    return points.to(like), mass.to(like)


def _model_targets(loss: lik.LossSpec, outputs: Tensor) -> list[tuple[Tensor, Tensor]]:
    """[(targets y_s, probability weight w_s (N,))]: the support of R(y | z)."""
    n, c = outputs.shape
    if isinstance(loss, lik.CategoricalLoss):
        p = torch.softmax(outputs, -1)
        return [
            (torch.full((n,), k, dtype=torch.long, device=outputs.device), p[:, k])
            for k in range(c)
        ]
    if isinstance(loss, lik.BernoulliLoss):
        p = torch.sigmoid(outputs)
        support = []
        for bits in itertools.product((0.0, 1.0), repeat=c):
            y = torch.tensor(bits).to(outputs).expand(n, c)
            support.append((y, torch.where(y > 0, p, 1 - p).prod(-1)))
        return support
    if isinstance(loss, (lik.GaussianLoss, lik.GaussianTanhMeanLoss)):
        mean = outputs if isinstance(loss, lik.GaussianLoss) else torch.tanh(outputs)
        points, mass = _gauss_hermite(c, outputs)
        return [
            (mean + loss.sigma * point, weight.expand(n))
            for point, weight in zip(points, mass)
        ]
    if isinstance(loss, lik.GaussianMeanScaleLoss):
        mu, scale = outputs[:, :1], outputs[:, 1:]
        sigma = scale.exp() if loss.parameterization == "log_sigma" else scale
        points, mass = _gauss_hermite(1, outputs)
        return [
            (mu + sigma * point, weight.expand(n))
            for point, weight in zip(points, mass)
        ]
    if isinstance(loss, lik.GaussianHeteroscedasticLoss):
        d = loss.num_targets
        mu, std = outputs[:, :d], (0.5 * outputs[:, d:]).exp()
        points, mass = _gauss_hermite(d, outputs)
        return [
            (mu + std * point, weight.expand(n)) for point, weight in zip(points, mass)
        ]
    if isinstance(loss, lik.PoissonLoss) and c == 1:
        return _poisson_support(loss.rate(outputs)[:, 0])
    raise ValueError(
        f"no expectation rule for the likelihood {type(loss).__name__}; known: "
        "Gaussian, Gaussian with tanh mean, Gaussian mean-scale, heteroscedastic "
        "Gaussian, Bernoulli, categorical, Poisson with one output"
    )


def _poisson_support(rate: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Counts 0..K with their Poisson probabilities (N,), K far in the tail.

    K = λ_max + 12√λ_max + 30 leaves a tail mass far below float64 round-off; the
    integrand (y − λ)² λ'²/λ² is a polynomial in y, so the truncated sum is the
    expectation to rounding.
    """
    top = float(rate.max())
    last = math.ceil(top + 12 * math.sqrt(top) + 30)
    log_rate = rate.log()
    support = []
    for k in range(last + 1):
        count = torch.full_like(rate, float(k))
        weight = (k * log_rate - rate - math.lgamma(k + 1)).exp()
        support.append((count.unsqueeze(1), weight))
    return support


def output_fisher_by_expectation(loss: lik.LossSpec, outputs: Tensor) -> Tensor:
    """E_{y ~ R(·|z)}[∇_z L ∇_z Lᵀ] (N, C, C) from scores at the support points."""
    total = torch.zeros(*outputs.shape, outputs.shape[1]).to(outputs)
    for targets, weight in _model_targets(loss, outputs):
        score = loss.output_grad(outputs, targets)
        total = total + weight[:, None, None] * score[:, :, None] * score[:, None, :]
    return total


def fisher_by_expectation(problem: Problem, theta: Tensor) -> Tensor:
    r"""F = (1/N) Σ_i J_iᵀ E_y[∇_z L ∇_z Lᵀ] J_i from the definition (P, P).

    Example:
        >>> import explorer as ex
        >>> p = ex.problem("logreg_2d", num_samples=20)
        >>> f = ex.curvature("fisher", p, p.theta0).dense()
        >>> bool(torch.allclose(fisher_by_expectation(p, p.theta0), f))
        True
    """
    with torch.no_grad():
        outputs = problem.predict(theta)
    inner = output_fisher_by_expectation(problem.loss, outputs)
    jac = jacobian(problem, theta)
    return torch.einsum("ncp,ncd,ndq->pq", jac, inner, jac) / jac.shape[0]


def residual_term(problem: Problem, theta: Tensor) -> Tensor:
    r"""(1/N) Σ_i Σ_c [∇_z L(y_i, z_i)]_c ∇²_θ z_{i,c} (P, P) by autograd."""
    with torch.no_grad():
        outputs = problem.predict(theta)
        weights = problem.loss.output_grad(outputs, problem.targets).detach()

    def contracted(point: Tensor) -> Tensor:
        return (weights * problem.predict(point)).sum() / weights.shape[0]

    return hessian(contracted)(theta.detach())


# ------------------------------------------------------------------- running
def problem_on_cpu(key: str, options: Mapping[str, Any]) -> Problem:
    """Problem ``key`` with ``options`` on the CPU in float64 (seed 0): the checks
    compare float64 numbers to rounding, whatever the machine has.
    """
    return ProblemConfig(key, options, device="cpu").build()


def on_cpu(config: RunConfig) -> RunConfig:
    """``config`` on the CPU: the checks compare float64 numbers to rounding, so they
    run where the other side of each comparison runs, whatever the machine has.
    """
    return config.replace(device="cpu")


def run_config(config: RunConfig, problem: Problem | None = None) -> History:
    """:func:`explorer.run` of ``config`` on the CPU (on ``problem`` when the caller
    built it from ``on_cpu(config).problem_config``).
    """
    return run(on_cpu(config), problem=problem)


def run_experiment(experiment: Experiment) -> dict[str, History]:
    """``{label: History}`` of every rule of ``experiment`` (same data and start),
    on the CPU.
    """
    configs = [on_cpu(config) for config in experiment.run_configs()]
    return run_configs(configs)


def fixed(lr: float, damping: float, **options: Any) -> dict[str, Any]:
    """Options of a curvature rule with fixed λ (no Levenberg–Marquardt)."""
    return {"lr": lr, "damping": damping, "damping_adaptation": "fixed", **options}


def final_theta(history: History) -> Tensor:
    """The last recorded parameters of a run."""
    if history.trajectory is None:
        raise ValueError(f"run {history.label!r} kept no trajectory")
    return history.trajectory[-1]


# ------------------------------------------------------------------ problems
def reparameterized(problem: Problem, matrix: Tensor, offset: Tensor) -> Problem:
    """The same problem in coordinates φ with θ = Aφ + b (A invertible).

    Natural gradient with the exact Fisher and λ = 0 takes the same steps in both
    coordinates (mapped by A); gradient descent does not (claim C4).
    """
    a = matrix.to(problem.theta0)
    b = offset.to(problem.theta0)
    phi0 = torch.linalg.solve(a, problem.theta0 - b)
    base = problem.predict_fn

    def predict(phi: Tensor, inputs: Tensor) -> Tensor:
        return base(a @ phi + b, inputs)

    size = problem.num_params
    return Problem(
        key=problem.key,
        label=f"{problem.label}, affine coordinates φ (θ = Aφ + b)",
        loss=problem.loss,
        theta0=phi0,
        inputs=problem.inputs,
        targets=problem.targets,
        predict_fn=predict,
        param_names=("phi",),
        param_shapes=((size,),),
        options=problem.options,
        coordinate_names=tuple(f"φ{chr(0x2081 + i)}" for i in range(size)),
    )


def _exact_problem(
    model: torch.nn.Module,
    key: str,
    label: str,
    loss: lik.LossSpec,
    data: tuple[Tensor, Tensor],
    **extra: Any,
) -> Problem:
    """A problem of ``model`` on (inputs, targets) ``data``, float64 on the CPU."""
    inputs, targets = data
    cpu = torch.device("cpu")
    return problem_from_model(
        model,
        torch.float64,
        cpu,
        key=key,
        label=label,
        loss=loss,
        inputs=inputs,
        targets=targets,
        **extra,
    )


def one_weight_regression(
    num_samples: int, theta_true: float, start: float, seed: int = 0
) -> Problem:
    """One weight θ: y = θ x + ε with x, ε ~ N(0, 1) (Gaussian, σ = 1)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(num_samples, 1, generator=generator, dtype=torch.float64)
    noise = torch.randn(num_samples, 1, generator=generator, dtype=torch.float64)
    model = mlp((1, 1), bias=False).double()
    with torch.no_grad():
        model[0].weight.fill_(start)
    return _exact_problem(
        model,
        "linreg_1d",
        "Linear regression with one weight",
        lik.GaussianLoss(1),
        (x, theta_true * x + noise),
        coordinate_names=("θ",),
    )


def student_mlp(
    depth: int,
    width: int,
    loss: str,
    *,
    inputs: int = 5,
    outputs: int = 3,
    num_samples: int = 64,
    seed: int = 0,
) -> Problem:
    """A tanh MLP with ``depth`` linear layers fitted to a random teacher's outputs.

    ``loss="gaussian"``: targets are the teacher's outputs plus noise (σ = 1);
    ``"categorical"``: the teacher's argmax class. Depth 1 is a single linear layer.
    """
    if loss not in ("gaussian", "categorical"):
        raise ValueError(f"loss = {loss!r} must be 'gaussian' or 'categorical'")
    if depth < 1:
        raise ValueError(f"depth = {depth} must be at least 1")
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(num_samples, inputs, generator=generator, dtype=torch.float64)
    teacher = mlp((inputs, width, outputs)).double()
    init_uniform(teacher, generator)
    with torch.no_grad():
        z = 3.0 * teacher(x)
    model = mlp((inputs, *([width] * (depth - 1)), outputs)).double()
    init_uniform(model, generator)
    if loss == "gaussian":
        spec: lik.LossSpec = lik.GaussianLoss(outputs)
        noise = torch.randn(z.shape, generator=generator, dtype=torch.float64)
        targets = z + 0.1 * noise
    else:
        spec = lik.CategoricalLoss(outputs)
        targets = z.argmax(1)
    label = f"MLP with {depth} layer(s), {spec.label}"
    return _exact_problem(model, f"mlp_{loss}", label, spec, (x, targets))


def log_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The least-squares slope of log y against log x."""
    lx, ly = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    return float(np.polyfit(lx, ly, 1)[0])
