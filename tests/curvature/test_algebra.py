"""The operator algebra against dense torch references, and the tags it declares.

Every product, dense matrix, diagonal and solve is compared with the same
computation on plain (P, P) tensors in float64; every declared tag is checked on
the result's matrix (eigenvalues for PSD, the zero pattern for structure).
"""

import pytest
import torch

import explorer as ex
from explorer.curvature.algebra import (
    BlockDiagonalMatrixOperator,
    DenseOperator,
    DiagonalMatrixOperator,
    MatvecOperator,
    RestrictedOperator,
    ScaledOperator,
    SumOperator,
    add,
    combine,
    restrict,
    scale,
)
from explorer.curvature.base import CurvatureOperator, LinearOperator
from explorer.curvature.tags import Tags
from explorer.optimizers.ema import ema_combine, ema_incompatibility
from tests.references import relative_error

P = 7
SPANS = (slice(0, 3), slice(3, 5), slice(5, 7))


def _random(shape, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=torch.float64)


def _psd(size=P, seed=0, rank=None):
    factor = _random((size, rank or size), seed)
    return factor @ factor.T


def _indefinite(size=P, seed=1):
    matrix = _random((size, size), seed)
    return matrix + matrix.T


def _blocks(seed=2):
    return [_psd(s.stop - s.start, seed + i) for i, s in enumerate(SPANS)]


def _block_matrix(blocks):
    return torch.block_diag(*blocks)


def _assert_matches(op, matrix, seed=5):
    """Every product of ``op`` equals the same product of ``matrix``."""
    v, block = _random((op.size,), seed), _random((op.size, 3), seed + 1)
    assert op.dense().shape == matrix.shape
    assert relative_error(op.dense(), matrix) < 1e-14
    assert relative_error(op.matvec(v), matrix @ v) < 1e-14
    assert relative_error(op.matmat(block), matrix @ block) < 1e-14
    assert relative_error(op.diag(), matrix.diagonal()) < 1e-14


def _assert_solves(op, matrix, damping, seed=7):
    eye = torch.eye(op.size, dtype=torch.float64)
    rhs, several = _random((op.size,), seed), _random((op.size, 2), seed + 1)
    expected = torch.linalg.solve(matrix + damping * eye, rhs)
    assert relative_error(op.solve(rhs, damping), expected) < 1e-10
    expected = torch.linalg.solve(matrix + damping * eye, several)
    assert relative_error(op.solve(several, damping), expected) < 1e-10


def _assert_tags_hold(op, matrix):
    """What ``op.tags`` declares is true of ``matrix``."""
    tags = op.tags
    if tags.symmetric:
        assert torch.equal(matrix, matrix.T) or relative_error(matrix, matrix.T) < 1e-15
    if tags.psd:
        values = torch.linalg.eigvalsh(0.5 * (matrix + matrix.T))
        assert values[0] >= -1e-12 * max(1.0, float(values.abs().max()))
    if tags.diagonal:
        assert torch.count_nonzero(matrix - torch.diag(matrix.diagonal())) == 0
    if tags.block_diagonal:
        mask = torch.zeros_like(matrix, dtype=torch.bool)
        for span in op.block_spans:
            mask[span, span] = True
        assert torch.count_nonzero(matrix[~mask]) == 0


# ------------------------------------------------------------------ leaves
def test_dense_operator_symmetrizes_and_caches_its_factor_per_damping():
    raw = _psd() + 0.3 * _random((P, P), 9)  # not symmetric
    op = DenseOperator(raw, key="A", psd=False)
    symmetric = 0.5 * (raw + raw.T)
    _assert_matches(op, symmetric)
    assert op.tags == Tags(symmetric=True, exact=True) and op.has_dense
    damping = 1.0 + float(torch.linalg.eigvalsh(symmetric)[0].abs())
    _assert_solves(op, symmetric, damping)
    factor = op._factor_cache[1]
    op.solve(_random((P,), 3), damping)
    assert op._factor_cache[1] is factor  # factorized once per λ
    op.solve(_random((P,), 3), damping + 1.0)
    assert op._factor_cache[1] is not factor
    as_given = DenseOperator(raw, symmetrize=False)
    assert torch.equal(as_given.dense(), raw) and not as_given.tags.symmetric
    with pytest.raises(ValueError, match="square"):
        DenseOperator(torch.zeros(2, 3, dtype=torch.float64))


def test_indefinite_solves_are_refused_with_the_smallest_eigenvalue():
    matrix = _indefinite()
    smallest = float(torch.linalg.eigvalsh(matrix)[0])
    with pytest.raises(ex.IndefiniteCurvatureError) as info:
        DenseOperator(matrix, key="H").solve(_random((P,), 0), 0.0)
    assert info.value.min_eigenvalue == pytest.approx(smallest)
    assert "Remedy" in str(info.value)
    with pytest.raises(ex.IndefiniteCurvatureError):
        DiagonalMatrixOperator(torch.tensor([1.0, -2.0], dtype=torch.float64)).solve(
            torch.ones(2, dtype=torch.float64), 1.0
        )
    with pytest.raises(ValueError, match="damping"):
        DenseOperator(_psd()).solve(_random((P,), 0), -1.0)


def test_diagonal_and_block_diagonal_leaves():
    diagonal = torch.linspace(0.5, 2.0, P, dtype=torch.float64)
    op = DiagonalMatrixOperator(diagonal, psd=True)
    _assert_matches(op, torch.diag(diagonal))
    _assert_solves(op, torch.diag(diagonal), 0.1)
    assert op.tags.diagonal and op.has_closed_form_solve
    blocks = _blocks()
    blocky = BlockDiagonalMatrixOperator(SPANS, blocks, P, psd=True)
    _assert_matches(blocky, _block_matrix(blocks))
    _assert_solves(blocky, _block_matrix(blocks), 0.1)
    _assert_tags_hold(blocky, blocky.dense())
    assert blocky.has_closed_form_solve
    # parameters outside every block have zero rows: there x = b / λ
    partial = BlockDiagonalMatrixOperator(SPANS[:2], blocks[:2], P)
    expected = torch.zeros(P, P, dtype=torch.float64)
    expected[:5, :5] = _block_matrix(blocks[:2])
    _assert_matches(partial, expected)
    _assert_solves(partial, expected, 0.5)
    with pytest.raises(ex.IndefiniteCurvatureError):
        partial.solve(_random((P,), 0), 0.0)
    with pytest.raises(ValueError, match="contiguous"):
        BlockDiagonalMatrixOperator((slice(3, 5), slice(0, 3)), blocks[1::-1], P)
    with pytest.raises(ValueError, match="shape"):
        BlockDiagonalMatrixOperator(SPANS, [blocks[1]] * 3, P)


def test_matvec_operator_checks_what_the_function_returns():
    matrix = _psd()
    op = MatvecOperator(lambda v: matrix @ v, P, torch.float64, "cpu", key="f")
    _assert_matches(op, matrix)
    _assert_solves(op, matrix, 0.1)
    assert op.products > 0 and not op.has_closed_form_solve
    bad = MatvecOperator(lambda v: v[:2], P, torch.float64, "cpu", key="bad")
    with pytest.raises(ValueError, match=r"'bad' matvec returned \(2,\)"):
        bad.matvec(_random((P,), 0))


# --------------------------------------------------------------- combinators
def test_sum_adds_products_and_declares_what_all_terms_share():
    a, b = _psd(seed=0), _psd(seed=1, rank=2)
    both = add(DenseOperator(a, "A", psd=True), DenseOperator(b, "B", psd=True))
    assert isinstance(both, SumOperator) and both.key == "A + B"
    _assert_matches(both, a + b)
    _assert_solves(both, a + b, 0.0)
    assert both.tags.psd and not both.tags.diagonal
    mixed = add(DenseOperator(a, psd=True), DenseOperator(_indefinite()))
    assert not mixed.tags.psd and mixed.tags.symmetric
    d = torch.linspace(1.0, 2.0, P, dtype=torch.float64)
    diagonal_sum = add(DiagonalMatrixOperator(d, psd=True), DiagonalMatrixOperator(d))
    assert diagonal_sum.tags.diagonal and not diagonal_sum.tags.psd
    _assert_solves(diagonal_sum, torch.diag(2 * d), 0.0)
    # a diagonal plus blocks is block-diagonal on those blocks, with their solve
    blocks = _blocks()
    structured = add(
        DiagonalMatrixOperator(d, psd=True),
        BlockDiagonalMatrixOperator(SPANS, blocks, P, psd=True),
    )
    expected = torch.diag(d) + _block_matrix(blocks)
    assert structured.tags.block_diagonal and structured.tags.psd
    assert structured.block_spans == SPANS and structured.has_closed_form_solve
    _assert_matches(structured, expected)
    _assert_solves(structured, expected, 0.01)
    _assert_tags_hold(structured, structured.dense())
    # blocks that differ are no shared structure
    other = BlockDiagonalMatrixOperator(
        (slice(0, 4), slice(4, 7)), [_psd(4), _psd(3)], P
    )
    assert not add(
        other, BlockDiagonalMatrixOperator(SPANS, blocks, P)
    ).tags.block_diagonal
    with pytest.raises(ValueError, match="different sizes"):
        add(DenseOperator(a), DenseOperator(_psd(3)))


@pytest.mark.parametrize("coefficient", [2.5, 0.0, -0.5])
def test_scale_keeps_structure_and_psd_only_for_nonnegative_factors(coefficient):
    a = _psd()
    scaled = scale(coefficient, DenseOperator(a, "A", psd=True))
    assert isinstance(scaled, ScaledOperator)
    _assert_matches(scaled, coefficient * a)
    assert scaled.tags.psd is (coefficient >= 0)
    assert scaled.tags.symmetric and scaled.tags.exact_solve
    damping = 1.0 + max(0.0, -coefficient) * float(torch.linalg.eigvalsh(a)[-1])
    _assert_solves(scaled, coefficient * a, damping)
    d = torch.linspace(1.0, 2.0, P, dtype=torch.float64)
    diagonal = scale(coefficient, DiagonalMatrixOperator(d, psd=True))
    assert diagonal.tags.diagonal
    _assert_solves(diagonal, coefficient * torch.diag(d), 3.0)


def test_scale_solves_through_the_operand_and_scales_kronecker_factors():
    problem = ex.problem("moons_mlp", num_samples=30, hidden=(3,))
    kfac = ex.curvature("kfac", problem, problem.theta0, damping_mode="exact")
    scaled = scale(3.0, kfac)
    assert scaled.tags.kronecker and scaled.tags.exact_solve and scaled.tags.psd
    assert scaled.has_closed_form_solve
    dense = kfac.dense()
    _assert_matches(scaled, 3.0 * dense)
    _assert_solves(scaled, 3.0 * dense, 0.01)
    for block in scaled.kronecker_factors():
        index = block.indices
        got = (3.0 * dense)[index[:, None], index[None, :]]
        assert relative_error(got, torch.kron(block.left, block.right)) < 1e-12
    # K-FAC's factored damping stays what it is, and is declared so
    factored = scale(2.0, ex.curvature("kfac", problem, problem.theta0))
    assert not factored.tags.exact_solve


def test_restriction_is_the_diagonal_block():
    matrix = _psd()
    parent = DenseOperator(matrix, "C", psd=True)
    block = restrict(parent, slice(2, 6), "mid")
    assert isinstance(block, RestrictedOperator) and block.key == "C[mid]"
    _assert_matches(block, matrix[2:6, 2:6])
    _assert_solves(block, matrix[2:6, 2:6], 0.0)
    assert block.tags.psd and block.tags.symmetric and block.has_dense
    # from products only: one parent product per product of the block
    lazy = MatvecOperator(lambda v: matrix @ v, P, torch.float64, "cpu", tags=Tags())
    sub = restrict(lazy, slice(1, 4))
    assert not sub.has_dense
    before = lazy.products
    sub.matvec(_random((3,), 0))
    assert lazy.products == before + 1
    assert relative_error(sub.dense(), matrix[1:4, 1:4]) < 1e-14
    # block structure is cut to the window
    blocks = _blocks()
    cut = restrict(BlockDiagonalMatrixOperator(SPANS, blocks, P, psd=True), slice(1, 6))
    assert cut.tags.block_diagonal
    assert [(s.start, s.stop) for s in cut.block_spans] == [(0, 2), (2, 4), (4, 5)]
    _assert_matches(cut, _block_matrix(blocks)[1:6, 1:6])
    _assert_tags_hold(cut, cut.dense())
    with pytest.raises(ValueError, match="contiguous"):
        restrict(parent, slice(0, 6, 2))


def test_combine_materializes_in_the_declared_structure():
    d1 = torch.linspace(1.0, 2.0, P, dtype=torch.float64)
    d2 = torch.linspace(3.0, 1.0, P, dtype=torch.float64)
    diagonal = combine(
        [
            (0.25, DiagonalMatrixOperator(d1, psd=True)),
            (0.75, DiagonalMatrixOperator(d2)),
        ],
        key="avg",
    )
    assert isinstance(diagonal, DiagonalMatrixOperator) and diagonal.key == "avg"
    assert relative_error(diagonal.diagonal, 0.25 * d1 + 0.75 * d2) < 1e-15
    b1, b2 = _blocks(2), _blocks(5)
    blocky = combine(
        [
            (0.5, BlockDiagonalMatrixOperator(SPANS, b1, P, psd=True)),
            (0.5, BlockDiagonalMatrixOperator(SPANS, b2, P, psd=True)),
        ]
    )
    assert isinstance(blocky, BlockDiagonalMatrixOperator) and blocky.tags.psd
    _assert_matches(blocky, 0.5 * _block_matrix(b1) + 0.5 * _block_matrix(b2))
    a, b = _psd(seed=3), _indefinite()
    dense = combine(
        [(2.0, DenseOperator(a, psd=True)), (1.0, DenseOperator(b))], exact=False
    )
    assert isinstance(dense, DenseOperator) and not dense.tags.exact
    assert not dense.tags.psd
    _assert_matches(dense, 2.0 * a + b)
    with pytest.raises(ValueError, match="P = 7 > 3"):
        combine([(1.0, DenseOperator(a))], max_dense_params=3)


# ------------------------------------------------------- built on the algebra
def _pair(key, problem, **options):
    old = ex.curvature(key, problem, problem.theta0, **options)
    new = ex.curvature(key, problem, problem.theta0 + 0.2, **options)
    return old, new


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("diag_fisher", DiagonalMatrixOperator),
        ("block_ggn", BlockDiagonalMatrixOperator),
        ("ggn", DenseOperator),
    ],
)
def test_moving_averages_keep_the_declared_structure(key, kind):
    problem = ex.problem("moons_mlp", num_samples=30, hidden=(3,))
    old, new = _pair(key, problem)
    expected = 0.3 * old.dense() + 0.7 * new.dense()
    mixed = ema_combine(old, new, 0.3)
    assert isinstance(mixed, kind) and mixed.key == key
    assert not mixed.tags.exact and mixed.tags.psd == new.tags.psd
    _assert_matches(mixed, expected)
    _assert_solves(mixed, expected, 0.1)
    assert ema_incompatibility(ex.CURVATURES[key], problem) is None


def test_dense_moving_averages_are_refused_for_large_models(monkeypatch):
    from explorer.optimizers import ema

    monkeypatch.setattr(ema, "EMA_DENSE_MAX_PARAMS", 10)
    problem = ex.problem("moons_mlp", num_samples=30, hidden=(3,))
    assert "dense P × P" in ema_incompatibility(ex.CURVATURES["ggn"], problem)
    for key in ("kfac", "diag_ggn", "block_fisher"):  # structured: no dense matrix
        assert ema_incompatibility(ex.CURVATURES[key], problem) is None


def test_curvature_operators_are_linear_operators_with_the_same_contract():
    problem = ex.problem("linreg_2d", num_samples=20)

    class Half(CurvatureOperator):
        psd = True  # the plugin interface before tags: folded into `declared`

        def _matvec(self, v):
            return 0.5 * v

    half = Half(problem, problem.theta0)
    assert isinstance(half, LinearOperator) and half.tags == Tags(psd=True)
    assert half.psd and not half.exact and "psd" not in Half.__dict__
    _assert_matches(half, 0.5 * torch.eye(2, dtype=torch.float64))
    _assert_solves(half, 0.5 * torch.eye(2, dtype=torch.float64), 0.0)
    summed = add(half, ex.curvature("ggn", problem, problem.theta0))
    assert summed.tags.psd  # a convex loss: the GGN is PSD on this problem
    with pytest.raises(TypeError, match="_matvec, _matmat or _dense"):

        class Nothing(CurvatureOperator):
            pass


def test_a_plugin_returning_an_operator_keeps_its_declared_solve():
    problem = ex.problem("moons_mlp", num_samples=30, hidden=(3,))

    @ex.register_curvature("t_wrapped_kfac", psd=True)
    def wrapped(problem, theta, batch=None):
        return ex.curvature("kfac", problem, theta, batch=batch)  # factored solve

    try:
        op = ex.curvature("t_wrapped_kfac", problem, problem.theta0)
        dense = op.dense()
        assert op.tags == Tags(psd=True) == ex.CURVATURES["t_wrapped_kfac"].tags()
        _assert_matches(op, dense)
        _assert_solves(op, dense, 0.01)  # declared exact: (C + λI)⁻¹, not factored
    finally:
        ex.CURVATURES.unregister("t_wrapped_kfac")
