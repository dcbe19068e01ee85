"""Checks about optimizer runs: C5 (damping) and C6 (Fisher efficiency)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from explorer import plots
from explorer.curvature import curvature
from explorer.presets.base import Measured, Measurement, Setup, Study
from explorer.presets.helpers import fixed, log_slope, problem_on_cpu, run_experiment
from explorer.runs import Experiment, History, RuleChoice
from explorer.spectra import eigenvalues

Figures = dict[str, plots.Figure]

#: The studies of this module, one per preset: the figures each one draws.
LEVENBERG_MARQUARDT = Study("loss", "ρ, λ and α")
LARGE_DAMPING = Study("loss at the largest λ", "difference against λ")
FISHER_EFFICIENCY = Study("excess loss against samples")
SMALL_BUDGET = Study("excess loss per iteration")


def _column(history: History, name: str) -> np.ndarray:
    return history.to_frame()[name].to_numpy(float)


# ------------------------------------------------------------------------- C5
@LEVENBERG_MARQUARDT.measures
def measure_levenberg_marquardt(setup: Setup) -> Measured:
    """Undamped steps blow up, heavily damped ones stall, LM-adapted λ recovers.

    Data: the three ``runs``.
    """
    runs = run_experiment(setup.experiment)
    losses = {label: _column(history, "loss") for label, history in runs.items()}
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
    return Measured(measurements, {"runs": runs})


@LEVENBERG_MARQUARDT.draws
def draw_levenberg_marquardt(setup: Setup, measured: Measured) -> Figures:
    runs = measured["runs"]
    return {
        "loss": plots.loss_figure(
            runs, metrics=("loss",), title="Gauss-Newton with three damping choices"
        ),
        "ρ, λ and α": plots.hyperparameter_figure(
            runs, title="ρ outside [¼, ¾] makes LM change λ"
        ),
    }


@LARGE_DAMPING.measures
def measure_large_damping(setup: Setup) -> Measured:
    """λ → ∞ with lr = λ·η: the natural-gradient step becomes η·g (gradient descent).

    (F + λI)⁻¹ λ = I − F/λ + O(λ⁻²), so the paths differ by O(‖F‖/λ).

    Data: the ``runs`` at the largest λ, the path ``differences`` over the
    ``dampings`` and the first-order ``bound`` ‖F(θ₀)‖₂/λ.
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
    prob = problem_on_cpu(base.problem, base.problem_options)
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
    data = {
        "runs": shown,
        "dampings": dampings,
        "differences": differences,
        "bound": norm / np.asarray(dampings),
    }
    return Measured(measurements, data)


@LARGE_DAMPING.draws
def draw_large_damping(setup: Setup, measured: Measured) -> Figures:
    dampings, differences = measured["dampings"], measured["differences"]
    return {
        "loss at the largest λ": plots.loss_figure(
            measured["runs"],
            metrics=("loss",),
            title=f"Gradient descent and natural gradient with λ = {dampings[-1]:g}",
        ),
        "difference against λ": plots.curves_figure(
            [
                plots.Curve(
                    "max<sub>t</sub> ‖θ<sub>NG</sub> − θ<sub>GD</sub>‖"
                    " / max<sub>t</sub> ‖θ<sub>GD</sub> − θ₀‖",
                    dampings,
                    differences,
                    plots.rule_color("natural_gradient"),
                ),
                plots.reference_curve("‖F(θ₀)‖₂ / λ", dampings, measured["bound"]),
            ],
            title="λ → ∞: natural gradient with lr = λη is gradient descent with lr η",
            x_title="damping λ",
            y_title="relative difference of the paths",
            log="xy",
        ),
    }


# ------------------------------------------------------------------------- C6
def _over_seeds(experiment: Experiment, seeds) -> dict[str, list[History]]:
    """``{label: [History per seed]}``: the experiment run once per seed."""
    runs: dict[str, list[History]] = {}
    for seed in seeds:
        seeded = replace(
            experiment, run_options={**dict(experiment.run_options), "seed": seed}
        )
        for label, history in run_experiment(seeded).items():
            runs.setdefault(label, []).append(history)
    return runs


@FISHER_EFFICIENCY.measures
def measure_fisher_efficiency(setup: Setup) -> Measured:
    """Averaged SGD and averaged natural gradient reach excess loss ≈ P/(2k).

    Data: the samples seen ``k``, each rule's ``averaged`` excess loss (rule, mean,
    min–max band over seeds), the ``last`` SGD iterate's, the ``bound`` P/(2k), and
    ``params`` P and ``batch`` for the title.
    """
    experiment = setup.experiment
    batch = int(experiment.run_options["batch_size"])
    params = int(experiment.problem_options["dim"])
    averaged: dict[str, np.ndarray] = {}
    last: list[np.ndarray] = []
    for label, histories in _over_seeds(experiment, setup["seeds"]).items():
        rows = []
        for history in histories:
            frame = history.to_frame()
            best = frame["loss"] - frame["excess_loss"]
            rows.append((frame["averaged_loss"] - best).to_numpy(float))
            if history.rule == "sgd":
                last.append(frame["excess_loss"].to_numpy(float))
            samples = frame["step"].to_numpy(float) * batch
        averaged[label] = np.asarray(rows)
    keep = samples > 0
    k = samples[keep]
    bound = params / (2 * k)
    ratios = {
        label: np.mean(values, 0)[keep][-1] / bound[-1]
        for label, values in averaged.items()
    }
    sgd_label, ng_label = list(averaged)
    plain = float(np.mean(last, 0)[keep][-1] / bound[-1])
    efficient = {  # label -> (where, meaning)
        sgd_label: (
            f" at k = {int(k[-1])}",
            "Averaged constant-step SGD reaches the Fisher-efficient P/(2k)…",
        ),
        ng_label: ("", "…and so does natural gradient…"),
    }
    measurements = (
        *(
            Measurement(
                f"{label}: k·excess / (P/2){where}",
                float(ratios[label]),
                low=0.4,
                high=2.5,
                meaning=meaning,
            )
            for label, (where, meaning) in efficient.items()
        ),
        Measurement(
            "last SGD iterate (no averaging): k·excess / (P/2)",
            plain,
            low=3.0,
            meaning="…while the constant-step iterate itself stays above it.",
        ),
    )
    rules = {sgd_label: "sgd", ng_label: "natural_gradient"}
    shown = {label: values[:, keep] for label, values in averaged.items()}
    data = {
        "k": k,
        "averaged": {
            label: (rules[label], rows.mean(0), (rows.min(0), rows.max(0)))
            for label, rows in shown.items()
        },
        "last": np.mean(last, 0)[keep],
        "bound": bound,
        "params": params,
        "batch": batch,
    }
    notes = (
        f"k counts the labelled samples behind the gradients ({batch} per step); "
        "natural gradient's Fisher uses extra inputs with targets sampled from the "
        "model, which carry no information about θ*.",
    )
    return Measured(measurements, data, notes)


@FISHER_EFFICIENCY.draws
def draw_fisher_efficiency(setup: Setup, measured: Measured) -> Figures:
    k, seeds = measured["k"], len(setup["seeds"])
    curves = [
        plots.Curve(
            f"{label} (mean, min–max over {seeds} seeds)",
            k,
            mean,
            plots.rule_color(rule),
            band=band,
        )
        for label, (rule, mean, band) in measured["averaged"].items()
    ]
    curves.append(
        plots.Curve(
            "last SGD iterate (mean)",
            k,
            measured["last"],
            plots.rule_color("sgd"),
            "dot",
        )
    )
    curves.append(plots.reference_curve("P / (2k)", k, measured["bound"]))
    return {
        "excess loss against samples": plots.curves_figure(
            curves,
            title=f"Excess loss h(θ̄) − h(θ*), P = {measured['params']}, batches of "
            f"{measured['batch']}",
            x_title="samples seen k",
            y_title="excess loss",
            log="xy",
        )
    }


@SMALL_BUDGET.measures
def measure_small_budget(setup: Setup) -> Measured:
    """In a few large-batch iterations natural gradient is far ahead of tuned SGD.

    Data: ``curves``, name -> (mean excess loss per iteration, rule, dash).
    """
    base = setup.experiment
    mean = {
        label: np.mean([_column(h, "excess_loss") for h in histories], 0)
        for label, histories in _over_seeds(base, setup["seeds"]).items()
    }
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
    curves = {
        label + (" (best lr)" if label == best else ""): (
            values,
            rules[label],
            "solid" if label in (best, ng) else "dot",
        )
        for label, values in mean.items()
    }
    return Measured(measurements, {"curves": curves})


@SMALL_BUDGET.draws
def draw_small_budget(setup: Setup, measured: Measured) -> Figures:
    return {
        "excess loss per iteration": plots.curves_figure(
            [
                plots.Curve(
                    name, np.arange(len(values)), values, plots.rule_color(rule), dash
                )
                for name, (values, rule, dash) in measured["curves"].items()
            ],
            title=f"Mean excess loss over {len(setup['seeds'])} seeds",
            x_title="iteration",
            y_title="excess loss h(θ) − h(θ*)",
            log="y",
        )
    }
