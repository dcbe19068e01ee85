"""Stochastic Lanczos quadrature: a probability density whose moments are the
Hutchinson estimates of tr(C)/P and tr(C²)/P."""

import math

import numpy as np
import pytest
import torch

import explorer as ex
from explorer.curvature.algebra import DenseOperator
from explorer.spectra import hutchinson_trace, spectral_density
from explorer.spectra.operators import random_vector
from tests.spectra.helpers import rotated


def psd_case(size=150, seed=3):
    generator = torch.Generator().manual_seed(seed)
    values = torch.rand(size, generator=generator, dtype=torch.float64) ** 3 * 10
    return rotated(values, seed)


def probe_moments(matrix, num_probes, seed):
    """(1/P) vᵀCv and (1/P) vᵀC²v for the Rademacher probes SLQ draws."""
    generator = torch.Generator().manual_seed(seed)
    size = matrix.shape[0]
    first, second = [], []
    for _ in range(num_probes):
        v = random_vector(size, matrix, generator, "rademacher")
        cv = matrix @ v
        first.append(float(v @ cv) / size)
        second.append(float(cv @ cv) / size)
    return np.array(first), np.array(second)


def test_density_integrates_to_one():
    density = spectral_density(DenseOperator(psd_case()), num_probes=6, num_steps=25)
    grid = density.grid(4000)
    integral = float(torch.trapezoid(density.evaluate(grid), grid))
    assert integral == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(density.weights.sum(1), torch.ones(6, dtype=torch.float64))


def test_moments_are_the_hutchinson_estimates_of_the_same_probes():
    matrix = psd_case()
    density = spectral_density(
        DenseOperator(matrix),
        num_probes=8,
        num_steps=20,
        generator=torch.Generator().manual_seed(11),
    )
    first, second = probe_moments(matrix, 8, 11)
    assert density.moment(1) == pytest.approx(first.mean(), rel=1e-10)
    assert density.moment(2) == pytest.approx(second.mean(), rel=1e-10)
    assert density.trace() == pytest.approx(matrix.shape[0] * first.mean(), rel=1e-10)


def test_moments_match_the_exact_traces_within_four_standard_errors():
    """Var(vᵀMv) = 2 Σ_{i≠j} M_ij² for Rademacher v; P = 150, 40 probes."""
    matrix = psd_case()
    size, probes = matrix.shape[0], 40
    density = spectral_density(DenseOperator(matrix), num_probes=probes, num_steps=12)
    for order, power in ((1, matrix), (2, matrix @ matrix)):
        exact = float(power.trace()) / size
        off = power - torch.diag(power.diagonal())
        stderr = math.sqrt(2 * float(off.pow(2).sum())) / size / math.sqrt(probes)
        assert abs(density.moment(order) - exact) < 4 * stderr + 1e-12


def test_curvature_density_sees_negative_eigenvalues(moons):
    problem, theta = moons
    op = ex.curvature("hessian", problem, theta)
    exact = np.linalg.eigvalsh(op.dense().numpy())
    density = spectral_density(op, num_probes=4, num_steps=42)
    low, high = density.support()
    # With m = P steps the quadrature nodes are the exact eigenvalues.
    assert low == pytest.approx(exact[0], rel=1e-8)
    assert high == pytest.approx(exact[-1], rel=1e-8)
    assert low < 0
    data = density.to_dict(64)
    assert len(data["grid"]) == len(data["density"]) == 64


def test_hutchinson_is_exact_for_diagonal_matrices_and_reports_an_error():
    diagonal = DenseOperator(torch.diag(torch.arange(1.0, 6.0, dtype=torch.float64)))
    estimate = hutchinson_trace(diagonal, 3)
    assert (
        estimate.value == 15.0 and estimate.stderr == 0.0 and estimate.num_probes == 3
    )
    full = DenseOperator(psd_case(60))
    noisy = hutchinson_trace(full, 30)
    assert abs(noisy.value - float(full.matrix.trace())) < 5 * noisy.stderr


def test_rejects_bad_arguments():
    op = DenseOperator(torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="num_probes"):
        spectral_density(op, num_probes=0)
    with pytest.raises(ValueError, match="probe kind"):
        spectral_density(op, probe="uniform")
    with pytest.raises(ValueError, match="sigma"):
        spectral_density(op).evaluate(sigma=0.0)
