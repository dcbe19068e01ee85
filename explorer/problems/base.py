r"""The :class:`Problem`: data, a model, a likelihood and a starting point.

The objective is the mean negative log-likelihood (THEORY.md §1)

.. math:: h(θ) = \frac{1}{N} \sum_i L(y_i, f(x_i; θ)),

over a flat parameter vector θ (P,) in the order of ``model.parameters()``. Every
curvature matrix is the curvature of this mean, so it carries the same 1/N.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.func import functional_call

from explorer.problems.likelihoods import LossSpec


class Batch(NamedTuple):
    """A mini-batch: ``inputs`` (N, D) and ``targets`` ((N,) labels or (N, C)).

    ``inputs`` are floats of the problem's dtype, or int64 where they are indices
    such as token ids (N, T) of a sequence model, which no code casts to a float.
    """

    inputs: Tensor
    targets: Tensor

    @property
    def size(self) -> int:
        """The number of examples N."""
        return int(self.inputs.shape[0])


@dataclass(frozen=True)
class LinearLayer:
    """Where one ``nn.Linear`` layer's parameters live in the flat vector θ.

    The weight occupies ``theta[weight]`` in row-major order of its
    (out_features, in_features) matrix; the bias, if any, ``theta[bias]``.
    """

    name: str
    in_features: int
    out_features: int
    weight: slice
    bias: slice | None

    @property
    def span(self) -> slice:
        """The contiguous slice covering weight and bias."""
        stop = self.bias.stop if self.bias is not None else self.weight.stop
        return slice(self.weight.start, stop)


@dataclass(frozen=True)
class ParameterMatrix:
    """One parameter tensor at ``span`` of θ viewed as an m × n matrix (row-major):
    (shape[0], prod(shape[1:])); a 1-D tensor is a column (m, 1), a scalar (1, 1).

    Attributes:
        name: The parameter's name.
        span: Its slice of θ.
        rows: m.
        cols: n.
        ndim: The tensor's number of dimensions (``is_matrix``: ≥ 2).
    """

    name: str
    span: slice
    rows: int
    cols: int
    ndim: int

    @property
    def is_matrix(self) -> bool:
        """A weight matrix or kernel (not a bias, gain or scalar)."""
        return self.ndim >= 2


def parameter_matrices(problem: Problem) -> tuple[ParameterMatrix, ...]:
    """Every parameter tensor of ``problem`` in θ order with its matrix view (what
    Shampoo, SOAP and Muon precondition tensor by tensor).
    """
    out, offset = [], 0
    for name, shape in zip(problem.param_names, problem.param_shapes, strict=True):
        rows = int(shape[0]) if len(shape) else 1
        size = math.prod(shape)
        span = slice(offset, offset + size)
        out.append(ParameterMatrix(name, span, rows, size // rows, len(shape)))
        offset += size
    return tuple(out)


PredictFn = Callable[[Tensor, Tensor], Tensor]
StreamFn = Callable[[int, torch.Generator], Batch]


@dataclass(frozen=True, eq=False)
class Problem:
    """A learning problem with an exact likelihood.

    Attributes:
        key: The registry key that built it.
        label: A human-readable title.
        loss: The likelihood (:class:`LossSpec`).
        theta0: The starting point (P,).
        inputs: Training inputs (N, D) of the problem's dtype, or int64 indices
            (token ids (N, T)) that the model embeds and that are never cast to a
            float; for streaming problems a large fixed evaluation sample standing
            in for the population.
        targets: Training targets.
        predict_fn: ``(theta (P,), inputs (N, D)) -> outputs (N, C)``.
        param_names: Names of the parameter tensors, in flat order.
        param_shapes: Their shapes.
        model: The ``nn.Module`` behind ``predict_fn`` when there is one.
        test_inputs: Held-out inputs, where the data is real.
        test_targets: Held-out targets.
        layers: The ``nn.Linear`` layers (what K-FAC and block-diagonal need).
        options: The resolved options that built it (a reproducibility record).
        description: What the problem shows, for help texts.
        coordinate_names: Axis labels for the parameters when P is tiny.
        view_box: A sensible ((lo, hi), (lo, hi)) window for 2-parameter plots.
        stream_fn: For streaming problems: ``(size, generator) -> Batch`` of fresh
            samples.
        theta_star: The true parameters where they are known.
    """

    key: str
    label: str
    loss: LossSpec
    theta0: Tensor
    inputs: Tensor
    targets: Tensor
    predict_fn: PredictFn
    param_names: tuple[str, ...]
    param_shapes: tuple[tuple[int, ...], ...]
    model: nn.Module | None = None
    test_inputs: Tensor | None = None
    test_targets: Tensor | None = None
    layers: tuple[LinearLayer, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    coordinate_names: tuple[str, ...] | None = None
    view_box: tuple[tuple[float, float], ...] | None = None
    stream_fn: StreamFn | None = None
    theta_star: Tensor | None = None

    # ----------------------------------------------------------------- sizes
    @property
    def num_params(self) -> int:
        """P, the length of θ."""
        return int(self.theta0.numel())

    @property
    def num_examples(self) -> int:
        """N, the number of training (or evaluation) examples."""
        return int(self.inputs.shape[0])

    @property
    def num_outputs(self) -> int:
        """C, the number of network outputs per example."""
        return self.loss.num_outputs

    @property
    def dtype(self) -> torch.dtype:
        return self.theta0.dtype

    @property
    def device(self) -> torch.device:
        return self.theta0.device

    @property
    def is_streaming(self) -> bool:
        """Whether fresh samples are drawn every step (``sample_batch``)."""
        return self.stream_fn is not None

    @property
    def has_test_set(self) -> bool:
        return self.test_inputs is not None

    # ------------------------------------------------------------ parameters
    def check_theta(self, theta: Tensor, name: str = "theta") -> Tensor:
        """Validates a flat parameter vector: shape (P,), the problem's dtype,
        finite; returns it.
        """
        if not isinstance(theta, Tensor):
            raise ValueError(
                f"{name} must be a torch.Tensor, got {type(theta).__name__}"
            )
        self._check_dtype(theta, name)
        if theta.shape != (self.num_params,):
            raise ValueError(
                f"{name} has shape {tuple(theta.shape)}; problem {self.key!r} needs "
                f"({self.num_params},)"
            )
        if not torch.isfinite(theta).all():
            raise ValueError(f"{name} contains non-finite values (NaN or inf)")
        return theta

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        """Views of ``theta`` (P,) as named parameter tensors."""
        params, offset = {}, 0
        for name, shape in zip(self.param_names, self.param_shapes, strict=True):
            size = math.prod(shape)
            params[name] = theta[offset : offset + size].view(shape)
            offset += size
        return params

    def flatten(self, params: Mapping[str, Tensor]) -> Tensor:
        """The inverse of :meth:`unflatten`."""
        return torch.cat([params[name].reshape(-1) for name in self.param_names])

    def blocks(self) -> tuple[tuple[str, slice], ...]:
        """Parameter groups for block-diagonal approximations: one per module.

        The parameters a module owns directly (a linear layer's weight and bias, a
        convolution's kernel and bias, a LayerNorm's gain and shift) form one
        block, named after the module; every parameter lies in exactly one block.
        The root module's own parameters (a bare ``nn.Linear``) form a block named
        after its class; a problem without a model has one block per tensor.
        """
        out: list[tuple[str, slice]] = []
        offset = 0
        root = type(self.model).__name__ if self.model is not None else None
        for name, shape in zip(self.param_names, self.param_shapes, strict=True):
            size = math.prod(shape)
            # a module's own parameters (a bare nn.Linear's weight and bias) are one
            # block named after it; without a model, each tensor is its own block
            owner = name.rpartition(".")[0] or root or name
            if out and out[-1][0] == owner and out[-1][1].stop == offset:
                out[-1] = (owner, slice(out[-1][1].start, offset + size))
            else:
                out.append((owner, slice(offset, offset + size)))
            offset += size
        return tuple(out)

    # ------------------------------------------------------------------ data
    def batch(self, indices: Tensor | None = None) -> Batch:
        """The training batch (all of it when ``indices`` is None)."""
        if indices is None:
            return Batch(self.inputs, self.targets)
        return Batch(self.inputs[indices], self.targets[indices])

    def test_batch(self) -> Batch | None:
        """The held-out batch, or None."""
        if self.test_inputs is None or self.test_targets is None:
            return None
        return Batch(self.test_inputs, self.test_targets)

    def sample_batch(self, size: int | None, generator: torch.Generator) -> Batch:
        """A mini-batch of ``size`` examples.

        Streaming problems draw fresh samples; others draw training indices without
        replacement (``size`` None or ≥ N gives the full batch).
        """
        if self.stream_fn is not None:
            if size is None or size < 1:
                raise ValueError(
                    f"streaming problem {self.key!r} needs a batch size ≥ 1"
                )
            return self.stream_fn(int(size), generator)
        if size is None or size >= self.num_examples:
            return self.batch()
        if size < 1:
            raise ValueError(f"batch size = {size} must be at least 1")
        order = torch.randperm(self.num_examples, generator=generator, device="cpu")
        return self.batch(order[:size].to(self.inputs.device))

    def resolve_batch(self, batch: Batch | None) -> Batch:
        """``batch`` as a :class:`Batch` (None: the whole training set).

        A plain ``(inputs, targets)`` pair of tensors is accepted; anything else,
        e.g. a batch *size* such as ``batch=-1``, is a ValueError that says what to
        pass instead.
        """
        if batch is None:
            return self.batch()
        if isinstance(batch, Batch):
            return batch
        if (
            isinstance(batch, tuple)
            and len(batch) == 2
            and all(isinstance(part, Tensor) for part in batch)
        ):
            return Batch(*batch)
        raise ValueError(
            f"batch={batch!r} is not a batch of examples; expected None (all "
            f"{self.num_examples} training examples), a Batch (inputs, targets), "
            "e.g. problem.sample_batch(size, generator) for `size` random examples"
        )

    def _resolve(self, batch: Batch | None) -> Batch:
        return self.resolve_batch(batch)

    def _check_dtype(self, theta: Tensor, name: str = "theta") -> None:
        # a mismatch fails deep inside a matmul ("expected m1 and m2 to have the same
        # dtype") or, worse, silently promotes; name it where the user passed it
        if theta.dtype != self.theta0.dtype:
            raise ValueError(
                f"{name} has dtype {theta.dtype}, but problem {self.key!r} is "
                f"{self.theta0.dtype}; expected {self.theta0.dtype} (convert with "
                f"{name}.to(problem.dtype), or build the problem with "
                f"dtype={str(theta.dtype).removeprefix('torch.')!r})"
            )

    # ------------------------------------------------------------- objective
    def predict(self, theta: Tensor, inputs: Tensor | None = None) -> Tensor:
        """Network outputs z = f(x; θ) (N, C) for ``inputs`` (default: training).

        Raises:
            ValueError: ``theta`` is not of the problem's dtype.
        """
        self._check_dtype(theta)
        return self.predict_fn(theta, self.inputs if inputs is None else inputs)

    def objective(self, theta: Tensor, batch: Batch | None = None) -> Tensor:
        """h(θ) = (1/N) Σ_i L(y_i, f(x_i; θ)) on ``batch`` (default: all training)."""
        batch = self._resolve(batch)
        return self.loss.value(self.predict(theta, batch.inputs), batch.targets)

    def per_example_loss(self, theta: Tensor, batch: Batch | None = None) -> Tensor:
        """L(y_i, f(x_i; θ)) for each example (N,)."""
        batch = self._resolve(batch)
        return self.loss.per_example(self.predict(theta, batch.inputs), batch.targets)

    def value_and_grad(
        self, theta: Tensor, batch: Batch | None = None
    ) -> tuple[Tensor, Tensor]:
        """(h(θ), ∇h(θ)) by one reverse pass."""
        with torch.enable_grad():
            theta = theta.detach().requires_grad_(True)
            value = self.objective(theta, batch)
            (grad,) = torch.autograd.grad(value, theta)
        return value.detach(), grad

    def grad(self, theta: Tensor, batch: Batch | None = None) -> Tensor:
        """G = ∇h(θ) (P,)."""
        return self.value_and_grad(theta, batch)[1]

    def accuracy(self, theta: Tensor, batch: Batch | None = None) -> float | None:
        """Classification accuracy on ``batch``, or None for non-classification."""
        batch = self._resolve(batch)
        with torch.no_grad():
            acc = self.loss.accuracy(self.predict(theta, batch.inputs), batch.targets)
        return None if acc is None else float(acc)

    def evaluate(self, theta: Tensor) -> dict[str, float]:
        """Training (or population) loss and accuracy, and test ones where defined."""
        metrics: dict[str, float] = {}
        with torch.no_grad():
            metrics["loss"] = float(self.objective(theta))
            accuracy = self.accuracy(theta)
            if accuracy is not None:
                metrics["accuracy"] = accuracy
            test = self.test_batch()
            if test is not None:
                metrics["test_loss"] = float(self.objective(theta, test))
                test_accuracy = self.accuracy(theta, test)
                if test_accuracy is not None:
                    metrics["test_accuracy"] = test_accuracy
        return metrics

    def summary(self) -> str:
        """One line: key, sizes and likelihood."""
        return (
            f"{self.key}: P = {self.num_params:,}, N = {self.num_examples:,}, "
            f"C = {self.num_outputs}, loss = {self.loss.describe()}"
        )


def module_predict_fn(model: nn.Module, names: tuple[str, ...], shapes) -> PredictFn:
    """A ``predict_fn`` calling ``model`` functionally with parameters from θ.

    ``functional_call`` swaps θ into the module's attributes for the forward pass,
    so two threads calling it on one module would read each other's parameters
    (measured: 750 of 800 concurrent forward passes on a shared digits MLP came out
    wrong). A problem is built once and shared — by the app's sessions, by a page and
    its background runs — so the swap is serialized by a per-module lock; the
    backward pass reads the saved tensors and runs outside it.
    """
    swap = threading.RLock()

    sizes = [math.prod(shape) for shape in shapes]

    def predict(theta: Tensor, inputs: Tensor) -> Tensor:
        # One split, not a slice per tensor: the backward of P-slices allocates and
        # adds a zero gradient of length P per parameter tensor (measured: 60 % of a
        # per-example Jacobian of a 22-tensor transformer), a split's is one concat.
        pieces = theta.split(sizes)
        params = {
            name: piece.view(shape)
            for name, piece, shape in zip(names, pieces, shapes, strict=True)
        }
        with swap:
            return functional_call(model, params, (inputs,))

    return predict


def linear_layers(model: nn.Module) -> tuple[LinearLayer, ...]:
    """The ``nn.Linear`` layers of ``model`` with their flat-parameter slices
    (a layer whose weight is tied to an earlier module's is not listed).
    """
    offsets, offset = {}, 0
    for name, param in model.named_parameters():
        offsets[name] = slice(offset, offset + param.numel())
        offset += param.numel()
    layers = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            prefix = f"{name}." if name else ""
            if prefix + "weight" not in offsets:
                # a tied weight: named_parameters lists it once, under the module
                # that owns it first, so this layer has no slice of its own
                continue
            bias = offsets.get(prefix + "bias") if module.bias is not None else None
            layers.append(
                LinearLayer(
                    name=name or "linear",
                    in_features=module.in_features,
                    out_features=module.out_features,
                    weight=offsets[prefix + "weight"],
                    bias=bias,
                )
            )
    return tuple(layers)


def problem_from_model(
    model: nn.Module, dtype: torch.dtype, device: torch.device, **fields: Any
) -> Problem:
    """A :class:`Problem` whose ``predict_fn`` calls ``model`` functionally.

    ``theta0`` is taken from the model's current parameters (flattened in the order
    of ``model.parameters()``); ``fields`` fill the rest of the dataclass.
    """
    # An ordinary module holding θ₀ whose parameters require grad, as the peers
    # (curvlinops, BackPACK) expect; the explorer itself calls it functionally.
    model = model.to(device=device, dtype=dtype)
    for param in model.parameters():
        param.requires_grad_(True)
    names = tuple(name for name, _ in model.named_parameters())
    shapes = tuple(tuple(param.shape) for param in model.parameters())
    theta0 = torch.cat([param.detach().reshape(-1) for param in model.parameters()])
    return Problem(
        theta0=theta0.clone(),
        predict_fn=module_predict_fn(model, names, shapes),
        param_names=names,
        param_shapes=shapes,
        model=model,
        layers=linear_layers(model),
        **fields,
    )
