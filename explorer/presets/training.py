"""Checks about optimizer runs: C5 (damping) and C6 (Fisher efficiency)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from explorer.curvature import curvature
from explorer.plots import hyperparameter_figure, loss_figure
from explorer.plots.theme import rule_color
from explorer.presets.base import Evidence, Measurement, Setup
from explorer.presets.figures import REFERENCE_COLOR, Curve, curves_figure
from explorer.presets.helpers import fixed, log_slope, run_experiment
from explorer.problems.spec import problem
from explorer.spectra import eigenvalues
from explorer.ui.urlstate import Experiment, RuleChoice


def _losses(history) -> np.ndarray:
    return history.to_frame()["loss"].to_numpy(float)


# ------------------------------------------------------------------------- C5
def levenberg_marquardt(setup: Setup, figures: bool) -> Evidence:
    """Undamped steps blow up, heavily damped ones stall, LM-adapted λ recovers."""
    runs = run_experiment(setup.experiment)
    losses = {label: _losses(history) for label, history in runs.items()}
    first = next(iter(losses.values()))[0]
    undamped, stiff, adaptive = losses.values()  # the experiment's order
    measurements = (
        Measurement(
            "undamped (λ ≈ 0): max loss / initial",
            float(np.nanmax(undamped) / first),
            low=10.0,
            meaning="Steps to the minimum of an untrusted quadratic model blow up…",
        ),
        Measurement(
            "large fixed λ: final / initial loss",
            float(stiff[-1] / first),
            low=0.5,
            meaning="…too much damping stalls…",
        ),
        Measurement(
            "Levenberg–Marquardt: final / initial loss",
            float(adaptive[-1] / first),
            high=0.2,
            meaning="…adapting λ from the reduction ratio ρ recovers.",
        ),
    )
    out = {}
    if figures:
        out["loss"] = loss_figure(
            runs, metrics=("loss",), title="Gauss-Newton with three damping choices"
        )
        out["ρ, λ and α"] = hyperparameter_figure(
            runs, title="ρ outside [¼, ¾] makes LM change λ"
        )
    return Evidence(measurements, out)


def large_damping(setup: Setup, figures: bool) -> Evidence:
    """λ → ∞ with lr = λ·η: the natural-gradient step becomes η·g (gradient descent).

    (F + λI)⁻¹ λ = I − F/λ + O(λ⁻²), so the paths differ by O(‖F‖/λ).
    """
    base = setup.experiment
    eta = base.rules[0].options["lr"]
    dampings = list(setup["dampings"])
    differences, shown = [], None
    for damping in dampings:
        rules = (
            base.rules[0],
            RuleChoice(
                "natural_gradient",
                fixed(eta * damping, damping),
                "natural gradient, lr = λη",
            ),
        )
        runs = run_experiment(replace(base, rules=rules))
        gd, ng = (run.trajectory for run in runs.values())
        moved = float((gd - gd[0]).norm(dim=1).max())
        differences.append(float((gd - ng).norm(dim=1).max()) / moved)
        shown = runs
    prob = problem(base.problem, **base.problem_options)
    norm = float(eigenvalues(curvature("fisher", prob, prob.theta0).dense())[-1])
    measurements = (
        Measurement(
            "slope of log difference against log λ",
            log_slope(dampings, differences),
            low=-1.2,
            high=-0.8,
            meaning="The natural-gradient path approaches gradient descent's like 1/λ…",
        ),
        Measurement(
            f"relative path difference / (‖F(θ₀)‖₂ / λ) at λ = {dampings[-1]:g}",
            differences[-1] / (norm / dampings[-1]),
            high=1.0,
            meaning="…within the first-order bound ‖F‖/λ.",
        ),
    )
    out = {}
    if figures:
        out["loss at the largest λ"] = loss_figure(
            shown,
            metrics=("loss",),
            title=f"Gradient descent and natural gradient with λ = {dampings[-1]:g}",
        )
        out["difference against λ"] = curves_figure(
            [
                Curve(
                    "max_t ‖θ_NG − θ_GD‖ / max_t ‖θ_GD − θ₀‖",
                    dampings,
                    differences,
                    rule_color("natural_gradient"),
                ),
                Curve(
                    "‖F(θ₀)‖₂ / λ",
                    dampings,
                    norm / np.asarray(dampings),
                    REFERENCE_COLOR,
                    dash="dash",
                    markers=False,
                ),
            ],
            title="λ → ∞: natural gradient with lr = λη is gradient descent with lr η",
            x_title="damping λ",
            y_title="relative difference of the paths",
            log_x=True,
            log_y=True,
        )
    return Evidence(measurements, out)


# ------------------------------------------------------------------------- C6
def _seeded(experiment: Experiment, seed: int) -> Experiment:
    return replace(
        experiment, run_options={**dict(experiment.run_options), "seed": seed}
    )


def fisher_efficiency(setup: Setup, figures: bool) -> Evidence:
    """Averaged SGD and averaged natural gradient reach excess loss ≈ P/(2k)."""
    experiment = setup.experiment
    batch = int(experiment.run_options["batch_size"])
    params = int(experiment.problem_options["dim"])
    averaged: dict[str, list[np.ndarray]] = {}
    last: list[np.ndarray] = []
    for seed in setup["seeds"]:
        for label, history in run_experiment(_seeded(experiment, seed)).items():
            frame = history.to_frame()
            best = frame["loss"] - frame["excess_loss"]
            averaged.setdefault(label, []).append(
                (frame["averaged_loss"] - best).to_numpy(float)
            )
            if history.rule == "sgd":
                last.append(frame["excess_loss"].to_numpy(float))
            samples = frame["step"].to_numpy(float) * batch
    keep = samples > 0
    k = samples[keep]
    bound = params / (2 * k)
    ratios = {
        label: np.mean(values, 0)[keep][-1] / bound[-1]
        for label, values in averaged.items()
    }
    sgd_label, ng_label = list(averaged)
    plain = float(np.mean(last, 0)[keep][-1] / bound[-1])
    measurements = (
        Measurement(
            f"{sgd_label}: k·excess / (P/2) at k = {int(k[-1])}",
            float(ratios[sgd_label]),
            low=0.4,
            high=2.5,
            meaning="Averaged constant-step SGD reaches the Fisher-efficient P/(2k)…",
        ),
        Measurement(
            f"{ng_label}: k·excess / (P/2)",
            float(ratios[ng_label]),
            low=0.4,
            high=2.5,
            meaning="…and so does natural gradient…",
        ),
        Measurement(
            "last SGD iterate (no averaging): k·excess / (P/2)",
            plain,
            low=3.0,
            meaning="…while the constant-step iterate itself stays above it.",
        ),
    )
    out = {}
    if figures:
        curves = []
        for label, values in averaged.items():
            rows = np.asarray(values)[:, keep]
            rule = "sgd" if label == sgd_label else "natural_gradient"
            curves.append(
                Curve(
                    f"{label} (mean, min–max over {len(values)} seeds)",
                    k,
                    rows.mean(0),
                    rule_color(rule),
                    band=(rows.min(0), rows.max(0)),
                )
            )
        curves.append(
            Curve(
                "last SGD iterate (mean)",
                k,
                np.mean(last, 0)[keep],
                rule_color("sgd"),
                dash="dot",
            )
        )
        curves.append(
            Curve("P / (2k)", k, bound, REFERENCE_COLOR, dash="dash", markers=False)
        )
        out["excess loss against samples"] = curves_figure(
            curves,
            title=f"Excess loss h(θ̄) − h(θ*), P = {params}, batches of {batch}",
            x_title="samples seen k",
            y_title="excess loss",
            log_x=True,
            log_y=True,
        )
    notes = (
        f"k counts the labelled samples behind the gradients ({batch} per step); "
        "natural gradient's Fisher uses extra inputs with targets sampled from the "
        "model, which carry no information about θ*.",
    )
    return Evidence(measurements, out, notes)


def small_budget(setup: Setup, figures: bool) -> Evidence:
    """In a few large-batch iterations natural gradient is far ahead of tuned SGD."""
    base = setup.experiment
    excess: dict[str, list[np.ndarray]] = {}
    for seed in setup["seeds"]:
        for label, history in run_experiment(_seeded(base, seed)).items():
            values = history.to_frame()["excess_loss"].to_numpy(float)
            excess.setdefault(label, []).append(values)
    mean = {label: np.mean(values, 0) for label, values in excess.items()}
    rules = {choice.display_name(): choice.rule for choice in base.rules}
    sgd = {label: v for label, v in mean.items() if rules[label] == "sgd"}
    best = min(sgd, key=lambda label: sgd[label][-1])
    second = [label for label in mean if rules[label] != "sgd"]
    ng = min(second, key=lambda label: mean[label][-1])
    steps = len(mean[ng]) - 1
    measurements = (
        Measurement(
            f"best SGD / {ng} excess loss after {steps} iterations",
            float(sgd[best][-1] / mean[ng][-1]),
            low=3.0,
            meaning="With few iterations the second-order method is far ahead of "
            "SGD even with its best learning rate.",
        ),
    )
    out = {}
    if figures:
        out["excess loss per iteration"] = curves_figure(
            [
                Curve(
                    label + (" (best lr)" if label == best else ""),
                    np.arange(len(values)),
                    values,
                    rule_color(rules[label]),
                    dash="solid" if label in (best, ng) else "dot",
                )
                for label, values in mean.items()
            ],
            title=f"Mean excess loss over {len(setup['seeds'])} seeds",
            x_title="iteration",
            y_title="excess loss h(θ) − h(θ*)",
            log_y=True,
        )
    return Evidence(measurements, out)
