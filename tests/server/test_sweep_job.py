"""A sweep on the app's engine: the library's table, in turn with other sessions."""

from __future__ import annotations

import pandas as pd

import explorer as ex
from explorer.runs import RunConfig
from explorer.ui.sweep_job import SweepJob

CONFIG = ex.SweepConfig(
    "linreg_2d",
    {"sgd": {"lr": [0.05, 0.2, 5.0]}, "natural_gradient": {"damping": [0.01, 0.1]}},
    seeds=(0, 1),
    steps=6,
    problem_options={"num_samples": 40},
)


def test_a_sweep_on_the_engine_is_the_librarys_table(make_engine):
    engine = make_engine(capacity=2)
    job = SweepJob(CONFIG, engine, session="a").start()
    assert job.wait(120)
    served = job.result().to_frame()
    library = ex.sweep(CONFIG).to_frame()
    columns = [c for c in library.columns if c not in ("wall_time", "reused")]
    pd.testing.assert_frame_equal(served[columns], library[columns], check_exact=True)
    assert job.counts()["finished"] == 10 and served["status"].eq("diverged").sum() == 2
    # the same sweep from another session is answered from the store
    again = SweepJob(CONFIG, engine, session="b").start()
    assert again.wait(30) and again.counts()["reused"] == 10


def test_a_long_sweep_shares_the_worker_with_another_session(make_engine):
    engine = make_engine(capacity=1)
    big = ex.SweepConfig(
        "linreg_2d", {"sgd": {"lr": [0.01 * (i + 1) for i in range(12)]}}, steps=40
    )
    sweep = SweepJob(big, engine, session="student-a").start()
    config = RunConfig("linreg_2d", {}, "natural_gradient", {}, steps=5, seed=3)
    (other,) = engine.submit("student-b", engine.run_tasks([config]), group="compare")
    assert other.wait(60) and sweep.wait(120)
    starts = sorted(t.computation.started_at for t in sweep.tickets)
    # the other session's run starts after at most two of the sweep's trials
    assert other.computation.started_at < starts[2]


def test_stop_leaves_the_queue_and_keeps_what_finished(make_engine):
    engine = make_engine(capacity=1)
    big = ex.SweepConfig(
        "linreg_2d", {"sgd": {"lr": [0.001 * (i + 1) for i in range(20)]}}, steps=200
    )
    job = SweepJob(big, engine, session="a").start()
    assert job.tickets[0].wait(60)
    job.cancel()
    assert job.wait(60)
    counts = job.counts()
    assert counts["finished"] >= 1 and counts["stopped"] >= 15
    rows = job.result().rows
    assert all(row["status"] != "cancelled" for row in rows)
    # a trial stopped midway is not cached: the same sweep again reuses exactly the
    # trials that ran to their end and runs every other one
    again = SweepJob(big, engine, session="b").start()
    assert again.wait(120)
    assert again.counts()["reused"] == len(rows)
    assert len(again.result().rows) == 20
