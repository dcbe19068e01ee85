"""Checks for C3: the empirical Fisher is not the Fisher (Kunstner et al. 2019).

The figures follow the paper's: preconditioned vector fields on linear regression
(figure 1), the quadratic models of F and EF at the optimum of well- and
misspecified models (figure 2), a tuned comparison of gradient descent, natural
gradient and EF-preconditioned descent (figure 3), the one-dimensional example where
EF steps shrink with the distance to the optimum, and the Monte Carlo Fisher
converging to F as samples grow.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch

from explorer.curvature import curvature
from explorer.landscape import direction_field, loss_grid, quadratic_models
from explorer.plots import contour_figure
from explorer.plots.theme import curvature_color, rule_color
from explorer.presets.base import Evidence, Measurement, Setup
from explorer.presets.figures import (
    Curve,
    curves_figure,
    grid_heatmaps,
    optimum_model_traces,
)
from explorer.presets.helpers import (
    final_theta,
    fixed,
    log_slope,
    one_weight_regression,
    relative_error,
    run_config,
    run_experiment,
    run_on,
)
from explorer.problems.base import Problem
from explorer.problems.spec import problem
from explorer.runner import RunConfig
from explorer.ui.urlstate import RuleChoice

#: The rules of the tuned comparison and their names in figures.
TUNED_RULES = {
    "sgd": "gradient descent",
    "natural_gradient": "natural gradient",
    "ef_natural_gradient": "empirical Fisher",
}


def least_squares(prob: Problem) -> torch.Tensor:
    """θ* = argmin ‖Xθ − y‖² for a linear model with inputs X (closed form)."""
    solution = torch.linalg.lstsq(prob.inputs.double(), prob.targets.double())
    return solution.solution[:, 0].to(prob.dtype)


def _optimum(prob: Problem, key: str, options) -> torch.Tensor:
    if key == "linreg_2d" and options.get("loss", "gaussian") == "gaussian":
        return least_squares(prob)
    config = RunConfig(key, options, "gauss_newton", {}, steps=40, label="optimum")
    return final_theta(run_config(config)).to(prob.dtype)


# ------------------------------------------------------------------- figure 1
def ef_field(setup: Setup, figures: bool) -> Evidence:
    """The natural-gradient field points at θ* from everywhere; EF's does not."""
    prob = problem(setup.problem, **setup.problem_options)
    target = least_squares(prob)
    field = direction_field(
        prob,
        ("fisher", "ef"),
        damping=setup["damping"],
        resolution=setup["resolution"],
    )
    angles = {key: field.angle_to(key, target) for key in ("gradient", "fisher", "ef")}
    finite = {key: a[torch.isfinite(a)] for key, a in angles.items()}
    way = target.double().unsqueeze(0) - field.points
    landing = (field.directions["fisher"] - way).norm(dim=1) / way.norm(dim=1)
    measurements = (
        Measurement(
            "max ‖θ − F⁻¹g − θ*‖ / ‖θ − θ*‖",
            float(landing[torch.isfinite(landing)].max()),
            high=1e-10,
            meaning="From every grid point the natural-gradient step lands on the "
            "minimum…",
        ),
        Measurement(
            "median angle(−EF⁻¹g, θ* − θ)",
            float(finite["ef"].median()),
            low=10.0,
            meaning="…while the empirical-Fisher arrows are bent away from it "
            "(degrees).",
        ),
    )
    notes = (
        f"Gradient arrows: median angle {float(finite['gradient'].median()):.1f}° "
        "to the minimum.",
    )
    out = {}
    if figures:
        runs = run_experiment(setup.experiment)
        grid = loss_grid(prob, resolution=setup["grid"])
        out["vector fields"] = contour_figure(
            grid,
            runs,
            field=field,
            field_keys=("fisher", "ef"),
            title="Preconditioned directions: natural gradient (green) vs "
            "empirical Fisher (orange)",
        )
    return Evidence(measurements, out, notes)


# ------------------------------------------------------------------- figure 2
def ef_specification(setup: Setup, figures: bool) -> Evidence:
    """At the optimum EF ≈ F for well-specified models only."""
    errors: dict[str, tuple[float, bool]] = {}
    grads: list[float] = []
    out = {}
    for name, (key, options, well) in setup["cases"].items():
        prob = problem(key, **options)
        theta = _optimum(prob, key, options)
        grads.append(float(prob.grad(theta).norm()))
        f = curvature("fisher", prob, theta).dense()
        ef = curvature("ef", prob, theta).dense()
        errors[name] = (relative_error(ef, f), well)
        if figures:
            models = quadratic_models(prob, theta, ("fisher", "ef"))
            smallest = float(torch.linalg.eigvalsh(f.double())[0])
            (x0, x1), _ = prob.view_box
            level = 0.5 * smallest * ((x1 - x0) / 5) ** 2
            field = direction_field(
                prob, ("fisher", "ef"), resolution=setup["field_resolution"]
            )
            figure = contour_figure(
                loss_grid(prob, resolution=setup["grid"]),
                field=field,
                field_keys=("fisher", "ef"),
            )
            for trace in optimum_model_traces(models, level):
                figure.add_trace(trace)
            figure.update_layout(
                title=f"{name}: ‖EF − F‖_F / ‖F‖_F = {errors[name][0]:.3g} at θ*"
            )
            out[name] = figure
    well = [e for e, w in errors.values() if w]
    mis = [e for e, w in errors.values() if not w]
    measurements = (
        Measurement(
            "max ‖∇h(θ*)‖",
            max(grads),
            high=1e-8,
            meaning="The comparison is at the optimum of each problem…",
        ),
        Measurement(
            "max ‖EF − F‖_F / ‖F‖_F, well-specified",
            max(well),
            high=0.2,
            meaning="…where EF ≈ F when the model is well specified (sampling "
            "error only)…",
        ),
        Measurement(
            "min ‖EF − F‖_F / ‖F‖_F, misspecified",
            min(mis),
            low=0.4,
            meaning="…but not when it is misspecified.",
        ),
    )
    return Evidence(measurements, out)


# ------------------------------------------------------------------- figure 3
def _suboptimality(history, best: float) -> np.ndarray:
    losses = history.to_frame()["loss"].to_numpy(float)
    if history.status not in ("ok",):
        losses = np.concatenate([losses, [math.inf]])
    return losses - best


def tuned_comparison(setup: Setup, figures: bool) -> Evidence:
    """Best-of-grid GD, natural gradient and EF descent on Kunstner's figure 1 data."""
    base = setup.experiment
    prob = problem(base.problem, **base.problem_options)
    best_loss = float(prob.objective(least_squares(prob)))
    initial = float(prob.objective(prob.theta0)) - best_loss
    entries, grid_of = [], {}
    for lr in setup["gd_lrs"]:
        entries.append(RuleChoice("sgd", {"lr": lr}, f"sgd lr={lr:g}"))
        grid_of[entries[-1].label] = ("sgd", lr, None)
    for rule in ("natural_gradient", "ef_natural_gradient"):
        for lr in setup["lrs"]:
            for damping in setup["dampings"]:
                label = f"{rule} lr={lr:g} λ={damping:g}"
                entries.append(RuleChoice(rule, fixed(lr, damping), label))
                grid_of[label] = (rule, lr, damping)
    runs = run_experiment(replace(base, rules=tuple(entries)))
    final = {
        label: float(_suboptimality(h, best_loss)[-1]) for label, h in runs.items()
    }
    best: dict[str, str] = {}
    for label, value in final.items():
        rule = grid_of[label][0]
        if rule not in best or value < final[best[rule]]:
            best[rule] = label
    score = {rule: max(final[label], 0.0) for rule, label in best.items()}
    measurements = (
        Measurement(
            "best natural gradient: (h − h*) / (h₀ − h*)",
            score["natural_gradient"] / initial,
            high=1e-10,
            meaning="Tuned natural gradient solves the problem (F is the Hessian here).",
        ),
        Measurement(
            "best empirical Fisher / best gradient descent (h − h*)",
            score["ef_natural_gradient"] / max(score["sgd"], 1e-300),
            low=1.0,
            meaning="Tuned EF preconditioning does no better than tuned gradient "
            "descent.",
        ),
    )
    chosen = tuple(
        RuleChoice(
            grid_of[label][0],
            entry.options,
            f"{TUNED_RULES[grid_of[label][0]]} (best)",
        )
        for label in best.values()
        for entry in entries
        if entry.label == label
    )
    experiment = replace(base, rules=chosen)
    out = {}
    if figures:
        floor = 1e-16 * initial  # rounding: exact zeros are drawn here
        curves = []
        for rule, label in best.items():
            values = _suboptimality(runs[label], best_loss)
            values = np.maximum(values[np.isfinite(values)], floor)
            curves.append(
                Curve(
                    f"{TUNED_RULES[rule]} ({label.split(' ', 1)[1]})",
                    np.arange(len(values)),
                    values,
                    rule_color(rule),
                )
            )
        out["best-of-grid curves"] = curves_figure(
            curves,
            title="Each method with its best (lr, λ) from the grid "
            "(10⁻¹⁶ × start: solved to rounding)",
            x_title="iteration",
            y_title="h(θ) − h(θ*)",
            log_y=True,
        )
        grids = {}
        for rule in ("natural_gradient", "ef_natural_gradient"):
            values = np.array(
                [
                    [final[f"{rule} lr={lr:g} λ={d:g}"] for lr in setup["lrs"]]
                    for d in setup["dampings"]
                ]
            )
            grids[TUNED_RULES[rule]] = values
        out["lr × damping grid"] = grid_heatmaps(
            grids,
            setup["lrs"],
            setup["dampings"],
            title="Final h − h* over the grid (darkest: solved; brightest: no "
            "progress or worse; blank: diverged)",
            x_title="lr",
            y_title="damping λ",
            quantity="h − h*",
            floor=floor,
            ceiling=initial,
        )
    return Evidence(measurements, out, experiments={"best of grid": experiment})


# ------------------------------------------------------- the 1-D stall example
def ef_stall(setup: Setup, figures: bool) -> Evidence:
    """One weight, far from θ*: EF steps have size ≈ (m₂/m₄)/distance and stall."""
    prob = one_weight_regression(
        setup["num_samples"], 1.0, 1.0 + setup["distance"], seed=0
    )
    x, y = prob.inputs[:, 0], prob.targets[:, 0]
    target = float((x * y).sum() / (x * x).sum())
    m2, m4 = float(x.pow(2).mean()), float(x.pow(4).mean())
    runs = {}
    for label, rule, options in setup["rules"]:
        config = RunConfig(
            "linreg_2d", rule=rule, rule_options=options, steps=setup["steps"]
        )
        runs[label] = run_on(prob, config)
    distances = {
        label: (run.trajectory[:, 0] - target).abs().numpy()
        for label, run in runs.items()
    }
    ef = distances["empirical Fisher"]
    first_step = float(ef[0] - ef[1])
    measurements = (
        Measurement(
            "EF: distance after all steps / start",
            float(ef[-1] / ef[0]),
            low=0.8,
            meaning="Empirical-Fisher steps stall far from the optimum…",
        ),
        Measurement(
            "EF step × distance / (m₂/m₄)",
            first_step * float(ef[0]) / (m2 / m4),
            low=0.9,
            high=1.1,
            meaning="…because EF ≈ m₄·d² there, so the step is about m₂/(m₄·d).",
        ),
        Measurement(
            "natural gradient: distance after one step / start",
            float(distances["natural gradient"][1] / ef[0]),
            high=1e-10,
            meaning="The natural-gradient step lands on θ* at once.",
        ),
    )
    out = {}
    if figures:
        colors = {
            "gradient descent": rule_color("sgd"),
            "natural gradient": curvature_color("fisher"),
            "empirical Fisher": curvature_color("ef"),
        }
        out["distance to θ*"] = curves_figure(
            [
                Curve(label, np.arange(len(d)), np.maximum(d, 1e-17), colors[label])
                for label, d in distances.items()
            ],
            title="|θ_t − θ*| from a start far from the optimum",
            x_title="iteration",
            y_title="|θ − θ*|",
            log_y=True,
        )
        span = np.geomspace(1e-2, 10 * setup["distance"], 40)
        lengths = []
        for d in span:
            theta = torch.tensor([target + d], dtype=prob.dtype)
            step = curvature("ef", prob, theta).solve(prob.grad(theta), 0.0)
            lengths.append(abs(float(step[0])))
        out["EF step against distance"] = curves_figure(
            [
                Curve(
                    "EF step |EF⁻¹g|",
                    span,
                    lengths,
                    colors["empirical Fisher"],
                    markers=False,
                ),
                Curve(
                    "natural-gradient step |F⁻¹g| = distance",
                    span,
                    span,
                    colors["natural gradient"],
                    markers=False,
                ),
                Curve(
                    "m₂ / (m₄ · distance)",
                    span,
                    (m2 / m4) / span,
                    dash="dash",
                    markers=False,
                ),
            ],
            title="Step length at each distance from θ*: the EF step shrinks like "
            "1/distance far away",
            x_title="distance |θ − θ*|",
            y_title="step length",
            log_x=True,
            log_y=True,
        )
    return Evidence(measurements, out)


# ------------------------------------------------------------ MC Fisher → F
def mc_fisher(setup: Setup, figures: bool) -> Evidence:
    """‖F̂_k − F‖_F / ‖F‖_F shrinks like 1/√k with k sampled targets per example."""
    prob = problem(setup.problem, **setup.problem_options)
    exact = curvature("fisher", prob, prob.theta0).dense()
    samples = list(setup["samples"])
    errors = np.zeros((len(samples), len(setup["seeds"])))
    for i, k in enumerate(samples):
        for j, seed in enumerate(setup["seeds"]):
            generator = torch.Generator().manual_seed(seed)
            estimate = curvature(
                "fisher_mc", prob, prob.theta0, generator=generator, samples=k
            ).dense()
            errors[i, j] = relative_error(estimate, exact)
    mean = errors.mean(1)
    slope = log_slope(samples, mean)
    measurements = (
        Measurement(
            "slope of log error against log k",
            slope,
            low=-0.65,
            high=-0.35,
            meaning="The Monte Carlo Fisher's error falls like 1/√k (slope −½).",
        ),
        Measurement(
            f"error at k = {samples[-1]}",
            float(mean[-1]),
            high=0.1,
            meaning="With enough samples it is close to the exact Fisher.",
        ),
    )
    out = {}
    if figures:
        reference = mean[0] * np.sqrt(samples[0] / np.asarray(samples, float))
        out["error against samples"] = curves_figure(
            [
                Curve(
                    "‖F̂ − F‖_F / ‖F‖_F (mean, min–max over seeds)",
                    samples,
                    mean,
                    curvature_color("fisher_mc"),
                    band=(errors.min(1), errors.max(1)),
                ),
                Curve("∝ 1/√k", samples, reference, dash="dash", markers=False),
            ],
            title="The Monte Carlo Fisher converges to F",
            x_title="sampled targets per example k",
            y_title="relative Frobenius error",
            log_x=True,
            log_y=True,
        )
    return Evidence(measurements, out)
