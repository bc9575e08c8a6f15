"""Faults during a study, with real processes: a diverging trial, a trial out of memory, a disk
that is full before or during a study, and Ctrl-C. Each must end the affected trial (or the
study) with its reason recorded, leave the storage consistent, and let the study finish."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import ray
from optuna.trial import FrozenTrial, TrialState

import scaletune.search.runner
from scaletune.search import lease
from scaletune.search.cli import main
from scaletune.search.cluster import lean_head_node
from scaletune.search.config import StudyConfig, validate_study
from scaletune.search.plan import n_finished, recover
from scaletune.search.runner import run_study
from scaletune.search.storage import sqlite_path
from tests.search.helpers import (
    flat,
    scaletune_run,
    scaletune_run_to_end,
    tiny_study,
    trial_attr_rows,
    write_study,
)
from tests.search.test_tracking import board, hparams_row

REPO = Path(__file__).resolve().parents[2]

# A learning rate the simulated out-of-memory error picks out (inside the study's lr range).
OOM_LR = 1.2345e-3

# Put on PYTHONPATH before Ray starts, this wraps trainer.loop.train in every Ray worker so that
# the trial with learning rate OOM_LR raises torch.OutOfMemoryError, as a batch that does not fit
# on the GPU does. The product code runs unchanged.
SITECUSTOMIZE = '''
import importlib.machinery
import os
import sys

_LR = float(os.environ["SCALETUNE_TEST_OOM_LR"])


class _WrapTrain:
    def find_spec(self, name, path=None, target=None):
        if name != "scaletune.trainer.loop":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            real = module.train

            def train(config, report=None, resume=False, **options):
                if abs(config.optim.lr - _LR) <= 1e-9 * _LR:
                    import torch

                    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
                return real(config, report, resume, **options)

            module.train = train

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _WrapTrain())
'''


def load(cfg) -> optuna.Study:
    return optuna.load_study(study_name=cfg.name, storage=cfg.storage_url)


def trial_rows(db: Path) -> list[tuple[int, str, int | None]]:
    """(number, state, worker pid) of every trial."""
    return trial_attr_rows(db, "worker_pid")


def running_on_a_worker(db: Path) -> tuple[int, str, int] | None:
    """The row of the first trial RUNNING on a worker (its pid recorded), else None."""
    return next((r for r in trial_rows(db) if r[1] == "RUNNING" and r[2]), None)


def unpruned_study(tmp_path: Path, shakespeare: Path, **study: Any
                   ) -> tuple[Path, StudyConfig, Path]:
    """A tiny study without a pruner (each trial trains to its end), written to ``tmp_path``:
    its file, its config and its SQLite storage (study.db in its folder)."""
    raw = tiny_study(tmp_path, shakespeare, pruner={"name": "none"}, **study)
    path = write_study(tmp_path, raw)
    cfg = validate_study(raw)
    return path, cfg, cfg.folder / "study.db"


def wait_for(predicate, what: str, proc: subprocess.Popen, log: Path, timeout: float = 240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the driver exited ({proc.returncode}) before {what}:\n{log.read_text()}")
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()}")


def assert_stopped_and_queued(study: optuna.Study, number: int, reason: str) -> FrozenTrial:
    """Trial ``number`` was stopped with the driver: FAIL with ``reason``, queued again with the
    same params, and the storage holds no RUNNING trial. Returns it."""
    trial = study.trials[number]
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["fail_reason"] == reason
    waiting = [t for t in study.trials if t.state == TrialState.WAITING]
    assert [t.user_attrs.get("retry_of") for t in waiting] == [number]
    assert waiting[0].system_attrs["fixed_params"] == trial.params
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    return trial


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` now (children, theirs, ...), from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'
            fields = stat.read_text().rpartition(")")[2].split()
            parents[int(stat.parent.name)] = int(fields[1])
    below, frontier = [], [pid]
    while frontier:
        frontier = [p for p, parent in parents.items() if parent in frontier]
        below += frontier
    return below


def gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


# --------------------------------------------------------------------------- diverged and OOM


@pytest.mark.slow
def test_a_diverging_and_an_out_of_memory_trial_end_each_as_its_own_and_the_study_goes_on(
        tmp_path_factory, shakespeare):
    """One study: its first trial explodes (lr=50), its second runs out of memory. (One test,
    not a module fixture for two: the two test processes each ran the study.)"""
    tmp = tmp_path_factory.mktemp("bad-trials")
    hook = tmp / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    cfg = validate_study(tiny_study(tmp, shakespeare, n_trials=3, pruner={"name": "none"}))
    cfg.folder.mkdir(parents=True)
    study = optuna.create_study(study_name=cfg.name, storage=cfg.storage_url)
    study.enqueue_trial({"lr": 50.0, "batch_size": 16, "warmup_frac": 0.0})
    study.enqueue_trial({"lr": OOM_LR, "batch_size": 16, "warmup_frac": 0.0})
    with pytest.MonkeyPatch.context() as mp:
        # Ray workers inherit the environment of the process that starts Ray.
        mp.setenv("PYTHONPATH", os.pathsep.join(
            p for p in (str(hook), os.environ.get("PYTHONPATH")) if p))
        mp.setenv("SCALETUNE_TEST_OOM_LR", repr(OOM_LR))
        mp.setenv("SCALETUNE_CACHE", str(tmp_path_factory.getbasetemp() / "token-cache"))
        with lean_head_node():  # as a study's own cluster starts (search.cluster)
            ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False,
                     configure_logging=False, object_store_memory=100 * 1024**2)
        try:
            with warnings.catch_warnings():
                # lr=50 lies outside the searched range on purpose.
                warnings.filterwarnings("ignore", "Fixed parameter lr", UserWarning)
                run_study(cfg)
        finally:
            ray.shutdown()
    study = load(cfg)
    exploded = study.trials[0]
    # (The enqueued trial ran with the exploding learning rate.)
    assert exploded.params["lr"] == 50.0
    # A trial whose loss explodes ends as PRUNED (the sampler still learns that this region is
    # bad; a FAIL would be ignored by it), with the reason recorded.
    assert exploded.state == TrialState.PRUNED
    assert exploded.user_attrs["prune_reason"].startswith("diverged: ")
    assert "max_loss" in exploded.user_attrs["prune_reason"] or (
        "non-finite" in exploded.user_attrs["prune_reason"])
    # It ended at once: a few optimizer steps, long before the first evaluation.
    assert exploded.user_attrs["tokens_seen"] < cfg.eval_interval
    assert exploded.intermediate_values == {}
    # It is not re-run: divergence is a property of the parameters, not a machine failure.
    assert not [t for t in study.trials if t.user_attrs.get("retry_of") == exploded.number]

    oom = study.trials[1]
    # (The enqueued trial ran with the learning rate the simulated OOM picks out.)
    assert oom.params["lr"] == OOM_LR
    # Out of memory is FAIL, with a reason that names the micro-batch to use instead.
    assert oom.state == TrialState.FAIL
    reason = oom.user_attrs["fail_reason"]
    assert reason.startswith("out of memory with batch_size=16, micro_batch_size=16")
    assert "set trainer.micro_batch_size to 8 or less" in reason
    # A deterministic OOM is not queued again: it would fail the same way forever.
    assert oom.user_attrs.get("retried") is not True
    assert not [t for t in study.trials if t.user_attrs.get("retry_of") == oom.number]
    assert sum(t.params.get("lr") == OOM_LR for t in study.trials) == 1
    # The study still ends: the failed trial counts as finished, the others ran normally.
    assert n_finished(study) == cfg.n_trials == len(study.trials)
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == cfg.n_trials - 2


# --------------------------------------------------------------------------- disk full


def test_too_little_free_space_is_refused_before_anything_is_written(
    tmp_path, shakespeare, capsys, monkeypatch
):
    real = shutil.disk_usage
    free = 12_345_678

    def nearly_full(path):
        usage = real(path)
        return usage._replace(free=free)

    monkeypatch.setattr(shutil, "disk_usage", nearly_full)
    study = tiny_study(tmp_path, shakespeare)
    code = main(["run", str(write_study(tmp_path, study))])
    out = capsys.readouterr().err
    # Refused as bad input, naming the study folder, its free bytes and the minimum.
    assert code == 2, out
    folder = tmp_path / "study"
    assert f"study_dir: only 12,345,678 bytes free in {folder}" in out
    assert f"at least {scaletune.search.runner.MIN_FREE_BYTES:,}" in out
    # Nothing was written: no storage.
    assert not (folder / "study.db").exists()


def test_enough_free_space_passes_the_check(tmp_path, shakespeare, monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(scaletune.search.runner, "MIN_FREE_BYTES", 1)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1))
    cfg = validate_study(tiny_study(tmp_path, shakespeare))
    # Exactly the minimum is enough: the threshold is a constant the check really uses.
    assert scaletune.search.runner._folder_errors(cfg.folder) == []


@pytest.fixture
def small_disk(tmp_path):
    """A real 64 MB file system (tmpfs): enough to start a study, small enough to fill."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root): {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@contextlib.contextmanager
def full(folder: Path) -> Iterator[Path]:
    """Keep the file system full while the block runs: write zeros until no byte is left, then
    go on taking any space freed (SQLite deletes its rollback journal at each commit, and a fill
    that raced with a transaction would leave that journal's blocks free for the next one)."""
    filler = folder / "filler"
    stop = threading.Event()
    first = threading.Event()

    def take() -> None:
        chunk = b"\0" * (1 << 20)  # a megabyte at a time, then pages once the disk is full
        with open(filler, "wb", buffering=0) as f:
            while not stop.is_set():
                try:
                    f.write(chunk)
                except OSError:
                    chunk = chunk[:4096]
                    first.set()
                    stop.wait(0.005)

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    try:
        assert first.wait(60), "the file system did not fill"
        yield filler
    finally:
        stop.set()
        thread.join()


@pytest.mark.slow
def test_disk_full_during_a_study_stops_it_cleanly_and_it_resumes(tmp_path, shakespeare,
                                                                   small_disk):
    # Twelve short trials: once the disk is full, the driver still has trials to start and write
    # (with three, and with six on a loaded machine, a driver that ran ahead of the test's watch
    # finished before the disk filled).
    raw = tiny_study(tmp_path, shakespeare, n_trials=12, pruner={"name": "none"},
                     tokens_per_trial=24_576, study_dir=str(small_disk / "study"))
    path = write_study(tmp_path, raw)
    db = small_disk / "study" / "study.db"
    log = tmp_path / "first.log"
    with scaletune_run(path, log) as proc:
        # Fill the disk once a trial has finished and the next one runs, as the driver's output
        # says it (read without the storage's locks, so the moment is not missed).
        wait_for(lambda: "trial 1 started" in log.read_text(), "a trial to finish", proc, log)
        with full(small_disk) as filler:
            code = proc.wait(timeout=120)
    out = flat(log.read_text())
    # The driver stops with a clear message and no traceback, naming the cause and the way on
    # (exit code 2, as for the other problems of the study's surroundings found at start).
    assert code == 2, out
    assert "the study stopped: using the storage sqlite:///" in out
    assert "database or disk is full" in out
    assert "run the same command to resume" in out
    assert "Traceback" not in out
    # The storage is consistent: SQLite's own check passes, finished trials are kept.
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        con.close()
    kept = [r for r in trial_rows(db) if r[1] == "COMPLETE"]
    assert len(kept) >= 1
    # Trials that ran when the disk filled could not be told: they are still RUNNING.
    stopped = [n for n, state, _ in trial_rows(db) if state == "RUNNING"]

    filler.unlink()
    second = scaletune_run_to_end(path)
    assert second.returncode == 0, second.stdout + second.stderr
    study = load(validate_study(raw))
    # Once there is room again the same command finishes the study: exactly n_trials finished
    # trials, the trials finished before the failure among them, none left RUNNING.
    assert n_finished(study) == 12
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    assert {n for n, _, _ in kept} <= {t.number for t in study.trials
                                       if t.state == TrialState.COMPLETE}
    # The trials stopped by the failure became FAIL on resume and ran again. (None where the
    # write that failed was the next trial's creation, after the last one was told.)
    for n in stopped:
        assert study.trials[n].state == TrialState.FAIL
        assert any(t.user_attrs.get("retry_of") == n and t.state == TrialState.COMPLETE
                   for t in study.trials)


# --------------------------------------------------------------------------- Ctrl-C


@pytest.mark.slow
def test_ctrl_c_stops_requeues_and_the_same_command_resumes(tmp_path, shakespeare):
    # Trials of 20 reports, which a fast machine trains in about 2 s: the signal must find the
    # trial still running.
    path, cfg, db = unpruned_study(tmp_path, shakespeare, n_trials=3, tokens_per_trial=163_840,
                                   tracking={"tensorboard": True})
    log = tmp_path / "first.log"
    with scaletune_run(path, log) as proc:
        def running_worker():
            rows = trial_rows(db)
            done = sum(r[1] == "COMPLETE" for r in rows)
            return next((r for r in rows if r[1] == "RUNNING" and r[2] and done >= 1), None)

        number, _, pid = wait_for(running_worker, "a trial to run after one finished", proc, log)
        pid = int(pid)
        # Ctrl-C in a terminal sends SIGINT to the whole foreground process group.
        os.killpg(proc.pid, signal.SIGINT)
        # A second, impatient Ctrl-C once the trials are stopped: it landed in Ray's exit hook,
        # printed a KeyboardInterrupt traceback and left Ray's agents running, orphaned.
        wait_for(lambda: "run the same command to resume" in flat(log.read_text()),
                 "the first Ctrl-C's message", proc, log, timeout=120)
        started = descendants(proc.pid)
        time.sleep(0.3)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=120)
    out = flat(log.read_text())
    # The conventional exit code of a program ended by SIGINT (130), or its death by it (what a
    # shell also shows as 130) where the second Ctrl-C came after Ray's shutdown: after the
    # first, a second one quits at once.
    assert code in (130, -signal.SIGINT), out
    # It says how to go on.
    assert "run the same command to resume" in out
    assert "Traceback" not in out, out
    # The running trial's worker process was stopped, and every process the driver started.
    assert gone(pid), f"worker {pid} still runs"
    left = [p for p in started if not gone(p, timeout=15)]
    assert not left, [Path(f"/proc/{p}/cmdline").read_bytes()[:80] for p in left]
    study = load(cfg)
    trial = assert_stopped_and_queued(study, number, "interrupted (Ctrl-C)")
    # The trackers log how it ended, as for a trial whose worker died (they had no end of it).
    assert hparams_row(board(cfg, number))["state"] == "FAIL"

    second = scaletune_run_to_end(path)
    assert second.returncode == 0, second.stdout + second.stderr
    study = load(cfg)
    # The same command finishes the study: exactly n_trials finished, no RUNNING trial, and
    # the interrupted parameters ran again to completion.
    assert n_finished(study) == cfg.n_trials
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == cfg.n_trials
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    rerun = [t for t in study.trials if t.user_attrs.get("retry_of") == number]
    assert len(rerun) == 1 and rerun[0].params == trial.params
    assert rerun[0].state == TrialState.COMPLETE


def test_the_coordinator_killed_mid_study_stops_it_cleanly_and_it_resumes(tmp_path, shakespeare):
    # The process of the actor that carries the trials' reports to the driver is a Ray worker
    # like the trials'. Killed, it ended the launch with a 50-line ActorDiedError traceback.
    # (It is not restarted: Ray's out-of-memory killer takes retriable workers first.)
    path, cfg, db = unpruned_study(tmp_path, shakespeare, n_trials=3, tokens_per_trial=81_920)
    log = tmp_path / "run.log"
    with scaletune_run(path, log) as proc:
        def coordinator_as_a_trial_runs():
            if not running_on_a_worker(db):
                return None
            return next((p for p in descendants(proc.pid) if Path(f"/proc/{p}/cmdline").exists()
                         and Path(f"/proc/{p}/cmdline").read_bytes().startswith(
                             b"ray::Coordinator")), None)

        coordinator = wait_for(coordinator_as_a_trial_runs, "a trial to run", proc, log)
        os.kill(coordinator, signal.SIGKILL)
        code = proc.wait(timeout=240)
    out = log.read_text()
    assert code == 2, out
    said = flat(out)
    assert "the study stopped: its coordinator (the Ray actor that carries the trials' reports" in said
    assert "were stopped and queued again. Run the same command to resume" in said
    assert "Traceback" not in out and "\x1b[" not in out, out  # Ray's own note, plain in a file
    study = load(cfg)
    stopped = [t for t in study.trials if t.state == TrialState.FAIL]
    assert stopped and all(t.user_attrs["fail_reason"] == "the study's coordinator died"
                           for t in stopped)
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    # The same command finishes the study.
    second = scaletune_run_to_end(path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert sum(t.state == TrialState.COMPLETE for t in load(cfg).trials) == 3


@pytest.mark.slow
def test_a_closed_output_stops_the_running_trials_and_queues_them_again(tmp_path, shakespeare):
    # `scaletune run study.yaml | head`: once head has its lines it goes, and the driver's next
    # line finds no reader. rich then ends the program (SystemExit), which left the running
    # trial RUNNING in the storage until the next run recovered it.
    path, cfg, _ = unpruned_study(tmp_path, shakespeare, n_trials=3, tokens_per_trial=81_920)
    proc = subprocess.Popen([sys.executable, "-m", "scaletune.search.cli", "run", str(path)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = "-"
        while line and not line.startswith("trial 0 started"):
            line = proc.stdout.readline()
        assert line, proc.stderr.read()
        proc.stdout.close()
        code = proc.wait(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read()
    assert code == 1, err
    assert ("scaletune run: the output was closed (a broken pipe); 1 running trial(s) stopped "
            "and queued again; run the same command to resume") in err
    assert "Traceback" not in err, err
    assert_stopped_and_queued(load(cfg), 0, "the driver's output was closed")


def test_trials_a_stopped_driver_left_running_run_again_even_without_retries(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="s")
    for _ in range(2):
        study.ask().suggest_float("lr", 1e-4, 1e-2)
    assert recover(study, max_retries=0) == [0, 1]
    # Not the trials' failure: both are queued again and count toward nothing yet.
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert [t.user_attrs["retried"] for t in failed] == [True, True]
    assert n_finished(study) == 0
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 2


def test_a_trial_stopped_before_its_rerun_was_queued_is_not_said_to_be_left_running(tmp_path):
    # A second Ctrl-C between a stopped trial's FAIL and its re-run's queueing: the next run
    # said the trial "was left running by a stopped driver".
    from rich.console import Console

    from scaletune.search.runner import _say_recovered

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="s")
    for _ in range(2):
        study.ask().suggest_float("lr", 1e-4, 1e-2)
    study._storage.set_trial_user_attr(study.trials[1]._trial_id, "retried", True)
    study._storage.set_trial_user_attr(study.trials[1]._trial_id, "fail_reason",
                                       "interrupted (Ctrl-C)")
    study.tell(1, state=TrialState.FAIL)
    recovered = recover(study, max_retries=0)
    assert recovered == [0, 1]
    console = Console(record=True, width=300)
    _say_recovered(console, study, recovered)
    assert console.export_text().splitlines() == [
        "resumed: trials [0] were left running by a stopped driver; marked FAIL and queued again",
        "resumed: trials [1] were stopped by a driver that ended before it queued them again; "
        "queued again now"]


def test_a_trial_a_stopped_driver_left_trained_until_the_driver_was_last_heard(tmp_path):
    from scaletune.search.summary import trial_wall

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="s")
    study.ask().suggest_float("lr", 1e-4, 1e-2)
    (t,) = study.get_trials()
    # Its time counted up to the resume: a driver killed on Friday, resumed on Monday, had
    # trained for three days.
    recover(study, max_retries=0, last_heard=t.datetime_start.timestamp() + 42.0)
    (failed,) = study.get_trials(states=(TrialState.FAIL,))
    assert trial_wall(failed) == pytest.approx(42.0)
    # One whose result was written before the driver stopped (its state was not) keeps the
    # time it measured: the heartbeat's estimate, before the trial started, made it 0.0.
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1e-2)
    trial.set_user_attr("wall_time_s", 1.2)
    started = study.get_trials()[-1].datetime_start.timestamp()
    recover(study, max_retries=0, last_heard=started - 5.0)
    assert study.get_trials()[trial.number].user_attrs["wall_time_s"] == 1.2


def test_a_failed_trial_whose_re_run_was_never_queued_is_queued_by_the_next_driver(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="s")
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1e-2)
    trial.set_user_attr("fail_reason", "interrupted (Ctrl-C)")
    trial.set_user_attr("retried", True)
    study.tell(trial, state=TrialState.FAIL)  # a second Ctrl-C here: no re-run was queued
    # Its params never ran again: recover looked at RUNNING trials only.
    assert recover(study, max_retries=0) == [0]
    (again,) = study.get_trials(states=(TrialState.WAITING,))
    assert again.user_attrs["retry_of"] == 0
    assert again.system_attrs["fixed_params"] == {"lr": trial.params["lr"]}
    assert recover(study, max_retries=0) == []  # once


def test_a_trial_run_again_keeps_the_label_of_the_one_it_repeats(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="s")
    study.enqueue_trial({"lr": 1e-3}, user_attrs={"source": "prior center"})
    study.ask().suggest_float("lr", 1e-4, 1e-2)
    recover(study, max_retries=0)
    # The prior center's re-run had an empty source in report's trials.csv.
    again = study.get_trials(states=(TrialState.WAITING,))
    assert [t.user_attrs.get("source") for t in again] == ["prior center"]


def test_a_queued_trial_stopped_before_its_params_were_drawn_runs_them_again(tmp_path):
    # The driver stopped between asking for the priors' center and drawing its params: its
    # re-run was queued with no params, so the sampler drew others and the center never ran.
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="s")
    study.enqueue_trial({"lr": 1e-3, "tau": 10.9}, user_attrs={"source": "prior center"})
    asked = study.ask()
    assert asked.params == {}
    recover(study, max_retries=0)
    (again,) = study.get_trials(states=(TrialState.WAITING,))
    assert again.system_attrs["fixed_params"] == {"lr": 1e-3, "tau": 10.9}
    assert again.user_attrs["source"] == "prior center"


# --------------------------------------------------------------------------- SIGTERM, two drivers


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_stops_requeues_and_exits_cleanly(tmp_path, shakespeare, signum):
    # Trials of 30 reports: the driver must take the signal while its trial runs (one of 10
    # reports can end first on a fast machine). The stopped trial is the only one trained.
    path, cfg, db = unpruned_study(tmp_path, shakespeare, n_trials=3, tokens_per_trial=245_760)
    log = tmp_path / "run.log"
    with scaletune_run(path, log) as proc:
        number, _, pid = wait_for(lambda: running_on_a_worker(db), "a trial to run", proc, log)
        # What systemd and Kubernetes do (SIGTERM to the main process), and a closed terminal.
        os.kill(proc.pid, signum)
        code = proc.wait(timeout=120)
    out = flat(log.read_text())
    # 128 + the signal, with no crash dump or traceback, and advice to resume.
    assert code == 128 + signum, out
    assert "Traceback" not in out and "run the same command to resume" in out
    assert gone(int(pid)), f"worker {pid} still runs"
    study = load(cfg)
    # As for Ctrl-C.
    assert_stopped_and_queued(study, number, f"stopped ({signal.Signals(signum).name})")
    # The driver released the study: the next run takes it at once.
    assert study.user_attrs["driver"] is None


@pytest.mark.slow
def test_a_second_driver_of_a_running_study_is_refused(tmp_path, shakespeare):
    # Far more trials than the second driver's start takes (with 6, a fast machine could end
    # the study first, and the second would have found nothing to run); stopped once it is
    # refused.
    path, cfg, db = unpruned_study(tmp_path, shakespeare, n_trials=100, tokens_per_trial=163_840)
    log = tmp_path / "first.log"
    with scaletune_run(path, log) as proc:
        wait_for(lambda: running_on_a_worker(db), "a trial to run", proc, log)
        second = scaletune_run_to_end(path, timeout=120)
        os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=120)
    said = flat(second.stdout + second.stderr)
    # The second driver refuses, naming the first one, and touches nothing.
    assert second.returncode == 2, said
    assert f"being run by another driver (pid {proc.pid} on " in said
    # The first driver was not disturbed: it ran until stopped, every trial it ended complete
    # but the one the stop found running (the second driver can be refused before the first
    # trial ends: none complete then).
    assert code == 128 + signal.SIGTERM, log.read_text()
    study = load(cfg)
    failed = [t.user_attrs["fail_reason"] for t in study.trials if t.state == TrialState.FAIL]
    assert failed in ([], ["stopped (SIGTERM)"])
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.PRUNED)]


def test_an_error_of_the_studys_input_in_the_driver_is_not_called_the_drivers():
    # Data deleted under a running study stopped it as "the driver stopped on an error" (the
    # running trials' reason, and a red line), which README's table of failures says to report.
    from scaletune.search.runner import stopped_on
    from scaletune.trainer.errors import DataError

    assert stopped_on(DataError("data.path: file not found")) == (
        "the study stopped on an error of its input")
    assert stopped_on(RuntimeError("a bug in the driver")) == "the driver stopped on an error"


@pytest.mark.slow
def test_an_error_in_the_driver_requeues_the_running_trials(tmp_path, shakespeare, monkeypatch):
    cfg = validate_study(tiny_study(tmp_path, shakespeare, n_trials=3, pruner={"name": "none"}))
    real = scaletune.search.runner._answer_reports

    def answer_then_fail(coordinator, running, progress, messages):
        real(coordinator, running, progress, messages)
        if any(m[0] == "report" for m in messages):
            raise RuntimeError("a bug in the driver")

    monkeypatch.setattr(scaletune.search.runner, "_answer_reports", answer_then_fail)
    try:
        with pytest.raises(RuntimeError, match="a bug in the driver"):
            run_study(cfg)
    finally:
        ray.shutdown()
    study = load(cfg)
    # The trial that was running is FAIL with the reason and queued again; none is RUNNING.
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 1
    assert failed[0].user_attrs["fail_reason"].startswith(
        "the driver stopped on an error: RuntimeError: a bug in the driver")
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [t.user_attrs["retry_of"] for t in waiting] == [failed[0].number]
    assert not study.get_trials(states=(TrialState.RUNNING,))


@pytest.mark.parametrize("change", ["deleted", "appended to"])
def test_data_that_changes_under_a_running_study_stops_it_and_it_resumes(
        tmp_path, shakespeare, monkeypatch, capsys, change):
    # Deleted once the driver had read it, each trial failed on it in turn, counted toward
    # n_trials, until the study had "finished" with every trial failed (exit 0). Appended to,
    # the trials trained on the new text, in a study whose record named the old.
    raw = tiny_study(tmp_path, shakespeare, n_trials=3, pruner={"name": "none"})
    path = write_study(tmp_path, raw)
    data = Path(raw["data"]["path"])
    kept = data.read_bytes()
    real = scaletune.search.runner.preflight

    def read_then_change(cfg):
        prepared = real(cfg)
        if change == "deleted":
            data.unlink()
        else:
            data.write_bytes(kept + kept[:50_000])
        return prepared

    monkeypatch.setattr(scaletune.search.runner, "preflight", read_then_change)
    try:
        assert main(["run", str(path)]) == 2
    finally:
        ray.shutdown()
    out = flat(capsys.readouterr().err)
    said = (f"data.path: file not found: '{data}' (trial 0 could not read the study's data, so no "
            "trial can" if change == "deleted" else
            f"data.path {data}: the data changed while the study ran: it reads as ")
    assert said in out, out
    assert ("the study stopped, with its trials queued again; put the data back and run the "
            "same command to resume)") in out
    if change != "deleted":  # the whole line, to its advice (it was cut at 300 characters)
        assert "restore the data to resume the study, or start a new one" in out, out
    cfg = validate_study(raw)
    study = load(cfg)
    assert n_finished(study) == 0  # the failure is not one of the three trials asked for
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.WAITING]
    monkeypatch.undo()
    data.write_bytes(kept)
    try:
        assert main(["run", str(path)]) == 0
    finally:
        ray.shutdown()
    study = load(cfg)
    assert n_finished(study) == 3 and len(study.get_trials(states=(TrialState.COMPLETE,))) == 3


def test_a_trial_that_had_ended_when_the_driver_stopped_is_told_not_run_again(tmp_path):
    # Its final evaluation was in, its task had returned, and SIGTERM came before the driver's
    # loop told it: it was stopped and queued again with the running ones, and ran again whole.
    # So was one whose last evaluation, at the end of its budget, had been reported and whose
    # result had not come: Ctrl-C to the terminal's process group reaches its worker too, as
    # it writes its result, and the signal's result is no end (3 of 7 such signals in a run).
    from types import SimpleNamespace

    from scaletune.search.plan import TrialRun
    from scaletune.search.runner import _stop_running

    with lean_head_node():
        ray.init(address="local", num_cpus=1, include_dashboard=False)
    try:
        ended = ray.put({"status": "completed", "final_val_loss": 2.5, "steps": 3})
        stopped_itself = ray.put({"status": "interrupted", "reason": "SIGTERM"})
        still, writing = (ray.remote(lambda: time.sleep(60)).remote() for _ in range(2))
        study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}")
        running = {}
        budget = SimpleNamespace(tokens=250)
        for ref in (ended, stopped_itself, still, stopped_itself, writing):
            trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
            running[trial.number] = TrialRun(trial, {}, budget, 100, "median", extra={"ref": ref})
        running[1].report(100, 2.9)  # an evaluation before the end of its budget
        for number in (3, 4):  # the trainer's last evaluation, past its budget
            assert running[number].report(100, 2.9) == running[number].report(300, 2.4)
        ray.wait([ended, stopped_itself], num_returns=2)
        logged = []  # what the trackers were told: every trial that ended, as it ended
        tracker = SimpleNamespace(finished=lambda _, number: logged.append(number))
        _stop_running(None, running, "stopped (SIGTERM)", SimpleNamespace(max_retries=2),
                      tracker)
        with pytest.raises(ray.exceptions.TaskCancelledError):
            ray.get(writing, timeout=30)  # told from its report, its task was stopped too
    finally:
        ray.shutdown()
    states = [(t.state, t.value, t.user_attrs.get("fail_reason")) for t in study.trials]
    assert states == [(TrialState.COMPLETE, 2.5, None),
                      (TrialState.FAIL, None, "stopped (SIGTERM)"),
                      (TrialState.FAIL, None, "stopped (SIGTERM)"),
                      (TrialState.COMPLETE, 2.4, None), (TrialState.COMPLETE, 2.4, None),
                      (TrialState.WAITING, None, None), (TrialState.WAITING, None, None)]
    assert study.trials[3].user_attrs["result_lost"] == (
        "stopped (SIGTERM) after its last evaluation, at 300 tokens: recorded from its report")
    assert study.trials[3].user_attrs["tokens_seen"] == 300
    assert sorted(running) == [1, 2]  # the stopped ones, which the driver's line counts
    assert logged == [0, 1, 2, 3, 4]


def test_a_database_server_that_went_away_is_not_told_to_free_disk_space(tmp_path, shakespeare):
    # A PostgreSQL outage mid-study read "Free some disk space (or bring the database back)".
    from sqlalchemy.exc import OperationalError

    from scaletune.search.runner import _write_failed

    down = OperationalError("SELECT 1", {}, Exception('connection to server at "127.0.0.1", '
                                                      "port 1 failed: Connection refused"))
    url = "postgresql://alice:s3cret@127.0.0.1:1/studies"
    server = validate_study(tiny_study(tmp_path, shakespeare, storage=url))
    said = str(_write_failed(server, {}, "using the storage", down))
    assert "Bring the database server back (is it up, and reachable from here?), then run the " \
           "same command to resume" in said and "disk" not in said and "s3cret" not in said
    # A right the server refused this login is no outage: it said to bring the server back.
    refused = OperationalError("INSERT", {}, Exception(
        "permission denied for sequence studies_study_id_seq"))
    said = str(_write_failed(server, {}, "using the storage", refused))
    assert "The server refused this login a right the study needs (`scaletune validate` of the " \
           "study checks those of its tables and their sequences): grant it, then run the same " \
           "command" in said, said
    assert "Bring the database server back" not in said
    full = OperationalError("INSERT", {}, Exception("database or disk is full"))
    local = validate_study(tiny_study(tmp_path, shakespeare))
    database = sqlite_path(local.storage_url)
    database.parent.mkdir(parents=True, exist_ok=True)
    database.touch()
    assert "Free some disk space, then run the same command" in str(
        _write_failed(local, {}, "using the storage", full))
    # Another process's transaction held the file past the busy timeout: not the disk (two
    # studies sharing runs/studies.db both stopped, told to free disk space).
    locked = OperationalError("INSERT", {}, Exception("database is locked"))
    said = str(_write_failed(local, {}, "using the storage", locked))
    assert (f"Another process held {database} locked for more than 60 s (an open transaction: "
            "a database browser, a script); close it, then run the same command") in said, said
    assert "disk" not in said
    # A file that cannot be written (chattr +i, a read-only mount) read "Free some disk space".
    readonly = OperationalError("INSERT", {}, Exception("attempt to write a readonly database"))
    said = str(_write_failed(local, {}, "using the storage", readonly))
    assert (f"{database} (or its folder) cannot be written: its permissions, an immutable file "
            "or a read-only file system; make both writable, then run the same command") in said
    assert "disk space" not in said
    failed_io = OperationalError("INSERT", {}, Exception("disk I/O error"))
    assert (f"Free some disk space, or make {database} and its folder writable" in
            str(_write_failed(local, {}, "using the storage", failed_io)))


def test_a_worker_ray_stops_for_want_of_memory_fails_its_trial_not_the_study(
        tmp_path, shakespeare, monkeypatch):
    # Ray's memory monitor raises OutOfMemoryError, which is no RayTaskError: it escaped
    # _finish, the study stopped on it and the trial stayed RUNNING. (Simulated: the monitor
    # kills a worker only on a machine that runs out of memory.)
    from scaletune.search.plan import SearchPlan
    from scaletune.search.runner import _finish
    from scaletune.search.storage import make_storage

    cfg = validate_study(tiny_study(tmp_path, shakespeare))
    cfg.folder.mkdir(parents=True, exist_ok=True)
    plan = SearchPlan.build(cfg)
    study, _ = plan.open_study(make_storage(cfg.storage_url))
    run = plan.ask(study, 1)
    run.extra["ref"] = object()

    def killed(*args, **kwargs):
        raise ray.exceptions.OutOfMemoryError("Task was killed due to the node running low on "
                                              "memory.")

    monkeypatch.setattr(ray, "get", killed)
    state, value, reason = _finish(study, run, cfg)
    assert (state, value) == ("FAIL", None) and reason.startswith("out of the machine's memory")
    (trial,) = study.trials
    assert trial.state == TrialState.FAIL and trial.user_attrs["fail_reason"] == reason
    assert not study.get_trials(states=(TrialState.WAITING,))  # not retried: it would fail again


def test_a_storage_file_deleted_as_the_study_ran_is_named_not_a_full_disk(tmp_path, shakespeare):
    # `rm -rf runs/` while a study ran read "Free some disk space, then run the same command to
    # resume", which would start a new study in a new file.
    from sqlalchemy.exc import OperationalError

    from scaletune.search.runner import _write_failed

    local = validate_study(tiny_study(tmp_path, shakespeare))
    gone = OperationalError("INSERT", {}, Exception("unable to open database file"))
    said = str(_write_failed(local, {}, "a write", gone))
    assert (f"the study stopped: the storage file {sqlite_path(local.storage_url)} is no longer "
            "there") in said  # the cause first: SQLite's words said "readonly"
    assert "disk space" not in said and "start it again" in said
    # Its pages damaged (a disk's fault, a copy made as it was written): not the disk's space.
    import sqlite3

    from sqlalchemy.exc import DatabaseError

    damaged = DatabaseError("SELECT", {}, Exception("database disk image is malformed"))
    damaged.__cause__ = sqlite3.DatabaseError("database disk image is malformed")  # as raised
    sqlite_path(local.storage_url).parent.mkdir(parents=True)
    sqlite_path(local.storage_url).write_bytes(b"SQLite format 3\x00")  # there, its pages not
    said = str(_write_failed(local, {}, "a read", damaged))
    assert (f"a read failed: database disk image is malformed. The storage file {sqlite_path(local.storage_url)} is damaged: restore it "
            "from a backup, or move it aside") in said
    assert "disk space" not in said


AS_A_TERMINAL_STARTS_PYTHON = """
import os, signal, sys, time
# As Python starts in a terminal: a disposition the test runner's process holds (SIGINT
# ignored, or blocked) is inherited across exec, and the signal would never arrive.
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
"""


def test_sigterm_to_the_process_group_is_a_stop_though_rays_processes_die_of_it(tmp_path,
                                                                               shakespeare):
    # `kill -- -PGID` (Slurm, systemd) reaches Ray's own processes too. As trials ran, a call
    # to the coordinator then failed (ActorDiedError): "the driver stopped on an error", a
    # traceback and exit 1. As Ray started, its start failed 30 s later: "Ray could not start
    # a cluster on this machine", exit 2. Both were the signal's stop.
    raw = tiny_study(tmp_path, shakespeare, n_trials=2, pruner={"name": "none"},
                     workers={"cpus_per_trial": 1, "max_concurrent": 1})
    path = write_study(tmp_path, raw)
    running = AS_A_TERMINAL_STARTS_PYTHON + f"""
import ray
from scaletune.search.cli import main

def launch(run, coordinator):  # the trial starts; the signal ends the coordinator's process
    ref = ray.remote(lambda: time.sleep(60)).remote()
    ray.kill(coordinator)
    os.kill(os.getpid(), signal.SIGTERM)
    return ref

import scaletune.search.runner as runner
real = runner.run_study
runner.run_study = lambda cfg, *args, **kwargs: real(cfg, *args, launch=launch, **kwargs)
sys.exit(main(["run", {str(path)!r}]))
"""
    starting = AS_A_TERMINAL_STARTS_PYTHON + f"""
import scaletune.search.runner as runner
from scaletune.search.cli import main
from scaletune.trainer.errors import SetupError

def failed(cfg):  # the signal came, and Ray's processes died of it as they started
    os.kill(os.getpid(), signal.SIGTERM)
    raise SetupError("ray", ["Ray could not start a cluster on this machine"])

runner.init_ray = failed
sys.exit(main(["run", {str(path)!r}]))
"""
    for script, said in ((running, "stopped (SIGTERM): 1 running trial(s) stopped and queued "
                                   "again; run the same command to resume"),
                         (starting, "stopped (SIGTERM) as Ray started: no trial ran; run the "
                                    "same command to resume the study")):
        launch = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                timeout=300, cwd=tmp_path)
        out = flat(launch.stdout)
        assert launch.returncode == 128 + signal.SIGTERM, launch.stdout + launch.stderr
        assert said in out, out
        assert "Traceback" not in launch.stderr and "error" not in out, launch.stderr
    study = load(validate_study(raw))
    assert [(t.state, t.user_attrs.get("fail_reason")) for t in study.trials] == [
        (TrialState.FAIL, "stopped (SIGTERM)"), (TrialState.WAITING, None)]


def test_ctrl_c_as_the_last_trial_ends_leaves_the_study_released_and_summed_up(tmp_path,
                                                                             shakespeare):
    # The signal came as the driver closed the study: the lease stayed written, and a study
    # that had run to its end said "interrupted; the next run ... recovers any trial left
    # running" without its summary (exit 130).
    raw = tiny_study(tmp_path, shakespeare, n_trials=1, pruner={"name": "none"})
    path = write_study(tmp_path, raw)
    script = AS_A_TERMINAL_STARTS_PYTHON + f"""
import scaletune.search.runner as runner
from scaletune.search.cli import main

close = runner.Tracker.close
def signalled(self):  # Ctrl-C as the study is closed, its last trial told
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.2)
    close(self)

runner.Tracker.close = signalled
sys.exit(main(["run", {str(path)!r}]))
"""
    launch = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)
    assert launch.returncode == 0, launch.stdout + launch.stderr
    assert "best trial 0" in launch.stdout and "interrupted" not in launch.stderr
    study = load(validate_study(raw))
    assert n_finished(study) == 1
    assert study.user_attrs.get(lease.ATTR) is None


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_ray_starts_stops_the_launch_cleanly(tmp_path, shakespeare, signum):
    # Ctrl-C in the first seconds was raised inside Ray's start-up: lost in a finalizer
    # ("Exception ignored") while the study went on, or the driver hung; a SIGTERM then met
    # Ray's own handler (sys.exit), lost the same way. In a process of its own, as a user's
    # launch is: a test worker's signal handling is the test runner's.
    raw = tiny_study(tmp_path, shakespeare, n_trials=2, pruner={"name": "none"})
    path = write_study(tmp_path, raw)
    script = AS_A_TERMINAL_STARTS_PYTHON + f"""
import scaletune.search.runner as runner
from scaletune.search.cli import main

real = runner.concurrency

def started_then_signal(cfg):  # the signal arrives while the launch is still starting
    slots = real(cfg)
    os.kill(os.getpid(), {int(signum)})
    time.sleep(0.2)
    return slots

runner.concurrency = started_then_signal
before = signal.getsignal(signal.SIGTERM)
code = main(["run", {str(path)!r}])
print("handler kept:", signal.getsignal(signal.SIGTERM) is before)
sys.exit(code)
"""
    launch = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)
    out = flat(launch.stdout)
    assert launch.returncode == 128 + signum, launch.stdout + launch.stderr
    what = "interrupted (Ctrl-C)" if signum == signal.SIGINT else "stopped (SIGTERM)"
    assert f"{what} as Ray started: no trial ran; run the same command to start the study" in out
    assert "handler kept: True" in out  # Ray's SIGTERM handler is not left set
    assert "Traceback" not in launch.stderr and "Exception ignored" not in launch.stderr
    try:
        assert main(["run", str(path)]) == 0
    finally:
        ray.shutdown()
    assert n_finished(load(validate_study(raw))) == 2
    if signum == signal.SIGINT:  # a study that has run is resumed by the same command
        raw["n_trials"] = 3
        write_study(tmp_path, raw)  # the script's file: the launch is interrupted as before
        again = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               timeout=300, cwd=tmp_path)
        assert ("interrupted (Ctrl-C) as Ray started: no trial ran; run the same command to "
                "resume the study") in flat(again.stdout), again.stdout + again.stderr
