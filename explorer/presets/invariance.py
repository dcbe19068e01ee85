"""Checks for C4: natural gradient's invariance to reparameterization.

Two settings: a Gaussian fitted in (μ, σ) and in (μ, log σ), a smooth nonlinear
change of coordinates where natural gradient is invariant only as the step size goes
to zero; and an affine change θ = Aφ + b of logistic regression, where natural
gradient with the exact Fisher and λ = 0 is exactly invariant at any step size and
Tikhonov damping breaks it. Gradient descent is invariant in neither.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from explorer import plots
from explorer.landscape import loss_grid
from explorer.presets.base import Measured, Measurement, Setup, Study
from explorer.presets.helpers import (
    log_slope,
    problem_on_cpu,
    reparameterized,
    run_config,
)
from explorer.runs import Experiment, History, RunConfig, run_on

Figures = dict[str, plots.Figure]

#: The studies of this module, one per preset: the figures each one draws.
SMOOTH = Study("paths in (μ, σ)", "gap against step size")
AFFINE = Study("paths in θ", "gap against damping")

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
    """maxₜ ‖firstₜ − secondₜ‖ (divided by maxₜ ‖firstₜ − first₀‖)."""
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


@SMOOTH.measures
def measure_smooth_reparameterization(setup: Setup) -> Measured:
    """(μ, σ) versus (μ, log σ): the natural-gradient gap vanishes with the step.

    Data: the loss ``grid`` in (μ, σ), the ``runs`` at the shown lr (both
    coordinates, drawn in (μ, σ)), and each rule's ``gaps`` over the ``lrs``.
    """
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
    prob = problem_on_cpu("gaussian_fit", setup.experiments["(μ, σ)"].problem_options)
    data = {
        "grid": loss_grid(prob, resolution=setup["grid"]),
        "runs": shown,
        "lrs": lrs,
        "gaps": gaps,
    }
    return Measured(measurements, data)


def _paths(measured: Measured, title: str) -> plots.Figure:
    """The runs in both coordinates, drawn in the first, on its loss landscape."""
    return plots.contour_figure(measured["grid"], measured["runs"], title=title)


@SMOOTH.draws
def draw_smooth_reparameterization(setup: Setup, measured: Measured) -> Figures:
    lr = setup["shown_lr"]
    steps = round(setup["time"] / lr)
    return {
        "paths in (μ, σ)": _paths(
            measured,
            f"Runs in both coordinates, drawn in (μ, σ) (lr = {lr:g}, {steps} steps)",
        ),
        "gap against step size": plots.curves_figure(
            [
                plots.Curve(
                    NAMES[rule], measured["lrs"], values, plots.rule_color(rule)
                )
                for rule, values in measured["gaps"].items()
            ],
            title=(
                "Invariance gap max<sub>t</sub> ‖θ<sub>t</sub>(σ) − θ<sub>t</sub>(log σ)‖"
                " at fixed lr × steps"
            ),
            x_title="step size lr",
            y_title="gap in (μ, σ)",
            log="xy",
        ),
    }


@AFFINE.measures
def measure_affine_reparameterization(setup: Setup) -> Measured:
    """θ = Aφ + b: exact invariance of undamped natural gradient, not of GD.

    Data: the loss ``grid`` in θ, the ``runs`` in θ and in φ (mapped to θ), and the
    gaps over the ``dampings``: ``damped``, ``undamped`` and ``gradient descent``.
    """
    prob = setup.build_problem()
    experiment = setup.experiment
    matrix = torch.tensor(setup["matrix"], dtype=torch.float64)
    offset = torch.tensor(setup["offset"], dtype=torch.float64)
    moved = reparameterized(prob, matrix, offset)
    configs = _configs(experiment)

    def pair(config: RunConfig) -> tuple[float, History, torch.Tensor]:
        direct = run_config(config, prob)
        other = run_on(
            moved, config.rule, config.resolved_rule_options(), config.settings
        )
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
            meaning="maxₜ ‖θₜ − (Aφₜ + b)‖ / maxₜ ‖θₜ − θ₀‖: exactly the same "
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
    runs = {
        "natural gradient in θ": ng_run,
        "natural gradient in φ, mapped": _mapped(ng_run, ng_mapped, "NG φ"),
        "gradient descent in θ": gd_run,
        "gradient descent in φ, mapped": _mapped(gd_run, gd_mapped, "GD φ"),
    }
    constant = np.ones(len(dampings))
    data = {
        "grid": loss_grid(prob, resolution=setup["grid"]),
        "runs": runs,
        "dampings": dampings,
        "damped": damped,
        "undamped": constant * max(ng_gap, 1e-17),
        "gradient descent": constant * gd_gap,
    }
    return Measured(measurements, data)


@AFFINE.draws
def draw_affine_reparameterization(setup: Setup, measured: Measured) -> Figures:
    dampings = measured["dampings"]
    return {
        "paths in θ": _paths(measured, "Runs in θ and in φ (θ = Aφ + b), drawn in θ"),
        "gap against damping": plots.curves_figure(
            [
                plots.Curve(
                    "natural gradient",
                    dampings,
                    measured["damped"],
                    plots.rule_color("natural_gradient"),
                ),
                plots.reference_curve(
                    "natural gradient, λ = 0",
                    dampings,
                    measured["undamped"],
                    dash="dot",
                ),
                plots.reference_curve(
                    "gradient descent",
                    dampings,
                    measured["gradient descent"],
                    plots.rule_color("sgd"),
                ),
            ],
            title="Gap between the two coordinates' paths",
            x_title="damping λ",
            y_title=(
                "max<sub>t</sub> ‖θ<sub>t</sub> − (Aφ<sub>t</sub> + b)‖"
                " / max<sub>t</sub> ‖θ<sub>t</sub> − θ₀‖"
            ),
            log="xy",
        ),
    }
