"""FOOF (K-FAC's ``output_factor="identity"``) and the ``foof`` rule, by hand.

The block of layer l is kron(I_out, A_l) with A_l = (1/N) Σ ā āᵀ of the layer
inputs computed here by a hand-written forward pass (and ``unfold`` patches for a
convolution), and the rule's first step is −lr·G (A + λI)⁻¹ per layer with the
``foof`` defaults (exact damping, λ fixed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import explorer as ex
from tests.references import relative_error

DTYPE = torch.float64


def _moons():
    return ex.problem("moons_mlp", num_samples=30, hidden=(4,))


def _hand_inputs(problem, theta):
    """ā per layer of the moons MLP (Linear → tanh → Linear), with a ones column."""
    params = problem.unflatten(theta)
    x = problem.inputs
    hidden = torch.tanh(x @ params["0.weight"].T + params["0.bias"])
    ones = torch.ones(len(x), 1, dtype=DTYPE)
    return [torch.cat([x, ones], 1), torch.cat([hidden, ones], 1)]


def _row_major(layer):
    """θ indices of V̄ = [V_W, v_b] of ``layer`` in row-major order."""
    weight = torch.arange(layer.weight.start, layer.weight.stop)
    grid = weight.view(layer.out_features, layer.in_features)
    bias = torch.arange(layer.bias.start, layer.bias.stop)
    return torch.cat([grid, bias.unsqueeze(1)], 1).reshape(-1)


def test_dense_is_kron_identity_a_on_an_mlp():
    problem = _moons()
    theta = problem.theta0 + 0.2
    op = ex.curvature("kfac", problem, theta, output_factor="identity")
    dense = op.dense()
    assert [name for name, _ in problem.blocks()] == ["0", "2"]
    for layer, a_bar in zip(problem.layers, _hand_inputs(problem, theta), strict=True):
        a = a_bar.T @ a_bar / len(a_bar)
        index = _row_major(layer)
        expected = torch.kron(torch.eye(layer.out_features, dtype=DTYPE), a)
        assert relative_error(dense[index[:, None], index], expected) < 1e-12
        # its trace is out·tr A, not the Fisher's (by design)
        trace = float(dense[index, index].sum())
        assert abs(trace - layer.out_features * float(a.trace())) < 1e-12 * trace
    fisher_trace = ex.curvature("fisher", problem, theta).dense().trace()
    assert float(dense.trace() / fisher_trace) > 3  # far from the Fisher's scale
    tags = op.tags
    assert tags.kronecker and tags.psd and not tags.sampled


def test_dense_is_kron_identity_a_on_a_conv_net():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.Tanh(), nn.Flatten(),
        nn.Linear(27, 4),
    )  # fmt: skip
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(8, 2, 5, 5, generator=generator, dtype=DTYPE)
    targets = torch.randint(0, 4, (8,), generator=generator)
    problem = ex.problem_from_module(model.double(), inputs, targets, "categorical")
    op = ex.curvature("kfac", problem, problem.theta0, output_factor="identity")
    patches = F.unfold(F.pad(inputs, (1, 1, 1, 1)), 3, stride=2).transpose(1, 2)
    patches = patches.reshape(-1, patches.shape[-1])  # expand: (N·L, 18)
    a_bar = torch.cat([patches, torch.ones(len(patches), 1, dtype=DTYPE)], 1)
    a = a_bar.T @ a_bar / len(a_bar)
    conv = op.layers[0]
    index = _row_major(conv)
    expected = torch.kron(torch.eye(3, dtype=DTYPE), a)
    assert relative_error(op.dense()[index[:, None], index], expected) < 1e-12


def test_foof_rule_first_step_is_g_times_damped_inverse_a():
    problem = _moons()
    rule = ex.RULES["foof"]
    defaults = rule.resolve({})
    assert defaults["output_factor"] == "identity"
    assert defaults["damping_mode"] == "exact"
    assert defaults["damping_adaptation"] == "fixed"
    lr, damping = defaults["lr"], defaults["damping"]
    config = ex.RunConfig(
        "moons_mlp",
        {"num_samples": 30, "hidden": (4,)},
        "foof",
        steps=1,
        device="cpu",
    )
    history = ex.run(config)
    assert history.status == "ok", history.message
    theta0 = history.trajectory[0]
    step = history.trajectory[1] - theta0
    grad = problem.grad(theta0)
    for layer, a_bar in zip(problem.layers, _hand_inputs(problem, theta0), strict=True):
        a = a_bar.T @ a_bar / len(a_bar)
        index = _row_major(layer)
        g = grad[index].view(layer.out_features, -1)
        eye = torch.eye(len(a), dtype=DTYPE)
        expected = -lr * torch.linalg.solve(a + damping * eye, g.T).T
        assert relative_error(step[index].view_as(g), expected) < 1e-10
    assert history.last("loss") < history.column("loss")[0]
