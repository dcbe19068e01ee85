"""The views' computations as a worker runs them, against independent references."""

from __future__ import annotations

import torch

import explorer as ex
from explorer.runs import ProblemConfig
from explorer.server import views
from explorer.server.tasks import WorkerCache

CONFIG = ProblemConfig("moons_mlp", {"num_samples": 40, "hidden": 4}, device="cpu")
CURVATURES = ("fisher", "ggn", "hessian")


def test_matrices_and_spectra_match_the_library():
    worker = WorkerCache()
    problem = worker.problem(CONFIG)
    theta = problem.theta0
    out = views.curvature_matrices(
        worker, None, CONFIG, theta, "p0", CURVATURES, "fisher", 5, True
    )
    assert not out.errors
    for key in CURVATURES:
        reference = ex.curvature(key, CONFIG.build(), theta).dense()
        torch.testing.assert_close(out.matrices[key], reference, rtol=1e-12, atol=0)
        torch.testing.assert_close(
            out.spectra[key].eigenvalues,
            torch.linalg.eigvalsh(reference),
            rtol=1e-8,
            atol=1e-12,
        )


def test_a_new_damping_reuses_the_points_matrices():
    worker = WorkerCache()
    theta = worker.problem(CONFIG).theta0
    args = (CONFIG, theta, "p0", ("ggn",), "fisher")
    views.curvature_matrices(worker, None, *args, 5, True)
    point = views._point(worker, CONFIG, theta, "p0")
    built = dict(point.matrices)
    hessian = ex.curvature("hessian", CONFIG.build(), theta).dense()
    ggn = built["ggn"]
    for damping in (1e-3, 1.0):
        out = views.curvature_quality(worker, None, *args, damping, 5, True)
        assert all(point.matrices[k] is built[k] for k in built)  # not rebuilt
        eye = torch.eye(ggn.shape[0], dtype=ggn.dtype)
        expected = torch.linalg.eigvals(
            torch.linalg.solve(ggn + damping * eye, hessian)
        )
        expected = torch.sort(expected.real).values
        got = out.generalized["ggn"].eigenvalues
        torch.testing.assert_close(got, expected[-len(got) :], rtol=1e-7, atol=1e-9)
        assert out.qualities["ggn"].relative_frobenius_error < 1e-12  # F = G here


def test_without_dense_matrices_the_generalized_spectra_wait_to_be_asked_for():
    worker = WorkerCache()
    theta = worker.problem(CONFIG).theta0
    args = (CONFIG, theta, "p0", ("ggn", "ef"), "fisher", 1e-3, 4, False)
    skipped = views.curvature_quality(worker, None, *args, False)
    assert skipped.generalized == {}
    # the quality is computed all the same, and equals the full computation's
    full = views.curvature_quality(worker, None, *args, True)
    assert set(full.generalized) == {"ggn", "ef"}
    for key in ("ggn", "ef"):
        assert skipped.qualities[key] == full.qualities[key]
    reference = ex.curvature("ef", CONFIG.build(), theta).dense()
    fisher = ex.curvature("fisher", CONFIG.build(), theta).dense()
    error = float(torch.linalg.norm(reference - fisher) / torch.linalg.norm(fisher))
    measured = skipped.qualities["ef"].relative_frobenius_error
    assert abs(measured - error) < 0.05 * error  # estimated without dense C


def test_the_random_plane_follows_the_seed():
    worker = WorkerCache()
    theta = worker.problem(CONFIG).theta0
    planes = [
        views.plane_figures(worker, None, CONFIG, theta, {}, "random", 5, seed)
        for seed in (0, 0, 1)
    ]
    z = [torch.as_tensor(next(iter(p.values())).data[0].z) for p in planes]
    assert torch.equal(z[0], z[1]) and not torch.equal(z[0], z[2])
