"""Brute-force references for the stochastic diagonals ``sophia_gnb`` and ``adahessian``.

Both draw from the generator in the operator's documented order (targets with
``problem.loss.sample``; probes as ``torch.randint(0, 2)`` mapped to ±1), so the same
generator gives the same draws; everything else is autograd on
``problem.objective`` and a dense Hessian (``tests/references.hessian_ref``), with
no closed-form output scores and no Hessian-vector products of the library.
"""

from __future__ import annotations

import torch

from explorer.problems.base import Batch, Problem
from tests.references import full, hessian_ref


def gnb_draw_ref(problem: Problem, theta, batch, generator) -> torch.Tensor:
    """One draw of B·ĝ⊙ĝ (P,): ĝ = ∇ h(θ) on the batch with sampled targets."""
    outputs = problem.predict(theta, batch.inputs).detach()
    sampled = problem.loss.sample(outputs, generator)
    point = theta.detach().requires_grad_(True)
    with torch.enable_grad():
        value = problem.objective(point, Batch(batch.inputs, sampled))
        (grad,) = torch.autograd.grad(value, point)
    return batch.size * grad * grad


def gnb_ref(problem: Problem, theta, batch=None, generator=None, samples=1):
    """diag of the mean of ``samples`` draws of :func:`gnb_draw_ref` (P, P)."""
    batch = full(problem, batch)
    total = sum(gnb_draw_ref(problem, theta, batch, generator) for _ in range(samples))
    return torch.diag(total / samples)


def spatial_average_ref(diagonal, shapes):
    """AdaHessian's spatial averaging by explicit loops over (out, in) kernels."""
    out, offset = diagonal.clone(), 0
    for shape in shapes:
        numel = int(torch.Size(shape).numel())
        if len(shape) >= 3:
            piece = out[offset : offset + numel].view(shape)
            for o in range(shape[0]):
                for i in range(shape[1]):
                    piece[o, i] = piece[o, i].sum() / piece[o, i].numel()
        offset += numel
    return out


def rademacher_ref(size, count, generator, dtype):
    """The operator's probes: ``torch.randint(0, 2)`` on the generator, as ±1."""
    bits = torch.randint(0, 2, (size, count), generator=generator)
    return torch.where(bits == 1, 1.0, -1.0).to(dtype)


def hutchinson_ref(
    problem: Problem, theta, batch=None, generator=None, probes=10, spatial=True
):
    """diag((1/k) Σ z ⊙ H z) (P, P) with the dense autograd Hessian."""
    hessian = hessian_ref(problem, theta, batch)
    z = rademacher_ref(problem.num_params, probes, generator, theta.dtype)
    diagonal = torch.stack([z[:, s] * (hessian @ z[:, s]) for s in range(probes)])
    diagonal = diagonal.mean(0)
    if spatial:
        diagonal = spatial_average_ref(diagonal, problem.param_shapes)
    return torch.diag(diagonal)
