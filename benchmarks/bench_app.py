"""The app's speed as a user sees it: Run to first chart, Run to finished results.

Run: ``python -m benchmarks.bench_app [--repeats 1] [--json]`` (needs playwright and
Debian's chromium, as the browser tests do).

It starts the server, opens the Compare page with the default comparison
(``explorer.runs.DEFAULT_EXPERIMENT``: digits MLP, five optimizers, 50 steps) and,
once that first automatic run has finished (which also loads the Plotly bundle),
times in the browser:

* **cold**: the Seed is set to a value not run before (so no cached result hides the
  cost), then Run is clicked: the time to the first chart drawn (the live loss chart
  or, for a quick run, the results) and to the finished results (summary table and
  loss chart with the new runs);
* **warm**: Run again with the same configuration, served from the result cache.

Goals (issue 5): first chart ≤ 2 s, default comparison finished ≤ 10 s on 2 CPU cores.
The server's own compute time ("Finished in … s") is printed alongside.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import time

from tests.browser import harness

GOALS = {"first_chart_s": 2.0, "finished_s": 10.0}
LOSS_TITLE = "Loss against iteration"

#: Clicks Run and records, in browser time, when the script starts running, when
#: the first chart is drawn fresh (its element no longer stale: the live chart of
#: a long run, or the results of a quick one) and when the results are there (the
#: summary table and the loss chart, both fresh).
ARM_AND_CLICK = """(title) => {
    const b = window.__bench = {start: 0, running: null, first: null, done: null};
    const visible = (el) => el.offsetParent !== null;
    const fresh = (el) => {
        const box = el.closest('[data-testid="stElementContainer"]');
        return box !== null && box.getAttribute('data-stale') === 'false';
    };
    const titled = (el) => el.layout && el.layout.title &&
        String(el.layout.title.text).replace(/<[^>]+>/g, '').trim() === title;
    const tick = () => {
        const now = performance.now();
        const app = document.querySelector('[data-testid="stApp"]');
        if (b.running === null && app &&
            app.getAttribute('data-test-script-state') === 'running') b.running = now;
        if (b.running === null) return;
        const plots = [...document.querySelectorAll(
            '[data-testid="stPlotlyChart"] .js-plotly-plot')].filter((el) =>
            visible(el) && fresh(el) && el.querySelector('.main-svg') &&
            (el.data || []).length > 0);
        if (b.first === null && plots.length) {
            b.first = now;
            b.firstTitle = String((plots[0].layout.title || {}).text || '')
                .replace(/<[^>]+>/g, '').trim();
        }
        const table = [...document.querySelectorAll('[data-testid="stDataFrame"]')]
            .some((el) => visible(el) && fresh(el));
        if (table && plots.some(titled)) { b.done = now; clearInterval(b.timer); }
    };
    b.timer = setInterval(tick, 10);
    const run = [...document.querySelectorAll('button')]
        .find((el) => el.innerText.trim() === 'Run');
    b.start = performance.now();
    run.click();
}"""
RESULTS_SHOWN = """(title) => [...document.querySelectorAll(
        '[data-testid="stPlotlyChart"] .js-plotly-plot')].some((el) =>
    el.offsetParent !== null && el.querySelector('.main-svg') && el.layout &&
    el.layout.title &&
    String(el.layout.title.text).replace(/<[^>]+>/g, '').trim() === title) &&
    document.querySelector('[data-testid="stDataFrame"]') !== null"""


def finished_caption(page) -> float | None:
    texts = page.get_by_text(re.compile(r"Finished in [0-9.]+ s")).all_inner_texts()
    found = [float(re.search(r"([0-9.]+) s", t).group(1)) for t in texts]
    return found[-1] if found else None


def nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else value


def click_run(page, timeout_ms: int) -> dict[str, float]:
    """Seconds from clicking Run to the first fresh chart and to the fresh results."""
    page.evaluate(ARM_AND_CLICK, LOSS_TITLE)
    page.wait_for_function("() => window.__bench.done !== null", timeout=timeout_ms)
    bench = page.evaluate("() => window.__bench")
    harness.wait_idle(page, timeout_ms)
    harness.assert_no_exception(page)
    return {
        "first_chart_s": (bench["first"] - bench["start"]) / 1000,
        "finished_s": (bench["done"] - bench["start"]) / 1000,
        "script_start_s": (bench["running"] - bench["start"]) / 1000,
        "first_chart": bench["firstTitle"],
        "server_compute_s": nan_if_none(finished_caption(page)),
    }


def set_seed(page, seed: int) -> None:
    field = harness.keyed(page, "cmp.run.seed").locator("input")
    field.fill(str(seed))
    field.press("Enter")
    page.get_by_text("Settings changed since these results").wait_for()
    harness.wait_idle(page)


def measure(repeats: int, timeout_ms: int = 300_000) -> dict:
    seeds = random.Random(time.time_ns()).sample(range(1000, 10**6), repeats + 1)
    results: dict[str, list[dict[str, float]]] = {"cold": [], "warm": []}
    load_before = os.getloadavg()[0]
    with harness.streamlit_server() as server, harness.chromium() as browser:
        context = browser.new_context(viewport=harness.VIEWPORT, base_url=server.url)
        context.set_default_timeout(timeout_ms)
        page = context.new_page()
        start = time.perf_counter()
        page.goto(f"/?seed={seeds[0]}")  # the default comparison, not cached yet
        page.wait_for_function(RESULTS_SHOWN, arg=LOSS_TITLE, timeout=timeout_ms)
        harness.wait_idle(page, timeout_ms)
        opened = time.perf_counter() - start
        harness.assert_no_exception(page)
        harness.SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        harness.full_screenshot(page, harness.SCREENSHOTS / "bench-default-compare.png")
        for seed in seeds[1:]:
            set_seed(page, seed)
            results["cold"].append(click_run(page, timeout_ms))
            results["warm"].append(click_run(page, timeout_ms))
        context.close()
    return {
        "load_before": load_before,
        "server_start_s": server.startup_s,
        "open_link_to_results_s": opened,
        "runs": results,
    }


def report(numbers: dict) -> None:
    print(
        f"{os.cpu_count()} CPUs; load average before/after: "
        f"{numbers['load_before']:.1f} / {os.getloadavg()[0]:.1f} "
        "(other work on a shared machine slows every number here)"
    )
    print(
        f"server start {numbers['server_start_s']:.1f} s; first visit (default "
        f"comparison, Plotly bundle, cold server): results after "
        f"{numbers['open_link_to_results_s']:.1f} s"
    )
    print(
        f"{'':6} {'Run → first chart':>18} {'Run → finished':>15} {'server compute':>15}"
    )
    for kind, runs in numbers["runs"].items():
        first = statistics.median(r["first_chart_s"] for r in runs)
        done = statistics.median(r["finished_s"] for r in runs)
        compute = statistics.median(r["server_compute_s"] for r in runs)
        print(f"{kind:6} {first:>16.2f} s {done:>13.2f} s {compute:>13.2f} s")
    cold = numbers["runs"]["cold"]
    for name, goal in GOALS.items():
        value = statistics.median(r[name] for r in cold)
        verdict = "met" if value <= goal else "MISSED"
        print(
            f"goal (cold) {name.replace('_', ' ')} ≤ {goal:g} s: {value:.2f} s, {verdict}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="cold+warm pairs")
    parser.add_argument("--json", action="store_true", help="print JSON too")
    args = parser.parse_args()
    reason = harness.browser_missing()
    if reason:
        raise SystemExit(f"cannot benchmark in a browser: {reason}")
    numbers = measure(args.repeats)
    report(numbers)
    if args.json:
        print(json.dumps(numbers, indent=2))


if __name__ == "__main__":
    main()
