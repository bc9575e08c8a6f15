"""Orchestration overhead of the real product path: search.runner.run_study on local Ray.

For 1 and 2 workers, a small study of the search-efficiency task (same model, data and tokens per
trial; no pruning, so that every trial is a full one) runs through ``run_study``, Ray started
fresh each time. Reported per worker count:

    study wall         run_study's wall time, Ray start-up included
    ideal              sum of the trials' train_time_s / workers (optimizer steps only)
    overhead           study wall - ideal, and as a fraction of the study wall
    trainer share      sum of (trial wall - train time) / workers: data, model set-up, evaluation
    orchestration      study wall - sum of trial walls / workers: Ray, scheduling, storage, driver
    Ray start-up       the part of orchestration spent in ray.init (timed on its own)

    python -m benchmarks.orchestration [--trials 6] [--workers 1,2] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from benchmarks.search_efficiency import DEFAULT_DATA, Bench, provenance, study_config


def measure(bench: Bench, workers: int, n_trials: int) -> dict[str, float]:
    """Run one study with ``workers`` trials at once; its wall time and its trials' times."""
    import optuna
    import ray
    from optuna.trial import TrialState
    from rich.console import Console

    from scaletune.search.cluster import init_ray
    from scaletune.search.runner import run_study

    base = study_config(bench, "scaletune_no_pruning", seed=0)
    folder = bench.out / "orchestration" / f"workers-{workers}"
    shutil.rmtree(folder, ignore_errors=True)
    cfg = base.model_copy(update={
        "name": f"orchestration-w{workers}", "study_dir": str(folder), "storage": None,
        "n_trials": n_trials,
        "workers": base.workers.model_copy(update={"cpus_per_trial": 1.0,
                                                   "max_concurrent": workers}),
    })
    console = Console(quiet=True)
    start = time.perf_counter()
    init_ray(cfg)  # what run_study does first; timed on its own as well
    ray_start = time.perf_counter() - start
    study = run_study(cfg, console=console)
    wall = time.perf_counter() - start
    ray.shutdown()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    train = sum(t.user_attrs["train_time_s"] for t in done)
    trial_wall = sum(t.user_attrs["wall_time_s"] for t in done)
    ideal = train / workers
    return {
        "workers": workers, "trials": len(done), "study_wall_s": wall,
        "sum_train_time_s": train, "sum_trial_wall_s": trial_wall, "ideal_s": ideal,
        "overhead_s": wall - ideal, "overhead_frac": (wall - ideal) / wall,
        "trainer_share_s": (trial_wall - train) / workers,
        "orchestration_s": wall - trial_wall / workers, "ray_start_s": ray_start,
    }


def main(argv: list[str] | None = None) -> None:
    import pandas as pd

    p = argparse.ArgumentParser(prog="python -m benchmarks.orchestration",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=6, help="trials per study (default 6)")
    p.add_argument("--workers", default="1,2", help="worker counts to measure (default 1,2)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = p.parse_args(argv)
    if not args.data.is_file():
        p.error(f"--data: file not found: {args.data}")
    bench = Bench(data=args.data, out=args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for w in (int(x) for x in args.workers.split(",")):
        row = measure(bench, w, args.trials)
        rows.append(row)
        print(f"workers {w}: {row['trials']} trials, study wall {row['study_wall_s']:.1f} s, "
              f"ideal {row['ideal_s']:.1f} s (train time / workers), overhead "
              f"{row['overhead_s']:.1f} s = {row['overhead_frac']:.0%} of the wall "
              f"(trainer set-up and evaluation {row['trainer_share_s']:.1f} s, orchestration "
              f"{row['orchestration_s']:.1f} s, of which Ray start-up {row['ray_start_s']:.1f} s)",
              flush=True)
    pd.DataFrame(rows).to_csv(args.out / "orchestration.csv", index=False)
    command = "python -m benchmarks.orchestration " + " ".join(
        sys.argv[1:] if argv is None else argv)
    (args.out / "orchestration_command.txt").write_text(
        command.strip() + "\n" + json.dumps(provenance(bench), indent=1) + "\n")


if __name__ == "__main__":
    main()
