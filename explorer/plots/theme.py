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
import html
import re
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


#: Log axes: powers of ten as 10ⁿ, and intermediate ticks (which Plotly adds when an
#: axis spans one to a few decades) labelled with their whole value (2×10, 5×10⁻³).
#: Plotly's default labels them with their first digit only, so a "2" just above "10"
#: reads as 2 where it means 20.
LOG_AXIS: dict[str, Any] = {"exponentformat": "power", "minorloglabels": "complete"}

#: Pixels one line of a subplot title takes (make_subplots' 16 px font, with leading).
SUBPLOT_TITLE_LINE = 22
#: Pixels one line of the figure title takes (1.4 × the 13 px layout font, leading).
TITLE_LINE = 26
#: The least top margin of a figure whose panels have titles.
SUBPLOT_TITLE_MARGIN = 80


def text_lines(text: str | None) -> int:
    """Lines of a Plotly label (``<br>`` breaks them); 0 for no text.

    Example:
        >>> text_lines("H<br><sup>max |C| = 2</sup>"), text_lines(""), text_lines(None)
        (2, 0, 0)
    """
    if not text:
        return 0
    return len(re.split(r"<br\s*/?>", text, flags=re.IGNORECASE))


def plain_text(text: str) -> str:
    """User text (a run's label) for a Plotly name, title or hover: Plotly reads
    ``<a href>``, ``<b>``, ``<br>`` in them as markup, so ``&``, ``<`` and ``>``
    become entities, which Plotly draws as the characters typed.

    Example:
        >>> plain_text('<a href="http://x">me</a> & co')
        '&lt;a href="http://x"&gt;me&lt;/a&gt; &amp; co'
    """
    return html.escape(str(text), quote=False)


def plain_keys(runs: Mapping[str, Any]) -> dict[str, Any]:
    """``runs`` with :func:`plain_text` labels, for the figure builders (which put
    a run's label in names, hovers and titles).
    """
    return {plain_text(label): run for label, run in runs.items()}


def subplot_title_lines(figure: Any) -> int:
    """Lines of the tallest title over the top row of panels (0: no such titles).

    Subplot titles are the paper-anchored annotations ``make_subplots`` puts on the
    top edge of each panel, bottom-anchored there.
    """
    tops = [(axis.domain or (0.0, 1.0))[1] for axis in figure.select_yaxes()]
    top = max(tops, default=1.0)
    lines = 0
    for note in figure.layout.annotations:
        if (
            note.yref == "paper"
            and note.yanchor == "bottom"
            and note.y is not None
            and note.y >= top - 1e-9
        ):
            lines = max(lines, text_lines(note.text))
    return lines


def _style_log_axes(figure: Any) -> None:
    """:data:`LOG_AXIS` on every log axis (keys a builder set stay as set)."""
    for axis in (*figure.select_xaxes(), *figure.select_yaxes()):
        if axis.type == "log":
            for key, value in LOG_AXIS.items():
                if axis[key] is None:
                    axis[key] = value


def _make_room_for_titles(figure: Any) -> None:
    """Puts the figure title above the panel titles, with a top margin that fits both.

    Plotly centres the title in the top margin by default, where the titles of the
    top row of panels (drawn upwards from the panels' top edge) overlap it. With
    panel titles or a multi-line title, the title's bottom is anchored
    ``pad`` pixels above the plot area instead, ``pad`` being the height of the
    panel titles, and the top margin grows to hold the title above them.
    """
    panel = subplot_title_lines(figure)
    title = text_lines(figure.layout.title.text)
    if panel == 0 and title <= 1:
        return
    pad = SUBPLOT_TITLE_LINE * panel + 10 if panel else 8
    needed = pad + TITLE_LINE * max(title, 1) + 14
    if panel:
        needed = max(needed, SUBPLOT_TITLE_MARGIN)
    current = figure.layout.margin.t
    figure.update_layout(
        title={"yref": "paper", "y": 1.0, "yanchor": "bottom", "pad": {"b": pad}},
        margin={"t": max(needed, current or 0)},
    )


def apply_layout(figure: Any, **overrides: Any) -> Any:
    """Applies :data:`LAYOUT` and ``overrides`` (dicts such as ``margin`` are merged
    key by key) to a Plotly figure; returns it.

    Call it last, once the traces and panels exist: log axes get :data:`LOG_AXIS`,
    and the title moves above the panel titles (see :func:`_make_room_for_titles`).
    """
    layout = dict(LAYOUT)
    for key, value in overrides.items():
        base = layout.get(key)
        both_dicts = isinstance(base, dict) and isinstance(value, dict)
        layout[key] = {**base, **value} if both_dicts else value
    figure.update_layout(**layout)
    _style_log_axes(figure)
    _make_room_for_titles(figure)
    return figure
