"""Closed-form likelihood quantities against autograd, enumeration and sampling."""

import math

import pytest
import torch

from explorer.problems.likelihoods import (
    BernoulliLoss,
    CategoricalLoss,
    GaussianHeteroscedasticLoss,
    GaussianLoss,
    GaussianMeanScaleLoss,
    GaussianTanhMeanLoss,
    PoissonLoss,
    ScaledLoss,
)
from tests.references import relative_error

GEN = torch.Generator().manual_seed(0)


def _outputs_targets(loss, n=7):
    c = loss.num_outputs
    outputs = torch.randn(n, c, generator=GEN, dtype=torch.float64)
    if isinstance(loss, GaussianMeanScaleLoss):
        if loss.parameterization == "sigma":
            outputs[:, 1] = outputs[:, 1].abs() + 0.5
        targets = torch.randn(n, 1, generator=GEN, dtype=torch.float64)
    elif isinstance(loss, GaussianHeteroscedasticLoss):  # (N, D) targets, C = 2D
        targets = torch.randn(n, loss.num_targets, generator=GEN, dtype=torch.float64)
    elif isinstance(loss, CategoricalLoss):
        targets = torch.randint(0, c, (n,), generator=GEN)
    elif isinstance(loss, BernoulliLoss):
        targets = torch.randint(0, 2, (n, c), generator=GEN).double()
    elif isinstance(loss, PoissonLoss):
        targets = torch.poisson(loss.rate(outputs), generator=GEN)
    else:
        targets = torch.randn(n, c, generator=GEN, dtype=torch.float64)
    return outputs, targets


LOSSES = [
    GaussianLoss(3, sigma=0.7),
    BernoulliLoss(1),
    BernoulliLoss(4),
    CategoricalLoss(5),
    GaussianTanhMeanLoss(2, sigma=1.3),
    GaussianMeanScaleLoss("sigma"),
    GaussianMeanScaleLoss("log_sigma"),
    PoissonLoss(1, link="log"),
    PoissonLoss(3, link="log"),
    PoissonLoss(2, link="softplus"),
    GaussianHeteroscedasticLoss(1),
    GaussianHeteroscedasticLoss(3),
]


def _per(loss, z, y):
    return loss.per_example(z.unsqueeze(0), y.unsqueeze(0))[0]


@pytest.mark.parametrize("loss", LOSSES, ids=repr)
def test_output_grad_and_hessian_match_autograd(loss):
    outputs, targets = _outputs_targets(loss)
    grads = torch.func.vmap(torch.func.grad(lambda z, y: _per(loss, z, y)))(
        outputs, targets
    )
    hessians = torch.func.vmap(torch.func.hessian(lambda z, y: _per(loss, z, y)))(
        outputs, targets
    )
    assert relative_error(loss.output_grad(outputs, targets), grads) < 1e-13
    assert relative_error(loss.output_hessian(outputs, targets), hessians) < 1e-13
    u = torch.randn(3, *outputs.shape, generator=GEN, dtype=torch.float64)
    expected = torch.einsum("nij,knj->kni", hessians, u)
    assert relative_error(loss.output_hessian_vp(outputs, targets, u), expected) < 1e-13


@pytest.mark.parametrize("loss", LOSSES, ids=repr)
def test_output_fisher_is_expected_outer_gradient_and_factorizes(loss):
    outputs, _ = _outputs_targets(loss, n=3)
    fisher = loss.output_fisher(outputs)
    # Monte Carlo over the model's own samples (independent of the closed form).
    draws = 40_000
    generator = torch.Generator().manual_seed(1)
    total = torch.zeros_like(fisher)
    repeated = outputs.repeat(draws, 1)
    samples = loss.sample(repeated, generator)
    grads = loss.output_grad(repeated, samples).view(draws, *outputs.shape)
    total = torch.einsum("snc,snd->ncd", grads, grads) / draws
    assert relative_error(total, fisher) < 0.06
    root = loss.output_fisher_sqrt(outputs)
    assert relative_error(root @ root.transpose(-1, -2), fisher) < 1e-13
    u = torch.randn(2, *outputs.shape, generator=GEN, dtype=torch.float64)
    expected = torch.einsum("nij,knj->kni", fisher, u)
    assert relative_error(loss.output_fisher_vp(outputs, u), expected) < 1e-13


@pytest.mark.parametrize(
    "loss",
    [GaussianLoss(2), BernoulliLoss(3), CategoricalLoss(4), PoissonLoss(2)],
    ids=repr,
)
def test_matching_losses_have_equal_output_hessian_and_fisher(loss):
    outputs, targets = _outputs_targets(loss)
    hessian = loss.output_hessian(outputs, targets)
    assert relative_error(hessian, loss.output_fisher(outputs)) < 1e-14
    assert loss.matching and loss.convex


def test_categorical_fisher_by_enumeration():
    loss = CategoricalLoss(4)
    outputs, _ = _outputs_targets(loss, n=5)
    p = torch.softmax(outputs, -1)
    expected = torch.zeros(5, 4, 4, dtype=torch.float64)
    for k in range(4):
        g = loss.output_grad(outputs, torch.full((5,), k))
        expected += p[:, k, None, None] * g.unsqueeze(-1) * g.unsqueeze(-2)
    assert relative_error(loss.output_fisher(outputs), expected) < 1e-14


def test_non_matching_tanh_mean_has_indefinite_output_hessian():
    loss = GaussianTanhMeanLoss(1)
    outputs = torch.tensor([[1.5]], dtype=torch.float64)
    targets = torch.tensor([[-3.0]], dtype=torch.float64)
    assert loss.output_hessian(outputs, targets)[0, 0, 0] < 0
    assert loss.output_fisher(outputs)[0, 0, 0] > 0


@pytest.mark.parametrize("link", PoissonLoss.links)
def test_poisson_fisher_by_summing_over_the_counts(link):
    """E_y[∇L ∇Lᵀ] summed exactly over y = 0…80 (the tail beyond is < 1e-30 for
    rates below 10), and the Hessian's expectation equals it (for every loss, the
    expected output Hessian is the output Fisher)."""
    loss = PoissonLoss(2, link=link)
    outputs = torch.tensor([[0.3, -1.2], [1.5, 0.1]], dtype=torch.float64)
    rate = loss.rate(outputs)
    fisher = torch.zeros(2, 2, 2, dtype=torch.float64)
    expected_hessian = torch.zeros_like(fisher)
    for count in range(81):
        y = torch.full_like(outputs, float(count))
        pmf = torch.exp(count * rate.log() - rate - math.lgamma(count + 1))
        g = loss.output_grad(outputs, y)
        # the two outputs are independent counts: E over the pair of outer products
        fisher += torch.diag_embed(pmf * g * g)
        expected_hessian += torch.diag_embed(pmf) * loss.output_hessian(outputs, y)
    assert relative_error(loss.output_fisher(outputs), fisher) < 1e-12
    assert relative_error(expected_hessian, fisher) < 1e-12


def test_the_softplus_link_is_not_matching_and_its_hessian_depends_on_the_counts():
    loss = PoissonLoss(1, link="softplus")
    outputs = torch.tensor([[0.4]], dtype=torch.float64)
    low = loss.output_hessian(outputs, torch.zeros(1, 1, dtype=torch.float64))
    high = loss.output_hessian(outputs, torch.full((1, 1), 6.0, dtype=torch.float64))
    assert not loss.matching and PoissonLoss(1).matching
    assert float(low) != pytest.approx(float(high))
    assert float(low) > 0 and float(high) > 0  # convex in z for every count
    with pytest.raises(ValueError, match="link"):
        PoissonLoss(1, link="identity")


def test_gaussian_scale_fisher_closed_forms():
    sigma_loss = GaussianMeanScaleLoss("sigma")
    fisher = sigma_loss.output_fisher(torch.tensor([[0.3, 2.0]], dtype=torch.float64))
    assert torch.allclose(
        fisher[0], torch.diag(torch.tensor([0.25, 0.5], dtype=torch.float64))
    )
    log_loss = GaussianMeanScaleLoss("log_sigma")
    fisher = log_loss.output_fisher(
        torch.tensor([[0.3, math.log(2.0)]], dtype=torch.float64)
    )
    assert torch.allclose(
        fisher[0], torch.diag(torch.tensor([0.25, 2.0], dtype=torch.float64))
    )


@pytest.mark.parametrize("loss", LOSSES, ids=repr)
def test_torch_loss_equals_value(loss):
    outputs, targets = _outputs_targets(loss)
    module = loss.torch_loss()
    assert isinstance(module, torch.nn.Module)
    value = float(loss.value(outputs, targets))
    assert loss.loss_scale * float(module(outputs, targets)) == pytest.approx(
        value, rel=1e-13
    )
    scaled = loss.scaled_torch_loss()
    assert float(scaled(outputs, targets)) == pytest.approx(value, rel=1e-13)


def test_torch_loss_is_a_builtin_where_one_exists():
    assert isinstance(CategoricalLoss(3).torch_loss(), torch.nn.CrossEntropyLoss)
    assert isinstance(BernoulliLoss(1).torch_loss(), torch.nn.BCEWithLogitsLoss)
    # plain PyTorch modules (what curvlinops and BackPACK accept), the factor stated
    gaussian = GaussianLoss(2, sigma=1.0)  # σ² = C/2: MSELoss is exactly ours
    assert type(gaussian.torch_loss()) is torch.nn.MSELoss
    assert gaussian.loss_scale == 1.0
    assert GaussianLoss(1, sigma=1.0).loss_scale == 0.5
    assert BernoulliLoss(4).loss_scale == 4.0
    poisson = PoissonLoss(3)  # PyTorch averages over N·C entries
    assert type(poisson.torch_loss()) is torch.nn.PoissonNLLLoss
    assert poisson.loss_scale == 3.0
    scaled = GaussianLoss(1, sigma=1.0).scaled_torch_loss()
    assert isinstance(scaled, ScaledLoss) and type(scaled.base) is torch.nn.MSELoss


@pytest.mark.parametrize("loss", LOSSES, ids=repr)
def test_kl_is_zero_at_equal_outputs_and_matches_monte_carlo(loss):
    outputs_p, _ = _outputs_targets(loss, n=2)
    outputs_q = outputs_p + 0.3
    assert loss.kl(outputs_p, outputs_p).abs().max() < 1e-12
    draws = 60_000
    generator = torch.Generator().manual_seed(3)
    repeated_p, repeated_q = outputs_p.repeat(draws, 1), outputs_q.repeat(draws, 1)
    samples = loss.sample(repeated_p, generator)
    log_ratio = loss.per_example(repeated_q, samples) - loss.per_example(
        repeated_p, samples
    )
    estimate = log_ratio.view(draws, 2).mean(0)
    assert torch.allclose(loss.kl(outputs_p, outputs_q), estimate, rtol=0.1, atol=3e-3)


def test_sampling_is_deterministic_with_a_generator():
    loss = CategoricalLoss(3)
    outputs = torch.zeros(10, 3, dtype=torch.float64)
    first = loss.sample(outputs, torch.Generator().manual_seed(9))
    second = loss.sample(outputs, torch.Generator().manual_seed(9))
    assert torch.equal(first, second)


def test_invalid_likelihood_settings():
    with pytest.raises(ValueError, match="sigma"):
        GaussianLoss(1, sigma=0.0)
    with pytest.raises(ValueError, match="parameterization"):
        GaussianMeanScaleLoss("variance")
    with pytest.raises(ValueError, match="num_outputs"):
        CategoricalLoss(0)
