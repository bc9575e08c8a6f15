"""The predicted-final-loss pruner and the replay of pruners, on curves reported to real
in-memory Optuna studies through the public API (ask -> report -> should_prune -> tell)."""

from __future__ import annotations

import math
import pickle
import random
import re

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from scaletune.search import report
from scaletune.search.config import validate_study
from scaletune.search.pruners import (
    FIT_MIN_CURVES,
    PREDICTION_ATTRS,
    PredictedFinalPruner,
    audit,
    beyond,
    lr_area_progress,
    replay,
    shuffled,
)
from scaletune.search.report import audit_rows, evenly_spaced, pruner_audit
from scaletune.trainer.config import OptimConfig
from tests.search.helpers import tiny_study
from tests.search.test_export import EVAL, add_trial, make_study, params, study_file

BUDGET = 1_000
STEPS = range(100, BUDGET + 1, 100)


def curve(final: float, drop: float) -> dict[int, float]:
    """A loss curve that ends at ``final`` and starts ``drop`` times higher, falling linearly
    in the fraction of the budget seen."""
    return {s: final * (1 + (drop - 1) * (1 - s / BUDGET)) for s in STEPS}


def run(study: optuna.Study, points: dict[int, float]) -> optuna.Trial:
    """Report ``points`` one by one; tell PRUNED at the first should_prune, else COMPLETE."""
    trial = study.ask()
    for step, value in sorted(points.items()):
        trial.report(value, step)
        if trial.should_prune():
            study.tell(trial, state=TrialState.PRUNED)
            return trial
    study.tell(trial, points[max(points)])
    return trial


@pytest.fixture
def study() -> optuna.Study:
    """Three complete trials whose loss falls by 1.8x to 2.2x over training; best final 2.0."""
    pruner = PredictedFinalPruner(BUDGET, n_startup_trials=3)
    study = optuna.create_study(direction="minimize", pruner=pruner)
    for final, drop in ((2.0, 2.0), (2.3, 1.8), (2.1, 2.2)):
        run(study, curve(final, drop))
    return study


def test_a_clearly_bad_trial_is_stopped_with_its_prediction(study):
    bad = run(study, curve(6.0, 2.0))
    frozen = study.trials[bad.number]
    # Rule: a curve three times the best's is stopped at its first evaluation.
    assert frozen.state == TrialState.PRUNED
    assert frozen.last_step == 100
    # Rule: the prediction that stopped it is on the trial, an interval around the prediction,
    # whose optimistic end is still worse than the best final loss plus the noise floor.
    attrs = frozen.user_attrs
    assert set(PREDICTION_ATTRS) <= set(attrs)
    assert attrs["predicted_at_tokens"] == 100
    low, mid, high = (attrs[k] for k in ("predicted_final_loss_low", "predicted_final_loss",
                                         "predicted_final_loss_high"))
    assert low < mid < high
    assert low > 2.0 * 1.01
    assert mid == pytest.approx(6.0, rel=0.1)


def test_a_study_that_maximizes_is_refused_by_name():
    # A maximized score was judged as a loss before: trials headed for the best were stopped.
    study = optuna.create_study(direction="maximize", pruner=PredictedFinalPruner(BUDGET))
    trial = study.ask()
    trial.report(1.0, 100)
    with pytest.raises(ValueError, match=re.escape(
            "takes a study that minimizes one value (direction='minimize'); this study's "
            "directions are ['maximize']")):
        trial.should_prune()


def test_a_pruner_used_again_on_another_in_memory_study_still_refuses_maximize():
    # Each in-memory storage numbers its first study 0: the check, kept by study id, was skipped.
    pruner = PredictedFinalPruner(BUDGET)
    first = optuna.create_study(pruner=pruner).ask()
    first.report(1.0, 100)
    assert not first.should_prune()
    trial = optuna.create_study(direction="maximize", pruner=pruner).ask()
    trial.report(1.0, 100)
    with pytest.raises(ValueError, match="takes a study that minimizes one value"):
        trial.should_prune()


def test_a_pruner_used_again_on_another_study_judges_it_by_its_own_curves(study):
    # Its curves were kept by trial id and number, which every in-memory storage repeats: on a
    # second study the pruner read the first's curves (falling 2x) for the second's (1.2x).
    run(study, curve(6.0, 2.0))  # judged: the first study's curves are read
    flat = PredictedFinalPruner(BUDGET, n_startup_trials=3)
    again = optuna.create_study(pruner=study.pruner)
    fresh = optuna.create_study(pruner=flat)
    for one in (again, fresh):
        for final, drop in ((2.0, 1.2), (2.3, 1.2), (2.1, 1.2)):
            run(one, curve(final, drop))
    # A curve 1.5x the best's at its first evaluation: 1.5 * 2.0 * 1.18 = 3.54 is stopped on
    # curves that fall 1.2x, where the first study's 2x fall kept it.
    stopped = [run(one, curve(3.0, 1.2)) for one in (again, fresh)]
    assert [one.trials[t.number].state for one, t in zip((again, fresh), stopped, strict=True)] \
        == [TrialState.PRUNED, TrialState.PRUNED]
    assert study.pruner.stopped_on(stopped[0].number) == flat.stopped_on(stopped[1].number)


@pytest.mark.parametrize("told", [math.inf, 0.0, -1.0])
def test_a_complete_trial_told_a_value_that_is_no_loss_is_left_out_of_the_curves(study, told):
    # Told inf, every trial was stopped, the best on its way included (its prediction NaN);
    # told 0 or less, should_prune raised a math domain error. (A value told by hand: the
    # runner tells only finite losses.)
    run(study, {**curve(2.0, 2.0), BUDGET: told})
    good = run(study, curve(1.9, 2.0))  # no error; the best so far, but for a best told 0
    expected = TrialState.COMPLETE if told > 0 else TrialState.PRUNED
    assert study.trials[good.number].state == expected
    bad = run(study, curve(6.0, 2.0))
    assert study.trials[bad.number].state == TrialState.PRUNED
    assert math.isfinite(study.trials[bad.number].user_attrs["predicted_final_loss_low"])


def test_the_last_evaluation_of_a_budget_off_the_grid_asks_no_pruner():
    # The trainer's last evaluation overshoots the budget; on the grid below it (a budget that
    # is no multiple of the interval) the pruner was asked, answered "prune", which the trainer
    # ignores at its last step, and recorded a stop on a trial that then completed.
    from types import SimpleNamespace

    from scaletune.search.plan import TrialRun

    budget, every, per_step = 1_003, 100, 96  # 11 steps: 1,056 tokens, grid point 1,000
    study = optuna.create_study(pruner=PredictedFinalPruner(budget, n_startup_trials=2))

    def trial_run(early: float, final: float) -> tuple[list[str], optuna.trial.FrozenTrial]:
        r = TrialRun(study.ask(), {}, SimpleNamespace(tokens=budget), every, "predicted")
        steps = math.ceil(budget / per_step)
        answers = [r.report(k * per_step, early * (1 + 0.5 * (1 - k / steps)))
                   for k in range(1, steps)]
        answers.append(r.report(steps * per_step, final))
        study.tell(r.trial, final)
        return answers, study.trials[-1]

    trial_run(2.0, 2.0)
    trial_run(2.1, 2.1)
    answers, last = trial_run(2.0, 4.0)  # as good as the best until its last evaluation
    assert 1000 in last.intermediate_values  # reported all the same
    assert set(answers) == {"continue"}
    assert not set(PREDICTION_ATTRS) & set(last.user_attrs)
    assert study.pruner.stopped_on(last.number) is None


@pytest.mark.parametrize("progress", ["tokens", "lr_area"])
def test_the_pruner_pickles_and_decides_as_before(study, progress):
    # As a pruner handed to Optuna's own tools may be; the default progress was a lambda.
    fn = lr_area_progress(BUDGET, OptimConfig()) if progress == "lr_area" else None
    study.pruner = pickle.loads(pickle.dumps(PredictedFinalPruner(BUDGET, fn, n_startup_trials=3)))
    bad = run(study, curve(6.0, 2.0))
    assert study.trials[bad.number].state == TrialState.PRUNED


def test_a_trial_worse_early_but_predicted_good_is_kept(study):
    # Early it is worse than the complete trials' median at the same tokens (the median
    # pruner's view), but it falls a little more than most did (2.25x), to the best final loss.
    late_bloomer = curve(2.0, 2.25)
    assert late_bloomer[100] > np.median([t.intermediate_values[100] for t in study.trials])
    trial = run(study, late_bloomer)
    # Rule: it runs to the end, and records no prediction (none stopped it).
    frozen = study.trials[trial.number]
    assert frozen.state == TrialState.COMPLETE
    assert "predicted_final_loss" not in frozen.user_attrs
    # Rule: the median pruner, on the same curves, would have stopped it.
    median = [r for r in replay(optuna.pruners.MedianPruner(n_startup_trials=3), study.trials)
              if r.number == trial.number]
    assert median[0].stopped_at is not None


@pytest.mark.parametrize(("leading", "loss_now", "stopped"), [
    (0.0, 4.2, True), (0.25, 4.2, False), (0.25, 4.4, True)])
def test_a_trial_among_the_leading_ones_now_is_not_stopped(leading, loss_now, stopped):
    # Three complete trials that all fall about 1.9x from the first evaluation to the end; at
    # that evaluation their losses are 3.8, 4.795 and 4.893, whose 0.25 quantile is 4.2975.
    pruner = PredictedFinalPruner(BUDGET, n_startup_trials=3, leading=leading)
    study = optuna.create_study(direction="minimize", pruner=pruner)
    for final, drop in ((2.0, 2.0), (2.5, 2.02), (2.6, 1.98)):
        run(study, curve(final, drop))
    trial = run(study, curve(loss_now / 1.9, 2.0))
    frozen = study.trials[trial.number]
    # The prediction alone would stop both (about loss_now x 0.526, its low end above 2.02).
    assert pruner.predict(frozen, study.trials[:3]).low > 2.0 * 1.01
    # Rule: under leading 0.25, the trial at 4.2 (ahead of that quantile) runs to the end;
    # the one at 4.4 is stopped at its first evaluation, as both are without the guard.
    assert (frozen.state == TrialState.PRUNED) == stopped
    if stopped:
        assert frozen.last_step == 100


@pytest.mark.parametrize(("min_spread", "stopped"), [(0.0, True), (2.0, False)])
def test_two_curves_that_happen_to_agree_do_not_make_a_narrow_interval(min_spread, stopped):
    # Two complete trials whose losses fell by almost the same factor (2.0 and 2.002): their
    # drops' spread is 0.0007 in log loss, far below the noise between training seeds (the
    # default floor, 1%). A trial that ends 5% above the best follows the same curve shape.
    pruner = PredictedFinalPruner(BUDGET, n_startup_trials=2, confidence=0.9, leading=0,
                                  min_spread=min_spread)
    study = optuna.create_study(direction="minimize", pruner=pruner)
    for final, drop in ((2.0, 2.0), (2.2, 2.002)):
        run(study, curve(final, drop))
    trial = run(study, curve(2.1, 2.0))
    frozen = study.trials[trial.number]
    prediction = pruner.predict(frozen, study.trials[:2])
    # Rule: without a least spread, those two curves alone draw an interval 0.1% wide, and the
    # trial is stopped at its first evaluation; with the spread at least two noise floors
    # (0.02), the interval is 3.078 (Student's t, 1 degree of freedom, 0.9) x 0.02 x
    # sqrt(1.5) = 0.075 wide below the prediction, its low end under 2.0 x 1.01, and the trial
    # runs to the end.
    assert prediction.final == pytest.approx(2.1, rel=1e-3)
    if stopped:
        assert frozen.state == TrialState.PRUNED and frozen.last_step == 100
        assert prediction.low > 2.0 * 1.01
    else:
        assert frozen.state == TrialState.COMPLETE
        assert math.log(prediction.final / prediction.low) == pytest.approx(
            3.0777 * 0.02 * math.sqrt(1.5), rel=1e-3)
    # Rule: a trial far worse than the best is stopped at its first evaluation either way.
    bad = run(study, curve(3.0, 2.0))
    assert study.trials[bad.number].state == TrialState.PRUNED
    assert study.trials[bad.number].last_step == 100


@pytest.mark.parametrize("options", [{"confidence": 0.9999999}, {"min_spread": 1e6},
                                     {"interval": "range", "margin": 1e6}])
def test_an_interval_too_wide_for_a_float_stops_no_trial_and_stops_nothing_else(options):
    # Two curves at confidence 0.9999999 (t with 1 degree of freedom), a least spread or a
    # margin of 1e6: the interval reached e^800, and the OverflowError stopped the driver (and
    # the report's audit, which replays the pruner).
    pruner = PredictedFinalPruner(BUDGET, n_startup_trials=2, leading=0, **options)
    study = optuna.create_study(direction="minimize", pruner=pruner)
    for final, drop in ((2.0, 2.0), (2.2, 2.1)):
        run(study, curve(final, drop))
    bad = run(study, curve(6.0, 2.0))
    assert study.trials[bad.number].state == TrialState.COMPLETE
    early = optuna.trial.create_trial(state=TrialState.RUNNING,
                                      intermediate_values={100: curve(6.0, 2.0)[100]})
    prediction = pruner.predict(early, study.trials[:2])
    assert prediction.low < 2.0 and prediction.final == pytest.approx(6.0, rel=0.1)
    assert math.isfinite(prediction.high) and prediction.high > 1e300
    replayed = replay(PredictedFinalPruner(BUDGET, n_startup_trials=2, leading=0, **options),
                      study.trials)
    assert audit(replayed, BUDGET)["stopped"] == 0


def test_a_stop_against_the_kth_best_names_it():
    # With rank 2, the reason (and the report's row) called the second best "the best".
    from scaletune.search.pruners import held_against
    from scaletune.search.report import _held_against

    assert held_against(3.3517, 0.01) == (", its low end above the best 3.3517 x (1 + noise "
                                          "floor 1.0%) = 3.3852")
    for rank, which in ((2, "the 2nd best"), (3, "the 3rd best"), (11, "the 11th best"),
                        (22, "the 22nd best")):
        assert f"its low end above {which} 3.3517 x" in held_against(3.3517, 0.01, rank)
    stopped = {"stopped_against_best": 3.3517, "stopped_with_noise_floor": 0.01, "rank": 2}
    assert "above the 2nd best 3.3517" in _held_against(stopped)
    assert PredictedFinalPruner(BUDGET, rank=2).rank == 2


def test_min_spread_is_checked_and_read_back_from_a_record(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("x")
    with pytest.raises(ValueError, match=re.escape("pruner.min_spread: must be >= 0 (got -1)")):
        validate_study(tiny_study(tmp_path, text, pruner={"name": "predicted",
                                                          "min_spread": -1}))
    with pytest.raises(ValueError, match=re.escape("min_spread sets the width of interval: t; "
                                                   "under interval: range margin does")):
        validate_study(tiny_study(tmp_path, text, pruner={"name": "predicted", "min_spread": 2,
                                                          "interval": "range"}))
    # Counted in noise floors: with a floor of 0, min_spread 4 drew the intervals of 0.
    with pytest.raises(ValueError, match=re.escape("min_spread: 4 is counted in noise floors, "
                                                   "and noise_floor: 0 makes it 0")):
        validate_study(tiny_study(tmp_path, text, pruner={"name": "predicted", "min_spread": 4,
                                                          "noise_floor": 0}))
    assert validate_study(tiny_study(tmp_path, text, pruner={
        "name": "predicted", "min_spread": 0, "noise_floor": 0})).pruner.noise_floor == 0
    cfg = validate_study(tiny_study(tmp_path, text, pruner={"name": "predicted",
                                                            "min_spread": 1.5}))
    assert cfg.pruner.build(cfg)._min_spread == 1.5
    record = cfg.model_dump(mode="json", by_alias=True)
    # Rule: the study's record replays (report, show) with the spread it ran under; a record
    # from before the option ran with none, and replays with none, whatever today's default.
    assert validate_study(record, recorded=True).pruner.min_spread == 1.5
    del record["pruner"]["min_spread"]
    assert validate_study(record, recorded=True).pruner.min_spread == 0.0


def test_leading_is_checked_and_read_back_from_a_record(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("x")
    with pytest.raises(ValueError, match=re.escape("pruner.leading: must be in [0, 1) (got 1.5)")):
        validate_study(tiny_study(tmp_path, text, pruner={"name": "predicted", "leading": 1.5}))
    cfg = validate_study(tiny_study(tmp_path, text, pruner={"name": "predicted",
                                                            "leading": 0.25}))
    record = cfg.model_dump(mode="json", by_alias=True)
    # Rule: the study's record replays (report, show) with the guard it ran under; a record
    # from before the option has none, the default's behaviour (no guard).
    assert validate_study(record, recorded=True).pruner.leading == 0.25
    del record["pruner"]["leading"]
    assert validate_study(record, recorded=True).pruner.leading == 0.0


def test_nothing_is_stopped_before_the_startup_trials_or_after_the_budget():
    pruner = PredictedFinalPruner(BUDGET, n_startup_trials=3)
    study = optuna.create_study(direction="minimize", pruner=pruner)
    run(study, curve(2.0, 2.0))
    run(study, curve(2.1, 2.0))
    # Rule: with two complete trials of the three start-up trials, even a terrible one runs on.
    terrible = run(study, curve(9.0, 2.0))
    assert study.trials[terrible.number].state == TrialState.COMPLETE
    # Rule: at the budget's last evaluation there is nothing left to save.
    trial = study.ask()
    trial.report(9.0, BUDGET)
    assert not trial.should_prune()


def test_a_longer_warmup_is_compared_at_the_same_point_of_its_schedule():
    # Curves that depend on how much of the learning rate's integral a trial has used: a trial
    # with a long warmup is higher at equal tokens and ends at the same loss.
    optim = OptimConfig()
    progress = lr_area_progress(BUDGET, optim)

    def study_with(progress_fn):
        pruner = PredictedFinalPruner(BUDGET, progress_fn, n_startup_trials=3)
        study = optuna.create_study(direction="minimize", pruner=pruner)
        for final, warmup in ((2.0, 0), (2.1, 2), (2.2, 4)):
            add(study, final, warmup)
        return study, pruner

    def add(study, final, warmup, upto=BUDGET):
        trial = study.ask()
        trial.set_user_attr("steps", 50)
        trial.set_user_attr("warmup_steps", warmup)
        trial.set_user_attr("tokens_per_step", BUDGET // 50)
        frozen = study._storage.get_trial(trial._trial_id)
        for s in STEPS:
            if s <= upto:
                trial.report(final * (1 + 2 * (1 - progress(frozen, s))), s)
        if upto == BUDGET:
            study.tell(trial, final)
        return trial

    errors = {}
    for name, fn in (("lr_area", progress), ("tokens", None)):
        study, pruner = study_with(fn)
        slow_start = add(study, 2.0, warmup=15, upto=300)
        frozen = study._storage.get_trial(slow_start._trial_id)
        complete = study.get_trials(states=(TrialState.COMPLETE,))
        errors[name] = abs(pruner.predict(frozen, complete).final / 2.0 - 1)
    # Rule: read at the same point of the schedule, the prediction is within 1% of the final
    # loss; read at the same tokens it is further off.
    assert errors["lr_area"] < 0.01
    assert errors["tokens"] > 2 * errors["lr_area"]


def test_replay_and_audit_count_stops_saved_compute_and_false_prunes():
    trials = [optuna.trial.create_trial(value=c[BUDGET], intermediate_values=c)
              for c in (curve(2.0, 2.0), curve(2.3, 1.8), curve(2.1, 2.2), curve(6.0, 2.0),
                        curve(2.01, 2.0))]
    replayed = replay(PredictedFinalPruner(BUDGET, n_startup_trials=3), trials)
    # Rule: only the bad fourth trial is stopped, at its first evaluation.
    assert [r.stopped_at for r in replayed] == [None, None, None, 100, None]
    result = audit(replayed, BUDGET)
    # Rule: it saves 90% of one trial in five; it ended far from the best, so no false prune.
    assert result == {"trials": 5, "stopped": 1, "compute_saved": pytest.approx(0.9 / 5),
                      "false_prunes": 0}
    # Rule: a stopped trial that ended within 1% of the best is a false prune.
    assert audit(replayed[:3] + [replayed[3].__class__(9, 2.01, 500)], BUDGET)["false_prunes"] == 1


def test_a_replay_prints_nothing_and_leaves_optunas_verbosity_alone(capfd):
    optuna.logging.set_verbosity(optuna.logging.INFO)
    trials = [optuna.trial.create_trial(value=c[BUDGET], intermediate_values=c)
              for c in (curve(2.0, 2.0), curve(2.3, 1.8), curve(6.0, 2.0))]
    replay(optuna.pruners.MedianPruner(n_startup_trials=1), trials)
    # Rule: a report's audit does not fill the terminal with the replay study's INFO lines.
    assert "A new study created" not in capfd.readouterr().err
    assert optuna.logging.get_verbosity() == optuna.logging.INFO


def test_replay_runs_successive_halving_and_hyperband_by_their_own_logic():
    trials = [optuna.trial.create_trial(value=c[BUDGET], intermediate_values=c)
              for c in (curve(2.0 + i / 10, 2.0) for i in range(6))]
    for pruner in (optuna.pruners.SuccessiveHalvingPruner(min_resource=100),
                   optuna.pruners.HyperbandPruner(min_resource=100, max_resource=BUDGET)):
        replayed = replay(pruner, trials)
        # Rule: a replay is the same every time, and some worse trials are stopped.
        assert replayed == replay(pruner, trials)
        assert 0 < sum(r.stopped_at is not None for r in replayed) < len(trials)


def test_replay_asks_at_every_point_a_budget_off_the_grid_leaves_before_it():
    # 40,000 tokens evaluated every 15,000: the last evaluation (40,064 tokens) falls on the
    # 30,000 point, which the driver asks about and acts on; the replay ignored the answer
    # there, as if it were the budget's, and counted no stop where the study made one.
    trials = [optuna.trial.create_trial(value=c[30_000], intermediate_values=c)
              for c in ({15_000: 3.0, 30_000: 2.5}, {15_000: 3.1, 30_000: 2.6},
                        {15_000: 3.0, 30_000: 3.4})]
    median = optuna.pruners.MedianPruner(n_startup_trials=2)
    assert [r.stopped_at for r in replay(median, trials, budget=40_000)] == [None, None, 30_000]
    # On the grid, the budget's point is the last, and its answer is ignored there.
    assert [r.stopped_at for r in replay(median, trials, budget=30_000)] == [None, None, None]


def test_replay_asks_the_pruner_where_the_driver_did_and_nowhere_else():
    # 95,000 tokens evaluated every 10,000 at 16,384 tokens a step: the last evaluation (98,304
    # tokens) is stored at 90,000 and the driver asks no pruner there; the replay asked, and its
    # audit counted a stop (and a false prune) the study could never make.
    from types import SimpleNamespace

    from scaletune.search.plan import TrialRun

    class Asked(optuna.pruners.BasePruner):
        def __init__(self):
            self.at: list[int] = []

        def prune(self, study, trial):
            self.at.append(trial.last_step)
            return False

    budget, every, per_step = 95_000, 10_000, 16_384
    live = Asked()
    study = optuna.create_study(pruner=live)
    run = TrialRun(study.ask(), {}, SimpleNamespace(tokens=budget), every, "asked")
    for k in range(1, 7):  # 6 steps, an evaluation at each step that crosses the grid and the last
        assert run.report(k * per_step, 3.0 - k / 10) == "continue"
    run.tell(study, {"status": "completed", "final_val_loss": 2.4})
    trial = study.trials[0]
    assert sorted(trial.intermediate_values) == [10_000, 30_000, 40_000, 60_000, 80_000, 90_000]
    assert live.at == [10_000, 30_000, 40_000, 60_000, 80_000]
    replayed = Asked()
    assert [r.stopped_at for r in replay(replayed, [trial], budget)] == [None]
    assert replayed.at == live.at


def test_report_audit_counts_the_constructed_study(tmp_path):
    path, cfg = study_file(tmp_path, pruner={"name": "predicted", "n_startup_trials": 3})
    study = make_study(cfg)
    study.pruner = cfg.pruner.build(cfg)
    # Curves fall by 2.0 over the budget to the final loss (add_trial's shape).
    for value in (2.0, 2.2, 2.1, 6.0, 2.01):
        add_trial(study, cfg, params(3e-3, tau=1.0), value)
    # One trial the predicted pruner stops as the runner would: report, should_prune, tell
    # (with the same params, so the same schedule, as the others).
    trial = study.ask()
    for key in ("steps", "warmup_steps", "tokens_per_step"):
        trial.set_user_attr(key, study.trials[0].user_attrs[key])
    trial.report(9.0, EVAL)
    assert trial.should_prune()
    study.tell(trial, state=TrialState.PRUNED)

    result = pruner_audit(study, cfg)
    # Rule: replayed on the five complete trials, the predicted pruner stops only the 6.0 one,
    # at its first evaluation; the median pruner (4 start-up trials, 25% warmup) stops none.
    budget = cfg.tokens_per_trial
    assert result["replayed"]["predicted"] == {
        "trials": 5, "stopped": 1, "compute_saved": pytest.approx((1 - EVAL / budget) / 5),
        "false_prunes": 0}
    assert result["replayed"]["median"]["stopped"] == 0
    # Rule: the pruned trial's prediction is listed, and shown in the summary's rows.
    assert [p["number"] for p in result["predictions"]] == [trial.number]
    assert result["predictions"][0]["predicted_at_tokens"] == EVAL
    text = " ".join(v for _, v in audit_rows(result))
    assert "predicted: replayed on the 5 complete trial(s), would stop 1" in text
    # Rule: the trial pruned live is not judged by the replay, and the audit says so (its "0
    # false prunes" read as a verdict on every stop).
    assert ("the replay judges complete trials only: the 1 trial(s) pruned while the study ran "
            "are not in it, and how they would have ended is not known") in text
    assert f"trial {trial.number} at {EVAL:,} tokens: final loss predicted" in text
    assert math.isfinite(result["predictions"][0]["predicted_final_loss"])


def test_the_audit_says_it_leaves_out_the_repeats_the_trials_row_counts():
    # "trials 4 complete", then "replayed on the 2 complete trial(s)", without a word on why.
    replayed = {"trials": 2, "stopped": 0, "compute_saved": 0.0, "false_prunes": 0}
    audit = {"replayed": {"median": replayed}, "complete": 2, "repeats": 2, "predictions": []}
    [(_, row)] = audit_rows(audit)
    assert row.startswith("median: replayed on the 2 complete trial(s), not the 2 repeat(s) of "
                          "a config with another seed, would stop 0"), row
    [(_, row)] = audit_rows({**audit, "repeats": 0})
    assert row.startswith("median: replayed on the 2 complete trial(s), would stop 0"), row


def test_the_audit_also_replays_the_trials_in_other_orders(tmp_path, monkeypatch):
    # A late bloomer, the best trial, whose loss falls three times as far as the others': it
    # ran first, so the pruner learned its drop and never judged it. In an order where it comes
    # after two others, it is judged on their smaller drops and stopped.
    path, cfg = study_file(tmp_path, pruner={"name": "predicted", "confidence": 0.9})
    study = make_study(cfg)
    like = add_trial(study, cfg, params(3e-3, tau=1.0), 9.9, state=TrialState.FAIL)
    budget = like.user_attrs["steps"] * like.user_attrs["tokens_per_step"]
    study.add_trial(optuna.trial.create_trial(
        params=like.params, distributions=like.distributions, value=2.0,
        user_attrs={k: like.user_attrs[k] for k in ("steps", "warmup_steps", "tokens_per_step")},
        intermediate_values={s: 2.0 + 6.0 * (1 - s / budget)
                             for s in range(EVAL, budget + 1, EVAL)}))
    for value in (2.3, 2.35, 2.4, 2.45, 2.5):
        add_trial(study, cfg, params(3e-3, tau=1.0), value)

    result = pruner_audit(study, cfg)
    # Rule: in trial order no stop ended near the best; over 10 shuffles some did, and the
    # report says both.
    assert result["replayed"]["predicted"]["false_prunes"] == 0
    orders = result["orders"]["predicted"]
    assert orders["replays"] == 10 and orders["false_prunes"] >= 1
    assert 1 <= orders["with_false_prune"] <= orders["false_prunes"]
    text = " ".join(v for _, v in audit_rows(result))
    assert (f"predicted, the same trials in 10 other orders: would save "
            f"{orders['compute_saved']:.0%} on average; {orders['false_prunes']} stopped that "
            f"ended within 1% of the best ({orders['with_false_prune']} of the 10 orders had "
            "one)") in text
    # The same shuffles every time (seeded by the study's name).
    assert pruner_audit(study, cfg)["orders"] == result["orders"]
    # Rule: a study with more complete trials than the audit shuffles is replayed in its order
    # only (a replay's time grows with the square of the trials).
    monkeypatch.setattr(report, "AUDIT_SHUFFLED_TRIALS", 5)
    assert pruner_audit(study, cfg)["orders"] == {}


def test_the_audit_replays_the_search_with_the_floor_its_repeats_measure(tmp_path):
    # The audit replayed the seed repeats as search trials (live, they are never pruned), and
    # the predicted pruner at the default 1% floor where the study measured more.
    from scaletune.search.noise import REPEAT_OF, TRAIN_SEED

    # (confidence 0.9 and no least spread: an interval narrow enough, on these few curves of
    # one shape, to stop the 2.05 one)
    path, cfg = study_file(tmp_path, pruner={"name": "predicted", "n_startup_trials": 3,
                                             "confidence": 0.9, "leading": 0,
                                             "min_spread": 0})
    study = make_study(cfg)
    for value in (2.0, 2.2, 2.1, 6.0, 2.05):
        add_trial(study, cfg, params(3e-3, tau=1.0), value)
    assert pruner_audit(study, cfg)["replayed"]["predicted"]["stopped"] == 2  # 6.0 and 2.05
    like = study.trials[2]  # ended at 2.1: as trial 0's config did with training seed 1
    study.add_trial(optuna.trial.create_trial(
        params=like.params, distributions=like.distributions, value=like.value,
        intermediate_values=like.intermediate_values,
        user_attrs={**like.user_attrs, REPEAT_OF: 0, TRAIN_SEED: 1}))
    result = pruner_audit(study, cfg)["replayed"]["predicted"]
    # Rule: five search trials; 2.0 and 2.1 over two seeds measure a floor of about 7%, under
    # which 2.05 (2.5% above the best) is not told apart from it.
    assert result["trials"] == 5 and result["stopped"] == 1


def test_the_audit_of_a_large_study_replays_an_evenly_spaced_sample_and_says_so(tmp_path,
                                                                               monkeypatch):
    path, cfg = study_file(tmp_path, pruner={"name": "median", "n_startup_trials": 2})
    study = make_study(cfg)
    for value in (2.0, 2.2, 2.1, 6.0, 2.01, 2.3, 2.05):
        add_trial(study, cfg, params(3e-3, tau=1.0), value)
    complete = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.number)
    # Rule: at most AUDIT_TRIALS trials, the first, the last and evenly spaced between, in order.
    assert [t.number for t in evenly_spaced(complete, 3)] == [complete[i].number for i in (0, 3, 6)]
    assert evenly_spaced(complete, 10) == complete
    monkeypatch.setattr(report, "AUDIT_TRIALS", 3)
    result = pruner_audit(study, cfg)
    # Rule: the replay's time grows with the square of the trials, so a large study is replayed
    # on a sample, and the audit says on how many of how many.
    assert result["replayed"]["median"]["trials"] == 3
    assert result["complete"] == 7
    text = " ".join(v for _, v in audit_rows(result))
    assert "median: replayed on 3 of the 7 complete trials (evenly spaced)" in text


@pytest.mark.parametrize("option", [
    {"rank": 2}, {"noise_floor": 0.0}, {"confidence": 0.6}, {"confidence": 0.99},
    {"interval": "range"}, {"interval": "range", "margin": 0.0}, {"progress": "tokens"},
    {"n_startup_trials": 2}, {"n_warmup_steps": 16_384}, {"condition_on": "none"},
    {"min_spread": 0.0}, {"min_spread": 8.0}, {"leading": 0.5},
])
def test_every_option_builds_a_pruner_that_prunes(tmp_path, option):
    text = tmp_path / "t.txt"
    text.write_text("x")
    cfg = validate_study(tiny_study(tmp_path, text, pruner={"name": "predicted", **option}))
    pruner = cfg.pruner.build(cfg)
    study = optuna.create_study(direction="minimize", pruner=pruner)
    grid = range(cfg.eval_interval, cfg.tokens_per_trial + 1, cfg.eval_interval)
    for final in (2.0, 2.1, 2.2, 2.05):
        run(study, {s: final + 2 * (1 - s / cfg.tokens_per_trial) for s in grid})
    # Rule: each option still stops a hopeless trial once it may.
    bad = run(study, {s: 20.0 for s in grid})
    assert study.trials[bad.number].state == TrialState.PRUNED


@pytest.mark.parametrize("interval", [{"confidence": 0.9}, {"interval": "range", "margin": 0.0}],
                         ids=["t", "range"])
def test_a_high_lr_trial_is_predicted_from_the_drop_fitted_at_its_lr(interval):
    """Runs at a higher lr fall more at the end (the decay takes away their large steps' noise):
    here the drop to the end grows by 0.1 per doubling of lr. A trial two doublings past every
    complete one, which ends best, is kept when the drops are regressed on lr, and stopped (a
    false prune) when they are taken as they are."""
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)

    def lr_curve(k: int, final: float) -> dict[int, float]:
        c = 0.1 + 0.1 * k  # log loss falls by c over the run, linearly in tokens
        return {s: final * math.exp(c * (1 - s / BUDGET)) for s in STEPS}

    def stopped(condition_on: str | None) -> bool:
        pruner = PredictedFinalPruner(BUDGET, n_startup_trials=4, condition_on=condition_on,
                                      **interval)  # four complete curves first
        study = optuna.create_study(direction="minimize", pruner=pruner)
        for k, final in ((0, 2.05), (1, 2.10), (2, 2.02), (3, 2.08), (5, 2.00)):
            study.enqueue_trial({"lr": 1e-3 * 2**k})
            trial = study.ask({"lr": lr})
            for step, value in lr_curve(k, final).items():
                trial.report(value, step)
                if trial.should_prune():
                    study.tell(trial, state=TrialState.PRUNED)
                    break
            else:
                study.tell(trial, final)
        return study.trials[-1].state == TrialState.PRUNED

    assert not stopped("lr")
    assert stopped(None)


@pytest.mark.parametrize("interval", ["t", "range"])
def test_an_lr_beyond_the_complete_trials_widens_the_interval_the_further_out_it_lies(interval):
    """The drop regressed on lr is extrapolated for a trial whose lr lies outside the complete
    trials' lrs: its interval widens with the distance, as a regression's prediction interval
    does. Within the range, the first rule's (range) is the residuals' spread; the t interval
    already widens away from the complete trials' mean lr there."""
    lr = optuna.distributions.FloatDistribution(1e-5, 10.0, log=True)
    pruner = PredictedFinalPruner(BUDGET, n_startup_trials=4, margin=0.0, interval=interval)
    study = optuna.create_study(direction="minimize", pruner=optuna.pruners.NopPruner())
    # Drops that grow with lr, with some scatter around the line.
    for k, scatter in ((0, 0.02), (1, -0.03), (2, 0.01), (3, -0.01), (4, 0.02)):
        c = 0.3 + 0.1 * k + scatter
        final = 2.0
        study.add_trial(optuna.trial.create_trial(
            params={"lr": 1e-3 * 2**k}, distributions={"lr": lr}, value=final,
            intermediate_values={s: final * math.exp(c * (1 - s / BUDGET)) for s in STEPS}))
    complete = study.get_trials(states=(TrialState.COMPLETE,))

    def width(k: float) -> float:
        running = optuna.trial.create_trial(
            params={"lr": 1e-3 * 2**k}, distributions={"lr": lr}, state=TrialState.RUNNING,
            intermediate_values={300: 3.0})
        p = pruner.predict(running, complete)
        return math.log(p.high / p.low)

    middle, inside, edge, out, far = width(2), width(2.5), width(4), width(6), width(10)
    if interval == "range":  # the residuals' spread wherever the lr lies within theirs
        assert middle == pytest.approx(edge) and inside == pytest.approx(edge)
    else:
        assert middle < inside < edge
    assert edge < out < far
    assert far > 1.5 * edge


def test_the_audit_replays_the_pruner_a_resumed_study_goes_on_under(tmp_path):
    _, started = study_file(tmp_path, pruner={"name": "median"})
    study = make_study(started)
    for value in (2.0, 2.2, 2.1, 6.0, 2.01):
        add_trial(study, started, params(3e-3, tau=1.0), value)
    # The study file now names the predicted pruner.
    path, now = study_file(tmp_path, pruner={"name": "predicted"})
    summary = report.make_report(now, tmp_path / "report", str(path))
    # Rule: the audit replays the study file's pruner, and says the study started under another.
    assert summary["pruner"] == "predicted"
    assert set(summary["pruner_audit"]["replayed"]) == {"predicted", "median"}
    assert any(n.startswith("this study started under the median pruner and goes on under the "
                            "predicted pruner") for n in summary["notes"])


def _predict_one_curve_at_a_time(pruner: PredictedFinalPruner, trial, complete):
    """The prediction as written before the curves were read side by side (search.pruners):
    each complete trial's drop from np.interp on its own curve, in a loop."""
    here = pruner._progress(trial, trial.last_step)
    pairs = []
    for t in complete:
        curve = pruner._curve(t)
        if curve is not None and curve[0][0] <= here + 1e-12:
            pairs.append((t, math.log(t.value) - float(np.interp(here, *curve))))
    if len(pairs) < max(2, pruner._n_startup_trials):
        return None
    d = np.array([drop for _, drop in pairs])
    mid = float(np.median(d))
    x = [pruner._feature(t) for t, _ in pairs]
    x0 = pruner._feature(trial)
    if x0 is not None and len(pairs) >= FIT_MIN_CURVES and None not in x and max(x) > min(x):
        design = np.column_stack([np.ones(len(x)), x])
        coef = np.linalg.lstsq(design, d, rcond=None)[0]
        mid = float(coef[0] + coef[1] * x0)
        d = mid + (d - design @ coef) * beyond(x, x0)
    wide = pruner._margin * float(d.max() - d.min())
    loss = math.log(trial.intermediate_values[trial.last_step])
    return (math.exp(loss + mid), math.exp(loss + float(d.min()) - wide),
            math.exp(loss + float(d.max()) + wide), len(pairs))


@pytest.mark.parametrize("seed", range(6))
def test_curves_read_side_by_side_predict_exactly_what_one_at_a_time_did(seed):
    """The prediction reads every complete curve at once (search.pruners._Curves); it must give
    the very numbers of the loop it replaced, on curves of every shape the loop met: of
    different lengths, starting after the running trial's point (left out), with the point on
    an evaluation, past the last one, with repeated progress, and trials without an lr."""
    rng = np.random.default_rng(seed)
    lr = optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)
    grid = [BUDGET * k // 20 for k in range(1, 21)]

    def trial(number: int, state: TrialState, upto: int):
        steps = sorted(rng.choice(grid, size=int(rng.integers(1, len(grid))), replace=False))
        if rng.random() < 0.2:
            steps = [s for s in steps if s > BUDGET // 2] or steps  # starts late
        values = {int(s): float(2 + rng.random() + 2 * (1 - s / BUDGET)) for s in steps
                  if s <= upto}
        params = {} if rng.random() < 0.1 else {"lr": float(10 ** rng.uniform(-4, -2))}
        t = optuna.trial.create_trial(
            state=state, value=float(2 + rng.random()) if state == TrialState.COMPLETE else None,
            params=params, distributions={"lr": lr} if params else {},
            intermediate_values=values or {BUDGET: 2.5})
        t._trial_id, t.number = number, number
        return t

    complete = [trial(i, TrialState.COMPLETE, BUDGET) for i in range(int(rng.integers(3, 60)))]
    def flat(t, tokens: int) -> float:
        """Repeated progress: every 7th trial's stands still over the second half."""
        return (min(tokens, BUDGET // 2) if t.number % 7 == 0 else tokens) / BUDGET

    for margin in (0.0, 1.5):
        for progress in (None, flat):
            pruner = PredictedFinalPruner(BUDGET, progress, n_startup_trials=2, margin=margin,
                                          interval="range")
            checked = 0
            for k in range(40):
                running = trial(1000 + k, TrialState.RUNNING, int(rng.choice(grid)))
                if running.last_step is None:
                    continue
                new = pruner.predict(running, complete)
                old = _predict_one_curve_at_a_time(pruner, running, complete)
                if old is None:
                    assert new is None
                    continue
                assert (new.final, new.low, new.high, new.n_curves) == old
                checked += 1
            assert checked > 0


@pytest.mark.parametrize("condition_on", ["lr", None])
def test_the_t_interval_is_the_textbook_prediction_interval_of_the_drops(condition_on):
    """interval t: the prediction is the least-squares line of the complete trials' drops on
    log lr at the trial's lr (or their mean, unconditioned), its interval that line's prediction
    interval, t quantile at ``confidence`` x residual deviation x sqrt(1 + leverage), computed
    here as a statistics text does, with scipy's t distribution and numpy's polyfit."""
    from scipy import stats

    lr = optuna.distributions.FloatDistribution(1e-5, 1.0, log=True)
    rng = np.random.default_rng(0)
    complete, drops, xs = [], [], []
    for k in range(7):
        c = 0.3 + 0.05 * k + float(rng.normal(0, 0.03))
        x = math.log(1e-3 * 2**k)
        t = optuna.trial.create_trial(
            params={"lr": math.exp(x)}, distributions={"lr": lr}, value=2.0,
            intermediate_values={s: 2.0 * math.exp(c * (1 - s / BUDGET)) for s in STEPS})
        t._trial_id, t.number = k, k
        complete.append(t)
        drops.append(-c * (1 - 300 / BUDGET))  # log final - log loss at 300 tokens
        xs.append(x)
    running = optuna.trial.create_trial(
        params={"lr": 1e-3 * 2**8.5}, distributions={"lr": lr}, state=TrialState.RUNNING,
        intermediate_values={300: 3.0})
    pruner = PredictedFinalPruner(BUDGET, n_startup_trials=2, confidence=0.9,
                                  condition_on=condition_on, min_spread=0)
    got = pruner.predict(running, complete)

    d, x, x0, n = np.array(drops), np.array(xs), math.log(1e-3 * 2**8.5), len(drops)
    if condition_on:
        slope, icept = np.polyfit(x, d, 1)
        mid, dof = icept + slope * x0, n - 2
        resid = d - (icept + slope * x)
        lev = 1 / n + (x0 - x.mean()) ** 2 / ((x - x.mean()) ** 2).sum()
    else:
        mid, dof, resid, lev = d.mean(), n - 1, d - d.mean(), 1 / n
    half = stats.t.ppf(0.9, dof) * math.sqrt((resid ** 2).sum() / dof) * math.sqrt(1 + lev)
    assert got.n_curves == n
    assert math.log(got.final / 3.0) == pytest.approx(mid, rel=1e-9)
    assert math.log(got.low / 3.0) == pytest.approx(mid - half, rel=1e-9)
    assert math.log(got.high / 3.0) == pytest.approx(mid + half, rel=1e-9)


def test_a_higher_confidence_stops_fewer_trials_later():
    """On the same study, raising ``confidence`` only moves stops later or drops them."""
    rng = np.random.default_rng(3)
    curves = [curve(2.0 + float(rng.random()), 1.5 + float(rng.random())) for _ in range(12)]

    def stops(confidence: float) -> dict[int, int | None]:
        pruner = PredictedFinalPruner(BUDGET, n_startup_trials=2, confidence=confidence)
        study = optuna.create_study(direction="minimize", pruner=pruner)
        out = {}
        for points in curves:
            trial = run(study, points)
            frozen = study.trials[trial.number]
            out[trial.number] = (frozen.last_step if frozen.state == TrialState.PRUNED
                                 else None)
        return out

    low, high = stops(0.6), stops(0.99)
    assert sum(v is not None for v in low.values()) > sum(v is not None for v in high.values())
    for n, at in high.items():
        if at is not None:
            assert low[n] is not None and low[n] <= at


@pytest.mark.parametrize(("interval", "shown", "hidden"), [
    ({"confidence": 0.9, "min_spread": 2}, "interval=t, confidence=0.9", "margin="),
    ({"interval": "range", "margin": 1.0}, "interval=range, margin=1", "confidence="),
    ({"interval": "range", "margin": 1.0}, "interval=range, margin=1", "min_spread="),
])
def test_the_pruner_is_described_with_the_setting_of_its_interval_only(tmp_path, interval,
                                                                      shown, hidden):
    from scaletune.search.manage import describe_pruner

    text = tmp_path / "t.txt"
    text.write_text("x")
    cfg = validate_study(tiny_study(tmp_path, text, pruner={"name": "predicted", **interval}))
    described = describe_pruner(cfg)
    assert described.startswith("predicted: ") and shown in described
    assert hidden not in described
    if "confidence" in interval:
        assert "min_spread=2" in described


@pytest.mark.parametrize(("pruner", "expected"), [
    ({"name": "median"}, "n_warmup_steps=default (25% of a trial)"),
    ({"name": "hyperband"}, "min_resource=default (one evaluation interval)"),
    ({"name": "patient"}, "wrapped=none (prune on patience alone)"),
    ({"name": "patient", "wrapped": {"name": "median"}}, "wrapped=(median: n_startup_trials=4"),
])
def test_a_setting_left_out_is_described_as_what_it_means(tmp_path, pruner, expected):
    from scaletune.search.manage import describe_pruner

    text = tmp_path / "t.txt"
    text.write_text("x")
    assert expected in describe_pruner(validate_study(tiny_study(tmp_path, text, pruner=pruner)))


# Pruned trials teach the sampler (issue 15, item 2): GP and CMA-ES see a pruned trial with a
# predicted final loss as complete at that loss.

def _pruned_region_study(sampler):
    """Four complete trials over x in [0.55, 1] (best at 0.7), and five trials at x <= 0.4 that
    the predicted pruner stopped, predicted to end at 3.0; then one stopped by another pruner."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    dist = {"x": FloatDistribution(0, 1)}
    study = optuna.create_study(sampler=sampler)
    for x, value in [(0.55, 2.0), (0.7, 1.9), (0.85, 1.95), (1.0, 2.1)]:
        study.add_trial(create_trial(params={"x": x}, distributions=dist, value=value))
    for x in (0.0, 0.1, 0.2, 0.3, 0.4):
        study.add_trial(create_trial(params={"x": x}, distributions=dist,
                                     state=TrialState.PRUNED, intermediate_values={100: 4.0},
                                     user_attrs={PREDICTION_ATTRS[0]: 3.0}))
    study.add_trial(create_trial(params={"x": 0.5}, distributions=dist, state=TrialState.PRUNED,
                                 intermediate_values={100: 4.0}))
    return study, dist


def test_gp_learns_from_pruned_trials_and_does_not_propose_where_they_were():
    from scaletune.search.samplers import PredictionsTeachSampler

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    proposed = {}
    for taught in (False, True):
        gp = optuna.samplers.GPSampler(seed=0, n_startup_trials=2)
        study, dist = _pruned_region_study(PredictionsTeachSampler(gp) if taught else gp)
        proposed[taught] = study.ask(dist).params["x"]
    # Optuna's GP sees only the four complete trials and goes where it knows least: x = 0, where
    # a trial was already stopped. Taught the predictions, it searches near the best (0.7).
    assert proposed[False] < 0.45
    assert 0.5 < proposed[True] < 0.9
    # The storage is untouched: the stopped trials are still pruned.
    assert sum(t.state == TrialState.PRUNED for t in study.trials) == 6


def test_gp_does_not_propose_a_diverged_trials_parameters_again():
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    from scaletune.search.samplers import PredictionsTeachSampler

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    dist = {"x": FloatDistribution(0, 1)}
    proposed = {}
    for taught in (False, True):
        gp = optuna.samplers.GPSampler(seed=0, n_startup_trials=2)
        study = optuna.create_study(sampler=PredictionsTeachSampler(gp) if taught else gp)
        for x, value in [(0.55, 2.0), (0.7, 1.9), (0.85, 1.95), (1.0, 2.1)]:
            study.add_trial(create_trial(params={"x": x}, distributions=dist, value=value))
        proposed[taught] = []
        for _ in range(3):  # each proposal diverges, before any evaluation
            trial = study.ask(dist)
            proposed[taught].append(trial.params["x"])
            trial.set_user_attr("prune_reason", "diverged: training loss is nan at step 3")
            study.tell(trial, state=TrialState.PRUNED)
    # Optuna's GP sees nothing new after a diverged trial and proposes the very same point.
    assert len(set(proposed[False])) == 1, proposed
    # Taught (at the worst loss seen), it proposes three different points.
    assert len(set(proposed[True])) == 3, proposed


def test_the_sampler_sees_predicted_trials_complete_and_the_others_pruned():
    from scaletune.search.samplers import _PredictionsAsFinal

    study, _ = _pruned_region_study(None)
    view = _PredictionsAsFinal(study)
    complete = view._get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert [t.value for t in complete] == [2.0, 1.9, 1.95, 2.1] + [3.0] * 5
    pruned = view.get_trials(states=(TrialState.PRUNED,))
    assert [t.params["x"] for t in pruned] == [0.5]  # no prediction: stays pruned
    assert [t.state for t in view.trials].count(TrialState.COMPLETE) == 9
    # A diverged trial is seen at the worst loss the others show (3.0, a prediction).
    study.add_trial(optuna.trial.create_trial(
        params={"x": 0.6}, distributions=study.trials[0].distributions, state=TrialState.PRUNED,
        user_attrs={"prune_reason": "diverged: training loss 9.99 above max_loss 8.3"}))
    assert view.get_trials(states=(TrialState.COMPLETE,))[-1].value == 3.0
    assert view.study_name == study.study_name and view.directions == study.directions
    # With one trial complete, the worst loss seen was the best: a diverged trial looked as
    # good as it. It is seen 5% above the best at least.
    one = optuna.create_study()
    for trial in (study.trials[0], study.trials[-1]):
        one.add_trial(trial)
    seen = _PredictionsAsFinal(one).get_trials(states=(TrialState.COMPLETE,))
    assert [t.value for t in seen] == [2.0, pytest.approx(2.1)]


@pytest.mark.parametrize("name", ["gp", "cmaes"])
def test_a_study_with_gp_or_cmaes_is_taught_by_its_pruned_trials(name):
    from scaletune.search.samplers import (
        PredictionsTeachSampler,
        PriorSampler,
        StartFromTheBestCmaEs,
        _PredictionsAsFinal,
        make_sampler,
    )
    from tests.search.test_space import study_cfg

    kind = {"gp": optuna.samplers.GPSampler, "cmaes": StartFromTheBestCmaEs}[name]
    sampler = make_sampler(study_cfg(sampler={"name": name}), {})
    assert isinstance(sampler, PriorSampler)
    assert isinstance(sampler._base, PredictionsTeachSampler)
    assert type(sampler._base._base) is kind
    bare = make_sampler(study_cfg(seeding="none", sampler={"name": name}), {})
    assert isinstance(bare, PredictionsTeachSampler) and type(bare._base) is kind
    # What the wrapped sampler is handed: a pruned trial with a prediction, as complete at it
    # (test_cmaes_moves_on_trials_that_were_all_pruned_with_predictions: that it moves CMA-ES).
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.PRUNED, params={"x": 0.5},
        distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
        intermediate_values={10_000: 3.0}, user_attrs={PREDICTION_ATTRS[0]: 2.5}))
    seen = _PredictionsAsFinal(study).get_trials(states=(TrialState.COMPLETE,))
    assert [(t.state, t.value) for t in seen] == [(TrialState.COMPLETE, 2.5)]


def test_cmaes_moves_on_trials_that_were_all_pruned_with_predictions():
    from scaletune.search.samplers import PredictionsTeachSampler

    optuna.logging.set_verbosity(optuna.logging.ERROR)

    def objective(trial):
        x, y = trial.suggest_float("x", -5, 5), trial.suggest_float("y", -5, 5)
        trial.set_user_attr(PREDICTION_ATTRS[0], (x - 1) ** 2 + (y + 2) ** 2)
        raise optuna.TrialPruned()

    last = {}
    for taught in (False, True):
        cma = optuna.samplers.CmaEsSampler(seed=0, n_startup_trials=1)
        study = optuna.create_study(sampler=PredictionsTeachSampler(cma) if taught else cma)
        study.optimize(objective, n_trials=60)
        last[taught] = np.mean([t.user_attrs[PREDICTION_ATTRS[0]] for t in study.trials[-10:]])
    # Optuna's CMA-ES never leaves its start-up (no trial completes) and draws at random to the
    # end; taught the predictions, it closes in on the minimum at (1, -2).
    assert last[False] > 5 and last[True] < 1, last


def test_the_plan_says_whether_gp_or_cmaes_sees_pruned_trials():
    from scaletune.search.manage import describe_sampler
    from tests.search.test_space import study_cfg

    said = {(s, p): describe_sampler(study_cfg(sampler={"name": s}, pruner={"name": p},
                                               n_trials=40))
            for s in ("gp", "cmaes", "tpe") for p in ("predicted", "median", "none")}
    for s in ("gp", "cmaes"):
        assert said[(s, "predicted")].endswith(
            "; it sees pruned trials at their predicted final loss, diverged ones at the worst")
        assert said[(s, "median")].endswith(
            "; it sees diverged trials at the worst loss, not pruned ones (the median pruner "
            "predicts no final loss; the predicted pruner does)")
        assert said[(s, "none")].endswith("; it sees diverged trials at the worst loss")
    ignored = describe_sampler(study_cfg(sampler={"name": "gp", "pruned_trials": "ignore"},
                                         pruner={"name": "predicted"}, n_trials=40))
    assert ignored.endswith("; it does not see pruned or diverged trials (pruned_trials: ignore)")
    # Its start-up counts no pruned trial either (it said "pruned ones counted", then that).
    assert "trials have completed (the center among them), then gp" in ignored, ignored
    # TPE ranks pruned trials itself.
    assert not [k for k, v in said.items() if "; it " in v and k[0] == "tpe"]
    # GP and CMA-ES count their start-up in the trials they see as complete: one pruned
    # without a prediction does not end it (the plan said "until n trials have finished").
    for (s, _), line in said.items():
        assert ("trials have completed (pruned ones counted where the sampler sees them at "
                "their prediction)" in line) == (s != "tpe"), line


def test_pruner_options_without_a_name_are_the_default_pruners(tmp_path, shakespeare):
    # `pruner: {n_startup_trials: 3}` was refused for its missing name, where the README calls
    # predicted the default and sampler options need no name.
    cfg = validate_study(tiny_study(tmp_path, shakespeare, pruner={"n_startup_trials": 3}))
    assert cfg.pruner.name == "predicted" and cfg.pruner.n_startup_trials == 3
    assert validate_study(tiny_study(tmp_path, shakespeare, pruner={"name": "median"})
                          ).pruner.name == "median"


def test_cmaes_starts_from_the_best_trial_it_has_seen_not_the_middle_of_the_ranges():
    # It threw the start-up away: its first generation was centred on the ranges' middle (lr
    # 10^-3 here, where the start-up had found 10^-4.5 best), losses 10-100x worse.
    import statistics

    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    from scaletune.search.samplers import StartFromTheBestCmaEs

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    dist = {"lr": FloatDistribution(1e-5, 1e-1, log=True), "w": FloatDistribution(0, 1)}
    study = optuna.create_study(sampler=StartFromTheBestCmaEs(n_startup_trials=4, seed=0))
    for lr, w, value in [(3e-5, 0.1, 1.1), (3e-4, 0.2, 1.3), (1e-3, 0.15, 1.5), (1e-2, 0.1, 2.0)]:
        study.add_trial(create_trial(params={"lr": lr, "w": w}, distributions=dist, value=value))
    drawn = []
    for _ in range(6):
        trial = study.ask(dist)
        drawn.append(math.log10(trial.params["lr"]))
        study.tell(trial, 2.0)
    # Optuna's spread is a sixth of the narrowest range (w's, 1/6; lr's log range is 4): the
    # first generation lies about log10 3e-5 = -4.5, not about -3.
    assert abs(statistics.mean(drawn) + 4.5) < 0.5, drawn


def test_the_audits_other_orders_are_other_than_the_trials_own_and_each_other():
    # Of three trials, 3 of the "10 other orders" were the trials' own, and 5 were distinct.
    three = shuffled(["a", "b", "c"], "tinymed", 10)
    assert len(three) == 5 and len({tuple(o) for o in three}) == 5
    assert ["a", "b", "c"] not in three and all(sorted(o) == ["a", "b", "c"] for o in three)
    # Where there are many, the orders are the first shuffles as before, one by one (the suite's
    # replays read them so).
    many = list(range(12))
    before = []
    for k in range(1, 11):
        order = list(many)
        random.Random(f"task/0/{k}").shuffle(order)
        before.append(order)
    assert shuffled(many, "task/0", 10) == before
