"""K-FAC against curvlinops' ``KFACLinearOperator`` (an independent implementation).

``output_factor="exact"`` is curvlinops' ``fisher_type="type-2"`` and
``"empirical"`` its ``"empirical"``; ``kfac_approx`` and
``separate_weight_and_bias`` mean the same in both. With
``CrossEntropyLoss(reduction="mean")`` curvlinops includes the 1/N of our mean
loss, so the dense matrices compare 1:1 (PERF_NOTES.md). Models: a small conv net
(Conv2d → ReLU → Flatten → Linear), self-attention written with nn.Linear q, k, v
and output projections over a sequence (weight sharing; mean-pooled or last
token) with a classifier, and a plain MLP (the fast path).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import explorer as ex
from explorer.curvature.mlp import mlp_layers
from explorer.problems.base import problem_from_model
from explorer.problems.likelihoods import CategoricalLoss
from tests.cases import CASES, ids
from tests.references import relative_error

curvlinops = pytest.importorskip("curvlinops")

DTYPE = torch.float64


class Attention(nn.Module):
    """Single-head self-attention on (N, L, D), then mean pooling or the last
    token, then a classifier.
    """

    def __init__(self, width: int = 4, classes: int = 3, pool: str = "mean"):
        super().__init__()
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.out = nn.Linear(width, width)
        self.head = nn.Linear(width, classes)
        self.pool = pool

    def forward(self, x):
        q, k, v = self.query(x), self.key(x), self.value(x)
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1)
        mixed = self.out(weights @ v)
        pooled = mixed.mean(1) if self.pool == "mean" else mixed[:, -1]
        return self.head(pooled)


def _model(name: str) -> tuple[nn.Module, tuple[int, ...], int]:
    """(model, input shape, classes)."""
    torch.manual_seed(0)
    if name == "conv":
        model = nn.Sequential(
            nn.Conv2d(2, 3, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(3 * 3 * 3, 4),
        )
        return model, (6, 2, 5, 5), 4
    if name == "mlp":
        return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 3)), (6, 3), 3
    pool = "last" if name == "attention_last" else "mean"
    return Attention(pool=pool), (6, 5, 4), 3


def _problem(name: str):
    model, shape, classes = _model(name)
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(*shape, generator=generator, dtype=DTYPE)
    targets = torch.randint(0, classes, (shape[0],), generator=generator)
    return problem_from_model(
        model, DTYPE, torch.device("cpu"), key=name, label=name,
        loss=CategoricalLoss(classes), inputs=inputs, targets=targets,
    )  # fmt: skip


def _curvlinops_dense(problem, fisher_type: str, approx: str, separate: bool):
    model = problem.model
    operator = curvlinops.KFACLinearOperator(
        model,
        nn.CrossEntropyLoss(reduction="mean"),
        [p for p in model.parameters()],
        [(problem.inputs, problem.targets)],
        fisher_type=fisher_type,
        kfac_approx=approx,
        separate_weight_and_bias=separate,
        # the default check computes the factors once more (PERF_NOTES.md)
        check_deterministic=False,
    )
    return operator @ torch.eye(problem.num_params, dtype=DTYPE)


FISHER_TYPES = [("exact", "type-2"), ("empirical", "empirical")]


@pytest.mark.parametrize("separate", [False, True], ids=["joined", "separate"])
@pytest.mark.parametrize("approx", ["expand", "reduce"])
@pytest.mark.parametrize(("output_factor", "fisher_type"), FISHER_TYPES)
@pytest.mark.parametrize("name", ["conv", "attention", "attention_last", "mlp"])
def test_dense_matches_curvlinops(name, output_factor, fisher_type, approx, separate):
    problem = _problem(name)
    expected = _curvlinops_dense(problem, fisher_type, approx, separate)
    op = ex.curvature(
        "kfac", problem, problem.theta0, output_factor=output_factor,
        kfac_approx=approx, separate_weight_and_bias=separate,
    )  # fmt: skip
    assert relative_error(op.dense(), expected) < 1e-10
    assert float(expected.abs().max()) > 1e-3


@pytest.mark.parametrize("name", ["conv", "attention"])
def test_the_compared_options_change_the_matrix(name):
    """The comparisons above tell the options apart: on models with weight sharing
    expand differs from reduce, and separate blocks from joined ones (both here and
    in curvlinops).
    """
    problem = _problem(name)
    base = _curvlinops_dense(problem, "type-2", "expand", False)
    reduced = _curvlinops_dense(problem, "type-2", "reduce", False)
    separate = _curvlinops_dense(problem, "type-2", "expand", True)
    assert relative_error(reduced, base) > 1e-3
    assert relative_error(separate, base) > 1e-3
    ours = ex.curvature("kfac", problem, problem.theta0, kfac_approx="reduce")
    assert relative_error(ours.dense(), reduced) < 1e-10


def _on_the_generic_path(case) -> bool:
    """A registered tiny case K-FAC builds on without the MLP fast path, with a
    loss curvlinops knows.
    """
    problem = ex.problem(case.key, **case.options)
    return (
        ex.CURVATURES["kfac"].incompatibility(problem) is None
        and mlp_layers(problem) is None
        and isinstance(
            problem.loss.torch_loss(),
            (nn.CrossEntropyLoss, nn.MSELoss, nn.BCEWithLogitsLoss),
        )
    )


GENERIC = [case for case in CASES if _on_the_generic_path(case)]


@pytest.mark.parametrize("approx", ["expand", "reduce"])
@pytest.mark.parametrize("case", GENERIC, ids=ids(GENERIC))
def test_registered_models_match_curvlinops_on_the_covered_layers(case, approx):
    """Registered conv nets and transformers (with LayerNorms and embeddings that
    K-FAC leaves uncovered): curvlinops on the covered layers' parameters only.
    curvlinops' loss is ``torch_loss()``, which is ``loss_scale`` times smaller
    than ours, and its type-2 factors scale with it.
    """
    problem, theta, batch = case.build()
    batch = problem.batch() if batch is None else batch
    op = ex.curvature("kfac", problem, theta, batch=batch, kfac_approx=approx)
    model = copy.deepcopy(problem.model)
    with torch.no_grad():
        for name, value in problem.unflatten(theta).items():
            model.get_parameter(name).copy_(value)
    params, covered = [], []
    for layer in op.layers:  # θ order: weight, then bias
        for part, span in (("weight", layer.weight), ("bias", layer.bias)):
            if span is not None:
                params.append(model.get_parameter(f"{layer.name}.{part}"))
                covered.extend(range(span.start, span.stop))
    operator = curvlinops.KFACLinearOperator(
        model,
        problem.loss.torch_loss(),
        params,
        [(batch.inputs, batch.targets)],
        fisher_type="type-2",
        kfac_approx=approx,
        separate_weight_and_bias=False,
        check_deterministic=False,
    )
    expected = operator @ torch.eye(len(covered), dtype=theta.dtype)
    index = torch.tensor(covered)
    dense = op.dense()
    got = dense[index[:, None], index]
    assert relative_error(got, problem.loss.loss_scale * expected) < 1e-10
    # everything else is zero
    outside = torch.ones(problem.num_params, dtype=torch.bool)
    outside[index] = False
    assert torch.count_nonzero(dense[outside]) == 0
