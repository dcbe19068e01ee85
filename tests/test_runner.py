"""RunConfig, run() and compare(): validation, determinism, failures, costs."""

import math
import threading

import numpy as np
import pytest
import torch

import explorer as ex
from explorer.optimizers import RuleSpec, Transform
from explorer.runs import DEFAULT_EXPERIMENT
from explorer.runs.loop import record_plan

CPU = {"device": "cpu"}


# ------------------------------------------------------------------- RunConfig
def test_config_is_frozen_hashable_and_normalizes_lists():
    a = ex.RunConfig(
        problem="digits_mlp",
        problem_options={"hidden": [32]},
        rule="natural_gradient",
        rule_options={"damping": 1e-3},
        steps=50,
        seed=0,
    )
    b = ex.RunConfig("digits_mlp", {"hidden": (32,)}, "natural_gradient",
                     {"damping": 0.001}, steps=50)  # fmt: skip
    assert a == b and hash(a) == hash(b)
    assert {a: 1}[b] == 1
    assert a.problem_options["hidden"] == (32,)
    with pytest.raises(AttributeError):
        a.steps = 3  # type: ignore[misc]
    assert ex.RunConfig.from_dict(a.to_dict()) == a
    assert a.to_dict()["problem_options"] == {"hidden": [32]}
    assert a.replace(steps=3).steps == 3
    assert a.display_label == "natural_gradient"
    assert a.replace(label="NG, λ = 1e-3").display_label == "NG, λ = 1e-3"


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"rule_options": {"lr": -1}}, ["'lr'", "-1", "(0, 1000]"]),
        ({"rule": "adam", "rule_options": {"beta1": 1.5}}, ["'beta1'", "1.5", "0.999"]),
        ({"rule": "kfac", "rule_options": {"damping": "lots"}}, ["'damping'", "lots"]),
        ({"rule": "kfac", "rule_options": {"output_factor": "x"}}, ["'exact'", "'mc'"]),
        (
            {"rule": "natural_gradient", "rule_options": {"dampin": 1}},
            ["'dampin'", "damping"],
        ),
        ({"rule": "nesterov"}, ["unknown update rule", "natural_gradient"]),
        (
            {"rule": "precondition", "rule_options": {"curvature": "fisherr"}},
            ["unknown curvature", "kfac"],
        ),
        (
            {"rule": "precondition", "rule_options": {"curvature": "matrix"}},
            ["needs a tensor"],
        ),
        ({"steps": -1}, ["'steps'", "-1"]),
        ({"batch_size": 0}, ["'batch_size'", "[1,"]),
        ({"averaging": "polyak"}, ["'averaging'", "'uniform'"]),
        ({"device": "gpu"}, ["'device'", "'cuda:N'"]),
        ({"problem_options": {"hidden": [0]}}, ["'hidden'", "[1, 4096]"]),
    ],
)
def test_invalid_settings_raise_value_errors_naming_value_and_range(fields, words):
    with pytest.raises(ValueError) as error:
        ex.RunConfig(**{"problem": "digits_mlp", **fields})
    for word in words:
        assert word in str(error.value)


def test_configs_and_histories_pickle_for_caching():
    import pickle

    config = ex.RunConfig("linreg_2d", {"num_samples": 20}, "kfac", steps=2, **CPU)
    assert pickle.loads(pickle.dumps(config)) == config
    assert hash(pickle.loads(pickle.dumps(config))) == hash(config)
    history = ex.run(config)
    assert pickle.loads(pickle.dumps(history)).same_as(history, ignore=())


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="no field 'stpes'"):
        ex.RunConfig.from_dict({"problem": "linreg_2d", "stpes": 3})


def test_compare_checks_every_config_before_running_any():
    calls = []
    with pytest.raises(ValueError, match="'lr'"):
        ex.compare(
            "linreg_2d",
            ["sgd", {"rule": "adam", "rule_options": {"lr": 0}}],
            progress=lambda *args: calls.append(args),
            steps=2,
        )
    with pytest.raises(ValueError, match="nn.Linear"):
        ex.compare(
            "rosenbrock", ["sgd", "kfac"], progress=lambda *a: calls.append(a), steps=2
        )
    with pytest.raises(ValueError, match="same label"):
        ex.compare("linreg_2d", ["sgd", "sgd"], progress=lambda *a: calls.append(a))
    assert calls == []


def test_run_refuses_an_incompatible_rule_before_any_step():
    with pytest.raises(ValueError, match="kfac.*nn.Linear"):
        ex.run(ex.RunConfig("gaussian_fit", rule="kfac", steps=1, **CPU))


# --------------------------------------------------------------- determinism
@pytest.mark.parametrize(
    ("rule", "options", "fields"),
    [
        ("sgd", {"momentum": 0.9}, {"batch_size": 16}),
        ("mc_natural_gradient", {}, {"batch_size": 32, "curvature_batch_size": 8}),
        ("kfac", {}, {"batch_size": 32}),
        ("hessian_free", {}, {"averaging": "ema"}),
    ],
)
def test_the_same_config_gives_an_identical_history(rule, options, fields):
    config = ex.RunConfig(
        "moons_mlp", {"num_samples": 80, "hidden": (4,)}, rule, options, steps=5,
        seed=3, **fields, **CPU,
    )  # fmt: skip
    first, second = ex.run(config), ex.run(config)
    assert first.status == "ok"
    assert first.same_as(second)
    other_seed = ex.run(config.replace(seed=4))
    assert not first.same_as(other_seed)


def _spy(base: str, options: dict, seen: list) -> RuleSpec:
    """A rule that records each gradient batch, then defers to ``base``."""

    def build(*_):
        inner = ex.RULES[base].create(options).transform

        def update(updates, state, ctx):
            seen.append(ctx.batch.inputs.clone())
            return inner.update(updates, state, ctx)

        return Transform(inner.init, update)

    return RuleSpec(key=f"spy_{base}", label="spy", build=build)


def test_compare_gives_every_rule_the_same_start_and_data_order():
    seen_sgd, seen_mc = [], []
    spies = [
        _spy("sgd", {}, seen_sgd),
        _spy("mc_natural_gradient", {"damping": 1.0}, seen_mc),
    ]
    for spy in spies:
        ex.register_rule(spy)
    try:
        histories = ex.compare(
            "stream_logreg",
            ["spy_sgd", "spy_mc_natural_gradient"],
            problem_options={"dim": 3, "eval_size": 500},
            steps=4,
            batch_size=8,
            curvature_batch_size=12,  # the MC rule draws 4 more examples each step
            **CPU,
        )
    finally:
        for spy in spies:
            ex.RULES.unregister(spy.key)
    first, second = histories.values()
    assert len(seen_sgd) == len(seen_mc) == 4
    for a, b in zip(seen_sgd, seen_mc):
        assert torch.equal(a, b)
    assert torch.equal(first.trajectory[0], second.trajectory[0])
    assert first.column("loss")[0] == second.column("loss")[0]
    assert first.column("examples") == [0, 8, 16, 24, 32]
    assert second.column("examples") == [0, 20, 40, 60, 80]


# ------------------------------------------------------ failure is information
def test_divergence_and_indefiniteness_stop_one_run_while_others_finish():
    histories = ex.compare(
        "tiny_tanh",
        [
            {"rule": "sgd", "rule_options": {"lr": 500.0}, "label": "sgd, lr 500"},
            {
                "rule": "newton",
                "rule_options": {"damping": 1e-3, "on_indefinite": "stop"},
            },
            "gauss_newton",
        ],
        problem_options={"theta0": (0.05, 0.05)},
        steps=200,
        **CPU,
    )
    diverged = histories["sgd, lr 500"]
    assert diverged.status == "diverged"
    assert "diverged at step" in diverged.message
    assert "Remedy: lower the learning rate" in diverged.message
    assert all(math.isfinite(v) for v in diverged.column("loss"))
    assert len(diverged) < 201
    newton = histories["newton"]
    assert newton.status == "indefinite"
    assert "stopped at step 1" in newton.message
    assert "not positive definite" in newton.message
    # under Levenberg–Marquardt (newton's default) λ must stay up: its floor too
    assert "raise the starting damping and min_damping" in newton.message
    assert "damping_adaptation='fixed'" in newton.message
    assert "negative_curvature='truncate'" in newton.message
    assert "'ggn'" in newton.message  # the other remedy: a PSD curvature
    assert newton.steps == [0]
    assert histories["gauss_newton"].status == "ok"
    assert len(histories["gauss_newton"]) == 201


def test_a_numerical_error_mid_run_is_status_error():
    calls = []

    @ex.register_curvature("flaky", psd=True)
    def flaky(problem, theta, batch=None):
        calls.append(1)
        if len(calls) > 2:
            raise ValueError("the flaky curvature gave up")
        return torch.eye(problem.num_params, dtype=theta.dtype)

    try:
        config = ex.RunConfig(
            "logreg_2d", rule="precondition",
            rule_options={"curvature": "flaky", "damping_adaptation": "fixed"},
            steps=5, **CPU,
        )  # fmt: skip
        history = ex.run(config)
    finally:
        ex.CURVATURES.unregister("flaky")
    assert history.status == "error"
    assert "stopped at step 3" in history.message
    assert "the flaky curvature gave up" in history.message
    assert history.steps == [0, 1, 2]


# --------------------------------------------------------- progress and cancel
def test_progress_reports_every_recorded_step_and_cancel_stops():
    stop = threading.Event()
    reports = []

    def progress(step, total, metrics):
        reports.append((step, total, metrics["label"], metrics["loss"]))
        if step == 3:
            stop.set()

    history = ex.run(
        ex.RunConfig("logreg_2d", rule="gauss_newton", steps=10, **CPU),
        progress=progress,
        cancel=stop,
    )
    assert history.status == "cancelled"
    assert history.message == "cancelled after 3 of 10 steps"
    assert history.steps == [0, 1, 2, 3]
    assert [r[0] for r in reports] == [0, 1, 2, 3]
    assert {r[1] for r in reports} == {10}
    assert [r[3] for r in reports] == history.column("loss")
    flag = iter([False, False, True])
    assert ex.run(
        ex.RunConfig("logreg_2d", steps=10, **CPU), cancel=lambda: next(flag)
    ).steps == [0, 1, 2]


# ------------------------------------------------------------ what is recorded
def test_record_plan_and_columns():
    assert record_plan(10, 3, False) == [0, 3, 7, 10]
    history = ex.run(
        ex.RunConfig("logreg_2d", steps=100, record_steps=4, record_log=True, **CPU)
    )
    assert history.steps == record_plan(100, 4, True) == [0, 1, 5, 22, 100]
    frame = history.to_frame()
    assert not frame.grad_norm.isna().any()
    assert frame.update_norm.isna().tolist() == [True] + [False] * 4
    assert history.trajectory.shape == (101, 2)  # the trajectory keeps every step
    assert history.trajectory_steps == list(range(101))


def test_metrics_by_hand_on_linear_regression():
    config = ex.RunConfig("linreg_2d", {"num_samples": 30}, "sgd", {"lr": 0.1},
                          steps=3, **CPU)  # fmt: skip
    history = ex.run(config)
    problem = ex.problem("linreg_2d", num_samples=30)
    frame = history.to_frame()
    for k in range(4):
        theta = history.trajectory[k]
        assert frame.loss[k] == pytest.approx(
            float(problem.objective(theta)), rel=1e-14
        )
        assert frame.grad_norm[k] == pytest.approx(
            float(problem.grad(theta).norm()), rel=1e-12
        )
    deltas = (history.trajectory[1:] - history.trajectory[:-1]).norm(dim=1)
    assert np.allclose(frame.update_norm[1:], deltas.numpy(), rtol=1e-12)
    assert frame.grad_evals.tolist() == [0, 1, 2, 3]
    assert frame.curvature_products.tolist() == [0, 0, 0, 0]
    assert frame.examples.tolist() == [0, 30, 60, 90]
    assert frame.wall_time.is_monotonic_increasing and frame.wall_time[0] == 0
    for name in ("test_loss", "accuracy", "averaged_loss", "damping", "rho",
                 "excess_loss"):  # fmt: skip
        assert frame[name].isna().all(), name


def test_classification_metrics_and_test_set():
    history = ex.run(ex.RunConfig("moons_mlp", {"num_samples": 80, "hidden": (4,)},
                                  steps=2, **CPU))  # fmt: skip
    problem = ex.problem("moons_mlp", num_samples=80, hidden=(4,))
    expected = problem.evaluate(history.trajectory[2])
    frame = history.to_frame()
    for name in ("loss", "accuracy", "test_loss", "test_accuracy"):
        assert frame[name].iloc[-1] == pytest.approx(expected[name], rel=1e-13)


@pytest.mark.parametrize("mode", ["uniform", "ema"])
def test_averaged_loss_by_hand(mode):
    config = ex.RunConfig(
        "logreg_2d", steps=6, averaging=mode, average_start=2, average_decay=0.5, **CPU
    )
    history = ex.run(config)
    problem = ex.problem("logreg_2d")
    thetas = history.trajectory
    for k in range(7):
        if k < 2:
            average = thetas[k]
        elif mode == "uniform":
            average = thetas[2 : k + 1].mean(0)
        else:
            average = thetas[2] if k == 2 else 0.5 * average + 0.5 * thetas[k]
        assert history.column("averaged_loss")[k] == pytest.approx(
            float(problem.objective(average)), rel=1e-12
        )


def test_excess_loss_on_the_streaming_problem():
    config = ex.RunConfig("stream_logreg", {"dim": 2, "eval_size": 400}, steps=3, **CPU)
    history = ex.run(config)
    assert config.batch_size == 100  # the problem's own default
    problem = ex.problem("stream_logreg", dim=2, eval_size=400)
    star = float(problem.objective(problem.theta_star))
    frame = history.to_frame()
    assert np.allclose(frame.excess_loss, frame.loss - star, rtol=0, atol=1e-15)
    assert frame.examples.tolist() == [0, 100, 200, 300]  # 100 fresh samples a step


def test_large_trajectories_are_subsampled(monkeypatch):
    import explorer.runs.history

    monkeypatch.setattr(explorer.runs.history, "TRAJECTORY_LIMIT", 10)
    history = ex.run(ex.RunConfig("logreg_2d", steps=20, **CPU))
    assert history.trajectory_steps == [0, 5, 10, 15, 20]
    assert torch.equal(history.trajectory[1], ex.run(
        ex.RunConfig("logreg_2d", steps=5, **CPU)).trajectory[-1])  # fmt: skip


def test_curvature_batches_and_costs():
    base = {"num_samples": 200, "hidden": (8,)}
    history = ex.run(ex.RunConfig(
        "moons_mlp", base, "hessian_free",
        {"damping_adaptation": "fixed", "cg_rtol": 1e-15},
        steps=3, batch_size=40, curvature_batch_size=30, **CPU,
    ))  # fmt: skip
    frame = history.to_frame()
    assert frame.examples.tolist() == [0, 40, 80, 120]  # curvature: a subset
    assert np.diff(frame.curvature_products).tolist() == [10, 10, 10]  # 10 CG products
    full = ex.run(ex.RunConfig("moons_mlp", base, "gauss_newton", steps=2,
                               curvature_batch_size=16, **CPU))  # fmt: skip
    assert full.column("examples") == [0, 150, 300]  # full batch, curvature subset


def test_device_auto_runs_on_the_cpu_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA is present")
    history = ex.run(ex.RunConfig("linreg_2d", steps=1, device="auto"))
    assert history.trajectory.device.type == "cpu"
    with pytest.raises(ValueError, match="CUDA is not available"):
        ex.run(ex.RunConfig("linreg_2d", steps=1, device="cuda"))


# ------------------------------------------------------------ the public API
def test_public_api_contract_quick():
    cfg = ex.RunConfig(problem="digits_mlp", problem_options={"hidden": [8]},
                       rule="natural_gradient", rule_options={"damping": 1e-3},
                       steps=3, seed=0)  # fmt: skip
    assert "loss" in ex.run(cfg).to_frame()
    hs = ex.compare("digits_mlp", ["sgd", "natural_gradient", "gauss_newton"],
                    problem_options={"hidden": [8]}, steps=3)  # fmt: skip
    assert list(hs) == ["sgd", "natural_gradient", "gauss_newton"]
    assert all(isinstance(h, ex.History) and h.ok for h in hs.values())
    h = ex.run(ex.RunConfig(problem="logreg_2d", rule="precondition",
                            rule_options={"curvature": "kfac"}))  # fmt: skip
    assert h.ok and h.last("loss") < h.column("loss")[0]


def test_the_default_comparison_runs():
    rules = [choice.rule for choice in DEFAULT_EXPERIMENT.rules]
    histories = ex.compare(
        DEFAULT_EXPERIMENT.problem,
        rules,
        **{**DEFAULT_EXPERIMENT.run_options, "steps": 2},
    )
    assert list(histories) == rules
    assert all(h.ok for h in histories.values())


@pytest.mark.slow
def test_public_api_contract_exactly():
    cfg = ex.RunConfig(problem="digits_mlp", problem_options={"hidden": [32]},
                       rule="natural_gradient", rule_options={"damping": 1e-3},
                       steps=50, seed=0)  # fmt: skip
    h = ex.run(cfg)
    assert len(h.to_frame()["loss"]) == 51
    hs = ex.compare("digits_mlp", ["sgd", "natural_gradient", "gauss_newton"], steps=50)
    assert all(len(h.to_frame()) == 51 for h in hs.values())
    assert hs["natural_gradient"].last("loss") < hs["sgd"].last("loss")
