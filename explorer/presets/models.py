r"""Checks on the newer model families: K-FAC on a conv net (C7) and where the GGN
cuts the model into network and loss (C1).

Two studies, each a ``measure_*`` (``setup -> Measured``) and a ``draw_*``:

* :data:`KFAC_EXPAND_REDUCE`: each layer's K-FAC block, in its expand and its
  reduce form (Eschenhagen et al. 2023), against that layer's block of the exact
  GGN, on two deep *linear* conv nets built so that one form is exact (a loss term
  per pixel for expand, pooling before the loss for reduce), and on the real MNIST
  CNN (``mnist_cnn``), where both are approximations.
* :data:`NETWORK_LOSS_SPLIT`: F against G where the outputs are the likelihood's
  natural parameter (Poisson with the log link: equal) and where they are not
  (softplus link; a Gaussian's mean and log-variance: different, and the GGN
  indefinite), and the GGN recomputed with the same models cut at the natural
  parameter, which is the Fisher again (Martens 2020, §9).

The Fisher is always the definition's expectation over the model's targets
(:func:`~explorer.presets.helpers.fisher_by_expectation`), the re-cut GGN goes
through ``torch.func`` on a loss written in the natural parameters, and the GGN and
K-FAC are the library's operators.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.func import hessian, jacrev, vmap

from explorer import plots
from explorer.curvature import curvature
from explorer.curvature.algebra import DenseOperator
from explorer.presets.base import Measured, Measurement, Setup, Study
from explorer.presets.helpers import (
    fisher_by_expectation,
    max_relative_difference,
    problem_on_cpu,
    relative_error,
)
from explorer.problems import likelihoods as lik
from explorer.problems.base import Problem, problem_from_model
from explorer.problems.vision import init_conv_uniform
from explorer.spectra import approximation_quality, eigenvalues

Figures = dict[str, plots.Figure]

#: The two forms of K-FAC for layers with shared positions.
APPROXIMATIONS = ("expand", "reduce")
#: The settings of the deep linear conv nets, named after the form exact in them.
SETTINGS = {
    "expand": "a loss term per pixel",
    "reduce": "pooled before the loss",
}
#: Errors at or below this are drawn at it on the log axis (exact zeros would be
#: gaps there).
ERROR_FLOOR = 1e-16

KFAC_EXPAND_REDUCE = Study(
    "per-layer error, linear conv nets",
    "per-layer quality, MNIST CNN",
    "G and the two K-FACs, MNIST CNN",
)
NETWORK_LOSS_SPLIT = Study(
    "spectra of F and G, heteroscedastic",
    "F, G and F − G, heteroscedastic",
    "Poisson: the loss's curvature per example",
)


# ------------------------------------------------------------ K-FAC per layer
def linear_conv_net(
    setting: str, inputs: Tensor, labels: Tensor, channels: int, seed: int = 0
) -> Problem:
    r"""A deep linear conv net on flat square images ``inputs`` (N, s²) in which
    K-FAC-``setting`` is exact for the GGN (Gaussian likelihood, σ = 1).

    Both nets are a 3 × 3 convolution (1 → ``channels``, padding 1) followed by a
    1 × 1 convolution (``channels`` → ``channels``), all without activations. Every
    layer after the 3 × 3 one acts on each pixel separately, so the output seen from
    any layer is a fixed linear map of that layer's output at the same pixel (or of
    their mean), which is what makes one form of K-FAC exact:

    * ``"expand"``: a 1 × 1 convolution to one channel, flattened: one output, and
      one loss term, per pixel (regressing the image itself). The Jacobian of the
      outputs in a layer's output is block-diagonal over pixels and the same at
      every pixel, so treating pixels as extra examples loses nothing.
    * ``"reduce"``: global average pooling, then a linear layer to 10 outputs
      (regressing the one-hot label). The outputs depend on a layer only through
      the mean of its outputs over the pixels, so averaging the inputs and summing
      the back-propagated signals over pixels first loses nothing.

    The GGN does not depend on the targets for a Gaussian likelihood; they only make
    the nets read as regressions.
    """
    if setting not in SETTINGS:
        raise ValueError(f"setting = {setting!r} must be one of {', '.join(SETTINGS)}")
    side = round(inputs.shape[1] ** 0.5)
    if side * side != inputs.shape[1]:
        raise ValueError(f"inputs of width {inputs.shape[1]} are not square images")
    layers: list[nn.Module] = [
        nn.Unflatten(1, (1, side, side)),
        nn.Conv2d(1, channels, 3, padding=1),
        nn.Conv2d(channels, channels, 1),
    ]
    if setting == "expand":
        layers += [nn.Conv2d(channels, 1, 1), nn.Flatten()]
        loss, targets = lik.GaussianLoss(side * side), inputs
    else:
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10)]
        loss = lik.GaussianLoss(10)
        targets = nn.functional.one_hot(labels, 10).to(inputs)
    model = nn.Sequential(*layers).double()
    init_conv_uniform(model, torch.Generator().manual_seed(seed))
    return problem_from_model(
        model,
        torch.float64,
        torch.device("cpu"),
        key=f"linear_conv_{setting}",
        label=f"deep linear conv net, {SETTINGS[setting]}",
        loss=loss,
        inputs=inputs.double(),
        targets=targets.double(),
    )


def shared_positions(model: nn.Sequential, example: Tensor) -> list[int]:
    """How many positions share each ``nn.Conv2d`` / ``nn.Linear`` of ``model``, in
    order, from one forward pass of ``example`` (1, ...): a convolution's output
    locations, 1 for a linear layer on a flat input.
    """
    counts, x = [], example
    with torch.no_grad():
        for module in model:
            x = module(x)
            if isinstance(module, nn.Conv2d):
                counts.append(x.shape[-2] * x.shape[-1])
            elif isinstance(module, nn.Linear):
                counts.append(x[..., 0].numel())
    return counts


def layer_names(model: nn.Sequential, example: Tensor) -> list[str]:
    """Readable names of the K-FAC layers of ``model``, in θ order."""
    names, convs = [], 0
    modules = [m for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]
    for module, positions in zip(modules, shared_positions(model, example)):
        if isinstance(module, nn.Conv2d):
            convs += 1
            kh, kw = module.kernel_size
            names.append(
                f"conv {convs} ({kh}×{kw}, {module.in_channels}→"
                f"{module.out_channels}, {positions} pixels)"
            )
        else:
            names.append(f"linear ({module.in_features}→{module.out_features})")
    return names


def module_blocks(problem: Problem) -> tuple[tuple[str, slice], ...]:
    """``problem.blocks()`` named by what each module is (``"linear 1→16"``)."""
    out = []
    for name, span in problem.blocks():
        module = problem.model.get_submodule(name)
        if isinstance(module, nn.Linear):
            name = f"linear {module.in_features}→{module.out_features}"
        out.append((name, span))
    return tuple(out)


def short(name: str) -> str:
    """A layer's name without its details: ``"conv 1"``, ``"linear"``."""
    return name.split(" (")[0]


def per_layer(problem: Problem, theta: Tensor) -> dict:
    """Each K-FAC layer's [W, b] block of G and of both K-FAC forms at ``theta``.

    Returns:
        ``{"spans", "ggn", "kfac": {form: dense}, "errors": {form: [‖K_l − G_l‖_F
        / ‖G_l‖_F per layer]}}``, ``ggn`` the full GGN (its off-diagonal blocks
        are what every block-diagonal approximation drops).
    """
    ggn = curvature("ggn", problem, theta).dense().double()
    kfac, spans = {}, None
    for form in APPROXIMATIONS:
        op = curvature("kfac", problem, theta, kfac_approx=form)
        if set(op.coverage().values()) != {"kronecker"}:
            raise ValueError(f"K-FAC does not cover every parameter of {problem.key}")
        kfac[form] = op.dense().double()
        spans = op.block_spans
    errors = {
        form: [relative_error(dense[s, s], ggn[s, s]) for s in spans]
        for form, dense in kfac.items()
    }
    return {"spans": spans, "ggn": ggn, "kfac": kfac, "errors": errors}


def _block_qualities(
    problem: Problem, theta: Tensor, blocks: dict, names: Sequence[str], damping: float
) -> dict:
    """``{"name · form": ApproximationQuality}`` of each layer's K-FAC block against
    its GGN block, damped by ``damping`` × the block's mean eigenvalue (a fixed λ
    would be large for one layer and negligible for another).

    The reduce form gets its own label key (``"kfac (reduce)"``) so the bars of the
    two forms have different colours.
    """
    grad = problem.grad(theta).double()
    out = {}
    for name, span in zip(names, blocks["spans"]):
        reference = blocks["ggn"][span, span]
        lam = damping * float(reference.trace()) / reference.shape[0]
        for form, dense in blocks["kfac"].items():
            quality = approximation_quality(
                DenseOperator(dense[span, span], key="kfac", psd=True),
                DenseOperator(reference, key="ggn", psd=True),
                grad=grad[span],
                damping=lam,
                method="dense",
            )
            key = "kfac" if form == "expand" else "kfac (reduce)"
            out[f"{name} · {form}"] = dataclasses.replace(quality, curvature=key)
    return out


def _table(names: Sequence[str], errors: Mapping[str, Sequence[float]], traces) -> str:
    """The per-layer numbers as a Markdown table (names have no Markdown syntax)."""
    rows = [
        "| layer | error, expand | error, reduce | trace ratio, expand | "
        "trace ratio, reduce |",
        "|---|---|---|---|---|",
    ]
    for index, name in enumerate(names):
        cells = [f"{errors[form][index]:.3g}" for form in APPROXIMATIONS]
        cells += [f"{traces[form][index]:.3g}" for form in APPROXIMATIONS]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


@KFAC_EXPAND_REDUCE.measures
def measure_kfac_expand_reduce(setup: Setup) -> Measured:
    """C7: expand and reduce are each exact in their own setting on deep linear conv
    nets, not in the other's, and both approximate on the real MNIST CNN.

    Data: per linear net ``linear[setting]`` its layer ``names`` and ``errors``;
    for the CNN its ``names``, the per-layer ``qualities`` and the ``matrices``
    (G, K-FAC expand, K-FAC reduce) with the layer ``blocks``.
    """
    prob = setup.build_problem()
    theta = prob.theta0
    example = prob.inputs[:1]
    # The linear nets' exactness needs no large batch; the per-pixel net has one
    # output per pixel, so its GGN and K-FAC cost N·s² backward passes.
    images = prob.inputs[: setup["linear_images"]]
    labels = prob.targets[: setup["linear_images"]]
    linear = {}
    for setting in SETTINGS:
        net = linear_conv_net(setting, images, labels, setup["linear_channels"])
        blocks = per_layer(net, net.theta0)
        linear[setting] = {
            "names": layer_names(net.model, example),
            "errors": blocks["errors"],
        }
    cnn = per_layer(prob, theta)
    names = layer_names(prob.model, example)
    counts = shared_positions(prob.model, example)
    shared = [i for i, count in enumerate(counts) if count > 1]
    unshared = [i for i, count in enumerate(counts) if count == 1]
    spans = cnn["spans"]
    traces = {
        form: [float(dense[s, s].trace() / cnn["ggn"][s, s].trace()) for s in spans]
        for form, dense in cnn["kfac"].items()
    }
    wrong = {"expand": "reduce", "reduce": "expand"}
    measurements = (
        Measurement(
            "max layer error of K-FAC-expand, linear net with a loss term per pixel",
            max(linear["expand"]["errors"]["expand"]),
            high=1e-10,
            meaning="Where every pixel is its own loss term, expand is every "
            "layer's exact GGN block…",
        ),
        Measurement(
            "max layer error of K-FAC-reduce, linear net pooled before the loss",
            max(linear["reduce"]["errors"]["reduce"]),
            high=1e-10,
            meaning="…and where the pixels are averaged before the loss, reduce is.",
        ),
        Measurement(
            "max layer error of the other form (the smaller of the two nets')",
            min(max(linear[setting]["errors"][wrong[setting]]) for setting in SETTINGS),
            low=1e-2,
            meaning="Each form is exact only in its own setting.",
        ),
        Measurement(
            "min layer error over the convolutions and both forms, MNIST CNN",
            min(cnn["errors"][form][i] for form in APPROXIMATIONS for i in shared),
            low=0.05,
            meaning="On the real CNN (tanh, pooling, a read-out of the flattened "
            "maps) neither form is exact on any convolution.",
        ),
        Measurement(
            "‖K-FAC-expand − K-FAC-reduce‖ / ‖K-FAC-reduce‖ on the read-out, MNIST CNN",
            max(
                relative_error(
                    cnn["kfac"]["expand"][spans[i], spans[i]],
                    cnn["kfac"]["reduce"][spans[i], spans[i]],
                )
                for i in unshared
            ),
            high=1e-12,
            meaning="The read-out sees each image's maps once (no shared "
            "positions), and there the two forms are the same K-FAC.",
        ),
    )
    closer = [
        f"{names[i]}: {min(APPROXIMATIONS, key=lambda f: cnn['errors'][f][i])}"
        for i in shared
    ]
    notes = (
        "MNIST CNN per layer (error: the layer's Frobenius error; trace ratio: "
        "tr K over tr G, same block):\n\n" + _table(names, cnn["errors"], traces),
        "Closer to the GGN block on this net: " + "; ".join(closer) + ". Expand "
        "keeps only the products of each pixel with itself, reduce treats all "
        "pixels of an image as one; the exact block lies in between.",
    )
    blocks = tuple((short(name), span) for name, span in zip(names, spans))
    data = {
        "linear": linear,
        "names": names,
        "qualities": _block_qualities(
            prob, theta, cnn, [short(name) for name in names], setup["damping"]
        ),
        "matrices": {
            "G (GGN)": cnn["ggn"],
            "K-FAC-expand": cnn["kfac"]["expand"],
            "K-FAC-reduce": cnn["kfac"]["reduce"],
        },
        "blocks": blocks,
        "label": prob.label,
    }
    return Measured(measurements, data, notes=notes)


#: Line style of each form in the per-layer figure (expand: K-FAC's colour).
_FORMS = {
    "expand": plots.curvature_color("kfac"),
    "reduce": plots.curvature_color("kfac (reduce)"),
}
_SETTING_DASH = {"expand": "solid", "reduce": "dash"}


@KFAC_EXPAND_REDUCE.draws
def draw_kfac_expand_reduce(setup: Setup, measured: Measured) -> Figures:
    curves = []
    for setting, net in measured["linear"].items():
        layers = list(range(1, len(net["names"]) + 1))
        for form, color in _FORMS.items():
            errors = [max(e, ERROR_FLOOR) for e in net["errors"][form]]
            curves.append(
                plots.Curve(
                    f"K-FAC-{form}, net {SETTINGS[setting]}",
                    layers,
                    errors,
                    color,
                    _SETTING_DASH[setting],
                )
            )
    per_layer_error = plots.curves_figure(
        curves,
        title="Deep linear conv nets: each form exact (round-off) in its own "
        f"setting (errors below {ERROR_FLOOR:g} drawn at it)",
        x_title="layer",
        y_title="‖K − G<sub>l</sub>‖<sub>F</sub> / ‖G<sub>l</sub>‖<sub>F</sub>",
        log="y",
    )
    # layers are categories: one tick each, named, not 1, 1.5, 2…
    per_layer_error.update_xaxes(
        tickvals=[1, 2, 3], ticktext=["conv 3×3", "conv 1×1", "read-out"]
    )
    return {
        "per-layer error, linear conv nets": per_layer_error,
        "per-layer quality, MNIST CNN": plots.quality_bars_figure(
            measured["qualities"],
            title=f"{measured['label']}: each layer's K-FAC block against its GGN "
            f"block (step cosine at λ = {setup['damping']:g} × mean eigenvalue)",
        ),
        "G and the two K-FACs, MNIST CNN": plots.matrices_figure(
            measured["matrices"],
            scale="log",
            blocks=measured["blocks"],
            title="GGN and both K-FACs (block-diagonal by layer)",
        ),
    }


# ------------------------------------------------- where network and loss meet
def ggn_at_cut(
    problem: Problem,
    theta: Tensor,
    to_cut: Callable[[Tensor], Tensor],
    loss_at_cut: Callable[[Tensor, Tensor], Tensor],
) -> Tensor:
    r"""The GGN of the same model and loss cut at w = ``to_cut``(z) instead of z:

    .. math:: G_w = \frac1N \sum_i J_{w,i}^\top \nabla_w^2 \ell(w_i, y_i) J_{w,i},
       \quad J_w = \partial w / \partial θ,

    with ``loss_at_cut(w, y)`` the per-example loss in w (one example, so that
    ``torch.func`` can take its Hessian in w). By ``torch.func``; it uses nothing
    of the library's GGN.
    """
    targets = problem.targets

    def cut(point: Tensor) -> Tensor:
        return to_cut(problem.predict(point))

    jac = jacrev(cut)(theta.detach())  # (N, D, P)
    with torch.no_grad():
        points = cut(theta)
    inner = vmap(hessian(loss_at_cut))(points, targets)  # (N, D, D)
    return torch.einsum("ndp,nde,neq->pq", jac, inner, jac) / jac.shape[0]


def gaussian_natural(outputs: Tensor) -> Tensor:
    """(μ, s = log σ²) -> the Gaussian's natural parameters η = (μ/σ², −1/(2σ²))."""
    mu, s = outputs[..., :1], outputs[..., 1:]
    precision = torch.exp(-s)
    return torch.cat([mu * precision, -0.5 * precision], -1)


def gaussian_natural_nll(eta: Tensor, target: Tensor) -> Tensor:
    r"""The Gaussian NLL of one example in η, the same ½(s + (y − μ)² e^{−s}) as
    ``gaussian_heteroscedastic``: −η₁y − η₂y² + A(η) with the log-partition
    A(η) = −η₁²/(4η₂) − ½ log(−2η₂); its Hessian in η is ∇²A, free of y.
    """
    y = target[0]
    a = -(eta[0] ** 2) / (4 * eta[1]) - 0.5 * torch.log(-2 * eta[1])
    return -eta[0] * y - eta[1] * y**2 + a


def poisson_natural(outputs: Tensor) -> Tensor:
    """The Poisson's natural parameter η = log λ(z) for the softplus rate
    λ = log(1 + eᶻ).
    """
    return torch.log(nn.functional.softplus(outputs))


def poisson_natural_nll(eta: Tensor, target: Tensor) -> Tensor:
    """The Poisson NLL λ − y log λ of one example in η = log λ: e^η − yη."""
    return (torch.exp(eta) - target * eta).sum()


def poisson_weights(grid: Sequence[float], counts: Sequence[int]) -> dict:
    """What one example with output z adds to G and to F (both are (1/N) Σ Jᵀ w J
    with one output): the output Hessian ∂²L/∂z² at the counts y in ``counts`` and
    the output Fisher, on the z values of ``grid`` = (low, high, points), per link.
    """
    low, high, points = grid
    z = torch.linspace(low, high, int(points), dtype=torch.float64).unsqueeze(1)
    out: dict = {"z": z[:, 0].tolist()}
    for link in ("log", "softplus"):
        loss = lik.PoissonLoss(1, link=link)
        fisher = loss.output_fisher(z)[:, 0, 0]
        hessians = {
            y: loss.output_hessian(z, torch.full_like(z, float(y)))[:, 0, 0]
            for y in counts
        }
        out[link] = {
            "fisher": fisher.tolist(),
            "hessian": {y: h.tolist() for y, h in hessians.items()},
            "gap": max(float((h - fisher).abs().max()) for h in hessians.values())
            / float(fisher.abs().max()),
        }
    return out


#: Dashes of the output Hessians at the shown counts, in order.
_COUNT_DASHES = ("dot", "dash", "dashdot", "longdash")


def _weight_curves(weights: Mapping) -> list[plots.Curve]:
    """The softplus link's Hessians per count and its Fisher, and the log link's
    single curve (its Hessian is its Fisher at every count, to the gap measured).
    """
    z = weights["z"]
    soft = weights["softplus"]
    curves = [
        plots.reference_curve(
            f"softplus link: ∂²L/∂z² at y = {y}",
            z,
            values,
            plots.curvature_color("ggn"),
            _COUNT_DASHES[index % len(_COUNT_DASHES)],
        )
        for index, (y, values) in enumerate(soft["hessian"].items())
    ]
    curves.append(
        plots.reference_curve(
            "softplus link: Fisher weight (σ(z)²/λ)",
            z,
            soft["fisher"],
            plots.curvature_color("fisher"),
            "solid",
        )
    )
    log = weights["log"]
    curves.append(
        plots.reference_curve(
            "log link: ∂²L/∂z² = Fisher weight = λ at every y (largest relative "
            f"gap {log['gap']:.1g})",
            z,
            log["fisher"],
            plots.REFERENCE_COLOR,
            "solid",
        )
    )
    return curves


def _f_and_g(key: str, options: Mapping) -> tuple[Problem, Tensor, Tensor]:
    """(problem, F by expectation, G) at θ₀ of ``key`` with ``options``."""
    prob = problem_on_cpu(key, options)
    theta = prob.theta0
    ggn = curvature("ggn", prob, theta).dense().double()
    return prob, fisher_by_expectation(prob, theta).double(), ggn


@NETWORK_LOSS_SPLIT.measures
def measure_network_loss_split(setup: Setup) -> Measured:
    """C1 extended: F = G only where the outputs are the natural parameter; the
    heteroscedastic GGN is indefinite; re-cut at the natural parameter, G = F.

    Data: the heteroscedastic ``spectra`` and ``matrices`` (with the problem's
    ``blocks``) and the Poisson ``poisson`` matrices per link.
    """
    hetero, f_het, g_het = _f_and_g(setup.problem, setup.problem_options)
    g_eta_het = ggn_at_cut(
        hetero, hetero.theta0, gaussian_natural, gaussian_natural_nll
    ).double()
    counts = {}  # label -> (problem, F, G), per link
    for label, (key, options) in setup["counts"].items():
        counts[label] = _f_and_g(key, options)
    log_link = {k: v for k, v in counts.items() if v[0].loss.link == "log"}
    softplus = {k: v for k, v in counts.items() if v[0].loss.link == "softplus"}
    g_eta_soft = [
        (ggn_at_cut(p, p.theta0, poisson_natural, poisson_natural_nll).double(), f)
        for p, f, _ in softplus.values()
    ]
    f_values, g_values = eigenvalues(f_het), eigenvalues(g_het)
    g_eta_values = eigenvalues(g_eta_het)
    measurements = (
        Measurement(
            "max |F − G| / max |G|, Poisson with the log link (poisson_2d, "
            "doctor_visits)",
            max(max_relative_difference(f, g) for _, f, g in log_link.values()),
            high=1e-12,
            meaning="z = log λ is the Poisson's natural parameter: F = G to "
            "rounding, on synthetic and on real counts.",
        ),
        Measurement(
            "‖F − G‖ / ‖G‖, Poisson with the softplus link (least of the two)",
            min(relative_error(f, g) for _, f, g in softplus.values()),
            low=1e-2,
            meaning="The same counts with λ = softplus(z): F ≠ G.",
        ),
        Measurement(
            "‖F − G‖ / ‖G‖, heteroscedastic Gaussian (outputs μ, log σ²)",
            relative_error(f_het, g_het),
            low=0.1,
            meaning="(μ, log σ²) is not the natural parameter: F and G differ a lot…",
        ),
        Measurement(
            "min λ(G) / max λ(G), heteroscedastic",
            float(g_values[0] / g_values[-1]),
            high=-1e-3,
            meaning="…and the GGN has negative eigenvalues: this loss is not "
            "convex in (μ, log σ²)…",
        ),
        Measurement(
            "min λ(F) / max λ(F), heteroscedastic",
            float(f_values[0] / f_values[-1]),
            low=-1e-12,
            meaning="…while the Fisher, an expected outer product, is PSD.",
        ),
        Measurement(
            "max ‖G − F‖ / ‖F‖ with the same models cut at the natural parameter η",
            max(
                relative_error(g_eta_het, f_het),
                *(relative_error(g, f) for g, f in g_eta_soft),
            ),
            high=1e-10,
            meaning="Moving the map z ↦ η from the loss into the network turns "
            "the GGN into the Fisher: G depends on the cut, F does not.",
        ),
    )
    spectra = {
        "F (Fisher)": f_values,
        "G, cut at (μ, log σ²)": g_values,
        "G, cut at η (natural)": g_eta_values,
    }
    data = {
        "spectra": spectra,
        "matrices": {"F (Fisher)": f_het, "G (GGN)": g_het, "F − G": f_het - g_het},
        "blocks": module_blocks(hetero),
        "label": hetero.label,
        "weights": poisson_weights(setup["grid"], setup["counts_shown"]),
    }
    return Measured(measurements, data)


@NETWORK_LOSS_SPLIT.draws
def draw_network_loss_split(setup: Setup, measured: Measured) -> Figures:
    keys = {"F (Fisher)": "fisher"}
    keys.update({name: "ggn" for name in measured["spectra"] if name.startswith("G")})
    return {
        "spectra of F and G, heteroscedastic": plots.spectrum_figure(
            measured["spectra"],
            keys=keys,
            title=f"{measured['label']}: G has negative eigenvalues (open "
            "diamonds), F none; cut at η, G is F",
        ),
        "F, G and F − G, heteroscedastic": plots.matrices_figure(
            measured["matrices"],
            blocks=measured["blocks"],
            title="Fisher and GGN of the heteroscedastic MLP",
        ),
        "Poisson: the loss's curvature per example": plots.curves_figure(
            _weight_curves(measured["weights"]),
            title="Poisson: the GGN weighs each example by ∂²L/∂z², the Fisher by "
            "its mean over y ~ Poisson(λ(z))",
            x_title="network output z",
            y_title="weight of the example",
            log="y",
        ),
    }
