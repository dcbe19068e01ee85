"""Contract tests run over every registered curvature on every small case."""

import pytest
import torch

import explorer as ex
from explorer.curvature import base as curvature_base
from explorer.curvature.linearization import FunctionalLinearization
from explorer.curvature.mlp import MLPForward, mlp_layers
from tests.cases import CASES, ids
from tests.references import relative_error

SELECTABLE = [key for key, spec in ex.CURVATURES.items() if spec.selectable]


def _build(key, case):
    problem, theta, batch = case.build()
    if ex.CURVATURES[key].needs_layers and not problem.layers:
        pytest.skip(f"{key} needs linear layers; {case.key} has none")
    if key == "kfac" and mlp_layers(problem) is None:
        pytest.skip(f"{key} needs an MLP; {case.key} is not one")
    generator = torch.Generator().manual_seed(11)
    return (
        problem,
        theta,
        ex.curvature(key, problem, theta, batch=batch, generator=generator),
    )


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
@pytest.mark.parametrize("key", SELECTABLE)
def test_operator_contract(key, case):
    problem, theta, operator = _build(key, case)
    size = problem.num_params
    dense = operator.dense()
    assert dense.shape == (size, size) and dense.dtype == theta.dtype
    generator = torch.Generator().manual_seed(5)
    v = torch.randn(size, generator=generator, dtype=theta.dtype)
    block = torch.randn(size, 3, generator=generator, dtype=theta.dtype)
    # products agree with the dense matrix
    assert relative_error(operator.matvec(v), dense @ v) < 1e-12
    assert relative_error(operator.matmat(block), dense @ block) < 1e-12
    assert relative_error(operator.diag(), dense.diagonal()) < 1e-12
    # symmetric, and PSD where declared
    assert relative_error(dense, dense.T) < 1e-12
    eigenvalues = torch.linalg.eigvalsh(dense)
    if operator.psd:
        assert eigenvalues[0] >= -1e-10 * max(1.0, float(eigenvalues[-1].abs()))
    # (C + λI) solve(b) = b with a damping that makes it positive definite
    damping = max(0.0, -float(eigenvalues[0])) + 0.1 * max(
        1.0, float(eigenvalues.abs().max())
    )
    solution = operator.solve(v, damping)
    residual = dense @ solution + damping * solution - v
    if key != "kfac":  # K-FAC's solve uses factored damping by design (tested below)
        assert relative_error(residual + v, v) < 1e-8
    # determinism with a fixed generator
    _, _, again = _build(key, case)
    assert torch.equal(again.dense(), dense)


def test_kfac_solve_uses_factored_damping_and_exact_mode_inverts_exactly():
    problem = ex.problem("moons_mlp", num_samples=40, hidden=(5,))
    theta = problem.theta0
    b = torch.randn(
        problem.num_params,
        generator=torch.Generator().manual_seed(2),
        dtype=torch.float64,
    )
    exact = ex.curvature("kfac", problem, theta, damping_mode="exact")
    damping = 1e-2
    x = exact.solve(b, damping)
    assert relative_error(exact.matvec(x) + damping * x, b) < 1e-10
    factored = ex.curvature("kfac", problem, theta)
    y = factored.solve(b, damping)
    # reference: per layer (S + √λ/π I)⁻¹ V̄ (A + π√λ I)⁻¹
    for index, layer in enumerate(factored.layers):
        a, s = factored.input_factors[index], factored.output_factors[index]
        a_damp, s_damp = factored.factored_damping(index, damping)
        pi_squared = (a.trace() / len(a)) / (s.trace() / len(s))
        assert abs(a_damp / s_damp - float(pi_squared)) < 1e-10 * float(pi_squared)
        v_bar = torch.cat(
            [b[layer.weight].view(layer.out_features, -1), b[layer.bias].unsqueeze(1)],
            1,
        )
        expected = torch.linalg.solve(
            s + s_damp * torch.eye(len(s), dtype=s.dtype), v_bar
        )
        expected = torch.linalg.solve(
            a + a_damp * torch.eye(len(a), dtype=a.dtype), expected.T
        ).T
        got = torch.cat(
            [y[layer.weight].view(layer.out_features, -1), y[layer.bias].unsqueeze(1)],
            1,
        )
        assert relative_error(got, expected) < 1e-10


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c.key in ("digits_mlp", "moons_mlp")],
    ids=lambda c: c.name,
)
def test_mlp_fast_path_agrees_with_torch_func(case):
    problem, theta, _ = case.build()
    inputs = problem.inputs
    fast = MLPForward(mlp_layers(problem), theta, inputs)
    generic = FunctionalLinearization(problem, theta, inputs)
    generator = torch.Generator().manual_seed(0)
    rows = torch.randn(4, problem.num_params, generator=generator, dtype=theta.dtype)
    cotangents = torch.randn(
        4, *fast.outputs.shape, generator=generator, dtype=theta.dtype
    )
    assert relative_error(fast.outputs, generic.outputs) < 1e-13
    assert relative_error(fast.jvp(rows), generic.jvp(rows)) < 1e-12
    assert relative_error(fast.vjp(cotangents), generic.vjp(cotangents)) < 1e-12


def test_cg_path_solves_and_counts_products(monkeypatch):
    monkeypatch.setattr(curvature_base, "DENSE_SOLVE_MAX_PARAMS", 0)
    problem = ex.problem("moons_mlp", num_samples=40, hidden=(5,))
    operator = ex.curvature("ggn", problem, problem.theta0)
    b = torch.randn(
        problem.num_params,
        generator=torch.Generator().manual_seed(4),
        dtype=torch.float64,
    )
    before = operator.products
    x = operator.solve(b, 0.1, rtol=1e-12)
    assert operator.products > before
    dense = operator.dense()
    assert relative_error(dense @ x + 0.1 * x, b) < 1e-9


def test_products_are_counted():
    problem = ex.problem("linreg_2d")
    operator = ex.curvature("ggn", problem, problem.theta0)
    operator.matvec(torch.ones(2, dtype=torch.float64))
    operator.matmat(torch.ones(2, 3, dtype=torch.float64))
    assert operator.products == 4
