"""The battery with each plugin in its own process, under a time limit.

A plugin is somebody else's code: it may loop forever at import, its matvec may
hang, or it may take the interpreter down. :func:`check_isolated` therefore imports
and checks every plugin file in a child process of its own and kills the child when
it runs past ``timeout`` seconds (SIGKILL: a ``while True: pass`` or a blocking C
call cannot ignore it). Such a plugin, and one that fails to import, becomes a failed
record of the report (:attr:`CheckReport.failed_sources
<explorer.check.results.CheckReport.failed_sources>`), so the report fails (exit 1
on the command line) and the other plugins are still checked. Curvatures asked for
by key and registered by no plugin file (built-ins, ``EXPLORER_PLUGINS``) are
checked in one more child, under the same limit.

The clock of a plugin starts once its child is up (the interpreter and torch
imported, :data:`STARTUP_SECONDS` at most), so a short limit measures the plugin,
not a busy machine's imports. Each child also loads ``EXPLORER_PLUGINS`` and the
installed entry points, as an in-process check would; a plugin is checked with the
built-ins and those, not with the other files checked beside it.

Example::

    report = check_isolated(["plugins/"], settings=CheckSettings(steps=4), timeout=60)
    [s["source"] for s in report.failed_sources]   # the plugins that hung or broke
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import pickle
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from explorer.check.battery import ProgressFn, run_battery, validate_settings
from explorer.check.results import CheckReport
from explorer.check.settings import CheckSettings
from explorer.plugins import load_plugin_file, load_plugins, plugin_files

#: Default per-plugin time limit, in seconds (the default battery takes well under
#: a minute on one core).
DEFAULT_TIMEOUT = 600.0

#: How long a child may take to start (import torch and the library) before it is
#: given up; not counted in the plugin's time limit.
STARTUP_SECONDS = 120.0

#: A child's message that its battery raised a usage error (unknown key...).
_USAGE = "usage"

#: The label of the job that checks keys no plugin file registered.
BUILTINS = "built-in curvatures"

#: Serializes :func:`_without_caller_main` between threads starting children.
_MAIN_LOCK = threading.Lock()


@dataclass(frozen=True)
class _Job:
    """What one child process does (pickled to it)."""

    file: str | None  # a plugin file to import first; None: keys only
    keys: tuple[str, ...] | None  # check only these (None: what the file registers)
    settings: CheckSettings
    threads: int
    environment: bool
    environ: dict[str, str]


def _context():
    """A forkserver context where there is one (a fork of a clean server that has
    imported torch once: fast, and without forking a parent's threads), else spawn.
    """
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["explorer.check.isolation"])
        return context
    return multiprocessing.get_context("spawn")


@contextlib.contextmanager
def _without_caller_main():
    """Hides the caller's ``__main__`` from the child that starts meanwhile.

    A forkserver or spawn child first re-runs the parent's main module (by name or
    by ``__file__``) so that functions defined there can be unpickled. The child's
    target lives in this module, so that is never needed, and it is harmful: the
    main module may be a script without a ``__main__`` guard, a notebook, or a
    Streamlit page that a test or the app ran in this process (Streamlit installs
    each page as ``__main__``), and re-running it in the child crashed the child
    before the check began. Multiprocessing skips that step for a main module
    with neither ``__spec__`` nor ``__file__``, so a bare one stands in while the
    child is launched; the real one is put back unless another thread installed a
    new one meanwhile.
    """
    with _MAIN_LOCK:
        caller = sys.modules.get("__main__")
        stand_in = types.ModuleType("__main__")
        sys.modules["__main__"] = stand_in
        try:
            yield
        finally:
            if sys.modules.get("__main__") is stand_in and caller is not None:
                sys.modules["__main__"] = caller


def _child(connection, job: _Job) -> None:
    """The child's side: import the plugin, run the battery, send the report.

    Messages (pickled tuples): ``("ready",)``, ``("environment", [(source,
    error)])``, ``("loaded", record)``, ``("progress", fraction, text)``, then one of
    ``("result", report bytes or None)``, ``("usage", text)``, ``("error", text)``.
    """

    def send(*message: Any) -> None:
        # plain pickle, not multiprocessing's, which would hand tensors over in
        # shared memory that dies with this process
        connection.send_bytes(pickle.dumps(message))

    try:
        import torch

        # stdout carries the caller's JSON summary: a plugin's prints go to stderr
        with contextlib.suppress(AttributeError, OSError, ValueError):
            sys.stdout.flush()
            os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
        sys.stdout = sys.stderr
        # a forkserver child inherits the server's environment, not the caller's
        os.environ.clear()
        os.environ.update(job.environ)
        torch.set_num_threads(job.threads)
        send("ready")
        reports = load_plugins(
            (), use_environment=job.environment, use_entry_points=job.environment
        )
        send("environment", [(r.source, r.error) for r in reports if r.error])
        sources: list[dict[str, Any]] = []
        keys = list(job.keys or ())
        if job.file is not None:
            loaded = load_plugin_file(job.file)
            record = {
                "source": loaded.source,
                "keys": list(loaded.keys),
                "error": loaded.error,
                "status": "failed" if loaded.error else "ok",
            }
            send("loaded", record)
            if loaded.error:
                send("result", None)
                return
            sources.append(record)
            keys = [k for k in loaded.keys if job.keys is None or k in job.keys]
        try:
            validate_settings(job.settings)  # after the import: it may add problems
        except ValueError as error:
            send(_USAGE, str(error))
            return
        if not keys:
            send("result", None)
            return
        try:
            report = run_battery(
                keys,
                job.settings,
                lambda fraction, text: send("progress", fraction, text),
                sources=sources,
            )
        except ValueError as error:
            if job.file is None:  # keys the caller named: theirs to fix
                send(_USAGE, str(error))
            else:  # e.g. a declared reference no registry holds: the plugin's
                send("error", f"{type(error).__name__}: {error}")
            return
        send("result", pickle.dumps(report))
    except BaseException as error:  # SystemExit, KeyboardInterrupt in a plugin...
        send("error", "".join(traceback.format_exception(error)).strip())
    finally:
        connection.close()


@dataclass
class _Outcome:
    """What the parent learned from one child."""

    record: dict[str, Any] | None = None
    report: CheckReport | None = None
    usage: str | None = None
    error: str | None = None
    timed_out: bool = False
    warnings: tuple[tuple[str, str], ...] = ()


def _run_job(
    job: _Job, name: str, timeout: float, progress: ProgressFn | None
) -> _Outcome:
    """Runs one job in a child; kills it past ``timeout`` seconds of its own work."""
    context = _context()
    reader, writer = context.Pipe(duplex=False)
    process = context.Process(
        target=_child, args=(writer, job), name=f"check {name}", daemon=True
    )
    with _without_caller_main():
        process.start()
    writer.close()  # only the child writes: its exit is our end of file
    outcome = _Outcome()
    deadline = time.monotonic() + STARTUP_SECONDS
    stage, last = "starting the check process", ""
    try:
        while True:
            wait = deadline - time.monotonic()
            if wait <= 0 or not reader.poll(wait):
                if stage == "starting the check process":
                    outcome.error = (
                        f"the check process did not start within {STARTUP_SECONDS:g} s"
                    )
                else:
                    where = f"; last step: {last}" if last else ""
                    outcome.error = (
                        f"timed out after {timeout:g} s while {stage}{where} "
                        "(killed; --timeout sets the limit)"
                    )
                    outcome.timed_out = True
                break
            try:
                kind, *data = pickle.loads(reader.recv_bytes())
            except (EOFError, OSError):
                process.join(5)
                code = process.exitcode
                where = f" while {stage}" if stage else ""
                after = f"; last step: {last}" if last else ""
                outcome.error = f"the check process died{where} (exit {code}){after}"
                break
            if kind == "ready":
                deadline = time.monotonic() + timeout
                stage = "loading EXPLORER_PLUGINS and entry points"
            elif kind == "environment":
                outcome.warnings = tuple(data[0])
                stage = (
                    "importing the plugin"
                    if job.file
                    else f"checking {', '.join(job.keys or ())}"
                )
            elif kind == "loaded":
                outcome.record = data[0]
                keys = ", ".join(outcome.record["keys"]) or "nothing"
                stage = f"checking {keys}"
            elif kind == "progress":
                fraction, last = data
                if progress is not None:
                    progress(fraction, f"{name}: {last}")
            elif kind == "result":
                outcome.report = None if data[0] is None else pickle.loads(data[0])
                break
            elif kind == _USAGE:
                outcome.usage = data[0]
                break
            else:
                outcome.error = data[0]
                break
    finally:
        reader.close()
        if process.is_alive():
            process.join(2)  # a child that sent its result exits at once
        if process.is_alive():
            process.kill()
            process.join(5)
    return outcome


def _record(outcome: _Outcome, source: str) -> dict[str, Any]:
    """The report's record of one plugin (its import's, plus how the child ended)."""
    record = dict(outcome.record or {"source": source, "keys": [], "error": None})
    if outcome.error:
        record["error"] = outcome.error
        record["status"] = "timed out" if outcome.timed_out else "failed"
    record.setdefault("status", "failed" if record.get("error") else "ok")
    return record


def check_isolated(
    paths: Iterable[str | os.PathLike[str]] = (),
    keys: Sequence[str] | None = None,
    settings: CheckSettings | None = None,
    progress: ProgressFn | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    threads: int = 1,
    environment: bool = True,
    warn: Callable[[str, str], None] | None = None,
) -> CheckReport:
    """Checks every plugin file in its own process, each under ``timeout`` seconds.

    Args:
        paths: Plugin files or folders (every ``*.py`` not starting with ``_``).
        keys: Check only these keys; those no file registers (built-ins, keys of
            ``EXPLORER_PLUGINS``) are checked together in one more process.
        settings: What the battery runs (default :class:`CheckSettings`).
        progress: ``progress(fraction, message)``, the message led by the plugin's
            file name.
        timeout: Seconds each plugin may take (its import and its whole battery).
        threads: torch threads in each child.
        environment: Load ``EXPLORER_PLUGINS`` and entry points in each child.
        warn: Called as ``warn(source, error)`` once per environment plugin that
            failed to load (they are context, not what is checked).

    Returns:
        One :class:`CheckReport`: the curvatures of every plugin that could be
        checked, and a failed record in ``sources`` for each that timed out, did
        not import, died, or registers a key another checked file registers too.

    Raises:
        ValueError: No path or key, a path that does not exist, ``timeout`` not
            positive, a usage error (an unknown problem, rule or requested key),
            or nothing registered to check.
    """
    settings = settings or CheckSettings()
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout {timeout!r} must be a positive number of seconds")
    requested = None if keys is None else tuple(dict.fromkeys(keys))
    paths = list(paths)
    if not paths and not requested:
        raise ValueError("pass a plugin file (or a curvature key for a built-in)")
    files: list[Path] = []
    for path in paths:
        if not Path(path).expanduser().exists():
            raise ValueError(f"plugin path {str(path)!r} does not exist")
        files.extend(f.resolve() for f in plugin_files(path))
    environ = dict(os.environ)
    start = time.perf_counter()
    jobs = [(f.name, str(f), requested) for f in dict.fromkeys(files)]
    total = max(1, len(jobs) + bool(requested))  # the built-ins' job comes last

    def relay(index: int):
        if progress is None:
            return None
        return lambda fraction, text: progress((index + fraction) / total, text)

    sources: list[dict[str, Any]] = []
    curvatures: list[Any] = []
    owner: dict[str, str] = {}
    warned: set[str] = set()
    unknown: list[str] = []  # files that failed before saying what they register

    def run(index: int, name: str, file: str | None, wanted) -> None:
        job = _Job(file, wanted, settings, threads, environment, environ)
        outcome = _run_job(job, name, timeout, relay(index))
        for source, error in outcome.warnings:
            if warn is not None and source not in warned:
                warned.add(source)
                warn(source, error)
        if outcome.usage and file is None and unknown:
            # the key may be one a plugin that never loaded would have registered
            outcome.error = f"{outcome.usage} (a key of a plugin that did not load?)"
        elif outcome.usage:
            raise ValueError(outcome.usage)
        if file is not None:
            sources.append(_record(outcome, file))
            if sources[-1]["error"] and not sources[-1]["keys"]:
                unknown.append(file)
        elif outcome.error:
            sources.append(_record(outcome, BUILTINS))
        report = outcome.report
        for result in report.curvatures if report else ():
            if result.key in owner:  # one key, two files: which one is it?
                sources[-1]["error"] = (
                    f"registers {result.key!r}, which {owner[result.key]} registers "
                    "too (check them apart)"
                )
                sources[-1]["status"] = "failed"
                continue
            owner[result.key] = file or BUILTINS
            curvatures.append(result)

    for index, (name, file, wanted) in enumerate(jobs):
        run(index, name, file, wanted)
    registered = {key for s in sources for key in s.get("keys", ())} | set(owner)
    rest = tuple(key for key in requested or () if key not in registered)
    if rest:
        run(len(jobs), BUILTINS, None, rest)
    if not curvatures and not any(s.get("error") for s in sources):
        raise ValueError(
            "no curvature to check: the plugin files registered none (decorate a "
            "function or a CurvatureOperator subclass with @ex.register_curvature), "
            "or pass --curvature KEY"
        )
    if progress is not None:
        progress(1.0, "done")
    return CheckReport(
        curvatures=tuple(curvatures),
        settings=settings,
        sources=tuple(sources),
        seconds=time.perf_counter() - start,
    )
