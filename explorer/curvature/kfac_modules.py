r"""K-FAC statistics for ``nn.Linear`` and ``nn.Conv2d`` layers in any model.

The generic path of :class:`~explorer.curvature.kfac.KFACOperator` for models that
are not plain MLPs (convolutions, attention, normalization layers...), following
Eschenhagen et al., "Kronecker-Factored Approximate Curvature for Modern Neural
Network Architectures" (NeurIPS 2023) and, for convolutions, KFC (Grosse & Martens
2016). The conventions are curvlinops' ``KFACLinearOperator`` with a mean loss and
one loss term per example.

**Weight sharing.** A supported layer applies one weight W (D_out × D_in) and bias
b at R positions of each example: s_{n,r} = W a_{n,r} + b, r = 1..R.

* ``nn.Linear`` on an input (N, ..., D_in): the middle dimensions are the shared
  dimension (R = their product; R = 1 for an (N, D_in) input).
* ``nn.Conv2d`` (groups = 1, zero padding): the output locations; a_{n,r} is the
  input patch (C_in·k_h·k_w, channel-major, as ``torch.nn.functional.unfold``
  gives it) seen by location r, and W the kernel viewed as (C_out, C_in·k_h·k_w).
  That view is the row-major order of the kernel in θ, so blocks index θ directly.

A layer called several times in one forward pass shares its weight over all the
calls: their positions are concatenated into one shared dimension.

With ā = [a; 1] when the layer has a bias, and back-propagated output factors
δ_{n,r,k} = ∂(r_{nk}ᵀ z_n)/∂s_{n,r} (no 1/N; the columns r_{nk} of the output
factor, see :mod:`explorer.curvature.kfac`), the exact block is

.. math:: C_l = \frac1N \sum_n \sum_k \mathrm{vec}\Big(\sum_r δ_{nrk} ā_{nr}^\top\Big)
   \mathrm{vec}\Big(\sum_r δ_{nrk} ā_{nr}^\top\Big)^\top

and K-FAC replaces it by kron(S, A) in the row-major order of [W, b]:

* **expand** (``kfac_approx="expand"``): positions are treated like extra examples,

  .. math:: A = \frac{1}{NR} \sum_{n,r} ā_{nr} ā_{nr}^\top, \quad
     S = \frac1N \sum_{n,r,k} δ_{nrk} δ_{nrk}^\top;

* **reduce** (``kfac_approx="reduce"``): positions are aggregated per example first,

  .. math:: A = \frac1N \sum_n â_n â_n^\top, \ â_n = \Big[\frac1R \sum_r a_{nr}; 1\Big],
     \quad S = \frac1N \sum_{n,k} \Big(\sum_r δ_{nrk}\Big)\Big(\sum_r δ_{nrk}\Big)^\top.

Both are the classic K-FAC factors when R = 1. These are curvlinops' scalings: its
expand input covariance divides by N·R; its gradient covariance, built from the
gradient of the 1/N-scaled loss, is multiplied back by N (its correction
``num_loss_terms² / N_data``), which is our (1/N) Σ over unscaled δ.

Exactness (Eschenhagen et al. §3; tests/curvature/test_kfac_modules.py): for a deep
linear network with a Gaussian likelihood, expand equals the exact GGN block when
every position enters the loss as its own term (the output keeps the position
dimension), reduce when the positions are averaged before the loss.

**What is not covered.** Parameters of any other module (LayerNorm, Embedding,
grouped or non-zero-padded convolutions, bare parameters), parameters shared
between modules, and supported layers that the forward pass never calls as modules
(``nn.MultiheadAttention`` applies its ``out_proj`` functionally) get no factors.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from explorer.problems.base import LinearLayer, Problem

#: The module types the generic path factors (``nn.Conv2d`` only with groups = 1 and
#: zero padding: see :func:`is_supported`).
SUPPORTED_MODULES = (nn.Linear, nn.Conv2d)

#: The approximations for weight-shared layers (Eschenhagen et al. 2023).
KFAC_APPROXIMATIONS = ("expand", "reduce")


def is_supported(module: nn.Module) -> bool:
    """Whether K-FAC factors ``module``: an ``nn.Linear``, or an ``nn.Conv2d`` with
    ``groups=1`` and ``padding_mode="zeros"`` (patches come from a zero-padded
    ``unfold``; a grouped kernel is block-sparse, not one Kronecker product).
    """
    if isinstance(module, nn.Conv2d):
        return module.groups == 1 and module.padding_mode == "zeros"
    return isinstance(module, nn.Linear)


@dataclass(frozen=True)
class ModuleLayer:
    """A supported module of a problem's model and where its parameters live in θ.

    Attributes:
        path: The module's name in ``model.named_modules()`` (``""`` for the root).
        kind: ``"linear"`` or ``"conv2d"``.
        layer: Flat slices and sizes; for a convolution ``in_features`` is
            C_in·k_h·k_w (the kernel viewed as a matrix).
    """

    path: str
    kind: str
    layer: LinearLayer


def module_layers(problem: Problem) -> tuple[ModuleLayer, ...]:
    """The supported modules of ``problem.model`` whose parameters K-FAC can own,
    in the order of their parameters in θ.

    A module qualifies when it is supported (:func:`is_supported`), its direct
    parameters are exactly its weight (and bias) and both lie in θ, adjacent, under
    the names ``<path>.weight`` and ``<path>.bias``, and no other module holds them
    (a tied weight's curvature sums over its uses; a factor of one use is not its
    block).
    """
    model = problem.model
    if not isinstance(model, nn.Module):
        return ()
    offsets, offset = {}, 0
    for name, shape in zip(problem.param_names, problem.param_shapes, strict=True):
        size = math.prod(shape)
        offsets[name] = slice(offset, offset + size)
        offset += size
    owners: dict[int, int] = {}
    for module in model.modules():
        for param in module.parameters(recurse=False):
            owners[id(param)] = owners.get(id(param), 0) + 1
    found = []
    for path, module in model.named_modules():
        if not is_supported(module):
            continue
        direct = dict(module.named_parameters(recurse=False))
        expected = {"weight"} | ({"bias"} if module.bias is not None else set())
        if set(direct) != expected or any(owners[id(p)] > 1 for p in direct.values()):
            continue
        prefix = f"{path}." if path else ""
        weight = offsets.get(prefix + "weight")
        bias = offsets.get(prefix + "bias") if module.bias is not None else None
        if weight is None or (module.bias is not None and bias is None):
            continue
        if bias is not None and bias.start != weight.stop:
            continue
        out_features = module.weight.shape[0]
        in_features = math.prod(module.weight.shape[1:])
        kind = "conv2d" if isinstance(module, nn.Conv2d) else "linear"
        layer = LinearLayer(path or kind, in_features, out_features, weight, bias)
        found.append(ModuleLayer(path, kind, layer))
    return tuple(sorted(found, key=lambda item: item.layer.weight.start))


@dataclass(frozen=True)
class ModuleFactors:
    """The Kronecker factors of the layers the forward pass called.

    Attributes:
        layers: The layers with factors (a subset of :func:`module_layers`: a
            module the forward pass never called has none), in θ order.
        input_factors: A per layer ((D_in [+ 1])², with the bias row and column
            last when the layer has a bias).
        output_factors: S per layer (D_out²).
    """

    layers: tuple[ModuleLayer, ...]
    input_factors: list[Tensor]
    output_factors: list[Tensor]


@dataclass(frozen=True)
class LayerStatistics:
    """What one layer saw in a forward pass, all its calls along the shared dimension.

    Attributes:
        inputs: Layer inputs a (N, R, D_in) (patches for a convolution), no bias
            column.
        grads: Back-propagated output factors δ (K, N, R, D_out) (no 1/N), or None
            where no backward pass was asked for (a forward-only factor).
    """

    inputs: Tensor
    grads: Tensor | None


def module_statistics(
    problem: Problem,
    theta: Tensor,
    inputs: Tensor,
    output_factors: Callable[[Tensor], Tensor] | None,
) -> tuple[tuple[ModuleLayer, ...], list[LayerStatistics]]:
    """Per-example inputs and output gradients of every supported layer at θ on
    ``inputs`` (N, ...): what :func:`module_factors` reduces to A and S, and what
    EKFAC's eigenvalue correction needs per example.

    One forward pass of a private copy of the model (with hooks capturing each
    supported layer's input and output) and, unless ``output_factors`` is None, one
    batched backward pass of the K output-factor columns to all captured layer
    outputs.

    Args:
        problem: The problem; ``problem.model`` is called functionally with θ.
        theta: The point (P,).
        inputs: The batch inputs, batch dimension first.
        output_factors: ``outputs (N, C), detached -> r (N, C, K)``; None: no
            backward pass (every ``grads`` is None).

    Returns:
        The layers the forward pass called (in θ order) and their statistics.

    Raises:
        ValueError: No supported layer owns its parameters, a layer's input does
            not have the batch dimension first, or the forward pass called no
            supported layer.
    """
    candidates = module_layers(problem)
    if not candidates:
        raise ValueError(
            f"K-FAC found no nn.Linear or nn.Conv2d layer of problem {problem.key!r} "
            "that owns its parameters in θ (a weight tied to another module, or "
            "parameter names not in problem.param_names); use 'fisher', 'ggn' or a "
            "diagonal approximation instead"
        )
    model = _private_copy(problem.model)
    captured: dict[str, tuple[list[Tensor], list[Tensor]]] = {
        item.path: ([], []) for item in candidates
    }
    handles = [
        model.get_submodule(item.path).register_forward_hook(
            _capture(*captured[item.path])
        )
        for item in candidates
    ]
    try:
        with torch.enable_grad():
            # θ requires grad so that every layer output is in the graph; only the
            # gradients with respect to those outputs are computed below.
            params = problem.unflatten(theta.detach().requires_grad_(True))
            outputs = functional_call(model, params, (inputs,))
            fired = [item for item in candidates if captured[item.path][0]]
            if not fired:
                raise ValueError(
                    "K-FAC found no nn.Linear or nn.Conv2d layer called as a module "
                    f"in the forward pass of problem {problem.key!r} (a layer applied "
                    "functionally, as nn.MultiheadAttention does, is not seen); use "
                    "'fisher', 'ggn' or a diagonal approximation instead"
                )
            layer_outputs = [out for item in fired for out in captured[item.path][1]]
            grads: list[Tensor | None]
            if output_factors is None:
                grads = [None] * len(layer_outputs)
            else:
                factors = output_factors(outputs.detach())  # (N, C, K)
                grads = list(
                    _backprop(outputs, layer_outputs, factors.permute(2, 0, 1))
                )
    finally:
        for handle in handles:
            handle.remove()
    n = inputs.shape[0]
    statistics = []
    position = 0
    for item in fired:
        layer_inputs = captured[item.path][0]
        layer_grads = grads[position : position + len(layer_inputs)]
        position += len(layer_inputs)
        module = model.get_submodule(item.path)
        a, g = _shared_positions(item, module, layer_inputs, layer_grads, n)
        statistics.append(LayerStatistics(a, g))
    return tuple(fired), statistics


def module_factors(
    problem: Problem,
    theta: Tensor,
    inputs: Tensor,
    output_factors: Callable[[Tensor], Tensor],
    approx: str = "expand",
) -> ModuleFactors:
    """K-FAC factors of every supported layer at θ on ``inputs`` (N, ...):
    :func:`module_statistics` reduced by ``approx``.

    Args:
        problem: The problem; ``problem.model`` is called functionally with θ.
        theta: The point (P,).
        inputs: The batch inputs, batch dimension first.
        output_factors: ``outputs (N, C), detached -> r (N, C, K)``.
        approx: ``"expand"`` or ``"reduce"`` (module docstring).

    Raises:
        ValueError: ``approx`` is unknown, or :func:`module_statistics` refuses.
    """
    check_approx(approx)
    fired, statistics = module_statistics(problem, theta, inputs, output_factors)
    n = inputs.shape[0]
    input_factors = [
        input_factor(stats.inputs, item.layer.bias is not None, approx)
        for item, stats in zip(fired, statistics, strict=True)
    ]
    output_factors_ = [output_factor(stats.grads, approx, n) for stats in statistics]
    return ModuleFactors(fired, input_factors, output_factors_)


def check_approx(approx: str) -> str:
    """``approx`` if it is one of :data:`KFAC_APPROXIMATIONS`, else ValueError."""
    if approx not in KFAC_APPROXIMATIONS:
        raise ValueError(
            f"kfac_approx = {approx!r} is invalid; expected one of "
            f"{', '.join(map(repr, KFAC_APPROXIMATIONS))}"
        )
    return approx


def _private_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` to put hooks on (the problem's model is shared
    between threads, so it is never modified).

    Its parameters are detached snapshots: values do not matter (θ is swapped in
    functionally), and another thread's ``functional_call`` may have swapped
    non-leaf tensors into the shared module, which ``copy.deepcopy`` refuses.
    """
    memo = {
        id(param): nn.Parameter(param.detach().clone(), requires_grad=False)
        for param in model.parameters()
    }
    return copy.deepcopy(model, memo)


def _capture(inputs: list[Tensor], outputs: list[Tensor]):
    """A forward hook appending the layer's input (detached) and output.

    It returns a clone of the output to the rest of the network, so an in-place
    operation downstream (``ReLU(inplace=True)``) cannot rewrite the captured
    tensor's values or its place in the graph.
    """

    def hook(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
        inputs.append(args[0].detach())
        outputs.append(output)
        return output.clone()

    return hook


def _backprop(
    outputs: Tensor, layer_outputs: Sequence[Tensor], cotangents: Tensor
) -> list[Tensor]:
    """∂(Σ_{n,c} u_{knc} z_{nc})/∂s for every captured output s and each of the K
    cotangents u = ``cotangents`` (K, N, C): a list of (K, *s.shape).

    One vmapped backward pass (``is_grads_batched``); where vmap cannot batch an
    operation of the model it falls back to K ordinary backward passes (same
    numbers, more time). A layer output the network output does not depend on
    gets zeros.
    """
    k = cotangents.shape[0]
    try:
        grads = torch.autograd.grad(
            outputs,
            layer_outputs,
            grad_outputs=cotangents,
            is_grads_batched=True,
            retain_graph=True,
            allow_unused=True,
        )
    except RuntimeError:
        columns = [
            torch.autograd.grad(
                outputs,
                layer_outputs,
                grad_outputs=cotangents[index],
                retain_graph=index < k - 1,
                allow_unused=True,
            )
            for index in range(k)
        ]
        grads = tuple(
            None if column[0] is None else torch.stack(column)
            for column in zip(*columns, strict=True)
        )
    return [
        out.new_zeros(k, *out.shape) if grad is None else grad.detach()
        for out, grad in zip(layer_outputs, grads, strict=True)
    ]


def _shared_positions(
    item: ModuleLayer,
    module: nn.Module,
    inputs: Sequence[Tensor],
    grads: Sequence[Tensor | None],
    n: int,
) -> tuple[Tensor, Tensor | None]:
    """Inputs a (N, R, D_in) and output gradients g (K, N, R, D_out) of one layer,
    all its calls concatenated along the shared dimension R (g None where
    ``grads`` are: no backward pass).
    """
    a_parts, g_parts = [], []
    for x, g in zip(inputs, grads, strict=True):
        if x.dim() < 2 or x.shape[0] != n:
            raise ValueError(
                f"K-FAC needs batch-first layers: {item.kind} layer {item.path!r} "
                f"got an input of shape {tuple(x.shape)} for a batch of N = {n}"
            )
        if item.kind == "conv2d":
            if x.dim() != 4:
                raise ValueError(
                    f"K-FAC needs batched (N, C, H, W) inputs: conv2d layer "
                    f"{item.path!r} got shape {tuple(x.shape)}"
                )
            a_parts.append(_patches(module, x))  # (N, L, C_in·k_h·k_w)
            if g is not None:
                g_parts.append(g.flatten(3).transpose(-1, -2))  # (K, N, L, C_out)
        else:
            a_parts.append(x.reshape(n, -1, x.shape[-1]))
            if g is not None:
                g_parts.append(g.reshape(g.shape[0], n, -1, g.shape[-1]))
    if len(a_parts) == 1:  # one call: no copy
        return a_parts[0], (g_parts[0] if g_parts else None)
    return torch.cat(a_parts, 1), (torch.cat(g_parts, 2) if g_parts else None)


def conv_padding(module: nn.Conv2d) -> tuple[int, int, int, int]:
    """The zero padding of ``module`` in ``F.pad`` order (left, right, top, bottom).

    ``padding="same"`` pads d·(k − 1) in total per dimension, the smaller half
    first (PyTorch's convention); ``"valid"`` pads nothing.
    """
    if isinstance(module.padding, str):
        if module.padding == "valid":
            return (0, 0, 0, 0)
        pads = []
        for k, d in zip(module.kernel_size, module.dilation, strict=True):
            total = d * (k - 1)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        return (left, right, top, bottom)
    pad_h, pad_w = module.padding
    return (pad_w, pad_w, pad_h, pad_h)


def _patches(module: nn.Conv2d, x: Tensor) -> Tensor:
    """The input patch of every output location: (N, L, C_in·k_h·k_w)."""
    padded = F.pad(x, conv_padding(module))
    unfolded = F.unfold(
        padded, module.kernel_size, dilation=module.dilation, stride=module.stride
    )
    return unfolded.transpose(1, 2)


def input_factor(a: Tensor, bias: bool, approx: str) -> Tensor:
    """A from layer inputs a (N, R, D_in): expand (1/(NR)) Σ ā āᵀ, reduce
    (1/N) Σ â âᵀ over position means (module docstring); bias row and column last.
    """
    if approx == "reduce":
        a = a.mean(1)
    flat = a.reshape(-1, a.shape[-1])  # (M, D_in), M = N·R (expand) or N (reduce)
    count = flat.shape[0]
    gram = flat.T @ flat
    if bias:
        # [[aᵀa, Σa], [Σaᵀ, M]] without materializing the column of ones
        column = flat.sum(0, keepdim=True)
        corner = torch.full((1, 1), float(count), dtype=a.dtype, device=a.device)
        gram = torch.cat(
            [torch.cat([gram, column.T], 1), torch.cat([column, corner], 1)], 0
        )
    return gram / count


def output_factor(g: Tensor, approx: str, n: int) -> Tensor:
    """S from output gradients g (K, N, R, D_out): expand (1/N) Σ_{k,n,r} g gᵀ,
    reduce (1/N) Σ_{k,n} (Σ_r g)(Σ_r g)ᵀ.
    """
    if approx == "reduce":
        g = g.sum(2)
    flat = g.reshape(-1, g.shape[-1])
    return flat.T @ flat / n
