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
import statistics
import time

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


def timed(function, device: str) -> tuple[float, object]:
    synchronize(device)
    start = time.perf_counter()
    result = function()
    synchronize(device)
    return time.perf_counter() - start, result


def gradient_seconds(problem, device: str, repeats: int = 9) -> float:
    gradient = module_gradient(
        problem.model,
        torch.nn.functional.cross_entropy,
        problem.inputs,
        problem.targets,
    )
    return interleaved_medians(
        {"g": lambda: (gradient(), synchronize(device))}, repeats=repeats
    )["g"]


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
    problem = ex.problem(
        "digits_mlp", hidden=hidden, test_fraction=0.0, dtype=dtype, device=device
    )
    theta = problem.theta0
    base = gradient_seconds(problem, device)
    rows = {"P": problem.num_params, "gradient_ms": base * 1e3}
    print(
        f"\n== digits_mlp {name}, P = {problem.num_params:,}, N = 1,797, {dtype}, "
        f"{device} =="
    )
    print(f"one full-batch gradient: {base * 1e3:.2f} ms")
    for key in ("ggn", "hessian"):
        times, products, result = [], 0, None
        for _ in range(repeats):
            seconds, result = timed(
                lambda key=key: lanczos(
                    ex.curvature(key, problem, theta), TOP_K, vectors=False
                ),
                device,
            )
            times.append(seconds)
            products = result.products
        ours = statistics.median(times)
        row = {
            "ours_s": ours,
            "ours_gradients": ours / base,
            "ours_products": products,
            "converged": result.converged,
        }
        ours_values = result.top(TOP_K).numpy()
        line = (
            f"  {key:>7s} top-{TOP_K}: ours {ours:6.3f} s = {ours / base:6.1f} gradients, "
            f"{products} products"
        )
        peers = {"eigsh/ours": ours_matvec(ex.curvature(key, problem, theta))}
        if not peers_wanted:
            peers = {}
        if device == "cpu" and peers_wanted:
            peer = curvlinops_matvec(problem, key)
            if peer is not None:
                peers["eigsh/curvlinops"] = peer
        for peer_name, matvec in peers.items():
            seconds, (values, count) = timed(
                lambda matvec=matvec: eigsh_top(
                    matvec, problem.num_params, theta.dtype
                ),
                device,
            )
            scale = float(np.abs(values).max())
            diff = float(np.abs(values - ours_values).max()) / scale
            row[peer_name] = {
                "seconds": seconds,
                "products": count,
                "speedup": seconds / ours,
                "max_rel_diff": diff,
            }
            goal = ""
            if peer_name == "eigsh/curvlinops":
                goal = f" (goal ≥ 3×: {'met' if seconds / ours >= 3 else 'MISSED'})"
            line += (
                f"\n           {peer_name:>17s} {seconds:6.3f} s, {count} products -> "
                f"ours {seconds / ours:4.1f}× faster{goal}; eigenvalues agree to "
                f"{diff:.1e} (relative)"
            )
        if "eigsh/curvlinops" not in peers and device == "cpu" and peers_wanted:
            line += "\n           (curvlinops not importable: no eigsh/curvlinops row)"
        rows[key] = row
        print(line)
    return rows


def slq_rows(device: str, hidden=(512, 512)) -> dict:
    problem = ex.problem(
        "digits_mlp", hidden=hidden, test_fraction=0.0, dtype="float32", device=device
    )
    base = gradient_seconds(problem, device)
    print(
        f"\n== SLQ density, digits_mlp 64-{'-'.join(map(str, hidden))}-10, "
        f"P = {problem.num_params:,}, float32, {device} =="
    )
    out = {}
    for key, probes, steps in (("ggn", 3, 20), ("hessian", 2, 20)):
        seconds, density = timed(
            lambda key=key, probes=probes, steps=steps: spectral_density(
                ex.curvature(key, problem, problem.theta0), probes, steps
            ),
            device,
        )
        ratio = seconds / base
        out[key] = {
            "seconds": seconds,
            "gradients": ratio,
            "probes": probes,
            "steps": steps,
            "products": density.products,
            "trace": density.trace(),
        }
        print(
            f"  {key:>7s}: {probes} probes × {steps} steps = {density.products} products, "
            f"{seconds:.3f} s = {ratio:5.1f} gradients (goal ≤ 100: "
            f"{'met' if ratio <= 100 else 'MISSED'}); trace ≈ {density.trace():.4g}"
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
