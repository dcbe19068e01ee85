"""A Dask worker preload: ``dask worker ... --preload explorer.server.preload``.

Every worker process runs one task at a time on one thread (``--nthreads 1``), so
torch gets one thread too: several workers per machine then share the cores instead
of oversubscribing them. Importing :mod:`explorer` here pays its import cost once,
at start, rather than in a student's first job. Plugins are loaded by the tasks
themselves (:func:`explorer.server.tasks.ensure_plugins`), from the folder and the
``EXPLORER_PLUGINS`` value the app sends with each task.
"""

from __future__ import annotations

from typing import Any

import torch

# The registries and the run loop, loaded before the first task.
import explorer.curvature.registry
import explorer.runs.runner  # noqa: F401


def dask_setup(worker: Any = None) -> None:
    """Called by Dask when the worker starts."""
    del worker
    torch.set_num_threads(1)
    from explorer.runs.loop import warm_up_torch_func

    warm_up_torch_func()  # torch.func's imports at start, not in the first task
