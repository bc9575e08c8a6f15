"""The ladder with the rungs' warmup carried to the target, against ladder_v2 (the same rungs,
the published warmup at the target), on the whole suite (issue 14).

The rungs are those of benchmarks/results/ladder_warmup (ladder_v2's rungs run again: same files
and seeds), copied here; `python -m benchmarks.ladder_suite --tasks <all six> --seeds 3
--workers 2 --out benchmarks/results/ladder_v3_warmup` ran only the target studies (run.log).
The best known loss of a task is the best complete trial of the suite (its committed trial
table), of ladder_v2 and of these ladders.

    PYTHONPATH=. python benchmarks/results/ladder_v3_warmup/compare.py > compare.txt
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from benchmarks import ladder_suite as ls
from benchmarks import suite

HERE = Path(__file__).resolve().parent
V2 = pd.read_csv(HERE.parent / "ladder_v2" / "ladder_suite.csv").set_index(["task", "ladder_seed"])


def with_v2_best(task: suite.Task, base: pd.DataFrame) -> pd.DataFrame:
    """The suite's trials plus ladder_v2's best trial of the task (not a compared strategy)."""
    r = V2.loc[(task.name, 0)]
    row = {"strategy": "ladder_v2", "seed": -1, "number": -1, "state": "COMPLETE",
           "value": r.best_loss, "tokens_te": 0.0, "param_lr": r.best_lr,
           "param_batch_size": r.best_batch, "weight_decay": math.nan, "tau": r.best_tau}
    return pd.concat([base, pd.DataFrame([row])], ignore_index=True)


def fmt(x: float, spec: str = ".2f") -> str:
    return "never" if isinstance(x, float) and math.isnan(x) else format(x, spec)


def main() -> None:
    rows = []
    for task in suite.TASKS:
        base = ls.suite_trials_csv(task, ls.SUITE / task.name / ls.TRIALS_CSV)
        runs = ls.load_runs(task, HERE, 3)
        rows += ls.measure(task.name, with_v2_best(task, base), runs)
    new = pd.DataFrame(rows)
    new.to_csv(HERE / "ladder_suite.csv", index=False)
    print(f"{'task':17}{'seed':>5}{'best':>8}  {'first trial: v2':>16}{'warmup carried':>16}"
          f"  {'ladder best: v2':>16}{'carried':>9}  {'to 1%: v2':>10}{'carried':>9}"
          f"{'TPE+median':>12}")
    counts = {"first_v2": 0, "first_new": 0, "reach_v2": 0, "reach_new": 0, "third_v2": 0,
              "third_new": 0}
    first_delta, best_delta = [], []
    for r in new.itertuples():
        v2 = V2.loc[(r.task, r.ladder_seed)]
        best = r.best_loss
        def pct(x: float, best: float = best) -> float:
            return 100 * (x / best - 1)

        v2_reach = v2.ladder_to_1pct if v2.ladder_best_loss <= 1.01 * best else math.nan
        counts["first_v2"] += v2.first_loss <= 1.01 * best
        counts["first_new"] += r.first_loss <= 1.01 * best
        counts["reach_v2"] += not math.isnan(v2_reach)
        counts["reach_new"] += not math.isnan(r.ladder_to_1pct)
        tpe = r.tpe_median_to_1pct
        counts["third_v2"] += (not math.isnan(v2_reach)) and v2_reach <= tpe / 3
        counts["third_new"] += (not math.isnan(r.ladder_to_1pct)) and r.ladder_to_1pct <= tpe / 3
        first_delta.append(pct(r.first_loss) - pct(v2.first_loss))
        best_delta.append(pct(r.ladder_best_loss) - pct(v2.ladder_best_loss))
        print(f"{r.task:17}{r.ladder_seed:>5}{best:>8.4f}  {pct(v2.first_loss):>+15.2f}%"
              f"{pct(r.first_loss):>+15.2f}%  {pct(v2.ladder_best_loss):>+15.2f}%"
              f"{pct(r.ladder_best_loss):>+8.2f}%  {fmt(v2_reach):>10}{fmt(r.ladder_to_1pct):>9}"
              f"{'>=' if r.tpe_median_censored else '':>4}{tpe:>8.2f}")
    n = len(new)
    print(f"\nfirst target trial within 1% of the best: v2 {counts['first_v2']} of {n}, warmup "
          f"carried {counts['first_new']} of {n}")
    print(f"ladder + target within 1%: v2 {counts['reach_v2']} of {n}, warmup carried "
          f"{counts['reach_new']} of {n}")
    print(f"within 1% at <= 1/3 of TPE + median's compute (rungs included): v2 "
          f"{counts['third_v2']} of {n}, warmup carried {counts['third_new']} of {n}")
    fd, bd = pd.Series(first_delta), pd.Series(best_delta)
    print(f"first trial, carried minus v2 (points of %): lower on {(fd < 0).sum()}, higher on "
          f"{(fd > 0).sum()}; mean {fd.mean():+.2f}, median {fd.median():+.2f}")
    print(f"ladder's best of 12, carried minus v2 (points of %): lower on {(bd < 0).sum()}, "
          f"higher on {(bd > 0).sum()}; mean {bd.mean():+.2f}, median {bd.median():+.2f}")
    lr_ok = (new.gap_lr.abs() <= 0.15).sum()
    print(f"lr predicted within 0.15 dex of the best: {lr_ok} of {n}")


if __name__ == "__main__":
    main()
