"""The app as a class uses it: N students open the Compare page and press Run at once.

Run: ``python -m benchmarks.bench_classroom [--sessions 1,4,8,16,30] [--timeout 420]
[--heavy] [--cached] [--env KEY=VALUE ...] [--server-arg=ARG ...] [--app-dir DIR]``
(needs playwright, psutil and Debian's chromium, as the browser tests do; never
downloads a browser). Streamlit arguments go with ``=``:
``--server-arg=--logger.level=info``.

For each N (N = 1 first when it is in the list) it starts one fresh Streamlit server
on 127.0.0.1 (``--server.fileWatcherType none``; its disk result cache in a fresh
directory unless ``--env EXPLORER_CACHE_DIR=...`` says otherwise), lets one warm-up
session run the default comparison (``/``, so imports and the first run are paid
before the class arrives; ``--cold`` skips it), then opens N browser contexts in one
headless chromium, each on ``/?seed=<i+1>`` (the default comparison with its own
seed, so no session is served another's cached result). Opening that link starts
the run (the page runs on a first visit); a session whose page sits idle 5 s
(``--click-idle-s``) with Run enabled and no progress gets Run clicked. All N are
driven concurrently with Playwright's async API; the times below are taken in the
browser (from navigation start) by a script installed before the page loads:

* **t_progress**: the page shows its progress or its place in the queue: a progress
  bar, a text like "place 3 in the queue" or "Queued", a chart, or already the
  results (a cached run);
* **t_first_chart**: the first drawn Plotly chart;
* **t_finished**: the "Finished in … s" caption.

Every 0.5 s the server's process tree is sampled (psutil): the Streamlit process's
RSS and CPU time, and its child processes (Dask workers, if any). Worker-pool
utilisation = Δ(children CPU s) / (workers × wall s); without worker processes (the
compute runs in threads inside the server) the server's CPU / cores is shown instead.
How the cores were shared (server, workers, this benchmark's browser, other work on
the machine, idle) is printed under each row: on a small machine the N chromium
pages take a good part of the cores themselves.
The **class-limited-by-cores ratio** = (time until the last session finished) /
(N × single-session t_finished / cores), the single session being the N = 1 row.

* ``--cached``: after the N sessions, 16 (``--cached-sessions``) new sessions open
  ``/`` at once (the default comparison, in the result cache since the warm-up): the
  time until all of them show "Finished in".
* ``--heavy``: 8 (``--heavy-sessions``) sessions as above, and once the first shows
  progress one more opens the Curvature page on digits MLP 64-512-512-10
  (``/curvature?problem=digits_mlp&p.hidden=512,512``, P ≈ 300,000): what it shows
  (a refusal or queue message, or its first chart and when) and the 8 others' p95
  t_finished against the same 8 without it (the N = 8 row, or a run of its own).

The N browsers stand in for the students' own machines, which a real class does not
share with the server: by default chromium runs at the lowest CPU priority
(``--browser-nice 19``; ``0`` shares the cores equally), so that the server and its
workers get the cores first. The browser's share is still printed under each row.

Goals (classroom issue): every session finishes; p95 t_progress ≤ 5 s; ratio ≤ 1.3
(judged where N ≥ cores: fewer sessions than cores cannot use them all); 16 cached
sessions all finished ≤ 10 s; a heavy session slows the others' p95 by ≤ 1.5×.
The numbers also go to ``artifacts/bench_classroom.json``. The machine is shared:
the load average before and after is printed, and other work slows every number.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from tests.browser import harness

GOALS = {
    "p95_progress_s": 5.0,
    "ratio": 1.3,
    "cached_all_s": 10.0,
    "heavy_slowdown": 1.5,
}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    # Every student looks at their own tab: no page's timers may be throttled as a
    # background tab's would be (Streamlit's progress fragment reruns on a timer).
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]
HEAVY_PATH = "/curvature?problem=digits_mlp&p.hidden=512,512"
JSON_PATH = harness.ROOT / "artifacts" / "bench_classroom.json"
SAMPLE_S = 0.5
POLL_S = 0.5
#: Seconds a page must sit idle (script not running, Run enabled, no progress)
#: before Run is clicked; a first visit starts its run itself, so this is a fallback.
CLICK_IDLE_S = 5.0
#: Seconds to wait after "Finished in" for the results' first chart to be drawn.
CHART_GRACE_S = 10.0
#: Child processes that are not compute workers (multiprocessing's helpers).
NOT_WORKERS = re.compile(r"resource_tracker|forkserver|semaphore_tracker")
#: A Compare run the server would not start (its limits): the session stops there.
NOT_STARTED = re.compile(r"not started|refus", re.I)
REFUSAL = re.compile(
    r"refus|too (large|big|heavy)|busy|limit|try again|not allowed|queue", re.I
)

#: Installed before every page loads: records, in ms from navigation start
#: (``performance.now()``), the first progress/queue/chart, the first drawn chart,
#: the "Finished in" caption, and any exception and alert texts.
MONITOR = r"""(() => {
    if (window.top !== window || window.__classroom) return;
    const c = window.__classroom = {
        progress: null, progressKind: null, chart: null, finished: null,
        finishedText: null, queueText: null, exception: null, alerts: [],
        origin: performance.timeOrigin,
    };
    const visible = (el) => el.offsetParent !== null;
    const tick = () => {
        const now = performance.now();
        const main = document.querySelector('[data-testid="stMain"]');
        if (!main) return;
        const text = main.textContent || '';
        const plots = [...document.querySelectorAll('.js-plotly-plot')]
            .filter((el) => visible(el) && el.querySelector('.main-svg'));
        const bar = [...document.querySelectorAll('[data-testid="stProgress"]')]
            .some(visible);
        const queue = text.match(/(queued|place \d+ in the queue)[^.\n]*/i);
        if (queue && c.queueText === null) c.queueText = queue[0].trim().slice(0, 200);
        const done = text.match(/Finished in [0-9.]+ s/);
        if (c.progress === null && (bar || queue || plots.length || done)) {
            c.progress = now;
            c.progressKind = bar ? 'progress bar' : queue ? 'queue text'
                : plots.length ? 'chart' : 'results';
        }
        if (c.chart === null && plots.length) c.chart = now;
        if (c.finished === null && done) { c.finished = now; c.finishedText = done[0]; }
        const error = document.querySelector('[data-testid="stException"]');
        if (error && c.exception === null) {
            c.exception = (error.textContent || '').trim().slice(0, 500);
        }
        for (const el of document.querySelectorAll('[data-testid="stAlert"]')) {
            const said = (el.textContent || '').trim().slice(0, 300);
            if (said && c.alerts.length < 10 && !c.alerts.some((a) => a.text === said)) {
                c.alerts.push({t: now, text: said});
            }
        }
        if (c.finished !== null && c.chart !== null) clearInterval(c.timer);
    };
    c.timer = setInterval(tick, 50);
})();"""
#: What Python polls: the monitor's record plus whether Run can be clicked.
STATUS = """() => {
    const c = window.__classroom || null;
    const app = document.querySelector('[data-testid="stApp"]');
    const run = [...document.querySelectorAll('button')]
        .find((el) => el.innerText.trim() === 'Run');
    return {
        record: c,
        now: performance.now(),
        scriptState: app ? app.getAttribute('data-test-script-state') : null,
        runEnabled: run !== undefined && !run.disabled,
    };
}"""
#: The end of what the main area shows, and any spinner's text.
SHOWN = """() => {
    const main = document.querySelector('[data-testid="stMain"]');
    const spin = [...document.querySelectorAll('[data-testid="stSpinner"]')]
        .map((el) => el.innerText.trim()).filter((t) => t);
    const text = main ? main.innerText.replace(/\\s+/g, ' ').trim() : '';
    return (spin.length ? `[spinner: ${spin.join(' | ')}] ` : '') + text.slice(-400);
}"""
CLICK_RUN = """() => {
    const run = [...document.querySelectorAll('button')]
        .find((el) => el.innerText.trim() === 'Run' && !el.disabled);
    if (run) run.click();
    return run !== undefined;
}"""


# ------------------------------------------------------------------ resources
def busy_s(times: Any) -> float:
    """CPU seconds of ``psutil.cpu_times()`` that were not idle (all cores)."""
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


class Sampler(threading.Thread):
    """Samples the server's process tree every ``SAMPLE_S`` seconds until stopped.

    Also the CPU of this benchmark's browser (its own child processes besides the
    server: Playwright's driver and chromium) and of the whole machine, so the share
    that other work on a shared machine took can be told apart.
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True, name="bench-sampler")
        self.process = psutil.Process(pid)
        self.stopped = threading.Event()
        self.server_rss: list[float] = []
        self.worker_rss: list[float] = []
        self.worker_counts: list[int] = []
        self.worker_cpu: dict[int, list[float]] = {}  # pid: [first, last] CPU s
        self.server_cpu: list[float] = []
        self.times: list[float] = []
        self.kinds: dict[int, bool] = {}  # pid: is a worker
        self.me = psutil.Process()
        self.browser_cpu: dict[int, list[float]] = {}  # pid: [first, last] CPU s
        self.own_cpu: list[float] = []
        self.machine_busy: list[float] = []

    def is_worker(self, child: psutil.Process) -> bool:
        if child.pid not in self.kinds:
            try:
                command = " ".join(child.cmdline())
            except (psutil.Error, OSError):
                command = ""
            self.kinds[child.pid] = not NOT_WORKERS.search(command)
        return self.kinds[child.pid]

    def sample(self) -> None:
        try:
            with self.process.oneshot():
                rss = self.process.memory_info().rss
                cpu = self.process.cpu_times()
            children = self.process.children(recursive=True)
        except psutil.Error:
            return
        first = not self.times
        total_rss, count = 0, 0
        for child in children:
            try:
                if not self.is_worker(child):
                    continue
                with child.oneshot():
                    child_rss = child.memory_info().rss
                    times = child.cpu_times()
            except psutil.Error:
                continue
            used = times.user + times.system
            total_rss += child_rss
            count += 1
            # A worker there at the start counts from then; a later one from birth.
            start = used if first else 0.0
            self.worker_cpu.setdefault(child.pid, [start, used])[1] = used
        self.sample_browser(first, {self.process.pid, *(c.pid for c in children)})
        own = self.me.cpu_times()
        self.own_cpu.append(own.user + own.system)
        self.machine_busy.append(busy_s(psutil.cpu_times()))
        self.times.append(time.perf_counter())
        self.server_rss.append(rss / 2**20)
        self.server_cpu.append(cpu.user + cpu.system)
        self.worker_rss.append(total_rss / 2**20)
        self.worker_counts.append(count)

    def sample_browser(self, first: bool, server_pids: set[int]) -> None:
        try:
            mine = self.me.children(recursive=True)
        except psutil.Error:
            return
        for child in mine:
            if child.pid in server_pids:
                continue
            try:
                times = child.cpu_times()
            except psutil.Error:
                continue
            used = times.user + times.system
            start = used if first else 0.0
            self.browser_cpu.setdefault(child.pid, [start, used])[1] = used

    def run(self) -> None:
        self.sample()
        while not self.stopped.wait(SAMPLE_S):
            self.sample()

    def finish(self) -> dict[str, Any]:
        self.stopped.set()
        self.join(10)
        self.sample()
        wall = self.times[-1] - self.times[0] if len(self.times) > 1 else math.nan
        workers = max(self.worker_counts, default=0)
        worker_cpu = sum(last - first for first, last in self.worker_cpu.values())
        server_cpu = (
            self.server_cpu[-1] - self.server_cpu[0] if self.server_cpu else math.nan
        )
        cores = os.cpu_count() or 1
        browser_cpu = sum(last - first for first, last in self.browser_cpu.values())
        own_cpu = self.own_cpu[-1] - self.own_cpu[0] if self.own_cpu else math.nan
        machine = (
            self.machine_busy[-1] - self.machine_busy[0]
            if self.machine_busy
            else math.nan
        )
        others = machine - server_cpu - worker_cpu - browser_cpu - own_cpu
        return {
            "samples": len(self.times),
            "wall_s": wall,
            "server_rss_max_mb": max(self.server_rss, default=math.nan),
            "worker_rss_max_mb": max(self.worker_rss, default=0.0),
            "workers": workers,
            "worker_cpu_s": worker_cpu,
            "worker_utilisation": worker_cpu / (workers * wall) if workers else None,
            "server_cpu_s": server_cpu,
            "server_cpu_per_core": server_cpu / (cores * wall),
            "browser_cpu_s": browser_cpu,
            "bench_cpu_s": own_cpu,
            "machine_busy_s": machine,
            # The machine's busy CPU shared out, as fractions of cores × wall.
            "cpu_shares": {
                "server": server_cpu / (cores * wall),
                "workers": worker_cpu / (cores * wall),
                "browser": (browser_cpu + own_cpu) / (cores * wall),
                "other work": max(others, 0.0) / (cores * wall),
                "idle": max(cores * wall - machine, 0.0) / (cores * wall),
            },
        }


# ------------------------------------------------------------------- browser
@contextlib.asynccontextmanager
async def chromium(nice: int = 0) -> AsyncIterator[Any]:
    """One headless chromium (Debian's binary) driven by Playwright's async API,
    at CPU priority ``nice`` (a wrapper script runs it under ``nice``)."""
    from playwright.async_api import async_playwright

    harness.TMP_DIR.mkdir(parents=True, exist_ok=True)
    executable = harness.CHROMIUM
    if nice:
        wrapper = harness.TMP_DIR / f"chromium-nice-{nice}.sh"
        wrapper.write_text(
            f'#!/bin/sh\nexec nice -n {int(nice)} {harness.CHROMIUM} "$@"\n'
        )
        wrapper.chmod(0o755)
        executable = str(wrapper)
    previous = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(harness.TMP_DIR)  # the Node driver and its profiles
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=executable,
                args=CHROMIUM_ARGS,
                env=harness.child_env(),
                timeout=120_000,
            )
            try:
                yield browser
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(browser.close(), 60)
    finally:
        if previous is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = previous


def seconds(ms: float | None) -> float | None:
    return None if ms is None else ms / 1000


async def drive(
    context: Any,
    path: str,
    deadline: float,
    *,
    heavy: bool = False,
    start_after: asyncio.Event | None = None,
    click_idle_s: float = CLICK_IDLE_S,
) -> dict[str, Any]:
    """Opens ``path`` in ``context`` and follows it until finished or ``deadline``.

    A Compare session is followed until "Finished in" and its first chart (at most
    ``CHART_GRACE_S`` later); a heavy one until its first chart, a refusal or queue
    message, or an exception.

    Returns:
        The session's record: seconds from navigation (``None`` where it never
        happened), what it showed, whether Run had to be clicked, and a trace of
        the page's (script state, Run enabled, progress shown) changes.
    """
    out: dict[str, Any] = {"path": path, "heavy": heavy, "clicked_run": False}
    trace: list[list[Any]] = []
    out["trace"] = trace
    if start_after is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(start_after.wait(), max(1.0, deadline - time.time()))
    page = await context.new_page()
    status: dict[str, Any] = {}
    record: dict[str, Any] = {}
    idle_since: float | None = None
    out["opened_at"] = time.time()
    try:
        remaining_ms = max(1_000, int((deadline - time.time()) * 1000))
        await page.goto(path, wait_until="commit", timeout=remaining_ms)
        while time.time() < deadline:
            status = await asyncio.wait_for(page.evaluate(STATUS), 30)
            record = status["record"] or {}
            state = [
                status["scriptState"],
                status["runEnabled"],
                record.get("progress") is not None,
            ]
            if (not trace or trace[-1][1:] != state) and len(trace) < 200:
                trace.append([round(status["now"] / 1000, 2), *state])
            if record.get("exception"):
                break
            if heavy and (
                record.get("chart") is not None
                or any(REFUSAL.search(a["text"]) for a in record.get("alerts", []))
            ):
                break
            alerts = record.get("alerts", [])
            if not heavy and any(NOT_STARTED.search(a["text"]) for a in alerts):
                out["error"] = "refused: " + next(
                    a["text"] for a in alerts if NOT_STARTED.search(a["text"])
                )
                break
            finished = record.get("finished")
            if (
                not heavy
                and finished is not None
                and (
                    record.get("chart") is not None
                    or status["now"] - finished > CHART_GRACE_S * 1000
                )
            ):
                break
            idle = (
                not heavy
                and not out["clicked_run"]
                and record.get("progress") is None
                and status["scriptState"] == "notRunning"
                and status["runEnabled"]
            )
            if not idle:
                idle_since = None
            elif idle_since is None:
                idle_since = time.perf_counter()
            elif click_idle_s > 0 and time.perf_counter() - idle_since >= click_idle_s:
                out["shown_before_click"] = await asyncio.wait_for(
                    page.evaluate(SHOWN), 30
                )
                harness.SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(Exception):
                    name = re.sub(r"\W+", "-", path).strip("-") or "root"
                    await page.screenshot(
                        path=harness.SCREENSHOTS / f"classroom-click-{name}.png",
                        timeout=30_000,
                    )
                clicked = await asyncio.wait_for(page.evaluate(CLICK_RUN), 30)
                out["clicked_run"] = bool(clicked)
                out["clicked_run_at_s"] = seconds(status["now"])
            await asyncio.sleep(POLL_S)
        else:
            if record.get("finished") is None:
                out["error"] = "timed out"
        status = await asyncio.wait_for(page.evaluate(STATUS), 30)
        if heavy:
            out["shown_text"] = await asyncio.wait_for(page.evaluate(SHOWN), 30)
    except Exception as error:  # a crashed page is a session that did not finish
        out["error"] = f"{type(error).__name__}: {error}"[:500]
    record = (status or {}).get("record") or {}
    origin = record.get("origin")
    finished = record.get("finished")
    out.update(
        t_progress=seconds(record.get("progress")),
        progress_kind=record.get("progressKind"),
        t_first_chart=seconds(record.get("chart")),
        t_finished=seconds(finished),
        finished_at=None if finished is None else (origin + finished) / 1000,
        finished_text=record.get("finishedText"),
        queue_text=record.get("queueText"),
        alerts=[
            {"t": seconds(a["t"]), "text": a["text"]} for a in record.get("alerts", [])
        ],
        exception=record.get("exception"),
    )
    out["finished"] = (
        not heavy and out["t_finished"] is not None and not out["exception"]
    )
    return out


async def phase(
    browser: Any,
    server: harness.Server,
    paths: Sequence[str],
    timeout_s: float,
    *,
    heavy_path: str | None = None,
    sample: bool = True,
    click_idle_s: float = CLICK_IDLE_S,
) -> dict[str, Any]:
    """Opens every path at once in its own browser context; all follow to the end.

    A heavy path opens once another session shows progress (at most 30 s later).
    """
    contexts: list[Any] = []
    sampler = Sampler(server.process.pid) if sample else None
    try:
        for _ in range(len(paths) + (heavy_path is not None)):
            context = await browser.new_context(
                viewport=harness.VIEWPORT, base_url=server.url
            )
            context.set_default_timeout(timeout_s * 1000)
            await context.add_init_script(MONITOR)
            contexts.append(context)
        if sampler is not None:
            sampler.start()
        started = time.time()
        deadline = started + timeout_s
        tasks = [
            asyncio.ensure_future(drive(c, p, deadline, click_idle_s=click_idle_s))
            for c, p in zip(contexts, paths)
        ]
        heavy_task = None
        if heavy_path is not None:
            ready = asyncio.Event()
            heavy_task = asyncio.ensure_future(
                drive(contexts[-1], heavy_path, deadline, heavy=True, start_after=ready)
            )
            signaller = asyncio.ensure_future(
                signal_progress(contexts[:-1], ready, started + 30)
            )
        sessions = await asyncio.gather(*tasks)
        heavy = None
        if heavy_task is not None:
            heavy = await heavy_task
            await signaller
        ended = time.time()
    finally:
        resources = sampler.finish() if sampler is not None else None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.gather(*(c.close() for c in contexts), return_exceptions=True),
                60,
            )
    finished = [s for s in sessions if s["finished"]]
    last = (
        max(s["finished_at"] for s in finished) - started
        if len(finished) == len(sessions) and sessions
        else None
    )
    result = {
        "sessions": sessions,
        "n": len(sessions),
        "finished": len(finished),
        "last_finished_s": last,
        "wall_s": ended - started,
        "resources": resources,
        "clicked_run": sum(s["clicked_run"] for s in sessions),
        "saw_queue": sum(s["queue_text"] is not None for s in sessions),
    }
    for name in ("t_progress", "t_first_chart", "t_finished"):
        values = [s[name] for s in finished if s[name] is not None]
        result[name] = {
            "p50": float(np.percentile(values, 50)) if values else None,
            "p95": float(np.percentile(values, 95)) if values else None,
        }
    if heavy_path is not None:
        result["heavy"] = heavy
    return result


async def signal_progress(contexts: Sequence[Any], ready: asyncio.Event, by: float):
    """Sets ``ready`` once a page of ``contexts`` shows progress, or at ``by``."""
    while time.time() < by:
        shown = 0
        for context in contexts:
            for page in context.pages:
                with contextlib.suppress(Exception):
                    record = await asyncio.wait_for(
                        page.evaluate("() => window.__classroom || null"), 10
                    )
                    shown += bool(record and record.get("progress") is not None)
        if shown:
            break
        await asyncio.sleep(POLL_S)
    ready.set()


# -------------------------------------------------------------------- server
@contextlib.contextmanager
def server_for(args: argparse.Namespace):
    """A fresh server from ``--app-dir`` with the CLI's extra arguments and env."""
    port = harness.free_port()
    command = harness.server_command(sys.executable, port)
    for extra in args.server_arg:
        command += shlex.split(extra)
    env = dict(item.split("=", 1) for item in args.env)
    with contextlib.ExitStack() as stack:
        if "EXPLORER_CACHE_DIR" not in env:  # nothing cached from an earlier server
            harness.TMP_DIR.mkdir(parents=True, exist_ok=True)
            env["EXPLORER_CACHE_DIR"] = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="cache-", dir=harness.TMP_DIR)
            )
        server = stack.enter_context(
            harness.streamlit_server(
                cwd=Path(args.app_dir),
                command=command,
                port=port,
                env=harness.child_env(env),
                timeout=180,
            )
        )
        yield server


async def warm_up(
    browser: Any, server: harness.Server, args: argparse.Namespace
) -> dict[str, Any]:
    """One session runs the default comparison (``/``) to the end."""
    result = await phase(
        browser,
        server,
        ["/"],
        args.timeout,
        sample=False,
        click_idle_s=args.click_idle_s,
    )
    if not result["finished"]:
        session = result["sessions"][0]
        raise RuntimeError(
            f"the warm-up session did not finish: {session.get('error')} "
            f"{session.get('exception') or ''}; server log:\n{server.log()}"
        )
    return {"t_finished": result["sessions"][0]["t_finished"]}


def compare_paths(count: int) -> list[str]:
    return [f"/?seed={i + 1}" for i in range(count)]


async def measure_row(args: argparse.Namespace, count: int) -> dict[str, Any]:
    with server_for(args) as server:
        async with chromium(args.browser_nice) as browser:
            row: dict[str, Any] = {"server_start_s": server.startup_s}
            if not args.cold:
                row["warm_up"] = await warm_up(browser, server, args)
            row.update(
                await phase(
                    browser,
                    server,
                    compare_paths(count),
                    args.timeout,
                    click_idle_s=args.click_idle_s,
                )
            )
            if args.cached:
                if args.cold:  # the default comparison must be in the cache first
                    row["warm_up"] = await warm_up(browser, server, args)
                row["cached"] = await phase(
                    browser,
                    server,
                    ["/"] * args.cached_sessions,
                    args.timeout,
                    click_idle_s=args.click_idle_s,
                )
    return row


async def measure_heavy(args: argparse.Namespace) -> dict[str, Any]:
    with server_for(args) as server:
        async with chromium(args.browser_nice) as browser:
            if not args.cold:
                await warm_up(browser, server, args)
            return await phase(
                browser,
                server,
                compare_paths(args.heavy_sessions),
                args.timeout,
                heavy_path=HEAVY_PATH,
                click_idle_s=args.click_idle_s,
            )


async def measure(args: argparse.Namespace, counts: list[int]) -> dict[str, Any]:
    numbers: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg()[0],
        "args": vars(args),
        "rows": [],
    }
    for count in counts:
        print(f"... N = {count}", file=sys.stderr, flush=True)
        row = await measure_row(args, count)
        row["N"] = count
        numbers["rows"].append(row)
    if args.heavy:
        baseline = next(
            (r for r in numbers["rows"] if r["N"] == args.heavy_sessions), None
        )
        if baseline is None:
            print(f"... N = {args.heavy_sessions} (heavy baseline)", file=sys.stderr)
            baseline = await measure_row(
                argparse.Namespace(**{**vars(args), "cached": False}),
                args.heavy_sessions,
            )
        print(f"... N = {args.heavy_sessions} + heavy", file=sys.stderr, flush=True)
        numbers["heavy"] = {
            "path": HEAVY_PATH,
            "baseline_p95_finished_s": baseline["t_finished"]["p95"],
            "with_heavy": await measure_heavy(args),
        }
    numbers["load_after"] = os.getloadavg()[0]
    return numbers


# -------------------------------------------------------------------- report
def fmt(value: float | None, unit: str = " s", digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}{unit}"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "met" if ok else "MISSED"


def ratio_of(row: dict, single: float | None, cores: int) -> float | None:
    last = row["last_finished_s"]
    if last is None or not single:
        return None
    return last / (row["n"] * single / cores)


def utilisation_text(resources: dict | None) -> str:
    if not resources:
        return "—"
    server = f"server {100 * resources['server_cpu_per_core']:.0f}% of cores"
    if resources["worker_utilisation"] is None:
        return f"n/a (no worker processes); {server}"
    return (
        f"{100 * resources['worker_utilisation']:.0f}% of "
        f"{resources['workers']} workers; {server}"
    )


def report(numbers: dict, single_s: float | None) -> None:
    cores = numbers["cpus"] or 1
    print(
        f"{cores} CPUs; load average before/after: {numbers['load_before']:.1f} / "
        f"{numbers['load_after']:.1f} (other work on a shared machine slows every "
        "number here)"
    )
    print(
        "times in s from navigation, p50/p95 over finished sessions; RSS max over "
        "the run; ratio = last finished / (N × single / cores)"
    )
    header = (
        f"{'N':>3} {'done':>6} {'progress':>11} {'1st chart':>11} {'finished':>11} "
        f"{'last':>7} {'srv RSS':>8} {'wrk RSS':>8} {'ratio':>6}  utilisation"
    )
    print(header)
    print("-" * len(header))
    for row in numbers["rows"]:
        pair = {
            k: f"{fmt(row[k]['p50'], '')}/{fmt(row[k]['p95'], '')}"
            for k in ("t_progress", "t_first_chart", "t_finished")
        }
        res = row["resources"] or {}
        print(
            f"{row['N']:>3} {row['finished']:>3}/{row['n']:<2} "
            f"{pair['t_progress']:>11} {pair['t_first_chart']:>11} "
            f"{pair['t_finished']:>11} {fmt(row['last_finished_s']):>7} "
            f"{fmt(res.get('server_rss_max_mb'), ' MB', 0):>8} "
            f"{fmt(res.get('worker_rss_max_mb'), ' MB', 0):>8} "
            f"{fmt(ratio_of(row, single_s, cores), '', 2):>6}  "
            f"{utilisation_text(row['resources'])}"
        )
    print(f"single session t_finished: {fmt(single_s)} (the N = 1 row)")
    for row in numbers["rows"]:
        p95 = row["t_progress"]["p95"]
        ratio = ratio_of(row, single_s, cores)
        ratio_ok = (
            None
            if row["N"] < cores or single_s is None
            else (ratio is not None and ratio <= GOALS["ratio"])
        )
        extras = []
        if row["clicked_run"]:
            extras.append(f"Run clicked in {row['clicked_run']}")
        if row["saw_queue"]:
            extras.append(f"{row['saw_queue']} saw a queue message")
        failed = [s for s in row["sessions"] if not s["finished"]]
        if failed:
            why = failed[0].get("exception") or failed[0].get("error")
            extras.append(f"not finished, e.g.: {why}")
        print(
            f"N = {row['N']}: all finish: {verdict(row['finished'] == row['n'])} "
            f"({row['finished']}/{row['n']}); p95 t_progress ≤ "
            f"{GOALS['p95_progress_s']:g} s: {fmt(p95)} "
            f"{verdict(p95 is not None and p95 <= GOALS['p95_progress_s'])}; ratio ≤ "
            f"{GOALS['ratio']:g}: {fmt(ratio, '', 2)} {verdict(ratio_ok)}"
            + ("" if ratio_ok is not None or row["N"] >= cores else " (N < cores)")
            + (f"; {'; '.join(extras)}" if extras else "")
        )
        shares = (row["resources"] or {}).get("cpu_shares")
        if shares:
            print(
                f"  the {cores} cores during it: "
                + ", ".join(f"{k} {100 * v:.0f}%" for k, v in shares.items())
            )
        cached = row.get("cached")
        if cached:
            last = cached["last_finished_s"]
            print(
                f"  then {cached['n']} cached sessions on /: {cached['finished']}/"
                f"{cached['n']} finished, all after {fmt(last)} (goal ≤ "
                f"{GOALS['cached_all_s']:g} s: "
                f"{verdict(last is not None and last <= GOALS['cached_all_s'])}); "
                f"p50/p95 t_finished {fmt(cached['t_finished']['p50'])}/"
                f"{fmt(cached['t_finished']['p95'])}"
            )
            spent = (cached.get("resources") or {}).get("server_cpu_s")
            if spent is not None and cached["n"]:
                print(
                    f"  server CPU per cached page load: {spent / cached['n']:.2f} s "
                    f"({spent:.1f} s for {cached['n']}; goal well under 1 s)"
                )
    heavy = numbers.get("heavy")
    if heavy:
        run = heavy["with_heavy"]
        session = run["heavy"] or {}
        shown = [a["text"] for a in session.get("alerts", [])]
        chart = session.get("t_first_chart")
        print(f"heavy: {heavy['path']} opened next to {run['n']} Compare sessions")
        print(
            f"  it showed: first chart after {fmt(chart)}"
            + (f"; messages: {shown}" if shown else "; no message")
            + (
                f"; exception: {session['exception']}"
                if session.get("exception")
                else ""
            )
            + (f"; {session['error']}" if session.get("error") else "")
        )
        shares = (run["resources"] or {}).get("cpu_shares")
        if shares:
            print(
                f"  the {cores} cores during it: "
                + ", ".join(f"{k} {100 * v:.0f}%" for k, v in shares.items())
            )
        if session.get("shown_text"):
            print(f"  its page at the end: …{session['shown_text'][-300:]}")
        base, loaded = heavy["baseline_p95_finished_s"], run["t_finished"]["p95"]
        slowdown = loaded / base if base and loaded is not None else None
        print(
            f"  the {run['n']} others: {run['finished']}/{run['n']} finished, p95 "
            f"t_finished {fmt(loaded)} against {fmt(base)} without it: "
            f"{fmt(slowdown, '×', 2)} (goal ≤ {GOALS['heavy_slowdown']:g}×: "
            f"{verdict(slowdown is not None and slowdown <= GOALS['heavy_slowdown'])})"
        )


def clean(value: Any) -> Any:
    """JSON-safe: NaN becomes null, paths text."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sessions",
        default="1,4,8,16,30",
        help="comma list of N (default %(default)s)",
    )
    parser.add_argument(
        "--timeout", type=float, default=420, help="s per group of sessions"
    )
    parser.add_argument("--heavy", action="store_true", help="add the heavy session")
    parser.add_argument("--heavy-sessions", type=int, default=8)
    parser.add_argument("--cached", action="store_true", help="then cached sessions")
    parser.add_argument("--cached-sessions", type=int, default=16)
    parser.add_argument(
        "--cold", action="store_true", help="no warm-up session before the N"
    )
    parser.add_argument(
        "--click-idle-s",
        type=float,
        default=CLICK_IDLE_S,
        help="click Run after a page sat this long idle without progress (0: never)",
    )
    parser.add_argument(
        "--single-s",
        type=float,
        default=None,
        help="single-session t_finished for the ratio when 1 is not in --sessions",
    )
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra streamlit argument(s), e.g. --server-arg=--logger.level=info",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="server environment, e.g. --env EXPLORER_DASK_WORKERS=2",
    )
    parser.add_argument(
        "--app-dir", default=str(harness.ROOT), help="where app.py is (default: repo)"
    )
    parser.add_argument("--json-path", default=str(JSON_PATH))
    parser.add_argument(
        "--browser-nice",
        type=int,
        default=19,
        help="CPU priority of the benchmark's chromium (0: equal to the server's)",
    )
    args = parser.parse_args()
    if any("=" not in item for item in args.env):
        parser.error("--env takes KEY=VALUE")
    counts = [int(n) for n in args.sessions.split(",") if n.strip()]
    if 1 in counts:  # the single-session time the ratio needs comes first
        counts = [1, *(n for n in counts if n != 1)]
    reason = harness.browser_missing()
    if reason:
        raise SystemExit(f"cannot benchmark in a browser: {reason}")
    start = time.perf_counter()
    numbers = asyncio.run(measure(args, counts))
    single = next((r for r in numbers["rows"] if r["N"] == 1), None)
    single_s = single["t_finished"]["p50"] if single else args.single_s
    numbers["single_session_s"] = single_s
    numbers["total_wall_s"] = time.perf_counter() - start
    report(numbers, single_s)
    print(f"total wall time {numbers['total_wall_s']:.0f} s")
    path = Path(args.json_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean(numbers), indent=2))
    print(f"numbers in {path}")


if __name__ == "__main__":
    main()
