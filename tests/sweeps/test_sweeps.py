"""Sweeps: the grid, serial against Dask, resume, divergence, files and bad input."""

import math
import os
import signal

import pandas as pd
import pytest

import explorer as ex
from explorer.sweeps import best_settings, robustness
from explorer.sweeps.result import load_rows

GRID = {
    "sgd": {"lr": [0.05, 0.4, 5.0]},
    "natural_gradient": {"lr": [0.5, 1.0], "damping": [1e-3, 0.1]},
}


def small(**changes):
    fields = {
        "problem": "linreg_2d",
        "rules": GRID,
        "seeds": (0, 1),
        "steps": 8,
        "problem_options": {"num_samples": 40},
        "target_loss": 0.6,
    }
    fields.update(changes)
    return ex.SweepConfig(**fields)


def test_the_grid_crosses_every_option_with_every_seed():
    config = small()
    trials = config.trials()
    assert config.size() == len(trials) == (3 + 4) * 2
    assert len({t.trial_id for t in trials}) == len(trials)  # distinct, stable
    assert [t.trial_id for t in small().trials()] == [t.trial_id for t in trials]
    ng = [t for t in trials if t.rule == "natural_gradient"]
    assert {(t.options["lr"], t.options["damping"]) for t in ng} == {
        (0.5, 1e-3), (0.5, 0.1), (1.0, 1e-3), (1.0, 0.1)
    }  # fmt: skip
    sampled = small(sample=2).trials()
    assert len(sampled) == (2 + 2) * 2
    assert {t.trial_id for t in sampled} <= {t.trial_id for t in trials}


def test_each_trial_is_the_run_of_its_config():
    result = ex.sweep(small(rules={"sgd": {"lr": [0.05]}}, seeds=(3,)))
    row = result.to_frame().iloc[0]
    history = ex.run(
        ex.RunConfig(
            "linreg_2d", {"num_samples": 40}, "sgd", {"lr": 0.05}, steps=8, seed=3
        )
    )
    assert row["final_loss"] == history.last("loss")
    assert row["best_loss"] == min(history.column("loss"))
    assert result.curve(row["trial_id"]) == history.column("loss")


def test_a_run_that_blows_up_is_diverged_early_and_kept():
    frame = ex.sweep(small(rules={"sgd": {"lr": [5.0]}}, seeds=(0,))).to_frame()
    row = frame.iloc[0]
    assert row["status"] == "diverged"
    assert row["steps_run"] < 8  # stopped early
    assert row["final_loss"] > 100 * 0.1


def test_serial_and_dask_give_identical_tables(dask_client):
    config = small()
    serial = ex.sweep(config).to_frame()
    dask = ex.sweep(config, dask_client).to_frame()
    columns = [c for c in serial.columns if c != "wall_time"]
    pd.testing.assert_frame_equal(serial[columns], dask[columns], check_exact=True)


def test_resume_runs_nothing_twice_and_keeps_every_finished_trial(tmp_path):
    out = tmp_path / "results.parquet"
    part = small(rules={"sgd": GRID["sgd"]})
    first = ex.sweep(part, out=out)
    assert first.counts == {"trials": 6, "run": 6, "reused": 0, "failed": 0}
    seen = []
    full = ex.sweep(small(), out=out, progress=lambda d, t, row: seen.append(row))
    assert full.counts["trials"] == 14
    assert full.counts["reused"] == 6 and full.counts["run"] == 8
    assert sum(row["reused"] for row in seen) == 6
    again = ex.sweep(small(), out=out)
    assert again.counts["run"] == 0 and again.counts["reused"] == 14
    pd.testing.assert_frame_equal(
        again.to_frame().drop(columns="reused"), full.to_frame().drop(columns="reused")
    )
    assert len(load_rows(out, small())) == 14


def test_a_file_from_an_incompatible_sweep_is_refused(tmp_path):
    out = tmp_path / "results.parquet"
    ex.sweep(small(rules={"sgd": {"lr": [0.05]}}, seeds=(0,)), out=out)
    before = out.read_bytes()
    with pytest.raises(ValueError, match="incompatible sweep.*steps"):
        ex.sweep(small(rules={"sgd": {"lr": [0.05]}}, seeds=(0,), steps=9), out=out)
    assert out.read_bytes() == before  # never half-written


def test_aggregates_pick_the_best_setting_and_count_the_robust_share():
    frame = ex.sweep(small()).to_frame()
    best = best_settings(frame).set_index("rule")
    sgd = frame[frame.rule == "sgd"].groupby("lr")["final_loss"].mean()
    assert best.loc["sgd", "lr"] == sgd.idxmin()
    assert best.loc["sgd", "mean_final_loss"] == pytest.approx(sgd.min())
    assert best.loc["sgd", "seeds"] == 2
    share = robustness(frame, 0.6)
    expected = (frame[frame.rule == "sgd"]["best_loss"] <= 0.6).mean()
    assert share["sgd"] == pytest.approx(expected)
    assert 0 <= share["natural_gradient"] <= 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rules": {"nope": {}}}, "nope"),
        ({"rules": {"sgd": {"lr": []}}}, "empty list"),
        ({"rules": {"sgd": {"lr": 0.1}}}, "list of values"),
        ({"rules": {"sgd": {"lr": [-1.0]}}}, "out of range"),
        ({"rules": {"sgd": {"nope": [1]}}}, "nope"),
        ({"seeds": ()}, "no seeds"),
        ({"seeds": (-1,)}, "≥ 0"),
        ({"rules": {}}, "no rules"),
        ({"max_trials": 5}, "14 trials, above the limit of 5"),
    ],
)
def test_bad_input_is_a_value_error_naming_it(changes, message):
    with pytest.raises(ValueError, match=message):
        ex.sweep(small(**changes))


def test_an_unreachable_scheduler_is_refused_within_seconds():
    with pytest.raises(ValueError, match="Could not reach the Dask scheduler"):
        ex.sweep(small(), "tcp://127.0.0.1:9")


@pytest.mark.slow
def test_a_two_process_local_cluster_gives_the_serial_table():
    config = small(rules={"natural_gradient": GRID["natural_gradient"]})
    serial = ex.sweep(config).to_frame()
    local = ex.sweep(config, "local:2").to_frame()
    columns = [c for c in serial.columns if c != "wall_time"]
    # every trial runs torch on one thread, in this process as on a worker, so the
    # sums are taken in the same order: identical bit for bit
    pd.testing.assert_frame_equal(serial[columns], local[columns], check_exact=True)
    assert local["final_loss"].map(math.isfinite).all()


@pytest.mark.slow
def test_a_worker_killed_mid_sweep_loses_no_trial(tmp_path):
    from distributed import Client, LocalCluster

    config = small(rules={"natural_gradient": GRID["natural_gradient"]}, steps=30)
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, dashboard_address=None, host="127.0.0.1"
    )
    client = Client(cluster)
    pids = client.run(os.getpid)  # {worker address: its process id}
    killed = []

    def progress(done, total, row):
        if not killed:  # after the first result, crash one worker process (SIGKILL)
            victim = sorted(pids)[0]
            os.kill(pids[victim], signal.SIGKILL)
            killed.append(victim)

    try:
        out = tmp_path / "results.parquet"
        result = ex.sweep(config, client, out=out, progress=progress)
    finally:
        client.close()
        cluster.close()
    assert killed
    frame = result.to_frame()
    assert len(frame) == config.size() and set(frame.status) == {"ok"}
    assert len(load_rows(out, config)) == config.size()  # every finished trial kept
