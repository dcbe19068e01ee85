"""Self-contained interactive HTML pages of several figures (``--html``)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeAlias

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
dl.details {{ display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1rem;
              margin: 0 0 1rem; }}
dl.details dt {{ font-weight: 600; }} dl.details dd {{ margin: 0; }}
dl.details ul {{ margin: 0; padding-left: 1.2rem; }}
</style>
</head>
<body>
<h1>{title}</h1>
{header}
{intro}
{sections}
</body>
</html>
"""

#: ``(heading, text)`` or ``(heading, [lines])``: one row of a page's header.
Detail: TypeAlias = tuple[str, str | Sequence[str]]
#: ``(text, href)``: a link under the header.
Link: TypeAlias = tuple[str, str]


def _detail_html(value: str | Sequence[str]) -> str:
    if isinstance(value, str):
        return html.escape(value)
    items = "".join(f"<li>{html.escape(line)}</li>" for line in value)
    return f"<ul>{items}</ul>"


def header_html(details: Sequence[Detail] = (), links: Sequence[Link] = ()) -> str:
    """The page's header: a definition list of ``details`` and a paragraph of
    ``links``, every text and address HTML-escaped ("" when both are empty).
    """
    parts = []
    if details:
        rows = "\n".join(
            f"<dt>{html.escape(name)}</dt><dd>{_detail_html(value)}</dd>"
            for name, value in details
        )
        parts.append(f'<dl class="details">\n{rows}\n</dl>')
    if links:
        anchors = " · ".join(
            f'<a href="{html.escape(href, quote=True)}">{html.escape(text)}</a>'
            for text, href in links
        )
        parts.append(f'<p class="links">{anchors}</p>')
    return "\n".join(parts)


def figures_to_html(
    figures: Mapping[str, go.Figure] | Sequence[go.Figure],
    title: str = "Curvature Explorer",
    intro: str = "",
    *,
    details: Sequence[Detail] = (),
    links: Sequence[Link] = (),
) -> str:
    """One HTML page holding every figure; plotly.js is embedded once (offline).

    Args:
        figures: ``{heading: figure}`` or a list of figures.
        title: Page title.
        intro: A paragraph of plain text under the title.
        details: ``(heading, text or lines)`` rows under the title (what was run).
        links: ``(text, href)`` links under them (e.g. back to the app).
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
        title=html.escape(title),
        header=header_html(details, links),
        intro=note,
        sections="\n".join(sections),
    )


def write_html(
    figures: Mapping[str, go.Figure] | Sequence[go.Figure],
    path: str | Path,
    title: str = "Curvature Explorer",
    intro: str = "",
    *,
    details: Sequence[Detail] = (),
    links: Sequence[Link] = (),
) -> Path:
    """Writes :func:`figures_to_html` to ``path``; returns the path."""
    path = Path(path)
    page = figures_to_html(figures, title, intro, details=details, links=links)
    path.write_text(page, encoding="utf-8")
    return path
