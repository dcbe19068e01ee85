"""Sweep throughput: a 32-trial grid on moons_mlp, serial against ``local:2``.

Run: ``python -m benchmarks.bench_sweeps [--steps 60] [--workers 2]``.

Both sweeps run the same 32 trials (natural_gradient and sgd over lr × damping × 2
seeds), one after the other in this run. Printed: the wall time of each, the
throughput ratio serial / Dask (goal ≥ 1.7× on 2 cores: the trials are independent
and each worker runs one with one torch thread), and the Dask path's overhead per
trial, (workers × Dask wall − Σ trial seconds) / trials, as a share of the mean
trial (goal ≤ 5 % of a 1-second trial; the cluster's start-up is counted apart).
"""

from __future__ import annotations

import argparse
import json
import time

import explorer as ex


def grid(steps: int) -> ex.SweepConfig:
    return ex.SweepConfig(
        "moons_mlp",
        {
            "natural_gradient": {"lr": [0.5, 1.0], "damping": [1e-3, 1e-2, 0.1, 1.0]},
            "sgd": {"lr": [0.05, 0.1, 0.2, 0.4], "momentum": [0.0, 0.9]},
        },
        seeds=(0, 1),
        steps=steps,
    )


def _warm_up() -> None:
    """One short run: imports, data, and torch.func's one-time set-up."""
    for rule in ("natural_gradient", "sgd"):
        ex.run(ex.RunConfig("moons_mlp", rule=rule, steps=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="Steps per trial.")
    parser.add_argument("--workers", type=int, default=2, help="Dask workers.")
    args = parser.parse_args()
    config = grid(args.steps)
    _warm_up()
    tic = time.perf_counter()
    serial = ex.sweep(config)
    serial_seconds = time.perf_counter() - tic
    from distributed import Client, LocalCluster

    tic = time.perf_counter()
    cluster = LocalCluster(
        n_workers=args.workers, threads_per_worker=1, dashboard_address=None
    )
    client = Client(cluster)
    client.run(_warm_up)  # every worker pays its one-time set-up once, as serial did
    startup = time.perf_counter() - tic
    tic = time.perf_counter()
    dask = ex.sweep(config, client)
    dask_seconds = time.perf_counter() - tic
    client.close()
    cluster.close()
    trials = len(dask.rows)
    inside = sum(row["trial_seconds"] for row in dask.rows)
    mean_trial = inside / trials
    overhead = (args.workers * dask_seconds - inside) / trials
    ratio = serial_seconds / dask_seconds
    print(f"{trials} trials on moons_mlp, {args.steps} steps each")
    print(f"serial          {serial_seconds:7.2f} s")
    print(
        f"local:{args.workers}         {dask_seconds:7.2f} s (cluster start-up "
        f"{startup:.1f} s apart)"
    )
    met = "met" if ratio >= 1.7 else "MISSED"
    print(f"throughput ratio {ratio:6.2f}×  goal ≥ 1.7×  {met}")
    share = overhead / mean_trial
    met = "met" if overhead <= 0.05 else "MISSED"
    print(
        f"overhead per trial {1e3 * overhead:.1f} ms = {100 * share:.1f} % of the "
        f"mean {mean_trial:.2f} s trial; goal ≤ 50 ms (5 % of 1 s)  {met}"
    )
    mine, theirs = serial.to_frame(), dask.to_frame()
    difference = float(
        ((mine.final_loss - theirs.final_loss).abs() / mine.final_loss.abs()).max()
    )
    print(f"largest relative difference of the final losses: {difference:.2g}")
    print(
        json.dumps(
            {
                "serial_s": serial_seconds,
                "dask_s": dask_seconds,
                "ratio": ratio,
                "overhead_s": overhead,
                "max_relative_difference": difference,
            }
        )
    )


if __name__ == "__main__":
    main()
