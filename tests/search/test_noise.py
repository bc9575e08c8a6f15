"""The noise between training seeds: repeats of the best trial, what they measure, and the
predicted pruner's floor read from them. Real in-memory Optuna studies; the end-to-end run of
`scaletune run --repeat-best` is in tests/search/test_runner.py."""

from __future__ import annotations

import math
import os
import socket
import statistics
import time
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState

from scaletune.search import lease
from scaletune.search.config import NOISE_FLOOR, validate_study
from scaletune.search.noise import (
    REPEAT_OF,
    TRAIN_SEED,
    measured_floor,
    n_repeats,
    noise_floor,
    queue_repeats,
    seed_groups,
    trials_asked,
)
from scaletune.search.plan import SearchPlan, TrialRun, fail_and_retry
from scaletune.search.pruners import PredictedFinalPruner
from scaletune.search.report import noise_rows, seed_noise
from scaletune.search.space import trial_config
from scaletune.trainer.errors import SetupError
from tests.search.helpers import tiny_study
from tests.search.test_pruners import BUDGET, curve, run

X = optuna.distributions.FloatDistribution(0.0, 1.0)


def tell(study: optuna.Study, x: float, value: float | None, **attrs) -> optuna.trial.FrozenTrial:
    """A trial at ``x``, COMPLETE with ``value`` (PRUNED when None), with user ``attrs``."""
    study.enqueue_trial({"x": x}, user_attrs=attrs)
    trial = study.ask({"x": X})
    if value is None:
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, value)
    return study.trials[trial.number]


def test_repeats_of_the_best_get_its_params_and_seeds_it_has_not_used():
    study = optuna.create_study()
    tell(study, 0.1, 3.0)
    tell(study, 0.2, 2.5)  # the best
    tell(study, 0.3, 2.8)
    first, seeds = queue_repeats(study, 2, study_seed=0)
    assert (first, seeds) == (1, [1, 2])
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [t.user_attrs for t in waiting] == [{REPEAT_OF: 1, TRAIN_SEED: 1},
                                               {REPEAT_OF: 1, TRAIN_SEED: 2}]
    # They are asked first, with the best's params.
    a = study.ask({"x": X})
    assert a.params == {"x": 0.2} and a.user_attrs[TRAIN_SEED] == 1
    study.tell(a, 2.4)  # a repeat that ends best: its config's first trial is still trial 1
    b = study.ask({"x": X})
    study.tell(b, 2.6)
    # Asked again, the best is the repeat; the seeds go on past the ones used.
    assert queue_repeats(study, 1, study_seed=0) == (1, [3])
    assert n_repeats(study.trials) == 3


def test_the_same_command_again_runs_the_repeats_an_earlier_launch_left_waiting():
    # Ctrl-C during `--repeat-best 2` left a repeat waiting (and one stopped, queued again);
    # the same command, run again as the driver advises, queued 2 more: 4 ran.
    study = optuna.create_study()
    tell(study, 0.2, 2.5)
    assert queue_repeats(study, 2, study_seed=0) == (0, [1, 2])
    stopped = study.ask({"x": X})  # seed 1's, stopped by Ctrl-C and queued again
    stopped.set_user_attr("retried", True)
    study.tell(stopped, state=TrialState.FAIL)
    study.enqueue_trial({"x": 0.2}, user_attrs=stopped.user_attrs | {"retried": False},
                        skip_if_exists=False)
    assert queue_repeats(study, 2, study_seed=0) == (0, [2, 1])  # the two waiting, no more
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 2
    assert queue_repeats(study, 3, study_seed=0) == (0, [2, 1, 3])  # one more asked: queued
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 3
    # Fewer asked than wait: all of those run, and are named.
    assert queue_repeats(study, 1, study_seed=0) == (0, [2, 1, 3])


def test_seeds_skip_the_study_seed_and_a_failed_repeat_frees_its_seed():
    study = optuna.create_study()
    tell(study, 0.2, 2.5)
    # The study trains with seed 5; the repeats take 6 and 7.
    assert queue_repeats(study, 2, study_seed=5) == (0, [6, 7])
    failed = study.ask({"x": X})
    failed.set_user_attr("retried", True)  # queued again: its re-run counts, not it
    study.tell(failed, state=TrialState.FAIL)  # seed 6 failed: it may be used again
    assert n_repeats(study.trials) == 1  # the failed one does not count; seed 7's does
    # Seed 7's repeat still waits and counts among two asked for; seed 6 is free again.
    assert queue_repeats(study, 2, study_seed=5) == (0, [7, 6])


def test_a_repeat_that_failed_for_good_counts_as_asked_as_it_counts_as_finished():
    # It counted as finished and not as asked: `--n-trials 10` on 9 searched trials ran none
    # ("11/11 trials finished (10 of the search and 1 repeat)").
    from scaletune.search.plan import n_done

    study = optuna.create_study()
    for i in range(9):
        tell(study, i / 10, 3.0 - i / 100)
    queue_repeats(study, 2)
    study.tell(study.ask({"x": X}), 2.95)
    study.tell(study.ask({"x": X}), state=TrialState.FAIL)  # no retry left: failed for good
    assert n_repeats(study.trials) == 2
    assert (n_done(study.trials), trials_asked(study.trials, 9)) == (11, 11)
    assert trials_asked(study.trials, 10) == 12  # one more trial of the search to run


def test_repeats_run_on_top_of_a_study_that_ran_past_its_n_trials():
    # The study file asks for 6 trials; an earlier launch ran 7 (--n-trials 7), one pruned.
    study = optuna.create_study()
    for i in range(7):
        tell(study, i / 10, 3.0 - i / 100 if i != 3 else None)
    assert trials_asked(study.trials, 6) == 7  # nothing to run: 7 finished
    queue_repeats(study, 2)
    # Rule: both repeats run: 7 + 2, not 6 + 2 (which ran one and left one waiting).
    assert trials_asked(study.trials, 6) == 9
    # A launch that asks for more trials of the search runs those and the repeats.
    assert trials_asked(study.trials, 10) == 12
    for _ in range(2):
        study.tell(study.ask({"x": X}), 2.9)
    # Ran: the next launch finds the study done, and counts the same.
    assert trials_asked(study.trials, 6) == 9 == len(study.trials)


def test_a_study_without_a_complete_trial_cannot_be_repeated():
    study = optuna.create_study(study_name="empty")
    tell(study, 0.2, None)
    with pytest.raises(SetupError, match="'empty' has no complete trial to repeat yet"):
        queue_repeats(study, 2)
    assert len(study.trials) == 1  # nothing queued


def test_groups_and_the_measured_floor():
    study = optuna.create_study()
    tell(study, 0.2, 2.00)
    tell(study, 0.5, 3.00)  # never repeated: no group
    tell(study, 0.2, 2.02, repeat_of=0, train_seed=1)
    tell(study, 0.2, 2.05, repeat_of=0, train_seed=2)
    tell(study, 0.2, None, repeat_of=0, train_seed=3)  # a pruned repeat measures nothing
    groups = seed_groups(study.trials)
    assert len(groups) == 1
    g = groups[0]
    assert (g.trial, g.seeds, g.values) == (0, (0, 1, 2), (2.00, 2.02, 2.05))
    assert g.spread == pytest.approx(0.025)
    mean = statistics.fmean(g.values)
    assert measured_floor(groups) == pytest.approx(2 * statistics.stdev(g.values) / mean)
    # 2 standard deviations of 1.26%: above the default, so the study's own floor is used.
    floor, where = noise_floor(study.trials)
    assert floor == pytest.approx(measured_floor(groups)) and floor > NOISE_FLOOR
    assert "measured on 3 runs of 1 config" in where


def test_the_floor_pools_configs_and_never_goes_below_the_default():
    study = optuna.create_study()
    tell(study, 0.2, 2.000)
    tell(study, 0.2, 2.002, repeat_of=0, train_seed=1)
    tell(study, 0.7, 2.100)
    tell(study, 0.7, 2.104, repeat_of=2, train_seed=1)
    groups = seed_groups(study.trials)
    assert [g.trial for g in groups] == [0, 2]
    # Pooled over both pairs (one degree of freedom each), far below 1%.
    squares = sum(((v - statistics.fmean(g.values)) / statistics.fmean(g.values)) ** 2
                  for g in groups for v in g.values)
    assert measured_floor(groups) == pytest.approx(2 * math.sqrt(squares / 2))
    floor, where = noise_floor(study.trials)
    assert floor == NOISE_FLOOR and "below the default 1%, which is kept" in where
    # Nothing repeated: the default, and it says so.
    assert noise_floor(study.trials[:1])[0] == NOISE_FLOOR
    assert measured_floor([]) is None


def test_the_predicted_pruner_reads_its_floor_from_the_repeats():
    """A trial predicted 3% worse than the best is stopped under a 1% floor, and kept once the
    study's repeats measure a 4% spread between seeds."""

    def pruned(repeats: bool) -> bool:
        # (no least spread: these curves have one shape, and the floor alone decides)
        pruner = PredictedFinalPruner(BUDGET, n_startup_trials=3, noise_floor=None,
                                      leading=0, min_spread=0)
        study = optuna.create_study(pruner=pruner)
        for final in (2.0, 2.3, 2.1):
            run(study, curve(final, 2.0))
        if repeats:  # two more runs of trial 0's config: 2.0, 2.08, 2.04 (spread 4%)
            for final, seed in ((2.08, 1), (2.04, 2)):
                study.enqueue_trial({}, user_attrs={REPEAT_OF: 0, TRAIN_SEED: seed})
                trial = study.ask()  # a repeat runs to the end, as TrialRun lets it
                for step, value in curve(final, 2.0).items():
                    trial.report(value, step)
                study.tell(trial, final)
        number = run(study, curve(2.06, 2.0)).number
        return study.trials[number].state == TrialState.PRUNED

    assert pruned(repeats=False)
    assert not pruned(repeats=True)


def test_a_repeat_is_never_pruned_and_its_retry_keeps_its_seed(tmp_path, shakespeare):
    # The runs come from the study's plan, as the driver gets them: the plan decides which
    # may be pruned.
    cfg = validate_study(tiny_study(tmp_path, shakespeare))
    plan = SearchPlan.build(cfg)
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=1.0))
    at = cfg.eval_interval  # the first evaluation
    ordinary = plan.ask(study, 1)
    assert ordinary.report(at, 5.0) == "prune"
    study.tell(ordinary.trial, state=TrialState.PRUNED)
    best = plan.ask(study, 1)
    study.tell(best.trial, 2.0)
    first, seeds = queue_repeats(study, 1, cfg.seed)
    assert (first, seeds) == (best.trial.number, [cfg.seed + 1])
    repeat = plan.ask(study, 1)
    trial = repeat.trial
    assert repeat.params == best.params and trial.user_attrs[REPEAT_OF] == first
    assert repeat.report(at, 5.0) == "continue"
    assert list(study.trials[trial.number].intermediate_values.values()) == [5.0]  # recorded
    # Its worker died: the re-run is the same repeat, with the same seed.
    assert fail_and_retry(study, trial, "worker died", max_retries=1)
    retry = study.get_trials(states=(TrialState.WAITING,))[0]
    assert retry.user_attrs[REPEAT_OF] == first and retry.user_attrs[TRAIN_SEED] == cfg.seed + 1
    # The seed reaches the trainer's config; other trials train with the study's seed.
    assert repeat.config.seed == cfg.seed + 1
    assert best.config.seed == cfg.seed
    assert trial_config(cfg, {}, {}, 1, seed=4)[0].seed == 4


def test_the_report_shows_each_repeated_config_and_the_floor(tmp_path, shakespeare):
    cfg = validate_study(tiny_study(tmp_path, shakespeare,
                                    pruner={"name": "predicted"}))
    study = optuna.create_study()
    # No trial complete: no best config to re-run (it named --repeat-best, which says so).
    assert noise_rows(seed_noise(study, cfg), "predicted") == [(
        "seed noise", "not measured: no trial completed, so there is no best config to re-run "
                      "with other training seeds")]
    tell(study, 0.2, 2.00)
    rows = noise_rows(seed_noise(study, cfg), "predicted")
    assert rows == [("seed noise", "not measured: `scaletune run STUDY.yaml --repeat-best 2` "
                                   "re-runs the best trial with two other training seeds")]
    # The report names the study file it was asked for: a command to copy as it is.
    noise = {**seed_noise(study, cfg), "measure": "scaletune run my.yaml --repeat-best 2"}
    assert "not measured: `scaletune run my.yaml --repeat-best 2` re-runs" in noise_rows(
        noise, "predicted")[0][1]
    # Of a study whose file changed since it ran, the command is refused as it stands: said so.
    assert noise_rows({**noise, "file_changed": True}, "predicted")[0][1].endswith(
        "seeds, once the study file is again as the study ran (it changed since, and run refuses "
        "a changed file)")
    tell(study, 0.2, 2.05, repeat_of=0, train_seed=1)
    noise = seed_noise(study, cfg)
    assert noise["groups"] == [{"trial": 0, "seeds": [0, 1], "values": [2.0, 2.05],
                                "spread": pytest.approx(0.025), "lost": []}]
    text = "\n".join(v for _, v in noise_rows(noise, "predicted"))
    assert "trial 0, seeds 0, 1: final loss 2.0000, 2.0500, spread 2.50%" in text
    assert f"noise floor {noise['measured_floor']:.2%}" in text
    assert f"the predicted pruner uses {noise['measured_floor']:.2%}" in text
    # A floor the study file fixes is the pruner's, whatever the repeats measure (the report
    # named the measured one, 7.15%, where the pruner stopped trials against 0.2%).
    fixed = cfg.model_copy(update={"pruner": cfg.pruner.model_copy(update={"noise_floor": 0.002})})
    noise = seed_noise(study, fixed)
    assert noise["floor"] == 0.002 and noise["floor_source"].startswith("pruner.noise_floor")
    assert "the predicted pruner uses 0.20%" in "\n".join(v for _, v in noise_rows(noise,
                                                                                "predicted"))
    # Under another pruner it says what the floor means, and that this pruner does not use it.
    median = "\n".join(v for _, v in noise_rows(noise, "median"))
    assert "the predicted pruner uses" not in median
    assert ("trials whose final losses differ by less are not told apart (the median pruner "
            "does not use it; the predicted pruner would)") in median


def test_run_repeat_best_plans_its_repeats_first_or_after_the_search(tmp_path, capsys):
    from scaletune.search.cli import main
    from tests.search.test_export import EVAL, add_trial, make_study, params, study_file

    path, cfg = study_file(tmp_path)
    assert main(["run", str(path), "--repeat-best", "-1"]) == 2
    # An error of the command line, as --n-trials' is (it was said as one in the study file).
    assert ("1 error(s) in the command line:\n  --repeat-best: must be from 0 to 1,000,000 "
            "repeats (got -1)") in capsys.readouterr().err
    # Rule: a count with too many digits is refused at once: 1e20 repeats were taken, and the
    # driver drew their seeds until it ran out of memory (a hang of 14 minutes, 6 GB).
    assert main(["run", str(path), "--repeat-best", "99999999999999999999", "--dry-run"]) == 2
    assert "--repeat-best: must be from 0 to 1,000,000 repeats (got 99,999,999,999,999,999,999)" \
        in capsys.readouterr().err
    assert main(["run", str(path), "--n-trials", "99999999999999999999", "--dry-run"]) == 2
    assert "--n-trials: must be in [1, 1000000] (got 99999999999999999999)" in \
        capsys.readouterr().err
    # No study yet, or none of its trials complete: the repeats come after the search (it was
    # refused, "run it first": a search and its repeats took two launches).
    assert main(["run", str(path), "--repeat-best", "2", "--dry-run"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ("repeats the study's best complete trial, 2 more time(s) with training seeds it has "
            "not used, never pruned, after the search (no trial has completed yet), on top of "
            "n_trials") in out
    # The budget's "at most" counts them (it left them out).
    tokens = (cfg.n_trials + 2) * cfg.tokens_per_trial
    assert (f"budget {cfg.n_trials} trials + 2 repeat(s) x {cfg.tokens_per_trial:,} tokens = "
            f"{tokens:,} tokens") in out
    assert not cfg.folder.exists()
    study = make_study(cfg)
    add_trial(study, cfg, params(1e-3), 2.6, TrialState.PRUNED, trained=2 * EVAL)
    assert main(["run", str(path), "--repeat-best", "2", "--dry-run"]) == 0
    assert "after the search (no trial has completed yet)" in " ".join(
        capsys.readouterr().out.split())
    add_trial(study, cfg, params(1e-3), 2.4)
    assert main(["run", str(path), "--repeat-best", "2", "--dry-run"]) == 0
    assert ("repeats the study's best complete trial, 2 more time(s) with training seeds it has "
            "not used, never pruned, first, on top of n_trials") in " ".join(
        capsys.readouterr().out.split())
    # A study whose search has finished: its repeats are still to run (the storage row said
    # "nothing to run" beside them, and the launch ran them).
    while len(study.trials) < cfg.n_trials:
        add_trial(study, cfg, params(1e-3), 2.5)
    assert main(["run", str(path), "--dry-run"]) == 0
    assert ": nothing to run" in " ".join(capsys.readouterr().out.split())
    assert main(["run", str(path), "--repeat-best", "2", "--dry-run"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "nothing to run" not in out and ": the run resumes it" in out
    # Rule: while a driver runs the study, the plan says so: it said "the run resumes it", and
    # the run was refused.
    now = time.time()  # a live process of this machine (this one's own lease is a leftover)
    study.set_user_attr(lease.ATTR, {"host": socket.gethostname(), "pid": os.getppid(),
                                     "since": now, "heartbeat": now, "token": "theirs"})
    assert main(["run", str(path), "--dry-run"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert (f", which a driver runs now (pid {os.getppid()} on {socket.gethostname()}, running "
            "since") in out and "the run is refused until that driver ends" in out, out
    assert "the run resumes it" not in out


def test_a_study_without_a_pruner_section_prunes_on_the_prediction_with_the_measured_floor(
        tmp_path, shakespeare):
    raw = tiny_study(tmp_path, shakespeare)
    del raw["pruner"]
    cfg = validate_study(raw)
    pruner = cfg.pruner.build(cfg)
    assert isinstance(pruner, PredictedFinalPruner)
    # noise_floor: auto by default: the floor the study's repeats measure (none yet: 1%).
    study = optuna.create_study()
    tell(study, 0.2, 2.00)
    tell(study, 0.2, 2.08, repeat_of=0, train_seed=1)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert pruner.floor(complete) == pytest.approx(measured_floor(seed_groups(complete)))
    assert pruner.floor(complete[:1]) == NOISE_FLOOR


def test_the_trials_finished_say_which_are_repeats():
    from scaletune.search.noise import finished_of

    study = optuna.create_study()
    for x in (0.1, 0.2, 0.3):
        tell(study, x, 2.0 + x)
    trials = study.get_trials(deepcopy=False)
    assert finished_of(trials, 3, 3) == "3/3 trials finished"
    # Rule: "3/3" is not read as a study that asks for 3 where its n_trials is lower now.
    assert finished_of(trials, 3, 2) == (
        "3/3 trials finished (n_trials 2: an earlier launch ran more)")
    tell(study, 0.1, 2.12, repeat_of=0, train_seed=1)
    tell(study, 0.1, 2.08, repeat_of=0, train_seed=2)
    # Rule: "5/5" read as a study that asks for 5, where n_trials is 3.
    assert finished_of(study.get_trials(deepcopy=False), 5, 3) == (
        "5/5 trials finished (3 of the search and 2 repeats of the best with other seeds)")


def test_a_trial_that_fails_without_a_result_counts_its_last_reports_tokens():
    # Stopped by Ctrl-C after reporting at 10,240 tokens (grid point 10,000): trials.csv and the
    # study's compute said it trained 10,000, and 39 steps of 256 tokens, a count it never ran.
    from scaletune.search.summary import tokens_trained

    study = optuna.create_study()
    run = TrialRun(study.ask({"x": X}), {}, SimpleNamespace(tokens=40_192), 10_000, "none")
    assert run.report(10_240, 3.29) == "continue"
    assert run.report(10_240, 3.29) == "continue"  # said again: one point, the same tokens
    run.fail(study, "interrupted (Ctrl-C)", max_retries=2, count_attempt=False)
    stopped = study.trials[0]
    assert stopped.state == TrialState.FAIL and stopped.intermediate_values == {10_000: 3.29}
    assert tokens_trained(stopped) == 10_240
    # A trial that reported nothing trained nothing the driver knows of: no count is made up.
    silent = TrialRun(study.ask({"x": X}), {}, SimpleNamespace(tokens=40_192), 10_000, "none")
    silent.fail(study, "worker died", max_retries=2)
    assert "tokens_seen" not in study.trials[silent.number].user_attrs
    assert tokens_trained(study.trials[silent.number]) == 0
