"""`scaletune report`: trials table, plots and the compute a study spent and pruning saved.

Studies are built through Optuna's public API with the attrs the runner records (see
tests/search/test_export.py), so no training runs here.
"""

from __future__ import annotations

import html
import json
import math
import re
import warnings
from html.parser import HTMLParser
from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from scaletune.heuristics.fit import ScalePoint, fit_studies
from scaletune.search import hparams, report
from scaletune.search.cli import main
from scaletune.search.report import (
    FIGURES,
    STATE_COLOURS,
    importance_caution,
    make_report,
    plot_curves,
    plot_history,
    plot_importances,
    plot_lr_tau,
    plot_priors,
    prior_rows,
    summarize,
    write_index,
)
from scaletune.search.storage import mask_url
from scaletune.trainer.record import code_revision
from tests.search.test_export import (
    DISTRIBUTIONS,
    EVAL,
    add_trial,
    make_study,
    params,
    study_file,
)

PNGS = ("history", "importances", "lr_tau", "curves", "priors")


@pytest.fixture
def mixed(tmp_path):
    """Three complete trials, one pruned after 2 evaluations, one failed after 1."""
    path, cfg = study_file(tmp_path)
    study = make_study(cfg)
    add_trial(study, cfg, params(1e-3, tau=0.3, batch_size=8), 2.6)
    add_trial(study, cfg, params(4e-3, tau=0.8), 2.2)
    add_trial(study, cfg, params(2e-2, tau=0.1, batch_size=8), 2.9)
    add_trial(study, cfg, params(9e-3, tau=3.0), 3.5, TrialState.PRUNED, trained=2 * EVAL)
    add_trial(study, cfg, params(3e-2, tau=0.02), 4.0, TrialState.FAIL, trained=EVAL)
    return path, cfg, study


def test_trials_csv_names_the_code_that_trained_each_trial(tmp_path):
    # A study resumed after an upgrade: its table mixed both codes' trials without a word.
    path, cfg = study_file(tmp_path)
    study = make_study(cfg)
    add_trial(study, cfg, params(1e-3, tau=0.3), 2.6, code="0123abcd")
    add_trial(study, cfg, params(4e-3, tau=0.8), 2.2)
    add_trial(study, cfg, params(2e-2, tau=0.1), 2.9, code=None)  # from before trials said
    frame = report.trials_frame(study, cfg)
    assert list(frame["code"][:2]) == ["0123abcd", code_revision()]
    assert pd.isna(frame["code"][2])


def test_trials_csv_counts_a_diverged_trial_apart_as_the_summary_does(mixed):
    # Its untrained rest was counted as tokens pruning saved, beside a summary that counts none.
    _, cfg, study = mixed
    add_trial(study, cfg, params(2e-2, tau=3.0), 9.0, TrialState.PRUNED, trained=EVAL,
              prune_reason="diverged: non-finite training loss at step 3")
    frame = report.trials_frame(study, cfg)
    assert list(frame["diverged"]) == [False, False, False, False, False, True]
    assert frame.loc[3, "tokens_not_trained"] == cfg.tokens_per_trial - 2 * EVAL  # pruned
    assert frame.loc[5, "tokens_not_trained"] == 0
    assert frame.loc[5, "state"] == "PRUNED"  # Optuna's state, as stored


def test_report_writes_every_file(mixed, tmp_path, capsys):
    path, cfg, study = mixed
    out = tmp_path / "report"

    assert main(["report", str(path), "-o", str(out)]) == 0

    # Rule: one CSV row per trial, with state, value, sampled and derived params, compute, reasons.
    frame = pd.read_csv(out / "trials.csv")
    assert len(frame) == len(study.trials) == 5
    assert list(frame["state"]) == ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED", "FAIL"]
    for column in ("value", "param_lr", "param_tau", "param_batch_size", "param_warmup_frac",
                   "derived_weight_decay", "steps_planned", "tokens_trained", "wall_time_s",
                   "flops_6nd", "prune_reason", "fail_reason"):
        assert column in frame.columns, column
    assert frame.loc[1, "param_lr"] == pytest.approx(4e-3)
    assert frame.loc[3, "tokens_trained"] == 2 * EVAL
    assert frame.loc[3, "tokens_not_trained"] == cfg.tokens_per_trial - 2 * EVAL
    assert frame.loc[3, "steps_planned"] == cfg.tokens_per_trial // (16 * cfg.model.block_size)
    assert frame.loc[3, "prune_reason"].startswith("median")
    assert frame.loc[4, "fail_reason"] == "RuntimeError: boom"
    # Rule: every plot is a PNG that decodes to a readable size, and an HTML page with plotly.
    for name in PNGS:
        image = matplotlib.image.imread(out / f"{name}.png")
        height, width = image.shape[:2]
        assert width >= 600 and height >= 250, (name, image.shape)
        html = (out / f"{name}.html").read_text()
        assert "Plotly.newPlot" in html and 'src="plotly.min.js"' in html, name
    assert (out / "plotly.min.js").stat().st_size > 100_000
    # Rule: summary.json names the best trial and lists what was written.
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best"]["number"] == 1 and summary["best"]["value"] == pytest.approx(2.2)
    assert summary["trials"] == {"COMPLETE": 3, "PRUNED": 1, "FAIL": 1}
    assert set(summary["files"]) == {"trials.csv"} | {f"{n}.{e}" for n in PNGS
                                                       for e in ("png", "html")}
    # Rule: nothing was skipped; the one note is that 3 complete trials make rough importances.
    assert summary["notes"] == [importance_caution(3)]
    # Rule: the summary is printed too.
    printed = capsys.readouterr().out
    assert "trial 1: val loss 2.2000" in printed and "pruning saved" in printed
    # It counts every file it wrote (summary.json, index.html and plotly.min.js were left out).
    assert f"wrote {len(list(out.iterdir()))} files to {out}" in printed
    # A best loss about what token frequencies alone score: the console and index.html say so
    # beside the best, once; summary.json's notes had it nowhere.
    study.set_user_attr("unigram_loss", 2.25)
    assert main(["report", str(path), "-o", str(out)]) == 0
    notes = json.loads((out / "summary.json").read_text())["notes"]
    assert notes[0].startswith("the best loss is 2.200, only 2.2% below the 2.250") and notes[
        1:] == [importance_caution(3)], notes
    assert capsys.readouterr().out.count("only 2.2% below the 2.250") == 1
    assert (out / "index.html").read_text().count("only 2.2% below the 2.250") == 1


def test_counts_some_trials_leave_empty_stay_whole_numbers_in_the_csv(mixed, tmp_path):
    path, cfg, study = mixed
    # The failed trial 4 queued again, as the runner queues it: its re-run records the attempt.
    study.enqueue_trial(study.trials[4].params, user_attrs={"retry_of": 4, "attempt": 2})
    add_trial(study, cfg, study.trials[4].params, 3.1)
    assert main(["report", str(path), "-o", str(tmp_path / "report")]) == 0
    text = pd.read_csv(tmp_path / "report" / "trials.csv", dtype=str, keep_default_na=False)
    rerun = text[text["number"] == "5"].iloc[0]
    # Rule: "trial 4", not "4.0", where the other trials leave the column empty.
    assert (rerun["retry_of"], rerun["attempt"]) == ("4", "2")
    assert text.iloc[0]["retry_of"] == ""
    assert "." not in rerun["steps_planned"] and "." in rerun["value"]
    # A batch size, drawn from choices of integers, that the waiting trial (the enqueued one)
    # leaves empty: "8", not "8.0"; lr stays a float.
    assert list(text["state"])[-1] == "WAITING"
    assert list(text["param_batch_size"]) == ["8", "16", "8", "16", "16", "16", ""]
    assert "." in text.iloc[0]["param_lr"]


def test_compute_spent_and_saved_by_pruning(mixed):
    _, cfg, study = mixed
    summary = summarize(study, cfg)
    n = 12 * cfg.model.n_layer * cfg.model.n_embd**2  # 12 * 1 * 32^2 = 12,288
    full = cfg.tokens_per_trial  # 40,960 tokens: every trial's steps x tokens per step
    # Rule: spent = what every trial trained; a pruned trial counts what it trained (2 evals),
    # the failed one what it trained before it failed (1 eval).
    spent = 3 * full + 2 * EVAL + EVAL
    assert summary["compute"]["tokens_trained"] == spent
    assert summary["compute"]["flops_6nd"] == pytest.approx(6 * n * spent)
    assert summary["compute"]["by_state"]["PRUNED"]["tokens"] == 2 * EVAL
    # Rule: saved = the budget the pruned trial did not train; failures save nothing.
    saved = full - 2 * EVAL
    assert summary["pruning"]["pruned_trials"] == 1
    assert summary["pruning"]["tokens_saved"] == saved == 24_576
    assert summary["pruning"]["flops_saved"] == pytest.approx(6 * n * saved)
    assert summary["pruning"]["fraction_saved"] == pytest.approx(saved / (spent + saved))


def test_pruned_budget_is_steps_times_tokens_per_step(tmp_path):
    # 40,960 tokens at 48 x 32 = 1,536 tokens per step: 27 steps, the last one overshoots.
    path, cfg = study_file(tmp_path, search={
        "lr": {"low": 1e-4, "high": 3e-2, "log": True}, "weight_decay": {"value": 0.1,
                                                                       "as": "lambda"},
        "dropout": {"value": 0.0}, "warmup_frac": {"value": 0.1}, "batch_size": {"value": 48},
    })
    study = make_study(cfg)
    study.enqueue_trial({"lr": 1e-3})
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 3e-2, log=True)
    trial.set_user_attr("tokens_per_step", 1_536)
    trial.report(3.0, EVAL)
    # As the runner leaves a pruned trial: steps and tokens_seen are what it trained.
    trial.set_user_attr("steps", 6)
    trial.set_user_attr("tokens_seen", 6 * 1_536)
    study.tell(trial, state=TrialState.PRUNED)
    summary = summarize(study, cfg)
    # Rule: the full budget is 27 x 1,536 = 41,472 tokens, not tokens_per_trial (40,960) and
    # not the steps it trained.
    assert summary["pruning"]["tokens_saved"] == 27 * 1_536 - 6 * 1_536


def test_one_complete_trial_skips_importances_with_a_note(tmp_path):
    path, cfg = study_file(tmp_path)
    study = make_study(cfg)
    add_trial(study, cfg, params(4e-3), 2.2)
    add_trial(study, cfg, params(9e-3), 3.5, TrialState.PRUNED, trained=EVAL)
    out = tmp_path / "report"
    summary = make_report(cfg, out, source=str(path))
    # Rule: importances need two complete trials: skipped, with the reason in the notes.
    assert not (out / "importances.png").exists() and not (out / "importances.html").exists()
    assert any(note.startswith("importances skipped") for note in summary["notes"])
    # Rule: the other plots are still written.
    for name in ("history", "lr_tau", "curves", "priors"):
        assert (out / f"{name}.png").stat().st_size > 10_000, name


def test_the_python_functions_name_the_study_file_by_default(mixed, tmp_path):
    # make_report, open_study and export_study asked for the file's name beside its config.
    from scaletune.search import export_study, open_study

    path, cfg, _ = mixed
    summary = make_report(cfg, tmp_path / "report")
    assert summary["seed_noise"]["measure"] == f"scaletune run {path} --repeat-best 2"
    study, _, _ = open_study(cfg)
    assert study.study_name == cfg.name
    assert export_study(cfg, tmp_path / "final.yaml", tokens=100_000) is not None
    assert (tmp_path / "final.yaml").is_file()
    # By its name, with no file: the commands named the name as a file, which run refuses.
    from scaletune.search.studies import study_by_name
    from scaletune.trainer.config import load_train_config

    by_name = study_by_name(cfg.name, cfg.storage_url)
    summary = make_report(by_name, tmp_path / "by_name", source=cfg.name)
    assert summary["seed_noise"]["measure"] == "scaletune run STUDY.yaml --repeat-best 2"
    export_study(by_name, tmp_path / "named.yaml", tokens=100_000, source=cfg.name)
    assert load_train_config(tmp_path / "named.yaml").provenance["study_file"] is None


def test_a_report_into_a_folder_of_an_earlier_one_leaves_none_of_its_figures(mixed, tmp_path):
    # The importances of the earlier report (another study's, or this one's before) stayed
    # beside the new index.html, which did not show them.
    _, cfg, _ = mixed
    out = tmp_path / "report"
    make_report(cfg, out, source="mixed.yaml")
    assert (out / "importances.png").is_file() and (out / "importances.html").is_file()
    (out / "mine.png").write_bytes(b"the user's own")
    (tmp_path / "one").mkdir()
    path, one = study_file(tmp_path / "one")
    study = make_study(one)
    add_trial(study, one, params(4e-3), 2.2)
    summary = make_report(one, out, source=str(path))
    assert not (out / "importances.png").exists() and not (out / "importances.html").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*summary["files"], "summary.json", "index.html", "plotly.min.js", "mine.png"])


def test_a_report_cut_short_leaves_the_earlier_files_whole_and_the_next_mends_plotly(
        mixed, tmp_path, monkeypatch):
    # A full disk: the report ended with a clear error, but left a PNG cut short in place of the
    # earlier report's, and a plotly.min.js cut short that plotly never wrote again (it writes
    # one only where none is), so every interactive figure of later reports there was broken.
    from matplotlib.figure import Figure
    from plotly.offline import get_plotlyjs

    _, cfg, _ = mixed
    out = tmp_path / "report"
    make_report(cfg, out, source="mixed.yaml")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    savefig = Figure.savefig

    def disk_full(self, fname, *args, **kwargs):
        savefig(self, fname, *args, **kwargs)
        with open(fname, "r+b") as f:  # what a full disk leaves: the start of the file
            f.truncate(100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", disk_full)
    with pytest.raises(OSError):
        make_report(cfg, out, source="mixed.yaml")
    monkeypatch.setattr(Figure, "savefig", savefig)
    now = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {name: now[name] for name in before if name.endswith(".png")} == {
        name: data for name, data in before.items() if name.endswith(".png")}
    assert not [name for name in now if name.endswith(".partial")]  # nothing half written left
    (out / "plotly.min.js").write_bytes(before["plotly.min.js"][:1000])  # cut short
    make_report(cfg, out, source="mixed.yaml")
    assert (out / "plotly.min.js").read_bytes() == get_plotlyjs().encode("utf-8")


def test_a_report_into_a_folder_of_other_files_says_which_it_replaced(mixed, tmp_path):
    _, cfg, _ = mixed
    out = tmp_path / "mixed-folder"
    out.mkdir()
    (out / "index.html").write_text("the user's page")
    (out / "notes.txt").write_text("the user's notes")
    summary = make_report(cfg, out, source="mixed.yaml")
    # Rule: a file of the user's that the report writes over is named (it was replaced unsaid,
    # where export says when it replaces a file); the others stay.
    assert f"replaced 1 file(s) of {out} that no earlier report wrote there: index.html" \
        in summary["notes"]
    assert (out / "notes.txt").read_text() == "the user's notes"
    # Its own files, on the next report, are no one else's.
    again = make_report(cfg, out, source="mixed.yaml")
    assert not [n for n in again["notes"] if n.startswith("replaced")]


def test_weight_decay_searched_as_lambda_is_plotted_against_lr(tmp_path):
    path, cfg = study_file(tmp_path, search={
        "lr": {"low": 1e-4, "high": 3e-2, "log": True},
        "weight_decay": {"low": 1e-3, "high": 1.0, "as": "lambda"},
        "dropout": {"value": 0.0}, "warmup_frac": {"value": 0.1}, "batch_size": {"value": 16},
    })
    study = make_study(cfg)
    for lr, wd, value in ((1e-3, 0.01, 2.5), (5e-3, 0.1, 2.3), (1e-2, 0.5, 2.8)):
        study.enqueue_trial({"lr": lr, "weight_decay": wd})
        trial = study.ask()
        trial.suggest_float("lr", 1e-4, 3e-2, log=True)
        trial.suggest_float("weight_decay", 1e-3, 1.0, log=True)
        trial.report(value, cfg.tokens_per_trial)
        study.tell(trial, value)
    out = tmp_path / "report"
    summary = make_report(cfg, out, source=str(path))
    # Rule: with lambda searched, the pair plot is lr x weight decay and it is written.
    assert "lr_tau.png" in summary["files"]
    assert "weight decay" in (out / "lr_tau.html").read_text()
    frame = pd.read_csv(out / "trials.csv")
    assert list(frame["param_weight_decay"]) == pytest.approx([0.01, 0.1, 0.5])


def test_the_slice_of_one_complete_trial_draws_without_a_warning(tmp_path):
    # lr alone searched and one complete trial: Optuna's slice set a zero-width axis, and
    # matplotlib warned on stderr ("Attempting to set identical low and high xlims").
    path, cfg = study_file(tmp_path, search={
        "lr": {"low": 1e-4, "high": 3e-2, "log": True}, "weight_decay": {"value": 30, "as": "tau"},
        "dropout": {"value": 0.0}, "warmup_frac": {"value": 0.1}, "batch_size": {"value": 16},
    })
    study = make_study(cfg)
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 3e-2, log=True)
    trial.report(2.5, cfg.tokens_per_trial)
    study.tell(trial, 2.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = make_report(cfg, tmp_path / "report", source=str(path))
    assert "lr_tau.png" in summary["files"]
    assert [str(w.message) for w in caught if issubclass(w.category, UserWarning)] == []


def test_report_of_a_missing_study_is_exit_2(tmp_path, capsys):
    path, _ = study_file(tmp_path)
    # Rule: no study -> a clear message and exit code 2, no report folder.
    assert main(["report", str(path), "-o", str(tmp_path / "report")]) == 2
    assert "no study 'tiny'" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


# --------------------------------------------------------------------------- PNG and HTML agree


def html_points(fig) -> list[float]:
    """x of every marker the plotly figure draws (lines without markers left out)."""
    return sorted(x for t in fig.data if "markers" in (t.mode or "") for x in t.x)


def test_history_shows_the_same_trials_in_both_versions_pruned_included(mixed, tmp_path):
    _, _, study = mixed
    drawn = plot_history(study, tmp_path)
    (ax,) = drawn.png.axes
    png_points = sorted(x for c in ax.collections for x, _ in c.get_offsets())
    # Rule: both versions mark the three complete trials and the pruned one (at its last
    # reported loss); the failed trial has no final loss and is in neither.
    assert png_points == html_points(drawn.html) == [0, 1, 2, 3]
    pruned = [t for t in drawn.html.data if t.name.startswith("pruned")]
    assert [list(t.y) for t in pruned] == [[study.trials[3].intermediate_values[2 * EVAL]]]
    # The legend says what each mark is (Optuna's named the dots after the axis, and "Best
    # Value"), alike in both versions.
    legend = {text.get_text() for text in ax.get_legend().get_texts()}
    assert legend == {t.name for t in drawn.html.data if len(t.x or ())} == {
        "complete: final loss", "best so far", "pruned: last reported loss"}


def test_history_draws_a_diverged_trial_as_diverged(mixed, tmp_path):
    # It was "pruned: last reported loss" there, and "diverged" in the other figures.
    _, cfg, study = mixed
    add_trial(study, cfg, params(2e-2, tau=3.0), 9.0, TrialState.PRUNED, trained=EVAL,
              prune_reason="diverged: non-finite training loss at step 3")
    drawn = plot_history(study, tmp_path)
    names = {t.name: list(t.x) for t in drawn.html.data if "last reported" in (t.name or "")}
    assert names == {"pruned: last reported loss": [3], "diverged: last reported loss": [5]}
    assert sorted(c.get_label() for c in drawn.png.axes[0].collections
                  if "last reported" in c.get_label()) == sorted(names)


def test_best_trial_is_starred_in_both_lr_tau_versions(mixed, tmp_path):
    _, cfg, study = mixed
    notes: list[str] = []
    drawn = plot_lr_tau(study, cfg, tmp_path, notes)
    (ax, _colorbar) = drawn.png.axes
    # Rule: trial 1 (lr 4e-3, tau 0.8) is the best; both versions star it at its lr and tau.
    png = [c for c in ax.collections if c.get_label().startswith("best: trial 1 ")]
    html = [t for t in drawn.html.data if (t.name or "").startswith("best: trial 1 ")]
    assert len(png) == len(html) == 1
    assert png[0].get_offsets().tolist() == [[4e-3, 0.8]]
    assert (list(html[0].x), list(html[0].y)) == ([4e-3], [0.8])
    assert html[0].marker.symbol == "star"
    # The surface is Optuna's interpolation between the complete trials: the title says so, and
    # the trials it rests on are drawn and in the legend (Optuna's small grey dots were in none).
    assert "interpolated between the 3 complete trials (dots)" in drawn.html.layout.title.text
    dots = [t for t in drawn.html.data if t.name == "complete (3)"]
    assert len(dots) == 1 and sorted(dots[0].x) == [1e-3, 4e-3, 2e-2]
    # Rule: the pruned and the failed trial, which Optuna's contour leaves out, are in both.
    for state in ("pruned", "fail"):
        assert [c.get_label() for c in ax.collections].count(state) == 1, state
        assert [t.name for t in drawn.html.data].count(state) == 1, state
    # Rule: both versions have the registry's labels and log axes.
    assert ax.get_xlabel() == drawn.html.layout.xaxis.title.text == hparams.label("lr")
    assert ax.get_ylabel() == drawn.html.layout.yaxis.title.text == hparams.label("tau")
    assert ax.get_xscale() == drawn.html.layout.xaxis.type == "log"
    assert notes == []


def test_curves_are_coloured_by_state_alike_in_both_versions(mixed, tmp_path):
    _, _, study = mixed
    drawn = plot_curves(study, tmp_path, [])
    (ax,) = drawn.png.axes
    png = sorted((line.get_label(), line.get_color()) for line in ax.get_lines())
    html = sorted((t.name, t.line.color) for t in drawn.html.data)
    # Rule: one curve per trial that reported a loss, the failed one included, coloured by its
    # state; the best trial's curve has an entry of its own; the same in both versions.
    complete, pruned, fail = (STATE_COLOURS[s] for s in ("COMPLETE", "PRUNED", "FAIL"))
    # The best in red, as its star elsewhere: in the complete trials' blue it was lost among them.
    assert png == html == sorted([
        ("best: trial 1 (2.2000)", "red"), ("complete (3)", complete),
        ("complete (3)", complete), ("fail (1)", fail), ("pruned (1)", pruned),
    ])


def test_a_trial_stopped_and_run_again_is_not_drawn_as_a_failure(tmp_path):
    # Ctrl-C'd trials were "fail (2)" in the curves' and lr x tau's legends.
    path, cfg = study_file(tmp_path)
    study = make_study(cfg)
    add_trial(study, cfg, params(4e-3), 2.2)
    add_trial(study, cfg, params(1e-3), 2.6)
    add_trial(study, cfg, params(3e-2, tau=0.02), 4.0, TrialState.FAIL, trained=EVAL)
    trial = study.ask(DISTRIBUTIONS)
    trial.report(3.0, EVAL)
    trial.set_user_attr("fail_reason", "interrupted (Ctrl-C)")
    trial.set_user_attr("retried", True)
    study.tell(trial, state=TrialState.FAIL)
    # A diverged trial, which Optuna holds as PRUNED, was drawn as "pruned".
    trial = study.ask(DISTRIBUTIONS)
    trial.report(9.0, EVAL)
    trial.set_user_attr("prune_reason", "diverged: training loss 9.8 above max_loss 8.3")
    study.tell(trial, state=TrialState.PRUNED)
    drawn = plot_curves(study, tmp_path, [])
    labels = sorted({line.get_label() for line in drawn.png.axes[0].get_lines()})
    assert labels == ["best: trial 0 (2.2000)", "complete (2)", "diverged (1)", "fail (1)",
                      "interrupted (1)"]
    assert {t.name for t in drawn.html.data} == set(labels)
    drawn = plot_lr_tau(study, cfg, tmp_path, [])
    shown = [c.get_label() for c in drawn.png.axes[0].collections]
    assert "interrupted" in shown
    assert any(label.startswith("diverged") for label in shown), shown
    assert not any(label.startswith("pruned") for label in shown), shown


def test_the_report_of_a_study_without_a_complete_trial_draws_no_empty_figure(tmp_path):
    # history.png was empty axes, and the audit replayed "none" and median on 0 trials.
    path, cfg = study_file(tmp_path, pruner={"name": "none"})
    study = make_study(cfg)
    for _ in range(2):
        trial = study.ask(DISTRIBUTIONS)
        trial.report(float("nan"), EVAL)
        trial.set_user_attr("prune_reason", "diverged: non-finite validation loss at step 2")
        study.tell(trial, state=TrialState.PRUNED)
    out = tmp_path / "report"
    summary = make_report(cfg, out, source=str(path))
    assert not (out / "history.png").exists() and "history.png" not in summary["files"]
    assert "optimization history skipped: no trial completed or reported a finite loss" in \
        summary["notes"]
    assert report.audit_rows(summary["pruner_audit"]) == [
        ("pruner audit", "none: the study has no complete trial to replay a pruner on")]
    # A study without a pruner is shown the median pruner's replay alone.
    add_trial(study, cfg, params(4e-3), 2.2)
    assert list(report.pruner_audit(study, cfg)["replayed"]) == ["median"]


def test_the_priors_figure_of_a_study_whose_trials_all_run_says_none_has_finished(tmp_path):
    # "no trial has values for the priors' parameters", where trials.csv listed the running
    # trials' values.
    _, cfg = study_file(tmp_path)
    study = make_study(cfg)
    study.ask(DISTRIBUTIONS)
    notes: list[str] = []
    assert plot_priors(study, cfg, tmp_path, notes) is None
    assert notes == ["priors vs optimum skipped: no trial has finished yet (the figure draws "
                     "the finished trials' values)"]


def test_a_report_of_a_running_study_is_of_one_moment(tmp_path, monkeypatch):
    # Each table and figure read the storage again: a trial that reported while the report was
    # written had 0 evaluations in trials.csv, 2 in curves.png and its tokens in summary.json.
    path, cfg = study_file(tmp_path)
    study = make_study(cfg)
    add_trial(study, cfg, params(4e-3), 2.2)
    running = study.ask(DISTRIBUTIONS)
    table = report.trials_frame

    def reports_meanwhile(*args, **kwargs):
        frame = table(*args, **kwargs)
        running.report(3.0, EVAL)  # the driver, between two reads of the report
        return frame

    monkeypatch.setattr(report, "trials_frame", reports_meanwhile)
    summary = make_report(cfg, tmp_path / "report", source=str(path))
    assert summary["compute"]["by_state"]["RUNNING"]["tokens"] == 0, summary["compute"]
    frame = pd.read_csv(tmp_path / "report" / "trials.csv")
    assert frame.loc[frame.number == running.number, "evaluations"].item() == 0
    stored = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url)
    assert len(stored.trials[running.number].intermediate_values) == 1  # it did report


def test_the_curves_of_a_large_study_are_a_sample_with_the_best(mixed, tmp_path, monkeypatch):
    _, _, study = mixed
    monkeypatch.setattr(report, "CURVES_SHOWN", 3)
    drawn = plot_curves(study, tmp_path, [])
    (ax,) = drawn.png.axes
    labels = sorted(line.get_label() for line in ax.get_lines())
    # Rule: past CURVES_SHOWN trials, the figure draws that many: evenly spaced ones and the
    # best, in both versions, and its title says how many of how many.
    assert len(labels) == len(drawn.html.data) == 3
    assert "best: trial 1 (2.2000)" in labels
    assert "(3 of 5 trials: evenly spaced and the best)" in ax.get_title("left")
    assert "3 of 5 trials" in drawn.html.layout.title.text


def test_a_registered_sixth_hyperparameter_appears_in_the_priors_figure(monkeypatch, tmp_path):
    monkeypatch.setitem(hparams.HPARAMS, "beta2", hparams.HParam(
        "beta2", target="optim.beta2", label="Adam beta2", unit="", low=0.5, high=0.9999,
        allowed="a beta2 in [0.5, 0.9999]", default=None,
    ))
    path, cfg = study_file(tmp_path, search={
        "lr": {"low": 1e-4, "high": 3e-2, "log": True},
        "weight_decay": {"prior": "auto", "as": "tau"},
        "dropout": {"value": 0.0}, "warmup_frac": {"low": 0.0, "high": 0.2},
        "batch_size": {"choices": [8, 16]}, "beta2": {"low": 0.9, "high": 0.99},
    })
    study = make_study(cfg)
    for lr, beta2, value in ((1e-3, 0.95, 2.6), (4e-3, 0.98, 2.2), (2e-2, 0.91, 2.9)):
        study.enqueue_trial({**params(lr), "beta2": beta2})
        trial = study.ask({**DISTRIBUTIONS, "beta2": FloatDistribution(0.9, 0.99)})
        trial.report(value, EVAL)
        study.tell(trial, value)
    rows = {row.name: row for row in prior_rows(study, cfg)}
    # Rule: beta2 has a row, labelled from the registry, with the range it was searched over,
    # the values tried and the best trial's; the laws give it no prior.
    assert "beta2" in rows and {"lr", "tau", "batch_size"} <= set(rows)
    layers = {layer.name: layer for layer in rows["beta2"].layers}
    assert rows["beta2"].label == "Adam beta2: searched, no prior"
    assert set(layers) == {"search range", "trials", "best trial"}
    assert layers["search range"].x == [0.9, 0.99]
    assert layers["trials"].x == [0.95, 0.98, 0.91]
    assert layers["best trial"].x == [0.98]

    drawn = plot_priors(study, cfg, tmp_path, [])
    # Rule: both versions draw every row with the same elements: a subplot per row, and in
    # beta2's the layers of its row.
    names = list(rows)
    assert [ax.get_ylabel() for ax in drawn.png.axes] == names
    assert [drawn.html.layout[f"yaxis{i if i > 1 else ''}"].title.text
            for i in range(1, len(names) + 1)] == names
    i = names.index("beta2")
    png_labels = drawn.png.axes[i].get_legend_handles_labels()[1]
    html_labels = [t.name for t in drawn.html.data if t.yaxis == f"y{i + 1}"]
    assert png_labels == html_labels == [layer.name for layer in rows["beta2"].layers]
    assert drawn.png.axes[i].get_xlabel() == drawn.html.layout[f"xaxis{i + 1}"].title.text


def test_report_leaves_warning_filters_and_matplotlib_style_alone(mixed, tmp_path):
    path, cfg, _ = mixed
    rc = dict(matplotlib.rcParams)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        filters = list(warnings.filters)
        make_report(cfg, tmp_path / "report", source=str(path))
        # Rule: Optuna's experimental warnings are silenced while the report draws, and the
        # filters are as they were afterwards: nothing process-wide.
        assert warnings.filters == filters
    assert not [w for w in caught if issubclass(w.category, optuna.exceptions.ExperimentalWarning)]
    # Rule: the ggplot style Optuna's matplotlib functions switch to does not outlive them.
    assert dict(matplotlib.rcParams) == rc


@pytest.mark.parametrize("complete", [0, 1])
def test_a_report_of_a_study_with_few_trials_prints_no_optuna_log_lines(tmp_path, complete,
                                                                         capsys):
    import logging

    path, cfg = study_file(tmp_path)
    study = make_study(cfg)
    for _ in range(complete):
        add_trial(study, cfg, params(1e-3, tau=0.3, batch_size=8), 2.6)
    add_trial(study, cfg, params(9e-3, tau=3.0), 3.5, TrialState.PRUNED, trained=2 * EVAL)
    logged: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = logged.append
    logging.getLogger("optuna").addHandler(handler)  # Optuna's own handler writes to stderr
    try:
        assert main(["report", str(path)]) == 0
    finally:
        logging.getLogger("optuna").removeHandler(handler)
    # "[W ...] There are no complete trials." and "Param lr unique value length is less than 2."
    shown = [r.getMessage() for r in logged if r.levelno >= optuna.logging.WARNING]
    assert shown == []
    assert optuna.logging.get_verbosity() == optuna.logging.WARNING  # as the command set it
    # With no trial complete there is no best to re-run with other seeds (it named
    # --repeat-best, which says so).
    said = " ".join(capsys.readouterr().out.split())
    assert ("not measured: no trial completed, so there is no best config" in said) \
        == (complete == 0), said
    assert ("--repeat-best 2` re-runs the best trial" in said) == (complete == 1), said


# --------------------------------------------------------------------------- what to trust


class Links(HTMLParser):
    """Every href and src of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.targets += [value for key, value in attrs if key in ("href", "src")]


def page_text(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def test_index_links_every_file_and_opens_offline(mixed, tmp_path, capsys):
    path, cfg, _ = mixed
    out = tmp_path / "report"
    assert main(["report", str(path), "-o", str(out)]) == 0
    index = out / "index.html"
    # Rule: `scaletune report` prints the index's path.
    assert f"report: {index.resolve()}" in capsys.readouterr().out
    page = index.read_text()
    links = Links()
    links.feed(page)
    summary = json.loads((out / "summary.json").read_text())
    # Rule: the index links every file the report wrote: each figure as HTML and PNG, trials.csv
    # and summary.json.
    assert set(summary["files"]) | {"summary.json"} <= set(links.targets)
    # Rule: every link is a file beside it and the figures load the plotly.min.js beside them:
    # nothing to fetch, so it opens offline.
    assert all((out / target).is_file() for target in links.targets)
    for name in FIGURES:
        assert 'src="http' not in (out / f"{name}.html").read_text(), name
    # Rule: the top says the study, its storage (masked), the best trial and the compute; then
    # each figure with its line.
    text = page_text(page)
    top = text[:text.index("Figures")]
    assert "Study tiny" in top and mask_url(cfg.storage_url) in top
    assert "trial 1: val loss 2.2000" in top
    assert f"{summary['compute']['tokens_trained']:,} tokens" in top
    assert f"{summary['pruning']['tokens_saved']:,} tokens" in top
    for about in FIGURES.values():
        assert about in text, about


def test_index_masks_the_storage_password(mixed, tmp_path):
    _, cfg, study = mixed
    url = "postgresql://scale:hunter2@db.example/studies"
    summary = summarize(study, cfg.model_copy(update={"storage": url}))
    summary.update(files=[], notes=[])
    page = write_index(summary, tmp_path, {}).read_text()
    # Rule: the index shows the storage as mask_url does, never its password.
    assert "hunter2" not in page and mask_url(url) in page_text(page)


def test_importances_from_few_trials_say_they_are_a_rough_guide(tmp_path):
    _, cfg = study_file(tmp_path)
    study = make_study(cfg)
    lrs = np.geomspace(1e-3, 2e-2, 11).tolist()
    for i, lr in enumerate(lrs[:10]):
        add_trial(study, cfg, params(lr, tau=0.1 * (i + 1)), 2.0 + 0.05 * ((3 * i) % 7))
    notes: list[str] = []
    drawn = plot_importances(study, tmp_path, notes)
    # Rule: with 10 complete trials the best 10% is one trial: both titles and the notes say
    # the importances are a rough guide, and from how many trials.
    rough = "from 10 complete trials: a rough guide"
    assert rough in drawn.png.axes[0].get_title(loc="left")
    assert rough in drawn.html.layout.title.text
    assert notes == [importance_caution(10)]
    assert notes[0].startswith(f"importances {rough}")
    # Rule: from 11 complete trials the best 10% is two trials: no note, the title counts them.
    add_trial(study, cfg, params(lrs[10], tau=1.2), 2.3)
    notes = []
    drawn = plot_importances(study, tmp_path, notes)
    assert notes == [] and importance_caution(11) is None
    assert "over 11 complete trials" in drawn.png.axes[0].get_title(loc="left")
    assert "rough" not in drawn.html.layout.title.text


def laws_file(tmp_path) -> Path:
    """Laws (`scaletune fit`'s file) fitted to three studies around the tiny study's budget."""
    points = [ScalePoint(scale=x, scale_kind="tokens", lr=0.5 * x**-0.5, tau=0.5,
                         batch_size=512.0 * (x / 1e4) ** 0.3, value=3.0)
              for x in (1e4, 4e4, 1.6e5)]
    path = tmp_path / "laws.json"
    fit_studies(points, n_boot=50).save(path)
    return path


def test_priors_fitted_to_your_studies_say_so_in_both_versions(tmp_path):
    fitted = {"laws": "fitted", "fitted_file": str(laws_file(tmp_path))}
    _, cfg = study_file(tmp_path, priors=fitted)
    study = make_study(cfg)
    for lr, tau, value in ((1e-3, 0.3, 2.6), (4e-3, 0.8, 2.2), (2e-2, 0.1, 2.9)):
        add_trial(study, cfg, params(lr, tau=tau), value)
    notes: list[str] = []
    drawn = plot_priors(study, cfg, tmp_path, notes)
    # Rule: the recorded priors cite laws fitted to your studies: both titles say so and name
    # the laws file.
    title = "Priors fitted to your studies (laws.json) vs the values tried and the best trial"
    assert drawn.png.get_suptitle() == drawn.html.layout.title.text == title
    assert notes == []
    # Rule: each row says where its prior came from; fitted ones have entries of their own in
    # both versions' legends.
    rows = {row.name: row for row in prior_rows(study, cfg)}
    # These laws warn (one near-best trial per rung): each prior is half fit, half published
    # laws, which the row says (it said "prior fitted to your studies").
    for name in ("lr", "tau", "batch_size"):
        assert rows[name].label.endswith(
            ", prior blending your studies' fit half and half with the published laws (the fit "
            "warns)"), name
        layers = {layer.name for layer in rows[name].layers}
        assert {"fitted prior range", "fitted prior center"} <= layers, name
    assert rows["warmup_frac"].label.endswith(", prior from the published laws")
    # Dropout has no published law: its row said "from the published laws" all the same.
    assert rows["dropout"].label.endswith(", prior from a heuristic (no published law)")
    png_legend = {text.get_text() for text in drawn.png.legends[0].get_texts()}
    html_legend = {t.name for t in drawn.html.data if t.showlegend is not False}
    assert {"fitted prior center", "prior center"} <= png_legend & html_legend


def test_the_priors_figure_labels_short_log_axes_and_batch_sizes_as_numbers(mixed, tmp_path):
    # Under two decades only the powers of ten had labels: batch sizes read "10^0" and "10^1".
    _, cfg, study = mixed
    drawn = plot_priors(study, cfg, tmp_path, [])
    rows = [row.name for row in prior_rows(study, cfg)]
    batch = drawn.png.axes[rows.index("batch_size")]
    ticks = [float(t) for t in batch.get_xticks()]
    assert len(ticks) >= 2 and all(math.log2(t).is_integer() for t in ticks), ticks
    assert [label.get_text() for label in batch.get_xticklabels()] == [f"{t:g}" for t in ticks]
    html_axis = drawn.html.layout[f"xaxis{rows.index('batch_size') + 1}"]
    assert list(html_axis.tickvals) == ticks
    # Any log axis under two decades (an lr range of 0.002-0.04) has numbers between its
    # powers of ten, as plain numbers.
    import plotly.graph_objects as go
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot()
    report._set_axis(ax, go.Figure(), "x", (0.002, 0.04), True)
    fig.canvas.draw()
    shown = [t.get_text() for t in ax.get_xticklabels(which="both") if t.get_text()]
    assert {"0.002", "0.005", "0.01", "0.02"} <= set(shown), shown


def test_priors_from_the_published_laws_follow_the_record_not_the_config(mixed, tmp_path):
    _, cfg, study = mixed
    drawn = plot_priors(study, cfg, tmp_path, [])
    # Rule: priors from the published laws say so in both titles, and no row says fitted.
    title = "Priors from the published laws vs the values tried and the best trial"
    assert drawn.png.get_suptitle() == drawn.html.layout.title.text == title
    assert not [t.name for t in drawn.html.data if "fitted" in t.name]
    # Rule: a config that names fitted laws does not make the recorded priors fitted: the title
    # follows the record and a note says they disagree.
    says_fitted = cfg.model_copy(update={"priors": cfg.priors.model_copy(
        update={"laws": "fitted", "fitted_file": str(tmp_path / "laws.json")})})
    notes: list[str] = []
    drawn = plot_priors(study, says_fitted, tmp_path, notes)
    assert drawn.html.layout.title.text == title
    assert notes == ["priors: the study's config says laws: fitted, but the priors it recorded "
                     "are from the published laws; the priors figure shows what was recorded"]


def test_learning_curves_are_over_tokens_seen_in_both_versions(mixed, tmp_path):
    _, _, study = mixed
    drawn = plot_curves(study, tmp_path, [])
    # Rule: a trial's intermediate values are at the tokens it has seen, not Optuna's "step".
    assert drawn.png.axes[0].get_xlabel() == drawn.html.layout.xaxis.title.text == "tokens seen"


def test_numeric_choices_are_numbers_on_every_axis_in_both_versions(tmp_path):
    lrs, batches = [3e-2, 1e-3, 1e-2, 3e-3], [16, 128, 32]  # listed out of order, as a file may
    _, cfg = study_file(tmp_path, search={
        "lr": {"choices": lrs}, "weight_decay": {"value": 0.5, "as": "tau"},
        "dropout": {"value": 0.0}, "warmup_frac": {"value": 0.1},
        "batch_size": {"choices": batches},
    })
    study = make_study(cfg)
    space = {"lr": CategoricalDistribution(lrs), "batch_size": CategoricalDistribution(batches)}
    for i, lr in enumerate(lrs):
        study.enqueue_trial({"lr": lr, "batch_size": batches[i % 3]})
        trial = study.ask(space)
        trial.report(2.2 + 0.1 * i, cfg.tokens_per_trial)
        study.tell(trial, 2.2 + 0.1 * i)
    drawn = plot_lr_tau(study, cfg, tmp_path, [])
    # Rule: Optuna's slice puts each trial at its lr in both versions, on the log axis lr is
    # searched on, not at the choice's place in the list (0, 1, 2, 3) or ordered as strings.
    png_x = {x for c in drawn.png.axes[0].collections for x, _ in c.get_offsets()}
    html_x = {x for t in drawn.html.data for x in t.x}
    assert png_x == html_x == set(lrs)
    assert drawn.png.axes[0].get_xscale() == drawn.html.layout.xaxis.type == "log"
    assert drawn.html.layout.xaxis.categoryarray is None
    # Rule: batch sizes are numbers on the priors figure, 16 < 32 < 128 on a log axis.
    rows = [row.name for row in prior_rows(study, cfg)]
    i = rows.index("batch_size")
    drawn = plot_priors(study, cfg, tmp_path, [])
    axis = drawn.html.layout[f"xaxis{i + 1}"]
    assert drawn.png.axes[i].get_xscale() == axis.type == "log" and axis.categoryarray is None
    tried = [t for t in drawn.html.data if t.name == "trials" and t.xaxis == f"x{i + 1}"]
    assert sorted(tried[0].x) == [16, 16, 32, 128]
