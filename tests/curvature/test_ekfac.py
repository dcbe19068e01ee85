"""EKFAC (explorer/curvature/ekfac.py) against independent references.

* exact where K-FAC is exact (one linear layer, Gaussian output);
* in K-FAC's eigenbasis Q = Q_S ⊗ Q_A its diagonal is the exact Fisher block's
  diagonal diag(Qᵀ F_block Q) (the basis checked to diagonalize K-FAC's block), on
  MLPs, a conv net and a transformer, expand and reduce, joined and separate;
* hence never farther from the exact Fisher block than K-FAC in Frobenius norm;
* ``correction="position"`` against the expanded block built by hand on a
  mean-pooled linear layer over a sequence (where the two corrections differ);
* the damped solve against ``torch.linalg.solve`` of the dense matrix, uncovered
  parameters b/λ;
* curvlinops' ``EKFACLinearOperator`` (same settings mapping as
  tests/curvature/test_kfac_curvlinops.py).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import explorer as ex
from explorer.problems.base import problem_from_model
from explorer.problems.likelihoods import CategoricalLoss
from tests.cases import by_name
from tests.references import relative_error

DTYPE = torch.float64


class MeanPool(nn.Module):
    """(N, R, C) -> (N, C): the mean over positions."""

    def forward(self, x):
        return x.mean(1)


def _conv_problem():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=2, padding=1),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(3 * 3 * 3, 4),
    )
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(12, 2, 5, 5, generator=generator, dtype=DTYPE)
    targets = torch.randint(0, 4, (12,), generator=generator)
    return ex.problem_from_module(model.double(), inputs, targets, "categorical")


def _pooled_problem(bias: bool = True):
    """s_nr = W x_nr + b on a sequence (N, R, D), z_n = mean_r s_nr, categorical."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 4, bias=bias), MeanPool())
    generator = torch.Generator().manual_seed(4)
    inputs = torch.randn(10, 5, 3, generator=generator, dtype=DTYPE)
    targets = torch.randint(0, 4, (10,), generator=generator)
    return ex.problem_from_module(model.double(), inputs, targets, "categorical")


def _setting(name):
    """(problem, θ, batch)."""
    if name == "conv":
        problem = _conv_problem()
        return problem, problem.theta0, None
    if name == "pooled":
        problem = _pooled_problem()
        return problem, problem.theta0, None
    return by_name(name).build()


SETTINGS = ["moons", "digits_tanh", "conv", "pooled", "transformer_tiny"]


def _fisher(problem, theta, batch):
    return ex.curvature("fisher", problem, theta, batch=batch).dense()


def _block_indices(kfac):
    """Per covered block, its parameters in the row-major order of V̄ (from
    K-FAC's layout, which EKFAC shares).
    """
    return [block.indices for block in kfac.kronecker_factors()]


def _sub(matrix, index):
    return matrix[index[:, None], index[None, :]]


def test_exact_on_one_linear_layer():
    problem = ex.problem("linreg_2d", num_samples=20)
    theta = problem.theta0 + 0.3
    op = ex.curvature("ekfac", problem, theta)
    fisher = _fisher(problem, theta, None)
    assert relative_error(op.dense(), fisher) < 1e-12
    assert float(fisher.abs().max()) > 1e-3


@pytest.mark.parametrize("separate", [False, True], ids=["joined", "separate"])
@pytest.mark.parametrize("approx", ["expand", "reduce"])
@pytest.mark.parametrize("name", SETTINGS)
def test_diagonal_in_kfac_eigenbasis_is_the_exact_blocks(name, approx, separate):
    problem, theta, batch = _setting(name)
    options = {"kfac_approx": approx, "separate_weight_and_bias": separate}
    op = ex.curvature("ekfac", problem, theta, batch=batch, **options)
    kfac = ex.curvature("kfac", problem, theta, batch=batch, **options)
    fisher, dense = _fisher(problem, theta, batch), op.dense()
    indices = _block_indices(kfac)
    assert len(indices) == len(op.bases) == len(op.eigenvalues)
    scale = float(fisher.abs().max())
    for index, (basis_s, basis_a), values, block in zip(
        indices, op.bases, op.eigenvalues, kfac.kronecker_factors(), strict=True
    ):
        basis = torch.kron(basis_s, basis_a)
        # it is K-FAC's eigenbasis
        rotated_kfac = basis.T @ torch.kron(block.left, block.right) @ basis
        off = rotated_kfac - torch.diag(rotated_kfac.diagonal())
        assert float(off.abs().max()) < 1e-10 * float(rotated_kfac.abs().max())
        # EKFAC is diagonal in it, with the exact block's diagonal there (to 1e-10
        # of the Fisher's largest entry: some blocks are round-off, e.g. the key
        # bias of attention, which softmax cancels)
        expected = (basis.T @ _sub(fisher, index) @ basis).diagonal()
        assert float((values.reshape(-1) - expected).abs().max()) < 1e-10 * scale
        rotated = basis.T @ _sub(dense, index) @ basis
        assert float((rotated - torch.diag(expected)).abs().max()) < 1e-10 * scale


@pytest.mark.parametrize("approx", ["expand", "reduce"])
@pytest.mark.parametrize("name", SETTINGS)
def test_never_farther_from_the_fisher_than_kfac(name, approx):
    problem, theta, batch = _setting(name)
    op = ex.curvature("ekfac", problem, theta, batch=batch, kfac_approx=approx)
    kfac = ex.curvature("kfac", problem, theta, batch=batch, kfac_approx=approx)
    fisher, dense, kfac_dense = _fisher(problem, theta, batch), op.dense(), kfac.dense()
    gains = []
    for index in _block_indices(kfac):
        exact = _sub(fisher, index)
        ours = float(torch.linalg.norm(_sub(dense, index) - exact))
        theirs = float(torch.linalg.norm(_sub(kfac_dense, index) - exact))
        assert ours <= theirs * (1 + 1e-12) + 1e-15, (ours, theirs)
        gains.append(theirs - ours)
    # not trivially equal: K-FAC is not exact on these models
    assert max(gains) > 1e-6


def test_position_correction_is_the_expanded_blocks_diagonal():
    """On s_nr = W x_nr + b, z_n = mean_r s_nr (categorical, output Fisher F_n):
    δ_nrk = r_nk / R, so the exact block is (1/N) Σ_n kron(F_n, m_n m_nᵀ) with
    m_n = mean_r x̄_nr, and the expanded one (1/(N R²)) Σ_{n,r} kron(F_n, x̄ x̄ᵀ).
    """
    problem = _pooled_problem()
    theta = problem.theta0
    inputs = problem.inputs
    n, positions, _ = inputs.shape
    bar = torch.cat([inputs, torch.ones(n, positions, 1, dtype=DTYPE)], -1)
    probs = torch.softmax(problem.predict(theta), -1)
    output_fisher = torch.diag_embed(probs) - probs[:, :, None] * probs[:, None, :]
    means = bar.mean(1)
    exact = (
        sum(
            torch.kron(output_fisher[i], torch.outer(means[i], means[i]))
            for i in range(n)
        )
        / n
    )
    expanded = sum(
        torch.kron(output_fisher[i], torch.outer(bar[i, r], bar[i, r]))
        for i in range(n)
        for r in range(positions)
    ) / (n * positions**2)
    for approx in ("expand", "reduce"):
        kfac = ex.curvature("kfac", problem, theta, kfac_approx=approx)
        (index,) = _block_indices(kfac)
        # the hand-built exact block is the Fisher's (the reference is right)
        assert relative_error(_sub(_fisher(problem, theta, None), index), exact) < 1e-12
        results = {}
        for correction, block in (("example", exact), ("position", expanded)):
            op = ex.curvature(
                "ekfac", problem, theta, kfac_approx=approx, correction=correction
            )
            ((basis_s, basis_a),) = op.bases
            basis = torch.kron(basis_s, basis_a)
            expected = (basis.T @ block @ basis).diagonal()
            assert relative_error(op.eigenvalues[0].reshape(-1), expected) < 1e-10
            results[correction] = op.eigenvalues[0]
        assert relative_error(results["position"], results["example"]) > 1e-2


def test_corrections_agree_without_weight_sharing():
    problem, theta, batch = by_name("moons").build()
    example = ex.curvature("ekfac", problem, theta, batch=batch)
    position = ex.curvature("ekfac", problem, theta, batch=batch, correction="position")
    assert relative_error(position.dense(), example.dense()) < 1e-12


@pytest.mark.parametrize("name", ["moons", "conv", "transformer_tiny"])
def test_solve_against_the_dense_matrix(name):
    problem, theta, batch = _setting(name)
    op = ex.curvature("ekfac", problem, theta, batch=batch)
    dense = op.dense()
    generator = torch.Generator().manual_seed(0)
    rhs = torch.randn(problem.num_params, 3, generator=generator, dtype=DTYPE)
    eye = torch.eye(problem.num_params, dtype=DTYPE)
    for damping in (1e-3, 0.5):
        expected = torch.linalg.solve(dense + damping * eye, rhs)
        assert relative_error(op.solve(rhs, damping), expected) < 1e-10
        assert relative_error(op.solve(rhs[:, 0], damping), expected[:, 0]) < 1e-10
    if op.coverage() and "none" in op.coverage().values():
        with pytest.raises(ex.IndefiniteCurvatureError):
            op.solve(rhs[:, 0], 0.0)


def test_undamped_solve_inverts_a_full_rank_ekfac():
    problem = ex.problem("linreg_2d", num_samples=20)
    theta = problem.theta0
    op = ex.curvature("ekfac", problem, theta)
    rhs = torch.tensor([1.0, -2.0], dtype=DTYPE)
    expected = torch.linalg.solve(op.dense(), rhs)
    assert relative_error(op.solve(rhs, 0.0), expected) < 1e-10


def test_declared_structure_and_coverage():
    problem, theta, batch = by_name("transformer_tiny").build()
    op = ex.curvature("ekfac", problem, theta, batch=batch)
    kfac = ex.curvature("kfac", problem, theta, batch=batch)
    tags = op.tags
    assert tags.psd and tags.block_diagonal and tags.exact_solve
    assert not tags.kronecker and not tags.sampled and not tags.exact
    assert ex.CURVATURES["ekfac"].tags(options={"output_factor": "mc"}).sampled
    with pytest.raises(ValueError, match="not declared Kronecker"):
        op.kronecker_factors()
    coverage = op.coverage()
    assert "none" in coverage.values() and "block" in coverage.values()
    # the same parameters as K-FAC, kept as a block instead of a Kronecker product
    assert {name for name, kind in coverage.items() if kind == "none"} == {
        name for name, kind in kfac.coverage().items() if kind == "none"
    }
    assert op.block_spans == kfac.block_spans
    # the uncovered rows and columns are zero
    dense = op.dense()
    outside = torch.ones(problem.num_params, dtype=torch.bool)
    for index in _block_indices(kfac):
        outside[index] = False
    assert torch.count_nonzero(dense[outside]) == 0 and bool(outside.any())


def test_diag_is_the_dense_diagonal_with_separate_blocks():
    problem, theta, _ = _setting("conv")
    op = ex.curvature("ekfac", problem, theta, separate_weight_and_bias=True)
    assert relative_error(op.diag(), op.dense().diagonal()) < 1e-12


# ---------------------------------------------------------------- curvlinops
curvlinops = pytest.importorskip("curvlinops")


def _curvlinops_problem(name, examples=None):
    """The models of tests/curvature/test_kfac_curvlinops.py, with ``examples``
    inputs instead of its 6 where given.
    """
    from tests.curvature.test_kfac_curvlinops import _model

    model, shape, classes = _model(name)
    shape = shape if examples is None else (examples, *shape[1:])
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(*shape, generator=generator, dtype=DTYPE)
    targets = torch.randint(0, classes, (shape[0],), generator=generator)
    return problem_from_model(
        model, DTYPE, torch.device("cpu"), key=name, label=name,
        loss=CategoricalLoss(classes), inputs=inputs, targets=targets,
    )  # fmt: skip


def _simple_spectrum(matrix, scale, tol=1e-8):
    """Whether the eigenvalues of ``matrix`` are pairwise apart by ``tol`` of
    ``scale`` (the largest such factor of the model): only then is its eigenbasis,
    and EKFAC, unique. A factor that is round-off (S = 0 up to rounding) is not.
    """
    values = torch.linalg.eigvalsh(matrix)
    if len(values) == 1:
        return True
    return float(torch.diff(values).min()) > tol * scale


FISHER_TYPES = [("exact", "type-2"), ("empirical", "empirical")]


@pytest.mark.parametrize("separate", [False, True], ids=["joined", "separate"])
@pytest.mark.parametrize("approx", ["expand", "reduce"])
@pytest.mark.parametrize(("output_factor", "fisher_type"), FISHER_TYPES)
@pytest.mark.parametrize("name", ["conv", "attention", "attention_last", "mlp"])
def test_dense_matches_curvlinops(name, output_factor, fisher_type, approx, separate):
    """Our default ``correction="example"`` is curvlinops' convention (per-example
    gradients summed over positions) under both expand and reduce.

    EKFAC is unique only where K-FAC's factors have simple spectra: a degenerate
    eigenspace (A of reduce with fewer examples than inputs; S = 0 for attention's
    key projection under reduce, since Σ_r δ is the key bias's gradient, which the
    softmax cancels) lets any basis of it be chosen. So 40 examples are used, and
    blocks with a degenerate factor are left out (at least one is compared).
    """
    problem = _curvlinops_problem(name, examples=40)
    model = problem.model
    operator = curvlinops.EKFACLinearOperator(
        model,
        nn.CrossEntropyLoss(reduction="mean"),
        list(model.parameters()),
        [(problem.inputs, problem.targets)],
        fisher_type=fisher_type,
        kfac_approx=approx,
        separate_weight_and_bias=separate,
        check_deterministic=False,
    )
    expected = operator @ torch.eye(problem.num_params, dtype=DTYPE)
    options = {
        "output_factor": output_factor,
        "kfac_approx": approx,
        "separate_weight_and_bias": separate,
    }
    op = ex.curvature("ekfac", problem, problem.theta0, **options)
    kfac = ex.curvature("kfac", problem, problem.theta0, **options)
    dense = op.dense()
    scale = float(expected.abs().max())
    assert scale > 1e-3
    compared = 0
    blocks = kfac.kronecker_factors()
    left = max(float(block.left.abs().max()) for block in blocks)
    right = max(float(block.right.abs().max()) for block in blocks)
    for block in blocks:
        if not (
            _simple_spectrum(block.left, left) and _simple_spectrum(block.right, right)
        ):
            continue
        index = block.indices
        # to 1e-10 of the largest entry: some blocks are round-off (the key bias)
        difference = _sub(dense, index) - _sub(expected, index)
        assert float(difference.abs().max()) < 1e-10 * scale
        compared += 1
    assert compared >= 1
