"""A declarative list of tiny problems that drives the contract and reference tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

import explorer as ex


@dataclass(frozen=True)
class Case:
    """A small problem, a point away from special values, and an optional batch."""

    name: str
    key: str
    options: dict[str, Any] = field(default_factory=dict)
    batch_size: int | None = None
    perturbation: float = 0.3

    def build(self, dtype=torch.float64):
        problem = ex.problem(self.key, dtype=dtype, seed=1, **self.options)
        generator = torch.Generator().manual_seed(7)
        noise = torch.randn(
            problem.num_params, generator=generator, dtype=torch.float64
        )
        theta = problem.theta0 + self.perturbation * noise.to(dtype)
        batch = None
        if self.batch_size is not None:
            batch = problem.batch(torch.arange(self.batch_size))
        return problem, theta, batch


CASES = [
    Case("gaussian_fit_sigma", "gaussian_fit", {"num_samples": 30}, perturbation=0.05),
    Case(
        "gaussian_fit_log",
        "gaussian_fit",
        {"num_samples": 30, "parameterization": "log_sigma"},
    ),
    Case("linreg_gaussian", "linreg_2d", {"num_samples": 50}),
    Case(
        "linreg_tanh_mean",
        "linreg_2d",
        {"num_samples": 50, "loss": "gaussian_tanh_mean"},
    ),
    Case("logreg", "logreg_2d", {"num_samples": 50}),
    Case("tiny_tanh", "tiny_tanh", {"num_samples": 20}),
    Case(
        "tiny_tanh_mean", "tiny_tanh", {"num_samples": 20, "loss": "gaussian_tanh_mean"}
    ),
    Case("rosenbrock", "rosenbrock"),
    Case("moons", "moons_mlp", {"num_samples": 40, "hidden": (6,)}),
    Case("digits_tanh", "digits_mlp", {"hidden": (5,), "train_size": 40}),
    Case(
        "digits_relu_deep",
        "digits_mlp",
        {"hidden": (4, 3), "activation": "relu", "train_size": 30},
    ),
    Case(
        "digits_sigmoid",
        "digits_mlp",
        {"hidden": (4,), "activation": "sigmoid", "train_size": 30},
    ),
    Case(
        "digits_softplus",
        "digits_mlp",
        {"hidden": (4,), "activation": "softplus", "train_size": 30},
    ),
    Case("autoencoder", "digits_autoencoder", {"hidden": (4, 3)}, batch_size=12),
    Case("stream", "stream_logreg", {"dim": 3, "eval_size": 200}),
]

MATCHING = [
    c
    for c in CASES
    if c.name
    not in {
        "gaussian_fit_sigma",
        "gaussian_fit_log",
        "linreg_tanh_mean",
        "tiny_tanh_mean",
    }
]
NON_MATCHING = [c for c in CASES if c not in MATCHING]


def ids(cases):
    return [case.name for case in cases]
