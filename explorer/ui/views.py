"""Shared pieces of the Curvature and Landscape pages: the point θ and its problem."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st
import torch

import explorer as ex
from explorer.landscape.trajectories import theta_at
from explorer.runs import Experiment, ProblemConfig
from explorer.ui import state

#: What the sidebar says while the views' comparison runs (tests wait on it).
RUNS_PROGRESS = "Running the comparison for the paths"


@dataclass(frozen=True)
class Point:
    """Where to look: a problem, a point θ on it, a text key for caches, the
    Compare page's finished runs on that problem (those that kept a trajectory), the
    config that builds the problem (on a worker) and the experiment's seed.
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
        """The runs as text (their full configs and lengths), for cache keys."""
        return "|".join(f"{h.config!r}:{len(h)}" for h in self.runs.values())


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


def problem_and_point(container: Any = st) -> Point:
    """The Compare page's problem, and θ₀ or a step of one of its runs."""
    experiment, job = state.compare_context()
    problem = view_problem(experiment)
    config = view_config(experiment)
    problem_key = repr(config)
    seed = experiment.settings.seed
    container.markdown(
        f"**Problem:** {problem.label} (P = {problem.num_params:,}) — "
        "change it on the Compare page."
    )
    if job is None:
        job = state.start_for_views(experiment)
    if job is not None and not job.done:
        _runs_progress(job)
    runs: dict[str, ex.History] = {}
    if job is not None and job.done:
        runs = {
            label: h for label, h in job.histories().items() if h.trajectory is not None
        }
    choices = ["initial point θ₀", *runs]
    where = container.selectbox(
        "Point",
        choices,
        key="view.point",
        help="Look at the curvature at the starting point, or at any recorded step "
        "of a run from the Compare page.",
    )
    if where == choices[0] or where not in runs:
        return Point(
            problem, problem.theta0, "θ₀", f"{problem_key}|theta0", runs, config, seed
        )
    history = runs[where]
    steps = list(history.trajectory_steps)
    step = container.select_slider("Step", steps, value=steps[-1], key="view.step")
    _, theta = theta_at(history, step)
    theta = theta.to(dtype=problem.dtype)
    if not torch.isfinite(theta).all():
        container.warning("That step has non-finite parameters; showing θ₀ instead.")
        return Point(
            problem, problem.theta0, "θ₀", f"{problem_key}|theta0", runs, config, seed
        )
    return Point(
        problem,
        theta,
        f"{where}, step {step}",
        f"{history.config!r}|{step}",
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
