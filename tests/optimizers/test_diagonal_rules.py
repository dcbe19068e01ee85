"""Sophia, AdaHessian and Muon step by step against explicit float64 formulas.

The curvature draws are repeated by hand from a copy of the step's generator
(targets with ``problem.loss.sample``, probes by ``torch.randint`` / ``torch.randn``)
and pushed through autograd and the dense Hessian, not the library's estimators;
Muon's polar factor is checked against (U Uᵀ)^{-1/2} U from an eigendecomposition.
"""

import math

import pytest
import torch

import explorer as ex
from explorer.optimizers import StepContext
from explorer.optimizers.diagonal_rules import (
    NS_COEFFICIENTS,
    newton_schulz,
    svd_orthogonalize,
)
from tests.diagonal_references import gnb_draw_ref, rademacher_ref
from tests.references import hessian_ref, relative_error

TOL = 1e-12


def _run(rule_key, options, problem, steps, seed=5):
    """θ_k for k = 0..steps and each step's info, on the full batch."""
    rule = ex.RULES[rule_key].create(options)
    theta = problem.theta0.clone() + 0.1
    generator = torch.Generator().manual_seed(seed)
    state, thetas, infos = rule.init(theta), [theta], []
    batch = problem.batch()
    for k in range(steps):
        loss, grad = problem.value_and_grad(theta, batch)
        ctx = StepContext(problem, theta, loss, grad, batch, generator, k)
        delta, state, info = rule.update(grad, state, ctx)
        theta = theta + delta
        thetas.append(theta)
        infos.append(info)
    return thetas, infos


def _grad(problem, theta):
    return problem.value_and_grad(theta)[1]


# ------------------------------------------------------------------- Sophia
@pytest.mark.parametrize("estimator", ["gnb", "hutchinson"])
def test_sophia_three_steps_by_hand(estimator):
    problem = ex.problem("logreg_2d", num_samples=20, seed=1)
    options = dict(
        lr=0.3,
        beta1=0.8,
        beta2=0.7,
        gamma=0.5,
        eps=1e-3,
        update_interval=2,
        estimator=estimator,
        weight_decay=0.1,
    )
    thetas, infos = _run("sophia", options, problem, 3)
    generator = torch.Generator().manual_seed(5)
    theta = thetas[0]
    m = torch.zeros(2, dtype=torch.float64)
    h = torch.zeros(2, dtype=torch.float64)
    batch = problem.batch()
    for k in range(3):
        g = _grad(problem, theta)
        m = 0.8 * m + 0.2 * g
        if k % 2 == 0:  # steps 0 and 2 refresh h, step 1 reuses it
            if estimator == "gnb":
                estimate = gnb_draw_ref(problem, theta, batch, generator)
            else:
                u = torch.randn(2, 1, generator=generator).double()[:, 0]
                estimate = u * (hessian_ref(problem, theta) @ u)
            h = 0.7 * h + 0.3 * estimate
        ratio = m / torch.maximum(0.5 * h, torch.tensor(1e-3, dtype=torch.float64))
        theta = theta - 0.3 * (torch.clamp(ratio, -1, 1) + 0.1 * theta)
        assert relative_error(thetas[k + 1], theta) < TOL, k
    cost = "loss_evals" if estimator == "gnb" else "curvature_products"
    assert [cost in info for info in infos] == [True, False, True]


def test_sophia_clips_each_coordinate_to_one():
    problem = ex.problem("logreg_2d", num_samples=20, seed=1)
    theta0 = problem.theta0 + 0.1
    g = _grad(problem, theta0)
    generator = torch.Generator().manual_seed(5)
    h = 0.01 * gnb_draw_ref(problem, theta0, problem.batch(), generator)  # β₂ = 0.99
    m = 0.04 * g  # β₁ = 0.96
    r = (m.abs() / h).tolist()
    assert r[0] != r[1]
    # γ between the two coordinates' |m|/h: exactly one is clipped
    gamma = math.sqrt(r[0] * r[1])
    thetas, infos = _run("sophia", {"lr": 0.2, "gamma": gamma}, problem, 1)
    ratio = m / (gamma * h)
    clipped = ratio.abs() >= 1
    assert int(clipped.sum()) == 1
    expected = theta0 - 0.2 * ratio.clamp(-1, 1)
    assert relative_error(thetas[1], expected) < TOL
    delta = thetas[1] - theta0
    assert float(delta[clipped].abs().item()) == pytest.approx(0.2, rel=1e-14)
    assert float(delta[~clipped].abs().item()) < 0.2
    assert infos[0]["clip_fraction"] == 0.5
    # with the paper's defaults h starts near zero: every coordinate is clipped, the
    # first step is lr·sign(m)
    thetas, infos = _run("sophia", {"lr": 0.2}, problem, 1)
    assert relative_error(thetas[1], theta0 - 0.2 * g.sign()) < TOL
    assert infos[0]["clip_fraction"] == 1.0


# ---------------------------------------------------------------- AdaHessian
def test_adahessian_three_steps_by_hand():
    problem = ex.problem("moons_mlp", num_samples=12, hidden=(3,), seed=1)
    options = dict(
        lr=0.1,
        beta1=0.8,
        beta2=0.9,
        eps=1e-3,
        hessian_power=0.5,
        probes=2,
        update_interval=2,
        weight_decay=0.05,
    )
    thetas, infos = _run("adahessian", options, problem, 3)
    generator = torch.Generator().manual_seed(5)
    theta = thetas[0]
    size = problem.num_params
    m = torch.zeros(size, dtype=torch.float64)
    v = torch.zeros(size, dtype=torch.float64)
    for k in range(3):
        g = _grad(problem, theta)
        if k % 2 == 0:
            z = rademacher_ref(size, 2, generator, torch.float64)
            hz = hessian_ref(problem, theta) @ z
            d = (z * hz).mean(1)  # no convolutions: spatial averaging is a no-op
        t = k + 1
        m = 0.8 * m + 0.2 * g
        v = 0.9 * v + 0.1 * d * d
        m_hat, v_hat = m / (1 - 0.8**t), v / (1 - 0.9**t)
        theta = theta - 0.1 * (m_hat / (v_hat ** (0.5 / 2) + 1e-3) + 0.05 * theta)
        assert relative_error(thetas[k + 1], theta) < TOL, k
    assert [info.get("curvature_products") for info in infos] == [2.0, None, 2.0]


# ---------------------------------------------------------------------- Muon
def _polar(matrix):
    """(U Uᵀ)^{-1/2} U by the eigendecomposition of the smaller Gram matrix."""
    if matrix.shape[0] <= matrix.shape[1]:
        w, q = torch.linalg.eigh(matrix @ matrix.T)
        return q @ torch.diag(w.rsqrt()) @ q.T @ matrix
    w, q = torch.linalg.eigh(matrix.T @ matrix)
    return matrix @ q @ torch.diag(w.rsqrt()) @ q.T


@pytest.mark.parametrize("nesterov", [True, False])
def test_muon_two_steps_with_svd_by_hand(nesterov):
    problem = ex.problem("moons_mlp", num_samples=12, hidden=(3,), seed=1)
    options = dict(
        lr=0.05,
        momentum=0.9,
        nesterov=nesterov,
        orthogonalization="svd",
        adam_lr=0.02,
        adam_beta1=0.8,
        adam_beta2=0.9,
        adam_eps=1e-6,
    )
    thetas, _ = _run("muon", options, problem, 2)
    shapes = problem.param_shapes
    assert shapes == ((3, 2), (3,), (2, 3), (2,))
    theta = thetas[0]
    size = problem.num_params
    buffer = torch.zeros(size, dtype=torch.float64)
    m = torch.zeros(size, dtype=torch.float64)
    v = torch.zeros(size, dtype=torch.float64)
    for k in range(2):
        g = _grad(problem, theta)
        step = torch.zeros(size, dtype=torch.float64)
        offset = 0
        for shape in shapes:
            span = slice(offset, offset + math.prod(shape))
            offset = span.stop
            if len(shape) == 2:
                buffer[span] = 0.9 * buffer[span] + g[span]
                u = g[span] + 0.9 * buffer[span] if nesterov else buffer[span]
                scale = math.sqrt(max(1.0, shape[0] / shape[1]))
                # P Qᵀ on the range: the 2-class head's gradient has rank 1 (its
                # rows sum to zero), and the null direction of U Vᵀ is arbitrary
                left, sigma, right = torch.linalg.svd(
                    u.view(shape), full_matrices=False
                )
                keep = sigma > 1e-12 * sigma.max()
                polar = left[:, keep] @ right[keep]
                step[span] = -0.05 * scale * polar.reshape(-1)
            else:  # biases: Adam
                m[span] = 0.8 * m[span] + 0.2 * g[span]
                v[span] = 0.9 * v[span] + 0.1 * g[span] ** 2
                m_hat = m[span] / (1 - 0.8 ** (k + 1))
                v_hat = v[span] / (1 - 0.9 ** (k + 1))
                step[span] = -0.02 * m_hat / (v_hat.sqrt() + 1e-6)
        theta = theta + step
        assert relative_error(thetas[k + 1], theta) < TOL, k


def test_muon_without_a_model_is_adam():
    problem = ex.problem("rosenbrock")
    muon, _ = _run("muon", {"adam_lr": 0.03}, problem, 3)
    adam, _ = _run("adam", {"lr": 0.03}, problem, 3)
    for a, b in zip(muon, adam, strict=True):
        assert relative_error(a, b) < TOL


def test_svd_orthogonalization_is_the_polar_factor():
    generator = torch.Generator().manual_seed(0)
    for shape in [(5, 3), (3, 7), (4, 4)]:
        matrix = torch.randn(shape, generator=generator, dtype=torch.float64)
        left, _, right = torch.linalg.svd(matrix, full_matrices=False)
        out = svd_orthogonalize(matrix)
        assert relative_error(out, left @ right) < TOL
        assert relative_error(out, _polar(matrix)) < 1e-10
    # an orthogonal matrix is its own polar factor; zero stays zero
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=generator, dtype=torch.float64))
    assert relative_error(svd_orthogonalize(q), q) < TOL
    zero = torch.zeros(3, 4, dtype=torch.float64)
    assert torch.equal(svd_orthogonalize(zero), zero)


def _quintic(sigma, steps):
    a, b, c = NS_COEFFICIENTS
    for _ in range(steps):
        sigma = a * sigma + b * sigma**3 + c * sigma**5
    return sigma


def test_newton_schulz_singular_values_end_in_the_known_band():
    generator = torch.Generator().manual_seed(1)
    for shape in [(5, 3), (3, 7), (10, 10), (2, 6), (16, 4)]:
        matrix = torch.randn(shape, generator=generator, dtype=torch.float64)
        out = newton_schulz(matrix, 5)
        values = torch.linalg.svdvals(out)
        assert float(values.min()) > 0.68 and float(values.max()) < 1.21, values
        # every singular value maps by the scalar quintic, directions kept: the
        # result is P diag(φ⁵(σ/‖G‖_F)) Qᵀ
        left, sigma, right = torch.linalg.svd(matrix, full_matrices=False)
        mapped = _quintic(sigma / (matrix.norm() + 1e-7), 5)
        assert relative_error(out, left @ torch.diag(mapped) @ right) < 1e-10
        # and the direction is close to the polar factor
        cosine = (out * _polar(matrix)).sum() / (out.norm() * _polar(matrix).norm())
        assert float(cosine) > 0.95


def test_newton_schulz_of_an_orthogonal_matrix_is_a_multiple_of_it():
    generator = torch.Generator().manual_seed(2)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=generator, dtype=torch.float64))
    factor = _quintic(1 / (math.sqrt(8) + 1e-7), 5)
    assert 0.68 < factor < 1.21
    assert relative_error(newton_schulz(q, 5), factor * q) < 1e-12
