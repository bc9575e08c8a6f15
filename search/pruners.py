"""Pruning on the predicted final loss, and the replay of any pruner on a study's curves.

With warmup and a decaying learning rate, early loss ranks runs differently from final loss
(short-horizon bias): a run with a long warmup or a low learning rate looks bad early and may
still finish first. ``PredictedFinalPruner`` therefore does not compare losses at equal tokens,
as the median pruner does; it predicts each running trial's loss at the end of its budget from
what the study's complete trials show about how loss falls from the same point of the learning
rate schedule to the end, and stops a trial only when even the optimistic end of that prediction
is worse than the study's k-th best final loss by more than the noise between training seeds.

``replay`` runs any Optuna pruner on the curves of finished trials, in a fresh in-memory study,
trial by trial as they ran, so that every pruner decides by its own logic. The report's audit and
benchmarks/pruner_replay.py both use it.

What TPE does with a pruned trial (Optuna 4-5, ``optuna.samplers._tpe.sampler._split_trials``):
it ranks every complete trial ahead of every pruned one, and pruned trials among themselves by
the tokens they reached, then by their last loss. A pruned trial enters TPE's "good" group only
while the study has fewer complete trials than that group holds (gamma(n), about 10% of n). This
pruner stops only trials predicted worse than the k-th best complete trial beyond the
prediction's uncertainty, so the "bad" group where TPE puts them is where the prediction puts
them too; the prediction is recorded on the trial (``PREDICTION_ATTRS``) for people and the
dashboard, and the sampler needs nothing more from it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.pruners import BasePruner
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from scaletune.search import noise
from scaletune.search.config import (
    CONFIDENCE,
    INTERVAL,
    INTERVALS,
    LEADING,
    MARGIN,
    MIN_SPREAD,
    NOISE_FLOOR,
    PREDICTED_STARTUP,
)

PREDICTION_ATTRS = ("predicted_final_loss", "predicted_final_loss_low",
                    "predicted_final_loss_high", "predicted_at_tokens")
"""User attrs a pruned trial gets from PredictedFinalPruner: the predicted final loss, its
interval, and the tokens seen when it was stopped."""
UNJUDGED_STEP = "final_eval_step"
"""User attr of a trial: the grid point its last evaluation was stored at, where that evaluation
reached the budget and the driver asked no pruner (search.plan.TrialRun.report). With a budget
off the grid it is a grid point below the budget, which a replay would otherwise ask about."""
STOPPED_AGAINST = ("stopped_against_best", "stopped_with_noise_floor")
"""User attrs of a trial PredictedFinalPruner stopped: the k-th best final loss of the complete
trials then, and the noise floor in force (the stop: low end > best x (1 + floor))."""


@dataclass(frozen=True)
class Prediction:
    """A running trial's predicted final loss and the interval around it."""

    final: float
    low: float
    high: float
    tokens: int
    """Tokens seen at the evaluation the prediction starts from."""
    n_curves: int
    """Complete trials whose curves made the prediction."""

    def attrs(self) -> dict[str, float | int]:
        return dict(zip(PREDICTION_ATTRS, (self.final, self.low, self.high, self.tokens),
                        strict=True))


def held_against(best: float, floor: float, rank: int = 1) -> str:
    """How a prune reason ends: what the prediction's low end was held against, the ``rank``-th
    best final loss (with rank 2, "the best" named the second best)."""
    which = "the best" if rank == 1 else f"the {_ordinal(rank)} best"
    return (f", its low end above {which} {best:.4f} x (1 + noise floor {floor:.1%}) = "
            f"{best * (1 + floor):.4f}")


def _ordinal(n: int) -> str:
    """2nd, 3rd, 11th, 21st."""
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _exp(log_value: float) -> float:
    """``math.exp``, held below float's largest value: an interval of two curves at confidence
    0.9999999, or a margin of 1e6, reached e^800, and the OverflowError stopped the study's
    driver and its report. Such an interval stops no trial; its end stays a finite number (a
    user attr the dashboard reads as JSON, where inf is no number)."""
    return math.exp(min(log_value, MAX_LOG))


MAX_LOG = 700.0
"""The largest log loss _exp raises: e^700 is about 1e304."""


CONDITION_ON = "lr"
"""The parameter PredictedFinalPruner regresses the drops on by default."""
LEAST_CURVES = 2
"""Complete curves the predicted pruner needs at least before it stops a trial, whatever its
n_startup_trials: the drops of one curve give no spread."""
FIT_MIN_CURVES = 4
"""Complete curves the regression of the drop on the learning rate needs; with fewer, the drops
are taken as they are."""

Progress = Callable[[FrozenTrial, int], float]
"""How far a trial is through its learning-rate schedule after some tokens, from 0 to 1."""


@dataclass(frozen=True)
class _BudgetFraction:
    """A Progress that pickles, as a pruner given to Optuna may have to (a lambda does not)."""

    budget: int

    def __call__(self, trial: FrozenTrial, tokens: int) -> float:
        return min(1.0, tokens / self.budget)


def budget_fraction(budget: int) -> Progress:
    """Progress as the fraction of the token budget seen: right when every trial runs the same
    schedule over the same budget."""
    return _BudgetFraction(budget)


class PredictedFinalPruner(BasePruner):
    """Stops a trial whose predicted final loss is worse than the study's k-th best.

    At each evaluation, the complete trials' curves give the drop of log loss from the running
    trial's point of the schedule to the end: ``d_j = log final_j - log loss_j(p)``, with p the
    running trial's progress and ``loss_j(p)`` read off trial j's curve at the same progress
    (linear in progress between its evaluations; a trial whose first evaluation came later in
    its schedule than p is left out). With ``FIT_MIN_CURVES`` curves or more, the drops are
    regressed on log lr (``condition_on``): a run at a high learning rate sits higher above its
    final loss at the same point of the schedule, by the noise of its large steps that the decay
    takes away, so the drops of low-lr runs understate what is left to a high-lr run (the replay
    on the suite saw exactly such runs pruned and ending within 1% of the best). The prediction
    is ``loss * exp(drop)``, with the drop fitted at the trial's lr (or the mean drop).

    Its interval (``interval``): ``t``, the regression's prediction interval at ``confidence``
    (Student's t quantile with the fit's degrees of freedom, times the residuals' standard
    deviation, never taken below ``min_spread`` noise floors, times sqrt(1 + the leverage of the
    trial's lr)), which is wide when few curves reach back and for a trial whose lr lies far
    from the complete trials'; ``range``, the first rule, from the largest to the smallest drop
    (residual) seen, each widened by ``margin`` times their spread, and by ``beyond`` outside
    the complete trials' lrs. The trial is stopped when
    the interval's low end is above the k-th best final loss times ``1 + noise_floor`` and, with
    ``leading``, its loss is behind that quantile of the complete trials' losses at the same
    point of the schedule: the drops have heavy tails (a run can fall at the end by twice as
    much as any curve before it showed), and a trial among the leading ones now is the one such
    a miss would cost.

    Args:
        budget: Tokens each trial trains (steps are tokens seen).
        progress: How far a trial is through its schedule at some tokens; default the fraction
            of ``budget`` seen.
        n_startup_trials: Complete trials before any pruning, and the fewest curves a
            prediction is made from (at least 2).
        n_warmup_steps: Tokens a trial trains before it may be stopped.
        rank: Compare with the rank-th best final loss (1: the best).
        noise_floor: Relative difference in final loss below which trials are not told apart;
            None: what the study's repeats of a config with other training seeds measure, never
            below NOISE_FLOOR (search.noise.noise_floor).
        margin: For ``interval="range"``: widening of the interval, in units of the spread
            of the drops.
        study_seed: The training seed of trials that record none (for ``noise_floor=None``).
        condition_on: A searched parameter the drop is regressed on, on a log scale (default
            "lr"); None, or a trial without it, or fewer than ``FIT_MIN_CURVES`` curves: the
            drops are not conditioned.
        interval: "t" (the regression's prediction interval) or "range" (the first rule).
        confidence: For ``interval="t"``: one-sided confidence of the interval's low end.
        min_spread: For ``interval="t"``: the least standard deviation of the drops the
            interval is drawn with, in noise floors: two or three curves that happen to agree
            would otherwise give an interval narrower than the noise between training seeds.
        leading: A trial whose loss is at or below this quantile of the complete trials' losses
            at its point of the schedule (read off their curves as the drops are) is not
            stopped, whatever its prediction; 0: no such guard.
    """

    def __init__(
        self,
        budget: int,
        progress: Progress | None = None,
        *,
        n_startup_trials: int = PREDICTED_STARTUP,
        n_warmup_steps: int = 0,
        rank: int = 1,
        noise_floor: float | None = NOISE_FLOOR,
        margin: float = MARGIN,
        study_seed: int = 0,
        condition_on: str | None = CONDITION_ON,
        interval: str = INTERVAL,
        confidence: float = CONFIDENCE,
        leading: float = LEADING,
        min_spread: float = MIN_SPREAD,
    ) -> None:
        if budget < 1:
            raise ValueError(f"budget must be >= 1 token, got {budget=}")
        if n_startup_trials < 0:
            raise ValueError(f"n_startup_trials must be >= 0, got {n_startup_trials=}")
        if n_warmup_steps < 0:
            raise ValueError(f"n_warmup_steps must be >= 0, got {n_warmup_steps=}")
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank=}")
        if noise_floor is not None and not 0 <= noise_floor < 1:
            raise ValueError(f"noise_floor must be in [0, 1), got {noise_floor=}")
        if not 0 <= margin < math.inf:
            raise ValueError(f"margin must be >= 0 and finite, got {margin=}")
        if interval not in INTERVALS:
            raise ValueError(f"interval must be one of {INTERVALS}, got {interval=}")
        if not 0.5 < confidence < 1:
            raise ValueError(f"confidence must be in (0.5, 1), got {confidence=}")
        if not 0 <= leading < 1:
            raise ValueError(f"leading must be in [0, 1), got {leading=}")
        if not 0 <= min_spread < math.inf:
            raise ValueError(f"min_spread must be >= 0 and finite, got {min_spread=}")
        self._budget = budget
        self._progress = progress or budget_fraction(budget)
        self._n_startup_trials = n_startup_trials
        self._n_warmup_steps = n_warmup_steps
        self._rank = rank
        self._noise_floor = noise_floor
        self._margin = margin
        self._study_seed = study_seed
        self._condition_on = condition_on
        self._interval = interval
        self._confidence = confidence
        self._leading = leading
        self._min_spread = min_spread
        self._measured: tuple[int, float] = (-1, NOISE_FLOOR)  # (complete trials, floor)
        self._stopped: dict[int, Prediction] = {}
        self._against: dict[int, tuple[float, float]] = {}  # (k-th best, floor) of each stop
        # Each complete trial's curve against progress, read off once: every decision reads all
        # of them (26 ms a report with 100 complete trials, read again each time).
        self._curves: dict[tuple, tuple[np.ndarray, np.ndarray] | None] = {}
        self._tabled: _Curves | None = None
        self._minimizes: set[tuple[int, int]] = set()  # studies seen to minimize one value
        # The study the caches above hold (trial ids and numbers repeat across storages).
        self._study: tuple[int, int] | None = None

    def prune(self, study: Study, trial: FrozenTrial) -> bool:
        # By storage too: every in-memory storage numbers its first study 0.
        seen = (id(study._storage), study._study_id)
        if seen not in self._minimizes and study.directions != [StudyDirection.MINIMIZE]:
            # A maximized value was judged as a loss: the best trials were the ones stopped.
            raise ValueError(
                "PredictedFinalPruner predicts a loss at the end of the run, and takes a study "
                "that minimizes one value (direction='minimize'); this study's directions are "
                f"{[d.name.lower() for d in study.directions]}")
        self._minimizes.add(seen)  # asked once: the storage is read for it
        if seen != self._study:  # another study's: its curves, floor and stops are not this one's
            self._study, self._measured, self._tabled = seen, (-1, NOISE_FLOOR), None
            self._curves, self._stopped, self._against = {}, {}, {}
        step = trial.last_step
        if step is None or step < self._n_warmup_steps or step >= self._budget:
            return False
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(complete) < max(self._n_startup_trials, self._rank):
            return False
        table = self._table(complete)
        floor = self.floor(complete)
        prediction = self._predict(trial, table, floor)
        if prediction is None:
            return False
        kth_best = float(np.partition(table.values, self._rank - 1)[self._rank - 1])
        if not prediction.low > kth_best * (1 + floor):  # NaN, from a k-th best of inf: keep it
            return False
        if self._leading and self.is_leading(table, self.drops(trial, table)):
            return False
        self._stopped[trial.number] = prediction
        self._against[trial.number] = (kth_best, floor)
        against = {STOPPED_AGAINST[0]: kth_best, STOPPED_AGAINST[1]: floor}
        for key, value in {**prediction.attrs(), **against}.items():
            # As Optuna's SuccessiveHalvingPruner records its rungs: through the study's storage,
            # which the one driver writes (a FrozenTrial cannot set attrs itself).
            study._storage.set_trial_user_attr(trial._trial_id, key, value)
        return True

    def floor(self, complete: Sequence[FrozenTrial]) -> float:
        """The noise floor against ``complete``, the study's complete trials."""
        if self._noise_floor is not None:
            return self._noise_floor
        if self._measured[0] != len(complete):  # only a new complete trial changes it
            self._measured = (len(complete), noise.noise_floor(complete, self._study_seed)[0])
        return self._measured[1]

    def stopped_on(self, number: int) -> Prediction | None:
        """The prediction that stopped trial ``number`` (None: this pruner did not stop it)."""
        return self._stopped.get(number)

    def stopped_against(self, number: int) -> tuple[float, float] | None:
        """The k-th best final loss and the noise floor trial ``number`` was stopped against."""
        return self._against.get(number)

    @property
    def rank(self) -> int:
        """Which best final loss a prediction is held against (1: the best)."""
        return self._rank

    def predict(self, trial: FrozenTrial, complete: Sequence[FrozenTrial]) -> Prediction | None:
        """The final loss of ``trial`` predicted from its last evaluation and the curves of
        ``complete``; None when fewer than ``max(2, n_startup_trials)`` curves reach back to its
        point of the schedule, or its loss is not finite."""
        return self._predict(trial, self._table(complete), self.floor(complete))

    def is_leading(self, table: _Curves,
                   drops: tuple[np.ndarray, np.ndarray, float] | None) -> bool:
        """Whether a trial's loss is at or below the ``leading`` quantile of the complete
        trials' losses at its point of the schedule (``drops``: what ``drops`` returned for it;
        each curve's loss there is its final loss less its drop). False with ``leading`` 0.
        Asked only of a trial its prediction would stop (a rare case; the drops are read again
        there, so that a subclass's ``_predict`` keeps its signature)."""
        if not self._leading or drops is None:
            return False
        d, use, log_loss = drops
        return log_loss <= float(np.quantile(table.log_final[use] - d, self._leading))

    def _predict(self, trial: FrozenTrial, table: _Curves, floor: float) -> Prediction | None:
        """``predict`` from the complete trials' curves as a table (``_table``), under the
        noise floor ``floor``."""
        drops = self.drops(trial, table)
        if drops is None:
            return None
        d, use, log_loss = drops
        step = int(trial.last_step)
        x = table.feature[use]
        x0 = self._feature(trial)
        fit = (x0 is not None and len(d) >= FIT_MIN_CURVES and not np.isnan(x).any()
               and x.max() > x.min())
        if self._interval == "t":
            mid, half = _t_interval(d, x if fit else None, x0, self._confidence,
                                    self._min_spread * floor)
            return Prediction(
                final=_exp(log_loss + mid), low=_exp(log_loss + mid - half),
                high=_exp(log_loss + mid + half), tokens=int(step), n_curves=len(d),
            )
        mid = float(np.median(d))
        if fit:
            # The drop left depends on the learning rate: the higher it is, the more of the loss
            # is the noise of large steps, which the decay takes away at the end.
            design = np.column_stack([np.ones(len(x)), x])
            coef = np.linalg.lstsq(design, d, rcond=None)[0]
            mid = float(coef[0] + coef[1] * x0)
            # The residuals around the drop at this trial's lr; beyond the complete trials' lrs
            # the line is extrapolated, and they widen as a regression's prediction does.
            d = mid + (d - design @ coef) * beyond(x, x0)
        wide = self._margin * float(d.max() - d.min())
        return Prediction(
            final=_exp(log_loss + mid),
            low=_exp(log_loss + float(d.min()) - wide),
            high=_exp(log_loss + float(d.max()) + wide),
            tokens=int(step), n_curves=len(d),
        )

    def drops(self, trial: FrozenTrial, table: _Curves
              ) -> tuple[np.ndarray, np.ndarray, float] | None:
        """(drops, rows, log loss): the drop of log loss each curve of ``table`` (the complete
        trials' curves, ``_table(complete)``) shows from the running trial's point of the
        schedule to its end, which rows of the table those drops are of, and the trial's log
        loss at its last evaluation. None as for ``predict``."""
        step = trial.last_step
        if step is None:
            return None
        loss = trial.intermediate_values[step]
        if not (math.isfinite(loss) and loss > 0):
            return None
        here = self._progress(trial, step)
        # The complete trials whose curve reaches back to this point of the schedule.
        use = table.at[:, 0] <= here + 1e-12
        if int(use.sum()) < max(LEAST_CURVES, self._n_startup_trials):
            return None
        d = table.log_final[use] - _interp_rows(here, table.at[use], table.log_loss[use],
                                                table.last[use])
        return d, use, math.log(loss)

    def _feature(self, t: FrozenTrial) -> float | None:
        """log of the parameter the drop is conditioned on, or None."""
        v = t.params.get(self._condition_on) if self._condition_on else None
        return math.log(v) if isinstance(v, int | float) and v > 0 else None

    def _table(self, complete: Sequence[FrozenTrial]) -> _Curves:
        """The curves of ``complete`` side by side, built again only when the list holds other
        trials: every decision reads all of them, and a loop over 3,000 took 14-19 ms."""
        kept = self._tabled
        if (kept is None or len(kept.trials) != len(complete)
                or not all(a is b for a, b in zip(kept.trials, complete, strict=True))):
            kept = self._tabled = _Curves.of(list(complete), self._curve, self._feature)
        return kept

    def _curve(self, t: FrozenTrial) -> tuple[np.ndarray, np.ndarray] | None:
        """(progress, log loss) of complete trial ``t``'s evaluations, in order; None without a
        positive final value or a finite evaluation. Kept by trial and its end: a finished
        trial's curve does not change."""
        key = (t._trial_id, t.number, t.value, t.last_step)
        if key not in self._curves:
            points = sorted((self._progress(t, s), v) for s, v in t.intermediate_values.items()
                            if math.isfinite(v) and v > 0)
            if t.value is None or not (math.isfinite(t.value) and t.value > 0) or not points:
                self._curves[key] = None  # no loss to end at (a value told by hand: inf, 0)
            else:
                at, loss = zip(*points, strict=True)
                self._curves[key] = (np.array(at), np.log(loss))
        return self._curves[key]


@dataclass(frozen=True)
class _Curves:
    """The complete trials' curves as arrays, one row per trial with a curve (its evaluations
    against progress, padded on the right: progress with +inf, log loss with its last value)."""

    trials: list[FrozenTrial]
    """The complete trials it was built from, in order (held, so none is freed and replaced)."""
    values: np.ndarray
    """Every complete trial's final value."""
    at: np.ndarray
    log_loss: np.ndarray
    last: np.ndarray
    """Index of each row's last evaluation."""
    log_final: np.ndarray
    feature: np.ndarray
    """The conditioning feature per row (log lr), NaN where a trial has none."""

    @classmethod
    def of(cls, trials: list[FrozenTrial], curve: Callable, feature: Callable) -> _Curves:
        rows = [(t, c) for t in trials if (c := curve(t)) is not None]
        width = max((len(c[0]) for _, c in rows), default=1)
        at = np.full((len(rows), width), np.inf)
        log_loss = np.zeros((len(rows), width))
        for i, (_, (x, y)) in enumerate(rows):
            at[i, :len(x)], log_loss[i, :len(y)], log_loss[i, len(y):] = x, y, y[-1]
        feats = [feature(t) for t, _ in rows]
        return cls(
            trials=trials, values=np.array([t.value for t in trials], dtype=float), at=at,
            log_loss=log_loss, last=np.array([len(c[0]) - 1 for _, c in rows], dtype=int),
            log_final=np.array([math.log(t.value) for t, _ in rows], dtype=float),
            feature=np.array([np.nan if f is None else f for f in feats], dtype=float),
        )


def _interp_rows(here: float, at: np.ndarray, log_loss: np.ndarray,
                 last: np.ndarray) -> np.ndarray:
    """``np.interp(here, at[i, :last[i] + 1], log_loss[i])`` for every row i at once, with the
    same arithmetic (so the same bits): the end values outside a row's range, its value at an
    evaluation point, else the line between the two evaluations around ``here``."""
    rows = np.arange(len(at))
    j = np.maximum((at <= here).sum(axis=1) - 1, 0)
    right = np.minimum(j + 1, last)
    x0, y0, y1 = at[rows, j], log_loss[rows, j], log_loss[rows, right]
    with np.errstate(divide="ignore", invalid="ignore"):
        value = (y1 - y0) / (at[rows, right] - x0) * (here - x0) + y0
    value = np.where(here == x0, y0, value)
    value = np.where(here < at[:, 0], log_loss[:, 0], value)
    value = np.where(here >= at[rows, last], log_loss[rows, last], value)
    for i in np.flatnonzero(~np.isfinite(value)):  # what np.interp does where the line is not
        value[i] = np.interp(here, at[i, :last[i] + 1], log_loss[i, :last[i] + 1])
    return value


def _t_interval(d: np.ndarray, x: np.ndarray | None, x0: float | None,
                confidence: float, least: float = 0.0) -> tuple[float, float]:
    """(prediction, half-width) of the drop of a new trial, from the drops ``d`` of the complete
    trials: a regression's prediction interval. With ``x`` (their log lr; ``x0``, the trial's),
    the drop is the least-squares line at ``x0``; without, the mean drop. The half-width is
    Student's t quantile at ``confidence`` times the residuals' standard deviation times
    sqrt(1 + leverage at ``x0``): few curves (few degrees of freedom) and a trial far from the
    complete trials' lrs both widen it, as the uncertainty of the line itself does. The
    standard deviation is never taken below ``least``: from two or three curves it is a loose
    estimate, and one that happens to come out small would draw an interval tighter than what
    is known of the noise (see PredictedFinalPruner's ``min_spread``)."""
    n = len(d)
    if x is None or x0 is None:
        mid = float(d.mean())
        residuals, dof, leverage = d - mid, n - 1, 1 / n
    else:
        mean = float(x.mean())
        sxx = float(((x - mean) ** 2).sum())
        slope = float(((x - mean) * (d - d.mean())).sum()) / sxx
        mid = float(d.mean()) + slope * (x0 - mean)
        residuals = d - (float(d.mean()) + slope * (x - mean))
        dof, leverage = n - 2, 1 / n + (x0 - mean) ** 2 / sxx
    spread = max(math.sqrt(float((residuals ** 2).sum()) / dof), least)
    return mid, _t_quantile(confidence, dof) * spread * math.sqrt(1 + leverage)


def _t_quantile(p: float, dof: int) -> float:
    """Student's t distribution's ``p`` quantile (scipy.special, imported at the first
    prediction rather than when the driver starts)."""
    from scipy.special import stdtrit

    return float(stdtrit(dof, p))


def beyond(x: Sequence[float], x0: float) -> float:
    """How much wider a fitted line's prediction interval is at ``x0`` than at the nearest end
    of the range of ``x``: sqrt((1 + h(x0)) / (1 + h(end))), with h the leverage
    1/n + (v - mean)^2 / Sxx of ordinary least squares. 1 within the range."""
    xs = np.asarray(x, dtype=float)
    end = min(max(x0, float(xs.min())), float(xs.max()))
    if end == x0:
        return 1.0
    mean, sxx = float(xs.mean()), float(((xs - xs.mean()) ** 2).sum())

    def leverage(v: float) -> float:
        return 1 / len(xs) + (v - mean) ** 2 / sxx

    return math.sqrt((1 + leverage(x0)) / (1 + leverage(end)))


def lr_area_progress(budget: int, optim: Any) -> Progress:
    """Progress as the fraction of the learning rate's integral a trial has used: how far
    through its schedule it is, so that a trial with a long warmup is compared with the others
    at the same point of their schedules, not at the same tokens.

    ``optim`` is the study's OptimConfig; a trial's own warmup comes from its ``warmup_steps``
    and ``steps`` user attrs, and optim fields it searches (``search.other``, e.g.
    ``optim.min_lr_ratio``) from its params. A trial without those attrs (one not run by
    scaletune) falls back to the fraction of the budget seen.
    """
    return _LrArea(budget, optim)


class _LrArea:
    """lr_area_progress's Progress: a class, so that the pruner holding it pickles."""

    def __init__(self, budget: int, optim: Any) -> None:
        self.budget, self.optim = budget, optim
        self.cache: dict[tuple, np.ndarray] = {}

    def __call__(self, trial: FrozenTrial, tokens: int) -> float:
        from scaletune.trainer.optim import lr_at  # the schedule the trainer runs

        attrs = trial.user_attrs
        steps, warmup, per_step = (attrs.get(k) for k in ("steps", "warmup_steps",
                                                          "tokens_per_step"))
        if not (steps and per_step and warmup is not None):
            return min(1.0, tokens / self.budget)
        own = {k.removeprefix("optim."): v for k, v in trial.params.items()
               if k.startswith("optim.")}
        key = (int(steps), int(warmup), tuple(sorted(own.items())))
        if key not in self.cache:
            cfg = self.optim.model_copy(update={**own, "warmup_frac": int(warmup) / int(steps)})
            lrs = [lr_at(k, int(steps), cfg) for k in range(int(steps))]
            area = np.concatenate([[0.0], np.cumsum(lrs)])
            self.cache[key] = area / area[-1]
        area = self.cache[key]
        done = min(tokens / per_step, len(area) - 1)
        return float(np.interp(done, np.arange(len(area)), area))


# --------------------------------------------------------------------------- Hyperband


class DriverHyperband(optuna.pruners.HyperbandPruner):
    """Optuna's HyperbandPruner, deciding the same, whose brackets read the study's trials
    through the study itself.

    Hyperband splits a study into brackets: its successive halving compares a trial with the
    trials of its bracket only, through a study of the bracket that Optuna makes at each
    decision (and hands the sampler at each draw). Optuna's bracket study loads the study by
    name and reads every trial from the storage each time; through a driver's study
    (``search.plan.DriverStudy``) the finished trials are kept and the running ones are the
    driver's own, as for every other pruner. At 256 trials reporting every 10 s on PostgreSQL,
    those reads had held a report 0.7 s at p99 (benchmarks/driver_scale.py --pruner hyperband).
    """

    def _create_bracket_study(self, study: Study, bracket_id: int) -> Study:
        return _Bracket(study, self, bracket_id)


class _Bracket(Study):
    """One bracket of ``pruner``: a study as Optuna's bracket study is (same name, storage and
    sampler; the Hyperband pruner; ``get_trials`` the bracket's trials, ``_get_trials``, which
    samplers read, all of them), made without a storage round trip, whose trials are read
    through ``study``."""

    def __init__(self, study: Study, pruner: DriverHyperband, bracket_id: int) -> None:
        # What Study.__init__ sets (name, id, storage, directions, sampler, ...), taken from the
        # parent: Study.__init__ would look the study up by name in the storage again.
        vars(self).update(vars(study))
        self.pruner = pruner
        self._stop_flag = False
        self._parent, self._bracket_id = study, bracket_id

    def get_trials(self, deepcopy: bool = True,
                   states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        """The bracket's trials (what its successive halving compares)."""
        trials = self._parent.get_trials(deepcopy=deepcopy, states=states)
        pruner = self.pruner
        assert isinstance(pruner, DriverHyperband)
        return [t for t in trials if pruner._get_bracket_id(self._parent, t) == self._bracket_id]

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        # All of the study's trials, as Optuna's bracket study serves this (samplers read here).
        return self._parent._get_trials(deepcopy, states, use_cache)

    def stop(self) -> None:
        self._parent.stop()  # stops the study's own loop, as Optuna's bracket study does


# --------------------------------------------------------------------------- replay


@dataclass(frozen=True)
class Replayed:
    """One trial of a replay: where the pruner stopped it (None: it ran to the end)."""

    number: int
    final: float
    stopped_at: int | None


def replay(pruner: BasePruner, trials: Sequence[FrozenTrial],
           budget: int | None = None) -> list[Replayed]:
    """Run ``pruner`` on the curves of complete ``trials``, in their order, as a study would.

    A fresh in-memory study gets each trial by ``study.ask()`` with its params and user attrs;
    the trial reports its intermediate values step by step and asks ``should_prune()`` after
    each but the one at the trial's ``budget`` of tokens, which the driver does not ask about
    (search.plan.TrialRun.report; without a budget, the last one). A budget off the evaluation
    grid stores the evaluation that reached it at the grid point below: the trial's user attr
    ``UNJUDGED_STEP`` names that point, which is not asked about either (a study from before
    that attr: every point below the budget is). So any Optuna pruner (median, successive
    halving, hyperband, Wilcoxon, this one)
    decides by its own logic on what the trials before it showed. A stopped trial is told
    PRUNED, the others COMPLETE with their final loss. Trials run one after another here,
    whereas a study with several workers finishes some later than it starts others. The
    study is named "replay", so that a replay is the same every time.
    """
    # A fixed name: Hyperband puts trials in brackets by a hash of the study name.
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no study-created or trial-finished lines
    try:
        return _replay(pruner, trials, budget)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _replay(pruner: BasePruner, trials: Sequence[FrozenTrial],
            budget: int | None) -> list[Replayed]:
    study = optuna.create_study(study_name="replay", direction="minimize", pruner=pruner,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for original in trials:
        study.enqueue_trial(original.params, user_attrs=original.user_attrs,
                            skip_if_exists=False)
        trial = study.ask(original.distributions)
        stopped_at = None
        curve = sorted(original.intermediate_values.items())
        unjudged = original.user_attrs.get(UNJUDGED_STEP)
        for i, (step, value) in enumerate(curve):
            trial.report(value, step)
            asked = (step < budget and step != unjudged if budget is not None
                     else i < len(curve) - 1)
            if asked and trial.should_prune():
                stopped_at = step
                break
        if stopped_at is None:
            study.tell(trial, original.value)
        else:
            study.tell(trial, state=TrialState.PRUNED)
        out.append(Replayed(original.number, float(original.value), stopped_at))
    return out


def shuffled(trials: Sequence[FrozenTrial], seed: str, n: int) -> list[list[FrozenTrial]]:
    """``n`` orders of ``trials`` other than theirs and than each other (all there are, where
    fewer: 5 of three trials), each a shuffle seeded by ``seed`` and its number (a string seed:
    the same shuffles in every process). A shuffle that repeats one is drawn again: of three
    trials, 3 of "10 other orders" had been the trials' own, and 5 distinct."""
    out: list[list[FrozenTrial]] = []
    seen = {tuple(range(len(trials)))}
    k = 0
    while len(out) < min(n, math.factorial(len(trials)) - 1):
        k += 1
        order = list(range(len(trials)))  # shuffled as the trials themselves were
        random.Random(f"{seed}/{k}").shuffle(order)
        if tuple(order) not in seen:
            seen.add(tuple(order))
            out.append([trials[i] for i in order])
    return out


def audit(replayed: Sequence[Replayed], budget: int, within: float = 0.01) -> dict[str, Any]:
    """Trials stopped, the fraction of compute saved (tokens not trained over the tokens of
    every trial run to the end) and false prunes: stopped trials whose final loss ended within
    ``within`` of the best (relative)."""
    if not replayed:
        return {"trials": 0, "stopped": 0, "compute_saved": 0.0, "false_prunes": 0}
    best = min(r.final for r in replayed)
    stopped = [r for r in replayed if r.stopped_at is not None]
    saved = sum(max(0.0, 1 - r.stopped_at / budget) for r in stopped)
    return {
        "trials": len(replayed),
        "stopped": len(stopped),
        "compute_saved": saved / len(replayed),
        "false_prunes": sum(r.final <= best * (1 + within) for r in stopped),
    }
