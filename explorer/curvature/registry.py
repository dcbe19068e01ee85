"""The ``CURVATURES`` registry, ``curvature()`` and ``register_curvature``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from explorer.curvature.algebra import DelegatingOperator, DenseOperator, MatvecOperator
from explorer.curvature.base import CurvatureOperator, LinearOperator
from explorer.curvature.tags import Requirement, Tags
from explorer.options import Option
from explorer.problems.base import Batch, Problem
from explorer.registry import Registry


@dataclass(frozen=True)
class CurvatureSpec:
    """A registered curvature matrix.

    Structural facts (PSD, exact, diagonal...) are not stored here: :meth:`tags`
    asks the operator class's ``tags_for``, the same method the instances use, so
    the spec and an operator built from it cannot disagree.

    Attributes:
        key: Short stable key (appears in URLs and ``--curvature``).
        label: Human-readable name.
        build: The operator class, called as
            ``(problem, theta, batch=None, generator=None, **options)``.
        description: The definition in words.
        reference: The exact matrix it approximates, if any.
        options: Declared options.
        selectable: Offered in UI selectors (``matrix`` needs a tensor, so not).
        source: ``"builtin"`` or where a plugin came from.
        color: Its colour in every figure (None: a colour hashed from the key).
        theory: The anchor of its section on the Theory page.
    """

    key: str
    label: str
    build: type[CurvatureOperator]
    description: str = ""
    reference: str | None = None
    options: tuple[Option, ...] = ()
    selectable: bool = True
    source: str = "builtin"
    color: str | None = None
    theory: str = "setting"

    def tags(
        self, problem: Problem | None = None, options: dict[str, Any] | None = None
    ) -> Tags:
        """The declared :class:`~explorer.curvature.tags.Tags` on ``problem`` with
        ``options`` (without a problem: what holds on every problem).
        """
        return self.build.tags_for(problem, options)

    @property
    def psd(self) -> bool:
        """PSD on every problem (``tags(problem).psd`` answers for one problem)."""
        return self.tags().psd

    @property
    def exact(self) -> bool:
        """Exactly the matrix its name defines."""
        return self.tags().exact

    @property
    def needs(self) -> tuple[Requirement, ...]:
        """What it needs from a problem."""
        return self.build.needs

    def incompatibility(
        self, problem: Problem, options: dict[str, Any] | None = None
    ) -> str | None:
        """Why this curvature cannot be built on ``problem`` (with the remedy in
        words), or None when it can.

        Example:
            >>> import explorer as ex
            >>> print(ex.CURVATURES["kfac"].incompatibility(ex.problem("rosenbrock")))
            K-FAC needs a model with at least one nn.Linear or nn.Conv2d layer (Conv2d with groups=1 and zero padding); problem 'rosenbrock' has no nn.Module model. Use 'fisher', 'ggn' or a diagonal approximation instead.
        """  # noqa: E501
        return self.build.incompatibility(problem, options)


CURVATURES: Registry[CurvatureSpec] = Registry("curvature")


def spec_for_class(cls: type[CurvatureOperator], **fields: Any) -> CurvatureSpec:
    """The :class:`CurvatureSpec` of an operator class (label, description,
    reference and options from its attributes; ``fields`` add colour, theory...).
    """
    declared = dict(
        key=cls.key,
        label=cls.label,
        build=cls,
        description=cls.description,
        reference=cls.reference,
        options=cls.options_schema,
    )
    declared.update(fields)
    return CurvatureSpec(**declared)


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


class FunctionOperator(DelegatingOperator):
    """Adapts a plain function returning a dense matrix, a matvec or an operator.

    The result becomes ``self.linear``: a tensor a
    :class:`~explorer.curvature.algebra.DenseOperator` (used as given, not
    symmetrized), a function a :class:`~explorer.curvature.algebra.MatvecOperator`,
    an operator itself. The declared tags are the registration's, whatever the
    result claims.
    """

    abstract = True
    function: Callable[..., Any]

    def _setup(self) -> None:
        kwargs = dict(self.options)
        parameters = inspect.signature(self.function).parameters
        if "generator" in parameters:
            kwargs["generator"] = self.generator
        result = self.function(self.problem, self.theta, self.batch, **kwargs)
        self.linear = self._adopt(result)

    def _adopt(self, result: Any) -> LinearOperator:
        where = f"curvature {self.key!r}"
        if isinstance(result, LinearOperator):
            if result.shape != self.shape:
                raise ValueError(
                    f"{where} returned an operator of shape {result.shape}; "
                    f"expected {self.shape}"
                )
            return result
        if isinstance(result, Tensor):
            if result.shape != self.shape:
                raise ValueError(
                    f"{where} returned a matrix of shape {tuple(result.shape)}; expected "
                    f"{self.shape}"
                )
            if not torch.isfinite(result).all():
                raise ValueError(f"{where} returned a matrix with NaN or inf entries")
            matrix = result.to(dtype=self.dtype, device=self.device)
            return DenseOperator(matrix, key=self.key, symmetrize=False, tags=self.tags)
        if callable(result):
            return MatvecOperator(
                result, self.size, self.dtype, self.device, key=self.key, tags=self.tags
            )
        raise ValueError(
            f"{where} returned {type(result).__name__}; expected a (P, P) tensor, a "
            "matvec function or a CurvatureOperator"
        )


def _declared(
    base: Tags, tags: Tags | None, psd: bool, exact: bool, key: str
) -> Tags | None:
    """The tags a registration declares, or None when it declares nothing new."""
    if tags is not None:
        if (psd and not tags.psd) or (exact and not tags.exact):
            raise ValueError(
                f"register_curvature({key!r}): psd/exact contradict the given tags"
            )
        return tags
    if not (psd or exact):
        return None
    return base.replace(psd=base.psd or psd, exact=base.exact or exact)


def register_curvature(
    key: str,
    *,
    label: str | None = None,
    reference: str | None = None,
    psd: bool = False,
    exact: bool = False,
    tags: Tags | None = None,
    needs: tuple[Requirement, ...] = (),
    description: str = "",
    options: tuple[Option, ...] = (),
    color: str | None = None,
    theory: str | None = None,
    overwrite: bool = False,
    source: str = "plugin",
    inverse: bool = False,
) -> Callable[[Any], Any]:
    """Decorator registering a curvature under ``key``.

    Decorates either a :class:`CurvatureOperator` subclass or a function
    ``(problem, theta, batch=None, **options) -> result`` where the result is a dense
    (P, P) tensor, a matvec closure ``v -> C v`` or an operator. The curvature then
    appears wherever built-in ones do (selectors, the generic ``precondition``
    update rule, spectra).

    Args:
        key: The registry key.
        label: Its name (default: the key, or the class's label).
        reference: The exact matrix it approximates.
        psd: Declared positive semi-definite (on every problem).
        exact: Declared exactly the matrix its name defines.
        tags: The full declared :class:`~explorer.curvature.tags.Tags` (instead of
            ``psd``/``exact``), e.g. ``Tags(psd=True, diagonal=True)``.
        needs: :class:`~explorer.curvature.tags.Requirement` s on the problem.
        description: The definition in words (default: the docstring).
        options: Declared options, passed to the function as keywords.
        color: Its colour in figures (default: hashed from the key).
        theory: Its Theory-page anchor (default: its reference's, else
            ``"setting"``).
        overwrite: Replace an existing registration.
        source: Where it came from (plugin loaders pass the file).
        inverse: It is a preconditioner P ≈ C⁻¹ rather than a curvature C (sets
            the class attribute ``inverse``; the check battery judges P⁻¹).

    Example:
        >>> import explorer as ex
        >>> @ex.register_curvature("scaled_identity", label="0.1·I", psd=True)
        ... def scaled_identity(problem, theta, batch=None):
        ...     return 0.1 * torch.eye(problem.num_params, dtype=theta.dtype)
        >>> p = ex.problem("linreg_2d")
        >>> ex.curvature("scaled_identity", p, p.theta0).diag().tolist()
        [0.1, 0.1]
        >>> ex.CURVATURES["scaled_identity"].tags(p).psd
        True
        >>> ex.CURVATURES.unregister("scaled_identity")
    """
    if theory is None:
        theory = CURVATURES[reference].theory if reference in CURVATURES else "setting"
    extra = {"source": source, "color": color, "theory": theory}

    def decorate(target: Any) -> Any:
        if isinstance(target, type) and issubclass(target, CurvatureOperator):
            attributes: dict[str, Any] = {"key": key}
            if label is not None:
                attributes["label"] = label
            if reference is not None:
                attributes["reference"] = reference
            declared = _declared(target.declared, tags, psd, exact, key)
            if declared is not None:
                attributes["declared"] = declared
            if needs:
                attributes["needs"] = (*target.needs, *needs)
            if inverse:
                attributes["inverse"] = True
            cls = type(target.__name__, (target,), attributes)
        elif callable(target):
            cls = type(
                f"{key.title().replace('_', '')}FunctionOperator",
                (FunctionOperator,),
                {
                    "key": key,
                    "label": label or key,
                    "description": description or (target.__doc__ or "").strip(),
                    "declared": _declared(Tags(), tags, psd, exact, key) or Tags(),
                    "needs": tuple(needs),
                    "reference": reference,
                    "options_schema": tuple(options),
                    "function": staticmethod(target),
                    "inverse": inverse,
                },
            )
        else:
            raise TypeError(
                f"register_curvature({key!r}) decorates a CurvatureOperator subclass or "
                f"a function, not {type(target).__name__}"
            )
        CURVATURES.register(key, spec_for_class(cls, **extra), overwrite=overwrite)
        return target

    return decorate
