"""A view's computation on the engine, as a page waits for it.

:func:`computed` submits a view task once per key (the page's slot keeps one ticket:
a new key replaces the old request, which is stopped), waits a moment inline so quick
results need no progress view, and otherwise shows the place in the queue or the
running time in a fragment that polls the ticket at a modest rate and reruns the
page once it is done. Finished results are shared by every session through the
engine's store; figures built from them are cached by :func:`cached_figure`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from explorer.server.dispatch import Ticket
from explorer.server.limits import LimitExceeded
from explorer.server.tasks import PluginSources
from explorer.ui import state

INLINE_WAIT = 0.7  # seconds: quick results draw without a progress view
POLL_SECONDS = 1.0
TICKETS = "view.tickets"


def computed(
    slot: str,
    function: Callable[..., Any],
    *args: Any,
    key_parts: tuple = (),
    label: str = "",
    plugins: PluginSources | None = None,
) -> Any | None:
    """The result of ``function(worker, channel, *args)`` computed on a worker.

    Args:
        slot: The page's place for this computation (one ticket per slot).
        function: A module-level function (pickled by reference to the worker).
        *args: Its arguments after the worker cache and the channel.
        key_parts: What identifies the result (default: the arguments' text).
        label: What the waiting message calls it.
        plugins: Plugins the worker loads first (default: the app's).

    Returns:
        The result, or None when it is not ready (a waiting view is shown) or
        failed (an error is shown).
    """
    engine = state.engine_or_stop()
    task = engine.view_task(
        slot, function, *args, key_parts=key_parts or None, plugins=plugins
    )
    tickets: dict[str, Ticket] = st.session_state.setdefault(TICKETS, {})
    ticket = tickets.get(slot)
    if ticket is None or ticket.computation.task.key != task.key:
        if ticket is not None and not ticket.done:
            ticket.cancel()
        try:
            (ticket,) = engine.submit(
                state.session_id(), [task], group=slot, alive=state.alive_check()
            )
        except LimitExceeded as error:
            st.error(f"Not started: {error}")
            return None
        tickets[slot] = ticket
    if not ticket.done:
        ticket.wait(INLINE_WAIT)
    if not ticket.done:
        _waiting(ticket, label or slot)
        return None
    if ticket.result is None and ticket.stop_requested:
        st.info(f"{label or slot}: stopped.")
        if st.button("Compute again", key=f"again.{slot}"):
            tickets.pop(slot, None)  # the next run submits it afresh
            st.rerun()
        return None
    if ticket.result is None:
        st.error(f"{label or slot}: {ticket.error}")
        return None
    return ticket.result


@st.fragment(run_every=POLL_SECONDS)
def _waiting(ticket: Ticket, label: str) -> None:
    if ticket.done:
        st.rerun()
    state.engine_or_stop()  # each poll renews this session's lease
    place = ticket.position()
    if place is not None:
        eta = ticket.eta()
        about = f" (about {eta:.0f} s)" if eta is not None else ""
        st.info(f"{label}: queued, place {place} in the queue{about}.")
    else:
        st.info(f"{label}: computing on a worker… {ticket.compute_seconds:.0f} s")
        rows = ticket.rows
        if rows and "text" in rows[-1]:
            st.progress(min(1.0, rows[-1]["step"] / 1000), text=rows[-1]["text"])
    if st.button(
        "Stop",
        key=f"stop.{label}",
        help="Stops this computation after its current step (one curvature, one "
        "matrix or one spectrum); what it built is kept for the next request.",
    ):
        ticket.cancel()
        st.rerun(scope="app")  # show "stopped" and Compute again at once


@st.cache_resource(max_entries=64, show_spinner=False)
def _figures(key: str, _build: Callable[[], Any]) -> Any:
    return _build()


def cached_figure(key: str, build: Callable[[], Any]) -> Any:
    """``build()`` once per ``key`` for every session (a figure of a cached
    result costs nothing on the next rerun).
    """
    return _figures(key, build)
