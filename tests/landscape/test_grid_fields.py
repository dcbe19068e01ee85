"""Contour grids equal the objective; direction fields and quadratic models."""

import math

import numpy as np
import pytest
import torch

import explorer as ex
from explorer.landscape import (
    GRADIENT,
    QuadraticModel,
    default_box,
    direction_field,
    loss_grid,
    objective_at,
    quadratic_model,
    quadratic_models,
)

TWO_PARAM = [key for key, spec in ex.PROBLEMS.items() if "two_param" in spec.tags]


@pytest.mark.parametrize("key", TWO_PARAM)
def test_grid_values_equal_the_objective_at_sample_points(key):
    problem = ex.problem(key)
    grid = loss_grid(problem, resolution=(9, 7))
    assert (
        grid.values.shape == (7, 9) and grid.xs.shape == (9,) and grid.ys.shape == (7,)
    )
    (x0, _x1), (_y0, y1) = problem.view_box
    assert float(grid.xs[0]) == x0 and float(grid.ys[-1]) == y1
    for i, j in [(0, 0), (3, 5), (6, 8), (2, 1)]:
        theta = torch.tensor([grid.xs[j], grid.ys[i]], dtype=torch.float64)
        assert float(grid.values[i, j]) == pytest.approx(
            float(problem.objective(theta)), rel=1e-12, abs=1e-12
        )
    assert grid.x_label == problem.coordinate_names[0]


def test_full_size_grid_in_one_call_and_validation():
    problem = ex.problem("rosenbrock")
    grid = loss_grid(problem, resolution=200)
    assert grid.values.shape == (200, 200) and torch.isfinite(grid.values).all()
    with pytest.raises(ValueError, match="P = 2"):
        loss_grid(ex.problem("moons_mlp", hidden=(2,)))
    with pytest.raises(ValueError, match="resolution"):
        loss_grid(problem, resolution=1)
    with pytest.raises(ValueError, match="lo < hi"):
        loss_grid(problem, ((1.0, 0.0), (0.0, 1.0)))


def test_objective_at_matches_a_loop_for_a_network():
    problem = ex.problem("moons_mlp", hidden=(6,), num_samples=40)
    generator = torch.Generator().manual_seed(0)
    thetas = torch.randn(
        5, problem.num_params, generator=generator, dtype=torch.float64
    )
    expected = torch.stack([problem.objective(t) for t in thetas])
    assert torch.allclose(objective_at(problem, thetas, chunk=2), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="expected"):
        objective_at(problem, thetas[:, :3])


def test_default_box_grows_for_paths_but_not_without_bound():
    problem = ex.problem("rosenbrock")
    (x0, x1), (y0, y1) = problem.view_box
    near = default_box(problem, torch.tensor([[2.5, 0.0]], dtype=torch.float64))
    assert near[0][1] > 2.5 and near[1] == (y0, y1)
    far = default_box(problem, torch.tensor([[1e90, -1e90]], dtype=torch.float64))
    assert far[0][1] == x1 + (x1 - x0) and far[1][0] == y0 - (y1 - y0)


def test_natural_gradient_field_points_at_the_minimum_of_linear_regression():
    """F = H is constant for linear least squares: −F⁻¹g = θ* − θ exactly; the
    empirical Fisher's directions are distorted (Kunstner et al. 2019, figure 1)."""
    problem = ex.problem("linreg_2d", num_samples=200)
    x, y = problem.inputs, problem.targets
    optimum = torch.linalg.solve(x.T @ x, x.T @ y).squeeze(1)
    field = direction_field(problem, ["fisher", "ef"], resolution=5)
    assert set(field.directions) == {GRADIENT, "fisher", "ef"}
    assert field.points.shape == (25, 2)
    steps = field.points + field.directions["fisher"]
    assert torch.allclose(steps, optimum.expand(25, 2), atol=1e-10)
    assert float(field.angle_to("fisher", optimum).max()) < 1e-5
    assert float(field.angle_to("ef", optimum).max()) > 10.0
    grad = problem.grad(field.points[7])
    assert torch.allclose(field.directions[GRADIENT][7], -grad)
    assert torch.allclose(
        field.unit("ef").norm(dim=1), torch.ones(25, dtype=torch.float64)
    )


def test_field_marks_indefinite_points_instead_of_failing():
    problem = ex.problem("tiny_tanh")
    field = direction_field(problem, ["hessian", "ggn"], resolution=6)
    count, reason = field.failures["hessian"]
    nan_rows = torch.isnan(field.directions["hessian"]).any(1)
    assert count == int(nan_rows.sum()) > 0 and "positive definite" in reason
    assert "ggn" not in field.failures


def _model(matrix, grad=(1.0, -0.5), value=0.0):
    matrix = torch.tensor(matrix, dtype=torch.float64)
    values, vectors = torch.linalg.eigh(matrix)
    return QuadraticModel(
        key="c",
        label="C",
        theta=torch.tensor([0.3, -0.2], dtype=torch.float64),
        value=value,
        grad=torch.tensor(grad, dtype=torch.float64),
        matrix=matrix,
        damping=0.0,
        eigenvalues=values,
        eigenvectors=vectors,
        kind="",
        center=None,
    )


@pytest.mark.parametrize(
    ("matrix", "branches"),
    [
        ([[2.0, 0.5], [0.5, 1.0]], 1),  # ellipse
        ([[1.0, 0.0], [0.0, -2.0]], 2),  # hyperbola
        ([[-1.0, 0.2], [0.2, -3.0]], 1),  # concave: still an ellipse through θ
        ([[1.0, 1.0], [1.0, 1.0]], 1),  # singular with g off the null space: parabola
        ([[0.0, 0.0], [0.0, 0.0]], 1),  # flat: a line
    ],
)
def test_level_sets_satisfy_the_model_equation(matrix, branches):
    model = _model(matrix)
    curves = model.level_set(extent=4.0, num=101)
    assert len(curves) == branches
    for curve in curves:
        assert curve.shape[1] == 2
        assert float((model.evaluate(curve) - model.value).abs().max()) < 1e-9


def test_level_sets_at_other_levels_and_empty_ones():
    model = _model([[2.0, 0.0], [0.0, 1.0]], grad=(0.0, 0.0), value=1.0)
    assert model.level_set(level=0.5) == []  # below the minimum
    (circle,) = model.level_set(level=2.0)
    assert float((model.evaluate(circle) - 2.0).abs().max()) < 1e-12
    lines = _model([[1.0, 0.0], [0.0, 0.0]], grad=(0.0, 0.0)).level_set(level=0.5)
    assert len(lines) == 2  # u₁ = ±1


def test_models_of_a_real_problem():
    problem = ex.problem("tiny_tanh")
    theta = torch.tensor([0.05, 0.05], dtype=torch.float64)  # near the saddle
    models = quadratic_models(problem, theta)
    assert set(models) == {"fisher", "ef", "hessian", "ggn"}
    assert models["hessian"].kind == "hyperbolic" and not models["hessian"].bounded
    assert models["ggn"].kind == "elliptic"
    ggn = models["ggn"]
    value, _grad = problem.value_and_grad(theta)
    assert ggn.value == pytest.approx(float(value))
    # The centre is the Gauss-Newton step: the model's gradient vanishes there.
    assert torch.allclose(
        ggn.grad + ggn.matrix @ (ggn.center - ggn.theta),
        torch.zeros(2, dtype=torch.float64),
        atol=1e-12,
    )
    assert ggn.minimum_value == pytest.approx(
        float(ggn.evaluate(ggn.center.unsqueeze(0)))
    )
    damped = quadratic_model(problem, theta, "hessian", damping=10.0)
    assert damped.kind == "elliptic" and damped.damping == 10.0
    assert math.isclose(
        float(damped.matrix[0, 0] - models["hessian"].matrix[0, 0]), 10.0
    )
    np.testing.assert_allclose(
        damped.eigenvalues.numpy() - 10.0, models["hessian"].eigenvalues.numpy()
    )
