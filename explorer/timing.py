"""Cost of curvature products in units of one full-batch gradient, measured here.

Shared machines are noisy, so every operation is timed interleaved with the
reference gradient and compared by medians from the same window (PERF_NOTES.md).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence

import torch

from explorer.curvature.registry import curvature
from explorer.problems.base import Problem


def _synchronized(
    function: Callable[[], object], device: torch.device
) -> Callable[[], object]:
    if device.type != "cuda":
        return function

    def call() -> object:
        out = function()
        torch.cuda.synchronize(device)
        return out

    return call


def interleaved_medians(
    functions: Mapping[str, Callable[[], object]], repeats: int = 15, warmup: int = 2
) -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved round-robin."""
    for _ in range(warmup):
        for function in functions.values():
            function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    order = list(functions.items())
    for repeat in range(repeats):
        # rotate the order: whatever runs right after another operation pays its
        # cache effects, so no operation always comes first
        shift = repeat % len(order)
        for name, function in order[shift:] + order[:shift]:
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def product_costs(
    problem: Problem, keys: Sequence[str], repeats: int = 15
) -> dict[str, float]:
    """Seconds per gradient and, per curvature, per product in gradients.

    Each operator is built once at θ₀ (as inside CG or Lanczos) and its construction
    cost is reported separately, also in gradients (one warm timing, so noisier).

    Returns:
        ``{"gradient_seconds": s, "<key>": product / gradient, "<key> build": ...}``.
    """
    theta = problem.theta0
    device = theta.device

    def gradient() -> object:
        return problem.grad(theta)

    functions = {"gradient": _synchronized(gradient, device)}
    builds = {}
    vector = torch.randn(
        problem.num_params, dtype=theta.dtype, device=device, generator=None
    )
    for key in keys:
        curvature(key, problem, theta)  # warm-up: first calls pay one-off costs
        start = time.perf_counter()
        operator = curvature(key, problem, theta)
        builds[key] = time.perf_counter() - start
        functions[key] = _synchronized(lambda op=operator: op.matvec(vector), device)
    medians = interleaved_medians(functions, repeats=repeats)
    base = medians.pop("gradient")
    out = {"gradient_seconds": base}
    for key, seconds in medians.items():
        out[key] = seconds / base
        out[f"{key} build"] = builds[key] / base
    return out
