"""The default check battery's wall time on its three problems (issue 14: ≤ 60 s).

Run: ``python -m benchmarks.bench_check [--curvature fisher_mc,kfac] [--threads 2]``.

Runs ``run_battery([key], CheckSettings())`` — linreg_2d, moons_mlp and digits_mlp
(8 hidden units), the reference run, three points, the nearest-reference fit over
every exact matrix, the sampled-estimator draws, the metrics and the race — for each
key on its own, as ``python -m explorer check --curvature key`` does, and prints the
seconds per key with the goal. One run per key: the battery is seconds long, so one
measurement is its own window (PERF_NOTES.md).
"""

from __future__ import annotations

import argparse
import json
import time

import explorer as ex
from benchmarks.common import set_threads
from explorer.check import CheckSettings, run_battery

GOAL_SECONDS = 60.0


def battery_seconds(key: str) -> dict[str, float | bool]:
    start = time.perf_counter()
    report = run_battery([key], CheckSettings())
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "passed": report.passed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--curvature", default="fisher_mc,kfac", help="Comma-separated curvature keys."
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads.")
    args = parser.parse_args()
    set_threads(args.threads)
    ex.problem("digits_mlp")  # warm up imports and data loading
    results = {}
    print(f"Default check battery ({args.threads} threads), goal ≤ {GOAL_SECONDS:g} s")
    for key in args.curvature.split(","):
        row = battery_seconds(key)
        results[key] = row
        met = "met" if row["seconds"] <= GOAL_SECONDS else "MISSED"
        verdicts = "passed" if row["passed"] else "a verdict failed"
        print(f"{key:16s} {row['seconds']:7.1f} s  {met}  ({verdicts})")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
