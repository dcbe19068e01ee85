"""Newton on an indefinite Hessian: raise λ past λ_min (its default), step along the
negative-curvature eigenvector, or stop — each against the step computed by hand.
"""

import math

import pytest
import torch

import explorer as ex
from explorer.optimizers.damping import raised_damping

CPU = {"device": "cpu"}
#: tiny_tanh near the saddle at the origin: H has a negative eigenvalue there.
START = {"theta0": (0.05, 0.05)}


def _hessian_and_grad(history, theta):
    problem = history.config.problem_config.build()  # the run's data (its seed)
    hessian = ex.curvature("hessian", problem, theta).dense()
    return problem, hessian, problem.grad(theta)


def _first_step(options):
    config = ex.RunConfig("tiny_tanh", START, "newton", options, steps=1, **CPU)
    history = ex.run(config)
    theta0, theta1 = history.trajectory[0], history.trajectory[-1]
    return history, theta0, theta1


def test_raise_damping_takes_the_damped_newton_step_past_the_smallest_eigenvalue():
    damping = 1e-3
    history, theta0, theta1 = _first_step(
        {"damping": damping, "damping_adaptation": "fixed"}
    )
    _, hessian, grad = _hessian_and_grad(history, theta0)
    smallest = float(torch.linalg.eigvalsh(hessian)[0])
    assert smallest < -damping  # H + λI is indefinite: the plain step is undefined
    # by hand: λ' = max(λ/ω, −λ_min + 0.1·|λ_min|) with ω = 2/3
    lam = max(damping * 1.5, -smallest + 0.1 * abs(smallest))
    assert raised_damping(damping, smallest, 2 / 3, 1e-8) == pytest.approx(lam)
    expected = theta0 - torch.linalg.solve(
        hessian + lam * torch.eye(2, dtype=hessian.dtype), grad
    )
    assert history.status == "ok"
    assert torch.allclose(theta1, expected, atol=1e-12, rtol=0)
    assert history.column("damping")[1] == pytest.approx(lam, rel=1e-12)
    assert history.column("indefinite")[1] == 1.0


def test_newton_goes_on_under_lm_where_it_used_to_stop_at_step_one():
    history = ex.run(ex.RunConfig("moons_mlp", rule="newton", steps=20, **CPU))
    assert history.status == "ok", history.message
    assert len(history) == 21
    flags = history.column("indefinite")[1:]
    assert sum(flags) >= 1  # recorded where λ had to be raised
    assert history.last("loss") < 0.2 * history.column("loss")[0]


def test_negative_curvature_step_is_saddle_free_newton_along_the_eigenvector():
    lr = 0.5
    history, theta0, theta1 = _first_step(
        {
            "damping": 1e-3,
            "damping_adaptation": "fixed",
            "on_indefinite": "negative_curvature",
            "lr": lr,
        }
    )
    _, hessian, grad = _hessian_and_grad(history, theta0)
    values, vectors = torch.linalg.eigh(hessian)
    value, vector = values[0], vectors[:, 0]
    expected = theta0 - lr * (grad.dot(vector) / value.abs()) * vector
    assert torch.allclose(theta1, expected, atol=1e-10, rtol=0)
    assert float(grad.dot(theta1 - theta0)) < 0  # a descent direction
    assert history.column("indefinite")[1] == 1.0


def test_stop_is_still_available():
    history, *_ = _first_step(
        {"damping": 1e-3, "damping_adaptation": "fixed", "on_indefinite": "stop"}
    )
    assert history.status == "indefinite"
    assert "on_indefinite='raise_damping'" in history.message


def test_old_history_files_without_the_indefinite_column_still_load(tmp_path):
    history = ex.run(ex.RunConfig("linreg_2d", rule="sgd", steps=2, **CPU))
    data = history.to_dict()
    del data["metrics"]["indefinite"]
    loaded = ex.History.from_dict(data)
    indefinite = loaded.column("indefinite")
    assert math.isnan(indefinite[0]) and indefinite[1:] == [0.0, 0.0]  # no update at 0
    assert loaded.column("loss") == history.column("loss")
