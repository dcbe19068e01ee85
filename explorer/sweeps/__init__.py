"""Sweeps: a grid over each rule's options crossed with seeds, run serially or on
Dask, with results as a table, a resumable Parquet file and aggregates.

Example:
    >>> import explorer as ex
    >>> config = ex.SweepConfig("linreg_2d", {"sgd": {"lr": [0.05, 0.2]}}, steps=5)
    >>> result = ex.sweep(config)
    >>> result.to_frame()[["rule", "lr", "status"]].values.tolist()
    [['sgd', 0.05, 'ok'], ['sgd', 0.2, 'ok']]
"""

from explorer.sweeps.analysis import performance_profile, target_loss
from explorer.sweeps.config import MAX_TRIALS, SweepConfig, Trial, log_spaced, trial_id
from explorer.sweeps.result import SweepResult, best_settings, robustness
from explorer.sweeps.run import sweep

__all__ = [
    "MAX_TRIALS",
    "SweepConfig",
    "SweepResult",
    "Trial",
    "best_settings",
    "log_spaced",
    "performance_profile",
    "robustness",
    "sweep",
    "target_loss",
    "trial_id",
]
