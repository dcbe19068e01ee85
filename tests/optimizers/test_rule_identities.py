"""Identities the update rules must satisfy (THEORY.md §3 and §5)."""

import numpy as np
import pytest
import torch

import explorer as ex
from tests.optimizers.closed_forms import data

FIXED = {"damping_adaptation": "fixed"}


def run(problem, problem_options, rule, rule_options, steps, **fields):
    return ex.run(
        ex.RunConfig(
            problem,
            problem_options,
            rule,
            rule_options,
            steps=steps,
            device="cpu",
            **fields,
        )
    )


def test_newton_with_unit_step_and_no_damping_solves_a_quadratic_in_one_step():
    # linear regression with a Gaussian likelihood: h is an exact quadratic
    history = run("linreg_2d", {}, "newton", {"lr": 1.0, "damping": 0.0, **FIXED}, 1)
    problem = ex.problem("linreg_2d")
    x, y = data(problem)
    least_squares = torch.linalg.lstsq(x, y.unsqueeze(1)).solution.squeeze(1)
    assert torch.allclose(history.trajectory[1], least_squares, rtol=1e-10, atol=1e-12)
    assert history.last("loss") == pytest.approx(
        float(problem.objective(least_squares)), rel=1e-12
    )
    assert history.last("grad_norm") < 1e-10


MATCHING = [
    ("logreg_2d", {"num_samples": 80}),  # Bernoulli
    ("linreg_2d", {"num_samples": 80}),  # Gaussian
    ("moons_mlp", {"num_samples": 60, "hidden": (5,)}),  # categorical
    ("digits_autoencoder", {"hidden": (3,)}),  # 64 Bernoulli outputs
]


@pytest.mark.parametrize(("problem", "options"), MATCHING, ids=[m[0] for m in MATCHING])
def test_natural_gradient_equals_gauss_newton_for_matching_losses(problem, options):
    rule_options = {"damping": 0.05, "lr": 0.9}
    shared = {"steps": 4, "device": "cpu", "problem_options": options,
              "rule_options": rule_options}  # fmt: skip
    if problem == "digits_autoencoder":
        shared["batch_size"] = 50
    histories = ex.compare(problem, ["natural_gradient", "gauss_newton"], **shared)
    natural, gauss_newton = histories.values()
    assert natural.status == gauss_newton.status == "ok"
    assert torch.allclose(
        natural.trajectory, gauss_newton.trajectory, rtol=1e-9, atol=1e-11
    )
    assert np.allclose(natural.column("loss"), gauss_newton.column("loss"), rtol=1e-10)
    assert natural.last("loss") < natural.column("loss")[0]


def test_natural_gradient_differs_from_gauss_newton_for_a_non_matching_loss():
    # mean tanh(z) inside a Gaussian: F = J'diag(1 - tanh²)²J/σ² ≠ G
    options = {"loss": "gaussian_tanh_mean", "num_samples": 80}
    histories = ex.compare(
        "linreg_2d",
        ["natural_gradient", "gauss_newton"],
        problem_options=options,
        rule_options={"damping": 0.01, "lr": 0.5, **FIXED},
        steps=5,
        device="cpu",
    )
    natural, gauss_newton = histories.values()
    assert natural.status == gauss_newton.status == "ok"
    gap = (natural.trajectory[1:] - gauss_newton.trajectory[1:]).norm(dim=1)
    assert float(gap.min()) > 1e-3
    assert torch.equal(natural.trajectory[0], gauss_newton.trajectory[0])


def test_heavy_damping_approaches_sgd_with_lr_over_damping():
    """(C + λI)⁻¹ = λ⁻¹(I − C/λ + O(λ⁻²)): the gap to SGD shrinks like 1/λ."""
    sgd = run("logreg_2d", {}, "sgd", {"lr": 0.5}, 8)
    gaps = []
    for damping in (1e2, 1e4, 1e6):
        damped = run(
            "logreg_2d",
            {},
            "natural_gradient",
            {"damping": damping, "lr": 0.5 * damping, **FIXED},
            8,
        )
        gaps.append(float((damped.trajectory - sgd.trajectory).abs().max()))
    assert gaps[0] > 1e-4
    assert gaps[1] == pytest.approx(gaps[0] / 100, rel=0.05)
    assert gaps[2] == pytest.approx(gaps[0] / 10_000, rel=0.05)
    assert gaps[2] < 1e-6


def _rho_summary(history, burn_in=10):
    rho = np.asarray(history.column("rho")[1 + burn_in :])
    inside = float(np.mean((rho >= 0.25) & (rho <= 0.75)))
    return inside, float(np.median(rho))


def test_levenberg_marquardt_keeps_rho_in_band_where_fixed_damping_fails():
    """Digits MLP 64-16-10, mini-batches of 128, Gauss-Newton from λ = 10⁻³."""
    shared = {"hidden": (16,)}
    fixed = run(
        "digits_mlp", shared, "gauss_newton",
        {"damping": 1e-3, **FIXED, "track_rho": True}, 50, batch_size=128,
    )  # fmt: skip
    adaptive = run(
        "digits_mlp", shared, "gauss_newton", {"damping": 1e-3}, 50, batch_size=128
    )
    start = fixed.column("loss")[0]
    assert fixed.status == adaptive.status == "ok"
    # fixed λ takes steps far beyond where the quadratic model holds
    assert fixed.last("loss") > 10 * start
    fixed_inside, _ = _rho_summary(fixed)
    # LM moves λ until ρ settles in [1/4, 3/4]
    inside, median = _rho_summary(adaptive)
    assert 0.25 <= median <= 0.75
    assert inside >= 0.5
    assert inside > fixed_inside + 0.2
    assert adaptive.last("loss") < 0.25 * start
    damping = adaptive.column("damping")
    assert max(damping[1:]) > 10 * damping[1]  # λ had to grow a lot first


@pytest.mark.slow
def test_averaged_sgd_on_streaming_logistic_regression_has_slope_minus_one():
    """Claim C6: constant-step SGD with Polyak averaging reaches excess loss ≈ P/(2k)
    (slope −1 in log-log), while the last iterate plateaus."""
    dim, averaged, last = 20, [], []
    for seed in range(3):
        history = run(
            "stream_logreg",
            {"dim": dim, "eval_size": 200_000, "input_correlation": 0.0, "signal": 1.0},
            "sgd",
            {"lr": 0.5},
            2000,
            batch_size=50,
            seed=seed,
            averaging="uniform",
            record_steps=24,
            record_log=True,
        )
        frame = history.to_frame()
        loss_star = frame.loss - frame.excess_loss
        averaged.append((frame.averaged_loss - loss_star).to_numpy())
        last.append(frame.excess_loss.to_numpy())
    seen = frame.examples.to_numpy()
    tail = frame.step.to_numpy() >= 100
    mean_averaged, mean_last = np.mean(averaged, 0), np.mean(last, 0)
    slope = np.polyfit(np.log(seen[tail]), np.log(mean_averaged[tail]), 1)[0]
    last_slope = np.polyfit(np.log(seen[tail]), np.log(mean_last[tail]), 1)[0]
    assert -1.35 <= slope <= -0.7
    assert last_slope > -0.3
    # Fisher efficiency: the averaged excess loss is about P / (2k)
    assert 0.5 <= mean_averaged[-1] / (dim / (2 * seen[-1])) <= 2.5
