r"""J products for any model from one kept autograd graph (no forward-mode AD).

At a fixed θ the network is run once with θ a leaf that requires grad, and its
graph is kept. Then

* ``vjp``: :math:`J^\top U` is one backward pass through that graph;
* ``jvp``: :math:`J V` is a backward pass through the graph of the backward pass
  itself (the double-vjp trick). With :math:`g(u) = J^\top u` built once with
  ``create_graph=True`` at a dummy :math:`u`, :math:`g` is linear in :math:`u`, so
  :math:`\partial (v^\top g(u)) / \partial u = J v` whatever :math:`u` is.

Neither product re-runs the forward pass, and both stay in plain autograd, which on
conv nets and attention was measured at about half the cost of ``torch.func``'s
``jvp`` plus its cached pull-back (benchmarks/bench_models.py). Blocks of K vectors
use ``is_grads_batched`` (a vmapped backward), one at a time where an operation has
no batching rule.
"""

from __future__ import annotations

import torch
from torch import Tensor

from explorer.problems.base import Problem


class GraphLinearization:
    """``jvp``/``vjp`` of ``problem.predict_fn`` at θ through one kept graph.

    Args:
        problem: The problem (any differentiable ``predict_fn``).
        theta: The point (P,).
        inputs: The batch inputs (N, ...).

    Raises:
        RuntimeError: When the model's operations have no double backward (the
            caller then uses ``torch.func`` instead).
    """

    def __init__(self, problem: Problem, theta: Tensor, inputs: Tensor) -> None:
        with torch.enable_grad():
            self._point = theta.detach().requires_grad_(True)
            outputs = problem.predict_fn(self._point, inputs)
            self._graph_outputs = outputs
            self._dummy = torch.zeros_like(outputs, requires_grad=True)
            (pulled,) = torch.autograd.grad(
                outputs, self._point, self._dummy, create_graph=True, allow_unused=True
            )
        if pulled is None or not pulled.requires_grad:
            raise RuntimeError("the outputs do not depend on θ through a graph")
        self._pulled = pulled
        self._checked = False
        self.outputs = outputs.detach()

    def vjp(self, cotangents: Tensor) -> Tensor:
        """Jᵀ U for U (K, N, C) -> (K, P)."""
        return batched_backward(self._graph_outputs, self._point, cotangents)

    def jvp(self, vectors: Tensor) -> Tensor:
        """J V for V (K, P) -> (K, N, C).

        Raises:
            RuntimeError: The first product fails the adjoint check (see
                :meth:`_check_adjoint`).
        """
        tangents = batched_backward(self._pulled, self._dummy, vectors)
        if not self._checked:
            self._check_adjoint(vectors[0], tangents[0])
            self._checked = True
        return tangents

    def _check_adjoint(self, vector: Tensor, tangent: Tensor) -> None:
        """⟨u, J v⟩ = ⟨Jᵀ u, v⟩ for a random u, once.

        An operation whose backward is not itself differentiable (a custom
        ``autograd.Function`` marked ``once_differentiable``) cuts the double-vjp
        graph and would give a J v that is silently zero in part; the first-order
        pull-back is still right, so the adjoint identity exposes it at the cost of
        one extra pull-back.
        """
        generator = torch.Generator(device="cpu").manual_seed(0)
        probe = torch.randn(
            self.outputs.shape, generator=generator, dtype=torch.float64
        ).to(tangent)
        pulled = self.vjp(probe.unsqueeze(0))[0]
        left = float((probe * tangent).sum())
        right = float((pulled * vector).sum())
        scale = float(probe.norm() * tangent.norm() + pulled.norm() * vector.norm())
        tolerance = 1e-8 if tangent.dtype == torch.float64 else 1e-3
        if abs(left - right) > tolerance * max(scale, 1e-300):
            raise RuntimeError(
                "J v through the double backward fails the adjoint check "
                f"(⟨u, Jv⟩ = {left:.6g}, ⟨Jᵀu, v⟩ = {right:.6g})"
            )


def batched_backward(output: Tensor, wrt: Tensor, cotangents: Tensor) -> Tensor:
    """∂⟨output, c_k⟩/∂wrt for each row c_k of ``cotangents`` (K, *output.shape)."""
    if cotangents.shape[0] == 1:
        (out,) = torch.autograd.grad(
            output, wrt, cotangents[0], retain_graph=True, allow_unused=True
        )
        return _filled(out, wrt).unsqueeze(0)
    try:
        (out,) = torch.autograd.grad(
            output,
            wrt,
            cotangents,
            retain_graph=True,
            is_grads_batched=True,
            allow_unused=True,
        )
    except RuntimeError:  # an operation without a batching rule
        return torch.cat(
            [batched_backward(output, wrt, c.unsqueeze(0)) for c in cotangents]
        )
    if out is None:
        return torch.zeros(
            cotangents.shape[0], *wrt.shape, dtype=wrt.dtype, device=wrt.device
        )
    return out.detach()


def _filled(out: Tensor | None, like: Tensor) -> Tensor:
    """Zeros where nothing flows back (a parameter the outputs do not use)."""
    return torch.zeros_like(like) if out is None else out.detach()
