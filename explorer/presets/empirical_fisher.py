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

from explorer import plots
from explorer.curvature import curvature
from explorer.landscape import direction_field, loss_grid, quadratic_models
from explorer.presets.base import Measured, Measurement, Setup, Study
from explorer.presets.helpers import (
    final_theta,
    log_slope,
    one_weight_regression,
    problem_on_cpu,
    relative_error,
    run_config,
    run_experiment,
)
from explorer.problems.base import Problem
from explorer.runs import RuleChoice, RunConfig, RunSettings, run_on
from explorer.sweeps import SweepConfig, sweep

Figures = dict[str, plots.Figure]

#: The problems of figure 2: name -> (problem, its data, whether the model is well
#: specified for that data).
SPECIFICATION = {
    "linear regression, well-specified": ("linreg_2d", "well_specified", True),
    "linear regression, misspecified": ("linreg_2d", "misspecified_model", False),
    "logistic regression, well-specified": ("logreg_2d", "well_specified", True),
    "logistic regression, misspecified": ("logreg_2d", "misspecified", False),
}

#: The studies of this module, one per preset: the figures each one draws.
EF_FIELD = Study("vector fields")
EF_SPECIFICATION = Study(*SPECIFICATION)
TUNED_COMPARISON = Study("best-of-grid curves", "lr × damping grid")
EF_STALL = Study("distance to θ*", "EF step against distance")
MC_FISHER = Study("error against samples")

#: The rules of the tuned comparison and their names in figures.
TUNED_RULES = {
    "sgd": "gradient descent",
    "natural_gradient": "natural gradient",
    "ef_natural_gradient": "empirical Fisher",
}

#: The preconditioners the fields and models compare.
COMPARED = ("fisher", "ef")


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
@EF_FIELD.measures
def measure_ef_field(setup: Setup) -> Measured:
    """The natural-gradient field points at θ* from everywhere; EF's does not.

    Data: the loss ``grid``, the direction ``field`` and the experiment's ``runs``.
    """
    prob = setup.build_problem()
    target = least_squares(prob)
    field = direction_field(
        prob, COMPARED, damping=setup["damping"], resolution=setup["resolution"]
    )
    angles = {key: field.angle_to(key, target) for key in ("gradient", *COMPARED)}
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
    data = {
        "grid": loss_grid(prob, resolution=setup["grid"]),
        "runs": run_experiment(setup.experiment),
        "field": field,
    }
    return Measured(measurements, data, notes)


@EF_FIELD.draws
def draw_ef_field(setup: Setup, measured: Measured) -> Figures:
    return {
        "vector fields": plots.contour_figure(
            measured["grid"],
            measured["runs"],
            field=measured["field"],
            field_keys=COMPARED,
            title="Preconditioned directions: natural gradient (green) vs "
            "empirical Fisher (orange)",
        )
    }


# ------------------------------------------------------------------- figure 2
def specification_cases(samples: int) -> dict[str, tuple[str, dict, bool]]:
    """:data:`SPECIFICATION` with ``samples`` examples: name -> (problem, options,
    well specified), the ``cases`` parameter of the figure-2 preset.
    """
    return {
        name: (key, {"data": data, "num_samples": samples}, well)
        for name, (key, data, well) in SPECIFICATION.items()
    }


@EF_SPECIFICATION.measures
def measure_ef_specification(setup: Setup) -> Measured:
    """At the optimum EF ≈ F for well-specified models only.

    Data: ``cases``, name -> the case's ``grid``, ``field``, quadratic ``models`` at
    θ*, the level ``rise`` their ellipses are drawn at and the ``error`` of EF.
    """
    errors: dict[str, tuple[float, bool]] = {}
    grads: list[float] = []
    shown = {}
    for name, (key, options, well) in setup["cases"].items():
        prob = problem_on_cpu(key, options)
        theta = _optimum(prob, key, options)
        grads.append(float(prob.grad(theta).norm()))
        f = curvature("fisher", prob, theta).dense()
        ef = curvature("ef", prob, theta).dense()
        errors[name] = (relative_error(ef, f), well)
        smallest = float(torch.linalg.eigvalsh(f.double())[0])
        (x0, x1), _ = prob.view_box
        shown[name] = {
            "grid": loss_grid(prob, resolution=setup["grid"]),
            "field": direction_field(
                prob, COMPARED, resolution=setup["field_resolution"]
            ),
            "models": quadratic_models(prob, theta, COMPARED),
            "rise": 0.5 * smallest * ((x1 - x0) / 5) ** 2,
            "error": errors[name][0],
        }
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
            "max ‖EF − F‖ / ‖F‖ (Frobenius), well-specified",
            max(well),
            high=0.2,
            meaning="…where EF ≈ F when the model is well specified (sampling "
            "error only)…",
        ),
        Measurement(
            "min ‖EF − F‖ / ‖F‖ (Frobenius), misspecified",
            min(mis),
            low=0.4,
            meaning="…but not when it is misspecified.",
        ),
    )
    return Measured(measurements, {"cases": shown})


@EF_SPECIFICATION.draws
def draw_ef_specification(setup: Setup, measured: Measured) -> Figures:
    return {
        name: plots.contour_figure(
            case["grid"],
            field=case["field"],
            field_keys=COMPARED,
            models=case["models"],
            model_rise=case["rise"],
            title=(
                f"{name}: ‖EF − F‖<sub>F</sub> / ‖F‖<sub>F</sub> = "
                f"{case['error']:.3g} at θ*"
            ),
        )
        for name, case in measured["cases"].items()
    }


# ------------------------------------------------------------------- figure 3
def _suboptimality(losses, status: str, best: float) -> np.ndarray:
    """The suboptimality h − h* per step; a run not ending ``ok`` ends at +∞."""
    losses = np.asarray(losses, float)
    if status not in ("ok",):
        losses = np.concatenate([losses, [math.inf]])
    return losses - best


def _grid_label(rule: str, lr: float, damping: float) -> str:
    return f"{rule} lr={lr:g} λ={damping:g}"


def tuned_sweep(setup: Setup) -> SweepConfig:
    """The preset's grid as a sweep: gradient descent over ``gd_lrs``, natural
    gradient and EF over ``lrs`` × ``dampings`` with λ fixed (the Sweep page's
    default optimizers, and ``python -m explorer sweep`` from its TOML).
    """
    base = setup.experiment
    run_options = dict(base.run_options)
    steps = run_options.pop("steps", base.settings.steps)
    seed = run_options.pop("seed", base.settings.seed)
    grid = {
        "lr": list(setup["lrs"]),
        "damping": list(setup["dampings"]),
        "damping_adaptation": ["fixed"],
    }
    return SweepConfig(
        base.problem,
        {
            "sgd": {"lr": list(setup["gd_lrs"])},
            "natural_gradient": grid,
            "ef_natural_gradient": grid,
        },
        seeds=(seed,),
        steps=steps,
        problem_options=dict(base.problem_options),
        settings=run_options,
    )


@TUNED_COMPARISON.measures
def measure_tuned_comparison(setup: Setup) -> Measured:
    """Best-of-grid GD, natural gradient and EF descent on Kunstner's figure 1 data,
    run as a sweep (:func:`tuned_sweep`; a run whose loss passes 100 × its initial
    value stops early as diverged, as in Kunstner et al.).

    Data: the best run's ``curves`` of each method (h − h*, clipped at ``floor``), the
    final h − h* over the (lr, λ) ``grids`` and the ``initial`` h₀ − h*; the best
    runs replace the preset's experiment.
    """
    base = setup.experiment
    prob = problem_on_cpu(base.problem, base.problem_options)
    best_loss = float(prob.objective(least_squares(prob)))
    initial = float(prob.objective(prob.theta0)) - best_loss
    final, values_of, rule_of, options_of = {}, {}, {}, {}
    for row in sweep(tuned_sweep(setup)).rows:
        rule, options = row["rule"], row["options"]
        label = (
            f"sgd lr={options['lr']:g}"
            if rule == "sgd"
            else _grid_label(rule, options["lr"], options["damping"])
        )
        values_of[label] = _suboptimality(row["curve"], row["status"], best_loss)
        final[label] = float(values_of[label][-1])
        rule_of[label], options_of[label] = rule, options
    best: dict[str, str] = {}
    for label, value in final.items():
        rule = rule_of[label]
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
        RuleChoice(rule, dict(options_of[label]), f"{TUNED_RULES[rule]} (best)")
        for rule, label in best.items()
    )
    grids = {
        TUNED_RULES[rule]: np.array(
            [
                [final[_grid_label(rule, lr, d)] for lr in setup["lrs"]]
                for d in setup["dampings"]
            ]
        )
        for rule in ("natural_gradient", "ef_natural_gradient")
    }
    floor = 1e-16 * initial  # rounding: exact zeros are drawn here
    curves = {}
    for rule, label in best.items():
        values = values_of[label]
        name = f"{TUNED_RULES[rule]} ({label.split(' ', 1)[1]})"
        curves[rule] = (name, np.maximum(values[np.isfinite(values)], floor))
    data = {"curves": curves, "grids": grids, "floor": floor, "initial": initial}
    experiments = {"best of grid": replace(base, rules=chosen)}
    return Measured(measurements, data, experiments=experiments)


@TUNED_COMPARISON.draws
def draw_tuned_comparison(setup: Setup, measured: Measured) -> Figures:
    curves = [
        plots.Curve(name, np.arange(len(values)), values, plots.rule_color(rule))
        for rule, (name, values) in measured["curves"].items()
    ]
    return {
        "best-of-grid curves": plots.curves_figure(
            curves,
            title="Each method with its best (lr, λ) from the grid "
            "(10⁻¹⁶ × start: solved to rounding)",
            x_title="iteration",
            y_title="h(θ) − h(θ*)",
            log="y",
        ),
        "lr × damping grid": plots.grid_heatmaps(
            measured["grids"],
            setup["lrs"],
            setup["dampings"],
            title="Final h − h* over the grid (darkest: solved; brightest: no "
            "progress or worse; blank: diverged)",
            x_title="lr",
            y_title="damping λ",
            quantity="h − h*",
            floor=measured["floor"],
            ceiling=measured["initial"],
        ),
    }


# ------------------------------------------------------- the 1-D stall example
@EF_STALL.measures
def measure_ef_stall(setup: Setup) -> Measured:
    """One weight, far from θ*: EF steps have size ≈ (m₂/m₄)/distance and stall.

    Data: each run's ``distances`` to θ*, the EF step ``lengths`` at each distance of
    ``span`` and the ``bound`` m₂/(m₄·distance).
    """
    prob = one_weight_regression(
        setup["num_samples"], 1.0, 1.0 + setup["distance"], seed=0
    )
    x, y = prob.inputs[:, 0], prob.targets[:, 0]
    target = float((x * y).sum() / (x * x).sum())
    m2, m4 = float(x.pow(2).mean()), float(x.pow(4).mean())
    settings = RunSettings(steps=setup["steps"], device="cpu")
    runs = {
        label: run_on(prob, rule, options, settings, label=label)
        for label, rule, options in setup["rules"]
    }
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
    span = np.geomspace(1e-2, 10 * setup["distance"], 40)
    lengths = []
    for d in span:
        theta = torch.tensor([target + d], dtype=prob.dtype)
        step = curvature("ef", prob, theta).solve(prob.grad(theta), 0.0)
        lengths.append(abs(float(step[0])))
    data = {
        "distances": {label: np.maximum(d, 1e-17) for label, d in distances.items()},
        "span": span,
        "lengths": lengths,
        "bound": (m2 / m4) / span,
    }
    return Measured(measurements, data)


@EF_STALL.draws
def draw_ef_stall(setup: Setup, measured: Measured) -> Figures:
    colors = {
        "gradient descent": plots.rule_color("sgd"),
        "natural gradient": plots.curvature_color("fisher"),
        "empirical Fisher": plots.curvature_color("ef"),
    }
    span = measured["span"]
    return {
        "distance to θ*": plots.curves_figure(
            [
                plots.Curve(label, np.arange(len(d)), d, colors[label])
                for label, d in measured["distances"].items()
            ],
            title="|θ<sub>t</sub> − θ*| from a start far from the optimum",
            x_title="iteration",
            y_title="|θ − θ*|",
            log="y",
        ),
        "EF step against distance": plots.curves_figure(
            [
                plots.reference_curve(
                    "EF step |EF⁻¹g|",
                    span,
                    measured["lengths"],
                    colors["empirical Fisher"],
                    "solid",
                ),
                plots.reference_curve(
                    "natural-gradient step |F⁻¹g| = distance",
                    span,
                    span,
                    colors["natural gradient"],
                    "solid",
                ),
                plots.reference_curve("m₂ / (m₄ · distance)", span, measured["bound"]),
            ],
            title="Step length at each distance from θ*: the EF step shrinks like "
            "1/distance far away",
            x_title="distance |θ − θ*|",
            y_title="step length",
            log="xy",
        ),
    }


# ------------------------------------------------------------ MC Fisher → F
@MC_FISHER.measures
def measure_mc_fisher(setup: Setup) -> Measured:
    """‖F̂_k − F‖_F / ‖F‖_F shrinks like 1/√k with k sampled targets per example.

    Data: the sample counts ``samples``, the ``mean`` error over the seeds with its
    min–max ``band``, and the 1/√k ``rate`` through the first point.
    """
    prob = setup.build_problem()
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
    rate = mean[0] * np.sqrt(samples[0] / np.asarray(samples, float))
    band = (errors.min(1), errors.max(1))
    data = {"samples": samples, "mean": mean, "band": band, "rate": rate}
    return Measured(measurements, data)


@MC_FISHER.draws
def draw_mc_fisher(setup: Setup, measured: Measured) -> Figures:
    samples = measured["samples"]
    return {
        "error against samples": plots.curves_figure(
            [
                plots.Curve(
                    "‖F̂ − F‖<sub>F</sub> / ‖F‖<sub>F</sub> (mean, min–max over seeds)",
                    samples,
                    measured["mean"],
                    plots.curvature_color("fisher_mc"),
                    band=measured["band"],
                ),
                plots.reference_curve("∝ 1/√k", samples, measured["rate"]),
            ],
            title="The Monte Carlo Fisher converges to F",
            x_title="sampled targets per example k",
            y_title="relative Frobenius error",
            log="xy",
        )
    }
