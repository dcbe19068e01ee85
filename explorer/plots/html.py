"""Self-contained interactive HTML pages of several figures (``--html``)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path

import plotly.graph_objects as go

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1200px;
        color: #222; }}
h1 {{ font-size: 1.5rem; }} h2 {{ font-size: 1.15rem; margin-top: 2rem; }}
p.note {{ color: #555; }}
</style>
</head>
<body>
<h1>{title}</h1>
{intro}
{sections}
</body>
</html>
"""


def figures_to_html(
    figures: Mapping[str, go.Figure] | Sequence[go.Figure],
    title: str = "Curvature Explorer",
    intro: str = "",
) -> str:
    """One HTML page holding every figure; plotly.js is embedded once (offline).

    Args:
        figures: ``{heading: figure}`` or a list of figures.
        title: Page title.
        intro: A paragraph of plain text under the title.
    """
    items = (
        list(figures.items())
        if isinstance(figures, Mapping)
        else [(f"Figure {i + 1}", fig) for i, fig in enumerate(figures)]
    )
    if not items:
        raise ValueError("pass at least one figure")
    sections = []
    for index, (heading, figure) in enumerate(items):
        body = figure.to_html(
            full_html=False,
            include_plotlyjs=index == 0,
            auto_play=False,
            config={"displaylogo": False, "responsive": True},
        )
        sections.append(f"<h2>{html.escape(heading)}</h2>\n{body}")
    note = f'<p class="note">{html.escape(intro)}</p>' if intro else ""
    return PAGE.format(
        title=html.escape(title), intro=note, sections="\n".join(sections)
    )


def write_html(
    figures: Mapping[str, go.Figure] | Sequence[go.Figure],
    path: str | Path,
    title: str = "Curvature Explorer",
    intro: str = "",
) -> Path:
    """Writes :func:`figures_to_html` to ``path``; returns the path."""
    path = Path(path)
    path.write_text(figures_to_html(figures, title, intro), encoding="utf-8")
    return path
