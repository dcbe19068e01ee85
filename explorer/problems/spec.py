"""Problem specs, the build context and the ``PROBLEMS`` registry plumbing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from explorer.options import Option, resolve_options
from explorer.problems.base import Problem
from explorer.problems.likelihoods import GaussianLoss, GaussianTanhMeanLoss, LossSpec
from explorer.registry import Registry

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class BuildContext:
    """What every builder receives besides its options.

    Attributes:
        dtype: Floating point type of data and parameters.
        device: Where tensors live.
        seed: The integer seed.
        generator: A CPU ``torch.Generator`` seeded with ``seed``; data are drawn on
            the CPU in float64 and then moved, so a seed means the same data on every
            device and dtype.
    """

    dtype: torch.dtype
    device: torch.device
    seed: int
    generator: torch.Generator

    def tensor(self, data: Any) -> torch.Tensor:
        """``data`` as a tensor of this dtype on this device."""
        return torch.as_tensor(data).to(device=self.device, dtype=self.dtype)


Builder = Callable[[dict[str, Any], BuildContext], Problem]


@dataclass(frozen=True)
class ProblemSpec:
    """A registered problem: how to build it and which options it takes.

    Attributes:
        key: Short stable snake_case key (appears in URLs).
        label: Human-readable title.
        build: ``(options, context) -> Problem``.
        options: The declared options (defaults documented there).
        description: What the problem demonstrates.
        tags: Free-form facts used by the UI, e.g. ``"two_param"``,
            ``"classification"``, ``"regression"``, ``"streaming"``, ``"real_data"``.
    """

    key: str
    label: str
    build: Builder
    options: tuple[Option, ...] = ()
    description: str = ""
    tags: frozenset[str] = field(default_factory=frozenset)


PROBLEMS: Registry[ProblemSpec] = Registry("problem")


def register_problem(spec: ProblemSpec) -> ProblemSpec:
    """Adds ``spec`` to :data:`PROBLEMS` (one line per problem module)."""
    return PROBLEMS.register(spec.key, spec)


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"``/``"float64"`` or a torch floating dtype -> torch dtype."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"dtype = {dtype} must be torch.float32 or torch.float64")
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype = {dtype!r} must be one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def resolve_device(device: str | torch.device) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when present)."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device = {device!r} must be 'cpu', 'cuda', 'cuda:N' or 'auto'"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device = {device!r} was requested but CUDA is not available here; "
            "use 'cpu' or 'auto'"
        )
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device = {device!r} must be 'cpu', 'cuda' or 'auto'")
    return resolved


def problem(
    key: str,
    *,
    dtype: str | torch.dtype = "float64",
    device: str | torch.device = "cpu",
    seed: int = 0,
    **options: Any,
) -> Problem:
    """Builds the registered problem ``key``.

    Args:
        key: A key of :data:`PROBLEMS`.
        dtype: ``"float64"`` (default: exact demos) or ``"float32"``.
        device: ``"cpu"`` (default), ``"cuda"`` or ``"auto"``.
        seed: Seeds the data and the initial parameters.
        **options: Problem-specific options (see ``PROBLEMS[key].options``).

    Raises:
        ValueError: An unknown key or option, or a value out of range; the message
            names the valid ones.
    """
    spec = PROBLEMS[key]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed = {seed!r} must be a non-negative integer")
    resolved = resolve_options(spec.options, options, where=f"problem {key!r}")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    context = BuildContext(
        resolve_dtype(dtype), resolve_device(device), seed, generator
    )
    return spec.build(resolved, context)


# Shared option declarations -------------------------------------------------------

REGRESSION_LOSSES = ("gaussian", "gaussian_tanh_mean")


def loss_option(default: str = "gaussian") -> Option:
    return Option(
        "loss",
        default,
        "Likelihood: 'gaussian' (matching, F = GGN) or 'gaussian_tanh_mean' "
        "(non-matching: mean tanh(z), so F ≠ GGN).",
        choices=REGRESSION_LOSSES,
    )


def sigma_option(default: float = 1.0) -> Option:
    return Option(
        "sigma",
        default,
        "Standard deviation σ stated by the Gaussian likelihood; the loss is "
        "‖y − mean‖²/(2σ²).",
        low=1e-3,
        high=1e3,
        low_exclusive=True,
    )


def theta0_option(default: tuple[float, ...], help_text: str) -> Option:
    return Option("theta0", default, help_text, low=-1e3, high=1e3, kind="floats")


def regression_loss(name: str, num_outputs: int, sigma: float) -> LossSpec:
    """The Gaussian likelihood named by a ``loss`` option."""
    if name == "gaussian_tanh_mean":
        return GaussianTanhMeanLoss(num_outputs, sigma=sigma)
    return GaussianLoss(num_outputs, sigma=sigma)


def check_length(values: tuple[float, ...], length: int, name: str) -> None:
    if len(values) != length:
        raise ValueError(f"option {name!r} = {values} must have {length} entries")
