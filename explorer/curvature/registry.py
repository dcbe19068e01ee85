"""The ``CURVATURES`` registry, ``curvature()`` and ``register_curvature``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from explorer.curvature.base import CurvatureOperator
from explorer.options import Option
from explorer.problems.base import Batch, Problem
from explorer.registry import Registry

OperatorFactory = Callable[..., CurvatureOperator]


@dataclass(frozen=True)
class CurvatureSpec:
    """A registered curvature matrix.

    Attributes:
        key: Short stable key (appears in URLs and ``--curvature``).
        label: Human-readable name.
        build: ``(problem, theta, batch=None, generator=None, **options) -> operator``.
        description: The definition in words.
        psd: Declared positive semi-definite (GGN: for convex losses).
        exact: Exactly the matrix its name defines (no sampling or structure).
        reference: The exact matrix it approximates, if any.
        options: Declared options.
        needs_layers: Needs linear layers (K-FAC, layer blocks).
        selectable: Offered in UI selectors (``matrix`` needs a tensor, so not).
        source: ``"builtin"`` or where a plugin came from.
    """

    key: str
    label: str
    build: OperatorFactory
    description: str = ""
    psd: bool = False
    exact: bool = False
    reference: str | None = None
    options: tuple[Option, ...] = ()
    needs_layers: bool = False
    selectable: bool = True
    source: str = "builtin"


CURVATURES: Registry[CurvatureSpec] = Registry("curvature")


def spec_for_class(cls: type[CurvatureOperator], **overrides: Any) -> CurvatureSpec:
    """The :class:`CurvatureSpec` declared by an operator class's attributes."""
    psd = cls.__dict__.get("psd", getattr(cls, "psd", False))
    fields = dict(
        key=cls.key,
        label=cls.label,
        build=cls,
        description=cls.description,
        psd=psd if isinstance(psd, bool) else True,
        exact=cls.exact,
        reference=cls.reference,
        options=cls.options_schema,
        needs_layers=cls.needs_layers,
    )
    fields.update(overrides)
    return CurvatureSpec(**fields)


def curvature(
    key: str,
    problem: Problem,
    theta: Tensor,
    batch: Batch | None = None,
    generator: torch.Generator | None = None,
    **options: Any,
) -> CurvatureOperator:
    """Builds curvature ``key`` of ``problem`` at ``theta``.

    Args:
        key: A key of :data:`CURVATURES` (``hessian``, ``ggn``, ``fisher``...).
        problem: The problem.
        theta: The point (P,).
        batch: Examples to average over (default: the whole training set).
        generator: For sampling curvatures (default: seed 0).
        **options: Curvature-specific options.

    Returns:
        An immutable :class:`CurvatureOperator`.
    """
    return CURVATURES[key].build(
        problem, theta, batch=batch, generator=generator, **options
    )


class FunctionOperator(CurvatureOperator):
    """Adapts a plain function returning a dense matrix, a matvec or an operator."""

    function: Callable[..., Any]

    def _setup(self) -> None:
        kwargs = dict(self.options)
        parameters = inspect.signature(self.function).parameters
        if "generator" in parameters:
            kwargs["generator"] = self.generator
        result = self.function(self.problem, self.theta, self.batch, **kwargs)
        self._result_kind, self._result = self._adopt(result)

    def _adopt(self, result: Any) -> tuple[str, Any]:
        where = f"curvature {self.key!r}"
        if isinstance(result, CurvatureOperator):
            if result.shape != self.shape:
                raise ValueError(
                    f"{where} returned an operator of shape {result.shape}; "
                    f"expected {self.shape}"
                )
            return "operator", result
        if isinstance(result, Tensor):
            if result.shape != self.shape:
                raise ValueError(
                    f"{where} returned a matrix of shape {tuple(result.shape)}; expected "
                    f"{self.shape}"
                )
            if not torch.isfinite(result).all():
                raise ValueError(f"{where} returned a matrix with NaN or inf entries")
            return "dense", result.to(dtype=self.dtype, device=self.device)
        if callable(result):
            return "matvec", result
        raise ValueError(
            f"{where} returned {type(result).__name__}; expected a (P, P) tensor, a "
            "matvec function or a CurvatureOperator"
        )

    def _matvec(self, v: Tensor) -> Tensor:
        if self._result_kind == "dense":
            return self._result @ v
        if self._result_kind == "operator":
            return self._result.matvec(v)
        out = self._result(v)
        if not isinstance(out, Tensor) or out.shape != v.shape:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"curvature {self.key!r} matvec returned {shape}; expected {tuple(v.shape)}"
            )
        return out

    def _matmat(self, matrix: Tensor) -> Tensor:
        if self._result_kind == "dense":
            return self._result @ matrix
        if self._result_kind == "operator":
            return self._result.matmat(matrix)
        return torch.stack([self._matvec(col) for col in matrix.T], 1)

    def _dense(self) -> Tensor:
        if self._result_kind == "dense":
            return self._result
        return super()._dense()


def register_curvature(
    key: str,
    *,
    label: str | None = None,
    reference: str | None = None,
    psd: bool = False,
    exact: bool = False,
    description: str = "",
    options: tuple[Option, ...] = (),
    overwrite: bool = False,
    source: str = "plugin",
) -> Callable[[Any], Any]:
    """Decorator registering a curvature under ``key``.

    Decorates either a :class:`CurvatureOperator` subclass or a function
    ``(problem, theta, batch=None, **options) -> result`` where the result is a dense
    (P, P) tensor, a matvec closure ``v -> C v`` or a ``CurvatureOperator``. The
    curvature then appears wherever built-in ones do (selectors, the generic
    ``precondition`` update rule, spectra).

    Example:
        >>> import explorer as ex
        >>> @ex.register_curvature("scaled_identity", label="0.1·I", psd=True)
        ... def scaled_identity(problem, theta, batch=None):
        ...     return 0.1 * torch.eye(problem.num_params, dtype=theta.dtype)
        >>> p = ex.problem("linreg_2d")
        >>> ex.curvature("scaled_identity", p, p.theta0).diag().tolist()
        [0.1, 0.1]
        >>> ex.CURVATURES.unregister("scaled_identity")
    """

    def decorate(target: Any) -> Any:
        if isinstance(target, type) and issubclass(target, CurvatureOperator):
            attributes = {"key": key}
            if label is not None:
                attributes["label"] = label
            if reference is not None:
                attributes["reference"] = reference
            cls = type(target.__name__, (target,), attributes)
            spec = spec_for_class(cls, source=source)
        elif callable(target):
            cls = type(
                f"{key.title().replace('_', '')}FunctionOperator",
                (FunctionOperator,),
                {
                    "key": key,
                    "label": label or key,
                    "description": description or (target.__doc__ or "").strip(),
                    "psd": psd,
                    "exact": exact,
                    "reference": reference,
                    "options_schema": tuple(options),
                    "function": staticmethod(target),
                },
            )
            spec = spec_for_class(cls, source=source)
        else:
            raise TypeError(
                f"register_curvature({key!r}) decorates a CurvatureOperator subclass or "
                f"a function, not {type(target).__name__}"
            )
        CURVATURES.register(key, spec, overwrite=overwrite)
        return target

    return decorate
