"""The classroom server in a real browser: a session that waits for a worker sees its
place in the queue at once, and Stop in another session lets it through.

Its own server with one worker process (the shared suite's server has two), on
127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import re
import tempfile
import time

import pytest

from tests.browser import harness

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_a_waiting_session_sees_its_place_in_the_queue(browser, screenshots):
    env = harness.child_env(
        {
            "EXPLORER_DASK_SCHEDULER": "local",
            "EXPLORER_DASK_WORKERS": "1",
            "EXPLORER_CACHE_DIR": tempfile.mkdtemp(prefix="explorer-queue-"),
        }
    )
    with harness.streamlit_server(env=env) as server:
        contexts = [
            browser.new_context(viewport=harness.VIEWPORT, base_url=server.url)
            for _ in range(2)
        ]
        try:
            busy, waiting = (context.new_page() for context in contexts)
            for page in (busy, waiting):
                page.set_default_timeout(harness.WAIT_MS)
            # A link above the autostart budget waits for Run; pressing it
            # occupies the only worker.
            busy.goto("/?problem=linreg_2d&rules=sgd&steps=20000")
            busy.get_by_text("press Run to start it").wait_for()
            busy.get_by_role("button", name="Run", exact=True).click()
            busy.locator('[data-testid="stProgress"]').wait_for()
            opened = time.monotonic()
            waiting.goto("/?problem=linreg_2d&rules=adam&steps=40&seed=3")
            waiting.get_by_text(re.compile(r"Queued: place 1 in the queue")).wait_for(
                timeout=15_000
            )
            seen_after = time.monotonic() - opened
            harness.full_screenshot(waiting, screenshots / "compare-queued.png")
            assert seen_after < 15, seen_after
            busy.get_by_role("button", name="Stop").click()
            waiting.get_by_text(re.compile(r"Finished in [0-9.]+ s")).wait_for()
            busy.get_by_text(
                re.compile(r"cancelled after \d+ of 20000 steps")
            ).wait_for()
            for page in (busy, waiting):
                harness.assert_no_exception(page)
        finally:
            for context in contexts:
                context.close()
