"""The predicted pruner with a least spread (``min_spread`` 4, ``confidence`` 0.8, ``leading``
0.25: the replay's pick, benchmarks/results/pruners/pruner_replay.md) in live studies, beside
the suite's studies under the median pruner, the live studies at confidence 0.9 (the default
before; benchmarks/results/pruner_t_live) and at 0.97 (benchmarks/results/pruner_t097_live).

    PYTHONPATH=. python benchmarks/results/pruner_spread_live/compare.py benchmarks/results/pruner_spread_live

prints, as pruner_t097_live/compare.py does for 0.97, per task the mean over seeds of the best
loss within 8 and 16 trial-equivalents and the compute saved by pruning, then seed by seed how
these studies compare with each of the others at 8 and 16.
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.results.pruner_t097_live.compare import RUNS
from benchmarks.results.pruner_t_live.compare import compare

BASELINES = {**RUNS, "t 0.97": (Path("benchmarks/results/pruner_t097_live"),
                                "scaletune_predicted")}

if __name__ == "__main__":
    compare(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent, "spread",
            BASELINES)
