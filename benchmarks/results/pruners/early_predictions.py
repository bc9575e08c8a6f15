"""Two ways to let the predicted pruner judge a trial earlier, replayed on the suite's
random-search studies as benchmarks.pruner_replay replays the product's pruner.

    PYTHONPATH=. python benchmarks/results/pruners/early_predictions.py

where_the_gap_is.txt: the ceiling stops its trials at the first evaluation (10% of the budget),
the predicted pruner 42 of them there and the rest later. Under ``progress: lr_area`` a trial in
its warmup is at a point of the schedule that few complete curves reach back to, so there is no
prediction yet. Tried here (2026-12-02), each at the product's default and nearby confidences:

- fallback: the lr_area prediction, else (too few curves reach back) the prediction with
  ``progress: tokens`` (fraction of the budget), at its own confidence;
- anchor: every complete curve starts at progress 0 with the loss of a uniform guess, ln(vocab),
  so that it reaches back to any point (linear between there and its first evaluation);
- confirmed: a lower confidence, but a trial is stopped only when two evaluations in a row say
  so (against the false prunes a looser interval brings).

Neither saves more without false prunes (output in early_predictions.txt): the earliest
predictions, where these add them, are the ones that are wrong.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from pydantic import TypeAdapter

from benchmarks.pruner_replay import load_tables
from scaletune.search.config import PrunerConfig
from scaletune.search.pruners import audit, replay
from scaletune.trainer.data import vocab_size_of

build = TypeAdapter(PrunerConfig).validate_python


def fallback(schedule, tokens):
    """``schedule`` (the product's pruner), predicting with ``tokens`` where it has no
    prediction of its own; its decision rule (start-up, floor, k-th best) is the product's."""
    predict = schedule._predict

    def predict_or_fall_back(trial, table):
        own = predict(trial, table)
        return own if own is not None else tokens._predict(trial, tokens._table(table.trials))

    schedule._predict = predict_or_fall_back
    return schedule


class Confirmed:
    """``inner``'s decision, taken only when it said stop at two evaluations in a row."""

    def __init__(self, inner):
        self.inner, self.streak = inner, {}

    def prune(self, study, trial) -> bool:
        run = self.streak.get(trial.number, 0)
        self.streak[trial.number] = run = run + 1 if self.inner.prune(study, trial) else 0
        return run >= 2


def anchored(pruner, log_start: float):
    """``pruner`` whose complete curves start at progress 0 with log loss ``log_start``."""
    curve_of = pruner._curve

    def curve(t):
        c = curve_of(t)
        if c is None or c[0][0] <= 0:
            return c
        return np.concatenate([[0.0], c[0]]), np.concatenate([[log_start], c[1]])

    pruner._curve = curve
    return pruner


def line(label: str, studies, make) -> str:
    stopped = false = 0
    saved, per = [], {}
    for (task, _seed), (cfg, trials) in studies.items():
        r = audit(replay(make(task, cfg), trials), cfg.tokens_per_trial)
        stopped, false = stopped + r["stopped"], false + r["false_prunes"]
        saved.append(r["compute_saved"])
        per.setdefault(task, []).append(r["false_prunes"])
    where = ", ".join(f"{t} {sum(v)}" for t, v in per.items() if sum(v))
    return (f"{label:<44} stopped {stopped:3d}  saved {np.mean(saved):.1%}  false prunes "
            f"{false}" + (f" ({where})" if where else ""))


def main() -> None:
    studies = load_tables(Path("benchmarks/results/suite"))

    def product(cfg, confidence, progress="lr_area"):
        return build({"name": "predicted", "confidence": confidence,
                      "progress": progress}).build(cfg)

    def start(task, cfg) -> float:
        vocab = vocab_size_of(cfg.data.tokenizer)
        return math.log(math.log(vocab))

    print(line("the product (lr_area, confidence 0.9)", studies,
               lambda task, cfg: product(cfg, 0.9)), flush=True)
    for c_tokens in (0.9, 0.95, 0.99):
        print(line(f"fallback to tokens at confidence {c_tokens:g}", studies,
                   lambda task, cfg, c=c_tokens: fallback(product(cfg, 0.9),
                                                          product(cfg, c, "tokens"))),
              flush=True)
    for c in (0.85, 0.9, 0.95):
        print(line(f"anchor at ln(vocab), confidence {c:g}", studies,
                   lambda task, cfg, c=c: anchored(product(cfg, c), start(task, cfg))),
              flush=True)
    for c in (0.6, 0.7, 0.8, 0.85):
        print(line(f"confirmed twice, confidence {c:g}", studies,
                   lambda task, cfg, c=c: Confirmed(product(cfg, c))), flush=True)


if __name__ == "__main__":
    main()
