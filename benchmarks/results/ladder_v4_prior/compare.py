"""The ladder with the prior on the lr exponent (heuristics.fit.SHORT_RUN_LR_EXPONENT), against
ladder_v3_warmup (the same rungs, the same carried warmup, the lr exponent as the rungs alone give
it), on the whole suite (issue 14).

The rungs are those of benchmarks/results/ladder_warmup (ladder_v2's rungs run again: same files
and seeds), copied here; `python -m benchmarks.ladder_suite --tasks <all six> --seeds 3
--workers 2 --out benchmarks/results/ladder_v4_prior` ran only the target studies (run.log). The
best known loss of a task is the best complete trial of the suite (its committed trial table), of
ladder_v2, ladder_v3_warmup and these ladders.

    PYTHONPATH=. python benchmarks/results/ladder_v4_prior/compare.py > compare.txt
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from benchmarks import ladder_suite as ls
from benchmarks import suite

HERE = Path(__file__).resolve().parent
BEFORE = pd.read_csv(HERE.parent / "ladder_v3_warmup" / "ladder_suite.csv").set_index(
    ["task", "ladder_seed"])


def with_best_before(task: suite.Task, base: pd.DataFrame, tables: Sequence[pd.DataFrame]
                     ) -> pd.DataFrame:
    """The suite's trials plus the best trial known before (the best of ``tables``, earlier
    ladders' ladder_suite.csv), as a row of no compared strategy."""
    r = min((t.loc[(task.name, 0)] for t in tables), key=lambda r: r.best_loss)
    row = {"strategy": "earlier_ladders", "seed": -1, "number": -1, "state": "COMPLETE",
           "value": r.best_loss, "tokens_te": 0.0, "param_lr": r.best_lr,
           "param_batch_size": r.best_batch, "weight_decay": math.nan, "tau": r.best_tau}
    return pd.concat([base, pd.DataFrame([row])], ignore_index=True)


def fmt(x: float) -> str:
    return "never" if math.isnan(x) else f"{x:.2f}"


def main(here: Path = HERE, best_from: Sequence[pd.DataFrame] = (BEFORE,)) -> None:
    """Compare the ladders under ``here`` with ladder_v3_warmup's; the best known trial is the
    best of the suite, of ``best_from`` (earlier ladders' tables) and of these ladders."""
    rows = []
    for task in suite.TASKS:
        base = ls.suite_trials_csv(task, ls.SUITE / task.name / ls.TRIALS_CSV)
        rows += ls.measure(task.name, with_best_before(task, base, best_from),
                           ls.load_runs(task, here, 3))
    new = pd.DataFrame(rows)
    new.to_csv(here / "ladder_suite.csv", index=False)
    print(f"{'task':17}{'seed':>5}{'best':>8}  {'lr gap: v3':>11}{'prior':>7}"
          f"  {'first trial: v3':>16}{'prior':>8}  {'ladder best: v3':>16}{'prior':>8}"
          f"  {'to 1%: v3':>10}{'prior':>7}{'TPE+median':>12}")
    c = dict.fromkeys(("lr_v3", "lr_new", "first_v3", "first_new", "reach_v3", "reach_new",
                       "third_v3", "third_new"), 0)
    for r in new.itertuples():
        v3 = BEFORE.loc[(r.task, r.ladder_seed)]
        best = r.best_loss

        def pct(x: float, best: float = best) -> float:
            return 100 * (x / best - 1)

        # ladder_v3's gaps against this best trial (a new best moves the lr it is compared with)
        v3_gap = math.log10(v3.pred_lr / r.best_lr)
        v3_reach = v3.ladder_to_1pct if v3.ladder_best_loss <= 1.01 * best else math.nan
        tpe = r.tpe_median_to_1pct
        c["lr_v3"] += abs(v3_gap) <= 0.15
        c["lr_new"] += abs(r.gap_lr) <= 0.15
        c["first_v3"] += v3.first_loss <= 1.01 * best
        c["first_new"] += r.first_loss <= 1.01 * best
        c["reach_v3"] += not math.isnan(v3_reach)
        c["reach_new"] += not math.isnan(r.ladder_to_1pct)
        c["third_v3"] += (not math.isnan(v3_reach)) and v3_reach <= tpe / 3
        c["third_new"] += (not math.isnan(r.ladder_to_1pct)) and r.ladder_to_1pct <= tpe / 3
        print(f"{r.task:17}{r.ladder_seed:>5}{best:>8.4f}  {v3_gap:>+11.2f}{r.gap_lr:>+7.2f}"
              f"  {pct(v3.first_loss):>+15.2f}%{pct(r.first_loss):>+7.2f}%"
              f"  {pct(v3.ladder_best_loss):>+15.2f}%{pct(r.ladder_best_loss):>+7.2f}%"
              f"  {fmt(v3_reach):>10}{fmt(r.ladder_to_1pct):>7}"
              f"{'>=' if r.tpe_median_censored else '':>4}{tpe:>8.2f}")
    n = len(new)
    print(f"\nlr of the law within 0.15 dex of the best trial's: v3 {c['lr_v3']} of {n}, prior "
          f"{c['lr_new']} of {n}")
    print(f"first target trial within 1% of the best: v3 {c['first_v3']} of {n}, prior "
          f"{c['first_new']} of {n}")
    print(f"ladder + target within 1%: v3 {c['reach_v3']} of {n}, prior {c['reach_new']} of {n}")
    print(f"within 1% at <= 1/3 of TPE + median's compute (rungs included): v3 {c['third_v3']} "
          f"of {n}, prior {c['third_new']} of {n}")


if __name__ == "__main__":
    main()
