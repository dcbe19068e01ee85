"""No TeX in what Plotly or a table shows: Unicode and Plotly's HTML subset instead.

Plotly figures in Streamlit do not typeset TeX, so ``θ_{t+1}``, ``‖C − R‖_F`` or
``max_t`` would show verbatim. Figure text uses ``<sub>``/``<sup>`` (Plotly renders
them); plain text (badges, Markdown bullets, table headers) uses Unicode or words, and
no HTML tags, which would show verbatim there.
"""

import re
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

import explorer as ex
from explorer import landscape as scape
from explorer import plots
from explorer.check.report import QUALITY_COLUMNS
from explorer.presets import PRESETS, run_preset

#: TeX that Plotly shows verbatim. Keys such as ``fisher_mc`` or ``moons_mlp`` (trace
#: names, problem names in titles) are left alone: only a one-character base or
#: subscript, or a subscript after a closing ‖ | ) ] or *, counts.
TEX = re.compile(
    r"_\{|\^\{"  # x_{…}, x^{…}
    r"|\\[a-zA-Z]+"  # \lambda, \top, \frac
    r"|[‖|)\]*]_\w"  # ‖C − R‖_F, |θ|_2
    r"|(?<!\w)\w_\w+"  # θ_t, θ_NG, v_min, d_C, λ_min
    r"|\w_\w(?!\w)"  # max_t, step_K, first_0
)

#: Tags Plotly renders in figure text.
PLOTLY_TAGS = {"a", "b", "br", "em", "i", "s", "span", "sub", "sup"}

TAG = re.compile(r"</?([a-zA-Z]+)[^>]*>")


def figure_texts(figure: go.Figure) -> list[str]:
    """Every piece of text a figure shows besides data and ticks: the layout's titles
    (figure, axes, legend, colour axes) and annotations, and each trace's name and
    colour-bar title."""
    spec = figure.to_plotly_json()
    texts: list[str] = []

    def layout_texts(node: Any) -> None:  # the layout has no data: every "text"
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and isinstance(value, str):
                    texts.append(value)
                else:
                    layout_texts(value)
        elif isinstance(node, (list, tuple)):
            for item in node:
                layout_texts(item)

    def title_texts(node: Any) -> None:  # a trace's "text" is data: titles only
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "title":
                    layout_texts(value if isinstance(value, dict) else {"text": value})
                elif isinstance(value, dict):
                    title_texts(value)

    layout_texts(spec.get("layout", {}))
    for trace in spec.get("data", []):
        if isinstance(trace.get("name"), str):
            texts.append(trace["name"])
        title_texts(trace)
    return [text for text in texts if text]


def _tex_in(texts: list[str]) -> list[str]:
    return [text for text in texts if TEX.search(text)]


def _foreign_tags(texts: list[str]) -> list[str]:
    return [t for t in texts if set(TAG.findall(t)) - PLOTLY_TAGS]


def test_the_pattern_finds_tex_and_spares_keys():
    for tex in (
        "‖C − R‖_F",
        "θ_{t+1}",
        "cos∠(d_C, d_R)",
        "|θ_t − θ*|",
        "max_t ‖θ_NG − θ_GD‖",
        "λ_min(H)",
        "t·v_min",
        "cos(step_K, step_F)",
        r"\lambda",
        "x^{2}",
    ):
        assert TEX.search(tex), tex
    for plain in (
        "fisher_mc (λ < 0)",
        "natural_gradient",
        "ef_natural_gradient",
        "Fisher and GGN for categorical (moons_mlp): identical",
        "‖C − R‖<sub>F</sub>",
        "θ<sub>t+1</sub>",
        "maxₜ ‖θₜ − θ₀‖",
    ):
        assert not TEX.search(plain), plain
    texts = figure_texts(
        plots.curves_figure(
            [plots.Curve("a_{b}", [1, 2], [1, 2])],
            title="t_1",
            x_title=r"\alpha",
            y_title="y",
        )
    )
    assert set(_tex_in(texts)) == {"a_{b}", "t_1", r"\alpha"}


def test_function_space_figures_have_no_tex(moons_runs):
    runs, problem = moons_runs
    grids = {
        label: scape.decision_boundary(problem, run.trajectory[-1], resolution=6)
        for label, run in runs.items()
    }
    kls = {label: scape.kl_along_run(problem, run) for label, run in runs.items()}
    tanh = ex.problem("tiny_tanh")
    curves = {
        "a": scape.fitted_curve(
            tanh, torch.tensor([1.0, 1.0], dtype=torch.float64), num=5
        )
    }
    flat = {"a": pd.DataFrame({"step": [1, 2], "kl": [0.1, 0.1]})}
    figures = [
        plots.decision_boundary_figure(problem, grids, runs, background="kfac"),
        plots.kl_figure(kls, runs, log_y=True),
        plots.kl_figure(flat, log_y=False),
        plots.fitted_curves_figure(tanh, curves),
    ]
    texts = [text for figure in figures for text in figure_texts(figure)]
    assert any("θ<sub>t+1</sub>" in text for text in texts)  # the KL axis
    assert not _tex_in(texts) and not _foreign_tags(texts)


@pytest.mark.parametrize("key", list(PRESETS))
def test_preset_figures_and_measurements_have_no_tex(key):
    result = run_preset(key, "small")
    texts = [text for f in result.figures.values() for text in figure_texts(f)]
    assert texts
    assert not _tex_in(texts), _tex_in(texts)
    assert not _foreign_tags(texts), _foreign_tags(texts)
    # Measurement names and meanings are Markdown bullets and badges: Unicode or
    # words, and no HTML (it would show verbatim there).
    shown = [t for m in result.check.measurements for t in (m.name, m.meaning)]
    assert not _tex_in(shown), _tex_in(shown)
    assert not [text for text in shown if TAG.search(text)]


def test_quality_table_headers_are_plain_text():
    """The Check page's and HTML report's DataFrame headers render neither TeX
    nor HTML."""
    headers = list(QUALITY_COLUMNS.values())
    assert not _tex_in(headers), _tex_in(headers)
    assert not [header for header in headers if TAG.search(header)]
