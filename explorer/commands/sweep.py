"""``sweep``: a grid of rule options × seeds, serially or on Dask; JSON summary out.

Examples:
    python -m explorer sweep --config sweep.toml --out results.parquet
    python -m explorer sweep --config sweep.toml --dask local:2 --out results.parquet
    python -m explorer sweep --config sweep.toml --html report.html
    python -m explorer sweep --config sweep.toml --dask tcp://host:8786

A ``sweep.toml`` holds the fields of ``ex.SweepConfig``, then a table per rule::

    problem = "moons_mlp"
    steps = 40
    seeds = [0, 1]

    [rules.natural_gradient]
    lr = [0.5, 1.0]
    damping = [0.001, 0.1]

    [rules.sgd]
    lr = [0.1, 0.3]

Progress goes to stderr; stdout gets ``{"trials", "run", "reused", "failed", "out",
"html", "best"}``; ``--html`` writes the report (tuned curves, a heatmap per rule).
``--out`` trials are reused (resume). Exit 0 when the sweep completes
(diverged trials are results), 2 for bad input (an unknown rule or option, an empty
grid, malformed TOML with its line, an unreachable scheduler, an incompatible
``--out``), before any trial runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

from explorer.commands.paths import output_file

HELP = "Sweep rule options × seeds on one problem (serial or Dask); JSON summary out."

#: The SweepConfig fields a config file may hold.
FILE_FIELDS = (
    "problem",
    "rules",
    "seeds",
    "steps",
    "problem_options",
    "settings",
    "sample",
    "sample_seed",
    "divergence_factor",
    "target_loss",
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n", 2)[2]
    parser.add_argument(
        "--config", required=True, help="A TOML or JSON file of SweepConfig fields."
    )
    parser.add_argument(
        "--dask",
        default=None,
        metavar="WHERE",
        help="local:N (N single-threaded worker processes here) or a scheduler "
        "address tcp://host:port; default: serial, in this process.",
    )
    parser.add_argument(
        "--out",
        default=None,
        type=output_file,
        help="A Parquet file: its finished trials are reused and it is rewritten "
        "with every trial (default: none).",
    )
    parser.add_argument(
        "--html",
        default=None,
        type=output_file,
        help="Write the report (tuned curves, a heatmap per rule, robustness) to "
        "this offline HTML file.",
    )
    parser.add_argument(
        "--max-trials",
        type=int,
        default=None,
        help="Accept grids up to this many trials (default 10,000).",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="No progress lines on stderr."
    )


def sweep_config(path: str, max_trials: int | None):
    """The :class:`~explorer.SweepConfig` in ``path`` (ValueError when it is bad)."""
    from explorer.commands.run import read_config_file
    from explorer.sweeps import MAX_TRIALS, SweepConfig

    data = read_config_file(path)
    unknown = sorted(set(data) - set(FILE_FIELDS))
    if unknown:
        raise ValueError(
            f"config file {path!r}: unknown field {unknown[0]!r}; fields: "
            f"{', '.join(FILE_FIELDS)}"
        )
    if "problem" not in data or "rules" not in data:
        raise ValueError(f"config file {path!r} needs 'problem' and a [rules.*] table")
    limit = MAX_TRIALS if max_trials is None else max_trials
    return SweepConfig(**data, max_trials=limit)


def _progress(quiet: bool):
    def report(done: int, total: int, row: dict[str, Any]) -> None:
        if quiet:
            return
        width = 30
        filled = int(width * done / max(1, total))
        bar = "#" * filled + "-" * (width - filled)
        what = "reused" if row.get("reused") else row["status"]
        print(
            f"[{bar}] {done}/{total} {row['rule']} {row['options']} seed "
            f"{row['seed']}: {what}",
            file=sys.stderr,
            flush=True,
        )

    return report


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return _plain(value.item())
    return value


def main(args: argparse.Namespace) -> int:
    from explorer.sweeps import best_settings, sweep

    config = sweep_config(args.config, args.max_trials)
    config.trials()  # every option validated before anything runs
    result = sweep(config, args.dask, out=args.out, progress=_progress(args.quiet))
    if args.html is not None:
        from explorer.sweeps.report import sweep_html

        Path(args.html).write_text(sweep_html(result), encoding="utf-8")
    frame = result.to_frame()
    best = best_settings(frame) if len(frame) else frame
    summary = {
        **result.counts,
        "out": args.out,
        "html": args.html,
        "config": {
            k: v
            for k, v in dataclasses.asdict(config).items()
            if k in FILE_FIELDS and v is not None
        },
        "best": [
            {k: _plain(v) for k, v in row.items()}
            for row in best.to_dict(orient="records")
        ],
    }
    print(json.dumps(summary, indent=2, default=str))
    return 0
