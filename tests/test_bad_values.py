"""Values of the wrong kind get a ValueError naming them and what is expected, at the
call that passed them (issue 16): before, ``batch=-1`` was an AttributeError, a
float32 θ on a float64 problem a RuntimeError from deep in a matmul, and
``lr="0.1"`` a string stored in the config."""

import pytest
import torch

import explorer as ex


@pytest.fixture(scope="module")
def problem():
    return ex.problem("linreg_2d")  # float64 by default


def test_a_batch_that_is_not_a_batch_is_named(problem):
    theta = problem.theta0
    message = r"batch=-1 is not a batch of examples; expected None .*sample_batch"
    with pytest.raises(ValueError, match=message):
        ex.curvature("fisher", problem, theta, batch=-1)
    with pytest.raises(ValueError, match=message):
        problem.objective(theta, batch=-1)
    with pytest.raises(ValueError, match=message):
        problem.grad(theta, batch=-1)
    with pytest.raises(ValueError, match=r"'batch_size' = -1 is out of range"):
        ex.RunConfig("linreg_2d", batch_size=-1)
    # what the message offers works: a sampled Batch, or a plain (inputs, targets)
    few = problem.sample_batch(5, torch.Generator().manual_seed(0))
    pair = (few.inputs, few.targets)
    assert torch.equal(problem.objective(theta, pair), problem.objective(theta, few))
    assert ex.curvature("fisher", problem, theta, batch=pair).batch.size == 5


def test_a_theta_of_another_dtype_is_named(problem):
    theta32 = problem.theta0.to(torch.float32)
    message = r"theta has dtype torch.float32, but problem 'linreg_2d' is torch.float64"
    for call in (
        lambda: ex.curvature("fisher", problem, theta32),
        lambda: ex.curvature("hessian", problem, theta32),
        lambda: problem.objective(theta32),
        lambda: problem.grad(theta32),
        lambda: problem.predict(theta32),
    ):
        with pytest.raises(ValueError, match=message) as error:
            call()
        assert "theta.to(problem.dtype)" in str(error.value)
    # the remedy it names works, and the problem's own dtype is untouched
    converted = theta32.to(problem.dtype)
    dense = ex.curvature("fisher", problem, converted).dense()
    assert dense.dtype == torch.float64 and dense.shape == (2, 2)


def test_a_number_given_as_text_is_named(problem):
    message = r"rule 'sgd' option 'lr' = '0.1' is a string; expected a number in "
    with pytest.raises(ValueError, match=message) as error:
        ex.RunConfig("linreg_2d", rule="sgd", rule_options={"lr": "0.1"})
    assert "write lr=0.1" in str(error.value)
    with pytest.raises(ValueError, match=message):
        ex.run_on(problem, "sgd", {"lr": "0.1"})
    with pytest.raises(ValueError, match=r"'damping' = '1e-3' is a string"):
        ex.RunConfig("linreg_2d", rule="natural_gradient",
                     rule_options={"damping": "1e-3"})  # fmt: skip
    with pytest.raises(ValueError, match=r"'num_samples' = '80' is a string"):
        ex.problem("moons_mlp", num_samples="80")
    # numbers pass, and text still parses where text is all there is (a URL value)
    config = ex.RunConfig("linreg_2d", rule="sgd", rule_options={"lr": 0.1})
    assert config.resolved_rule_options()["lr"] == 0.1
    lr = next(o for o in ex.RULES["sgd"].schema({}) if o.name == "lr")
    assert lr.validate("0.1") == 0.1
