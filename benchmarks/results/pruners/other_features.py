"""The predicted pruner with its drops regressed on more than log lr, replayed on the suite's
random-search studies as benchmarks.pruner_replay replays the product's pruner.

    PYTHONPATH=. python benchmarks/results/pruners/other_features.py

Each variant replaces only the prediction: the drops of the complete trials regressed by least
squares on the features named (plus an intercept) once FIT_MIN_CURVES + 2 per extra feature
curves reach back, else their mean; the interval is the same t prediction interval (Student's t
at the confidence, the residuals' deviation, sqrt(1 + leverage)). Features: lr (log lr, the
product's), lr x wd (log of lr times the weight decay lambda: how fast the weights shrink), wd
(log lambda), loss (the log loss the trial has reached), slope (the fall of log loss since the
trial's previous evaluation, against each curve's fall between the same two points of the
schedule; at a first evaluation, left out), lr^2 (log lr squared: a drop that is not a line in
log lr). Printed: stopped trials, compute saved and false prunes over the 18 studies, by
confidence. Run 2026-12-01 (slope and lr^2 added 2026-12-02): no variant saved more at the same
false prunes than lr alone (output in other_features.txt).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from pydantic import TypeAdapter

from benchmarks.pruner_replay import load_tables
from scaletune.search.config import PrunerConfig
from scaletune.search.pruners import (
    FIT_MIN_CURVES,
    PredictedFinalPruner,
    Prediction,
    _interp_rows,
    _t_quantile,
    audit,
    replay,
)

FEATURES = {
    "lr": lambda t: math.log(t.params["lr"]),
    "lr x wd": lambda t: math.log(t.params["lr"] * t.params["weight_decay"]),
    "wd": lambda t: math.log(t.params["weight_decay"]),
    "lr^2": lambda t: math.log(t.params["lr"]) ** 2,
}


class Regressed(PredictedFinalPruner):
    def __init__(self, *args, features: tuple[str, ...], with_loss: bool,
                 with_slope: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.features, self.with_loss, self.with_slope = features, with_loss, with_slope

    def _predict(self, trial, table, floor=0.0):  # what prune() calls: the curves' table, the floor
        drops = self.drops(trial, table)
        if drops is None:
            return None
        d, use, log_loss = drops
        reached = table.log_final[use] - d  # the log loss each curve had at the trial's point
        rows = [t for t in table.trials if self._curve(t) is not None]
        used = [t for t, ok in zip(rows, use, strict=True) if ok]
        x = np.array([[FEATURES[f](t) for f in self.features] for t in used])
        x0 = np.array([FEATURES[f](trial) for f in self.features])
        if self.with_loss:
            x, x0 = np.column_stack([x, reached]), np.append(x0, log_loss)
        steps = sorted(trial.intermediate_values)
        if self.with_slope and len(steps) >= 2:
            # The fall of log loss since the trial's previous evaluation, and each curve's fall
            # between the same two points of the schedule.
            before = self._progress(trial, steps[-2])
            prev = _interp_rows(before, table.at[use], table.log_loss[use], table.last[use])
            x = np.column_stack([x, reached - prev])
            x0 = np.append(x0, log_loss - math.log(trial.intermediate_values[steps[-2]]))
        n, k = len(d), x.shape[1]
        if n >= FIT_MIN_CURVES + 2 * (k - 1) and (x.max(0) > x.min(0)).all():
            design = np.column_stack([np.ones(n), x])
            coef = np.linalg.lstsq(design, d, rcond=None)[0]
            z0 = np.append(1.0, x0)
            mid = float(coef @ z0)
            residuals, dof = d - design @ coef, n - k - 1
            leverage = float(z0 @ np.linalg.pinv(design.T @ design) @ z0)
        else:
            mid, residuals, dof, leverage = float(d.mean()), d - d.mean(), n - 1, 1 / n
        if dof < 1:
            return None
        half = (_t_quantile(self._confidence, dof)
                * math.sqrt(float((residuals ** 2).sum()) / dof) * math.sqrt(1 + leverage))
        return Prediction(final=math.exp(log_loss + mid), low=math.exp(log_loss + mid - half),
                          high=math.exp(log_loss + mid + half), tokens=int(trial.last_step),
                          n_curves=n)


CONF = (0.8, 0.85, 0.9)
"""The confidences replayed: the default (0.9) and the two below it."""


def main() -> None:
    studies = load_tables(Path("benchmarks/results/suite"))
    build = TypeAdapter(PrunerConfig).validate_python
    variants = [(("lr",), False, False), (("lr", "lr x wd"), False, False),
                (("lr x wd",), False, False), (("lr", "wd"), False, False),
                (("lr",), True, False), (("lr",), False, True), (("lr", "lr^2"), False, False),
                (("lr", "lr^2"), True, False)]
    for confidence in CONF:
        for features, with_loss, with_slope in variants:
            stopped = false = 0
            saved = []
            for cfg, trials in studies.values():
                product = build({"name": "predicted", "confidence": confidence}).build(cfg)
                pruner = Regressed(cfg.tokens_per_trial, product._progress,
                                   n_startup_trials=product._n_startup_trials,
                                   confidence=confidence, features=features,
                                   with_loss=with_loss, with_slope=with_slope)
                result = audit(replay(pruner, trials), cfg.tokens_per_trial)
                stopped += result["stopped"]
                false += result["false_prunes"]
                saved.append(result["compute_saved"])
            label = " + ".join(features + (("loss",) if with_loss else ())
                               + (("slope",) if with_slope else ()))
            print(f"confidence {confidence:<4g} {label:<14} stopped {stopped:3d}  saved "
                  f"{np.mean(saved):.1%}  false prunes {false}", flush=True)


if __name__ == "__main__":
    main()
