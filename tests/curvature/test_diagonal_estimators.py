"""The stochastic diagonals ``sophia_gnb`` and ``adahessian`` against independent
references: the exact GGN / Fisher diagonal in expectation (within a tolerance from
the measured standard error), autograd single draws, exhaustive sign vectors, and
spatial averaging by explicit loops.
"""

import itertools

import pytest
import torch

import explorer as ex
from explorer.curvature.diagonal_estimators import (
    gnb_diagonal,
    probe_average,
    spatial_average,
    subsample,
)
from explorer.problems.base import Batch
from tests.cases import by_name
from tests.diagonal_references import gnb_draw_ref, spatial_average_ref
from tests.references import fisher_ref, ggn_ref, hessian_ref, relative_error

#: Standard errors a mean of many draws may sit from its expectation: at 5σ a
#: per-coordinate false alarm has probability 6e-7.
SIGMAS = 5.0
DRAWS = 4000


def _generator(seed=3):
    return torch.Generator().manual_seed(seed)


def _draws(problem, theta, batch, count, seed=3):
    """``count`` single GNB draws (count, P) from one generator, in order."""
    generator = _generator(seed)
    return torch.stack(
        [gnb_diagonal(problem, theta, batch, generator) for _ in range(count)]
    )


@pytest.mark.parametrize(
    ("key", "options", "reference"),
    [
        # categorical (matching): E = diag F = diag G
        ("moons_mlp", {"num_samples": 12, "hidden": (3,)}, "ggn"),
        # Gaussian with σ = 0.5 (matching): the NLL's 1/(2σ²) scale is in F_R = I/σ²
        ("linreg_2d", {"num_samples": 15, "sigma": 0.5}, "ggn"),
        # Bernoulli (matching)
        ("logreg_2d", {"num_samples": 15}, "ggn"),
        # non-matching tanh mean: E = diag F, not diag G
        ("linreg_2d", {"num_samples": 15, "loss": "gaussian_tanh_mean"}, "fisher"),
    ],
    ids=["categorical", "gaussian_sigma", "bernoulli", "tanh_mean_fisher"],
)
def test_gnb_mean_converges_to_the_fisher_diagonal(key, options, reference):
    problem = ex.problem(key, seed=1, **options)
    theta = problem.theta0 + 0.3 * torch.randn(
        problem.num_params, generator=_generator(7), dtype=problem.dtype
    )
    batch = problem.batch()
    draws = _draws(problem, theta, batch, DRAWS)
    mean = draws.mean(0)
    error = draws.std(0) / DRAWS**0.5
    exact = (ggn_ref if reference == "ggn" else fisher_ref)(problem, theta, batch)
    expected = exact.diagonal()
    assert (error > 0).all()
    deviation = (mean - expected).abs() / error
    assert float(deviation.max()) < SIGMAS, deviation
    # the operator averages the same draws (one forward pass, then k backwards)
    operator = ex.curvature(
        "sophia_gnb", problem, theta, generator=_generator(3), samples=DRAWS
    )
    assert relative_error(operator.diag(), mean) < 1e-12
    assert operator.products == DRAWS
    if reference == "fisher":  # the non-matching loss: F ≠ G, and GNB follows F
        ggn = ggn_ref(problem, theta, batch).diagonal()
        assert float(((mean - ggn).abs() / error).max()) > 10 * SIGMAS


@pytest.mark.parametrize(
    "name",
    ["moons", "rosenbrock", "gaussian_fit_log", "transformer_tiny", "poisson_log"],
)
def test_one_draw_is_b_times_the_squared_sampled_gradient(name):
    problem, theta, batch = by_name(name).build()
    batch = problem.batch() if batch is None else batch
    operator = ex.curvature("sophia_gnb", problem, theta, batch, generator=_generator())
    expected = gnb_draw_ref(problem, theta, batch, _generator())
    assert relative_error(operator.diag(), expected) < 1e-12
    assert relative_error(operator.dense(), torch.diag(expected)) < 1e-12
    # PSD by construction, and a subsampled batch is B = batch_size examples
    assert (operator.diag() >= 0).all()
    if batch.size > 3:
        generator = _generator()  # the examples first, then the targets
        order = torch.randperm(batch.size, generator=generator)[:3]
        sub = Batch(batch.inputs[order], batch.targets[order])
        expected = gnb_draw_ref(problem, theta, sub, generator)
        got = ex.curvature(
            "sophia_gnb", problem, theta, batch, generator=_generator(), batch_size=3
        ).diag()
        assert relative_error(got, expected) < 1e-12


def test_subsample_draws_without_replacement_by_randperm():
    problem = ex.problem("moons_mlp", num_samples=10, hidden=(2,))
    batch = problem.batch()
    order = torch.randperm(batch.size, generator=_generator())[:4]
    sub = subsample(batch, 4, _generator())
    assert torch.equal(sub.inputs, batch.inputs[order])
    assert torch.equal(sub.targets, batch.targets[order])
    assert subsample(batch, None, _generator()) is batch
    assert subsample(batch, batch.size, _generator()) is batch


def _all_signs(size, dtype):
    return torch.tensor(
        list(itertools.product((-1.0, 1.0), repeat=size)), dtype=dtype
    ).T


@pytest.mark.parametrize(
    ("key", "options"),
    [
        ("moons_mlp", {"num_samples": 10, "hidden": (2,)}),  # P = 12: 4096 vectors
        ("rosenbrock", {}),
        ("gaussian_fit", {"num_samples": 10}),
    ],
)
def test_hutchinson_over_all_sign_vectors_is_the_exact_diagonal(key, options):
    problem = ex.problem(key, seed=1, **options)
    theta = problem.theta0 + 0.2
    hessian = ex.curvature("hessian", problem, theta)
    signs = _all_signs(problem.num_params, theta.dtype)
    exact = hessian_ref(problem, theta).diagonal()
    assert relative_error(probe_average(hessian.matmat, signs), exact) < 1e-12
    # one sign vector alone is not the diagonal where H has off-diagonal terms
    one = probe_average(hessian.matmat, signs[:, :1])
    assert relative_error(one, exact) > 1e-6


def test_adahessian_is_unbiased_within_its_standard_error():
    problem = ex.problem("moons_mlp", num_samples=10, hidden=(2,), seed=1)
    theta = problem.theta0
    draws = torch.stack(
        [
            ex.curvature(
                "adahessian", problem, theta, generator=_generator(seed), probes=1
            ).diag()
            for seed in range(400)
        ]
    )
    error = draws.std(0) / 400**0.5
    exact = hessian_ref(problem, theta).diagonal()
    assert float(((draws.mean(0) - exact).abs() / error).max()) < SIGMAS


def test_spatial_averaging_is_the_mean_over_each_kernel():
    problem, theta, batch = by_name("mnist_cnn_tiny").build()
    shapes = problem.param_shapes
    assert any(len(shape) == 4 for shape in shapes)
    plain = ex.curvature(
        "adahessian",
        problem,
        theta,
        batch,
        generator=_generator(),
        spatial_averaging=False,
    ).diag()
    averaged = ex.curvature(
        "adahessian", problem, theta, batch, generator=_generator()
    ).diag()
    expected = spatial_average_ref(plain, shapes)
    assert relative_error(averaged, expected) < 1e-12
    assert relative_error(spatial_average(plain, shapes), expected) < 1e-12
    offset = 0
    for shape in shapes:
        numel = int(torch.Size(shape).numel())
        piece, raw = averaged[offset : offset + numel], plain[offset : offset + numel]
        if len(shape) == 4:  # constant inside each kernel, and really changed
            kernels = piece.view(shape[0] * shape[1], -1)
            assert torch.equal(kernels, kernels[:, :1].expand_as(kernels))
            assert not torch.equal(piece, raw)
        else:  # biases and the linear head are left alone
            assert torch.equal(piece, raw)
        offset += numel


def test_declared_tags_and_references():
    gnb, hutchinson = ex.CURVATURES["sophia_gnb"], ex.CURVATURES["adahessian"]
    assert gnb.tags().psd and gnb.tags().diagonal and gnb.tags().sampled
    assert not hutchinson.tags().psd and hutchinson.tags().diagonal
    assert hutchinson.tags().sampled
    assert (gnb.reference, hutchinson.reference) == ("ggn", "hessian")
