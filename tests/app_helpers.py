"""Shared AppTest helpers: running a page until its background job is done."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]


def page(name: str, **query: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app_pages" / f"{name}.py"), default_timeout=180)
    for key, value in query.items():
        at.query_params[key] = value
    return at


def run_until_done(at: AppTest, timeout: float = 120.0) -> AppTest:
    """Reruns until the Compare page shows results (no progress bar left)."""
    at.run()
    deadline = time.monotonic() + timeout
    while at.get("progress") and time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()
    assert not at.get("progress"), "the comparison did not finish in time"
    return at


#: The text of a view waiting for its computation on the engine.
WAITING = re.compile(
    r"queued, place \d+|computing on a worker|Running the comparison for the paths"
)


def waiting(at: AppTest) -> bool:
    texts = [info.value for info in at.info]
    texts += [bar.proto.text for bar in at.get("progress")]
    return any(WAITING.search(text) for text in texts)


def settle(at: AppTest, timeout: float = 120.0, *, run_first: bool = True) -> AppTest:
    """Reruns until no view waits for the engine (AppTest runs no fragment timers)."""
    if run_first:
        at.run()
    deadline = time.monotonic() + timeout
    while waiting(at) and time.monotonic() < deadline:
        time.sleep(0.3)
        at.run()
    assert not waiting(at), "a view's computation did not finish in time"
    return at


def figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def figure_titled(at: AppTest, words: str) -> dict:
    for figure in figures(at):
        title = (figure["layout"].get("title") or {}).get("text") or ""
        if words.lower() in title.lower():
            return figure
    raise AssertionError(f"no figure titled like {words!r}")


def trace_names(figure: dict) -> list[str]:
    return [trace.get("name") for trace in figure["data"]]
