"""The driver's study (search.plan.DriverStudy): the pruner decides as on Optuna's own study,
while a report no longer re-reads every running trial from the storage."""

from __future__ import annotations

import contextlib
import math
import random
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState

from scaletune.search.plan import DriverStudy, TrialRun
from scaletune.search.pruners import DriverHyperband


def _studies(tmp_path: Path) -> tuple[optuna.Study, DriverStudy, optuna.storages.RDBStorage]:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    optuna.create_study(study_name="s", storage=url)
    backend = optuna.storages.RDBStorage(url)
    plain = optuna.Study(study_name="s", storage=url, pruner=pruner)
    driver = DriverStudy(study_name="s", storage=backend, pruner=pruner)
    return plain, driver, backend


def _complete(study: optuna.Study, curve: list[float]) -> None:
    trial = study.ask()
    for step, value in enumerate(curve):
        trial.report(value, step)
    study.tell(trial, curve[-1])


def test_the_pruner_decides_as_on_optunas_study(tmp_path):
    plain, driver, _ = _studies(tmp_path)
    _complete(driver, [3.0, 2.0, 1.5])
    _complete(driver, [3.2, 2.2, 1.7])
    running = [driver.ask() for _ in range(6)]
    for i, trial in enumerate(running):
        trial.report(2.9 + 0.1 * i, 0)
        # Rule: the driver's study answers every report as Optuna's own study does.
        assert trial.should_prune() == optuna.Trial(plain, trial._trial_id).should_prune()
    # The median at step 0 is 3.1: the trials above it are pruned.
    assert [bool(t.should_prune()) for t in running] == [False] * 3 + [True] * 3


def test_a_trial_the_driver_ends_counts_at_the_next_report(tmp_path):
    _, driver, _ = _studies(tmp_path)
    _complete(driver, [3.0, 2.0, 1.0])
    trial = driver.ask()
    trial.report(3.5, 0)
    # One complete trial: fewer than n_startup_trials (2), so no pruning yet.
    assert not trial.should_prune()
    _complete(driver, [3.0, 2.1, 1.1])
    # Rule: the trial the driver told is among the finished trials the pruner reads next.
    assert len(driver.get_trials(states=(TrialState.COMPLETE,))) == 2
    assert trial.should_prune()


def test_a_report_does_not_read_the_running_trials_again(tmp_path, monkeypatch):
    _, driver, backend = _studies(tmp_path)
    _complete(driver, [3.0, 2.0, 1.0])
    _complete(driver, [3.0, 2.1, 1.1])
    running = [driver.ask() for _ in range(8)]
    reads = []
    original = type(driver._storage._backend)._get_trials
    monkeypatch.setattr(type(driver._storage._backend), "_get_trials",
                        lambda self, *a, **k: reads.append(k) or original(self, *a, **k))
    for step, trial in enumerate(running):
        trial.report(2.5, step)
        trial.should_prune()
    # Rule: the finished trials are read once for all these reports, not once for each; a
    # read from the storage re-reads every running trial.
    assert len(reads) <= 1


def _draw(study: optuna.Study) -> optuna.Trial:
    """Ask for a trial and suggest its params, as SearchPlan.ask does."""
    sampling = study.held() if isinstance(study, DriverStudy) else contextlib.nullcontext()
    with sampling:
        trial = study.ask()
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.suggest_float("warmup", 0.0, 0.3)
        trial.suggest_categorical("batch", [8, 16, 32])
    return trial


def _run(study: optuna.Study) -> list[dict]:
    """A study under way, with up to 4 trials running at once, some reporting, one enqueued,
    one failing; returns every trial's params in the order drawn."""
    rng = random.Random(0)
    running, drawn = [], []
    for i in range(24):
        if i == 9:
            study.enqueue_trial({"lr": 3e-3, "warmup": 0.1, "batch": 16})
        trial = _draw(study)
        drawn.append(trial.params)
        trial.report(3.0 + rng.random(), 0)
        with study.held() if isinstance(study, DriverStudy) else contextlib.nullcontext():
            trial.should_prune()  # answered as the driver answers a report (Hyperband: brackets)
        running.append(trial)
        if len(running) == 4:
            done = running.pop(rng.randrange(4))
            if i == 13:
                study.tell(done, state=TrialState.FAIL)
            else:
                study.tell(done, 2.0 + abs(math.log10(done.params["lr"] / 3e-3)) + rng.random() / 10)
    return drawn


@pytest.mark.parametrize("hyperband", [False, True], ids=["median", "hyperband"])
def test_the_sampler_draws_what_it_draws_on_optunas_study(tmp_path, hyperband):
    def sampler():
        return optuna.samplers.TPESampler(n_startup_trials=4, multivariate=True,
                                          constant_liar=True, seed=3)

    # Under Hyperband the sampler is handed a study of the drawn trial's bracket (Optuna's, or
    # the driver's, which reads through the driver's study).
    args = {"min_resource": 1, "max_resource": 9, "reduction_factor": 3}
    plain = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'plain.db'}",
                                sampler=sampler(), pruner=optuna.pruners.HyperbandPruner(**args)
                                if hyperband else None)
    url = f"sqlite:///{tmp_path / 'driver.db'}"
    optuna.create_study(study_name="s", storage=url)
    driver = DriverStudy(study_name="s", storage=url, sampler=sampler(),
                         pruner=DriverHyperband(**args) if hyperband else None)
    # Rule: serving the running trials from the driver changes nothing the sampler sees (TPE's
    # constant liar reads their params; the search space reads their numbers).
    assert _run(driver) == _run(plain)
    assert len({tuple(p.items()) for p in _run(plain)}) > 20  # it did draw, not repeat


def test_an_ask_reads_no_running_trial_from_the_storage(tmp_path, monkeypatch):
    _, driver, _ = _studies(tmp_path)
    driver.sampler = optuna.samplers.TPESampler(n_startup_trials=2, constant_liar=True,
                                                multivariate=True, seed=0)
    for curve in ([3.0, 2.0], [3.1, 2.2], [3.3, 2.5]):
        _complete(driver, curve)
    for _ in range(6):
        _draw(driver).report(2.9, 0)
    reads = []
    original = type(driver._storage._backend)._get_trials
    monkeypatch.setattr(type(driver._storage._backend), "_get_trials",
                        lambda self, study_id, states, *a: reads.append(states)
                        or original(self, study_id, states, *a))
    trial = _draw(driver)
    # Rule: drawing a trial reads at most the queued (WAITING) trials from the storage: the
    # running ones are this driver's own (Optuna's path reads all of them three times).
    assert all(states is not None and set(states) == {TrialState.WAITING} for states in reads), reads
    # The trial drawn is running, and the one the driver tells next is kept as finished.
    driver.tell(trial, 2.0)
    reads.clear()
    complete = driver.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert [t.number for t in complete][-1] == trial.number and reads == []


def test_a_trial_ended_elsewhere_is_no_longer_served_as_running(tmp_path):
    plain, driver, _ = _studies(tmp_path)
    trial = _draw(driver)
    # Someone else (the dashboard with --allow-writes) ends the trial; the driver's tell fails.
    plain.tell(trial.number, 1.0)
    with pytest.raises(ValueError, match="Cannot tell a COMPLETE trial"):
        driver.tell(trial, 2.0)
    with driver.held():
        running = driver.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        complete = driver.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    # Rule: the sampler sees it as it is stored: complete (1.0), not running.
    assert running == [] and [t.value for t in complete] == [1.0]


def test_stale_kept_trials_are_read_again_beside_the_report_not_in_its_way(tmp_path, monkeypatch):
    plain, driver, backend = _studies(tmp_path)
    _complete(driver, [3.0, 2.0, 1.0])

    def complete() -> int:
        return len(driver.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    assert complete() == 1
    # Another process (the dashboard with --allow-writes) completes a trial.
    _complete(plain, [3.0, 2.0, 0.9])
    monkeypatch.setattr(DriverStudy, "FINISHED_TTL_S", 0.0)
    readers = []
    original = type(backend)._get_trials
    monkeypatch.setattr(type(backend), "_get_trials", lambda self, *a, **k: (
        readers.append(threading.current_thread().name) or original(self, *a, **k)))
    # Rule: a stale list is served as it is: the report path does not read the storage ...
    assert complete() == 1
    assert threading.current_thread().name not in readers
    # ... which is read again beside it, so the trial ended elsewhere counts a moment later.
    deadline = time.monotonic() + 30
    while complete() < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert complete() == 2
    assert "driver-study-refresh" in readers


def _halving_run(study: optuna.Study) -> list[tuple[int, int, bool]]:
    """Trials of 9 steps, 8 at once, reporting in turn through TrialRun.report (as the driver
    answers its trials); a stopped trial is told PRUNED and another starts. Returns every
    (trial, step, stopped) decision in order."""
    rng = random.Random(1)
    quality = {}
    running: list[TrialRun] = []
    decisions = []
    started = 0
    while started < 40 or running:
        while len(running) < 8 and started < 40:
            trial = study.ask()
            quality[trial.number] = rng.uniform(0.0, 1.0)
            running.append(TrialRun(trial, {}, SimpleNamespace(tokens=9), every=1,
                                    pruner_name="halving"))
            started += 1
        for run in list(running):
            step = max(run.last_step, 0) + 1  # last_step is -1 before the first report
            value = 3.0 + quality[run.number] - 0.1 * step + rng.gauss(0.0, 0.02)
            stopped = run.report(step, value) == "prune"
            decisions.append((run.number, step, stopped))
            if stopped or step == 9:
                running.remove(run)
                if stopped:
                    study.tell(run.trial, state=TrialState.PRUNED)
                else:
                    study.tell(run.trial, value)
    return decisions


@pytest.mark.parametrize("kind", ["successive_halving", "hyperband"])
def test_halving_pruners_decide_as_optunas_and_read_no_running_trial(tmp_path, monkeypatch, kind):
    def pruners():
        if kind == "successive_halving":
            return (optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
                    optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3))
        return (optuna.pruners.HyperbandPruner(min_resource=1, max_resource=9, reduction_factor=3),
                DriverHyperband(min_resource=1, max_resource=9, reduction_factor=3))

    optunas, ours = pruners()
    plain = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'plain.db'}",
                                pruner=optunas)
    url = f"sqlite:///{tmp_path / 'driver.db'}"
    optuna.create_study(study_name="s", storage=url)
    driver = DriverStudy(study_name="s", storage=url, pruner=ours)
    reads = []
    original = type(driver._storage._backend)._get_trials
    monkeypatch.setattr(type(driver._storage._backend), "_get_trials",
                        lambda self, study_id, states, *a, **k: reads.append(states)
                        or original(self, study_id, states, *a, **k))
    expected = _halving_run(plain)
    reads.clear()
    decided = _halving_run(driver)
    # Rule: each report is answered as on Optuna's own study with Optuna's own pruner: the
    # rungs the pruner wrote on running trials count as they do there.
    assert decided == expected
    if kind == "hyperband":  # on any study too (the report's replay uses an in-memory one)
        assert _halving_run(optuna.create_study(study_name="s", pruner=pruners()[1])) == expected
    stopped = [d for d in decided if d[2]]
    assert stopped and {step for _, step, _ in stopped} >= {1, 3}  # it stopped at two rungs
    # Rule: the decisions read the running trials from the storage once, with the finished
    # ones the driver's study keeps from then on (not once a report: 80 here).
    assert len(decided) >= 80
    assert sum(states is None or TrialState.RUNNING in states for states in reads) <= 1, reads


def test_an_ask_and_a_trials_end_write_the_trial_in_two_transactions_each(tmp_path, shakespeare):
    from sqlalchemy import event

    from scaletune.search.config import validate_study
    from scaletune.search.plan import SearchPlan
    from scaletune.search.storage import make_storage
    from tests.search.helpers import tiny_study

    cfg = validate_study(tiny_study(tmp_path, shakespeare, seeding="none"))
    cfg.folder.mkdir(parents=True, exist_ok=True)
    plan = SearchPlan.build(cfg)
    storage = make_storage(cfg.storage_url)
    study, _ = plan.open_study(storage)
    # Transactions that wrote: Optuna's sessions commit after reads too.
    commits: list[int] = []
    wrote: list[str] = []
    event.listen(storage.engine, "before_cursor_execute", lambda conn, cursor, statement, *a:
                 wrote.append(statement) if statement.lstrip().upper().startswith(
                     ("INSERT", "UPDATE", "DELETE")) else None)
    event.listen(storage.engine, "commit", lambda conn: commits.append(1) if wrote and
                 not wrote.clear() else None)
    try:
        run = plan.ask(study, 1)
        # Rule: the trial is created, then its params, derived values and note go in one write
        # (Optuna's way: a write each, 11 in all here).
        assert len(commits) == 2
        stored = storage.get_trial(run.trial._trial_id)
        assert stored.params == run.params and stored.user_attrs["steps"] > 0
        assert any(k.startswith("dashboard") for k in storage.get_study_system_attrs(
            study._study_id)), "the trial's note"
        commits.clear()
        result = {"status": "completed", "final_val_loss": 2.25, "best_val_loss": 2.2,
                  "steps": 7, "tokens_seen": 4096, "wall_time_s": 1.5, "train_time_s": 1.2,
                  "tokens_per_s": 3000.0, "ended_at": 1.0e9, "worker": {"pid": 42, "warm": True}}
        assert run.tell(study, result) == ("COMPLETE", 2.25, None)
        # Rule: its end writes what the result says in one write, then its state.
        assert len(commits) == 2
        ended = storage.get_trial(run.trial._trial_id)
        assert ended.state == TrialState.COMPLETE and ended.value == 2.25
        assert {k: ended.user_attrs[k] for k in ("steps_trained", "tokens_seen", "worker_pid",
                                                   "worker_warm")} == {
            "steps_trained": 7, "tokens_seen": 4096, "worker_pid": 42, "worker_warm": True}
    finally:
        plan.lease.release()


def test_the_drivers_loop_runs_with_what_it_began_with_out_of_the_collectors_sight(monkeypatch):
    import gc

    import scaletune.search.runner as runner

    class Node:
        def __init__(self) -> None:
            self.other = self

    held = [Node() for _ in range(1000)]  # what the driver holds when its loop begins
    seen = {}
    with runner._frozen_heap():
        seen["frozen"] = gc.get_freeze_count()
        # Rule: a full collection inside the loop does not walk what existed before it ...
        tracked = {id(o) for o in gc.get_objects(generation=2)}
        seen["held tracked"] = sum(id(o) in tracked for o in held)
        # ... and garbage made inside is still collected.
        Node()
        seen["collected"] = gc.collect()
    assert seen["frozen"] > len(held) and seen["held tracked"] == 0
    assert seen["collected"] >= 1
    # Rule: after the loop nothing stays frozen (a caller may run several studies).
    assert gc.get_freeze_count() == 0
    del held


@pytest.mark.parametrize("kept", [True, False])
def test_a_read_while_trials_are_told_sees_each_trial_once(tmp_path, kept):
    # The runner's main thread asks the pruner (inside held()) while its storage thread tells
    # trials: a read between the kept finished trials and the driver's own running ones missed
    # a trial just told, or (the kept list dropped, as after a re-run is queued) listed it as
    # both COMPLETE and RUNNING; a successive-halving decision changed with it.
    _, driver, _ = _studies(tmp_path)
    n = 60
    trials = [driver.ask() for _ in range(n)]
    for t in trials:
        t.report(3.0, 0)
    driver.get_trials(states=(TrialState.COMPLETE,))  # the finished trials are kept
    wrong, done = [], threading.Event()

    def read() -> None:
        while not done.is_set():
            with driver.held():
                seen = [t.number for t in driver.get_trials(
                    deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))]
            if sorted(seen) != list(range(n)):
                wrong.append(seen)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i, t in enumerate(trials):
            if not kept:
                driver._changed(None)  # what add_trial does (a failed trial queued again)
            driver.tell(t, 2.0 + i * 1e-3)
            time.sleep(0.002)
    finally:
        done.set()
        reader.join()
    assert not wrong, f"{len(wrong)} reads saw a trial missing or twice, e.g. {wrong[0]}"
