"""The Compare page's outputs: live progress, status messages, charts and downloads."""

from __future__ import annotations

import json
import re
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from explorer.plots import (
    hyperparameter_figure,
    loss_figure,
    run_report,
)
from explorer.plots.theme import apply_layout, plain_keys, plain_text, rule_color
from explorer.plots.training import summary_rows
from explorer.problems.base import Problem
from explorer.ui import exports
from explorer.ui.computed import cached_figure
from explorer.ui.jobs import ComparisonJob
from explorer.ui.text import plain
from explorer.ui.theory import theory_link
from explorer.ui.views import view_problem

X_AXES = {
    "iterations": "step",
    "wall time (s)": "wall_time",
    "curvature-vector products": "curvature_products",
    "gradient evaluations": "grad_evals",
    "examples seen": "examples",
}
STATUS_HELP = {
    "diverged": "the loss grew 10⁴-fold or became non-finite",
    "indefinite": "the curvature plus damping was not positive definite",
    "cancelled": "stopped by you",
    "error": "a numerical error stopped it",
}


#: Significant digits a reader can compare (not 16); the values stay numbers.
SUMMARY_FORMATS = {
    "final loss": st.column_config.NumberColumn(format="%.5g"),
    "final test loss": st.column_config.NumberColumn(format="%.5g"),
    "averaged_loss": st.column_config.NumberColumn(format="%.5g"),
    "excess_loss": st.column_config.NumberColumn(format="%.4g"),
    "optimizer time (s)": st.column_config.NumberColumn(
        format="%.3g",
        help="The optimizer's own work on a worker: gradients, curvature and "
        "solves, without evaluating the recorded losses or waiting in the queue.",
    ),
}


def plot(figure: go.Figure, name: str, key: str | None = None) -> None:
    """``st.plotly_chart`` with a PNG download in the chart's toolbar (camera icon)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "figure"
    st.plotly_chart(
        figure,
        width="stretch",
        key=key,
        config={
            "displaylogo": False,
            "toImageButtonOptions": {"format": "png", "filename": slug, "scale": 2},
        },
    )


# ------------------------------------------------------------------ progress
def live_figure(job: ComparisonJob) -> go.Figure:
    """The training loss so far of every run (updates while the job runs)."""
    figure = go.Figure()
    for state in job.states:
        rows = list(state.rows)
        if state.history is not None:
            rows = state.history.to_frame().to_dict("records")
        if not rows:
            continue
        curvature = dict(state.config.rule_options).get("curvature")
        figure.add_trace(
            go.Scatter(
                x=[row["step"] for row in rows],
                y=[row["loss"] for row in rows],
                mode="lines",
                name=plain_text(state.label),
                line={"color": rule_color(state.config.rule, curvature)},
            )
        )
    apply_layout(
        figure,
        title="Training loss (live)",
        height=360,
        xaxis={"title": "iteration"},
        yaxis={"title": "loss h(θ)", "type": "log"},
    )
    return figure


def progress_text(job: ComparisonJob) -> str:
    states = job.states
    running = [plain(s.label) for s in states if s.phase == "running"]
    finished = sum(s.phase in ("finished", "failed") for s in states)
    if running:
        now = "running " + ", ".join(running)
    elif finished < len(states):
        now = "waiting for a worker"
    else:
        now = "finishing"
    percent = 100.0 * job.fraction_done()
    remaining = job.remaining_seconds()
    left = f", about {remaining:.0f} s left" if remaining is not None else ""
    return (
        f"{percent:.0f}% · {finished}/{len(states)} optimizers done, {now}… "
        f"({job.elapsed:.1f} s so far{left})"
    )


def queue_text(job: ComparisonJob) -> str | None:
    """Where the job waits in the server's queue, or None once it runs."""
    if any(s.phase == "running" for s in job.states):
        return None
    place = job.position()
    if place is None:
        return None
    workers = job.engine.workers()
    if workers == 0:
        return (
            f"Queued: place {place} in the queue, but no compute worker is "
            "connected yet; the runs start as soon as one joins."
        )
    eta = job.eta()
    about = f" (about {eta:.0f} s)" if eta is not None else ""
    dispatcher = job.engine.dispatcher
    return (
        f"Queued: place {place} in the queue{about}. {workers} worker(s) serve "
        f"every session in turn ({dispatcher.running()} running, "
        f"{dispatcher.queued()} waiting)."
    )


def finished_text(job: ComparisonJob) -> str:
    """What the clocks measured: the wait, and the workers' own time."""
    if all(s.cached for s in job.states):
        return "Finished in 0.0 s: every result came from the server's cache."
    return (
        f"Finished in {job.elapsed:.1f} s from Run (waited {job.queue_seconds:.1f} s "
        f"for a worker; the workers computed for {job.compute_seconds:.1f} s in all)."
    )


# ------------------------------------------------------------------- results
def status_messages(job: ComparisonJob) -> None:
    """One clear line per run that did not finish normally, with the remedy."""
    for label, error in job.failures().items():
        st.error(f"**{plain(label)}** could not run: {error}")
    for label, history in job.histories().items():
        raised = int(sum(x for x in history.column("indefinite") if x == x))
        if raised:
            st.info(
                f"**{plain(label)}** met an indefinite curvature at {raised} step(s) and went "
                "on (damping raised past the most negative eigenvalue, or a "
                f"negative-curvature step). {theory_link('hessian', 'Why?')}"
            )
        if history.status == "ok":
            continue
        reason = STATUS_HELP.get(history.status, history.status)
        text = f"**{plain(label)}** stopped ({history.status}: {reason}). "
        text += history.message
        if history.status == "indefinite":
            text += f" {theory_link('hessian', 'Why?')}"
        (st.info if history.status == "cancelled" else st.warning)(text)


def summary_table(job: ComparisonJob) -> pd.DataFrame:
    """Final numbers per run; ``cached`` marks results reused from an earlier run."""
    finished = [state for state in job.states if state.history is not None]
    frame = pd.DataFrame(summary_rows({s.label: s.history for s in finished}))
    if frame.empty:
        return frame
    frame["cached"] = [state.cached for state in finished]
    frame = frame.dropna(axis="columns", how="all")  # e.g. no test set: no test columns
    return frame.rename(
        columns={
            "run": "optimizer",
            "loss": "final loss",
            "test_loss": "final test loss",
            "test_accuracy": "test accuracy",
            "wall_time": "optimizer time (s)",
            "grad_evals": "gradient evaluations",
            "curvature_products": "curvature products",
        }
    )


def report_figures(key: str, histories: dict, problem: Problem) -> dict[str, go.Figure]:
    """Every figure of a finished comparison on ``problem``, built once per ``key``
    (configs, statuses) for every session.
    """
    return cached_figure(
        f"report|{key}", lambda: run_report(plain_keys(histories), problem)
    )


def report_key(histories: dict) -> str:
    """A text key identifying finished runs: their configs and outcomes."""
    return json.dumps(
        [[h.config.to_dict(), h.status, len(h)] for h in histories.values()],
        sort_keys=True,
        default=str,
    )


def results(job: ComparisonJob) -> None:
    """Everything a finished (or stopped) comparison shows."""
    histories = job.histories()
    status_messages(job)
    if not histories:
        return
    key = report_key(histories)
    st.dataframe(
        cached_figure(
            f"summary|{key}|{[s.cached for s in job.states]}",
            lambda: summary_table(job),
        ),
        hide_index=True,
        width="stretch",
        column_config=SUMMARY_FORMATS,
    )
    tabs = st.tabs(
        [
            "Loss",
            "Damping λ · ratio ρ · step α",
            "Parameter space",
            "Function space",
            "Export",
        ]
    )
    with tabs[0]:
        axis = st.radio(
            "Against",
            list(X_AXES),
            horizontal=True,
            key="cmp.x_axis",
            help="Compare methods per unit of work, not only per iteration.",
        )
        figure = cached_figure(
            f"loss|{key}|{axis}",
            lambda: loss_figure(plain_keys(histories), x=X_AXES[axis]),
        )
        plot(figure, f"loss-{axis}", key="cmp.loss")
    with tabs[1]:
        st.caption(
            "λ is the Tikhonov damping, ρ the reduction ratio (actual over predicted "
            "decrease; the band [¼, ¾] is where Levenberg–Marquardt keeps λ), α the "
            f"step size. {theory_link('updates')}"
        )
        figure = cached_figure(
            f"hyper|{key}", lambda: hyperparameter_figure(plain_keys(histories))
        )
        plot(figure, "damping-rho-alpha", key="cmp.hyper")
    try:  # after the loss tab, so the first charts show while these compute
        problem = view_problem(job.experiment)
        figures = report_figures(key, histories, problem)
    except (ValueError, RuntimeError) as error:
        st.warning(f"Some views could not be drawn: {error}")
        figures = {}
    parameter = {
        k: v
        for k, v in figures.items()
        if "landscape" in k.lower() or "plane" in k.lower()
    }
    function = {
        k: v
        for k, v in figures.items()
        if any(word in k.lower() for word in ("decision", "fitted", "kl"))
    }
    with tabs[2]:
        if not parameter:
            st.info("No parameter trajectories were recorded for these runs.")
        for name, figure in parameter.items():
            if "plane" in name.lower():
                st.caption(
                    "The plane of the first two principal directions of all paths "
                    "together (Li et al. 2018); the legend gives each path's distance "
                    "from the plane, so you can see how faithful the picture is."
                )
            plot(figure, name, key=f"cmp.{name}")
    with tabs[3]:
        if not function:
            st.info("No function-space view for this problem.")
        for name, figure in function.items():
            plot(figure, name, key=f"cmp.{name}")
    with tabs[4]:
        downloads(job, key, figures)


def figures_for_export(histories: dict) -> dict[str, go.Figure]:
    histories = plain_keys(histories)
    return {
        "Loss per iteration": loss_figure(histories),
        "Damping, reduction ratio and step size": hyperparameter_figure(histories),
    }


def downloads(job: ComparisonJob, key: str, figures: dict[str, Any]) -> None:
    """The four downloads, each built once per finished comparison."""
    histories = job.histories()
    columns = st.columns(4)
    columns[0].download_button(
        "Histories (CSV)",
        cached_figure(f"csv|{key}", lambda: exports.histories_csv(histories)),
        "histories.csv",
        "text/csv",
        width="stretch",
    )
    columns[1].download_button(
        "Configs + histories (JSON)",
        cached_figure(f"json|{key}", lambda: exports.histories_json(histories)),
        "runs.json",
        "application/json",
        width="stretch",
    )
    if job.experiment is not None:
        columns[2].download_button(
            "Python script",
            exports.python_script(job.experiment),
            "reproduce.py",
            "text/x-python",
            width="stretch",
        )
    base_url = st.context.url or "./"  # the link back restores the experiment
    html = cached_figure(
        f"html|{key}|{base_url}",
        lambda: exports.comparison_html(
            job.experiment,
            {**figures_for_export(histories), **figures},
            base_url=base_url,
        ),
    )
    columns[3].download_button(
        "All figures (HTML)", html, "comparison.html", "text/html", width="stretch"
    )
    st.caption(
        "Each chart's toolbar has a camera icon that saves it as PNG. The Python "
        "script reruns this comparison through the public API and prints the final "
        "losses; the JSON loads back with `ex.load_histories`."
    )
