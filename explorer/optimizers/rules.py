r"""The ``RULES`` registry: baselines, the generic ``precondition`` rule and its aliases.

Every rule is a :class:`RuleSpec`: a key, an options schema (validated before any
work, and the source of CLI flags and UI widgets) and a builder from resolved
options to a :class:`~explorer.optimizers.base.Transform`.

The damped curvature step δ = −α (C + λI)⁻¹ g is one chain for every curvature::

    with_curvature(                       # C at θ_k, refreshed every k steps, EMA
        with_damping(                     # λ fixed, or Levenberg–Marquardt from ρ
            chain(solve_damped(...),      # p = (C + λI)⁻¹ g
                  trace(momentum),        # optional momentum on p
                  step)),                 # δ = −lr·p, or −α*·p
        key)

so ``precondition`` accepts any key of ``explorer.CURVATURES``, including keys that
users register later; that curvature's own options are accepted beside the rule's.
The named aliases fix the curvature (and a few defaults).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from explorer.curvature.registry import CURVATURES, CurvatureSpec
from explorer.optimizers.base import Transform, UpdateRule, chain
from explorer.optimizers.damping import with_damping
from explorer.optimizers.ema import ema_incompatibility
from explorer.optimizers.frozen import ResolvedOptions
from explorer.optimizers.options import (
    adam_options,
    curvature_step_options,
    sgd_options,
)
from explorer.optimizers.preconditioning import (
    scale_by_optimal_step,
    solve_damped,
    with_curvature,
)
from explorer.optimizers.transforms import scale_by_adam, scale_by_step_size, trace
from explorer.options import Option, resolve_options
from explorer.problems.base import Problem
from explorer.registry import Registry

Builder = Callable[[dict[str, Any], str | None, dict[str, Any]], Transform]

FIRST_ORDER = "first_order"
CURVATURE = "curvature"


@dataclass(frozen=True)
class RuleSpec:
    """A registered update rule.

    Attributes:
        key: Short stable key (URLs, ``--rules``).
        label: Human-readable name.
        build: ``(rule options, curvature key, curvature options) -> Transform``.
        options: The rule's own declared options.
        description: What it does, with the formula.
        family: ``"first_order"`` or ``"curvature"`` (a damped curvature step).
        curvature: The fixed curvature key of an alias; None for first-order rules
            and for ``precondition``, which takes it as the ``curvature`` option.
        curvature_defaults: Defaults that an alias overrides in its curvature's
            options (e.g. K-FAC with sampled targets).
        reference: Where the method comes from.
        color: Its colour in every figure; None: its curvature's colour (for
            ``precondition``, the ``curvature`` option's), else one hashed from
            the key.
        theory: The anchor of its section on the Theory page.
    """

    key: str
    label: str
    build: Builder
    options: tuple[Option, ...] = ()
    description: str = ""
    family: str = FIRST_ORDER
    curvature: str | None = None
    curvature_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    reference: str = ""
    color: str | None = None
    theory: str = "updates"

    # ----------------------------------------------------------------- options
    def curvature_key(self, given: Mapping[str, Any] | None = None) -> str | None:
        """The curvature this rule uses with options ``given`` (None if first-order)."""
        if self.family != CURVATURE:
            return None
        if self.curvature is not None:
            return self.curvature
        key = dict(given or {}).get("curvature", _option(self.options, "curvature"))
        if not isinstance(key, str):
            raise ValueError(
                f"rule {self.key!r} option 'curvature' = {key!r} must be a curvature "
                f"key; valid keys: {', '.join(CURVATURES)}"
            )
        return key

    def curvature_spec(self, given: Mapping[str, Any] | None = None) -> CurvatureSpec:
        """The :class:`~explorer.CurvatureSpec` used with options ``given``."""
        key = self.curvature_key(given)
        if key is None:
            raise ValueError(f"rule {self.key!r} uses no curvature")
        spec = CURVATURES[key]  # unknown keys: an error listing the valid ones
        if not spec.selectable:
            raise ValueError(
                f"curvature {key!r} cannot drive an optimizer from a config (it needs "
                "a tensor); register your matrix with ex.register_curvature instead"
            )
        return spec

    def schema(self, given: Mapping[str, Any] | None = None) -> tuple[Option, ...]:
        """All options accepted with ``given``: the rule's and its curvature's.

        For ``precondition`` the curvature part depends on ``given["curvature"]``.
        """
        if self.family != CURVATURE:
            return self.options
        spec = self.curvature_spec(given)
        names = {option.name for option in self.options}
        extra = []
        for option in spec.options:
            if option.name in names:
                raise ValueError(
                    f"curvature {spec.key!r} declares option {option.name!r}, which "
                    f"clashes with an option of rule {self.key!r}; rename it"
                )
            if option.name in self.curvature_defaults:
                option = dataclasses.replace(
                    option, default=self.curvature_defaults[option.name]
                )
            extra.append(option)
        return (*self.options, *extra)

    def resolve(self, given: Mapping[str, Any] | None = None) -> ResolvedOptions:
        """Validated options with defaults filled in (idempotent: options this rule
        already resolved are returned as they are, not validated again).

        Raises:
            ValueError: An unknown option or key, or a value out of range; the
                message names the value and the allowed range.
        """
        where = f"rule {self.key!r}"
        if isinstance(given, ResolvedOptions) and given.owner == where:
            return given
        given = dict(given or {})
        resolved = resolve_options(self.schema(given), given, where=where)
        return ResolvedOptions(resolved, owner=where)

    def split(
        self, resolved: Mapping[str, Any]
    ) -> tuple[dict[str, Any], str | None, dict[str, Any]]:
        """(rule options, curvature key, curvature options) of resolved options."""
        own = {o.name for o in self.options}
        rule_options = {k: v for k, v in resolved.items() if k in own}
        curvature_options = {k: v for k, v in resolved.items() if k not in own}
        return rule_options, self.curvature_key(resolved), curvature_options

    def create(self, given: Mapping[str, Any] | None = None) -> UpdateRule:
        """The :class:`UpdateRule` for options ``given`` (resolved or not)."""
        resolved = self.resolve(given)
        transform = self.build(*self.split(resolved))
        return UpdateRule(self.key, transform, resolved)

    def incompatibility(
        self, problem: Problem, given: Mapping[str, Any] | None = None
    ) -> str | None:
        """Why this rule cannot run on ``problem`` with ``given``, or None."""
        if self.family != CURVATURE:
            return None
        resolved = self.resolve(given)
        spec = self.curvature_spec(resolved)
        if getattr(spec.build, "inverse", False):
            return (
                f"curvature {spec.key!r} is registered as a preconditioner P ≈ C⁻¹ "
                "(inverse=True); a damped curvature step needs C itself, so it cannot "
                "drive this rule (the check battery judges it as P⁻¹). Register C, or "
                "use another curvature."
            )
        _, _, curvature_options = self.split(resolved)
        reason = spec.incompatibility(problem, curvature_options)
        if reason is None and resolved["ema"] > 0:
            reason = ema_incompatibility(spec, problem, curvature_options)
        return reason


def _option(options: tuple[Option, ...], name: str) -> Any:
    for option in options:
        if option.name == name:
            return option.default
    raise KeyError(name)


def _with_defaults(options: tuple[Option, ...], **defaults: Any) -> tuple[Option, ...]:
    unknown = set(defaults) - {o.name for o in options}
    if unknown:
        raise ValueError(f"no options named {sorted(unknown)}")
    return tuple(
        dataclasses.replace(o, default=defaults[o.name]) if o.name in defaults else o
        for o in options
    )


# ------------------------------------------------------------------- builders
def build_sgd(options: dict[str, Any], *_: Any) -> Transform:
    return chain(
        trace(options["momentum"], options["nesterov"]),
        scale_by_step_size(options["lr"]),
    )


def build_adam(options: dict[str, Any], *_: Any) -> Transform:
    return chain(
        scale_by_adam(options["beta1"], options["beta2"], options["eps"]),
        scale_by_step_size(options["lr"]),
    )


def build_curvature_step(
    options: dict[str, Any], key: str | None, curvature_options: dict[str, Any]
) -> Transform:
    """The damped curvature step of the module docstring."""
    if key is None:
        raise ValueError("a curvature step needs a curvature key")
    step = (
        scale_by_optimal_step()
        if options["step_size"] == "optimal"
        else scale_by_step_size(options["lr"])
    )
    solve = solve_damped(
        solver=options["solver"],
        cg_maxiter=options["cg_maxiter"],
        cg_rtol=options["cg_rtol"],
        warm_start=options["cg_warm_start"],
        negative_curvature=options["negative_curvature"],
        dense_max_params=options["dense_max_params"],
    )
    damped = with_damping(
        chain(solve, trace(options["momentum"]), step),
        damping=options["damping"],
        adaptation=options["damping_adaptation"],
        omega=options["lm_omega"],
        interval=options["lm_interval"],
        min_damping=options["min_damping"],
        reject=options["lm_reject"],
        track_rho=options["track_rho"],
        on_indefinite=options["on_indefinite"],
        escape_lr=options["lr"] if options["step_size"] == "fixed" else 1.0,
    )
    return with_curvature(
        damped,
        key,
        curvature_options,
        refresh_every=options["refresh_every"],
        ema=options["ema"],
    )


# ------------------------------------------------------------------- registry
RULES: Registry[RuleSpec] = Registry("update rule")


def register_rule(spec: RuleSpec, *, overwrite: bool = False) -> RuleSpec:
    """Adds ``spec`` to :data:`RULES`."""
    return RULES.register(spec.key, spec, overwrite=overwrite)


def curvature_alias(
    key: str,
    label: str,
    curvature: str,
    description: str,
    reference: str = "",
    curvature_defaults: Mapping[str, Any] | None = None,
    color: str | None = None,
    theory: str | None = None,
    **defaults: Any,
) -> RuleSpec:
    """A named damped curvature step with curvature ``curvature`` fixed; its Theory
    anchor defaults to its curvature's (its colour is its curvature's unless given).
    """
    return RuleSpec(
        key=key,
        label=label,
        build=build_curvature_step,
        options=_with_defaults(curvature_step_options(), **defaults),
        description=description,
        family=CURVATURE,
        curvature=curvature,
        curvature_defaults=dict(curvature_defaults or {}),
        reference=reference,
        color=color,
        theory=CURVATURES[curvature].theory if theory is None else theory,
    )


CURVATURE_OPTION = Option(
    "curvature",
    "ggn",
    "Any key of explorer.CURVATURES (hessian, ggn, fisher, fisher_mc, ef, kfac, "
    "diag_*, block_*, or one you registered); its options are accepted too.",
)

SGD = RuleSpec(
    key="sgd",
    label="SGD",
    build=build_sgd,
    options=sgd_options(),
    description="θ ← θ − α·g, with optional (Nesterov) momentum v ← μv + g.",
    reference="Robbins & Monro 1951; Polyak 1964; Nesterov 1983",
    color="#7f7f7f",
)
ADAM = RuleSpec(
    key="adam",
    label="Adam",
    build=build_adam,
    options=adam_options(),
    description="θ ← θ − α·m̂/(√v̂ + ε) with bias-corrected moment averages.",
    reference="Kingma & Ba 2015",
    color="#bcbd22",
)
PRECONDITION = RuleSpec(
    key="precondition",
    label="Damped curvature step (any curvature)",
    build=build_curvature_step,
    options=(CURVATURE_OPTION, *curvature_step_options()),
    description=(
        "δ = −α(C + λI)⁻¹g with C any registered curvature: the generic second-order "
        "step every named alias is an instance of."
    ),
    family=CURVATURE,
    reference="Martens 2020, section 6",
    color="#8c564b",
)

ALIASES = (
    curvature_alias(
        "natural_gradient",
        "Natural gradient (exact Fisher)",
        "fisher",
        "δ = −α(F + λI)⁻¹g with the exact Fisher F of the model's predictive "
        "distribution.",
        reference="Amari 1998; Martens 2020",
    ),
    curvature_alias(
        "gauss_newton",
        "Gauss-Newton (GGN)",
        "ggn",
        "δ = −α(G + λI)⁻¹g with the generalized Gauss-Newton matrix G; identical to "
        "natural gradient for matching losses.",
        reference="Schraudolph 2002; Martens 2020, section 9",
    ),
    curvature_alias(
        "newton",
        "Newton (Hessian)",
        "hessian",
        "δ = −α(H + λI)⁻¹g with the exact Hessian under Levenberg–Marquardt "
        "damping; where H + λI is indefinite, λ is raised past the most negative "
        "eigenvalue and the step retried (recorded as 'indefinite' in the history; "
        "on_indefinite='stop' stops instead, 'negative_curvature' steps along it).",
        reference="Levenberg 1944; Marquardt 1963; Nocedal & Wright 2006, §3.4",
        on_indefinite="raise_damping",
    ),
    curvature_alias(
        "ef_natural_gradient",
        "Empirical-Fisher 'natural gradient'",
        "ef",
        "δ = −α(EF + λI)⁻¹g with the empirical Fisher of the labels: not the Fisher, "
        "often a poor preconditioner.",
        reference="Kunstner, Balles & Hennig 2019",
    ),
    curvature_alias(
        "mc_natural_gradient",
        "Natural gradient (Monte Carlo Fisher)",
        "fisher_mc",
        "δ = −α(F̂ + λI)⁻¹g with the Fisher estimated from targets sampled from the "
        "model.",
    ),
    curvature_alias(
        "kfac",
        "K-FAC",
        "kfac",
        "δ = −α*(A ⊗ S + damping)⁻¹g per layer with factored Tikhonov damping, "
        "factors from sampled targets, α* from the quadratic model, LM damping "
        "every 5 steps.",
        reference="Martens & Grosse 2015",
        curvature_defaults={"output_factor": "mc"},
        step_size="optimal",
        lm_interval=5,
    ),
    curvature_alias(
        "ekfac",
        "EKFAC",
        "ekfac",
        "δ = −α(C_EKFAC + λI)⁻¹g per layer: K-FAC's eigenbasis with the "
        "per-example gradients' second moments as eigenvalues, damped exactly in "
        "that basis; as K-FAC, factors from sampled targets and LM damping every 5 "
        "steps (α = lr = 1: with an exact solve the quadratic model's α* is 1).",
        reference="George et al. 2018",
        theory="preconditioners",
        curvature_defaults={"output_factor": "mc"},
        lm_interval=5,
    ),
    curvature_alias(
        "foof",
        "FOOF (forward-only K-FAC)",
        "kfac",
        "δV̄ = −α G(A + λI)⁻¹ per layer: K-FAC with S = I, no backward pass for "
        "curvature (Gauss-Newton on the layer outputs); λ fixed, relative to A's "
        "scale, not the Fisher's.",
        reference="Benzing 2022",
        theory="preconditioners",
        curvature_defaults={"output_factor": "identity", "damping_mode": "exact"},
        color="#dbdb8d",
        damping_adaptation="fixed",
        lr=0.3,
    ),
    curvature_alias(
        "diag_natural_gradient",
        "Diagonal natural gradient",
        "diag_fisher",
        "δ = −α(diag F + λI)⁻¹g: the exact diagonal of the Fisher only.",
    ),
    curvature_alias(
        "hessian_free",
        "Hessian-free (truncated CG on GGN)",
        "ggn",
        "δ ≈ −(G + λI)⁻¹g by at most cg_maxiter conjugate-gradient iterations on "
        "GGN-vector products, warm-started from 0.95 × the previous solution, with "
        "Levenberg–Marquardt damping.",
        reference="Martens 2010",
        color="#e377c2",
        theory="updates",
        solver="cg",
        cg_maxiter=10,
        cg_warm_start=0.95,
        negative_curvature="truncate",
    ),
)
