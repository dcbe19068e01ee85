"""A Streamlit server and a headless chromium for real-browser tests and benchmarks.

Shared by ``tests/browser`` (pytest fixtures), ``tests/test_docker.py`` (health
polling) and ``benchmarks/bench_app.py``. No pytest import here. The facts behind the
flags are in STREAMLIT_NOTES.md: Debian's chromium (never ``playwright install``),
``--server.fileWatcherType none``, and a child that dies with its parent.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Ignored by .gitignore (``/tmp/`` and ``/artifacts/``) and by .dockerignore.
TMP_DIR = ROOT / "tmp" / "browser"
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = os.environ.get("EXPLORER_CHROMIUM", "/usr/bin/chromium")
REQUIRE_BROWSER = "EXPLORER_REQUIRE_BROWSER"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Selectors that held on streamlit 1.67 (STREAMLIT_NOTES.md).
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
CHART = '[data-testid="stPlotlyChart"] .js-plotly-plot .main-svg'
EXCEPTION = '[data-testid="stException"]'
KATEX_ERROR = ".katex-error"
NAV_LINKS = '[data-testid="stSidebarNav"] a'
TABLE = '[data-testid="stDataFrame"]'
VIEWPORT = {"width": 1400, "height": 1000}
#: Playwright waits (ms): generous, the 2 cores are shared and chromium is heavy.
WAIT_MS = 120_000

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def die_with_parent() -> None:
    """``preexec_fn``: the kernel sends SIGTERM to the child when its parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def health(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """(HTTP status, body) of ``url``; (0, b"") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""
    except (OSError, urllib.error.URLError):
        return 0, b""


def wait_healthy(
    base_url: str, process: subprocess.Popen | None = None, timeout: float = 90.0
) -> float:
    """Polls ``/_stcore/health`` until it answers 200 ``ok``; returns seconds waited.

    Raises:
        RuntimeError: the process exited, or ``timeout`` passed.
    """
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode}")
        status, body = health(f"{base_url}/_stcore/health")
        if status == 200 and body.strip() == b"ok":
            return time.perf_counter() - start
        time.sleep(0.2)
    raise RuntimeError(f"{base_url}/_stcore/health not ok after {timeout:.0f} s")


def stop(process: subprocess.Popen, grace: float = 10.0) -> None:
    """Ends ``process`` by its own PID: SIGTERM, then SIGKILL after ``grace``."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(grace)


def server_command(
    python: str | os.PathLike = sys.executable, port: int = 8501
) -> list[str]:
    return [
        str(python),
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The current environment with TMPDIR in the project's ignored temp folder."""
    TMP_DIR.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TMPDIR=str(TMP_DIR), PYTHONUNBUFFERED="1")
    env.update(extra or {})
    return env


class Server:
    """A running ``streamlit run app.py`` on a free loopback port."""

    def __init__(
        self,
        command: Sequence[str],
        cwd: Path,
        port: int,
        env: dict[str, str],
        log_path: Path,
        **popen: object,
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in close())
        self.process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,  # runs after Popen's user/group switch
            **popen,
        )
        self.startup_s = float("nan")

    def wait(self, timeout: float = 90.0) -> Server:
        try:
            self.startup_s = wait_healthy(self.url, self.process, timeout)
        except RuntimeError as error:
            raise RuntimeError(f"{error}; log:\n{self.log()}") from None
        return self

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def close(self) -> None:
        stop(self.process)
        self._log.close()


@contextlib.contextmanager
def streamlit_server(
    python: str | os.PathLike = sys.executable,
    cwd: Path = ROOT,
    command: Sequence[str] | None = None,
    port: int | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 90.0,
    log_dir: Path = TMP_DIR,
    **popen: object,
) -> Iterator[Server]:
    """Starts the app, waits for health, and always stops it.

    ``popen`` goes to :class:`subprocess.Popen` (e.g. ``user=`` and ``group=``).
    """
    port = port or free_port()
    server = Server(
        command or server_command(python, port),
        cwd,
        port,
        env or child_env(),
        log_dir / f"server-{port}.log",
        **popen,
    )
    try:
        yield server.wait(timeout)
    except BaseException:
        server.close()
        raise  # the log stays for a look
    server.close()
    server.log_path.unlink(missing_ok=True)


# -------------------------------------------------------------------- browser
def browser_missing() -> str | None:
    """Why a real-browser run cannot happen here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -r requirements-test.txt)"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"{CHROMIUM} not found (apt-get install chromium fonts-noto-color-emoji)"
    return None


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    """Playwright's chromium on Debian's binary; TMPDIR in the ignored temp folder."""
    from playwright.sync_api import sync_playwright

    TMP_DIR.mkdir(parents=True, exist_ok=True)
    previous = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(TMP_DIR)  # the Node driver and its profile dirs
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=CHROMIUM_ARGS,
                env=child_env(),
            )
            try:
                yield browser
            finally:
                browser.close()
    finally:
        if previous is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = previous


def charts(page) -> list[dict]:
    """Every rendered Plotly chart: title, trace names, points per trace, visible.

    Titles come without markup (Streamlit's frontend wraps them in ``<b>`` tags).
    """
    found = page.evaluate(
        """() => [...document.querySelectorAll(
                '[data-testid="stPlotlyChart"] .js-plotly-plot')].map((el) => ({
            title: (el.layout && el.layout.title && el.layout.title.text) || "",
            names: (el.data || []).map((trace) => trace.name),
            points: (el.data || []).map((trace) => (trace.x || []).length),
            visible: el.offsetParent !== null,
        }))"""
    )
    for chart in found:
        chart["title"] = re.sub(r"<[^>]+>", "", chart["title"]).strip()
    return found


def wait_for_traces(page, names: Sequence[str], timeout_ms: int = WAIT_MS) -> dict:
    """Waits until a visible, drawn chart has exactly the traces ``names`` (in order).

    Returns:
        That chart (see :func:`charts`).
    """
    page.wait_for_function(
        """(names) => [...document.querySelectorAll(
                '[data-testid="stPlotlyChart"] .js-plotly-plot')].some((el) =>
            el.offsetParent !== null && el.querySelector('.main-svg') &&
            JSON.stringify((el.data || []).map((t) => t.name)) ===
                JSON.stringify(names))""",
        arg=list(names),
        timeout=timeout_ms,
    )
    return next(
        chart
        for chart in charts(page)
        if chart["visible"] and chart["names"] == list(names)
    )


def wait_idle(page, timeout_ms: int = WAIT_MS) -> None:
    page.wait_for_selector(IDLE, timeout=timeout_ms)


def assert_no_exception(page) -> None:
    """No Streamlit exception element, and no formula KaTeX failed to typeset."""
    shown = page.locator(EXCEPTION).all_inner_texts()
    assert not shown, f"Streamlit exception on {page.url}: {shown}"
    broken = page.locator(KATEX_ERROR).all_inner_texts()
    assert not broken, f"formulas KaTeX could not render on {page.url}: {broken}"


def keyed(page, key: str):
    """The widget with Streamlit ``key`` (its container has class ``st-key-<key>``)."""
    return page.locator(f".st-key-{key.replace('.', '-')}")


def rule_widget(page, rule: str, option: str):
    """Widgets of ``option`` in the Compare page's cards of ``rule`` (in card order).

    Card keys carry a per-process counter (``cmp.r<id>.<rule>.<option>``).
    """
    return page.locator(f'[class*="st-key-cmp-r"][class*="-{rule}-{option}"]')


def full_screenshot(page, path: os.PathLike | str) -> None:
    """A screenshot of the whole page.

    Streamlit scrolls inside ``stMain`` (not the document), so ``full_page=True``
    alone gives the viewport: grow the viewport to the content, shoot, restore.
    """
    height = page.evaluate(
        """() => Math.max(window.innerHeight, ...['stMain', 'stSidebarContent']
            .map((id) => document.querySelector(`[data-testid="${id}"]`))
            .filter((el) => el).map((el) => el.scrollHeight))"""
    )
    size = page.viewport_size or VIEWPORT
    page.set_viewport_size({"width": size["width"], "height": min(height, 12_000)})
    page.wait_for_timeout(600)  # charts re-layout to the new size
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)
