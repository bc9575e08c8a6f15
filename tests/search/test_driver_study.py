"""The driver's study (search.plan.DriverStudy): the pruner decides as on Optuna's own study,
while a report no longer re-reads every running trial from the storage."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from scaletune.search.plan import DriverStudy


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
