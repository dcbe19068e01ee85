"""A problem plugin: your own conv net on scikit-learn's 8×8 digits.

Load it with ``--plugin examples/plugins/digits_convnet.py`` (CLI), by copying it into
the app's ``plugins/`` folder, or through ``EXPLORER_PLUGINS``. It registers the
problem ``digits_convnet``: the app lists it under "yours", ``--problem
digits_convnet`` runs it, ``explorer check --problems digits_convnet`` checks on it.

The builder receives the validated options and a context with the dtype, device,
seed and a seeded generator, and returns ``ex.problem_from_module(...)``: the same
call you would make in a notebook with a module you already have.
"""

import torch
from sklearn.datasets import load_digits
from torch import nn

import explorer as ex


def build(options, context):
    data = load_digits()
    images = torch.as_tensor(data.images / 16.0, dtype=torch.float64).unsqueeze(1)
    labels = torch.as_tensor(data.target)
    order = torch.randperm(len(labels), generator=context.generator)
    train, test = order[: options["train_size"]], order[-300:]
    torch.manual_seed(context.seed)  # the modules' own initialization
    channels = options["channels"]
    model = nn.Sequential(
        nn.Conv2d(1, channels, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(channels * 16, 10),
    )
    return ex.problem_from_module(
        model,
        images[train],
        labels[train],
        "categorical",
        test=(images[test], labels[test]),
        dtype=context.dtype,
        device=context.device,
        key="digits_convnet",
        label=f"Digits 8×8, conv net ({channels} channels)",
        description=DESCRIPTION,
    )


DESCRIPTION = (
    "A plugin's problem: a one-convolution net (3×3, ReLU, 2×2 average pooling, "
    "linear classifier) on scikit-learn's bundled 8×8 digits, built with "
    "ex.problem_from_module."
)

ex.register_problem(
    ex.ProblemSpec(
        key="digits_convnet",
        label="Digits 8×8 (your conv net)",
        architecture="Conv2d 3×3 → ReLU → AvgPool → Linear",
        build=build,
        options=(
            ex.Option("channels", 4, "Convolution channels.", low=1, high=64),
            ex.Option("train_size", 400, "Training images.", low=10, high=1400),
        ),
        description=DESCRIPTION,
        group="yours",
        tags=frozenset({"classification", "real_data"}),
        test_cases=(
            ex.TinyCase("digits_convnet_tiny", {"channels": 1, "train_size": 20}),
        ),
    )
)
