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

from benchmarks.results.pruner_t_live.compare import compare

RUNS = {"median": (Path("benchmarks/results/suite"), "scaletune"),
        "t 0.9": (Path("benchmarks/results/pruner_t_live"), "scaletune_predicted")}
NEW = "t 0.97"


def main(new_root: Path) -> None:
    compare(new_root, NEW, RUNS)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
