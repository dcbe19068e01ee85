"""Shared test setup."""

import os
import tempfile

import pytest
import torch

# The app's compute engine in tests: Dask worker threads in this process (the
# browser suite starts its server with the real local cluster of worker processes),
# and a result cache on disk that starts empty for every test session.
os.environ.setdefault("EXPLORER_DASK_SCHEDULER", "inprocess")
os.environ.setdefault("EXPLORER_DASK_WORKERS", "2")
os.environ.setdefault(
    "EXPLORER_CACHE_DIR", tempfile.mkdtemp(prefix="explorer-test-cache-")
)

# Small tensor ops are faster on one thread, and on a shared 2-core machine OpenMP
# spin-waiting under contention slowed this suite down eightfold.
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def dask_client():
    """A Dask client on in-process worker threads (the engine's test default)."""
    from explorer.server.engine import EngineSettings, start_client

    client, cluster, _ = start_client(EngineSettings("inprocess", 2))
    yield client
    client.close()
    cluster.close()
