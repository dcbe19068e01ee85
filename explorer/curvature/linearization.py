r"""The network linearized at θ: products with the Jacobian J = ∂z/∂θ.

Every GGN-type matrix :math:`C = \frac1N \sum_n J_n^\top M_n J_n` (GGN, Fisher, MC
Fisher, empirical Fisher) needs only ``jvp`` (J V), ``vjp`` (Jᵀ U) and, for exact
diagonals, :math:`\sum_n \sum_k s_{nk} (J_n^\top r_{nk})^{\odot 2}`. MLPs get the
hand-written :class:`~explorer.curvature.mlp.MLPForward`; any other differentiable
``predict_fn`` gets :class:`FunctionalLinearization` over ``torch.func``.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor
from torch.func import jacfwd, jacrev, jvp, vjp, vmap

from explorer.autodiff import FORWARD_AD_LOCK
from explorer.curvature.graph_linearization import GraphLinearization
from explorer.curvature.mlp import MLPForward, mlp_layers
from explorer.problems.base import Problem

#: Refuse a per-example Jacobian (N, C, P) bigger than this many bytes.
JACOBIAN_LIMIT_BYTES = 512 * 2**20
#: Per-example Jacobians are taken for this many bytes of examples at a time (the
#: reverse passes under ``vmap`` hold about that much in intermediates).
JACOBIAN_CHUNK_BYTES = 64 * 2**20


class Linearization(Protocol):
    """What GGN-type operators need from the network at a fixed (θ, inputs)."""

    outputs: Tensor

    def jvp(self, vectors: Tensor) -> Tensor:
        """(K, P) -> (K, N, C)."""
        ...

    def vjp(self, cotangents: Tensor) -> Tensor:
        """(K, N, C) -> (K, P)."""
        ...

    def squared_jacobian_diagonal(
        self, factors: Tensor, signs: Tensor | None
    ) -> Tensor:
        """Σ_n Σ_k s_nk (J_nᵀ r_nk)² (P,) for factors (N, C, K) and signs (N, K)."""
        ...


class FunctionalLinearization:
    """J products for an arbitrary differentiable ``predict_fn``.

    Products go through one kept autograd graph
    (:class:`~explorer.curvature.graph_linearization.GraphLinearization`: a backward
    pass for Jᵀ U, a backward pass through the backward for J V; no forward pass
    is repeated). A model whose operations lack a double backward falls back to
    ``torch.func`` (``jvp``, and a cached ``vjp`` pull-back). Per-example Jacobians
    (dense matrices, exact diagonals) are taken in reverse mode, one example at a
    time under ``vmap``: C pull-backs per example instead of P push-forwards, in
    chunks of examples below a memory limit.

    Args:
        problem: The problem (its ``predict_fn`` must be ``torch.func``-compatible).
        theta: The point (P,).
        inputs: The batch inputs (N, ...).
    """

    def __init__(self, problem: Problem, theta: Tensor, inputs: Tensor) -> None:
        self._theta = theta
        self._predict = problem.predict_fn
        self._inputs = inputs

        def forward(t: Tensor) -> Tensor:
            return problem.predict_fn(t, inputs)

        self._forward = forward
        self._vjp_fn = None
        try:
            self._graph: GraphLinearization | None = GraphLinearization(
                problem, theta, inputs
            )
            self.outputs = self._graph.outputs
        except RuntimeError:  # no graph to differentiate: torch.func
            self._graph = None
            self.outputs = self._pullback_outputs()

    def _pullback_outputs(self) -> Tensor:
        outputs, self._vjp_fn = vjp(self._forward, self._theta)
        return outputs.detach()

    def _give_up_graph(self) -> None:
        """An operation without a double backward (``once_differentiable``) shows
        itself at the first J V: from then on, ``torch.func``.
        """
        self._graph = None
        if self._vjp_fn is None:
            self._pullback_outputs()

    def jvp(self, vectors: Tensor) -> Tensor:
        if self._graph is not None:
            try:
                return self._graph.jvp(vectors)
            except RuntimeError:
                self._give_up_graph()

        def one(v: Tensor) -> Tensor:
            return jvp(self._forward, (self._theta,), (v,))[1]

        with FORWARD_AD_LOCK:
            if vectors.shape[0] == 1:
                return one(vectors[0]).unsqueeze(0)
            return vmap(one)(vectors)

    def vjp(self, cotangents: Tensor) -> Tensor:
        if self._graph is not None:
            return self._graph.vjp(cotangents)
        if cotangents.shape[0] == 1:
            return self._vjp_fn(cotangents[0])[0].unsqueeze(0)
        return vmap(self._vjp_fn)(cotangents)[0]

    def jacobian(self) -> Tensor:
        """The per-example Jacobians (N, C, P), refused above a memory limit."""
        n, c = self.outputs.shape
        per_example = c * self._theta.numel() * self._theta.element_size()
        if n * per_example > JACOBIAN_LIMIT_BYTES:
            raise ValueError(
                f"the per-example Jacobian would need {n * per_example / 2**20:,.0f} "
                f"MiB (limit {JACOBIAN_LIMIT_BYTES / 2**20:,.0f} MiB); use a smaller "
                "batch or a matrix-free curvature"
            )
        try:
            return self._per_example_jacobian(
                max(1, JACOBIAN_CHUNK_BYTES // per_example)
            )
        except RuntimeError:
            # a model that cannot run on one example under vmap (it reshapes by
            # the batch size, say): forward mode over the whole batch instead
            with FORWARD_AD_LOCK:
                return jacfwd(self._forward)(self._theta)

    def _per_example_jacobian(self, chunk: int) -> Tensor:
        predict, theta = self._predict, self._theta

        def single(t: Tensor, example: Tensor) -> Tensor:
            return predict(t, example.unsqueeze(0))[0]

        per_example = vmap(jacrev(single), in_dims=(None, 0))
        return torch.cat(
            [
                per_example(theta, self._inputs[start : start + chunk])
                for start in range(0, self._inputs.shape[0], chunk)
            ]
        )

    def squared_jacobian_diagonal(
        self, factors: Tensor, signs: Tensor | None
    ) -> Tensor:
        projected = torch.einsum("ncp,nck->nkp", self.jacobian(), factors).pow(2)
        if signs is not None:
            projected = projected * signs.unsqueeze(-1)
        return projected.sum((0, 1))


def linearize(
    problem: Problem, theta: Tensor, inputs: Tensor, second_order: bool = False
) -> MLPForward | FunctionalLinearization:
    """The fastest available linearization of ``problem``'s network at θ."""
    layers = mlp_layers(problem)
    if layers is not None:
        return MLPForward(layers, theta, inputs, second_order=second_order)
    return FunctionalLinearization(problem, theta, inputs)


def as_rows(matrix: Tensor) -> Tensor:
    """(P, K) column blocks -> (K, P) rows, contiguous for the product kernels."""
    return matrix.T.contiguous()
