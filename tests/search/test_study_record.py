"""What a study records about how it runs, and the one driver it has at a time: a record cut
short by a kill is completed, a changed study file is refused with the keys that changed, and a
second driver is refused while the first one lives (tests with real storages, in one process;
tests/search/test_faults.py has the ones with real processes)."""

from __future__ import annotations

import os
import re
import socket
import sys
import time
from pathlib import Path

import optuna
import pytest

from scaletune.search import lease, studies
from scaletune.search.config import revalidated, validate_study
from scaletune.search.plan import RECORD, SearchPlan, priors_note, pruner_note, sampler_note
from scaletune.search.storage import make_storage
from scaletune.trainer.errors import ConfigError, SetupError
from tests.search.helpers import tiny_study, write_study


@pytest.fixture
def cfg(tmp_path, shakespeare):
    cfg = validate_study(tiny_study(tmp_path, shakespeare))
    cfg.folder.mkdir(parents=True)
    return cfg


def open_study(cfg):
    plan = SearchPlan.build(cfg)
    study, _ = plan.open_study(make_storage(cfg.storage_url))
    plan.lease.release()
    return study


def test_a_record_cut_short_by_a_kill_is_completed_on_the_next_run(cfg):
    # A driver killed while it wrote the record of a new study (the order of the first version:
    # fingerprint first) left the fingerprint and nothing else.
    study = optuna.create_study(study_name=cfg.name, storage=make_storage(cfg.storage_url))
    study.set_user_attr("fingerprint", cfg.fingerprint())
    attrs = open_study(cfg).user_attrs
    # The next run completes the record, so the data check is on again.
    assert set(RECORD) <= set(attrs)
    assert attrs["data_fingerprint"] and attrs["config"]["name"] == cfg.name


def test_a_new_study_records_when_it_was_created_and_a_resume_keeps_it(cfg):
    from datetime import datetime, timezone

    from scaletune.search.tracking import CREATED

    before = datetime.now(timezone.utc).replace(microsecond=0)
    created = open_study(cfg).user_attrs[CREATED]
    assert before <= datetime.fromisoformat(created) <= datetime.now(timezone.utc)
    time.sleep(1.1)
    assert open_study(cfg).user_attrs[CREATED] == created


def test_a_study_recorded_before_data_train_tokens_existed_resumes(cfg):
    import hashlib
    import json

    from scaletune.search.config import FINGERPRINTED

    # What that version recorded: the same sections, without the key (and cpu_matmul, which no
    # fingerprint holds).
    before = cfg.model_dump(mode="json", include=set(FINGERPRINTED))
    del before["data"]["train_tokens"], before["trainer"]["cpu_matmul"]
    del before["data"]["val_path"], before["data"]["val_split"]  # newer still
    old_fingerprint = hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    study = open_study(cfg)
    study.set_user_attr("fingerprint", old_fingerprint)
    assert open_study(cfg).user_attrs["fingerprint"] == old_fingerprint  # it resumes
    # Setting it changes what the trials train on: a new study, and the refusal names the key.
    part = cfg.model_copy(update={"data": cfg.data.model_copy(update={"train_tokens": 5_000})})
    with pytest.raises(ConfigError, match=r"data\.train_tokens: null -> 5000"):
        open_study(part)


def test_a_lower_micro_batch_resumes_the_study(cfg, tmp_path, shakespeare):
    # What a trial out of memory advises (trainer.micro_batch_size); the study was refused as
    # changed, for a split of the same batch.
    def micro(config, size):
        return config.model_copy(update={
            "trainer": config.trainer.model_copy(update={"micro_batch_size": size})})

    study = open_study(cfg)
    assert open_study(micro(cfg, 4)).user_attrs["fingerprint"] == cfg.fingerprint()
    # A study recorded while the micro-batch was in the fingerprint resumes too.
    from scaletune.search.config import NOT_FINGERPRINTED_BEFORE

    recorded = cfg.fingerprint(NOT_FINGERPRINTED_BEFORE[0], canonical=False)
    study.set_user_attr("fingerprint", recorded)
    assert open_study(micro(cfg, 4)).user_attrs["fingerprint"] == recorded
    # The batch itself still decides what a trial trains.
    raw = tiny_study(tmp_path, shakespeare)
    raw["search"]["batch_size"] = {"choices": [8, 32]}
    with pytest.raises(ConfigError, match=r"search\.batch_size\.choices"):
        open_study(validate_study(raw))


@pytest.mark.parametrize("micro", [4, 16])
def test_a_resume_under_another_micro_batch_searches_the_batch_sizes_it_started_with(
        tmp_path, shakespeare, micro):
    # A range's sizes are the micro-batch's multiples in it: under another micro-batch (what a
    # trial out of memory advises), Optuna refused the new choices at the first ask, which left
    # that trial RUNNING for every later launch.
    def plan_for(micro_batch):
        raw = tiny_study(tmp_path, shakespeare, trainer={"micro_batch_size": micro_batch})
        raw["search"]["batch_size"] = {"low": 4, "high": 32}
        return SearchPlan.build(validate_study(raw))

    first = plan_for(8)
    first.cfg.folder.mkdir(parents=True)
    study, _ = first.open_study(make_storage(first.cfg.storage_url))
    for value in (3.0, 2.5):
        study.tell(first.ask(study, 1).trial, value)
    first.lease.release()
    started = study.trials[0].distributions["batch_size"]
    assert started.choices == (8, 16, 32)
    again = plan_for(micro)
    if micro == 16:  # 8 is searched, and 16 does not divide it: refused, nothing written
        with pytest.raises(ConfigError, match=r"trainer\.micro_batch_size: 16 does not divide "
                                              r"batch size\(s\) 8 of the \[8, 16, 32\] this "
                                              r"study searches: give one that divides them all "
                                              r"\(1, 2, 4, 8\), or leave it out"):
            again.open_study(make_storage(again.cfg.storage_url))
        assert [t.state for t in study.get_trials()] == [optuna.trial.TrialState.COMPLETE] * 2
        assert study.user_attrs[lease.ATTR] is None  # the lease it took is given back
        return
    resumed, _ = again.open_study(make_storage(again.cfg.storage_url))
    run = again.ask(resumed, 1)  # micro 4 alone would search 4, 8, 16, 32
    assert run.trial.distributions["batch_size"] == started
    assert run.config.micro_batch_size == 4 and run.config.batch_size in (8, 16, 32)
    resumed.tell(run.trial, 2.0)
    again.lease.release()


def test_repeat_best_of_a_study_with_no_complete_trial_and_no_search_left_is_refused(
        tmp_path, shakespeare, capsys):
    # It started Ray, ran nothing, said the repeats would run after the search, and exited 0.
    from scaletune.search.cli import main
    from tests.search.helpers import write_study

    raw = tiny_study(tmp_path, shakespeare, n_trials=2)
    path = str(write_study(tmp_path, raw))
    plan = SearchPlan.build(validate_study(raw, path))
    plan.cfg.folder.mkdir(parents=True)
    study, _ = plan.open_study(make_storage(plan.cfg.storage_url))
    for _ in range(2):
        trial = plan.ask(study, 1).trial
        trial.report(3.0, 1000)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    plan.lease.release()
    assert main(["run", path, "--repeat-best", "2"]) == 2
    said = " ".join(capsys.readouterr().err.split())
    assert ("--repeat-best: study 'tiny' has no complete trial to repeat, and its search has run "
            "the 2 trials it asks for: run more with `--n-trials 4`, then repeat its best") in said
    assert len(study.get_trials()) == 2  # nothing queued
    # The dry run says so (it budgeted the repeats "after the search").
    assert main(["run", path, "--repeat-best", "2", "--dry-run"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert ("more time(s) with training seeds it has not used, never pruned, none: run refuses "
            "them, with no complete trial to repeat and no search left to find one") in said


def test_a_study_resumes_under_the_same_search_written_otherwise(cfg, tmp_path, shakespeare):
    # 0 for 0.0, 8.0 for 8, and a log that says what the key does without it: the same values
    # are searched, and the study was refused as changed without naming a key.
    study = open_study(cfg)
    raw = tiny_study(tmp_path, shakespeare)
    raw["search"]["lr"].pop("log")  # lr is searched in log by default
    raw["search"]["warmup_frac"] = {"low": 0, "high": 0.2, "log": False}
    raw["search"]["batch_size"] = {"choices": [8.0, 16]}
    raw["search"]["dropout"] = {"value": 0}
    assert open_study(validate_study(raw)).user_attrs["fingerprint"] == cfg.fingerprint()
    # A study recorded before hashed the search as written: it resumes under the same text.
    study.set_user_attr("fingerprint", cfg.fingerprint(canonical=False))
    assert cfg.fingerprint(canonical=False) != cfg.fingerprint()  # tiny_study writes log: true
    open_study(cfg)
    # A log that changes the scale is a change, and the refusal names it.
    raw["search"]["warmup_frac"] = {"low": 0.01, "high": 0.2, "log": True}
    study.set_user_attr("fingerprint", cfg.fingerprint())
    with pytest.raises(ConfigError, match=r"search\.warmup_frac\.log: null -> true"):
        open_study(validate_study(raw))


def done_trials(study, dists, lrs):
    """Complete trials of ``study`` drawn from ``dists`` at each of ``lrs``."""
    for i, lr in enumerate(lrs):
        study.add_trial(optuna.trial.create_trial(
            params={"lr": lr, "tau": 10.0, "warmup_frac": 0.1, "batch_size": 8},
            distributions={k: dists[k] for k in ("lr", "tau", "warmup_frac", "batch_size")},
            value=3.0 - 0.1 * i))


def test_a_widened_range_resumes_the_study_and_becomes_its_search(cfg, tmp_path, shakespeare):
    from optuna_dashboard import get_note

    from scaletune.search.plan import WIDENED

    plan = SearchPlan.build(cfg)
    done_trials(open_study(cfg), plan.distributions(), [1e-3, 2e-3, 3e-3, 2.9e-2])
    raw = tiny_study(tmp_path, shakespeare)
    raw["search"]["lr"].update(low=1e-5, high=0.1)
    raw["search"]["warmup_frac"]["high"] = 0.3
    wide = validate_study(raw)
    # Rule: a search whose ranges hold the ones the trials drew from resumes the study, and
    # the launch says what widened.
    widened = SearchPlan.build(wide)
    study, _ = widened.open_study(make_storage(wide.storage_url))
    widened.lease.release()
    changes = ["search.lr.low: 0.0001 -> 1e-05", "search.lr.high: 0.03 -> 0.1",
               "search.warmup_frac.high: 0.2 -> 0.3"]
    assert widened.widened == changes
    attrs = study.user_attrs
    assert [w["changes"] for w in attrs[WIDENED]] == [changes]
    # The record is the wider search from now on: the file resumes it as it is, and the
    # dashboard's note shows the ranges searched now and when they widened.
    assert attrs["fingerprint"] == wide.fingerprint()
    assert attrs["config"]["search"]["lr"]["high"] == 0.1
    assert attrs["config"]["tokens_per_trial"] == cfg.tokens_per_trial
    note = get_note(study)
    assert "| [1e-05, 0.1] |" in note and "Its search was widened since" in note
    again = SearchPlan.build(wide)
    again.open_study(make_storage(wide.storage_url))
    again.lease.release()
    assert again.widened is None and len(open_study(wide).user_attrs[WIDENED]) == 1
    # Rule: the sampler learns from both ranges' trials at once. Optuna's multivariate TPE
    # searches jointly only what every trial drew from one distribution: lr had left it.
    done_trials(study, widened.distributions(), [5e-2])
    trial = study.ask()
    assert "lr" in study.sampler.infer_relative_search_space(study, trial)
    base = optuna.samplers.TPESampler(multivariate=True)
    assert "lr" not in base.infer_relative_search_space(study, trial)
    assert 1e-5 <= trial.suggest_float("lr", 1e-5, 0.1, log=True) <= 0.1
    # Rule: a narrower range, other choices, or a widening beside another change is refused
    # and named, as any change of what the trials trained with.
    for key, value, said in [
            ("lr", {"low": 1e-5, "high": 1e-2, "log": True}, "search.lr.high: 0.1 -> 0.01"),
            # The prior's own range, where the file gives no bound: it read "0.1 -> null".
            ("lr", {"prior": "auto"}, "search.lr.high: 0.1 -> unset (the prior's own)"),
            ("batch_size", {"choices": [8, 16, 32]},
             "search.batch_size.choices: [8, 16] -> [8, 16, 32]"),
            ("dropout", {"value": 0.1}, "search.dropout.value: 0 -> 0.1")]:
        changed = {**raw, "search": {**raw["search"], key: value}}
        with pytest.raises(ConfigError, match=re.escape(said)) as err:
            open_study(validate_study(changed))
        # The values named are the widened search's, which the first trials never drew from;
        # said of a range widened, not of choices or a value.
        assert (("(the study's search as a launch widened it: its trials before that drew from "
                 "narrower ranges, and a range widened cannot narrow again)")
                in err.value.errors[0]) == (key == "lr")
        # A bound left unset is the prior's only where a prior gives the range.
        assert ("unset (the prior's own)" in err.value.errors[0]) == ("prior" in value)
    longer = {**raw, "tokens_per_trial": 81_920,
              "search": {**raw["search"], "lr": {"low": 1e-6, "high": 0.1, "log": True}}}
    with pytest.raises(ConfigError) as err:
        open_study(validate_study(longer))
    assert "tokens_per_trial: 40960 -> 81920" in err.value.errors[0]
    assert "widening ranges of the search, resumes it" in err.value.errors[0]


@pytest.mark.parametrize("stopped_at", ["search_widened", "fingerprint", "note", "config"])
def test_a_driver_stopped_as_it_recorded_a_widened_search_leaves_a_study_that_resumes(
        cfg, tmp_path, shakespeare, monkeypatch, stopped_at):
    import optuna_dashboard
    from optuna_dashboard import get_note

    from scaletune.search.plan import WIDENED

    open_study(cfg)
    raw = tiny_study(tmp_path, shakespeare)
    raw["search"]["lr"]["high"] = 0.1
    wide = validate_study(raw)
    real, real_note = optuna.Study.set_user_attr, optuna_dashboard.save_note

    def set_user_attr(self, key, value):
        if key == stopped_at:
            raise KeyboardInterrupt  # the driver stopped at this write of the record
        real(self, key, value)

    def save_note(*args, **kwargs):
        if stopped_at == "note":
            raise KeyboardInterrupt
        real_note(*args, **kwargs)

    monkeypatch.setattr(optuna.Study, "set_user_attr", set_user_attr)
    monkeypatch.setattr(optuna_dashboard, "save_note", save_note)
    with pytest.raises(KeyboardInterrupt):
        open_study(wide)
    monkeypatch.setattr(optuna.Study, "set_user_attr", real)
    monkeypatch.setattr(optuna_dashboard, "save_note", real_note)
    if stopped_at in ("note", "config"):
        # A file between the two is told which launch stopped part way, and what it widened (it
        # said a key that widens could not narrow again).
        raw["search"]["lr"]["high"] = 0.05
        with pytest.raises(ConfigError, match=re.escape(
                "search.lr.high: 0.03 -> 0.05 (the study's last launch widened its search, "
                "search.lr.high: 0.03 -> 0.1, and stopped before it had recorded all of it: run "
                "the study file with those ranges again, which records the rest)")):
            open_study(validate_study(raw))
    # Rule: the next launch of the widened file resumes it and writes the rest of the record:
    # the widening once, the fingerprint, the config and the dashboard's note.
    study = open_study(wide)
    attrs = study.user_attrs
    assert [w["changes"] for w in attrs[WIDENED]] == [["search.lr.high: 0.03 -> 0.1"]]
    assert attrs["config"]["search"]["lr"]["high"] == 0.1
    assert attrs["fingerprint"] == wide.fingerprint()
    assert "| [0.0001, 0.1] |" in get_note(study) and "widened since" in get_note(study)


def test_a_widening_stopped_after_its_first_write_holds_the_study_to_the_wider_search(
        cfg, tmp_path, shakespeare, monkeypatch):
    from scaletune.search.plan import WIDENED
    from scaletune.search.samplers import SearchedAs

    open_study(cfg)
    raw = tiny_study(tmp_path, shakespeare)
    raw["search"]["lr"]["high"] = 0.1
    wide = validate_study(raw)
    real = optuna.Study.set_user_attr

    def set_user_attr(self, key, value):
        if key == WIDENED:
            raise KeyboardInterrupt  # after the fingerprint, its first write
        real(self, key, value)

    monkeypatch.setattr(optuna.Study, "set_user_attr", set_user_attr)
    with pytest.raises(KeyboardInterrupt):
        open_study(wide)
    monkeypatch.setattr(optuna.Study, "set_user_attr", real)
    # The file before is refused, saying how to go on (it named no key); no widening entry
    # stands for a widening the study does not hold (show named one, and the sampler viewed
    # the trials through it).
    with pytest.raises(ConfigError, match=re.escape(
            "a different model, data, trainer, budget or search space (or, where the study's "
            "last launch widened its search and stopped before it had recorded it, run the "
            "study file with the wider ranges again)")):
        open_study(cfg)
    assert WIDENED not in studies.open_study(cfg)[0].user_attrs
    plan = SearchPlan.build(wide)
    study, _ = plan.open_study(make_storage(wide.storage_url))
    plan.lease.release()
    assert [w["changes"] for w in study.user_attrs[WIDENED]] == [["search.lr.high: 0.03 -> 0.1"]]
    assert isinstance(study.sampler, SearchedAs)


def test_a_record_cut_short_then_completed_by_a_wider_file_is_that_files(cfg, tmp_path,
                                                                         shakespeare,
                                                                         monkeypatch):
    from scaletune.search.plan import WIDENED

    real = optuna.Study.set_user_attr

    def set_user_attr(self, key, value):
        if key == "fingerprint":
            raise KeyboardInterrupt  # the new study's record written but its fingerprint
        real(self, key, value)

    monkeypatch.setattr(optuna.Study, "set_user_attr", set_user_attr)
    with pytest.raises(KeyboardInterrupt):
        open_study(cfg)
    monkeypatch.setattr(optuna.Study, "set_user_attr", real)
    raw = tiny_study(tmp_path, shakespeare)
    raw["search"]["lr"]["high"] = 0.1
    wide = validate_study(raw)
    open_study(wide)
    # Rule: no trial ran under the first file's record: the study is the wider file's, and no
    # launch widened it (the next one recorded 'search.lr.high: 0.03 -> 0.1' as a widening).
    attrs = open_study(wide).user_attrs
    assert attrs["config"]["search"]["lr"]["high"] == 0.1 and WIDENED not in attrs


def test_the_same_ranges_written_otherwise_resume_the_study_without_a_word(cfg, tmp_path,
                                                                           shakespeare):
    from scaletune.search.plan import WIDENED

    open_study(cfg)
    raw = tiny_study(tmp_path, shakespeare)
    raw["search"]["batch_size"] = {"choices": [16, 8]}  # searched in ascending order either way
    again = validate_study(raw)
    assert again.fingerprint() != cfg.fingerprint()
    plan = SearchPlan.build(again)
    study, _ = plan.open_study(make_storage(again.storage_url))
    plan.lease.release()
    # It was refused as a change; a widening that widens nothing was said and recorded as one.
    assert plan.widened is None and WIDENED not in study.user_attrs
    assert study.user_attrs["fingerprint"] == again.fingerprint()


def test_a_widening_from_a_file_of_another_name_rewrites_the_note_it_names_first(tmp_path,
                                                                                  shakespeare):
    from optuna_dashboard import get_note

    from scaletune.search.config import load_study
    from scaletune.search.plan import _apart

    raw = tiny_study(tmp_path, shakespeare)
    first = load_study(write_study(tmp_path, raw, "study.yaml"))
    first.folder.mkdir(parents=True)
    open_study(first)
    raw["search"]["lr"]["high"] = 0.1
    wide = load_study(write_study(tmp_path, raw, "study-wide.yaml"))
    # A widened study read by the readers' way (show, report, fit) before its next launch: the
    # file widens what the trials drew from; it was "the study file changed".
    _, ran_with, notes = studies.open_study(wide)
    assert ran_with.search.params["lr"].high == 0.03
    assert notes == ["the study file widens the study's search (search.lr.high: 0.03 -> 0.1), "
                     "which its next launch records; using the config stored in the study, "
                     "which its trials trained with"]
    # Rule: the note of the study's driver shows the wider search, whatever the file's name
    # (the note named study.yaml, the widening study-wide.yaml: it was kept as a user's).
    note = get_note(open_study(wide))
    assert "| [0.0001, 0.1] |" in note and "widened since" in note
    assert f"first launched ({tmp_path / 'study.yaml'}, with" in note
    # The ends a widening names are told apart: the priors' 0.0608948 widened to 0.0609.
    assert _apart(lambda v: format(v, ".3g"), 0.0608948, 0.0609) == ("0.0608948", "0.0609")


def test_cma_es_starts_a_new_generation_on_widened_ranges():
    from scaletune.search.samplers import SearchedAs

    narrow = {"lr": optuna.distributions.FloatDistribution(1e-4, 3e-2, log=True),
              "x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    study = optuna.create_study(sampler=optuna.samplers.CmaEsSampler(n_startup_trials=2, seed=0))
    study.optimize(lambda t: (t.suggest_float("lr", 1e-4, 3e-2, log=True) - 2e-2) ** 2
                   + t.suggest_float("x", 0.0, 1.0), n_trials=12)
    assert any(k.startswith("cma:") for t in study.trials for k in t.system_attrs)
    wide = {**narrow, "lr": optuna.distributions.FloatDistribution(1e-5, 0.1, log=True)}
    sampler = SearchedAs(optuna.samplers.CmaEsSampler(n_startup_trials=2, seed=0), wide)
    seen = sampler._view(study).get_trials(deepcopy=False)
    # Rule: its state kept in the narrower ranges' 0-1 spans is not read against the wider:
    # the mean it restored sat at 0.0586 for a best at 0.0217.
    assert not any(k.startswith("cma:") for t in seen for k in t.system_attrs)
    assert all(t.distributions["lr"] == wide["lr"] for t in seen)
    assert all(k.startswith("cma:") for k in study.trials[-1].system_attrs)  # stored as it was
    assert sampler._view(study).get_trials(deepcopy=False)[3] is seen[3]  # made once
    study.sampler = sampler
    study.optimize(lambda t: t.suggest_float("lr", 1e-5, 0.1, log=True)
                   + t.suggest_float("x", 0.0, 1.0), n_trials=3)
    assert all(1e-5 <= t.params["lr"] <= 0.1 for t in study.trials[-3:])


def test_validate_and_the_dry_run_say_a_widened_search_resumes_the_study(cfg, tmp_path,
                                                                       shakespeare, capsys):
    from scaletune.search.cli import main

    open_study(cfg)
    raw = tiny_study(tmp_path, shakespeare)
    raw["search"]["lr"]["high"] = 0.1
    path = str(write_study(tmp_path, raw))
    for command in (["validate", path], ["run", path, "--dry-run"]):
        assert main(command) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert ("the stored study resumes with its search widened (search.lr.high: 0.03 -> "
                "0.1): its trials so far") in out, out
    # Once a launch has widened it, show says so, and validate has nothing more to say of it.
    open_study(validate_study(raw))
    assert main(["show", path]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert re.search(r"widened search\.lr\.high: 0\.03 -> 0\.1, by the launch of \d{4}-\d\d-\d\d "
                     r"\d\d:\d\d \(.* ago\); the trials before it drew from the narrower ranges",
                     out), out
    assert main(["validate", path]) == 0
    assert "widened" not in capsys.readouterr().out


def test_the_fingerprint_is_written_last(cfg, monkeypatch):
    # A kill between two writes of a new record leaves no fingerprint: the study is not taken as
    # recorded, and the next run writes the record again.
    writes = []
    real = optuna.Study.set_user_attr

    def set_user_attr(self, key, value):
        writes.append(key)
        real(self, key, value)

    monkeypatch.setattr(optuna.Study, "set_user_attr", set_user_attr)
    open_study(cfg)
    record_writes = [k for k in writes if k != lease.ATTR]
    assert record_writes[-1] == "fingerprint" and set(RECORD) <= set(record_writes)


def test_a_changed_study_file_is_refused_naming_what_changed(cfg, tmp_path, shakespeare):
    open_study(cfg)
    raw = tiny_study(tmp_path, shakespeare, tokens_per_trial=81_920)
    raw["search"]["lr"]["high"] = 5e-2
    changed = validate_study(raw)
    with pytest.raises(ConfigError) as err:
        open_study(changed)
    message = err.value.errors[0]
    assert "search.lr.high: 0.03 -> 0.05" in message
    assert "tokens_per_trial: 40960 -> 81920" in message


def test_validate_and_the_dry_run_refuse_a_change_that_run_would(cfg, tmp_path, shakespeare,
                                                                 capsys):
    # They said `ok` and "it holds this study: the run resumes it"; the run then refused.
    from scaletune.search.cli import main
    from tests.search.helpers import write_study

    raw = tiny_study(tmp_path, shakespeare)
    path = str(write_study(tmp_path, raw))
    open_study(cfg)  # the study as recorded by a run of that file
    assert main(["validate", path]) == 0
    raw["tokens_per_trial"] = 81_920
    del raw["search"]["lr"]["log"]  # no change: lr is searched in log anyway
    path = str(write_study(tmp_path, raw))
    for command in (["validate", path], ["run", path, "--dry-run"]):
        assert main(command) == 2
        out = " ".join(capsys.readouterr().err.split())
        # Rule: only what changes the trials is named, not the `log` written otherwise.
        assert "this file changes what its trials trained with: tokens_per_trial: 40960 -> 81920;" \
            in out
    raw["search"]["lr"]["log"] = True
    # What may change between runs still passes: the sampler.
    raw["tokens_per_trial"], raw["sampler"] = 40_960, {"name": "random"}
    assert main(["validate", str(write_study(tmp_path, raw))]) == 0


def test_the_dry_run_says_a_resume_waits_on_data_it_cannot_check(tmp_path, shakespeare, capsys):
    # A .jsonl the study trained on, a line added: the dry run said "the run resumes it", and the
    # run refused the data (a dataset's fingerprint is known only once it is prepared).
    import json

    from scaletune.search.cli import main
    from tests.search.helpers import write_study

    rows = tmp_path / "rows.jsonl"
    text = shakespeare.read_text()[:60_000]
    rows.write_text("".join(json.dumps({"text": text[i:i + 2000]}) + "\n"
                            for i in range(0, len(text), 2000)))
    raw = tiny_study(tmp_path, shakespeare)
    raw["data"] = {"source": "hf", "dataset": "json", "data_files": str(rows),
                   "cache_dir": str(tmp_path / "cache")}
    path = str(write_study(tmp_path, raw))
    cfg = validate_study(raw)
    cfg.folder.mkdir(parents=True)
    open_study(cfg)
    with rows.open("a") as f:
        f.write('{"text": "a line added"}\n')
    assert main(["run", path, "--dry-run"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ("the run resumes it if its data is the data its trials trained on (the run checks it "
            "as it prepares it)") in out
    # Text whose fingerprint the plan reads: it checks, and says no more.
    raw = tiny_study(tmp_path, shakespeare, study_dir=str(tmp_path / "text-study"))
    cfg = validate_study(raw)
    cfg.folder.mkdir(parents=True)
    open_study(cfg)
    assert main(["run", str(write_study(tmp_path, raw)), "--dry-run"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "the run resumes it" in out and "if its data" not in out


def test_a_study_moved_with_its_data_or_its_cache_moved_resumes(cfg, tmp_path, shakespeare):
    open_study(cfg)
    # The same text elsewhere (a checkout moved, another machine's mount) and another cache:
    # the data's fingerprint says the trials train on the same tokens.
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "corpus.txt").write_bytes(Path(cfg.data.path).read_bytes())
    data = cfg.data.model_copy(update={"path": str(moved / "corpus.txt"),
                                       "cache_dir": str(tmp_path / "other-cache")})
    assert open_study(cfg.model_copy(update={"data": data})).user_attrs["data_fingerprint"]
    # Read by its name, the study's data is where its last launch found it (show named, and
    # export wrote, the first launch's path, gone after a move).
    from scaletune.search.plan import LAST_DATA

    by_name = studies.study_by_name(cfg.name, cfg.storage_url)
    _, ran_with, notes = studies.open_study(by_name)
    assert ran_with.data.path == str(moved / "corpus.txt") and not notes, notes
    # Gone from there too: the record's, as before, without a word of a study file.
    (moved / "corpus.txt").rename(moved / "away.txt")
    _, ran_with, notes = studies.open_study(studies.study_by_name(cfg.name, cfg.storage_url))
    assert ran_with.data.path == cfg.data.path and not notes, notes
    (moved / "away.txt").rename(moved / "corpus.txt")
    # Other text there: the record's too, without a note of a study file's data (there is none).
    real_text = (moved / "corpus.txt").read_bytes()
    (moved / "corpus.txt").write_bytes(real_text[:50_000])
    _, ran_with, notes = studies.open_study(studies.study_by_name(cfg.name, cfg.storage_url))
    assert ran_with.data.path == cfg.data.path and not notes, notes
    (moved / "corpus.txt").write_bytes(real_text)
    # A launch from the first place again: the record follows it there.
    assert open_study(cfg).user_attrs[LAST_DATA]["path"] == cfg.data.path
    assert studies.open_study(studies.study_by_name(cfg.name, cfg.storage_url))[1].data.path \
        == cfg.data.path
    # Other text there is refused, by the data's fingerprint.
    (moved / "corpus.txt").write_bytes(Path(cfg.data.path).read_bytes()[:100_000])
    with pytest.raises(ConfigError, match="one study must not mix trials on different data") as e:
        open_study(cfg.model_copy(update={"data": data}))
    # Naming the data as the file gives it, not by its fingerprint alone.
    assert f"training tokens, data.path {moved / 'corpus.txt'}): its text or tokenizer changed" \
        in str(e.value)


def test_a_study_moved_with_its_tokenizer_file_resumes_and_another_file_is_refused(
        tmp_path, shakespeare):
    from tests.trainer.test_tokenizer_files import byte_level_bpe

    # The study's fingerprint hashed the tokenizer file's path: a project folder moved with its
    # tokenizer.json was refused ("data.tokenizer: '/A/tok.json' -> '/B/tok.json'").
    text = shakespeare.read_text()[:100_000]
    first, moved = tmp_path / "A", tmp_path / "B"
    byte_level_bpe(first / "tok.json", text)
    data = {"source": "text", "path": str(tmp_path / "corpus.txt"), "val_windows": 16,
            "cache_dir": str(tmp_path / "cache")}

    def study_with(tokenizer, **overrides):
        raw = tiny_study(tmp_path, shakespeare, data={**data, "tokenizer": str(tokenizer)},
                         **overrides)
        cfg = validate_study(raw)
        cfg.folder.mkdir(parents=True, exist_ok=True)
        return cfg

    study = open_study(study_with(first / "tok.json"))
    first.rename(moved)
    assert open_study(study_with(moved / "tok.json")).user_attrs["config"]["data"][
        "tokenizer"] == str(first / "tok.json")  # the record of its first launch is kept
    # A study recorded before, whose fingerprint hashed the path, resumes as well.
    study.set_user_attr("fingerprint", study_with(first / "tok.json").fingerprint(
        paths=True))
    open_study(study_with(moved / "tok.json"))
    # Another change is named without the tokenizer's new place.
    with pytest.raises(ConfigError) as e:
        open_study(study_with(moved / "tok.json", tokens_per_trial=81_920))
    assert "trained with: tokens_per_trial: 40960 -> 81920; give" in str(e.value)
    # Not a tokenizer file any more: named as the change.
    with pytest.raises(ConfigError) as e:
        open_study(study_with("byte"))
    assert re.search(r"trained with: data.tokenizer: '/\S+ -> 'byte'; give", str(e.value))
    # Another tokenizer in the file: other tokens, refused by the data's fingerprint, which
    # names the tokenizer (the text's place was named).
    byte_level_bpe(moved / "tok.json", text, vocab_size=280)
    with pytest.raises(ConfigError) as e:
        open_study(study_with(moved / "tok.json"))
    assert (f"training tokens, data.tokenizer {moved / 'tok.json'}): its tokenizer changed, and "
            "one study must not mix trials on different data") in str(e.value)


def test_a_study_moved_with_its_saved_dataset_folder_resumes(tmp_path, shakespeare, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    text = shakespeare.read_text()[:200_000]
    first, moved = tmp_path / "A", tmp_path / "B"
    datasets.Dataset.from_dict({"body": [text[i:i + 4_000] for i in range(0, len(text), 4_000)]}
                               ).save_to_disk(str(first / "corpus"))

    def study_with(folder):
        cfg = validate_study(tiny_study(tmp_path, shakespeare, data={
            "source": "hf", "dataset": str(folder), "text_column": "body", "val_windows": 16,
            "cache_dir": str(tmp_path / "cache")}))
        cfg.folder.mkdir(parents=True, exist_ok=True)
        return cfg

    open_study(study_with(first / "corpus"))
    first.rename(moved)
    # It was refused: "data.dataset: '/.../A/corpus' -> '/.../B/corpus'".
    assert open_study(study_with(moved / "corpus")).user_attrs["data_fingerprint"]
    # Another text in the folder is refused by the data's fingerprint.
    datasets.Dataset.from_dict({"body": [text[:100_000]]}).save_to_disk(str(moved / "corpus"))
    with pytest.raises(ConfigError, match="its text or tokenizer changed"):
        open_study(study_with(moved / "corpus"))


def test_a_study_of_pythons_own_text_resumed_under_another_python_names_both(tmp_path,
                                                                              shakespeare, capsys):
    from scaletune.search.cli import main

    # pydoc_data.topics is another text in each Python version: a study begun under 3.10 read
    # 458,917 characters where 3.13 reads 510,586. The record such a study left: another
    # fingerprint of the data, and its Python.
    raw = tiny_study(tmp_path, shakespeare, data={
        "source": "builtin", "builtin": "pydoc_topics", "tokenizer": "byte",
        "cache_dir": str(tmp_path / "cache")})
    cfg = validate_study(raw)
    cfg.folder.mkdir(parents=True)
    study = open_study(cfg)
    reads_as = study.user_attrs["data_fingerprint"]
    study.set_user_attr("data_fingerprint", "186670d0cb960e29-byte")
    study.set_user_attr("provenance", {**study.user_attrs["provenance"], "python": "3.10.13"})
    with pytest.raises(ConfigError) as e:
        open_study(cfg)
    now = sys.version.split()[0]
    assert (f"the built-in corpus is read from the Python that runs it, and the study began "
            f"under Python 3.10.13, where this is Python {now}; run it with that Python, or give "
            "this study a new name") in str(e.value)
    # Said before a run, too.
    assert main(["run", str(write_study(tmp_path, raw)), "--dry-run"]) == 2
    said = " ".join(capsys.readouterr().err.split())
    assert f"the study began under Python 3.10.13, where this is Python {now}" in said, said
    # Under the Python it began with, other text is what changed.
    study.set_user_attr("provenance", {**study.user_attrs["provenance"], "python": now})
    with pytest.raises(ConfigError, match="its text or tokenizer changed"):
        open_study(cfg)
    # The same text under another tokenizer: not the Python's doing, whichever it began under.
    text_now = reads_as.partition("-")[0]
    study.set_user_attr("provenance", {**study.user_attrs["provenance"], "python": "3.10.13"})
    study.set_user_attr("data_fingerprint", f"{text_now}-file-0123456789abcdef")
    with pytest.raises(ConfigError, match="data.tokenizer byte\\): its tokenizer changed"):
        open_study(cfg)


def test_a_second_driver_is_refused_while_the_first_lives(cfg):
    study = optuna.create_study(study_name=cfg.name, storage=make_storage(cfg.storage_url))
    # A driver on another host that was heard from a moment ago.
    held = {"host": "node-7", "pid": 4242, "since": time.time() - 60,
            "heartbeat": time.time() - 2, "token": "abc"}
    study.set_user_attr(lease.ATTR, held)
    with pytest.raises(SetupError, match="being run by another driver .*pid 4242 on node-7"):
        open_study(cfg)
    # Nothing was taken from it: the lease is still the first driver's, the study unrecorded.
    assert study.user_attrs[lease.ATTR] == held
    assert "fingerprint" not in study.user_attrs


def test_a_lease_ends_when_its_driver_is_gone(cfg):
    study = optuna.create_study(study_name=cfg.name, storage=make_storage(cfg.storage_url))
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    now = time.time()
    # On this host, a driver whose process is gone: the study is free at once.
    study.set_user_attr(lease.ATTR, {"host": socket.gethostname(), "pid": dead, "since": now,
                                     "heartbeat": now, "token": "x"})
    open_study(cfg)
    # From another host, a driver silent for longer than the lease.
    study.set_user_attr(lease.ATTR, {"host": "node-7", "pid": 1, "since": now - 600,
                                     "heartbeat": now - lease.LEASE_S - 1, "token": "y"})
    open_study(cfg)
    # A driver that stops clears its lease.
    assert study.user_attrs[lease.ATTR] is None


def test_a_driver_paused_on_this_host_keeps_its_lease_and_a_pid_taken_over_does_not():
    import subprocess
    import sys

    paused = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.5)
        now = time.time()
        held = {"host": socket.gethostname(), "pid": paused.pid, "since": now,
                "heartbeat": now - lease.LEASE_S - 60, "token": "x"}
        # Ctrl-Z'd for two minutes: a second driver took its trials for a stopped driver's.
        assert lease.live(held)
        # The pid, taken by a process that started after the lease was written: not its driver.
        assert not lease.live({**held, "since": now - 3600})
        assert lease.live({**held, "since": now - 3600, "heartbeat": now})  # heard from lately
    finally:
        paused.kill()
        paused.wait()


def test_a_lease_copied_with_its_sqlite_file_holds_only_the_original(cfg, tmp_path, shakespeare):
    import shutil
    import subprocess
    import sys

    from scaletune.trainer.config import sqlite_url

    # A study folder copied while its study ran: the copy's lease named the original's driver,
    # alive on this host, so the copy was "running now" and a resume of it was refused until
    # that driver ended (stopping it, as the refusal said to, stopped the original).
    driver = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        study = optuna.create_study(study_name=cfg.name, storage=make_storage(cfg.storage_url))
        now = time.time()
        held = {**lease.DriverLease(study)._record(now), "pid": driver.pid, "since": now,
                "token": "x"}
        database = Path(cfg.storage_url.removeprefix("sqlite:///"))
        assert held["database"] == {"path": str(database.resolve()),
                                    "inode": database.stat().st_ino}
        study.set_user_attr(lease.ATTR, held)
        copied = validate_study({**tiny_study(tmp_path, shakespeare),
                                 "study_dir": str(tmp_path / "copy")})
        shutil.copytree(cfg.folder, copied.folder)
        copy = optuna.load_study(study_name=cfg.name, storage=make_storage(copied.storage_url))
        assert studies.running_note(study) and not studies.running_note(copy)
        # The copy is free to resume; the original is still its driver's.
        open_study(copied)
        with pytest.raises(SetupError, match=f"pid {driver.pid} on "):
            open_study(cfg)
        # The original file renamed, or replaced by a file of its own path, is still its.
        renamed = database.rename(database.with_name("renamed.db"))
        assert lease.live(held, url=sqlite_url(renamed))
        shutil.copy(renamed, database)
        assert lease.live(held, url=cfg.storage_url)
    finally:
        driver.kill()
        driver.wait()


def test_a_killed_driver_its_parent_has_not_reaped_holds_no_lease():
    import subprocess
    import sys

    # A driver started from a program that never waits for it: killed, it stays a zombie, which
    # answers os.kill(pid, 0), and the study stayed "being run by another driver" for good.
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    now = time.time()
    held = {"host": socket.gethostname(), "pid": zombie.pid, "since": now - 5, "heartbeat": now,
            "token": "x"}
    try:
        for _ in range(100):  # until it has exited, unreaped
            if Path(f"/proc/{zombie.pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z":
                break
            time.sleep(0.05)
        assert not lease.live(held)
    finally:
        zombie.wait()


def test_a_heartbeat_ahead_of_this_clock_is_said_to_be_one():
    # It read "last heard from 0 s ago" for a lease an hour ahead, which holds for that hour.
    ahead = {"host": "node-7", "pid": 1, "since": time.time() - 60,
             "heartbeat": time.time() + 3600, "token": "x"}
    assert lease.live(ahead)
    assert ("its last heartbeat 3600 s ahead of this machine's clock (the two clocks disagree: "
            "set them right)") in lease.describe(ahead)


def test_a_driver_whose_read_went_stale_while_another_took_the_study_is_refused(cfg,
                                                                                monkeypatch):
    # Two drivers start at once; this one read "no lease", and before its write landed (SQLite
    # busy with another writer for longer than any fixed wait), the other wrote its lease, read
    # it back and ran. Both held the study: each took the other's trials for a dead driver's.
    storage = make_storage(cfg.storage_url)
    study = optuna.create_study(study_name=cfg.name, storage=storage)
    other = lease.DriverLease(optuna.load_study(study_name=cfg.name, storage=storage))
    other._record = lambda now: {**lease.DriverLease._record(other, now), "host": "node-7"}
    mine = lease.DriverLease(study)
    live, calls = lease.live, []

    def the_other_acquires_now(held, *args, **kwargs):
        calls.append(held)
        if len(calls) == 1:  # this driver's read: the other acquires in full before it writes
            other.acquire()
        return live(held, *args, **kwargs)

    monkeypatch.setattr(lease, "live", the_other_acquires_now)
    with pytest.raises(SetupError, match=f"pid {os.getpid()} on node-7"):
        mine.acquire()
    assert other.token and not mine.token
    assert study.user_attrs[lease.ATTR]["token"] == other.token
    # The holder's heartbeat and release go on; this driver's release touches nothing.
    other.refresh(force=True)
    mine.release()
    assert study.user_attrs[lease.ATTR]["token"] == other.token
    other.release()
    assert study.user_attrs[lease.ATTR] is None


def test_a_lease_that_changes_at_every_try_is_said_so(cfg, monkeypatch):
    # Three tries, each swap losing to a lease that then ended: "pid None on None".
    study = optuna.create_study(study_name=cfg.name, storage=make_storage(cfg.storage_url))
    monkeypatch.setattr(lease, "swap_study_user_attr", lambda *_: False)
    with pytest.raises(SetupError, match="its driver's lease changed at each of this driver's "
                                         "tries to take it"):
        lease.DriverLease(study).acquire()


def test_the_dashboard_names_the_objective(cfg):
    from scaletune.search.plan import OBJECTIVE

    assert open_study(cfg).metric_names == [OBJECTIVE]


def test_a_study_is_the_same_study_from_any_folder(tmp_path, shakespeare, monkeypatch):
    from scaletune.search.config import load_study
    from tests.search.helpers import write_study

    raw = tiny_study(tmp_path, shakespeare)
    del raw["study_dir"]
    (tmp_path / "studies").mkdir()
    path = write_study(tmp_path / "studies", raw)
    # Run from the study's folder, reported from its parent: one folder, beside the file.
    monkeypatch.chdir(tmp_path / "studies")
    here = load_study("study.yaml").folder
    monkeypatch.chdir(tmp_path)
    assert load_study(path).folder == here == tmp_path / "studies" / "runs" / "tiny"


def test_a_relative_sqlite_path_in_the_file_is_the_files(tmp_path, shakespeare, monkeypatch):
    from scaletune.search.config import load_study, sqlite_beside
    from tests.search.helpers import write_study

    raw = tiny_study(tmp_path, shakespeare, storage="sqlite:///db/my.db",
                     tracking={"mlflow": {"tracking_uri": "sqlite:///mlflow.db"}})
    (tmp_path / "studies").mkdir()
    path = write_study(tmp_path / "studies", raw)
    # Run from another folder, each made a second database there: a study split in two.
    monkeypatch.chdir(tmp_path)
    cfg = load_study(path)
    assert cfg.storage_url == f"sqlite:///{tmp_path / 'studies' / 'db' / 'my.db'}"
    assert cfg.tracking.mlflow.tracking_uri == f"sqlite:///{tmp_path / 'studies' / 'mlflow.db'}"
    # Absolute paths, memory, servers, and a query stay as they are (the query kept).
    for url in ("sqlite:////abs/x.db", "sqlite://", "sqlite:///:memory:",
                "postgresql://u@h/db", "http://mlflow:5000"):
        assert sqlite_beside(url, tmp_path) == url
    assert sqlite_beside("sqlite:///x.db?timeout=5", tmp_path) == f"sqlite:///{tmp_path}/x.db?timeout=5"


def test_a_study_where_earlier_versions_kept_it_is_used_there(tmp_path, shakespeare, monkeypatch):
    from scaletune.search.config import load_study
    from tests.search.helpers import write_study

    raw = tiny_study(tmp_path, shakespeare)
    del raw["study_dir"]
    (tmp_path / "studies").mkdir()
    path = write_study(tmp_path / "studies", raw)
    earlier = tmp_path / "runs" / "tiny"
    earlier.mkdir(parents=True)
    (earlier / "study.db").write_bytes(b"SQLite format 3\x00")
    monkeypatch.chdir(tmp_path)
    # runs/<name> under the current folder was the default: a study there is not started afresh.
    assert load_study(path).folder == earlier
    # Unless the storage beside the file holds the study: then that one is the file's, from
    # any folder (the other, of the same name, was shown and resumed in its place).
    (tmp_path / "studies" / "runs").mkdir()
    optuna.create_study(study_name="tiny", storage=make_storage(
        f"sqlite:///{tmp_path / 'studies' / 'runs' / 'studies.db'}"))
    assert load_study(path).folder == tmp_path / "studies" / "runs" / "tiny"


@pytest.mark.parametrize("folder, earlier", [("proj?a", "proj"),
                                             ("p%41b", "pAb/runs/studies.db"), ("a b é#", None)])
def test_a_study_in_a_folder_whose_name_a_url_would_read_keeps_its_storage_there(
        tmp_path, shakespeare, folder, earlier):
    from scaletune.search.config import load_study
    from scaletune.search.storage import sqlite_path
    from tests.search.helpers import write_study

    raw = tiny_study(tmp_path, shakespeare)
    del raw["study_dir"]
    (tmp_path / folder).mkdir()
    path = write_study(tmp_path / folder, raw)
    # A URL ends its path at '?' and decodes %41: the database went to proj, or to pAb.
    cfg = load_study(path)
    assert sqlite_path(cfg.storage_url) == tmp_path / folder / "runs" / "studies.db"
    (tmp_path / folder / "runs").mkdir()
    optuna.create_study(study_name="tiny", storage=make_storage(cfg.storage_url))
    assert (tmp_path / folder / "runs" / "studies.db").is_file()
    # A study that ran there before, when the URL put it in proj or pAb, resumes there.
    if earlier is not None:
        (tmp_path / folder / "runs" / "studies.db").unlink()
        (tmp_path / earlier).parent.mkdir(parents=True, exist_ok=True)
        optuna.create_study(study_name="tiny",
                            storage=make_storage(f"sqlite:///{tmp_path / earlier}"))
        assert sqlite_path(load_study(path).storage_url) == tmp_path / earlier
        (tmp_path / earlier).unlink()
    # A relative SQLite path in the file, too, and where it ran before.
    raw["storage"] = "sqlite:///db/my.db"
    path = write_study(tmp_path / folder, raw)
    assert sqlite_path(load_study(path).storage_url) == tmp_path / folder / "db" / "my.db"
    if earlier is not None:
        before = tmp_path / {"proj": "proj", "pAb/runs/studies.db": "pAb/db/my.db"}[earlier]
        before.parent.mkdir(parents=True, exist_ok=True)
        optuna.create_study(study_name="tiny", storage=make_storage(f"sqlite:///{before}"))
        assert sqlite_path(load_study(path).storage_url) == before


def test_a_driver_paused_past_its_lease_does_not_write_over_the_next_one(cfg, monkeypatch):
    study = optuna.create_study(study_name=cfg.name, storage=make_storage(cfg.storage_url))
    mine = lease.DriverLease(study)
    mine.acquire()
    # While this driver was suspended, another took the study over.
    other = {"host": "node-7", "pid": 5, "since": time.time(), "heartbeat": time.time(),
             "token": "other"}
    study.set_user_attr(lease.ATTR, other)
    with pytest.raises(SetupError, match="taken over by another driver .*pid 5 on node-7"):
        mine.refresh(force=True)
    # The other driver's lease stands, and this one no longer releases it.
    mine.release()
    assert study.user_attrs[lease.ATTR] == other


def test_a_study_resumed_under_another_pruner_is_told_which_and_how_to_keep_the_first(
        tmp_path, shakespeare):
    raw = tiny_study(tmp_path, shakespeare, pruner={"name": "median"})
    first = validate_study(raw)
    first.folder.mkdir(parents=True)
    study = open_study(first)
    assert pruner_note(study.user_attrs, first) is None  # the pruner it started with
    # The same study file without its pruner: the default (predicted) now decides.
    del raw["pruner"]
    now = validate_study(raw)
    note = pruner_note(open_study(now).user_attrs, now)
    assert note.startswith("this study started under the median pruner and goes on under the "
                           "predicted pruner")
    assert "`pruner: {name: median}` in the study file keeps the one it started with" in note


def test_a_study_resumed_under_another_sampler_is_told_which_and_how_to_keep_the_first(
        tmp_path, shakespeare, capsys):
    # A resumed study went on under another sampler without a word, where another pruner was
    # named: what its record says it started with no longer drew its trials.
    from scaletune.search.cli import main
    from tests.search.helpers import flat, write_study

    raw = tiny_study(tmp_path, shakespeare)  # tpe with n_startup_trials 3
    first = validate_study(raw)
    first.folder.mkdir(parents=True)
    assert sampler_note(open_study(first).user_attrs, first) is None
    raw["sampler"] = {"name": "random"}
    path = write_study(tmp_path, raw)
    assert main(["run", str(path), "--dry-run"]) == 0
    out = flat(capsys.readouterr().out)
    assert ("this study started under the tpe sampler and goes on under the random sampler "
            "(the study file's sampler, or the default where it names none); the trials it has "
            "run stay and the new one draws the next. `sampler: {name: tpe, n_startup_trials: 3}` "
            "in the study file keeps the one it started with") in out, out


def test_show_names_the_sampler_and_pruner_of_the_last_launch(tmp_path, shakespeare, capsys):
    # It named those of the first launch, recorded in the study's config: `tpe ..., seed 0`
    # after the study had gone on under CMA-ES with seed 3, and the pruner's options of then.
    from scaletune.search.cli import main
    from scaletune.search.config import load_study
    from tests.search.helpers import flat, write_study

    raw = tiny_study(tmp_path, shakespeare)  # tpe, median with n_startup_trials 2
    path = write_study(tmp_path, raw)
    cfg = load_study(str(path))
    cfg.folder.mkdir(parents=True)
    open_study(cfg)
    raw["sampler"] = {"name": "random", "seed": 3}
    raw["pruner"] = {"name": "none"}
    open_study(load_study(str(write_study(tmp_path, raw))))  # the second launch
    raw["sampler"] = {"name": "tpe"}  # edited since, not run: show tells what ran
    write_study(tmp_path, raw)
    assert main(["show", str(path)]) == 0
    out = flat(capsys.readouterr().out)
    assert "sampler random" in out and "seed 3" in out and "sampler tpe" not in out, out
    assert "pruner none" in out and "pruner median" not in out, out
    # How to go back to the first pruner: its options too, not the defaults of its name.
    assert ("this study started under the median pruner and its last launch ran under the "
            "none pruner; trials already stopped keep their decisions. `pruner: {name: median, "
            "n_startup_trials: 2, n_warmup_steps: 8192}` in the study file returns to the one it "
            "started with") in out, out
    # And the sampler: show read "sampler random" alone, as if TPE had drawn none of the trials.
    assert ("this study started under the tpe sampler and its last launch ran under the random "
            "sampler; trials already drawn keep their values; the study file names the tpe "
            "sampler, which its next launch runs under") in out, out
    # The file naming the first pruner again: show says which runs next, and no advice to
    # write what the file says already.
    raw["pruner"] = {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 8192}
    write_study(tmp_path, raw)
    assert main(["show", str(path)]) == 0
    out = flat(capsys.readouterr().out)
    assert ("its last launch ran under the none pruner; trials already stopped keep their "
            "decisions; the study file names the median pruner, which its next launch runs "
            "under") in out and "returns to" not in out, out
    # A third sampler in the file: the way back gives the first one's options too (its record
    # was read as a pruner's, and the options dropped).
    raw["sampler"] = {"name": "gp"}
    write_study(tmp_path, raw)
    assert main(["show", str(path)]) == 0
    out = flat(capsys.readouterr().out)
    assert ("`sampler: {name: tpe, n_startup_trials: 3}` in the study file returns to the one it "
            "started with") in out, out
    # Read by its name there is no study file: it said the file named the first launch's tpe
    # and median, which the next launch would run under, beside the rows of random and none.
    storage = f"sqlite:///{cfg.storage_url.removeprefix('sqlite:///')}"
    assert main(["show", "tiny", "--storage", storage]) == 0
    out = flat(capsys.readouterr().out)
    assert "read by its name" in out and "its last launch ran under the none pruner" in out, out
    assert "the study file names" not in out, out


def test_the_dry_run_of_a_resumed_study_gives_runs_notes(tmp_path, shakespeare, capsys):
    # A careful user's first command after an upgrade or an edit: the plan said nothing of the
    # priors that moved or the pruner that changed, which `run` then noted.
    from scaletune.search.cli import main
    from scaletune.search.config import load_study
    from tests.search.helpers import flat, write_study

    raw = tiny_study(tmp_path, shakespeare)
    path = write_study(tmp_path, raw)
    cfg = load_study(str(path))
    cfg.folder.mkdir(parents=True)
    study = open_study(cfg)
    assert main(["run", str(path), "--dry-run"]) == 0
    first = flat(capsys.readouterr().out)  # nothing moved, nothing changed
    assert "moved since" not in first and "started under" not in first
    priors = study.user_attrs["priors"]
    was = priors["lr"]["center"]
    priors["lr"]["center"] = 2 * was  # as an earlier version's laws put it
    study.set_user_attr("priors", priors)
    raw["pruner"] = {"name": "none"}
    write_study(tmp_path, raw)
    assert main(["run", str(path), "--dry-run"]) == 0
    out = flat(capsys.readouterr().out)
    assert f"the priors' centers moved since this study started (lr {2 * was:.3g} -> {was:.3g})" \
        in out, out
    assert "this study started under the median pruner and goes on under the none pruner" in out


@pytest.mark.parametrize("sampler", ["gp", "random", "cmaes"])
def test_the_record_of_a_study_without_tpe_is_the_config_its_readers_use(tmp_path, shakespeare,
                                                                          sampler):
    # The record writes out every field, TPE's prior_weight too, which a study file may give
    # only with TPE: report, export and fit must still take the record, not the file.
    cfg = validate_study(tiny_study(tmp_path, shakespeare, sampler={"name": sampler}))
    cfg.folder.mkdir(parents=True)
    open_study(cfg)
    study, ran_with, notes = studies.open_study(cfg, "study.yaml")
    assert notes == []
    assert ran_with.sampler == cfg.sampler
    assert ran_with.fingerprint() == cfg.fingerprint()


def test_a_study_resumed_under_moved_priors_is_told_which_moved(tmp_path, shakespeare):
    cfg = validate_study(tiny_study(tmp_path, shakespeare))
    cfg.folder.mkdir(parents=True)
    study = open_study(cfg)
    plan = SearchPlan.build(cfg)
    assert priors_note(study.user_attrs, plan.priors) is None  # the priors it started with
    # A ladder's target resumed after its laws were fitted again: the recorded centers are the
    # first run's (here lr's, a third lower), its new trials draw from today's. It said nothing.
    stored = study.user_attrs["priors"]
    stored["lr"]["center"] /= 1.5
    study.set_user_attr("priors", stored)
    note = priors_note(study.user_attrs, plan.priors)
    lr = plan.priors.lr.center
    assert note == (f"the priors' centers moved since this study started (lr {lr / 1.5:.3g} -> "
                    f"{lr:.3g}): its new trials are drawn from the priors of now (a ladder's laws "
                    "fitted again on more rungs, a fitted laws file written again, or another "
                    "version of scaletune's laws); `scaletune show` lists those it started with")


def test_validation_text_given_apart_is_part_of_the_data_a_study_resumes_on(tmp_path, shakespeare,
                                                                            capsys):
    from scaletune.search.cli import main
    from scaletune.search.config import load_study
    from tests.search.helpers import write_study

    raw = tiny_study(tmp_path, shakespeare)
    held = tmp_path / "held.txt"
    held.write_bytes(shakespeare.read_bytes()[-30_000:])
    raw["data"]["val_path"] = "held.txt"  # the study file's folder
    path = str(write_study(tmp_path, raw))
    cfg = load_study(path)
    cfg.folder.mkdir(parents=True)
    recorded = open_study(cfg).user_attrs["data_fingerprint"]
    assert "+" in recorded  # training and validation text
    assert main(["validate", path]) == 0 and "ok" in capsys.readouterr().out
    held.write_bytes(shakespeare.read_bytes()[-20_000:])  # other validation text: other data
    assert main(["validate", path]) == 2
    said = " ".join(capsys.readouterr().err.split())
    assert "one study must not mix trials on different data" in said
    # It names the data that changed: the validation text (it named data.path).
    assert f"data.val_path {held}): its text or tokenizer changed" in said, said
    with pytest.raises(ConfigError, match="one study must not mix trials on different data"):
        open_study(load_study(path))
    # val_path taken out, the text the same: the refusal says validation changed (it said the
    # text or tokenizer had, and named data.path).
    held.write_bytes(shakespeare.read_bytes()[-30_000:])
    del raw["data"]["val_path"]
    with pytest.raises(ConfigError, match="validation changed: it now validates on a part held "
                       "out of the training data, where its trials validated on data given apart"):
        open_study(load_study(str(write_study(tmp_path, raw))))


def test_a_study_built_from_a_dict_keeps_its_files_after_a_change_of_folder(tmp_path, shakespeare,
                                                                            monkeypatch):
    # In a notebook: validate_study(d) in one folder, `%cd` to another. The config resolved its
    # relative paths at each use: its storage moved to the new folder's runs/ (the next
    # run_study started the study afresh there), and its trials' workers, which run in the
    # folder Ray started in, did not find its data.
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    raw = tiny_study(project, shakespeare)
    del raw["study_dir"]
    raw["data"] = {**raw["data"], "path": "corpus.txt"}
    raw["storage"] = "sqlite:///trials.db"
    monkeypatch.chdir(project)
    cfg = validate_study(raw)
    monkeypatch.chdir(elsewhere)
    assert cfg.data.path == str(project / "corpus.txt")
    assert cfg.folder == project / "runs" / "tiny"
    assert cfg.storage_url == f"sqlite:///{project / 'trials.db'}"
    # Without a storage, the default one: runs/studies.db, shared by the folder's studies.
    del raw["storage"]
    monkeypatch.chdir(project)
    cfg = validate_study(raw)
    monkeypatch.chdir(elsewhere)
    assert cfg.storage_url == f"sqlite:///{project / 'runs' / 'studies.db'}"
    # Renamed in Python, it follows its folder as a study file's does.
    renamed = cfg.model_copy(update={"name": "other"})
    assert revalidated(renamed).folder == project / "runs" / "other"


def test_a_bound_left_unset_is_said_to_be_the_priors_only_under_a_prior(tmp_path, shakespeare):
    from scaletune.search.config import config_changes

    raw = tiny_study(tmp_path, shakespeare)
    raw["search"]["dropout"] = {"low": 0.0, "high": 0.2}
    stored = validate_study(raw).model_dump(mode="json", by_alias=True)
    for spec, said in (({"prior": "auto"}, "search.dropout.high: 0.2 -> unset (the prior's own)"),
                       ({"value": 0.1}, "search.dropout.high: 0.2 -> null")):
        cfg = validate_study({**raw, "search": {**raw["search"], "dropout": spec}})
        assert said in config_changes(stored, cfg), config_changes(stored, cfg)
