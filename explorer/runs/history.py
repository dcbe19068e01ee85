"""The record of one optimizer run: columnar metrics, status and parameter trajectory.

A :class:`History` is what :func:`explorer.run` returns and what the plots read. One
row per recorded step, starting with step 0 (the initial point θ₀). Row k describes
the iterate θ_k after k updates:

* ``loss``, ``accuracy``: on the whole training set (for streaming problems: the
  fixed evaluation sample standing in for the population); ``test_loss``,
  ``test_accuracy`` on the held-out set; NaN where the problem has none.
* ``averaged_loss``: the training loss at the averaged iterate θ̄_k (NaN without
  averaging); ``excess_loss``: loss − h(θ*) on the same evaluation sample, where
  the true parameters θ* are known (``stream_logreg``), else NaN.
* ``grad_norm``: ‖∇h(θ_k)‖ on the mini-batch the optimizer drew at θ_k (the gradient
  of step k + 1; for the last row, of one more batch drawn for the record).
* ``update_norm``, ``damping``, ``rho``, ``alpha``: of the update θ_{k−1} → θ_k
  (‖δ‖, λ, the reduction ratio ρ and the step size α); NaN at step 0 or where a
  rule has no such quantity. ``indefinite``: 1 where that update met an indefinite
  C + λI and went on (damping raised past the most negative eigenvalue, or a
  negative-curvature step), else 0 (NaN at step 0).
* Cumulative cost to reach θ_k: ``wall_time`` (seconds spent in the optimizer,
  metric evaluation excluded), ``grad_evals`` (gradient evaluations plus objective
  evaluations on training batches, e.g. the h(θ + δ) that Levenberg–Marquardt's ρ
  needs; each counts 1), ``curvature_products`` (curvature-vector products,
  including those spent building a curvature, as counted by
  :attr:`explorer.CurvatureOperator.products`) and ``examples`` (training examples
  drawn; fresh samples for streaming problems).

The trajectory keeps θ at every step when (steps + 1)·P ≤ :data:`TRAJECTORY_LIMIT`
floats, otherwise at an even subsample of steps that fits (always including the
first and the last); see :func:`trajectory_plan`.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from explorer.optimizers.frozen import freeze
from explorer.runs.config import RunConfig
from explorer.runs.settings import RunSettings

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: The columns of :meth:`History.to_frame`, in order.
COLUMNS: tuple[str, ...] = (
    "step",
    "loss",
    "test_loss",
    "accuracy",
    "test_accuracy",
    "averaged_loss",
    "grad_norm",
    "update_norm",
    "damping",
    "rho",
    "alpha",
    "wall_time",
    "grad_evals",
    "curvature_products",
    "examples",
    "excess_loss",
    "indefinite",
)

#: Columns added after files were first written, with the value old files imply for
#: a row produced by an update (rows without one, step 0, get NaN, as they do now).
LATER_COLUMNS: dict[str, float] = {"indefinite": 0.0}

#: Possible values of :attr:`History.status`.
STATUSES: tuple[str, ...] = ("ok", "diverged", "indefinite", "cancelled", "error")

#: The full trajectory is kept when (steps + 1)·P is at most this many floats.
TRAJECTORY_LIMIT = 5_000_000

#: The ``format`` tag of files written by :func:`save_histories`.
FILE_FORMAT = "curvature-explorer/runs"
FILE_VERSION = 1


def trajectory_plan(steps: int, num_params: int, limit: int | None = None) -> list[int]:
    """The steps at which the parameter trajectory is kept.

    Every step when ``(steps + 1) * num_params <= limit`` (default
    :data:`TRAJECTORY_LIMIT`); otherwise
    ``max(2, limit // num_params)`` steps spread evenly over ``0..steps`` (the first
    and the last always included).

    Example:
        >>> trajectory_plan(4, 2)
        [0, 1, 2, 3, 4]
        >>> trajectory_plan(100, 1000, limit=5000)
        [0, 25, 50, 75, 100]
    """
    limit = TRAJECTORY_LIMIT if limit is None else limit
    if steps < 0 or num_params < 1:
        raise ValueError(f"steps = {steps} and num_params = {num_params} are invalid")
    if (steps + 1) * num_params <= limit:
        return list(range(steps + 1))
    count = max(2, limit // num_params)
    points = np.rint(np.linspace(0, steps, count)).astype(int)
    return sorted({int(p) for p in points})


@dataclass(eq=False)
class History:
    """Metrics, status and trajectory of one run (see the module docstring).

    Attributes:
        config: The :class:`~explorer.runs.config.RunConfig` that produced it, or
            None for a problem built outside the registry
            (:func:`~explorer.runs.runner.run_on`).
        rule: The update rule's registry key.
        label: The display name (``config.label`` or the rule key).
        status: One of :data:`STATUSES`.
        message: Why the run stopped early and the remedy; empty when ``"ok"``.
        metrics: Column name -> one float per recorded step (:data:`COLUMNS`).
        trajectory: Parameters (T, P), float64 on the CPU, at ``trajectory_steps``;
            None when not kept.
        trajectory_steps: The steps of the trajectory's rows.
        rule_options: The rule's options as it ran, every default filled in
            (default: the config's).
        settings: The loop settings it ran with (default: the config's).
    """

    config: RunConfig | None
    rule: str
    label: str
    status: str = "ok"
    message: str = ""
    metrics: dict[str, list[float]] = field(default_factory=dict)
    trajectory: Tensor | None = None
    trajectory_steps: list[int] = field(default_factory=list)
    rule_options: Mapping[str, Any] | None = None
    settings: RunSettings | None = None

    def __post_init__(self) -> None:
        config = self.config
        if self.rule_options is None:
            self.rule_options = {} if config is None else config.resolved_rule_options()
        self.rule_options = freeze(dict(self.rule_options))
        if self.settings is None:
            self.settings = RunSettings() if config is None else config.settings
        if self.status not in STATUSES:
            raise ValueError(
                f"status = {self.status!r} must be one of {', '.join(STATUSES)}"
            )
        missing = [name for name in COLUMNS if name not in self.metrics]
        if self.metrics and missing:
            raise ValueError(f"history metrics lack the columns {missing}")
        if not self.metrics:
            self.metrics = {name: [] for name in COLUMNS}
        lengths = {len(values) for values in self.metrics.values()}
        if len(lengths) > 1:
            raise ValueError(f"history columns have different lengths {lengths}")
        if self.trajectory is not None:
            rows = self.trajectory.shape[0]
            if self.trajectory.dim() != 2 or rows != len(self.trajectory_steps):
                raise ValueError(
                    f"trajectory of shape {tuple(self.trajectory.shape)} does not "
                    f"match {len(self.trajectory_steps)} trajectory steps"
                )

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        """The number of recorded rows."""
        return len(self.metrics["step"])

    def __repr__(self) -> str:
        last = self.last("loss")
        return (
            f"History(label={self.label!r}, status={self.status!r}, rows={len(self)}, "
            f"final loss={last:.6g})"
        )

    @property
    def ok(self) -> bool:
        """Whether the run finished all its steps."""
        return self.status == "ok"

    @property
    def steps(self) -> list[int]:
        """The recorded steps."""
        return [int(step) for step in self.metrics["step"]]

    def column(self, name: str) -> list[float]:
        """One metric column (a copy)."""
        if name not in self.metrics:
            raise ValueError(
                f"unknown history column {name!r}; columns: {', '.join(COLUMNS)}"
            )
        return list(self.metrics[name])

    def last(self, name: str) -> float:
        """The last recorded value of ``name`` (NaN when nothing was recorded)."""
        values = self.column(name)
        return values[-1] if values else math.nan

    def to_frame(self) -> pd.DataFrame:
        """The metrics as a DataFrame with the columns :data:`COLUMNS`."""
        import pandas as pd

        frame = pd.DataFrame({name: self.metrics[name] for name in COLUMNS})
        frame["step"] = frame["step"].astype("int64")
        return frame

    def same_as(
        self,
        other: History,
        ignore: Iterable[str] = ("wall_time",),
        rtol: float = 0.0,
    ) -> bool:
        """Whether two runs produced identical records (timings ignored).

        Floats compare exactly, with NaN equal to NaN; with ``rtol > 0`` they may
        differ by that relative amount (a run saved on another CPU: vectorized
        reductions round differently on AVX2 and AVX-512, by about 1e-16 a step).
        """
        skip = set(ignore)
        if (self.status, self.message, self.label, self.rule) != (
            other.status,
            other.message,
            other.label,
            other.rule,
        ):
            return False
        for name in COLUMNS:
            if name in skip:
                continue
            a = np.asarray(self.metrics[name], dtype=float)
            b = np.asarray(other.metrics[name], dtype=float)
            if a.shape != b.shape or not np.allclose(
                a, b, rtol=rtol, atol=0.0, equal_nan=True
            ):
                return False
        if self.trajectory_steps != other.trajectory_steps:
            return False
        if self.trajectory is None or other.trajectory is None:
            return self.trajectory is None and other.trajectory is None
        if self.trajectory.shape != other.trajectory.shape:
            return False
        return torch.allclose(self.trajectory, other.trajectory, rtol=rtol, atol=0.0)

    # ---------------------------------------------------------------- encoding
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data; floats are exact, NaN is null, ±inf is "inf"/"-inf"."""
        trajectory = None
        if self.trajectory is not None:
            array = self.trajectory.detach().cpu().to(torch.float64).numpy()
            trajectory = {
                "shape": list(array.shape),
                "dtype": "float64",
                "encoding": "base64 little-endian",
                "data": base64.b64encode(array.astype("<f8").tobytes()).decode(),
            }
        return {
            "label": self.label,
            "rule": self.rule,
            "status": self.status,
            "message": self.message,
            "config": None if self.config is None else self.config.to_dict(),
            "rule_options": self.rule_options.to_dict(),
            "settings": self.settings.to_dict(),
            "metrics": {
                name: [_encode_float(v) for v in self.metrics[name]] for name in COLUMNS
            },
            "trajectory_steps": list(self.trajectory_steps),
            "trajectory": trajectory,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        """The inverse of :meth:`to_dict` (files without ``rule_options`` and
        ``settings``, written before those were recorded, take them from the config).
        """
        trajectory = None
        encoded = data.get("trajectory")
        if encoded is not None:
            raw = base64.b64decode(encoded["data"])
            array = np.frombuffer(raw, dtype="<f8").reshape(encoded["shape"])
            trajectory = torch.from_numpy(array.astype(np.float64))
        config = data.get("config")
        config = None if config is None else RunConfig.from_dict(config)
        settings = data.get("settings")
        settings = None if settings is None else RunSettings.from_dict(settings)
        rule_options = data.get("rule_options")
        return cls(
            config=config,
            rule=data["rule"],
            label=data["label"],
            rule_options=rule_options,
            settings=settings,
            status=data["status"],
            message=data.get("message", ""),
            metrics=_decode_metrics(data["metrics"]),
            trajectory=trajectory,
            trajectory_steps=[int(s) for s in data.get("trajectory_steps", [])],
        )

    def to_json(self, indent: int | None = None) -> str:
        """Standard JSON text (round-trips exactly through :meth:`from_json`)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> History:
        """A history from :meth:`to_json` text."""
        return cls.from_dict(json.loads(text))


def _encode_float(value: float) -> float | str | None:
    value = float(value)
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _decode_float(value: float | str | None) -> float:
    if value is None:
        return math.nan
    return float(value)


def histories_to_json(
    histories: Mapping[str, History] | Sequence[History], indent: int | None = None
) -> str:
    """Several runs (configs and histories) as one JSON document."""
    runs = list(histories.values()) if isinstance(histories, Mapping) else histories
    document = {
        "format": FILE_FORMAT,
        "version": FILE_VERSION,
        "runs": [history.to_dict() for history in runs],
    }
    return json.dumps(document, indent=indent, allow_nan=False)


def histories_from_json(text: str) -> dict[str, History]:
    """The runs of a :func:`histories_to_json` document, keyed by label.

    A single :meth:`History.to_json` document is accepted too.
    """
    document = json.loads(text)
    if document.get("format") != FILE_FORMAT:
        if "metrics" in document and "config" in document:
            history = History.from_dict(document)
            return {history.label: history}
        raise ValueError(
            f"not a runs file: format = {document.get('format')!r}, expected "
            f"{FILE_FORMAT!r}"
        )
    if document.get("version") != FILE_VERSION:
        raise ValueError(
            f"runs file version {document.get('version')!r} is not supported "
            f"(expected {FILE_VERSION})"
        )
    out: dict[str, History] = {}
    for data in document["runs"]:
        history = History.from_dict(data)
        out[history.label] = history
    return out


def save_histories(
    histories: Mapping[str, History] | Sequence[History], path: str | Path
) -> Path:
    """Writes several runs to ``path`` (JSON); returns the path."""
    path = Path(path)
    path.write_text(histories_to_json(histories) + "\n", encoding="utf-8")
    return path


def load_histories(path: str | Path) -> dict[str, History]:
    """Reads a file written by :func:`save_histories` (label -> History)."""
    return histories_from_json(Path(path).read_text(encoding="utf-8"))


def _decode_metrics(encoded: Mapping[str, list[Any]]) -> dict[str, list[float]]:
    """Decoded columns; a column added later (:data:`LATER_COLUMNS`) that an older
    file lacks takes the value those files imply.
    """
    out = {}
    for name in COLUMNS:
        if name not in encoded and name in LATER_COLUMNS:
            updates = [_decode_float(v) for v in encoded["update_norm"]]
            implied = LATER_COLUMNS[name]
            out[name] = [math.nan if u != u else implied for u in updates]
        else:
            out[name] = [_decode_float(v) for v in encoded[name]]
    return out
