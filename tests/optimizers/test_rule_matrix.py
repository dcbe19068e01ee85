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

#: problem -> (problem options, RunConfig fields): all tiny.
PROBLEMS = {
    "gaussian_fit": ({"num_samples": 50}, {}),
    "linreg_2d": ({"num_samples": 60}, {}),
    "logreg_2d": ({"num_samples": 60}, {}),
    "tiny_tanh": ({"num_samples": 30}, {}),
    "rosenbrock": ({}, {}),
    "moons_mlp": ({"num_samples": 60, "hidden": (5,)}, {}),
    "digits_mlp": ({"hidden": (4,), "train_size": 60}, {}),
    "digits_autoencoder": ({"hidden": (3,)}, {"batch_size": 100}),
    "stream_logreg": ({"dim": 3, "eval_size": 2000}, {"batch_size": 20}),
}

#: Rule options per (rule, problem) where the default would not suit the problem.
OPTIONS = {
    ("sgd", "rosenbrock"): {"lr": 1e-3},  # ‖∇h(θ₀)‖ ≈ 230: lr 0.1 diverges
    ("adam", "rosenbrock"): {"lr": 0.05},
}

#: Pairs that stop early by design: the status and why.
EXPECTED = {
    ("newton", "tiny_tanh"): ("indefinite", "H has a negative eigenvalue at θ₀"),
    ("newton", "moons_mlp"): ("indefinite", "H of a tanh network is indefinite"),
    ("newton", "digits_mlp"): ("indefinite", "H of a tanh network is indefinite"),
    ("newton", "digits_autoencoder"): ("indefinite", "H is indefinite"),
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
    problem_options, fields = PROBLEMS[problem]
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


def test_the_skip_table_only_names_real_pairs():
    for table in (OPTIONS, EXPECTED, SKIP):
        for rule, problem in table:
            assert rule in ex.RULES and problem in PROBLEMS


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
        if key in ("hessian", "diag_hessian"):  # tanh networks: H indefinite
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
