"""pydoc-long's scaletune studies (TPE, prior seeding, the predicted pruner: the strategy
scaletune_predicted) with the warmup floor 0.087 (this folder) against the floor 0.05
(benchmarks/results/pruner_t_live), same three sampler seeds: best loss at 8 and 16
trial-equivalents, compute to within 1% of the best known at the task (1.8050, from the suite),
and how many trials tried a warmup above 0.225 (the old range's top).

    PYTHONPATH=. python benchmarks/results/warmup_floor/compare.py > compare.txt
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from benchmarks.results.pruner_t_live.compare import best_at

RESULTS = Path(__file__).resolve().parents[1]
BEST = 1.804962158203125  # pydoc-long's best known (TPE + median, seed 0, trial 20)
RUNS = {"floor 0.05": RESULTS / "pruner_t_live", "floor 0.087": RESULTS / "warmup_floor"}


def to_within(trials: pd.DataFrame, within: float = 0.01) -> float:
    """Compute (trial-equivalents) at the first complete trial within 1% of BEST; NaN if none."""
    ok = trials[(trials.state == "COMPLETE") & (trials.value <= BEST * (1 + within))]
    return float(ok.compute.min()) if len(ok) else math.nan


def main() -> None:
    print(f"{'':12}{'seed':>5}{'best at 8':>11}{'best at 16':>12}{'to 1%':>8}{'trials':>8}"
          f"{'warmup > 0.225':>16}")
    for label, root in RUNS.items():
        df = pd.read_csv(root / "pydoc-long" / "search_efficiency_trials.csv")
        df = df[df.strategy == "scaletune_predicted"]
        b8, b16 = best_at(df, 8), best_at(df, 16)
        for seed, g in df.groupby("seed"):
            g = g[g.compute <= 16 + 1e-9]
            need = to_within(g)
            print(f"{label:12}{seed:>5}{b8[seed]:>11.4f}{b16[seed]:>12.4f}"
                  f"{'never' if math.isnan(need) else f'{need:.1f}':>8}{len(g):>8}"
                  f"{int((g.param_warmup_frac > 0.225).sum()):>16}")
        print(f"{label:12}{'mean':>5}{sum(b8.values()) / len(b8):>11.4f}"
              f"{sum(b16.values()) / len(b16):>12.4f}")


if __name__ == "__main__":
    main()
