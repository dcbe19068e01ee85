"""The battery names what it sees: the nearest reference (with its scale), parameters
left uncovered, sampled estimators judged on k draws, staleness, float32 precision and
preconditioner plugins. Plugins are files in tmp dirs loaded with the real loader;
every expectation comes from dense matrices built independently here."""

import math
import textwrap

import pytest
import torch

import explorer as ex
from explorer.check import CheckSettings, check_plugin, run_battery
from explorer.check.nearest import NearestReference, fit, nearest_dense, rank
from explorer.check.sampling import draw_statistics
from explorer.curvature.coverage import parameter_spans

#: A tiny tanh MLP with biases (P = 2·6 + 6 + 6·2 + 2 = 32).
MOONS = ("moons_mlp", {"num_samples": 80, "hidden": (6,)})
FAST = {"steps": 2, "points": 2, "race": False, "baselines": ()}

PLUGINS = '''
import torch
import explorer as ex
from explorer.curvature.coverage import parameter_spans
from explorer.curvature.tags import Tags


@ex.register_curvature("t_secret_ef", reference="fisher", psd=True)
def secret_ef(problem, theta, batch=None):
    """Claims to approximate the Fisher; is the empirical Fisher."""
    return ex.curvature("ef", problem, theta, batch=batch).dense()


@ex.register_curvature("t_twice_ggn", reference="ggn", psd=True)
def twice_ggn(problem, theta, batch=None):
    return 2.0 * ex.curvature("ggn", problem, theta, batch=batch).dense()


@ex.register_curvature("t_kfac_no_bias", reference="fisher", psd=True)
def kfac_no_bias(problem, theta, batch=None):
    """K-FAC with the bias rows and columns silently dropped."""
    matrix = ex.curvature("kfac", problem, theta, batch=batch).dense().clone()
    for name, span in parameter_spans(problem).items():
        if name.endswith("bias"):
            matrix[span, :] = 0.0
            matrix[:, span] = 0.0
    return matrix


@ex.register_curvature(
    "t_exact_preconditioner", reference="fisher", psd=True, inverse=True
)
def exact_preconditioner(problem, theta, batch=None):
    """P = (F + 1e-6 I)⁻¹."""
    fisher = ex.curvature("fisher", problem, theta, batch=batch).dense()
    eye = torch.eye(problem.num_params, dtype=theta.dtype)
    return torch.linalg.inv(fisher + 1e-6 * eye)


@ex.register_curvature(
    "t_biased_mc", reference="fisher", tags=Tags(psd=True, sampled=True)
)
def biased_mc(problem, theta, batch=None, generator=None):
    """A Monte Carlo Fisher 30 % too large: within the scale tolerance, biased."""
    draw = ex.curvature("fisher_mc", problem, theta, batch=batch, generator=generator)
    return 1.3 * draw.dense()
'''


@pytest.fixture(scope="module")
def plugins(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plugins")
    path = folder / "named.py"
    path.write_text(textwrap.dedent(PLUGINS), encoding="utf-8")
    keys = [
        "t_secret_ef",
        "t_twice_ggn",
        "t_kfac_no_bias",
        "t_exact_preconditioner",
        "t_biased_mc",
    ]
    report = check_plugin(path, keys, CheckSettings(problems=[MOONS], **FAST))
    yield report
    for key in [k for k, s in ex.CURVATURES.items() if str(folder) in s.source]:
        ex.CURVATURES.unregister(key)


def _verdicts(result):
    return "; ".join(
        f"{v.name} {v.status} {v.measured:.4g} ({v.detail})" for v in result.verdicts
    )


# ------------------------------------------------------------------- pure parts
def test_fit_is_the_least_squares_scale_and_relative_residual():
    gen = torch.Generator().manual_seed(0)
    r = torch.randn(5, 5, generator=gen, dtype=torch.float64)
    e = torch.randn(5, 5, generator=gen, dtype=torch.float64)
    c = 3.0 * r + 0.1 * e
    scale, residual = fit(c, r)
    # brute force: minimise ‖C − aR‖ over a grid around the closed form
    grid = torch.linspace(scale - 0.01, scale + 0.01, 2001, dtype=torch.float64)
    errors = torch.stack([(c - a * r).norm() for a in grid])
    assert float(grid[errors.argmin()]) == pytest.approx(scale, abs=1e-5)
    assert residual == pytest.approx(float(errors.min() / c.norm()), rel=1e-6)
    assert fit(2 * r, r) == pytest.approx((2.0, 0.0), abs=1e-12)


def test_ties_go_to_the_exact_matrix_listed_first_and_the_sentence_names_it():
    nearest = rank({"fisher": (2.0, 1e-15), "ggn": (2.0, 3e-15), "ef": (1.0, 0.5)})
    assert nearest.key == "ggn" and [c[0] for c in nearest.candidates][:2] == [
        "ggn",
        "fisher",
    ]
    assert nearest.sentence().startswith("behaves like 2.00 × the GGN (ggn)")
    ef = NearestReference("ef", "Empirical Fisher", 1.0, 0.0)
    assert ef.sentence() == (
        "behaves like the empirical Fisher (ef), scale 1.00, residual 0.0 %"
    )


def test_draw_statistics_match_their_definitions():
    gen = torch.Generator().manual_seed(1)
    r = torch.eye(3, dtype=torch.float64)
    draws = [
        r + torch.randn(3, 3, generator=gen, dtype=torch.float64) for _ in range(4)
    ]
    stats = draw_statistics(draws, r)
    mean = sum(draws) / 4
    assert torch.allclose(stats.mean, mean)
    rms = math.sqrt(sum(float((d - r).norm() ** 2) for d in draws) / 4)
    assert stats.draw_error == pytest.approx(rms / math.sqrt(3))
    assert stats.mean_error == pytest.approx(float((mean - r).norm()) / math.sqrt(3))
    spread = sum(float((d - mean).norm() ** 2) for d in draws) / 4
    assert stats.variance == pytest.approx(spread / 3)


# ---------------------------------------------------------------- named plugins
def test_a_secret_empirical_fisher_is_named(plugins):
    result = plugins.result("t_secret_ef")
    nearest = result.nearest_reference
    assert nearest.key == "ef", nearest
    assert nearest.scale == pytest.approx(1.0, abs=1e-9)
    assert nearest.residual < 1e-9
    assert "empirical Fisher (ef)" in nearest.sentence()
    for point in result.problems[0].points:
        assert point.nearest.key == "ef" and point.nearest.residual < 1e-9


def test_twice_the_ggn_is_named_with_its_scale_and_fails_the_scale(plugins):
    result = plugins.result("t_twice_ggn")
    nearest = result.nearest_reference
    assert nearest.key in ("ggn", "fisher"), nearest
    assert nearest.key == "ggn"  # the GGN = the Fisher here: the order rule decides
    assert nearest.scale == pytest.approx(2.0, abs=1e-9)
    assert "2.00 × the GGN" in nearest.sentence()
    assert result.verdict("scale").status == "fail", _verdicts(result)
    assert result.verdict("scale").measured == pytest.approx(2.0)


def test_kfac_without_biases_fails_coverage_naming_the_biases(plugins):
    result = plugins.result("t_kfac_no_bias")
    verdict = result.verdict("coverage")
    assert verdict.status == "fail", _verdicts(result)
    assert "0.bias, 2.bias are not covered" in verdict.detail
    assert verdict.measured == 2
    assert result.declared_coverage["moons_mlp"] == {
        "0.weight": "full",
        "0.bias": "full",
        "2.weight": "full",
        "2.bias": "full",
    }
    for name in ("t_secret_ef", "t_twice_ggn"):
        assert plugins.result(name).verdict("coverage").status == "pass"


def test_a_preconditioner_plugin_is_judged_as_its_inverse(plugins):
    result = plugins.result("t_exact_preconditioner")
    assert result.inverse
    nearest = result.nearest_reference
    assert nearest.key in ("ggn", "fisher") and nearest.scale == pytest.approx(
        1.0, abs=1e-4
    )
    statuses = {v.name: v.status for v in result.verdicts}
    assert statuses["scale"] == "pass" and statuses["symmetric"] == "pass"
    point = result.problems[0].points[0]
    # P·R = (F + εI)⁻¹F: eigenvalues f/(f + ε) of F's eigenvalues f
    fisher = point.reference_eigenvalues.clamp(min=0)
    expected = (fisher / (fisher + 1e-6)).sort().values
    assert torch.allclose(point.preconditioned_eigenvalues, expected, atol=1e-6)


def test_a_biased_sampled_estimator_fails_unbiased_but_not_the_scale(plugins):
    result = plugins.result("t_biased_mc")
    assert result.verdict("scale").status == "pass", _verdicts(result)
    verdict = result.verdict("unbiased")
    assert verdict.status == "fail", _verdicts(result)
    point = result.problems[0].points[0]
    # the mean of 8 draws looked biased, so the draws were doubled up to 64 before
    # judging: the bias survives the extra evidence, the mean stays near its 30 %
    assert point.draws == CheckSettings().sampled_draws_max == 64
    assert point.mean_error > 0.2
    assert "variance" in verdict.detail


def test_the_nearest_reference_is_estimated_from_probes_when_matrix_free(plugins):
    settings = CheckSettings(problems=[MOONS], dense_max_params=1, **FAST)
    report = run_battery(["t_twice_ggn"], settings)
    result = report.result("t_twice_ggn")
    point = result.problems[0].points[0]
    assert point.method == "estimated"
    assert point.nearest.key == "ggn" and point.nearest.scale == pytest.approx(2.0)
    assert result.verdict("coverage").status == "skipped"


# ------------------------------------------------------------ built-ins named
def test_fisher_mc_passes_every_verdict_on_the_default_problems():
    report = run_battery(["fisher_mc"], CheckSettings(race=False, baselines=()))
    result = report.result("fisher_mc")
    statuses = {v.name: v.status for v in result.verdicts}
    assert statuses == {
        "well_formed": "pass",
        "symmetric": "pass",
        "psd": "pass",
        "scale": "pass",
        "exact": "skipped",
        "coverage": "pass",
        "unbiased": "pass",
    }, _verdicts(result)
    assert result.nearest_reference.key in ("ggn", "fisher")
    for problem in result.problems:
        for point in problem.points:
            assert point.draws == 8 and point.mean_error < point.draw_error


def test_kfac_with_sampled_targets_is_not_failed_for_being_kfac():
    settings = CheckSettings(
        problems=[MOONS], curvature_options={"output_factor": "mc"}, **FAST
    )
    result = run_battery(["kfac"], settings).result("kfac")
    assert result.passed, _verdicts(result)
    unbiased = result.verdict("unbiased")
    assert unbiased.status == "skipped" and "structural" in unbiased.why
    assert result.problems[0].points[0].draws == 8


def test_kfac_on_the_tiny_transformer_declares_what_it_leaves_out():
    small = {"modulus": 5, "d_model": 4, "heads": 1, "mlp_width": 8}
    settings = CheckSettings(
        problems=[("tiny_transformer", small)], steps=1, points=1, race=False,
        baselines=(), precision=False,
    )  # fmt: skip
    result = run_battery(["kfac"], settings).result("kfac")
    verdict = result.verdict("coverage")
    assert verdict.status == "pass", _verdicts(result)
    assert "tokens.weight" in verdict.detail and "declared" in verdict.detail
    declared = result.declared_coverage["tiny_transformer"]
    assert (
        declared["tokens.weight"] == "none" and declared["head.weight"] == "kronecker"
    )


def test_staleness_and_precision_against_independent_matrices():
    settings = CheckSettings(problems=[MOONS], steps=4, points=3, race=False)
    result = run_battery(["ef"], settings).result("ef")
    (problem,) = result.problems
    assert [s[0] for s in problem.staleness] == [2, 4]
    last = problem.points[-1]
    _, stale, fresh = problem.staleness[-1]
    assert fresh == pytest.approx(last.quality.relative_frobenius_error, rel=1e-9)
    built = ex.problem("moons_mlp", **MOONS[1])
    c0 = ex.curvature("ef", built, built.theta0.double()).dense()
    r = last.reference_matrix
    assert stale == pytest.approx(float((c0 - r).norm() / r.norm()), rel=1e-9)
    precision = problem.precision
    assert 0 < precision["relative_difference"] < 1e-5, precision
    assert precision["residual_float32"] == pytest.approx(
        precision["residual_float64"], abs=1e-5
    )
    data = result.to_dict()
    assert data["problems"][0]["staleness"][0]["step"] == 2
    assert data["nearest_reference"]["sentence"].startswith("behaves like")
    assert parameter_spans(built)  # the spans the coverage check uses exist


def test_a_heavy_tailed_estimator_gets_more_draws_before_it_is_judged():
    # Sophia's B·ĝ⊙ĝ on moons after 20 steps: the model is confident, so a few
    # flipped sampled labels carry the expectation and 8 draws can all miss them;
    # the doubled draws find them, and the unbiased estimator of diag(G) passes
    settings = CheckSettings(problems=["moons_mlp"], race=False, baselines=())
    result = run_battery(["sophia_gnb"], settings).result("sophia_gnb")
    statuses = {v.name: v.status for v in result.verdicts}
    assert statuses["scale"] == statuses["unbiased"] == "pass", _verdicts(result)
    draws = [p.draws for p in result.problems[0].points]
    assert max(draws) > settings.sampled_draws, draws  # extended somewhere
    assert result.nearest_reference.key == "diag_ggn"  # its mean is diag(G)
    assert result.nearest_reference.scale == pytest.approx(1.0, abs=0.15)


def test_a_preconditioner_plugin_is_refused_as_a_curvature_step_with_the_reason(
    plugins,
):
    # (P + λI)⁻¹g would be silently wrong for a P ≈ C⁻¹: the rule says why instead,
    # and the battery's race records that, while every verdict is still measured
    problem = ex.problem("moons_mlp", num_samples=80, hidden=(6,))
    reason = ex.RULES["precondition"].incompatibility(
        problem, {"curvature": "t_exact_preconditioner"}
    )
    assert reason is not None and "inverse=True" in reason
    result = plugins.result("t_exact_preconditioner")
    assert result.problems[0].points, "measured although it cannot drive the rule"


def test_an_empirical_kfac_is_named_kfac_of_the_empirical_fisher():
    # the Kronecker structure, not the labels, dominates the distance to the full
    # matrices (the plain candidates call it K-FAC); the variant names the labels
    @ex.register_curvature("t_kfac_empirical", reference="fisher", psd=True)
    def kfac_empirical(problem, theta, batch=None):
        operator = ex.curvature(
            "kfac", problem, theta, batch=batch, output_factor="empirical"
        )
        return operator.dense()

    try:
        settings = CheckSettings(problems=[MOONS], **FAST)
        result = run_battery(["t_kfac_empirical"], settings).result("t_kfac_empirical")
    finally:
        ex.CURVATURES.unregister("t_kfac_empirical")
    nearest = result.nearest_reference
    assert nearest.key == "kfac_empirical", nearest.candidates
    assert nearest.scale == pytest.approx(1.0, abs=1e-9)
    assert nearest.residual < 1e-9
    assert "K-FAC of the empirical Fisher" in nearest.sentence()
    assert [c[0] for c in nearest.candidates].index("kfac") == 1  # K-FAC next


def test_a_checked_curvature_is_not_named_after_itself_or_its_own_variant():
    references = {
        "kfac": torch.eye(3, dtype=torch.float64),
        "kfac_empirical": torch.eye(3, dtype=torch.float64),
        "ggn": torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)),
    }
    matrix = torch.eye(3, dtype=torch.float64)
    assert nearest_dense(matrix, references).key == "kfac"
    assert nearest_dense(matrix, references, exclude="kfac").key == "ggn"
    assert nearest_dense(matrix, references, exclude="ggn").key == "kfac"
