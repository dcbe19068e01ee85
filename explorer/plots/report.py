"""The standard set of figures for a comparison of runs (``--html`` pages, notebooks)."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from explorer.landscape.trajectories import as_runs, finite_trajectory, theta_at
from explorer.plots.theme import plain_keys
from explorer.plots.training import hyperparameter_figure, loss_figure


def _with_paths(runs: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for label, run in runs.items():
        if getattr(run, "trajectory", None) is None:
            continue
        thetas, _ = finite_trajectory(run)
        if thetas.shape[0] >= 1:
            out[label] = run
    return out


def run_report(
    runs: Any,
    problem: Any,
    *,
    landscape: bool = True,
    resolution: int | None = None,
) -> dict[str, go.Figure]:
    """``{heading: figure}`` for a set of runs on one problem.

    Always: loss against iterations, wall time and curvature-vector products, and
    the λ/ρ/α traces. With trajectories and ``landscape``: the exact contour with
    the animated paths (P = 2) or the PCA plane of the paths (larger P), the
    decision boundaries (2-D-input classification) or fitted curves (1-D
    regression) at the last step, and the KL between successive iterates.

    Args:
        runs: ``{label: History}`` (as from ``ex.compare``) or a list.
        problem: The runs' problem (the instance they ran on).
        landscape: Include the parameter- and function-space figures.
        resolution: Grid points per axis (default 120 for P = 2, 21 for planes).
    """
    from explorer import landscape as scape
    from explorer.plots import function_space as fs
    from explorer.plots import landscape as lp

    runs = as_runs(runs)
    figures: dict[str, go.Figure] = {
        "Loss per iteration": loss_figure(runs),
        "Loss against wall time": loss_figure(runs, x="wall_time"),
        "Loss against curvature-vector products": loss_figure(
            runs, x="curvature_products"
        ),
        "Damping, reduction ratio and step size": hyperparameter_figure(runs),
    }
    paths = _with_paths(runs)
    if not landscape or not paths:
        return figures
    trajectories = [finite_trajectory(run)[0] for run in paths.values()]
    if problem.num_params == 2:
        import torch

        box = scape.default_box(problem, torch.cat(trajectories))
        grid = scape.loss_grid(problem, box, resolution or 120)
        figures["Loss landscape and paths"] = lp.contour_figure(
            grid, paths, animate=True
        )
    else:
        plane = scape.pca_plane(trajectories, origin=_best_final_point(paths))
        grid = scape.plane_loss_grid(
            problem, plane, resolution=resolution or 21, paths=trajectories
        )
        figures["Paths in the PCA plane"] = lp.plane_figure(plane, grid, paths)
    finals = {label: theta_at(run) for label, run in paths.items()}
    tags = _tags(problem)
    if "inputs_2d" in tags or (
        problem.inputs.dim() == 2
        and problem.inputs.shape[1] == 2
        and problem.inputs.dtype.is_floating_point  # not two token ids
        and problem.loss.classification
    ):
        grids = {
            label: scape.decision_boundary(problem, theta)
            for label, (_, theta) in finals.items()
        }
        steps = {label: step for label, (step, _) in finals.items()}
        figures["Decision boundaries at the last step"] = fs.decision_boundary_figure(
            problem, grids, paths, steps=steps
        )
    else:
        try:
            curves = {
                label: scape.fitted_curve(problem, theta)
                for label, (_, theta) in finals.items()
            }
        except ValueError:
            curves = {}
        if curves:
            figures["Fitted curves at the last step"] = fs.fitted_curves_figure(
                problem, curves, paths
            )
    kls = {label: scape.kl_along_run(problem, run) for label, run in paths.items()}
    if any(len(frame) for frame in kls.values()):
        figures["KL between successive iterates"] = fs.kl_figure(kls, paths)
    return figures


def _best_final_point(runs: dict[str, Any]) -> Any:
    """The last finite point of the run with the lowest final loss (the plane's
    origin: the picture is centred on the best solution found).
    """
    import math

    def final_loss(run: Any) -> float:
        values = [v for v in run.to_frame()["loss"].tolist() if math.isfinite(v)]
        return values[-1] if values else math.inf

    best = min(runs.values(), key=final_loss)
    return finite_trajectory(best)[0][-1]


def _tags(problem: Any) -> frozenset[str]:
    from explorer.problems import PROBLEMS

    spec = PROBLEMS.get(problem.key)
    return getattr(spec, "tags", frozenset())


def write_report(
    runs: Any, path: Any, problem: Any, *, title: str | None = None
) -> Any:
    """:func:`run_report` written as one self-contained HTML page (``--html``).

    For the ``run`` and ``compare`` commands::

        if args.html:
            write_report(histories, args.html, problem)

    Returns:
        The path written.
    """
    from explorer.plots.html import write_html

    runs = as_runs(runs)
    first = next(iter(runs.values()))
    config = getattr(first, "config", None)
    name = getattr(config, "problem", "runs")
    intro = ", ".join(
        f"{label}: {getattr(run, 'status', 'ok')}" for label, run in runs.items()
    )
    return write_html(
        run_report(plain_keys(runs), problem),  # labels drawn as typed, not markup
        path,
        title=title or f"Curvature Explorer: {name}",
        intro=intro,
    )
