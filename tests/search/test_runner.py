"""End-to-end studies on a real local Ray cluster with real SQLite storage and real training."""

from __future__ import annotations

import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import ray
from optuna.trial import TrialState
from rich.console import Console

from scaletune.search.cluster import lean_head_node
from scaletune.search.config import load_study, validate_study
from scaletune.search.fit import study_unigram
from scaletune.search.manage import show_study
from scaletune.search.runner import concurrency, n_finished, run_study
from scaletune.search.storage import sqlite_path
from scaletune.trainer.data import prepare_data, unigram_loss
from scaletune.trainer.errors import ConfigError, StorageError
from tests.ports import free_port
from tests.search.helpers import (
    act_when,
    as_foreground_job,
    scaletune_run,
    scaletune_run_to_end,
    tiny_study,
    write_study,
)
from tests.search.test_tracking import board, hparams_row

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def local_ray():
    """A local Ray cluster of the resources the test asks for; the study's driver joins it. Its
    own, even while another Ray cluster runs on this machine (``ray start``, or another test's):
    without ``address="local"``, ray.init joins that one. Without the head node's processes a
    local study does without (search.cluster.SKIPPED).

    The cluster is kept for the next test of this process that asks for the same resources and
    finds it idle (its start and its workers' imports, ~8 s of CPU, paid once); tests that do
    not ask for it find Ray shut down (tests/conftest.py)."""

    def start(**kwargs):
        if ray.is_initialized():
            if KEPT.get("kwargs") == kwargs and _idle():
                return
            ray.shutdown()
        with lean_head_node():
            ray.init(address="local", include_dashboard=False, log_to_driver=False,
                     configure_logging=False,
                     object_store_memory=100 * 1024**2, **kwargs)
        KEPT["kwargs"] = kwargs

    yield start


KEPT: dict[str, dict] = {}
"""The resources of the cluster local_ray started in this process."""


def _idle() -> bool:
    """Nothing runs on the cluster: no actor alive (a study ends its coordinator), every
    resource free."""
    alive = [a for a in ray._private.state.actors().values() if a["State"] == "ALIVE"]
    return not alive and ray.available_resources() == ray.cluster_resources()


def load(cfg) -> optuna.Study:
    return optuna.load_study(study_name=cfg.name, storage=cfg.storage_url)


def peek(cfg) -> optuna.Study | None:
    """The study as another process writes it, or None before the driver created it.

    Read only: the driver creates the tables, and a reader must not race it doing so."""
    if not (cfg.folder / "study.db").exists():
        return None
    try:
        storage = optuna.storages.RDBStorage(cfg.storage_url, skip_table_creation=True)
        return optuna.load_study(study_name=cfg.name, storage=storage)
    except Exception:  # noqa: BLE001 - tables or study not there yet
        return None


def overlaps(a, b) -> bool:
    """Did two trials train at the same time, by the workers' clocks? (A trial's datetimes are the
    driver's ask and tell, which may lag the worker: a finished trial's GPU can be in use again
    before the driver has told the study.)"""
    start, end = "worker_started_at", "worker_ended_at"
    return a.user_attrs[start] < b.user_attrs[end] and b.user_attrs[start] < a.user_attrs[end]


def test_coordinator_hands_the_driver_each_message_as_it_comes(local_ray):
    from scaletune.search.worker import Coordinator

    local_ray(num_cpus=1)
    box = Coordinator.remote()
    pending = box.next.remote(60.0)
    assert ray.wait([pending], timeout=0.5)[0] == []  # nothing posted: the call waits
    ray.get(box.started.remote(3, {"pid": 1}))
    assert ray.get(pending, timeout=10) == [("started", 3, {"pid": 1})]  # not after 60 s
    report = box.report.remote(3, 100, 2.5, {})  # the trial waits for its answer
    assert ray.get(box.next.remote(60.0), timeout=10) == [("report", 3, 100, 2.5, {})]
    assert ray.wait([report], timeout=0.5)[0] == []
    ray.get(box.answer.remote([(3, 100, "prune")]))
    assert ray.get(report, timeout=10) == "prune"
    assert ray.get(box.next.remote(0.1), timeout=10) == []  # empty once its timeout is up


def test_a_trial_does_not_take_torchrun_s_variables_for_its_own(tmp_path, shakespeare,
                                                               monkeypatch):
    # A study started where torchrun's variables are set (under torchrun, on a PyTorch job's
    # pod): its Ray workers inherit them, and each trial joined a process group of 2 as rank 1
    # (here it fails at once, without torchrun's MASTER_ADDR; with it, it waited 30 minutes).
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    cfg = validate_study(tiny_study(tmp_path, shakespeare, n_trials=1))
    study = run_study(cfg, summary=False)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE], [
        t.user_attrs.get("fail_reason") for t in study.trials]


def test_a_trial_takes_its_own_gpu_where_ray_leaves_every_gpu_visible(monkeypatch):
    # With RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES, Ray leaves CUDA_VISIBLE_DEVICES alone and
    # every trial trained on the current device, 0, whichever GPU Ray gave it.
    import torch

    from scaletune.search.worker import _own_gpu

    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.delenv("RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES", raising=False)
    _own_gpu(["3"])  # Ray narrowed the GPUs this process sees: its one is the current device
    assert chosen == []
    monkeypatch.setenv("RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES", "1")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    _own_gpu(["3"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")  # Ray's ids name the visible GPUs
    _own_gpu(["3"])
    _own_gpu([])  # a CPU trial
    assert chosen == [3, 1]


def test_study_runs_prunes_and_records(tmp_path, shakespeare, local_ray):
    local_ray(num_cpus=2)
    cfg = validate_study(tiny_study(tmp_path, shakespeare, n_trials=5))
    # Three sensible trials first, then one whose learning rate is far too small: at equal
    # tokens its loss is above the median of the others, so the median pruner must stop it.
    cfg.folder.mkdir(parents=True)
    study = optuna.create_study(study_name=cfg.name, storage=cfg.storage_url)
    for lr in (3e-3, 5e-3, 8e-3):
        study.enqueue_trial({"lr": lr, "batch_size": 16, "warmup_frac": 0.05})
    study.enqueue_trial({"lr": 1e-4, "batch_size": 16, "warmup_frac": 0.05})

    run_study(cfg)

    study = load(cfg)
    trials = study.trials
    # The study stops at exactly n_trials finished trials.
    assert n_finished(study) == 5 and len(trials) == 5
    slow = trials[3]
    # The small-lr trial is pruned, before its budget, with the reason recorded.
    assert slow.params["lr"] == pytest.approx(1e-4)
    assert slow.state == TrialState.PRUNED
    assert slow.user_attrs["prune_reason"] == (
        f"median pruner at {max(slow.intermediate_values):,} tokens")
    assert max(slow.intermediate_values) < cfg.tokens_per_trial
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) >= 3
    for t in complete:
        # Intermediate values are keyed by tokens seen, on the study's evaluation grid.
        steps = sorted(t.intermediate_values)
        assert all(s % cfg.eval_interval == 0 for s in steps)
        assert steps[-1] == cfg.tokens_per_trial
        # The loss goes down over training.
        assert t.intermediate_values[steps[-1]] < t.intermediate_values[steps[0]]
        # Derived values sit beside the sampled ones: lambda from tau, steps.
        b_tokens = t.params["batch_size"] * cfg.model.block_size
        expected_wd = b_tokens / (t.params["lr"] * t.params["tau"] * cfg.tokens_per_trial)
        assert t.user_attrs["weight_decay"] == pytest.approx(expected_wd)
        assert t.user_attrs["steps"] == -(-cfg.tokens_per_trial // b_tokens)
    # The study ended its coordinator actor: a process that runs several studies keeps none.
    assert [a["ActorClassName"] for a in ray._private.state.actors().values()
            if a["State"] == "ALIVE"] == []
    # The study records what produced it.
    attrs = study.user_attrs
    assert attrs["fingerprint"] == cfg.fingerprint()
    assert {"lr", "tau", "batch_size"} <= set(attrs["priors"])
    assert attrs["provenance"]["torch"]
    # And what token frequencies alone score on its validation windows: below the untrained
    # model's loss (a uniform guess over 256 bytes).
    data = prepare_data(cfg.data, cfg.model.block_size)
    assert attrs["unigram_loss"] == pytest.approx(
        unigram_loss(data, cfg.model.block_size, cfg.data.val_windows))
    assert attrs["unigram_loss"] < math.log(256) - 1


def test_a_study_too_short_to_learn_more_than_token_frequencies_is_told_so(tmp_path, shakespeare,
                                                                           local_ray):
    local_ray(num_cpus=1)
    # A few steps at a learning rate that barely moves the weights: every trial ends about
    # where the untrained model starts, above what token frequencies alone score.
    search = {**tiny_study(tmp_path, shakespeare)["search"], "lr": {"low": 1e-6, "high": 2e-6}}
    cfg = validate_study(tiny_study(tmp_path, shakespeare, n_trials=1, search=search,
                                    tokens_per_trial=4_096, eval_every_tokens=2_048))
    console = Console(record=True, width=400)
    run_study(cfg, console=console)
    said = console.export_text()
    study = load(cfg)
    unigram = study.user_attrs["unigram_loss"]
    assert study.best_value > unigram
    # Rule: the summary reads the loss against it and says the search had little to go on
    # (a loss of 5.5 said nothing to one who does not know what 5.5 means for this data).
    assert (f"best trial 0: val loss {study.best_value:.4f} (token frequencies alone: "
            f"{unigram:.4f})") in said
    assert (f"note: the best loss is {study.best_value:.3f}, above the {unigram:.3f} that a "
            "model of the data's token frequencies alone scores: the trials have not learned "
            "even how often each token occurs") in said
    # Said before the notes of ranges to widen, which assume a search worth reading.
    notes = [line for line in said.split("best trial 0:")[1].splitlines()
             if line.startswith("note: ")]
    assert notes[0].startswith("note: the best loss is"), notes
    # `scaletune show` says the same.
    show_study(cfg, console := Console(record=True, width=400))
    shown = console.export_text()
    assert "(token frequencies alone: " in shown and "note: the best loss is " in shown
    # And the report (its page and console table).
    from scaletune.search.report import make_report

    report = make_report(cfg, tmp_path / "report")
    page = (tmp_path / "report" / "index.html").read_text()
    assert "token frequencies alone: " in page and "the trials have not learned even" in page
    assert report["unigram_loss"] == pytest.approx(unigram)
    # A fit of laws takes it from the study's data where the study has not recorded it (a study
    # finished before scaletune recorded it, which no launch opens again).
    study.set_user_attr("unigram_loss", None)
    assert study_unigram(load(cfg).user_attrs, cfg) == pytest.approx(unigram)
    # Not where the study's data are not cached here, and without making a cache folder for it
    # (a fit writes nothing).
    elsewhere = cfg.model_copy(update={"data": cfg.data.model_copy(
        update={"cache_dir": str(tmp_path / "other" / "cache")})})
    assert study_unigram(load(cfg).user_attrs, elsewhere) is None
    assert not (tmp_path / "other").exists()
    # And such a study records it at its next launch.
    run_study(cfg.model_copy(update={"n_trials": 2}), console=Console(quiet=True))
    assert load(cfg).user_attrs["unigram_loss"] == pytest.approx(unigram)


def test_repeat_best_says_so_where_no_trial_completed_to_repeat(tmp_path, shakespeare,
                                                                 local_ray):
    local_ray(num_cpus=1)
    search = {**tiny_study(tmp_path, shakespeare)["search"], "lr": {"value": 10.0}}
    cfg = validate_study(tiny_study(tmp_path, shakespeare, n_trials=1, search=search))
    console = Console(record=True, width=300)
    run_study(cfg, console=console, repeat_best=2)
    said = console.export_text()
    # The launch promised the repeats after the search; its one trial diverged, so there was
    # nothing to repeat, and it says so where it said nothing.
    assert "the best trial runs 2 more time(s) with other training seeds after the search" in said
    assert ("no trial completed: the 2 repeat(s) of the best trial (--repeat-best) did not run, "
            "with no trial to repeat") in said
    assert [t.state for t in load(cfg).trials] == [TrialState.PRUNED]


def test_repeat_best_reruns_the_best_config_with_other_seeds_to_the_end(tmp_path, shakespeare,
                                                                        local_ray):
    from scaletune.search.report import make_report

    local_ray(num_cpus=2)
    path = write_study(tmp_path, tiny_study(tmp_path, shakespeare, n_trials=3,
                                            pruner={"name": "predicted", "n_startup_trials": 2}))
    cfg = validate_study(tiny_study(tmp_path, shakespeare, n_trials=3,
                                    pruner={"name": "predicted", "n_startup_trials": 2}))
    # A new study: the search, then its best with another seed, in one launch (it was refused:
    # "no complete trial to repeat yet; run it first").
    console = Console(record=True, width=300)
    run_study(cfg, console=console, repeat_best=1)
    assert len(load(cfg).trials) == 4
    best = min(load(cfg).trials[:3], key=lambda t: t.value if t.value is not None else 99)
    said = console.export_text()
    assert ("no complete trial yet: the best trial runs 1 more time(s) with other training seeds "
            "after the search") in said
    assert f"repeating trial {best.number} with training seed(s) 1" in said
    # It ends with the summary `scaletune run` prints (from Python it stopped at the tally).
    assert f"best trial {load(cfg).best_trial.number}: val loss" in said and "next " in said
    run_study(path, repeat_best=1)  # the file: its 3 trials ran, exactly the 1 repeat runs

    trials = load(cfg).trials
    assert len(trials) == 5 and n_finished(load(cfg)) == 5
    repeats = trials[3:]
    assert [t.user_attrs.get("repeat_of") for t in repeats] == [best.number] * 2
    assert sorted(t.user_attrs["train_seed"] for t in repeats) == [1, 2]
    for t in repeats:
        # The best's params, trained to the end (never pruned), under another seed: another loss.
        assert t.params == best.params
        assert t.state == TrialState.COMPLETE
        assert max(t.intermediate_values) == cfg.tokens_per_trial
    assert len({best.value, *(t.value for t in repeats)}) == 3
    # Once more: the study has its trials and repeats, nothing runs, and it says how to go on.
    console = Console(record=True, width=300)
    run_study(cfg, console=console)
    assert len(load(cfg).trials) == 5
    assert ("nothing to run: 5 trials have finished (3 searched, and 2 repeat(s) of a trial with "
            "other seeds, which count on top of n_trials) and the study asks for 3; `--n-trials "
            "6` (or a larger n_trials in the study file) runs more") in console.export_text()
    # Run again as it stands: the repeats count on top of n_trials, nothing more runs.
    run_study(cfg)
    assert len(load(cfg).trials) == 5
    # Rule: a launch that asks for fewer than have finished (--n-trials 2) is told so, by its
    # number, not by the study's count.
    console = Console(record=True, width=250)
    run_study(cfg.model_copy(update={"n_trials": 2}), console=console)
    assert len(load(cfg).trials) == 5
    assert ("n_trials) and the study asks for 2 (n_trials), fewer than have finished already; "
            "`--n-trials 5`") in console.export_text()
    # A trial queued again (stopped with an earlier driver) waits: the launch says how to run it.
    load(cfg).enqueue_trial(best.params, user_attrs={"retry_of": best.number})
    console = Console(record=True, width=300)
    run_study(cfg.model_copy(update={"n_trials": 2}), console=console)
    assert ("fewer than have finished already; 1 trial(s) stopped earlier wait to run again, and "
            "`--n-trials 4` runs them; `--n-trials 5`") in console.export_text()
    # The report measures the spread of the three runs.
    noise = make_report(cfg, tmp_path / "report", source=str(path))["seed_noise"]
    [group] = noise["groups"]
    assert group["trial"] == best.number and group["seeds"] == [0, 1, 2]
    assert group["values"] == [best.value] + [t.value for t in sorted(
        repeats, key=lambda t: t.user_attrs["train_seed"])]
    assert 0 < group["spread"] < 0.2 and noise["measured_floor"] > 0
    # A repeat exported as it ran: with its own training seed, not the study's.
    from scaletune.search.export import export_study

    repeat = max(repeats, key=lambda t: t.user_attrs["train_seed"])
    done = export_study(cfg, tmp_path / "final.yaml", str(path), trial=repeat.number)
    assert done.config.seed == repeat.user_attrs["train_seed"] == 2


def test_predicted_pruner_stops_a_hopeless_trial_in_a_real_study(tmp_path, shakespeare,
                                                                 local_ray):
    local_ray(num_cpus=2)
    cfg = validate_study(tiny_study(tmp_path, shakespeare, n_trials=4,
                                    pruner={"name": "predicted", "n_startup_trials": 2}))
    # Two sensible trials, then one whose learning rate is far too small to get anywhere.
    cfg.folder.mkdir(parents=True)
    study = optuna.create_study(study_name=cfg.name, storage=cfg.storage_url)
    for lr in (5e-3, 8e-3, 1e-4):
        study.enqueue_trial({"lr": lr, "batch_size": 16, "warmup_frac": 0.05})

    run_study(cfg)

    trials = load(cfg).trials
    slow = trials[2]
    # The small-lr trial is stopped before its budget, with the prediction that stopped it:
    # its optimistic end above the best complete trial's final loss plus the noise floor.
    assert slow.state == TrialState.PRUNED
    stopped_at = max(slow.intermediate_values)
    assert stopped_at < cfg.tokens_per_trial
    attrs = slow.user_attrs
    # Rule: and what it was held against (the best then, the floor in force), as numbers and
    # in the reason: a user could not tell which floor had stopped a trial.
    against, floor = attrs["stopped_against_best"], attrs["stopped_with_noise_floor"]
    assert floor == 0.01 and attrs["predicted_final_loss_low"] > against * (1 + floor)
    assert attrs["prune_reason"] == (
        f"predicted pruner at {stopped_at:,} tokens: final loss predicted "
        f"{attrs['predicted_final_loss']:.4f} [{attrs['predicted_final_loss_low']:.4f}, "
        f"{attrs['predicted_final_loss_high']:.4f}], its low end above the best {against:.4f} x "
        f"(1 + noise floor 1.0%) = {against * 1.01:.4f}")
    assert slow.user_attrs["predicted_at_tokens"] == stopped_at
    best = min(t.value for t in trials if t.state == TrialState.COMPLETE)
    assert slow.user_attrs["predicted_final_loss_low"] > best * 1.01
    # The report shows the prediction with what it was held against, as the README says.
    from scaletune.search.report import audit_rows, pruner_audit
    shown = [row for _, row in audit_rows(pruner_audit(load(cfg), cfg))
             if row.startswith(f"trial {slow.number} at")]
    assert shown == [attrs["prune_reason"].replace("predicted pruner at", f"trial {slow.number} at")]


def test_a_study_run_again_with_a_widened_range_goes_on_with_its_trials(tmp_path, shakespeare,
                                                                        local_ray):
    local_ray(num_cpus=2)
    raw = tiny_study(tmp_path, shakespeare, n_trials=2, pruner={"name": "none"})
    raw["search"]["lr"]["high"] = 3e-3
    run_study(validate_study(raw))
    # The summary's note said to widen lr in a new study: the 2 trials were lost to it.
    raw["search"]["lr"]["high"], raw["n_trials"] = 3e-2, 4
    wide = validate_study(raw)
    console = Console(record=True, width=400)
    run_study(wide, console=console)
    assert ("note: the stored study resumes with its search widened (search.lr.high: 0.003 -> "
            "0.03)") in console.export_text()
    trials = load(wide).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert [t.distributions["lr"].high for t in trials] == [3e-3, 3e-3, 3e-2, 3e-2]
    assert load(wide).user_attrs["config"]["search"]["lr"]["high"] == 3e-2


def test_prior_center_is_the_first_trial(tmp_path, shakespeare, local_ray):
    local_ray(num_cpus=2)
    raw = tiny_study(tmp_path, shakespeare, n_trials=2, pruner={"name": "none"})
    raw["search"]["lr"] = {"prior": "auto"}
    cfg = validate_study(raw)
    run_study(cfg)
    study = load(cfg)
    first = study.trials[0]
    # Seeding: trial 0 is the priors' center, enqueued before any sampling.
    assert first.user_attrs.get("source") == "prior center"
    center = study.user_attrs["priors"]["lr"]["center"]
    assert first.params["lr"] == pytest.approx(min(max(center, 1e-30), 1e30), rel=1e-6)


def test_a_trial_queued_again_outside_the_moved_range_runs_and_is_said_once(
        tmp_path, shakespeare, local_ray):
    # A study resumed after its ranges moved (a new version's priors, a narrower range): Optuna
    # printed its own UserWarning, and nothing said which trials ran outside the space.
    import io
    import warnings

    local_ray(num_cpus=2)
    cfg = validate_study(tiny_study(tmp_path, shakespeare, n_trials=1, pruner={"name": "none"}))
    run_study(cfg)
    study = load(cfg)
    study.enqueue_trial({**study.trials[0].params, "lr": 0.05})  # above the range's 0.03
    out = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # Optuna's warning fails the test
        run_study(cfg.model_copy(update={"n_trials": 2}), Console(file=out, width=300))
    said = " ".join(out.getvalue().split())
    assert ("note: trials queued to run again hold values outside the search space of now "
            "(trial 1: lr=0.05 (range now [0.0001, 0.03])): they run with them") in said, said
    trial = load(cfg).trials[1]
    assert trial.state == TrialState.COMPLETE and trial.params["lr"] == 0.05


def test_each_concurrent_trial_gets_its_own_gpu(tmp_path, shakespeare, local_ray):
    local_ray(num_cpus=2, num_gpus=2)
    # Trials long enough to overlap though each starts a process of its own (its start-up, not
    # its training, sets when it begins).
    cfg = validate_study(
        tiny_study(tmp_path, shakespeare, n_trials=4, pruner={"name": "none"},
                   tokens_per_trial=122_880, workers={"cpus_per_trial": 1, "gpus_per_trial": 1})
    )
    run_study(cfg)
    trials = load(cfg).trials
    ids = [t.user_attrs["worker_gpu_ids"] for t in trials]
    # Every trial was given exactly one GPU by Ray, and both GPUs were used.
    assert all(len(i) == 1 for i in ids)
    assert [t.user_attrs["worker_gpu_share"] for t in trials] == [1.0] * 4
    assert {i[0] for i in ids} == {"0", "1"}
    # Trials that ran at the same time never shared a GPU.
    pairs = [(a, b) for a in trials for b in trials if a.number < b.number and overlaps(a, b)]
    assert pairs, "expected two trials to run concurrently"
    for a, b in pairs:
        assert a.user_attrs["worker_gpu_ids"] != b.user_attrs["worker_gpu_ids"]
    # Each trial ran in a process of its own: CUDA reads the GPUs it may use once per process,
    # and a process reused for a trial given the other GPU trained on the first one's.
    pids = [t.user_attrs["worker_pid"] for t in trials]
    assert len(set(pids)) == len(pids), pids


def test_a_finished_study_says_so_without_starting_ray_or_writing(tmp_path, shakespeare,
                                                                  local_ray):
    local_ray(num_cpus=2)
    cfg = validate_study(tiny_study(tmp_path, shakespeare, n_trials=2,
                                    tracking={"tensorboard": True}))
    run_study(cfg)
    ray.shutdown()
    database = sqlite_path(cfg.storage_url)
    stored = database.read_bytes()
    console = Console(record=True, width=300)
    study = run_study(cfg, console=console)
    assert not ray.is_initialized()  # what `scaletune run` of a finished study paid 4-7 s for
    assert database.read_bytes() == stored  # no lease taken, no launch recorded
    assert len(study.trials) == 2
    text = console.export_text()
    assert f"study {cfg.name} on {cfg.storage_url}: 2/2 trials finished" in text
    assert ("nothing to run: 2 trials have finished and the study asks for 2; `--n-trials 4` (or "
            "a larger n_trials in the study file) runs more") in text
    # A config changed in Python is not validated by pydantic: run_study names the bad count
    # (it said "asks for -3 ... `--n-trials -1` runs more").
    for bad in (0, -3, 10**20):
        with pytest.raises(ConfigError, match=rf"n_trials: must be a whole number from 1 to "
                                              rf"1,000,000, got {bad}"):
            run_study(cfg.model_copy(update={"n_trials": bad}))
    with pytest.raises(ConfigError, match=r"repeat_best: must be a whole number from 0 to "):
        run_study(cfg, repeat_best=10**20)
    # A trial queued again waits: still nothing to run, and the line says how to run it.
    load(cfg).enqueue_trial(study.best_params)
    console = Console(record=True, width=300)
    run_study(cfg, console=console)
    assert not ray.is_initialized()
    assert ("1 trial(s) stopped earlier wait to run again, and `--n-trials 3` runs them"
            in console.export_text())
    # A trial a stopped driver left running is this launch's to recover: the driver looks.
    load(cfg).ask()  # takes the waiting trial: RUNNING, as a killed driver leaves it
    # The killed driver's lease: last heard from 30 s into the trial.
    from scaletune.search import lease

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    started = load(cfg).trials[2].datetime_start.timestamp()
    load(cfg).set_user_attr(lease.ATTR, {"host": socket.gethostname(), "pid": gone.pid,
                                         "since": started, "heartbeat": started + 30,
                                         "token": "killed"})
    console = Console(record=True, width=300)
    run_study(cfg, console=console)
    assert ray.is_initialized()
    assert "resumed: trials [2] were left running by a stopped driver" in console.export_text()
    assert [t.state for t in load(cfg).trials][2:] == [TrialState.FAIL, TrialState.WAITING]
    # Its training ended by the driver's last heartbeat, not when this launch found it.
    assert load(cfg).trials[2].user_attrs["wall_time_s"] == pytest.approx(30)
    # The trackers log its end, as for a trial whose worker died (they had none of it).
    assert hparams_row(board(cfg, 2))["state"] == "FAIL"


def test_a_study_whose_trials_all_failed_says_so_when_run_again(tmp_path, shakespeare,
                                                                 local_ray):
    # Trials that ask for cuda where torch sees none (a fake GPU): each fails at its set-up.
    local_ray(num_cpus=2, num_gpus=1)
    cfg = validate_study(
        tiny_study(tmp_path, shakespeare, n_trials=2, trainer={"device": "cuda"},
                   workers={"cpus_per_trial": 1, "gpus_per_trial": 1})
    )
    run_study(cfg)
    assert [t.state for t in load(cfg).trials] == [TrialState.FAIL] * 2
    console = Console(record=True, width=300)
    run_study(cfg, console=console)
    assert len(load(cfg).trials) == 2
    assert ("nothing to run: 2 trials have finished and the study asks for 2; 2 of them failed "
            "(`scaletune show` says why); once the cause is fixed, `--n-trials 4` (or a larger "
            "n_trials in the study file) runs more") in console.export_text()
    # And `scaletune show` says why, once for both trials.
    shown = Console(record=True, width=400)
    show_study(cfg, shown)
    assert ("failed    trials 0, 1: SetupError: device: cuda, but torch sees no CUDA GPU here"
            in shown.export_text())


def test_fractional_gpus_hold_as_many_trials_as_ray_fits(tmp_path, shakespeare, local_ray):
    local_ray(num_cpus=16, num_gpus=1)
    for share, fits in ((0.2, 5), (0.1, 10), (0.25, 4), (1 / 3, 3)):
        study = tiny_study(tmp_path, shakespeare,
                           workers={"cpus_per_trial": 1, "gpus_per_trial": share})
        assert concurrency(validate_study(study)) == fits, share  # 1 // 0.2 == 4.0 in floats


def test_no_more_workers_warm_up_than_the_launch_runs_trials(tmp_path, shakespeare, local_ray,
                                                              monkeypatch):
    from scaletune.search import runner

    # A 1-trial study of 0.5 CPU on 2 cores holds 4 at once, and warmed 4 worker processes
    # (20 for 0.1 CPU), each importing torch while the one trial waited behind them.
    local_ray(num_cpus=2)
    warmed = []
    start = runner._start_workers
    monkeypatch.setattr(runner, "_start_workers",
                        lambda cfg, n, warm=True: warmed.append(n) or start(cfg, n, warm))
    cfg = validate_study(tiny_study(tmp_path, shakespeare, n_trials=1,
                                    workers={"cpus_per_trial": 0.5}))
    assert concurrency(cfg) == 4
    run_study(cfg)
    assert warmed == [1]


def test_a_trial_sharing_a_gpu_is_held_to_its_share_of_its_memory(monkeypatch):
    # Four trials at 0.25 each kept their allocator's peak on one GPU: one ran out of memory
    # for another's peak, and its 'oom' blamed its own micro-batch.
    from types import SimpleNamespace

    import torch

    from scaletune.search.worker import GPU_SHARE_HEADROOM, cap_gpu_memory

    capped, gib = [], 2**30
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction",
                        lambda fraction, device=None: capped.append(fraction))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    gpu = SimpleNamespace(total_memory=80 * gib)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: gpu)
    assert cap_gpu_memory(0.25) == pytest.approx(0.25 * GPU_SHARE_HEADROOM)
    assert capped == [pytest.approx(0.25 * GPU_SHARE_HEADROOM)]
    assert cap_gpu_memory(1.0) is None and cap_gpu_memory(0.0) is None  # a GPU of its own
    assert len(capped) == 1
    # Eight trials on a 24 GB GPU: 5% of 3 GB left 150 MB each for its CUDA context (~0.5 GB),
    # and together they asked for more than the GPU has. Each keeps 512 MiB outside its cap.
    gpu.total_memory = 24 * gib
    assert cap_gpu_memory(0.125) == pytest.approx(0.125 - 0.5 / 24)
    assert 8 * (capped[-1] * 24 * gib + 512 * 2**20) <= 24 * gib


def test_fractional_gpus_fit_each_gpu_apart(tmp_path, shakespeare, local_ray):
    # Ray puts a fraction of a GPU on one GPU: 0.4 fits two on each of two GPUs, not five (the
    # fifth was drawn and said started, and waited for another trial to end).
    local_ray(num_cpus=16, num_gpus=2)
    for share, fits in ((0.4, 4), (0.6, 2), (0.3, 6), (0.5, 4), (1, 2)):
        study = tiny_study(tmp_path, shakespeare,
                           workers={"cpus_per_trial": 1, "gpus_per_trial": share})
        assert concurrency(validate_study(study)) == fits, share
    # "5e-1", as YAML reads 5e-1: a number, as everywhere else (it said "expected a number,
    # such as 0.5 or 3e-4").
    study = tiny_study(tmp_path, shakespeare, workers={"cpus_per_trial": "5e-1"})
    assert validate_study(study).workers.cpus_per_trial == 0.5


@pytest.mark.parametrize(("share", "advice"), [
    (1, "workers.gpus_per_trial: 1 but the cluster has 0 GPUs: give 0 to train on CPUs"),
    (0.25, "workers.gpus_per_trial: 0.25 but the cluster has 0 GPUs: give 0 to train on CPUs"),
])
def test_too_many_gpus_per_trial_is_refused_before_any_trial(tmp_path, shakespeare, local_ray,
                                                            share, advice):

    local_ray(num_cpus=2, num_gpus=0)
    cfg = validate_study(
        tiny_study(tmp_path, shakespeare, workers={"cpus_per_trial": 1, "gpus_per_trial": share})
    )
    with pytest.raises(ConfigError) as refused:
        run_study(cfg)
    assert refused.value.errors == [advice]
    # Nothing was written: the storage was never created.
    assert not (cfg.folder / "study.db").exists()


def test_four_workers_share_sqlite_without_lock_errors(tmp_path, shakespeare, local_ray):
    local_ray(num_cpus=4)
    cfg = validate_study(
        tiny_study(tmp_path, shakespeare, n_trials=8, pruner={"name": "none"},
                   workers={"cpus_per_trial": 1, "max_concurrent": 4})
    )
    run_study(cfg)
    trials = load(cfg).trials
    # All eight trials completed; none failed on the storage.
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 8
    # Four ran at once at some point.
    most = max(sum(overlaps(a, b) for b in trials if b is not a) + 1 for a in trials)
    assert most >= 3


def test_killed_worker_trial_is_failed_and_rerun(tmp_path, shakespeare, local_ray):
    local_ray(num_cpus=2)
    # Forty reports a trial, killed in the first half of its tokens: the kill must find trial 1
    # still running (a fast machine trains 163,840 tokens in under a second, and the watcher,
    # which then waited 0.5 s, killed a worker whose trial had ended).
    raw = tiny_study(tmp_path, shakespeare, n_trials=3, pruner={"name": "none"},
                     tokens_per_trial=327_680)
    cfg = validate_study(raw)

    def trial_1_pid():
        study = peek(cfg)
        running = study.get_trials(states=(TrialState.RUNNING,)) if study else []
        return next((t.user_attrs["worker_pid"] for t in running
                     if t.number == 1 and t.user_attrs.get("worker_pid")
                     and t.intermediate_values and max(t.intermediate_values) <= 163_840), None)

    watcher, killed = act_when(trial_1_pid, lambda pid: os.kill(pid, signal.SIGKILL), timeout=120,
                               settle=0)
    run_study(cfg)
    watcher.join(timeout=5)
    assert killed, "the watcher never saw trial 1 running"

    study = load(cfg)
    victim = study.trials[1]
    # The killed trial is FAIL with the reason, and its params ran again to completion.
    assert victim.state == TrialState.FAIL
    assert "worker died" in victim.user_attrs["fail_reason"]
    reruns = [t for t in study.trials if t.user_attrs.get("retry_of") == victim.number]
    assert len(reruns) == 1 and reruns[0].params == victim.params
    assert reruns[0].state == TrialState.COMPLETE
    # The study still ends with the requested number of finished trials, none lost.
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 3


@ray.remote(num_cpus=0)
def _reporting_trial(number: int, every: int, reports: int, interval: float,
                     coordinator) -> dict:
    """A trial that trains nothing: it reports a falling loss ``reports`` times through the real
    coordinator, ``interval`` s apart, and returns how long each answer took, beside a result
    shaped like train_trial's."""
    waited = []
    for k in range(1, reports + 1):
        sent = time.monotonic()
        ray.get(coordinator.report.remote(number, k * every, 3.0 - 0.01 * k, {}))
        waited.append(time.monotonic() - sent)
        time.sleep(interval)
    return {"status": "completed", "final_val_loss": 3.0 - 0.01 * reports, "steps": reports,
            "waited": waited}


def _slow_third_ask(monkeypatch, seconds: float, during=None):
    """Asking for trial 2 takes ``seconds`` longer (a sampler busy with hundreds of running
    trials); ``during()`` is called as that ask begins."""
    from scaletune.search.plan import SearchPlan

    ask = SearchPlan.ask

    def slow(self, study, num_threads):
        run = ask(self, study, num_threads)
        if run.number == 2:
            if during is not None:
                during()
            time.sleep(seconds)
        return run

    monkeypatch.setattr(SearchPlan, "ask", slow)


def test_a_study_deleted_as_it_runs_stops_its_driver_in_one_message(tmp_path, shakespeare,
                                                                    local_ray, monkeypatch):
    # optuna.delete_study (or a dashboard that allowed it) under a running driver: its next
    # write raised Optuna's KeyError, and stopping the trials raised it again: two tracebacks.
    local_ray(num_cpus=2)
    cfg = validate_study(tiny_study(tmp_path, shakespeare, n_trials=3, pruner={"name": "none"},
                                    workers={"cpus_per_trial": 1, "max_concurrent": 1}))
    _slow_third_ask(monkeypatch, 0.0,
                    during=lambda: optuna.delete_study(study_name=cfg.name,
                                                       storage=cfg.storage_url))

    def launch(run, coordinator):
        return _reporting_trial.remote(run.number, cfg.eval_interval, 3, 0.05, coordinator)

    with pytest.raises(StorageError) as e:
        run_study(cfg, launch=launch)
    said = " ".join(str(e.value).split())
    assert ("the study stopped: study 'tiny' was deleted from its storage as it ran, with its "
            "trials") in said, said
    assert said.endswith("Run the same command to start it again.")
    assert optuna.get_all_study_names(cfg.storage_url) == []


@ray.remote(num_cpus=0)
def _reporting_until(number: int, every: int, answered: str, stop: str, coordinator) -> dict:
    """A trial that trains nothing and reports a falling loss through the real coordinator until
    the file ``stop`` exists (at most 2,000 reports), counting each answered report in the file
    ``answered``."""
    k = 0
    while k < 2000 and not os.path.exists(stop):
        k += 1
        ray.get(coordinator.report.remote(number, k * every, 3.0 - 1e-4 * k, {}))
        Path(answered).write_text(str(k))
        time.sleep(0.02)
    return {"status": "completed", "final_val_loss": 3.0 - 1e-4 * k, "steps": k}


def test_reports_are_answered_while_the_driver_asks_for_a_trial(tmp_path, shakespeare,
                                                                local_ray, monkeypatch):
    from scaletune.search.plan import SearchPlan

    local_ray(num_cpus=2)
    cfg = validate_study(tiny_study(tmp_path, shakespeare, n_trials=3, pruner={"name": "none"},
                                    workers={"cpus_per_trial": 1, "max_concurrent": 2}))
    answered, stop = tmp_path / "answered", tmp_path / "stop"
    seen = []

    def count() -> int:
        return int(answered.read_text() or 0) if answered.exists() else 0

    ask = SearchPlan.ask

    def ask_waiting_for_reports(self, study, num_threads):
        # The ask for trial 2 (a sampler busy with hundreds of running trials) does not return
        # before trial 0 has had 10 more reports answered, or 60 s have passed: a driver that
        # answered no report while it asks would wait out the 60 s, and the test would fail.
        run = ask(self, study, num_threads)
        if run.number == 2:
            before, deadline = count(), time.monotonic() + 60
            while count() < before + 10 and time.monotonic() < deadline:
                time.sleep(0.01)
            seen.append(count() - before)
            stop.touch()
        return run

    monkeypatch.setattr(SearchPlan, "ask", ask_waiting_for_reports)

    def launch(run, coordinator):
        # Trial 0 reports until trial 2 has been asked for; trial 1 ends at once, so trial 2 is
        # asked for while trial 0 reports.
        if run.number == 0:
            return _reporting_until.remote(0, cfg.eval_interval, str(answered), str(stop),
                                           coordinator)
        return _reporting_trial.remote(run.number, cfg.eval_interval, 1, 0.0, coordinator)

    run_study(cfg, launch=launch)

    study = load(cfg)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    # Trial 0's reports were answered while the driver was asking for trial 2.
    assert len(seen) == 1 and seen[0] >= 10, seen
    assert len(study.trials[0].intermediate_values) >= 10


@ray.remote(num_cpus=0)
def _silent_after_reports(number: int, every: int, coordinator, silent: float) -> dict:
    """A trial that reports three times quickly, then sends nothing for ``silent`` s (a worker
    stopped, a collective that never returns), then ends."""
    ray.get(coordinator.started.remote(number, {"pid": 4242, "host": "node-7"}))
    for k in range(1, 4):
        ray.get(coordinator.report.remote(number, k * every, 3.0 - 0.01 * k, {}))
        time.sleep(0.05)
    time.sleep(silent)
    return {"status": "completed", "final_val_loss": 2.9, "steps": 3}


def test_a_trial_silent_far_longer_than_its_reports_took_is_named(tmp_path, shakespeare,
                                                                   local_ray, monkeypatch):
    # A worker stopped with SIGSTOP: the driver waited for it without a word, for ever.
    from scaletune.search import runner

    local_ray(num_cpus=1)
    monkeypatch.setattr(runner, "STALL_FLOOR_S", 2.0)
    cfg = validate_study(tiny_study(tmp_path, shakespeare, n_trials=2, pruner={"name": "none"}))
    console = Console(record=True, width=400)

    def launch(run, coordinator):  # trial 0 goes silent for 6 s; trial 1 does not
        return _silent_after_reports.remote(run.number, cfg.eval_interval, coordinator,
                                            6.0 if run.number == 0 else 0.0)

    run_study(cfg, console=console, launch=launch)
    said = " ".join(console.export_text().split())
    assert said.count("has sent nothing for") == 1, said  # once, for trial 0
    # Reports 0.05 s apart read "at most 0 s apart"; on a loaded machine, where the driver
    # hears them up to a second apart, the warning waits 5 times that (2 s at least). The
    # setting it names is the study's own max_retries (it said workers.max_retries, which
    # validate refuses as an unknown key).
    assert re.search(r"trial 0 has sent nothing for [2-6] s, where its evaluations came at most "
                     r"\d\.\d s apart: its worker \(pid 4242 on node-7\) may be hung, and the "
                     r"study waits for it\.", said), said
    assert "(queued again while the study's max_retries allow)" in said
    assert [t.state for t in load(cfg).trials] == [TrialState.COMPLETE] * 2


@ray.remote(num_cpus=0)
class _Gone:
    def report(self) -> None:
        pass


@ray.remote(num_cpus=0)
def _finding_its_actor_dead(number: int, every: int, coordinator) -> dict:
    """A trial whose call to an actor fails with ActorDiedError (in the product, the only actor
    a trial calls is the coordinator): reports once, then calls one killed."""
    ray.get(coordinator.report.remote(number, every, 3.0, {}))
    gone = _Gone.remote()
    ray.kill(gone)
    ray.get(gone.report.remote())
    return {"status": "completed", "final_val_loss": 2.9, "steps": 1}


def test_a_trial_that_finds_the_coordinator_dead_stops_the_study_as_the_driver_does(
        tmp_path, shakespeare, local_ray):
    # Killed as trials ran, the coordinator failed the driver's own call to it (CoordinatorLost)
    # or, where Ray told a trial's end first, that trial's call: then the trial was failed as
    # "worker died: ActorDiedError" and queued again, and the next one ran into the same.
    from scaletune.search.runner import CoordinatorLost

    local_ray(num_cpus=1)
    cfg = validate_study(tiny_study(tmp_path, shakespeare, n_trials=2, pruner={"name": "none"}))

    def launch(run, coordinator):
        return _finding_its_actor_dead.remote(run.number, cfg.eval_interval, coordinator)

    with pytest.raises(CoordinatorLost, match="1 running trial"):
        run_study(cfg, launch=launch)
    trials = load(cfg).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]  # queued again
    assert trials[0].user_attrs["fail_reason"] == "the study's coordinator died"


@ray.remote(num_cpus=0)
def _reporting_until_stopped(number: int, every: int, coordinator, reported: str) -> dict:
    """A trial that reports every 0.05 s, up to 400 times, and stops when answered "prune";
    the file ``reported`` appears after its third report."""
    for k in range(1, 401):
        if ray.get(coordinator.report.remote(number, k * every, 3.0 - 0.001 * k, {})) == "prune":
            return {"status": "stopped", "steps": k}
        if k == 3:
            Path(reported).touch()
        time.sleep(0.05)
    return {"status": "completed", "final_val_loss": 2.6, "steps": 400}


def test_a_trial_ended_from_the_dashboard_keeps_that_end_and_the_study_goes_on(
        tmp_path, shakespeare, local_ray):
    # The dashboard's Fail button (--allow-writes) on a running trial: the driver stopped at its
    # next report with UpdateFinishedTrialError, and said its trials were queued again.
    import threading

    local_ray(num_cpus=2)
    cfg = validate_study(tiny_study(tmp_path, shakespeare, n_trials=2, pruner={"name": "none"},
                                    workers={"cpus_per_trial": 1, "max_concurrent": 2}))
    console = Console(record=True, width=400)

    reported = tmp_path / "trial-0-reported"

    def launch(run, coordinator):
        if run.number == 0:
            return _reporting_until_stopped.remote(run.number, cfg.eval_interval, coordinator,
                                                   str(reported))
        return _reporting_trial.remote(run.number, cfg.eval_interval, 3, 0.0, coordinator)

    def fail_trial_0_from_elsewhere():
        deadline = time.monotonic() + 60
        while not reported.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        # Another connection, as the dashboard's, once the study is there.
        optuna.load_study(study_name=cfg.name, storage=cfg.storage_url).tell(
            0, state=TrialState.FAIL)

    helper = threading.Thread(target=fail_trial_0_from_elsewhere)
    helper.start()
    run_study(cfg, console=console, launch=launch)
    helper.join()
    said = " ".join(console.export_text().split())
    trials = load(cfg).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE], said
    assert len(trials[0].intermediate_values) < 400  # its worker stopped
    assert ("ended outside the driver as FAIL (the dashboard with --allow-writes, or another "
            "program); kept as it was ended there") in said, said
    assert "queued again" not in said


def test_a_study_stopped_during_an_ask_queues_the_asked_trial_again(tmp_path, shakespeare,
                                                                    local_ray, monkeypatch):
    local_ray(num_cpus=2)
    cfg = validate_study(tiny_study(tmp_path, shakespeare, n_trials=3, pruner={"name": "none"},
                                    workers={"cpus_per_trial": 1, "max_concurrent": 2}))
    # SIGTERM (what a scheduler sends; Ctrl-C is handled the same way, but a shell ignores it in
    # background jobs) arrives while trial 2 is being asked for, before it runs.
    _slow_third_ask(monkeypatch, 2.0, during=lambda: os.kill(os.getpid(), signal.SIGTERM))

    def launch(run, coordinator):
        # Trial 0 reports for 6 s, all below its budget: a report at its budget is its
        # trainer's last evaluation, which a stopped driver records as the trial's end.
        every, reports = ((cfg.eval_interval // 16, 60) if run.number == 0
                          else (cfg.eval_interval, 1))
        return _reporting_trial.remote(run.number, every, reports, 0.1, coordinator)

    with pytest.raises(KeyboardInterrupt):
        run_study(cfg, launch=launch)

    trials = load(cfg).trials
    # Trial 2 was asked for but never launched: it is FAIL, not left RUNNING, and its params
    # wait to run again, as do those of trial 0, which was running.
    assert trials[1].state == TrialState.COMPLETE
    for stopped in (trials[0], trials[2]):
        assert stopped.state == TrialState.FAIL
        assert stopped.user_attrs["fail_reason"] == "stopped (SIGTERM)"
        again = [t for t in trials if t.user_attrs.get("retry_of") == stopped.number]
        assert [t.state for t in again] == [TrialState.WAITING]
        assert again[0].system_attrs["fixed_params"] == stopped.params


def _scaletune(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "scaletune.search.cli", *args], cwd=REPO, start_new_session=True,
        preexec_fn=as_foreground_job, **kwargs
    )


def test_resume_after_killing_the_driver_runs_only_the_rest(tmp_path, shakespeare):
    # Twenty reports a trial: a fast machine trains one in about 2 s, and the poll below must
    # find one in the first half of its tokens (with ten, 0.5 s, it missed three in a CI run).
    raw = tiny_study(tmp_path, shakespeare, n_trials=4, pruner={"name": "none"},
                     tokens_per_trial=163_840)
    path = write_study(tmp_path, raw)
    cfg = validate_study(raw)
    with scaletune_run(path, tmp_path / "first.log") as proc:
        deadline = time.time() + 240
        while time.time() < deadline:
            time.sleep(0.1)
            study = peek(cfg)
            if study is None:
                continue
            trials = study.get_trials(deepcopy=False)
            done = sum(t.state == TrialState.COMPLETE for t in trials)
            # A running trial in the first half of its tokens: it cannot finish (and be told)
            # between this read and the kill below, as one near its end could. One that has
            # reported, so that it trains with its params.
            early = [t for t in trials if t.state == TrialState.RUNNING
                     and t.intermediate_values and max(t.intermediate_values) <= 81_920]
            if done >= 2 and early:
                break
        else:
            pytest.fail("first run never got two trials done: " + (tmp_path / "first.log").read_text())
        os.killpg(proc.pid, signal.SIGKILL)  # kill -9 the driver while a trial runs
        proc.wait()
    before = load(cfg).trials
    zombies = [t for t in before if t.state == TrialState.RUNNING]
    done_before = sum(t.state == TrialState.COMPLETE for t in before)
    assert zombies, "the driver was killed while a trial ran"

    second = scaletune_run_to_end(path)
    assert second.returncode == 0, second.stdout + second.stderr
    after = load(cfg).trials
    # No RUNNING zombies remain; the zombie is FAIL with a reason and its params ran again.
    assert not [t for t in after if t.state == TrialState.RUNNING]
    for z in zombies:
        t = after[z.number]
        assert t.state == TrialState.FAIL and "driver" in t.user_attrs["fail_reason"]
        retries = [r for r in after if r.user_attrs.get("retry_of") == z.number]
        assert len(retries) == 1
        # A trial killed between its creation and its params (the driver's second write for it)
        # had none to keep: its retry is a new draw.
        assert retries[0].params == z.params or not z.params
    # Exactly the remaining trials ran: completed trials were kept, and the second run started
    # one trial per missing finished trial (the re-run zombie among them), no more.
    assert sum(t.state == TrialState.COMPLETE for t in after) == 4
    assert len(after) == len(before) + (4 - done_before)
    assert "resumed" in second.stdout


def test_dashboard_serves_the_study_of_its_file(tmp_path, shakespeare):
    # (That it listens on loopback alone: tests/search/test_security.py.)
    raw = tiny_study(tmp_path, shakespeare)
    cfg = validate_study(raw)
    cfg.folder.mkdir(parents=True)
    study = optuna.create_study(study_name=cfg.name, storage=cfg.storage_url)
    trial = study.ask()
    trial.report(3.0, 8192)
    trial.report(2.5, 16384)
    study.tell(trial, 2.4)
    path = write_study(tmp_path, raw)
    port = free_port()
    proc = _scaletune("dashboard", str(path), "--port", str(port),
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        body = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as r:
                    body = r.read().decode()
                break
            except OSError:
                time.sleep(0.2)
        assert body is not None, "dashboard did not answer"
        assert '"tiny"' in body
        import json

        sid = json.loads(body)["study_summaries"][0]["study_id"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{sid}", timeout=5) as r:
            detail = json.loads(r.read().decode())
        # The learning curve (intermediate values keyed by tokens) is served.
        steps = [iv["step"] for iv in detail["trials"][0]["intermediate_values"]]
        assert steps == [8192, 16384]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def test_a_trial_whose_end_cannot_be_written_is_named_and_runs_again(tmp_path, shakespeare,
                                                                     local_ray, monkeypatch):
    import sqlalchemy.exc

    from scaletune.search import runner

    local_ray(num_cpus=2)
    cfg = validate_study(tiny_study(tmp_path, shakespeare, n_trials=3, pruner={"name": "none"},
                                    workers={"cpus_per_trial": 1, "max_concurrent": 1}))
    finish = runner._finish

    def full_disk_at_trial_1(study, run, cfg):
        if run.number == 1:  # the disk fills as trial 1's end is written
            raise sqlalchemy.exc.OperationalError(
                "UPDATE trials SET state=?", {}, Exception("database or disk is full"))
        return finish(study, run, cfg)

    def launch(run, coordinator):
        return _reporting_trial.remote(run.number, cfg.eval_interval, 2, 0.0, coordinator)

    monkeypatch.setattr(runner, "_finish", full_disk_at_trial_1)
    with pytest.raises(StorageError) as stopped:
        run_study(cfg, launch=launch)
    # The stop names trial 1, which is left RUNNING (nothing more is written once a write
    # failed), beside trial 0, which was told.
    assert "trials [1] were stopped and will run again" in str(stopped.value)
    assert [t.state for t in load(cfg).trials] == [TrialState.COMPLETE, TrialState.RUNNING]

    monkeypatch.setattr(runner, "_finish", finish)
    run_study(cfg, launch=launch)  # the same study again, once there is room
    trials = load(cfg).trials
    assert trials[1].state == TrialState.FAIL  # recovered as a stopped driver's trial
    again = [t for t in trials if t.user_attrs.get("retry_of") == 1]
    assert [t.state for t in again] == [TrialState.COMPLETE]
    assert n_finished(load(cfg)) == 3


def test_run_study_checks_what_a_config_changed_in_python_would_run_with(tmp_path, shakespeare):
    cfg = validate_study(tiny_study(tmp_path, shakespeare))
    # A field set in place is not validated: it failed deep in the run (TypeError: '<' not
    # supported), and a repeat count below 0 queued nothing and said "seed(s)  (never pruned)".
    cfg.n_trials = "four"
    with pytest.raises(ConfigError, match="n_trials: must be a whole number from 1 to 1,000,000, "
                                          "got 'four'"):
        run_study(cfg)
    cfg.n_trials = 2
    with pytest.raises(ConfigError, match="repeat_best: must be a whole number from 0 to 1,000,000, got -1"):
        run_study(cfg, repeat_best=-1)
    with pytest.raises(TypeError, match=r"not a dict \(a dict: validate_study\(d\) first\)"):
        run_study(cfg.model_dump())
    # model_copy(update=...) validates nothing: a name no file may give stored a study the
    # commands could not open, a section as a dict failed deep in the run, a misspelt key was
    # dropped without a word. Each is said as the file's error would be, before anything runs.
    for update, says in (({"name": "bad name/x"}, "name: not a name this takes"),
                         ({"n_trails": 5}, "n_trails: unknown key; allowed: name"),
                         ({"model": {**cfg.model.model_dump(), "n_layers": 2}},
                          "model.n_layers: unknown key")):
        with pytest.raises(ConfigError, match=re.escape(says)):
            run_study(cfg.model_copy(update=update))
    from scaletune.search.config import revalidated

    as_dict = revalidated(cfg.model_copy(update={"model": cfg.model.model_dump()}))
    assert as_dict.model == cfg.model and as_dict.source == cfg.source
    # The search section as a dict (the search's dump met it: a KeyError), a key misspelt a
    # section down (dropped), and a Param's alias `as` (dropped: as_ stayed tau).
    searched = revalidated(cfg.model_copy(update={"search": {"lr": {"low": 1e-4, "high": 1e-2}}}))
    assert (searched.search.lr.low, searched.search.lr.high) == (1e-4, 1e-2)
    with pytest.raises(ConfigError, match=re.escape("model.n_layers: unknown key")):
        revalidated(cfg.model_copy(update={"model": cfg.model.model_copy(
            update={"n_layers": 4})}))
    search = cfg.search.model_copy()
    search.params = {**search.params, "weight_decay": cfg.search.weight_decay.model_copy(
        update={"as": "lambda"})}
    assert revalidated(cfg.model_copy(update={"search": search})).search.weight_decay.as_ == \
        "lambda"
    # A study renamed in Python runs in a folder of its new name (runs/<name>), where it ran
    # in the file's study's.
    raw = tiny_study(tmp_path, shakespeare)
    del raw["study_dir"]  # runs/tiny beside the file
    loaded = load_study(write_study(tmp_path, raw))
    renamed = revalidated(loaded.model_copy(update={"name": "tiny-copy"}))
    assert renamed.folder == loaded.folder.parent / "tiny-copy"
    assert renamed.storage_url == loaded.storage_url and renamed.source == loaded.source
    # What the file gave stays what it gave, section by section: read again from a dump, every
    # field read as given, and the run said of rope_theta and muon_lr, which the file does
    # not give, that they were not used.
    for section in ("model", "trainer", "search", "sampler", "pruner", "data"):
        assert (getattr(renamed, section).model_fields_set
                == getattr(loaded, section).model_fields_set), section
    assert renamed.model.unread_note("model") is None
    assert renamed.trainer.optim.unread_note("optim") is None
    assert renamed.trainer.optim.model_fields_set == loaded.trainer.optim.model_fields_set
    assert not cfg.folder.exists()


def test_a_long_error_of_a_trial_is_cut_at_a_word():
    from scaletune.search.runner import _last_line

    # Ray's node-death message was cut mid-word: "To see node death information, use `ray".
    said = "The actor died because its node died. " * 10 + "To see node death information, use `ray list nodes`."
    line = _last_line(RuntimeError(said))
    assert len(line) <= 304 and line.endswith(" ...") and said.startswith(line[:-4])
    assert said[len(line) - 4] == " "  # the cut falls between two words
