"""Every registered rule on every small problem, with explicit expectations.

The matrix runs each rule from the problem's default start with its default
options. Where a pair cannot converge the table says why instead of hiding it:
``SKIP`` entries never run (the reason comes from ``RuleSpec.incompatibility``
when the rule cannot even start), ``EXPECTED`` entries must stop with the named
status and a remedy in the message (failure is information).
"""

import pytest
import torch

import explorer as ex
from tests.cases import TINY_DEFAULTS

#: problem -> its tiny default (``ProblemSpec.test_cases[0]``): options and the run
#: batch size, generated from the registry.
PROBLEMS = TINY_DEFAULTS

#: Rule options per (rule, problem) where the default would not suit the problem.
OPTIONS = {
    ("sgd", "rosenbrock"): {"lr": 1e-3},  # ‖∇h(θ₀)‖ ≈ 230: lr 0.1 diverges
    ("adam", "rosenbrock"): {"lr": 0.05},
}

#: Pairs that stop early by design: the status and why.
#: (Newton raises λ past the most negative eigenvalue of an indefinite H by default,
#: so it runs on; the GGN aliases keep stopping, where the GGN is the one at fault.)
EXPECTED = {
    # the (μ, log σ²) Gaussian is not convex in the outputs: G is indefinite too
    ("gauss_newton", "heteroscedastic_1d"): ("indefinite", "G is indefinite"),
    ("precondition", "heteroscedastic_1d"): ("indefinite", "G is indefinite"),
}

#: Pairs that run but are not expected to lower the loss, with the reason.
SKIP = {
    ("ef_natural_gradient", "stream_logreg"): (
        "the empirical Fisher of 20 fresh labels at θ = 0 is a poor preconditioner "
        "(Kunstner et al. 2019): the population loss may rise"
    ),
}

STEPS = 10

CASES = [(rule, problem) for problem in PROBLEMS for rule in ex.RULES]


@pytest.mark.parametrize(("rule", "problem"), CASES, ids=[f"{r}-{p}" for r, p in CASES])
def test_rule_lowers_the_loss(rule, problem):
    if (rule, problem) in SKIP:
        pytest.skip(SKIP[rule, problem])
    case = PROBLEMS[problem]
    problem_options, fields = case.options, case.run_fields()
    built = ex.problem(problem, **problem_options)
    options = OPTIONS.get((rule, problem), {})
    reason = ex.RULES[rule].incompatibility(built, options)
    if reason is not None:
        pytest.skip(reason)
    config = ex.RunConfig(
        problem, problem_options, rule, options, steps=STEPS, device="cpu", **fields
    )
    history = ex.run(config)
    start, end = history.column("loss")[0], history.last("loss")
    if (rule, problem) in EXPECTED:
        status, _ = EXPECTED[rule, problem]
        assert history.status == status
        assert "Remedy" in history.message
        assert len(history) >= 1
        return
    assert history.status == "ok", history.message
    assert len(history) == STEPS + 1
    assert end < 0.98 * start
    assert torch.isfinite(history.trajectory).all()


@pytest.mark.parametrize("name", ["OPTIONS", "EXPECTED", "SKIP"])
def test_the_expectation_tables_only_name_registered_pairs(name):
    table = globals()[name]
    unknown = [
        (rule, problem)
        for rule, problem in table
        if rule not in ex.RULES or problem not in ex.PROBLEMS
    ]
    assert unknown == [], (
        f"{name} names pairs whose rule or problem is not registered: {unknown}; "
        f"rules: {list(ex.RULES)}; problems: {list(ex.PROBLEMS)}"
    )


def test_every_registered_problem_is_in_the_matrix():
    missing = [key for key in ex.PROBLEMS if key not in PROBLEMS]
    assert missing == [], f"problems without a tiny default (test_cases): {missing}"


def test_every_selectable_curvature_is_an_optimizer():
    """The generic rule drives every registered curvature key."""
    options = {"num_samples": 40, "hidden": (4,)}
    keys = [
        key
        for key, spec in ex.CURVATURES.items()
        if spec.selectable and spec.source == "builtin"
    ]
    histories = ex.compare(
        "moons_mlp",
        [
            {"rule": "precondition", "rule_options": {"curvature": key}, "label": key}
            for key in keys
        ],
        problem_options=options,
        steps=4,
        device="cpu",
    )
    for key, history in histories.items():
        # not declared PSD (the Hessian, its exact or Hutchinson diagonal): a tanh
        # network's H is indefinite, so precondition may stop (its on_indefinite
        # default); the PSD curvatures must run and lower the loss
        if not ex.CURVATURES[key].psd:
            assert history.status in ("ok", "indefinite"), history.message
            continue
        assert history.status == "ok", (key, history.message)
        assert history.last("loss") < history.column("loss")[0], key


def test_a_curvature_registered_after_import_is_an_optimizer():
    @ex.register_curvature("half_identity", label="½·I", psd=True)
    def half_identity(problem, theta, batch=None):
        return 0.5 * torch.eye(problem.num_params, dtype=theta.dtype)

    try:
        config = ex.RunConfig(
            "logreg_2d",
            rule="precondition",
            rule_options={"curvature": "half_identity", "damping": 0.5},
            steps=3,
            device="cpu",
        )
        history = ex.run(config)
        sgd = ex.run(config.replace(rule="sgd", rule_options={"lr": 1.0}))
    finally:
        ex.CURVATURES.unregister("half_identity")
    # the first step uses λ = ½: (½I + ½I)⁻¹g = g, the SGD step with lr 1
    assert history.status == "ok"
    assert torch.allclose(history.trajectory[1], sgd.trajectory[1], rtol=1e-12)
    assert history.last("loss") < history.column("loss")[0]
