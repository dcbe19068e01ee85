"""Every built-in curvature against a brute-force float64 reference, to 1e-10 relative.

The curvature keys come from ``explorer.CURVATURES`` (built-in, selectable) and the
cases from the problem registry (``tests/cases.py``). A built-in curvature without
a reference fails ``test_every_builtin_curvature_has_a_reference`` unless
``NO_REFERENCE`` states why it cannot have one.

The references are those of ``tests/references.py`` (autograd, enumeration over
classes, quadrature), composed here where a curvature is a structured or sampled
form of one: ``diag_<base>`` and ``block_<base>`` keep the entries of the
brute-force ``<base>`` (their ``base_key``) on their declared structure;
``fisher_mc`` is the empirical Fisher of targets drawn from the model with the same
generator; ``kfac`` is built layer by layer from autograd through the network's
tail and the enumerated output Fisher.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.func import jacrev, vmap

import explorer as ex
from explorer.curvature.mlp import mlp_layers
from explorer.problems.base import Batch, Problem
from tests.cases import CASES, by_name, ids
from tests.diagonal_references import gnb_ref, hutchinson_ref
from tests.references import (
    REFERENCES,
    ef_ref,
    full,
    output_fisher_ref,
    relative_error,
    shampoo_ref,
)

TOLERANCE = 1e-10
GENERATOR_SEED = 11

#: Built-in curvatures that cannot have a brute-force reference here, with the reason.
NO_REFERENCE: dict[str, str] = {
    "ekfac": "EKFAC's eigenbasis is K-FAC's, unique only where K-FAC's factors have "
    "distinct eigenvalues: tests/curvature/test_ekfac.py checks it block by block "
    "against diag(Qᵀ F Q) of the brute-force Fisher and against curvlinops' "
    "EKFACLinearOperator",
}

BUILTIN = [
    key
    for key, spec in ex.CURVATURES.items()
    if spec.selectable and spec.source == "builtin"
]

Reference = Callable[..., torch.Tensor]  # (problem, theta, batch, generator) -> (P, P)


# ------------------------------------------------------------ composed references
def fisher_mc_ref(problem: Problem, theta, batch=None, generator=None, samples=1):
    """(1/k) Σ_s EF(ŷ_s): per-example gradients at targets ŷ_s ~ R(·|z) (brute force).

    Draws with ``problem.loss.sample`` in the operator's order, so the same generator
    gives the same targets; the gradients are autograd's (``ef_ref``).
    """
    batch = full(problem, batch)
    outputs = problem.predict(theta, batch.inputs)
    total = 0
    for _ in range(samples):
        sampled = problem.loss.sample(outputs, generator)
        total = total + ef_ref(problem, theta, Batch(batch.inputs, sampled))
    return total / samples


def _forward(modules, params, start, a):
    """Runs ``modules[start:]`` on ``a`` with linear parameters from ``params``."""
    for index in range(start, len(modules)):
        module = modules[index]
        if isinstance(module, nn.Linear):
            weight, bias = params[index]
            a = torch.nn.functional.linear(a, weight, bias)
        else:
            a = module(a)
    return a


def kfac_ref(problem: Problem, theta, batch=None):
    """Σ_l kron(S_l, A_l) on each layer's block, zero across layers (brute force).

    A_l = (1/N) Σ_n ā_n ā_nᵀ with ā = [a; 1] the layer's input (with a 1 when it has
    a bias); S_l = (1/N) Σ_n J_nᵀ F_R(z_n) J_n with J_n = ∂z_n/∂s_n the Jacobian of
    the outputs in the layer's pre-activation (autograd through the tail) and F_R by
    enumeration or quadrature. Rows of the block follow V̄ = [W, b] row-major.
    """
    batch = full(problem, batch)
    model = problem.model
    modules = [model] if isinstance(model, nn.Linear) else list(model)
    linear_positions = [i for i, m in enumerate(modules) if isinstance(m, nn.Linear)]
    assert len(linear_positions) == len(problem.layers)
    params = {}
    for position, layer in zip(linear_positions, problem.layers, strict=True):
        weight = theta[layer.weight].view(layer.out_features, layer.in_features)
        bias = None if layer.bias is None else theta[layer.bias]
        params[position] = (weight, bias)
    n = batch.size
    dense = torch.zeros(problem.num_params, problem.num_params, dtype=theta.dtype)
    outputs = _forward(modules, params, 0, batch.inputs)
    assert relative_error(outputs, problem.predict(theta, batch.inputs)) < 1e-13
    fisher_out = output_fisher_ref(problem, outputs)
    for position, layer in zip(linear_positions, problem.layers, strict=True):
        a = _forward(modules[:position], params, 0, batch.inputs)
        weight, bias = params[position]
        s = torch.nn.functional.linear(a, weight, bias)

        def tail(s_row, position=position):
            return _forward(modules, params, position + 1, s_row.unsqueeze(0))[0]

        jac = vmap(jacrev(tail))(s)  # (N, C, out)
        big_s = torch.einsum("nco,ncd,ndq->oq", jac, fisher_out, jac) / n
        a_bar = a if bias is None else torch.cat([a, torch.ones_like(a[:, :1])], 1)
        big_a = a_bar.T @ a_bar / n
        order = []
        for o in range(layer.out_features):
            start = layer.weight.start + o * layer.in_features
            order.extend(range(start, start + layer.in_features))
            if layer.bias is not None:
                order.append(layer.bias.start + o)
        index = torch.tensor(order)
        dense[index[:, None], index[None, :]] = torch.kron(
            big_s.contiguous(), big_a.contiguous()
        )
    return dense


#: References composed here from those of tests/references.py, with the case's
#: generator for the sampled ones.
COMPOSED: dict[str, Reference] = {
    "fisher_mc": lambda problem, theta, batch, generator: fisher_mc_ref(
        problem, theta, batch, generator
    ),
    "kfac": lambda problem, theta, batch, generator: kfac_ref(problem, theta, batch),
    "shampoo": lambda problem, theta, batch, generator: shampoo_ref(
        problem, theta, batch
    ),
    "sophia_gnb": gnb_ref,
    "adahessian": hutchinson_ref,
}


def structure_mask(problem: Problem, key: str) -> torch.Tensor | None:
    """Where curvature ``key`` may be non-zero by its declared tags (None: anywhere).

    ``diagonal``: the diagonal; ``block_diagonal`` (also K-FAC's ``kronecker``): the
    blocks of ``problem.blocks()``, one per layer or parameter tensor.
    """
    tags = ex.CURVATURES[key].tags(problem)
    size = problem.num_params
    if tags.diagonal:
        return torch.eye(size, dtype=torch.bool)
    if tags.block_diagonal:
        mask = torch.zeros(size, size, dtype=torch.bool)
        for _, span in problem.blocks():
            mask[span, span] = True
        return mask
    return None


def reference_for(key: str) -> Reference | None:
    """The brute-force reference of curvature ``key`` (None when there is none)."""
    if key in REFERENCES:
        exact = REFERENCES[key]
        return lambda problem, theta, batch, generator: exact(problem, theta, batch)
    if key in COMPOSED:
        return COMPOSED[key]
    base_key = getattr(ex.CURVATURES[key].build, "base_key", "")
    if base_key:  # diag_<base>, block_<base>: the base's entries on the structure
        base = reference_for(base_key)
        if base is None:
            return None

        def structured(problem, theta, batch, generator):
            mask = structure_mask(problem, key)
            assert mask is not None, (
                f"{key} restricts {base_key} but declares no diagonal or "
                "block_diagonal structure"
            )
            return torch.where(mask, base(problem, theta, batch, generator), 0.0)

        return structured
    return None


def unsupported(key: str, problem: Problem) -> str | None:
    """Why curvature ``key`` cannot be built on ``problem`` (None: it can)."""
    return ex.CURVATURES[key].incompatibility(problem)


def _generator():
    return torch.Generator().manual_seed(GENERATOR_SEED)


# ------------------------------------------------------------------------ tests
def test_every_builtin_curvature_has_a_reference():
    missing = [
        key for key in BUILTIN if reference_for(key) is None and key not in NO_REFERENCE
    ]
    assert missing == [], (
        f"built-in curvatures without a brute-force reference: {missing}; add one to "
        "tests/references.py (or compose one here), or state in NO_REFERENCE why "
        "none can exist"
    )
    assert all(NO_REFERENCE.values()), "every NO_REFERENCE entry states a reason"
    assert set(NO_REFERENCE) <= set(BUILTIN), set(NO_REFERENCE) - set(BUILTIN)
    # the references table itself names only registered curvatures
    assert set(REFERENCES) <= set(ex.CURVATURES), set(REFERENCES) - set(ex.CURVATURES)


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
@pytest.mark.parametrize("key", BUILTIN)
def test_dense_matches_reference(case, key):
    if key in NO_REFERENCE:
        pytest.skip(NO_REFERENCE[key])
    problem, theta, batch = case.build()
    reason = unsupported(key, problem)
    if reason is not None:
        pytest.skip(reason)
    if key == "kfac" and mlp_layers(problem) is None:
        pytest.skip(
            "kfac_ref is the MLP brute force; K-FAC on conv and attention layers is "
            "checked against torch.func factors and curvlinops in "
            "tests/curvature/test_kfac_modules.py and test_kfac_curvlinops.py"
        )
    operator = ex.curvature(key, problem, theta, batch=batch, generator=_generator())
    expected = reference_for(key)(problem, theta, batch, _generator())
    assert relative_error(operator.dense(), expected) < TOLERANCE
    v = torch.randn(
        problem.num_params,
        generator=torch.Generator().manual_seed(3),
        dtype=theta.dtype,
    )
    assert relative_error(operator.matvec(v), expected @ v) < TOLERANCE
    assert relative_error(operator.diag(), expected.diagonal()) < TOLERANCE


#: Curvatures that declare a structure (diagonal or block-diagonal).
STRUCTURED = [key for key in BUILTIN if ex.CURVATURES[key].tags().block_diagonal]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
@pytest.mark.parametrize("key", STRUCTURED)
def test_declared_structure_is_exactly_zero_elsewhere(case, key):
    problem, theta, batch = case.build()
    reason = unsupported(key, problem)
    if reason is not None:
        pytest.skip(reason)
    dense = ex.curvature(key, problem, theta, batch=batch).dense()
    mask = structure_mask(problem, key)
    if ex.CURVATURES[key].tags(problem).diagonal:
        pieces = [1] * problem.num_params
    else:
        pieces = [span.stop - span.start for _, span in problem.blocks()]
    # the mask is the structure: square pieces tiling the diagonal, so something is
    # left out exactly when there is more than one piece
    assert mask.diagonal().all() and int(mask.sum()) == sum(p * p for p in pieces)
    assert bool((~mask).any()) == (len(pieces) > 1), (key, pieces)
    off = dense[~mask]
    assert torch.equal(off, torch.zeros_like(off)), float(off.abs().max())


def test_the_structured_keys_are_found():
    expected = {"diag_ggn", "diag_hessian", "block_ggn", "block_fisher", "kfac"}
    assert expected <= set(STRUCTURED)
    assert any(len(case.build()[0].blocks()) > 1 for case in CASES)


def test_float32_agrees_with_float64_reference():
    case = by_name("digits_tanh")
    problem64, theta64, _ = case.build(torch.float64)
    problem32, theta32, _ = case.build(torch.float32)
    expected = REFERENCES["ggn"](problem64, theta64)
    actual = ex.curvature("ggn", problem32, theta32).dense().double()
    assert relative_error(actual, expected) < 1e-5
