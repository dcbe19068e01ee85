r"""Planes through parameter space for models with many parameters.

A :class:`Plane` is an origin o (P,) and two directions d₁, d₂ (2, P); the point with
coordinates (a, b) is :math:`o + a d_1 + b d_2`. Three ways to choose it:

* :func:`pca_plane`: the first two principal directions of all runs' trajectories
  together (Li, Xu, Taylor, Studer & Goldstein 2018, §7): the plane that keeps most
  of the paths' variance. :meth:`Plane.project` gives each point's coordinates and
  its distance from the plane, so users can tell when the picture is faithful.
* :func:`random_plane`: two random directions, filter- or layer-normalized so every
  filter (row of a weight matrix) has the norm of the corresponding filter of θ,
  which makes pictures of differently scaled networks comparable (Li et al. 2018).
* :func:`eigenvector_plane`: the top two eigenvectors of a curvature (Lanczos).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from explorer.landscape.evaluate import objective_at
from explorer.landscape.grid import Grid2D
from explorer.problems.base import Batch, Problem


@dataclass(frozen=True)
class Plane:
    """An affine plane {o + a d₁ + b d₂} in parameter space.

    Attributes:
        origin: o (P,), CPU float64.
        basis: (2, P) directions, CPU float64 (orthonormal for PCA and eigenvector
            planes; filter-normalized and not orthogonal for random ones).
        kind: ``"pca"``, ``"random"``, ``"eigenvectors"`` or ``"custom"``.
        explained: For PCA: the fraction of the trajectories' variance each
            direction explains (2,); otherwise None.
        labels: Axis titles.
    """

    origin: Tensor
    basis: Tensor
    kind: str = "custom"
    explained: Tensor | None = None
    labels: tuple[str, str] = ("direction 1", "direction 2")

    def __post_init__(self) -> None:
        if self.basis.dim() != 2 or self.basis.shape[0] != 2:
            raise ValueError(
                f"basis has shape {tuple(self.basis.shape)}; expected (2, P)"
            )
        if self.origin.shape != (self.basis.shape[1],):
            raise ValueError(
                f"origin has shape {tuple(self.origin.shape)}; expected "
                f"({self.basis.shape[1]},)"
            )
        gram = self.basis @ self.basis.T
        if float(torch.linalg.det(gram)) <= 1e-12 * float(gram.diagonal().prod()):
            raise ValueError("the two plane directions are (nearly) parallel or zero")

    @property
    def num_params(self) -> int:
        return int(self.origin.numel())

    def point(self, coordinates: Tensor) -> Tensor:
        """O + a d₁ + b d₂ for coordinates (M, 2) -> (M, P)."""
        return self.origin + coordinates.double() @ self.basis

    def project(self, thetas: Tensor) -> tuple[Tensor, Tensor]:
        """Least-squares coordinates (M, 2) of points (M, P) and their distances (M,).

        The coordinates minimize ‖θ − o − B ᵀc‖; the distance is that minimum, the
        part of θ − o the plane cannot show.
        """
        offsets = thetas.double().cpu() - self.origin
        gram = self.basis @ self.basis.T
        coordinates = torch.linalg.solve(gram, self.basis @ offsets.T).T
        residual = offsets - coordinates @ self.basis
        return coordinates, residual.norm(dim=1)


def _stack(trajectories: Sequence[Tensor]) -> Tensor:
    if not trajectories:
        raise ValueError("pass at least one trajectory")
    parts = []
    for index, path in enumerate(trajectories):
        path = torch.as_tensor(path)
        if path.dim() != 2:
            raise ValueError(
                f"trajectory {index} has shape {tuple(path.shape)}; expected (T, P)"
            )
        finite = torch.isfinite(path).all(1)
        parts.append(path[finite].double().cpu())
    sizes = {part.shape[1] for part in parts}
    if len(sizes) != 1:
        raise ValueError(f"trajectories have different numbers of parameters {sizes}")
    return torch.cat(parts)


def pca_plane(trajectories: Sequence[Tensor], origin: Tensor | str = "last") -> Plane:
    """The plane of the first two principal directions of all trajectories.

    Args:
        trajectories: One (T_i, P) tensor per run (non-finite rows are skipped).
        origin: ``"last"`` (the final point of the first run, as in Li et al. 2018),
            ``"mean"`` (the mean of all points) or a point (P,).

    Returns:
        :class:`Plane` with orthonormal directions and their explained variance.
        The PCA is of the points minus ``origin``; for T_total ≪ P it costs one thin
        SVD of a (T_total, P) matrix.
    """
    points = _stack(list(trajectories))
    if isinstance(origin, str):
        if origin == "last":
            first = torch.as_tensor(trajectories[0]).double().cpu()
            rows = first[torch.isfinite(first).all(1)]
            center = rows[-1]
        elif origin == "mean":
            center = points.mean(0)
        else:
            raise ValueError(f"origin = {origin!r} must be 'last', 'mean' or a tensor")
    else:
        center = origin.double().cpu()
    offsets = points - center
    if offsets.shape[0] < 2:
        raise ValueError("a PCA plane needs at least two distinct points")
    _, singular, vt = torch.linalg.svd(offsets, full_matrices=False)
    total = float(singular.pow(2).sum())
    if (
        total == 0
        or singular.numel() < 2
        or float(singular[1]) <= 1e-12 * float(singular[0])
    ):
        basis = _complete_basis(vt[:1] if total > 0 else None, points.shape[1])
        explained = torch.tensor([1.0 if total > 0 else 0.0, 0.0], dtype=torch.float64)
    else:
        basis = vt[:2]
        explained = singular[:2].pow(2) / total
    return Plane(
        origin=center,
        basis=basis,
        kind="pca",
        explained=explained,
        labels=(
            f"PC 1 ({100 * float(explained[0]):.1f}% of variance)",
            f"PC 2 ({100 * float(explained[1]):.1f}% of variance)",
        ),
    )


def _complete_basis(first: Tensor | None, size: int) -> Tensor:
    """Two orthonormal directions, starting from ``first`` (1, P) when given."""
    generator = torch.Generator().manual_seed(0)
    basis = [] if first is None else [first[0] / first[0].norm()]
    while len(basis) < 2:
        v = torch.randn(size, generator=generator, dtype=torch.float64)
        for b in basis:
            v = v - v.dot(b) * b
        basis.append(v / v.norm())
    return torch.stack(basis)


def normalized_direction(
    problem: Problem,
    theta: Tensor,
    direction: Tensor,
    normalization: str = "filter",
) -> Tensor:
    """Rescales ``direction`` (P,) piecewise to the norms of θ (Li et al. 2018).

    ``"filter"``: each row of every linear layer's weight (one output unit's
    incoming weights) gets the norm of the same row of θ; biases are set to zero,
    as in Li et al. ``"layer"``: each parameter tensor gets the norm of θ's.
    ``"none"``: unchanged. Parameters outside linear layers are normalized per
    tensor in both modes.
    """
    if normalization not in ("filter", "layer", "none"):
        raise ValueError(
            f"normalization = {normalization!r} must be 'filter', 'layer' or 'none'"
        )
    out = direction.double().cpu().clone()
    theta = theta.double().cpu()
    if normalization == "none":
        return out
    covered = torch.zeros(out.numel(), dtype=torch.bool)
    if normalization == "filter":
        for layer in problem.layers:
            rows = (layer.out_features, layer.in_features)
            d = out[layer.weight].view(rows)
            t = theta[layer.weight].view(rows)
            scale = t.norm(dim=1, keepdim=True) / d.norm(dim=1, keepdim=True).clamp_min(
                1e-300
            )
            out[layer.weight] = (d * scale).reshape(-1)
            covered[layer.weight] = True
            if layer.bias is not None:
                out[layer.bias] = 0.0
                covered[layer.bias] = True
    offset = 0
    for shape in problem.param_shapes:
        size = 1
        for extent in shape:
            size *= extent
        span = slice(offset, offset + size)
        offset += size
        if bool(covered[span].all()):
            continue
        d, t = out[span], theta[span]
        out[span] = d * (t.norm() / d.norm().clamp_min(1e-300))
    return out


def random_plane(
    problem: Problem,
    theta: Tensor,
    generator: torch.Generator | None = None,
    normalization: str = "filter",
) -> Plane:
    """Two random Gaussian directions through θ, normalized (:func:`normalized_direction`)."""
    generator = generator or torch.Generator(device="cpu").manual_seed(0)
    size = problem.num_params
    directions = [
        normalized_direction(
            problem,
            theta,
            torch.randn(size, generator=generator, dtype=torch.float64),
            normalization,
        )
        for _ in range(2)
    ]
    label = {"filter": "filter-normalized", "layer": "layer-normalized"}.get(
        normalization, "random"
    )
    return Plane(
        origin=theta.double().cpu(),
        basis=torch.stack(directions),
        kind="random",
        labels=(f"{label} direction 1", f"{label} direction 2"),
    )


def eigenvector_plane(op, generator: torch.Generator | None = None) -> Plane:
    """The plane through the operator's θ along its top two eigenvectors."""
    from explorer.spectra import eigenpairs

    pairs = eigenpairs(op, 2, "largest", vectors=True, generator=generator)
    basis = pairs.top_vectors(2).T.double().cpu()
    values = pairs.top(2).tolist()
    key = getattr(op, "key", "C")
    return Plane(
        origin=op.theta.double().cpu(),
        basis=basis,
        kind="eigenvectors",
        labels=(
            f"{key} eigenvector 1 (λ = {values[0]:.4g})",
            f"{key} eigenvector 2 (λ = {values[1]:.4g})",
        ),
    )


def plane_loss_grid(
    problem: Problem,
    plane: Plane,
    box: tuple[tuple[float, float], tuple[float, float]] | None = None,
    resolution: int = 25,
    batch: Batch | None = None,
    *,
    paths: Sequence[Tensor] = (),
    margin: float = 0.25,
    cover: tuple[tuple[float, float], tuple[float, float]] | None = None,
) -> Grid2D:
    """h(o + a d₁ + b d₂) on a grid of plane coordinates (one batched call).

    Args:
        problem: The problem.
        plane: The plane.
        box: ((a_lo, a_hi), (b_lo, b_hi)); default: the projected ``paths`` and
            the origin (0, 0) plus a ``margin`` (fraction of their extent), or
            [−1, 1]² without paths.
        resolution: Points per axis.
        batch: The examples (default: the training set; pass the test batch for a
            test-loss picture).
        paths: Trajectories (T, P) that the default box should cover.
        margin: Extra room around the paths.
        cover: A box the default box contains in any case, e.g. [−1, 1]² for a
            random filter-normalized plane, whose unit is the scale of θ's
            filters while paths project onto it as small wiggles (Li et al. 2018).
    """
    if resolution < 2:
        raise ValueError(f"resolution = {resolution} must be at least 2")
    if box is None:
        box = ((-1.0, 1.0), (-1.0, 1.0))
        if paths:
            # the origin too: a random or eigenvector plane is centred on the
            # point it was built at, which the paths need not pass through
            coords = torch.cat(
                [plane.project(_stack([p]))[0] for p in paths]
                + [torch.zeros(1, 2, dtype=torch.float64)]
            )
            lo, hi = coords.min(0).values, coords.max(0).values
            pad = margin * (hi - lo).clamp_min(1e-6)
            box = (
                (float(lo[0] - pad[0]), float(hi[0] + pad[0])),
                (float(lo[1] - pad[1]), float(hi[1] + pad[1])),
            )
        if cover is not None:
            box = tuple(
                (min(lo, c_lo), max(hi, c_hi))
                for (lo, hi), (c_lo, c_hi) in zip(box, cover)
            )
    (a0, a1), (b0, b1) = box
    xs = torch.linspace(a0, a1, resolution, dtype=torch.float64)
    ys = torch.linspace(b0, b1, resolution, dtype=torch.float64)
    shell = Grid2D(xs, ys, torch.empty(0))
    thetas = plane.point(shell.points())
    values = objective_at(problem, thetas, batch)
    return Grid2D(
        xs,
        ys,
        values.double().cpu().reshape(resolution, resolution),
        x_label=plane.labels[0],
        y_label=plane.labels[1],
    )
