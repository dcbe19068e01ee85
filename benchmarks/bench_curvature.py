"""Curvature products and dense matrices versus one gradient (issue: foundation).

Run: ``python -m benchmarks.bench_curvature [--device cuda] [--skip-dense]``.

Prints, for digits MLPs 64-32-10 and 64-128-128-10 on the full 1,797 digits:
the cost of GGN, Fisher and Hessian products at a fixed θ (operator built once, as
inside CG or Lanczos) in units of one full-batch gradient (goals: ≤ 0.8, ≤ 0.8,
≤ 1.1), and the time of the dense GGN/Fisher/Hessian (float64) with the extra memory,
next to curvlinops' ``op @ eye(P)`` when curvlinops is installed (goals ≥ 3× and ≥ 2×
faster, < 1 GB extra). Dense rows run in a child process each so their memory peak is
their own.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp

import torch

import explorer as ex
from benchmarks.common import (
    interleaved_medians,
    module_gradient,
    once,
    peak_rss_mib,
    rss_mib,
    set_threads,
)

MODELS = {"64-32-10": (32,), "64-128-128-10": (128, 128)}


def build(hidden, dtype, device):
    problem = ex.problem(
        "digits_mlp", hidden=hidden, test_fraction=0.0, dtype=dtype, device=device
    )
    return problem, problem.theta0


def product_ratios(hidden, device) -> dict[str, float]:
    problem, theta = build(hidden, "float32", device)
    gradient = module_gradient(
        problem.model,
        torch.nn.functional.cross_entropy,
        problem.inputs,
        problem.targets,
    )
    v = torch.randn(problem.num_params, dtype=theta.dtype, device=theta.device)
    operators = {
        key: ex.curvature(key, problem, theta) for key in ("ggn", "fisher", "hessian")
    }
    functions = {"gradient": gradient}
    functions.update(
        {key: (lambda op=op: op.matvec(v)) for key, op in operators.items()}
    )
    try:
        from curvlinops import GGNLinearOperator, HessianLinearOperator

        params = [p for p in problem.model.parameters()]
        data = [(problem.inputs, problem.targets)]
        loss = torch.nn.CrossEntropyLoss()
        cl_ggn = GGNLinearOperator(
            problem.model, loss, params, data, check_deterministic=False
        )
        cl_hess = HessianLinearOperator(
            problem.model, loss, params, data, check_deterministic=False
        )
        functions["curvlinops ggn"] = lambda: cl_ggn @ v
        functions["curvlinops hessian"] = lambda: cl_hess @ v
    except ImportError:
        pass
    if device == "cuda":
        for name, fn in list(functions.items()):
            functions[name] = lambda fn=fn: (fn(), torch.cuda.synchronize())
    medians = interleaved_medians(functions, repeats=25)
    base = medians.pop("gradient")
    return {"gradient_ms": base * 1e3, **{k: t / base for k, t in medians.items()}}


def _dense_child(hidden, key, route, device, queue):
    set_threads(2)
    problem, theta = build(hidden, "float64", device)
    before = rss_mib()
    if route == "explorer":
        seconds = once(lambda: ex.curvature(key, problem, theta).dense())
    else:
        from curvlinops import GGNLinearOperator, HessianLinearOperator

        cls = GGNLinearOperator if key != "hessian" else HessianLinearOperator
        op = cls(
            problem.model,
            torch.nn.CrossEntropyLoss(),
            list(problem.model.parameters()),
            [(problem.inputs, problem.targets)],
            check_deterministic=False,
        )
        eye = torch.eye(problem.num_params, dtype=theta.dtype, device=theta.device)
        seconds = once(lambda: op @ eye)
    queue.put({"seconds": seconds, "extra_mib": peak_rss_mib() - before})


def dense_row(hidden, key, route, device) -> dict[str, float]:
    context = mp.get_context("spawn")
    queue = context.Queue()
    child = context.Process(
        target=_dense_child, args=(hidden, key, route, device, queue)
    )
    child.start()
    result = queue.get()
    child.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-dense", action="store_true")
    parser.add_argument("--json", help="Also write the results here.")
    args = parser.parse_args()
    set_threads(2)
    try:
        import curvlinops  # noqa: F401

        have_curvlinops = True
    except ImportError:
        have_curvlinops = False
    results = {}
    for name, hidden in MODELS.items():
        ratios = product_ratios(hidden, args.device)
        results[name] = {"products": ratios}
        print(f"\n== digits_mlp {name}, N = 1,797, float32, {args.device} ==")
        print(f"one full-batch gradient: {ratios['gradient_ms']:.2f} ms")
        goals = {"ggn": 0.8, "fisher": 0.8, "hessian": 1.1}
        for key, value in ratios.items():
            if key == "gradient_ms":
                continue
            goal = goals.get(key)
            mark = (
                ""
                if goal is None
                else f"  (goal ≤ {goal}: {'met' if value <= goal else 'MISSED'})"
            )
            print(f"  {key:>20s} product at fixed θ: {value:5.2f} gradients{mark}")
        if args.skip_dense or (name != "64-32-10" and args.device == "cpu"):
            continue  # dense P = 26,122 in float64 is 5.5 GB: beyond the 1 GB budget
        dense = {}
        print("  dense, float64:")
        for key in ("ggn", "fisher", "hessian"):
            dense[key] = dense_row(hidden, key, "explorer", args.device)
            ours = dense[key]
            line = f"    {key:>8s}: {ours['seconds']:6.2f} s, +{ours['extra_mib']:,.0f} MiB"
            if have_curvlinops and key != "fisher":
                peer = dense_row(hidden, key, "curvlinops", args.device)
                dense[f"curvlinops {key}"] = peer
                speedup = peer["seconds"] / dense[key]["seconds"]
                goal = 2.0 if key == "hessian" else 3.0
                line += (
                    f"   curvlinops op @ eye(P): {peer['seconds']:6.2f} s, "
                    f"+{peer['extra_mib']:,.0f} MiB -> {speedup:4.1f}× faster "
                    f"(goal ≥ {goal:g}×: {'met' if speedup >= goal else 'MISSED'})"
                )
            print(line)
        results[name]["dense"] = dense
    if not have_curvlinops:
        print(
            "\n(curvlinops not installed: see requirements-bench.txt for the peer rows)"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
