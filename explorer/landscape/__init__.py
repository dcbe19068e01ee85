"""Parameter space and function space pictures (THEORY.md §4).

* 2-parameter problems: :func:`loss_grid` (exact contours, one vmapped call),
  :func:`direction_field` (−(C + λI)⁻¹g arrows), :func:`quadratic_models`.
* Any P: :func:`pca_plane`, :func:`random_plane`, :func:`eigenvector_plane`,
  :func:`plane_loss_grid`, :func:`interpolate`.
* Function space: :func:`decision_boundary`, :func:`fitted_curve`,
  :func:`successive_kl`, :func:`kl_along_run`.
"""

from explorer.landscape.evaluate import objective_at
from explorer.landscape.fields import (
    ARROW_RESOLUTION,
    GRADIENT,
    DirectionField,
    direction_field,
)
from explorer.landscape.function_space import (
    InputGrid,
    decision_boundary,
    fitted_curve,
    kl_along_run,
    successive_kl,
)
from explorer.landscape.grid import Grid2D, default_box, loss_grid
from explorer.landscape.interpolation import LineSlice, interpolate
from explorer.landscape.plane import (
    Plane,
    eigenvector_plane,
    normalized_direction,
    pca_plane,
    plane_loss_grid,
    random_plane,
)
from explorer.landscape.quadratic import (
    QuadraticModel,
    quadratic_model,
    quadratic_models,
)
from explorer.landscape.trajectories import finite_trajectory, theta_at, trajectory_of

__all__ = [
    "ARROW_RESOLUTION",
    "GRADIENT",
    "DirectionField",
    "Grid2D",
    "InputGrid",
    "LineSlice",
    "Plane",
    "QuadraticModel",
    "decision_boundary",
    "default_box",
    "direction_field",
    "eigenvector_plane",
    "finite_trajectory",
    "fitted_curve",
    "interpolate",
    "kl_along_run",
    "loss_grid",
    "normalized_direction",
    "objective_at",
    "pca_plane",
    "plane_loss_grid",
    "quadratic_model",
    "quadratic_models",
    "random_plane",
    "successive_kl",
    "theta_at",
    "trajectory_of",
]
