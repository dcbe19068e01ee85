"""Shampoo's implied matrix (L ⊗ R)/tr L against brute-force references (float64)."""

import pytest
import torch

import explorer as ex
from explorer.optimizers import StepContext
from tests.cases import by_name
from tests.references import relative_error, tensor_spans
from tests.references import shampoo_ref as brute_force

#: A plain MLP, a conv net and the tiny transformer: the generic Jacobian path.
CASE_NAMES = ["moons", "mnist_cnn_tiny", "transformer_tiny"]


def build(name):
    case = by_name(name)
    problem, theta, batch = case.build()
    return problem, theta, problem.batch() if batch is None else batch


@pytest.mark.parametrize("name", CASE_NAMES)
@pytest.mark.parametrize("mode", ["exact", "empirical"])
def test_dense_matches_brute_force(name, mode):
    problem, theta, batch = build(name)
    op = ex.curvature("shampoo", problem, theta, batch=batch, gradients=mode)
    dense = op.dense()
    reference = brute_force(problem, theta, batch, mode)
    assert relative_error(dense, reference) < 1e-10
    # the per-tensor Kronecker factors are those blocks
    for block in op.kronecker_factors():
        index = block.indices
        expected = torch.kron(block.left, block.right)
        assert relative_error(dense[index[:, None], index], expected) < 1e-12


@pytest.mark.parametrize("name", CASE_NAMES)
def test_each_tensor_block_has_the_trace_of_the_exact_ggn_block(name):
    problem, theta, batch = build(name)
    assert problem.loss.matching  # F = G, so the Fisher factors give the GGN
    dense = ex.curvature("shampoo", problem, theta, batch=batch).dense()
    ggn = ex.curvature("ggn", problem, theta, batch=batch).dense()
    for span, _, _ in tensor_spans(problem):
        exact = float(ggn[span, span].trace())
        assert abs(float(dense[span, span].trace()) - exact) < 1e-10 * max(1, exact)


def test_one_example_one_output_is_exact_per_tensor():
    """One example and one output: every G = δ aᵀ (or a vector) is rank one, so
    E[vec G vec Gᵀ] = δδᵀ ⊗ aaᵀ = (L ⊗ R)/tr L exactly, on every tensor."""
    torch.manual_seed(2)
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)
    ).double()
    x = torch.randn(1, 3, dtype=torch.float64)
    problem = ex.problem_from_module(net, x, torch.ones(1, 1), "gaussian")
    theta = problem.theta0
    dense = ex.curvature("shampoo", problem, theta).dense()
    ggn = ex.curvature("ggn", problem, theta).dense()
    for span, _, _ in tensor_spans(problem):
        assert relative_error(dense[span, span], ggn[span, span]) < 1e-12
    # and zero between tensors (the GGN is not)
    first, second = tensor_spans(problem)[:2]
    assert torch.count_nonzero(dense[first[0], second[0]]) == 0
    assert ggn[first[0], second[0]].abs().max() > 1e-3


@pytest.mark.parametrize("name", ["moons", "mnist_cnn_tiny"])
@pytest.mark.parametrize("damping", [1e-3, 0.5])
def test_solve_is_the_exact_damped_inverse(name, damping):
    problem, theta, batch = build(name)
    op = ex.curvature("shampoo", problem, theta, batch=batch)
    dense = op.dense()
    rhs = torch.randn(problem.num_params, 2, dtype=theta.dtype)
    eye = torch.eye(problem.num_params, dtype=theta.dtype)
    expected = torch.linalg.solve(dense + damping * eye, rhs)
    assert relative_error(op.solve(rhs, damping), expected) < 1e-9
    assert op.tags.exact_solve and op.has_closed_form_solve


def test_mc_gradients_are_sampled():
    problem, theta, batch = build("moons")

    def dense(seed):
        generator = torch.Generator().manual_seed(seed)
        op = ex.curvature(
            "shampoo",
            problem,
            theta,
            batch=batch,
            generator=generator,
            gradients="mc",
            mc_samples=2,
        )
        return op.dense(), op.tags.sampled

    a, sampled = dense(1)
    b, _ = dense(1)
    c, _ = dense(2)
    assert sampled and torch.equal(a, b) and not torch.equal(a, c)
    exact = ex.curvature("shampoo", problem, theta, batch=batch)
    assert not exact.tags.sampled
    # an average over many samples approaches the exact factors
    many = ex.curvature(
        "shampoo",
        problem,
        theta,
        batch=batch,
        generator=torch.Generator().manual_seed(0),
        gradients="mc",
        mc_samples=400,
    ).dense()
    assert relative_error(many, exact.dense()) < 0.1 < relative_error(a, exact.dense())


def test_tags_coverage_and_the_problems_without_a_model():
    spec = ex.CURVATURES["shampoo"]
    tags = spec.tags()
    assert tags.psd and tags.block_diagonal and not tags.exact and not tags.kronecker
    # one tensor per module (a linear model without bias): one Kronecker product
    linreg = ex.problem("linreg_2d", num_samples=20)
    assert spec.tags(linreg).kronecker
    moons = ex.problem("moons_mlp", num_samples=20)
    assert not spec.tags(moons).kronecker  # weight and bias share a module block
    for problem in (linreg, moons, ex.problem("tiny_transformer")):
        op = ex.curvature("shampoo", problem, problem.theta0)
        assert set(op.coverage().values()) == {"kronecker"}
        assert set(spec.build.declared_coverage(problem).values()) == {"kronecker"}
    rosenbrock = ex.problem("rosenbrock")
    reason = spec.incompatibility(rosenbrock)
    assert (
        reason is not None
        and "nn.Module" in reason
        and "problem_from_module" in (reason)
    )
    with pytest.raises(ValueError, match="nn.Module"):
        ex.curvature("shampoo", rosenbrock, rosenbrock.theta0)


def test_a_linear_model_gets_its_exact_block():
    """A (1, n) weight: L = tr R is a scalar, so (L ⊗ R)/tr L = R = the exact
    (empirical-gradient) block, here the whole EF."""
    problem = ex.problem("logreg_2d", num_samples=30)
    theta = problem.theta0 + 0.1
    op = ex.curvature("shampoo", problem, theta, gradients="empirical")
    ef = ex.curvature("ef", problem, theta).dense()
    assert relative_error(op.dense(), ef) < 1e-12


def test_the_shampoo_rule_applies_the_inverse_fourth_root_of_c():
    """One example, β₂ = 1, no grafting: the rule's first direction per 2-D tensor
    is (L ⊗ R)^(-1/4) vec G = (tr L)^(-1/4) C^(-1/4) vec G (on C's range), with C
    the empirical Shampoo matrix at θ₀, as the module docstring states; 1-D
    tensors take the diagonal g/√(g²) = sign(g) instead of C's dense block.
    """
    torch.manual_seed(5)
    net = torch.nn.Sequential(
        torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2)
    ).double()
    x = torch.randn(1, 2, dtype=torch.float64)
    problem = ex.problem_from_module(net, x, torch.tensor([1]), "categorical")
    theta = problem.theta0
    grad = problem.grad(theta)
    op = ex.curvature("shampoo", problem, theta, gradients="empirical")
    dense = op.dense()
    rule = ex.RULES["shampoo"].create(
        {"lr": 1.0, "beta2": 1.0, "eps": 1e-12, "grafting": "none"}
    )
    ctx = StepContext(
        problem=problem,
        theta=theta,
        loss=problem.objective(theta),
        grad=grad,
        batch=problem.batch(),
        generator=torch.Generator(),
    )
    delta, _, _ = rule.update(grad, rule.init(theta), ctx)
    spans = zip(tensor_spans(problem), problem.param_shapes, op.traces, strict=True)
    for (span, _, _), shape, trace in spans:
        if len(shape) == 1:
            assert torch.allclose(-delta[span], grad[span].sign(), atol=1e-5)
            continue
        values, vectors = torch.linalg.eigh(dense[span, span])
        keep = values > 1e-12 * values.max()
        root = (vectors[:, keep] * values[keep] ** -0.25) @ vectors[:, keep].T
        expected = trace**-0.25 * root @ grad[span]
        assert relative_error(-delta[span], expected) < 1e-6
