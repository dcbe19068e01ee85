"""Spectra and contour grids versus one gradient (issue: seeing curvature).

Run: ``python -m benchmarks.bench_spectra [--device cuda] [--models a,b,c]
[--big 2048,2048] [--json out.json]``.

Prints, measured in one run and as ratios to one full-batch gradient timed in the
same window (interleaved medians, PERF_NOTES.md):

* top-10 GGN and Hessian eigenvalues of digits MLPs 64-32-10 (float64),
  64-128-128-10 and 64-512-512-10 (float32) by our Lanczos (thick restart, full
  reorthogonalization, in torch) next to ``scipy.sparse.linalg.eigsh`` over the same
  products and, when curvlinops is importable, over curvlinops' operators (goal:
  ≥ 3× faster than eigsh over curvlinops at equal accuracy: the eigenvalue
  differences are printed);
* the SLQ spectral density of the 64-512-512-10 model (goal: ≤ 100 gradients);
* a 200 × 200 loss grid of each 2-parameter problem in one vmapped call (goal:
  ≤ 50 gradients; the grid evaluates 40,000 × N examples, so it is met where the
  per-gradient overhead dominates, i.e. small N).

``--big`` adds a wide model (e.g. 2048,2048: 4.3 M parameters) for GPUs, where no
P × P matrix could exist.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

import explorer as ex
from benchmarks.common import interleaved_medians, module_gradient, set_threads
from explorer.landscape import loss_grid
from explorer.spectra import lanczos, spectral_density

MODELS = {
    "a": ("64-32-10", (32,), "float64"),
    "b": ("64-128-128-10", (128, 128), "float32"),
    "c": ("64-512-512-10", (512, 512), "float32"),
}
TOP_K = 10


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def eigsh_top(matvec, size: int, dtype, k: int = TOP_K):
    """scipy's ARPACK on a product; BLAS pinned to one thread (PERF_NOTES.md)."""
    from scipy.sparse.linalg import LinearOperator, eigsh
    from threadpoolctl import threadpool_limits

    count = [0]
    np_dtype = np.float64 if dtype == torch.float64 else np.float32

    def product(v):
        count[0] += 1
        return matvec(np.asarray(v, dtype=np_dtype).reshape(-1))

    operator = LinearOperator((size, size), matvec=product, dtype=np_dtype)
    with threadpool_limits(1, "blas"):
        values = eigsh(operator, k=k, which="LA", return_eigenvectors=False)
    return np.sort(values)[::-1], count[0]


def ours_matvec(op):
    def matvec(v):
        tensor = torch.from_numpy(v).to(device=op.device, dtype=op.dtype)
        return op.matvec(tensor).cpu().numpy()

    return matvec


def curvlinops_matvec(problem, key: str):
    """curvlinops' operator as a NumPy matvec, or None when not importable."""
    try:
        from curvlinops import GGNLinearOperator, HessianLinearOperator
    except ImportError:
        return None
    cls = GGNLinearOperator if key == "ggn" else HessianLinearOperator
    params = list(problem.model.parameters())
    for p in params:
        p.requires_grad_(True)
    op = cls(
        problem.model,
        torch.nn.CrossEntropyLoss(),
        params,
        [(problem.inputs, problem.targets)],
        check_deterministic=False,
    )
    if hasattr(op, "to_scipy"):
        scipy_op = op.to_scipy()
        return lambda v: scipy_op @ v
    return lambda v: op @ v  # older curvlinops are scipy operators


def top_eigen_rows(name, hidden, dtype, device, repeats, peers_wanted=True) -> dict:
    """Top-10 eigenvalues by each route, timed round-robin with the gradient."""
    problem = ex.problem(
        "digits_mlp", hidden=hidden, test_fraction=0.0, dtype=dtype, device=device
    )
    theta = problem.theta0
    gradient = module_gradient(
        problem.model,
        torch.nn.functional.cross_entropy,
        problem.inputs,
        problem.targets,
    )
    print(
        f"\n== digits_mlp {name}, P = {problem.num_params:,}, N = 1,797, {dtype}, "
        f"{device} =="
    )
    rows: dict = {"P": problem.num_params}
    for key in ("ggn", "hessian"):
        found: dict = {}

        def ours(key=key, found=found):
            found["ours"] = lanczos(
                ex.curvature(key, problem, theta), TOP_K, vectors=False
            )

        routes = {"gradient": lambda: (gradient(), synchronize(device)), "ours": ours}
        if peers_wanted:
            matvecs = {"eigsh/ours": ours_matvec(ex.curvature(key, problem, theta))}
            peer = curvlinops_matvec(problem, key) if device == "cpu" else None
            if peer is not None:
                matvecs["eigsh/curvlinops"] = peer
            for route, matvec in matvecs.items():

                def run(route=route, matvec=matvec, found=found):
                    found[route] = eigsh_top(matvec, problem.num_params, theta.dtype)

                routes[route] = run
        medians = interleaved_medians(
            {
                route: (lambda f=f: (f(), synchronize(device)))
                for route, f in routes.items()
            },
            repeats=repeats,
            warmup=1,
        )
        base = medians.pop("gradient")
        result = found["ours"]
        ours_values = result.top(TOP_K).numpy()
        row = {
            "gradient_ms": base * 1e3,
            "ours_s": medians["ours"],
            "ours_gradients": medians["ours"] / base,
            "ours_products": result.products,
            "converged": result.converged,
        }
        line = (
            f"  {key:>7s} top-{TOP_K} (gradient {base * 1e3:.2f} ms): ours "
            f"{medians['ours']:6.3f} s = {medians['ours'] / base:6.1f} gradients, "
            f"{result.products} products"
        )
        for route in [r for r in medians if r != "ours"]:
            values, count = found[route]
            seconds = medians[route]
            diff = float(np.abs(values - ours_values).max() / np.abs(values).max())
            speedup = seconds / medians["ours"]
            row[route] = {
                "seconds": seconds,
                "products": count,
                "speedup": speedup,
                "max_rel_diff": diff,
            }
            goal = ""
            if route == "eigsh/curvlinops":
                goal = f" (goal ≥ 3×: {'met' if speedup >= 3 else 'MISSED'})"
            line += (
                f"\n           {route:>17s} {seconds:6.3f} s, {count} products -> ours "
                f"{speedup:4.1f}× faster{goal}; eigenvalues agree to {diff:.1e} "
                "(relative)"
            )
        if peers_wanted and device == "cpu" and "eigsh/curvlinops" not in medians:
            line += "\n           (curvlinops not importable: no eigsh/curvlinops row)"
        rows[key] = row
        print(line)
    return rows


def slq_rows(device: str, hidden=(512, 512), repeats: int = 3) -> dict:
    """SLQ densities, timed round-robin with the gradient."""
    problem = ex.problem(
        "digits_mlp", hidden=hidden, test_fraction=0.0, dtype="float32", device=device
    )
    gradient = module_gradient(
        problem.model,
        torch.nn.functional.cross_entropy,
        problem.inputs,
        problem.targets,
    )
    print(
        f"\n== SLQ density, digits_mlp 64-{'-'.join(map(str, hidden))}-10, "
        f"P = {problem.num_params:,}, float32, {device} =="
    )
    settings = {"ggn": (3, 20), "hessian": (2, 20)}
    found: dict = {}

    def density(key: str) -> None:
        probes, steps = settings[key]
        op = ex.curvature(key, problem, problem.theta0)
        found[key] = spectral_density(op, probes, steps)

    routes = {"gradient": lambda: (gradient(), synchronize(device))}
    for key in settings:
        routes[key] = lambda key=key: (density(key), synchronize(device))
    medians = interleaved_medians(routes, repeats=repeats, warmup=1)
    base = medians.pop("gradient")
    out = {}
    for key, (probes, steps) in settings.items():
        ratio = medians[key] / base
        result = found[key]
        out[key] = {
            "seconds": medians[key],
            "gradients": ratio,
            "probes": probes,
            "steps": steps,
            "products": result.products,
            "trace": result.trace(),
        }
        print(
            f"  {key:>7s}: {probes} probes × {steps} steps = {result.products} "
            f"products, {medians[key]:.3f} s = {ratio:5.1f} gradients of "
            f"{base * 1e3:.2f} ms (goal ≤ 100: {'met' if ratio <= 100 else 'MISSED'}); "
            f"trace ≈ {result.trace():.4g}"
        )
    return out


def grid_rows(device: str) -> dict:
    print(f"\n== 200 × 200 loss grid in one vmapped call, float64, {device} ==")
    out = {}
    for key, spec in ex.PROBLEMS.items():
        if "two_param" not in spec.tags:
            continue
        problem = ex.problem(key, device=device)
        theta = problem.theta0
        medians = interleaved_medians(
            {
                "gradient": lambda problem=problem, theta=theta: (
                    problem.grad(theta),
                    synchronize(device),
                ),
                "grid": lambda problem=problem: (
                    loss_grid(problem, resolution=200),
                    synchronize(device),
                ),
            },
            repeats=3,
            warmup=1,
        )
        ratio = medians["grid"] / medians["gradient"]
        out[key] = {
            "N": problem.num_examples,
            "gradients": ratio,
            "grid_s": medians["grid"],
        }
        print(
            f"  {key:>13s} (N = {problem.num_examples:5d}): grid {medians['grid'] * 1e3:8.1f} ms"
            f" = {ratio:7.1f} gradients (goal ≤ 50: {'met' if ratio <= 50 else 'missed'})"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="a,b,c", help="Subset of a,b,c.")
    parser.add_argument("--big", default="", help="Hidden widths of an extra model.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-slq", action="store_true")
    parser.add_argument("--skip-grid", action="store_true")
    parser.add_argument("--json", help="Also write the results here.")
    args = parser.parse_args()
    set_threads(2)
    results: dict = {"device": args.device}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        label, hidden, dtype = MODELS[name]
        results[label] = top_eigen_rows(label, hidden, dtype, args.device, args.repeats)
    if args.big:
        hidden = tuple(int(w) for w in args.big.split(","))
        label = "64-" + "-".join(map(str, hidden)) + "-10"
        results[label] = top_eigen_rows(
            label, hidden, "float32", args.device, 1, peers_wanted=False
        )
        if not args.skip_slq:
            results[f"slq {label}"] = slq_rows(args.device, hidden)
    if not args.skip_slq:
        results["slq"] = slq_rows(args.device)
    if not args.skip_grid:
        results["grid"] = grid_rows(args.device)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
