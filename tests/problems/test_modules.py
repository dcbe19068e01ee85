"""``problem_from_module``: your own nn.Module as a Problem, checked at the door.

References are float64 torch.func / autograd computations of the same objective
(tests/references.py), never the explorer's own products.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import explorer as ex
from explorer.plugins import load_plugin_file
from explorer.problems.spec import PROBLEMS
from tests.references import (
    ef_ref,
    fisher_ref,
    ggn_ref,
    hessian_ref,
    relative_error,
)

EXAMPLES = "examples/plugins/digits_convnet.py"


def conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Unflatten(1, (1, 5, 5)),
        nn.Conv2d(1, 2, kernel_size=3, padding=1),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(8, 3),
    ).double()


class TokenModel(nn.Module):
    """Embedding, LayerNorm and a linear read-out of the mean token: int64 inputs."""

    def __init__(self, vocabulary: int = 5, width: int = 3, classes: int = 3):
        super().__init__()
        self.embed = nn.Embedding(vocabulary, width)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, classes)

    def forward(self, tokens):
        return self.head(torch.tanh(self.norm(self.embed(tokens))).mean(1))


def conv_problem(**kwargs):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(12, 25, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 3, (12,), generator=generator)
    return ex.problem_from_module(conv_net(), x, y, "categorical", **kwargs)


def token_problem():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(2)
    tokens = torch.randint(0, 5, (10, 4), generator=generator)
    labels = torch.randint(0, 3, (10,), generator=generator)
    return ex.problem_from_module(TokenModel().double(), tokens, labels)


def perturbed(problem):
    noise = torch.randn(
        problem.num_params,
        generator=torch.Generator().manual_seed(3),
        dtype=torch.float64,
    )
    return problem.theta0 + 0.3 * noise


REFERENCES = {
    "hessian": hessian_ref,
    "ggn": ggn_ref,
    "fisher": fisher_ref,
    "ef": ef_ref,
}


@pytest.mark.parametrize("build", [conv_problem, token_problem], ids=["conv", "tokens"])
@pytest.mark.parametrize("key", list(REFERENCES))
def test_every_exact_matrix_matches_torch_func(build, key):
    problem = build()
    theta = perturbed(problem)
    dense = ex.curvature(key, problem, theta).dense()
    assert relative_error(dense, REFERENCES[key](problem, theta)) < 1e-10


@pytest.mark.parametrize("build", [conv_problem, token_problem], ids=["conv", "tokens"])
def test_diagonals_and_blocks_match_the_exact_ggn(build):
    problem = build()
    theta = perturbed(problem)
    ggn = ggn_ref(problem, theta)
    diagonal = ex.curvature("diag_ggn", problem, theta).diag()
    assert relative_error(diagonal, ggn.diagonal()) < 1e-10
    blocks = ex.curvature("block_ggn", problem, theta).dense()
    mask = torch.zeros_like(ggn, dtype=torch.bool)
    for _, span in problem.blocks():
        mask[span, span] = True
    assert relative_error(blocks, torch.where(mask, ggn, 0.0)) < 1e-10
    # every parameter sits in a block: none is dropped silently
    assert sum(s.stop - s.start for _, s in problem.blocks()) == problem.num_params


def test_theta0_is_the_modules_parameters_and_the_module_is_not_changed():
    model = conv_net().float()
    x = torch.randn(6, 25)
    problem = ex.problem_from_module(model, x, torch.zeros(6).long(), dtype="float64")
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()
    assert torch.equal(problem.theta0, flat)
    assert next(model.parameters()).dtype == torch.float32  # a copy was converted
    assert problem.model is not model
    assert all(p.requires_grad for p in problem.model.parameters())
    expected = nn.functional.cross_entropy(
        model.double()(x.double()), torch.zeros(6).long()
    )
    assert abs(float(problem.objective(problem.theta0)) - float(expected)) < 1e-12


def test_the_problem_runs_like_a_built_in_one():
    problem = conv_problem(
        test=(torch.randn(4, 25, dtype=torch.float64), torch.tensor([0, 1, 2, 0]))
    )
    history = ex.run_on(
        problem, "natural_gradient", {"lr": 0.5}, ex.RunSettings(steps=3)
    )
    assert history.status == "ok"
    losses = history.column("loss")
    assert losses[-1] < losses[0]
    assert len(history.column("test_loss")) == len(losses)


def test_dropout_is_evaluated_in_eval_mode_with_a_warning():
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 2)).double()
    x = torch.randn(30, 3, dtype=torch.float64)
    y = (x[:, 0] > 0).long()
    with pytest.warns(UserWarning, match="evaluated in eval mode"):
        problem = ex.problem_from_module(model, x, y)
    model.eval()
    with torch.no_grad():
        expected = nn.functional.cross_entropy(model(x), y)
    # deterministic: twice the same value, the eval-mode one
    assert float(problem.objective(problem.theta0)) == pytest.approx(
        float(expected), abs=1e-14
    )
    assert float(problem.objective(problem.theta0)) == float(
        problem.objective(problem.theta0)
    )
    assert "dropout is off" in problem.description
    # in eval mode the model is silent about it
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        ex.problem_from_module(model, x, y)


def test_batch_norm_uses_fixed_running_statistics_or_is_refused():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).double()
    with torch.no_grad():
        model[1].running_mean.fill_(0.5)
        model[1].running_var.fill_(2.0)
    model.eval()
    x = torch.randn(9, 3, dtype=torch.float64)
    y = torch.zeros(9).long()
    problem = ex.problem_from_module(model, x, y)
    # per-example losses do not depend on the batch: the running statistics are used
    single = problem.per_example_loss(problem.theta0, problem.batch(torch.tensor([4])))
    assert float(single[0]) == pytest.approx(
        float(problem.per_example_loss(problem.theta0)[4]), abs=1e-14
    )
    coupled = nn.Sequential(
        nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False), nn.Linear(4, 2)
    )
    with pytest.raises(ValueError, match="track_running_stats=False"):
        ex.problem_from_module(coupled.double(), x, y)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"targets": torch.tensor([0, 1, 3, 0, 1, 2])}, "label 3.*0..2"),
        ({"targets": torch.tensor([0, 1, -1, 0, 1, 2])}, "label -1"),
        ({"targets": torch.zeros(5).long()}, r"shape \(5,\).*N = 6"),
        ({"targets": torch.zeros(6, 3)}, "class labels must be"),
        ({"targets": torch.tensor([0, 1.5, 0, 0, 0, 0])}, "whole numbers"),
        ({"inputs": torch.full((6, 25), float("nan"))}, "nan at index"),
        ({"inputs": torch.full((6, 25), float("inf"))}, "inf at index"),
        (
            {"inputs": torch.randn(6, 24)},
            r"cannot be called on inputs of shape \(4, 24\)",
        ),
        ({"likelihood": "gaussian"}, r"needs targets \(6, 3\)"),
        ({"likelihood": "poisson", "targets": -torch.ones(6, 3)}, "≥ 0"),
        ({"likelihood": "bernoulli", "targets": 2 * torch.ones(6, 3)}, "≤ 1"),
        ({"likelihood": "gaussian_heteroscedastic"}, "2 outputs per target"),
        ({"likelihood": "cauchy"}, "likelihood = 'cauchy' is unknown"),
        ({"dtype": torch.float16}, "must be torch.float32 or torch.float64"),
    ],
)
def test_bad_input_is_refused_at_construction(change, message):
    arguments = {
        "model": conv_net(),
        "inputs": torch.randn(6, 25, dtype=torch.float64),
        "targets": torch.tensor([0, 1, 2, 0, 1, 2]),
    }
    arguments.update(change)
    with pytest.raises(ValueError, match=message):
        ex.problem_from_module(**arguments)


class Scalar(nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3, dtype=torch.float64))
        self.shape = shape

    def forward(self, x):
        return (x @ self.weight).reshape(self.shape(x))


class Square(torch.autograd.Function):
    """A hand-written autograd.Function without the torch.func hooks (research code
    often has these): autograd works, torch.func transforms refuse it."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 2 * x * grad


class CustomFunction(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2).double()

    def forward(self, x):
        return Square.apply(self.linear(x))


def test_models_that_cannot_be_used_are_refused_with_the_reason():
    x = torch.randn(6, 3, dtype=torch.float64)
    y = torch.zeros(6).long()
    with pytest.raises(ValueError, match="no parameters"):
        ex.problem_from_module(nn.Tanh(), x, y)
    with pytest.raises(ValueError, match=r"outputs of shape \(4,\); expected \(N, C\)"):
        ex.problem_from_module(Scalar(lambda x: (-1,)), x, x[:, 0], "gaussian")
    with pytest.raises(ValueError, match="torch.func cannot differentiate"):
        ex.problem_from_module(CustomFunction(), x, y)
    with pytest.raises(ValueError, match="must be a torch.nn.Module"):
        ex.problem_from_module(lambda t: t, x, y)
    # one output per example works once the model returns (N, 1)
    problem = ex.problem_from_module(Scalar(lambda x: (-1, 1)), x, x[:, 0], "gaussian")
    assert problem.targets.shape == (6, 1)


def test_a_plugin_registers_a_problem_the_cli_runs():
    report = load_plugin_file(EXAMPLES)
    try:
        assert report.ok, report.error
        assert report.problems == ("digits_convnet",)
        spec = PROBLEMS["digits_convnet"]
        assert spec.source.endswith("digits_convnet.py")
        problem = ex.problem("digits_convnet", channels=1, train_size=20)
        assert problem.num_params == 1 * 9 + 1 + 16 * 10 + 10
        assert problem.test_inputs.shape == (300, 1, 8, 8)
        # loading again replaces, never clashes
        assert load_plugin_file(EXAMPLES).ok
    finally:
        PROBLEMS.unregister("digits_convnet")


def test_the_cli_runs_a_plugin_problem(capsys):
    from explorer.cli import main

    try:
        code = main(
            [
                "run",
                "--plugin",
                EXAMPLES,
                "--problem",
                "digits_convnet",
                "--problem-option",
                "train_size=20",
                "--rule",
                "sgd",
                "--steps",
                "2",
            ]
        )
    finally:
        if "digits_convnet" in PROBLEMS:
            PROBLEMS.unregister("digits_convnet")
    assert code == 0
    assert '"loss"' in capsys.readouterr().out
