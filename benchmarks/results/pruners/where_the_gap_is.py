"""Where the predicted pruner's compute saved falls short of the ceiling's, on the suite's
random-search studies (benchmarks.pruner_replay's replay, from the committed trial tables).

    PYTHONPATH=. python benchmarks/results/pruners/where_the_gap_is.py

For every trial that the ceiling (final losses known, stopped at the first evaluation) stops,
the compute the predicted pruner (the product's defaults) spends on it beyond the ceiling's
stop: trials it never stops, and trials it stops later, by the evaluation at which it stops
them and by how far the trial's final loss ended above the best complete trial before it (the
one the ceiling compares with). Printed as percentage points of the studies' compute (the
tokens of every trial run to the end); output in where_the_gap_is.txt.
"""

from __future__ import annotations

import collections
from pathlib import Path

from pydantic import TypeAdapter

from benchmarks.pruner_replay import hindsight, load_tables
from scaletune.search.config import PrunerConfig
from scaletune.search.pruners import replay

GAPS = ((0.03, "under 3%"), (0.10, "3-10%"), (0.30, "10-30%"), (float("inf"), "30% or more"))
"""How far a trial's final loss ended above the best before it, in bands."""


def main() -> None:
    studies = load_tables(Path("benchmarks/results/suite"))
    build = TypeAdapter(PrunerConfig).validate_python
    trials_in_all = 0
    never = 0.0
    late_by_stop: collections.Counter = collections.Counter()
    late_by_gap: collections.Counter = collections.Counter()
    count_by_stop: collections.Counter = collections.Counter()
    count_by_gap: collections.Counter = collections.Counter()
    for cfg, trials in studies.values():
        budget = cfg.tokens_per_trial
        predicted = replay(build({"name": "predicted"}).build(cfg), trials)
        ceiling = replay(hindsight(trials, budget, 0.0), trials)
        trials_in_all += len(trials)
        for i, (p, c, t) in enumerate(zip(predicted, ceiling, trials, strict=True)):
            if c.stopped_at is None:
                continue
            if p.stopped_at is None:
                never += 1 - c.stopped_at / budget
                continue
            lost = max(0.0, (p.stopped_at - c.stopped_at) / budget)
            stop = f"stopped at {p.stopped_at / budget:.0%} of the budget"
            gap = t.value / min(u.value for u in trials[:i]) - 1
            band = next(label for top, label in GAPS if gap < top)
            late_by_stop[stop] += lost
            count_by_stop[stop] += 1
            late_by_gap[band] += lost
            count_by_gap[band] += 1
    total = sum(late_by_stop.values())
    print(f"{trials_in_all} trials in 18 studies; the ceiling stops those it stops at their "
          "first evaluation (10% of the budget)")
    print(f"never stopped by the predicted pruner: {never / trials_in_all:.1%} of the compute")
    print(f"stopped later than the ceiling: {total / trials_in_all:.1%} of the compute")
    print("  by where the predicted pruner stops them:")
    for stop in sorted(late_by_stop, key=lambda s: float(s.split()[2].rstrip("%"))):
        print(f"    {stop:<32} {count_by_stop[stop]:3d} trials  "
              f"{late_by_stop[stop] / trials_in_all:5.1%}")
    print("  by how far the trial's final loss ended above the best before it:")
    for _, band in GAPS:
        print(f"    {band:<32} {count_by_gap[band]:3d} trials  "
              f"{late_by_gap[band] / trials_in_all:5.1%}")


if __name__ == "__main__":
    main()
