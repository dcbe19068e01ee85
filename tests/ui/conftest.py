"""A throw-away problem with a LayerNorm, registered as a plugin would register it,
for the selector's "yours" group and for coverage that leaves parameters out."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from explorer.problems.base import problem_from_model
from explorer.problems.likelihoods import CategoricalLoss
from explorer.problems.spec import PROBLEMS, ProblemSpec, register_problem

LAYERNORM_KEY = "test_layernorm_mlp"
LAYERNORM_LABEL = "LayerNorm MLP (test plugin)"


class LayerNormMLP(nn.Module):
    """3 → 4 → LayerNorm → tanh → 3: K-FAC has factors for ``fc1`` and ``fc2``
    only, so ``norm.weight`` and ``norm.bias`` are uncovered."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.norm = nn.LayerNorm(4)
        self.fc2 = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.norm(self.fc1(x))))


def build_layernorm_mlp(options, context):
    torch.manual_seed(context.seed)  # the test's own model, not library code
    model = LayerNormMLP()
    inputs = torch.randn(24, 3, generator=context.generator, dtype=torch.float64)
    targets = torch.randint(0, 3, (24,), generator=context.generator)
    return problem_from_model(
        model,
        context.dtype,
        context.device,
        key=LAYERNORM_KEY,
        label=LAYERNORM_LABEL,
        loss=CategoricalLoss(3),
        inputs=context.tensor(inputs),
        targets=targets.to(context.device),
    )


@pytest.fixture
def layernorm_problem():
    """Registers the LayerNorm problem (group "networks", from a plugin file, so
    listed under "yours") for one test, and removes it afterwards."""
    spec = ProblemSpec(
        key=LAYERNORM_KEY,
        label=LAYERNORM_LABEL,
        build=build_layernorm_mlp,
        group="networks",
        architecture="MLP 3-4-3 with a LayerNorm",
        source="plugins/test_layernorm.py",
    )
    register_problem(spec)
    try:
        yield spec
    finally:
        PROBLEMS.unregister(LAYERNORM_KEY)
