"""``python -m explorer sweep``: JSON summary, resume, and exit code 2 for bad input."""

import json

import pytest

from explorer.cli import main

TOML = """
problem = "linreg_2d"
steps = 5
seeds = [0, 1]
problem_options = {num_samples = 30}

[rules.sgd]
lr = [0.05, 0.2]

[rules.natural_gradient]
damping = [0.01]
"""


def call(capsys, *argv):
    try:
        code = main(["sweep", *argv])
    except SystemExit as exit:  # argparse refuses a bad path while parsing
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(TOML, encoding="utf-8")
    return path


def test_a_sweep_prints_its_summary_and_resumes_from_its_file(capsys, config, tmp_path):
    out = tmp_path / "results.parquet"
    code, stdout, stderr = call(capsys, "--config", str(config), "--out", str(out))
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert {k: summary[k] for k in ("trials", "run", "reused", "failed")} == {
        "trials": 6, "run": 6, "reused": 0, "failed": 0
    }  # fmt: skip
    assert "6/6" in stderr  # the progress bar
    assert {row["rule"] for row in summary["best"]} == {"sgd", "natural_gradient"}
    code, stdout, _ = call(capsys, "--config", str(config), "--out", str(out))
    assert code == 0 and json.loads(stdout)["reused"] == 6


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('problem = "linreg_2d"\nsteps = [\n', "not valid TOML"),
        ('problem = "linreg_2d"\n[rules.nope]\nlr = [1]\n', "nope"),
        ('problem = "linreg_2d"\n[rules.sgd]\nlr = [-1]\n', "out of range"),
        ('problem = "linreg_2d"\n[rules.sgd]\nlr = []\n', "empty list"),
        ('problem = "linreg_2d"\nseeds = [-2]\n[rules.sgd]\n', "≥ 0"),
        ('problem = "linreg_2d"\ncolor = 1\n[rules.sgd]\n', "unknown field"),
    ],
)
def test_bad_input_is_exit_2_with_a_message_and_no_file(
    capsys, tmp_path, text, message
):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    out = tmp_path / "results.parquet"
    code, _, stderr = call(capsys, "--config", str(path), "--out", str(out))
    assert code == 2 and message in stderr and "Traceback" not in stderr
    assert not out.exists()


def test_a_grid_above_the_limit_needs_max_trials(capsys, config):
    code, _, stderr = call(capsys, "--config", str(config), "--max-trials", "4")
    assert code == 2 and "6 trials, above the limit of 4" in stderr


def test_an_unwritable_out_folder_is_refused_before_the_work(capsys, config, tmp_path):
    missing = tmp_path / "no" / "such" / "results.parquet"
    code, _, stderr = call(capsys, "--config", str(config), "--out", str(missing))
    assert code == 2 and "does not exist" in stderr
