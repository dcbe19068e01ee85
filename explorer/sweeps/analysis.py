r"""What a sweep says: a target loss, per-rule grids, and performance profiles.

**Target.** A sweep's ``target_loss`` when it has one; otherwise the loss that keeps
90 % of the best decrease any trial achieved,

    h_target = h_best + 0.1 · (h₀ − h_best),

with h₀ the median initial loss and h_best the lowest loss of any trial: "nearly as
good as the best run, within 10 % of the way it came". A cell of a grid *converged* when every
seed's best loss reached the target; the robustness score is the share of a rule's
trials that did (:func:`explorer.sweeps.robustness`).

**Grids.** :func:`rule_grid` lays one rule's trials on its two main options (``lr``
across, ``damping`` down when swept; otherwise its first two swept options); the
value of a cell is the mean final loss over seeds, minimized over any further swept
option (named in :attr:`RuleGrid.others`); an option held at one value (e.g.
``damping_adaptation = ["fixed"]``) is no axis.

**Performance profiles** (Dolan & Moré 2002, as AlgoPerf scores). For problems p and
rules s, let t_{p,s} be the steps the best-tuned setting of s needs to reach p's
target (the setting with the fewest mean steps over seeds; ∞ when a seed never
reaches it). With r_{p,s} = t_{p,s} / min_s t_{p,s}, the profile of s is

    ρ_s(τ) = |{p : r_{p,s} ≤ τ}| / |problems|,

the share of problems on which s is within a factor τ of the fastest rule: ρ_s(1) is
how often s wins, ρ_s(∞) how often it reaches the target at all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from explorer.sweeps.result import NOT_OPTIONS, SweepResult

#: The share of the best decrease a trial must keep to count as converged.
TARGET_SHARE = 0.9
#: Preferred axes of a rule's grid: across, then down.
AXES = ("lr", "damping")


def target_loss(result: SweepResult) -> float:
    """The sweep's target loss (module docstring); NaN when no trial has a loss."""
    if result.config.target_loss is not None:
        return float(result.config.target_loss)
    initial = [row["curve"][0] for row in result.rows if row["curve"]]
    finite = [x for row in result.rows for x in row["curve"] if math.isfinite(x)]
    initial = [x for x in initial if math.isfinite(x)]
    if not finite or not initial:
        return math.nan
    start, best = float(np.median(initial)), min(finite)
    return best + (1.0 - TARGET_SHARE) * max(start - best, 0.0)


def steps_to(
    curve: Sequence[float], target: float, steps: Sequence[int] | None = None
) -> float:
    """The first recorded step whose loss is ≤ ``target`` (∞ when none is).

    ``curve[i]`` is the loss at step ``steps[i]`` (default: step i).
    """
    steps = range(len(curve)) if steps is None else steps
    for step, loss in zip(steps, curve, strict=True):
        if math.isfinite(loss) and loss <= target:
            return float(step)
    return math.inf


def option_columns(
    frame: pd.DataFrame, rule: str, *, varied: bool = False
) -> list[str]:
    """The options ``rule`` sweeps (columns with a value on its rows); with
    ``varied``, only those taking more than one value (a grid's axes).
    """
    rows = frame[frame["rule"] == rule]
    names = [c for c in frame.columns if c not in NOT_OPTIONS and rows[c].notna().any()]
    if varied:
        names = [c for c in names if rows[c].nunique(dropna=True) > 1]
    return names


@dataclass(frozen=True)
class RuleGrid:
    """One rule's trials on a grid of its (at most two) main options.

    Attributes:
        rule: The rule key.
        x_name: The option across (None: a single column).
        xs: Its values, sorted.
        y_name: The option down (None: a single row).
        ys: Its values, sorted.
        final: Mean final loss over seeds, (len(ys), len(xs)); NaN where no trial
            ran; minimized over ``others``.
        converged: Whether every seed's best loss reached the target.
        diverged: The share of the cell's trials that diverged.
        others: Further swept options, minimized over.
    """

    rule: str
    x_name: str | None
    xs: tuple
    y_name: str | None
    ys: tuple
    final: np.ndarray
    converged: np.ndarray
    diverged: np.ndarray
    others: tuple[str, ...]


def _axes(options: list[str]) -> tuple[str | None, str | None, tuple[str, ...]]:
    chosen = [name for name in AXES if name in options]
    chosen += [name for name in options if name not in chosen]
    x = chosen[0] if chosen else None
    y = chosen[1] if len(chosen) > 1 else None
    return x, y, tuple(chosen[2:])


def _values(rows: pd.DataFrame, name: str | None) -> tuple:
    if name is None:
        return (None,)
    return tuple(sorted(rows[name].dropna().unique().tolist(), key=_order))


def _order(value):
    return (0, float(value), "") if isinstance(value, (int, float)) else (1, 0, value)


def rule_grid(frame: pd.DataFrame, rule: str, target: float) -> RuleGrid:
    """The grid of ``rule``'s trials in ``frame`` (``SweepResult.to_frame()``)."""
    rows = frame[frame["rule"] == rule]
    if rows.empty:
        raise ValueError(f"no trials of rule {rule!r} in this sweep")
    x_name, y_name, others = _axes(option_columns(frame, rule, varied=True))
    xs, ys = _values(rows, x_name), _values(rows, y_name)
    shape = (len(ys), len(xs))
    final = np.full(shape, math.nan)
    converged = np.zeros(shape, bool)
    diverged = np.zeros(shape)
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            cell = rows
            if x_name is not None:
                cell = cell[cell[x_name] == x]
            if y_name is not None:
                cell = cell[cell[y_name] == y]
            if cell.empty:
                continue
            diverged[i, j] = float((cell["status"] == "diverged").mean())
            points = (
                cell.groupby(list(others), dropna=False) if others else [((), cell)]
            )
            for _, point in points:
                mean = float(point["final_loss"].mean())
                if math.isfinite(mean) and not mean >= final[i, j]:
                    final[i, j] = mean
                reached = point["best_loss"].map(
                    lambda v: math.isfinite(v) and v <= target
                )
                converged[i, j] |= bool(reached.all())
    return RuleGrid(rule, x_name, xs, y_name, ys, final, converged, diverged, others)


# ------------------------------------------------------------ performance profiles
def tuned_steps(result: SweepResult, target: float | None = None) -> pd.Series:
    """Per rule, the fewest mean steps to ``target`` over its grid points (mean
    over seeds; ∞ when no point reaches it with every seed).

    Args:
        result: One problem's sweep.
        target: The loss to reach (default: :func:`target_loss`).
    """
    target = target_loss(result) if target is None else target
    frame = result.to_frame()
    frame["_steps"] = [
        steps_to(row["curve"], target, row.get("curve_steps")) for row in result.rows
    ]
    out = {}
    for rule in dict.fromkeys(frame["rule"]):
        rows = frame[frame["rule"] == rule]
        options = option_columns(frame, rule)
        means = (
            rows.groupby(options, dropna=False)["_steps"].mean()
            if options
            else pd.Series([rows["_steps"].mean()])
        )
        out[rule] = float(means.min())
    return pd.Series(out, name="steps_to_target")


def performance_profile(
    results: Mapping[str, SweepResult],
    targets: Mapping[str, float] | None = None,
    taus: Sequence[float] | None = None,
) -> pd.DataFrame:
    """ρ_s(τ) for every rule over the problems of ``results`` (module docstring).

    Args:
        results: Problem name -> its sweep.
        targets: Problem name -> target loss (default: each sweep's
            :func:`target_loss`).
        taus: The factors τ ≥ 1 (default: every ratio that occurs, and 1).

    Returns:
        One row per τ, one column per rule (rules missing from a problem count as
        not reaching its target), and ``ratios`` in ``attrs``: the table r_{p,s}.
    """
    if not results:
        raise ValueError("pass at least one problem's sweep")
    targets = dict(targets or {})
    costs = pd.DataFrame(
        {name: tuned_steps(r, targets.get(name)) for name, r in results.items()}
    ).T  # problems × rules
    costs = costs.fillna(math.inf)
    fastest = costs.min(axis=1)
    # steps are counted from 0: a rule already at the target needs 0 steps; the
    # ratio then compares (steps + 1), the number of losses evaluated
    ratios = (costs + 1).div(fastest + 1, axis=0)
    ratios[~np.isfinite(fastest)] = math.inf  # nobody reached: everyone fails
    if taus is None:
        finite = ratios.to_numpy()[np.isfinite(ratios.to_numpy())]
        taus = sorted({1.0, *finite.tolist()})
    profile = pd.DataFrame(
        {rule: [(ratios[rule] <= tau).mean() for tau in taus] for rule in ratios},
        index=pd.Index(list(taus), name="tau"),
    )
    profile.attrs["ratios"] = ratios
    return profile
