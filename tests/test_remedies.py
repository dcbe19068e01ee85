"""A stopped run says what happened in the state it happened in (issue 12): a loss
that runs away is ``diverged`` whatever the rule, and an indefinite curvature under
Levenberg–Marquardt names LM's λ, its floor and the truncation option."""

import re

import pytest
import torch

import explorer as ex
from explorer.runs.loop import GROWTH_LIMIT

CPU = {"device": "cpu"}


def test_a_loss_that_grows_by_orders_of_magnitude_is_diverged():
    # gradient descent on a quadratic with lr far above 2/L: the loss grows
    # geometrically but stays finite for hundreds of steps
    history = ex.run(ex.RunConfig("linreg_2d", rule="sgd", rule_options={"lr": 1000.0},
                                  steps=200, **CPU))  # fmt: skip
    assert history.status == "diverged"
    start, last = history.column("loss")[0], history.column("loss")[-1]
    assert last > start + GROWTH_LIMIT * (abs(start) + 1)  # recorded, then stopped
    assert len(history) < 201
    assert f"the loss grew from {start:.3g} to {last:.3g}" in history.message
    assert "Remedy: lower the learning rate lr" in history.message


def test_a_loss_that_rises_modestly_is_not_called_diverged():
    # the same quadratic at lr = 1.05 × 2/L: a slow, bounded-looking rise over
    # 5 steps stays 'ok' (the user sees it on the chart; no false alarm)
    problem = ex.problem("linreg_2d")
    hessian = torch.func.hessian(problem.objective)(problem.theta0)
    top = float(torch.linalg.eigvalsh(hessian)[-1])
    history = ex.run(ex.RunConfig("linreg_2d", rule="sgd",
                                  rule_options={"lr": 1.05 * 2 / top}, steps=5, **CPU))  # fmt: skip
    losses = history.column("loss")
    assert history.status == "ok"
    assert losses[-1] < losses[0] + GROWTH_LIMIT * (abs(losses[0]) + 1)


def test_an_indefinite_hessian_under_lm_names_lms_lambda_its_floor_and_truncation():
    history = ex.run(ex.RunConfig("moons_mlp", rule="newton",
                                  rule_options={"damping": 1.0,
                                                "on_indefinite": "stop"},
                                  steps=50, **CPU))  # fmt: skip
    assert history.status == "indefinite"
    message = history.message
    lowered = re.search(r"lowered λ from 1 to ([0-9.e+-]+)", message)
    assert lowered, message
    # the λ the message names is the one LM reached: ω = 2/3 times the λ of the
    # last good step (LM lowers λ after a good step; that next λ failed)
    failed = float(re.search(r"with λ = ([0-9.e+-]+) is not", message).group(1))
    assert float(lowered.group(1)) == failed
    assert failed < 1.0
    last_good = history.column("damping")[-1]
    assert failed == pytest.approx(last_good * 2 / 3, rel=5e-3)
    assert "min_damping, LM's floor (now 1e-08)" in message
    assert "damping_adaptation='fixed'" in message
    assert "negative_curvature='truncate'" in message
    needed = float(
        re.search(r"floor \(now 1e-08\), above ([0-9.e+-]+)", message).group(1)
    )
    # following the remedy works: a floor above the needed λ runs to the end
    fixed = ex.run(ex.RunConfig("moons_mlp", rule="newton", steps=50, **CPU,
                                rule_options={"damping": 1.0,
                                              "on_indefinite": "stop",
                                              "min_damping": 1.5 * needed}))  # fmt: skip
    assert fixed.status == "ok", fixed.message


def test_fixed_damping_remedy_names_the_damping_only():
    history = ex.run(ex.RunConfig("tiny_tanh", rule="newton", steps=5, **CPU,
                                  rule_options={"damping": 0.1,
                                                "on_indefinite": "stop",
                                                "damping_adaptation": "fixed"}))  # fmt: skip
    assert history.status == "indefinite"
    assert "raise the damping above" in history.message
    assert "Levenberg" not in history.message and "min_damping" not in history.message


def test_an_indefinite_ggn_is_sent_to_the_fisher_not_to_itself():
    from explorer.curvature.solvers import IndefiniteCurvatureError
    from explorer.runs.remedies import indefinite_message

    options = {"damping": 1e-3, "damping_adaptation": "fixed"}
    ggn = indefinite_message(1, IndefiniteCurvatureError("ggn", 1e-3, -0.32), options)
    assert "'fisher'" in ggn and "such as 'ggn'" not in ggn
    hessian = indefinite_message(
        1, IndefiniteCurvatureError("hessian", 1e-3, -0.32), options
    )
    assert "such as 'ggn' or 'fisher'" in hessian
    # the run itself: Gauss-Newton on the heteroscedastic Gaussian stops and says so
    history = ex.run(
        ex.RunConfig("heteroscedastic_1d", {"num_samples": 40}, "gauss_newton", steps=3)
    )
    assert history.status == "indefinite"
    assert "natural_gradient" in history.message
