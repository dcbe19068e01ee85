"""GPU checks of the spectral tools: same numbers as on the CPU, no P × P memory.

Run on a CUDA machine: ``python -m benchmarks.gpu_check_spectra [--big 4096,4096]``.

1. Lanczos top-5 (GGN, Hessian) and SLQ moments of digits 64-128-128-10 in float64
   on the GPU equal the CPU results (same seeds).
2. Top-10 GGN eigenvalues of a wide MLP (default 64-4096-4096-10, 16.8 M
   parameters, float32): the peak GPU memory stays a small multiple of P floats;
   a dense P × P matrix would need P² · 4 bytes.
"""

from __future__ import annotations

import argparse
import time

import torch

import explorer as ex
from explorer.spectra import lanczos, spectral_density


def agreement() -> None:
    runs = {}
    for device in ("cpu", "cuda"):
        problem = ex.problem("digits_mlp", hidden=(128, 128), device=device)
        out = {}
        for key in ("ggn", "hessian"):
            op = ex.curvature(key, problem, problem.theta0)
            out[key] = lanczos(op, 5, "both", vectors=False).eigenvalues
            density = spectral_density(op, 2, 15)
            out[f"{key} moments"] = torch.tensor([density.moment(1), density.moment(2)])
        runs[device] = out
    for name in runs["cpu"]:
        a, b = runs["cpu"][name], runs["cuda"][name]
        rel = float((a - b).abs().max() / a.abs().max())
        print(
            f"  {name:>16s}: CPU {a.tolist()}\n  {'':>16s}  GPU {b.tolist()}  rel diff {rel:.1e}"
        )


def big(hidden: tuple[int, ...]) -> None:
    problem = ex.problem(
        "digits_mlp", hidden=hidden, test_fraction=0.0, dtype="float32", device="cuda"
    )
    size = problem.num_params
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    start = time.perf_counter()
    op = ex.curvature("ggn", problem, problem.theta0)
    pairs = lanczos(op, 10, vectors=True)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() - before
    print(
        f"  P = {size:,}: top-10 GGN eigenvalues {pairs.top(10).tolist()}\n"
        f"  converged {pairs.converged}, {pairs.products} products, {seconds:.2f} s; "
        f"peak extra GPU memory {peak / 2**30:.2f} GiB = {peak / (4 * size):.0f} "
        f"vectors of P floats (a dense matrix: {4 * size**2 / 2**40:,.0f} TiB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--big", default="4096,4096")
    args = parser.parse_args()
    print("== CPU vs GPU, digits 64-128-128-10, float64 ==")
    agreement()
    print("== a wide model on the GPU ==")
    big(tuple(int(w) for w in args.big.split(",")))


if __name__ == "__main__":
    main()
