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
from torch.func import jacfwd, jvp, vjp, vmap

from explorer.curvature.mlp import MLPForward, mlp_layers
from explorer.problems.base import Problem

#: Refuse a per-example Jacobian (N, C, P) bigger than this many bytes.
JACOBIAN_LIMIT_BYTES = 512 * 2**20


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
    """J products through ``torch.func`` for an arbitrary ``predict_fn``.

    Args:
        problem: The problem (its ``predict_fn`` must be ``torch.func``-compatible).
        theta: The point (P,).
        inputs: The batch inputs (N, D).
    """

    def __init__(self, problem: Problem, theta: Tensor, inputs: Tensor) -> None:
        self._theta = theta

        def forward(t: Tensor) -> Tensor:
            return problem.predict_fn(t, inputs)

        self._forward = forward
        self.outputs, self._vjp_fn = vjp(forward, theta)
        self.outputs = self.outputs.detach()

    def jvp(self, vectors: Tensor) -> Tensor:
        def one(v: Tensor) -> Tensor:
            return jvp(self._forward, (self._theta,), (v,))[1]

        return vmap(one)(vectors)

    def vjp(self, cotangents: Tensor) -> Tensor:
        return vmap(self._vjp_fn)(cotangents)[0]

    def jacobian(self) -> Tensor:
        """The per-example Jacobians (N, C, P), refused above a memory limit."""
        n, c = self.outputs.shape
        size = n * c * self._theta.numel() * self._theta.element_size()
        if size > JACOBIAN_LIMIT_BYTES:
            raise ValueError(
                f"the per-example Jacobian would need {size / 2**20:,.0f} MiB "
                f"(limit {JACOBIAN_LIMIT_BYTES / 2**20:,.0f} MiB); use a smaller "
                "batch or a matrix-free curvature"
            )
        return jacfwd(self._forward)(self._theta)

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
