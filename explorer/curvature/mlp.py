r"""Hand-written passes for MLPs (``nn.Linear`` + elementwise activations).

At a fixed θ the forward pass is run once and its activations cached; then every
Jacobian-vector product, vector-Jacobian product and Hessian-vector product costs a
few matrix multiplies with no autograd overhead (PERF_NOTES.md: about 0.6–0.7 of a
gradient for a GGN product). All products take a leading batch dimension K so that
blocks of columns are computed with single matrix multiplies.

Notation for layer l = 1..L (rows are examples):
``s_l = a_{l-1} W_lᵀ + b_l``, ``a_l = φ_l(s_l)``, ``a_0 = x``, ``z = a_L``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from explorer.problems.base import LinearLayer, Problem


class GradientPass(NamedTuple):
    """Per layer: g_l = ∂h/∂a_l, δ_l = ∂h/∂s_l and g_l ⊙ φ''_l (None for linear)."""

    activation_grads: list[Tensor]
    deltas: list[Tensor]
    curvature_weights: list[Tensor | None]


#: name -> (φ'(s, a), φ''(s, a)) given pre-activation s and activation a = φ(s).
Derivatives = tuple[
    Callable[[Tensor, Tensor], Tensor], Callable[[Tensor, Tensor], Tensor]
]


def _sigmoid_prime(s: Tensor, a: Tensor) -> Tensor:
    return a * (1 - a)


ACTIVATION_DERIVATIVES: dict[type[nn.Module], Derivatives] = {
    nn.Tanh: (lambda s, a: 1 - a * a, lambda s, a: -2 * a * (1 - a * a)),
    nn.Sigmoid: (_sigmoid_prime, lambda s, a: _sigmoid_prime(s, a) * (1 - 2 * a)),
    nn.ReLU: (lambda s, a: (s > 0).to(s.dtype), lambda s, a: torch.zeros_like(s)),
    nn.Softplus: (
        lambda s, a: torch.sigmoid(s),
        lambda s, a: _sigmoid_prime(s, torch.sigmoid(s)),
    ),
}


@dataclass(frozen=True)
class MLPLayer:
    """One linear layer and the activation module that follows it (or None)."""

    linear: LinearLayer
    activation: nn.Module | None


def mlp_layers(problem: Problem) -> tuple[MLPLayer, ...] | None:
    """The problem's model as MLP layers, or None when it is not a plain MLP.

    A plain MLP is a single ``nn.Linear`` or an ``nn.Sequential`` alternating
    ``nn.Linear`` with at most one supported elementwise activation (tanh, sigmoid,
    ReLU, softplus) after each.
    Softplus counts only with its default beta and threshold; ``nn.Identity`` and
    dropout in eval mode (the identity) are skipped.
    """
    model = problem.model
    if isinstance(model, nn.Linear):
        return (MLPLayer(problem.layers[0], None),)
    if not isinstance(model, nn.Sequential) or not problem.layers:
        return None
    linears = iter(problem.layers)
    layers: list[MLPLayer] = []
    for module in model:
        if isinstance(module, nn.Linear):
            layers.append(MLPLayer(next(linears), None))
        elif (
            type(module) in ACTIVATION_DERIVATIVES
            and layers
            and (layers[-1].activation is None)
        ):
            if isinstance(module, nn.Softplus) and (
                module.beta != 1 or module.threshold != 20
            ):
                return None
            layers[-1] = MLPLayer(layers[-1].linear, module)
        elif isinstance(module, nn.Identity) or (
            isinstance(module, nn.modules.dropout._DropoutNd) and not module.training
        ):
            continue  # the identity map (dropout is one in eval mode)
        else:
            return None
    return tuple(layers)


class MLPForward:
    """A forward pass of an MLP at (θ, x) with everything products need cached.

    Args:
        layers: From :func:`mlp_layers`.
        theta: Flat parameters (P,).
        inputs: Inputs x (N, D).
        second_order: Also cache φ'' (needed by Hessian products).
    """

    def __init__(
        self,
        layers: tuple[MLPLayer, ...],
        theta: Tensor,
        inputs: Tensor,
        second_order: bool = False,
    ) -> None:
        self.layers = layers
        self.num_params = theta.numel()
        self.dtype, self.device = theta.dtype, theta.device
        self.weights: list[Tensor] = []
        self.biases: list[Tensor | None] = []
        self.inputs_to: list[Tensor] = []  # a_{l-1}
        self.slopes: list[Tensor | None] = []  # φ'_l(s_l); None for identity
        self.curvatures: list[Tensor | None] = []  # φ''_l(s_l)
        a = inputs
        with torch.no_grad():
            for layer in layers:
                lin = layer.linear
                weight = theta[lin.weight].view(lin.out_features, lin.in_features)
                bias = theta[lin.bias] if lin.bias is not None else None
                self.weights.append(weight)
                self.biases.append(bias)
                self.inputs_to.append(a)
                s = a @ weight.T if bias is None else torch.addmm(bias, a, weight.T)
                if layer.activation is None:
                    a = s
                    self.slopes.append(None)
                    self.curvatures.append(None)
                    continue
                a = layer.activation(s)
                prime, second = ACTIVATION_DERIVATIVES[type(layer.activation)]
                self.slopes.append(prime(s, a))
                self.curvatures.append(second(s, a) if second_order else None)
        self.outputs = a

    # ----------------------------------------------------------------- helpers
    def _split(self, vectors: Tensor, index: int) -> tuple[Tensor, Tensor | None]:
        """Weight (..., out, in) and bias (..., out) parts of ``vectors`` (..., P)."""
        lin = self.layers[index].linear
        lead = vectors.shape[:-1]
        weight = vectors[..., lin.weight].view(*lead, lin.out_features, lin.in_features)
        bias = vectors[..., lin.bias] if lin.bias is not None else None
        return weight, bias

    @staticmethod
    def _single(function):
        """Runs a (K, ...) product on 2-D tensors when K = 1 (batched matmuls of one
        matrix are several times slower than plain ones).
        """

        def wrapped(self, batched: Tensor, *args):
            if batched.shape[0] == 1:
                return function(self, batched[0], *args).unsqueeze(0)
            return function(self, batched, *args)

        wrapped.__doc__ = function.__doc__
        return wrapped

    def _scale(self, values: Tensor, slope: Tensor | None) -> Tensor:
        return values if slope is None else values * slope

    # ---------------------------------------------------------------- products
    def _tangents(self, vectors: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Forward tangents ṡ_l and ȧ_l ([K,] N, out_l) of every layer; ȧ_L = ż."""
        single = vectors.dim() == 1
        pre_tangents: list[Tensor] = []
        tangents: list[Tensor] = []  # ȧ_l; ȧ_0 = 0 since inputs do not depend on θ
        for index, weight in enumerate(self.weights):
            v_weight, v_bias = self._split(vectors, index)
            a = self.inputs_to[index]
            if single and v_bias is not None:  # fused kernels for one direction
                s_dot = torch.addmm(v_bias, a, v_weight.T)
            else:
                s_dot = a @ v_weight.transpose(-1, -2)
                if v_bias is not None:
                    s_dot = s_dot + v_bias.unsqueeze(-2)
            if tangents:
                s_dot = (
                    s_dot.addmm_(tangents[-1], weight.T)
                    if single
                    else (s_dot + tangents[-1] @ weight.T)
                )
            pre_tangents.append(s_dot)
            tangents.append(self._scale(s_dot, self.slopes[index]))
        return pre_tangents, tangents

    @_single
    def jvp(self, vectors: Tensor) -> Tensor:
        """J V: output tangents (K, N, C) for parameter directions ``vectors`` (K, P)."""
        return self._tangents(vectors)[1][-1]

    def backprop(self, cotangents: Tensor) -> list[Tensor]:
        """Back-propagates output cotangents (K, N, C) to every layer's pre-activation.

        Returns:
            δ_l (K, N, out_l) for each layer, in layer order.
        """
        deltas: list[Tensor] = []
        grad_a = cotangents
        for index in reversed(range(len(self.weights))):
            delta = self._scale(grad_a, self.slopes[index])
            deltas.append(delta)
            if index > 0:
                grad_a = delta @ self.weights[index]
        return deltas[::-1]

    def _assemble(self, weight_grads, bias_grads, lead: torch.Size) -> Tensor:
        out = torch.empty(*lead, self.num_params, dtype=self.dtype, device=self.device)
        for index, layer in enumerate(self.layers):
            lin = layer.linear
            out[..., lin.weight] = weight_grads[index].reshape(*lead, -1)
            if lin.bias is not None:
                out[..., lin.bias] = bias_grads[index]
        return out

    @_single
    def vjp(self, cotangents: Tensor) -> Tensor:
        """Jᵀ U: parameter gradients (K, P) of output cotangents ``U`` (K, N, C)."""
        deltas = self.backprop(cotangents)
        weight_grads = [
            delta.transpose(-1, -2) @ a
            for delta, a in zip(deltas, self.inputs_to, strict=True)
        ]
        bias_grads = [delta.sum(-2) for delta in deltas]
        return self._assemble(weight_grads, bias_grads, cotangents.shape[:-2])

    def squared_jacobian_diagonal(
        self, factors: Tensor, signs: Tensor | None
    ) -> Tensor:
        """Σ_n Σ_k s_nk (J_nᵀ r_nk)² elementwise (P,), no 1/N.

        Args:
            factors: Output factors r (N, C, K).
            signs: Weights s (N, K), or None for all ones.
        """
        deltas = self.backprop(factors.permute(2, 0, 1))  # each (K, N, out)
        result = torch.empty(self.num_params, dtype=self.dtype, device=self.device)
        for delta, a, layer in zip(deltas, self.inputs_to, self.layers, strict=True):
            squared = delta.pow(2)
            if signs is not None:
                squared = squared * signs.T.unsqueeze(-1)
            squared = squared.sum(0)  # (N, out)
            lin = layer.linear
            result[lin.weight] = (squared.T @ a.pow(2)).reshape(-1)
            if lin.bias is not None:
                result[lin.bias] = squared.sum(0)
        return result

    @_single
    def hessian_products(
        self, vectors: Tensor, gradient_pass: GradientPass, output_hessian_vp
    ) -> Tensor:
        r"""H V for the objective (1/N) Σ L(y_n, z_n) by Pearlmutter's R-operator.

        Args:
            vectors: Directions (K, P).
            gradient_pass: From :meth:`gradient_pass` at this point.
            output_hessian_vp: ``u (K, N, C) -> ∇²_z L u / N``.

        Returns:
            (K, P). Backward tangents:
            δ̇_l = ġ_l ⊙ φ'_l + g_l ⊙ φ''_l ⊙ ṡ_l, ġ_{l-1} = δ̇_l W_l + δ_l V_l,
            and (HV)_{W_l} = δ̇_lᵀ a_{l-1} + δ_lᵀ ȧ_{l-1}.
        """
        _, deltas, weights_2nd = gradient_pass
        pre_tangents, tangents = self._tangents(vectors)
        grad_a_dot = output_hessian_vp(tangents[-1])
        single = vectors.dim() == 1
        weight_grads: list[Tensor] = [None] * len(self.weights)  # type: ignore[list-item]
        bias_grads: list[Tensor] = [None] * len(self.weights)  # type: ignore[list-item]
        for index in reversed(range(len(self.weights))):
            delta_dot = self._scale(grad_a_dot, self.slopes[index])
            if weights_2nd[index] is not None:
                delta_dot = torch.addcmul(
                    delta_dot, weights_2nd[index], pre_tangents[index]
                )
            weight_grad = delta_dot.transpose(-1, -2) @ self.inputs_to[index]
            if index > 0:
                delta, a_dot = deltas[index], tangents[index - 1]
                v_weight, _ = self._split(vectors, index)
                if single:
                    weight_grad = weight_grad.addmm_(delta.T, a_dot)
                    grad_a_dot = torch.addmm(
                        delta_dot @ self.weights[index], delta, v_weight
                    )
                else:
                    weight_grad = weight_grad + delta.T @ a_dot
                    grad_a_dot = delta_dot @ self.weights[index] + delta @ v_weight
            weight_grads[index] = weight_grad
            bias_grads[index] = delta_dot.sum(-2)
        return self._assemble(weight_grads, bias_grads, vectors.shape[:-1])

    def gradient_pass(self, output_grad: Tensor) -> GradientPass:
        """g_l = ∂h/∂a_l and δ_l = ∂h/∂s_l (N, out_l) for ``output_grad`` = ∂h/∂z."""
        count = len(self.weights)
        grads_a, deltas = [None] * count, [None] * count
        grad_a = output_grad
        for index in reversed(range(count)):
            grads_a[index] = grad_a
            deltas[index] = self._scale(grad_a, self.slopes[index])
            grad_a = deltas[index] @ self.weights[index]
        weights_2nd = [
            None if second is None else grads_a[index] * second
            for index, second in enumerate(self.curvatures)
        ]
        return GradientPass(grads_a, deltas, weights_2nd)
