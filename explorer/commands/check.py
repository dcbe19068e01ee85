r"""``python -m explorer check``: the sanity-check battery for a curvature plugin.

Examples::

    python -m explorer check my_curvature.py --out report.html --json summary.json
    python -m explorer check examples/plugins/wrong_fisher.py --curvature fisher_sum \\
        --reference fisher --problems linreg_2d,moons_mlp
    python -m explorer check --curvature kfac --steps 10 --no-race   # a built-in

What runs: on each problem (default linreg_2d, moons_mlp and digits_mlp with 8
hidden units), a short natural_gradient run gives θ₀, its middle and its end. At each
point the curvature C is compared with the reference R (its declared reference, or
--reference): symmetry, eigenvalues, trace ratio, relative Frobenius error, the cosine
between −(C + λI)⁻¹g and −(R + λI)⁻¹g, top-eigenvector overlap and the generalized
spectrum of (C + λI)⁻¹(R + λI), beside K-FAC and the diagonal of R for context. At θ₀
the time of a product and of a damped solve is measured in gradients. Then C drives
the generic rule `precondition` in a race against natural_gradient, gauss_newton,
kfac and sgd.

Verdicts (judged at every point of every problem; the worst value counts):
  well-formed   always: builds, multiplies, right shape, finite entries
  symmetric     always: ‖C − Cᵀ‖_F / ‖C‖_F ≤ --symmetry-tol
  psd           when declared psd=True: λ_min(½(C + Cᵀ)) ≥ −psd-tol · max|λ|
  scale         when a reference is declared or given: tr C / tr R in [1/s, s],
                s = --scale-tol
  exact         when declared exact=True: ‖C − R‖_F / ‖R‖_F ≤ --exact-tol
  coverage      always (dense points): no parameter tensor with all-zero rows and
                columns in C where R has some, unless op.coverage() declares it
                "none" (then it passes and is named)
  unbiased      sampled curvatures without a diagonal/block/Kronecker structure:
                the mean of k = --sampled-draws draws has error
                e(k) ≤ max(exact-tol, c · e(1)/√k), c = --unbiased-slack
A sampled curvature is judged on the mean of its k draws everywhere. A
preconditioner plugin (register_curvature(..., inverse=True): it builds P ≈ C⁻¹) is
judged as C = P⁻¹, and the eigenvalues of P·R are reported.

Beside the verdicts: the nearest reference (which of hessian, ggn, fisher,
fisher_mc, ef, their diagonals and kfac C is closest to, C ≈ αR with the
least-squares α and residual ‖C − αR‖_F / ‖C‖_F), the staleness of C(θ₀) along the
run, and C in float32 against float64.

Output: progress and the verdicts on stderr; the JSON summary on stdout (or in
--json FILE); --out FILE writes a self-contained interactive HTML report (opens
offline).

Each plugin file is imported and checked in a process of its own, killed past
--timeout seconds (default 600): a plugin that loops at import, hangs in a product
or crashes the interpreter fails with a line naming it ("FAIL  plugin PATH: timed
out after N s while importing the plugin"), and the other files are still checked.

Exit code: 0 when every declared property holds and every plugin loads;
1 when one fails (a property, or a plugin that does not import, times out or
dies); 2 for usage errors (bad flags, a path that does not exist, an unwritable
--out or --json, an unknown key, nothing registered).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from typing import Any

HELP = (
    "Sanity-check a curvature plugin against a reference (verdicts, HTML report, "
    "JSON); exit 1 when a declared property fails."
)


def configure(parser: argparse.ArgumentParser) -> None:
    from explorer.check.isolation import DEFAULT_TIMEOUT
    from explorer.check.settings import DEFAULT_PROBLEMS, RACE_RULES, CheckSettings
    from explorer.commands.paths import existing_path, output_file

    defaults = CheckSettings()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n", 2)[2]
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        type=existing_path,
        help="Plugin files or folders; every curvature they register is checked, "
        "each file in a process of its own (see --timeout).",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="Time limit of each plugin, its import and its whole battery "
        f"(default {DEFAULT_TIMEOUT:g}); a plugin past it is killed and fails "
        "with 'timed out after SECONDS s', and the others are still checked.",
    )
    parser.add_argument(
        "--curvature",
        metavar="KEYS",
        help="Check only these comma-separated keys (a plugin's or a built-in's).",
    )
    parser.add_argument(
        "--reference",
        metavar="KEY",
        help="Compare with this curvature (e.g. fisher, ggn, hessian); default: the "
        "one each curvature declares, else fisher for information only (the scale "
        "is then not judged).",
    )
    parser.add_argument(
        "--problems",
        metavar="KEYS",
        help=f"Comma-separated problem keys (default: {','.join(DEFAULT_PROBLEMS)}; "
        "digits_mlp gets hidden=8 unless set).",
    )
    parser.add_argument(
        "--problem-option",
        action="append",
        default=[],
        metavar="PROBLEM.NAME=VALUE",
        help="An option of one problem, e.g. digits_mlp.hidden=16 (repeatable).",
    )
    parser.add_argument(
        "--curvature-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="An option of the checked curvature, e.g. rank=4 (repeatable).",
    )
    number = {"metavar": "N", "type": int}
    parser.add_argument(
        "--steps",
        default=defaults.steps,
        help=f"Steps of the reference run and the race (default {defaults.steps}).",
        **number,
    )
    parser.add_argument(
        "--points",
        default=defaults.points,
        help="Points along the reference run, θ₀ and the end included "
        f"(default {defaults.points}).",
        **number,
    )
    parser.add_argument(
        "--damping",
        type=float,
        default=defaults.damping,
        metavar="λ",
        help="λ of the damped directions, generalized spectra and damped race rules "
        f"(default {defaults.damping:g}).",
    )
    parser.add_argument(
        "--race-rules",
        metavar="RULES",
        help=f"Competitors in the race (default: {','.join(RACE_RULES)}).",
    )
    parser.add_argument("--no-race", action="store_true", help="Skip the race.")
    parser.add_argument(
        "--baselines",
        metavar="KEYS",
        help="Built-in curvatures measured beside it ('none' for none; default: kfac "
        "and diag_<reference>).",
    )
    parser.add_argument("--seed", default=defaults.seed, **number, help="Seed (0).")
    for name, help_text in (
        ("symmetry_tol", "largest ‖C − Cᵀ‖_F / ‖C‖_F"),
        ("psd_tol", "largest −λ_min / max|λ| of a declared-PSD curvature"),
        ("scale_tol", "largest factor s between tr C and tr R"),
        ("exact_tol", "largest ‖C − R‖_F / ‖R‖_F of a declared-exact curvature"),
    ):
        value = getattr(defaults, name)
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=float,
            default=value,
            metavar="X",
            help=f"Verdict threshold: {help_text} (default {value:g}).",
        )
    parser.add_argument(
        "--sampled-draws-max",
        default=defaults.sampled_draws_max,
        help="Where the mean of --sampled-draws draws looks biased or off scale, "
        f"draw more, doubling up to this many (default {defaults.sampled_draws_max}).",
        **number,
    )
    parser.add_argument(
        "--sampled-draws",
        default=defaults.sampled_draws,
        help="Independent draws of a sampled curvature; their mean is judged "
        f"(default {defaults.sampled_draws}).",
        **number,
    )
    parser.add_argument(
        "--unbiased-slack",
        type=float,
        default=defaults.unbiased_slack,
        metavar="C",
        help="c of the unbiased verdict e(k) ≤ max(tol, c · e(1)/√k) "
        f"(default {defaults.unbiased_slack:g}).",
    )
    parser.add_argument(
        "--no-precision",
        action="store_true",
        help="Skip building C in float32 at θ₀ (the precision comparison).",
    )
    parser.add_argument(
        "--dense-max-params",
        default=defaults.dense_max_params,
        help="Dense checks up to this P; random probes and Lanczos above "
        f"(default {defaults.dense_max_params}).",
        **number,
    )
    parser.add_argument(
        "--out",
        metavar="FILE",
        type=output_file,
        help="Write the interactive HTML report here.",
    )
    parser.add_argument(
        "--json",
        metavar="FILE",
        type=output_file,
        help="Write the JSON summary here instead of stdout.",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="torch CPU threads (default 1: fastest for these small matrices, and "
        "several times faster than more threads on a busy shared machine).",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="No progress lines on stderr."
    )


def _value(text: str) -> Any:
    """JSON when it parses; ``16,8`` becomes [16, 8]; else the string."""
    text = text.strip()
    if text.lower() in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    if "," in text:
        with contextlib.suppress(json.JSONDecodeError):
            return [json.loads(part) for part in text.split(",")]
    return text


def _keys(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [key.strip() for key in text.split(",") if key.strip()]


def settings_from_args(args: argparse.Namespace):
    """The :class:`~explorer.check.CheckSettings` of the command line."""
    from explorer.check.settings import (
        DEFAULT_PROBLEMS,
        RACE_RULES,
        CheckSettings,
        ProblemChoice,
    )

    names = _keys(args.problems) or list(DEFAULT_PROBLEMS)
    options: dict[str, dict[str, Any]] = {name: {} for name in names}
    for item in args.problem_option:
        target, sep, value = item.partition("=")
        problem, dot, name = target.partition(".")
        if not sep or not dot or not name.strip():
            raise ValueError(
                f"--problem-option {item!r} must look like PROBLEM.NAME=VALUE"
            )
        if problem not in options:
            raise ValueError(
                f"--problem-option {item!r} names problem {problem!r}, which is not "
                f"among the checked problems {names}"
            )
        options[problem][name.strip()] = _value(value)
    curvature_options = {}
    for item in args.curvature_option:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--curvature-option {item!r} must look like NAME=VALUE")
        curvature_options[name.strip()] = _value(value)
    baselines = _keys(args.baselines)
    if baselines == ["none"]:
        baselines = []
    return CheckSettings(
        problems=tuple(ProblemChoice.of(n, options[n]) for n in names),
        reference=args.reference,
        curvature_options=curvature_options,
        steps=args.steps,
        points=args.points,
        damping=args.damping,
        race=not args.no_race,
        race_rules=tuple(_keys(args.race_rules) or RACE_RULES),
        baselines=None if baselines is None else tuple(baselines),
        seed=args.seed,
        symmetry_tol=args.symmetry_tol,
        psd_tol=args.psd_tol,
        scale_tol=args.scale_tol,
        exact_tol=args.exact_tol,
        dense_max_params=args.dense_max_params,
        sampled_draws=args.sampled_draws,
        sampled_draws_max=max(args.sampled_draws_max, args.sampled_draws),
        unbiased_slack=args.unbiased_slack,
        precision=not args.no_precision,
    )


def _progress(fraction: float, message: str) -> None:
    print(f"[{100 * fraction:3.0f}%] {message}", file=sys.stderr, flush=True)


def _warn(source: str, error: str) -> None:
    print(f"warning: plugin {source}: {error}", file=sys.stderr)


def main(args: argparse.Namespace) -> int:
    from explorer.check import write_report, write_summary
    from explorer.check.isolation import check_isolated

    if not args.paths and not args.curvature:
        raise ValueError("pass a plugin file (or --curvature KEY for a built-in)")
    settings = settings_from_args(args)
    if args.threads < 1:
        raise ValueError(f"--threads {args.threads} must be at least 1")
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise ValueError(f"--timeout {args.timeout:g} must be a positive number")
    report = check_isolated(
        args.paths,
        _keys(args.curvature),
        settings,
        None if args.quiet else _progress,
        timeout=args.timeout,
        threads=args.threads,
        warn=_warn,
    )
    for line in report.summary_lines():
        print(line, file=sys.stderr)
    if args.out:
        write_report(report, args.out)
        print(f"report: {args.out}", file=sys.stderr)
    if args.json:
        write_summary(report, args.json)
    else:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    return report.exit_code
