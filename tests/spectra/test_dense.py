"""The dense eigensolver against numpy.linalg.eigvalsh of brute-force matrices."""

import numpy as np
import pytest
import torch
from torch.func import hessian

import explorer as ex
from explorer.curvature.algebra import DenseOperator
from explorer.spectra import dense_eigenpairs, eigenpairs, eigenvalues


def test_hessian_eigenvalues_match_numpy_on_an_autograd_hessian(moons):
    problem, theta = moons
    reference = hessian(lambda t: problem.objective(t))(theta).numpy()
    expected = np.linalg.eigvalsh(reference)
    op = ex.curvature("hessian", problem, theta)
    pairs = dense_eigenpairs(op)
    scale = np.abs(expected).max()
    assert (
        pairs.method == "dense" and pairs.converged and len(pairs) == problem.num_params
    )
    np.testing.assert_allclose(pairs.eigenvalues.numpy(), expected, atol=1e-10 * scale)
    assert pairs.num_negative > 0  # a perturbed MLP: the Hessian is indefinite
    matrix = torch.from_numpy(reference)
    residual = matrix @ pairs.eigenvectors - pairs.eigenvectors * pairs.eigenvalues
    assert float(residual.abs().max()) < 1e-10 * scale
    eye = torch.eye(problem.num_params, dtype=torch.float64)
    assert torch.allclose(pairs.eigenvectors.T @ pairs.eigenvectors, eye, atol=1e-10)


def test_ascending_order_and_top_bottom_helpers():
    pairs = dense_eigenpairs(
        torch.diag(torch.tensor([3.0, -1.0, 2.0], dtype=torch.float64))
    )
    assert pairs.eigenvalues.tolist() == [-1.0, 2.0, 3.0]
    assert pairs.top(2).tolist() == [3.0, 2.0]
    assert pairs.bottom(1).tolist() == [-1.0]
    assert pairs.top_vectors(1).abs()[0, 0] == 1.0
    assert eigenvalues(torch.eye(2, dtype=torch.float64)).tolist() == [1.0, 1.0]


def test_only_the_symmetric_part_is_used():
    matrix = torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=torch.float64)
    expected = np.linalg.eigvalsh(0.5 * (matrix + matrix.T).numpy())
    np.testing.assert_allclose(eigenvalues(DenseOperator(matrix)).numpy(), expected)


def test_size_guard_names_the_limit_and_the_alternative(moons):
    problem, theta = moons
    op = ex.curvature("ggn", problem, theta)
    with pytest.raises(ex.DenseTooLargeError, match="lanczos"):
        dense_eigenpairs(op, max_params=10)


def test_auto_uses_dense_for_small_problems_and_selects_the_ends(moons):
    problem, theta = moons
    op = ex.curvature("ggn", problem, theta)
    full = np.linalg.eigvalsh(op.dense().numpy())
    both = eigenpairs(op, 3, "both")
    assert both.method == "dense" and both.which == "both"
    np.testing.assert_allclose(both.eigenvalues.numpy(), np.r_[full[:3], full[-3:]])
    mag = eigenpairs(
        torch.diag(torch.tensor([-5.0, 1.0, 4.0], dtype=torch.float64)), 2, "magnitude"
    )
    assert mag.eigenvalues.tolist() == [-5.0, 4.0]
    with pytest.raises(ValueError, match="which"):
        eigenpairs(op, 3, "top")
    with pytest.raises(ValueError, match="method"):
        eigenpairs(op, 3, method="arpack")
