"""The Sweep page's parts: the grid editor, the estimate, progress and the results.

The page builds an :class:`~explorer.sweeps.SweepConfig` from its widgets (each
rule's learning rates and dampings as log-spaced grids, seeds, steps), shows the
trial count and an estimate measured on a worker (a 3-step probe per rule, cached),
runs it as a :class:`~explorer.ui.sweep_job.SweepJob` on the app's engine, and draws
what :mod:`explorer.sweeps.report` makes of the result.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import streamlit as st

from explorer.optimizers.rules import RULES
from explorer.problems.spec import PROBLEMS
from explorer.runs.config import RunConfig
from explorer.runs.experiment import Experiment, RuleChoice
from explorer.runs.runner import run
from explorer.sweeps.analysis import rule_grid, target_loss
from explorer.sweeps.config import SweepConfig, log_spaced
from explorer.sweeps.report import (
    config_toml,
    summary_table,
    sweep_html,
    tuned_runs,
)
from explorer.ui import state
from explorer.ui.compare import grouped_problems, problem_choice
from explorer.ui.computed import computed
from explorer.ui.results import plot
from explorer.ui.sweep_job import SweepJob

JOB = "sweep.job"
DOWNLOADS = "sweep.downloads"  # (job, its files): built once per finished sweep
#: Rules offered first: Kunstner et al.'s tuned comparison.
DEFAULT_RULES = ("sgd", "natural_gradient", "ef_natural_gradient")
#: Steps of the probe that measures a step's time per rule.
PROBE_STEPS = 3


# ------------------------------------------------------------------ controls
def sweep_controls() -> dict[str, Any]:
    """The sidebar: problem, rules, seeds and steps."""
    experiment, _ = state.compare_context()
    problems = grouped_problems(  # not another session's uploaded problems
        {k: PROBLEMS[k] for k in state.listed(PROBLEMS)}
    )
    default = (
        problems.index(experiment.problem) if experiment.problem in problems else 0
    )
    problem = st.selectbox(
        "Problem",
        problems,
        index=default,
        key="sw.problem",
        format_func=problem_choice,
        help="The problem every trial runs on, with its default options (or the "
        "Compare page's options when it shows the same problem).",
    )
    options = dict(experiment.problem_options) if experiment.problem == problem else {}
    rules = st.multiselect(
        "Optimizers",
        state.listed(RULES),
        default=[r for r in DEFAULT_RULES if r in RULES],
        key="sw.rules",
        format_func=lambda k: f"{RULES[k].label} ({k})",
        help="Each gets its own grid below.",
    )
    seeds = st.number_input(
        "Seeds",
        1,
        10,
        2,
        key="sw.seeds",
        help="Every grid point runs with seeds 0, 1, …: the heatmaps show the mean.",
    )
    steps = st.number_input(
        "Steps", 1, state.engine().limits.max_steps, 40, key="sw.steps"
    )
    return {
        "problem": problem,
        "problem_options": options,
        "rules": rules,
        "seeds": int(seeds),
        "steps": int(steps),
    }


def _axis(rule: str, name: str, low: float, high: float, count: int) -> list[float]:
    """A log-spaced grid of one option (from, to, points) in three columns."""
    spec = next(o for o in RULES[rule].options if o.name == name)
    cols = st.columns(3)
    start, stop = (
        column.number_input(
            f"{name} {end}", min_value=1e-12, value=value, format="%g",
            key=f"sw.{rule}.{name}.{suffix}",
        )
        for column, end, value, suffix in (
            (cols[0], "from", low, "lo"), (cols[1], "to", high, "hi")
        )
    )  # fmt: skip
    points = cols[2].number_input(
        f"{name} points", 1, 41, count, key=f"sw.{rule}.{name}.n", help=spec.help
    )
    lo, hi = sorted((float(start), float(stop)))
    return log_spaced(lo, hi, int(points))


def _round(value: float) -> float:
    return float(f"{value:.3g}")


def grid_editor(rules: list[str]) -> dict[str, dict[str, list]]:
    """Per rule: its learning rates and, when it has one, its dampings (fixed λ:
    Levenberg–Marquardt adaptation off, as Kunstner et al. tune it).
    """
    grids: dict[str, dict[str, list]] = {}
    for rule in rules:
        names = {o.name for o in RULES[rule].options}
        with st.expander(f"{RULES[rule].label} ({rule})", expanded=len(rules) <= 3):
            grid: dict[str, list] = {}
            if "lr" in names:
                default = next(o.default for o in RULES[rule].options if o.name == "lr")
                base = float(default) if default else 1.0
                grid["lr"] = _axis(rule, "lr", _round(base / 10), _round(base * 3), 4)
            if "damping" in names:
                grid["damping"] = _axis(rule, "damping", 1e-4, 1.0, 3)
                if "damping_adaptation" in names:
                    grid["damping_adaptation"] = ["fixed"]
            if not grid:
                st.caption("No learning rate or damping: runs with its defaults.")
            grids[rule] = grid
    return grids


def sweep_config(
    values: dict[str, Any], grids: dict[str, dict[str, list]]
) -> SweepConfig:
    """The page's :class:`SweepConfig` (ValueError naming a bad setting)."""
    limit = state.engine().limits.max_sweep_trials
    config = SweepConfig(
        values["problem"],
        grids,
        seeds=tuple(range(values["seeds"])),
        steps=values["steps"],
        problem_options=values["problem_options"],
        max_trials=max(limit, 1),
    )
    config.trials()  # every value checked against its option's range
    return config


# ------------------------------------------------------------------ estimate
def probe_task(
    worker: Any, channel: Any, problem: str, options: dict, rules: tuple
) -> dict[str, tuple[float, float]]:
    """Per rule, (seconds of a trial's fixed cost, seconds per step) on
    ``problem``: a 1-step and a (1 + PROBE_STEPS)-step run on the worker, timed;
    the difference over PROBE_STEPS is a step, the rest is setup.
    """
    out = {}
    for rule in rules:
        seconds = []
        for steps in (1, 1 + PROBE_STEPS):
            config = RunConfig(problem, options, rule, {}, steps=steps)
            built = worker.problem(config.problem_config)
            start = time.perf_counter()
            run(config, problem=built, cancel=channel.cancelled)
            seconds.append(time.perf_counter() - start)
        per_step = max(0.0, (seconds[1] - seconds[0]) / PROBE_STEPS)
        out[rule] = (max(0.0, seconds[0] - per_step), per_step)
    return out


def estimate_text(config: SweepConfig) -> str | None:
    """``"48 trials · about 20 s on 2 workers"`` (None while the probe runs)."""
    rules = tuple(config.rules)
    per_step = computed(
        "sweep.probe",
        probe_task,
        config.problem,
        dict(config.problem_options),
        rules,
        key_parts=("per-step", config.problem, dict(config.problem_options), rules),
        label="measuring a step of each optimizer",
    )
    if per_step is None:
        return None
    seconds = 0.0
    for rule in rules:
        setup, step = per_step[rule]
        trials = len(config.points(rule)) * len(config.seeds)
        # 0.02 s: a task's round trip through the queue (bench_sweeps: 5.5 ms)
        seconds += trials * (setup + config.steps * step + 0.02)
    workers = max(1, state.engine().workers())
    return (
        f"**{config.size():,} trials** · about {_duration(seconds / workers)} on "
        f"{workers} worker{'s' if workers > 1 else ''} when nobody else is running "
        "(measured: short runs of each optimizer on this server's workers)"
    )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# ---------------------------------------------------------------------- job
def current_job() -> SweepJob | None:
    return st.session_state.get(JOB)


def start(config: SweepConfig) -> SweepJob:
    """Queues the sweep (the session's previous sweep is stopped).

    Raises:
        LimitExceeded: above the server's limits.
    """
    from explorer.server.limits import LimitExceeded

    previous = current_job()
    if previous is not None and not previous.done:
        previous.cancel()
    refusal = state.engine().limits.sweep_refusal(config.size(), config.steps)
    if refusal is not None:
        raise LimitExceeded(refusal)
    job = SweepJob(
        config,
        state.engine(),
        session=state.session_id(),
        alive=state.alive_check(),
    ).start()
    st.session_state[JOB] = job
    return job


def progress_text(job: SweepJob) -> str:
    counts = job.counts()
    done = counts["finished"] + counts["failed"] + counts["stopped"]
    parts = [f"{done} of {len(job.tickets)} trials done"]
    if counts["reused"]:
        parts.append(f"{counts['reused']} from the cache")
    if counts["running"]:
        parts.append(f"{counts['running']} running")
    if counts["queued"]:
        parts.append(f"{counts['queued']} queued")
    remaining = job.remaining_seconds()
    if remaining is not None:
        parts.append(f"about {_duration(remaining)} left")
    return " · ".join(parts)


# ------------------------------------------------------------------ results
def heatmaps(job: SweepJob, key: str) -> None:
    """One heatmap per rule of the trials finished so far."""
    from explorer.plots.sweeps import grid_figure

    result = job.result()
    if not result.rows:
        return
    frame = result.to_frame()
    target = target_loss(result)
    rules = list(dict.fromkeys(frame["rule"]))
    columns = st.columns(min(2, len(rules)))
    for index, rule in enumerate(rules):
        with columns[index % len(columns)]:
            plot(
                grid_figure(rule_grid(frame, rule, target), target),
                f"sweep-{rule}",
                key=f"{key}.{rule}",
            )


def results(job: SweepJob) -> None:
    """The finished sweep: summary, tuned curves, heatmaps and downloads."""
    from explorer.plots.sweeps import tuned_curves_figure
    from explorer.ui.tour import open_in_compare

    result = job.result()
    for line in job.failures():
        st.warning(line)
    if not result.rows:
        st.info("No trial finished: nothing to show.")
        return
    target = target_loss(result)
    table = summary_table(result, target)
    st.subheader("Best-tuned settings")
    st.caption(
        f"Target loss {target:.4g}: the best loss of any trial plus 10 % of the way "
        "down from the initial loss. Robustness: the share of a rule's trials whose "
        "best loss reached it. Diverged: loss above "
        f"{job.config.divergence_factor:g} × its initial value (stopped early)."
    )
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            "robustness": st.column_config.NumberColumn(format="percent"),
            "diverged": st.column_config.NumberColumn(format="percent"),
            "mean final loss": st.column_config.NumberColumn(format="%.6g"),
        },
    )
    runs = tuned_runs(result)
    plot(
        tuned_curves_figure(
            {run.name: [result.curve(t) for t in run.trial_ids] for run in runs},
            {run.name: result.steps(run.trial_ids[0]) for run in runs},
            title="Best-tuned settings (band: min–max over seeds)",
            target=target,
        ),
        "sweep-tuned",
        key="sw.tuned",
    )
    if runs and st.button(
        "Open the tuned settings in Compare",
        help="Loads each optimizer at its best setting (seed 0) into the Compare "
        "page, with its full charts.",
    ):
        open_in_compare(tuned_experiment(job.config, runs))
    st.subheader("Grids")
    st.caption(
        "Mean final loss over seeds; the red outline encloses settings where every "
        "seed reached the target; × marks settings where a seed diverged."
    )
    heatmaps(job, "sw.grid")
    downloads(job)


def tuned_experiment(config: SweepConfig, runs) -> Experiment:
    """The Compare page's experiment: each rule at its tuned setting."""
    return Experiment(
        config.problem,
        dict(config.problem_options),
        tuple(RuleChoice(run.rule, dict(run.options), None) for run in runs),
        {"steps": config.steps, **dict(config.settings)},
    )


def downloads(job: SweepJob) -> None:
    """The finished sweep's files; built once per job (the HTML report draws every
    figure), not on every rerun of the page.
    """
    held = st.session_state.get(DOWNLOADS)
    if held is None or held[0] is not job:
        held = (job, _files(job))
        st.session_state[DOWNLOADS] = held
    for column, (label, (data, name, mime, help_text)) in zip(
        st.columns(len(held[1])), held[1].items(), strict=True
    ):
        column.download_button(label, data, name, mime, help=help_text)


def _files(job: SweepJob) -> dict[str, tuple[Any, str, str, str | None]]:
    """``{label: (data, file name, MIME type, help)}`` of the downloads."""
    result = job.result()
    slug = f"sweep-{job.config.problem}"
    rows = [_json_row(r) for r in result.rows]
    return {
        "Parquet": (
            _parquet(result),
            f"{slug}.parquet",
            "application/octet-stream",
            "Every trial with its curve: `python -m explorer sweep --out` resumes "
            "from it.",
        ),
        "CSV": (result.to_frame().to_csv(index=False), f"{slug}.csv", "text/csv", None),
        "JSON": (json.dumps(rows, indent=1), f"{slug}.json", "application/json", None),
        "HTML report": (sweep_html(result), f"{slug}.html", "text/html", None),
        "sweep.toml": (
            config_toml(job.config),
            "sweep.toml",
            "text/plain",
            "Reruns this sweep: python -m explorer sweep --config sweep.toml "
            "--dask local:4 --out results.parquet",
        ),
    }


def _parquet(result) -> bytes:
    import tempfile
    from pathlib import Path

    from explorer.sweeps.result import save_rows

    with tempfile.TemporaryDirectory() as folder:
        path = save_rows(
            Path(folder) / "r.parquet",
            result.config,
            {row["trial_id"]: row for row in result.rows},
        )
        return path.read_bytes()


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row as strict JSON: NaN and ±∞ (in values and curves) become null."""
    return {k: _finite(v) for k, v in row.items()}


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
