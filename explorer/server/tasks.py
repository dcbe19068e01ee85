"""What runs on a Dask worker: one job, its progress stream and its Stop.

A task is a plain module-level function called as ``fn(*args, channel=channel)``
through :func:`execute`. The :class:`Channel` travels with the task (pickled) and,
on the worker, streams progress rows to the web process as Dask events (topic
:data:`TOPIC`, batched every :attr:`Channel.flush_seconds`) and answers "should I
stop?" from a ``distributed.Event`` (Stop, a closed tab) and the job's wall-clock
limit. Nothing here imports Streamlit; the same functions run in-process in tests.

Each worker process keeps the problems it built (:class:`WorkerCache`): a class of
students on the same default problem builds it once per worker, not once per run.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from explorer.plugins import load_plugins, load_private_plugin
from explorer.problems.base import Problem
from explorer.problems.spec import estimate_num_params
from explorer.runs import History, ProblemConfig, RunConfig, run
from explorer.server.limits import LimitExceeded, Limits, estimate_config
from explorer.server.store import ByteLRU

#: The Dask event topic of progress messages.
TOPIC = "explorer.progress"


@dataclass(frozen=True)
class PluginSources:
    """The plugins a worker loads before a task: the app's folder, the value of
    ``EXPLORER_PLUGINS`` and uploaded files as ``(name, source text)`` pairs, which
    belong to ``owner`` (the uploading session: listed for it alone, see
    :func:`explorer.plugins.load_private_plugin`).
    """

    folder: str | None = None
    environment: str = ""
    uploaded: tuple[tuple[str, str], ...] = ()
    owner: str = ""


@dataclass
class Channel:
    """The worker's line to the web process for one computation.

    Attributes:
        key: The computation's key (messages carry it).
        cancel_event: Name of the ``distributed.Event`` that Stop sets.
        time_limit: Seconds this attempt may run before it stops itself.
        flush_seconds: How often progress rows are sent (at most).
        check_seconds: How often the Stop event is asked (a scheduler round trip).
    """

    key: str
    cancel_event: str
    time_limit: float
    flush_seconds: float = 0.3
    check_seconds: float = 0.3
    token: str = ""
    stopped_by: str | None = None
    _started: float = field(default=0.0, repr=False)
    _buffer: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _last_flush: float = field(default=0.0, repr=False)
    _last_check: float = field(default=0.0, repr=False)
    _event: Any = field(default=None, repr=False)

    def open(self) -> None:
        """Starts an attempt: a fresh token (a retried attempt restarts the rows)."""
        self.token = uuid.uuid4().hex
        self._started = self._last_flush = self._last_check = time.monotonic()
        self._send("start")

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def progress(self, step: int, total: int, metrics: dict[str, Any]) -> None:
        """The loop's progress callback: buffers the row, sends when due."""
        row = {k: _plain(v) for k, v in metrics.items()}
        row.setdefault("step", step)
        row["total"] = total
        self._buffer.append(row)
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            rows, self._buffer = self._buffer, []
            self._send("rows", rows=rows)
        self._last_flush = time.monotonic()

    def cancelled(self) -> bool:
        """True once Stop was pressed or the time limit passed (checked cheaply)."""
        if self.stopped_by is not None:
            return True
        if self.elapsed > self.time_limit:
            self.stopped_by = "time"
            return True
        now = time.monotonic()
        if now - self._last_check < self.check_seconds:
            return False
        self._last_check = now
        if self._stop_event().is_set():
            self.stopped_by = "cancel"
        return self.stopped_by is not None

    def _stop_event(self) -> Any:
        if self._event is None:
            from distributed import Event

            self._event = Event(self.cancel_event)
        return self._event

    def _send(self, kind: str, **payload: Any) -> None:
        from distributed import get_worker

        message = {"key": self.key, "token": self.token, "kind": kind, **payload}
        get_worker().log_event(TOPIC, message)


class Stopped(Exception):
    """A view's computation saw Stop (or its time limit) and ended early.

    Raised by :func:`stop_if_asked` between the steps of a computation, so Stop and
    a closed tab end it within one step instead of waiting for its worker to be
    restarted; the dispatcher records the computation as cancelled, and what was
    already built stays in the worker's caches for the next request.
    """


def stop_if_asked(channel: Channel | None) -> None:
    """Raises :class:`Stopped` when ``channel`` says stop (None: never)."""
    if channel is not None and channel.cancelled():
        reason = "its time limit" if channel.stopped_by == "time" else "Stop"
        raise Stopped(f"stopped by {reason}")


def _plain(value: Any) -> Any:
    """A msgpack-safe copy of a metric (floats, ints, text; non-finite as None)."""
    if isinstance(value, bool | int | str) or value is None:
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else None


def execute(fn: Callable[..., Any], args: tuple, channel: Channel) -> Any:
    """Runs ``fn(*args, channel=channel)`` on the worker, single-threaded."""
    torch.set_num_threads(1)
    channel.open()
    try:
        return fn(*args, channel=channel)
    finally:
        channel.flush()


# ----------------------------------------------------------- worker caches
#: The default bound on what one worker process keeps between tasks (MiB).
WORKER_CACHE_MB = 1024.0


def worker_cache_bytes(environ: Mapping[str, str] = os.environ) -> int:
    """``EXPLORER_WORKER_CACHE_MB`` in bytes (default :data:`WORKER_CACHE_MB`).

    Raises:
        ValueError: not a non-negative number.
    """
    text = environ.get("EXPLORER_WORKER_CACHE_MB", "").strip()
    try:
        mib = float(text) if text else WORKER_CACHE_MB
    except ValueError:
        mib = float("nan")
    if not 0 <= mib < float("inf"):
        raise ValueError(
            f"EXPLORER_WORKER_CACHE_MB={text!r} must be a non-negative number of MiB"
        )
    return int(mib * 2**20)


class WorkerCache:
    """Per-process caches of a worker: built problems, the operators and matrices of
    recent points, and loaded plugins.

    Module-level on purpose: a worker process lives for many tasks, and a problem
    (its data, its model) is expensive to build and read-only once built. Problems
    and points share one bound in *bytes* (:class:`~explorer.server.store.ByteLRU`,
    ``EXPLORER_WORKER_CACHE_MB``): a point of P = 3,000 holds 72 MB per dense
    curvature, a point of P = 50 a few kilobytes, so a count of entries would be
    either wasteful or unbounded.

    Args:
        max_bytes: The bound (default: from the environment).
    """

    def __init__(self, max_bytes: int | None = None) -> None:
        self.max_bytes = worker_cache_bytes() if max_bytes is None else max_bytes
        self._cache = ByteLRU(self.max_bytes)
        self._plugins: set[tuple] = set()
        self._upload_folder: Path | None = None
        self._lock = threading.Lock()

    def memo(self, key: str, build: Callable[[], Any]) -> Any:
        """``build()``, kept while it fits with ``key`` (e.g. the operators and dense
        matrices of a point, reused when only the damping changes). Values that grew
        since (a point's matrices) are charged their new size on the next call.
        """
        found = self._cache.get(("memo", key))
        if found is not None:
            self._cache.trim()
            return found
        value = build()
        self._cache.put(("memo", key), value)
        return value

    def problem(self, config: ProblemConfig) -> Problem:
        found = self._cache.get(("problem", config))
        if found is not None:
            return found
        built = config.build()
        self._cache.put(("problem", config), built)
        return built

    def used_bytes(self) -> int:
        """What the cached problems and points hold now."""
        return self._cache.used()

    def ensure_plugins(self, sources: PluginSources | None) -> None:
        """Loads the app's plugins in this process once, and each uploaded file once."""
        if sources is None:
            return
        with self._lock:
            signature = ("app", sources.folder, sources.environment)
            if signature not in self._plugins:
                self._plugins.add(signature)
                previous = os.environ.get("EXPLORER_PLUGINS")
                os.environ["EXPLORER_PLUGINS"] = sources.environment
                try:
                    load_plugins(folder=sources.folder)
                finally:
                    if previous is None:
                        os.environ.pop("EXPLORER_PLUGINS", None)
                    else:
                        os.environ["EXPLORER_PLUGINS"] = previous
            for name, text in sources.uploaded:
                digest = hashlib.sha256(text.encode()).hexdigest()[:16]
                if ("upload", digest, sources.owner) in self._plugins:
                    continue
                self._plugins.add(("upload", digest, sources.owner))
                if self._upload_folder is None:  # private to this process (0o700)
                    self._upload_folder = Path(tempfile.mkdtemp(prefix="explorer-"))
                path = self._upload_folder / f"{Path(name).stem}_{digest}.py"
                # the uploader's alone, as in the web process (one that shares
                # this process's registry lists it for no other session)
                load_private_plugin(text, path, owner=sources.owner or "upload")


WORKER = WorkerCache()


# ------------------------------------------------------------------- tasks
def run_task(
    config: RunConfig,
    limits: Limits,
    plugins: PluginSources | None = None,
    *,
    channel: Channel,
) -> History:
    """One optimizer run, refused when above the limits: before the problem is
    built when its parameter count P (from the options) is, else before the first
    step (steps, steps × P, the estimated memory).

    A run stopped by the time limit keeps its partial history, with a message that
    names the limit.
    """
    WORKER.ensure_plugins(plugins)
    # P from the options first: a model above the limit is never built here
    estimated = estimate_num_params(config.problem, config.problem_options)
    refusal = limits.problem_refusal(estimated)
    if refusal is not None:
        raise LimitExceeded(refusal)
    problem = WORKER.problem(config.problem_config)
    estimate = estimate_config(config, problem.num_params, problem.num_examples)
    refusal = limits.run_refusal(config.steps, problem.num_params, estimate)
    if refusal is not None:
        raise LimitExceeded(refusal)
    history = run(
        config, problem=problem, progress=channel.progress, cancel=channel.cancelled
    )
    if channel.stopped_by == "time":
        done = len(history.metrics.get("step", [])) - 1
        history.message = (
            f"stopped by the server's time limit of {limits.job_seconds:g} s "
            f"(EXPLORER_JOB_SECONDS) after about {max(done, 0)} of {config.steps} "
            "steps; the partial history is shown. Lower Steps or ask for a higher "
            "limit."
        )
    return history


def call_task(
    function: Callable[..., Any],
    args: tuple,
    plugins: PluginSources | None = None,
    *,
    channel: Channel,
) -> Any:
    """A view's computation: ``function(WORKER, channel, *args)`` after plugins."""
    WORKER.ensure_plugins(plugins)
    return function(WORKER, channel, *args)
