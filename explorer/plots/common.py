"""Small helpers shared by the figure builders."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

#: Hover number format: enough digits to read the exact value.
NUMBER = ":.8g"


def to_numpy(values: Any) -> np.ndarray:
    """A float64 NumPy array from a tensor, list or array."""
    if isinstance(values, torch.Tensor):
        return values.detach().double().cpu().numpy()
    return np.asarray(values, dtype=float)


def finite(values: Iterable[float]) -> np.ndarray:
    array = np.asarray(
        list(values) if not isinstance(values, np.ndarray) else values, float
    )
    return array[np.isfinite(array)]


def use_log(
    values: Sequence[np.ndarray], mode: bool | str = "auto", *, zeros: bool = False
) -> bool:
    """Whether a log axis suits ``values``: all positive and spanning a decade.

    ``mode`` True/False forces the answer (True is refused when a value ≤ 0 would
    vanish from the plot, so negative losses stay visible). With ``zeros``, exact
    zeros (a KL of a rejected step) may vanish; negative values still refuse.
    """
    pooled = np.concatenate([finite(v) for v in values]) if values else np.array([])
    if zeros:
        if (pooled < 0).any():
            return False
        pooled = pooled[pooled > 0]
    if pooled.size == 0:
        return False
    positive = bool((pooled > 0).all())
    if mode is True or mode == "log":
        return positive
    if mode is False or mode == "linear":
        return False
    return positive and pooled.max() / pooled.min() > 10


def nan_to_none(values: np.ndarray) -> list[float | None]:
    """Plotly-friendly list: NaN and inf become gaps."""
    return [float(v) if math.isfinite(v) else None for v in np.asarray(values, float)]


def arrow_segments(
    points: np.ndarray, vectors: np.ndarray, head: float = 0.3, angle: float = 25.0
) -> tuple[list[float | None], list[float | None]]:
    """X and y lists drawing arrows from ``points`` (M, 2) along ``vectors`` (M, 2).

    Shafts and two-stroke heads, separated by None; rows with NaN are skipped.
    """
    xs: list[float | None] = []
    ys: list[float | None] = []
    theta = math.radians(angle)
    rot = np.array(
        [[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]]
    )
    for p, v in zip(points, vectors):
        if not (np.isfinite(p).all() and np.isfinite(v).all()) or not np.any(v):
            continue
        tip = p + v
        back = -head * v
        left, right = tip + rot @ back, tip + rot.T @ back
        xs += [p[0], tip[0], None, left[0], tip[0], right[0], None]
        ys += [p[1], tip[1], None, left[1], tip[1], right[1], None]
    return xs, ys


def polyline(curves) -> tuple[list[float | None], list[float | None]]:
    """Several (M, 2) curves as one Plotly line with ``None`` breaks between them."""
    xs: list[float | None] = []
    ys: list[float | None] = []
    for curve in curves:
        xs += [*curve[:, 0].tolist(), None]
        ys += [*curve[:, 1].tolist(), None]
    return xs, ys
