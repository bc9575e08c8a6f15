"""What the scripts of this folder share: the ladders they read (the suite's tasks, three seeds
each, as run_rungs.py ran them into ROOT) and the best trial's lr of each, the mark a law's lr
is measured against (benchmarks/results/ladder_v5_prior/ladder_suite.csv: the best of the suite
and of the ladders). The scripts import it from their own folder."""

import math
import sys
from collections.abc import Iterator
from pathlib import Path

import optuna
import pandas as pd

from benchmarks.suite import TASK_NAMES
from scaletune.search.ladder import Ladder, load_ladder, with_data_sized

optuna.logging.set_verbosity(optuna.logging.WARNING)
SEEDS = range(3)
BEST_LR = pd.read_csv(Path(__file__).resolve().parent.parent / "ladder_v5_prior"
                      / "ladder_suite.csv").set_index(["task", "ladder_seed"])["best_lr"]


def root() -> Path:
    """The folder run_rungs.py ran the rungs into: the command's first argument."""
    return Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/rungs")


def spread_root(folder: Path) -> Path:
    """Where run_spread.py runs the rungs of ``folder`` again, their lr prior twice as wide."""
    return folder.with_name(folder.name + "-spread2")


def seeds_root(folder: Path) -> Path:
    """Where run_seeds.py runs the rungs of ``folder`` again, each rung's sampler seeded apart."""
    return folder.with_name(folder.name + "-seeds")


def ladders(folder: Path, name: str = "ladder.yaml") -> Iterator[tuple[str, int, Ladder]]:
    """(task, seed, ladder) of every ladder file ``name`` under ``folder``, the suite's order."""
    for task in TASK_NAMES:
        for seed in SEEDS:
            yield task, seed, with_data_sized(load_ladder(folder / task / f"s{seed}" / name))


def gap(lr: float, task: str, seed: int) -> float:
    """log10 of ``lr`` over the best trial's lr of the ladder's task and seed (dex)."""
    return math.log10(lr / BEST_LR.loc[(task, seed)])
