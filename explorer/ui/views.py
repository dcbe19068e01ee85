"""Shared pieces of the Curvature and Landscape pages: the point θ and its problem."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st
import torch

import explorer as ex
from explorer.landscape.trajectories import theta_at
from explorer.runs import Experiment, ProblemConfig, RunConfig
from explorer.ui import state
from explorer.ui.text import plain

#: What the sidebar says while the views' comparison runs (tests wait on it).
RUNS_PROGRESS = "Running the comparison for the paths"
#: What the sidebar says when the Compare page's results are for other settings.
EARLIER_RUNS = (
    "{count} run(s) of the Compare page are for earlier settings and are not drawn "
    "here: press **Run** on the Compare page to see the paths of these settings."
)


def point_key(
    config: ProblemConfig, run: RunConfig | None = None, step: int | None = None
) -> str:
    """Where θ is, as text for caches: the problem's full frozen config (seed,
    options, dtype) and θ₀, or also the full config of the run and its step.

    The problem's config is part of a run's key too: the same run drawn on another
    problem (another seed's data) is another point.
    """
    if run is None:
        return f"{config!r}|theta0"
    return f"{config!r}|{run!r}|{step}"


@dataclass(frozen=True)
class Point:
    """Where to look: a problem, a point θ on it, a text key for caches
    (:func:`point_key`), the Compare page's finished runs of the experiment on
    that problem (those that kept a trajectory), the config that builds the
    problem (on a worker) and the experiment's seed.
    """

    problem: ex.Problem
    theta: torch.Tensor
    description: str
    key: str
    runs: dict[str, ex.History]
    config: ProblemConfig
    seed: int = 0

    @property
    def runs_key(self) -> str:
        """The runs as text (their full configs, lengths and statuses), for cache
        keys.
        """
        return "|".join(f"{h.config!r}:{len(h)}:{h.status}" for h in self.runs.values())

    def cache_key(self, *view: Any) -> tuple:
        """What identifies a view's result here: the problem's full frozen config,
        the point (:func:`point_key`), the runs' full configs and the view's own
        parameters ``view``; two sessions share a result only when all agree.
        """
        return (repr(self.config), self.key, self.runs_key, *view)


@st.cache_resource(max_entries=16, show_spinner=False)
def cached_problem(key: str, _config: ProblemConfig) -> ex.Problem:
    """The problem ``_config`` builds, shared read-only by the views (``key`` is
    the config's text: what the cache is keyed by).
    """
    return _config.build()


def view_config(experiment: Experiment) -> ProblemConfig:
    """What builds the views' copy of the experiment's problem: on the CPU."""
    return experiment.problem_config.replace(device="cpu")


def view_problem(experiment: Experiment) -> ex.Problem:
    """The experiment's problem on the CPU, built once for every page and session."""
    config = view_config(experiment)
    return cached_problem(repr(config), config)


def experiment_runs(
    experiment: Experiment, histories: dict[str, ex.History]
) -> tuple[dict[str, ex.History], int]:
    """The finished runs that belong to ``experiment`` (their full configs are
    among its run configs) and kept a trajectory, and how many others there were.

    The Compare page keeps its last results when a setting changes (with a note),
    but a view draws paths on the experiment's problem: a run made with another
    seed, problem option or learning rate would be drawn on the wrong data.
    """
    try:
        wanted = set(experiment.run_configs())
    except ValueError:  # an invalid setting: the Compare page says which
        wanted = set()
    ours = {label: h for label, h in histories.items() if h.config in wanted}
    paths = {label: h for label, h in ours.items() if h.trajectory is not None}
    return paths, len(histories) - len(ours)


def problem_and_point(container: Any = st) -> Point:
    """The Compare page's problem, and θ₀ or a step of one of its runs."""
    experiment, job = state.compare_context()
    problem = view_problem(experiment)
    config = view_config(experiment)
    seed = experiment.settings.seed
    container.markdown(
        f"**Problem:** {plain(problem.label)} (P = {problem.num_params:,}) — "
        "change it on the Compare page."
    )
    if job is None:
        job = state.start_for_views(experiment)
    if job is not None and not job.done:
        _runs_progress(job)
    runs: dict[str, ex.History] = {}
    if job is not None and job.done:
        runs, earlier = experiment_runs(experiment, job.histories())
        if earlier:
            container.info(EARLIER_RUNS.format(count=earlier))
    choices = ["initial point θ₀", *runs]
    where = container.selectbox(
        "Point",
        choices,
        key="view.point",
        help="Look at the curvature at the starting point, or at any recorded step "
        "of a run from the Compare page.",
    )
    start = Point(problem, problem.theta0, "θ₀", point_key(config), runs, config, seed)
    if where == choices[0] or where not in runs:
        return start
    history = runs[where]
    steps = list(history.trajectory_steps)
    step = container.select_slider("Step", steps, value=steps[-1], key="view.step")
    _, theta = theta_at(history, step)
    theta = theta.to(dtype=problem.dtype)
    if not torch.isfinite(theta).all():
        container.warning("That step has non-finite parameters; showing θ₀ instead.")
        return start
    return Point(
        problem,
        theta,
        f"{where}, step {step}",
        point_key(config, history.config, step),
        runs,
        config,
        seed,
    )


@st.fragment(run_every=2.0)
def _runs_progress(job) -> None:
    """The comparison whose paths the views draw, until it is done (then the page
    reruns with them).
    """
    if job.done:
        st.rerun()
    st.progress(
        job.fraction_done(),
        text=f"{RUNS_PROGRESS}: {job.fraction_done():.0%}",
    )


def damping_input(key: str, default: float, help_text: str) -> float:
    """The damping λ of a view (a number input in the sidebar's style)."""
    # the default goes through the session state (not value=) so that a link can
    # set the widget without Streamlit's "default and state both set" warning
    st.session_state.setdefault(key, default)
    value = st.number_input(
        "Damping λ", min_value=0.0, format="%.2e", key=key, help=help_text
    )
    return float(value)
