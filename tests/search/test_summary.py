"""The end of a study's summary: a best trial whose value lies at an end of the range searched is
named, with the key to widen, in `scaletune run`'s summary and in `scaletune report`.

Studies are built through Optuna's public API (tests/search/test_export.py), so no training runs
here.
"""

from __future__ import annotations

import json

import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial
from rich.console import Console

from scaletune.search.cli import main
from scaletune.search.progress import print_run_summary
from scaletune.search.summary import at_edges, widest
from tests.search.test_export import add_trial, make_study, params, study_file


def best(**values):
    """A complete trial with ``values``: name -> (value, distribution)."""
    return create_trial(params={k: v for k, (v, _) in values.items()},
                        distributions={k: d for k, (_, d) in values.items()}, value=2.0)


LR = FloatDistribution(1e-4, 3e-2, log=True)


def test_a_best_lr_at_the_top_of_its_range_is_named_with_the_key_to_widen():
    [note] = at_edges(best(lr=(2.9e-2, LR), warmup_frac=(0.1, FloatDistribution(0.0, 0.2))))
    assert note.startswith("lr = 0.029, the best trial's, is at the top of the range searched "
                           "[0.0001, 0.03]: the optimum may lie above it")
    assert "(search.lr: high)" in note
    assert ("and run the study again for more trials (n_trials, or --n-trials): a widened range "
            "resumes it, its trials kept") in note


def test_a_best_trial_drawn_before_its_range_widened_is_judged_on_the_range_searched_now():
    # Rule: at the top of the range it was drawn from, below the top of the widened one: the
    # note said to widen what was widened already.
    old = best(lr=(2.9e-2, LR))
    later = best(lr=(5e-2, FloatDistribution(1e-4, 0.3, log=True)))
    assert widest([old, later]) == widest([later, old]) == {"lr": later.distributions["lr"]}
    assert at_edges(old) and not at_edges(old, widest([old, later]))
    # The report's figures draw the range searched now, not the first trial's.
    from scaletune.search.report import _distribution

    assert _distribution([old, later], "lr") == later.distributions["lr"]
    # Choices cannot widen: a best batch at the largest of the study's choices is named.
    batch = best(batch_size=(32, CategoricalDistribution([8, 16, 32])))
    [note] = at_edges(batch, widest([batch]))
    assert "in a new study, as the choices of a study cannot change" in note


def test_the_bottom_of_a_range_names_the_form_searched():
    [note] = at_edges(best(tau=(1.05e-3, FloatDistribution(1e-3, 10.0, log=True))))
    assert "is at the bottom of the range searched [0.001, 10]" in note
    assert "may lie below it" in note
    assert "(search.weight_decay (as: tau): low)" in note


def test_tau_at_the_priors_own_top_says_decay_barely_acts_not_to_search_higher():
    [note] = at_edges(best(tau=(817.0, FloatDistribution(16.1, 1e3, log=True))))
    # Rule: 1e3 is the priors' end (no decay in effect): the note says what the best means and
    # does not send the user to search a higher tau; a lower top is an ordinary end.
    assert "where weight decay barely acts" in note and "little or no weight decay" in note
    assert "search a range" not in note
    [note] = at_edges(best(tau=(95.0, FloatDistribution(1.0, 100.0, log=True))))
    assert "(search.weight_decay (as: tau): high)" in note


def test_ends_that_are_the_hyperparameters_own_limits_are_not_named():
    # Dropout and warmup cannot go below 0; a batch cannot be under 1 sequence.
    assert at_edges(best(dropout=(0.0, FloatDistribution(0.0, 0.2)),
                         warmup_frac=(0.0, FloatDistribution(0.0, 0.2)),
                         batch_size=(1, CategoricalDistribution([1, 2, 4])))) == []
    # The other end of the same ranges is not a limit.
    assert len(at_edges(best(dropout=(0.2, FloatDistribution(0.0, 0.2)),
                             batch_size=(4, CategoricalDistribution([1, 2, 4]))))) == 2


@pytest.mark.parametrize("value, expected", [(32, ["largest"]), (8, ["smallest"]), (16, [])])
def test_numeric_choices_name_their_largest_and_smallest(value, expected):
    notes = at_edges(best(batch_size=(value, CategoricalDistribution([8, 16, 32]))))
    assert [w for w in ("largest", "smallest") if any(w in n for n in notes)] == expected
    if notes:
        # Batch sizes are choices however the file gave them: the note names both keys.
        assert f"(search.batch_size: choices or {'high' if value == 32 else 'low'})" in notes[0]


def test_two_choices_words_and_the_middle_of_a_range_are_not_named():
    assert at_edges(best(batch_size=(16, CategoricalDistribution([8, 16])),
                         **{"model.norm": ("rmsnorm", CategoricalDistribution(["layernorm",
                                                                                "rmsnorm"]))},
                         lr=(2e-3, LR))) == []


def test_an_other_fields_own_limit_is_not_named():
    # One head: "the optimum may lie below it; add smaller choices".
    assert at_edges(best(**{"model.n_head": (1, CategoricalDistribution([1, 2, 4]))})) == []
    [note] = at_edges(best(**{"model.n_head": (4, CategoricalDistribution([1, 2, 4]))}))
    assert "is at the largest of the choices 1, 2, 4" in note


def test_a_parameter_searched_under_other_is_named_by_its_dotted_key():
    [note] = at_edges(best(**{"optim.beta2": (0.999, FloatDistribution(0.9, 0.999))}))
    assert note.startswith("optim.beta2 = 0.999, the best trial's, is at the top")
    assert "(search.other.optim.beta2: high)" in note


def test_within_five_percent_of_the_range_is_at_its_end():
    # [1e-4, 3e-2] spans 2.48 decades: 5% of it is 0.124 decades.
    assert at_edges(best(lr=(3e-2 / 10 ** 0.12, LR)))
    assert not at_edges(best(lr=(3e-2 / 10 ** 0.13, LR)))
    assert at_edges(best(n=(10, IntDistribution(1, 10))))


def test_the_run_summary_and_the_report_name_a_best_lr_at_the_top(tmp_path):
    path, cfg = study_file(tmp_path)
    study = make_study(cfg)
    add_trial(study, cfg, params(1e-3), 2.6)
    add_trial(study, cfg, params(3e-2), 2.2)  # the best, at the top of lr's range [1e-4, 3e-2]
    console = Console(record=True, width=400)
    print_run_summary(console, study, cfg, str(path), 10.0)
    printed = console.export_text()
    assert "note: lr = 0.03, the best trial's, is at the top of the range searched" in printed

    out = tmp_path / "report"
    assert main(["report", str(path), "-o", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    [note] = summary["best"]["at_edges"]
    assert note.startswith("lr = 0.03, the best trial's, is at the top")
    assert "at an end" in (out / "index.html").read_text()


def test_a_best_inside_its_ranges_adds_nothing(tmp_path):
    path, cfg = study_file(tmp_path)
    study = make_study(cfg)
    add_trial(study, cfg, params(3e-2), 2.6)
    add_trial(study, cfg, params(2e-3), 2.2)  # the best, inside every range
    console = Console(record=True, width=400)
    print_run_summary(console, study, cfg, str(path), 10.0)
    assert "note:" not in console.export_text()
    out = tmp_path / "report"
    assert main(["report", str(path), "-o", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["best"]["at_edges"] == []


def ended(state, lr, **attrs):
    return create_trial(params={"lr": lr}, distributions={"lr": FloatDistribution(1, 10, log=True)},
                        state=state, user_attrs=attrs)


def test_a_study_that_fixes_a_diverging_lr_is_told_to_lower_it(tmp_path):
    # It was told to "search lower ones" of an lr it did not search.
    path, cfg = study_file(tmp_path)
    study = make_study(cfg)
    study.add_trial(create_trial(params={}, distributions={}, state=TrialState.PRUNED,
                                 user_attrs={"prune_reason": "diverged: training loss 9 above "
                                                             "max_loss 3"}))
    console = Console(record=True, width=400)
    print_run_summary(console, study, cfg, str(path), 10.0)
    assert ("the learning rate the study fixes is likely too high for this model: give a lower "
            "one (search.lr) in a new study") in console.export_text()


def test_a_study_none_of_whose_trials_completed_says_why_and_offers_no_export(tmp_path):
    path, cfg = study_file(tmp_path)
    study = make_study(cfg)
    for lr in (5.0, 9.26):
        study.add_trial(ended(TrialState.PRUNED, lr, prune_reason="diverged: training loss "
                                                                  "5.509 above max_loss 3"))
    console = Console(record=True, width=400)
    print_run_summary(console, study, cfg, str(path), 10.0)
    printed = console.export_text()
    assert ("no trial completed (none trained its whole budget)\nnote: every trial diverged (its loss rose above "
            "trainer.max_loss); the learning rates tried (5 to 9.26) are likely too high for this "
            "model: search lower ones (search.lr) in a new study") in printed
    # There is nothing to export: the next commands leave it out.
    assert f"scaletune report {path}" in printed and "scaletune export" not in printed
    # What the diverged trials left untrained is not pruning's saving (it read 100%).
    assert ("pruning saved 0 tokens (0%) in 0 pruned trials; the tokens 2 diverged trials did "
            "not train are not counted as saved") in printed
    # The trials row says so too (it read "2 pruned", then "in 0 pruned trials").
    assert "trials   2 diverged" in printed
    # And the live view's tally (it read "done 0  pruned 2"), which `scaletune jobs` reads back.
    from scaletune.search.jobs import TALLY
    from scaletune.search.progress import StudyProgress

    head = StudyProgress(Console(), cfg, study).headline()
    assert "done 0  pruned 0  failed 0  diverged 2  running 0" in head
    assert TALLY.findall(head) == [head]  # the whole line, as `scaletune jobs` reads it back
    # A trial the pruner stopped by comparison: no such note (a first trial completes the next).
    study.add_trial(ended(TrialState.PRUNED, 1.0, prune_reason="median pruner at 16,384 tokens",
                          tokens_seen=cfg.tokens_per_trial // 4))
    console = Console(record=True, width=400)
    print_run_summary(console, study, cfg, str(path), 10.0)
    printed = console.export_text()
    assert "note:" not in printed
    saved = cfg.tokens_per_trial - cfg.tokens_per_trial // 4
    assert (f"pruning saved {saved:,} tokens (75%) in 1 pruned trial; the tokens 2 diverged "
            "trials did not train are not counted as saved") in printed
    assert "trials   1 pruned, 2 diverged" in printed
    # A failure queued again, said alike by run's summary and the report's.
    from scaletune.search.report import summary_rows
    from scaletune.search.summary import summarize

    study.add_trial(ended(TrialState.FAIL, 1.0, retried=True))
    console = Console(record=True, width=400)
    print_run_summary(console, study, cfg, str(path), 10.0)
    said = "1 pruned, 2 diverged, 1 interrupted and queued again"
    assert f"trials   {said}" in console.export_text()
    assert ("trials", said) in summary_rows(summarize(study, cfg))
    # Once its re-run has run, it is not said queued again (it read as a trial still to run).
    study.add_trial(ended(TrialState.PRUNED, 1.0, retry_of=study.trials[-1].number))
    console = Console(record=True, width=400)
    print_run_summary(console, study, cfg, str(path), 10.0)
    said = "2 pruned, 2 diverged, 1 interrupted and run again"
    assert f"trials   {said}" in console.export_text()
    assert ("trials", said) in summary_rows(summarize(study, cfg))


def test_a_study_whose_trials_all_failed_points_to_their_reasons(tmp_path):
    path, cfg = study_file(tmp_path)
    study = make_study(cfg)
    study.add_trial(ended(TrialState.FAIL, 2.0, fail_reason="worker died"))
    study.add_trial(ended(TrialState.FAIL, 2.0, fail_reason="the driver stopped while this "
                                                            "trial ran", retried=True))
    console = Console(record=True, width=400)
    print_run_summary(console, study, cfg, str(path), 10.0)
    assert "note: every trial failed: `scaletune show` gives each reason" in console.export_text()


def test_a_trial_stopped_with_its_driver_counts_in_the_time_as_in_the_compute(tmp_path):
    import datetime

    from scaletune.search.summary import summarize

    path, cfg = study_file(tmp_path)
    study = make_study(cfg)
    add_trial(study, cfg, params(2e-3), 2.2)
    done = summarize(study, cfg)["compute"]
    start = datetime.datetime(2026, 12, 4, 8, 0, 0)
    # Stopped with its driver: no wall_time_s (its worker never reported one), its tokens read
    # from its last evaluation; 6.5 s from its start to its end.
    study.add_trial(FrozenTrial(
        number=0, trial_id=0, state=TrialState.FAIL, value=None, params={"lr": 3e-3},
        distributions={"lr": LR}, intermediate_values={8_192: 3.0},
        user_attrs={"retried": True}, system_attrs={}, datetime_start=start,
        datetime_complete=start + datetime.timedelta(seconds=6.5)))
    after = summarize(study, cfg)["compute"]
    # Rule: its tokens were in the compute and its seconds were not.
    assert after["tokens_trained"] == done["tokens_trained"] + 8_192
    assert after["trial_wall_time_s"] == pytest.approx(done["trial_wall_time_s"] + 6.5)
    # Its evaluation at the grid's 20,000 was made at the first whole step past it: 313 steps
    # of 64 tokens, 20,032 (it counted 20,000, where a Ctrl-C'd trial's worker says 20,032).
    from scaletune.search.summary import tokens_trained

    left = FrozenTrial(
        number=1, trial_id=1, state=TrialState.FAIL, value=None, params={},
        distributions={}, intermediate_values={10_000: 3.1, 20_000: 3.0},
        user_attrs={"retried": True, "tokens_per_step": 64}, system_attrs={},
        datetime_start=start, datetime_complete=start)
    assert tokens_trained(left) == 20_032


def test_the_next_commands_paste_whole_from_a_narrow_terminal(tmp_path):
    # On an 80-column terminal rich broke each command with real newlines ("scaletune
    # dashboard" alone on its line, the path on the next): pasting ran it without its study.
    import io

    path, cfg = study_file(tmp_path)
    study = make_study(cfg)
    add_trial(study, cfg, params(2e-3), 2.2)
    out = io.StringIO()
    print_run_summary(Console(file=out, force_terminal=True, width=80, color_system=None),
                      study, cfg, str(path), 10.0)
    assert len(str(path)) > 40  # a command longer than the terminal is wide
    assert f"scaletune dashboard {path}\n" in out.getvalue()
    assert f"scaletune report {path} -o {cfg.folder / 'report'}\n" in out.getvalue()


def test_a_study_built_in_python_is_followed_by_python_calls_not_commands_on_a_file(tmp_path):
    # A config built from a dict has no file: the summary named one called "study"
    # (`scaletune report study`, which says "no such study file"), and so did the error of a
    # study that had not run.
    from scaletune.search import open_study
    from scaletune.search.config import validate_study
    from scaletune.trainer.errors import ConfigError

    path, on_file = study_file(tmp_path)
    cfg = validate_study(yaml.safe_load(path.read_text()))
    with pytest.raises(ConfigError) as e:
        open_study(cfg)
    assert "run it first: run_study(cfg)" in str(e.value)
    assert "scaletune run" not in str(e.value)
    study = make_study(cfg)
    add_trial(study, cfg, params(2e-3), 2.2)
    console = Console(record=True, width=400)
    print_run_summary(console, study, cfg, cfg.source, 10.0)
    printed = console.export_text()
    assert "scaletune report" not in printed and "scaletune export" not in printed
    assert (f"make_report(cfg, '{cfg.folder / 'report'}')   # in Python: the study was built in "
            "Python, with no study file") in printed
    assert "export_study(cfg, 'final.yaml', tokens=409_600)" in printed
    assert f"scaletune dashboard --storage {cfg.storage_url}" in printed
    # The same study read from its file: the commands name the file.
    console = Console(record=True, width=400)
    print_run_summary(console, study, on_file, str(path), 10.0)
    assert f"scaletune report {path} -o" in console.export_text()


def test_the_study_time_of_a_study_run_in_two_launches_leaves_out_the_time_between(tmp_path):
    from datetime import datetime, timedelta

    from scaletune.search.report import summary_rows
    from scaletune.search.summary import busy_seconds, summarize
    from tests.search.test_export import DISTRIBUTIONS

    _, cfg = study_file(tmp_path)
    study = make_study(cfg)
    t0 = datetime(2026, 12, 1, 9, 0, 0)
    spans = [(0, 60), (30, 90), (120, 150),  # a launch: two trials at once, then one
             (86_400, 86_460)]  # the next day, a launch of one trial
    for i, (a, b) in enumerate(spans):
        trial = create_trial(params=params(1e-3), distributions=DISTRIBUTIONS, value=3.0 - i,
                             intermediate_values={40_960: 3.0 - i})
        trial.datetime_start, trial.datetime_complete = (t0 + timedelta(seconds=a),
                                                         t0 + timedelta(seconds=b))
        study.add_trial(trial)
    assert busy_seconds(study.trials) == 90 + 30 + 60
    summary = summarize(study, cfg)
    assert summary["compute"]["study_busy_time_s"] == 180
    rows = dict(summary_rows(summary))
    # Rule: it said "86460.0 s, first start to last end", a day of nothing counted as the study's.
    assert rows["study time"] == ("24 h 1 min, first start to last end; 3 min 0 s of it with a "
                                  "trial running (the time with none, as between launches, left "
                                  "out)")
    # One launch's gaps between trials, milliseconds: "9 s ... 9 s of it" was said with them.
    summary["compute"].update(study_wall_time_s=9.16, study_busy_time_s=9.06)
    assert dict(summary_rows(summary))["study time"] == "9 s, first start to last end"


def test_importances_see_every_trial_of_a_widened_study_in_its_range_now(tmp_path):
    import logging
    import warnings

    import optuna

    from scaletune.search.report import plot_importances, searched_now
    from tests.search.test_export import DISTRIBUTIONS

    _, cfg = study_file(tmp_path)
    study = make_study(cfg)
    wide = {**DISTRIBUTIONS, "lr": FloatDistribution(1e-5, 0.1, log=True)}
    for i, lr in enumerate([1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2]):
        study.add_trial(create_trial(params=params(lr, warmup_frac=0.03 * i),
                                     distributions=wide if lr > 3e-2 else DISTRIBUTIONS,
                                     value=3.0 - 0.1 * i))
    lines: list[str] = []  # Optuna's lines at the INFO verbosity a Python caller has
    heard = logging.Handler()
    heard.emit = lambda record: lines.append(record.getMessage())
    logging.getLogger("optuna").addHandler(heard)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        seen = searched_now(study)
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
    finally:
        optuna.logging.set_verbosity(verbosity)
        logging.getLogger("optuna").removeHandler(heard)
    # make_report, called from Python, printed "A new study created in memory with name: ...".
    assert lines == []
    # Rule: PED-ANOVA took each range of lr for a regime of its own and left out the one of a
    # single trial (the widened range's), with a warning on every report.
    assert {t.distributions["lr"] for t in seen.trials} == {wide["lr"]}
    assert [t.params for t in seen.trials] == [t.params for t in study.trials]
    unwidened = optuna.create_study()
    unwidened.add_trial(create_trial(params=params(1e-3), distributions=DISTRIBUTIONS, value=3.0))
    assert searched_now(unwidened) is unwidened
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        optuna.importance.get_param_importances(
            seen, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    assert not [w for w in caught if "Some regimes" in str(w.message)]
    # The report's figure is of every trial: what the widened view gives, not the study as
    # stored (one regime of lr left out).
    from scaletune.search.report import importance_evaluator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seen_all, stored = (optuna.importance.get_param_importances(
            s, evaluator=importance_evaluator()) for s in (seen, study))
    assert seen_all != stored
    drawn = plot_importances(study, tmp_path, [])
    bars = dict(zip(drawn.html.data[0].y, drawn.html.data[0].x, strict=True))
    assert bars == pytest.approx(seen_all)

