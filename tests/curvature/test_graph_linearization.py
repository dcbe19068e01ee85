"""J products through one kept autograd graph, against torch.func in float64."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import explorer as ex
from explorer.curvature.graph_linearization import GraphLinearization
from explorer.curvature.linearization import FunctionalLinearization
from tests.references import relative_error


def conv_problem():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Unflatten(1, (1, 5, 5)),
        nn.Conv2d(1, 2, 3),
        nn.MaxPool2d(3),
        nn.Flatten(),
        nn.Tanh(),
        nn.Linear(2, 3),
    ).double()
    x = torch.randn(7, 25, dtype=torch.float64)
    return ex.problem_from_module(model, x, torch.arange(7) % 3)


def token_problem():
    return ex.problem("tiny_transformer", modulus=5, d_model=4, heads=1, mlp_width=4)


def references(problem, theta, vectors, cotangents):
    def forward(t):
        return problem.predict_fn(t, problem.inputs)

    tangents = torch.stack(
        [torch.func.jvp(forward, (theta,), (v,))[1] for v in vectors]
    )
    _, pullback = torch.func.vjp(forward, theta)
    pulled = torch.stack([pullback(u)[0] for u in cotangents])
    return tangents, pulled


@pytest.mark.parametrize("build", [conv_problem, token_problem], ids=["conv", "tokens"])
@pytest.mark.parametrize("count", [1, 3])
def test_products_match_torch_func(build, count):
    problem = build()
    theta = problem.theta0 + 0.1
    generator = torch.Generator().manual_seed(4)
    vectors = torch.randn(
        count, problem.num_params, generator=generator, dtype=torch.float64
    )
    outputs = problem.predict(theta)
    cotangents = torch.randn(
        count, *outputs.shape, generator=generator, dtype=torch.float64
    )
    linearization = GraphLinearization(problem, theta, problem.inputs)
    expected_jvp, expected_vjp = references(problem, theta, vectors, cotangents)
    assert relative_error(linearization.outputs, outputs) < 1e-14
    assert relative_error(linearization.jvp(vectors), expected_jvp) < 1e-12
    assert relative_error(linearization.vjp(cotangents), expected_vjp) < 1e-12
    # the graph is kept: the same product again gives the same numbers
    assert torch.equal(linearization.jvp(vectors), linearization.jvp(vectors))


class Once(torch.autograd.Function):
    """x² with a backward that cannot itself be differentiated."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x * x

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
        ctx.save_for_forward(inputs[0])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 2 * x * grad

    @staticmethod
    def jvp(ctx, tangent):
        (x,) = ctx.saved_tensors
        return 2 * x * tangent


class Squared(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2).double()

    def forward(self, x):
        return Once.apply(self.linear(x))


def test_a_model_without_double_backward_falls_back_to_torch_func():
    x = torch.randn(5, 3, dtype=torch.float64)
    problem = ex.problem_from_module(Squared(), x, x[:, :2], "gaussian")
    theta = problem.theta0
    vectors = torch.randn(2, problem.num_params, dtype=torch.float64)
    linearization = FunctionalLinearization(problem, theta, problem.inputs)
    cotangents = torch.randn(2, 5, 2, dtype=torch.float64)
    expected_jvp, expected_vjp = references(problem, theta, vectors, cotangents)
    assert relative_error(linearization.jvp(vectors), expected_jvp) < 1e-12
    assert linearization._graph is None  # it noticed, and switched
    assert relative_error(linearization.vjp(cotangents), expected_vjp) < 1e-12
    ggn = ex.curvature("ggn", problem, theta)
    jac = torch.func.jacrev(lambda t: problem.predict_fn(t, x))(theta)  # (N, C, P)
    expected = torch.einsum("ncp,ncq->pq", jac, jac) / 5  # σ = 1: output Hessian I
    assert (
        relative_error(
            ggn.matmat(torch.eye(problem.num_params, dtype=torch.float64)), expected
        )
        < 1e-12
    )
