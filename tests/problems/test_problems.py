"""Every registered problem: defaults, options, data, and the objective's formula."""

import math

import pytest
import torch

import explorer as ex


@pytest.mark.parametrize("key", list(ex.PROBLEMS))
def test_builds_with_documented_defaults(key):
    problem = ex.problem(key)
    assert problem.key == key
    assert problem.theta0.shape == (problem.num_params,)
    assert problem.theta0.dtype == torch.float64
    outputs = problem.predict(problem.theta0)
    assert outputs.shape == (problem.num_examples, problem.num_outputs)
    value, grad = problem.value_and_grad(problem.theta0)
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    assert problem.description and problem.label
    # the flat vector follows model.parameters()
    if problem.model is not None:
        flat = torch.cat([p.reshape(-1) for p in problem.model.parameters()])
        assert torch.equal(flat, problem.theta0)
    # blocks tile the parameter vector
    covered = sum(span.stop - span.start for _, span in problem.blocks())
    assert covered == problem.num_params


@pytest.mark.parametrize("key", list(ex.PROBLEMS))
def test_seed_makes_data_and_start_reproducible(key):
    first, second = ex.problem(key, seed=4), ex.problem(key, seed=4)
    assert torch.equal(first.inputs, second.inputs)
    assert torch.equal(first.targets, second.targets)
    assert torch.equal(first.theta0, second.theta0)
    other = ex.problem(key, seed=5)
    if key != "rosenbrock":  # the only problem without random data
        assert not torch.equal(first.inputs, other.inputs) or not torch.equal(
            first.targets, other.targets
        )


@pytest.mark.parametrize("key", list(ex.PROBLEMS))
def test_float32(key):
    problem = ex.problem(key, dtype="float32")
    assert problem.theta0.dtype == torch.float32
    # floating inputs follow the problem's dtype; integer ones (token ids) stay int64
    assert problem.inputs.dtype in (torch.float32, torch.int64)
    assert torch.isfinite(problem.objective(problem.theta0))


def test_real_data_has_a_test_split():
    problem = ex.problem("digits_mlp")
    assert problem.num_examples + problem.test_inputs.shape[0] == 1797
    assert problem.test_inputs.shape[0] == round(0.2 * 1797)
    metrics = problem.evaluate(problem.theta0)
    assert set(metrics) == {"loss", "accuracy", "test_loss", "test_accuracy"}
    # standardized with training statistics
    assert problem.inputs.mean(0).abs().max() < 1e-10
    moons = ex.problem("moons_mlp")
    assert moons.num_examples == 150 and moons.test_inputs.shape[0] == 50


def test_rosenbrock_is_the_classic_function():
    problem = ex.problem("rosenbrock")
    for point in ([-1.2, 1.0], [0.5, 0.3], [1.0, 1.0]):
        t = torch.tensor(point, dtype=torch.float64)
        expected = (1 - t[0]) ** 2 + 100 * (t[1] - t[0] ** 2) ** 2
        assert float(problem.objective(t)) == pytest.approx(
            float(expected), rel=1e-14, abs=1e-14
        )


@pytest.mark.parametrize("parameterization", ["sigma", "log_sigma"])
def test_gaussian_fit_objective_and_starts(parameterization):
    problem = ex.problem("gaussian_fit", parameterization=parameterization)
    y = problem.targets[:, 0]
    mu, sigma = 0.4, 1.7
    scale = math.log(sigma) if parameterization == "log_sigma" else sigma
    theta = torch.tensor([mu, scale], dtype=torch.float64)
    expected = ((y - mu) ** 2 / (2 * sigma**2)).mean() + math.log(sigma)
    assert float(problem.objective(theta)) == pytest.approx(float(expected), rel=1e-13)
    # both parameterizations start at the same distribution
    start = problem.theta0
    start_sigma = (
        math.exp(start[1]) if parameterization == "log_sigma" else float(start[1])
    )
    assert start_sigma == pytest.approx(0.4)
    # the maximum-likelihood estimate is the sample mean and (biased) std
    mle_sigma = float(y.std(unbiased=False))
    mle = torch.tensor(
        [
            float(y.mean()),
            math.log(mle_sigma) if parameterization == "log_sigma" else mle_sigma,
        ],
        dtype=torch.float64,
    )
    assert problem.grad(mle).abs().max() < 1e-12


def test_linreg_objective_is_halved_squared_error():
    problem = ex.problem("linreg_2d", sigma=2.0)
    theta = torch.tensor([0.5, 1.5], dtype=torch.float64)
    residual = problem.targets[:, 0] - problem.inputs @ theta
    expected = (residual**2 / (2 * 4.0)).mean()
    assert float(problem.objective(theta)) == pytest.approx(float(expected), rel=1e-13)


def test_linreg_lognormal_inputs_are_correlated():
    problem = ex.problem("linreg_2d")
    second_moment = problem.inputs.T @ problem.inputs / problem.num_examples
    correlation = (
        second_moment[0, 1] / (second_moment[0, 0] * second_moment[1, 1]).sqrt()
    )
    assert correlation > 0.7


def test_tiny_tanh_has_a_saddle_at_the_origin():
    problem = ex.problem("tiny_tanh")
    origin = torch.zeros(2, dtype=torch.float64)
    assert problem.grad(origin).abs().max() < 1e-14


def test_stream_logreg_draws_fresh_samples_from_the_true_model():
    problem = ex.problem("stream_logreg", dim=3, eval_size=1000)
    generator = torch.Generator().manual_seed(0)
    first = problem.sample_batch(20, generator)
    second = problem.sample_batch(20, generator)
    assert first.inputs.shape == (20, 3) and not torch.equal(
        first.inputs, second.inputs
    )
    # the true parameters minimise the population loss: gradient ≈ 0 on a big sample
    big = problem.sample_batch(200_000, generator)
    assert problem.grad(problem.theta_star, big).norm() < 0.01
    assert problem.is_streaming


def test_sample_batch_without_replacement():
    problem = ex.problem("moons_mlp")
    batch = problem.sample_batch(32, torch.Generator().manual_seed(0))
    assert batch.size == 32
    rows = {tuple(row.tolist()) for row in batch.inputs}
    assert len(rows) == 32
    assert problem.sample_batch(None, torch.Generator()).size == problem.num_examples


def test_autoencoder_reconstructs_binary_inputs():
    problem = ex.problem("digits_autoencoder")
    assert torch.equal(problem.inputs, problem.targets)
    assert set(problem.targets.unique().tolist()) == {0.0, 1.0}
    assert problem.num_outputs == 64
    assert [layer.out_features for layer in problem.layers] == [32, 16, 8, 16, 32, 64]


def test_hidden_sizes_and_activation_options():
    problem = ex.problem("digits_mlp", hidden=[16, 8], activation="relu")
    assert [layer.out_features for layer in problem.layers] == [16, 8, 10]
    assert any(isinstance(m, torch.nn.ReLU) for m in problem.model)
    assert problem.num_params == 64 * 16 + 16 + 16 * 8 + 8 + 8 * 10 + 10


def test_registry_lists_every_required_problem():
    required = {
        "gaussian_fit",
        "linreg_2d",
        "logreg_2d",
        "tiny_tanh",
        "rosenbrock",
        "moons_mlp",
        "digits_mlp",
        "digits_autoencoder",
        "stream_logreg",
    }
    assert required <= set(ex.PROBLEMS)


@pytest.mark.parametrize("key", ["digits_mlp", "linreg_2d", "poisson_2d", "moons_mlp"])
def test_the_model_and_torch_loss_are_what_the_peers_expect(key):
    """``p.model`` is an ordinary module at θ₀ whose parameters require grad, and
    ``loss_scale · torch_loss()(model(X), y)`` is the objective, with the same
    gradient by plain autograd (what curvlinops and BackPACK build on)."""
    options = {"hidden": (5,), "train_size": 40} if key == "digits_mlp" else {}
    p = ex.problem(key, **options)
    params = list(p.model.parameters())
    assert params and all(param.requires_grad for param in params)
    module = p.loss.torch_loss()
    assert type(module).__module__.startswith("torch.nn") or key == "poisson_2d"
    p.model.zero_grad()
    value = p.loss.loss_scale * module(p.model(p.inputs), p.targets)
    value.backward()
    grad = torch.cat([param.grad.reshape(-1) for param in params])
    assert float(value.detach()) == pytest.approx(
        float(p.objective(p.theta0)), rel=1e-12
    )
    torch.testing.assert_close(grad, p.grad(p.theta0), rtol=1e-10, atol=1e-12)
