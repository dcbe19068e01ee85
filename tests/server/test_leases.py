"""A session's work ends with its session: leases (a fake clock), Stop that reaches a
view's computation between its steps, and refusals before a problem is built."""

from __future__ import annotations

import time

import pytest

from explorer.runs import ProblemConfig, RunConfig
from explorer.server import views
from explorer.server.limits import Limits
from explorer.server.tasks import WORKER, Stopped, WorkerCache, run_task, stop_if_asked
from tests.waiting import wait_until


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def hold(worker, channel, name, seconds):
    """Runs until stopped or ``seconds`` pass (a stand-in for a long view)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        stop_if_asked(channel)
        time.sleep(0.01)
    return name


def leased_engine(make_engine, lease=60.0, capacity=2):
    engine = make_engine(capacity=capacity, limits=Limits(lease_seconds=lease))
    clock = FakeClock()
    engine.dispatcher.clock = clock
    engine.dispatcher.liveness_seconds = 0.05  # read the leases often: no waiting
    return engine, clock


def test_the_work_of_a_session_that_stops_renewing_is_cancelled(make_engine):
    engine, clock = leased_engine(make_engine)
    engine.renew("gone")
    engine.renew("here")
    (gone,) = engine.submit(
        "gone", [engine.view_task("hold", hold, "g", 60)], group="v"
    )
    (here,) = engine.submit(
        "here", [engine.view_task("hold", hold, "h", 60)], group="v"
    )
    (library,) = engine.submit(  # never renewed: no lease, never cancelled by one
        "cli", [engine.view_task("hold", hold, "c", 1.0)], group="v"
    )
    assert wait_until(lambda: gone.phase == "running" and here.phase == "running")
    for _ in range(3):  # 90 s pass; "here" keeps polling, "gone" was closed
        clock.now += 30.0
        engine.renew("here")
        time.sleep(0.2)
    assert gone.wait(20), "the closed session's work kept running"
    assert gone.phase == "cancelled" and gone.result is None
    assert not here.done, "a session that renews must keep its work"
    assert library.wait(20) and library.result == "c"
    here.cancel()
    assert here.wait(20) and here.phase == "cancelled"


def test_a_lease_renewed_in_time_never_expires(make_engine):
    engine, clock = leased_engine(make_engine, lease=10.0, capacity=1)
    engine.renew("a")
    (ticket,) = engine.submit(
        "a", [engine.view_task("hold", hold, "a", 1.5)], group="v"
    )
    while not ticket.done:
        clock.now += 9.0  # always within the lease of 10 s
        engine.renew("a")
        time.sleep(0.1)
    assert ticket.result == "a"
    assert not engine.dispatcher.lease_expired("a")
    clock.now += 11.0
    assert engine.dispatcher.lease_expired("a")


def test_stop_reaches_a_view_between_its_steps_without_a_restart(make_engine):
    engine = make_engine(capacity=1)
    engine.dispatcher.grace = 600.0  # a restart would take ten minutes: none here
    (ticket,) = engine.submit(
        "a", [engine.view_task("hold", hold, "long", 600)], group="v"
    )
    assert wait_until(lambda: ticket.phase == "running")
    ticket.cancel()
    assert ticket.wait(20), "the view ignored Stop"
    assert ticket.phase == "cancelled" and ticket.result is None
    assert "stopped" in ticket.error


class StopAfter:
    """A channel that says stop after ``checks`` questions."""

    stopped_by = None

    def __init__(self, checks: int) -> None:
        self.checks = checks

    def cancelled(self) -> bool:
        self.checks -= 1
        if self.checks < 0:
            self.stopped_by = "cancel"
        return self.checks < 0


def test_the_curvature_view_stops_between_curvatures():
    config = ProblemConfig("moons_mlp", {"num_samples": 40, "hidden": 4}, device="cpu")
    worker = WorkerCache()
    theta = worker.problem(config).theta0
    keys = ("fisher", "ggn", "ef", "kfac", "hessian")
    with pytest.raises(Stopped):
        views.curvature_matrices(
            worker, StopAfter(2), config, theta, "p", keys, "fisher", 5, True
        )
    point = views._point(worker, config, theta, "p")
    assert set(point.operators) == {"fisher", "ggn"}  # stopped before the third
    # what was built stays: the next request finishes from there
    out = views.curvature_matrices(
        worker, None, config, theta, "p", keys, "fisher", 5, True
    )
    assert set(out.matrices) == set(keys) and not out.errors


def test_a_model_above_the_limit_is_refused_on_the_worker_before_it_is_built(
    make_engine,
):
    engine = make_engine(capacity=1, limits=Limits(max_params=100_000))
    config = RunConfig("digits_mlp", {"hidden": (4096,) * 4}, rule="sgd", steps=5)
    (ticket,) = engine.submit("a", engine.run_tasks([config]), group="g")
    assert ticket.wait(30) and ticket.result is None
    assert "EXPLORER_MAX_PARAMS" in ticket.error and "50,651,146" in ticket.error
    assert WORKER._cache.get(("problem", config.problem_config)) is None


def test_a_run_whose_history_would_not_fit_is_refused_before_its_first_step():
    limits = Limits(max_steps=10**8, max_steps_x_p=1e12, max_run_mb=256)
    config = RunConfig("linreg_2d", rule="sgd", steps=10_000_000)
    with pytest.raises(ValueError, match="EXPLORER_MAX_RUN_MB"):
        run_task(config, limits, None, channel=None)


def test_the_worker_cache_is_bounded_by_bytes_not_entries():
    cache = WorkerCache(max_bytes=3 * 2**20)
    import torch

    for index in range(4):  # 1 MiB each: the first is evicted
        cache.memo(f"p{index}", lambda: {"H": torch.zeros(2**17, dtype=torch.float64)})
    assert cache.used_bytes() <= 3 * 2**20
    built = []
    cache.memo("p0", lambda: built.append(1) or {})  # rebuilt: it had been evicted
    assert built == [1]
    grown = cache.memo("p3", dict)
    grown["more"] = torch.zeros(2**18, dtype=torch.float64)  # grows to 3 MiB in place
    cache.memo("p3", dict)  # the next use charges its new size
    assert cache.used_bytes() <= 3 * 2**20
    assert cache._cache.get(("memo", "p1")) is None
