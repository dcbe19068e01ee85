"""Any model: the generic (torch.func) paths on a conv net and a transformer.

Run: ``python -m benchmarks.bench_models [--problems mnist_cnn,tiny_transformer]
[--skip-dense] [--skip-eigen] [--json out.json]``.

Prints, measured in one run as ratios to one full-batch gradient written the way a
PyTorch user writes it (``loss(model(x), y)`` and ``autograd.grad``), timed
interleaved in the same window (PERF_NOTES.md), on ``mnist_cnn`` (LeNet-style conv
net, P = 1,066) and ``tiny_transformer`` (one attention layer, P = 4,135):

* GGN, Fisher and Hessian products at a fixed θ in float32 (goals ≤ 1.5, ≤ 1.5,
  ≤ 2), with curvlinops' GGN and Hessian products beside them;
* building K-FAC's factors (output factor ``mc``, one sample, and ``exact``), next to
  curvlinops' ``KFACLinearOperator`` (MC and type-2), goal ≤ 3 gradients;
* the dense GGN in float64 in one call, ours against curvlinops' ``op @ eye(P)``
  (goal ≥ 3× faster, < 1 GB extra; each in a child process so the memory peak is
  its own);
* the top-10 GGN eigenvalues, our Lanczos against ``scipy.sparse.linalg.eigsh`` over
  curvlinops' operator (goal ≥ 2× faster, eigenvalue agreement printed).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp

import numpy as np
import torch

import explorer as ex
from benchmarks.bench_spectra import TOP_K, curvlinops_matvec, eigsh_top
from benchmarks.common import (
    interleaved_medians,
    module_gradient,
    once,
    peak_rss_mib,
    rss_mib,
    set_threads,
)
from explorer.spectra import lanczos

PROBLEMS = ("mnist_cnn", "tiny_transformer")


def build(key: str, dtype: str):
    problem = ex.problem(key, dtype=dtype)
    gradient = module_gradient(
        problem.model,
        torch.nn.functional.cross_entropy,
        problem.inputs,
        problem.targets,
    )
    return problem, gradient


def _curvlinops_operators(problem) -> dict:
    try:
        from curvlinops import (
            GGNLinearOperator,
            HessianLinearOperator,
            KFACLinearOperator,
        )
    except ImportError:
        return {}
    arguments = (
        problem.model,
        torch.nn.CrossEntropyLoss(),
        list(problem.model.parameters()),
        [(problem.inputs, problem.targets)],
    )
    # curvlinops' K-FAC refuses parameters outside Linear/Conv2d layers (LayerNorm,
    # embeddings): it gets the layers it supports, as ours covers them
    layered = [
        param
        for module in problem.model.modules()
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d))
        for param in module.parameters(recurse=False)
    ]
    kfac_arguments = (arguments[0], arguments[1], layered, arguments[3])
    return {
        "ggn": lambda: GGNLinearOperator(*arguments, check_deterministic=False),
        "hessian": lambda: HessianLinearOperator(*arguments, check_deterministic=False),
        "kfac mc": lambda: KFACLinearOperator(
            *kfac_arguments, fisher_type="mc", mc_samples=1, check_deterministic=False
        ),
        "kfac type-2": lambda: KFACLinearOperator(
            *kfac_arguments, fisher_type="type-2", check_deterministic=False
        ),
    }


def product_rows(key: str) -> dict:
    """Products at a fixed θ and K-FAC factor builds, per gradient (float32)."""
    problem, gradient = build(key, "float32")
    theta = problem.theta0
    v = torch.randn(problem.num_params, dtype=theta.dtype)
    operators = {
        name: ex.curvature(name, problem, theta)
        for name in ("ggn", "fisher", "hessian")
    }
    functions = {"gradient": gradient}
    functions.update(
        {
            f"{name} product": (lambda op=op: op.matvec(v))
            for name, op in operators.items()
        }
    )
    for factor in ("mc", "exact"):
        functions[f"kfac {factor} factors"] = lambda factor=factor: ex.curvature(
            "kfac", problem, theta, output_factor=factor
        )
    peers = _curvlinops_operators(problem)
    if peers:
        ggn, hessian = peers["ggn"](), peers["hessian"]()
        functions["curvlinops ggn product"] = lambda: ggn @ v
        functions["curvlinops hessian product"] = lambda: hessian @ v
        for name in ("kfac mc", "kfac type-2"):
            # the constructor is lazy: the factors are computed on request
            functions[f"curvlinops {name} factors"] = lambda build=peers[name]: (
                build().compute_kronecker_factors()
            )
    medians = interleaved_medians(functions, repeats=9)
    base = medians.pop("gradient")
    return {"gradient_ms": base * 1e3, **{k: t / base for k, t in medians.items()}}


GOALS = {
    "ggn product": 1.5,
    "fisher product": 1.5,
    "hessian product": 2.0,
    "kfac mc factors": 3.0,
    "kfac exact factors": 3.0,
}


def _dense_child(key: str, route: str, queue) -> None:
    from explorer.runs.loop import warm_up_torch_func

    set_threads(2)
    warm_up_torch_func()  # torch.func's one-off imports, outside the clock
    problem, _ = build(key, "float64")
    before = rss_mib()
    if route == "explorer":
        seconds = once(lambda: ex.curvature("ggn", problem, problem.theta0).dense())
    else:
        op = _curvlinops_operators(problem)["ggn"]()
        eye = torch.eye(problem.num_params, dtype=torch.float64)
        seconds = once(lambda: op @ eye)
    queue.put({"seconds": seconds, "extra_mib": peak_rss_mib() - before})


def dense_row(key: str, route: str) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_dense_child, args=(key, route, queue))
    child.start()
    result = queue.get()
    child.join()
    return result


def eigen_row(key: str) -> dict:
    """Top-10 GGN eigenvalues: our Lanczos vs eigsh over curvlinops (float32)."""
    problem, gradient = build(key, "float32")
    found: dict = {}

    def ours():
        found["ours"] = lanczos(
            ex.curvature("ggn", problem, problem.theta0), TOP_K, vectors=False
        )

    routes = {"gradient": gradient, "ours": ours}
    peer = curvlinops_matvec(problem, "ggn")
    if peer is not None:

        def theirs():
            found["eigsh"] = eigsh_top(peer, problem.num_params, torch.float32)

        routes["eigsh/curvlinops"] = theirs
    medians = interleaved_medians(routes, repeats=3, warmup=1)
    base = medians.pop("gradient")
    row = {
        "ours_s": medians["ours"],
        "ours_gradients": medians["ours"] / base,
        "ours_products": found["ours"].products,
    }
    if "eigsh" in found:
        values, count = found["eigsh"]
        ours_values = found["ours"].top(TOP_K).numpy()
        row.update(
            eigsh_s=medians["eigsh/curvlinops"],
            eigsh_products=count,
            speedup=medians["eigsh/curvlinops"] / medians["ours"],
            max_rel_diff=float(
                np.abs(values - ours_values).max() / np.abs(values).max()
            ),
        )
    return row


def verdict(value: float, goal: float, at_most: bool = True) -> str:
    met = value <= goal if at_most else value >= goal
    return f"goal {'≤' if at_most else '≥'} {goal:g}: {'met' if met else 'MISSED'}"


def report(key: str, args) -> dict:
    problem = ex.problem(key)
    print(f"\n== {key}: P = {problem.num_params:,}, N = {problem.num_examples:,} ==")
    rows = product_rows(key)
    print(f"  one full-batch gradient (float32): {rows['gradient_ms']:.2f} ms")
    for name, value in rows.items():
        if name == "gradient_ms":
            continue
        goal = GOALS.get(name)
        mark = f"  ({verdict(value, goal)})" if goal is not None else ""
        print(f"  {name:>34s}: {value:6.2f} gradients{mark}")
    result = {"products": rows}
    if not args.skip_dense:
        ours = dense_row(key, "explorer")
        line = f"  dense GGN, float64: {ours['seconds']:.2f} s, +{ours['extra_mib']:,.0f} MiB"
        result["dense"] = {"ours": ours}
        if _curvlinops_operators(problem):
            theirs = dense_row(key, "curvlinops")
            speedup = theirs["seconds"] / ours["seconds"]
            result["dense"]["curvlinops"] = theirs
            line += (
                f"; curvlinops op @ eye(P): {theirs['seconds']:.2f} s, "
                f"+{theirs['extra_mib']:,.0f} MiB -> {speedup:.1f}× faster "
                f"({verdict(speedup, 3.0, at_most=False)}; extra < 1 GB: "
                f"{'met' if ours['extra_mib'] < 1024 else 'MISSED'})"
            )
        print(line)
    if not args.skip_eigen:
        row = eigen_row(key)
        line = (
            f"  top-{TOP_K} GGN eigenvalues: ours {row['ours_s']:.2f} s "
            f"({row['ours_products']} products)"
        )
        if "speedup" in row:
            line += (
                f"; eigsh over curvlinops {row['eigsh_s']:.2f} s "
                f"({row['eigsh_products']} products) -> {row['speedup']:.1f}× faster "
                f"({verdict(row['speedup'], 2.0, at_most=False)}); eigenvalues agree "
                f"to {row['max_rel_diff']:.1e}"
            )
        print(line)
        result["eigen"] = row
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--skip-dense", action="store_true")
    parser.add_argument("--skip-eigen", action="store_true")
    parser.add_argument("--json", help="Also write the results here.")
    args = parser.parse_args()
    set_threads(2)
    results = {key: report(key, args) for key in args.problems.split(",")}
    if not _curvlinops_operators(ex.problem(PROBLEMS[0])):
        print("\n(curvlinops not installed: see requirements-bench.txt for peer rows)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
