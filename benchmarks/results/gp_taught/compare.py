"""GP taught by pruned trials' predicted final losses against Optuna's GP, which does not see
them, in live studies of the suite (both with the prior seeding and the predicted pruner).

    PYTHONPATH=. python benchmarks/results/gp_taught/compare.py benchmarks/results/gp_taught

reads ``<task>/search_efficiency_trials.csv`` from the folder given (strategies scaletune_gp and
scaletune_gp_ignore) and, for reference, benchmarks/results/pruner_t_live (the default, TPE, on
the same sampler seeds). Prints per task the mean over seeds of the best loss within 8 and 16
trial-equivalents of compute, the trials each study ran in its 16, the share of those stopped
at their first evaluation, and the share that diverged; then, seed by seed, taught against ignore
at 8 and 16.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.results.pruner_t_live.compare import best_at, seed_by_seed
from benchmarks.suite import TASKS

TPE = Path("benchmarks/results/pruner_t_live")


def first_eval_stops(trials: pd.DataFrame) -> float:
    """Of the trials run, the share the pruner stopped at the smallest token count it stopped any
    trial at (its first evaluation; trials that diverged end earlier, not counted)."""
    first = trials[trials.status == "stopped"].tokens.min()
    return float(((trials.status == "stopped") & (trials.tokens == first)).mean())


def main(root: Path) -> None:
    arms = {"taught": "scaletune_gp", "ignore": "scaletune_gp_ignore"}
    print("| task | best at 8: taught / ignore / TPE | best at 16: taught / ignore / TPE | "
          "trials: taught / ignore | stopped at the first evaluation: taught / ignore | diverged: "
          "taught / ignore |")
    print("| --- | --- | --- | --- | --- | --- |")
    pairs: dict[int, list[float]] = {8: [], 16: []}
    for task in TASKS:
        path = root / task.name / "search_efficiency_trials.csv"
        if not path.exists():
            continue
        df = pd.read_csv(path)
        tables = {k: df[df.strategy == v] for k, v in arms.items()}
        if any(t.empty for t in tables.values()):
            continue
        seeds = sorted(set(tables["taught"].seed) & set(tables["ignore"].seed))
        tables = {k: t[t.seed.isin(seeds)] for k, t in tables.items()}
        tpe_path = TPE / task.name / "search_efficiency_trials.csv"
        tpe = pd.read_csv(tpe_path) if tpe_path.exists() else None
        if tpe is not None:
            tables["TPE"] = tpe[(tpe.strategy == "scaletune_predicted") & tpe.seed.isin(seeds)]
        cells = []
        for budget in (8, 16):
            bests = {k: best_at(t, budget) for k, t in tables.items()}
            cells.append(" / ".join(f"{np.mean(list(b.values())):.4f}" for b in bests.values()))
            for seed in seeds:
                pairs[budget].append(bests["taught"][seed] - bests["ignore"][seed])
        cells.append(" / ".join(f"{len(tables[k]) / len(seeds):.1f}" for k in arms))
        cells.append(" / ".join(f"{first_eval_stops(tables[k]):.0%}" for k in arms))
        cells.append(" / ".join(f"{(tables[k].status == 'diverged').mean():.0%}" for k in arms))
        print(f"| {task.name} ({len(seeds)} seeds) | " + " | ".join(cells) + " |")
    print()
    for budget, diffs in pairs.items():
        d = np.array(diffs)
        print(f"at {budget}, taught against ignore, seed by seed ({len(d)} pairs): "
              f"{seed_by_seed(diffs)}; mean difference {d.mean():+.4f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
