"""Small networks: MLPs built from ``nn.Linear`` and elementwise activations.

The curvature code recognises this structure (see ``explorer.curvature.mlp``) and
uses hand-written forward/backward passes with cached activations for fast products;
K-FAC needs it too. Initialisation draws from an explicit ``torch.Generator``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

#: Activation name -> module class; all are elementwise.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
}


def mlp(
    sizes: Sequence[int],
    activation: str = "tanh",
    bias: bool = True,
    output_activation: str = "identity",
) -> nn.Sequential:
    """An MLP ``sizes[0] -> ... -> sizes[-1]``; hidden layers use ``activation``.

    Args:
        sizes: Layer widths including input and output, e.g. ``(64, 32, 10)``.
        activation: A key of :data:`ACTIVATIONS` for hidden layers.
        bias: Whether the linear layers have biases.
        output_activation: Applied after the last layer (``identity``: logits).
    """
    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise ValueError(f"sizes = {tuple(sizes)} must list at least 2 positive widths")
    for name in (activation, output_activation):
        if name not in ACTIVATIONS:
            raise ValueError(
                f"activation {name!r} is unknown; valid: {', '.join(ACTIVATIONS)}"
            )
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(int(fan_in), int(fan_out), bias=bias))
        last = index == len(sizes) - 2
        name = output_activation if last else activation
        if name != "identity":
            layers.append(ACTIVATIONS[name]())
    return nn.Sequential(*layers)


def mlp_num_params(sizes: Sequence[int], bias: bool = True) -> int:
    """P of :func:`mlp` ``(sizes)``: Σ (fan_in + bias)·fan_out, without building it.

    >>> mlp_num_params((64, 32, 10))  # 64·32 + 32 + 32·10 + 10
    2410
    """
    return sum(
        (int(fan_in) + int(bias)) * int(fan_out)
        for fan_in, fan_out in itertools.pairwise(sizes)
    )


def init_uniform(model: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default Linear init, U(−1/√fan_in, 1/√fan_in), from ``generator``."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.in_features)
                for param in module.parameters():
                    draw = torch.rand(
                        param.shape, generator=generator, dtype=torch.float64
                    )
                    param.copy_((2 * draw - 1) * bound)
