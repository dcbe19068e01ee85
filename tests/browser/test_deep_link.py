"""A deep link to a page on a freshly started server gets the app's navigation.

Streamlit treats a folder named ``pages/`` as a legacy multipage folder: on a fresh
server, a first request for ``/curvature`` ran that file alone under a file-name
sidebar. The pages live in ``app_pages/`` so this cannot happen; this test keeps it so.
"""

from __future__ import annotations

import sys

import pytest

from tests.browser import harness
from tests.browser.test_app_browser import PAGES

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_first_request_is_a_deep_link(browser_available, browser):
    with harness.streamlit_server(python=sys.executable) as fresh:
        context = browser.new_context(viewport=harness.VIEWPORT, base_url=fresh.url)
        page = context.new_page()
        page.goto("/curvature?problem=tiny_tanh")
        page.wait_for_selector('[data-testid="stSidebarNav"] a')
        page.get_by_role("heading", name="Curvature").first.wait_for()
        links = [
            " ".join(text.split()[1:]) if text.split() else text
            for text in page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()
        ]
        assert links == [spec.title for spec in PAGES]
        harness.assert_no_exception(page)
        context.close()
