"""Ladders along width against ladders along tokens (the product as it stands,
benchmarks/results/ladder_v5_prior), on the whole suite (issue 14).

The width ladders: `python -m benchmarks.ladder_suite --tasks <all six> --seeds 3 --workers 2
--along width --out benchmarks/results/ladder_v6_width` (run.log): rungs at the target's tokens
per trial and about 1/16, 1/8 and 1/4 of its non-embedding parameters (widths
``ladder_suite.rung_widths``), 8 trials each, laws in parameters, then the same 12-trial target
study as ladder_v5_prior's. Compute in target trial-equivalents by 6ND (a rung's tokens weighed
by its parameters), so the rungs cost 3.5 trial-equivalents at most, as the token ladders' do.
The best known loss of a task is the best complete trial of the suite (its committed trial
table), of the earlier ladders (v2, v3, v4, v5) and of these.

    PYTHONPATH=. python benchmarks/results/ladder_v6_width/compare.py > compare.txt
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from benchmarks import ladder_suite as ls
from benchmarks import suite
from benchmarks.results.ladder_v4_prior.compare import with_best_before

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent
EARLIER = {name: pd.read_csv(RESULTS / name / "ladder_suite.csv").set_index(
    ["task", "ladder_seed"]) for name in ("ladder_v3_warmup", "ladder_v4_prior", "ladder_v5_prior")}
"""ladder_v3_warmup's table holds ladder_v2's best too (its compare.py)."""


def fmt(x: float) -> str:
    return "never" if math.isnan(x) else f"{x:.2f}"


def main() -> None:
    rows_new, rows_tok = [], []
    for task in suite.TASKS:
        base = with_best_before(task, ls.suite_trials_csv(task, ls.SUITE / task.name / ls.TRIALS_CSV),
                                list(EARLIER.values()))
        width_runs = ls.load_runs(task, HERE, 3)
        token_runs = ls.load_runs(task, RESULTS / "ladder_v5_prior", 3)
        # One best for both: the best of the suite, the earlier ladders, and both runs here.
        best_of_both = ls.measure(task.name, base, width_runs + token_runs)
        row = min(best_of_both, key=lambda r: r["best_loss"])
        best = pd.concat([base, pd.DataFrame([{
            "strategy": "these_ladders", "seed": -1, "number": -1, "state": "COMPLETE",
            "value": row["best_loss"], "tokens_te": 0.0, "param_lr": row["best_lr"],
            "param_batch_size": row["best_batch"], "weight_decay": math.nan,
            "tau": row["best_tau"]}])], ignore_index=True)
        rows_new += ls.measure(task.name, best, width_runs)
        rows_tok += ls.measure(task.name, best, token_runs)
    new, tok = pd.DataFrame(rows_new), pd.DataFrame(rows_tok).set_index(["task", "ladder_seed"])
    new.to_csv(HERE / "ladder_suite.csv", index=False)
    print(f"{'task':17}{'seed':>5}{'best':>8}  {'lr gap: tokens':>15}{'width':>7}"
          f"  {'first trial: tokens':>20}{'width':>8}  {'ladder best: tokens':>20}{'width':>8}"
          f"  {'to 1%: tokens':>14}{'width':>7}{'TPE+median':>12}")
    c = dict.fromkeys(("lr_t", "lr_w", "first_t", "first_w", "reach_t", "reach_w", "third_t",
                       "third_w"), 0)
    for r in new.itertuples():
        t = tok.loc[(r.task, r.ladder_seed)]
        best = r.best_loss

        def pct(x: float, best: float = best) -> float:
            return 100 * (x / best - 1)

        tpe = r.tpe_median_to_1pct
        c["lr_t"] += abs(t.gap_lr) <= 0.15
        c["lr_w"] += abs(r.gap_lr) <= 0.15
        c["first_t"] += t.first_loss <= 1.01 * best
        c["first_w"] += r.first_loss <= 1.01 * best
        c["reach_t"] += not math.isnan(t.ladder_to_1pct)
        c["reach_w"] += not math.isnan(r.ladder_to_1pct)
        c["third_t"] += (not math.isnan(t.ladder_to_1pct)) and t.ladder_to_1pct <= tpe / 3
        c["third_w"] += (not math.isnan(r.ladder_to_1pct)) and r.ladder_to_1pct <= tpe / 3
        print(f"{r.task:17}{r.ladder_seed:>5}{best:>8.4f}  {t.gap_lr:>+15.2f}{r.gap_lr:>+7.2f}"
              f"  {pct(t.first_loss):>+19.2f}%{pct(r.first_loss):>+7.2f}%"
              f"  {pct(t.ladder_best_loss):>+19.2f}%{pct(r.ladder_best_loss):>+7.2f}%"
              f"  {fmt(t.ladder_to_1pct):>14}{fmt(r.ladder_to_1pct):>7}"
              f"{'>=' if r.tpe_median_censored else '':>4}{tpe:>8.2f}")
    n = len(new)
    for key, what in (("lr", "lr of the law within 0.15 dex of the best trial's"),
                      ("first", "first target trial within 1% of the best"),
                      ("reach", "ladder + target within 1%"),
                      ("third", "within 1% at <= 1/3 of TPE + median's compute (rungs included)")):
        print(f"{what}: tokens {c[key + '_t']} of {n}, width {c[key + '_w']} of {n}")
    for name, col in (("first trial", "first_loss"), ("ladder's best of 12", "ladder_best_loss")):
        d = [100 * (getattr(r, col) - tok.loc[(r.task, r.ladder_seed)][col]) / r.best_loss
             for r in new.itertuples()]
        print(f"{name}, width minus tokens (points of %): lower on {sum(x < 0 for x in d)}, "
              f"higher on {sum(x > 0 for x in d)}; mean {sum(d) / n:+.2f}, median "
              f"{sorted(d)[n // 2]:+.2f}")


if __name__ == "__main__":
    main()
