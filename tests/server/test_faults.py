"""Faults on a real local cluster of worker processes: a killed worker, a plugin
that hangs, a scheduler that cannot be reached. Everything on 127.0.0.1, bounded."""

from __future__ import annotations

import os
import signal
import socket

import pytest

from explorer.runs import RunConfig, run
from explorer.server.dispatch import Task
from explorer.server.engine import (
    Engine,
    EngineSettings,
    EngineUnavailable,
    start_client,
)
from explorer.server.limits import Limits
from explorer.server.store import ResultStore
from explorer.server.tasks import PluginSources, run_task
from tests import waiting


def wait_until(predicate, timeout=60.0):
    return waiting.wait_until(predicate, timeout, interval=0.05)


pytestmark = pytest.mark.slow

LIMITS = Limits(max_steps=10**7, max_steps_x_p=1e12, job_seconds=600)


@pytest.fixture(scope="module")
def local():
    client, cluster, description = start_client(EngineSettings("local", 2))
    assert "2 worker processes" in description
    yield client
    client.close()
    cluster.close()


def worker_of(client, ticket):
    key = ticket.computation.future.key
    for address, keys in client.processing().items():
        if key in keys:
            return address
    return None


def test_a_killed_worker_is_retried_once_and_others_are_unaffected(local):
    engine = Engine(local, limits=LIMITS, store=ResultStore(None))
    try:
        long = RunConfig("linreg_2d", rule="sgd", steps=30_000, seed=1)
        other = RunConfig("linreg_2d", rule="adam", steps=50, seed=2)
        (victim,) = engine.submit("a", engine.run_tasks([long]), group="g")
        assert wait_until(lambda: victim.rows), "the long run never streamed a row"
        address = worker_of(local, victim)
        pids = local.run(os.getpid)
        os.kill(pids[address], signal.SIGKILL)
        (bystander,) = engine.submit("b", engine.run_tasks([other]), group="g")
        assert bystander.wait(120) and bystander.result.same_as(run(other))
        assert victim.wait(300), "the retried run did not finish"
        assert victim.computation.attempts == 2
        assert victim.result.status == "ok" and len(victim.result) > 2
    finally:
        engine.dispatcher.close()


def test_a_plugin_that_hangs_is_stopped_by_the_time_limit(local):
    engine = Engine(local, limits=LIMITS, store=ResultStore(None))
    engine.dispatcher.grace = 1.0
    try:
        hang = PluginSources(
            uploaded=(("hang.py", "import time\nwhile True:\n    time.sleep(0.05)\n"),)
        )
        config = RunConfig("linreg_2d", rule="sgd", steps=5)
        limits = Limits(job_seconds=2)
        task = Task("hang", run_task, (config, limits, hang), time_limit=2)
        (ticket,) = engine.submit("a", [task], group="g")
        assert ticket.wait(60), "the hung task was never stopped"
        assert ticket.phase == "failed"
        assert "EXPLORER_JOB_SECONDS" in ticket.error and "restarted" in ticket.error
        # the cluster recovers: the next job runs on a healthy worker
        assert wait_until(lambda: sum(local.nthreads().values()) == 2, 60)
        (after,) = engine.submit("b", engine.run_tasks([config]), group="g")
        assert after.wait(120) and after.result.same_as(run(config))
    finally:
        engine.dispatcher.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_scheduler_is_a_clear_message():
    address = f"tcp://127.0.0.1:{free_port()}"
    settings = EngineSettings(address, 2, fallback_local=False, connect_timeout=1)
    with pytest.raises(EngineUnavailable) as raised:
        start_client(settings)
    text = str(raised.value)
    assert address in text and "EXPLORER_DASK_FALLBACK=local" in text
    assert "dask scheduler" in text


def test_an_unreachable_scheduler_falls_back_only_when_asked():
    address = f"tcp://127.0.0.1:{free_port()}"
    settings = EngineSettings(address, 1, fallback_local=True, connect_timeout=1)
    client, cluster, description = start_client(settings)
    try:
        assert "unreachable" in description and cluster is not None
        assert sum(client.nthreads().values()) == 1
    finally:
        client.close()
        cluster.close()
