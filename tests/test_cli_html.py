"""``--html`` on the figure-producing commands writes one self-contained page."""

import pytest

from explorer.cli import main


def test_compare_html_report(tmp_path, capsys):
    page = tmp_path / "runs.html"
    assert (
        main(
            [
                "compare",
                "--problem",
                "linreg_2d",
                "--rules",
                "sgd,gauss_newton",
                "--steps",
                "4",
                "--quiet",
                "--html",
                str(page),
            ]
        )
        == 0
    )
    capsys.readouterr()
    text = page.read_text(encoding="utf-8")
    assert text.count("<h2>") >= 4  # loss ×3 axes, λ/ρ/α, landscape, function space
    assert "Loss landscape and paths" in text and "gauss_newton" in text
    assert 'src="https://cdn.plot.ly' not in text  # plotly.js embedded: works offline


def test_run_html_report(tmp_path, capsys):
    page = tmp_path / "run.html"
    assert (
        main(
            [
                "run",
                "--problem",
                "moons_mlp",
                "--rule",
                "kfac",
                "--steps",
                "3",
                "--quiet",
                "--html",
                str(page),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert "Decision boundaries" in page.read_text(encoding="utf-8")


def _figures(page: str) -> list[tuple[dict, list]]:
    """(layout, data) of every figure of a check report (the JSON each draws)."""
    import json
    import re

    pattern = re.compile(
        r"checkPlot\(function \(\) \{ var layout = (.*?); (?:layout\.template = "
        r"checkTemplates\['\w+'\]; )?Plotly\.newPlot\(\"plot-\w+\", (.*?), layout, "
        r"\{\"displaylogo\""
    )
    return [
        (
            json.loads(layout.replace("<\\/", "</")),
            json.loads(data.replace("<\\/", "</")),
        )
        for layout, data in pattern.findall(page)
    ]


def _constant_axes(layout: dict, data: list) -> dict[str, float]:
    """{axis key: its value} for every axis whose plotted data is one value."""
    import numpy as np

    from tests.plotly_json import array

    values: dict[str, list] = {}
    for trace in data:
        if trace.get("type", "scatter") != "scatter":
            continue
        for letter in "xy":
            if letter not in trace:
                continue
            try:
                numbers = np.asarray(array(trace[letter]), dtype=float).ravel()
            except (TypeError, ValueError):
                continue
            ref = trace.get(f"{letter}axis", letter)
            values.setdefault(f"{letter}axis{ref[1:]}", []).append(numbers)
    out = {}
    for key, arrays in values.items():
        numbers = np.concatenate(arrays)
        numbers = numbers[np.isfinite(numbers)]
        if layout.get(key, {}).get("type") == "log":
            numbers = numbers[numbers > 0]
        if numbers.size and numbers.max() - numbers.min() <= 1e-9 * abs(numbers).max():
            out[key] = float(numbers[0])
    return out


def test_check_report_leads_with_a_summary_and_stays_small(tmp_path, capsys):
    page = tmp_path / "check.html"
    code = main(
        [
            "check", "--curvature", "kfac", "--problems", "linreg_2d,moons_mlp",
            "--steps", "4", "--quiet", "--out", str(page),
            "--json", str(tmp_path / "check.json"),
        ]
    )  # fmt: skip
    capsys.readouterr()
    assert code == 0
    text = page.read_text(encoding="utf-8")
    # the summary comes first: verdict chips and its figure before any detail
    summary = text.index('class="summary" id="summary-kfac"')
    assert summary < text.index("<h2") < text.index("Verdicts</h3>")
    head = text[summary : text.index("<h2")]
    assert 'class="chip pass"' in head and "well_formed: pass" in head
    assert "relative error against fisher" in head
    assert "Preconditioner quality" in text
    # tables scroll inside their own box instead of widening the page
    assert text.count('<div class="table-wrap"><table>') == text.count("<table>") > 3
    # plotly.js exactly once (gzipped), and the page is a fraction of its 4.8 MB
    assert text.count('id="plotly-gzip"') == 1 and len(text.encode()) < 2_600_000
    figures = _figures(text)
    assert len(figures) == text.count("Plotly.newPlot") >= 10
    steadied = 0
    for layout, data in figures:
        for key, value in _constant_axes(layout, data).items():
            axis = layout[key]  # a constant series: explicit range, short ticks
            assert axis.get("tickformat") == ".4~g", (layout["title"], key)
            low, high = axis["range"]
            if axis.get("type") == "log":
                low, high = 10**low, 10**high
            assert low < value < high and (high - low) > 0.05 * abs(value) > 0
            steadied += 1
    assert steadied >= 2  # linreg_2d's K-FAC is exact: its overlap and trace are 1


def test_a_constant_series_gets_an_explicit_range_and_short_ticks():
    import plotly.graph_objects as go

    from explorer.plots.check import compact, steady_axes

    figure = go.Figure(go.Scatter(x=[0, 1, 2], y=[1.0, 1 - 4e-16, 1.0]))
    figure.add_trace(go.Scatter(x=[0, 1], y=[0.0, 0.0], yaxis="y2"))
    figure.update_layout(yaxis2={"overlaying": "y"})
    steady_axes(figure)
    assert figure.layout.yaxis.tickformat == ".4~g"
    assert figure.layout.yaxis.range == pytest.approx((0.95, 1.05), rel=1e-12)
    assert figure.layout.yaxis2.range == (-1.0, 1.0)
    assert figure.layout.xaxis.range is None  # a varying axis stays as it was
    import numpy as np

    values = np.linspace(1e-12, 3.0, 50) * np.pi
    series = go.Figure(go.Scatter(y=values))
    compact(series)
    stored = np.asarray(series.data[0].y, dtype=float)
    assert series.data[0].y.dtype == np.float32
    assert np.abs(stored / values - 1).max() < 6e-6  # 6 significant digits


def test_a_label_with_markup_is_drawn_as_typed_in_the_report(tmp_path):
    import explorer as ex
    from explorer.plots.report import write_report

    config = ex.RunConfig("linreg_2d", {}, "sgd", {}, steps=2)
    history = ex.run(config)
    label = '<a href="http://evil.example">me</a>'
    page = write_report({label: history}, tmp_path / "r.html", history_problem(config))
    text = page.read_text(encoding="utf-8")
    # in the figures' data: the label as characters, so Plotly draws no link
    assert '"name":"&lt;a href=' in text.replace('": "', '":"')


def history_problem(config):
    return config.problem_config.build()
