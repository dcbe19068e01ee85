"""What a stopped run's message says: what happened, in the state it happened in,
and what to change.

A message names the options the person can actually set on that rule: under
Levenberg–Marquardt the λ at the failure is LM's, not theirs, so the remedy is
LM's floor ``min_damping`` or a fixed λ; a CG-based rule can truncate at negative
curvature instead of stopping.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from explorer.curvature.solvers import IndefiniteCurvatureError

PSD_REMEDY = (
    "use a PSD curvature such as 'ggn' or 'fisher' (the Gauss-Newton and Fisher "
    "matrices are PSD for convex losses)"
)


#: The remedy when the GGN itself is indefinite: its loss is not convex in z.
GGN_REMEDY = (
    "use the Fisher ('fisher', rule 'natural_gradient'): the GGN is PSD only when "
    "the loss is convex in the network outputs, and this one is not (e.g. a learned "
    "variance), while the Fisher is PSD for every likelihood"
)


def psd_remedy(key: str) -> str:
    """What PSD curvature to use instead of the indefinite curvature ``key``."""
    return GGN_REMEDY if "ggn" in key else PSD_REMEDY


def diverged_message(step: int, what: str, options: Mapping[str, Any]) -> str:
    """``diverged at step k: <what>. Remedy: …`` for a rule with ``options``."""
    if "damping" in options:
        remedy = (
            "lower lr, raise the damping, or let Levenberg–Marquardt adapt it "
            "(damping_adaptation='lm')"
        )
    else:
        remedy = "lower the learning rate lr"
    return f"diverged at step {step}: {what}. Remedy: {remedy}."


def indefinite_message(
    step: int, error: IndefiniteCurvatureError, options: Mapping[str, Any]
) -> str:
    """Why C + λI was not positive definite at ``step`` and what would fix it.

    Example:
        >>> error = IndefiniteCurvatureError("hessian", 0.00228, -0.00393)
        >>> text = indefinite_message(7, error, {"damping": 1.0,
        ...     "damping_adaptation": "lm", "min_damping": 1e-8,
        ...     "negative_curvature": "error"})
        >>> "lowered λ from 1 to 0.00228" in text and "min_damping" in text
        True
    """
    needed = (
        None if error.min_eigenvalue is None else error.damping - error.min_eigenvalue
    )
    above = f" above {needed:.3g}" if needed is not None else ""
    larger = f"a damping{above}" if needed is not None else "a larger damping"
    parts = [f"stopped at step {step}: {error.finding}"]
    remedies = []
    if options.get("damping_adaptation") == "lm":
        start = float(options.get("damping", error.damping))
        floor = float(options.get("min_damping", 0.0))
        if error.damping < start:
            parts.append(
                f"Levenberg–Marquardt had lowered λ from {start:.3g} to "
                f"{error.damping:.3g} after good steps."
            )
            remedies.append(
                f"raise min_damping, LM's floor (now {floor:.3g}),{above} so LM "
                "cannot lower λ that far"
            )
        else:
            remedies.append(
                "raise the starting damping and min_damping, LM's floor (now "
                f"{floor:.3g}){',' + above if above else ''}"
            )
        remedies.append(f"fix λ with damping_adaptation='fixed' and {larger}")
    else:
        remedies.append(f"raise the damping{above}")
    if options.get("on_indefinite") == "stop":
        remedies.append(
            "let the step go on with on_indefinite='raise_damping' (λ raised past "
            "the most negative eigenvalue, as damped Newton does)"
        )
    if "negative_curvature" in options:
        remedies.append(
            "set negative_curvature='truncate' with solver='cg' (truncated Newton: "
            "keep the CG iterate reached before the negative curvature)"
        )
    remedies.append(psd_remedy(error.key))
    listed = "; ".join(remedies[:-1]) + f"; or {remedies[-1]}"
    parts.append(f"Remedy: {listed}.")
    return " ".join(parts)
