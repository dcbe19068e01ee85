"""A sweep's results: one row per trial, a Parquet file to resume from, aggregates.

:meth:`SweepResult.to_frame` has ``trial_id``, ``rule``, ``seed``, one column per
swept option named as the option (NaN where a rule does not sweep it), ``status``,
``final_loss``, ``best_loss``, ``steps_to_target``, ``steps_run``, ``wall_time``,
``grad_evals``, ``curvature_products``, ``loss_auc`` (:func:`loss_auc`) and
``reused``; :meth:`SweepResult.curve` is a trial's loss per recorded step. The
Parquet file keeps the rows and the curves with the sweep's fingerprint (its problem,
steps, settings, divergence factor and target); a file with another fingerprint is
refused, and a file is always replaced whole (written beside it, then renamed), never
left half-written.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from explorer.sweeps.config import SweepConfig

#: The Parquet metadata key holding the sweep's fingerprint.
FINGERPRINT_KEY = b"explorer-sweep"
#: The scalar columns of every row, in order (after the swept options).
RESULT_COLUMNS = (
    "status",
    "final_loss",
    "best_loss",
    "steps_to_target",
    "steps_run",
    "wall_time",
    "grad_evals",
    "curvature_products",
)
#: Columns of :meth:`SweepResult.to_frame` that are not swept options.
NOT_OPTIONS = frozenset(
    {"trial_id", "rule", "seed", "reused", "loss_auc", *RESULT_COLUMNS}
)
#: Per-trial lists, stored as JSON text: the loss curve and its recorded steps.
LISTS = ("curve", "curve_steps")


def fingerprint(config: SweepConfig) -> dict[str, Any]:
    """What must agree for two sweeps' trials to be the same results."""
    return {
        "format": "curvature-explorer/sweep",
        "version": 1,
        "problem": config.problem,
        "problem_options": json.loads(json.dumps(config.problem_options, default=str)),
        "steps": config.steps,
        "settings": json.loads(json.dumps(config.settings, default=str)),
        "divergence_factor": config.divergence_factor,
        "target_loss": config.target_loss,
    }


@dataclass(frozen=True)
class SweepResult:
    """The rows of a finished (or stopped) sweep, in trial order."""

    config: SweepConfig
    rows: Sequence[Mapping[str, Any]]

    def to_frame(self) -> pd.DataFrame:
        """One row per trial (module docstring)."""
        options = self.config.swept_options()
        records = []
        for row in self.rows:
            record = {"trial_id": row["trial_id"], "rule": row["rule"]}
            record["seed"] = int(row["seed"])
            for name in options:
                record[name] = row["options"].get(name, math.nan)
            for name in RESULT_COLUMNS:
                record[name] = row[name]
            record["loss_auc"] = loss_auc(row)
            record["reused"] = bool(row.get("reused", False))
            records.append(record)
        columns = [
            "trial_id", "rule", "seed", *options, *RESULT_COLUMNS, "loss_auc", "reused"
        ]  # fmt: skip
        return pd.DataFrame(records, columns=columns)

    def curve(self, trial_id: str) -> list[float]:
        """The training loss per recorded step of one trial (see :meth:`steps`)."""
        return list(self._row(trial_id)["curve"])

    def steps(self, trial_id: str) -> list[int]:
        """The steps :meth:`curve` was recorded at (every step by default)."""
        row = self._row(trial_id)
        return list(row.get("curve_steps") or range(len(row["curve"])))

    def _row(self, trial_id: str) -> Mapping[str, Any]:
        for row in self.rows:
            if row["trial_id"] == trial_id:
                return row
        raise KeyError(f"no trial {trial_id!r} in this sweep")

    @property
    def counts(self) -> dict[str, int]:
        """``{"trials", "run", "reused", "failed"}`` (diverged runs are results)."""
        failed = sum(row["status"] in ("error", "indefinite") for row in self.rows)
        reused = sum(bool(row.get("reused")) for row in self.rows)
        return {
            "trials": self.config.size(),
            "run": len(self.rows) - reused,
            "reused": reused,
            "failed": failed,
        }


def loss_auc(row: Mapping[str, Any]) -> float:
    """The area under a trial's loss curve per step: the trapezoid rule over its
    recorded steps divided by the steps run, (1/T) ∫₀ᵀ h(θ_t) dt; +∞ for a trial
    that did not run to its end (diverged, indefinite, error): it has no full area.
    """
    curve = [float(x) for x in row["curve"]]
    steps = list(row.get("curve_steps") or range(len(curve)))
    if row["status"] != "ok" or not all(map(math.isfinite, curve)):
        return math.inf
    if len(curve) < 2:
        return curve[0] if curve else math.nan
    area = sum(
        (steps[i + 1] - steps[i]) * (curve[i] + curve[i + 1]) / 2
        for i in range(len(curve) - 1)
    )
    return area / (steps[-1] - steps[0])


# --------------------------------------------------------------------- files
def save_rows(
    path: str | Path, config: SweepConfig, rows: Mapping[str, Mapping[str, Any]]
) -> Path:
    """Writes every row (curves and options as JSON text) to ``path`` atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    records = [
        {
            **{k: v for k, v in row.items() if k not in ("options", *LISTS)},
            "options": json.dumps(dict(row["options"]), sort_keys=True),
            **{name: json.dumps(list(row[name])) for name in LISTS if name in row},
        }
        for row in rows.values()
    ]
    table = pa.Table.from_pylist(records)
    table = table.replace_schema_metadata(
        {FINGERPRINT_KEY: json.dumps(fingerprint(config), sort_keys=True).encode()}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    os.close(handle)
    try:
        pq.write_table(table, temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


def load_rows(path: str | Path, config: SweepConfig) -> dict[str, dict[str, Any]]:
    """The rows of an earlier sweep at ``path`` by trial id ({} when absent).

    Raises:
        ValueError: The file is not a sweep's, or one of an incompatible sweep
            (another problem, steps, settings, divergence factor or target).
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        return {}
    try:
        table = pq.read_table(path)
    except Exception as error:
        raise ValueError(f"{path} is not a readable Parquet file: {error}") from None
    stored = (table.schema.metadata or {}).get(FINGERPRINT_KEY)
    if stored is None:
        raise ValueError(f"{path} is not a sweep's results file")
    theirs, mine = json.loads(stored), fingerprint(config)
    if theirs != mine:
        different = sorted(k for k in mine if theirs.get(k) != mine[k])
        raise ValueError(
            f"{path} holds an incompatible sweep (different {', '.join(different)}); "
            "use another --out file"
        )
    out = {}
    for record in table.to_pylist():
        record["options"] = json.loads(record["options"])
        for name in LISTS:
            if record.get(name) is not None:
                record[name] = json.loads(record[name])
        record.setdefault("curve_steps", list(range(len(record["curve"]))))
        out[record["trial_id"]] = record
    return out


# ----------------------------------------------------------------- aggregates
def best_settings(frame: pd.DataFrame, by: str = "final_loss") -> pd.DataFrame:
    """Per rule, the swept setting with the lowest mean ``by`` over seeds, its
    mean, standard deviation and the number of seeds (diverged trials count with
    their loss; trials without a finite value are left out).
    """
    options = [c for c in frame.columns if c not in NOT_OPTIONS]
    rows = []
    for rule, group in frame.groupby("rule", sort=False):
        swept = [c for c in options if group[c].notna().any()]
        finite = group[group[by].map(math.isfinite)]
        if finite.empty:
            continue
        keyed = finite.groupby(swept, dropna=False)[by] if swept else None
        if keyed is None:
            stats = finite[by].agg(["mean", "std", "count"]).to_frame().T
            stats.index = [()]
        else:
            stats = keyed.agg(["mean", "std", "count"])
        best = stats["mean"].idxmin()
        point = best if isinstance(best, tuple) else (best,)
        row = {"rule": rule, **dict(zip(swept, point, strict=False))}
        row.update(
            {
                f"mean_{by}": float(stats.loc[best, "mean"]),
                f"std_{by}": float(stats.loc[best, "std"]),
                "seeds": int(stats.loc[best, "count"]),
            }
        )
        rows.append(row)
    return pd.DataFrame(rows)


def robustness(frame: pd.DataFrame, target: float) -> pd.Series:
    """Per rule, the share of its trials whose best loss reaches ``target``."""
    reached = frame["best_loss"].map(lambda x: math.isfinite(x) and x <= target)
    return reached.groupby(frame["rule"], sort=False).mean()
