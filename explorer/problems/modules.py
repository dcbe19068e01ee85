r"""Bring your own model: :func:`problem_from_module`.

Any ``torch.nn.Module`` with data and a likelihood becomes a :class:`Problem` with
the objective of THEORY.md §1,

.. math:: h(θ) = \frac1N \sum_i L(y_i, f(x_i; θ)),

θ₀ being the module's current parameters in the order of ``model.parameters()``.
Everything is checked here, before any product runs: the data's shapes and values
against the likelihood, the model's output shape, and that ``torch.func`` can
differentiate the model (every exact matrix needs ``vmap``, ``jvp`` and ``vjp``).

Modules whose function depends on a mode are evaluated in a stated mode: dropout is
random in training mode and batch normalization couples the examples of a batch
through its statistics, so either would make h(θ) not the function the curvature
matrices are defined for. The module is therefore evaluated in eval mode (dropout
off, batch norm with its stored running statistics, held fixed); a batch norm that
keeps no running statistics normalizes with batch statistics even in eval mode and
is refused.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from explorer.autodiff import FORWARD_AD_LOCK
from explorer.problems.base import Problem, problem_from_model
from explorer.problems.likelihoods import LIKELIHOODS, LossSpec

#: How many examples the construction-time checks push through the model.
PROBE_EXAMPLES = 4

#: The likelihoods whose targets are (N,) class indices.
LABEL_TARGETS = ("categorical",)


def problem_from_module(
    model: nn.Module,
    inputs: Any,
    targets: Any,
    likelihood: str | LossSpec = "categorical",
    *,
    test: tuple[Any, Any] | None = None,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    key: str | None = None,
    label: str | None = None,
    description: str = "",
) -> Problem:
    """A :class:`Problem` for your own module, usable wherever a built-in one is.

    Args:
        model: Any ``torch.func``-compatible module mapping inputs (N, ...) to
            outputs (N, C). It is copied (your module is not changed) and evaluated
            in eval mode (see the module docstring).
        inputs: Training inputs (N, ...): floats (cast to ``dtype``) or integer
            token ids (kept as int64).
        targets: Training targets in the likelihood's format: class indices (N,)
            for ``categorical``, (N, C) for ``bernoulli`` (in [0, 1]), ``gaussian``
            and ``poisson`` (counts ≥ 0), (N, C/2) for ``gaussian_heteroscedastic``.
        likelihood: A key of ``explorer.problems.LIKELIHOODS`` (built with the
            model's output width C) or a :class:`LossSpec` instance.
        test: An optional held-out ``(inputs, targets)`` pair.
        dtype: ``torch.float64``/``"float64"`` or float32 (default: the model's).
        device: Where tensors live (default: the model's).
        key: A short name for messages and histories (default ``"custom"``).
        label: A title (default: the module's class and the likelihood).
        description: What the problem shows, for help texts.

    Raises:
        ValueError: Data that does not fit the likelihood or the model (labels out
            of range, NaN or infinite values, wrong shapes), a model without
            parameters, or one ``torch.func`` cannot differentiate; the message
            names the value and what was expected.

    Example:
        >>> import torch, explorer as ex
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(),
        ...                           torch.nn.Linear(4, 2)).double()
        >>> x = torch.randn(20, 3, dtype=torch.float64)
        >>> p = ex.problem_from_module(net, x, (x[:, 0] > 0).long(), "categorical")
        >>> p.num_params, p.num_examples, p.num_outputs
        (26, 20, 2)
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    params = list(model.parameters())
    if not params:
        raise ValueError(
            f"model {type(model).__name__} has no parameters: there is no θ to "
            "optimize or take curvature with respect to"
        )
    dtype = _resolve_dtype(dtype, params[0])
    device = torch.device(device) if device is not None else params[0].device
    model = _evaluation_copy(model)
    train_inputs = _as_inputs(inputs, "inputs", dtype, device)
    width = _output_width(model, train_inputs, dtype, device)
    loss = _resolve_likelihood(likelihood, width)
    train_targets = _as_targets(targets, loss, train_inputs.shape[0], "targets", device)
    test_fields = {}
    if test is not None:
        if not isinstance(test, (tuple, list)) or len(test) != 2:
            raise ValueError("test must be an (inputs, targets) pair or None")
        test_inputs = _as_inputs(test[0], "test inputs", dtype, device)
        test_fields = {
            "test_inputs": test_inputs,
            "test_targets": _as_targets(
                test[1], loss, test_inputs.shape[0], "test targets", device
            ),
        }
    name = key or "custom"
    problem = problem_from_model(
        model,
        dtype,
        device,
        key=name,
        label=label or f"{type(model).__name__} ({loss.key or type(loss).__name__})",
        loss=loss,
        inputs=train_inputs,
        targets=train_targets,
        options={"likelihood": loss.key, "mode": "eval"},
        description=(description + _mode_note(model)).strip(),
        **test_fields,
    )
    _check_functional(problem)
    return problem


# ----------------------------------------------------------------- the model
def _resolve_dtype(dtype: torch.dtype | str | None, param: Tensor) -> torch.dtype:
    if dtype is None:
        dtype = param.dtype
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None) if dtype in ("float32", "float64") else None
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(
            f"dtype = {dtype} must be torch.float32 or torch.float64 (the model's "
            f"parameters are {param.dtype}; pass dtype= to choose)"
        )
    return dtype


def _evaluation_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode; refuses batch norm without running statistics."""
    for name, module in model.named_modules():
        if isinstance(module, _BatchNorm) and not module.track_running_stats:
            raise ValueError(
                f"module {name or type(module).__name__!r} is a "
                f"{type(module).__name__} with track_running_stats=False: it "
                "normalizes with the batch's own statistics even in eval mode, so "
                "the examples are coupled and the loss is not a mean of per-example "
                "terms. Use track_running_stats=True (its running statistics are "
                "then held fixed) or a per-example normalization (LayerNorm, "
                "GroupNorm)."
            )
    stateful = _mode_dependent(model)
    if stateful and model.training:
        warnings.warn(
            f"the model is in training mode and has {', '.join(stateful)}: it is "
            "evaluated in eval mode (dropout off, batch norm with its running "
            "statistics held fixed) so that the loss is a deterministic function of "
            "θ; call model.eval() first to silence this",
            stacklevel=3,
        )
    copied = copy.deepcopy(model)
    copied.eval()
    return copied


def _mode_dependent(model: nn.Module) -> list[str]:
    """The modules that behave differently in training mode, named for messages."""
    return [
        f"module {name!r} ({type(module).__name__})"
        for name, module in model.named_modules()
        if isinstance(module, (_DropoutNd, _BatchNorm))
    ]


def _mode_note(model: nn.Module) -> str:
    stateful = _mode_dependent(model)
    if not stateful:
        return ""
    kinds = []
    if any(isinstance(m, _DropoutNd) for m in model.modules()):
        kinds.append("dropout is off")
    if any(isinstance(m, _BatchNorm) for m in model.modules()):
        kinds.append("batch norm uses its running statistics, held fixed")
    return f" Evaluated in eval mode ({', '.join(stateful)}): {'; '.join(kinds)}."


def _output_width(
    model: nn.Module, inputs: Tensor, dtype: torch.dtype, device: torch.device
) -> int:
    """C, from the model's outputs on the first few examples (N', C)."""
    probe = inputs[:PROBE_EXAMPLES]
    trial = copy.deepcopy(model).to(dtype=dtype, device=device)
    try:
        with torch.no_grad():
            outputs = trial(probe)
    except Exception as error:
        raise ValueError(
            f"the model cannot be called on inputs of shape {tuple(probe.shape)} "
            f"({probe.dtype}): {type(error).__name__}: {error}"
        ) from None
    if not isinstance(outputs, Tensor):
        raise ValueError(
            f"the model returns {type(outputs).__name__}; it must return one tensor "
            "of outputs (N, C)"
        )
    if outputs.dim() != 2 or outputs.shape[0] != probe.shape[0]:
        raise ValueError(
            f"the model maps {tuple(probe.shape[:1])} examples to outputs of shape "
            f"{tuple(outputs.shape)}; expected (N, C) = ({probe.shape[0]}, C), one "
            "row per example (add nn.Flatten() or reshape to (N, 1) for one output)"
        )
    if not torch.isfinite(outputs).all():
        raise ValueError("the model's outputs at θ₀ contain NaN or inf")
    return int(outputs.shape[1])


def _check_functional(problem: Problem) -> None:
    """One jvp and one vjp through ``predict_fn``: what every exact matrix needs."""
    theta = problem.theta0
    probe = problem.inputs[:PROBE_EXAMPLES]
    tangent = torch.ones_like(theta)

    def forward(t: Tensor) -> Tensor:
        return problem.predict_fn(t, probe)

    try:
        with FORWARD_AD_LOCK:  # forward-AD levels are process-wide
            torch.func.jvp(forward, (theta,), (tangent,))
        outputs, pullback = torch.func.vjp(forward, theta)
        torch.func.vmap(pullback)(torch.ones(2, *outputs.shape, dtype=outputs.dtype))
    except Exception as error:
        raise ValueError(
            "torch.func cannot differentiate this model (vmap/jvp/vjp through "
            f"torch.func.functional_call failed: {type(error).__name__}: {error}). "
            "Every exact curvature matrix needs it; common causes are in-place "
            "operations on parameters, .item() or NumPy calls in forward, and "
            "fused modules such as nn.MultiheadAttention's fast path."
        ) from None


# ------------------------------------------------------------------ the data
def _as_inputs(
    value: Any, what: str, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """Inputs as a tensor (N, ...): floats in ``dtype``, integers as int64."""
    tensor = _as_tensor(value, what)
    if tensor.dim() < 1 or tensor.shape[0] < 1:
        raise ValueError(
            f"{what} have shape {tuple(tensor.shape)}; expected (N, ...) with N ≥ 1"
        )
    if tensor.dtype == torch.bool:
        tensor = tensor.to(dtype)
    if tensor.is_floating_point():
        _require_finite(tensor, what)
        return tensor.to(device=device, dtype=dtype)
    if tensor.is_complex():
        raise ValueError(f"{what} are complex ({tensor.dtype}); expected real values")
    return tensor.to(device=device, dtype=torch.int64)


def _as_targets(
    value: Any, loss: LossSpec, n: int, what: str, device: torch.device
) -> Tensor:
    """Targets checked against the likelihood: shape, type and range."""
    tensor = _as_tensor(value, what)
    if tensor.dim() < 1 or tensor.shape[0] != n:
        raise ValueError(
            f"{what} have shape {tuple(tensor.shape)}; the inputs have N = {n} "
            "examples, so the first dimension must be N"
        )
    if tensor.is_floating_point():
        _require_finite(tensor, what)
    if loss.key in LABEL_TARGETS or loss.classification:
        return _labels(tensor, loss.num_outputs, what).to(device)
    expected = _target_width(loss)
    if tensor.dim() == 1 and expected == 1:
        tensor = tensor.unsqueeze(1)
    if tensor.dim() != 2 or tensor.shape[1] != expected:
        raise ValueError(
            f"{what} have shape {tuple(tensor.shape)}; the {loss.key or 'given'} "
            f"likelihood on {loss.num_outputs} outputs needs targets ({n}, "
            f"{expected})"
        )
    tensor = tensor.to(torch.float64)
    low, high = _target_range(loss)
    if low is not None and float(tensor.min()) < low:
        raise ValueError(
            f"{what} contain {float(tensor.min()):g}; the {loss.key} likelihood "
            f"needs targets ≥ {low:g}"
        )
    if high is not None and float(tensor.max()) > high:
        raise ValueError(
            f"{what} contain {float(tensor.max()):g}; the {loss.key} likelihood "
            f"needs targets ≤ {high:g}"
        )
    return tensor.to(device)


def _labels(tensor: Tensor, classes: int, what: str) -> Tensor:
    if tensor.dim() != 1:
        raise ValueError(
            f"{what} have shape {tuple(tensor.shape)}; class labels must be (N,) "
            "integers (not one-hot)"
        )
    if tensor.is_floating_point():
        if not torch.equal(tensor, tensor.round()):
            raise ValueError(f"{what} are not whole numbers; class labels must be")
        tensor = tensor.long()
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise ValueError(f"{what} are {tensor.dtype}; class labels must be integers")
    low, high = int(tensor.min()), int(tensor.max())
    if low < 0 or high >= classes:
        bad = low if low < 0 else high
        raise ValueError(
            f"{what} contain the label {bad}; the model has {classes} outputs, so "
            f"labels must lie in 0..{classes - 1}"
        )
    return tensor.long()


def _target_width(loss: LossSpec) -> int:
    """Target entries per example (the two-output Gaussians model one per pair)."""
    if loss.key == "gaussian_mean_scale":
        return 1
    return int(getattr(loss, "num_targets", loss.num_outputs))


def _target_range(loss: LossSpec) -> tuple[float | None, float | None]:
    return {"bernoulli": (0.0, 1.0), "poisson": (0.0, None)}.get(loss.key, (None, None))


def _as_tensor(value: Any, what: str) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach()
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"{what} cannot be read as a tensor: {error}") from None


def _require_finite(tensor: Tensor, what: str) -> None:
    bad = ~torch.isfinite(tensor)
    if bool(bad.any()):
        where = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"{what} contain {float(tensor[where]):g} at index {where}; every value "
            "must be finite"
        )


# ------------------------------------------------------------ the likelihood
def _resolve_likelihood(likelihood: str | LossSpec, width: int) -> LossSpec:
    """The LossSpec for ``likelihood`` on a model with ``width`` outputs."""
    if isinstance(likelihood, LossSpec):
        if likelihood.num_outputs != width:
            raise ValueError(
                f"the likelihood {likelihood.describe()} expects "
                f"{likelihood.num_outputs} outputs per example; the model gives "
                f"{width}"
            )
        return likelihood
    if not isinstance(likelihood, str) or likelihood not in LIKELIHOODS:
        raise ValueError(
            f"likelihood = {likelihood!r} is unknown; valid: "
            f"{', '.join(LIKELIHOODS)} or a LossSpec instance"
        )
    cls = LIKELIHOODS[likelihood]
    if likelihood in LABEL_TARGETS and width < 2:
        raise ValueError(
            f"the categorical likelihood needs at least 2 outputs (logits), the "
            f"model gives {width}; use 'bernoulli' for one logit"
        )
    if likelihood == "gaussian_mean_scale":
        if width != 2:
            raise ValueError(
                f"the gaussian_mean_scale likelihood needs 2 outputs (μ, σ); the "
                f"model gives {width}"
            )
        return cls()
    if likelihood == "gaussian_heteroscedastic":
        if width % 2:
            raise ValueError(
                f"the gaussian_heteroscedastic likelihood needs 2 outputs per target "
                f"(means, then log-variances); the model gives {width}"
            )
        return cls(width // 2)
    return cls(width)
