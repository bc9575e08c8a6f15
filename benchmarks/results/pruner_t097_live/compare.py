"""The predicted pruner at confidence 0.97 in live studies (run while it was briefly the
default, 2026-12-03; the default stayed 0.9, search/config.py CONFIDENCE), beside the suite's
studies under the median pruner and the live studies at confidence 0.9
(benchmarks/results/pruner_t_live).

    PYTHONPATH=. python benchmarks/results/pruner_t097_live/compare.py benchmarks/results/pruner_t097_live

reads ``<task>/search_efficiency_trials.csv`` of the three and prints, per task, the mean over
seeds of the best loss within 8 and 16 trial-equivalents of compute and the compute saved by
pruning (per study, the tokens the stopped trials did not train over the tokens of all its
trials run to the end, mean over seeds), then, seed by seed, how the 0.97 studies compare with
the median pruner's and with the 0.9 ones at 8 and 16 (lower, equal within 1e-4, higher).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from benchmarks.results.pruner_t_live.compare import best_at, saved, tables_of
from benchmarks.suite import TASKS

RUNS = {"median": (Path("benchmarks/results/suite"), "scaletune"),
        "t 0.9": (Path("benchmarks/results/pruner_t_live"), "scaletune_predicted")}
NEW = "t 0.97"


def main(new_root: Path, new: str = NEW,
         baselines: dict[str, tuple[Path, str]] = RUNS) -> None:
    """The table and the seed-by-seed counts for the studies under ``new_root`` (labelled
    ``new``) against ``baselines`` (label -> (suite folder, strategy))."""
    runs = {**baselines, new: (new_root, "scaletune_predicted")}
    names = " / ".join(runs)
    print(f"| task | best at 8: {names} | best at 16: {names} | saved by pruning: {names} |")
    print("| --- | --- | --- | --- |")
    pairs = {(other, b): [] for other in baselines for b in (8, 16)}
    totals = {k: [] for k in runs}
    for task in TASKS:
        tables = tables_of(task.name, runs)
        if new not in tables or tables[new].empty:
            continue
        cells = []
        for budget in (8, 16):
            bests = {k: best_at(v, budget) for k, v in tables.items()}
            cells.append(" / ".join(f"{np.mean(list(b.values())):.4f}" for b in bests.values()))
            for other in baselines:
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
        d = np.array(diffs)
        print(f"at {budget}, {new} against {other}, seed by seed ({len(d)} pairs): lower "
              f"{int((d < -1e-4).sum())}, equal {int((abs(d) <= 1e-4).sum())}, higher "
              f"{int((d > 1e-4).sum())}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
