"""Block spectra and the generalized spectrum of (C + λI)⁻¹A."""

import numpy as np
import pytest
import scipy.linalg
import torch

import explorer as ex
from explorer.curvature.algebra import DenseOperator
from explorer.spectra import block_spectra, generalized_spectrum
from tests.spectra.helpers import NoDense


def test_block_spectra_are_the_eigenvalues_of_the_diagonal_blocks(moons):
    problem, theta = moons
    op = ex.curvature("ggn", problem, theta)
    dense = op.dense().numpy()
    blocks = block_spectra(op, k=None)
    assert list(blocks) == [name for name, _ in problem.blocks()]
    for name, span in problem.blocks():
        expected = np.linalg.eigvalsh(dense[span, span])
        np.testing.assert_allclose(
            blocks[name].eigenvalues.numpy(), expected, atol=1e-12
        )
    top = block_spectra(op, k=2, method="lanczos")
    for name, span in problem.blocks():
        expected = np.linalg.eigvalsh(dense[span, span])[-2:]
        np.testing.assert_allclose(top[name].eigenvalues.numpy(), expected, rtol=1e-7)


@pytest.mark.parametrize("preconditioner", ["ggn", "kfac", "diag_ggn"])
def test_dense_generalized_spectrum_matches_scipy_and_lanczos(moons, preconditioner):
    problem, theta = moons
    damping = 1e-2
    target = ex.curvature("hessian", problem, theta)
    pre = ex.curvature(preconditioner, problem, theta)
    full = generalized_spectrum(target, pre, damping)
    # "(C + λI)⁻¹" is what C.solve applies: the pencil (A, C + λI) exactly where
    # the solve is declared exact (not K-FAC's factored damping)
    eye = np.eye(problem.num_params)
    expected = scipy.linalg.eigh(
        target.dense().numpy(), pre.dense().numpy() + damping * eye, eigvals_only=True
    )
    agrees = np.allclose(full.eigenvalues.numpy(), expected, rtol=1e-8, atol=1e-8)
    assert agrees is pre.tags.exact_solve, (preconditioner, pre.tags)
    ends = generalized_spectrum(
        target, pre, damping, k=3, method="lanczos", vectors=True
    )
    exact = full.eigenvalues.numpy()
    scale = np.abs(exact).max()
    assert ends.converged and ends.method == "lanczos"
    np.testing.assert_allclose(
        ends.eigenvalues.numpy(), np.r_[exact[:3], exact[-3:]], atol=1e-7 * scale
    )
    x = ends.eigenvectors[:, -1]
    residual = pre.solve(target.matvec(x), damping) - ends.eigenvalues[-1] * x
    assert float(residual.norm()) < 1e-6 * scale * float(x.norm())


def test_perfect_preconditioner_gives_ones():
    generator = torch.Generator().manual_seed(0)
    factor = torch.randn(30, 30, generator=generator, dtype=torch.float64)
    matrix = factor @ factor.T
    damping = 0.5
    shifted = matrix + damping * torch.eye(30, dtype=torch.float64)
    values = generalized_spectrum(shifted, matrix, damping).eigenvalues
    assert torch.allclose(values, torch.ones(30, dtype=torch.float64), atol=1e-10)
    ends = generalized_spectrum(
        NoDense(shifted), DenseOperator(matrix), damping, k=2, method="lanczos"
    )
    assert torch.allclose(
        ends.eigenvalues, torch.ones(4, dtype=torch.float64), atol=1e-8
    )


def test_indefinite_preconditioner_is_refused_with_a_remedy(moons):
    problem, theta = moons
    hessian = ex.curvature("hessian", problem, theta)
    with pytest.raises(ex.IndefiniteCurvatureError, match="Remedy"):
        generalized_spectrum(hessian, hessian, 0.0)
    with pytest.raises(ex.IndefiniteCurvatureError):
        generalized_spectrum(hessian, hessian, 0.0, k=2, method="lanczos")
    with pytest.raises(ValueError, match="damping"):
        generalized_spectrum(hessian, hessian, -1.0)
