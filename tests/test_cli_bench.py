"""``python -m explorer bench`` and the top-level help."""

import json

from explorer.cli import build_parser, main


def test_bench_reports_costs_in_gradients(capsys):
    assert (
        main(
            [
                "bench",
                "--problem",
                "linreg_2d",
                "--curvature",
                "ggn,kfac",
                "--repeats",
                "3",
                "--dtype",
                "float64",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert set(result["product_in_gradients"]) == {"ggn", "kfac"}
    assert all(value > 0 for value in result["product_in_gradients"].values())
    assert result["gradient_ms"] > 0 and result["device"] == "cpu"


def test_bench_reports_bad_input_cleanly(capsys):
    assert main(["bench", "--problem", "nope", "--repeats", "1"]) == 2
    assert "unknown problem 'nope'" in capsys.readouterr().err


def test_help_lists_the_commands():
    text = build_parser().format_help()
    for command in ("problems", "run", "compare", "spectra", "bench"):
        assert command in text
