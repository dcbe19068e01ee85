"""A sweep on the app's engine: one task per trial, in the same fair queue as the
class's other work.

Each trial is its own task of the session's job (group ``"sweep"``), so the
dispatcher serves it in turn with every other session: a 500-trial sweep takes one
worker per turn of its session, never the whole cluster. Identical trials (the same
config, divergence factor and target) share one computation and one cached result
across sessions; a stopped trial is not cached.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from explorer.server.dispatch import CANCELLED, FAILED, FINISHED, QUEUED, Ticket
from explorer.server.engine import Engine
from explorer.sweeps.config import SweepConfig
from explorer.sweeps.result import SweepResult
from explorer.sweeps.run import trial_row
from explorer.sweeps.trial import trial_task
from explorer.ui.jobs import TicketJob


def _worth_keeping(outcome: Any) -> bool:
    """A stopped trial is not a result another session should be given."""
    return isinstance(outcome, dict) and outcome.get("status") != "cancelled"


class SweepJob(TicketJob):
    """The trials of one sweep, as tickets of the engine (Stop: queued trials leave
    the queue, running ones stop after their step and are not cached).

    Args:
        config: The sweep (validated: ``config.trials()`` has run once).
        engine: Where trials run.
        session: Whose job it is.
        alive: False once the session's tab has gone (its trials are cancelled).
    """

    def __init__(
        self,
        config: SweepConfig,
        engine: Engine,
        *,
        session: str,
        alive: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config
        self.trials = config.trials()
        self.engine = engine
        self.session = session
        self.alive = alive
        self.tickets: list[Ticket] = []
        self.started_at: float | None = None
        self._final: SweepResult | None = None

    def start(self) -> SweepJob:
        """Queues every trial (LimitExceeded above the session's job limit)."""
        self.started_at = time.monotonic()
        tasks = [
            dataclasses.replace(
                self.engine.view_task(
                    "sweep-trial",
                    trial_task,
                    trial.config.to_dict(),
                    self.config.divergence_factor,
                    self.config.target_loss,
                    key_parts=(
                        trial.trial_id,
                        self.config.divergence_factor,
                        self.config.target_loss,
                    ),
                    label=f"{trial.rule} {dict(trial.options)} seed {trial.seed}",
                ),
                cache_if=_worth_keeping,
            )
            for trial in self.trials
        ]
        self.tickets = self.engine.submit(
            self.session, tasks, group="sweep", alive=self.alive
        )
        return self

    # ------------------------------------------------------------------ state
    def counts(self) -> dict[str, int]:
        """Trials ``finished`` (``reused``: from the cache), ``running``,
        ``queued``, ``failed`` (an error on the worker) and ``stopped``.
        """
        counts = dict.fromkeys(
            ("finished", "reused", "running", "queued", "failed", "stopped"), 0
        )
        for ticket in self.tickets:
            phase = ticket.phase
            if phase == FINISHED:
                counts["finished"] += 1
                counts["reused"] += ticket.cached
            elif phase == FAILED:
                counts["failed"] += 1
            elif phase == CANCELLED:
                counts["stopped"] += 1
            elif phase == QUEUED:
                counts["queued"] += 1
            else:
                counts["running"] += 1
        return counts

    def fraction_done(self) -> float:
        if not self.tickets:
            return 1.0
        return sum(t.done for t in self.tickets) / len(self.tickets)

    def remaining_seconds(self) -> float | None:
        """About how long until the last trial ends, from the pace so far (None
        before the first trial finished).
        """
        done = sum(t.phase == FINISHED and not t.cached for t in self.tickets)
        left = sum(not t.done for t in self.tickets)
        if self.started_at is None or not done or not left:
            return None
        pace = (time.monotonic() - self.started_at) / done
        return pace * left

    def result(self) -> SweepResult:
        """The trials finished so far as a :class:`~explorer.sweeps.SweepResult`
        in trial order (a trial stopped midway is left out: its loss is no result).
        """
        if self._final is not None:
            return self._final
        rows = [
            trial_row(trial, ticket.result, ticket.cached)
            for trial, ticket in zip(self.trials, self.tickets, strict=True)
            if ticket.phase == FINISHED and _worth_keeping(ticket.result)
        ]
        result = SweepResult(self.config, rows)
        if self.done:  # nothing changes any more: the page's reruns reuse it
            self._final = result
        return result

    def failures(self) -> list[str]:
        """One line per trial that failed on its worker."""
        return [
            f"{trial.rule} {dict(trial.options)} seed {trial.seed}: {ticket.error}"
            for trial, ticket in zip(self.trials, self.tickets, strict=True)
            if ticket.phase == FAILED
        ]
