"""The check battery: the example plugins pass or fail as documented, broken plugins
get reports, and the command line's exit codes, JSON summary and HTML report."""

import json
import math
import re
import textwrap
from pathlib import Path

import pytest
import torch

import explorer as ex
from explorer.check import CheckSettings, check_plugin, report_html, run_battery
from explorer.cli import build_parser, main
from explorer.plugins import load_plugin_file

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "plugins"
#: Small problems: P = 2 (one linear layer, Gaussian output) and a tiny tanh MLP.
MOONS = ("moons_mlp", {"num_samples": 80, "hidden": (6,)})
SMALL = CheckSettings(problems=("linreg_2d", MOONS), steps=4)
TINY = ["--problems", "linreg_2d", "--steps", "2", "--no-race", "--quiet"]


def _forget(folder):
    for key in [k for k, s in ex.CURVATURES.items() if str(folder) in s.source]:
        ex.CURVATURES.unregister(key)


@pytest.fixture(autouse=True)
def _forget_examples():
    yield
    _forget(EXAMPLES)


@pytest.fixture(scope="module")
def examples():
    """The battery on the example plugins and the built-in EKFAC (one run shared by
    the tests; EKFAC became built in, its tests fail until ``ekfac`` is registered)."""
    keys = []
    for name in ("lowrank_diag.py", "wrong_fisher.py"):
        report = load_plugin_file(EXAMPLES / name)
        assert report.ok, report.error
        keys.extend(report.keys)
    if "ekfac" in ex.CURVATURES:
        keys.append("ekfac")
    return run_battery(keys, SMALL)


@pytest.fixture
def plugin_dir(tmp_path):
    yield tmp_path
    _forget(tmp_path)


def _statuses(result):
    return {v.name: v.status for v in result.verdicts}


def _numbers(result):
    """The measured values, for assertion messages."""
    return "; ".join(
        f"{v.name} {v.status} {v.measured:.4g} at {v.where}" for v in result.verdicts
    )


def _point_numbers(problem, key):
    points = problem.points if key is None else problem.baselines[key]
    return [(p.step, p.quality.relative_frobenius_error, p.trace_ratio) for p in points]


# ------------------------------------------------------------------ examples
def test_correct_examples_pass_every_declared_property(examples):
    for key in ("ekfac", "lowrank_diag_fisher"):
        result = examples.result(key)
        assert result.passed, _numbers(result)
        statuses = _statuses(result)
        assert statuses == {
            "well_formed": "pass",
            "symmetric": "pass",
            "psd": "pass",
            "scale": "pass",
            "exact": "skipped",
            "coverage": "pass",
            "unbiased": "skipped",
        }, _numbers(result)
        assert result.verdict("symmetric").measured < 1e-12, _numbers(result)
        ratio = result.verdict("scale").measured
        assert ratio == pytest.approx(1.0, abs=1e-9), _numbers(result)


def test_ekfac_is_exact_on_one_linear_layer_and_never_worse_than_kfac(examples):
    result = examples.result("ekfac")
    linreg, moons = result.problems
    for step, error, _ in _point_numbers(linreg, None):
        assert error < 1e-12, f"EKFAC vs Fisher on linreg_2d at step {step}: {error}"
    for problem in result.problems:
        mine = _point_numbers(problem, None)
        kfac = _point_numbers(problem, "kfac")
        for (step, error, _), (_, kfac_error, _) in zip(mine, kfac, strict=True):
            assert error <= kfac_error + 1e-12, (
                f"{problem.problem} step {step}: EKFAC {error:.6g} > K-FAC "
                f"{kfac_error:.6g}"
            )
    assert max(e for _, e, _ in _point_numbers(moons, None)) > 1e-3  # not trivial


def test_lowrank_diag_is_exact_when_its_rank_covers_every_direction(examples):
    linreg, moons = examples.result("lowrank_diag_fisher").problems
    errors = _point_numbers(linreg, None)
    assert all(error < 1e-12 for _, error, _ in errors), errors  # P = 2 ≤ rank 8
    errors = _point_numbers(moons, None)
    assert moons.num_params > 8 and all(0 < e < 0.1 for _, e, _ in errors), errors


def test_fisher_sum_fails_the_scale_by_a_factor_n_and_loses_the_race(examples):
    result = examples.result("fisher_sum")
    assert _statuses(result) == {
        "well_formed": "pass",
        "symmetric": "pass",
        "psd": "pass",
        "scale": "fail",
        "exact": "skipped",
        "coverage": "pass",
        "unbiased": "skipped",
    }, _numbers(result)
    nearest = result.nearest_reference  # N × the Fisher, and said so
    assert nearest.key in ("hessian", "ggn", "fisher") and nearest.residual < 1e-9
    assert nearest.scale > 50 and "× the" in nearest.sentence()
    for problem in result.problems:
        ratios = [ratio for _, _, ratio in _point_numbers(problem, None)]
        assert ratios == pytest.approx([problem.num_examples] * len(ratios)), (
            f"{problem.problem}: tr C / tr R = {ratios}, N = {problem.num_examples}"
        )
        race = {entry.label: entry for entry in problem.race}
        assert race["fisher_sum"].final_loss > race["natural_gradient"].final_loss, (
            f"{problem.problem}: fisher_sum reached {race['fisher_sum'].final_loss:.4g}"
            f", natural_gradient {race['natural_gradient'].final_loss:.4g}"
        )
    scale = result.verdict("scale")
    assert (
        scale.measured == pytest.approx(1000) and scale.where == "linreg_2d, step 0"
    ), _numbers(result)


def test_fisher_rowscaled_fails_symmetry(examples):
    result = examples.result("fisher_rowscaled")
    verdict = result.verdict("symmetric")
    assert verdict.status == "fail" and verdict.measured > 0.1, _numbers(result)
    assert result.verdict("well_formed").status == "pass", _numbers(result)
    assert not result.passed and examples.exit_code == 1


def test_every_check_is_measured_and_the_race_is_complete(examples):
    result = examples.result("lowrank_diag_fisher")
    for problem in result.problems:
        assert [p.step for p in problem.points] == [0, 2, 4]
        assert set(problem.baselines) == {"kfac", "diag_fisher"}
        for point in problem.points:
            q = point.quality
            assert math.isfinite(q.cosine) and 0 < q.cosine <= 1 + 1e-12, point
            assert 0 <= q.top_overlap <= 1 + 1e-12
            assert point.generalized is not None and point.generalized_min > 0
        last = problem.points[-1]
        assert last.matrix.shape == (problem.num_params,) * 2
        assert problem.cost.matvec_seconds > 0 and problem.cost.grad_seconds > 0
        assert [e.label for e in problem.race] == [
            "lowrank_diag_fisher",
            "natural_gradient",
            "gauss_newton",
            "kfac",
            "sgd",
        ]
        assert all(e.status == "ok" and e.steps == 4 for e in problem.race), (
            problem.race
        )


# -------------------------------------------------------------- broken plugins
BROKEN = """
import torch
import explorer as ex

@ex.register_curvature("t_raises", reference="fisher")
def raises(problem, theta, batch=None):
    raise RuntimeError("boom in the plugin")

@ex.register_curvature("t_shape", reference="fisher")
def shape(problem, theta, batch=None):
    return torch.eye(problem.num_params + 1, dtype=theta.dtype)

@ex.register_curvature("t_nan", reference="fisher")
def nan(problem, theta, batch=None):
    return torch.full((problem.num_params,) * 2, float("nan"), dtype=theta.dtype)

@ex.register_curvature("t_closure", reference="fisher")
def closure(problem, theta, batch=None):
    return lambda v: torch.cat([v, v])

@ex.register_curvature("t_asym", reference="fisher", psd=True)
def asym(problem, theta, batch=None):
    return torch.tensor([[1.0, 5.0], [0.0, 1.0]], dtype=theta.dtype)

@ex.register_curvature("t_type_error", reference="fisher")
class TypeErrorOperator(ex.CurvatureOperator):
    def _matvec(self, v):
        return v + "oops"
"""


def test_broken_plugins_get_reports_that_name_the_problem(plugin_dir):
    path = plugin_dir / "broken.py"
    path.write_text(textwrap.dedent(BROKEN), encoding="utf-8")
    settings = CheckSettings(problems=["linreg_2d"], steps=2)
    report = check_plugin(path, settings=settings)
    expected = {
        "t_raises": "RuntimeError: boom in the plugin (broken.py:",
        "t_shape": "shape (3, 3); expected (2, 2)",
        "t_nan": "NaN",
        "t_closure": "matvec returned (4,); expected (2,)",
        "t_type_error": "TypeError",
    }
    for key, text in expected.items():
        verdict = report.result(key).verdict("well_formed")
        assert verdict.status == "fail" and text in verdict.detail, verdict
        race = report.result(key).problems[0].race[0]
        assert race.status in ("error", "indefinite"), race
    asym = report.result("t_asym")
    assert asym.verdict("well_formed").status == "pass"
    assert asym.verdict("symmetric").status == "fail"
    assert asym.verdict("symmetric").measured == pytest.approx(math.sqrt(50 / 27))
    assert report.exit_code == 1
    assert "t_raises" in report_html(report)  # the report renders


def test_the_matrix_free_path_agrees_with_the_dense_one():
    load_plugin_file(EXAMPLES / "wrong_fisher.py")
    shared = {"problems": [MOONS], "steps": 2, "points": 2, "race": False}
    dense = run_battery(
        ["fisher_rowscaled", "kfac"], CheckSettings(**shared, baselines=())
    )
    probes = run_battery(
        ["fisher_rowscaled", "kfac"],
        CheckSettings(**shared, baselines=(), dense_max_params=1),
    )
    for key in ("fisher_rowscaled", "kfac"):
        a, b = dense.result(key).problems[0], probes.result(key).problems[0]
        for exact, estimate in zip(a.points, b.points, strict=True):
            assert estimate.method == "estimated" and exact.method == "dense"
            assert estimate.asymmetry == pytest.approx(exact.asymmetry, abs=0.3), key
            if (
                exact.asymmetry < 1e-12
            ):  # Lanczos assumes symmetry: only then is λ_min right
                assert estimate.min_eigenvalue == pytest.approx(
                    exact.min_eigenvalue, rel=1e-3, abs=1e-6
                )
    assert probes.result("fisher_rowscaled").verdict("symmetric").status == "fail"
    assert probes.result("kfac").verdict("symmetric").measured < 1e-12


def test_settings_are_validated():
    with pytest.raises(ValueError, match="steps"):
        CheckSettings(steps=0)
    with pytest.raises(ValueError, match="scale_tol"):
        CheckSettings(scale_tol=0.5)
    with pytest.raises(ValueError, match="no curvature"):
        run_battery([], CheckSettings(problems=["linreg_2d"]))
    with pytest.raises(ValueError, match="not_a_problem"):
        run_battery(["kfac"], CheckSettings(problems=["not_a_problem"]))


# ------------------------------------------------------------------------ CLI
def _call(capsys, *argv):
    code = main(["check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_exit_codes(capsys, plugin_dir):
    code, out, err = _call(capsys, str(EXAMPLES / "lowrank_diag.py"), *TINY)
    assert code == 0, err
    data = json.loads(out)
    assert data["passed"] is True and "PASS  lowrank_diag_fisher" in err
    nearest = data["curvatures"]["lowrank_diag_fisher"]["nearest_reference"]
    assert nearest["key"] in ("hessian", "ggn", "fisher"), nearest  # exact at P = 2
    assert nearest["scale"] == pytest.approx(1.0) and nearest["residual"] < 1e-9
    assert "nearest reference: behaves like" in err
    code, _, err = _call(
        capsys, str(EXAMPLES / "wrong_fisher.py"), "--curvature", "fisher_sum", *TINY
    )
    assert code == 1 and "FAIL    Scale" in err and "1000" in err
    syntax = plugin_dir / "syntax.py"
    syntax.write_text("def broken(:\n")
    empty = plugin_dir / "empty.py"
    empty.write_text("x = 1\n")
    # a plugin that does not import fails the check (exit 1), named, as one
    # that times out does; a path that does not exist is a usage error
    code, _, err = _call(capsys, str(syntax), *TINY)
    assert code == 1 and f"FAIL  plugin {syntax}: SyntaxError" in err, err
    with pytest.raises(SystemExit) as exit_info:
        main(["check", str(plugin_dir / "missing.py"), *TINY])
    assert exit_info.value.code == 2
    assert "missing.py' does not exist" in capsys.readouterr().err
    for argv, message in (
        ([str(empty)], "registered none"),
        (["--curvature", "no_such_key"], "no_such_key"),
        ([], "pass a plugin file"),
        (["--curvature", "kfac", "--problem-option", "x=1"], "PROBLEM.NAME=VALUE"),
    ):
        code, _, err = _call(capsys, *argv, *TINY)
        assert code == 2 and message in err, (argv, err)
    with pytest.raises(SystemExit) as exit_info:
        main(["check", "--steps", "many"])
    assert exit_info.value.code == 2


def test_json_summary_and_self_contained_html(capsys, tmp_path):
    page, summary = tmp_path / "report.html", tmp_path / "summary.json"
    code, out, err = _call(
        capsys,
        str(EXAMPLES / "wrong_fisher.py"),
        "--reference", "fisher", "--problems", "linreg_2d", "--steps", "2",
        "--out", str(page), "--json", str(summary),
    )  # fmt: skip
    assert code == 1 and out == "" and "[100%] done" in err
    data = json.loads(
        summary.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON")
    )
    assert data["format"] == "curvature-explorer/check" and data["exit_code"] == 1
    assert data["settings"]["thresholds"]["scale_tol"] == 1.5
    fisher_sum = data["curvatures"]["fisher_sum"]
    assert fisher_sum["reference_role"] == "given" and not fisher_sum["passed"]
    scale = fisher_sum["verdicts"]["scale"]
    assert scale["status"] == "fail" and scale["measured"] == pytest.approx(1000)
    nearest = fisher_sum["nearest_reference"]
    assert nearest["scale"] == pytest.approx(1000) and nearest["residual"] < 1e-9
    assert nearest["sentence"].startswith("behaves like 1000.00 × the")
    assert fisher_sum["verdicts"]["coverage"]["status"] == "pass"
    assert fisher_sum["declared_coverage"]["linreg_2d"] == {"0.weight": "full"}
    (linreg,) = fisher_sum["problems"]
    assert [p["step"] for p in linreg["points"]] == [0, 1, 2]
    assert linreg["points"][0]["trace_ratio"] == pytest.approx(1000)
    assert {"kfac", "diag_fisher"} == set(linreg["baselines"])
    assert linreg["cost"]["matvec_per_gradient"] > 0
    assert linreg["race"][0]["label"] == "fisher_sum"
    rowscaled = data["curvatures"]["fisher_rowscaled"]["verdicts"]
    assert rowscaled["symmetric"]["status"] == "fail"
    assert rowscaled["symmetric"]["measured"] > 0.1

    text = page.read_text(encoding="utf-8")
    assert "Plotly.newPlot" in text and text.count("Plotly.newPlot") >= 10
    assert not re.search(r"<script[^>]+src=", text)  # plotly.js is inline
    assert not re.search(r"<link[^>]+href=", text)
    assert '<td class="fail">fail</td>' in text
    embedded = text.split('id="check-summary">', 1)[1].split("</script>", 1)[0]
    assert json.loads(embedded.replace("<\\/", "</"))["exit_code"] == 1


def test_help_documents_every_option_and_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["check", "--help"])
    text = capsys.readouterr().out
    for flag in (
        "--curvature", "--reference", "--problems", "--problem-option",
        "--curvature-option", "--steps", "--points", "--damping", "--race-rules",
        "--no-race", "--baselines", "--seed", "--symmetry-tol", "--psd-tol",
        "--scale-tol", "--exact-tol", "--dense-max-params", "--out", "--json",
        "--threads", "--quiet", "--sampled-draws", "--unbiased-slack", "--no-precision",
        "--timeout",
    ):  # fmt: skip
        assert flag in text, flag
    assert "Exit code: 0" in text and "1 when one fails" in text and "2 for" in text


def test_a_registered_function_is_checked_from_python():
    @ex.register_curvature("t_half_fisher", reference="fisher", psd=True)
    def half_fisher(problem, theta, batch=None):
        return 0.5 * ex.curvature("fisher", problem, theta, batch=batch).dense()

    try:
        report = run_battery(
            ["t_half_fisher"],
            CheckSettings(problems=["linreg_2d"], steps=2, damping=1e-9),
        )
    finally:
        ex.CURVATURES.unregister("t_half_fisher")
    result = report.result("t_half_fisher")
    ratio = result.verdict("scale").measured
    assert result.verdict("scale").status == "fail" and ratio == pytest.approx(0.5)
    point = result.problems[0].points[0]
    assert point.quality.cosine > 0.99  # the direction is nearly right...
    assert torch.allclose(  # ...but every eigenvalue of (C + λI)⁻¹(R + λI) is 2
        point.generalized, torch.full_like(point.generalized, 2.0), rtol=1e-6
    ), point.generalized


@pytest.mark.slow
def test_the_default_battery_on_an_example_takes_well_under_a_minute(capsys):
    import time

    start = time.perf_counter()
    code, out, err = _call(capsys, "--curvature", "fisher_mc", "--quiet")
    seconds = time.perf_counter() - start
    data = json.loads(out)
    assert code == 0, err  # judged on the mean of 8 draws, fisher_mc passes
    problems = data["curvatures"]["fisher_mc"]["problems"]
    assert [p["problem"] for p in problems] == ["linreg_2d", "moons_mlp", "digits_mlp"]
    assert problems[2]["num_params"] == 610  # digits_mlp with hidden=8
    assert seconds < 60, f"the default battery took {seconds:.1f} s"
