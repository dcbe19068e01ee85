"""Checks about curvature matrices at a point: C1, C2, C7 and the quadratic models.

Each claim is a :class:`~explorer.presets.base.Study`: a ``measure_*`` (``setup ->
Measured``) and a ``draw_*`` (``(setup, measured) -> {name: figure}``). The numbers
are measured on the library's operators and compared with independent routes
(:mod:`explorer.presets.helpers`) or with closed forms.
"""

from __future__ import annotations

import numpy as np
import torch

from explorer import plots
from explorer.curvature import curvature
from explorer.landscape import loss_grid, quadratic_models
from explorer.presets.base import Measured, Measurement, Setup, Study
from explorer.presets.helpers import (
    fisher_by_expectation,
    log_slope,
    max_relative_difference,
    problem_on_cpu,
    relative_error,
    residual_term,
    run_experiment,
    student_mlp,
)
from explorer.spectra import approximation_quality, eigenvalues

Figures = dict[str, plots.Figure]

#: The studies of this module, one per preset: the figures each one draws.
FISHER_EQUALS_GGN = Study(
    "F and G, matching", "F and G, non-matching", "natural gradient vs Gauss-Newton"
)
HESSIAN_GGN_RESIDUAL = Study("spectra of H and G", "H, G and the residual")
INTERPOLATION = Study("‖H − G‖ along the way to θ*", "spectra at θ₀ and θ*")
QUADRATIC_MODELS = Study("models on the landscape", "slice along v_min")
KFAC_EXACT = Study("K-FAC and F", "K − F")
KFAC_DEPTH = Study("error against depth", "step cosine against depth")


def _dense(key: str, prob, theta, **options) -> torch.Tensor:
    return curvature(key, prob, theta, **options).dense().double()


# ------------------------------------------------------------------------- C1
def _fisher_and_ggn(cases) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{label: (F by expectation, G)}`` at θ₀ of each ``(key, options)`` case."""
    pairs = {}
    for label, (key, options) in cases.items():
        prob = problem_on_cpu(key, options)
        pairs[label] = (
            fisher_by_expectation(prob, prob.theta0),
            _dense("ggn", prob, prob.theta0),
        )
    return pairs


@FISHER_EQUALS_GGN.measures
def measure_fisher_equals_ggn(setup: Setup) -> Measured:
    """C1: F (an expectation over the model's y) = G for matching losses only.

    Data: the F and G shown for one ``matching`` and one ``non_matching`` likelihood
    (label, matrices) and the two ``runs``.
    """
    matching = _fisher_and_ggn(setup["matching"])
    differing = _fisher_and_ggn(setup["non_matching"])
    runs = run_experiment(setup.experiment)
    first, second = (run.trajectory for run in runs.values())
    steps = min(len(first), len(second))
    gap = float((first[:steps] - second[:steps]).abs().max())
    measurements = (
        Measurement(
            "max |F − G| / max |G| (Gaussian, Bernoulli, categorical)",
            max(max_relative_difference(f, g) for f, g in matching.values()),
            high=1e-12,
            meaning="For matching likelihoods the Fisher equals the GGN to rounding.",
        ),
        Measurement(
            "‖F − G‖ / ‖G‖ (Frobenius, non-matching)",
            min(relative_error(f, g) for f, g in differing.values()),
            low=1e-2,
            meaning="For a non-matching likelihood they differ.",
        ),
        Measurement(
            "max |θ(NG) − θ(GN)| over the runs",
            gap,
            high=1e-9,
            meaning="So natural gradient and Gauss-Newton runs coincide.",
        ),
    )
    label, (f, g) = next(reversed(matching.items()))
    other, (f_other, g_other) = next(iter(differing.items()))
    shown = {
        "matching": (
            label,
            {"F (expectation over the model's y)": f, "G (GGN)": g, "F − G": f - g},
        ),
        "non_matching": (
            other,
            {"F": f_other, "G": g_other, "F − G": f_other - g_other},
        ),
        "runs": runs,
    }
    return Measured(measurements, shown)


@FISHER_EQUALS_GGN.draws
def draw_fisher_equals_ggn(setup: Setup, measured: Measured) -> Figures:
    label, same = measured["matching"]
    other, different = measured["non_matching"]
    return {
        "F and G, matching": plots.matrices_figure(
            same, title=f"Fisher and GGN for {label}: identical"
        ),
        "F and G, non-matching": plots.matrices_figure(
            different, title=f"Fisher and GGN for {other}: they differ"
        ),
        "natural gradient vs Gauss-Newton": plots.loss_figure(
            measured["runs"],
            metrics=("loss",),
            title="Natural gradient and Gauss-Newton: one curve (matching loss)",
        ),
    }


# ------------------------------------------------------------------------- C2
@HESSIAN_GGN_RESIDUAL.measures
def measure_hessian_ggn_residual(setup: Setup) -> Measured:
    """C2: H = G + residual; G PSD where H has negative eigenvalues.

    Data: the ``matrices`` H, G and R and the ``spectra`` of H and G.
    """
    prob = setup.build_problem()
    theta = prob.theta0
    h = _dense("hessian", prob, theta)
    g = _dense("ggn", prob, theta)
    r = residual_term(prob, theta).double()
    h_values, g_values = eigenvalues(h), eigenvalues(g)
    measurements = (
        Measurement(
            "max |H − (G + R)| / max |H|",
            max_relative_difference(g + r, h),
            high=1e-12,
            meaning="The Hessian is the GGN plus the residual term R (by autograd).",
        ),
        Measurement(
            "min λ(G) / max λ(G)",
            float(g_values[0] / g_values[-1]),
            low=-1e-12,
            meaning="The GGN is positive semi-definite (to rounding)…",
        ),
        Measurement(
            "min λ(H) / max λ(H)",
            float(h_values[0] / h_values[-1]),
            high=-1e-2,
            meaning="…at a point where the Hessian has negative eigenvalues.",
        ),
    )
    matrices = {"H (Hessian)": h, "G (GGN)": g, "R (residual term)": r}
    spectra = {"hessian": h_values, "ggn": g_values}
    return Measured(measurements, {"matrices": matrices, "spectra": spectra})


@HESSIAN_GGN_RESIDUAL.draws
def draw_hessian_ggn_residual(setup: Setup, measured: Measured) -> Figures:
    return {
        "spectra of H and G": plots.spectrum_figure(
            measured["spectra"],
            title="Eigenvalues: H has negative ones (open diamonds), G none",
        ),
        "H, G and the residual": plots.matrices_figure(
            measured["matrices"], title="H = G + R"
        ),
    }


@INTERPOLATION.measures
def measure_interpolation(setup: Setup) -> Measured:
    """C2: at an interpolating solution (zero residuals) H = G.

    Data: along the segment from θ₀ to θ*, the ``distances`` to θ*, the ``gaps``
    ‖H − G‖_F / ‖G‖_F and the ``losses``; the ``spectra`` at both ends.
    """
    prob = setup.build_problem()
    solution = torch.tensor(setup["solution"], dtype=prob.dtype)
    fractions = [*np.geomspace(1.0, 1e-6, setup["points"]), 0.0]
    distances, gaps, losses, spectra = [], [], [], {}
    for fraction in fractions:
        theta = solution + fraction * (prob.theta0 - solution)
        h = _dense("hessian", prob, theta)
        g = _dense("ggn", prob, theta)
        distances.append(float((theta - solution).norm()))
        gaps.append(relative_error(h, g))
        losses.append(float(prob.objective(theta)))
        if fraction in (1.0, 0.0):
            where = "θ₀" if fraction == 1.0 else "θ*"
            spectra[f"H at {where}"] = eigenvalues(h)
            spectra[f"G at {where}"] = eigenvalues(g)
    measurements = (
        Measurement(
            "‖H − G‖ / ‖G‖ (Frobenius) at θ*",
            gaps[-1],
            high=1e-12,
            meaning="Where the model interpolates the data the residual term vanishes.",
        ),
        Measurement(
            "‖H − G‖ / ‖G‖ (Frobenius) at θ₀",
            gaps[0],
            low=0.1,
            meaning="Away from it the two differ…",
        ),
        Measurement(
            "slope of log ‖H − G‖ against log ‖θ − θ*‖",
            log_slope(distances[-4:-1], gaps[-4:-1]),
            low=0.9,
            high=1.1,
            meaning="…by a term proportional to the residuals, so linear in the "
            "distance to θ*.",
        ),
    )
    data = {"distances": distances, "gaps": gaps, "losses": losses, "spectra": spectra}
    return Measured(measurements, data)


@INTERPOLATION.draws
def draw_interpolation(setup: Setup, measured: Measured) -> Figures:
    distances, gaps, losses = (measured[k] for k in ("distances", "gaps", "losses"))
    spectra = measured["spectra"]
    keys = {name: "hessian" if name[0] == "H" else "ggn" for name in spectra}
    return {
        "‖H − G‖ along the way to θ*": plots.curves_figure(
            [
                plots.Curve(
                    "‖H − G‖<sub>F</sub> / ‖G‖<sub>F</sub>",
                    distances[:-1],
                    gaps[:-1],
                    plots.curvature_color("hessian"),
                ),
                plots.Curve(
                    "loss h",
                    distances[:-1],
                    losses[:-1],
                    plots.curvature_color("ggn"),
                    dash="dot",
                ),
            ],
            title=(
                "Approaching the interpolating θ* from θ₀: H − G ∝ distance, h ∝ "
                f"distance² (at θ*: {gaps[-1]:.3g} and {losses[-1]:.3g})"
            ),
            x_title="‖θ − θ*‖ along the segment from θ₀",
            y_title="relative difference; loss",
            log="xy",
        ),
        "spectra at θ₀ and θ*": plots.spectrum_figure(
            spectra,
            scale="linear",
            keys=keys,
            title="Eigenvalues of H and G: different at θ₀, identical at θ*",
        ),
    }


# ------------------------------------------------------------- quadratic models
@QUADRATIC_MODELS.measures
def measure_quadratic_model_bounds(setup: Setup) -> Measured:
    """The G model is bounded below (≥ 0 for least squares), the H model is not.

    Data: the loss ``grid``, the two ``models`` built at ``theta``, and the loss and
    the models along H's most negative eigenvector (``slice``).
    """
    prob = setup.build_problem()
    theta = torch.tensor(setup["point"], dtype=prob.dtype)
    models = quadratic_models(prob, theta, ("hessian", "ggn"))
    hess, ggn = models["hessian"], models["ggn"]
    direction = hess.eigenvectors[:, 0]
    distance = setup["distance"]
    far = theta.double() + distance * direction
    model_far = float(hess.evaluate(far.unsqueeze(0))[0])
    ggn_min = ggn.minimum_value
    measurements = (
        Measurement(
            "min λ(H)",
            float(hess.eigenvalues[0]),
            high=-1e-3,
            meaning="H has negative curvature here, so its model is a saddle…",
        ),
        Measurement(
            f"model of H at θ + {distance:g}·v (v: H's most negative eigenvector)",
            model_far,
            high=0.0,
            meaning="…that predicts a loss below zero, which no Gaussian NLL can reach.",
        ),
        Measurement(
            "min of the model of G",
            float("nan") if ggn_min is None else ggn_min,
            low=-1e-12,
            meaning="The GGN model is the linearized least-squares loss: never below 0.",
        ),
    )
    ts = np.linspace(-distance, distance, 81)
    points = theta.double().unsqueeze(0) + torch.tensor(ts).unsqueeze(
        1
    ) * direction.unsqueeze(0)
    with torch.no_grad():
        true = [float(prob.objective(p.to(prob.dtype))) for p in points]
    data = {
        "grid": loss_grid(prob, resolution=setup["resolution"]),
        "models": models,
        "theta": theta.tolist(),
        "slice": {
            "ts": ts,
            "loss h": true,
            "hessian": hess.evaluate(points).tolist(),
            "ggn": ggn.evaluate(points).tolist(),
        },
    }
    return Measured(measurements, data)


@QUADRATIC_MODELS.draws
def draw_quadratic_model_bounds(setup: Setup, measured: Measured) -> Figures:
    line = measured["slice"]
    ts = line["ts"]
    return {
        "models on the landscape": plots.contour_figure(
            measured["grid"],
            models=measured["models"],
            points={"θ (where both models are built)": measured["theta"]},
            title="Quadratic models at θ: G an ellipse, H a saddle (hyperbola)",
        ),
        "slice along v_min": plots.curves_figure(
            [
                plots.reference_curve("loss h", ts, line["loss h"], "#333333", "solid"),
                *(
                    plots.reference_curve(
                        f"model of {name}", ts, line[key], plots.curvature_color(key)
                    )
                    for key, name in (("hessian", "H"), ("ggn", "G"))
                ),
            ],
            title="Along H's most negative eigenvector v<sub>min</sub>",
            x_title="t in θ + t·v<sub>min</sub>",
            y_title="value",
        ),
    }


# ------------------------------------------------------------------------- C7
def _kfac_quality(prob, damping: float):
    theta = prob.theta0
    kfac = curvature("kfac", prob, theta, damping_mode="exact")
    fisher = curvature("fisher", prob, theta)
    return kfac, fisher, approximation_quality(kfac, fisher, damping=damping)


@KFAC_EXACT.measures
def measure_kfac_exact(setup: Setup) -> Measured:
    """C7: K-FAC = F for one linear layer with a Gaussian output; not otherwise.

    Data: K-FAC and F for the ``gaussian`` output, and K − F for both outputs
    (``differences``).
    """
    options = dict(setup["network"])
    results = {}
    for loss in ("gaussian", "categorical"):
        prob = student_mlp(1, loss=loss, **options)
        results[loss] = _kfac_quality(prob, setup["damping"])
    gauss = results["gaussian"][2]
    measurements = (
        Measurement(
            "‖K − F‖ / ‖F‖ (Frobenius, one layer, Gaussian)",
            gauss.relative_frobenius_error,
            high=1e-12,
            meaning="A single linear layer with a Gaussian output: K-FAC is exact…",
        ),
        Measurement(
            "1 − cos(K-FAC step, natural-gradient step)",
            1.0 - gauss.cosine,
            high=1e-10,
            meaning="…so its damped steps are the natural gradient's.",
        ),
        Measurement(
            "‖K − F‖ / ‖F‖ (Frobenius, one layer, cross-entropy)",
            results["categorical"][2].relative_frobenius_error,
            low=1e-2,
            meaning="With softmax outputs the output Fisher varies per example: "
            "not exact.",
        ),
    )
    dense = {loss: (k.dense(), f.dense()) for loss, (k, f, _) in results.items()}
    kfac, fisher = dense["gaussian"]
    data = {
        "gaussian": {"K-FAC (Gaussian)": kfac, "F (Gaussian)": fisher},
        "differences": {f"K − F ({loss})": k - f for loss, (k, f) in dense.items()},
    }
    return Measured(measurements, data)


@KFAC_EXACT.draws
def draw_kfac_exact(setup: Setup, measured: Measured) -> Figures:
    return {
        "K-FAC and F": plots.matrices_figure(
            measured["gaussian"], title="One linear layer, Gaussian output: K-FAC = F"
        ),
        "K − F": plots.matrices_figure(
            measured["differences"], title="K-FAC minus Fisher, same scale"
        ),
    }


@KFAC_DEPTH.measures
def measure_kfac_depth(setup: Setup) -> Measured:
    """C7: K-FAC's error and step cosine against F as the network gets deeper.

    Data: the ``depths`` and, per output, the ``table`` of errors and cosines.
    """
    depths = list(setup["depths"])
    table: dict[str, dict[str, list[float]]] = {}
    for loss in ("gaussian", "categorical"):
        rows: dict[str, list[float]] = {"error": [], "cosine": []}
        for depth in depths:
            prob = student_mlp(depth, loss=loss, **dict(setup["network"]))
            quality = _kfac_quality(prob, setup["damping"])[2]
            rows["error"].append(quality.relative_frobenius_error)
            rows["cosine"].append(quality.cosine)
        table[loss] = rows
    gauss, cat = table["gaussian"], table["categorical"]
    measurements = (
        Measurement(
            "error at depth 1 (Gaussian)",
            gauss["error"][0],
            high=1e-12,
            meaning="Exact for one layer with a Gaussian output.",
        ),
        Measurement(
            f"min error at depth 2…{depths[-1]} (Gaussian)",
            min(gauss["error"][1:]),
            low=0.05,
            meaning="Measurable error once there are hidden layers.",
        ),
        Measurement(
            f"error at depth {depths[-1]} − depth 1 (cross-entropy)",
            cat["error"][-1] - cat["error"][0],
            low=0.05,
            meaning="The error grows with depth for cross-entropy too.",
        ),
        Measurement(
            f"cos(K-FAC step, natural-gradient step) at depth {depths[-1]} (Gaussian)",
            gauss["cosine"][-1],
            high=0.99,
            meaning="The damped K-FAC step points elsewhere than the natural "
            "gradient's.",
        ),
    )
    return Measured(measurements, {"depths": depths, "table": table})


#: The two outputs of the depth study: loss -> (legend name, dash).
_OUTPUTS = {
    "gaussian": ("Gaussian output", "solid"),
    "categorical": ("cross-entropy", "dash"),
}


@KFAC_DEPTH.draws
def draw_kfac_depth(setup: Setup, measured: Measured) -> Figures:
    depths, table = measured["depths"], measured["table"]
    color = plots.curvature_color("kfac")

    def lines(column: str) -> list[plots.Curve]:
        return [
            plots.Curve(name, depths, table[loss][column], color, dash)
            for loss, (name, dash) in _OUTPUTS.items()
        ]

    return {
        "error against depth": plots.curves_figure(
            lines("error"),
            title="K-FAC against the exact Fisher: ‖K − F‖<sub>F</sub> / ‖F‖<sub>F</sub>",
            x_title="number of linear layers",
            y_title="relative Frobenius error",
        ),
        "step cosine against depth": plots.curves_figure(
            lines("cosine"),
            title=f"cos∠((K + λI)⁻¹g, (F + λI)⁻¹g), λ = {setup['damping']:g}",
            x_title="number of linear layers",
            y_title="cosine",
        ),
    }
