"""Orchestration overhead of the real product path: search.runner.run_study on local Ray.
The default run takes about a minute on 2 cores (two studies of 6 trials; --quickstart adds about
another).

For 1 and 2 workers, a small study of the search-efficiency task (same model, data and tokens per
trial; no pruning, so that every trial is a full one) runs through ``run_study``, which starts
Ray fresh each time (``--address``: on a running Ray cluster instead). Reported per worker count:

    study wall         run_study's wall time, Ray start-up included
    ideal              sum of the trials' train_time_s / workers (optimizer steps only)
    overhead           study wall - ideal, and as a fraction of the study wall
    trainer share      sum of (trial wall - train time) / workers: data, model set-up, evaluation
    orchestration      study wall - sum of trial walls / workers: Ray, scheduling, storage, driver,
                       and as a fraction of the study wall (the issue's target: <= 10% at 2)
    first trial        from calling run_study to the first trial starting on a worker (Ray's
                       start-up, opening the storage, the first draw)
    after start-up     orchestration from the first trial's start to the end (study wall -
                       first trial - sum of trial walls / workers): what the study pays per
                       trial (scheduling, storage, waiting for the last trials), apart from its
                       start-up, and as a fraction of that part of the wall
    cold trials        trials that found their worker process without torch and the trainer
                       imported (each pays ~2 s of imports on a laptop)

``--quickstart`` also times the README's quickstart end to end, as a user runs it
(``scaletune run studies/quickstart.yaml`` in an empty folder, a new process), and prints its
best trial.

    python -m benchmarks.orchestration [--trials 6] [--workers 1,2] [--quickstart]
                                       [--address ADDR] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import refuse_below_one, run_main
from benchmarks.search_efficiency import (
    DEFAULT_DATA,
    Bench,
    command_line,
    provenance,
    study_config,
)


def measure(bench: Bench, workers: int, n_trials: int,
            address: str | None = None) -> dict[str, float]:
    """Run one study with ``workers`` trials at once; its wall time and its trials' times.
    ``address``: join that running Ray cluster (``workers.address``) instead of starting one."""
    import optuna
    import ray
    from optuna.trial import TrialState
    from rich.console import Console

    from scaletune.search.runner import run_study

    base = study_config(bench, "scaletune_no_pruning", seed=0)
    folder = bench.out / "orchestration" / f"workers-{workers}"
    shutil.rmtree(folder, ignore_errors=True)
    cfg = base.model_copy(update={
        "name": f"orchestration-w{workers}", "study_dir": str(folder), "storage": None,
        "n_trials": n_trials,
        "workers": base.workers.model_copy(update={"cpus_per_trial": 1.0,
                                                   "max_concurrent": workers,
                                                   "address": address}),
    })
    console = Console(quiet=True)
    start, started = time.perf_counter(), time.time()
    study = run_study(cfg, console=console, summary=False)
    wall = time.perf_counter() - start
    ray.shutdown()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    train = sum(t.user_attrs["train_time_s"] for t in done)
    trial_wall = sum(t.user_attrs["wall_time_s"] for t in done)
    ideal = train / workers
    orchestration = wall - trial_wall / workers
    first = min(t.user_attrs["worker_started_at"] for t in done) - started
    return {
        "workers": workers, "trials": len(done), "study_wall_s": wall,
        "sum_train_time_s": train, "sum_trial_wall_s": trial_wall, "ideal_s": ideal,
        "overhead_s": wall - ideal, "overhead_frac": (wall - ideal) / wall,
        "trainer_share_s": (trial_wall - train) / workers,
        "orchestration_s": orchestration, "orchestration_frac": orchestration / wall,
        "first_trial_s": first,
        "after_startup_orchestration_s": orchestration - first,
        "after_startup_orchestration_frac": (orchestration - first) / (wall - first),
        "cold_trials": sum(not t.user_attrs.get("worker_warm", False) for t in done),
    }


QUICKSTART = Path(__file__).resolve().parents[1] / "studies" / "quickstart.yaml"


def quickstart() -> dict[str, object]:
    """``scaletune run studies/quickstart.yaml`` in a new folder and process, as a user runs it:
    the wall time of the whole command, and the best trial it prints."""
    with tempfile.TemporaryDirectory(prefix="quickstart-") as tmp:
        study = Path(tmp) / "quickstart.yaml"
        shutil.copy(QUICKSTART, study)
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "scaletune.search.cli", "run", study.name],
                             cwd=tmp, capture_output=True, text=True, check=True).stdout
        wall = time.perf_counter() - start
    best = re.search(r"best trial (\d+): val loss ([0-9.]+)", out)
    return {"wall_s": wall, "best_trial": int(best[1]) if best else None,
            "best_loss": float(best[2]) if best else None}


def main(argv: list[str] | None = None) -> None:
    import pandas as pd

    p = argparse.ArgumentParser(prog="python -m benchmarks.orchestration",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=6, help="trials per study (default 6)")
    p.add_argument("--workers", default="1,2", help="worker counts to measure (default 1,2)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"),
                   help="results folder: orchestration.csv and the command (default %(default)s)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help="the task's text file (default %(default)s)")
    p.add_argument("--address", default=None,
                   help="join this running Ray cluster (for example auto, after `ray start "
                        "--head`) instead of starting one per study: Ray's start-up is then "
                        "paid once per machine, not per study")
    p.add_argument("--quickstart", action="store_true",
                   help="also time the README's quickstart end to end, in a new process")
    args = p.parse_args(argv)
    try:
        workers = [int(x) for x in args.workers.split(",") if x.strip()]
    except ValueError:
        workers = []
    if not workers or min(workers) < 1:  # a ValueError, or a ZeroDivisionError after a study
        p.error(f"--workers: comma-separated counts of 1 or more, got {args.workers!r}")
    refuse_below_one(p, {"--trials": args.trials})
    if not args.data.is_file():
        p.error(f"--data: file not found: {args.data}")
    if args.address is not None:  # the study's check (the config is copied, not validated)
        from pydantic import ValidationError

        from scaletune.search.config import WorkersConfig

        try:
            WorkersConfig(address=args.address)
        except ValidationError as e:
            p.error(f"--address: {e.errors()[0]['msg'].removeprefix('Value error, ')}")
    bench = Bench(data=args.data, out=args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for w in workers:
        row = measure(bench, w, args.trials, args.address)
        rows.append(row)
        print(f"workers {w}: {row['trials']} trials, study wall {row['study_wall_s']:.1f} s, "
              f"ideal {row['ideal_s']:.1f} s (train time / workers), overhead "
              f"{row['overhead_s']:.1f} s = {row['overhead_frac']:.0%} of the wall (trainer "
              f"set-up and evaluation {row['trainer_share_s']:.1f} s, orchestration "
              f"{row['orchestration_s']:.1f} s = {row['orchestration_frac']:.0%}); first trial "
              f"at {row['first_trial_s']:.1f} s, then orchestration "
              f"{row['after_startup_orchestration_s']:.1f} s = "
              f"{row['after_startup_orchestration_frac']:.0%} of the rest; {row['cold_trials']} "
              "cold trial(s)", flush=True)
    if args.quickstart:
        q = quickstart()
        print(f"quickstart: {q['wall_s']:.1f} s end to end; best trial {q['best_trial']}: "
              f"{q['best_loss']}", flush=True)
        (args.out / "quickstart_time.json").write_text(json.dumps(q, indent=1) + "\n")
    pd.DataFrame(rows).to_csv(args.out / "orchestration.csv", index=False)
    (args.out / "orchestration_command.txt").write_text(
        command_line(p, argv) + "\n" + json.dumps(settings(bench), indent=1) + "\n")


def settings(bench: Bench) -> dict:
    """What the command file records of a run: the machine, the versions and the task's
    settings, not the search benchmark's budget, seeds, workers and strategies, which this one
    does not use (its workers are its command line's: "workers": "2" was written for a run of
    --workers 1)."""
    recorded = provenance(bench)
    for unused in ("budget", "tpe_budget", "seeds", "workers", "strategies"):
        del recorded["bench"][unused]
    return recorded


if __name__ == "__main__":
    run_main(main, "orchestration")
