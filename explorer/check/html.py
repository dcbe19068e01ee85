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
    Summary,
    curvature_sections,
    format_number,
    summary,
)
from explorer.check.results import CheckReport, failure_line
from explorer.plots import Figure
from explorer.plots.check import figure_fragment

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1250px;
       color: #222; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.3rem; margin-top: 2.5rem;
     border-bottom: 2px solid #ddd; } h3 { font-size: 1.1rem; margin-top: 1.8rem; }
p.note { color: #555; } .caption { color: #555; font-size: 0.9rem; }
.table-wrap { overflow-x: auto; max-width: 100%; margin: 0.5rem 0 1rem; }
table { border-collapse: collapse; font-size: 0.85rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left;
         vertical-align: top; max-width: 26rem; overflow-wrap: anywhere; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th { background: #f5f5f5; overflow-wrap: normal; }
td.pass, td.PASS { background: #e6f4ea; color: #137333; font-weight: 600; }
td.fail, td.FAIL { background: #fce8e6; color: #a50e0e; font-weight: 600; }
td.skipped { color: #777; }
.badge { display: inline-block; padding: 0.1rem 0.6rem; border-radius: 0.8rem;
         font-weight: 700; }
.badge.pass { background: #e6f4ea; color: #137333; }
.badge.fail { background: #fce8e6; color: #a50e0e; }
.summary { border: 1px solid #ddd; border-radius: 0.5rem; padding: 0.6rem 1rem;
           margin: 0.8rem 0; }
.summary .head { font-size: 1.15rem; }
.summary .nearest { font-size: 1.05rem; margin: 0.4rem 0; }
.chips { display: flex; flex-wrap: wrap; gap: 0.35rem; margin: 0.4rem 0; }
.chip { padding: 0.05rem 0.55rem; border-radius: 0.8rem; font-size: 0.85rem;
        border: 1px solid #ddd; }
.chip.pass { background: #e6f4ea; color: #137333; border-color: #b7dfc3; }
.chip.fail { background: #fce8e6; color: #a50e0e; border-color: #f2b8b5; }
.chip.skipped { background: #f5f5f5; color: #777; }
.figures.side { display: grid; gap: 0.5rem; }
.figures.cols-2 { grid-template-columns: repeat(2, minmax(0, 1fr)); }
.figures.cols-3 { grid-template-columns: repeat(3, minmax(0, 1fr)); }
@media (max-width: 900px) { .figures.side { grid-template-columns: 1fr; } }
.figures.side .plot { min-width: 0; }
details > summary { cursor: pointer; color: #555; margin: 0.3rem 0; }
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

#: Tables longer than this start folded (a click opens them): the page stays short.
FOLD_ROWS = 8

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
            if text in STATUS_CLASSES:
                css = f' class="{text}"'
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                css = ' class="num"'
            else:
                css = ""
            cells.append(f"<td{css}>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table></div>"
    )


class _Figures:
    """Renders figures, embedding the charting script with the first one only."""

    def __init__(self) -> None:
        self.first = True
        self.templates: set[str] = set()

    def __call__(self, figure: Figure) -> str:
        body = figure_fragment(
            figure, embed_script=self.first, templates=self.templates
        )
        self.first = False
        return body


def section_html(section: Section, render: _Figures) -> str:
    parts = [f"<h3>{html.escape(section.title)}</h3>"]
    if section.text:
        parts.append(f'<p class="note">{html.escape(section.text)}</p>')
    for caption, frame in section.tables:
        if caption:
            parts.append(f'<p class="caption">{html.escape(caption)}</p>')
        table = table_html(frame)
        if section.folded or len(frame) > FOLD_ROWS:
            rows = f"{len(frame)} rows" if len(frame) != 1 else "1 row"
            table = f"<details><summary>the table ({rows})</summary>{table}</details>"
        parts.append(table)
    if section.figures:
        side = ""
        if section.side_by_side and len(section.figures) > 1:
            side = f" side cols-{section.columns}"
        parts.append(f'<div class="figures{side}">')
        for caption, figure in section.figures:
            # in a grid the figure's own title says what the caption would
            label = "" if side else f'<p class="caption">{html.escape(caption)}</p>'
            parts.append(
                f'<div title="{html.escape(caption)}">{label}{render(figure)}</div>'
            )
        parts.append("</div>")
    return "\n".join(parts)


def summary_html(card: Summary, render: _Figures) -> str:
    """One curvature's summary: verdict, nearest reference, verdict chips, the
    small-multiples figure. Fields that were not measured render nothing.
    """
    verdict = "pass" if card.passed else "fail"
    parts = [
        f'<section class="summary" id="summary-{html.escape(card.key)}">',
        f'<div class="head"><span class="badge {verdict}">{verdict.upper()}</span> '
        f"<b>{html.escape(card.label)}</b> (<code>{html.escape(card.key)}</code>) "
        f"against {html.escape(card.reference)} · "
        f'<a href="#{html.escape(card.key)}">details</a></div>',
    ]
    if card.nearest:
        sentence = card.nearest[:1].upper() + card.nearest[1:]
        parts.append(f'<p class="nearest">{html.escape(sentence)}.</p>')
    chips = "".join(
        f'<span class="chip {html.escape(status)}" title="{html.escape(title)}">'
        f"{html.escape(name)}: {html.escape(status)}</span>"
        for name, status, title in card.chips
    )
    parts.append(f'<div class="chips">{chips}</div>')
    if card.coverage:
        parts.append(f'<p class="note">{html.escape(card.coverage)}</p>')
    if card.figure is not None:
        parts.append(render(card.figure))
    parts.append("</section>")
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
    ]
    for source in report.failed_sources:
        body.append(
            '<div class="summary"><span class="badge fail">FAIL</span> plugin '
            f"<code>{html.escape(str(source['source']))}</code>: "
            f"{html.escape(failure_line(source['error']))}"
            f"<details><summary>details</summary><pre>"
            f"{html.escape(str(source['error']))}</pre></details></div>"
        )
    render = _Figures()
    for result in report.curvatures:
        body.append(summary_html(summary(result), render))
    for result in report.curvatures:
        badge = "pass" if result.passed else "fail"
        body.append(
            f'<h2 id="{html.escape(result.key)}">{html.escape(result.label)} '
            f'(<code>{html.escape(result.key)}</code>) <span class="badge {badge}">'
            f"{badge.upper()}</span></h2>"
        )
        for section in curvature_sections(result, settings.damping):
            body.append(section_html(section, render))
    data = json.dumps(report.to_dict(), ensure_ascii=False)
    body.append(
        '<script type="application/json" id="check-summary">'
        + data.replace("</", "<\\/")
        + "</script>"
    )
    return PAGE.format(title=html.escape(title), style=STYLE, body="\n".join(body))


def _sentence(report: CheckReport) -> str:
    failed = [c for c in report.curvatures if not c.passed]
    plugins = len(report.failed_sources)
    broken = f"{plugins} plugin(s) could not be checked. " if plugins else ""
    if not failed:
        if broken:
            return broken.strip()
        return "Every declared property holds at every point of every problem."
    names = "; ".join(
        f"{c.key}: " + ", ".join(v.name for v in c.failures()) for c in failed
    )
    return f"{broken}A declared property fails ({names})."


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
