"""Approximation quality: closed forms, identities, dense vs estimated, trajectories."""

import math

import numpy as np
import pytest
import torch

import explorer as ex
from explorer.curvature.algebra import DenseOperator
from explorer.spectra import (
    QUALITY_METRICS,
    approximation_quality,
    quality_along_trajectory,
)


def test_hand_computed_example():
    """C = diag(1, 2), R = [[2, 1], [1, 2]] (eigenvalues 1, 3), g = (1, 1), λ = 0."""
    op = DenseOperator(torch.diag(torch.tensor([1.0, 2.0], dtype=torch.float64)), "c")
    ref = DenseOperator(
        torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64), "r"
    )
    grad = torch.tensor([1.0, 1.0], dtype=torch.float64)
    q = approximation_quality(op, ref, grad, damping=0.0, k=1)
    assert q.relative_frobenius_error == pytest.approx(math.sqrt(3 / 10))
    assert q.trace_ratio == pytest.approx(3 / 4)
    assert q.condition == pytest.approx(2.0)
    assert q.reference_condition == pytest.approx(3.0)
    # d_C = −(1, ½), d_R = −(⅓, ⅓)
    assert q.cosine == pytest.approx(0.5 / (math.sqrt(1.25) * math.sqrt(2) / 3))
    assert q.top_overlap == pytest.approx(0.5)  # e₂ against (1, 1)/√2
    assert (q.curvature, q.reference, q.method) == ("c", "r", "dense")


def test_fisher_equals_ggn_for_a_matching_loss():
    problem = ex.problem("logreg_2d", num_samples=50)
    theta = problem.theta0
    q = approximation_quality(
        ex.curvature("fisher", problem, theta), ex.curvature("ggn", problem, theta), k=2
    )
    assert q.relative_frobenius_error < 1e-13
    assert q.cosine == pytest.approx(1.0, abs=1e-12)
    assert q.top_overlap == pytest.approx(1.0, abs=1e-10)
    assert q.trace_ratio == pytest.approx(1.0, abs=1e-12)
    assert q.condition == pytest.approx(q.reference_condition, rel=1e-10)


def test_estimated_metrics_agree_with_dense(moons):
    problem, theta = moons
    kfac = ex.curvature("kfac", problem, theta)
    fisher = ex.curvature("fisher", problem, theta)
    dense = approximation_quality(kfac, fisher, k=3, method="dense")
    estimated = approximation_quality(
        kfac, fisher, k=3, method="estimated", num_probes=64
    )
    assert estimated.method == "estimated" and estimated.num_probes == 64
    assert estimated.cosine == pytest.approx(dense.cosine, rel=1e-10)
    assert estimated.top_overlap == pytest.approx(dense.top_overlap, abs=1e-6)
    assert estimated.relative_frobenius_error == pytest.approx(
        dense.relative_frobenius_error, rel=0.15
    )
    assert estimated.trace_ratio == pytest.approx(dense.trace_ratio, rel=0.1)
    assert estimated.condition == pytest.approx(dense.condition, rel=1e-3)
    assert 0 < dense.relative_frobenius_error < 1 and 0 < dense.top_overlap <= 1


def test_indefinite_reference_gives_nan_cosine_with_a_note(moons):
    problem, theta = moons
    q = approximation_quality(
        ex.curvature("ggn", problem, theta),
        ex.curvature("hessian", problem, theta),
        damping=0,
    )
    assert math.isnan(q.cosine)
    assert any("hessian" in note for note in q.notes)
    assert q.reference_condition == math.inf
    assert q.to_dict()["notes"] == list(q.notes)


def test_quality_along_a_real_run():
    history = ex.run(
        ex.RunConfig(
            "moons_mlp",
            {"hidden": [4], "num_samples": 40},
            rule="natural_gradient",
            steps=4,
            device="cpu",
        )
    )
    problem = ex.problem("moons_mlp", hidden=(4,), num_samples=40)
    frame = quality_along_trajectory(problem, history, "kfac", max_points=3)
    assert list(frame.columns) == ["step", *QUALITY_METRICS]
    assert frame["step"].tolist() == [0, 2, 4]
    assert np.isfinite(frame[["relative_frobenius_error", "cosine"]].to_numpy()).all()
    thetas = history.trajectory
    same = quality_along_trajectory(problem, thetas, "kfac", "fisher", max_points=3)
    np.testing.assert_allclose(same["cosine"], frame["cosine"])
    with pytest.raises(ValueError, match="reference"):
        quality_along_trajectory(problem, thetas, "hessian")
