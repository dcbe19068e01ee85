"""Small real histories (``ex.compare``) shared by the figure tests."""

import pytest

import explorer as ex


@pytest.fixture(scope="session")
def rosenbrock_runs():
    """sgd (diverges), natural gradient and Newton for 6 steps on Rosenbrock."""
    return ex.compare(
        "rosenbrock",
        ["sgd", "natural_gradient", "newton"],
        steps=6,
        device="cpu",
    )


@pytest.fixture(scope="session")
def moons_runs():
    """sgd and K-FAC for 5 steps on a small moons MLP (P = 26)."""
    options = {"hidden": [4], "num_samples": 40}
    runs = ex.compare(
        "moons_mlp", ["sgd", "kfac"], steps=5, problem_options=options, device="cpu"
    )
    return runs, ex.problem("moons_mlp", hidden=(4,), num_samples=40)
