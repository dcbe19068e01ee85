"""Problems: data, models and likelihoods; the ``PROBLEMS`` registry."""

from explorer.problems import counts, networks, streaming, toy
from explorer.problems.base import Batch, LinearLayer, Problem
from explorer.problems.likelihoods import (
    LIKELIHOODS,
    BernoulliLoss,
    CategoricalLoss,
    GaussianLoss,
    GaussianMeanScaleLoss,
    GaussianTanhMeanLoss,
    LossSpec,
    PoissonLoss,
)
from explorer.problems.spec import (
    PROBLEMS,
    BuildContext,
    ProblemSpec,
    TinyCase,
    problem,
    register_problem,
)

# One line per problem: the order is the order of the UI selector.
register_problem(toy.GAUSSIAN_FIT)
register_problem(toy.LINREG_2D)
register_problem(toy.LOGREG_2D)
register_problem(toy.TINY_TANH)
register_problem(toy.ROSENBROCK)
register_problem(counts.POISSON_2D)
register_problem(networks.MOONS_MLP)
register_problem(networks.DIGITS_MLP)
register_problem(networks.DIGITS_AUTOENCODER)
register_problem(streaming.STREAM_LOGREG)

__all__ = [
    "LIKELIHOODS",
    "PROBLEMS",
    "Batch",
    "BernoulliLoss",
    "BuildContext",
    "CategoricalLoss",
    "GaussianLoss",
    "GaussianMeanScaleLoss",
    "GaussianTanhMeanLoss",
    "LinearLayer",
    "LossSpec",
    "PoissonLoss",
    "Problem",
    "ProblemSpec",
    "TinyCase",
    "problem",
    "register_problem",
]
