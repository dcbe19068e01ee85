"""``python -m explorer run`` and ``compare``: flags, config files, JSON out."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import explorer as ex
from explorer.cli import main
from explorer.runs import RUN_OPTIONS

ROOT = Path(__file__).resolve().parents[1]


def call(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", ["run", "compare"])
def test_help_documents_every_option(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in RUN_OPTIONS:
        assert "--" + option.name.replace("_", "-") in text
    for flag in ("--problem", "--config", "--out", "--rule-option", "--list-rules"):
        assert flag in text
    for key in ex.RULES:
        assert key in text


def test_run_from_flags_writes_configs_and_histories(capsys, tmp_path):
    out = tmp_path / "run.json"
    code, stdout, stderr = call(
        capsys, "run", "--problem", "linreg_2d", "--rule", "gauss_newton",
        "--rule-option", "damping=0.01", "--rule-option", "damping_adaptation=fixed",
        "--problem-option", "num_samples=40", "--steps", "3", "--device", "cpu",
        "--out", str(out),
    )  # fmt: skip
    assert code == 0
    summary = json.loads(stdout)
    assert summary[0]["status"] == "ok" and summary[0]["final"]["step"] == 3
    histories = ex.load_histories(out)
    history = histories["gauss_newton"]
    assert history.config == ex.RunConfig(
        "linreg_2d", {"num_samples": 40}, "gauss_newton",
        {"damping": 0.01, "damping_adaptation": "fixed"}, steps=3, device="cpu",
    )  # fmt: skip
    assert summary[0]["final"]["loss"] == history.last("loss")
    assert "step 3/3" in stderr  # the progress bar


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_run_reads_a_config_file_and_flags_override_it(capsys, tmp_path, suffix):
    path = tmp_path / f"run{suffix}"
    if suffix == ".toml":
        path.write_text(
            'problem = "moons_mlp"\nrule = "kfac"\nsteps = 5\ndevice = "cpu"\n'
            "[problem_options]\nhidden = [3]\nnum_samples = 50\n"
            "[rule_options]\ndamping = 0.05\n"
        )
    else:
        path.write_text(json.dumps({
            "problem": "moons_mlp", "rule": "kfac", "steps": 5, "device": "cpu",
            "problem_options": {"hidden": [3], "num_samples": 50},
            "rule_options": {"damping": 0.05},
        }))  # fmt: skip
    out = tmp_path / "out.json"
    code, _, _ = call(
        capsys, "run", "--config", str(path), "--steps", "2", "--quiet",
        "--out", str(out),
    )  # fmt: skip
    assert code == 0
    (history,) = ex.load_histories(out).values()
    assert history.config.steps == 2  # the flag won
    assert history.config.problem_options == {"hidden": (3,), "num_samples": 50}
    assert history.config.rule_options == {"damping": 0.05}
    assert len(history) == 3


def test_compare_runs_every_rule_with_per_rule_options(capsys, tmp_path):
    out = tmp_path / "runs.json"
    code, stdout, stderr = call(
        capsys, "compare", "--problem", "tiny_tanh", "--rules",
        "sgd,natural_gradient,newton", "--rule-option", "sgd.lr=0.3",
        "--rule-option", "newton.damping=0.001",
        "--rule-option", "newton.on_indefinite=stop", "--steps", "4", "--seed", "1",
        "--device", "cpu", "--out", str(out),
    )  # fmt: skip
    assert code == 0
    summary = {run["label"]: run for run in json.loads(stdout)}
    assert list(summary) == ["sgd", "natural_gradient", "newton"]
    assert summary["newton"]["status"] == "indefinite"
    assert "Remedy" in summary["newton"]["message"]
    histories = ex.load_histories(out)
    assert histories["sgd"].config.rule_options == {"lr": 0.3}
    assert histories["natural_gradient"].config.seed == 1
    assert "run 3/3" in stderr


def test_errors_are_messages_with_exit_code_two(capsys):
    code, _, err = call(capsys, "run", "--problem", "linreg_2d", "--steps", "-3")
    assert code == 2 and "error:" in err and "'steps'" in err
    code, _, err = call(
        capsys, "compare", "--problem", "linreg_2d", "--rules", "sgd",
        "--rule-option", "kfac.damping=1",
    )  # fmt: skip
    assert code == 2 and "not among the compared rules" in err
    code, _, err = call(capsys, "run", "--config", "/nonexistent.toml")
    assert code == 2 and "does not exist" in err


def test_a_plugin_curvature_drives_the_generic_rule(capsys, tmp_path):
    plugin = tmp_path / "scaled.py"
    plugin.write_text(
        "import torch\nimport explorer as ex\n\n"
        "@ex.register_curvature('cli_scaled_identity', psd=True)\n"
        "def scaled(problem, theta, batch=None):\n"
        "    return 2.0 * torch.eye(problem.num_params, dtype=theta.dtype)\n"
    )
    try:
        code, stdout, _ = call(
            capsys, "run", "--plugin", str(plugin), "--problem", "logreg_2d",
            "--rule", "precondition", "--rule-option", "curvature=cli_scaled_identity",
            "--steps", "3", "--quiet", "--device", "cpu",
        )  # fmt: skip
    finally:
        if "cli_scaled_identity" in ex.CURVATURES:
            ex.CURVATURES.unregister("cli_scaled_identity")
    assert code == 0
    (run,) = json.loads(stdout)
    assert run["status"] == "ok" and run["final"]["step"] == 3


def test_list_rules(capsys):
    code, out, _ = call(capsys, "run", "--list-rules")
    catalog = json.loads(out)
    assert code == 0 and list(catalog) == list(ex.RULES)
    assert catalog["kfac"]["options"]["output_factor"]["default"] == "mc"
    assert "damping" in catalog["hessian_free"]["options"]


def test_module_entry_point(tmp_path):
    out = tmp_path / "runs.json"
    result = subprocess.run(
        [sys.executable, "-m", "explorer", "compare", "--problem", "logreg_2d",
         "--rules", "sgd,gauss_newton", "--steps", "2", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": ""},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [run["status"] for run in json.loads(result.stdout)] == ["ok", "ok"]
    assert set(ex.load_histories(out)) == {"sgd", "gauss_newton"}
