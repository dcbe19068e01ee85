"""Problems: data, models and likelihoods; the ``PROBLEMS`` registry."""

from explorer.problems import (
    counts,
    glm,
    heteroscedastic,
    mnist1d,
    networks,
    sequences,
    streaming,
    toy,
    vision,
)
from explorer.problems.base import Batch, LinearLayer, Problem
from explorer.problems.likelihoods import (
    LIKELIHOODS,
    BernoulliLoss,
    CategoricalLoss,
    GaussianHeteroscedasticLoss,
    GaussianLoss,
    GaussianMeanScaleLoss,
    GaussianTanhMeanLoss,
    LossSpec,
    PoissonLoss,
)
from explorer.problems.modules import problem_from_module
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
register_problem(mnist1d.MNIST1D_MLP)
register_problem(vision.MNIST_CNN)
register_problem(sequences.TINY_TRANSFORMER)
register_problem(glm.DOCTOR_VISITS)
register_problem(heteroscedastic.HETEROSCEDASTIC_1D)
register_problem(streaming.STREAM_LOGREG)

__all__ = [
    "LIKELIHOODS",
    "PROBLEMS",
    "Batch",
    "BernoulliLoss",
    "BuildContext",
    "CategoricalLoss",
    "GaussianHeteroscedasticLoss",
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
    "problem_from_module",
    "register_problem",
]
