"""The app in a real browser: Playwright drives Debian's chromium against a live server.

What a user does: open every page from the sidebar, run a comparison from a link,
change a setting and press Run, open a shared link; two users at once. Every page
opened here is checked for Streamlit exception elements and JavaScript errors (the
``new_page`` fixture), and screenshots land in ``artifacts/screenshots/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from explorer.ui.compare import problem_choice
from tests.browser import harness
from tests.browser.harness import rule_widget

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@dataclass(frozen=True)
class PageSpec:
    """A page of the sidebar navigation: its link text, its heading, whether it draws."""

    title: str
    heading: str
    charts: bool


#: Every page of app.py's navigation, in order. A new page is one line here.
PAGES = [
    PageSpec("Compare optimizers", "Compare optimizers", charts=True),
    PageSpec("Curvature", "Curvature", charts=True),
    PageSpec("Landscape", "Landscape", charts=True),
    PageSpec("Sweep", "Sweep", charts=False),
    PageSpec("Paper tour", "Paper tour", charts=False),
    PageSpec("Check your approximation", "Check your approximation", charts=False),
    PageSpec("Theory", "Theory", charts=False),
]

#: A small classification comparison behind the page walk (2 weights: every view).
WALK_URL = "/?" + urlencode(
    {"problem": "logreg_2d", "rules": "sgd,natural_gradient,gauss_newton", "steps": 10}
)
TABS = [
    "Loss",
    "Damping λ · ratio ρ · step α",
    "Parameter space",
    "Function space",
    "Export",
]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def query_of(url: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}


def value_of(locator) -> str:
    return locator.locator("input").first.input_value()


def url(**query) -> str:
    return "/?" + urlencode(query)


def expect_hidden(page, text: str) -> None:
    page.get_by_text(text).first.wait_for(state="hidden")


def loss_chart(page) -> dict:
    """The results' loss chart (titled "Loss against ...")."""
    found = [
        c
        for c in harness.charts(page)
        if c["visible"] and c["title"].lower().startswith("loss against")
    ]
    assert found, f"no loss chart among {harness.charts(page)}"
    return found[0]


def wait_for_results(page, names: list[str]) -> dict:
    """The finished comparison: summary table and a loss chart with ``names``."""
    page.wait_for_selector(harness.TABLE)
    chart = harness.wait_for_traces(page, names)
    harness.assert_no_exception(page)
    return chart


# ----------------------------------------------------------------- every page
@pytest.fixture(scope="module")
def walk(browser, server):
    """One session walking the sidebar (navigation keeps session state)."""
    context = browser.new_context(viewport=harness.VIEWPORT)
    context.set_default_timeout(harness.WAIT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server.url + WALK_URL)
    wait_for_results(page, ["sgd", "natural_gradient", "gauss_newton"])
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def test_sidebar_lists_every_page(walk):
    links = walk.locator(harness.NAV_LINKS)
    titles = [text.strip().splitlines()[-1].strip() for text in links.all_inner_texts()]
    assert titles == [spec.title for spec in PAGES]


@pytest.mark.parametrize("spec", PAGES, ids=[slug(s.title) for s in PAGES])
def test_every_page_opens_from_the_sidebar(walk, screenshots, spec):
    walk.locator(harness.NAV_LINKS).filter(has_text=spec.title).click()
    walk.locator("h1").filter(has_text=spec.heading).first.wait_for()
    if spec.charts:
        walk.wait_for_selector(harness.CHART)
    harness.wait_idle(walk)
    walk.wait_for_timeout(500)  # late elements (an error would come with them)
    harness.assert_no_exception(walk)
    assert walk.locator("h1").first.inner_text().strip() == spec.heading
    harness.full_screenshot(walk, screenshots / f"page-{slug(spec.title)}.png")


# -------------------------------------------------------- run from a link, Run
def test_comparison_from_a_link_then_run(new_page, screenshots):
    page = new_page(
        "/?problem=linreg_2d&rules=sgd,gauss_newton&r0.label=plain&steps=10"
    )
    chart = wait_for_results(page, ["plain", "gauss_newton"])
    assert chart["points"] == [11, 11]  # step 0 and 10 steps
    for index, tab in enumerate(TABS):
        page.get_by_role("tab", name=tab, exact=True).click()
        page.wait_for_timeout(400)
        harness.assert_no_exception(page)
        harness.full_screenshot(
            page, screenshots / f"compare-tab{index}-{slug(tab)}.png"
        )
    page.get_by_role("tab", name="Loss", exact=True).click()

    steps = harness.keyed(page, "cmp.run.steps").locator("input")
    steps.fill("12")
    steps.press("Enter")
    page.get_by_text("These results are for earlier settings").wait_for()
    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_function(
        """() => [...document.querySelectorAll('.js-plotly-plot')].some((el) =>
            el.offsetParent !== null && (el.data || []).length === 2 &&
            el.data.every((t) => (t.x || []).length === 13))"""
    )
    harness.wait_idle(page)
    (chart,) = [
        c for c in harness.charts(page) if c["title"] == "Loss against iteration"
    ]
    assert chart["names"] == ["plain", "gauss_newton"]
    assert chart["points"] == [13, 13]
    page.wait_for_url(re.compile(r"steps=12"))
    assert query_of(page.url)["steps"] == "12"
    expect_hidden(page, "These results are for earlier settings")

    # The same configuration again: served from the result cache, at once.
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text(re.compile(r"Finished in 0\.[0-2] s")).wait_for()
    wait_for_results(page, ["plain", "gauss_newton"])


# ------------------------------------------------------------------- a sweep
def test_a_sweep_runs_with_live_progress_and_shows_its_grids(new_page, screenshots):
    page = new_page(url(problem="linreg_2d", rules="sgd", steps=5))
    wait_for_results(page, ["sgd"])
    page.locator(harness.NAV_LINKS).filter(has_text="Sweep").click()
    page.locator("h1").filter(has_text="Sweep").first.wait_for()
    for key, value in (("sw.seeds", "2"), ("sw.steps", "60")):
        box = harness.keyed(page, key).locator("input")
        box.fill(value)
        box.press("Enter")
    page.get_by_text(re.compile(r"56 trials\*?\*? · about")).wait_for()
    page.get_by_role("button", name="Run sweep").click()
    page.get_by_text(re.compile(r"of 56 trials done")).first.wait_for()
    harness.full_screenshot(page, screenshots / "sweep-running.png")
    page.get_by_text("Best-tuned settings").first.wait_for(timeout=240_000)
    page.wait_for_function(
        """() => [...document.querySelectorAll('.js-plotly-plot')].filter((el) =>
            (el.data || []).some((t) => t.type === 'heatmap')).length === 3"""
    )
    harness.wait_idle(page)
    harness.assert_no_exception(page)
    for label in ("Parquet", "CSV", "JSON", "HTML report", "sweep.toml"):
        assert page.get_by_role("button", name=label, exact=True).count() == 1
    harness.full_screenshot(page, screenshots / "sweep-finished.png")


# ------------------------------------------------------------ two users at once
def test_two_sessions_stay_isolated(new_page):
    first = new_page(None)
    second = new_page(None)
    # Both sessions compute at the same time on the one server.
    first.goto(url(problem="linreg_2d", rules="sgd,adam", steps=8))
    second.goto(url(problem="linreg_2d", rules="newton,natural_gradient", steps=12))
    a = wait_for_results(first, ["sgd", "adam"])
    b = wait_for_results(second, ["newton", "natural_gradient"])
    assert a["points"] == [9, 9]
    assert b["points"] == [13, 13]
    # Each sees only its own runs, widgets and URL, also after the other reruns.
    second.get_by_role("button", name="Run", exact=True).click()
    second.get_by_text(re.compile(r"Finished in 0\.[0-2] s")).wait_for()
    for page, names, other, steps in (
        (first, ["sgd", "adam"], {"newton", "natural_gradient"}, "8"),
        (second, ["newton", "natural_gradient"], {"sgd", "adam"}, "12"),
    ):
        assert loss_chart(page)["names"] == names
        seen = {name for chart in harness.charts(page) for name in chart["names"]}
        assert not seen & other
        assert value_of(harness.keyed(page, "cmp.run.steps")) == steps
        assert query_of(page.url)["steps"] == steps


# -------------------------------------------------------- a link restores a setup
SHARED = {
    "problem": "linreg_2d",
    "p.sigma": "0.5",
    "rules": "sgd,gauss_newton",
    "r0.lr": "0.05",
    "r1.damping": "0.01",
    "r1.label": "GN small λ",
    "steps": "7",
    "seed": "3",
}


def test_a_link_restores_the_configuration(new_page):
    page = new_page("/?" + urlencode(SHARED))
    chart = wait_for_results(page, ["sgd", "GN small λ"])
    assert chart["points"] == [8, 8]
    assert (
        not page.locator('[data-testid="stAlert"]').filter(has_text="ignored").count()
    )

    # The widgets show the link's values.
    assert value_of(harness.keyed(page, "cmp.problem")) == problem_choice("linreg_2d")
    assert value_of(harness.keyed(page, "cmp.run.steps")) == "7"
    assert value_of(harness.keyed(page, "cmp.run.seed")) == "3"
    assert float(value_of(rule_widget(page, "sgd", "lr"))) == pytest.approx(0.05)
    damping = rule_widget(page, "gauss_newton", "damping")
    assert float(value_of(damping)) == pytest.approx(0.01)
    labels = page.locator('[class*="st-key-cmp-r"][class*="-label"]')
    assert labels.count() == 2
    assert [value_of(labels.nth(i)) for i in range(2)] == ["", "GN small λ"]
    page.get_by_text("Problem options", exact=True).click()
    sigma = harness.keyed(page, "cmp.p.linreg_2d.sigma")
    assert float(value_of(sigma)) == pytest.approx(0.5)

    # The address bar still describes exactly this experiment...
    assert query_of(page.url) == SHARED
    # ...so opening it again (a new session) reproduces it.
    page.reload()
    again = wait_for_results(page, ["sgd", "GN small λ"])
    assert again["points"] == [8, 8]
    assert query_of(page.url) == SHARED
