"""Planes through parameter space: PCA recovers a known plane; projections,
filter normalization, eigenvector planes, plane grids and 1-D interpolation."""

import pytest
import torch

import explorer as ex
from explorer.landscape import (
    Plane,
    eigenvector_plane,
    interpolate,
    normalized_direction,
    pca_plane,
    plane_loss_grid,
    random_plane,
)


def known_plane(size=500, seed=0):
    generator = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(
        torch.randn(size, 2, generator=generator, dtype=torch.float64)
    )
    origin = torch.randn(size, generator=generator, dtype=torch.float64)
    return origin, basis.T, generator


def test_pca_recovers_a_known_plane_and_the_coordinates():
    origin, basis, generator = known_plane()
    paths = []
    for _ in range(3):
        coords = torch.cumsum(
            torch.randn(12, 2, generator=generator, dtype=torch.float64), 0
        )
        paths.append(origin + coords @ basis)
    plane = pca_plane(paths, origin=origin)
    # Same plane: the projector onto its span equals the true one.
    assert torch.allclose(plane.basis.T @ plane.basis, basis.T @ basis, atol=1e-10)
    assert torch.allclose(
        plane.basis @ plane.basis.T, torch.eye(2, dtype=torch.float64), atol=1e-12
    )
    assert float(plane.explained.sum()) == pytest.approx(1.0)
    coords, distance = plane.project(paths[1])
    assert float(distance.max()) < 1e-10
    assert torch.allclose(plane.point(coords), paths[1], atol=1e-10)
    assert "PC 1" in plane.labels[0]


def test_distance_from_the_plane_is_the_orthogonal_part():
    origin, basis, generator = known_plane(size=50)
    normal = torch.randn(50, generator=generator, dtype=torch.float64)
    normal -= basis.T @ (basis @ normal)
    normal /= normal.norm()
    plane = Plane(origin, basis)
    points = (
        origin + torch.tensor([[1.0, 2.0], [-3.0, 0.5]], dtype=torch.float64) @ basis
    )
    points = points + torch.tensor([[0.0], [0.7]], dtype=torch.float64) * normal
    coords, distance = plane.project(points)
    assert torch.allclose(
        coords, torch.tensor([[1.0, 2.0], [-3.0, 0.5]], dtype=torch.float64)
    )
    assert torch.allclose(
        distance, torch.tensor([0.0, 0.7], dtype=torch.float64), atol=1e-12
    )


def test_pca_origin_choices_and_errors():
    origin, basis, generator = known_plane(size=20)
    path = origin + torch.randn(6, 2, generator=generator, dtype=torch.float64) @ basis
    assert torch.equal(pca_plane([path]).origin, path[-1])
    assert torch.allclose(pca_plane([path], origin="mean").origin, path.mean(0))
    with pytest.raises(ValueError, match="origin"):
        pca_plane([path], origin="first")
    with pytest.raises(ValueError, match="parallel"):
        Plane(origin, torch.stack([basis[0], 2 * basis[0]]))
    line = origin + torch.linspace(0, 1, 5, dtype=torch.float64).unsqueeze(1) * basis[0]
    degenerate = pca_plane([line])  # a straight path: the second direction is free
    assert torch.allclose(
        degenerate.basis @ degenerate.basis.T,
        torch.eye(2, dtype=torch.float64),
        atol=1e-12,
    )


def test_filter_normalization_matches_row_norms_and_zeroes_biases():
    problem = ex.problem("moons_mlp", hidden=(5,), num_samples=20)
    theta = problem.theta0
    generator = torch.Generator().manual_seed(1)
    raw = torch.randn(problem.num_params, generator=generator, dtype=torch.float64)
    direction = normalized_direction(problem, theta, raw, "filter")
    for layer in problem.layers:
        shape = (layer.out_features, layer.in_features)
        assert torch.allclose(
            direction[layer.weight].view(shape).norm(dim=1),
            theta[layer.weight].view(shape).norm(dim=1),
        )
        assert float(direction[layer.bias].abs().max()) == 0.0
    layered = normalized_direction(problem, theta, raw, "layer")
    first = problem.layers[0]
    assert float(layered[first.weight].norm()) == pytest.approx(
        float(theta[first.weight].norm())
    )
    plane = random_plane(problem, theta, generator)
    assert plane.kind == "random" and torch.equal(plane.origin, theta)
    with pytest.raises(ValueError, match="normalization"):
        normalized_direction(problem, theta, raw, "batch")


def test_eigenvector_plane_and_plane_grid_values():
    problem = ex.problem("moons_mlp", hidden=(5,), num_samples=20)
    op = ex.curvature("ggn", problem, problem.theta0)
    plane = eigenvector_plane(op)
    _values, vectors = torch.linalg.eigh(op.dense())
    for row, column in ((0, -1), (1, -2)):
        assert abs(float(plane.basis[row] @ vectors[:, column])) == pytest.approx(
            1.0, abs=1e-8
        )
    grid = plane_loss_grid(problem, plane, ((-1.0, 1.0), (-0.5, 0.5)), resolution=5)
    assert grid.values.shape == (5, 5)
    theta = plane.point(torch.tensor([[grid.xs[3], grid.ys[1]]]))[0]
    assert float(grid.values[1, 3]) == pytest.approx(
        float(problem.objective(theta)), rel=1e-12
    )
    covering = plane_loss_grid(
        problem,
        plane,
        resolution=4,
        paths=[plane.point(torch.tensor([[2.0, -3.0], [0.0, 0.0]]))],
    )
    assert float(covering.xs[0]) < 0 < 2.0 < float(covering.xs[-1])
    assert float(covering.ys[0]) < -3.0


def test_interpolation_endpoints_are_the_objective():
    problem = ex.problem("moons_mlp", hidden=(5,), num_samples=40)
    generator = torch.Generator().manual_seed(3)
    a = problem.theta0
    b = a + torch.randn(problem.num_params, generator=generator, dtype=torch.float64)
    line = interpolate(problem, a, b, num=5, span=(0.0, 1.0))
    assert line.alphas.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert float(line.loss[0]) == pytest.approx(float(problem.objective(a)))
    assert float(line.loss[-1]) == pytest.approx(float(problem.objective(b)))
    assert float(line.test_loss[-1]) == pytest.approx(
        float(problem.objective(b, problem.test_batch()))
    )
    assert line.distance == pytest.approx(float((b - a).norm()))


@pytest.mark.parametrize("num", [51, 7, 2])
def test_the_line_passes_exactly_through_both_ends(num):
    """α = 0 and 1 are on the line's grid whatever ``num`` (51 points over the
    default span [−0.25, 1.25] are 0.03 apart and miss α = 1)."""
    problem = ex.problem("moons_mlp", hidden=(3,), num_samples=20)
    generator = torch.Generator().manual_seed(4)
    a = problem.theta0
    b = a + torch.randn(problem.num_params, generator=generator, dtype=torch.float64)
    line = interpolate(problem, a, b, num=num)
    alphas = line.alphas.tolist()
    assert alphas == sorted(set(alphas)) and alphas[0] == -0.25 and alphas[-1] == 1.25
    assert num <= len(alphas) <= num + 2
    for end, theta in ((0.0, a), (1.0, b)):
        assert alphas.count(end) == 1
        value = float(line.loss[alphas.index(end)])
        assert value == pytest.approx(float(problem.objective(theta)), rel=1e-12)
    inside = interpolate(problem, a, b, num=4, span=(0.2, 0.8)).alphas
    assert inside.tolist() == pytest.approx([0.2, 0.4, 0.6, 0.8])  # no end inside


def test_the_default_plane_box_covers_paths_origin_and_cover():
    problem = ex.problem("moons_mlp", hidden=(4,), num_samples=10)
    origin = problem.theta0
    basis, _ = torch.linalg.qr(
        torch.randn(
            problem.num_params,
            2,
            generator=torch.Generator().manual_seed(5),
            dtype=torch.float64,
        )
    )
    plane = Plane(origin, basis.T)
    path = plane.point(torch.tensor([[2.0, 3.0], [4.0, 5.0]], dtype=torch.float64))
    grid = plane_loss_grid(problem, plane, resolution=3, paths=[path], margin=0.0)
    # the path lies in [2, 4] × [3, 5]; the origin (0, 0) widens the box to it
    assert grid.xs.tolist() == pytest.approx([0.0, 2.0, 4.0])
    assert grid.ys.tolist() == pytest.approx([0.0, 2.5, 5.0])
    unit = ((-1.0, 1.0), (-1.0, 1.0))
    covered = plane_loss_grid(
        problem, plane, resolution=3, paths=[path], margin=0.0, cover=unit
    )
    assert covered.xs.tolist() == pytest.approx([-1.0, 1.5, 4.0])
    assert covered.ys.tolist() == pytest.approx([-1.0, 2.0, 5.0])
