"""The predicted pruner with the t interval (confidence 0.9) in live studies, beside the suite's
studies under the median pruner and under the predicted pruner's first rule (range, margin 1.5).

    PYTHONPATH=. python benchmarks/results/pruner_t_live/compare.py benchmarks/results/pruner_t_live

reads ``<task>/search_efficiency_trials.csv`` from the folder given (the new studies, strategy
scaletune_predicted) and from benchmarks/results/suite (strategies scaletune, which ran the
median pruner, and scaletune_predicted, which ran the first rule), and prints, per task, the
mean over seeds of the best loss within 8 and 16 trial-equivalents of compute, and the compute
saved by pruning: per study, the tokens the stopped trials did not train over the tokens of all
its trials run to the end, mean over seeds. Then, seed by seed, how the new studies compare with
the median pruner's at 8 and 16 (lower, equal within 1e-4, higher).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.suite import TASKS

SUITE = Path("benchmarks/results/suite")
RUNS = {"median": (SUITE, "scaletune"), "range 1.5": (SUITE, "scaletune_predicted")}


def best_at(trials: pd.DataFrame, budget: float) -> dict[int, float]:
    done = trials[(trials.compute <= budget + 1e-9) & (trials.state == "COMPLETE")]
    return done.groupby("seed").value.min().to_dict()


def saved(trials: pd.DataFrame, tokens: int) -> float:
    per_seed = []
    for _, g in trials.groupby("seed"):
        stopped = g[g.status == "stopped"]
        per_seed.append(float((tokens - stopped.tokens).sum()) / (len(g) * tokens))
    return float(np.mean(per_seed))


def tables_of(task_name: str, runs: dict[str, tuple[Path, str]]) -> dict[str, pd.DataFrame]:
    """label -> the trials of ``task_name`` under each run's (folder, strategy), for the runs
    whose folder holds the task's trial table."""
    tables = {}
    for label, (root, strategy) in runs.items():
        path = root / task_name / "search_efficiency_trials.csv"
        if path.exists():
            df = pd.read_csv(path)
            tables[label] = df[df.strategy == strategy]
    return tables


def seed_by_seed(diffs: list[float]) -> str:
    """``lower L, equal E, higher H``: how many of ``diffs`` (one run's best minus another's,
    seed by seed) are below -1e-4, within 1e-4 of 0, above 1e-4."""
    d = np.array(diffs)
    return (f"lower {int((d < -1e-4).sum())}, equal {int((abs(d) <= 1e-4).sum())}, "
            f"higher {int((d > 1e-4).sum())}")


def compare(new_root: Path, new: str, baselines: dict[str, tuple[Path, str]],
            against: tuple[str, ...] | None = None) -> None:
    """The table and the seed-by-seed counts for the studies under ``new_root`` (strategy
    scaletune_predicted, labelled ``new``) beside ``baselines`` (label -> (suite folder,
    strategy)); the counts against the baselines in ``against`` (default: all)."""
    runs = {**baselines, new: (new_root, "scaletune_predicted")}
    against = tuple(baselines) if against is None else against
    names = " / ".join(runs)
    print(f"| task | best at 8: {names} | best at 16: {names} | saved by pruning: {names} |")
    print("| --- | --- | --- | --- |")
    pairs = {(other, b): [] for other in against for b in (8, 16)}
    totals = {k: [] for k in runs}
    for task in TASKS:
        tables = tables_of(task.name, runs)
        if new not in tables or tables[new].empty:
            continue
        cells = []
        for budget in (8, 16):
            bests = {k: best_at(v, budget) for k, v in tables.items()}
            cells.append(" / ".join(f"{np.mean(list(b.values())):.4f}" for b in bests.values()))
            for other in against:
                for seed, value in bests[new].items():
                    if seed in bests.get(other, {}):
                        pairs[(other, budget)].append(value - bests[other][seed])
        spared = {k: saved(v, task.tokens_per_trial) for k, v in tables.items()}
        for k, v in spared.items():
            totals[k].append(v)
        cells.append(" / ".join(f"{v:.1%}" for v in spared.values()))
        print(f"| {task.name} | " + " | ".join(cells) + " |")
    print()
    print("saved by pruning, mean over tasks: "
          + ", ".join(f"{k} {np.mean(v):.1%}" for k, v in totals.items() if v))
    for (other, budget), diffs in pairs.items():
        print(f"at {budget}, {new} against {other}, seed by seed ({len(diffs)} pairs): "
              + seed_by_seed(diffs))


def main(new_root: Path) -> None:
    compare(new_root, "t 0.9", RUNS, against=("median",))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
