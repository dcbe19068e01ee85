"""Identities that must hold exactly (THEORY.md §2 and §5, claims C1, C2, C7)."""

import pytest
import torch
from torch import nn

import explorer as ex
from explorer.problems.base import problem_from_model
from explorer.problems.likelihoods import GaussianLoss
from tests.cases import MATCHING, NON_MATCHING, ids
from tests.references import relative_error


@pytest.mark.parametrize("case", MATCHING, ids=ids(MATCHING))
def test_fisher_equals_ggn_for_matching_losses(case):
    problem, theta, batch = case.build()
    fisher = ex.curvature("fisher", problem, theta, batch=batch).dense()
    ggn = ex.curvature("ggn", problem, theta, batch=batch).dense()
    assert relative_error(fisher, ggn) < 1e-12


@pytest.mark.parametrize("case", NON_MATCHING, ids=ids(NON_MATCHING))
def test_fisher_differs_from_ggn_for_non_matching_losses(case):
    problem, theta, batch = case.build()
    fisher = ex.curvature("fisher", problem, theta, batch=batch).dense()
    ggn = ex.curvature("ggn", problem, theta, batch=batch).dense()
    assert relative_error(fisher, ggn) > 1e-2


def test_ggn_equals_hessian_for_linear_least_squares():
    problem = ex.problem("linreg_2d", num_samples=100)
    theta = torch.tensor([0.7, -1.3], dtype=torch.float64)
    ggn = ex.curvature("ggn", problem, theta).dense()
    hessian = ex.curvature("hessian", problem, theta).dense()
    assert relative_error(ggn, hessian) < 1e-13
    # and it is the closed form (1/N) XᵀX / σ²
    x = problem.inputs
    assert relative_error(hessian, x.T @ x / len(x)) < 1e-13


def test_hessian_indefinite_where_ggn_is_psd():
    problem = ex.problem("tiny_tanh")
    saddle = torch.zeros(2, dtype=torch.float64)
    hessian = ex.curvature("hessian", problem, saddle).dense()
    ggn = ex.curvature("ggn", problem, saddle).dense()
    assert torch.linalg.eigvalsh(hessian)[0] < -0.1
    assert torch.linalg.eigvalsh(ggn)[0] >= -1e-12


def test_hessian_approaches_ggn_at_an_interpolating_solution():
    problem = ex.problem("tiny_tanh", noise=0.0)
    solution = torch.tensor([1.5, 1.0], dtype=torch.float64)  # fits every label exactly
    hessian = ex.curvature("hessian", problem, solution).dense()
    ggn = ex.curvature("ggn", problem, solution).dense()
    assert relative_error(hessian, ggn) < 1e-12


def _linear_problem(bias: bool):
    generator = torch.Generator().manual_seed(0)
    model = nn.Linear(3, 2, bias=bias).double()
    inputs = torch.randn(25, 3, generator=generator, dtype=torch.float64)
    targets = torch.randn(25, 2, generator=generator, dtype=torch.float64)
    return problem_from_model(
        model,
        torch.float64,
        torch.device("cpu"),
        key="linear",
        label="linear",
        loss=GaussianLoss(2, sigma=0.7),
        inputs=inputs,
        targets=targets,
    )


@pytest.mark.parametrize("bias", [True, False])
def test_kfac_exact_for_one_linear_layer_with_gaussian_output(bias):
    problem = _linear_problem(bias)
    kfac = ex.curvature("kfac", problem, problem.theta0).dense()
    ggn = ex.curvature("ggn", problem, problem.theta0).dense()
    assert relative_error(kfac, ggn) < 1e-13


def test_kfac_exact_on_linreg_2d():
    problem = ex.problem("linreg_2d")
    kfac = ex.curvature("kfac", problem, problem.theta0).dense()
    fisher = ex.curvature("fisher", problem, problem.theta0).dense()
    assert relative_error(kfac, fisher) < 1e-13


def _brute_force_kfac_block(problem, theta, layer_position: int):
    """A ⊗ S of one layer from autograd through the network's tail (reference)."""
    model = problem.model
    params = problem.unflatten(theta)
    linear_indices = [i for i, m in enumerate(model) if isinstance(m, nn.Linear)]
    index = linear_indices[layer_position]
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(theta, model.parameters())
    head, tail = model[:index], model[index + 1 :]
    a = head(problem.inputs)
    a_bar = torch.cat([a, torch.ones(len(a), 1, dtype=a.dtype)], 1)
    s = model[index](a)

    def tail_of(s_row):
        return tail(s_row.unsqueeze(0))[0]

    jac = torch.func.vmap(torch.func.jacrev(tail_of))(s)  # (N, C, out)
    outputs = tail(s)
    fisher_out = problem.loss.output_fisher(outputs)
    big_s = torch.einsum("nco,ncd,ndq->oq", jac, fisher_out, jac).contiguous() / len(s)
    big_a = a_bar.T @ a_bar / len(s)
    del params
    return big_a, big_s


def test_kfac_factors_match_autograd_for_a_deep_mlp():
    problem = ex.problem("digits_mlp", hidden=(6, 5), train_size=50, seed=3)
    theta = problem.theta0 + 0.2 * torch.randn(
        problem.num_params,
        generator=torch.Generator().manual_seed(1),
        dtype=torch.float64,
    )
    operator = ex.curvature("kfac", problem, theta)
    dense = operator.dense()
    for position, layer in enumerate(problem.layers):
        big_a, big_s = _brute_force_kfac_block(problem, theta, position)
        assert relative_error(operator.input_factors[position], big_a) < 1e-12
        assert relative_error(operator.output_factors[position], big_s) < 1e-12
        # the dense block in [vec(W) row-major, b] order equals kron(S, A) reordered
        out, inp = layer.out_features, layer.in_features
        order = [
            o * inp + i if i < inp else out * inp + o
            for o in range(out)
            for i in range(inp + 1)
        ]
        span = layer.span
        block = dense[span, span][order][:, order]
        assert relative_error(block, torch.kron(big_s, big_a)) < 1e-12


def test_kfac_is_an_approximation_for_deep_nets_and_cross_entropy():
    problem = ex.problem("digits_mlp", hidden=(6, 5), train_size=50, seed=3)
    kfac = ex.curvature("kfac", problem, problem.theta0).dense()
    fisher = ex.curvature("fisher", problem, problem.theta0).dense()
    assert relative_error(kfac, fisher) > 0.05


def test_mc_fisher_converges_like_one_over_root_samples():
    problem = ex.problem("moons_mlp", num_samples=60, hidden=(5,))
    theta = problem.theta0
    exact = ex.curvature("fisher", problem, theta).dense()
    errors = {}
    for samples in (4, 64, 1024):
        trials = [
            relative_error(
                ex.curvature(
                    "fisher_mc",
                    problem,
                    theta,
                    samples=samples,
                    generator=torch.Generator().manual_seed(seed),
                ).dense(),
                exact,
            )
            for seed in range(4)
        ]
        errors[samples] = sum(trials) / len(trials)
    # 16× more samples -> about 4× smaller error (allow 2.5–6.5 for randomness).
    for small, large in ((4, 64), (64, 1024)):
        ratio = errors[small] / errors[large]
        assert 2.5 < ratio < 6.5, (errors, ratio)
    assert errors[1024] < 0.05


def test_mc_kfac_converges_to_exact_kfac():
    problem = ex.problem("moons_mlp", num_samples=60, hidden=(5,))
    exact = ex.curvature("kfac", problem, problem.theta0).dense()
    mc = ex.curvature(
        "kfac", problem, problem.theta0, output_factor="mc", mc_samples=1000
    ).dense()
    assert relative_error(mc, exact) < 0.05


def test_empirical_kfac_uses_labels():
    problem = ex.problem("linreg_2d")
    ef_kfac = ex.curvature("kfac", problem, problem.theta0, output_factor="empirical")
    ef = ex.curvature("ef", problem, problem.theta0).dense()
    # one linear layer: S = mean r², A = mean x xᵀ, so K-FAC-EF = A·mean(r²), not EF
    residual = problem.predict(problem.theta0) - problem.targets
    x = problem.inputs
    expected = (x.T @ x / len(x)) * residual.pow(2).mean()
    assert relative_error(ef_kfac.dense(), expected) < 1e-13
    assert relative_error(ef_kfac.dense(), ef) > 1e-3
