"""A health check that asks whether a session can be served, not only whether the
web server's socket answers.

``python -m explorer.server.health`` (the Dockerfile's ``HEALTHCHECK``) exits 0 when

1. the app answers ``GET /_stcore/health`` with ``ok`` (``--url``), and
2. a fresh process does what every worker does before a job, within ``--timeout``
   seconds: import the library, load the app's plugins (``--plugins``, default
   ``./plugins``, and ``EXPLORER_PLUGINS``) and finish a two-step run; and
3. when ``EXPLORER_DASK_SCHEDULER`` names a scheduler, it answers and has a worker.

Otherwise it prints why on stderr and exits 1. Streamlit's own endpoint says ``ok``
as long as its event loop runs: with a plugin that loops at import every session
hangs (the app loads the plugins in each server process, the workers before each
task) while that endpoint still answers. The probe process is ended by its own PID
(its process group) when it runs past the timeout, so a hung check leaves nothing
behind.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

#: The run the probe finishes (milliseconds once the library is imported).
PROBE_RUN = {"problem": "linreg_2d", "rule": "sgd", "steps": 2}


def probe(folder: str | None) -> None:
    """What a worker does before a job: load the plugins, then a tiny run.

    Raises:
        RuntimeError: the run did not finish as it should.
    """
    import torch

    from explorer.plugins import load_plugins
    from explorer.runs import RunConfig, run

    torch.set_num_threads(1)
    load_plugins(folder=folder)
    history = run(RunConfig(**PROBE_RUN))
    if history.status != "ok" or len(history) != PROBE_RUN["steps"] + 1:
        raise RuntimeError(f"the probe run ended {history.status!r}")


def check_http(url: str, timeout: float) -> str | None:
    """Why ``url``/_stcore/health is not ``ok``, or None."""
    target = url.rstrip("/") + "/_stcore/health"
    try:
        with urllib.request.urlopen(target, timeout=timeout) as response:
            body = response.read().strip()
    except (OSError, urllib.error.URLError) as error:
        return f"{target} did not answer: {error}"
    if body != b"ok":
        return f"{target} answered {body[:80]!r}, not 'ok'"
    return None


def check_probe(
    folder: str | None, timeout: float, python: str = sys.executable
) -> str | None:
    """Why a fresh process could not load the plugins and run within ``timeout``
    seconds, or None.
    """
    code = "import sys; from explorer.server.health import probe; probe(sys.argv[1] or None)"
    started = time.monotonic()
    process = subprocess.Popen(
        [python, "-c", code, folder or ""],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own group: a timeout ends it and its children
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    try:
        _, errors = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the group of the process we started
        process.wait()
        return (
            f"a worker's start (import, plugins{f' from {folder}' if folder else ''}, "
            f"a 2-step run) did not finish within {timeout:g} s: a plugin that hangs "
            "at import would hang every session this way"
        )
    if process.returncode != 0:
        last = (errors or b"").decode(errors="replace").strip().splitlines()[-3:]
        return (
            f"a worker's start failed after {time.monotonic() - started:.1f} s "
            f"(exit {process.returncode}): {' | '.join(last)}"
        )
    return None


def check_scheduler(address: str, timeout: float) -> str | None:
    """Why the Dask scheduler at ``address`` cannot take work, or None."""
    from distributed import Client

    try:
        with Client(address, timeout=timeout) as client:
            if not client.nthreads():
                return f"the Dask scheduler {address} has no worker connected"
    except (OSError, TimeoutError) as error:
        return f"the Dask scheduler {address} did not answer: {error}"
    return None


def problems(
    url: str,
    folder: str | None,
    timeout: float,
    environ: Mapping[str, str] = os.environ,
) -> list[str]:
    """Every reason the app is unhealthy (empty: healthy)."""
    found = []
    http = check_http(url, min(timeout, 5.0))
    if http is not None:
        found.append(http)
    scheduler = environ.get("EXPLORER_DASK_SCHEDULER", "").strip()
    if "://" in scheduler:
        remote = check_scheduler(scheduler, min(timeout, 5.0))
        if remote is not None:
            found.append(remote)
    started = check_probe(folder, timeout)
    if started is not None:
        found.append(started)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m explorer.server.health", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--url", default="http://127.0.0.1:8501")
    parser.add_argument(
        "--plugins", default="plugins", help="the app's plugin folder (./plugins)"
    )
    parser.add_argument(
        "--timeout", type=float, default=20.0, help="seconds the probe may take"
    )
    args = parser.parse_args(argv)
    folder = args.plugins if Path(args.plugins).exists() else None
    found = problems(args.url, folder, args.timeout)
    for reason in found:
        print(f"unhealthy: {reason}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
