"""Checks about curvature matrices at a point: C1, C2, C7 and the quadratic models.

Each function is a preset's ``compute``: ``(setup, figures) -> Evidence``. The
numbers are measured on the library's operators and compared with independent
routes (:mod:`explorer.presets.helpers`) or with closed forms.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch

from explorer.curvature import curvature
from explorer.landscape import loss_grid, quadratic_models
from explorer.plots import (
    contour_figure,
    loss_figure,
    matrices_figure,
    spectrum_figure,
)
from explorer.plots.theme import curvature_color
from explorer.presets.base import Evidence, Measurement, Setup
from explorer.presets.figures import Curve, curves_figure
from explorer.presets.helpers import (
    fisher_by_expectation,
    log_slope,
    max_relative_difference,
    relative_error,
    residual_term,
    run_experiment,
    student_mlp,
)
from explorer.problems.spec import problem
from explorer.spectra import approximation_quality, eigenvalues


def _dense(key: str, prob, theta, **options) -> torch.Tensor:
    return curvature(key, prob, theta, **options).dense().double()


# ------------------------------------------------------------------------- C1
def fisher_equals_ggn(setup: Setup, figures: bool) -> Evidence:
    """C1: F (an expectation over the model's y) = G for matching losses only."""
    matching, shown = [], {}
    for label, (key, options) in setup["matching"].items():
        prob = problem(key, **options)
        f = fisher_by_expectation(prob, prob.theta0)
        g = _dense("ggn", prob, prob.theta0)
        matching.append(max_relative_difference(f, g))
        shown[label] = (f, g)
    differing, pairs = [], {}
    for label, (key, options) in setup["non_matching"].items():
        prob = problem(key, **options)
        f = fisher_by_expectation(prob, prob.theta0)
        g = _dense("ggn", prob, prob.theta0)
        differing.append(relative_error(f, g))
        pairs[label] = (f, g)
    runs = run_experiment(setup.experiment)
    first, second = (run.trajectory for run in runs.values())
    steps = min(len(first), len(second))
    gap = float((first[:steps] - second[:steps]).abs().max())
    measurements = (
        Measurement(
            "max |F − G| / max |G| (Gaussian, Bernoulli, categorical)",
            max(matching),
            high=1e-12,
            meaning="For matching likelihoods the Fisher equals the GGN to rounding.",
        ),
        Measurement(
            "‖F − G‖_F / ‖G‖_F (non-matching)",
            min(differing),
            low=1e-2,
            meaning="For a non-matching likelihood they differ.",
        ),
        Measurement(
            "max |θ_NG − θ_GN| over the runs",
            gap,
            high=1e-9,
            meaning="So natural gradient and Gauss-Newton runs coincide.",
        ),
    )
    out = {}
    if figures:
        label, (f, g) = next(reversed(shown.items()))
        out["F and G, matching"] = matrices_figure(
            {"F (expectation over the model's y)": f, "G (GGN)": g, "F − G": f - g},
            title=f"Fisher and GGN for {label}: identical",
        )
        label, (f, g) = next(iter(pairs.items()))
        out["F and G, non-matching"] = matrices_figure(
            {"F": f, "G": g, "F − G": f - g},
            title=f"Fisher and GGN for {label}: they differ",
        )
        out["natural gradient vs Gauss-Newton"] = loss_figure(
            runs,
            metrics=("loss",),
            title="Natural gradient and Gauss-Newton: one curve (matching loss)",
        )
    return Evidence(measurements, out)


# ------------------------------------------------------------------------- C2
def hessian_ggn_residual(setup: Setup, figures: bool) -> Evidence:
    """C2: H = G + residual; G PSD where H has negative eigenvalues."""
    prob = problem(setup.problem, **setup.problem_options)
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
            "λ_min(G) / λ_max(G)",
            float(g_values[0] / g_values[-1]),
            low=-1e-12,
            meaning="The GGN is positive semi-definite (to rounding)…",
        ),
        Measurement(
            "λ_min(H) / λ_max(H)",
            float(h_values[0] / h_values[-1]),
            high=-1e-2,
            meaning="…at a point where the Hessian has negative eigenvalues.",
        ),
    )
    out = {}
    if figures:
        out["spectra of H and G"] = spectrum_figure(
            {"hessian": h_values, "ggn": g_values},
            title="Eigenvalues: H has negative ones (open diamonds), G none",
        )
        out["H, G and the residual"] = matrices_figure(
            {"H (Hessian)": h, "G (GGN)": g, "R (residual term)": r},
            title="H = G + R",
        )
    return Evidence(measurements, out)


def interpolation(setup: Setup, figures: bool) -> Evidence:
    """C2: at an interpolating solution (zero residuals) H = G."""
    prob = problem(setup.problem, **setup.problem_options)
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
            "‖H − G‖_F / ‖G‖_F at θ*",
            gaps[-1],
            high=1e-12,
            meaning="Where the model interpolates the data the residual term vanishes.",
        ),
        Measurement(
            "‖H − G‖_F / ‖G‖_F at θ₀",
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
    out = {}
    if figures:
        out["‖H − G‖ along the way to θ*"] = curves_figure(
            [
                Curve(
                    "‖H − G‖_F / ‖G‖_F",
                    distances[:-1],
                    gaps[:-1],
                    curvature_color("hessian"),
                ),
                Curve(
                    "loss h",
                    distances[:-1],
                    losses[:-1],
                    curvature_color("ggn"),
                    dash="dot",
                ),
            ],
            title=(
                "Approaching the interpolating θ* from θ₀: H − G ∝ distance, h ∝ "
                f"distance² (at θ*: {gaps[-1]:.3g} and {losses[-1]:.3g})"
            ),
            x_title="‖θ − θ*‖ along the segment from θ₀",
            y_title="relative difference; loss",
            log_x=True,
            log_y=True,
        )
        keys = {name: "hessian" if name[0] == "H" else "ggn" for name in spectra}
        out["spectra at θ₀ and θ*"] = spectrum_figure(
            spectra,
            scale="linear",
            keys=keys,
            title="Eigenvalues of H and G: different at θ₀, identical at θ*",
        )
    return Evidence(measurements, out)


# ------------------------------------------------------------- quadratic models
def quadratic_model_bounds(setup: Setup, figures: bool) -> Evidence:
    """The G model is bounded below (≥ 0 for least squares), the H model is not."""
    prob = problem(setup.problem, **setup.problem_options)
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
            "λ_min(H)",
            float(hess.eigenvalues[0]),
            high=-1e-3,
            meaning="H has negative curvature here, so its model is a saddle…",
        ),
        Measurement(
            f"M_H(θ + {distance:g}·v_min)",
            model_far,
            high=0.0,
            meaning="…that predicts a loss below zero, which no Gaussian NLL can reach.",
        ),
        Measurement(
            "min M_G",
            float("nan") if ggn_min is None else ggn_min,
            low=-1e-12,
            meaning="The GGN model is the linearized least-squares loss: never below 0.",
        ),
    )
    out = {}
    if figures:
        grid = loss_grid(prob, resolution=setup["resolution"])
        figure = contour_figure(
            grid,
            models=models,
            title="Quadratic models at θ: G an ellipse, H a saddle (hyperbola)",
        )
        figure.add_trace(
            go.Scatter(
                x=[float(theta[0])],
                y=[float(theta[1])],
                mode="markers",
                name="θ (where both models are built)",
                marker={"symbol": "circle", "size": 11, "color": "#111111"},
            )
        )
        out["models on the landscape"] = figure
        ts = np.linspace(-distance, distance, 81)
        points = theta.double().unsqueeze(0) + torch.tensor(ts).unsqueeze(
            1
        ) * direction.unsqueeze(0)
        with torch.no_grad():
            true = [float(prob.objective(p.to(prob.dtype))) for p in points]
        out["slice along v_min"] = curves_figure(
            [
                Curve("loss h", ts, true, "#333333", markers=False),
                Curve(
                    "model of H",
                    ts,
                    hess.evaluate(points).tolist(),
                    curvature_color("hessian"),
                    dash="dash",
                    markers=False,
                ),
                Curve(
                    "model of G",
                    ts,
                    ggn.evaluate(points).tolist(),
                    curvature_color("ggn"),
                    dash="dash",
                    markers=False,
                ),
            ],
            title="Along H's most negative eigenvector v_min",
            x_title="t in θ + t·v_min",
            y_title="value",
        )
    return Evidence(measurements, out)


# ------------------------------------------------------------------------- C7
def _kfac_quality(prob, damping: float):
    theta = prob.theta0
    kfac = curvature("kfac", prob, theta, damping_mode="exact")
    fisher = curvature("fisher", prob, theta)
    return kfac, fisher, approximation_quality(kfac, fisher, damping=damping)


def kfac_exact(setup: Setup, figures: bool) -> Evidence:
    """C7: K-FAC = F for one linear layer with a Gaussian output; not otherwise."""
    options = dict(setup["network"])
    results = {}
    for loss in ("gaussian", "categorical"):
        prob = student_mlp(1, loss=loss, **options)
        results[loss] = _kfac_quality(prob, setup["damping"])
    gauss = results["gaussian"][2]
    measurements = (
        Measurement(
            "‖K − F‖_F / ‖F‖_F (one layer, Gaussian)",
            gauss.relative_frobenius_error,
            high=1e-12,
            meaning="A single linear layer with a Gaussian output: K-FAC is exact…",
        ),
        Measurement(
            "1 − cos(step_K, step_F)",
            1.0 - gauss.cosine,
            high=1e-10,
            meaning="…so its damped steps are the natural gradient's.",
        ),
        Measurement(
            "‖K − F‖_F / ‖F‖_F (one layer, cross-entropy)",
            results["categorical"][2].relative_frobenius_error,
            low=1e-2,
            meaning="With softmax outputs the output Fisher varies per example: "
            "not exact.",
        ),
    )
    out = {}
    if figures:
        diffs = {
            f"K − F ({loss})": kfac.dense() - fisher.dense()
            for loss, (kfac, fisher, _) in results.items()
        }
        kfac, fisher, _ = results["gaussian"]
        out["K-FAC and F"] = matrices_figure(
            {"K-FAC (Gaussian)": kfac.dense(), "F (Gaussian)": fisher.dense()},
            title="One linear layer, Gaussian output: K-FAC = F",
        )
        out["K − F"] = matrices_figure(diffs, title="K-FAC minus Fisher, same scale")
    return Evidence(measurements, out)


def kfac_depth(setup: Setup, figures: bool) -> Evidence:
    """C7: K-FAC's error and step cosine against F as the network gets deeper."""
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
            f"cos(step_K, step_F) at depth {depths[-1]} (Gaussian)",
            gauss["cosine"][-1],
            high=0.99,
            meaning="The damped K-FAC step points elsewhere than the natural "
            "gradient's.",
        ),
    )
    out = {}
    if figures:
        names = {"gaussian": "Gaussian output", "categorical": "cross-entropy"}
        dashes = {"gaussian": "solid", "categorical": "dash"}
        color = curvature_color("kfac")
        out["error against depth"] = curves_figure(
            [
                Curve(names[k], depths, v["error"], color, dashes[k])
                for k, v in table.items()
            ],
            title="K-FAC against the exact Fisher: ‖K − F‖_F / ‖F‖_F",
            x_title="number of linear layers",
            y_title="relative Frobenius error",
        )
        out["step cosine against depth"] = curves_figure(
            [
                Curve(names[k], depths, v["cosine"], color, dashes[k])
                for k, v in table.items()
            ],
            title=f"cos∠((K + λI)⁻¹g, (F + λI)⁻¹g), λ = {setup['damping']:g}",
            x_title="number of linear layers",
            y_title="cosine",
        )
    return Evidence(measurements, out)
