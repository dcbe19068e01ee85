"""One colour per optimizer and per curvature, the same in every figure.

The colours are facts on the registry specs (``CURVATURES[key].color``,
``RULES[key].color``); this module only reads them. A rule that preconditions with a
curvature wears that curvature's colour unless its spec names its own (natural
gradient = Fisher, Gauss-Newton = GGN, Newton = Hessian...), so a run, its spectrum
and its arrows match across pages. Keys nobody gave a colour (plugins, user
curvatures) get a deterministic colour from a hash of the key: the same key has the
same colour in every session and every figure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from explorer.curvature.registry import CURVATURES
from explorer.optimizers.rules import CURVATURE, RULES

#: The colour of the plain (negative) gradient in direction fields; every curvature
#: and rule takes its colour from its spec (``CurvatureSpec.color``,
#: ``RuleSpec.color``).
GRADIENT_COLOR = "#7f7f7f"

#: Line dashes for the metrics of one run (train, test, averaged iterate).
METRIC_DASHES: dict[str, str] = {
    "loss": "solid",
    "test_loss": "dash",
    "averaged_loss": "dot",
    "excess_loss": "solid",
    "accuracy": "solid",
    "test_accuracy": "dash",
}

#: Dashes distinguishing several runs of the same rule.
RUN_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")

#: Shared layout: white background, legend at the right (clear of the title and of
#: long legends), exact values on hover.
LAYOUT: dict[str, Any] = {
    "template": "plotly_white",
    "hovermode": "closest",
    "legend": {
        "yanchor": "top",
        "y": 1.0,
        "xanchor": "left",
        "x": 1.02,
        "font": {"size": 12},
    },
    "margin": {"l": 70, "r": 20, "t": 60, "b": 60},
    "font": {"size": 13},
}

#: A horizontal colour bar under the plot, so that the legend keeps the right side.
COLORBAR_BELOW: dict[str, Any] = {
    "orientation": "h",
    "yanchor": "top",
    "y": -0.16,
    "xanchor": "center",
    "x": 0.5,
    "len": 0.75,
    "thickness": 14,
}

#: Diverging colour scale for signed matrices (zero is white).
DIVERGING = "RdBu_r"
#: Sequential scale for losses and magnitudes.
SEQUENTIAL = "Viridis"


def hashed_color(key: str) -> str:
    """A deterministic mid-saturation colour for any key (not Python's salted hash).

    Example:
        >>> hashed_color("my_plugin") == hashed_color("my_plugin")
        True
    """
    digest = hashlib.sha1(key.encode("utf-8")).digest()
    hue = int.from_bytes(digest[:2], "big") % 360
    lightness = 38 + digest[2] % 14
    return f"hsl({hue}, 65%, {lightness}%)"


def curvature_color(key: str) -> str:
    """The colour of a curvature key: its spec's, else hashed from the key (the
    gradient of direction fields, ``"gradient"``, is :data:`GRADIENT_COLOR`).

    Example:
        >>> curvature_color("fisher") == CURVATURES["fisher"].color
        True
    """
    spec = CURVATURES.get(key)
    if spec is not None and spec.color:
        return spec.color
    if spec is None and key == "gradient":
        return GRADIENT_COLOR
    return hashed_color("curvature:" + key)


def rule_color(key: str, curvature: str | None = None) -> str:
    """The colour of an update rule: the generic ``precondition`` rule takes its
    ``curvature``'s when given; otherwise the spec's own colour, else the colour of
    the curvature it preconditions with, else one hashed from the key.

    Example:
        >>> rule_color("natural_gradient") == curvature_color("fisher")
        True
    """
    spec = RULES.get(key)
    if spec is None:
        return hashed_color("rule:" + key)
    if spec.family == CURVATURE and spec.curvature is None and curvature:
        return curvature_color(curvature)
    if spec.color:
        return spec.color
    if spec.curvature is not None:
        return curvature_color(spec.curvature)
    return hashed_color("rule:" + key)


def run_color(run: Any) -> str:
    """The colour of a ``History`` (its rule, and its curvature for ``precondition``)."""
    rule = str(getattr(run, "rule", "") or "")
    curvature = None
    config = getattr(run, "config", None)
    options = getattr(config, "rule_options", None)
    if isinstance(options, Mapping):
        curvature = options.get("curvature")
    return rule_color(rule, curvature if isinstance(curvature, str) else None)


def run_styles(runs: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """``{label: (colour, dash)}``: runs sharing a colour get different dashes."""
    seen: dict[str, int] = {}
    out = {}
    for label, run in runs.items():
        color = run_color(run)
        index = seen.get(color, 0)
        seen[color] = index + 1
        out[label] = (color, RUN_DASHES[index % len(RUN_DASHES)])
    return out


def apply_layout(figure: Any, **overrides: Any) -> Any:
    """Applies :data:`LAYOUT` and ``overrides`` (dicts such as ``margin`` are merged
    key by key) to a Plotly figure; returns it.
    """
    layout = dict(LAYOUT)
    for key, value in overrides.items():
        base = layout.get(key)
        both_dicts = isinstance(base, dict) and isinstance(value, dict)
        layout[key] = {**base, **value} if both_dicts else value
    figure.update_layout(**layout)
    return figure
