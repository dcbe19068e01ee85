"""Each transform checked by hand for a few steps against independent references."""

import math

import pytest
import torch

import explorer as ex
from explorer.optimizers.damping import lm_adjust
from explorer.optimizers.ema import ema_combine
from tests.optimizers.closed_forms import (
    damped_solve,
    linreg,
    logreg,
    textbook_cg,
)

SMALL = {"num_samples": 60}


def run(problem, rule, steps, problem_options=SMALL, **rule_options):
    config = ex.RunConfig(
        problem, problem_options, rule, rule_options, steps=steps, device="cpu"
    )
    history = ex.run(config)
    assert history.status == "ok", history.message
    return history, ex.problem(problem, **problem_options)


def close(a, b, tol=1e-11):
    return torch.allclose(a, b, rtol=tol, atol=tol)


# --------------------------------------------------------------- first order
@pytest.mark.parametrize(
    "options",
    [
        {"lr": 0.1},
        {"lr": 0.05, "momentum": 0.9},
        {"lr": 0.05, "momentum": 0.8, "nesterov": True},
    ],
)
def test_sgd_matches_torch_optim_sgd(options):
    history, problem = run("linreg_2d", "sgd", 6, **options)
    param = torch.nn.Parameter(problem.theta0.clone())
    reference = torch.optim.SGD([param], **options)
    expected = [param.detach().clone()]
    for _ in range(6):
        param.grad = linreg(problem, param.detach())[1]
        reference.step()
        expected.append(param.detach().clone())
    assert close(history.trajectory, torch.stack(expected))
    assert history.column("alpha")[1:] == [options["lr"]] * 6


def test_adam_matches_torch_optim_adam():
    history, problem = run("logreg_2d", "adam", 6, lr=0.05, beta1=0.8, beta2=0.99)
    param = torch.nn.Parameter(problem.theta0.clone())
    reference = torch.optim.Adam([param], lr=0.05, betas=(0.8, 0.99), eps=1e-8)
    expected = [param.detach().clone()]
    for _ in range(6):
        param.grad = logreg(problem, param.detach())[1]
        reference.step()
        expected.append(param.detach().clone())
    assert close(history.trajectory, torch.stack(expected))


# ------------------------------------------------------ damped curvature steps
def test_gauss_newton_steps_by_hand():
    """θ ← θ − α (G + λI)⁻¹ g with G = Xᵀ diag(p(1 − p)) X / N."""
    history, problem = run(
        "logreg_2d", "gauss_newton", 3, lr=0.7, damping=0.1, damping_adaptation="fixed"
    )
    theta = problem.theta0.clone()
    for k in range(1, 4):
        _, g, fisher = logreg(problem, theta)
        theta = theta - 0.7 * damped_solve(fisher, g, 0.1)
        assert close(history.trajectory[k], theta)
    assert history.column("damping")[1:] == [0.1] * 3
    assert all(math.isnan(r) for r in history.column("rho"))


def test_ekfac_steps_by_hand():
    """θ ← θ − α (C_EKFAC + λI)⁻¹ g with C rebuilt at every iterate (exact output
    factors, fixed λ): the EKFAC rule is the damped step on the EKFAC curvature.
    """
    options = {"num_samples": 60, "hidden": (5,)}
    history, problem = run(
        "moons_mlp", "ekfac", 3, options, lr=0.5, damping=0.05,
        damping_adaptation="fixed", output_factor="exact",
    )  # fmt: skip
    theta = problem.theta0.clone()
    for k in range(1, 4):
        dense = ex.curvature("ekfac", problem, theta, output_factor="exact").dense()
        theta = theta - 0.5 * damped_solve(dense, problem.grad(theta), 0.05)
        assert close(history.trajectory[k], theta, 1e-9)


def test_optimal_step_size_with_momentum_by_hand():
    """v ← μv + p, α* = gᵀv / vᵀ(F + λI)v, θ ← θ − α* v."""
    history, problem = run(
        "logreg_2d",
        "natural_gradient",
        4,
        momentum=0.5,
        step_size="optimal",
        damping=0.05,
        damping_adaptation="fixed",
    )
    theta, velocity = problem.theta0.clone(), torch.zeros(2, dtype=torch.float64)
    alphas = history.column("alpha")
    for k in range(1, 5):
        _, g, fisher = logreg(problem, theta)
        velocity = 0.5 * velocity + damped_solve(fisher, g, 0.05)
        damped = fisher + 0.05 * torch.eye(2, dtype=torch.float64)
        alpha = float(g @ velocity / (velocity @ damped @ velocity))
        theta = theta - alpha * velocity
        assert alphas[k] == pytest.approx(alpha, rel=1e-10)
        assert close(history.trajectory[k], theta)
    assert alphas[1] == pytest.approx(1.0, rel=1e-12)  # exact solve, no momentum yet


def test_reduction_ratio_on_a_quadratic_by_hand():
    """On h quadratic with C = H: ρ = (gᵀδ + ½δᵀHδ) / (gᵀδ + ½δᵀ(H + λI)δ)."""
    history, problem = run(
        "linreg_2d",
        "gauss_newton",
        3,
        damping=0.5,
        damping_adaptation="fixed",
        track_rho=True,
        lr=0.8,
    )
    rhos, theta = history.column("rho"), problem.theta0.clone()
    eye = torch.eye(2, dtype=torch.float64)
    for k in range(1, 4):
        _, g, hessian = linreg(problem, theta)
        delta = -0.8 * damped_solve(hessian, g, 0.5)
        actual = g @ delta + 0.5 * delta @ hessian @ delta
        predicted = g @ delta + 0.5 * delta @ (hessian + 0.5 * eye) @ delta
        assert rhos[k] == pytest.approx(float(actual / predicted), rel=1e-9)
        theta = theta + delta
    # each step: one gradient and one extra loss evaluation for ρ
    assert history.column("grad_evals") == [0.0, 2.0, 4.0, 6.0]


def test_levenberg_marquardt_shrinks_damping_on_a_quadratic():
    """With exact steps on a quadratic ρ = 2 − gᵀA⁻¹HA⁻¹g / gᵀA⁻¹g ≥ 1 > 3/4, so
    λ_k = λ₀ (2/3)^k."""
    history, problem = run("linreg_2d", "gauss_newton", 5, damping=2.0)
    damping, rhos = history.column("damping"), history.column("rho")
    theta = problem.theta0.clone()
    for k in range(1, 6):
        lam = 2.0 * (2 / 3) ** (k - 1)
        assert damping[k] == pytest.approx(lam, rel=1e-12)
        _, g, hessian = linreg(problem, theta)
        a_inv_g = damped_solve(hessian, g, lam)
        rho = 2 - float(a_inv_g @ hessian @ a_inv_g / (g @ a_inv_g))
        assert rhos[k] == pytest.approx(rho, rel=1e-8)
        assert rho > 0.75
        theta = theta - a_inv_g


def test_levenberg_marquardt_wiring_and_rejection():
    """λ follows lm_adjust(λ, ρ); steps that raise the loss are not taken."""
    history, _ = run(
        "digits_mlp",
        "gauss_newton",
        15,
        problem_options={"hidden": (3,), "train_size": 40},
        damping=1e-2,
    )
    frame = history.to_frame()
    for k in range(1, len(frame) - 1):
        expected = lm_adjust(frame.damping[k], frame.rho[k], 2 / 3, 1e-8)
        assert frame.damping[k + 1] == pytest.approx(expected, rel=1e-12)
    rejected = frame.index[(frame.rho < 0) & (frame.step > 0)]
    assert len(rejected) >= 2  # λ = 0.01 is too small at first
    for k in rejected:
        assert frame.update_norm[k] == 0.0
        assert frame.loss[k] == frame.loss[k - 1]
    assert frame.loss.iloc[-1] < frame.loss[0]


def test_refresh_every_reuses_the_curvature():
    """Steps 0–2 use G(θ₀), step 3 rebuilds it; products counted when built."""
    history, problem = run(
        "logreg_2d",
        "gauss_newton",
        5,
        refresh_every=3,
        damping=0.01,
        damping_adaptation="fixed",
    )
    theta = problem.theta0.clone()
    fisher = None
    for k in range(5):
        _, g, current = logreg(problem, theta)
        if k % 3 == 0:
            fisher = current
        theta = theta - damped_solve(fisher, g, 0.01)
        assert close(history.trajectory[k + 1], theta)
    # a (re)built curvature costs what one solve costs the core; reuse costs nothing
    operator = ex.curvature("ggn", problem, problem.theta0)
    operator.solve(problem.grad(problem.theta0), 0.01)
    cost = float(operator.products)
    assert history.column("curvature_products") == [
        0,
        cost,
        cost,
        cost,
        2 * cost,
        2 * cost,
    ]


def test_moving_average_of_a_dense_curvature_by_hand():
    """C̄₀ = G₀, C̄₁ = ½G₀ + ½G₁, C̄₂ = ⅔C̄₁ + ⅓G₂ (decay min(0.9, 1 − 1/(r + 1)))."""
    history, problem = run(
        "logreg_2d",
        "precondition",
        3,
        curvature="ggn",
        ema=0.9,
        damping=0.01,
        damping_adaptation="fixed",
    )
    theta, average = problem.theta0.clone(), None
    for k in range(3):
        _, g, current = logreg(problem, theta)
        decay = min(0.9, 1 - 1 / (k + 1))
        average = (
            current if average is None else decay * average + (1 - decay) * current
        )
        theta = theta - damped_solve(average, g, 0.01)
        assert close(history.trajectory[k + 1], theta)


def test_moving_average_of_kfac_factors():
    problem = ex.problem("moons_mlp", num_samples=40, hidden=(4,))
    other = problem.theta0 + 0.1
    a = ex.curvature("kfac", problem, problem.theta0)
    b = ex.curvature("kfac", problem, other)
    mixed = ema_combine(a, b, 0.25)
    for combined, old, new in zip(
        mixed.input_factors, a.input_factors, b.input_factors
    ):
        assert close(combined, 0.25 * old + 0.75 * new)
    for combined, old, new in zip(
        mixed.output_factors, a.output_factors, b.output_factors
    ):
        assert close(combined, 0.25 * old + 0.75 * new)
    assert close(
        b.input_factors[0], ex.curvature("kfac", problem, other).input_factors[0]
    )
    # the averaged operator still solves in closed form: (A ⊗ S + λI) x = b exactly
    mixed_exact = ema_combine(
        ex.curvature("kfac", problem, problem.theta0, damping_mode="exact"),
        ex.curvature("kfac", problem, other, damping_mode="exact"),
        0.25,
    )
    rhs = torch.linspace(-1, 1, problem.num_params, dtype=torch.float64)
    x = mixed_exact.solve(rhs, 0.1)
    assert close(mixed_exact.matvec(x) + 0.1 * x, rhs, 1e-9)


def test_kfac_rule_with_ema_runs_and_counts_refreshes():
    history, _ = run(
        "moons_mlp",
        "kfac",
        6,
        problem_options={"num_samples": 40, "hidden": (4,)},
        ema=0.95,
        refresh_every=2,
    )
    assert history.last("loss") < history.column("loss")[0]


def test_hessian_free_is_warm_started_truncated_cg():
    """3 CG iterations per step, started from 0.95 × the previous solution."""
    options = {"num_samples": 40, "hidden": (6,)}
    history, problem = run(
        "moons_mlp",
        "hessian_free",
        3,
        problem_options=options,
        cg_maxiter=3,
        cg_rtol=1e-14,
        damping=0.1,
        damping_adaptation="fixed",
    )
    theta, previous = problem.theta0.clone(), None
    eye = torch.eye(problem.num_params, dtype=torch.float64)
    for k in range(3):
        ggn = ex.curvature("ggn", problem, theta).dense()
        g = problem.grad(theta)
        if previous is None:
            p = textbook_cg(ggn + 0.1 * eye, g, torch.zeros_like(g), 3)
        else:  # the residual of the warm start costs one of the 3 products
            p = textbook_cg(ggn + 0.1 * eye, g, 0.95 * previous, 2)
        previous = p
        theta = theta - p
        assert close(history.trajectory[k + 1], theta, 1e-9)
    assert history.column("curvature_products") == [0.0, 3.0, 6.0, 9.0]


def test_newton_cg_negative_curvature_error_or_truncate():
    # tiny_tanh near the saddle at the origin: H is indefinite, the GGN is not
    common = {"damping": 1e-6, "damping_adaptation": "fixed", "solver": "cg",
              "on_indefinite": "stop"}  # fmt: skip
    options = {"theta0": (0.05, 0.05)}
    stopped = ex.run(
        ex.RunConfig("tiny_tanh", options, "newton", common, steps=3, device="cpu")
    )
    assert stopped.status == "indefinite"
    assert "conjugate gradients met negative curvature" in stopped.message
    assert "Remedy" in stopped.message
    truncated = ex.run(
        ex.RunConfig(
            "tiny_tanh",
            options,
            "newton",
            {**common, "negative_curvature": "truncate"},
            steps=3,
            device="cpu",
        )
    )
    assert truncated.status == "ok"
    assert truncated.last("update_norm") > 0
