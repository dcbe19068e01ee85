"""Preconditioner-quality metrics against brute force (explicit products, eigvals,
hand-computed cosines, the Van Loan–Pitsianis optimum against random perturbations).
"""

import math

import pytest
import torch

import explorer as ex
from explorer.check.metrics import (
    best_kronecker_error,
    block_cosines,
    kronecker_efficiency,
    nearest_kronecker,
    preconditioned_condition,
    preconditioner_metrics,
    rayleigh_quotients,
    rayleigh_top_count,
    rearrange,
)
from explorer.curvature.tags import KroneckerBlock

DTYPE = torch.float64


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _spd(size: int, seed: int, rank: int | None = None) -> torch.Tensor:
    factor = torch.randn(size, rank or size, generator=_generator(seed), dtype=DTYPE)
    return factor @ factor.T / size


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


def test_preconditioned_condition_matches_eigvals_of_the_explicit_product():
    c, r, damping = _spd(12, 0), _spd(12, 1, rank=5), 0.3
    eye = torch.eye(12, dtype=DTYPE)
    product = torch.linalg.solve(c + damping * eye, r + damping * eye)
    mu = torch.linalg.eigvals(product)
    assert float(mu.imag.abs().max()) < 1e-10  # similar to a symmetric matrix
    expected = float(mu.real.max() / mu.real.min())
    got = preconditioner_metrics(c, r, damping, [("all", slice(0, 12))])
    assert got["preconditioned_condition"] == pytest.approx(expected, rel=1e-10)
    reference = torch.linalg.eigvalsh(r + damping * eye)
    kappa = float(reference.max() / reference.min())
    assert got["reference_condition"] == pytest.approx(kappa, rel=1e-10)
    assert "preconditioned_condition_reason" not in got
    # a C close to R preconditions it well: κ near 1, far below κ(R + λI)
    close = r + 0.01 * _spd(12, 9)
    near = preconditioner_metrics(close, r, damping, [])["preconditioned_condition"]
    assert 1 < near < 1.1 < 10 < kappa


def test_an_indefinite_c_gives_nan_with_the_reason():
    r = _spd(6, 2)
    c = r - 2 * float(torch.linalg.eigvalsh(r).max()) * torch.eye(6, dtype=DTYPE)
    kappa, reason = preconditioned_condition(c, r, 0.1)
    assert math.isnan(kappa) and "not positive definite" in reason
    got = preconditioner_metrics(c, r, 0.1, [])
    assert math.isnan(got["preconditioned_condition"])
    assert "not positive definite" in got["preconditioned_condition_reason"]


def test_c_equal_to_r_is_perfect():
    r = _spd(20, 3, rank=14)
    got = preconditioner_metrics(r, r, 1e-3, [("a", slice(0, 8)), ("b", slice(8, 20))])
    assert got["preconditioned_condition"] == pytest.approx(1.0, abs=1e-8)
    rayleigh = got["rayleigh"]
    assert rayleigh["k"] == rayleigh_top_count(20) == 5
    assert rayleigh["bulk_size"] == 14 - 5  # the null space is left out
    assert rayleigh["top"] == pytest.approx(1.0, abs=1e-8)
    assert rayleigh["bulk"] == pytest.approx(1.0, abs=1e-6)
    assert got["block_cosines"] == pytest.approx({"a": 1.0, "b": 1.0}, abs=1e-12)


def test_rayleigh_quotients_by_hand_in_a_known_eigenbasis():
    # R = diag(8, 4, 2, 1, ...) in a rotated basis; C scales each direction by its own
    # factor, so uᵢᵀ C uᵢ / λᵢ is that factor
    size = 16
    basis, _ = torch.linalg.qr(
        torch.randn(size, size, generator=_generator(4), dtype=DTYPE)
    )
    eigenvalues = 2.0 ** -torch.arange(size, dtype=DTYPE) * 8
    factors = torch.linspace(0.5, 3.0, size, dtype=DTYPE)
    r = basis @ torch.diag(eigenvalues) @ basis.T
    c = basis @ torch.diag(eigenvalues * factors) @ basis.T
    got = rayleigh_quotients(c, r)
    k = rayleigh_top_count(size)
    assert got["k"] == k == 4
    assert got["top"] == pytest.approx(float(factors[:k].mean()), rel=1e-8)
    assert got["bulk"] == pytest.approx(float(factors[k:].mean()), rel=1e-6)


def test_block_cosines_by_hand():
    c = torch.tensor([[1.0, 2.0, 0.0], [2.0, 5.0, 0.0], [0.0, 0.0, 3.0]], dtype=DTYPE)
    r = torch.tensor([[1.0, 0.0, 9.0], [0.0, 1.0, 9.0], [9.0, 9.0, -2.0]], dtype=DTYPE)
    got = block_cosines(c, r, [("first", slice(0, 2)), ("last", slice(2, 3))])
    # ⟨C₁, R₁⟩ = 1 + 5 = 6, ‖C₁‖ = √(1 + 4 + 4 + 25) = √34, ‖R₁‖ = √2
    assert got["first"] == pytest.approx(6 / math.sqrt(34 * 2), rel=1e-14)
    assert got["last"] == pytest.approx(-1.0, rel=1e-14)


def test_van_loan_pitsianis_recovers_an_exact_kronecker_product():
    m, n = 3, 5
    a, b = _spd(m, 5), torch.randn(n, n, generator=_generator(6), dtype=DTYPE)
    block = torch.kron(a, b)
    assert torch.linalg.matrix_rank(rearrange(block, m, n)) == 1
    left, right = nearest_kronecker(block, m, n)
    assert _relative(torch.kron(left, right), block) < 1e-14
    assert best_kronecker_error(block, m, n) < 1e-14
    indices = torch.arange(m * n)
    # the given factors, up to a scalar passed between them, are optimal
    exact = KroneckerBlock(indices, 2 * a, b / 2)
    got = kronecker_efficiency(torch.block_diag(block), [exact])
    (entry,) = got.values()
    assert entry["achieved"] < 1e-14 and entry["best"] < 1e-14
    assert entry["efficiency"] == pytest.approx(1.0)


def test_no_random_perturbation_of_the_optimal_factors_does_better():
    m, n = 4, 3
    block = _spd(m * n, 7)  # not a Kronecker product
    left, right = nearest_kronecker(block, m, n)
    best = best_kronecker_error(block, m, n)
    assert best == pytest.approx(_relative(torch.kron(left, right), block), rel=1e-12)
    assert best > 0.05
    generator = _generator(8)
    for scale in (1e-4, 1e-2, 1e-1):
        for _ in range(50):
            da = scale * torch.randn(m, m, generator=generator, dtype=DTYPE)
            db = scale * torch.randn(n, n, generator=generator, dtype=DTYPE)
            trial = torch.kron(left + da * left.norm(), right + db * right.norm())
            assert _relative(trial, block) >= best - 1e-12


@pytest.fixture(scope="module")
def digits():
    problem = ex.problem("digits_mlp", hidden=(8,), train_size=60, seed=0)
    theta = problem.theta0
    kfac = ex.curvature("kfac", problem, theta)
    ggn = ex.curvature("ggn", problem, theta).dense().double()
    return problem, kfac, ggn


def test_kfac_factors_are_no_better_than_the_best_kronecker_product(digits):
    problem, kfac, ggn = digits
    blocks = problem.blocks()
    kron = kfac.kronecker_factors()
    got = preconditioner_metrics(kfac.dense(), ggn, 1e-3, blocks, kron)
    efficiency = got["kronecker_efficiency"]
    assert len(efficiency) == len(kron) == 2
    assert set(efficiency) <= {name for name, _ in blocks}
    for name, entry in efficiency.items():
        index = list(efficiency).index(name)
        exact = ggn[kron[index].indices][:, kron[index].indices]
        achieved = _relative(torch.kron(kron[index].left, kron[index].right), exact)
        assert entry["achieved"] == pytest.approx(achieved, rel=1e-10)
        assert entry["best"] <= entry["achieved"] + 1e-12, (name, entry)
        assert 0 < entry["efficiency"] <= 1 + 1e-12
        assert (entry["m"], entry["n"]) == (
            kron[index].left.shape[0],
            kron[index].right.shape[0],
        )
    # the top-left GGN block of a deep net is not a Kronecker product: a real test
    assert max(e["best"] for e in efficiency.values()) > 1e-3
    # the whole dict is plain JSON-able data
    import json

    json.dumps(got)
    assert got["preconditioned_condition"] >= 1
    assert set(got["block_cosines"]) == {name for name, _ in blocks}
