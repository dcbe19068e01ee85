r"""Dense GGN-type matrices and Hessians of MLPs in Kronecker form.

For a linear layer the Jacobian of the output w.r.t. its weights factorizes,
∂z/∂W̄_l[o, i] = B_l[:, o] ā_{l-1}[i], so every block of a curvature matrix is a sum
over examples of Kronecker products:

.. math:: C_{lm} = \sum_n Q^{lm}_n \otimes ā_{l-1,n} ā_{m-1,n}^\top,
   \qquad Q^{lm}_n = J_{m \leftarrow l,n}^\top S_{m,n}

where :math:`S_m = ∂²h/∂s_m²` (per example) is back-propagated as in Dangel, Harmeling
& Hennig (2020): :math:`S_m = D_m W_{m+1}^\top S_{m+1} W_{m+1} D_m + \operatorname{diag}
(g_m ⊙ φ''_m)`, D = diag(φ'), and J_{m←l} = ∂s_m/∂s_l. GGN-type matrices drop the φ''
terms and start from the output matrix M; the Hessian keeps them and adds, for l < m,
the term from W_m appearing in the backward pass:
:math:`\sum_n ā_{l-1}[i]\, T^{lm}_n[i', o]\, δ_m[o']` with T = ∂a_{m-1}/∂s_l.

Each block is one matrix multiply over examples (2·N·P_l·P_m flops), about half the
work of P matrix-vector products and far less than the Gram product JᵀMJ.
"""

from __future__ import annotations

import torch
from torch import Tensor

from explorer.curvature.mlp import GradientPass, MLPForward

#: Working memory per operand of the example-chunked matrix multiplies.
CHUNK_BYTES = 64 * 2**20


def dense_mlp_curvature(
    forward: MLPForward, output_matrices: Tensor, gradient_pass: GradientPass | None
) -> Tensor:
    """The dense P × P curvature of an MLP.

    Args:
        forward: The cached forward pass.
        output_matrices: M_n / N (N, C, C): the output Hessian (Hessian, GGN), the
            output Fisher, or any other symmetric per-example output matrix.
        gradient_pass: ``forward.gradient_pass(∇_z L / N)`` for the Hessian; None for
            GGN-type matrices (no second-derivative terms).

    Returns:
        (P, P) in θ's dtype and device.
    """
    layers = forward.layers
    count = len(layers)
    pre_hessians = _pre_activation_hessians(forward, output_matrices, gradient_pass)
    inputs = [
        _with_bias(a, layer.linear.bias is not None)
        for a, layer in zip(forward.inputs_to, layers, strict=True)
    ]
    # Work in V̄ order (layer by layer, row-major [W, b]) and permute once at the end.
    sizes = [layer.linear.out_features * x.shape[1] for layer, x in zip(layers, inputs)]
    offsets = [sum(sizes[:k]) for k in range(count + 1)]
    vbar = torch.empty(
        offsets[-1], offsets[-1], dtype=forward.dtype, device=forward.device
    )
    for l_index in range(count):
        rows = slice(offsets[l_index], offsets[l_index + 1])
        vbar[rows, rows] = _kron_sum_symmetric(pre_hessians[l_index], inputs[l_index])
        jacobian = _identity(forward, l_index)  # J_{m←l} (N, out_m, out_l)
        for m_index in range(l_index + 1, count):
            transfer = _scale_rows(
                jacobian, forward.slopes[m_index - 1]
            )  # ∂a_{m-1}/∂s_l
            jacobian = forward.weights[m_index] @ transfer
            q = jacobian.transpose(1, 2) @ pre_hessians[m_index]
            block = _kron_sum(q, inputs[l_index], inputs[m_index])
            if gradient_pass is not None:
                cross = _cross_sum(
                    transfer, inputs[l_index], gradient_pass.deltas[m_index]
                )
                in_m = layers[m_index].linear.in_features
                shaped = block.view(block.shape[0], -1, inputs[m_index].shape[1])
                shaped[:, :, :in_m] += cross.view(block.shape[0], -1, in_m)
            cols = slice(offsets[m_index], offsets[m_index + 1])
            vbar[rows, cols] = block
            vbar[cols, rows] = block.T
    order = torch.cat([_layer_index(layer.linear, forward.device) for layer in layers])
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order), device=order.device)
    return vbar[inverse][:, inverse]


def _pre_activation_hessians(forward, output_matrices, gradient_pass) -> list[Tensor]:
    """S_m (N, out_m, out_m) for every layer, back-propagated from the output."""
    count = len(forward.layers)
    hessians: list[Tensor] = [None] * count  # type: ignore[list-item]
    upstream = output_matrices  # ∂²h/∂a_m² part coming from later layers
    for index in reversed(range(count)):
        slope = forward.slopes[index]
        s = (
            upstream
            if slope is None
            else slope.unsqueeze(-1) * upstream * slope.unsqueeze(-2)
        )
        if (
            gradient_pass is not None
            and gradient_pass.curvature_weights[index] is not None
        ):
            s = s + torch.diag_embed(gradient_pass.curvature_weights[index])
        hessians[index] = s
        if index > 0:
            weight = forward.weights[index]
            upstream = weight.T @ s @ weight
    return hessians


def _identity(forward: MLPForward, index: int) -> Tensor:
    """J_{l←l} = I (N, out_l, out_l)."""
    size = forward.layers[index].linear.out_features
    n = forward.inputs_to[0].shape[0]
    eye = torch.eye(size, dtype=forward.dtype, device=forward.device)
    return eye.expand(n, size, size)


def _scale_rows(matrix: Tensor, slope: Tensor | None) -> Tensor:
    """diag(φ') J per example."""
    return matrix if slope is None else slope.unsqueeze(-1) * matrix


def _with_bias(a: Tensor, bias: bool) -> Tensor:
    return torch.cat([a, torch.ones_like(a[:, :1])], 1) if bias else a


def _layer_index(linear, device) -> Tensor:
    """Flat θ indices of V̄ = [W, b] in row-major (out, in [+1]) order."""
    out_f, in_f = linear.out_features, linear.in_features
    weight = linear.weight.start + torch.arange(out_f * in_f, device=device).view(
        out_f, in_f
    )
    if linear.bias is None:
        return weight.reshape(-1)
    bias = linear.bias.start + torch.arange(out_f, device=device).unsqueeze(1)
    return torch.cat([weight, bias], 1).reshape(-1)


def _weight_index(linear, device) -> Tensor:
    return linear.weight.start + torch.arange(
        linear.out_features * linear.in_features, device=device
    )


def _chunks(n: int, row_bytes: int) -> range:
    step = max(1, CHUNK_BYTES // max(1, row_bytes))
    return range(0, n, step)


def _kron_sum(q: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Σ_n Q_n ⊗ x_n y_nᵀ as an (A·I, B·J) matrix, indexed [(a, i), (b, j)]."""
    n, a, b = q.shape
    i, j = x.shape[1], y.shape[1]
    result = torch.zeros(a * b, i * j, dtype=q.dtype, device=q.device)
    step = _chunks(n, (a * b + i * j) * q.element_size()).step
    for start in range(0, n, step):
        stop = min(start + step, n)
        left = q[start:stop].reshape(stop - start, a * b)
        right = (x[start:stop, :, None] * y[start:stop, None, :]).reshape(
            stop - start, i * j
        )
        result += left.T @ right
    return result.view(a, b, i, j).permute(0, 2, 1, 3).reshape(a * i, b * j)


def _kron_sum_symmetric(q: Tensor, x: Tensor) -> Tensor:
    """:func:`_kron_sum` for symmetric Q_n and y = x, in a quarter of the flops.

    R[(a, b), (i, j)] = Σ_n Q_n[a, b] x_n[i] x_n[j] is symmetric in (a, b) and in
    (i, j) separately, so only the packed upper triangles are multiplied.
    """
    n, a, _ = q.shape
    i = x.shape[1]
    rows_a, cols_a = torch.triu_indices(a, a, device=q.device)
    rows_i, cols_i = torch.triu_indices(i, i, device=q.device)
    packed = torch.zeros(len(rows_a), len(rows_i), dtype=q.dtype, device=q.device)
    step = _chunks(n, (len(rows_a) + len(rows_i)) * q.element_size()).step
    for start in range(0, n, step):
        stop = min(start + step, n)
        left = q[start:stop, rows_a, cols_a]
        right = x[start:stop, rows_i] * x[start:stop, cols_i]
        packed += left.T @ right
    index_a, index_i = _packed_index(a, q.device), _packed_index(i, q.device)
    full = packed[index_a.reshape(-1)][:, index_i.reshape(-1)]
    return full.view(a, a, i, i).permute(0, 2, 1, 3).reshape(a * i, a * i)


def _packed_index(size: int, device) -> Tensor:
    """(size, size) positions of (min, max) pairs in the packed upper triangle."""
    rows, cols = torch.triu_indices(size, size, device=device)
    index = torch.empty(size, size, dtype=torch.long, device=device)
    positions = torch.arange(len(rows), device=device)
    index[rows, cols] = positions
    index[cols, rows] = positions
    return index


def _cross_sum(t: Tensor, x: Tensor, delta: Tensor) -> Tensor:
    """Σ_n x_n[i] T_n[i', o] δ_n[o'] as an (O·I, O'·I') matrix [(o, i), (o', i')]."""
    n, in_m, out_l = t.shape
    i, out_m = x.shape[1], delta.shape[1]
    result = torch.zeros(out_l * in_m, i * out_m, dtype=t.dtype, device=t.device)
    step = _chunks(n, (out_l * in_m + i * out_m) * t.element_size()).step
    for start in range(0, n, step):
        stop = min(start + step, n)
        left = t[start:stop].transpose(1, 2).reshape(stop - start, out_l * in_m)
        right = (x[start:stop, :, None] * delta[start:stop, None, :]).reshape(
            stop - start, i * out_m
        )
        result += left.T @ right
    # [(o, i'), (i, o')] -> [(o, i), (o', i')]
    return (
        result.view(out_l, in_m, i, out_m)
        .permute(0, 2, 3, 1)
        .reshape(out_l * i, out_m * in_m)
    )
