"""Taught GP (``sampler: {name: gp}`` with the predicted pruner, the strategy scaletune_gp)
against the default, TPE with the predicted pruner (scaletune_predicted), on the suite's six
tasks and three sampler seeds, at 8 and 16 trial-equivalents of compute.

Seeds 0 and 1 of GP ran in benchmarks/results/gp_taught, seed 2 here; TPE's three seeds are
benchmarks/results/pruner_t_live. Each study's ``<task>/search_efficiency_trials.csv`` is read.

    PYTHONPATH=. python benchmarks/results/gp_taught_s2/compare_tpe.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.results.pruner_t_live.compare import best_at, seed_by_seed
from benchmarks.suite import TASKS

RESULTS = Path(__file__).resolve().parents[1]
GP = (RESULTS / "gp_taught", RESULTS / "gp_taught_s2")
TPE = RESULTS / "pruner_t_live"


def table(roots: tuple[Path, ...], task: str, strategy: str) -> pd.DataFrame:
    parts = [pd.read_csv(p) for root in roots
             if (p := root / task / "search_efficiency_trials.csv").exists()]
    df = pd.concat(parts) if parts else pd.DataFrame(columns=["strategy", "seed"])
    return df[df.strategy == strategy]


def main() -> None:
    print("| task | seeds | best at 8: GP / TPE | best at 16: GP / TPE |")
    print("| --- | --- | --- | --- |")
    pairs: dict[int, list[float]] = {8: [], 16: []}
    for task in TASKS:
        gp = table(GP, task.name, "scaletune_gp")
        tpe = table((TPE,), task.name, "scaletune_predicted")
        seeds = sorted(set(gp.seed) & set(tpe.seed))
        if not seeds:
            continue
        cells = []
        for budget in (8, 16):
            g, t = best_at(gp[gp.seed.isin(seeds)], budget), best_at(tpe[tpe.seed.isin(seeds)],
                                                                      budget)
            cells.append(f"{np.mean([g[s] for s in seeds]):.4f} / "
                         f"{np.mean([t[s] for s in seeds]):.4f}")
            pairs[budget] += [(g[s] - t[s]) / t[s] for s in seeds]
        print(f"| {task.name} | {', '.join(map(str, seeds))} | " + " | ".join(cells) + " |")
    print()
    for budget, diffs in pairs.items():
        d = np.array(diffs)
        print(f"at {budget}, GP against TPE, seed by seed ({len(d)} pairs; equal: within "
              f"0.01%): {seed_by_seed(diffs)}; mean relative difference {d.mean():+.2%}, "
              f"median {np.median(d):+.2%}")


if __name__ == "__main__":
    main()
