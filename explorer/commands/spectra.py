r"""``python -m explorer spectra``: eigenvalues, densities and quality of curvatures.

Examples::

    python -m explorer spectra --problem digits_mlp --curvature ggn,hessian \\
        --top 20 --out spectra.json
    python -m explorer spectra --problem digits_mlp --curvature ggn,hessian,kfac \\
        --top 10 --bottom 5 --density --blocks --quality --html spectra.html
    python -m explorer spectra --runs runs.json --run natural_gradient \\
        --curvature hessian --top 10        # at the last point of a saved run

Eigenvalues come from the dense solver for small P and from Lanczos on
matrix-vector products otherwise (``--method``). Output is JSON: per curvature the
top and bottom eigenvalues (with residuals and product counts), and optionally the
spectral density (SLQ), per-layer block spectra, approximation quality against the
curvature's reference, and the generalized spectrum of (C + λI)⁻¹A.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from typing import Any

HELP = (
    "Eigenvalues, spectral densities and approximation quality of curvatures; JSON out."
)


def configure(parser: argparse.ArgumentParser) -> None:
    from explorer.commands.paths import existing_path, output_file

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n", 2)[2]
    parser.add_argument(
        "--problem", help="A problem key (see `python -m explorer problems`)."
    )
    parser.add_argument(
        "--problem-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="A problem option, e.g. hidden=128,128 (repeatable).",
    )
    parser.add_argument(
        "--curvature",
        default="ggn,hessian",
        help="Comma-separated curvature keys (any registered). Default: ggn,hessian.",
    )
    parser.add_argument(
        "--top",
        type=int,
        default=10,
        help="Largest eigenvalues per curvature (0: none).",
    )
    parser.add_argument(
        "--bottom", type=int, default=0, help="Smallest (most negative) eigenvalues."
    )
    parser.add_argument(
        "--method",
        default="auto",
        choices=("auto", "dense", "lanczos"),
        help="Eigensolver: dense (small P), lanczos (products only) or auto.",
    )
    parser.add_argument(
        "--tol", type=float, default=None, help="Lanczos relative residual tolerance."
    )
    parser.add_argument(
        "--density", action="store_true", help="Add the SLQ spectral density."
    )
    parser.add_argument("--probes", type=int, default=4, help="SLQ probes (default 4).")
    parser.add_argument(
        "--lanczos-steps",
        type=int,
        default=40,
        help="SLQ steps per probe (default 40).",
    )
    parser.add_argument(
        "--blocks", action="store_true", help="Add per-layer block spectra (top-k)."
    )
    parser.add_argument(
        "--quality",
        action="store_true",
        help="Add approximation quality against each curvature's reference "
        "(or --reference).",
    )
    parser.add_argument("--reference", help="Reference curvature key for --quality.")
    parser.add_argument(
        "--generalized",
        metavar="TARGET",
        help="Add the extreme eigenvalues of (C + λI)⁻¹·TARGET (e.g. hessian).",
    )
    parser.add_argument(
        "--damping", type=float, default=1e-3, help="λ for --quality and --generalized."
    )
    parser.add_argument(
        "--dtype", default="float64", choices=("float32", "float64"), help="Precision."
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto.")
    parser.add_argument("--seed", type=int, default=0, help="Problem and probe seed.")
    parser.add_argument(
        "--runs",
        metavar="FILE",
        type=existing_path,
        help="A runs file (from compare --out).",
    )
    parser.add_argument("--run", help="The run's label in --runs (default: the first).")
    parser.add_argument(
        "--step",
        type=int,
        default=None,
        help="Trajectory step in --runs (default: last).",
    )
    parser.add_argument(
        "--out", metavar="FILE", type=output_file, help="Write the JSON here."
    )
    parser.add_argument(
        "--html",
        metavar="FILE",
        type=output_file,
        help="Also write an interactive page of the figures.",
    )


def _assignments(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--problem-option {item!r} must look like KEY=VALUE")
        text = value.strip()
        try:
            parsed: Any = json.loads(text)
        except json.JSONDecodeError:
            parsed = text
        if isinstance(parsed, str) and "," in parsed:
            with contextlib.suppress(json.JSONDecodeError):
                parsed = [json.loads(part) for part in parsed.split(",")]
        out[key.strip()] = None if text.lower() in ("none", "null") else parsed
    return out


def _point(args: argparse.Namespace):
    """(problem, θ, description of where θ comes from)."""
    import explorer as ex

    options = _assignments(args.problem_option)
    if args.runs:
        from explorer.landscape import theta_at
        from explorer.runs.history import load_histories

        runs = load_histories(args.runs)
        if not runs:
            raise ValueError(f"{args.runs} holds no runs")
        label = args.run or next(iter(runs))
        if label not in runs:
            raise ValueError(
                f"--run {label!r} is not in {args.runs}: {', '.join(runs)}"
            )
        run = runs[label]
        if run.config is None:
            raise ValueError(f"run {label!r} has no config to rebuild its problem from")
        config = run.config.problem_config
        problem = config.replace(
            problem=args.problem or config.problem,
            options={**dict(config.options), **options},
            dtype=args.dtype,
            device=args.device,
        ).build()
        step, theta = theta_at(run, args.step)
        where = f"run {label!r} at step {step}"
        return problem, theta.to(dtype=problem.dtype, device=problem.device), where
    if not args.problem:
        raise ValueError("pass --problem KEY (or --runs FILE)")
    problem = ex.problem(
        args.problem, dtype=args.dtype, device=args.device, seed=args.seed, **options
    )
    return problem, problem.theta0, "θ₀ (the initial point)"


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def analyse(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON report and the objects the figures need."""
    import torch

    import explorer as ex
    from explorer import spectra as sp

    problem, theta, where = _point(args)
    keys = [key.strip() for key in args.curvature.split(",") if key.strip()]
    for key in keys:
        ex.CURVATURES[key]
    if args.top < 0 or args.bottom < 0:
        raise ValueError("--top and --bottom must be ≥ 0")
    report: dict[str, Any] = {
        "problem": problem.key,
        "num_params": problem.num_params,
        "num_examples": problem.num_examples,
        "dtype": args.dtype,
        "point": where,
        "curvatures": {},
    }
    found: dict[str, Any] = {
        "problem": problem,
        "top": {},
        "densities": {},
        "blocks": {},
    }
    found["quality"], found["generalized"] = {}, {}
    start = time.perf_counter()
    value, grad = problem.value_and_grad(theta)
    report["loss"], report["grad_norm"] = float(value), float(grad.norm())
    for key in keys:
        generator = torch.Generator().manual_seed(args.seed)
        op = ex.curvature(key, problem, theta, generator=generator)
        entry: dict[str, Any] = {
            "label": op.label,
            "psd": bool(op.psd),
            "exact": op.exact,
            "tags": op.tags.as_dict(),
        }
        for which, count in (("largest", args.top), ("smallest", args.bottom)):
            if count == 0:
                continue
            tic = time.perf_counter()
            pairs = sp.eigenpairs(
                op, count, which, method=args.method, generator=generator, tol=args.tol
            )
            data = pairs.to_dict()
            data["seconds"] = time.perf_counter() - tic
            entry["top" if which == "largest" else "bottom"] = data
            found["top"].setdefault(key, []).append(pairs)
        if args.density:
            tic = time.perf_counter()
            density = sp.spectral_density(
                op, args.probes, args.lanczos_steps, generator=generator
            )
            entry["density"] = density.to_dict()
            entry["density"]["seconds"] = time.perf_counter() - tic
            found["densities"][key] = density
        if args.blocks:
            blocks = sp.block_spectra(op, k=max(1, args.top or 5), generator=generator)
            entry["blocks"] = {name: pairs.to_dict() for name, pairs in blocks.items()}
            found["blocks"][key] = blocks
        if args.quality:
            reference = args.reference or ex.CURVATURES[key].reference
            if reference and reference != key:
                ref = ex.curvature(reference, problem, theta, generator=generator)
                quality = sp.approximation_quality(
                    op, ref, grad, args.damping, generator=generator
                )
                entry["quality"] = quality.to_dict()
                found["quality"][key] = quality
            else:
                entry["quality"] = None
        if args.generalized:
            target = ex.curvature(args.generalized, problem, theta, generator=generator)
            try:
                pairs = sp.generalized_spectrum(
                    target,
                    op,
                    args.damping,
                    k=max(1, args.top or 5),
                    generator=generator,
                )
                entry["generalized"] = {"target": args.generalized, **pairs.to_dict()}
                found["generalized"][key] = pairs
            except ex.IndefiniteCurvatureError as error:
                entry["generalized"] = {"target": args.generalized, "error": str(error)}
        entry["products"] = int(op.products)
        report["curvatures"][key] = entry
    report["seconds"] = time.perf_counter() - start
    return _clean(report), found


def figures(found: dict[str, Any]) -> dict[str, Any]:
    """The figures of an :func:`analyse` result."""
    from explorer import plots

    out: dict[str, Any] = {}
    if found["top"]:
        out["Extreme eigenvalues"] = plots.spectrum_figure(found["top"])
    if found["densities"]:
        out["Spectral density"] = plots.density_figure(found["densities"])
    for key, blocks in found["blocks"].items():
        out[f"Per-layer spectra of {key}"] = plots.block_spectra_figure(blocks, key=key)
    if found["quality"]:
        out["Approximation quality"] = plots.quality_bars_figure(found["quality"])
    if found["generalized"]:
        out["Generalized spectra"] = plots.spectrum_figure(
            found["generalized"],
            scale="log",
            reference_line=1.0,
            title="Eigenvalues of (C + λI)⁻¹A (1 = perfect preconditioning)",
        )
    return out


def main(args: argparse.Namespace) -> int:
    report, found = analyse(args)
    text = json.dumps(report, indent=2, ensure_ascii=False)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    else:
        print(text)
    if args.html:
        from explorer.plots import write_html

        pages = figures(found)
        if not pages:
            print(
                "note: no figures requested (--top 0 and no other analysis)",
                file=sys.stderr,
            )
        else:
            write_html(
                pages,
                args.html,
                title=f"Spectra: {report['problem']} at {report['point']}",
                intro=f"P = {report['num_params']:,}; curvatures: "
                + ", ".join(report["curvatures"]),
            )
    return 0
