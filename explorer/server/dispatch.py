"""A fair queue in front of a Dask cluster: whose turn it is, and what each page sees.

The web process never computes; it hands :class:`Task` objects to a
:class:`Dispatcher`, which

* keeps one queue per browser session and serves the sessions **round-robin** (a
  newcomer's first turn comes before anyone's second), never
  submitting more tasks to Dask than the cluster has worker threads (so Dask's own
  queue stays empty and the order is ours, not first-come-first-served);
* shares one :class:`Computation` between identical tasks (the same key) of any
  sessions, and answers from the :class:`~explorer.server.store.ResultStore` when a
  result is already known;
* streams each computation's progress rows from the workers (Dask events);
* cancels: a queued computation leaves the queue, a running one is asked to stop
  (a ``distributed.Event`` its worker checks) and, if it does not within a grace
  period, is ended by restarting its worker; the same happens to a computation past
  its wall-clock limit, and to the work of a session whose browser tab has closed:
  the page's own check (``alive``) says so, or the session's **lease** ran out (a
  session that has called :meth:`Dispatcher.renew` once must renew it at least
  every ``lease`` seconds, which the pages do on every script run and progress
  poll; a closed tab stops renewing);
* retries a computation once when its worker dies, then fails it with a message.

Each caller holds a :class:`Ticket`: its view of one computation (phase, rows,
result, place in the queue, an estimate of the wait).
"""

from __future__ import annotations

import itertools
import logging
import math
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from explorer.server.store import ResultStore
from explorer.server.tasks import TOPIC, Channel, execute

log = logging.getLogger(__name__)

#: Phases of a computation (and of a ticket).
QUEUED, RUNNING, FINISHED, FAILED, CANCELLED = (
    "queued",
    "running",
    "finished",
    "failed",
    "cancelled",
)
TERMINAL = frozenset({FINISHED, FAILED, CANCELLED})


@dataclass(frozen=True)
class Task:
    """One unit of work for a worker.

    Attributes:
        key: What identifies its result: identical keys share one computation and
            one cached result (a stable hash of the full configuration).
        fn: A module-level function run as ``fn(*args, channel=channel)``.
        args: Its arguments (pickled to the worker).
        label: For messages.
        cache_if: Which results go to the result store (None: none).
        time_limit: Seconds one attempt may run (the worker stops it; past a grace
            period, its worker is restarted).
    """

    key: str
    fn: Callable[..., Any]
    args: tuple = ()
    label: str = ""
    cache_if: Callable[[Any], bool] | None = None
    time_limit: float = 300.0


class Computation:
    """The shared state of one task: queued, running on a worker, or done."""

    _ids = itertools.count()

    def __init__(self, task: Task, session: str, now: float) -> None:
        self.task = task
        self.session = session
        self.id = f"{task.key}-{next(self._ids)}-{uuid.uuid4().hex[:6]}"
        self.phase = QUEUED
        self.subscribers: list[Ticket] = []
        self.rows: list[dict[str, Any]] = []
        self.token: str | None = None
        self.attempts = 0
        self.retries_left = 1
        self.future: Any = None
        self.result: Any = None
        self.error: str | None = None
        self.cached = False
        self.queued_at = now
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.stop_requested_at: float | None = None

    @property
    def cancel_event(self) -> str:
        return f"explorer-stop-{self.id}"


class Ticket:
    """A caller's handle on one computation (shared computations have several).

    The attributes are read by page threads while the dispatcher's thread updates
    the computation; every read is of one reference, so no lock is needed.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        computation: Computation,
        session: str,
        group: str,
        alive: Callable[[], bool] | None,
    ) -> None:
        self.dispatcher = dispatcher
        self.computation = computation
        self.session = session
        self.group = group
        self.alive = alive
        self.created = time.monotonic()
        self.detached = False
        self.stop_requested = False
        self._done = threading.Event()
        if computation.phase in TERMINAL:
            self._done.set()

    # ------------------------------------------------------------ reading
    @property
    def phase(self) -> str:
        return CANCELLED if self.detached else self.computation.phase

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [] if self.detached else self.computation.rows

    @property
    def result(self) -> Any:
        return None if self.detached else self.computation.result

    @property
    def error(self) -> str | None:
        if self.detached:
            return "stopped before it finished"
        return self.computation.error

    @property
    def cached(self) -> bool:
        return self.computation.cached

    @property
    def compute_seconds(self) -> float:
        """Time on a worker (0 while queued; cached results took none here)."""
        c = self.computation
        if c.started_at is None:
            return 0.0
        end = c.finished_at if c.finished_at is not None else time.monotonic()
        return max(0.0, end - c.started_at)

    @property
    def wait_seconds(self) -> float:
        """Time from this request until a worker started it (or until now)."""
        c = self.computation
        start = c.started_at if c.started_at is not None else time.monotonic()
        return max(0.0, start - self.created) if not c.cached else 0.0

    def position(self) -> int | None:
        """1 when it starts next, 2 after one more, …; None unless queued."""
        return self.dispatcher.position(self)

    def eta(self) -> float | None:
        """Estimated seconds until it starts (None unless queued)."""
        return self.dispatcher.eta(self)

    # ------------------------------------------------------------ control
    def cancel(self) -> None:
        """Stop: leaves the queue, or asks the worker to stop (partial kept)."""
        self.dispatcher.cancel(self)

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks up to ``timeout`` seconds; returns whether it is done."""
        return self._done.wait(timeout)


class Dispatcher:
    """Round-robin over sessions, at most one task per worker thread in flight.

    Args:
        client: A ``distributed.Client``.
        store: Where cacheable results are looked up and kept.
        poll: Seconds between the dispatcher's checks (it also wakes on events).
        grace: Seconds a computation asked to stop (or past its time limit) may
            take before its worker is restarted.
        capacity: Worker threads to fill (None: ask the cluster, every few seconds).
        lease: Seconds after its last :meth:`renew` at which a session's work is
            cancelled (None: no leases). Sessions that never renewed (the library,
            the command line) are never cancelled this way.
        clock: The lease's clock (seconds; tests pass a fake one).
        liveness_seconds: How often the leases and the ``alive`` checks are read.
    """

    def __init__(
        self,
        client: Any,
        store: ResultStore,
        *,
        poll: float = 0.2,
        grace: float = 8.0,
        capacity: int | None = None,
        lease: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        liveness_seconds: float = 2.0,
    ) -> None:
        self.client = client
        self.lease = lease
        self.clock = clock
        self.liveness_seconds = liveness_seconds
        self._renewed: dict[str, float] = {}  # session -> clock() of its last renew
        self.store = store
        self.poll = poll
        self.grace = grace
        self._fixed_capacity = capacity
        self._capacity = capacity or 0
        self._capacity_checked = -math.inf
        self._cond = threading.Condition()
        self._queues: dict[str, deque[Computation]] = {}
        self._turn: deque[str] = deque()  # sessions served before, in turn
        self._new: deque[str] = deque()  # sessions waiting for their first turn
        self._active: dict[str, Computation] = {}  # task key -> queued/running
        self._by_id: dict[str, Computation] = {}
        self._running: dict[str, Computation] = {}
        self._stop_requests: list[Computation] = []
        self._finished: queue.SimpleQueue = queue.SimpleQueue()
        self._tickets: list[Ticket] = []
        self._mean_seconds = 5.0
        self._liveness_checked = 0.0
        self._closed = False
        client.subscribe_topic(TOPIC, self._on_event)
        self._thread = threading.Thread(
            target=self._loop, name="explorer-dispatcher", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------ public
    def submit(
        self,
        session: str,
        task: Task,
        *,
        group: str = "",
        alive: Callable[[], bool] | None = None,
    ) -> Ticket:
        """Queues ``task`` for ``session`` (or joins an identical one, or answers
        from the store).
        """
        cached = self.store.get(task.key) if task.cache_if is not None else None
        with self._cond:
            now = time.monotonic()
            if cached is not None:
                computation = Computation(task, session, now)
                computation.phase, computation.result = FINISHED, cached
                computation.cached = True
                computation.started_at = computation.finished_at = now
                return Ticket(self, computation, session, group, alive)
            computation = self._active.get(task.key)
            if computation is None or computation.stop_requested_at is not None:
                computation = Computation(task, session, now)
                self._active[task.key] = computation
                self._by_id[computation.id] = computation
                self._queues.setdefault(session, deque()).append(computation)
                if session not in self._turn and session not in self._new:
                    self._new.append(session)  # before everyone already served
            ticket = Ticket(self, computation, session, group, alive)
            computation.subscribers.append(ticket)
            self._tickets.append(ticket)
            self._cond.notify_all()
            return ticket

    def renew(self, session: str) -> None:
        """``session`` is still there (a script run or a progress poll of its
        page): its lease runs for another ``lease`` seconds.
        """
        self._renewed[session] = self.clock()  # one dict store: no lock needed

    def lease_expired(self, session: str) -> bool:
        """Whether ``session`` holds a lease and has not renewed it in time."""
        last = self._renewed.get(session)
        return (
            self.lease is not None
            and last is not None
            and self.clock() - last > self.lease
        )

    def cancel(self, ticket: Ticket) -> None:
        with self._cond:
            if ticket.done or ticket.stop_requested:
                return
            ticket.stop_requested = True
            computation = ticket.computation
            others = [
                t
                for t in computation.subscribers
                if t is not ticket and not t.stop_requested
            ]
            if others:  # someone else still wants it: only this ticket leaves
                self._detach(ticket)
            elif computation.phase == QUEUED:
                self._end(computation, CANCELLED, error="stopped before it started")
            elif computation.stop_requested_at is None:
                computation.stop_requested_at = time.monotonic()
                self._stop_requests.append(computation)
            self._cond.notify_all()

    def live_groups(self, session: str) -> set[str]:
        """Groups of ``session`` with work queued or running."""
        with self._cond:
            return {
                t.group
                for t in self._tickets
                if t.session == session and not t.done and not t.stop_requested
            }

    def position(self, ticket: Ticket) -> int | None:
        with self._cond:
            computation = ticket.computation
            if ticket.detached or computation.phase != QUEUED:
                return None
            owner = computation.session
            own = [c for c in self._queues.get(owner, ()) if c.phase == QUEUED]
            if computation not in own:
                return None
            index = own.index(computation)
            turn = [*self._new, *self._turn]
            mine = turn.index(owner) if owner in turn else len(turn)
            ahead = index
            for place, session in enumerate(turn):
                if session == owner:
                    continue
                waiting = sum(c.phase == QUEUED for c in self._queues.get(session, ()))
                ahead += min(waiting, index + 1 if place < mine else index)
            return ahead + 1

    def eta(self, ticket: Ticket) -> float | None:
        place = self.position(ticket)
        if place is None:
            return None
        lanes = max(1, self._capacity)
        return math.ceil(place / lanes) * self._mean_seconds

    @property
    def capacity(self) -> int:
        """Worker threads last seen (0: no worker connected)."""
        return self._capacity

    def queued(self) -> int:
        with self._cond:
            return sum(c.phase == QUEUED for c in self._active.values())

    def running(self) -> int:
        return len(self._running)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    # ---------------------------------------------------------- internals
    def _detach(self, ticket: Ticket) -> None:
        ticket.detached = True
        if ticket in ticket.computation.subscribers:
            ticket.computation.subscribers.remove(ticket)
        ticket._done.set()

    def _end(
        self, computation: Computation, phase: str, *, result=None, error=None
    ) -> None:
        """Marks ``computation`` done (under the lock) and wakes its tickets."""
        computation.phase = phase
        computation.result, computation.error = result, error
        computation.finished_at = time.monotonic()
        if self._active.get(computation.task.key) is computation:
            del self._active[computation.task.key]
        self._running.pop(computation.id, None)
        self._by_id.pop(computation.id, None)  # late events of it are ignored
        for ticket in computation.subscribers:
            ticket._done.set()
        self._tickets = [t for t in self._tickets if not t.done]

    def _on_event(self, event: tuple[float, dict[str, Any]]) -> None:
        """Dask calls this (in its event loop) for every progress message."""
        _, message = event
        with self._cond:
            computation = self._by_id.get(message.get("key"))
            if computation is None or computation.phase in TERMINAL:
                return
            if message.get("kind") == "start":
                computation.token = message["token"]
                computation.attempts += 1
                computation.rows = []
                computation.started_at = time.monotonic()
            elif message.get("token") == computation.token:
                computation.rows = [*computation.rows, *message.get("rows", ())]

    def _on_done(self, computation: Computation, future: Any) -> None:
        self._finished.put((computation, future))
        with self._cond:
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._closed or self._client_gone():
                    return  # the engine closed, or its client did (at exit)
                self._cond.wait(self.poll)
                stops, self._stop_requests = self._stop_requests, []
            try:
                self._collect()
                for computation in stops:
                    self._signal_stop(computation)
                self._watch()
                self._fill()
            except Exception:  # the dispatcher must outlive any one failure
                log.exception("dispatcher step failed")

    def _client_gone(self) -> bool:
        return getattr(self.client, "status", "running") in ("closing", "closed")

    def _collect(self) -> None:
        while True:
            try:
                computation, future = self._finished.get_nowait()
            except queue.Empty:
                return
            if future is not computation.future or computation.phase in TERMINAL:
                continue
            self._settle(computation, future)

    def _settle(self, computation: Computation, future: Any) -> None:
        result, error = None, None
        try:
            if future.status == "finished":
                result = future.result()
            elif future.status == "cancelled":
                error = "stopped"
            else:
                error_object = future.exception()
                if _is_killed_worker(error_object) and computation.retries_left > 0:
                    computation.retries_left -= 1
                    self._resubmit(computation)
                    return
                error = describe_error(error_object)
        except Exception as failure:
            error = describe_error(failure)
        stopped = error is not None and computation.stop_requested_at is not None
        computation.future = None
        task = computation.task
        if result is not None and task.cache_if is not None and task.cache_if(result):
            try:
                self.store.put(task.key, result)
            except Exception:
                log.exception("could not store the result of %s", task.key)
        with self._cond:
            if result is not None:
                elapsed = time.monotonic() - (
                    computation.started_at or time.monotonic()
                )
                self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * max(elapsed, 0.05)
            phase = FINISHED if error is None else FAILED
            if stopped:  # it saw Stop and ended early (tasks.Stopped): not a failure
                phase, error = CANCELLED, "stopped before it finished"
            self._end(computation, phase, result=result, error=error)

    def _resubmit(self, computation: Computation) -> None:
        log.warning("worker died running %s; retrying once", computation.id)
        computation.future = None
        self._submit_to_dask(computation)

    def _signal_stop(self, computation: Computation) -> None:
        if computation.future is None:
            return
        try:
            from distributed import Event

            Event(computation.cancel_event, client=self.client).set()
        except Exception:
            log.exception("could not signal stop to %s", computation.id)

    def _watch(self) -> None:
        now = time.monotonic()
        if now - self._liveness_checked > self.liveness_seconds:
            self._liveness_checked = now
            for ticket in list(self._tickets):
                if ticket.done:
                    continue
                if self.lease_expired(ticket.session):
                    log.info("session %s stopped renewing; cancelling", ticket.session)
                    self.cancel(ticket)
                    continue
                if ticket.alive is not None:
                    try:
                        alive = ticket.alive()
                    except Exception:
                        alive = True
                    if not alive:
                        self.cancel(ticket)
            live = {t.session for t in self._tickets if not t.done}
            for session in [s for s in self._renewed if s not in live]:
                if self.lease_expired(session):  # gone, with nothing left to stop
                    self._renewed.pop(session, None)
        for computation in list(self._running.values()):
            started = computation.started_at or computation.queued_at
            over_limit = now - started > computation.task.time_limit + self.grace
            stuck = (
                computation.stop_requested_at is not None
                and now - computation.stop_requested_at > self.grace
            )
            if over_limit or stuck:
                self._restart_worker_of(computation, over_limit)

    def _restart_worker_of(self, computation: Computation, over_limit: bool) -> None:
        """Ends a computation that would not stop, by restarting its worker."""
        future, computation.future = computation.future, None
        address = None
        try:
            processing = self.client.processing()
            address = next(
                (w for w, keys in processing.items() if future.key in keys), None
            )
            future.cancel()
            if address is not None:
                self.client.restart_workers([address], raise_for_error=False)
        except Exception:
            log.exception("could not restart the worker of %s", computation.id)
        limit = computation.task.time_limit
        if over_limit:
            message = (
                f"stopped by the server's time limit of {limit:g} s "
                "(EXPLORER_JOB_SECONDS)"
            )
        else:
            message = "stopped"
        if address is not None:
            message += "; its worker did not respond and was restarted"
        with self._cond:
            self._end(computation, FAILED if over_limit else CANCELLED, error=message)

    def _refresh_capacity(self) -> None:
        if self._fixed_capacity is not None:
            return
        now = time.monotonic()
        if now - self._capacity_checked < 2.0:
            return
        self._capacity_checked = now
        if self.client.status != "running":  # closing at shutdown: nothing to ask
            return
        try:
            self._capacity = sum(self.client.nthreads().values())
        except Exception:
            log.exception("could not read the cluster's workers")

    def _next(self) -> Computation | None:
        while self._new:  # a session's first turn comes before anyone's second
            session = self._new.popleft()
            waiting = self._queues.get(session)
            while waiting and waiting[0].phase != QUEUED:
                waiting.popleft()
            if waiting:
                self._turn.append(session)
                return waiting.popleft()
            self._queues.pop(session, None)
        for _ in range(len(self._turn)):
            session = self._turn[0]
            self._turn.rotate(-1)
            waiting = self._queues.get(session)
            while waiting and waiting[0].phase != QUEUED:
                waiting.popleft()
            if waiting:
                return waiting.popleft()
        for session in [s for s in self._turn if not self._queues.get(s)]:
            self._turn.remove(session)
            self._queues.pop(session, None)
        return None

    def _fill(self) -> None:
        self._refresh_capacity()
        while True:
            with self._cond:
                if len(self._running) >= self._capacity:
                    return
                computation = self._next()
                if computation is None:
                    return
                computation.phase = RUNNING
                computation.started_at = time.monotonic()
                self._running[computation.id] = computation
            self._submit_to_dask(computation)

    def _submit_to_dask(self, computation: Computation) -> None:
        task = computation.task
        channel = Channel(
            key=computation.id,
            cancel_event=computation.cancel_event,
            time_limit=task.time_limit,
        )
        future = self.client.submit(
            execute,
            task.fn,
            task.args,
            channel,
            key=f"{computation.id}-a{computation.attempts}",
            pure=False,
        )
        computation.future = future
        future.add_done_callback(lambda f, c=computation: self._on_done(c, f))


def _is_killed_worker(error: BaseException | None) -> bool:
    return type(error).__name__ == "KilledWorker"


def describe_error(error: BaseException | None) -> str:
    """A sentence for the page: the refusal itself, or what went wrong."""
    if error is None:
        return "failed"
    if _is_killed_worker(error):
        return (
            "the worker process running this stopped twice (it may have run out of "
            "memory); other sessions were not affected. Press Run to try again, or "
            "choose a smaller configuration."
        )
    if isinstance(error, ValueError):
        return str(error)
    return f"{type(error).__name__}: {error}"
