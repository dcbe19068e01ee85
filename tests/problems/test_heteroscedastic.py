"""The heteroscedastic Gaussian (μ, log σ²) and the ``heteroscedastic_1d`` problem.

float64 throughout. The likelihood's closed forms are checked against autograd of
``per_example`` and against Gauss–Hermite quadrature of the definitions; the problem
shows what the loss is there for: F ≠ G, and a GGN with negative eigenvalues where
the Fisher stays PSD, while a fixed-variance Gaussian on the same network has F = G.
"""

import dataclasses
import math

import numpy as np
import pytest
import torch

import explorer as ex
from explorer.landscape.function_space import fitted_curve
from explorer.problems.likelihoods import (
    LIKELIHOODS,
    GaussianHeteroscedasticLoss,
    GaussianLoss,
    LikelihoodLoss,
)
from tests.references import fisher_ref, relative_error

DTYPE = torch.float64


def _outputs_targets(num_targets, n=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    outputs = torch.randn(n, 2 * num_targets, generator=generator, dtype=DTYPE)
    targets = torch.randn(n, num_targets, generator=generator, dtype=DTYPE)
    return outputs, targets


def _autograd(loss, outputs, targets):
    """Per-example ∇_z L and ∇²_z L by autograd of ``per_example`` (N, C), (N, C, C)."""

    def one(z, y):
        return loss.per_example(z.unsqueeze(0), y.unsqueeze(0))[0]

    grads = torch.func.vmap(torch.func.grad(one))(outputs, targets)
    hessians = torch.func.vmap(torch.func.hessian(one))(outputs, targets)
    return grads, hessians


def _hermite(num_targets, nodes=40):
    """Tensor-product probabilists' Gauss–Hermite rule for E over N(0, I_D):
    points (S, D), weights (S,) summing to 1 (exact for polynomials of degree
    < 2·nodes in each coordinate)."""
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / math.sqrt(2 * math.pi)
    grids = np.meshgrid(*([x] * num_targets), indexing="ij")
    weights = np.meshgrid(*([w] * num_targets), indexing="ij")
    points = np.stack([g.ravel() for g in grids], -1)
    mass = np.prod(np.stack([g.ravel() for g in weights], -1), -1)
    return torch.tensor(points, dtype=DTYPE), torch.tensor(mass, dtype=DTYPE)


# ---------------------------------------------------------------- the likelihood
def test_it_is_registered_exported_and_not_matching_or_convex():
    assert LIKELIHOODS["gaussian_heteroscedastic"] is GaussianHeteroscedasticLoss
    assert ex.problems.GaussianHeteroscedasticLoss is GaussianHeteroscedasticLoss
    loss = GaussianHeteroscedasticLoss(3)
    assert (loss.num_targets, loss.num_outputs) == (3, 6)
    assert not loss.matching and not loss.convex and not loss.classification
    assert "log σ²" in loss.describe() and "½log 2π dropped" in loss.describe()


def test_value_is_the_gaussian_nll_with_the_layout_means_then_log_variances():
    loss = GaussianHeteroscedasticLoss(2)
    outputs = torch.tensor([[0.5, -1.0, 0.3, -0.7]], dtype=DTYPE)  # μ1 μ2 s1 s2
    targets = torch.tensor([[1.5, 2.0]], dtype=DTYPE)
    expected = 0.0
    for mu, s, y in ((0.5, 0.3, 1.5), (-1.0, -0.7, 2.0)):
        variance = math.exp(s)
        # −log N(y; μ, σ²) − ½ log 2π
        expected += 0.5 * math.log(variance) + (y - mu) ** 2 / (2 * variance)
    assert float(loss.value(outputs, targets)) == pytest.approx(expected, rel=1e-14)
    assert torch.equal(loss.mean(outputs), outputs[:, :2])
    assert torch.allclose(loss.variance(outputs), outputs[:, 2:].exp(), rtol=1e-15)
    assert loss.accuracy(outputs, targets) is None


@pytest.mark.parametrize("num_targets", [1, 2, 3])
def test_output_grad_hessian_and_products_match_autograd(num_targets):
    loss = GaussianHeteroscedasticLoss(num_targets)
    outputs, targets = _outputs_targets(num_targets)
    grads, hessians = _autograd(loss, outputs, targets)
    assert relative_error(loss.output_grad(outputs, targets), grads) < 1e-14
    assert relative_error(loss.output_hessian(outputs, targets), hessians) < 1e-14
    u = torch.randn(3, *outputs.shape, generator=torch.Generator().manual_seed(1))
    u = u.to(DTYPE)
    expected = torch.einsum("nij,knj->kni", hessians, u)
    assert relative_error(loss.output_hessian_vp(outputs, targets, u), expected) < 1e-14
    product = loss.output_hessian_product(outputs, targets)
    assert relative_error(product(u), expected) < 1e-14


def test_output_hessian_is_indefinite_exactly_where_y_differs_from_the_mean():
    loss = GaussianHeteroscedasticLoss(1)
    mu, s = 0.4, -0.6
    outputs = torch.tensor([[mu, s]] * 3, dtype=DTYPE)
    targets = torch.tensor([[mu], [mu + 0.1], [mu - 2.5]], dtype=DTYPE)
    hessians = loss.output_hessian(outputs, targets)
    residuals = targets[:, 0] - mu
    # det = v·½r²v − (rv)² = −½ r² e^{−2s}
    expected_det = -0.5 * residuals**2 * math.exp(-2 * s)
    assert torch.allclose(torch.linalg.det(hessians), expected_det, atol=1e-15)
    smallest = torch.linalg.eigvalsh(hessians)[:, 0]
    assert smallest[0] == pytest.approx(0.0, abs=1e-15)  # y = μ: diag(v, 0), PSD
    assert smallest[1] < 0 and smallest[2] < smallest[1] < -1e-4
    # the Fisher is positive definite at the same outputs
    assert torch.linalg.eigvalsh(loss.output_fisher(outputs)).min() > 0.4


@pytest.mark.parametrize("num_targets", [1, 2])
def test_output_fisher_is_the_expected_outer_score_by_gauss_hermite(num_targets):
    """E_{y~N(μ, e^s)}[∇_z L ∇_z Lᵀ] with the score from autograd, by quadrature in
    y = μ + e^{s/2} ε (the integrand is a polynomial of degree 4 in ε: exact)."""
    loss = GaussianHeteroscedasticLoss(num_targets)
    outputs, _ = _outputs_targets(num_targets, n=4, seed=2)
    mu, s = outputs[:, :num_targets], outputs[:, num_targets:]
    points, mass = _hermite(num_targets, nodes=40 if num_targets == 1 else 12)
    n, c = outputs.shape
    # every (node, example) pair at once: targets (S, N, D) flattened to (S·N, D)
    y = mu + (0.5 * s).exp() * points.unsqueeze(1)
    score, hessian = _autograd(
        loss, outputs.repeat(len(points), 1), y.reshape(-1, num_targets)
    )
    score, hessian = score.view(-1, n, c), hessian.view(-1, n, c, c)
    fisher = torch.einsum("s,snc,snd->ncd", mass, score, score)
    expected_hessian = torch.einsum("s,sncd->ncd", mass, hessian)
    closed = loss.output_fisher(outputs)
    assert relative_error(closed, fisher) < 1e-10
    # the closed form in words: diag(e^{−s}, ½) per dimension
    diagonal = torch.cat([torch.exp(-s), torch.full_like(s, 0.5)], -1)
    assert torch.equal(closed, torch.diag_embed(diagonal))
    # the expected output Hessian is the Fisher, for any likelihood
    assert relative_error(expected_hessian, fisher) < 1e-10
    root = loss.output_fisher_sqrt(outputs)
    assert relative_error(root @ root.transpose(-1, -2), closed) < 1e-15
    u = torch.randn(2, *outputs.shape, generator=torch.Generator().manual_seed(3))
    u = u.to(DTYPE)
    expected = torch.einsum("nij,knj->kni", closed, u)
    assert relative_error(loss.output_fisher_vp(outputs, u), expected) < 1e-15
    assert relative_error(loss.output_fisher_product(outputs)(u), expected) < 1e-15


def test_samples_have_mean_mu_and_variance_exp_s():
    """200,000 draws per (μ, s); bounds at 5 standard errors, tight enough to
    exclude the other conventions (σ = e^s, σ² = s, σ = 1)."""
    loss = GaussianHeteroscedasticLoss(1)
    draws = 200_000
    outputs = torch.tensor([[1.3, 0.8], [-0.5, -1.5]], dtype=DTYPE).repeat(draws, 1)
    samples = loss.sample(outputs, torch.Generator().manual_seed(11))
    assert samples.shape == (2 * draws, 1) and samples.dtype == DTYPE
    per_point = samples.view(draws, 2)
    for column, (mu, s) in enumerate(((1.3, 0.8), (-0.5, -1.5))):
        variance = math.exp(s)
        mean_se = math.sqrt(variance / draws)
        var_se = variance * math.sqrt(2 / draws)  # the sample variance of a normal
        sample_mean = float(per_point[:, column].mean())
        sample_var = float(per_point[:, column].var())
        assert abs(sample_mean - mu) < 5 * mean_se
        assert abs(sample_var - variance) < 5 * var_se
        for wrong in (math.exp(2 * s), abs(s), 1.0):
            assert abs(sample_var - wrong) > 20 * var_se
    first = loss.sample(outputs[:10], torch.Generator().manual_seed(4))
    again = loss.sample(outputs[:10], torch.Generator().manual_seed(4))
    assert torch.equal(first, again)


def test_kl_matches_the_closed_form_and_gauss_hermite_quadrature():
    loss = GaussianHeteroscedasticLoss(2)
    outputs_p = torch.tensor([[0.2, -1.0, 0.5, -0.3]], dtype=DTYPE)
    outputs_q = torch.tensor([[1.1, -0.4, -0.2, 0.6]], dtype=DTYPE)
    # closed form per dimension, written out in scalars
    expected = 0.0
    for d in range(2):
        mp, mq = float(outputs_p[0, d]), float(outputs_q[0, d])
        vp, vq = math.exp(outputs_p[0, 2 + d]), math.exp(outputs_q[0, 2 + d])
        expected += 0.5 * (math.log(vq / vp) + (vp + (mp - mq) ** 2) / vq - 1)
    kl = float(loss.kl(outputs_p, outputs_q)[0])
    assert kl == pytest.approx(expected, rel=1e-14)
    # E_p[log p − log q] = E_p[L_q − L_p] by quadrature (the constants cancel)
    points, mass = _hermite(2, nodes=20)
    mu, s = outputs_p[:, :2], outputs_p[:, 2:]
    y = mu + (0.5 * s).exp() * points
    log_ratio = loss.per_example(outputs_q.expand(len(y), -1), y) - loss.per_example(
        outputs_p.expand(len(y), -1), y
    )
    assert float((mass * log_ratio).sum()) == pytest.approx(kl, rel=1e-12)
    assert float(loss.kl(outputs_p, outputs_p)[0]) == pytest.approx(0.0, abs=1e-15)
    assert float(loss.kl(outputs_q, outputs_p)[0]) > 0


def test_torch_loss_is_our_module_not_a_pytorch_loss():
    loss = GaussianHeteroscedasticLoss(2)
    module = loss.torch_loss()
    assert type(module) is LikelihoodLoss and loss.loss_scale == 1.0
    outputs, targets = _outputs_targets(2)
    assert float(module(outputs, targets)) == float(loss.value(outputs, targets))


def test_invalid_sizes_are_refused():
    with pytest.raises(ValueError, match="num_targets = 0"):
        GaussianHeteroscedasticLoss(0)
    loss = GaussianHeteroscedasticLoss(1)
    outputs = torch.zeros(3, 2, dtype=DTYPE)
    # (N, 2) targets would broadcast against μ (N, 1) without the check
    with pytest.raises(ValueError, match="targets have 2 columns"):
        loss.value(outputs, torch.zeros(3, 2, dtype=DTYPE))
    with pytest.raises(ValueError, match="needs 2"):
        loss.output_fisher(torch.zeros(3, 3, dtype=DTYPE))


# ------------------------------------------------------------------- the problem
def _tiny():
    return ex.problem("heteroscedastic_1d", num_samples=40, hidden=4)


def test_problem_builds_a_1_h_2_tanh_mlp_on_1d_inputs_with_a_test_split():
    p = ex.problem("heteroscedastic_1d")
    assert (p.num_examples, p.test_inputs.shape[0]) == (160, 40)
    assert p.inputs.shape == (160, 1) and p.targets.shape == (160, 1)
    assert p.num_params == 4 * 16 + 2  # 1·H + H + H·2 + 2
    assert [layer.out_features for layer in p.layers] == [16, 2]
    assert any(isinstance(m, torch.nn.Tanh) for m in p.model)
    assert isinstance(p.loss, GaussianHeteroscedasticLoss)
    assert p.predict(p.theta0).shape == (160, 2)
    spec = ex.PROBLEMS["heteroscedastic_1d"]
    assert spec.group == "networks" and "regression" in spec.tags
    assert set(p.evaluate(p.theta0)) == {"loss", "test_loss"}
    xs, mean = fitted_curve(p, p.theta0)  # 1-D regression: a fitted mean curve
    assert mean.shape == (len(xs), 1)


def test_noise_grows_with_abs_x():
    p = ex.problem("heteroscedastic_1d", num_samples=4000, noise=0.2, test_fraction=0)
    x, y = p.inputs[:, 0], p.targets[:, 0]
    residual = y - torch.sin(x)
    inner, outer = x.abs() < 0.5, x.abs() > 2.0
    # true std 0.2·(0.2 + |x|): about 0.07 inside, 0.5 outside
    assert float(residual[outer].std() / residual[inner].std()) > 4
    standardized = residual / (0.2 * (0.2 + x.abs()))
    # 4,000 standard normals: the sample std is 1 ± 0.011 (one standard error)
    assert float(standardized.std()) == pytest.approx(1.0, abs=0.06)
    assert float(standardized.mean()) == pytest.approx(0.0, abs=0.08)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"noise": 0.0}, "noise"),
        ({"hidden": 0}, "hidden"),
        ({"num_samples": 7}, "num_samples"),
        ({"test_fraction": 0.95}, "test_fraction"),
        ({"num_samples": 8, "test_fraction": 0.9}, "1 training example"),
    ],
)
def test_problem_options_are_validated(options, message):
    with pytest.raises(ValueError, match=message):
        ex.problem("heteroscedastic_1d", **options)


def test_torch_loss_on_the_model_is_the_objective_with_its_gradient():
    p = _tiny()
    params = list(p.model.parameters())
    p.model.zero_grad()
    value = p.loss.loss_scale * p.loss.torch_loss()(p.model(p.inputs), p.targets)
    value.backward()
    grad = torch.cat([param.grad.reshape(-1) for param in params])
    assert float(value.detach()) == pytest.approx(
        float(p.objective(p.theta0)), rel=1e-13
    )
    torch.testing.assert_close(grad, p.grad(p.theta0), rtol=1e-12, atol=1e-14)


def _biased_point(p):
    """θ₀ with the log-variance row of the last layer zeroed (s = b_s for every
    example) and the mean's bias lowered by 4, so every residual r = y − μ ≈ 4."""
    theta = p.theta0.clone()
    last = p.layers[-1]
    # slices of a 1-D tensor are views: these writes land in θ
    theta[last.weight].view(last.out_features, last.in_features)[1] = 0.0
    theta[last.bias][0] -= 4.0
    return theta, last.bias


def test_the_ggn_has_a_negative_eigenvalue_where_the_residuals_are_biased():
    """Since ∂z/∂b = I for the last layer's biases b = (b_μ, b_s), their 2 × 2 block
    of G is the mean output Hessian (1/N) Σ v[[1, r], [r, ½r²]] (v = e^{−b_s} shared).
    Its determinant v²(½ E r² − (E r)²) is negative when the residuals share a sign,
    so G has an eigenvalue at most the block's smallest (Cauchy interlacing)."""
    p = _tiny()
    theta, biases = _biased_point(p)
    outputs = p.predict(theta)
    r, s = p.targets[:, 0] - outputs[:, 0], outputs[:, 1]
    assert torch.allclose(s, s[0].expand_as(s), rtol=0, atol=1e-15)
    assert bool((r > 0).all())
    v = torch.exp(-s[0])
    block = v * torch.stack(
        [
            torch.stack([torch.ones(()).to(r), r.mean()]),
            torch.stack([r.mean(), 0.5 * (r * r).mean()]),
        ]
    )
    ggn = ex.curvature("ggn", p, theta).dense()
    assert relative_error(ggn[biases, biases], block) < 1e-13
    block_min = float(torch.linalg.eigvalsh(block)[0])
    assert block_min < -0.5
    eigenvalues = torch.linalg.eigvalsh(ggn)
    assert float(eigenvalues[0]) <= block_min + 1e-12
    # the Fisher at the same point is PSD (to rounding) and far from G
    fisher = ex.curvature("fisher", p, theta).dense()
    assert relative_error(fisher, fisher_ref(p, theta)) < 1e-12
    fisher_eigenvalues = torch.linalg.eigvalsh(fisher)
    assert float(fisher_eigenvalues[0]) > -1e-12 * float(fisher_eigenvalues[-1])
    assert relative_error(fisher, ggn) > 0.5


def test_f_differs_from_g_at_the_start_but_equals_it_for_a_fixed_variance_gaussian():
    """At θ₀ of the default problem the GGN is already indefinite and ‖F − G‖/‖G‖
    is large; a fixed-σ Gaussian on the same network and inputs (matching) has
    F = G to rounding."""
    p = ex.problem("heteroscedastic_1d")
    theta = p.theta0
    ggn = ex.curvature("ggn", p, theta).dense()
    fisher = ex.curvature("fisher", p, theta).dense()
    ggn_eigenvalues = torch.linalg.eigvalsh(ggn)
    assert float(ggn_eigenvalues[0]) < -0.01 * float(ggn_eigenvalues[-1])
    fisher_eigenvalues = torch.linalg.eigvalsh(fisher)
    assert float(fisher_eigenvalues[0]) > -1e-12 * float(fisher_eigenvalues[-1])
    assert relative_error(fisher, ggn) > 0.3
    gaussian = dataclasses.replace(
        p, loss=GaussianLoss(2, sigma=0.7), targets=p.targets.repeat(1, 2)
    )
    same_ggn = ex.curvature("ggn", gaussian, theta).dense()
    same_fisher = ex.curvature("fisher", gaussian, theta).dense()
    assert relative_error(same_fisher, same_ggn) < 1e-13
    assert float(same_ggn.norm()) > 1e-2


def test_gauss_newton_stops_with_a_remedy_while_natural_gradient_descends():
    """The default comparison on this problem: G + λI is indefinite at θ₀, so
    Gauss-Newton stops with status 'indefinite' and says what to change; the
    natural gradient (exact, PSD Fisher) lowers the loss."""
    settings = {"steps": 10, "device": "cpu"}
    gauss_newton = ex.run(
        ex.RunConfig("heteroscedastic_1d", {}, "gauss_newton", {}, **settings)
    )
    assert gauss_newton.status == "indefinite"
    assert "Remedy" in gauss_newton.message and "ggn" in gauss_newton.message
    natural = ex.run(
        ex.RunConfig("heteroscedastic_1d", {}, "natural_gradient", {}, **settings)
    )
    assert natural.status == "ok"
    losses = natural.column("loss")
    assert losses[-1] < losses[0] - 0.1
