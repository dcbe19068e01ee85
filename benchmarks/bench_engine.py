"""The classroom server's engine without browsers: N sessions submit the default
comparison (distinct seeds) at once to a local Dask cluster through the fair queue.

Run: ``python -m benchmarks.bench_engine [--sessions 1,4,8,16,30] [--workers 2]``.

``bench_classroom`` drives real browsers, which on a small machine share the cores
with the server; this one measures what the server itself can do with them. Per N it
prints sessions finished, p50/p95 time to the first run started and to finished,
the workers' CPU utilisation, and the class-limited-by-cores ratio = (time until the
last session finished) / (N × one session's work / workers), one session's work being
the worker CPU seconds of the N = 1 row (a single session already spreads its runs
over every worker, so its wall time would count the cores twice). Goal: ≤ 1.3.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import numpy as np
import psutil

from explorer.runs import DEFAULT_EXPERIMENT
from explorer.server.engine import Engine, EngineSettings, start_client
from explorer.server.store import ResultStore


def worker_cpu(client) -> float:
    pids = client.run(os.getpid)
    return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids.values())


def measure(engine: Engine, sessions: int, seed0: int, timeout: float) -> dict:
    """Submits ``sessions`` comparisons at once; waits for all (bounded)."""
    before = worker_cpu(engine.client)
    start = time.monotonic()
    jobs = []
    for i in range(sessions):
        options = {**DEFAULT_EXPERIMENT.run_options, "seed": seed0 + i}
        experiment = dataclasses.replace(DEFAULT_EXPERIMENT, run_options=options)
        tasks = engine.run_tasks(experiment.run_configs())
        jobs.append(engine.submit(f"s{i}", tasks, group="compare"))
    finished, started = [], []
    for tickets in jobs:
        for ticket in tickets:
            ticket.wait(max(0.0, start + timeout - time.monotonic()))
    for tickets in jobs:
        if all(t.done and t.result is not None for t in tickets):
            finished.append(max(t.computation.finished_at for t in tickets) - start)
        starts = [t.computation.started_at for t in tickets if t.computation.started_at]
        if starts:
            started.append(min(starts) - start)
    wall = time.monotonic() - start
    workers = engine.workers()
    return {
        "n": sessions,
        "finished": len(finished),
        "first_start": np.percentile(started, [50, 95]) if started else None,
        "finished_at": np.percentile(finished, [50, 95]) if finished else None,
        "last": max(finished) if len(finished) == sessions else None,
        "cpu": worker_cpu(engine.client) - before,
        "utilisation": (worker_cpu(engine.client) - before) / (workers * wall),
        "workers": workers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="1,4,8,16,30")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    counts = [int(n) for n in args.sessions.split(",")]
    client, cluster, description = start_client(EngineSettings("local", args.workers))
    engine = Engine(client, cluster, store=ResultStore(None), description=description)
    try:
        measure(engine, 1, 10_000, args.timeout)  # warm-up: imports, problem build
        print(description)
        print(
            f"{'N':>3} {'done':>6} {'1st start p50/p95':>18} {'finished p50/p95':>17} "
            f"{'last':>7} {'util':>5} {'ratio':>6}"
        )
        single = None
        for index, count in enumerate(counts):
            row = measure(engine, count, 100 * (index + 1), args.timeout)
            if count == 1:
                single = row["cpu"]  # one session's work, in worker CPU seconds
            ratio = (
                row["last"] / (count * single / row["workers"])
                if single and row["last"]
                else float("nan")
            )
            fs, ff = row["first_start"], row["finished_at"]
            print(
                f"{count:>3} {row['finished']:>3}/{count:<2} "
                f"{fs[0]:>8.1f}/{fs[1]:<8.1f} {ff[0]:>8.1f}/{ff[1]:<8.1f} "
                f"{row['last'] or float('nan'):>6.1f}s {row['utilisation']:>5.0%} "
                f"{ratio:>6.2f}"
            )
        print("goal: ratio ≤ 1.3 (the class limited by the cores, not by the server)")
    finally:
        engine.close()


if __name__ == "__main__":
    main()
