"""The objective at many parameter vectors in one batched (vmapped) call."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import vmap

from explorer.problems.base import Batch, Problem

#: Working memory aimed at per chunk of parameter vectors.
CHUNK_BYTES = 64 * 2**20


def chunk_size(problem: Problem, batch: Batch | None = None) -> int:
    """How many parameter vectors one vmapped chunk evaluates (memory-bounded).

    Each vector needs about N × (widest layer or C) activations, a few times over,
    plus a copy of θ.
    """
    n = (batch or problem.batch()).size
    widths = [layer.out_features for layer in problem.layers] or [1]
    width = max(max(widths), problem.num_outputs, 1)
    element = problem.theta0.element_size()
    per_point = (4 * n * width + 2 * problem.num_params) * element
    return int(max(1, min(65536, CHUNK_BYTES // per_point)))


def objective_at(
    problem: Problem,
    thetas: Tensor,
    batch: Batch | None = None,
    *,
    chunk: int | None = None,
) -> Tensor:
    """h(θ_i) for each row of ``thetas`` (M, P) -> (M,), by one vmapped call.

    Exactly ``problem.objective`` at every row (``torch.func.vmap`` over θ, in
    memory-bounded chunks); non-finite values are returned as they are.

    Args:
        problem: The problem.
        thetas: Parameter vectors (M, P), any dtype/device (moved to the problem's).
        batch: The examples (default: the whole training set).
        chunk: Vectors per vmapped chunk (default: :func:`chunk_size`).
    """
    if thetas.dim() != 2 or thetas.shape[1] != problem.num_params:
        raise ValueError(
            f"thetas has shape {tuple(thetas.shape)}; expected (M, {problem.num_params})"
        )
    thetas = thetas.to(dtype=problem.dtype, device=problem.device)
    batch = batch or problem.batch()
    chunk = chunk or chunk_size(problem, batch)
    function = vmap(lambda theta: problem.objective(theta, batch), chunk_size=chunk)
    with torch.no_grad():
        return function(thetas)
