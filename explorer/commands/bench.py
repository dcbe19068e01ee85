r"""``python -m explorer bench``: what a curvature product costs here, in gradients.

Example::

    python -m explorer bench --problem digits_mlp --problem-option hidden=128,128 \
        --curvature ggn,fisher,hessian,kfac --dtype float32

Useful before choosing CG iterations or Lanczos steps, and for a plugin's cost. The
repository's ``benchmarks/`` folder holds the full benchmarks with peer libraries.
"""

from __future__ import annotations

import argparse
import json

HELP = "Cost of curvature-vector products relative to one full-batch gradient (JSON)."


def configure(parser: argparse.ArgumentParser) -> None:
    from explorer.commands.paths import existing_path

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n", 2)[2]
    parser.add_argument("--problem", default="digits_mlp", help="A problem key.")
    parser.add_argument(
        "--problem-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="A problem option (repeatable).",
    )
    parser.add_argument(
        "--curvature",
        default="ggn,fisher,hessian",
        help="Comma-separated curvature keys.",
    )
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto.")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's choice).",
    )
    parser.add_argument(
        "--repeats", type=int, default=15, help="Timed calls per operation."
    )
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="PATH",
        type=existing_path,
        help="A plugin file registering curvatures (repeatable).",
    )


def main(args: argparse.Namespace) -> int:
    import torch

    import explorer as ex
    from explorer.commands.run import parse_assignments
    from explorer.plugins import load_plugins
    from explorer.timing import product_costs

    for report in load_plugins(
        args.plugin, use_environment=False, use_entry_points=False
    ):
        if not report.ok:
            raise ValueError(report.summary())
    if args.threads:
        torch.set_num_threads(args.threads)
    # numbers as numbers: a problem option given as text is refused ("200")
    options = parse_assignments(args.problem_option, "--problem-option")
    problem = ex.problem(args.problem, dtype=args.dtype, device=args.device, **options)
    keys = [key.strip() for key in args.curvature.split(",") if key.strip()]
    costs = product_costs(problem, keys, repeats=args.repeats)
    result = {
        "problem": problem.summary(),
        "device": str(problem.device),
        "threads": torch.get_num_threads(),
        "gradient_ms": costs.pop("gradient_seconds") * 1e3,
        "product_in_gradients": {
            k: v for k, v in costs.items() if not k.endswith("build")
        },
        "build_in_gradients": {
            k.removesuffix(" build"): v for k, v in costs.items() if k.endswith("build")
        },
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0
