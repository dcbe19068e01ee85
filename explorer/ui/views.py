"""Shared pieces of the Curvature and Landscape pages: the point θ and its problem."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import streamlit as st
import torch

import explorer as ex
from explorer.landscape.trajectories import theta_at
from explorer.ui import state


@dataclass(frozen=True)
class Point:
    """Where to look: a problem, a point θ on it, and a text key for caches."""

    problem: ex.Problem
    theta: torch.Tensor
    description: str
    key: str


@st.cache_resource(max_entries=16, show_spinner=False)
def cached_problem(key: str, options_json: str) -> ex.Problem:
    """A CPU float64 problem instance shared read-only by the views."""
    return ex.problem(key, **json.loads(options_json))


def problem_and_point(container: Any = st) -> Point:
    """The Compare page's problem, and θ₀ or a step of one of its runs."""
    key, options, job = state.compare_context()
    options_json = json.dumps(options, sort_keys=True, default=list)
    problem = cached_problem(key, options_json)
    container.markdown(
        f"**Problem:** {problem.label} (P = {problem.num_params:,}) — "
        "change it on the Compare page."
    )
    runs = {}
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
        return Point(problem, problem.theta0, "θ₀", f"{key}|{options_json}|theta0")
    history = runs[where]
    steps = list(history.trajectory_steps)
    step = container.select_slider("Step", steps, value=steps[-1], key="view.step")
    _, theta = theta_at(history, step)
    theta = theta.to(dtype=problem.dtype)
    if not torch.isfinite(theta).all():
        container.warning("That step has non-finite parameters; showing θ₀ instead.")
        return Point(problem, problem.theta0, "θ₀", f"{key}|{options_json}|theta0")
    config_key = json.dumps(history.config.to_dict(), sort_keys=True, default=str)
    return Point(
        problem,
        theta,
        f"{where}, step {step}",
        f"{key}|{options_json}|{config_key}|{step}",
    )
