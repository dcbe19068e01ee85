"""GPU checks of the curvature core: same matrices as on the CPU, and product costs.

Run on a CUDA machine: ``python -m benchmarks.gpu_check_curvature``.

1. Every selectable curvature of a small digits MLP (and the 2-parameter problems)
   built on CUDA in float64 equals the CPU result (dense matrix, diagonal, solve).
2. Product cost in gradients for digits MLPs 64-32-10, 64-128-128-10 and
   64-512-512-10 (float32, operator built once), and the dense GGN / Hessian time
   for 64-32-10 in float64.
"""

from __future__ import annotations

import contextlib
import time

import torch

import explorer as ex
from explorer.timing import product_costs


def agreement() -> None:
    cases = [
        ("digits_mlp", {"hidden": (16, 8), "train_size": 300}),
        ("tiny_tanh", {}),
        ("gaussian_fit", {"parameterization": "log_sigma"}),
        ("moons_mlp", {}),
    ]
    worst = 0.0
    for key, options in cases:
        cpu = ex.problem(key, **options)
        gpu = ex.problem(key, device="cuda", **options)
        b = torch.randn(
            cpu.num_params,
            dtype=torch.float64,
            generator=torch.Generator().manual_seed(0),
        )
        for curvature, spec in ex.CURVATURES.items():
            if not spec.selectable or spec.incompatibility(cpu) is not None:
                continue
            a = ex.curvature(curvature, cpu, cpu.theta0)
            g = ex.curvature(curvature, gpu, gpu.theta0)
            damping = 1.0
            pairs = [(a.dense(), g.dense()), (a.diag(), g.diag())]
            with contextlib.suppress(ex.IndefiniteCurvatureError):
                pairs.append((a.solve(b, damping), g.solve(b.cuda(), damping)))
            for x, y in pairs:
                rel = float((x - y.cpu()).norm() / x.norm().clamp_min(1e-300))
                worst = max(worst, rel)
                if rel > 1e-9:
                    print(f"  MISMATCH {key} {curvature}: {rel:.2e}")
    print(
        f"CPU vs CUDA, every curvature, float64: worst relative difference {worst:.1e}"
    )


def costs() -> None:
    for hidden in ((32,), (128, 128), (512, 512)):
        problem = ex.problem(
            "digits_mlp",
            hidden=hidden,
            test_fraction=0.0,
            dtype="float32",
            device="cuda",
        )
        result = product_costs(
            problem, ("ggn", "fisher", "hessian", "kfac"), repeats=30
        )
        base = result.pop("gradient_seconds") * 1e3
        products = {
            k: round(v, 2) for k, v in result.items() if not k.endswith("build")
        }
        print(
            f"digits 64-{'-'.join(map(str, hidden))}-10 (P = {problem.num_params:,}) on "
            f"CUDA: gradient {base:.2f} ms; products in gradients {products}"
        )
    problem = ex.problem("digits_mlp", test_fraction=0.0, device="cuda")
    for key in ("ggn", "hessian"):
        torch.cuda.synchronize()
        start = time.perf_counter()
        ex.curvature(key, problem, problem.theta0).dense()
        torch.cuda.synchronize()
        print(
            f"dense {key} 64-32-10 float64 on CUDA: {time.perf_counter() - start:.3f} s"
        )


if __name__ == "__main__":
    assert torch.cuda.is_available(), "run this on a CUDA machine"
    print(torch.cuda.get_device_name(0))
    agreement()
    costs()
