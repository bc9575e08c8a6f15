"""Study management from the command line: `scaletune studies`, `show`, `best`, `delete`, and
`fit` naming the file of a study that has not run.

Studies are built through Optuna's public API on a SQLite file, with the user attrs the runner
records (tests/search/test_export.py's make_study and add_trial), so they need no training. One
slow test runs a real tiny study through the CLI end to end.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import socket
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from scaletune.search import lease
from scaletune.search.cli import main
from scaletune.search.config import load_study, validate_study
from scaletune.search.manage import _failures, plan_notes, pruner_notes, state_words
from scaletune.search.storage import make_storage, tally
from scaletune.search.studies import by_state
from scaletune.trainer.config import load_train_config
from tests.search.helpers import flat, tiny_study, write_study
from tests.search.test_export import EVAL, add_trial, make_study, params, study_file
from tests.search.test_export import finished as finished  # a fixture, used by name


def scaletune(capsys, *args: str) -> tuple[int, str]:
    """`scaletune ARGS` in this process: exit code and output as words (lines unwrapped, table
    borders taken out)."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, flat(re.sub("[│┃]", " ", captured.out + captured.err))


def hold_lease(study: optuna.Study) -> int:
    """Write the lease of a live driver: another process of this host (our parent)."""
    now = time.time()
    study.set_user_attr("driver", {"host": socket.gethostname(), "pid": os.getppid(),
                                   "since": now, "heartbeat": now, "token": "a-driver"})
    return os.getppid()


def names_in(url: str) -> list[str]:
    return optuna.get_all_study_names(make_storage(url))


class Terminal(io.StringIO):
    """A stdin that is a terminal on which the user types ``text``."""

    def isatty(self) -> bool:
        return True


# --------------------------------------------------------------------------- studies


def test_studies_lists_each_study_of_a_storage(finished, capsys):
    path, cfg, _ = finished
    other = cfg.model_copy(update={"name": "tiny-wide"})
    make_study(other)
    code, out = scaletune(capsys, "studies", str(path))
    assert code == 0, out
    # Rule: one row a study: name, trials by state, best value and trial, last activity.
    assert f"Studies in {cfg.storage_url}" in out
    assert re.search(r"tiny 3 complete, 1 pruned 2\.2000 \(trial 1\) \d{4}-\d\d-\d\d \d\d:\d\d "
                     r"\(\d+ s ago\)", out), out
    assert "tiny-wide none" in out


def test_studies_takes_a_storage_url(finished, capsys):
    _, cfg, study = finished
    pid = hold_lease(study)
    code, out = scaletune(capsys, "studies", "--storage", cfg.storage_url)
    assert code == 0, out
    # Rule: a study a driver runs says so, naming the driver.
    assert f"running now (pid {pid} on {socket.gethostname()}" in out


def test_studies_without_arguments_lists_the_default_storage_of_this_folder(tmp_path, capsys,
                                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    # No storage here: said, with what to give (was argparse's "one of the arguments ... is
    # required").
    code, out = scaletune(capsys, "studies")
    assert code == 2
    assert ("scaletune studies: no runs/studies.db in this folder, where its study files keep "
            "their studies by default: give a study file") in " ".join(out.split())
    (tmp_path / "runs").mkdir()
    url = f"sqlite:///{tmp_path / 'runs' / 'studies.db'}"
    optuna.create_study(study_name="here", storage=make_storage(url))
    code, out = scaletune(capsys, "studies")
    assert code == 0, out
    assert f"Studies in {url}" in out and "here none" in " ".join(out.split())


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_the_listing_counts_in_the_database_what_loading_the_trials_gives(tmp_path, direction):
    url = f"sqlite:///{tmp_path / 'tally.db'}"
    study = optuna.create_study(study_name="t", storage=make_storage(url), direction=direction)
    for value in (2.5, 1.5, 3.5):
        study.add_trial(optuna.trial.create_trial(value=value))
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED))
    study.add_trial(optuna.trial.create_trial(  # diverged: `studies` said "pruned"
        state=TrialState.PRUNED, user_attrs={"prune_reason": "diverged: loss nan at step 2"}))
    for retried in (True, True, False):
        study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL,
                                                  user_attrs={"retried": retried}))
    # The first interrupted trial's re-run ended; the second's waits: "2 interrupted and queued
    # again" read as two still to run, beside the waiting one that is the second's re-run.
    study.add_trial(optuna.trial.create_trial(value=4.5, user_attrs={"retry_of": 5}))
    study.ask()  # running
    study.enqueue_trial({}, user_attrs={"retry_of": 6})
    trials = study.get_trials(deepcopy=False)
    counted = tally(make_storage(url), "t", minimize=direction == "minimize")
    # Rule: the listing's counts, best trial and last activity are those of the loaded trials.
    assert state_words(Counter(counted.by_state), counted.retried, counted.diverged,
                       counted.reruns_started) == by_state(trials)
    assert by_state(trials) == ("4 complete, 1 pruned, 1 diverged, 1 failed, 1 running, 1 "
                                "waiting, 1 interrupted and run again, 1 interrupted and queued "
                                "again")
    assert counted.best == (study.best_trial.number, study.best_value)
    assert counted.last == max(t.datetime_complete or t.datetime_start for t in trials
                               if t.state != TrialState.WAITING)


def test_studies_of_a_missing_sqlite_file_is_an_error_and_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "none" / "study.db"
    code, out = scaletune(capsys, "studies", "--storage", f"sqlite:///{missing}")
    # Rule: listing never creates a storage; the error names the file.
    assert code == 2, out
    # One line: the error names the option already ("1 error(s) in storage:" stood above it).
    # Its folder is missing: run makes a study's own folder, not that of a storage its file
    # names, and "creates it" was refused there.
    assert out.splitlines() == [f"storage: {missing} does not exist: no study has run there "
                                "(`scaletune run STUDY.yaml`, or `scaletune ladder LADDER.yaml`,"
                                " creates it; where a study file names this storage, make its "
                                f"folder {missing.parent} first)"]
    assert not missing.exists() and not missing.parent.exists()


def test_studies_of_a_file_that_is_not_a_storage_is_an_error_and_writes_nothing(tmp_path, capsys):
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    code, out = scaletune(capsys, "studies", "--storage", f"sqlite:///{empty}")
    # Rule: an SQLite file without Optuna's tables is not given them by a listing.
    assert code == 2, out
    assert f"storage: {empty} is empty (0 bytes): it holds no study" in out
    assert empty.read_bytes() == b""


def test_studies_of_an_empty_storage_says_so(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    make_storage(url)
    code, out = scaletune(capsys, "studies", "--storage", url)
    assert code == 0, out
    assert f"no studies in {url}" in out
    # `list` is `studies` (argparse's "invalid choice: 'list'" was the answer).
    assert scaletune(capsys, "list", "--storage", url) == (code, out)
    # and its help names the command typed, not the other name.
    with pytest.raises(SystemExit):
        main(["list", "--help"])
    assert capsys.readouterr().out.startswith("usage: scaletune list ")


def test_studies_takes_a_study_file_or_a_storage_not_both(capsys):
    # Rule: one of the two, not both (argparse's usage error, exit 2); neither: this folder's
    # runs/studies.db (above).
    with pytest.raises(SystemExit) as e:
        main(["studies", "study.yaml", "--storage", "sqlite:///studies.db"])
    assert e.value.code == 2


# --------------------------------------------------------------------------- show


def test_show_gives_state_best_config_priors_and_storage(finished, capsys):
    path, cfg, study = finished
    code, out = scaletune(capsys, "show", str(path))
    assert code == 0, out
    assert f"study tiny ({path})" in out
    assert f"storage {cfg.storage_url}" in out
    assert "driver none running" in out
    assert "trials 3 complete, 1 pruned; 4 finished of n_trials 4" in out
    # A launch with --n-trials 9 (the driver records it): the file's number and the launch's.
    study.set_user_attr("n_trials", 9)
    code, out = scaletune(capsys, "show", str(path))
    assert "4 finished of n_trials 4 in the study file; its last run asked for 9" in out, out
    study.set_user_attr("n_trials", 4)
    code, out = scaletune(capsys, "show", str(path))
    assert "4 finished of n_trials 4; last activity" in out, out
    # Rule: the best trial's params as the registry shows them, and what was derived from them.
    assert "best trial 1: val loss 2.2000 lr=0.004 tau=0.8 warmup_frac=0.15 batch_size=16" in out
    assert "derived weight_decay=" in out
    assert "model 1 layer, 2 heads, width 32, block 32" in out
    assert "sampler tpe" in out and "pruner median" in out
    # Rule: who stopped the pruned trials.
    assert "pruned trial 3: the median pruner" in out
    # Rule: the priors' centers come from what the study recorded.
    lr = study.user_attrs["priors"]["lr"]["center"]
    assert f"priors lr {lr:.3g}, weight_decay" in out
    assert "(from the published laws)" in out  # which laws gave them, where a file could have
    assert "ran with git_revision 0123abcd" in out


def test_show_names_the_pruner_a_resumed_study_goes_on_under(finished, capsys):
    path, _, _ = finished
    raw = yaml.safe_load(path.read_text())
    raw["pruner"] = {"name": "predicted"}
    path.write_text(yaml.safe_dump(raw))
    code, out = scaletune(capsys, "show", str(path))
    assert code == 0, out
    # It named the median pruner the study started with, where run and report said the study
    # goes on under the file's.
    assert "pruner predicted:" in out and "pruner median:" not in out, out
    assert "this study started under the median pruner and goes on under the predicted pruner" \
        in out


def test_show_says_which_trials_diverged_and_why_apart_from_the_pruners_stops(finished, capsys):
    path, _, study = finished
    for number in (4, 5):
        study.add_trial(optuna.trial.create_trial(
            params={"lr": 0.5}, distributions={"lr": FloatDistribution(1e-4, 1.0, log=True)},
            state=TrialState.PRUNED,
            user_attrs={"prune_reason": f"diverged: training loss {number}.5 above max_loss 8.3 "
                                        "at step 3"}))
    code, out = scaletune(capsys, "show", str(path))
    assert code == 0, out
    # Under their own heading: all-diverged studies read "pruned trials 0, 1, 2: diverged".
    assert ("pruned trial 3: the median pruner diverged trials 4, 5 (trial 4: training loss 4.5 "
            "above max_loss 8.3 at step 3)") in out, out
    # Counted as the run's summary and the report count them (it read "3 pruned").
    assert "trials 3 complete, 1 pruned, 2 diverged;" in out, out


def test_show_counts_repeats_of_the_best_apart_from_the_search(finished, capsys):
    from scaletune.search.noise import REPEAT_OF, TRAIN_SEED

    path, _, study = finished
    best = study.best_trial
    for seed, value in ((1, 2.21), (2, 2.23)):  # what `run --repeat-best 2` leaves
        study.add_trial(optuna.trial.create_trial(
            params=best.params, distributions=best.distributions, value=value,
            user_attrs={REPEAT_OF: best.number, TRAIN_SEED: seed}))
    code, out = scaletune(capsys, "show", str(path))
    assert code == 0, out
    # Rule: the repeats are on top of n_trials, and said so.
    assert (f"trials 5 complete, 1 pruned; 6 finished: 4 of the search (n_trials 4) and 2 "
            f"repeats of trial {best.number} with other training seeds; last activity") in out
    # The best trial's other seeds, and their mean: its loss is partly its seed's luck.
    mean = (best.value + 2.21 + 2.23) / 3
    assert (f"seeds: training seed 0; its 3 seeds: {best.value:.4f} (seed 0), 2.2100 (seed 1), "
            f"2.2300 (seed 2), mean {mean:.4f}") in out
    # A seed that diverged is named: left out silently, the config looked safe, and the
    # repeats counted one more than the seeds listed.
    study.add_trial(optuna.trial.create_trial(
        params=best.params, distributions=best.distributions, state=TrialState.PRUNED,
        intermediate_values={1000: 9.0},
        user_attrs={REPEAT_OF: best.number, TRAIN_SEED: 4,
                    "prune_reason": "diverged: training loss is nan at step 58"}))
    code, out = scaletune(capsys, "show", str(path))
    assert f"2.2300 (seed 2), mean {mean:.4f}; seed 4 diverged" in out, out
    # A repeat that ends best is named as the config's run with that seed.
    study.add_trial(optuna.trial.create_trial(
        params=best.params, distributions=best.distributions, value=best.value - 0.01,
        user_attrs={REPEAT_OF: best.number, TRAIN_SEED: 3}))
    code, out = scaletune(capsys, "show", str(path))
    assert f"best trial {len(study.trials) - 1}: val loss {best.value - 0.01:.4f}" in out
    assert f"seeds: trial {best.number}'s config, training seed 3; its 4 seeds: " in out


def test_show_names_the_driver_that_runs_the_study(finished, capsys):
    path, _, study = finished
    pid = hold_lease(study)
    code, out = scaletune(capsys, "show", str(path))
    assert code == 0, out
    assert f"driver running now (pid {pid} on {socket.gethostname()}, running since" in out


def test_best_export_and_report_of_a_running_study_say_it_is_running(finished, tmp_path,
                                                                     capsys):
    # Read while a driver ran the study, they gave its best of the moment as the study's, and
    # an export of a provisional winner looked final.
    path, _, study = finished
    study.ask()
    pid = hold_lease(study)
    said = f"the study is running now (pid {pid} on {socket.gethostname()}"
    code, out = scaletune(capsys, "best", str(path))
    assert code == 0 and said in out and "1 trial(s) running): this is what it holds so far, " \
        "and its best may still change" in out, out
    # On one line where stderr is not a terminal (it was wrapped at 80 columns).
    assert main(["best", str(path)]) == 0
    (note,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note")]
    assert said in note and note.endswith("its best may still change"), note
    code, out = scaletune(capsys, "export", str(path), "-o", str(tmp_path / "final.yaml"))
    assert code == 0 and said in out, out
    assert "the study is running now" in (tmp_path / "final.yaml").read_text()
    code, out = scaletune(capsys, "report", str(path), "-o", str(tmp_path / "report"))
    assert code == 0 and said in out, out
    assert json.loads((tmp_path / "report" / "summary.json").read_text())["running"] is True


def test_a_trial_left_running_by_a_killed_driver_is_said_to_be_so(finished, capsys):
    path, _, study = finished
    study.ask()  # RUNNING in the storage, and no driver holds the study (one killed with -9)
    # A study that no lease-holding driver ran (a scaletune before 2026-11-30) may have a
    # driver still: it was said to have none, and `scaletune run` advised.
    code, out = scaletune(capsys, "show", str(path))
    assert ("1 running (no driver lease is recorded: a scaletune from before 2026-11-30, which "
            "kept none, may still be running the study; if none is, it was left") in out, out
    study.set_user_attr("driver", None)  # the lease a driver releases, or one killed left
    stopped = study.ask()  # and one stopped and queued again before
    stopped.set_user_attr("retried", True)
    study.tell(stopped, state=TrialState.FAIL)
    for command in ("studies", "show"):
        code, out = scaletune(capsys, command, str(path))
        assert code == 0, out
        # Rule: "1 running" is not left to read as a study at work; the parenthesis follows it,
        # not the "stopped and queued again" it came after.
        assert ("1 running (no driver runs the study: it was left by a stopped driver, and the "
                "next `scaletune run` queues it again)") in out, out
        if command == "show":  # the listing's cell wraps within its column
            assert "queues it again), 1 interrupted and queued again;" in out, out
    # The report too (its trials row read "1 running" alone).
    code, out = scaletune(capsys, "report", str(path), "-o", str(path.parent / "report"))
    assert code == 0 and "1 running (no driver runs the study: it was left by a stopped " \
        "driver" in out, out
    hold_lease(study)  # with a live driver, running means running
    code, out = scaletune(capsys, "studies", str(path))
    assert "1 running" in out and "no driver runs the study" not in out


def test_show_of_a_study_that_never_ran_names_its_file_and_creates_nothing(tmp_path, capsys):
    path, cfg = study_file(tmp_path)
    code, out = scaletune(capsys, "show", str(path))
    # Rule: a study is read through open_study, which never creates a storage.
    assert code == 2, out
    # Or it ran elsewhere (`run --storage` a server): "run it first" alone started it afresh.
    assert (f"run `scaletune run {path}` first, or give the storage it ran on with --storage"
            in " ".join(out.split())), out
    assert not cfg.folder.exists()
    # Given --storage, the command to run it names it too (it named the file's storage).
    other = f"sqlite:///{tmp_path / 'other.db'}"
    code, out = scaletune(capsys, "show", str(path), "--storage", other)
    assert code == 2 and f"run `scaletune run {path} --storage {other}` first" in out, out


def test_show_reads_the_storage_given_on_the_command_line(tmp_path, capsys):
    path, cfg = study_file(tmp_path)
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    moved = cfg.model_copy(update={"storage": elsewhere})
    add_trial(make_study(moved), moved, params(3e-3), 2.4)
    code, out = scaletune(capsys, "show", str(path), "--storage", elsewhere)
    # Rule: `--storage` finds a study that `run --storage` put elsewhere.
    assert code == 0, out
    assert "best trial 0: val loss 2.4000" in out


def test_a_study_is_read_by_its_name_without_its_file(finished, tmp_path, capsys, monkeypatch):
    path, cfg, _ = finished
    # As a colleague sent the storage alone, as runs/studies.db of the folder the commands run
    # from: no study file.
    here = tmp_path / "colleague"
    (here / "runs").mkdir(parents=True)
    shutil.copy(cfg.storage_url.removeprefix("sqlite:///"), here / "runs" / "studies.db")
    url = f"sqlite:///{here / 'runs' / 'studies.db'}"
    path.unlink()
    monkeypatch.chdir(here)
    code, out = scaletune(capsys, "studies")
    assert code == 0 and "one study, by its name: scaletune show NAME (or" in out, out
    (here / "tiny").mkdir()  # a folder of the study's name (its own, seen from runs/, say)
    code, out = scaletune(capsys, "show", "tiny")
    # Rule: a study's name, as `scaletune studies` lists it, is read from runs/studies.db here,
    # with the config the study recorded (with the folder there, it was read as a study file:
    # "cannot read the file: Is a directory").
    assert code == 0, out
    assert "best trial 1: val loss 2.2000" in out and "model 1 layer, 2 heads, width 32" in out
    assert "4 finished of n_trials 4; last activity" in out, out
    assert "study tiny (read by its name: its record alone)" in out  # it said "tiny (tiny)"
    # Its last run asked for 9 (--n-trials, or a ladder's rung_trials raised): read by its name
    # there is no study file to tell apart from that run (it said "in the study file", of the
    # first run's record).
    study = optuna.load_study(study_name="tiny", storage=url)
    study.set_user_attr("n_trials", 9)
    code, out = scaletune(capsys, "show", "tiny")
    assert "4 finished of n_trials 9; last activity" in out, out
    study.set_user_attr("n_trials", 4)
    code, out = scaletune(capsys, "best", "tiny")
    assert code == 0 and "lr=0.004" in out, out
    # Its report goes to its own folder where that is on this machine, else to runs/NAME here.
    code, out = scaletune(capsys, "report", "tiny")
    assert code == 0 and (cfg.folder / "report" / "index.html").is_file(), out
    shutil.rmtree(cfg.folder)
    code, out = scaletune(capsys, "report", "tiny")
    assert code == 0 and (here / "runs" / "tiny" / "report" / "index.html").is_file(), out
    code, out = scaletune(capsys, "export", "tiny", "-o", str(tmp_path / "final.yaml"))
    assert code == 0, out
    assert load_train_config(tmp_path / "final.yaml").optim.lr == pytest.approx(0.004)
    # From another folder, the storage is given.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out = scaletune(capsys, "best", "tiny")
    assert code == 2 and "no runs/studies.db in this folder" in out and "--storage" in out, out
    code, out = scaletune(capsys, "studies", "--storage", url)
    assert f"scaletune show NAME --storage {url}" in out, out
    # Its report goes beside that storage, runs/NAME as there, not to runs/NAME in this folder.
    code, out = scaletune(capsys, "report", "tiny", "--storage", url)
    assert code == 0 and not (elsewhere / "runs").exists(), out
    assert (here / "runs" / "tiny" / "report" / "index.html").is_file()
    # A relative SQLite path is this folder's, and is shown as the absolute one it is (echoed
    # as given, the next commands it printed broke from another folder).
    code, out = scaletune(capsys, "studies", "--storage", "sqlite:///../colleague/runs/studies.db")
    assert f"Studies in {url}" in out and f"scaletune show NAME --storage {url}" in out, out
    code, out = scaletune(capsys, "best", "tiny", "--storage", url)
    assert code == 0 and "lr=0.004" in out, out
    # A name that is not there lists the names that are; a file name is not looked up.
    code, out = scaletune(capsys, "show", "tyni", "--storage", url)
    assert code == 2 and "no study of that name" in out and "studies there: tiny" in out, out
    code, out = scaletune(capsys, "show", "tiny.yaml", "--storage", url)
    assert code == 2 and "file not found" in out, out


@pytest.mark.parametrize("command", ["report", "export", "fit"])
def test_report_export_and_fit_read_the_storage_given_on_the_command_line(tmp_path, capsys,
                                                                         command):
    path, cfg = study_file(tmp_path)
    longer = write_study(tmp_path, tiny_study(tmp_path, tmp_path / "text.txt", name="tiny-long",
                                              tokens_per_trial=81_920), "long.yaml")
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    for study, lr in ((path, 3e-3), (longer, 2e-3)):
        moved = load_study(study).model_copy(update={"storage": elsewhere})
        add_trial(make_study(moved), moved, params(lr), 2.4)
    args = {"report": [str(path), "-o", str(tmp_path / "report")],
            "export": [str(path), "-o", str(tmp_path / "final.yaml")],
            "fit": [str(path), str(longer), "-o", str(tmp_path / "laws.json")]}[command]
    # Rule: without `--storage` the study is looked for in the file's storage, and not found
    # there; with it, the command reads the study where `run --storage` put it.
    code, out = scaletune(capsys, command, *args)
    assert code == 2 and "run `scaletune run" in out, out
    code, out = scaletune(capsys, command, *args, "--storage", elsewhere)
    assert code == 0, out
    assert Path(args[-1]).exists()


def test_report_into_a_file_is_refused_by_name(finished, tmp_path, capsys):
    path, _, _ = finished
    before = path.read_bytes()
    for target in (path, path / "report"):
        code, out = scaletune(capsys, "report", str(path), "-o", str(target))
        # Rule: a report is a folder; a file given (or under a file) is named, not a traceback.
        assert code == 2, out
        assert f"-o {target}" in out and f"{path} is a file" in out and "Traceback" not in out
    assert path.read_bytes() == before


# --------------------------------------------------------------------------- best


def test_best_prints_exact_name_value_lines(finished, capsys):
    path, _, study = finished
    code = main(["best", str(path)])
    out = capsys.readouterr().out
    # Rule: one name=value line a parameter, exact values, nothing else on stdout (for scripts).
    # The weight decay that the searched tau gives and the study's fixed dropout are there too:
    # without them the lines were not the whole configuration.
    assert code == 0
    decay = study.best_trial.user_attrs["weight_decay"]
    assert out.splitlines() == ["lr=0.004", "tau=0.8", "warmup_frac=0.15", "batch_size=16",
                                f"weight_decay={decay}", "dropout=0.0"]


def test_best_json_has_the_trial_its_value_params_and_derived_values(finished, capsys):
    path, _, study = finished
    assert main(["best", str(path), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    best = study.best_trial
    assert record == {"study": "tiny", "trial": 1, "value": 2.2, "params": best.params,
                      "derived": {k: best.user_attrs[k] for k in
                                  ("weight_decay", "warmup_steps", "tokens_per_step")},
                      "fixed": {"dropout": 0.0}, "seed": 0}


def test_best_that_is_a_repeat_gives_its_training_seed(finished, capsys):
    from scaletune.search.noise import REPEAT_OF, TRAIN_SEED

    path, _, study = finished
    best = study.best_trial
    study.add_trial(optuna.trial.create_trial(  # `run --repeat-best 1`, luckier than seed 0
        params=best.params, distributions=best.distributions, value=best.value - 0.01,
        user_attrs={**best.user_attrs, REPEAT_OF: best.number, TRAIN_SEED: 1}))
    assert main(["best", str(path)]) == 0
    captured = capsys.readouterr()
    # Rule: the values and the seed that gave the best loss (export writes seed: 1; best gave
    # the values alone, which a script trained with seed 0), and a note on stderr of whose
    # config it is.
    assert captured.out.splitlines()[-1] == "seed=1"
    assert (f"trial 4 repeats trial {best.number}'s config with training seed 1 "
            "(--repeat-best)") in " ".join(captured.err.split())
    assert main(["best", str(path), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["trial"], record["seed"], record["repeat_of"]) == (4, 1, best.number)
    # The report's trials table says which rows are a config's repeats, with their seeds.
    import pandas as pd

    out = path.parent / "report"
    assert main(["report", str(path), "-o", str(out)]) == 0
    rows = pd.read_csv(out / "trials.csv").set_index("number")
    assert list(rows["train_seed"]) == [0, 0, 0, 0, 1]
    assert rows.loc[4, "repeat_of"] == best.number and rows["repeat_of"].isna().sum() == 4


def test_show_of_a_study_whose_driver_stopped_as_it_created_it_says_what_completes_it(
        tmp_path, capsys):
    # A driver killed between creating the study and writing its record: show said the study
    # records no config, and nothing of what to do.
    path, cfg = study_file(tmp_path)
    cfg.folder.mkdir(parents=True, exist_ok=True)
    optuna.create_study(study_name=cfg.name, storage=make_storage(cfg.storage_url))
    code, out = scaletune(capsys, "show", str(path))
    assert code == 0, out
    assert ("the study records no config (its driver stopped while it created it); using the "
            "study file as it is now; `scaletune run` of the file completes the record") in out


def test_best_of_a_study_without_a_complete_trial_is_an_error(tmp_path, capsys):
    path, cfg = study_file(tmp_path)
    study = make_study(cfg)
    add_trial(study, cfg, params(9e-3), 2.5, TrialState.PRUNED, trained=EVAL)
    code, out = scaletune(capsys, "best", str(path))
    assert code == 2, out
    # Rule: said of the study, not as errors in its file (which is right).
    assert f"{path}: study 'tiny' has no complete trial (1 pruned)" in out and "error" not in out
    code, out = scaletune(capsys, "export", str(path), "-o", str(tmp_path / "final.yaml"))
    assert code == 2 and f"{path}: study 'tiny' has no complete trial to export" in out, out
    assert "error" not in out
    # A trial a killed driver left running: both say what becomes of it, as show does.
    study.ask()
    study.set_user_attr("driver", {"host": "elsewhere", "pid": 1, "since": 0, "heartbeat": 0,
                                   "token": "gone"})
    for command in (["best", str(path)], ["export", str(path), "-o", str(tmp_path / "f.yaml")]):
        code, out = scaletune(capsys, *command)
        assert code == 2 and ("1 pruned, 1 running (no driver runs the study: it was left by a "
                              "stopped driver, and the next `scaletune run` queues it again)"
                              ) in out, out


# --------------------------------------------------------------------------- delete


def test_delete_with_yes_deletes_the_study_and_no_other(finished, capsys):
    path, cfg, _ = finished
    make_study(cfg.model_copy(update={"name": "tiny-wide"}))
    (cfg.folder / "report").mkdir(parents=True, exist_ok=True)
    (cfg.folder / "report" / "index.html").write_text("<html></html>")
    code, out = scaletune(capsys, "delete", str(path), "--yes")
    assert code == 0, out
    assert f"deleted study 'tiny' (4 trials) from {cfg.storage_url}" in out
    assert names_in(cfg.storage_url) == ["tiny-wide"]
    # Its folder is not the storage's to delete: named, and here it holds the storage too, so
    # no command to remove it is offered; where it does not, the command is.
    assert (f"its folder {cfg.folder} stays (its report and logs, and the storage; a new study "
            "of this name writes there too)") in out and "rm -r" not in out
    assert (cfg.folder / "report" / "index.html").exists()
    from scaletune.search.manage import _folder_left

    apart = cfg.model_copy(update={"storage": f"sqlite:///{cfg.folder.parent / 'other.db'}"})
    assert _folder_left(apart) == (f"its folder {cfg.folder} stays (its report and logs; a new "
                                   f"study of this name writes there too): remove it with rm -r "
                                   f"{cfg.folder} if not wanted")
    # Deleted from a copy of the storage, while the file's own storage holds the study: its
    # folder is that study's (removing it was suggested).
    make_study(cfg)
    from scaletune.search.storage import sqlite_path

    assert _folder_left(apart) == (f"its folder {cfg.folder} stays: the study 'tiny' in "
                                   f"{sqlite_path(cfg.storage_url)} writes there too")


@pytest.mark.parametrize("stdin", [io.StringIO("y\n"), None], ids=["a pipe", "closed"])
def test_delete_without_a_terminal_refuses_without_yes(finished, capsys, monkeypatch, stdin):
    path, cfg, _ = finished
    monkeypatch.setattr("sys.stdin", stdin)  # closed (`<&-`): an AttributeError's traceback
    code, out = scaletune(capsys, "delete", str(path))
    # Rule: no terminal to confirm on (a script, a pipe) and no --yes: nothing is deleted.
    assert code == 2, out
    assert "add --yes" in out
    assert names_in(cfg.storage_url) == ["tiny"]


@pytest.mark.parametrize("typed, deleted", [("y\n", True), ("yes\n", True), ("n\n", False),
                                            ("\n", False), ("", False)])
def test_delete_asks_on_a_terminal(finished, capsys, monkeypatch, typed, deleted):
    path, cfg, _ = finished
    monkeypatch.setattr("sys.stdin", Terminal(typed))
    code, out = scaletune(capsys, "delete", str(path))
    # Rule: only a "y" deletes; anything else (Enter, "n", end of input) keeps the study.
    assert "delete study 'tiny' (4 trials)" in out and "cannot be undone" in out
    assert (code, names_in(cfg.storage_url)) == ((0, []) if deleted else (1, ["tiny"]))


def test_a_delete_the_storage_refuses_is_said_not_a_traceback(finished, capsys, monkeypatch):
    import sqlite3

    path, cfg, _ = finished

    def read_only(**_):  # what Optuna raises on a storage file nobody may write
        try:
            raise sqlite3.OperationalError("attempt to write a readonly database")
        except sqlite3.OperationalError as e:
            raise optuna.exceptions.StorageInternalError(
                "An exception is raised during the commit.") from e

    monkeypatch.setattr("optuna.delete_study", read_only)
    code, out = scaletune(capsys, "delete", str(path), "--yes")
    assert code == 2, out
    assert ("delete: study 'tiny' in " + cfg.storage_url + " was not deleted: attempt to write "
            "a readonly database") in " ".join(out.split()), out
    assert names_in(cfg.storage_url) == ["tiny"]
    # The lease delete takes first is a write too: refused there, it was a traceback.
    import sqlalchemy.exc

    from scaletune.search.storage import Storage

    def refused(*_):
        raise sqlalchemy.exc.OperationalError(
            "INSERT", {}, sqlite3.OperationalError("attempt to write a readonly database"))

    monkeypatch.setattr(Storage, "swap_study_user_attr", refused)
    code, out = scaletune(capsys, "delete", str(path), "--yes")
    assert code == 2, out
    assert ("delete: study 'tiny' in " + cfg.storage_url + " was not deleted: attempt to write "
            "a readonly database") in " ".join(out.split()), out
    assert names_in(cfg.storage_url) == ["tiny"]


def test_delete_refuses_while_a_driver_runs_the_study(finished, capsys):
    path, cfg, study = finished
    pid = hold_lease(study)
    code, out = scaletune(capsys, "delete", str(path), "--yes")
    # Rule: a running study is not pulled from under its driver, --yes or not.
    assert code == 2, out
    assert f"is being run by another driver (pid {pid}" in out
    assert names_in(cfg.storage_url) == ["tiny"]


def test_delete_refuses_a_driver_that_starts_after_its_check(finished, capsys, monkeypatch):
    # A driver that took the study between delete's check and its delete ran on a study that
    # was gone. Delete now takes the driver's lease itself: one of the two has the study.
    path, cfg, study = finished
    live, pids = lease.live, []

    def a_driver_starts_now(held, *args, **kwargs):
        if not pids:
            pids.append(hold_lease(study))
        return live(held, *args, **kwargs)

    monkeypatch.setattr(lease, "live", a_driver_starts_now)
    code, out = scaletune(capsys, "delete", str(path), "--yes")
    assert code == 2, out
    assert f"is being run by another driver (pid {pids[0]}" in out
    assert names_in(cfg.storage_url) == ["tiny"]
    assert study.user_attrs["driver"]["token"] == "a-driver"  # its lease stands


# --------------------------------------------------------------------------- fit


def test_a_storage_option_that_misses_the_study_its_file_holds_says_so(finished, tmp_path,
                                                                      capsys):
    # "run `scaletune run FILE` first", said of a study that the file's own storage held.
    path, cfg, _ = finished
    nowhere = tmp_path / "nope" / "x.db"
    other = tmp_path / "other.db"
    optuna.create_study(study_name="else", storage=make_storage(f"sqlite:///{other}"))
    for url in (f"sqlite:///{nowhere}", f"sqlite:///{other}"):
        for command in ("show", "best", "report"):
            code, out = scaletune(capsys, command, str(path), "--storage", url)
            assert code == 2, out
            assert (f"the study file's own storage, {cfg.storage_url}, holds it: leave out "
                    "--storage") in out and "scaletune run" not in out, (command, out)


def test_a_storage_option_that_is_no_url_is_an_error_of_the_command_line(finished, capsys):
    # It was said as an error in the study file, which names no such storage.
    path, _, _ = finished
    for command in (["run", str(path), "--dry-run"], ["show", str(path)]):
        code, out = scaletune(capsys, *command, "--storage", "foo.db")
        assert code == 2, out
        assert ("1 error(s) in the command line: --storage: foo.db is not a storage URL" in
                " ".join(out.split())), out


def test_fit_names_the_file_of_a_study_that_has_not_run(finished, tmp_path, capsys):
    ran, _, _ = finished
    other = tmp_path / "b"
    other.mkdir()
    text = tmp_path / "corpus.txt"
    never = write_study(other, tiny_study(other, text, name="tiny-b", study_dir=str(other / "s")))
    code, out = scaletune(capsys, "fit", str(ran), str(never), "-o", str(tmp_path / "laws.json"))
    # Rule: the message names the file to run, not the study's name.
    assert code == 2, out
    assert f"run `scaletune run {never}` first" in out
    assert not (other / "s").exists()


def test_fit_refuses_a_study_given_twice(finished, tmp_path, capsys):
    ran, cfg, _ = finished
    laws = tmp_path / "laws.json"
    # By its file and by its name: its trials counted twice, and it was listed twice.
    code, out = scaletune(capsys, "fit", str(ran), cfg.name, "--storage", cfg.storage_url,
                          "-o", str(laws))
    assert code == 2, out
    assert (f"study 'tiny' ({cfg.storage_url}) is given 2 times: give each study once"
            in " ".join(out.split())), out
    assert not laws.exists()


def test_fit_refuses_a_study_whose_trials_are_models_of_several_sizes(finished, tmp_path, capsys):
    ran, cfg, _ = finished
    other = tmp_path / "b"
    other.mkdir()
    raw = tiny_study(other, tmp_path / "corpus.txt", name="sizes", study_dir=str(other / "s"))
    raw["search"].setdefault("other", {})["model.n_embd"] = {"choices": [16, 32]}
    sizes = write_study(other, raw)
    laws = tmp_path / "laws.json"
    code, out = scaletune(capsys, "fit", str(ran), str(sizes), "-o", str(laws))
    # Rule: refused before any storage is read, naming the study and the key it searches.
    assert code == 2, out
    assert ("study 'sizes' searches model.n_embd: its trials are models of several sizes, so "
            "it is at no one scale and a law fitted to it would mix them; fit studies that fix "
            "the model's size") in " ".join(out.split())
    assert not laws.exists() and not (other / "s").exists()


def test_laws_record_their_studies_and_a_study_unlike_them_is_told(tmp_path, capsys):
    # laws.json did not say what it was fitted on: studies of two data were fitted together
    # without a word, and a study of a model 4x larger on other data started from the laws'
    # centers as if they were its own.
    from scaletune.trainer.data import read_fingerprint

    path, cfg = study_file(tmp_path)
    longer = write_study(tmp_path, tiny_study(tmp_path, tmp_path / "text.txt", name="tiny-long",
                                              tokens_per_trial=81_920), "long.yaml")
    for study_path, lr, data in ((path, 3e-3, "aaaa-byte"), (longer, 2e-3, "bbbb-byte")):
        one = load_study(study_path)
        study = make_study(one)
        study.set_user_attr("data_fingerprint", data)
        add_trial(study, one, params(lr), 2.4)
    laws = tmp_path / "laws.json"
    code, out = scaletune(capsys, "fit", str(path), str(longer), "-o", str(laws))
    assert code == 0, out
    assert ("warning: the studies trained on 2 different data (tiny: aaaa-byte; tiny-long: "
            "bbbb-byte): the optima of one corpus and tokenizer are not another's") in out, out
    record = json.loads(laws.read_text())["fitted_on"]
    assert record == [
        {"study": "tiny", "n_layer": 1, "n_embd": 32, "tokens_per_trial": 40_960,
         "data": "aaaa-byte"},
        {"study": "tiny-long", "n_layer": 1, "n_embd": 32, "tokens_per_trial": 81_920,
         "data": "bbbb-byte"}]
    wider = tiny_study(tmp_path, tmp_path / "text.txt", name="wide",
                       priors={"laws": "fitted", "fitted_file": str(laws)})
    wider["model"] |= {"n_embd": 64}
    wide = write_study(tmp_path, wider, "wide.yaml")
    now = read_fingerprint(load_study(wide).data)
    for command in (["validate", str(wide)], ["run", str(wide), "--dry-run"]):
        code, out = scaletune(capsys, *command)
        assert code == 0, out
        assert (f"note: priors.fitted_file: the laws of {laws} were fitted on other data "
                f"(aaaa-byte, bbbb-byte) than this study's ({now}): their optima are of another "
                "problem; and they are in tokens per trial and were fitted on models of 1x32 "
                "(layers x width); this study's is 1x64 (4x the parameters), and an optimum in "
                "tokens moves with the model's size: their centers may be off here") in out, out
    # A study like the laws' own hears nothing.
    like = write_study(tmp_path, tiny_study(tmp_path, tmp_path / "text.txt", name="like",
                                            priors={"laws": "fitted", "fitted_file": str(laws)}),
                       "like.yaml")
    for name in ("tiny", "tiny-long"):
        optuna.load_study(study_name=name, storage=cfg.storage_url).set_user_attr(
            "data_fingerprint", now)
    code, out = scaletune(capsys, "fit", str(path), str(longer), "-o", str(laws))
    assert code == 0, out
    code, out = scaletune(capsys, "validate", str(like))
    assert code == 0 and "fitted_file: the laws" not in out, out
    # A file an earlier scaletune wrote (format 2 without the studies or a warmup law) was used
    # without a word, and `report` said its warmup law wanted scales.
    earlier = json.loads(laws.read_text())
    assert earlier["warmup_frac"] is not None
    earlier.pop("fitted_on")  # written from 2026-12-02 to 2026-12-04: a warmup law, no studies
    laws.write_text(json.dumps(earlier))
    code, out = scaletune(capsys, "validate", str(like))
    # The file as the study names it (a laws.json elsewhere, from `fit`, was taken for it).
    assert code == 0 and (f"note: priors.fitted_file: {laws} was written by an earlier "
                          "scaletune, which did not record the studies it fitted: nothing checks "
                          "that they match this one (data, model size, budget); fit") in flat(out)
    earlier.pop("warmup_frac")
    laws.write_text(json.dumps(earlier))
    code, out = scaletune(capsys, "validate", str(like))
    assert code == 0 and "(data, model size, budget), and it has no warmup law; fit" in flat(out)
    from scaletune.heuristics.fit import FittedLaws, missing_laws

    assert [line for line in missing_laws(FittedLaws.load(laws)) if "warmup" in line] == [
        "warmup_frac law: not in this file, which an earlier scaletune wrote before it fitted "
        "one: fit the studies again (`scaletune fit`, or `scaletune ladder`) to fit it; priors "
        "from these laws take warmup_frac from the published laws"]
    code, out = scaletune(capsys, "fit", str(path), str(longer), "-o", str(laws))
    assert code == 0, out
    # From Python, the same fit (it took ScalePoints only: heuristics.fit_studies).
    from scaletune.search import fit_laws

    again = fit_laws([path, longer], tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text())["lr"] == json.loads(
        laws.read_text())["lr"]
    assert again.lr is not None


@pytest.mark.parametrize("by", ["tokens", "params"])
def test_fit_at_one_scale_says_what_to_vary_and_writes_nothing(finished, tmp_path, capsys, by):
    ran, _, _ = finished
    laws = tmp_path / "laws.json"
    code, out = scaletune(capsys, "fit", str(ran), "--by", by, "-o", str(laws))
    # Rule: the error names the scale that must vary, the one value the study has, and the
    # ways on (another study, the ladder); not the other scale, along which one study does not
    # vary either (--by params answered with this error, suggesting --by tokens).
    assert code == 2, out
    what = ("tokens per trial (tokens_per_trial); the study given is at 40,960" if by == "tokens"
            else "model sizes (non-embedding parameters, 12 x n_layer x n_embd^2); the study "
                 "given is at 12,288")
    assert f"a law needs studies at two or more {what}: add a study at another scale" in out
    assert "`scaletune ladder`" in out
    assert "fit along the other scale" not in out
    assert not laws.exists()


def test_fit_replaces_only_laws_it_wrote(finished, tmp_path, capsys):
    from tests.search.test_report import laws_file

    ran, _, _ = finished
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for target, says in [(ran, "is a study or training file, not fitted laws, which writing "
                               "the laws would replace: give another path"),
                         (notes, "holds a file that is not fitted laws"),
                         (tmp_path, "is a folder; give the file to write"),
                         (blocker / "laws.json", "cannot write the fitted laws there (a file "
                                                 "stands where a folder of the path would be)")]:
        before = {p: p.read_bytes() for p in (ran, notes)}
        code, out = scaletune(capsys, "fit", str(ran), str(ran), "-o", str(target))
        # Rule: the study file given as the output by mistake, any other file, a folder: refused
        # by name, before any fit, and left byte for byte as they were.
        assert code == 2, out
        assert f"-o {target}" in out and says in out
        assert {p: p.read_bytes() for p in (ran, notes)} == before
    # An earlier fit's laws are no obstacle: the fit goes on (here to its own error).
    (tmp_path / "old").mkdir()
    laws = laws_file(tmp_path / "old")
    code, out = scaletune(capsys, "fit", str(ran), "-o", str(laws))
    assert code == 2 and "a law needs studies at two or more" in out and "-o " not in out
    # Nor is a folder not made yet (it was a FileNotFoundError traceback at the end of the fit).
    code, out = scaletune(capsys, "fit", str(ran), "-o", str(tmp_path / "new" / "laws.json"))
    assert code == 2 and "a law needs studies at two or more" in out and "-o " not in out


def two_scales(tmp_path: Path) -> tuple[Path, object, Path]:
    """Two finished studies of one model at 40,960 and 81,920 tokens per trial, a trial each:
    the study file, its config, and the longer study's file."""
    path, cfg = study_file(tmp_path)
    longer = write_study(tmp_path, tiny_study(tmp_path, tmp_path / "text.txt", name="tiny-long",
                                              tokens_per_trial=81_920), "long.yaml")
    for study, lr in ((path, 3e-3), (longer, 2e-3)):
        loaded = load_study(study)
        add_trial(make_study(loaded), loaded, params(lr), 2.4)
    return path, cfg, longer


def test_fit_says_which_study_has_learned_little_beyond_token_frequencies(tmp_path, capsys):
    path, cfg, longer = two_scales(tmp_path)  # the best loss of each: 2.4
    output = tmp_path / "laws.json"
    code, out = scaletune(capsys, "fit", str(path), str(longer), "-o", str(output))
    assert code == 0 and "token frequencies" not in out  # studies that recorded nothing
    storage = make_storage(cfg.storage_url)
    # What a model of the data's token frequencies alone scores, as `scaletune run` records it:
    # the short study's best is 2% below it (within its near-best band of 3%), the long one's 20%.
    optuna.load_study(study_name="tiny", storage=storage).set_user_attr("unigram_loss", 2.45)
    optuna.load_study(study_name="tiny-long", storage=storage).set_user_attr("unigram_loss", 3.0)
    code, out = scaletune(capsys, "fit", str(path), str(longer), "-o", str(output))
    # Rule: a study whose best is about what token frequencies score locates no optimum, and
    # the fit says which and what to do (its optimum was fitted as any other, unsaid).
    warning = ("study 'tiny' (40,960 tokens per trial): its best loss is 2.400, only 2.0% below "
               "the 2.450 that a model of its data's token frequencies alone scores: its trials "
               "have learned little beyond how often each token occurs")
    assert code == 0 and warning in flat(out), out
    saved = json.loads(output.read_text())
    assert [w.startswith("study 'tiny' (40,960") for w in saved["study_warnings"]] == [True]
    # Several are named in one warning; one above it is said to be above it.
    optuna.load_study(study_name="tiny-long", storage=storage).set_user_attr("unigram_loss", 2.3)
    code, out = scaletune(capsys, "fit", str(path), str(longer), "-o", str(output))
    assert ("studies 'tiny' (40,960 tokens per trial: best loss 2.400, only 2.0% below the "
            "2.450 that a model of its data's token frequencies alone scores) and 'tiny-long' "
            "(81,920: 2.400, above the 2.300): their trials have learned little") in flat(out), out
    assert len(json.loads(output.read_text())["study_warnings"]) == 1


def test_fit_of_a_study_a_driver_runs_says_it_is_running(tmp_path, capsys):
    # export, report and best said so of a study being run; fit fitted its trials of the moment
    # without a word.
    path, cfg, longer = two_scales(tmp_path)
    output = tmp_path / "laws.json"
    code, out = scaletune(capsys, "fit", str(path), str(longer), "-o", str(output))
    assert code == 0 and "running now" not in out, out
    pid = hold_lease(optuna.load_study(study_name="tiny-long",
                                       storage=make_storage(cfg.storage_url)))
    code, out = scaletune(capsys, "fit", str(path), str(longer), "-o", str(output))
    said = (f"study 'tiny-long' ({longer}): the study is running now (pid {pid} on "
            f"{socket.gethostname()}")
    assert code == 0 and said in out and "its best may still change" in out, out
    assert [w.startswith(said) for w in json.loads(output.read_text())["study_warnings"]] == [
        True]


def test_a_loss_against_token_frequencies_is_said_with_the_digits_that_tell_them_apart():
    from scaletune.search.summary import against_frequencies, frequencies_only

    # Rule: "no more than 3% below" is 3% of the frequencies' loss, as the percentage said is
    # (2.92% below did not warn: the band was taken as 3% of the best loss).
    assert frequencies_only(3.168, 3.2634) and not frequencies_only(3.16, 3.2634)
    assert against_frequencies(3.168, 3.2634) == "3.168, only 2.9% below the 3.263"
    # Two losses that round alike are not "5.736, above the 5.736" or "only 0.0% below", and
    # both are given to as many decimals ("3.26, about the 3.261").
    assert against_frequencies(5.7358, 5.73579) == "5.73580, about the 5.73579"
    assert against_frequencies(3.26, 3.2612) == "3.260, about the 3.261"
    assert against_frequencies(5.7917, 5.7358) == "5.792, above the 5.736"


def test_fit_over_other_laws_keeps_them_and_says_so(tmp_path, capsys):
    from tests.search.test_report import laws_file

    path, cfg, longer = two_scales(tmp_path)
    earlier = laws_file(tmp_path).read_bytes()  # laws.json, fitted on other studies
    output = tmp_path / "laws.json"
    code, out = scaletune(capsys, "fit", str(path), str(longer), "-o", str(output))
    # Rule: studies seeded from the file take the new laws at their next launch; the laws it
    # replaced are kept beside it, and the command says where (it replaced them unsaid).
    assert code == 0, out
    kept = tmp_path / "laws.earlier-1.json"
    assert f"wrote {output} (it replaces the laws that were there, kept as {kept})" in out, out
    assert kept.read_bytes() == earlier and output.read_bytes() != earlier
    code, out = scaletune(capsys, "fit", str(path), str(longer), "-o", str(output))
    assert code == 0 and "it replaces" not in out and not (tmp_path / "laws.earlier-2.json").exists()


def test_report_and_export_into_a_folder_that_refuses_writes_say_so_in_one_line(
        finished, tmp_path, capsys):
    import subprocess

    path, cfg, _ = finished
    locked = tmp_path / "locked"
    locked.mkdir()
    if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not allowed here (root ignores permissions, so no other way)")
    try:
        report = scaletune(capsys, "report", str(path), "-o", str(locked / "report"))
        export = scaletune(capsys, "export", str(path), "-o", str(locked / "final.yaml"))
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
    # Both were PermissionError tracebacks (exit 1).
    code, out = report
    assert code == 2, out
    assert (f"-o {locked / 'report'}: cannot write the report there: Operation not permitted "
            f"({locked / 'report'}): give a path in a writable folder") in out, out
    code, out = export
    assert code == 2, out
    assert f"-o {locked / 'final.yaml'}: cannot write the training config there: Operation " \
           "not permitted" in out, out
    assert list(locked.iterdir()) == []


def test_report_and_export_on_a_full_disk_say_so_in_one_line(finished, tmp_path, capsys):
    from tests.trainer.test_bad_files import full_disk

    path, cfg, _ = finished
    full = tmp_path / "full"
    full.mkdir()
    with full_disk(full):
        report = scaletune(capsys, "report", str(path), "-o", str(full / "report"))
        export = scaletune(capsys, "export", str(path), "-o", str(full / "final.yaml"))
        left = sorted(p.name for p in full.iterdir())
    # Both were tracebacks (exit 1): a write into an open file names no file.
    for (code, out), what, where in ((report, "the report", "report"),
                                     (export, "the training config", "final.yaml")):
        assert code == 2, out
        assert (f"-o {full / where}: cannot write {what} there: No space left on device "
                f"({full / where if where == 'report' else full}): free space there, or give "
                "a path on another disk") in out, out
    assert "final.yaml" not in left  # written whole or not at all


# A Ctrl-C that lands in a finalizer is one Python drops with a warning: the loop below tries
# again, so the warning is what it expects.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_ctrl_c_in_a_command_is_one_line_and_the_shells_code(finished, tmp_path, capsys,
                                                             request):
    import signal
    import threading

    path, _, _ = finished
    # The report draws for seconds; Ctrl-C lands in it. It was a KeyboardInterrupt traceback.
    # Python drops one that lands in a finalizer (SQLAlchemy's weakref callbacks): then the
    # report ends as usual, and the next try sends it at another moment.
    codes = []
    # pytest-xdist's workers ignore SIGINT; a command run from a shell has Python's own handler.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    for delay in (0.3, 0.5, 0.8, 1.1, 0.4, 0.7, 1.4):
        timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            codes.append(main(["report", str(path), "-o", str(tmp_path / f"report{delay}")]))
        finally:
            timer.cancel()
        if codes[-1] == 130:
            break
    assert codes[-1] == 130 and set(codes) <= {0, 130}, codes
    assert capsys.readouterr().err.strip().endswith("scaletune report: interrupted")


def test_ctrl_c_as_a_figure_renders_waits_for_its_end(finished, tmp_path, capsys, request,
                                                     monkeypatch):
    # Raised inside matplotlib's rendering, the KeyboardInterrupt left its state half made:
    # the next figure failed on it ("ValueError: Invalid bounding box", a traceback, exit 1).
    import signal

    from matplotlib.figure import Figure

    path, _, _ = finished
    rendered = []
    real = Figure.savefig

    def signalled(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        rendered.append(real(self, *args, **kwargs))  # reached only if the signal waited

    monkeypatch.setattr(Figure, "savefig", signalled)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a shell
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    assert main(["report", str(path), "-o", str(tmp_path / "report")]) == 130
    assert len(rendered) == 1  # the figure was written, then the command stopped
    assert capsys.readouterr().err.strip().endswith("scaletune report: interrupted")


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_a_real_study_through_every_command(tmp_path, capsys):
    path, cfg = study_file(tmp_path, n_trials=6)
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    assert main(["run", str(path), "--n-trials", "2", "--storage", url]) == 0
    capsys.readouterr()
    # Rule: --n-trials and --storage replaced the file's values for this launch.
    study = optuna.load_study(study_name="tiny", storage=make_storage(url))
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 2
    assert not cfg.folder.exists()
    # A launch with nothing to run leaves no folder either: its checks made runs/tiny/ beside
    # a file whose storage is the default one, runs/studies.db (here, a copy of this one).
    (tmp_path / "default").mkdir()
    beside, plain = study_file(tmp_path / "default", study_dir=None, n_trials=2)
    (tmp_path / "default" / "runs").mkdir()
    shutil.copy(tmp_path / "elsewhere.db", tmp_path / "default" / "runs" / "studies.db")
    assert main(["run", str(beside)]) == 0
    assert "nothing to run" in capsys.readouterr().out
    assert plain.folder == tmp_path / "default" / "runs" / "tiny" and not plain.folder.exists()

    code, out = scaletune(capsys, "studies", "--storage", url)
    assert code == 0 and "tiny 2 complete" in out, out
    code, out = scaletune(capsys, "show", str(path), "--storage", url)
    # Rule: the file's n_trials, and what the last launch asked for where it differs.
    assert code == 0 and "2 finished of n_trials 6 in the study file; its last run asked for 2" \
        in out, out
    assert main(["best", str(path), "--storage", url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("=")[0] for line in lines] == [*study.best_trial.params, "weight_decay",
                                                      "dropout"]
    code, out = scaletune(capsys, "delete", str(path), "--storage", url, "--yes")
    assert code == 0, out
    assert names_in(url) == []
    assert yaml.safe_load(path.read_text())["n_trials"] == 6  # the file is never changed


def test_show_lists_why_trials_failed_most_frequent_first():
    def failed(reason: str | None, retried: bool = False) -> optuna.trial.FrozenTrial:
        attrs = {"retried": retried} | ({"fail_reason": reason} if reason else {})
        return optuna.trial.create_trial(state=TrialState.FAIL, user_attrs=attrs)

    trials = [failed("OOM"), failed("NaN"), failed("OOM"), failed("stopped", retried=True),
              failed(None), failed("a"), failed("b")]
    for number, t in enumerate(trials):
        t.number = number
    # Rule: a reason per line with its trials, most frequent first; a failure that ran again
    # (a stopped driver's) is left out; past three reasons, how many more and where they are.
    assert _failures(trials) == [
        "trials 0, 2: OOM", "trial 1: NaN", "trial 4: no reason recorded",
        "and 2 other reason(s) (`scaletune report`: trials.csv)"]
    assert _failures([]) == []
    # The failures that did run again have a line of their own (show's "run again").
    assert _failures(trials, run_again=True) == ["trial 3: stopped"]


ASKED = ("pruner never stops a trial (it is asked at 4 evaluations, every 8,192 tokens up to "
         "32,768; not at the last, which ends the trial)")
"""A trial of the tiny study: 40,960 tokens evaluated every 8,192, the pruner asked at the first
four evaluations (not at the fifth, the budget, which ends it)."""


@pytest.mark.parametrize(("pruner", "expected"), [
    ({"name": "median", "n_warmup_steps": "2M", "n_startup_trials": 1},
     f"pruner.n_warmup_steps: 2,000,000 tokens: the median {ASKED}"),
    # Within the budget, past the last evaluation the pruner is asked at: it said nothing.
    ({"name": "median", "n_warmup_steps": 36_000, "n_startup_trials": 1},
     f"pruner.n_warmup_steps: 36,000 tokens: the median {ASKED}"),
    ({"name": "hyperband", "min_resource": "1M"},
     "pruner.min_resource: its first rung is at 1,000,000 tokens: the hyperband pruner"),
    ({"name": "successive_halving", "min_early_stopping_rate": 2},
     "pruner.min_resource: its first rung is at 73,728 tokens: the successive_halving pruner"),
    ({"name": "predicted", "n_startup_trials": 4},
     "pruner.n_startup_trials: 4, and the study runs 4 trials: the predicted pruner waits for "
     "that many complete trials, so it never stops one"),
    ({"name": "predicted", "rank": 7},
     "pruner.rank: 7, and the study runs 4 trials: the predicted pruner waits for that many "
     "complete trials, so it never stops one"),
    ({"name": "wilcoxon", "n_startup_steps": 5},
     f"pruner.n_startup_steps: 5 needs 5 evaluations: the wilcoxon {ASKED}"),
    ({"name": "patient", "patience": 3},
     f"pruner.patience: 3 needs 5 evaluations: the patient {ASKED}"),
    ({"name": "patient", "wrapped": {"name": "median", "n_warmup_steps": 40_000,
                                     "n_startup_trials": 1}},
     f"pruner.wrapped (median).n_warmup_steps: 40,000 tokens: the median {ASKED}"),
    ({"name": "median"}, "eval_every_tokens: 40,960 of a trial's 40,960 tokens: the pruner is "
     "asked at no evaluation"),
    # Its default, as a pruner named alone gets it: nothing was said.
    ({"name": "median", "n_warmup_steps": 0}, "pruner.n_startup_trials: 4 (its default), and the "
     "study runs 4 trials: the median pruner waits for that many complete trials"),
], ids=["warmup past the budget", "warmup past the last evaluation asked",
        "first rung past the budget", "first rung past the evaluations by its rate",
        "start-up of every trial", "rank past the trials", "wilcoxon start-up past the evaluations",
        "patience past the evaluations", "a wrapped pruner's warmup",
        "one evaluation, at the budget", "start-up of every trial by default"])
def test_a_pruner_that_can_stop_no_trial_is_noted(tmp_path, shakespeare, pruner, expected):
    # Each ran its study to the end, pruning nothing, without a word.
    every = 40_960 if expected.startswith("eval_every_tokens") else 8_192
    cfg = validate_study(tiny_study(tmp_path, shakespeare, pruner=pruner, n_trials=4,
                                    eval_every_tokens=every))
    assert [n for n in plan_notes(cfg) if n.startswith(("pruner.", "eval_every_tokens:"))] == [
        next(n for n in pruner_notes(cfg) if n.startswith(expected))]
    assert expected in " ".join(plan_notes(cfg))
    # The advice is what the pruner takes: hyperband has no min_early_stopping_rate (it refused
    # the key its note advised).
    said = " ".join(pruner_notes(cfg))
    assert ("min_early_stopping_rate" in said) == (pruner["name"] == "successive_halving"), said
    # The defaults say nothing, nor does a pruner that can stop trials.
    for quiet in ({"name": "median"}, {"name": "predicted"}, {"name": "hyperband"},
                  {"name": "wilcoxon"}, {"name": "patient"}, {"name": "patient", "patience": 2},
                  {"name": "median", "n_warmup_steps": 32_768},
                  {"name": "successive_halving", "min_early_stopping_rate": 1}):
        assert pruner_notes(validate_study(tiny_study(tmp_path, shakespeare, pruner=quiet,
                                                      n_trials=6))) == []
    # The predicted pruner needs 2 complete trials whatever it is given: a study of one or two
    # was told to give "a smaller rank" (none is), or nothing (n_startup_trials 0 or 1).
    for n in (1, 2):
        for pruner in ({"name": "predicted"}, {"name": "predicted", "n_startup_trials": 0},
                       {"name": "predicted", "n_startup_trials": 2}):
            cfg = validate_study(tiny_study(tmp_path, shakespeare, n_trials=n, pruner=pruner))
            assert pruner_notes(cfg) == [
                f"pruner: the predicted pruner needs 2 complete trials at least before it stops "
                f"one, and the study runs {n} trial{'s' * (n > 1)}: it never stops one; run more "
                "trials, or pruner: none"]


def test_show_names_the_files_a_local_dataset_reads(tmp_path, shakespeare):
    from scaletune.search.manage import _config_rows

    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"text": "a document"}\n')
    cfg = validate_study(tiny_study(tmp_path, shakespeare, data={
        "source": "hf", "dataset": "json", "data_files": [str(docs)], "tokenizer": "byte"}))
    # It said "hf json, tokenizer byte": which files, it did not say.
    assert dict(_config_rows(cfg))["data"] == (f"hf json of {docs}, tokenizer byte; validation: "
                                               "its last 0.1")


def test_show_gives_the_model_and_trainer_the_trials_train_with(tmp_path, shakespeare):
    from scaletune.search.manage import _config_rows

    raw = tiny_study(tmp_path, shakespeare)
    raw["model"] = {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32}
    raw["search"]["other"] = {"model.norm": {"value": "rmsnorm"},
                              "model.n_embd": {"value": 64},
                              "model.n_layer": {"choices": [1, 2]}}
    raw["trainer"] = {"optim": {"name": "sgd", "schedule": "linear"}, "micro_batch_size": 2}
    raw["data"] = {**raw["data"], "train_tokens": 20_000}
    rows = dict(_config_rows(validate_study(raw)))
    # It said "1 layer, 2 heads, width 32 ... layernorm": the file's model:, of trials that
    # trained at width 64 with rmsnorm; and nothing of the optimizer, or of train_tokens.
    assert rows["model"] == "layers searched, 2 heads, width 64, block 32 (learned positions, " \
                            "norm rmsnorm)"
    assert rows["trainer"] == "optimizer sgd, schedule linear, dtype auto, micro-batches of 2"
    assert rows["data"].endswith(", tokenizer byte, trains on its first 20,000 tokens; "
                                 "validation: its last 0.1")
    # What search.other sets of the trainer: every trial's too (the trainer: line said other).
    raw["search"]["other"] = {"optim.schedule": {"choices": ["cosine", "wsd"]},
                              "dtype": {"choices": ["float32", "bfloat16"]},
                              "micro_batch_size": {"value": 4}, "max_loss": {"value": 9.0}}
    rows = dict(_config_rows(validate_study(raw)))
    assert rows["model"] == "1 layer, 2 heads, width 32, block 32 (learned positions, norm " \
                            "layernorm)"
    assert rows["trainer"] == ("optimizer sgd, schedule searched, dtype searched, micro-batches "
                               "of 4, max_loss 9.0")


def test_fit_reads_what_its_studies_trained_and_takes_their_names(tmp_path, capsys):
    path, cfg, longer = two_scales(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["model"]["n_embd"] = 64  # edited since its study ran: validate refuses the file
    path.write_text(yaml.safe_dump(raw))
    output = tmp_path / "laws.json"
    code, out = scaletune(capsys, "fit", str(path), str(longer), "-o", str(output))
    # Rule: the fit reads the config the trials trained with (as show and report do), and says
    # the file changed; it warned of "models of 2 sizes" from the file and recorded the other.
    assert code == 0, out
    # Rule: the note names what changed, as `scaletune run` does (it said only "changed").
    assert (f"study 'tiny' ({path}): the study file changed since the study ran (model.n_embd: "
            "32 -> 64); using the config stored in the study") in flat(out)
    assert "models of 2 sizes" not in out
    assert [s["n_embd"] for s in json.loads(output.read_text())["fitted_on"]] == [32, 32]
    # The file is named as the studies' files read it (it was the path from this folder).
    assert ("use it with priors: {laws: fitted, fitted_file: laws.json} (a path from the "
            "studies' folder)") in flat(out)
    # Rule: the studies' names, as a ladder's rungs have no files (it was "file not found").
    by_name = tmp_path / "by-name" / "laws.json"
    code, out = scaletune(capsys, "fit", "tiny", "tiny-long", "--storage", cfg.storage_url,
                          "-o", str(by_name))
    assert code == 0, out
    assert f"fitted_file: {by_name}}}" in flat(out) and by_name.is_file()
    # A name that YAML reads otherwise is quoted: pasted, the line was not valid YAML.
    odd = tmp_path / "laws #2, v{1}.json"
    code, out = scaletune(capsys, "fit", str(path), str(longer), "-o", str(odd))
    line = flat(out).split("use it with ")[1].split(" (a path")[0]
    assert code == 0 and yaml.safe_load(line) == {
        "priors": {"laws": "fitted", "fitted_file": odd.name}}, line
    # And the command that lists the studies of a storage in a folder with a space in its name
    # quotes it, as the end of a run does.
    (tmp_path / "a folder").mkdir()
    shutil.copy(cfg.storage_url.removeprefix("sqlite:///"), tmp_path / "a folder" / "s.db")
    code, out = scaletune(capsys, "studies", "--storage", f"sqlite:///{tmp_path}/a folder/s.db")
    command = flat(out).split("one study, by its name: ")[1].split(" (or")[0]
    assert shlex.split(command)[-2:] == ["--storage", f"sqlite:///{tmp_path}/a folder/s.db"]
    # A password in the URL (which SQLite does not read) is not printed in the command either.
    code, out = scaletune(capsys, "studies", "--storage",
                          f"sqlite:///{tmp_path}/a folder/s.db?password=s3cret")
    assert code == 0 and "s3cret" not in out, out
    assert "one study, by its name: scaletune show NAME --storage URL (or" in flat(out)


def test_optimizer_fields_that_the_optimizer_or_schedule_does_not_read_are_noted(
        tmp_path, shakespeare):
    from scaletune.trainer.config import TrainConfig

    # Each trained as if it were not there, without a word.
    raw = tiny_study(tmp_path, shakespeare,
                     trainer={"optim": {"name": "sgd", "beta2": 0.99, "schedule": "wsd",
                                        "min_lr_ratio": 0.05, "decay_frac": 0.3}})
    assert ("trainer.optim.beta2 is read only when trainer.optim.name is adamw or muon (here "
            "sgd); trainer.optim.min_lr_ratio is read only when trainer.optim.schedule is cosine "
            "(here wsd): not used") in plan_notes(validate_study(raw))
    # A study that searches the optimizer may read them.
    raw["search"]["other"] = {"optim.name": {"choices": ["sgd", "adamw"]},
                              "optim.schedule": {"choices": ["wsd", "cosine"]}}
    assert not [n for n in plan_notes(validate_study(raw)) if "is read only when" in n]
    run = TrainConfig.model_validate({"model": {"n_layer": 1, "n_head": 2, "n_embd": 32,
                                                "block_size": 32}, "tokens": 4096,
                                      "batch_size": 4, "out_dir": "out",
                                      "optim": {"name": "adamw", "muon_lr": 0.05}})
    assert run.notes() == ["optim.muon_lr is read only when optim.name is muon (here adamw): "
                           "not used"]
    assert "muon_lr" not in run.optim.unread_defaults()  # given: written, and noted
    assert set(TrainConfig.model_validate({**run.model_dump(), "optim": {}})
               .optim.unread_defaults()) == {"muon_lr", "muon_momentum", "nesterov", "decay_frac"}
    # The same of a model's: rope_theta with learned positions trained as if it were not there.
    roped = TrainConfig.model_validate({**run.model_dump(), "optim": {},
                                        "model": {**run.model.model_dump(), "rope_theta": 77}})
    assert roped.notes() == ["model.rope_theta is read only when model.positions is rope (here "
                             "learned): not used"]
    # At their defaults, as an earlier `export` wrote every field of a final.yaml: no note (it
    # noted four of them at every train and resume of such a file).
    written = TrainConfig.model_validate({**run.model_dump(), "optim": {
        "name": "adamw", "muon_lr": type(run.optim).model_fields["muon_lr"].default,
        "decay_frac": type(run.optim).model_fields["decay_frac"].default}})
    assert {"muon_lr", "decay_frac"} <= written.optim.model_fields_set
    assert written.notes() == []


def test_a_field_searched_that_no_trial_reads_is_noted(tmp_path, shakespeare):
    # Set in the file it had a note; searched, the trials spent a dimension on it without one.
    raw = tiny_study(tmp_path, shakespeare)
    raw["search"]["other"] = {"optim.muon_lr": {"low": 0.01, "high": 0.1},
                              "model.rope_theta": {"low": 1000, "high": 100000, "log": True}}
    said = " ".join(plan_notes(validate_study(raw)))
    assert ("search.other.model.rope_theta is read only when model.positions is rope (here "
            "learned): its values train alike") in said, said
    assert ("search.other.optim.muon_lr is read only when trainer.optim.name is muon (here "
            "adamw): its values train alike") in said, said
    raw["search"]["other"]["optim.name"] = {"choices": ["adamw", "muon"]}  # then some read it
    assert "muon_lr is read only" not in " ".join(plan_notes(validate_study(raw)))


def test_a_dropout_searched_that_the_model_s_own_site_rates_override_is_noted(tmp_path,
                                                                            shakespeare):
    # With a rate at every site, the searched dropout set model.dropout, which no site read:
    # three trials drew three rates and ended on one loss, and validate said "ok".
    sites = {f"{site}_dropout": 0.0 for site in ("embd", "attn", "resid", "mlp")}
    raw = tiny_study(tmp_path, shakespeare)
    raw["model"] = {**raw["model"], **sites}
    raw["search"]["dropout"] = {"low": 0.0, "high": 0.5}
    said = " ".join(plan_notes(validate_study(raw)))
    assert ("search.dropout sets model.dropout, which no dropout site reads here "
            "(model.embd_dropout, model.attn_dropout, model.resid_dropout, model.mlp_dropout "
            "each give their own rate): its values train alike") in said, said
    # Some sites of their own (one searched under search.other): the note names the rest.
    del raw["model"]["embd_dropout"], raw["model"]["resid_dropout"], raw["model"]["mlp_dropout"]
    raw["search"]["other"] = {"model.mlp_dropout": {"low": 0.0, "high": 0.2}}
    said = " ".join(plan_notes(validate_study(raw)))
    assert ("search.dropout sets the rate of the dropout sites that give none of their own "
            "(embd, resid) only: model.attn_dropout, model.mlp_dropout keep their own") in said
    # A dropout fixed, or sites left to it: nothing to say.
    raw["search"]["dropout"] = {"value": 0.1}
    assert "search.dropout" not in " ".join(plan_notes(validate_study(raw)))
    raw["search"]["dropout"] = {"low": 0.0, "high": 0.5}
    del raw["model"]["attn_dropout"], raw["search"]["other"]
    assert "search.dropout" not in " ".join(plan_notes(validate_study(raw)))


def test_a_study_that_trains_with_sgd_or_muon_or_on_mps_here_is_told_what_that_means(
        tmp_path, shakespeare):
    from scaletune.search.runner import preflight
    from scaletune.trainer.errors import ConfigError

    # Each ran without a word: muon's hidden matrices at a fixed muon_lr while search.lr moved
    # the rest, sgd's weight decay read as an AdamW tau, and mps trials failing one by one.
    muon = validate_study(tiny_study(tmp_path, shakespeare, trainer={"optim": {"name": "muon"}}))
    assert ("trainer.optim.name muon: the priors are scaling laws fitted on AdamW, so their "
            "centers are a guess here; under muon, search.lr is the lr of the AdamW groups "
            "(embeddings, head, norms); the hidden matrices train at trainer.optim.muon_lr (0.02) "
            "in every trial") in " ".join(plan_notes(muon))
    raw = tiny_study(tmp_path, shakespeare)
    raw["search"]["other"] = {"optim.name": {"choices": ["adamw", "sgd"]}}
    # Named as the file searches it (it said trainer.optim.name, which the file left at adamw).
    assert ("search.other.optim.name sgd: the priors are scaling laws fitted on AdamW, so their "
            "centers are a guess here; under sgd, weight decay is torch's L2 penalty") in " ".join(
        plan_notes(validate_study(raw)))
    assert not [n for n in plan_notes(validate_study(tiny_study(tmp_path, shakespeare)))
                if "fitted on AdamW" in n]
    on_mps = validate_study(tiny_study(tmp_path, shakespeare, trainer={"device": "mps"}))
    said = "trainer.device: mps is Apple's GPU, and this machine (Linux "
    assert any(n.startswith(said) for n in plan_notes(on_mps))
    with pytest.raises(ConfigError, match=re.escape(said)):  # before Ray starts
        preflight(on_mps)


def test_a_study_of_bfloat16_trials_on_a_cpu_without_bfloat16_arithmetic_is_noted(
        tmp_path, shakespeare, monkeypatch):
    from scaletune.trainer import kernels

    # Its trials trained several times slower than in float32, without a word. The CPU under
    # test may compute in bfloat16: here it does not (its flags: test_kernels.py).
    monkeypatch.setattr(kernels, "cpu_bf16_arithmetic", lambda cpuinfo=None: False)
    said = "trainer.dtype: bfloat16 on this machine's CPU, which has no bfloat16 arithmetic"
    bf16 = tiny_study(tmp_path, shakespeare, trainer={"dtype": "bfloat16"})
    assert any(n.startswith(said) for n in plan_notes(validate_study(bf16)))
    # Not for trials on GPUs, nor on a cluster's CPUs, nor in float32.
    on_gpus = {"workers": {**bf16["workers"], "gpus_per_trial": 1}}
    for other in (on_gpus, {"workers": {**bf16["workers"], "address": "auto"}},
                  {"trainer": {"dtype": "auto"}}):
        assert not [n for n in plan_notes(validate_study(bf16 | other)) if said in n], other
    # device: cpu trains on the CPU though Ray gives each trial a GPU.
    on_cpu = bf16 | on_gpus | {"trainer": {"dtype": "bfloat16", "device": "cpu"}}
    assert any(n.startswith(said) for n in plan_notes(validate_study(on_cpu)))
    # search.other's dtype is what the trials train with: its bfloat16 is noted, and
    # trainer.dtype's is not where it fixes float32 (the note contradicted the one above it).
    searched = tiny_study(tmp_path, shakespeare)
    searched["search"]["other"] = {"dtype": {"choices": ["bfloat16", "float32"]}}
    assert any(n.startswith("search.other.dtype: bfloat16 on this machine's CPU")
               for n in plan_notes(validate_study(searched)))
    bf16["search"]["other"] = {"dtype": {"value": "float32"}}
    assert not [n for n in plan_notes(validate_study(bf16)) if "no bfloat16 arithmetic" in n]


def test_empty_options_and_a_node_rank_alone_are_refused(finished, tmp_path, capsys):
    path, cfg, _ = finished
    report = cfg.folder / "report"
    # `studies --storage ''` was a traceback (TypeError); `report -o ''` wrote over the default
    # report without a word.
    code, out = scaletune(capsys, "studies", "--storage", "")
    assert code == 2 and "storage: '' is not a storage URL" in out, out
    code, out = scaletune(capsys, "report", str(path), "-o", "")
    assert code == 2 and "an empty path: give the report's folder" in out, out
    assert not report.exists()
    # `train --node-rank 5` alone trained on one node as rank 0, the option ignored.
    final = tmp_path / "final.yaml"
    assert scaletune(capsys, "export", str(path), "-o", str(final))[0] == 0
    code, out = scaletune(capsys, "train", str(final), "--node-rank", "5")
    assert code == 2 and "--node-rank must be in 0..0 (--nnodes 1), got 5" in out, out
    assert not (tmp_path / "final-run").exists()
    # `run --detach --dry-run` without a job server printed the whole plan, then refused.
    main(["run", str(path), "--detach", "--dry-run"])
    captured = capsys.readouterr()
    assert "no Ray job server" in captured.err and captured.out == ""


def test_a_name_or_storage_path_too_long_for_a_file_is_an_error_not_a_traceback(
        finished, tmp_path, capsys):
    # Path.is_file() raises ENAMETOOLONG (Python 3.11 swallows only a missing file): show, best,
    # report, export, fit and studies ended in a traceback.
    path, _, _ = finished
    long = "a" * 300
    code, out = scaletune(capsys, "show", long, "--storage", f"sqlite:///{tmp_path / 'x.db'}")
    assert code == 2 and "no such study file" in out, out
    code, out = scaletune(capsys, "show", str(path), "--storage",
                          f"sqlite:///{tmp_path / long}.db")
    # (the path cut in its middle, as every error line's run of over 200 characters is)
    assert code == 2 and re.search(r"storage: cannot use /\S+\.\.\.a+\.db: File name too long",
                                   out), out
    # A name looked up in an in-memory database said "no such table: version_info".
    code, out = scaletune(capsys, "show", "tiny", "--storage", "sqlite://")
    assert code == 2 and "sqlite:// is an in-memory SQLite database" in out, out
