"""The classroom server's compute engine: a Dask cluster behind a fair queue.

:func:`EngineSettings.from_environment` reads where the compute runs:

* ``EXPLORER_DASK_SCHEDULER`` unset or ``local``: a ``distributed.LocalCluster`` with
  one single-threaded worker process per core (``EXPLORER_DASK_WORKERS`` overrides
  the count), started with the app and closed with it;
* ``inprocess``: worker threads inside this process (tests, and machines where
  processes cannot be started);
* ``tcp://host:8786``: a cluster started with ``dask scheduler`` / ``dask worker
  --preload explorer.server.preload`` or by dask-jobqueue. When it cannot be reached
  the engine raises :class:`EngineUnavailable` with what to do, unless
  ``EXPLORER_DASK_FALLBACK=local`` asks for a local cluster instead.

An :class:`Engine` owns the client, the :class:`~explorer.server.dispatch.Dispatcher`,
the :class:`~explorer.server.store.ResultStore` and the
:class:`~explorer.server.limits.Limits`; pages call :meth:`Engine.submit`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from explorer.plugins import plugin_files
from explorer.runs import RunConfig
from explorer.server.dispatch import Dispatcher, Task, Ticket
from explorer.server.limits import LimitExceeded, Limits
from explorer.server.store import ResultStore
from explorer.server.tasks import PluginSources, run_task

log = logging.getLogger(__name__)

#: Statuses whose histories are complete and deterministic, hence cacheable.
CACHEABLE = frozenset({"ok", "diverged", "indefinite"})

#: Dask settings the engine's own scheduler runs with: a dead worker's task is
#: not retried by Dask (the dispatcher retries it once and says so), and the
#: scheduler keeps a short event log (progress rows are events).
DASK_CONFIG = {
    "distributed.scheduler.allowed-failures": 0,
    "distributed.admin.low-level-log-length": 200,
}


class EngineUnavailable(RuntimeError):
    """No cluster to compute on (the message says what to start or set)."""


@dataclass(frozen=True)
class EngineSettings:
    """Where the compute runs (see the module docstring)."""

    scheduler: str = "local"
    workers: int = max(1, os.cpu_count() or 1)
    fallback_local: bool = False
    connect_timeout: float = 10.0

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] = os.environ
    ) -> EngineSettings:
        scheduler = environ.get("EXPLORER_DASK_SCHEDULER", "").strip() or "local"
        if scheduler not in ("local", "inprocess") and "://" not in scheduler:
            raise EngineUnavailable(
                f"EXPLORER_DASK_SCHEDULER={scheduler!r}: expected 'local', "
                "'inprocess' or a scheduler address such as tcp://scheduler:8786"
            )
        text = environ.get("EXPLORER_DASK_WORKERS", "").strip()
        workers = cls.workers
        if text:
            try:
                workers = int(text)
            except ValueError:
                raise EngineUnavailable(
                    f"EXPLORER_DASK_WORKERS={text!r} is not a whole number"
                ) from None
            if workers < 1:
                raise EngineUnavailable(f"EXPLORER_DASK_WORKERS={text!r} must be ≥ 1")
        fallback = environ.get("EXPLORER_DASK_FALLBACK", "").strip().lower() == "local"
        return cls(scheduler, workers, fallback)


def start_client(settings: EngineSettings) -> tuple[Any, Any, str]:
    """Connects or starts a cluster: ``(client, cluster or None, description)``."""
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set(DASK_CONFIG):
        if settings.scheduler == "inprocess":
            from explorer.runs.loop import warm_up_torch_func

            # torch.func's first use imports and compiles modules; done here, before
            # the worker threads exist, it cannot overlap a page script's compile
            # (CPython 3.11 raises "AST constructor recursion depth mismatch" when
            # two threads build ASTs at once)
            warm_up_torch_func()
            cluster = LocalCluster(
                n_workers=1,
                threads_per_worker=settings.workers,
                processes=False,
                dashboard_address=":0",
            )
            description = f"in-process Dask cluster ({settings.workers} threads)"
            return Client(cluster), cluster, description
        if settings.scheduler == "local":
            return _local(settings)
        try:
            client = Client(settings.scheduler, timeout=settings.connect_timeout)
        except (OSError, TimeoutError) as error:
            if settings.fallback_local:
                log.warning("scheduler unreachable (%s); starting a local one", error)
                client, cluster, description = _local(settings)
                return (
                    client,
                    cluster,
                    f"{description} (the scheduler {settings.scheduler} was "
                    "unreachable; EXPLORER_DASK_FALLBACK=local)",
                )
            raise EngineUnavailable(
                f"Could not reach the Dask scheduler at {settings.scheduler} within "
                f"{settings.connect_timeout:g} s ({error}). Start it (`dask scheduler` "
                "and `dask worker <address> --nthreads 1 --preload "
                "explorer.server.preload`), fix EXPLORER_DASK_SCHEDULER, or set "
                "EXPLORER_DASK_FALLBACK=local to compute on this machine instead."
            ) from error
        return client, None, f"Dask scheduler {settings.scheduler}"


def _local(settings: EngineSettings) -> tuple[Any, Any, str]:
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=settings.workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
        preload=["explorer.server.preload"],
        silence_logs=logging.WARNING,
    )
    description = f"local Dask cluster ({settings.workers} worker processes)"
    return Client(cluster), cluster, description


def source_fingerprint(plugins: PluginSources | None = None) -> str:
    """A hash of the library's source files and of the app's plugin files: results
    cached on disk by one version of the code are never served by another (a fixed
    bug stays fixed, an edited plugin is measured again).
    """
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    files = [(str(p.relative_to(root)), p) for p in sorted(root.rglob("*.py"))]
    if plugins is not None:
        locations = [plugins.folder] if plugins.folder else []
        locations += [e for e in plugins.environment.split(os.pathsep) if e.strip()]
        for location in locations:
            if Path(location).exists():
                files += [(str(p), p) for p in plugin_files(location)]
    for name, path in files:
        digest.update(name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def config_key(config: RunConfig, version: str = "") -> str:
    """A stable text key of a run's full configuration (cache and sharing)."""
    text = json.dumps(config.to_dict(), sort_keys=True, default=str) + version
    return "run-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def value_key(kind: str, *parts: Any) -> str:
    """A stable key of a view's computation from the text of its inputs."""
    text = "|".join(repr(part) for part in parts)
    return f"{kind}-" + hashlib.sha256(text.encode()).hexdigest()[:32]


class Engine:
    """Pages submit work here; it runs on the cluster, fairly and within limits.

    Args:
        client: A ``distributed.Client``.
        cluster: The cluster this engine started (closed with it), or None.
        limits: The server's limits.
        store: The shared result store.
        plugins: The plugins every task loads on its worker first.
        description: Where the compute runs, for the page.
    """

    def __init__(
        self,
        client: Any,
        cluster: Any = None,
        *,
        limits: Limits | None = None,
        store: ResultStore | None = None,
        plugins: PluginSources | None = None,
        description: str = "",
        capacity: int | None = None,
    ) -> None:
        self.client = client
        self.cluster = cluster
        self.limits = limits or Limits()
        self.store = store if store is not None else ResultStore()
        self.plugins = plugins
        self.description = description
        self.version = source_fingerprint(plugins)
        self.dispatcher = Dispatcher(
            client, self.store, capacity=capacity, lease=self.limits.lease_seconds
        )

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str] = os.environ,
        *,
        plugins: PluginSources | None = None,
    ) -> Engine:
        """The engine the app starts with (see the module docstring)."""
        settings = EngineSettings.from_environment(environ)
        limits = Limits.from_environment(environ)  # bad settings fail before
        store = ResultStore.from_environment(environ)  # a cluster is started
        client, cluster, description = start_client(settings)
        return cls(
            client,
            cluster,
            limits=limits,
            store=store,
            plugins=plugins,
            description=description,
        )

    # ------------------------------------------------------------ requests
    def run_tasks(self, configs: Sequence[RunConfig]) -> list[Task]:
        """One task per run; identical configs share a key (and a result)."""
        return [
            Task(
                key=config_key(config, self.version),
                fn=run_task,
                args=(config, self.limits, self.plugins),
                label=config.display_label,
                cache_if=lambda history: history.status in CACHEABLE,
                time_limit=self.limits.job_seconds,
            )
            for config in configs
        ]

    def view_task(
        self,
        kind: str,
        function: Callable[..., Any],
        *args: Any,
        key_parts: tuple | None = None,
        plugins: PluginSources | None = None,
        label: str = "",
    ) -> Task:
        """A view's computation ``function(worker_cache, channel, *args)``, cached
        in memory and on disk by ``key_parts`` (default: the arguments' text; give
        key parts whenever an argument's text is not all of it, as a tensor's).
        """
        from explorer.server.tasks import call_task

        parts = args if key_parts is None else key_parts
        sources = plugins if plugins is not None else self.plugins
        return Task(
            key=value_key(
                kind,
                self.version,
                function.__module__,
                function.__qualname__,
                sources,
                *parts,
            ),
            fn=call_task,
            args=(function, args, sources),
            label=label or kind,
            cache_if=lambda value: True,
            time_limit=self.limits.job_seconds,
        )

    def submit(
        self,
        session: str,
        tasks: Sequence[Task],
        *,
        group: str,
        alive: Callable[[], bool] | None = None,
    ) -> list[Ticket]:
        """Queues ``tasks`` as one job of ``session``.

        Raises:
            LimitExceeded: the session already has ``jobs_per_session`` other jobs
                queued or running.
        """
        live = self.dispatcher.live_groups(session) - {group}
        if len(live) >= self.limits.jobs_per_session:
            raise LimitExceeded(
                f"this session already has {len(live)} jobs queued or running (the "
                f"server's limit is {self.limits.jobs_per_session}, "
                "EXPLORER_JOBS_PER_SESSION): stop one or wait for it to finish."
            )
        return [
            self.dispatcher.submit(session, task, group=group, alive=alive)
            for task in tasks
        ]

    def renew(self, session: str) -> None:
        """``session``'s page is still open: its work keeps running (the lease of
        ``Limits.lease_seconds``; a closed tab stops renewing and its work stops).
        """
        self.dispatcher.renew(session)

    def workers(self) -> int:
        return self.dispatcher.capacity

    def close(self) -> None:
        self.dispatcher.close()
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()
