"""Comparison jobs on the engine: results, failures, Stop and the shared cache."""

import pytest

from explorer.runs import RunConfig, run
from explorer.server.engine import Engine
from explorer.server.limits import Limits
from explorer.server.store import ResultStore
from explorer.ui.jobs import ComparisonJob


@pytest.fixture
def engine(dask_client):
    limits = Limits(max_steps=10**6, max_steps_x_p=1e9)
    engine = Engine(dask_client, store=ResultStore(None), capacity=1, limits=limits)
    yield engine
    engine.dispatcher.close()


def _configs(*rules, steps=5, **extra):
    return [RunConfig("linreg_2d", rule=rule, steps=steps, **extra) for rule in rules]


def test_job_matches_direct_runs_and_fills_the_cache(engine):
    configs = _configs("sgd", "gauss_newton")
    job = ComparisonJob(configs, engine, session="a").start()
    assert job.wait(60)
    histories = job.histories()
    assert list(histories) == ["sgd", "gauss_newton"]
    for config in configs:
        assert histories[config.display_label].same_as(run(config))
    assert len(engine.store) == 2 and job.fraction_done() == 1.0
    again = ComparisonJob(configs, engine, session="b").start()
    assert again.done  # answered from the store, without queueing
    assert all(state.cached for state in again.states)
    assert again.histories()["sgd"].same_as(histories["sgd"])
    assert again.compute_seconds == 0.0


def test_a_rule_that_cannot_run_does_not_hide_the_others(engine):
    # adam, which does not diverge on rosenbrock (sgd at its default lr does)
    configs = [RunConfig("rosenbrock", rule=rule, steps=3) for rule in ("kfac", "adam")]
    job = ComparisonJob(configs, engine, session="a").start()
    assert job.wait(60)
    assert "nn.Linear" in job.failures()["kfac"]
    assert job.histories()["adam"].status == "ok"


def test_stop_keeps_the_running_rules_partial_history_and_dequeues_the_rest(engine):
    configs = _configs("sgd", "adam", steps=200_000)
    job = ComparisonJob(configs, engine, session="a").start()
    for _ in range(200):  # bounded: until the first run streams rows
        if job.states[0].rows:
            break
        job.wait(0.05)
    assert job.states[1].phase == "queued" and job.position() == 1
    job.cancel()
    assert job.wait(60)
    first, second = job.states
    assert first.history is not None and first.history.status == "cancelled"
    assert 1 < len(first.history) < 200_001
    assert second.error == "stopped before it started"
    assert len(engine.store) == 0  # a stopped run is not a result to share


def test_progress_rows_stream_while_running(engine):
    (config,) = _configs("sgd", steps=30_000)
    job = ComparisonJob([config], engine, session="a").start()
    seen = []
    for _ in range(400):
        rows = job.states[0].rows
        if rows:
            seen.append(rows[-1]["step"])
        if len(set(seen)) >= 3:
            break
        job.wait(0.05)
    job.cancel()
    job.wait(60)
    assert len(set(seen)) >= 3 and seen == sorted(seen)
    assert 0 < job.fraction_done() <= 1.0
