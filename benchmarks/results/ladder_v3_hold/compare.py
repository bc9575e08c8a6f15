"""pydoc-long's ladder with ``hold_epochs: true`` against the same ladder without it
(benchmarks/results/ladder_v2, its committed table), seed by seed.

The suite's study files that ``benchmarks.ladder_suite --analyze-only`` reads for its baselines
are not committed, so this reads the best loss known at pydoc-long's target (from the suite's
studies and the ladder_v2 runs) from ladder_v2's table, and takes the new runs' best if lower.

    python benchmarks/results/ladder_v3_hold/compare.py
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from benchmarks import ladder_suite as ls  # noqa: E402
from benchmarks import suite  # noqa: E402

TASK = next(t for t in suite.TASKS if t.name == "pydoc-long")


def main() -> None:
    before = pd.read_csv(HERE.parent / "ladder_v2" / "ladder_suite.csv")
    before = before[before["task"] == TASK.name].sort_values("ladder_seed")
    runs = ls.load_runs(TASK, HERE, seeds=3)
    best = before.iloc[0]
    best_loss = float(best["best_loss"])
    best_params = {"lr": best["best_lr"], "tau": best["best_tau"], "batch_size": best["best_batch"]}
    for _, trials, _, _ in runs:
        done = trials[trials["state"] == "COMPLETE"]
        if len(done) and done["value"].min() < best_loss:
            row = done.loc[done["value"].idxmin()]
            best_loss = float(row["value"])
            best_params = {"lr": row["param_lr"], "tau": row["tau"],
                           "batch_size": row["param_batch_size"]}
    print(f"best known at the target: {best_loss:.4f} (lr {best_params['lr']:.4g}, tau "
          f"{best_params['tau']:.4g}, batch {best_params['batch_size']:g})")
    print(f"{'':22}{'seed':>5}{'lr pred':>10}{'gap':>7}{'tau pred':>10}{'gap':>7}"
          f"{'first trial':>13}{'vs best':>9}{'ladder best':>13}{'to 1%':>8}{'rungs':>7}")
    for r in before.itertuples():
        gap_lr = math.log10(r.pred_lr / best_params["lr"])
        gap_tau = math.log10(r.pred_tau / best_params["tau"])
        first = r.first_loss
        need = "never" if math.isnan(r.ladder_to_1pct) else f"{r.ladder_to_1pct:.1f}"
        print(f"{'without (ladder_v2)':22}{r.ladder_seed:>5}{r.pred_lr:>10.4g}{gap_lr:>+7.2f}"
              f"{r.pred_tau:>10.4g}{gap_tau:>+7.2f}{first:>13.4f}"
              f"{100 * (first / best_loss - 1):>+8.2f}%{r.ladder_best_loss:>13.4f}{need:>8}"
              f"{r.rung_compute:>7.2f}")
    for seed, trials, rung_te, pred in runs:
        gap_lr = math.log10(pred["lr"] / best_params["lr"])
        gap_tau = math.log10(pred["tau"] / best_params["tau"])
        first = float(trials.iloc[0]["value"]) if trials.iloc[0]["state"] == "COMPLETE" \
            else math.nan
        done = trials[trials["state"] == "COMPLETE"]
        need, _ = ls.compute_to_within(trials, best_loss, offset=rung_te)
        need_s = "never" if math.isnan(need) else f"{need:.1f}"
        print(f"{'hold_epochs':22}{seed:>5}{pred['lr']:>10.4g}{gap_lr:>+7.2f}{pred['tau']:>10.4g}"
              f"{gap_tau:>+7.2f}{first:>13.4f}{100 * (first / best_loss - 1):>+8.2f}%"
              f"{done['value'].min():>13.4f}{need_s:>8}{rung_te:>7.2f}")


if __name__ == "__main__":
    main()
