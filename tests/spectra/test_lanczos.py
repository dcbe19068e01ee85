"""Lanczos (top-k, bottom-k, both ends) against the dense solver.

Tolerance: with the default tol = 1e-8 (float64) every wanted residual
‖C y − θ y‖ ≤ 1e-8 · max|θ|, so each eigenvalue is within 1e-8 · ‖C‖ of an exact one
(Bauer–Fike for symmetric matrices); we assert 1e-7 · ‖C‖.
"""

import numpy as np
import pytest
import torch

import explorer as ex
from explorer.curvature.algebra import DenseOperator
from explorer.spectra import lanczos
from tests.spectra.helpers import NoDense, rotated

TOL = 1e-7


def spectrum_case():
    generator = torch.Generator().manual_seed(1)
    values = torch.cat(
        [
            torch.tensor([-9.0, -7.5, -7.0, 12.0, 10.0, 9.5]),
            torch.linspace(-3, 5, 194),
        ]
    ).double()
    values += 1e-3 * torch.rand(200, generator=generator, dtype=torch.float64)
    return values, rotated(values, seed=4)


@pytest.mark.parametrize("which", ["largest", "smallest", "both", "magnitude"])
def test_extreme_eigenvalues_of_a_known_spectrum(which):
    values, matrix = spectrum_case()
    op = NoDense(matrix)  # products only: dense() would fail the test
    pairs = lanczos(op, k=4, which=which)
    exact = np.sort(values.numpy())
    expected = {
        "largest": exact[-4:],
        "smallest": exact[:4],
        "both": np.r_[exact[:4], exact[-4:]],
        "magnitude": np.sort(exact[np.argsort(-np.abs(exact))[:4]]),
    }[which]
    assert pairs.converged and pairs.method == "lanczos"
    np.testing.assert_allclose(pairs.eigenvalues.numpy(), expected, atol=TOL * 12)
    residual = matrix @ pairs.eigenvectors - pairs.eigenvectors * pairs.eigenvalues.to(
        matrix
    )
    assert float(residual.norm(dim=0).max()) < 1e-7 * 12
    assert pairs.products == op.products and pairs.products < 200


@pytest.mark.parametrize("key", ["hessian", "ggn", "kfac"])
def test_top_and_bottom_of_curvatures_match_dense(digits_small, key):
    problem, theta = digits_small
    op = ex.curvature(key, problem, theta)
    exact = np.linalg.eigvalsh(op.dense().numpy())
    scale = np.abs(exact).max()
    top = lanczos(op, k=6)
    assert top.converged
    np.testing.assert_allclose(top.top(6).numpy(), exact[::-1][:6], atol=TOL * scale)
    if key == "hessian":  # well-separated negative end; PSD ends cluster at zero
        bottom = lanczos(op, k=4, which="smallest")
        assert bottom.converged
        np.testing.assert_allclose(
            bottom.bottom(4).numpy(), exact[:4], atol=TOL * scale
        )


def test_low_rank_operator_breaks_down_gracefully():
    """A rank-5 matrix exhausts its Krylov space after 6 steps; Lanczos restarts
    with fresh directions and reports the zero eigenvalues."""
    generator = torch.Generator().manual_seed(0)
    factor = torch.randn(80, 5, generator=generator, dtype=torch.float64)
    matrix = factor @ factor.T
    exact = np.linalg.eigvalsh(matrix.numpy())
    pairs = lanczos(DenseOperator(matrix), k=7)
    assert pairs.converged
    np.testing.assert_allclose(
        pairs.top(7).numpy(), exact[::-1][:7], atol=1e-8 * exact[-1]
    )


def test_tiny_operator_is_solved_exactly():
    matrix = torch.tensor([[2.0, 1.0], [1.0, -3.0]], dtype=torch.float64)
    pairs = lanczos(DenseOperator(matrix), k=5, which="both")
    np.testing.assert_allclose(
        pairs.eigenvalues.numpy(), np.linalg.eigvalsh(matrix.numpy())
    )


def test_deterministic_for_a_seeded_generator(digits_small):
    problem, theta = digits_small
    op = ex.curvature("ggn", problem, theta)
    runs = [
        lanczos(op, k=3, generator=torch.Generator().manual_seed(9)).eigenvalues
        for _ in range(2)
    ]
    assert torch.equal(runs[0], runs[1])


def test_float32_meets_its_default_tolerance(digits_small):
    problem, _ = digits_small
    problem32 = ex.problem(
        "digits_mlp", hidden=(8,), train_size=100, seed=3, dtype="float32"
    )
    op32 = ex.curvature("ggn", problem32, problem32.theta0)
    op64 = ex.curvature("ggn", problem, problem.theta0)
    exact = np.linalg.eigvalsh(op64.dense().numpy())[::-1][:3]
    pairs = lanczos(op32, k=3)
    assert pairs.converged and pairs.eigenvectors.dtype == torch.float32
    np.testing.assert_allclose(pairs.top(3).numpy(), exact, rtol=1e-4)


def test_rejects_bad_arguments():
    op = DenseOperator(torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="k = 0"):
        lanczos(op, k=0)
    with pytest.raises(ValueError, match="which"):
        lanczos(op, which="LA")
