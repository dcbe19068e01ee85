"""Background comparison jobs: results, failures, Stop and the cache."""

import pytest

from explorer.runs import RunConfig, run
from explorer.ui.jobs import ComparisonJob, ResultCache


def _configs(*rules, steps=5, **extra):
    return [RunConfig("linreg_2d", rule=rule, steps=steps, **extra) for rule in rules]


def test_job_matches_direct_runs_and_fills_the_cache():
    cache = ResultCache()
    configs = _configs("sgd", "gauss_newton")
    job = ComparisonJob(configs, cache).start()
    assert job.wait(60)
    histories = job.histories()
    assert list(histories) == ["sgd", "gauss_newton"]
    for config in configs:
        direct = run(config)
        assert histories[config.display_label].same_as(direct)
    assert len(cache) == 2 and job.fraction_done() == 1.0
    again = ComparisonJob(configs, cache).start()
    assert again.wait(60)
    assert all(state.cached for state in again.states)
    assert again.histories()["sgd"] is histories["sgd"]


def test_a_rule_that_cannot_run_does_not_hide_the_others():
    configs = [RunConfig("rosenbrock", rule=rule, steps=3) for rule in ("kfac", "sgd")]
    job = ComparisonJob(configs, ResultCache()).start()
    assert job.wait(60)
    assert "nn.Linear" in job.failures()["kfac"]
    assert job.histories()["sgd"].status == "ok"


def test_cancel_stops_the_running_rule_and_skips_the_rest():
    configs = _configs("sgd", "adam", steps=200_000)
    job = ComparisonJob(configs, ResultCache())
    job.cancel()  # before starting: nothing runs
    job.start()
    assert job.wait(60)
    assert set(job.failures()) == {"sgd", "adam"}
    job = ComparisonJob(configs, ResultCache()).start()
    job.wait(0.5)
    job.cancel()
    assert job.wait(60)
    first = job.states[0]
    assert first.history is not None and first.history.status == "cancelled"
    assert len(first.history) < 200_001
    assert job.states[1].error == "stopped before it started"


@pytest.mark.parametrize("status", ["cancelled", "error"])
def test_incomplete_results_are_not_cached(status):
    cache = ResultCache()
    config = _configs("sgd", steps=1)[0]
    history = run(config)
    history.status = status
    cache.put(config, history)
    assert cache.get(config) is None
