"""The ladder with the prior on the lr exponent (heuristics.fit.SHORT_RUN_LR_EXPONENT) moving
the law but not narrowing its interval, against ladder_v3_warmup (the same rungs, the same
carried warmup, the lr exponent as the rungs alone give it), on the whole suite (issue 14).

The rungs are those of benchmarks/results/ladder_warmup (ladder_v2's rungs run again: same files
and seeds), copied here; `python -m benchmarks.ladder_suite --tasks <all six> --seeds 3
--workers 2 --out benchmarks/results/ladder_v5_prior` ran only the target studies (run.log). The
best known loss of a task is the best complete trial of the suite (its committed trial table), of
ladder_v2, ladder_v3_warmup, ladder_v4_prior and these ladders.

    PYTHONPATH=. python benchmarks/results/ladder_v5_prior/compare.py > compare.txt
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmarks.results.ladder_v4_prior.compare import BEFORE, main

HERE = Path(__file__).resolve().parent
V4 = pd.read_csv(HERE.parent / "ladder_v4_prior" / "ladder_suite.csv").set_index(
    ["task", "ladder_seed"])

if __name__ == "__main__":
    main(HERE, best_from=(BEFORE, V4))
