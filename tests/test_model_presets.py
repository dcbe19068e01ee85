"""The presets on the newer model families (explorer/presets/models.py): their
measured numbers against references that share no code with the library.

Per-layer GGN blocks come from ``torch.func`` Jacobians in that layer's parameters
only and autograd output Hessians (tests/references.py); the heteroscedastic and
Poisson Fishers from their closed forms J_iᵀ diag(e^{−s}, ½) J_i and
J_iᵀ (λ'²/λ) J_i; the re-cut GGN's loss is checked to be the same function.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import jacrev

from explorer.curvature import curvature
from explorer.presets import PRESETS
from explorer.presets import models as mp
from explorer.presets.helpers import problem_on_cpu
from explorer.problems.base import problem_from_model
from tests.references import output_hessian_ref, relative_error

TINY_CNN = {"image_size": 7, "channels": (2, 3), "train_size": 24}


def layer_ggn_ref(problem, theta, span):
    """(1/N) Σ J_lᵀ ∇²_z L J_l with J_l the Jacobian in θ[span] only (torch.func)."""

    def outputs(part):
        return problem.predict(
            torch.cat([theta[: span.start], part, theta[span.stop :]])
        )

    jac = jacrev(outputs)(theta[span].detach())  # (N, C, P_l)
    with torch.no_grad():
        z = problem.predict(theta)
    inner = output_hessian_ref(problem, z, problem.targets)
    return torch.einsum("ncp,ncd,ndq->pq", jac, inner, jac) / jac.shape[0]


def _kfac_blocks(problem, theta, form):
    op = curvature("kfac", problem, theta, kfac_approx=form)
    dense = op.dense()
    return [(span, dense[span, span]) for span in op.block_spans]


# ----------------------------------------------------------------------- C7
@pytest.mark.parametrize("setting", list(mp.SETTINGS))
def test_each_form_is_exact_on_its_linear_conv_net(setting):
    """Against per-layer blocks by torch.func: the form named by the setting is
    exact to rounding on every layer, the other form is not on the 3 × 3 layer.
    """
    cnn = problem_on_cpu("mnist_cnn", TINY_CNN)
    net = mp.linear_conv_net(setting, cnn.inputs[:12], cnn.targets[:12], channels=3)
    theta = net.theta0
    other = "reduce" if setting == "expand" else "expand"
    exact = _kfac_blocks(net, theta, setting)
    wrong = _kfac_blocks(net, theta, other)
    assert len(exact) == 3
    for (span, block), (_, wrong_block) in zip(exact, wrong, strict=True):
        reference = layer_ggn_ref(net, theta, span)
        assert float(reference.norm()) > 1e-3
        assert relative_error(block, reference) < 1e-10, (setting, span)
        if span.start == 0:  # the 3 × 3 convolution, shared over all 49 pixels
            assert relative_error(wrong_block, reference) > 0.05
    # the library's GGN on these nets is the torch.func one
    measured = mp.per_layer(net, theta)
    for span, error in zip(measured["spans"], measured["errors"][setting]):
        assert error < 1e-10
        reference = layer_ggn_ref(net, theta, span)
        assert relative_error(measured["ggn"][span, span], reference) < 1e-12


def test_exactness_needs_the_network_to_be_linear():
    """With a tanh after the 3 × 3 convolution the expand net's blocks are no longer
    Kronecker products: the check's 1e-10 bound is a property of the linear net.
    """
    cnn = problem_on_cpu("mnist_cnn", TINY_CNN)
    net = mp.linear_conv_net("expand", cnn.inputs[:12], cnn.targets[:12], channels=3)
    layers = list(net.model)
    bent = nn.Sequential(*layers[:2], nn.Tanh(), *layers[2:])
    problem = problem_from_model(
        bent, torch.float64, torch.device("cpu"), key="bent", label="bent",
        loss=net.loss, inputs=net.inputs, targets=net.targets,
    )  # fmt: skip
    assert torch.equal(problem.theta0, net.theta0)
    errors = mp.per_layer(problem, problem.theta0)["errors"]["expand"]
    assert errors[0] > 1e-3, errors


def test_cnn_numbers_match_torch_func_blocks():
    """Every per-layer error the MNIST CNN figure and table show, and the check's
    minimum over the convolutions, against torch.func GGN blocks.
    """
    preset = PRESETS["c7_kfac_expand_reduce"]
    setup = preset.setup("small")
    measured = preset.measure(setup)
    cnn = setup.build_problem()
    theta = cnn.theta0
    errors = {}
    for form in mp.APPROXIMATIONS:
        for index, (span, block) in enumerate(_kfac_blocks(cnn, theta, form)):
            reference = layer_ggn_ref(cnn, theta, span)
            errors[index, form] = relative_error(block, reference)
    names = measured["names"]
    assert len(names) == 3 and names[0].startswith("conv 1 (3×3, 1→2, 49 pixels")
    assert names[1].startswith("conv 2 (3×3, 2→3, 9 pixels")
    for (index, form), error in errors.items():
        quality = measured["qualities"][f"{mp.short(names[index])} · {form}"]
        assert quality.relative_frobenius_error == pytest.approx(error, rel=1e-9)
    by_name = {m.name: m for m in measured.measurements}
    conv_min = by_name[
        "min layer error over the convolutions and both forms, MNIST CNN"
    ]
    assert conv_min.value == pytest.approx(
        min(errors[i, f] for i in (0, 1) for f in mp.APPROXIMATIONS), rel=1e-9
    )
    assert conv_min.passed
    # the table in the notes carries the same numbers
    assert f"{errors[1, 'reduce']:.3g}" in measured.notes[0]


def test_shared_positions_of_the_tiny_cnn():
    cnn = problem_on_cpu("mnist_cnn", TINY_CNN)
    # 7 × 7 kept by the padded conv, pooled to 3 × 3, then to 1 × 1 for the read-out
    assert mp.shared_positions(cnn.model, cnn.inputs[:1]) == [49, 9, 1]


# ----------------------------------------------------------------------- C1
def _closed_form_fisher(problem, theta, output_fisher):
    jac = jacrev(lambda t: problem.predict(t))(theta)
    with torch.no_grad():
        inner = output_fisher(problem.predict(theta))
    return torch.einsum("ncp,ncd,ndq->pq", jac, inner, jac) / jac.shape[0]


def _heteroscedastic_fisher(z):
    return torch.diag_embed(torch.stack([torch.exp(-z[:, 1]), 0.5 + 0 * z[:, 1]], 1))


def _poisson_fisher(link):
    def inner(z):
        if link == "log":
            return torch.exp(z).unsqueeze(-1)
        rate = nn.functional.softplus(z)
        return (torch.sigmoid(z) ** 2 / rate).unsqueeze(-1)

    return inner


def test_split_numbers_match_closed_forms():
    preset = PRESETS["c1_network_loss_split"]
    setup = preset.setup("small")
    measured = preset.measure(setup)
    values = [m.value for m in measured.measurements]
    hetero = setup.build_problem()
    theta = hetero.theta0
    fisher = _closed_form_fisher(hetero, theta, _heteroscedastic_fisher)
    with torch.no_grad():
        z = hetero.predict(theta)
    jac = jacrev(lambda t: hetero.predict(t))(theta)
    inner = output_hessian_ref(hetero, z, hetero.targets)
    ggn = torch.einsum("ncp,ncd,ndq->pq", jac, inner, jac) / jac.shape[0]
    f_shown = measured["matrices"]["F (Fisher)"]
    g_shown = measured["matrices"]["G (GGN)"]
    assert relative_error(f_shown, fisher) < 1e-12
    assert relative_error(g_shown, ggn) < 1e-12
    assert values[2] == pytest.approx(relative_error(fisher, ggn), rel=1e-9)
    g_values = torch.linalg.eigvalsh(ggn)
    assert values[3] == pytest.approx(float(g_values[0] / g_values[-1]), rel=1e-6)
    assert values[3] < -1e-3
    # the Poisson problems, per link
    for label, (key, options) in setup["counts"].items():
        problem = problem_on_cpu(key, options)
        link = problem.loss.link
        reference = _closed_form_fisher(problem, problem.theta0, _poisson_fisher(link))
        g = curvature("ggn", problem, problem.theta0).dense()
        gap = relative_error(reference, g)
        if link == "log":
            assert gap < 1e-12, label
        else:
            assert gap > 1e-2, label
    assert all(m.passed for m in measured.measurements)


def test_the_recut_losses_are_the_same_functions():
    """ℓ(η(z), y) is the library's loss at z: re-cutting moves the map, not the loss."""
    hetero = problem_on_cpu("heteroscedastic_1d", {"num_samples": 40, "hidden": 4})
    z = hetero.predict(hetero.theta0).detach()
    y = hetero.targets
    eta = mp.gaussian_natural(z)
    assert bool((eta[:, 1] < 0).all())
    recut = torch.stack([mp.gaussian_natural_nll(e, t) for e, t in zip(eta, y)])
    assert relative_error(recut, hetero.loss.per_example(z, y)) < 1e-13
    counts = problem_on_cpu("poisson_2d", {"num_samples": 30, "link": "softplus"})
    z = counts.predict(counts.theta0).detach()
    eta = mp.poisson_natural(z)
    recut = torch.stack(
        [mp.poisson_natural_nll(e, t) for e, t in zip(eta, counts.targets)]
    )
    assert relative_error(recut, counts.loss.per_example(z, counts.targets)) < 1e-13


def test_cutting_at_the_outputs_gives_the_library_ggn():
    """ggn_at_cut with the identity map and the loss itself is the GGN: the helper
    measures G_η with the same machinery that would give G at z.
    """
    hetero = problem_on_cpu("heteroscedastic_1d", {"num_samples": 40, "hidden": 4})

    def loss(z, y):
        return hetero.loss.per_example(z.unsqueeze(0), y.unsqueeze(0))[0]

    same = mp.ggn_at_cut(hetero, hetero.theta0, lambda z: z, loss)
    ggn = curvature("ggn", hetero, hetero.theta0).dense()
    assert relative_error(same, ggn) < 1e-12
