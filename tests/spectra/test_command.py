"""``python -m explorer spectra``: JSON that matches the dense solver, and --html."""

import json

import numpy as np
import pytest

import explorer as ex
from explorer.cli import main
from explorer.runs.history import save_histories

PROBLEM = ["--problem", "moons_mlp", "--problem-option", "hidden=4"]
PROBLEM += ["--problem-option", "num_samples=40"]


def test_spectra_json_matches_the_dense_eigenvalues(tmp_path, capsys):
    out, page = tmp_path / "spectra.json", tmp_path / "spectra.html"
    args = ["spectra", *PROBLEM, "--curvature", "ggn,hessian,kfac", "--top", "3"]
    args += ["--bottom", "2", "--density", "--probes", "2", "--lanczos-steps", "8"]
    args += ["--blocks", "--quality", "--generalized", "ggn", "--damping", "0.1"]
    assert main([*args, "--out", str(out), "--html", str(page)]) == 0
    report = json.loads(out.read_text())
    problem = ex.problem("moons_mlp", hidden=(4,), num_samples=40)
    assert (
        report["num_params"] == problem.num_params and report["problem"] == "moons_mlp"
    )
    for key in ("ggn", "hessian", "kfac"):
        entry = report["curvatures"][key]
        exact = np.linalg.eigvalsh(
            ex.curvature(key, problem, problem.theta0).dense().numpy()
        )
        np.testing.assert_allclose(
            entry["top"]["eigenvalues"], exact[-3:], rtol=1e-9, atol=1e-12
        )
        np.testing.assert_allclose(entry["bottom"]["eigenvalues"], exact[:2], atol=1e-9)
        assert len(entry["density"]["grid"]) == len(entry["density"]["density"])
        assert set(entry["blocks"]) == {name for name, _ in problem.blocks()}
        assert entry["generalized"]["target"] == "ggn"
    assert report["curvatures"]["kfac"]["quality"]["reference"] == "fisher"
    assert report["curvatures"]["ggn"]["quality"] is None  # exact: no reference
    text = page.read_text(encoding="utf-8")
    assert "Extreme eigenvalues" in text and "Spectral density" in text
    assert "Generalized spectra" in text and text.count("Plotly.newPlot") >= 5
    assert capsys.readouterr().out == ""  # --out: nothing on stdout


def test_spectra_at_the_last_point_of_a_saved_run(tmp_path, capsys):
    runs = ex.compare(
        "moons_mlp",
        ["natural_gradient"],
        steps=3,
        problem_options={"hidden": [4], "num_samples": 40},
        device="cpu",
    )
    path = tmp_path / "runs.json"
    save_histories(runs, path)
    assert (
        main(["spectra", "--runs", str(path), "--curvature", "hessian", "--top", "2"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["point"] == "run 'natural_gradient' at step 3"
    history = runs["natural_gradient"]
    problem = ex.problem("moons_mlp", hidden=(4,), num_samples=40)
    exact = np.linalg.eigvalsh(
        ex.curvature("hessian", problem, history.trajectory[-1]).dense().numpy()
    )
    np.testing.assert_allclose(
        report["curvatures"]["hessian"]["top"]["eigenvalues"], exact[-2:]
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--curvature", "nope"], "nope"),
        (["--problem-option", "hidden"], "KEY=VALUE"),
        (["--top", "-1"], "--top"),
    ],
)
def test_bad_input_exits_with_a_message(argv, message, capsys):
    assert main(["spectra", *PROBLEM, *argv]) == 2
    assert message in capsys.readouterr().err
