r"""Checks on today's preconditioners: which matrix they estimate (claim PC).

Two studies, each a ``measure_*`` (``setup -> Measured``) and a ``draw_*``:

* :data:`SOPHIA_ESTIMATOR`: Sophia's Gauss-Newton-Bartlett estimator d = B·ĝ⊙ĝ
  (``sophia_gnb``) averaged over k independent draws, fitted as α·R to every
  reference R the check battery knows (:func:`~explorer.check.nearest.nearest_dense`):
  its nearest reference is the GGN's (= the Fisher's) diagonal, at scale ≈ 1 and
  with a residual that falls like k^(-1/2), while the Hessian's diagonal, which
  Sophia's name suggests, stays far.
* :data:`SHAMPOO_FACTORS`: per weight matrix, Shampoo's implied block
  (L ⊗ R)/tr L (``shampoo``, Shampoo², Morwani et al. 2025) against the exact GGN
  block and against the best Kronecker-factored approximation of that block (Van
  Loan & Pitsianis 1993, :func:`~explorer.check.metrics.kronecker_efficiency`), beside
  K-FAC's factors: Shampoo² is within a few per cent of the optimal Kronecker
  product, K-FAC's factors are not where a layer's inputs and back-propagated
  signals are correlated.

Every matrix is the library's operator in float64 on the preset's problem.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from explorer import plots
from explorer.check.metrics import kronecker_efficiency
from explorer.check.nearest import WORDS, nearest_dense
from explorer.curvature import curvature
from explorer.presets.base import Measured, Measurement, Setup, Study
from explorer.presets.helpers import log_slope, relative_error

Figures = dict[str, plots.Figure]

#: The references Sophia's estimate is fitted to (dense; P is a few hundred).
SOPHIA_REFERENCES = (
    "hessian",
    "ggn",
    "fisher",
    "ef",
    "diag_hessian",
    "diag_ggn",
    "diag_fisher",
    "diag_ef",
)
#: What counts as "a GGN/Fisher diagonal" for the nearest reference.
GAUSS_NEWTON_DIAGONALS = ("diag_ggn", "diag_fisher")

SOPHIA_ESTIMATOR = Study(
    "residual against each reference, k draws",
    "the estimate against the diagonals",
)
SHAMPOO_FACTORS = Study(
    "per-layer error against the exact GGN block",
    "GGN and Shampoo², first layer",
)


# ------------------------------------------------------------ Sophia's estimator
def _draws(problem, theta, samples: int, seed: int) -> torch.Tensor:
    """The mean of ``samples`` independent GNB draws (one generator for all)."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    operator = curvature(
        "sophia_gnb", problem, theta, generator=generator, samples=samples
    )
    return operator.diag()


@SOPHIA_ESTIMATOR.measures
def measure_sophia_estimator(setup: Setup) -> Measured:
    """PC: the nearest reference of Sophia's estimator is a Gauss-Newton diagonal.

    Data: ``draws`` (the k values), ``residuals`` (reference -> residual of the
    k-draw mean at each k), ``errors`` (its relative error against diag G), the
    ``estimate`` (largest k) and the three diagonals.
    """
    problem = setup.build_problem()
    theta = problem.theta0
    references = {k: curvature(k, problem, theta).dense() for k in SOPHIA_REFERENCES}
    draws = tuple(setup["draws"])
    residuals: dict[str, list[float]] = {k: [] for k in SOPHIA_REFERENCES}
    target = references["diag_ggn"].diagonal()
    errors = []  # ‖d̄_k − diag G‖ / ‖diag G‖: the sampling error of the k-draw mean
    nearest, estimate = None, None
    for k in draws:
        estimate = _draws(problem, theta, k, setup["seed"])
        errors.append(float((estimate - target).norm() / target.norm()))
        nearest = nearest_dense(torch.diag(estimate), references)
        fits = {key: residual for key, _, residual in nearest.candidates}
        for key in SOPHIA_REFERENCES:
            residuals[key].append(fits[key])
    fits = {key: (scale, residual) for key, scale, residual in nearest.candidates}
    hessian_residual = fits["diag_hessian"][1]
    closest_gn = min(GAUSS_NEWTON_DIAGONALS, key=lambda key: fits[key][1])
    measurements = (
        Measurement(
            "nearest reference is a GGN/Fisher diagonal (1 = yes)",
            float(nearest.key in GAUSS_NEWTON_DIAGONALS),
            low=1.0,
            meaning=f"The battery's fit names it: it {nearest.sentence()}.",
        ),
        Measurement(
            f"scale α against {closest_gn}, k = {draws[-1]} draws",
            fits[closest_gn][0],
            low=0.9,
            high=1.1,
            meaning="On average B·ĝ⊙ĝ is diag(G): the score of a sampled target has "
            "mean zero, so the cross terms between examples vanish.",
        ),
        Measurement(
            "residual against the Hessian's diagonal / against the GGN's",
            hessian_residual / fits[closest_gn][1],
            low=2.0,
            meaning="The Hessian's diagonal, which the name 'second-order' suggests, "
            "is several times farther away: Sophia never sees the network's own "
            "curvature.",
        ),
        Measurement(
            "log-log slope of ‖d̄_k − diag G‖ / ‖diag G‖ against k",
            log_slope(draws, errors),
            low=-0.65,
            high=-0.35,
            meaning="What remains is sampling noise: the error of the k-draw mean "
            "falls like k^(-1/2), as an unbiased estimator's does.",
        ),
    )
    data = {
        "draws": draws,
        "residuals": residuals,
        "errors": errors,
        "estimate": estimate,
        "diagonals": {
            key: references[key].diagonal() for key in ("diag_ggn", "diag_hessian")
        },
        "label": problem.label,
    }
    notes = (
        f"At k = {draws[-1]} draws the estimate {nearest.sentence()}; "
        + ", ".join(
            f"{key} residual {100 * residual:.1f} %"
            for key, _, residual in nearest.candidates[:5]
        )
        + ".",
    )
    return Measured(measurements, data, notes=notes)


@SOPHIA_ESTIMATOR.draws
def draw_sophia_estimator(setup: Setup, measured: Measured) -> Figures:
    draws = list(measured["draws"])
    curves = [
        plots.Curve(
            WORDS.get(key, key),
            draws,
            measured["residuals"][key],
            plots.curvature_color(key),
            "solid" if key.startswith("diag") else "dot",
            markers=True,
        )
        for key in SOPHIA_REFERENCES
    ]
    residuals = plots.curves_figure(
        curves,
        title=f"{measured['label']}: residual ‖d − αR‖/‖d‖ of the k-draw mean "
        "(the GGN and the Fisher coincide)",
        x_title="draws k",
        y_title="relative residual",
        log="xy",
    )
    residuals.update_xaxes(tickvals=draws, ticktext=[str(k) for k in draws])
    estimate = measured["estimate"]
    diagonals = measured["diagonals"]
    order = torch.argsort(diagonals["diag_ggn"], descending=True)
    index = list(range(1, len(order) + 1))
    # the Hessian's diagonal first (underneath), the GGN's last (on top)
    curves = [
        plots.Curve(
            WORDS["diag_hessian"],
            index,
            diagonals["diag_hessian"][order].tolist(),
            plots.curvature_color("diag_hessian"),
            "solid",
        ),
        plots.Curve(
            f"Sophia's estimate, k = {measured['draws'][-1]}",
            index,
            estimate[order].tolist(),
            plots.curvature_color("sophia_gnb"),
            "dot",
        ),
        plots.Curve(
            WORDS["diag_ggn"],
            index,
            diagonals["diag_ggn"][order].tolist(),
            plots.curvature_color("ggn"),
            "solid",
        ),
    ]
    against = plots.curves_figure(
        curves,
        title="Diagonal entries, sorted by the GGN's (the Hessian's negative "
        "entries are not drawn on the log axis)",
        x_title="parameter (rank of its GGN diagonal entry)",
        y_title="diagonal entry",
        log="y",
    )
    return {
        "residual against each reference, k draws": residuals,
        "the estimate against the diagonals": against,
    }


# ------------------------------------------------------------- Shampoo's factors
def _weight_blocks(blocks) -> list:
    """The Kronecker blocks of weight matrices (both factors larger than 1 × 1)."""
    return [b for b in blocks if b.left.shape[0] > 1 and b.right.shape[0] > 1]


@SHAMPOO_FACTORS.measures
def measure_shampoo_factors(setup: Setup) -> Measured:
    """PC: Shampoo² is nearly the optimal Kronecker product of each GGN block.

    Data: ``names`` of the weight matrices, ``errors`` (method -> per-layer relative
    Frobenius error against the exact GGN block, ``best`` the Van Loan–Pitsianis
    optimum), ``traces`` (tr of Shampoo's block over the exact one) and the first
    layer's ``matrices``.
    """
    problem = setup.build_problem()
    theta = problem.theta0
    ggn = curvature("ggn", problem, theta).dense()
    shampoo = curvature("shampoo", problem, theta)
    kfac = curvature("kfac", problem, theta, separate_weight_and_bias=True)
    blocks = problem.blocks()
    weights = _weight_blocks(shampoo.kronecker_factors())
    kfac_weights = _weight_blocks(kfac.kronecker_factors())
    # both list the weight matrices in θ order, so their entries pair up by position
    mine = list(kronecker_efficiency(ggn, weights, blocks).values())
    theirs = list(kronecker_efficiency(ggn, kfac_weights, blocks).values())
    names = [
        f"{t.name} ({t.rows}×{t.cols})"
        for t in shampoo.tensors
        if t.rows > 1 and t.cols > 1
    ]
    errors = {
        "best Kronecker product": [m["best"] for m in mine],
        "Shampoo² (L ⊗ R / tr L)": [m["achieved"] for m in mine],
        "K-FAC (S ⊗ A)": [m["achieved"] for m in theirs],
    }
    traces = []
    for block in weights:
        exact = ggn[block.indices][:, block.indices]
        traces.append(float(block.left.trace() * block.right.trace() / exact.trace()))
    first = weights[0]
    measurements = (
        Measurement(
            "min Kronecker efficiency of Shampoo² (best error / its error)",
            min(m["efficiency"] for m in mine),
            low=0.9,
            meaning="Per layer, Shampoo²'s error is within a few per cent of the "
            "best any Kronecker product can reach: its factors are one power "
            "iteration from the optimal ones.",
        ),
        Measurement(
            "min Kronecker efficiency of K-FAC's factors",
            min(m["efficiency"] for m in theirs),
            high=0.8,
            meaning="K-FAC's factors assume inputs and back-propagated signals are "
            "independent; where they are not, its error is well above the optimum.",
        ),
        Measurement(
            "max over layers of |tr(L ⊗ R / tr L) / tr(GGN block) − 1|",
            max(abs(t - 1) for t in traces),
            high=1e-10,
            meaning="Divided by tr L, Shampoo² has each exact block's trace: it "
            "estimates G at the right scale.",
        ),
    )
    data = {
        "names": names,
        "errors": errors,
        "traces": traces,
        "matrices": {
            "G (GGN block)": ggn[first.indices][:, first.indices],
            "Shampoo² block": torch.kron(first.left, first.right),
        },
        "label": problem.label,
    }
    notes = (
        "Per weight matrix, the relative Frobenius error against its exact GGN "
        "block: "
        + "; ".join(
            f"{name}: best {errors['best Kronecker product'][i]:.3g}, Shampoo² "
            f"{errors['Shampoo² (L ⊗ R / tr L)'][i]:.3g}, K-FAC "
            f"{errors['K-FAC (S ⊗ A)'][i]:.3g}"
            for i, name in enumerate(names)
        )
        + ".",
    )
    return Measured(measurements, data, notes=notes)


_SHAMPOO_STYLES: Mapping[str, tuple[str, str]] = {
    "best Kronecker product": ("#444444", "dot"),
    "Shampoo² (L ⊗ R / tr L)": (plots.curvature_color("shampoo"), "solid"),
    "K-FAC (S ⊗ A)": (plots.curvature_color("kfac"), "solid"),
}


@SHAMPOO_FACTORS.draws
def draw_shampoo_factors(setup: Setup, measured: Measured) -> Figures:
    names = measured["names"]
    layers = list(range(1, len(names) + 1))
    curves = [
        plots.Curve(label, layers, errors, *_SHAMPOO_STYLES[label], markers=True)
        for label, errors in measured["errors"].items()
    ]
    per_layer = plots.curves_figure(
        curves,
        title=f"{measured['label']}: each weight matrix's block against the exact "
        "GGN block",
        x_title="weight matrix",
        y_title="‖C<sub>l</sub> − G<sub>l</sub>‖<sub>F</sub> / "
        "‖G<sub>l</sub>‖<sub>F</sub>",
    )
    per_layer.update_xaxes(tickvals=layers, ticktext=names)
    first = measured["matrices"]
    error = relative_error(first["Shampoo² block"], first["G (GGN block)"])
    matrices = plots.matrices_figure(
        first,
        scale="signed",
        title=f"First weight matrix: GGN block and Shampoo² (error {error:.3g})",
        columns=2,
    )
    return {
        "per-layer error against the exact GGN block": per_layer,
        "GGN and Shampoo², first layer": matrices,
    }
