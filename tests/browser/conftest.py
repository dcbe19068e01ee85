"""Fixtures of the real-browser suite: one server and one chromium per session.

The suite skips with the reason when playwright or chromium is missing, except when
``EXPLORER_REQUIRE_BROWSER=1`` (set by ``.ci/run``): then it fails, so CI can never
pass without it. Screenshots go to ``artifacts/screenshots/`` (ignored by git).
"""

from __future__ import annotations

import os
import sys

import pytest

from tests.browser import harness


@pytest.fixture(scope="session")
def browser_available() -> None:
    reason = harness.browser_missing()
    if reason is None:
        return
    if os.environ.get(harness.REQUIRE_BROWSER) == "1":
        pytest.fail(f"{harness.REQUIRE_BROWSER}=1 but {reason}", pytrace=False)
    pytest.skip(f"real-browser tests skipped: {reason}")


@pytest.fixture(scope="session")
def server(browser_available) -> harness.Server:
    """``streamlit run app.py`` on a free port (this interpreter, i.e. ``.venv``),
    computing on the app's real engine: a local Dask cluster of worker processes."""
    env = harness.child_env({"EXPLORER_DASK_SCHEDULER": "local"})
    with harness.streamlit_server(python=sys.executable, env=env) as running:
        yield running


@pytest.fixture(scope="session")
def browser(browser_available):
    with harness.chromium() as launched:
        yield launched


@pytest.fixture(scope="session")
def screenshots():
    harness.SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return harness.SCREENSHOTS


@pytest.fixture
def new_page(browser, server):
    """Opens pages in fresh browser contexts (= fresh Streamlit sessions).

    Every page opened this way is checked at teardown: no Streamlit exception
    element and no uncaught JavaScript error.
    """
    contexts, pages, errors = [], [], []

    def open_page(path: str = "/"):
        context = browser.new_context(viewport=harness.VIEWPORT, base_url=server.url)
        context.set_default_timeout(harness.WAIT_MS)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        contexts.append(context)
        pages.append(page)
        if path is not None:
            page.goto(path)
        return page

    yield open_page
    try:
        for page in pages:
            harness.assert_no_exception(page)
        assert not errors, f"JavaScript errors: {errors}"
    finally:
        for context in contexts:
            context.close()
