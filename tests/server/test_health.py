"""The health check serves a session's work: a hung plugin makes it unhealthy.

Streamlit's ``/_stcore/health`` says ``ok`` while a plugin that loops at import
hangs every session; ``python -m explorer.server.health`` (the image's
HEALTHCHECK) loads the plugins and runs two steps in a fresh process too. A stand-in
web server on 127.0.0.1 answers the HTTP part; everything is bounded in time.
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from explorer.server import health

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # each check starts a Python that imports torch


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok" if self.path == "/_stcore/health" else b"app"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def web():
    """A server that answers like Streamlit's health endpoint, on a free port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def check(url: str, plugins: Path, timeout: float) -> tuple[int, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "explorer.server.health",
            "--url",
            url,
            "--plugins",
            str(plugins),
            "--timeout",
            str(timeout),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout + 60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    return done.returncode, done.stderr, time.monotonic() - started


def test_healthy_when_the_app_answers_and_a_worker_can_start(web, tmp_path):
    (tmp_path / "fine.py").write_text("VALUE = 1\n")
    code, errors, _ = check(web, tmp_path, timeout=60)
    assert code == 0, errors


def test_a_plugin_that_loops_at_import_is_unhealthy_within_the_timeout(web, tmp_path):
    (tmp_path / "loop.py").write_text("while True:\n    pass\n")
    assert health.check_http(web, 2) is None  # Streamlit's own check says ok
    code, errors, seconds = check(web, tmp_path, timeout=15)
    assert code == 1
    assert "did not finish within 15 s" in errors and "plugin" in errors
    assert seconds < 15 + 30, "the check itself must give up in bounded time"


def test_a_silent_web_server_is_unhealthy(tmp_path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, errors, _ = check(f"http://127.0.0.1:{port}", tmp_path, timeout=60)
    assert code == 1 and "/_stcore/health did not answer" in errors
