"""Small neural networks on shipped or generated data: moons, digits, autoencoder."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from explorer.options import Option
from explorer.problems.base import Problem, problem_from_model
from explorer.problems.likelihoods import BernoulliLoss, CategoricalLoss
from explorer.problems.models import ACTIVATIONS, init_uniform, mlp, mlp_num_params
from explorer.problems.spec import BuildContext, ProblemSpec, TinyCase


def hidden_option(default: tuple[int, ...]) -> Option:
    return Option(
        "hidden",
        default,
        "Hidden layer widths, e.g. 32 or 64,32 (at most 8 layers).",
        low=1,
        high=4096,
        kind="ints",
        max_items=8,
    )


def activation_option(default: str = "tanh") -> Option:
    return Option(
        "activation",
        default,
        "Elementwise activation of the hidden layers.",
        choices=tuple(name for name in ACTIVATIONS if name != "identity"),
    )


def test_fraction_option(default: float) -> Option:
    return Option(
        "test_fraction",
        default,
        "Fraction of the examples held out as a test set (0 keeps all for training).",
        low=0.0,
        high=0.9,
    )


def split(
    n: int, test_fraction: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """A seeded random split of range(n) into (train, test) index tensors."""
    order = torch.randperm(n, generator=generator)
    n_test = round(test_fraction * n)
    return order[n_test:], order[:n_test]


def _network_problem(
    sizes, options, context, *, inputs, targets, train, test, **fields
) -> Problem:
    model = mlp(sizes, options["activation"]).double()
    init_uniform(model, context.generator)
    return problem_from_model(
        model,
        context.dtype,
        context.device,
        options=options,
        **context.data_fields(inputs, targets, train, test),
        **fields,
    )


# ------------------------------------------------------------------ moons_mlp
def build_moons_mlp(options: dict[str, Any], context: BuildContext) -> Problem:
    from sklearn.datasets import make_moons

    x, y = make_moons(
        n_samples=options["num_samples"],
        noise=options["noise"],
        random_state=context.seed,
    )
    inputs = torch.as_tensor(x, dtype=torch.float64)
    targets = torch.as_tensor(y, dtype=torch.long)
    train, test = split(len(x), options["test_fraction"], context.generator)
    return _network_problem(
        (2, *options["hidden"], 2),
        options,
        context,
        inputs=inputs,
        targets=targets,
        train=train,
        test=test,
        key="moons_mlp",
        label=f"Two moons, MLP 2-{'-'.join(map(str, options['hidden']))}-2",
        loss=CategoricalLoss(2),
        description=MOONS_MLP.description,
    )


MOONS_MLP = ProblemSpec(
    key="moons_mlp",
    label="Two moons (small MLP)",
    architecture="MLP 2-16-2, tanh",
    build=build_moons_mlp,
    count_params=lambda options: mlp_num_params((2, *options["hidden"], 2)),
    options=(
        Option(
            "num_samples", 200, "Number of points (train + test).", low=8, high=100_000
        ),
        Option(
            "noise",
            0.2,
            "Std. dev. of the Gaussian noise on the moons.",
            low=0.0,
            high=2.0,
        ),
        hidden_option((16,)),
        activation_option(),
        test_fraction_option(0.25),
    ),
    description=(
        "Two interleaving half-moons (scikit-learn's generator), classified by a small "
        "MLP with softmax cross-entropy. Small enough for dense matrices; the decision "
        "boundary shows each optimizer in function space."
    ),
    tags=frozenset({"classification", "inputs_2d"}),
    test_cases=(TinyCase("moons", {"num_samples": 40, "hidden": (6,)}),),
)


# ----------------------------------------------------------------- digits data
def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8×8 digits: pixels (1797, 64) in [0, 16] and labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.data.astype(np.float64), data.target.astype(np.int64)


def build_digits_mlp(options: dict[str, Any], context: BuildContext) -> Problem:
    pixels, labels = load_digits_arrays()
    train, test = split(len(pixels), options["test_fraction"], context.generator)
    if options["train_size"] is not None:
        train = train[: options["train_size"]]
    inputs = torch.as_tensor(pixels)
    # Standardize with training statistics only; constant pixels stay at zero.
    mean, std = inputs[train].mean(0), inputs[train].std(0)
    inputs = (inputs - mean) / torch.where(std > 0, std, torch.ones_like(std))
    sizes = (64, *options["hidden"], 10)
    return _network_problem(
        sizes,
        options,
        context,
        inputs=inputs,
        targets=torch.as_tensor(labels),
        train=train,
        test=test,
        key="digits_mlp",
        label=f"Digits, MLP {'-'.join(map(str, sizes))}",
        loss=CategoricalLoss(10),
        description=DIGITS_MLP.description,
    )


DIGITS_MLP = ProblemSpec(
    key="digits_mlp",
    label="Digits 8×8 (MLP)",
    architecture="MLP 64-32-10, tanh",
    build=build_digits_mlp,
    count_params=lambda options: mlp_num_params((64, *options["hidden"], 10)),
    options=(
        hidden_option((32,)),
        activation_option(),
        test_fraction_option(0.2),
        Option(
            "train_size",
            None,
            "Use only this many training examples (default: all).",
            low=1,
            high=1797,
            kind="int",
            nullable=True,
        ),
    ),
    description=(
        "scikit-learn's bundled 1,797 handwritten 8×8 digits, standardized pixels, "
        "10-way softmax cross-entropy with an MLP of configurable width and "
        "activation. 64-32-10 has P = 2,410 parameters: dense matrices fit."
    ),
    group="real data",
    tags=frozenset({"classification", "real_data"}),
    # Curvature on 128 examples: the exact Fisher/GGN steps are then 20 CG
    # iterations of cheap products rather than a P × P factorization.
    run_defaults={"curvature_batch_size": 128},
    test_cases=(
        TinyCase("digits_tanh", {"hidden": (5,), "train_size": 40}),
        TinyCase(
            "digits_relu_deep",
            {"hidden": (4, 3), "activation": "relu", "train_size": 30},
        ),
        TinyCase(
            "digits_sigmoid",
            {"hidden": (4,), "activation": "sigmoid", "train_size": 30},
        ),
        TinyCase(
            "digits_softplus",
            {"hidden": (4,), "activation": "softplus", "train_size": 30},
        ),
    ),
)


# ---------------------------------------------------------- digits_autoencoder
def autoencoder_sizes(encoder: tuple[int, ...]) -> tuple[int, ...]:
    """64, the encoder's widths, their mirror without the code, 64."""
    return (64, *encoder, *tuple(encoder)[-2::-1], 64)


def build_digits_autoencoder(options: dict[str, Any], context: BuildContext) -> Problem:
    pixels, _ = load_digits_arrays()
    binary = torch.as_tensor(pixels / 16.0 > 0.5, dtype=torch.float64)
    train, test = split(len(pixels), options["test_fraction"], context.generator)
    sizes = autoencoder_sizes(options["hidden"])
    return _network_problem(
        sizes,
        options,
        context,
        inputs=binary,
        targets=binary.to(context.dtype),
        train=train,
        test=test,
        key="digits_autoencoder",
        label=f"Digits autoencoder {'-'.join(map(str, sizes))}",
        loss=BernoulliLoss(64),
        description=DIGITS_AUTOENCODER.description,
    )


DIGITS_AUTOENCODER = ProblemSpec(
    key="digits_autoencoder",
    label="Digits autoencoder (Bernoulli)",
    architecture="MLP autoencoder 64-32-16-8-16-32-64, tanh",
    build=build_digits_autoencoder,
    count_params=lambda options: mlp_num_params(autoencoder_sizes(options["hidden"])),
    options=(
        Option(
            "hidden",
            (32, 16, 8),
            "Encoder widths down to the code; the decoder mirrors them (at most 8).",
            low=1,
            high=1024,
            kind="ints",
            max_items=8,
        ),
        activation_option(),
        test_fraction_option(0.2),
    ),
    description=(
        "A deep autoencoder reconstructing binarized 8×8 digits through a narrow "
        "code, with independent Bernoulli outputs (logits): a miniature of the "
        "classic autoencoder benchmark of the Hessian-free and K-FAC papers."
    ),
    group="real data",
    tags=frozenset({"real_data"}),
    # About 1,400 training examples: runs step on mini-batches of 100 and the
    # curvature tests average over the first 12.
    test_cases=(
        TinyCase(
            "autoencoder",
            {"hidden": (4, 3)},
            batch_size=100,
            curvature_batch_size=12,
        ),
    ),
)
