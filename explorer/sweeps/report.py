"""A sweep's summary in figures and files: heatmaps, tuned curves, HTML, a rerun file.

:func:`tuned_runs` picks each rule's best-tuned setting (lowest mean final loss over
seeds) and its trials; :func:`sweep_figures` draws a heatmap per rule and the tuned
curves side by side; :func:`sweep_html` is the whole report as one offline page (the
CLI's ``--html``, the Sweep page's download); :func:`config_toml` writes the sweep
back as the TOML ``python -m explorer sweep --config`` reads, so a download reruns
the same trials (same ids: a rerun against the same ``--out`` reuses them).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from explorer.sweeps.analysis import (
    TARGET_SHARE,
    option_columns,
    rule_grid,
    target_loss,
)
from explorer.sweeps.config import SweepConfig
from explorer.sweeps.result import SweepResult, best_settings, robustness


@dataclass(frozen=True)
class TunedRun:
    """One rule's best-tuned setting and its trials.

    Attributes:
        rule: The rule key.
        options: The setting (swept options only).
        mean_final_loss: Its mean final loss over seeds.
        trial_ids: Its trials, one per seed.
        varied: The options that take several values in the grid (the others are
            held at one value, e.g. ``damping_adaptation = "fixed"``).
    """

    rule: str
    options: Mapping[str, Any]
    mean_final_loss: float
    trial_ids: tuple[str, ...]
    varied: tuple[str, ...] = ()

    @property
    def setting(self) -> str:
        """The varied options' values, e.g. ``lr=1 damping=0.001``."""
        shown = [f"{k}={_text(v)}" for k, v in self.options.items() if k in self.varied]
        return " ".join(shown) or "its defaults"

    @property
    def name(self) -> str:
        """``rule`` and its setting, e.g. ``natural_gradient lr=1 damping=0.001``."""
        return f"{self.rule} {self.setting}"


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def tuned_runs(result: SweepResult) -> list[TunedRun]:
    """Each rule's best setting by mean final loss over seeds (rules with no finite
    loss are left out).
    """
    frame = result.to_frame()
    if frame.empty:
        return []
    out = []
    for _, best in best_settings(frame).iterrows():
        rule = best["rule"]
        options = {
            name: _plain(best[name])
            for name in option_columns(frame, rule)
            if name in best
        }
        rows = frame[frame["rule"] == rule]
        for name, value in options.items():
            rows = rows[rows[name] == value]
        out.append(
            TunedRun(
                rule,
                options,
                float(best["mean_final_loss"]),
                tuple(rows["trial_id"]),
                tuple(option_columns(frame, rule, varied=True)),
            )
        )
    return out


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def summary_table(result: SweepResult, target: float) -> pd.DataFrame:
    """One row per rule: trials, best setting, its mean final loss, robustness,
    diverged share.
    """
    frame = result.to_frame()
    if frame.empty:
        return pd.DataFrame()
    share = robustness(frame, target) if math.isfinite(target) else None
    tuned = {run.rule: run for run in tuned_runs(result)}
    rows = []
    for rule, group in frame.groupby("rule", sort=False):
        run = tuned.get(rule)
        rows.append(
            {
                "rule": rule,
                "trials": len(group),
                "best setting": run.setting if run else "—",
                "mean final loss": run.mean_final_loss if run else math.nan,
                "robustness": float(share[rule]) if share is not None else math.nan,
                "diverged": float((group["status"] == "diverged").mean()),
            }
        )
    return pd.DataFrame(rows)


def sweep_figures(result: SweepResult) -> dict[str, Any]:
    """``{heading: figure}``: the tuned curves, then one heatmap per rule."""
    from explorer.plots.sweeps import grid_figure, tuned_curves_figure

    target = target_loss(result)
    frame = result.to_frame()
    figures: dict[str, Any] = {}
    runs = tuned_runs(result)
    if runs:
        figures["Best-tuned settings"] = tuned_curves_figure(
            {run.name: [result.curve(t) for t in run.trial_ids] for run in runs},
            {run.name: result.steps(run.trial_ids[0]) for run in runs},
            title=f"Best-tuned settings on {result.config.problem} (band: min–max over seeds)",
            target=target,
        )
    for rule in dict.fromkeys(frame["rule"]):
        figures[f"{rule}: grid"] = grid_figure(rule_grid(frame, rule, target), target)
    return figures


def sweep_html(result: SweepResult, links: tuple = ()) -> str:
    """The report as one offline HTML page (plotly.js embedded once)."""
    from explorer.plots.html import figures_to_html

    config = result.config
    target = target_loss(result)
    counts = result.counts
    table = summary_table(result, target)
    details = [
        (
            "Problem",
            f"{config.problem} "
            + (
                json.dumps(dict(config.problem_options))
                if config.problem_options
                else "(its default options)"
            ),
        ),
        (
            "Grid",
            f"{counts['trials']} trials, {config.steps} steps, seeds {list(config.seeds)}",
        ),
        (
            "Done",
            f"{len(result.rows)} finished ({counts['reused']} reused), "
            f"{counts['failed']} failed",
        ),
        ("Target loss", _target_text(config, target)),
    ]
    details += [
        (
            row["rule"],
            f"best {row['best setting']}: mean final loss {row['mean final loss']:.6g}; "
            f"robustness {row['robustness']:.0%}; diverged {row['diverged']:.0%}",
        )
        for _, row in table.iterrows()
    ]
    figures = sweep_figures(result)
    if not figures:
        raise ValueError("the sweep has no finished trials to report")
    return figures_to_html(
        figures,
        title=f"Sweep on {config.problem}",
        intro=(
            "Each rule's best-tuned setting (lowest mean final loss over seeds), then "
            "its grid: the outline encloses settings where every seed reached the "
            "target loss; × marks settings where a seed diverged (loss above "
            f"{config.divergence_factor:g} × its initial value)."
        ),
        details=details,
        links=links,
    )


def _target_text(config: SweepConfig, target: float) -> str:
    if config.target_loss is not None:
        return f"{target:.6g} (the sweep's target_loss)"
    share = 1.0 - TARGET_SHARE
    return (
        f"{target:.6g} (the best loss of any trial plus {share:.0%} of the way down "
        "from the initial loss)"
    )


# -------------------------------------------------------------------- rerun file
def config_toml(config: SweepConfig) -> str:
    """``config`` as the TOML ``python -m explorer sweep --config`` reads."""
    lines = [
        "# Rerun with: python -m explorer sweep --config sweep.toml --out results.parquet",
        f"problem = {_toml(config.problem)}",
        f"steps = {config.steps}",
        f"seeds = {_toml(list(config.seeds))}",
        f"divergence_factor = {_toml(float(config.divergence_factor))}",
    ]
    if config.target_loss is not None:
        lines.append(f"target_loss = {_toml(float(config.target_loss))}")
    if config.sample is not None:
        lines += [f"sample = {config.sample}", f"sample_seed = {config.sample_seed}"]
    for table, values in (
        ("problem_options", config.problem_options),
        ("settings", config.settings),
    ):
        if values:
            lines += ["", f"[{table}]"]
            lines += [f"{k} = {_toml(v)}" for k, v in values.items()]
    for rule, grid in config.rules.items():
        lines += ["", f"[rules.{rule}]"]
        lines += [f"{k} = {_toml(list(v))}" for k, v in grid.items()]
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} has no TOML form here")
        text = repr(value)
        return text if any(c in text for c in ".en") else f"{text}.0"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise ValueError(f"{value!r} has no TOML form here")
