"""The fair queue: round-robin over sessions, places, sharing, Stop, limits, liveness."""

from __future__ import annotations

import threading
import time

import pytest

from explorer.curvature.registry import CURVATURES
from explorer.runs import RunConfig, run
from explorer.runs.loop import warm_up_torch_func
from explorer.server.dispatch import Task
from explorer.server.engine import config_key
from explorer.server.limits import LimitExceeded, Limits
from explorer.server.tasks import PluginSources, run_task
from tests import waiting


def wait_until(predicate, timeout=30.0):
    return waiting.wait_until(predicate, timeout)


def hold(worker, channel, name, seconds):
    """A view task that runs until stopped or ``seconds`` pass; returns its name."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not channel.cancelled():
        time.sleep(0.01)
    return name


def task(engine, name, seconds=0.3):
    return engine.view_task("hold", hold, name, seconds, label=name)


def test_sessions_are_served_in_turn_not_first_come_first_served(make_engine):
    engine = make_engine(capacity=1)
    first = engine.submit("a", [task(engine, f"a{i}") for i in range(3)], group="g")
    second = engine.submit("b", [task(engine, "b0")], group="g")
    third = engine.submit("c", [task(engine, "c0")], group="g")
    tickets = first + second + third
    assert wait_until(lambda: first[0].phase == "running")
    # a0 runs; then one of each session in turn: b0, c0, a1, a2.
    assert [t.position() for t in tickets] == [None, 3, 4, 1, 2]
    assert all(t.wait(30) for t in tickets)
    order = sorted(tickets, key=lambda t: t.computation.started_at)
    assert [t.result for t in order] == ["a0", "b0", "c0", "a1", "a2"]
    assert all(t.eta() is None for t in tickets)


def test_identical_requests_share_one_computation(make_engine):
    engine = make_engine(capacity=1)
    (a,) = engine.submit("a", [task(engine, "same", 0.2)], group="g")
    (b,) = engine.submit("b", [task(engine, "same", 0.2)], group="g")
    (c,) = engine.submit("c", [task(engine, "other", 0.2)], group="g")
    assert a.computation is b.computation and c.computation is not a.computation
    assert a.wait(30) and b.wait(30) and c.wait(30)
    assert (a.result, b.result, c.result) == ("same", "same", "other")
    (later,) = engine.submit("d", [task(engine, "same", 0.2)], group="g")
    assert later.done and later.cached and later.result == "same"


def test_one_session_leaving_a_shared_computation_does_not_stop_it(make_engine):
    engine = make_engine(capacity=1)
    (a,) = engine.submit("a", [task(engine, "shared", 0.5)], group="g")
    (b,) = engine.submit("b", [task(engine, "shared", 0.5)], group="g")
    assert wait_until(lambda: a.phase == "running")
    a.cancel()
    assert a.done and a.phase == "cancelled" and a.result is None
    assert b.wait(30) and b.result == "shared"


def test_stop_reaches_the_worker_and_leaves_the_queue(make_engine):
    engine = make_engine(capacity=1)
    running, queued = engine.submit(
        "a", [task(engine, "long", 60), task(engine, "next", 60)], group="g"
    )
    assert wait_until(lambda: running.phase == "running")
    started = time.monotonic()
    running.cancel()
    queued.cancel()
    assert queued.done and queued.error == "stopped before it started"
    assert running.wait(10) and time.monotonic() - started < 5
    assert running.result == "long"  # the task saw Stop and returned


def test_a_closed_tab_cancels_its_work(make_engine):
    engine = make_engine(capacity=1)
    open_tab = threading.Event()
    open_tab.set()
    (ticket,) = engine.submit(
        "a", [task(engine, "tab", 60)], group="g", alive=open_tab.is_set
    )
    assert wait_until(lambda: ticket.phase == "running")
    open_tab.clear()
    assert ticket.wait(15), "the job of a closed tab kept running"


def test_the_time_limit_stops_a_run_with_its_partial_history(make_engine):
    engine = make_engine(
        capacity=1, limits=Limits(max_steps=10**6, max_steps_x_p=1e9, job_seconds=0.5)
    )
    warm_up_torch_func()  # once per process (≈1.5 s): not inside the 0.5 s budget
    config = RunConfig("linreg_2d", rule="sgd", steps=500_000)
    (ticket,) = engine.submit("a", engine.run_tasks([config]), group="g")
    assert ticket.wait(30)
    history = ticket.result
    assert history.status == "cancelled" and 1 < len(history) < 500_001
    assert "EXPLORER_JOB_SECONDS" in history.message
    assert len(engine.store) == 0


def test_limits_are_refused_on_the_worker_before_the_first_step(make_engine):
    engine = make_engine(capacity=1, limits=Limits(max_steps_x_p=100))
    config = RunConfig("linreg_2d", rule="sgd", steps=60)  # 60 × P = 2 → 120
    (ticket,) = engine.submit("a", engine.run_tasks([config]), group="g")
    assert ticket.wait(30) and ticket.result is None
    assert "EXPLORER_MAX_STEPS_X_P" in ticket.error and "120" in ticket.error


def test_jobs_per_session_are_bounded(make_engine):
    engine = make_engine(capacity=1, limits=Limits(jobs_per_session=2))
    engine.submit("a", [task(engine, "one", 30)], group="compare")
    engine.submit("a", [task(engine, "two", 30)], group="curvature")
    with pytest.raises(LimitExceeded, match="EXPLORER_JOBS_PER_SESSION"):
        engine.submit("a", [task(engine, "three", 30)], group="landscape")
    engine.submit("b", [task(engine, "other session", 30)], group="landscape")
    # the same group replaces its own job rather than counting twice
    engine.submit("a", [task(engine, "two again", 30)], group="curvature")


def test_runs_match_the_library_and_distinct_configs_never_share(make_engine):
    engine = make_engine(capacity=2)
    seeds = [RunConfig("linreg_2d", rule="sgd", steps=20, seed=s) for s in (0, 5)]
    a, b = (
        engine.submit(s, engine.run_tasks([c]), group="g")[0]
        for s, c in zip("ab", seeds)
    )
    assert a.computation is not b.computation
    assert a.wait(30) and b.wait(30)
    assert a.result.same_as(run(seeds[0])) and b.result.same_as(run(seeds[1]))
    assert not a.result.same_as(b.result)
    assert config_key(seeds[0]) != config_key(seeds[1])
    assert config_key(seeds[0]) == config_key(
        RunConfig("linreg_2d", rule="sgd", steps=20, seed=0)
    )


def test_results_survive_a_restart_on_disk(make_engine, tmp_path):
    config = RunConfig("linreg_2d", rule="sgd", steps=20, seed=3)
    first = make_engine(directory=tmp_path / "cache")
    (ticket,) = first.submit("a", first.run_tasks([config]), group="g")
    assert ticket.wait(30) and not ticket.cached
    restarted = make_engine(directory=tmp_path / "cache")
    (again,) = restarted.submit("b", restarted.run_tasks([config]), group="g")
    assert again.done and again.cached and again.result.same_as(ticket.result)


def test_a_task_waits_for_a_worker_when_none_is_connected(make_engine):
    engine = make_engine(capacity=0)
    (ticket,) = engine.submit("a", [task(engine, "alone")], group="g")
    time.sleep(0.5)
    assert ticket.phase == "queued" and ticket.position() == 1
    ticket.cancel()
    assert ticket.done


def test_uploaded_plugins_are_loaded_on_the_worker(make_engine):
    source = (
        "import explorer as ex\n"
        "from explorer.curvature.fisher import FisherOperator\n"
        "@ex.register_curvature('test_worker_plugin', label='worker plugin')\n"
        "class Copy(FisherOperator):\n"
        "    pass\n"
    )
    engine = make_engine(plugins=PluginSources(uploaded=(("mine.py", source),)))
    (ticket,) = engine.submit("a", [engine.view_task("keys", _keys)], group="g")
    try:
        assert ticket.wait(30)
        assert "test_worker_plugin" in ticket.result
    finally:  # the in-process worker shares this process's registry
        CURVATURES.unregister("test_worker_plugin")


def _keys(worker, channel):
    from explorer.curvature.registry import CURVATURES

    return sorted(CURVATURES)


def test_run_task_is_the_library_run(make_engine):
    config = RunConfig("linreg_2d", rule="adam", steps=10)
    engine = make_engine()
    task_ = Task("k", run_task, (config, Limits(), None))
    (ticket,) = engine.submit("a", [task_], group="g")
    assert ticket.wait(30) and ticket.result.same_as(run(config))
