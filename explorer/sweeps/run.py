"""Running a sweep: serially in-process, or on a Dask cluster.

``executor`` is ``None`` or ``"serial"`` (in-process, one trial after another: the
default from Python), a ``distributed.Client`` (yours: in-process threads with
``Client(processes=False)``, a ``LocalCluster``, a remote scheduler), ``"local:N"``
(a ``LocalCluster`` of N single-threaded worker processes started and closed here)
or a scheduler address ``"tcp://host:8786"`` (a cluster started with ``dask
scheduler`` / ``dask worker`` or by dask-jobqueue), reached within a few seconds or
refused with a clear message. Results arrive as trials finish (``progress``);
``cancel`` stops what has not started. Trials already in ``out`` (a Parquet file of
an earlier run of a compatible sweep) are reused, not run again, and the file is
rewritten (atomically) with every finished trial, at most every two seconds and when
the sweep ends, is stopped or fails.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from explorer.sweeps.config import SweepConfig, Trial
from explorer.sweeps.result import SweepResult, load_rows, save_rows
from explorer.sweeps.trial import run_trial

#: ``progress(done, total, row)`` after each finished (or reused) trial.
SweepProgress = Callable[[int, int, dict[str, Any]], None]

#: How long a scheduler address may take to answer.
CONNECT_SECONDS = 5.0
#: The results file is rewritten at most this often while trials finish.
SAVE_SECONDS = 2.0


def trial_row(trial: Trial, outcome: dict[str, Any], reused: bool) -> dict[str, Any]:
    """A result row: the trial's identity and options, then its outcome."""
    return {
        "trial_id": trial.trial_id,
        "rule": trial.rule,
        "seed": trial.seed,
        "options": dict(trial.options),
        "reused": reused,
        **outcome,
    }


def _client(executor: Any) -> tuple[Any, Any]:
    """(client, what to close afterwards) for a non-serial ``executor``; clusters
    start, and addresses are reached, as the app's engine does it
    (:func:`explorer.server.engine.start_client`: single-threaded worker processes
    on 127.0.0.1, warmed up by the engine's preload).
    """
    from distributed import Client

    from explorer.server.engine import EngineSettings, EngineUnavailable, start_client

    if isinstance(executor, Client):
        return executor, None
    if isinstance(executor, str):
        match = re.fullmatch(r"local:(\d+)", executor)
        if match:
            workers = int(match.group(1))
            if not 1 <= workers <= 256:
                raise ValueError(f"executor {executor!r}: N must be in 1..256")
            client, cluster, _ = start_client(EngineSettings("local", workers))
            return client, (client, cluster)
        if re.match(r"^(tcp|tls|inproc|ucx)://", executor):
            settings = EngineSettings(executor, connect_timeout=CONNECT_SECONDS)
            try:
                client, _, _ = start_client(settings)
            except EngineUnavailable as error:
                raise ValueError(str(error)) from None
            return client, (client,)
    raise ValueError(
        f"executor = {executor!r}: use None/'serial', a distributed.Client, "
        "'local:N' or a scheduler address 'tcp://host:port'"
    )


def sweep(
    config: SweepConfig,
    executor: Any = None,
    *,
    out: str | Path | None = None,
    progress: SweepProgress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> SweepResult:
    """Runs every trial of ``config`` and returns the :class:`SweepResult`.

    Args:
        config: The grid.
        executor: Where trials run (module docstring).
        out: A Parquet file: trials it holds are reused, and it is rewritten with
            every finished trial (at most every ``SAVE_SECONDS``, and at the end).
        progress: Called as ``progress(done, total, row)`` as trials finish.
        cancel: Checked between trials (serial) or as results arrive (Dask); once
            True, trials that have not started are cancelled.

    Raises:
        ValueError: Bad input (an unknown rule or option, a value out of range, an
            unreachable scheduler, an ``out`` file from an incompatible sweep),
            before any trial runs.
    """
    trials = config.trials()
    known = load_rows(out, config) if out is not None else {}
    rows: dict[str, dict[str, Any]] = {}
    todo = []
    for trial in trials:
        if trial.trial_id in known:
            rows[trial.trial_id] = {**known[trial.trial_id], "reused": True}
        else:
            todo.append(trial)
    total, done = len(trials), 0
    for trial in trials:
        if trial.trial_id in rows:
            done += 1
            if progress is not None:
                progress(done, total, rows[trial.trial_id])
    serial = executor is None or executor == "serial"
    client, closers = (None, None) if serial else _client(executor)
    saved, unsaved = time.monotonic(), False
    try:
        finished = (
            _serial(config, todo, cancel)
            if serial
            else _distributed(client, config, todo, cancel)
        )
        for trial, outcome in finished:
            rows[trial.trial_id] = trial_row(trial, outcome, reused=False)
            done += 1
            unsaved = True
            if progress is not None:
                progress(done, total, rows[trial.trial_id])
            # the file is rewritten whole: at most every SAVE_SECONDS, and at the end
            if out is not None and time.monotonic() - saved >= SAVE_SECONDS:
                save_rows(out, config, rows)
                saved, unsaved = time.monotonic(), False
    finally:
        try:
            if out is not None and unsaved:  # also when stopped or interrupted
                save_rows(out, config, rows)
        finally:
            for item in closers or ():
                item.close()
    ordered = [rows[t.trial_id] for t in trials if t.trial_id in rows]
    return SweepResult(config, ordered)


def _serial(config: SweepConfig, todo: list[Trial], cancel):
    for trial in todo:
        if cancel is not None and cancel():
            return
        yield (
            trial,
            run_trial(
                trial.config.to_dict(),
                config.divergence_factor,
                config.target_loss,
                1,  # as on a worker: same thread count, same sums, same table
            ),
        )


def _distributed(client: Any, config: SweepConfig, todo: list[Trial], cancel):
    from distributed import as_completed

    futures = {}
    for trial in todo:
        future = client.submit(
            run_trial,
            trial.config.to_dict(),
            config.divergence_factor,
            config.target_loss,
            1,
            key=f"sweep-trial-{trial.trial_id}",
            pure=False,
            retries=2,  # a worker lost mid-trial: the trial runs again elsewhere
        )
        futures[future] = trial
    stream = as_completed(list(futures))
    for future in stream:
        if cancel is not None and cancel():
            for pending in futures:
                pending.cancel()
            return
        yield futures[future], future.result()
