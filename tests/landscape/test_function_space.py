"""Decision boundaries, fitted curves and the KL between successive iterates."""

import pytest
import torch

import explorer as ex
from explorer.landscape import (
    decision_boundary,
    fitted_curve,
    kl_along_run,
    successive_kl,
    theta_at,
    trajectory_of,
)


def test_decision_boundary_probabilities_are_the_model_softmax():
    problem = ex.problem("moons_mlp", hidden=(4,), num_samples=40)
    theta = problem.theta0
    grid = decision_boundary(problem, theta, resolution=6)
    probability = grid.probability
    assert probability.values.shape == (6, 6) and grid.num_classes == 2
    x = torch.tensor([[probability.xs[2], probability.ys[4]]], dtype=torch.float64)
    expected = torch.softmax(problem.predict(theta, x), -1)[0, 1]
    assert float(probability.values[4, 2]) == pytest.approx(float(expected))
    assert torch.equal(grid.classes, (probability.values > 0.5).long())
    with pytest.raises(ValueError, match="2-D inputs"):
        decision_boundary(ex.problem("digits_mlp", hidden=(2,), train_size=10), None)


def test_fitted_curve_is_the_network_on_a_line():
    problem = ex.problem("tiny_tanh")
    theta = torch.tensor([1.2, -0.7], dtype=torch.float64)
    xs, mean = fitted_curve(problem, theta, num=11)
    assert xs.shape == (11,) and mean.shape == (11, 1)
    assert torch.allclose(mean[:, 0], -0.7 * torch.tanh(1.2 * xs))
    linear = ex.problem("linreg_2d")  # inputs [1, x]: the bias column is constant
    xs, mean = fitted_curve(
        linear, torch.tensor([0.5, 2.0], dtype=torch.float64), num=3
    )
    assert torch.allclose(mean[:, 0], 0.5 + 2.0 * xs)
    with pytest.raises(ValueError, match="classification"):
        fitted_curve(ex.problem("logreg_2d"), torch.zeros(2, dtype=torch.float64))


def test_successive_kl_matches_the_likelihood_and_vanishes_without_motion():
    problem = ex.problem("logreg_2d", num_samples=30)
    a = torch.tensor([1.0, 0.5], dtype=torch.float64)
    b = torch.tensor([0.2, -0.3], dtype=torch.float64)
    kl = successive_kl(problem, torch.stack([a, a, b]))
    assert kl[0] == 0.0
    p = torch.sigmoid(problem.predict(a))
    q = torch.sigmoid(problem.predict(b))
    manual = (p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).mean()
    assert float(kl[1]) == pytest.approx(float(manual), rel=1e-10)


def test_kl_and_points_of_a_real_run():
    history = ex.run(
        ex.RunConfig(
            "logreg_2d",
            {"num_samples": 50},
            rule="natural_gradient",
            steps=3,
            device="cpu",
        )
    )
    problem = ex.problem("logreg_2d", num_samples=50)
    frame = kl_along_run(problem, history)
    assert frame["step"].tolist() == [1, 2, 3] and (frame["kl"] >= 0).all()
    thetas, steps = trajectory_of(history)
    assert steps == [0, 1, 2, 3] and thetas.shape == (4, 2)
    assert theta_at(history, 2)[0] == 2 and torch.equal(
        theta_at(history)[1], thetas[-1]
    )
