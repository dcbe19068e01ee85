"""Timing helpers shared by the benchmarks: ratios measured in one run.

These machines are shared and noisy, so operations are interleaved with the
reference gradient and compared by medians from the same window (PERF_NOTES.md).
"""

from __future__ import annotations

import gc
import os
import resource
import time
from collections.abc import Callable

import torch

from explorer.timing import interleaved_medians

__all__ = ["interleaved_medians", "module_gradient", "once", "peak_rss_mib", "rss_mib"]


def set_threads(count: int = 2) -> None:
    torch.set_num_threads(count)


def once(function: Callable[[], object]) -> float:
    """Seconds for one call (for operations too slow to repeat)."""
    gc.collect()
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def rss_mib() -> float:
    """Current resident memory in MiB (Linux)."""
    with open(f"/proc/{os.getpid()}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def module_gradient(
    model: torch.nn.Module, loss_fn, inputs, targets
) -> Callable[[], object]:
    """One full-batch gradient the way a PyTorch user writes it (the reference)."""
    params = [p for p in model.parameters()]
    for p in params:
        p.requires_grad_(True)

    def gradient():
        loss = loss_fn(model(inputs), targets)
        return torch.autograd.grad(loss, params)

    return gradient
