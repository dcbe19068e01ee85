"""K-FAC on models other than plain MLPs (explorer/curvature/kfac_modules.py).

References are independent of the hooks and the batched backward pass: layer
inputs and output Jacobians come from hand-written functional forwards through
``torch.func`` (conv patches from the Jacobian of the real convolution in its
weight, so no padding convention is shared with the code under test), output
Fishers by enumeration (tests/references.py), and exact GGNs from the brute-force
stacked Jacobian.
"""

from __future__ import annotations

import copy
import math
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import jacrev, vmap

import explorer as ex
from explorer.curvature.solvers import IndefiniteCurvatureError
from explorer.problems.base import Problem, module_predict_fn, problem_from_model
from explorer.problems.likelihoods import CategoricalLoss, GaussianLoss
from tests.references import ggn_ref, output_fisher_ref, relative_error

DTYPE = torch.float64
CPU = torch.device("cpu")


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _problem(model, inputs, loss, targets=None, key="kfac_test"):
    """A problem around ``model``; Gaussian targets drawn when none are given."""
    if targets is None:
        targets = torch.randn(
            len(inputs), loss.num_outputs, generator=_generator(9), dtype=DTYPE
        )
    return problem_from_model(
        model, DTYPE, CPU, key=key, label=key, loss=loss, inputs=inputs,
        targets=targets,
    )  # fmt: skip


def _classification(model, inputs, classes, key="kfac_test"):
    targets = torch.randint(0, classes, (len(inputs),), generator=_generator(9))
    return _problem(model, inputs, CategoricalLoss(classes), targets, key)


def _randn(*shape, seed=1):
    return torch.randn(*shape, generator=_generator(seed), dtype=DTYPE)


class Transpose(nn.Module):
    """(N, C, L) -> (N, L, C)."""

    def forward(self, x):
        return x.transpose(1, 2)


class MeanOver(nn.Module):
    """The mean over dimension ``dim`` (pooling the shared positions)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return x.mean(self.dim)


class Wrapped(nn.Module):
    """A module around ``inner``: not an ``nn.Sequential``, so the generic path."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


class Attention(nn.Module):
    """Single-head self-attention over a sequence (N, L, D) with nn.Linear q, k, v
    and output projections (weight sharing over L), mean-pooled, and a classifier.
    """

    def __init__(self, width: int = 4, classes: int = 3):
        super().__init__()
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.out = nn.Linear(width, width)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        q, k, v = self.query(x), self.key(x), self.value(x)
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1)
        return self.head(self.out(weights @ v).mean(1))


def conv_net() -> nn.Module:
    """On (N, 2, 5, 5): stride 2, padding 1 and dilation (1, 2) (3 × 2 outputs),
    then an asymmetric "same" padding (kernel (2, 3) pads one row at the bottom
    only), then a linear read-out.
    """
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=2, padding=1, dilation=(1, 2)),
        nn.Tanh(),
        nn.Conv2d(3, 2, (2, 3), padding="same"),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(12, 3),
    )


def _factors_by_layer(op):
    """{layer name: (S, A)} from ``kronecker_factors()`` (joined blocks)."""
    blocks = op.kronecker_factors()
    assert len(blocks) == len(op.layers)
    return {
        layer.name: (block.left, block.right)
        for layer, block in zip(op.layers, blocks, strict=True)
    }


def _reference_s(jacobians, fisher, approx):
    """S from per-example Jacobians J (N, C, R, D_out) of z_n in the layer outputs
    and the output Fisher F (N, C, C): expand (1/N) Σ_{n,r} J_nrᵀ F_n J_nr,
    reduce (1/N) Σ_n (Σ_r J_nr)ᵀ F_n (Σ_r J_nr).
    """
    n = jacobians.shape[0]
    if approx == "reduce":
        summed = jacobians.sum(2)
        return torch.einsum("nco,ncd,ndq->oq", summed, fisher, summed) / n
    return torch.einsum("ncro,ncd,ndrq->oq", jacobians, fisher, jacobians) / n


def _reference_a(inputs, approx):
    """A from layer inputs (N, R, D_in) with a 1 appended (every layer here has a
    bias): expand (1/(NR)) Σ ā āᵀ, reduce (1/N) Σ â âᵀ over position means.
    """
    if approx == "reduce":
        inputs = inputs.mean(1, keepdim=True)
    flat = inputs.reshape(-1, inputs.shape[-1])
    flat = torch.cat([flat, torch.ones_like(flat[:, :1])], 1)
    return flat.T @ flat / flat.shape[0]


# --------------------------------------------------------------- brute force
def _conv_reference(problem, theta, approx):
    """{layer: (S, A)} for :func:`conv_net` by torch.func, without hooks."""
    params = problem.unflatten(theta)
    x = problem.inputs

    def conv(index, a, weight=None):
        module = problem.model[index]
        weight = params[f"{index}.weight"] if weight is None else weight
        return F.conv2d(
            a, weight, params[f"{index}.bias"], module.stride, module.padding,
            module.dilation,
        )  # fmt: skip

    def forward(x_n, probes):
        s0 = conv(0, x_n[None])[0] + probes[0]
        s2 = conv(2, torch.tanh(s0)[None])[0] + probes[2]
        s5 = F.linear(torch.tanh(s2).reshape(-1), params["5.weight"], params["5.bias"])
        return s5 + probes[5]

    s0 = conv(0, x)
    a2 = torch.tanh(s0)
    s2 = conv(2, a2)
    a5 = torch.tanh(s2).flatten(1)
    outputs = F.linear(a5, params["5.weight"], params["5.bias"])
    assert relative_error(outputs, problem.predict(theta, x)) < 1e-13
    probes = {0: torch.zeros_like(s0), 2: torch.zeros_like(s2)}
    probes[5] = torch.zeros_like(outputs)
    jac = vmap(jacrev(forward, argnums=1))(x, probes)  # (N, C, *layer output)
    fisher = output_fisher_ref(problem, outputs)
    out = {}
    for index, layer_input in ((0, x), (2, a2)):
        weight = params[f"{index}.weight"]
        # s[n, c, r] = W[c] · a_{n,r} + b[c]: the patches are the Jacobian of the
        # real convolution in its first kernel row
        patches = jacrev(lambda w, i=index, a=layer_input: conv(i, a, w)[:, 0])(weight)
        patches = patches[..., 0, :, :, :].flatten(1, 2).flatten(2)  # (N, R, D_in)
        j = jac[index].flatten(3).transpose(2, 3)  # (N, C, R, C_out)
        out[f"{index}"] = (
            _reference_s(j, fisher, approx),
            _reference_a(patches, approx),
        )
    j = jac[5].unsqueeze(2)  # (N, C, 1, C)
    out["5"] = (_reference_s(j, fisher, approx), _reference_a(a5.unsqueeze(1), approx))
    return out


def _attention_reference(problem, theta, approx):
    """{layer: (S, A)} for :class:`Attention` by torch.func, without hooks."""
    params = problem.unflatten(theta)
    names = ("query", "key", "value", "out", "head")

    def linear(name, a):
        return F.linear(a, params[f"{name}.weight"], params[f"{name}.bias"])

    def forward(x, probes):  # one example (L, D), or a batch (N, L, D)
        q = linear("query", x) + probes["query"]
        k = linear("key", x) + probes["key"]
        v = linear("value", x) + probes["value"]
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        mixed = torch.softmax(scores, -1) @ v
        h = linear("out", mixed) + probes["out"]
        pooled = h.mean(-2)
        return linear("head", pooled) + probes["head"], (mixed, pooled)

    x = problem.inputs
    n, length, width = x.shape
    zeros = {name: torch.zeros(n, length, width, dtype=DTYPE) for name in names[:4]}
    zeros["head"] = torch.zeros(n, problem.num_outputs, dtype=DTYPE)
    outputs, (mixed, pooled) = forward(x, zeros)
    assert relative_error(outputs, problem.predict(theta, x)) < 1e-13
    jac, _ = vmap(jacrev(forward, argnums=1, has_aux=True))(x, zeros)
    fisher = output_fisher_ref(problem, outputs)
    inputs = {"query": x, "key": x, "value": x, "out": mixed}
    inputs["head"] = pooled.unsqueeze(1)
    out = {}
    for name in names:
        j = jac[name] if name != "head" else jac[name].unsqueeze(2)
        out[name] = (
            _reference_s(j, fisher, approx),
            _reference_a(inputs[name], approx),
        )
    return out


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@pytest.mark.parametrize("approx", ["expand", "reduce"])
@pytest.mark.parametrize("model", ["conv", "attention"])
def test_factors_match_brute_force_references(model, approx):
    if model == "conv":
        problem = _classification(conv_net(), _randn(5, 2, 5, 5), 3)
        reference = _conv_reference
    else:
        torch.manual_seed(4)
        problem = _classification(Attention(), _randn(5, 3, 4), 3)
        reference = _attention_reference
    theta = problem.theta0 + 0.3 * _randn(problem.num_params, seed=2)
    op = ex.curvature("kfac", problem, theta, kfac_approx=approx)
    expected = reference(problem, theta, approx)
    got = _factors_by_layer(op)
    assert set(got) == set(expected)
    dense = op.dense()
    # errors against the largest factor: with reduce, the key projection's S is
    # zero up to round-off (softmax ignores a shift shared by all keys)
    s_scale = max(float(s.norm()) for s, _ in expected.values())
    a_scale = max(float(a.norm()) for _, a in expected.values())
    for name, (s_ref, a_ref) in expected.items():
        s, a = got[name]
        assert float((s - s_ref).norm()) < 1e-12 * s_scale, name
        assert float((a - a_ref).norm()) < 1e-12 * a_scale, name
        assert relative_error(a, a_ref) < 1e-12, name
    if model == "attention" and approx == "reduce":
        assert float(expected["key"][0].norm()) < 1e-14 * s_scale
        assert float(expected["query"][0].norm()) > 1e-3 * s_scale
    for block in op.kronecker_factors():
        index = block.indices
        expected_block = torch.kron(block.left, block.right)
        assert relative_error(dense[index[:, None], index], expected_block) < 1e-13
    # on these models with shared positions the two approximations differ
    other = "reduce" if approx == "expand" else "expand"
    changed = ex.curvature("kfac", problem, theta, kfac_approx=other).dense()
    assert relative_error(changed, dense) > 1e-3


# ---------------------------------------------------------------- exactness
def _deep_linear(setting: str, kind: str) -> tuple[nn.Module, torch.Tensor, int]:
    """Deep linear networks with weight sharing, as in Eschenhagen et al. (2023) and
    curvlinops' tests: in the expand setting every shared position is its own
    output (and loss term), in the reduce setting positions are averaged before the
    output. Returns (model, inputs, number of outputs).
    """
    torch.manual_seed(5)
    if kind == "linear":  # inputs (N, R = 3, 3)
        layers = [nn.Linear(3, 4), nn.Linear(4, 4)]
        inputs = _randn(4, 3, 3)
        if setting == "expand":
            model = nn.Sequential(*layers, nn.Linear(4, 2), nn.Flatten())
            return model, inputs, 3 * 2
        return nn.Sequential(*layers, MeanOver(1), nn.Linear(4, 2)), inputs, 2
    inputs = _randn(3, 2, 4, 4)  # conv: R = 16 output locations
    conv = nn.Conv2d(2, 3, 3, padding=1)
    if setting == "expand":
        model = nn.Sequential(
            conv, nn.Flatten(2), Transpose(), nn.Linear(3, 2), nn.Flatten()
        )
        return model, inputs, 16 * 2
    pooled = (conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    return nn.Sequential(*pooled), inputs, 2


@pytest.mark.parametrize("separate", [False, True], ids=["joined", "separate"])
@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("setting", ["expand", "reduce"])
def test_exact_for_deep_linear_networks_in_their_setting(setting, kind, separate):
    """K-FAC-expand (-reduce) equals the exact GGN's blocks of a deep linear network
    with a Gaussian likelihood in the expand (reduce) setting; the other
    approximation does not.
    """
    model, inputs, outputs = _deep_linear(setting, kind)
    problem = _problem(model, inputs, GaussianLoss(outputs, sigma=0.7))
    theta = problem.theta0
    ggn = ggn_ref(problem, theta)
    op = ex.curvature(
        "kfac", problem, theta, kfac_approx=setting, separate_weight_and_bias=separate
    )
    dense = op.dense()
    spans = op.block_spans
    # every parameter lies in a block: one per layer, or one per weight and bias
    assert sum(s.stop - s.start for s in spans) == problem.num_params
    assert len(spans) == len(op.layers) * (2 if separate else 1)
    mask = torch.zeros_like(dense, dtype=torch.bool)
    for span in spans:
        mask[span, span] = True
        assert relative_error(dense[span, span], ggn[span, span]) < 1e-10, span
    assert torch.count_nonzero(dense[~mask]) == 0
    other = "reduce" if setting == "expand" else "expand"
    wrong = ex.curvature("kfac", problem, theta, kfac_approx=other).dense()
    worst = max(relative_error(wrong[s, s], ggn[s, s]) for s in spans)
    assert worst > 1e-2


# ----------------------------------------------------------------- coverage
class TokenModel(nn.Module):
    """Embedding, LayerNorm, a position-wise Linear (weight sharing over the
    tokens), a mean over tokens and a Linear read-out: int64 inputs (N, L).
    """

    def __init__(self, vocabulary=5, width=3, classes=3):
        super().__init__()
        self.embed = nn.Embedding(vocabulary, width)
        self.norm = nn.LayerNorm(width)
        self.mix = nn.Linear(width, width)
        self.head = nn.Linear(width, classes)

    def forward(self, tokens):
        hidden = torch.tanh(self.mix(self.norm(self.embed(tokens))))
        return self.head(hidden.mean(1))


def _token_problem():
    torch.manual_seed(6)
    tokens = torch.randint(0, 5, (6, 4), generator=_generator(3))
    return _classification(TokenModel(), tokens, 3)


def _check_against_dense(op, uncovered):
    """Every method agrees with the dense matrix; ``uncovered`` (P,) bool rows and
    columns are zero and solved by b/λ.
    """
    size = op.size
    dense = op.dense()
    v = _randn(size, seed=5)
    block = _randn(size, 3, seed=6)
    assert relative_error(dense, dense.T) < 1e-14
    assert float(torch.linalg.eigvalsh(dense)[0]) > -1e-12 * float(dense.abs().max())
    assert relative_error(op.matvec(v), dense @ v) < 1e-13
    assert relative_error(op.matmat(block), dense @ block) < 1e-13
    assert relative_error(op.diag(), dense.diagonal()) < 1e-13
    assert torch.count_nonzero(dense[uncovered]) == 0
    assert torch.count_nonzero(dense[:, uncovered]) == 0
    # the blocks tile θ; each Kronecker block is one of them, the rest are zero
    spans = [(span.start, span.stop) for span in op.block_spans]
    assert [a for a, _ in spans] == [0] + [b for _, b in spans[:-1]]
    assert spans[-1][1] == size
    kept = torch.zeros(size, dtype=torch.bool)
    for factors in op.kronecker_factors():
        index = factors.indices
        assert (int(index.min()), int(index.max()) + 1) in spans
        assert sorted(index.tolist()) == list(range(index.min(), index.max() + 1))
        expected = torch.kron(factors.left, factors.right)
        assert relative_error(dense[index[:, None], index], expected) < 1e-13
        kept[index] = True
    assert torch.equal(kept, ~uncovered)
    mask = torch.zeros(size, size, dtype=torch.bool)
    for span in op.block_spans:
        mask[span, span] = True
    assert torch.count_nonzero(dense[~mask]) == 0
    damping = 0.1
    exact = ex.curvature(
        "kfac", op.problem, op.theta, damping_mode="exact", **_options(op)
    )
    x = exact.solve(v, damping)
    assert relative_error(dense @ x + damping * x, v) < 1e-10
    # factored damping: (S + √λ/π I)⁻¹ V̄ (A + π√λ I)⁻¹ on each block, b/λ elsewhere
    y = op.solve(v, damping)
    assert torch.equal(y[uncovered], v[uncovered] / damping)
    for index, factors in enumerate(op.kronecker_factors()):
        s, a = factors.left, factors.right
        a_damp, s_damp = op.factored_damping(index, damping)
        rhs = v[factors.indices].view(len(s), len(a))
        expected = torch.linalg.solve(s + s_damp * torch.eye(len(s), dtype=DTYPE), rhs)
        expected = torch.linalg.solve(
            a + a_damp * torch.eye(len(a), dtype=DTYPE), expected.T
        ).T
        assert relative_error(y[factors.indices], expected.reshape(-1)) < 1e-10
    assert (
        relative_error(op.solve(block, damping)[:, 1], op.solve(block[:, 1], damping))
        < 1e-14
    )
    return dense


def _options(op):
    return {
        key: op.options[key]
        for key in ("output_factor", "kfac_approx", "separate_weight_and_bias")
    }


@pytest.mark.parametrize("separate", [False, True], ids=["joined", "separate"])
def test_layernorm_and_embedding_are_not_covered(separate):
    problem = _token_problem()
    theta = problem.theta0 + 0.2 * _randn(problem.num_params, seed=4)
    op = ex.curvature("kfac", problem, theta, separate_weight_and_bias=separate)
    coverage = op.coverage()
    assert coverage == {
        "embed.weight": "none",
        "norm.weight": "none",
        "norm.bias": "none",
        "mix.weight": "kronecker",
        "mix.bias": "kronecker",
        "head.weight": "kronecker",
        "head.bias": "kronecker",
    }
    spans = dict(problem.blocks())
    uncovered = torch.zeros(problem.num_params, dtype=torch.bool)
    uncovered[spans["embed"]] = uncovered[spans["norm"]] = True
    dense = _check_against_dense(op, uncovered)
    assert float(dense[spans["mix"], spans["mix"]].abs().max()) > 1e-3
    if not separate:  # the blocks are the modules', zero for the uncovered ones
        assert op.block_spans == tuple(spans.values())
    # at λ = 0 the zero rows make the system singular
    for mode in ("factored", "exact"):
        singular = ex.curvature("kfac", problem, theta, damping_mode=mode)
        with pytest.raises(IndefiniteCurvatureError):
            singular.solve(torch.ones(problem.num_params, dtype=DTYPE), 0.0)


def _tied_problem(model, inputs, classes):
    """A problem on a model with a tied weight, assembled field by field
    (``problem_from_model`` lists ``nn.Linear`` layers by parameter name, and a
    tied weight has only its first name).
    """
    names = tuple(name for name, _ in model.named_parameters())
    shapes = tuple(tuple(p.shape) for p in model.parameters())
    theta0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    targets = torch.randint(0, classes, (len(inputs),), generator=_generator(9))
    return Problem(
        key="tied", label="tied", loss=CategoricalLoss(classes), theta0=theta0,
        inputs=inputs, targets=targets,
        predict_fn=module_predict_fn(model, names, shapes), param_names=names,
        param_shapes=shapes, model=model,
    )  # fmt: skip


def test_grouped_convolutions_and_tied_weights_are_not_covered():
    torch.manual_seed(7)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, groups=2),
        nn.Tanh(),
        nn.Conv2d(4, 2, 1),
        nn.Flatten(),
        nn.Linear(8, 2),
    )
    problem = _classification(model, _randn(4, 2, 4, 4), 2)
    op = ex.curvature("kfac", problem, problem.theta0)
    assert op.coverage() == {
        "0.weight": "none",
        "0.bias": "none",
        "2.weight": "kronecker",
        "2.bias": "kronecker",
        "4.weight": "kronecker",
        "4.bias": "kronecker",
    }
    uncovered = torch.zeros(problem.num_params, dtype=torch.bool)
    uncovered[: 4 * 1 * 9 + 4] = True  # kernel (4, 2 / groups, 3, 3) and bias
    _check_against_dense(op, uncovered)
    # a weight held by two modules: neither use alone is its block
    tied = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 3), nn.Linear(3, 2))
    tied[2].weight = tied[0].weight
    problem = _tied_problem(Wrapped(tied).to(DTYPE), _randn(5, 3), 2)
    op = ex.curvature("kfac", problem, problem.theta0)
    assert problem.param_names == (
        "inner.0.weight", "inner.0.bias", "inner.2.bias", "inner.3.weight",
        "inner.3.bias",
    )  # fmt: skip
    assert op.coverage() == {
        "inner.0.weight": "none",
        "inner.0.bias": "none",
        "inner.2.bias": "none",
        "inner.3.weight": "kronecker",
        "inner.3.bias": "kronecker",
    }
    uncovered = torch.ones(problem.num_params, dtype=torch.bool)
    uncovered[-8:] = False
    _check_against_dense(op, uncovered)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
def test_every_method_agrees_with_the_dense_matrix_on_conv_and_attention():
    torch.manual_seed(8)
    conv = _classification(conv_net(), _randn(4, 2, 5, 5), 3)
    attention = _classification(Attention(), _randn(4, 3, 4), 3)
    for problem in (conv, attention):
        for options in (
            {},
            {"kfac_approx": "reduce", "separate_weight_and_bias": True},
            {"output_factor": "empirical"},
        ):
            op = ex.curvature("kfac", problem, problem.theta0, **options)
            none = torch.zeros(problem.num_params, dtype=torch.bool)
            _check_against_dense(op, none)


# ---------------------------------------------------------------- semantics
@pytest.mark.parametrize("output_factor", ["exact", "mc", "empirical"])
def test_generic_path_on_an_mlp_equals_the_fast_path(output_factor):
    torch.manual_seed(9)
    mlp = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4))
    inputs = _randn(7, 3)
    fast = _classification(mlp, inputs, 4)
    generic = _classification(Wrapped(copy.deepcopy(mlp)), inputs, 4)
    assert torch.equal(fast.theta0, generic.theta0)
    for approx in ("expand", "reduce"):
        for separate in (False, True):
            options = dict(
                output_factor=output_factor, mc_samples=3, kfac_approx=approx,
                separate_weight_and_bias=separate,
            )  # fmt: skip
            a = ex.curvature(
                "kfac", fast, fast.theta0, generator=_generator(), **options
            )
            b = ex.curvature(
                "kfac", generic, generic.theta0, generator=_generator(), **options
            )
            assert relative_error(b.dense(), a.dense()) < 1e-13
    # separate blocks are the joined ones without the weight-bias interactions
    joined = ex.curvature("kfac", fast, fast.theta0, output_factor=output_factor)
    split = ex.curvature(
        "kfac", fast, fast.theta0, output_factor=output_factor,
        separate_weight_and_bias=True,
    )  # fmt: skip
    mask = torch.zeros(fast.num_params, fast.num_params, dtype=torch.bool)
    for span in split.block_spans:
        mask[span, span] = True
    assert torch.equal(split.dense(), torch.where(mask, joined.dense(), 0.0))
    assert torch.count_nonzero(joined.dense()[~mask]) > 0


def test_a_layer_called_twice_shares_its_weight_over_both_calls():
    """Two calls of one Linear on the halves of the input are one weight-shared
    layer over the concatenated positions: the same K-FAC as a single call on the
    stacked (N, 2, D) input, in both approximations.
    """

    class TwoCalls(nn.Module):
        def __init__(self):
            super().__init__()
            self.shared = nn.Linear(3, 4)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            first, second = self.shared(x[:, 0]), self.shared(x[:, 1])
            return self.head(torch.tanh(first) + torch.tanh(second))

    class Stacked(TwoCalls):
        def forward(self, x):
            return self.head(torch.tanh(self.shared(x)).sum(1))

    torch.manual_seed(10)
    inputs = _randn(6, 2, 3)
    twice = _classification(TwoCalls(), inputs, 2)
    torch.manual_seed(10)
    stacked = _classification(Stacked(), inputs, 2)
    assert torch.equal(twice.theta0, stacked.theta0)
    for approx in ("expand", "reduce"):
        a = ex.curvature("kfac", twice, twice.theta0, kfac_approx=approx).dense()
        b = ex.curvature("kfac", stacked, stacked.theta0, kfac_approx=approx).dense()
        assert relative_error(a, b) < 1e-13


def test_in_place_activations_do_not_change_the_factors():
    torch.manual_seed(11)
    plain = nn.Sequential(
        nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 2)
    )
    inplace = copy.deepcopy(plain)
    inplace[1].inplace = inplace[3].inplace = True
    inputs = _randn(8, 3)
    a = _classification(Wrapped(plain), inputs, 2)
    b = _classification(Wrapped(inplace), inputs, 2)
    dense_a = ex.curvature("kfac", a, a.theta0).dense()
    dense_b = ex.curvature("kfac", b, b.theta0).dense()
    assert relative_error(dense_b, dense_a) < 1e-14
    assert float(dense_a.abs().max()) > 1e-3


def test_without_vmap_the_backward_passes_loop_to_the_same_factors(monkeypatch):
    """Where ``is_grads_batched`` fails on some operation of a model, K separate
    backward passes give the same numbers.
    """
    torch.manual_seed(12)
    problem = _classification(Attention(), _randn(4, 3, 4), 3)
    batched = ex.curvature("kfac", problem, problem.theta0).dense()
    original = torch.autograd.grad
    calls = []

    def no_vmap(*args, **kwargs):
        calls.append(bool(kwargs.get("is_grads_batched")))
        if kwargs.get("is_grads_batched"):
            raise RuntimeError("vmap: no batching rule (simulated)")
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", no_vmap)
    looped = ex.curvature("kfac", problem, problem.theta0).dense()
    assert calls == [True, False, False, False]  # K = 3 classes
    assert relative_error(looped, batched) < 1e-14


def test_the_shared_model_is_left_untouched():
    problem = _token_problem()
    model = problem.model
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    ex.curvature("kfac", problem, problem.theta0 + 1.0)
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]) and isinstance(param, nn.Parameter)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
def test_concurrent_builds_on_one_shared_problem_agree():
    """Operators built in threads while others run the shared model's predict_fn
    with other parameters: every build equals the sequential one.
    """
    problem = _classification(conv_net(), _randn(4, 2, 5, 5), 3)
    points = [problem.theta0 + 0.1 * k * _randn(problem.num_params) for k in range(4)]
    expected = [ex.curvature("kfac", problem, t).dense() for t in points]

    def build(k):
        problem.predict(points[(k + 1) % 4])  # swaps other θ into the shared model
        return ex.curvature("kfac", problem, points[k % 4]).dense()

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(build, range(12)))
    for k, dense in enumerate(results):
        assert torch.equal(dense, expected[k % 4])


# ------------------------------------------------------------------- errors
def test_bad_option_values_raise_value_errors():
    problem = _token_problem()
    spec = ex.CURVATURES["kfac"]
    with pytest.raises(ValueError, match="kfac_approx.*'expand', 'reduce'"):
        ex.curvature("kfac", problem, problem.theta0, kfac_approx="sum")
    with pytest.raises(ValueError, match="separate_weight_and_bias.*true or false"):
        ex.curvature("kfac", problem, problem.theta0, separate_weight_and_bias="maybe")
    with pytest.raises(ValueError, match="kfac_approx"):
        spec.tags(problem, {"kfac_approx": "Expand"})
    defaults = {option.name: option.default for option in spec.options}
    assert defaults["kfac_approx"] == "expand"
    assert defaults["separate_weight_and_bias"] is False


def test_problems_without_supported_layers_are_refused_with_the_remedy():
    spec = ex.CURVATURES["kfac"]
    rosenbrock = ex.problem("rosenbrock")
    reason = spec.incompatibility(rosenbrock)
    assert "nn.Linear or nn.Conv2d" in reason and "no nn.Module model" in reason
    assert "Use 'fisher', 'ggn' or a diagonal approximation instead." in reason
    norm_only = _problem(nn.Sequential(nn.LayerNorm(3)), _randn(4, 3), GaussianLoss(3))
    reason = spec.incompatibility(norm_only)
    assert reason is not None and "a model (Sequential) without one" in reason
    with pytest.raises(ValueError, match="Use 'fisher'"):
        ex.curvature("kfac", norm_only, norm_only.theta0)
    grouped = nn.Sequential(nn.Conv2d(2, 2, 1, groups=2), nn.Flatten())
    grouped_problem = _problem(grouped, _randn(3, 2, 1, 1), GaussianLoss(2))
    assert spec.incompatibility(grouped_problem) is not None


def test_layers_that_are_not_batch_first_are_refused():
    class SequenceFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.mix = nn.Linear(3, 3)

        def forward(self, x):  # (N, L, D) -> (L, N, D) through the layer
            return self.mix(x.transpose(0, 1)).transpose(0, 1).mean(1)

    problem = _problem(SequenceFirst(), _randn(4, 2, 3), GaussianLoss(3))
    with pytest.raises(ValueError, match="batch-first.*shape \\(2, 4, 3\\).*N = 4"):
        ex.curvature("kfac", problem, problem.theta0)


def test_a_layer_never_called_as_a_module_is_refused_when_it_is_the_only_one():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(3, 2)

        def forward(self, x):
            return F.linear(x, self.layer.weight, self.layer.bias)

    problem = _problem(Functional(), _randn(4, 3), GaussianLoss(2))
    with pytest.raises(ValueError, match="no nn.Linear or nn.Conv2d layer called"):
        ex.curvature("kfac", problem, problem.theta0)
    # the only layer's weight is tied to a bare parameter of the model
    tied = Wrapped(nn.Linear(3, 2)).to(DTYPE)
    tied.shared = tied.inner.weight
    problem = _tied_problem(tied, _randn(4, 3), 2)
    with pytest.raises(ValueError, match="that owns its parameters in θ"):
        ex.curvature("kfac", problem, problem.theta0)
