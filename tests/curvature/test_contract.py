"""Contract tests run over every registered curvature on every small case.

What each curvature declares (its tags on that problem and options) is checked
against the matrix itself: products against the dense matrix, symmetry, PSD by the
eigenvalues, diagonal and block-diagonal by the exact zero pattern, Kronecker
structure by the factors, the damped solve against (C + λI) wherever the tags say
it is exact (and away from it where they say it is not), and sampling by whether
another generator changes the matrix. A case is skipped exactly when the spec's
``incompatibility`` says the curvature cannot be built there, and then building
it must fail with that very message.
"""

import re

import pytest
import torch

import explorer as ex
from explorer.curvature import base as curvature_base
from explorer.curvature.linearization import FunctionalLinearization
from explorer.curvature.mlp import MLPForward, mlp_layers
from explorer.curvature.tags import Tags
from tests.cases import CASES, ids
from tests.references import relative_error

SELECTABLE = [key for key, spec in ex.CURVATURES.items() if spec.selectable]

#: (key, options) for every non-default choice of every selectable curvature's
#: options: structure can depend on them (K-FAC's damping mode, sampled factors).
VARIANTS = [
    (key, {option.name: choice})
    for key in SELECTABLE
    for option in ex.CURVATURES[key].options
    for choice in option.choices or ()
    if choice != option.default
]


def _generator(seed=11):
    return torch.Generator().manual_seed(seed)


def _build(key, case, options=None, seed=11):
    problem, theta, batch = case.build()
    options = dict(options or {})
    spec = ex.CURVATURES[key]
    reason = spec.incompatibility(problem, options)
    if reason is not None:
        with pytest.raises(ValueError, match=re.escape(reason)):
            spec.build(problem, theta, batch=batch, **options)
        pytest.skip(reason)
    operator = ex.curvature(
        key, problem, theta, batch=batch, generator=_generator(seed), **options
    )
    return problem, theta, batch, operator


def _assert_structure(problem, operator, dense, tags):
    size = problem.num_params
    if tags.diagonal:
        off = dense - torch.diag(dense.diagonal())
        assert torch.count_nonzero(off) == 0, float(off.abs().max())
    if tags.block_diagonal:
        spans = operator.block_spans
        assert spans, "declared block-diagonal without blocks"
        mask = torch.zeros(size, size, dtype=torch.bool)
        for span in spans:
            mask[span, span] = True
        assert torch.count_nonzero(dense[~mask]) == 0, float(dense[~mask].abs().max())
        assert [(s.start, s.stop) for s in spans] == [
            (s.start, s.stop) for _, s in problem.blocks()
        ]
    if tags.kronecker:
        # each factor is one block; a block without factors (parameters K-FAC
        # does not cover) is zero
        spans = {(s.start, s.stop): s for s in operator.block_spans}
        factored = set()
        for block in operator.kronecker_factors():
            index = block.indices
            key = (int(index.min()), int(index.max()) + 1)
            assert key in spans and key not in factored
            assert sorted(index.tolist()) == list(range(*key))
            factored.add(key)
            expected = torch.kron(block.left, block.right)
            assert relative_error(dense[index[:, None], index[None, :]], expected) < (
                1e-12
            )
        for key, span in spans.items():
            if key not in factored:
                assert torch.count_nonzero(dense[span, span]) == 0


def _check(problem, theta, operator, tags):
    size = problem.num_params
    dense = operator.dense()
    assert dense.shape == (size, size) and dense.dtype == theta.dtype
    generator = _generator(5)
    v = torch.randn(size, generator=generator, dtype=theta.dtype)
    block = torch.randn(size, 3, generator=generator, dtype=theta.dtype)
    # products agree with the dense matrix
    assert relative_error(operator.matvec(v), dense @ v) < 1e-12
    assert relative_error(operator.matmat(block), dense @ block) < 1e-12
    assert relative_error(operator.diag(), dense.diagonal()) < 1e-12
    # declared structure holds
    assert tags.symmetric, "every built-in curvature is declared symmetric"
    assert relative_error(dense, dense.T) < 1e-12
    eigenvalues = torch.linalg.eigvalsh(dense)
    if tags.psd:
        assert eigenvalues[0] >= -1e-10 * max(1.0, float(eigenvalues[-1].abs()))
    _assert_structure(problem, operator, dense, tags)
    # (C + λI) solve(b) = b with a damping that makes it positive definite, exactly
    # where declared; where not declared, the solve is really something else
    damping = max(0.0, -float(eigenvalues[0])) + 0.1 * max(
        1.0, float(eigenvalues.abs().max())
    )
    solution = operator.solve(v, damping)
    assert torch.isfinite(solution).all()
    error = relative_error(dense @ solution + damping * solution, v)
    if tags.exact_solve:
        assert error < 1e-8
    else:
        assert error > 1e-6
    several = operator.solve(block, damping)
    assert relative_error(several[:, 0], operator.solve(block[:, 0], damping)) < 1e-12
    return dense


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
@pytest.mark.parametrize("key", SELECTABLE)
def test_operator_contract(key, case):
    problem, theta, _, operator = _build(key, case)
    spec = ex.CURVATURES[key]
    tags = spec.tags(problem)
    # the spec and the instance answer from the same declaration
    assert operator.tags == tags
    assert (operator.psd, operator.exact) == (tags.psd, tags.exact)
    dense = _check(problem, theta, operator, tags)
    # determinism with a fixed generator; another generator matters exactly when
    # the curvature is declared sampled
    _, _, _, again = _build(key, case)
    assert torch.equal(again.dense(), dense)
    _, _, _, other = _build(key, case, seed=12)
    assert torch.equal(other.dense(), dense) is not tags.sampled


@pytest.mark.parametrize(
    ("key", "options"), VARIANTS, ids=[f"{k}-{o}" for k, o in VARIANTS]
)
def test_options_that_change_the_structure_are_declared(key, options):
    moons = next(case for case in CASES if case.key == "moons_mlp")
    problem, theta, _, operator = _build(key, moons, options)
    tags = ex.CURVATURES[key].tags(problem, options)
    assert operator.tags == tags
    _check(problem, theta, operator, tags)


def test_declarations_that_depend_on_the_problem():
    convex = ex.problem("linreg_2d", num_samples=20)
    nonconvex = ex.problem("linreg_2d", num_samples=20, loss="gaussian_tanh_mean")
    assert convex.loss.convex and not nonconvex.loss.convex
    for key in ("ggn", "diag_ggn", "block_ggn"):
        spec = ex.CURVATURES[key]
        assert spec.tags(convex).psd and not spec.tags(nonconvex).psd, key
        assert not spec.psd, f"{key} is not PSD on every problem"
    assert not ex.CURVATURES["diag_hessian"].psd
    assert ex.CURVATURES["diag_fisher"].psd and ex.CURVATURES["diag_fisher"].tags(
        convex
    ) == Tags(psd=True, diagonal=True, block_diagonal=True)
    kfac = ex.CURVATURES["kfac"]
    assert not kfac.tags().exact_solve
    assert kfac.tags(options={"damping_mode": "exact"}).exact_solve
    assert kfac.tags(options={"output_factor": "mc"}).sampled
    assert not kfac.tags().sampled and ex.CURVATURES["fisher_mc"].tags().sampled
    with pytest.raises(ValueError, match="damping_mode"):
        kfac.tags(options={"damping_mode": "typo"})
    # the user-supplied matrix declares what the user says
    matrix = ex.CURVATURES["matrix"]
    assert not matrix.tags().psd and matrix.tags(options={"psd": True}).psd
    eye = torch.eye(2, dtype=torch.float64)
    built = ex.curvature("matrix", convex, convex.theta0, matrix=eye, psd=True)
    assert built.psd and built.tags == matrix.tags(convex, {"psd": True})
    ones = torch.ones(2, dtype=torch.float64)
    assert relative_error(built.solve(ones, 1.0), ones / 2) < 1e-15  # (I + I)⁻¹ 1


def test_incompatibility_is_the_one_answer_for_layers():
    rosenbrock = ex.problem("rosenbrock")
    reason = ex.CURVATURES["kfac"].incompatibility(rosenbrock)
    assert reason is not None and "nn.Linear" in reason and "Use 'fisher'" in reason
    with pytest.raises(ValueError, match=re.escape(reason)):
        ex.curvature("kfac", rosenbrock, rosenbrock.theta0)
    assert ex.RULES["kfac"].incompatibility(rosenbrock) == reason
    assert (
        ex.RULES["precondition"].incompatibility(rosenbrock, {"curvature": "kfac"})
        == reason
    )
    for key in SELECTABLE:  # on a model without layers exactly the needy ones fail
        needy = bool(ex.CURVATURES[key].needs)
        assert (ex.CURVATURES[key].incompatibility(rosenbrock) is not None) is needy
    moons = ex.problem("moons_mlp", num_samples=20, hidden=(3,))
    assert ex.CURVATURES["kfac"].incompatibility(moons) is None
    assert ex.CURVATURES["kfac"].needs[0].name == "kfac_layers"


def test_kfac_solve_uses_factored_damping_and_exact_mode_inverts_exactly():
    problem = ex.problem("moons_mlp", num_samples=40, hidden=(5,))
    theta = problem.theta0
    b = torch.randn(
        problem.num_params,
        generator=torch.Generator().manual_seed(2),
        dtype=torch.float64,
    )
    exact = ex.curvature("kfac", problem, theta, damping_mode="exact")
    damping = 1e-2
    x = exact.solve(b, damping)
    assert relative_error(exact.matvec(x) + damping * x, b) < 1e-10
    factored = ex.curvature("kfac", problem, theta)
    y = factored.solve(b, damping)
    # reference: per layer (S + √λ/π I)⁻¹ V̄ (A + π√λ I)⁻¹
    for index, layer in enumerate(factored.layers):
        a, s = factored.input_factors[index], factored.output_factors[index]
        a_damp, s_damp = factored.factored_damping(index, damping)
        pi_squared = (a.trace() / len(a)) / (s.trace() / len(s))
        assert abs(a_damp / s_damp - float(pi_squared)) < 1e-10 * float(pi_squared)
        v_bar = torch.cat(
            [b[layer.weight].view(layer.out_features, -1), b[layer.bias].unsqueeze(1)],
            1,
        )
        expected = torch.linalg.solve(
            s + s_damp * torch.eye(len(s), dtype=s.dtype), v_bar
        )
        expected = torch.linalg.solve(
            a + a_damp * torch.eye(len(a), dtype=a.dtype), expected.T
        ).T
        got = torch.cat(
            [y[layer.weight].view(layer.out_features, -1), y[layer.bias].unsqueeze(1)],
            1,
        )
        assert relative_error(got, expected) < 1e-10


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c.key in ("digits_mlp", "moons_mlp")],
    ids=lambda c: c.name,
)
def test_mlp_fast_path_agrees_with_torch_func(case):
    problem, theta, _ = case.build()
    inputs = problem.inputs
    fast = MLPForward(mlp_layers(problem), theta, inputs)
    generic = FunctionalLinearization(problem, theta, inputs)
    generator = torch.Generator().manual_seed(0)
    rows = torch.randn(4, problem.num_params, generator=generator, dtype=theta.dtype)
    cotangents = torch.randn(
        4, *fast.outputs.shape, generator=generator, dtype=theta.dtype
    )
    assert relative_error(fast.outputs, generic.outputs) < 1e-13
    assert relative_error(fast.jvp(rows), generic.jvp(rows)) < 1e-12
    assert relative_error(fast.vjp(cotangents), generic.vjp(cotangents)) < 1e-12


def test_cg_path_solves_and_counts_products(monkeypatch):
    monkeypatch.setattr(curvature_base, "DENSE_SOLVE_MAX_PARAMS", 0)
    problem = ex.problem("moons_mlp", num_samples=40, hidden=(5,))
    operator = ex.curvature("ggn", problem, problem.theta0)
    b = torch.randn(
        problem.num_params,
        generator=torch.Generator().manual_seed(4),
        dtype=torch.float64,
    )
    before = operator.products
    x = operator.solve(b, 0.1, rtol=1e-12)
    assert operator.products > before
    dense = operator.dense()
    assert relative_error(dense @ x + 0.1 * x, b) < 1e-9


def test_products_are_counted():
    problem = ex.problem("linreg_2d")
    operator = ex.curvature("ggn", problem, problem.theta0)
    operator.matvec(torch.ones(2, dtype=torch.float64))
    operator.matmat(torch.ones(2, 3, dtype=torch.float64))
    assert operator.products == 4
