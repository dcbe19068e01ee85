"""An in-process engine (Dask worker threads) for the server tests."""

from __future__ import annotations

import pytest

from explorer.server.engine import Engine
from explorer.server.limits import Limits
from explorer.server.store import ResultStore


@pytest.fixture
def make_engine(dask_client):
    """Engines on the shared in-process cluster; ``capacity`` fixes how many tasks
    run at once (1 makes the order of the fair queue observable)."""
    made = []

    def make(capacity=1, limits=None, directory=None, **kw):
        engine = Engine(
            dask_client,
            limits=limits or Limits(),
            store=ResultStore(directory),
            capacity=capacity,
            **kw,
        )
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.dispatcher.close()
