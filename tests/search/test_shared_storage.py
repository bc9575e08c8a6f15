"""One storage per folder: the studies whose files lie in one folder share runs/studies.db, so
that the study list and the dashboard hold them all. Each keeps its own folder runs/<name>/, its
own driver lease and its own deletion; a study that ran with its own runs/<name>/study.db
(scaletune 0.1) resumes there, and one that sets study_dir keeps study.db in it; two drivers
write the shared file at once without "database is locked"."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from scaletune.search.cli import main
from scaletune.search.config import load_study
from scaletune.search.plan import SearchPlan
from scaletune.search.runner import _refuse_a_second_driver
from scaletune.search.storage import make_storage, sqlite_path
from scaletune.search.studies import open_study
from scaletune.trainer.errors import ConfigError, SetupError
from tests.search.helpers import dashboard_api, flat, scaletune_run, tiny_study, write_study
from tests.search.test_export import add_trial, make_study, params
from tests.search.test_manage import hold_lease


def two_study_files(tmp_path: Path, text: Path, **overrides) -> tuple[Path, Path]:
    """a.yaml (study "tiny") and b.yaml (study "tiny-b") in one folder, with the default study
    folders and storage."""
    raw = tiny_study(tmp_path, text, **overrides)
    del raw["study_dir"]
    a = write_study(tmp_path, raw, "a.yaml")
    b = write_study(tmp_path, {**raw, "name": "tiny-b"}, "b.yaml")
    return a, b


def scaletune(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, flat(re.sub("[│┃]", " ", captured.out + captured.err))


# --------------------------------------------------------------------------- where studies live


def test_studies_beside_one_another_share_one_storage_and_keep_their_folders(tmp_path, shakespeare):
    a, b = two_study_files(tmp_path, shakespeare)
    first, second = load_study(a), load_study(b)
    # Rule: one SQLite file beside the study folders, runs/studies.db; a folder each.
    shared = f"sqlite:///{tmp_path / 'runs' / 'studies.db'}"
    assert first.storage_url == second.storage_url == shared
    assert (first.folder, second.folder) == (tmp_path / "runs" / "tiny",
                                             tmp_path / "runs" / "tiny-b")


def test_a_study_that_sets_its_folder_keeps_its_storage_there(tmp_path, shakespeare):
    path = write_study(tmp_path, tiny_study(tmp_path, shakespeare, study_dir="mine"))
    # Rule: a folder of the study's own holds all of it, the storage too (study.db).
    assert load_study(path).storage_url == f"sqlite:///{tmp_path / 'mine' / 'study.db'}"


def test_a_storage_in_the_file_still_wins(tmp_path, shakespeare):
    url = f"sqlite:///{tmp_path / 'mine.db'}"
    a, _ = two_study_files(tmp_path, shakespeare, storage=url)
    assert load_study(a).storage_url == url


def record(cfg) -> tuple[optuna.Study, SearchPlan]:
    """Open the study of ``cfg`` as its driver does and end one trial; the lease is released."""
    cfg.folder.mkdir(parents=True, exist_ok=True)  # as run's checks make it
    plan = SearchPlan.build(cfg)
    study, _ = plan.open_study(make_storage(cfg.storage_url))
    run = plan.ask(study, 1)
    study.tell(run.trial, 2.5)
    plan.lease.release()
    return study, plan


def test_a_study_that_ran_with_its_own_file_resumes_there(tmp_path, shakespeare):
    a, b = two_study_files(tmp_path, shakespeare)
    own = tmp_path / "runs" / "tiny" / "study.db"
    own.parent.mkdir(parents=True)
    # The study ran under scaletune 0.1, whose default storage was runs/<name>/study.db.
    record(load_study(a).model_copy(update={"storage": f"sqlite:///{own}"}))
    cfg = load_study(a)
    # Rule: the file that holds the study stays its storage, and the study resumes there.
    assert sqlite_path(cfg.storage_url) == own
    plan = SearchPlan.build(cfg)
    study, _ = plan.open_study(make_storage(cfg.storage_url))
    plan.lease.release()
    assert [t.state for t in study.trials] == [TrialState.COMPLETE]
    # Rule: the other study of the folder, which that file does not hold, goes to the shared one.
    assert sqlite_path(load_study(b).storage_url) == tmp_path / "runs" / "studies.db"
    assert not (tmp_path / "runs" / "studies.db").exists()


def test_an_own_file_without_the_study_is_not_its_storage(tmp_path, shakespeare):
    a, _ = two_study_files(tmp_path, shakespeare)
    own = tmp_path / "runs" / "tiny" / "study.db"
    own.parent.mkdir(parents=True)
    make_storage(f"sqlite:///{own}")  # an Optuna storage with no study: nothing to resume
    # Rule: only a file that holds the study (or cannot be read, for run to refuse) keeps it.
    assert sqlite_path(load_study(a).storage_url) == tmp_path / "runs" / "studies.db"


def test_the_lease_is_per_study_in_a_shared_storage(tmp_path, shakespeare):
    a, b = two_study_files(tmp_path, shakespeare)
    first, _ = record(load_study(a))
    record(load_study(b))
    hold_lease(first)  # a live driver runs "tiny"
    # Rule: a live driver of one study does not hold up a driver of another in the same file ...
    _refuse_a_second_driver(load_study(b))
    plan = SearchPlan.build(load_study(b))
    plan.open_study(make_storage(load_study(b).storage_url))
    plan.lease.release()
    # ... and a second driver of the same study is still refused.
    with pytest.raises(SetupError, match="study 'tiny' is being run by another driver"):
        _refuse_a_second_driver(load_study(a))


# --------------------------------------------------------------------------- two drivers at once


WRITER = """
import sys, time
import optuna
from scaletune.search.storage import make_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)
url, name, n_trials = sys.argv[1], sys.argv[2], int(sys.argv[3])
study = optuna.create_study(study_name=name, storage=make_storage(url))
for i in range(n_trials):
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)})
    trial.set_user_attr("steps", i)
    for step in range(5):
        trial.report(3.0 - step * 0.1, step * 8_192)
        trial.should_prune()
    study.set_user_attr("driver", {"heartbeat": time.time()})
    study.tell(trial, 2.5)
"""
"""What a driver writes, as fast as it can: ask, a user attr, a report per evaluation and a
pruning question, the lease's heartbeat, tell."""

READER = """
import sys, time
import optuna
from scaletune.search.storage import make_storage

storage = make_storage(sys.argv[1])
end = time.time() + float(sys.argv[2])
while time.time() < end:
    for name in optuna.get_all_study_names(storage):
        optuna.load_study(study_name=name, storage=storage).get_trials()
"""
"""What the dashboard does meanwhile: read every study and its trials, again and again."""


def test_two_drivers_write_one_sqlite_file_at_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    make_storage(url)
    runs = [[WRITER, url, "a", "25"], [WRITER, url, "b", "25"], [READER, url, "3"]]
    procs = [subprocess.Popen([sys.executable, "-c", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for args in runs]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    # Rule: neither driver nor the reader failed ("database is locked" would end one of them),
    # and every write of both studies is there.
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    storage = make_storage(url)
    for name in ("a", "b"):
        trials = optuna.load_study(study_name=name, storage=storage).trials
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 25
        assert all(len(t.intermediate_values) == 5 for t in trials)


# --------------------------------------------------------------------------- managing them


def made(tmp_path: Path) -> tuple[Path, Path]:
    """a.yaml and b.yaml with finished studies in the shared storage (no training)."""
    text = tmp_path / "text.txt"
    text.write_text("It is a truth universally acknowledged. " * 6_000)
    a, b = two_study_files(tmp_path, text)
    for path, value in ((a, 2.4), (b, 2.2)):
        cfg = load_study(path)
        add_trial(make_study(cfg), cfg, params(3e-3), value)
    return a, b


def test_studies_and_the_dashboard_list_every_study_of_a_folder(tmp_path, capsys):
    a, _ = made(tmp_path)
    code, out = scaletune(capsys, "studies", str(a))
    # Rule: the study list of one study file holds every study of its folder ...
    assert code == 0, out
    assert "tiny 1 complete 2.4000 (trial 0)" in out and "tiny-b 1 complete 2.2000 (trial 0)" in out
    # ... and so does the dashboard's.
    listing = dashboard_api(load_study(a).storage_url, "/api/studies")["study_summaries"]
    assert sorted(s["study_name"] for s in listing) == ["tiny", "tiny-b"]


def test_a_study_opened_for_export_or_report_is_where_it_was_opened(tmp_path):
    a, _ = made(tmp_path)
    cfg = load_study(a)
    _, ran_with, _ = open_study(cfg, str(a))
    # The config the trials trained with, at the storage and folder the study lives in: the
    # shared runs/studies.db, not a runs/tiny/study.db that does not exist.
    assert ran_with.storage_url == cfg.storage_url == f"sqlite:///{tmp_path / 'runs' / 'studies.db'}"
    assert ran_with.folder == cfg.folder and ran_with.source == str(a)


def test_delete_deletes_one_study_and_keeps_the_shared_file(tmp_path, capsys):
    a, b = made(tmp_path)
    db = tmp_path / "runs" / "studies.db"
    code, out = scaletune(capsys, "delete", str(a), "--yes")
    assert code == 0, out
    # Rule: the other study, its trials and the file stay; the deleted study's default folder,
    # empty, goes (it was left behind, its study gone).
    assert db.is_file()
    assert not (tmp_path / "runs" / "tiny").exists() and (tmp_path / "runs" / "tiny-b").is_dir()
    storage = make_storage(load_study(b).storage_url)
    assert optuna.get_all_study_names(storage) == ["tiny-b"]
    assert len(optuna.load_study(study_name="tiny-b", storage=storage).trials) == 1
    # A study not in the shared file says which are there and how to run it.
    code, out = scaletune(capsys, "show", str(a))
    assert code == 2
    assert "no study named 'tiny'" in out and "tiny-b" in out
    assert f"run `scaletune run {a}` first" in out


def test_the_dry_run_says_whether_the_shared_file_holds_the_study(tmp_path, capsys):
    a, b = made(tmp_path)
    code, out = scaletune(capsys, "run", str(a), "--dry-run")
    assert code == 0, out
    n = load_study(a).n_trials
    # With how far it is: read from the file, without opening the study.
    assert f"(it holds this study, 1/{n} trials finished: the run resumes it)" in out
    # A study that has them: nothing to run; and its first trial, drawn, is not planned again.
    code, out = scaletune(capsys, "run", str(a), "--dry-run", "--n-trials", "1")
    assert "(it holds this study, 1/1 trials finished: nothing to run)" in out
    assert "the priors' center:" not in out
    main(["delete", str(b), "--yes"])
    capsys.readouterr()
    code, out = scaletune(capsys, "run", str(b), "--dry-run")
    assert "(the file exists and holds 1 other study: the study starts there)" in out


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_two_real_studies_in_one_folder_run_at_once_and_are_listed_together(tmp_path,
                                                                            shakespeare, capsys):
    a, b = two_study_files(tmp_path, shakespeare, n_trials=2)
    with scaletune_run(a, tmp_path / "a.log") as first, scaletune_run(b, tmp_path / "b.log") as second:
        codes = [first.wait(timeout=600), second.wait(timeout=600)]
    logs = [(tmp_path / f"{x}.log").read_text() for x in ("a", "b")]
    # Rule: both drivers ran to the end on the one file, side by side.
    assert codes == [0, 0], logs
    assert not any("locked" in log for log in logs), logs
    # Their folders runs/tiny and runs/tiny-b were made for them and hold nothing: not left
    # behind, empty (made again by what writes there: the report, a tracker's logs).
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["studies.db"]
    # Rule: the study list after the two studies holds both, and the dashboard lists both.
    code, out = scaletune(capsys, "studies", str(b))
    assert code == 0, out
    assert re.search(r"tiny 2 complete", out) and re.search(r"tiny-b 2 complete", out), out
    listing = dashboard_api(load_study(a).storage_url, "/api/studies")["study_summaries"]
    assert sorted(s["study_name"] for s in listing) == ["tiny", "tiny-b"]
    # The summary's "study" line names the shared file.
    assert f"tiny in {load_study(a).storage_url}" in flat(logs[0])


def test_a_config_dumped_and_validated_again_is_the_same_study(tmp_path, shakespeare):
    from scaletune.search.config import validate_study

    a, _ = two_study_files(tmp_path, shakespeare)
    cfg = load_study(a)
    # A config dumped to change a field (validate_study's `recorded`) went on in a
    # runs/tiny/study.db of its own: a second study of the same name, which the file then chose.
    # Read as a file's, a dump is refused for keys the user never wrote: said how to read it.
    with pytest.raises(ConfigError, match=re.escape("validate_study(d, recorded=True) reads it")):
        validate_study(cfg.model_dump())
    again = validate_study({**cfg.model_dump(), "n_trials": 9}, recorded=True)
    assert again.storage_url == cfg.storage_url == f"sqlite:///{tmp_path / 'runs' / 'studies.db'}"
    # A folder the file sets keeps its own study.db, dumped or not.
    raw = tiny_study(tmp_path, shakespeare, study_dir="mine")
    own = load_study(write_study(tmp_path, raw, "own.yaml"))
    assert (validate_study(own.model_dump(), recorded=True).storage_url == own.storage_url
            == f"sqlite:///{tmp_path / 'mine' / 'study.db'}")
