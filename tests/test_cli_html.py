"""``--html`` on the figure-producing commands writes one self-contained page."""

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
