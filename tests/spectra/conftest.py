"""Small problems at perturbed points for the spectral tests."""

import pytest
import torch

import explorer as ex


@pytest.fixture(scope="session")
def digits_small():
    """digits 64-8-10 on 100 examples (P = 610) at a perturbed point."""
    problem = ex.problem("digits_mlp", hidden=(8,), train_size=100, seed=3)
    generator = torch.Generator().manual_seed(5)
    theta = problem.theta0 + 0.3 * torch.randn(
        problem.num_params, generator=generator, dtype=torch.float64
    )
    return problem, theta


@pytest.fixture(scope="session")
def moons():
    """moons 2-8-2 on 45 examples (P = 42) at a perturbed point."""
    problem = ex.problem("moons_mlp", hidden=(8,), num_samples=60, seed=1)
    generator = torch.Generator().manual_seed(2)
    theta = problem.theta0 + 0.5 * torch.randn(
        problem.num_params, generator=generator, dtype=torch.float64
    )
    return problem, theta
