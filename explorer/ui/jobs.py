"""Comparisons that run in a background thread, with progress, Stop and a result cache.

The page starts a :class:`ComparisonJob` and polls it, so changing a widget while the
optimizers run never silently cancels them (a Streamlit rerun would), the progress
bar and live charts can update, and Stop is a plain flag the runner checks every
step. Each session owns its job (isolation); finished histories go to a shared
:class:`ResultCache` keyed by the frozen :class:`~explorer.RunConfig`, so rerunning
the same configuration is instant for everyone. No Streamlit import here.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from explorer.problems.base import Problem
from explorer.runs import History, ProblemConfig, RunConfig, run

#: Statuses whose histories are complete and deterministic, hence cacheable.
CACHEABLE = frozenset({"ok", "diverged", "indefinite"})


class ResultCache:
    """A thread-safe LRU map ``RunConfig -> History``."""

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[RunConfig, History] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, config: RunConfig) -> History | None:
        with self._lock:
            history = self._entries.get(config)
            if history is not None:
                self._entries.move_to_end(config)
            return history

    def put(self, config: RunConfig, history: History) -> None:
        if history.status not in CACHEABLE:
            return
        with self._lock:
            self._entries[config] = history
            self._entries.move_to_end(config)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


@dataclass
class RunState:
    """The live state of one run inside a job.

    Attributes:
        config: What runs.
        label: Its display name.
        phase: ``"queued"``, ``"running"``, ``"finished"`` or ``"failed"``.
        rows: Metrics recorded so far (for live charts).
        total: Planned number of steps.
        history: The result once finished.
        error: Why it could not run (``"failed"``), e.g. K-FAC on a model without
            linear layers.
        cached: Whether the history came from the cache.
    """

    config: RunConfig
    label: str
    phase: str = "queued"
    rows: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0
    history: History | None = None
    error: str | None = None
    cached: bool = False


class ComparisonJob:
    """Runs configs one after another in a daemon thread.

    Each distinct problem is built once, in the worker thread (building the digits
    data takes a moment), and shared by the runs on it.

    Args:
        configs: The runs, in display order.
        cache: Where finished histories are looked up and stored.
        experiment: What the caller built the configs from (kept for display).
    """

    def __init__(
        self, configs: list[RunConfig], cache: ResultCache, experiment: Any = None
    ) -> None:
        self.experiment = experiment
        self.states = [RunState(c, c.display_label, total=c.steps) for c in configs]
        self.cache = cache
        self.cancel_event = threading.Event()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._thread: threading.Thread | None = None
        self._problems: dict[ProblemConfig, Problem] = {}

    # ---------------------------------------------------------------- control
    def start(self) -> ComparisonJob:
        self.started_at = time.perf_counter()
        self._thread = threading.Thread(
            target=self._work, name="comparison", daemon=True
        )
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Asks the running rule to stop after its current step; later ones skip."""
        self.cancel_event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks up to ``timeout`` seconds; returns whether the job is done."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.done

    # ------------------------------------------------------------------ state
    @property
    def done(self) -> bool:
        return self.finished_at is not None

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    @property
    def elapsed(self) -> float:
        if self.started_at is None:
            return 0.0
        end = self.finished_at if self.finished_at is not None else time.perf_counter()
        return end - self.started_at

    def fraction_done(self) -> float:
        """Progress in [0, 1] over all runs, by steps."""
        total = sum(max(1, s.total) for s in self.states)
        done = 0
        for state in self.states:
            if state.phase in ("finished", "failed"):
                done += max(1, state.total)
            elif state.rows:
                done += min(state.total, int(state.rows[-1].get("step", 0)))
        return min(1.0, done / total) if total else 1.0

    def histories(self) -> dict[str, History]:
        """Finished histories by label (partial ones included once cancelled)."""
        return {s.label: s.history for s in self.states if s.history is not None}

    def failures(self) -> dict[str, str]:
        return {s.label: s.error for s in self.states if s.error is not None}

    # ----------------------------------------------------------------- worker
    def _work(self) -> None:
        try:
            for state in self.states:
                self._run_one(state)
        finally:
            self.finished_at = time.perf_counter()

    def _problem(self, config: ProblemConfig) -> Problem:
        if config not in self._problems:
            self._problems[config] = config.build()
        return self._problems[config]

    def _run_one(self, state: RunState) -> None:
        cached = self.cache.get(state.config)
        if cached is not None:
            state.history, state.cached, state.phase = cached, True, "finished"
            return
        if self.cancelled:
            state.phase, state.error = "failed", "stopped before it started"
            return
        state.phase = "running"

        def progress(step: int, total: int, metrics: dict[str, Any]) -> None:
            state.total = total
            state.rows.append(dict(metrics))

        try:
            history = run(
                state.config,
                progress=progress,
                cancel=self.cancel_event,
                problem=self._problem(state.config.problem_config),
            )
        except ValueError as error:  # the rule cannot run here: say why, go on
            state.phase, state.error = "failed", str(error)
            return
        except Exception as error:  # never let one rule take the others down
            state.phase = "failed"
            state.error = f"{type(error).__name__}: {error}"
            return
        state.history, state.phase = history, "finished"
        self.cache.put(state.config, history)
