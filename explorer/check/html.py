"""The battery's report as one self-contained interactive HTML page.

The charting library's JavaScript is embedded once, inline, so the page opens
offline and can be archived by a CI job; tables are plain HTML with pass/fail colours.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from explorer.check.report import (
    Section,
    curvature_sections,
    format_number,
    overview_table,
)
from explorer.check.results import CheckReport
from explorer.plots import Figure
from explorer.plots.check import figure_fragment

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1250px;
       color: #222; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.3rem; margin-top: 2.5rem;
     border-bottom: 2px solid #ddd; } h3 { font-size: 1.1rem; margin-top: 1.8rem; }
p.note { color: #555; } .caption { color: #555; font-size: 0.9rem; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left;
         vertical-align: top; }
th { background: #f5f5f5; }
td.pass, td.PASS { background: #e6f4ea; color: #137333; font-weight: 600; }
td.fail, td.FAIL { background: #fce8e6; color: #a50e0e; font-weight: 600; }
td.skipped { color: #777; }
.badge { display: inline-block; padding: 0.1rem 0.6rem; border-radius: 0.8rem;
         font-weight: 700; }
.badge.pass { background: #e6f4ea; color: #137333; }
.badge.fail { background: #fce8e6; color: #a50e0e; }
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<h1>{title}</h1>
{body}
</body>
</html>
"""

#: Cell texts that get a colour class.
STATUS_CLASSES = ("pass", "fail", "skipped", "PASS", "FAIL")


def table_html(frame: pd.DataFrame) -> str:
    """A DataFrame as an HTML table; status cells coloured, numbers to 4 digits."""
    if frame.empty:
        return '<p class="note">(nothing to show)</p>'
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for record in frame.itertuples(index=False):
        cells = []
        for value in record:
            text = format_number(value)
            css = f' class="{text}"' if text in STATUS_CLASSES else ""
            cells.append(f"<td{css}>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f"<table><thead><tr>{head}</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


class _Figures:
    """Renders figures, embedding the charting script with the first one only."""

    def __init__(self) -> None:
        self.first = True

    def __call__(self, figure: Figure) -> str:
        body = figure_fragment(figure, embed_script=self.first)
        self.first = False
        return body


def section_html(section: Section, render: _Figures) -> str:
    parts = [f"<h3>{html.escape(section.title)}</h3>"]
    if section.text:
        parts.append(f'<p class="note">{html.escape(section.text)}</p>')
    for caption, frame in section.tables:
        if caption:
            parts.append(f'<p class="caption">{html.escape(caption)}</p>')
        parts.append(table_html(frame))
    for caption, figure in section.figures:
        parts.append(f'<p class="caption">{html.escape(caption)}</p>')
        parts.append(render(figure))
    return "\n".join(parts)


def report_html(report: CheckReport, title: str | None = None) -> str:
    """The whole report as one HTML page (the charting script inline: opens offline)."""
    keys = ", ".join(c.key for c in report.curvatures)
    title = title or f"Curvature check: {keys}"
    verdict = "pass" if report.passed else "fail"
    settings = report.settings
    problems = ", ".join(p.describe() for p in settings.problems)
    body = [
        f'<p><span class="badge {verdict}">{verdict.upper()}</span> '
        f"{html.escape(_sentence(report))}</p>",
        f'<p class="note">Problems: {html.escape(problems)}. Points along a '
        f"{settings.steps}-step {html.escape(settings.path_rule)} run; "
        f"λ = {settings.damping:g}; seed {settings.seed}; "
        f"{report.seconds:.1f} s.</p>",
        table_html(overview_table(report)),
    ]
    render = _Figures()
    for result in report.curvatures:
        badge = "pass" if result.passed else "fail"
        body.append(
            f'<h2 id="{html.escape(result.key)}">{html.escape(result.label)} '
            f'(<code>{html.escape(result.key)}</code>) <span class="badge {badge}">'
            f"{badge.upper()}</span></h2>"
        )
        for section in curvature_sections(result, settings.damping):
            body.append(section_html(section, render))
    summary = json.dumps(report.to_dict(), ensure_ascii=False)
    body.append(
        '<script type="application/json" id="check-summary">'
        + summary.replace("</", "<\\/")
        + "</script>"
    )
    return PAGE.format(title=html.escape(title), style=STYLE, body="\n".join(body))


def _sentence(report: CheckReport) -> str:
    failed = [c for c in report.curvatures if not c.passed]
    if not failed:
        return "Every declared property holds at every point of every problem."
    names = "; ".join(
        f"{c.key}: " + ", ".join(v.name for v in c.failures()) for c in failed
    )
    return f"A declared property fails ({names})."


def write_report(report: CheckReport, path: str | Path) -> Path:
    """Writes :func:`report_html` to ``path``; returns the path."""
    path = Path(path)
    path.write_text(report_html(report), encoding="utf-8")
    return path


def write_summary(report: CheckReport, path: str | Path) -> Path:
    """Writes the JSON summary (``report.to_dict()``) to ``path``."""
    path = Path(path)
    text = json.dumps(report.to_dict(), indent=2, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")
    return path
