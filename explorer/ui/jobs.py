"""A comparison as the Compare page sees it: runs queued and computed on the engine.

The page starts a :class:`ComparisonJob` and polls it from a fragment, so changing a
widget while the optimizers run never silently cancels them (a Streamlit rerun
would). The runs themselves are tasks of the
:class:`~explorer.server.engine.Engine`: they wait their turn in the fair queue, run
in Dask worker processes and stream their rows back; identical configurations of
any session share one computation and one cached result. No Streamlit import here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from explorer.runs import History, RunConfig
from explorer.server.dispatch import CANCELLED, FAILED, FINISHED, QUEUED, Ticket
from explorer.server.engine import Engine


@dataclass
class RunState:
    """The live state of one run inside a job.

    Attributes:
        config: What runs.
        label: Its display name.
        phase: ``"queued"``, ``"running"``, ``"finished"`` or ``"failed"``.
        rows: Metrics recorded so far (for live charts).
        total: Planned number of steps.
        history: The result once finished (a stopped run's partial one included).
        error: Why it could not run (``"failed"``), e.g. K-FAC on a model without
            linear layers, or a limit of the server.
        cached: Whether the history came from the cache.
    """

    config: RunConfig
    label: str
    phase: str = QUEUED
    rows: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0
    history: History | None = None
    error: str | None = None
    cached: bool = False


def run_state(config: RunConfig, ticket: Ticket) -> RunState:
    """What a ticket says about one run, in the page's terms."""
    state = RunState(config, config.display_label, total=config.steps)
    phase, result = ticket.phase, ticket.result
    state.rows, state.cached = ticket.rows, ticket.cached
    if result is not None:
        state.phase, state.history = FINISHED, result
    elif phase in (FAILED, CANCELLED):
        state.phase, state.error = FAILED, ticket.error or phase
    else:
        state.phase = phase
    return state


class TicketJob:
    """A page's job: several tickets of the engine, stopped and awaited together."""

    tickets: list[Ticket]

    def cancel(self) -> None:
        """Stop: queued tasks leave the queue; running ones stop after their step."""
        for ticket in self.tickets:
            ticket.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks up to ``timeout`` seconds; returns whether the job is done."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for ticket in self.tickets:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not ticket.wait(left):
                return False
        return True

    @property
    def done(self) -> bool:
        return all(ticket.done for ticket in self.tickets)


class ComparisonJob(TicketJob):
    """The runs of one comparison, as tickets of the engine.

    Args:
        configs: The runs, in display order.
        engine: Where they run.
        session: Whose job it is (the fair queue serves sessions in turn).
        experiment: What the caller built the configs from (kept for display).
        alive: False once the session has gone (its work is then cancelled).
    """

    def __init__(
        self,
        configs: list[RunConfig],
        engine: Engine,
        *,
        session: str,
        experiment: Any = None,
        alive: Callable[[], bool] | None = None,
    ) -> None:
        self.configs = list(configs)
        self.engine = engine
        self.session = session
        self.experiment = experiment
        self.alive = alive
        self.tickets: list[Ticket] = []
        self.started_at: float | None = None

    # ---------------------------------------------------------------- control
    def start(self) -> ComparisonJob:
        """Queues every run (raises LimitExceeded above the session's job limit)."""
        self.started_at = time.monotonic()
        tasks = self.engine.run_tasks(self.configs)
        self.tickets = self.engine.submit(
            self.session, tasks, group="compare", alive=self.alive
        )
        return self

    # ------------------------------------------------------------------ state
    @property
    def states(self) -> list[RunState]:
        return [run_state(c, t) for c, t in zip(self.configs, self.tickets)]

    @property
    def elapsed(self) -> float:
        """Wall time from Run until the last result (or until now), waits included."""
        if self.started_at is None:
            return 0.0
        ends = [t.computation.finished_at for t in self.tickets]
        if self.done and all(end is not None for end in ends):
            return max(0.0, max(ends, default=self.started_at) - self.started_at)
        return time.monotonic() - self.started_at

    @property
    def compute_seconds(self) -> float:
        """Seconds the workers spent on these runs (cached ones cost none)."""
        return sum(t.compute_seconds for t in self.tickets if not t.cached)

    @property
    def queue_seconds(self) -> float:
        """Seconds the first run waited for a worker."""
        return min((t.wait_seconds for t in self.tickets), default=0.0)

    def position(self) -> int | None:
        """The place of its next run in the server's queue (None: none waiting)."""
        places = [t.position() for t in self.tickets]
        places = [p for p in places if p is not None]
        return min(places) if places else None

    def eta(self) -> float | None:
        times = [t.eta() for t in self.tickets]
        times = [e for e in times if e is not None]
        return min(times) if times else None

    def fraction_done(self) -> float:
        """Progress in [0, 1] over all runs, by steps."""
        states = self.states
        total = sum(max(1, s.total) for s in states)
        done = 0
        for state in states:
            if state.phase in (FINISHED, FAILED):
                done += max(1, state.total)
            elif state.rows:
                done += min(state.total, int(state.rows[-1].get("step", 0)))
        return min(1.0, done / total) if total else 1.0

    def remaining_seconds(self) -> float | None:
        """About how long until every run is done, from the pace so far: the time
        since the first run started times (1 − f)/f at fraction done f. None
        before any progress (the queue's estimate covers the wait).
        """
        starts = [
            t.computation.started_at
            for t in self.tickets
            if t.computation.started_at is not None
        ]
        fraction = self.fraction_done()
        if not starts or fraction <= 0.0 or fraction >= 1.0:
            return None
        running_for = time.monotonic() - min(starts)
        return running_for * (1.0 - fraction) / fraction

    def histories(self) -> dict[str, History]:
        """Finished histories by label (partial ones included once stopped)."""
        return {s.label: s.history for s in self.states if s.history is not None}

    def failures(self) -> dict[str, str]:
        return {s.label: s.error for s in self.states if s.error is not None}
