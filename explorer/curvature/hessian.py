r"""The Hessian :math:`H = \nabla^2 h(θ)` of the mean objective.

MLPs use a hand-written R-operator over cached activations (about one gradient per
product at a fixed θ); other models differentiate the gradient's graph again
(reverse-over-reverse autograd). H can be
indefinite; ``solve`` then raises :class:`IndefiniteCurvatureError` with a remedy.
"""

from __future__ import annotations

import torch
from torch import Tensor

from explorer.curvature.base import CurvatureOperator
from explorer.curvature.graph_linearization import batched_backward
from explorer.curvature.linearization import as_rows
from explorer.curvature.mlp import MLPForward, mlp_layers
from explorer.curvature.mlp_dense import dense_mlp_curvature
from explorer.curvature.tags import Tags


class HessianOperator(CurvatureOperator):
    """H = ∇²h: the exact Hessian of the mean loss on the batch."""

    key = "hessian"
    label = "Hessian"
    description = "H = ∇²h(θ): exact second derivatives; indefinite away from minima."
    declared = Tags(exact=True)

    def _setup(self) -> None:
        layers = mlp_layers(self.problem)
        self._mlp = None
        if layers is not None:
            self._rows_product = self._mlp_product(layers)
        else:
            self._rows_product = self._functional_product()

    def _mlp_product(self, layers):
        loss, n = self.problem.loss, self.batch.size
        inputs, targets = self.batch
        forward = MLPForward(layers, self.theta, inputs, second_order=True)
        outputs = forward.outputs
        gradient_pass = forward.gradient_pass(loss.output_grad(outputs, targets) / n)
        self._mlp = (forward, gradient_pass, outputs, targets)

        product = loss.output_hessian_product(outputs, targets)

        def output_hessian_vp(u: Tensor) -> Tensor:
            return product(u) / n

        return lambda rows: forward.hessian_products(
            rows, gradient_pass, output_hessian_vp
        )

    def _functional_product(self):
        """Reverse-over-reverse: ∇h is built once with its graph kept, and each
        product H V is one more backward pass through it (PERF_NOTES.md: 1.0–1.8
        gradients, against 2.9–4.8 for forward-over-reverse ``jvp`` of ``grad``).
        """
        problem, batch = self.problem, self.batch
        with torch.enable_grad():
            point = self.theta.detach().requires_grad_(True)
            (gradient,) = torch.autograd.grad(
                problem.objective(point, batch), point, create_graph=True
            )

        def rows(vectors: Tensor) -> Tensor:
            return batched_backward(gradient, point, vectors)

        return rows

    def _matmat(self, matrix: Tensor) -> Tensor:
        return self._rows_product(as_rows(matrix)).T

    def _dense(self) -> Tensor:
        if self._mlp is None:
            return super()._dense()
        forward, gradient_pass, outputs, targets = self._mlp
        self.products += self.size  # counted like P products, for cost accounting
        scaled = self.problem.loss.output_hessian(outputs, targets) / self.batch.size
        return dense_mlp_curvature(forward, scaled, gradient_pass)
