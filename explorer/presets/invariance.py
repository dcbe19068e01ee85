"""Checks for C4: natural gradient's invariance to reparameterization.

Two settings: a Gaussian fitted in (μ, σ) and in (μ, log σ), a smooth nonlinear
change of coordinates where natural gradient is invariant only as the step size goes
to zero; and an affine change θ = Aφ + b of logistic regression, where natural
gradient with the exact Fisher and λ = 0 is exactly invariant at any step size and
Tikhonov damping breaks it. Gradient descent is invariant in neither.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import torch

from explorer.history import History
from explorer.landscape import loss_grid
from explorer.plots import contour_figure
from explorer.plots.theme import rule_color
from explorer.presets.base import Evidence, Measurement, Setup
from explorer.presets.figures import REFERENCE_COLOR, Curve, curves_figure
from explorer.presets.helpers import log_slope, reparameterized, run_config, run_on
from explorer.problems.spec import problem
from explorer.runner import RunConfig
from explorer.ui.urlstate import Experiment

NAMES = {"natural_gradient": "natural gradient", "sgd": "gradient descent"}


def _in_sigma(history: History) -> torch.Tensor:
    """The path of a (μ, log σ) run mapped to (μ, σ)."""
    path = history.trajectory.clone()
    path[:, 1] = path[:, 1].exp()
    return path


def _mapped(history: History, path: torch.Tensor, label: str) -> History:
    return dataclasses.replace(history, trajectory=path, label=label)


def _configs(experiment: Experiment) -> dict[str, RunConfig]:
    return {config.rule: config for config in experiment.run_configs()}


def _gap(first: torch.Tensor, second: torch.Tensor, relative: bool = False) -> float:
    """max_t ‖first_t − second_t‖ (divided by max_t ‖first_t − first_0‖)."""
    steps = min(len(first), len(second))
    gap = float((first[:steps] - second[:steps]).norm(dim=1).max())
    if relative:
        gap /= float((first - first[0]).norm(dim=1).max())
    return gap


def _lockstep(
    sigma: RunConfig, log_sigma: RunConfig, lr: float, time: float
) -> tuple[float, History, History]:
    steps = max(1, round(time / lr))
    options = {**sigma.rule_options.to_dict(), "lr": lr}
    first = run_config(sigma.replace(rule_options=options, steps=steps))
    second = run_config(log_sigma.replace(rule_options=options, steps=steps))
    return _gap(first.trajectory, _in_sigma(second)), first, second


def smooth_reparameterization(setup: Setup, figures: bool) -> Evidence:
    """(μ, σ) versus (μ, log σ): the natural-gradient gap vanishes with the step."""
    sigma = _configs(setup.experiments["(μ, σ)"])
    log_sigma = _configs(setup.experiments["(μ, log σ)"])
    lrs = list(setup["lrs"])
    gaps: dict[str, list[float]] = {}
    shown: dict[str, History] = {}
    for rule in ("natural_gradient", "sgd"):
        gaps[rule] = []
        for lr in lrs:
            gap, first, second = _lockstep(
                sigma[rule], log_sigma[rule], lr, setup["time"]
            )
            gaps[rule].append(gap)
            if lr == setup["shown_lr"]:
                name = NAMES[rule]
                shown[f"{name} in (μ, σ)"] = first
                shown[f"{name} in (μ, log σ), mapped"] = _mapped(
                    second, _in_sigma(second), f"{name} in (μ, log σ)"
                )
    ng, gd = gaps["natural_gradient"], gaps["sgd"]
    measurements = (
        Measurement(
            "natural gradient: slope of log gap against log lr",
            log_slope(lrs[-2:], ng[-2:]),
            low=0.8,
            meaning="The two natural-gradient paths merge as the step size shrinks…",
        ),
        Measurement(
            f"gap ratio GD / NG at lr = {lrs[-1]:g}",
            gd[-1] / ng[-1],
            low=5.0,
            meaning="…while gradient descent's stay apart: its flows differ.",
        ),
        Measurement(
            f"gradient descent: gap at lr = {lrs[-1]:g}",
            gd[-1],
            low=0.1,
            meaning="Its gap stays at the distance between two different gradient "
            "flows as lr → 0.",
        ),
    )
    out = {}
    if figures:
        prob = problem("gaussian_fit", **setup.experiments["(μ, σ)"].problem_options)
        out["paths in (μ, σ)"] = contour_figure(
            loss_grid(prob, resolution=setup["grid"]),
            shown,
            title=f"Runs in both coordinates, drawn in (μ, σ) (lr = "
            f"{setup['shown_lr']:g}, {round(setup['time'] / setup['shown_lr'])} "
            "steps)",
        )
        out["gap against step size"] = curves_figure(
            [
                Curve(NAMES[rule], lrs, values, rule_color(rule))
                for rule, values in gaps.items()
            ],
            title="Invariance gap max_t ‖θ_t(σ) − θ_t(log σ)‖ at fixed lr × steps",
            x_title="step size lr",
            y_title="gap in (μ, σ)",
            log_x=True,
            log_y=True,
        )
    return Evidence(measurements, out)


def affine_reparameterization(setup: Setup, figures: bool) -> Evidence:
    """θ = Aφ + b: exact invariance of undamped natural gradient, not of GD."""
    experiment = setup.experiment
    prob = problem(experiment.problem, **experiment.problem_options)
    matrix = torch.tensor(setup["matrix"], dtype=torch.float64)
    offset = torch.tensor(setup["offset"], dtype=torch.float64)
    moved = reparameterized(prob, matrix, offset)
    configs = _configs(experiment)

    def pair(config: RunConfig) -> tuple[float, History, torch.Tensor]:
        direct = run_config(config)
        other = run_on(moved, config)
        mapped = other.trajectory @ matrix.T + offset
        return _gap(direct.trajectory, mapped, relative=True), direct, mapped

    ng_gap, ng_run, ng_mapped = pair(configs["natural_gradient"])
    gd_gap, gd_run, gd_mapped = pair(configs["sgd"])
    dampings = list(setup["dampings"])
    damped = []
    for damping in dampings:
        options = {**configs["natural_gradient"].rule_options.to_dict()}
        options["damping"] = damping
        damped.append(
            pair(configs["natural_gradient"].replace(rule_options=options))[0]
        )
    measurements = (
        Measurement(
            "natural gradient, λ = 0: relative gap",
            ng_gap,
            high=1e-10,
            meaning="max_t ‖θ_t − (Aφ_t + b)‖ / max_t ‖θ_t − θ₀‖: exactly the same "
            "path in both coordinates, at any step size…",
        ),
        Measurement(
            "gradient descent: relative gap",
            gd_gap,
            low=1e-2,
            meaning="…gradient descent takes a different path…",
        ),
        Measurement(
            f"natural gradient, λ = {dampings[-1]:g}: relative gap",
            damped[-1],
            low=1e-4,
            meaning="…and Tikhonov damping breaks the exact invariance.",
        ),
    )
    out = {}
    if figures:
        runs: Mapping[str, object] = {
            "natural gradient in θ": ng_run,
            "natural gradient in φ, mapped": _mapped(ng_run, ng_mapped, "NG φ"),
            "gradient descent in θ": gd_run,
            "gradient descent in φ, mapped": _mapped(gd_run, gd_mapped, "GD φ"),
        }
        out["paths in θ"] = contour_figure(
            loss_grid(prob, resolution=setup["grid"]),
            runs,
            title="Runs in θ and in φ (θ = Aφ + b), drawn in θ",
        )
        out["gap against damping"] = curves_figure(
            [
                Curve(
                    "natural gradient",
                    dampings,
                    damped,
                    rule_color("natural_gradient"),
                ),
                Curve(
                    "natural gradient, λ = 0",
                    dampings,
                    np.full(len(dampings), max(ng_gap, 1e-17)),
                    REFERENCE_COLOR,
                    dash="dot",
                    markers=False,
                ),
                Curve(
                    "gradient descent",
                    dampings,
                    np.full(len(dampings), gd_gap),
                    rule_color("sgd"),
                    dash="dash",
                    markers=False,
                ),
            ],
            title="Gap between the two coordinates' paths",
            x_title="damping λ",
            y_title="max_t ‖θ_t − (Aφ_t + b)‖ / max_t ‖θ_t − θ₀‖",
            log_x=True,
            log_y=True,
        )
    return Evidence(measurements, out)
