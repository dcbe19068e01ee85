"""Update rules: chains of small pure transforms on flat vectors; the ``RULES`` registry.

Built-ins: ``sgd``, ``adam``, ``sophia``, ``adahessian``, ``muon`` (in
:mod:`explorer.optimizers.diagonal_rules`), ``shampoo``, ``soap``
(Kronecker-factored, in :mod:`explorer.optimizers.shampoo`), ``precondition`` (any
curvature key) and its aliases ``natural_gradient``, ``gauss_newton``, ``newton``,
``ef_natural_gradient``, ``mc_natural_gradient``, ``kfac``, ``diag_natural_gradient``,
``hessian_free``.
"""

from explorer.optimizers import diagonal_rules, rules, shampoo
from explorer.optimizers.base import StepContext, Transform, UpdateRule, chain
from explorer.optimizers.damping import lm_adjust, reduction_ratio, with_damping
from explorer.optimizers.frozen import FrozenOptions
from explorer.optimizers.preconditioning import (
    scale_by_optimal_step,
    solve_damped,
    with_curvature,
)
from explorer.optimizers.rules import RULES, RuleSpec, register_rule
from explorer.optimizers.transforms import scale_by_adam, scale_by_step_size, trace

# One line per rule; the order is the order of the UI selector.
register_rule(rules.SGD)
register_rule(rules.ADAM)
register_rule(diagonal_rules.SOPHIA)
register_rule(diagonal_rules.ADAHESSIAN)
register_rule(diagonal_rules.MUON)
register_rule(shampoo.SHAMPOO)
register_rule(shampoo.SOAP)
for _alias in rules.ALIASES:
    register_rule(_alias)
register_rule(rules.PRECONDITION)
del _alias

__all__ = [
    "RULES",
    "FrozenOptions",
    "RuleSpec",
    "StepContext",
    "Transform",
    "UpdateRule",
    "chain",
    "lm_adjust",
    "reduction_ratio",
    "register_rule",
    "scale_by_adam",
    "scale_by_optimal_step",
    "scale_by_step_size",
    "solve_damped",
    "trace",
    "with_curvature",
    "with_damping",
]
