"""Sweep aggregates against brute force: target, grids, outlines, profiles, TOML."""

import itertools
import json
import math
import tomllib

import numpy as np
import pytest

import explorer as ex
from explorer.cli import main
from explorer.plots.sweeps import grid_figure, outline_segments, profile_figure
from explorer.sweeps import SweepResult, best_settings
from explorer.sweeps.analysis import (
    TARGET_SHARE,
    performance_profile,
    rule_grid,
    steps_to,
    target_loss,
)
from explorer.sweeps.report import config_toml, sweep_html, tuned_runs


@pytest.fixture(scope="module")
def moons():
    config = ex.SweepConfig(
        "moons_mlp",
        {
            "natural_gradient": {"lr": [0.3, 1.0, 3.0], "damping": [1e-3, 0.1]},
            "sgd": {"lr": [0.1, 1.0, 30.0]},
        },
        seeds=(0, 1),
        steps=12,
        problem_options={"num_samples": 60},
    )
    return ex.sweep(config)


def test_the_default_target_keeps_ninety_percent_of_the_best_decrease(moons):
    initial = np.median([row["curve"][0] for row in moons.rows])
    best = min(x for row in moons.rows for x in row["curve"] if math.isfinite(x))
    expected = best + (1 - TARGET_SHARE) * (initial - best)
    assert target_loss(moons) == pytest.approx(expected, rel=1e-15)
    given = ex.SweepConfig("linreg_2d", {"sgd": {}}, target_loss=0.25)
    assert target_loss(SweepResult(given, [])) == 0.25


def test_a_rule_grid_is_the_mean_over_seeds_of_each_cell(moons):
    frame = moons.to_frame()
    target = target_loss(moons)
    grid = rule_grid(frame, "natural_gradient", target)
    assert (grid.x_name, grid.y_name) == ("lr", "damping")
    assert grid.xs == (0.3, 1.0, 3.0) and grid.ys == (1e-3, 0.1)
    rows = frame[frame.rule == "natural_gradient"]
    for (i, damping), (j, lr) in itertools.product(
        enumerate(grid.ys), enumerate(grid.xs)
    ):
        cell = rows[(rows.lr == lr) & (rows.damping == damping)]
        assert len(cell) == 2  # both seeds
        assert grid.final[i, j] == pytest.approx(cell.final_loss.mean(), rel=1e-15)
        assert grid.converged[i, j] == bool((cell.best_loss <= target).all())
        assert grid.diverged[i, j] == (cell.status == "diverged").mean()
    sgd = rule_grid(frame, "sgd", target)
    assert sgd.y_name is None and sgd.final.shape == (1, 3)
    assert sgd.diverged[0, 2] == 1.0  # lr = 30 blows up on every seed


def test_the_outline_encloses_exactly_the_marked_cells():
    mask = np.array([[0, 0, 0], [0, 1, 1], [0, 0, 0]], bool)
    xs, ys = outline_segments(mask)
    segments = {
        tuple(sorted([(xs[k], ys[k]), (xs[k + 1], ys[k + 1])]))
        for k in range(0, len(xs), 3)
    }
    # two cells side by side: a 2 × 1 rectangle from (0.5, 0.5) to (2.5, 1.5)
    expected = {
        ((0.5, 0.5), (1.5, 0.5)), ((1.5, 0.5), (2.5, 0.5)),
        ((0.5, 1.5), (1.5, 1.5)), ((1.5, 1.5), (2.5, 1.5)),
        ((0.5, 0.5), (0.5, 1.5)), ((2.5, 0.5), (2.5, 1.5)),
    }  # fmt: skip
    assert segments == expected
    assert outline_segments(np.zeros((2, 2), bool)) == ([], [])


def test_the_heatmap_shows_log_loss_the_outline_and_diverged_cells(moons):
    frame = moons.to_frame()
    grid = rule_grid(frame, "sgd", target_loss(moons))
    figure = grid_figure(grid, target_loss(moons))
    heat = figure.data[0]
    finite = np.isfinite(grid.final[0])
    assert np.allclose(
        np.asarray(heat.z, float)[0][finite], np.log10(grid.final[0][finite])
    )
    assert "× diverged" in [trace.name for trace in figure.data]
    assert list(figure.layout.xaxis.ticktext) == ["0.1", "1", "30"]


def _synthetic(curves: dict[str, list[float]]) -> SweepResult:
    """A sweep of one trial per rule with the given loss curves."""
    config = ex.SweepConfig("linreg_2d", {rule: {} for rule in curves}, steps=5)
    rows = [
        {
            "trial_id": rule, "rule": rule, "seed": 0, "options": {},
            "status": "ok", "final_loss": curve[-1], "best_loss": min(curve),
            "steps_to_target": math.nan, "steps_run": 5.0, "wall_time": 0.0,
            "grad_evals": 0.0, "curvature_products": 0.0, "curve": curve,
        }
        for rule, curve in curves.items()
    ]  # fmt: skip
    return SweepResult(config, rows)


def test_performance_profiles_match_dolan_and_more_by_hand():
    # problem A: sgd reaches 0.5 at step 2, natural gradient at step 5 (losses counted
    # from step 0: 3 against 6 evaluations, ratio 2); problem B: sgd never does
    a = _synthetic(
        {"sgd": [1, 0.8, 0.5, 0.4, 0.3, 0.2], "natural_gradient": [1, 1, 1, 1, 1, 0.5]}
    )
    b = _synthetic(
        {"sgd": [1, 1, 1, 1, 1, 1], "natural_gradient": [1, 0.4, 0.3, 0.2, 0.1, 0.0]}
    )
    profile = performance_profile({"A": a, "B": b}, targets={"A": 0.5, "B": 0.5})
    ratios = profile.attrs["ratios"]
    assert ratios.loc["A", "sgd"] == 1.0 and ratios.loc["A", "natural_gradient"] == 2.0
    assert ratios.loc["B", "natural_gradient"] == 1.0
    assert math.isinf(ratios.loc["B", "sgd"])
    assert list(profile.index) == [1.0, 2.0]
    assert profile.loc[1.0].to_dict() == {"sgd": 0.5, "natural_gradient": 0.5}
    assert profile.loc[2.0].to_dict() == {"sgd": 0.5, "natural_gradient": 1.0}
    assert steps_to([3.0, 2.0, 1.0], 2.0, steps=[0, 10, 20]) == 10.0
    figure = profile_figure(profile)
    assert [t.name for t in figure.data] == ["sgd", "natural_gradient"]
    assert list(figure.data[1].y) == [0.5, 1.0] and figure.layout.xaxis.type == "log"


def test_tuned_runs_are_the_best_mean_setting_with_every_seed(moons):
    frame = moons.to_frame()
    for run in tuned_runs(moons):
        rows = frame[frame.rule == run.rule]
        options = ["lr", "damping"] if run.rule == "natural_gradient" else ["lr"]
        means = rows.groupby(options)["final_loss"].mean()
        assert run.mean_final_loss == pytest.approx(means.min(), rel=1e-15)
        best = means.idxmin()
        best = best if isinstance(best, tuple) else (best,)
        assert tuple(run.options[o] for o in options) == best
        assert len(run.trial_ids) == 2


def test_the_toml_reruns_the_same_trials(moons):
    config = moons.config
    data = tomllib.loads(config_toml(config))
    again = ex.SweepConfig(**data)
    assert [t.trial_id for t in again.trials()] == [t.trial_id for t in config.trials()]


def test_the_html_report_has_the_tuned_curves_and_a_grid_per_rule(moons):
    page = sweep_html(moons)
    assert page.count("<h2>") == 3  # tuned curves + 2 rules
    assert "natural_gradient: grid" in page and "sgd: grid" in page
    assert "robustness" in page


def test_the_cli_writes_the_html_report_and_refuses_a_folder(tmp_path, capsys):
    path = tmp_path / "sweep.toml"
    path.write_text(
        'problem = "linreg_2d"\nsteps = 4\n[rules.sgd]\nlr = [0.05, 0.2]\n',
        encoding="utf-8",
    )
    report = tmp_path / "report.html"
    code = main(["sweep", "--config", str(path), "--html", str(report), "--quiet"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["html"] == str(report)
    assert "sgd: grid" in report.read_text(encoding="utf-8")
    with pytest.raises(SystemExit) as refused:
        main(["sweep", "--config", str(path), "--html", str(tmp_path), "--quiet"])
    assert refused.value.code == 2
    assert "is a folder" in capsys.readouterr().err


def test_the_area_under_the_curve_is_the_trapezoid_rule_per_step(moons):
    frame = moons.to_frame()
    for row, auc in zip(moons.rows, frame["loss_auc"], strict=True):
        if row["status"] != "ok":
            assert math.isinf(auc)  # stopped early: no full area
            continue
        expected = (
            np.trapezoid(row["curve"], row["curve_steps"]) / row["curve_steps"][-1]
        )
        assert auc == pytest.approx(expected, rel=1e-12)
    best = best_settings(frame, by="loss_auc").set_index("rule")
    sgd = frame[frame.rule == "sgd"].groupby("lr")["loss_auc"].mean()
    assert best.loc["sgd", "lr"] == sgd[np.isfinite(sgd)].idxmin()
