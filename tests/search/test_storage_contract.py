"""Optuna's own contract tests for storages (``optuna.testing.pytest_storages``) on the storage a
study gets: ``search.storage.Storage`` (Optuna's RDBStorage, whose writes a thread may gather into
one transaction) as ``make_storage`` builds it with the project's engine kwargs, on a SQLite file;
``make_storage`` opening a new storage that another process creates at the same moment; and a
batch's writes against Optuna's own, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid

import optuna
import pytest
from optuna.study import StudyDirection
from optuna.testing.pytest_storages import StorageTestCase
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from scaletune.search.storage import batch, make_storage, with_driver


class TestStorageContract(StorageTestCase):
    @pytest.fixture
    def storage(self, tmp_path):
        storage = make_storage(f"sqlite:///{tmp_path / 'study.db'}")
        yield storage
        storage.remove_session()
        storage.engine.dispose()


def test_the_sqlite_storage_waits_a_minute_on_a_lock(tmp_path):
    storage = make_storage(f"sqlite:///{tmp_path / 'study.db'}")
    try:
        with storage.engine.connect() as conn:
            busy_ms = conn.execute(text("PRAGMA busy_timeout")).scalar()
    finally:
        storage.engine.dispose()
    # A second writer (the dashboard, another driver) waits for the lock instead of failing.
    assert busy_ms == 60_000


def test_the_schema_is_checked_at_every_open_and_its_scripts_read_once(tmp_path, monkeypatch):
    # Optuna read the newest schema revision from its Alembic scripts (loaded as modules) at
    # every storage it opened, ~70 ms of CPU each; a ladder opens hundreds.
    from optuna.storages._rdb.storage import _VersionManager

    from scaletune.search import storage as module

    monkeypatch.setattr(module, "_HEAD", {}, raising=False)
    read = []
    head = _VersionManager.get_head_version
    monkeypatch.setattr(_VersionManager, "get_head_version",
                        lambda self: read.append(1) or head(self))
    for name in ("a", "b", "c"):  # new files: Optuna stamps each with the head it reads
        make_storage(f"sqlite:///{tmp_path / name}.db").engine.dispose()
    read.clear()
    for name in ("a", "b", "c", "a"):
        make_storage(f"sqlite:///{tmp_path / name}.db").engine.dispose()
    assert read == []  # the head the first check read
    # A database of an older schema is still refused, with Optuna's advice.
    with sqlite3.connect(tmp_path / "b.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'v3.0.0.d'")
    with pytest.raises(RuntimeError, match=r"optuna storage upgrade --storage"):
        make_storage(f"sqlite:///{tmp_path / 'b'}.db")


@pytest.mark.parametrize("stamped", [True, False], ids=["stamped", "not-stamped-yet"])
def test_a_storage_another_process_creates_at_the_same_moment_opens(tmp_path, stamped):
    # The schema version a new storage is stamped with, from a storage of its own.
    scratch = make_storage(f"sqlite:///{tmp_path / 'scratch.db'}")
    with scratch.engine.connect() as conn:
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    scratch.engine.dispose()

    db = tmp_path / "study.db"
    raced = []

    def first(conn, cursor, statement, *args):
        # Another process (a reader, the dashboard) creates the version table of the same new
        # storage just before this one does, as a real second connection to the file.
        if statement.lstrip().upper().startswith("CREATE TABLE ALEMBIC_VERSION") and not raced:
            raced.append(statement)
            other = sqlite3.connect(db, timeout=5)
            other.execute(statement)
            if stamped:
                other.execute("INSERT INTO alembic_version VALUES (?)", (head,))
            other.commit()
            other.close()

    event.listen(Engine, "before_cursor_execute", first)
    try:
        storage = make_storage(f"sqlite:///{db}")
    finally:
        event.remove(Engine, "before_cursor_execute", first)
    # Rule: the driver opens the storage the other process created (SQLite had said "table
    # alembic_version already exists", and the study stopped), and it works.
    assert raced
    study_id = storage.create_new_study([StudyDirection.MINIMIZE], "s")
    assert storage.get_study_id_from_name("s") == study_id
    with storage.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
    storage.engine.dispose()


# --------------------------------------------------------------------------- Storage.batch()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.slow,
                                                                   pytest.mark.postgres])])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    url = os.environ.get("SCALETUNE_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true: the PostgreSQL tests must run, but SCALETUNE_TEST_POSTGRES_URL "
                        "is not set", pytrace=False)
        pytest.skip("no PostgreSQL server: SCALETUNE_TEST_POSTGRES_URL is not set")
    return url


@pytest.fixture
def batch_storage(db_url):
    storage = make_storage(db_url)
    yield storage
    storage.remove_session()
    storage.engine.dispose()


def _commits(storage) -> list[int]:
    """A list that counts the storage engine's commits while the test runs."""
    commits: list[int] = []
    event.listen(storage.engine, "commit", lambda conn: commits.append(1))
    return commits


def _write_everything(study: optuna.Study, trial: optuna.Trial) -> None:
    """The writes an ask, its reports and its end make: params (a new one and one the study
    has), intermediate values (NaN and inf among them, one step written twice), user attrs (one
    written twice), a system attr, the study's note. The last write of a key stays."""
    trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    trial.suggest_categorical("batch", [8, 16, 32])
    for step, value in ((0, 3.0), (1, float("nan")), (2, float("inf")), (3, -float("inf"))):
        trial.report(value, step)
    study._storage.set_trial_intermediate_value(trial._trial_id, 0, 2.5)  # Trial.report ignores
    trial.set_user_attr("steps", 100)
    trial.set_user_attr("reason", "first")
    trial.set_user_attr("reason", {"why": "second", "at": [1, 2.5]})
    study._storage.set_trial_system_attr(trial._trial_id, "rung", 3)
    study._storage.set_study_system_attr(study._study_id, f"note:{trial.number}", "text")


def _seen(storage, trial_id: int) -> tuple:
    t = storage.get_trial(trial_id)
    curve = {step: repr(v) for step, v in t.intermediate_values.items()}  # nan == nan
    return t.params, t.distributions, curve, t.user_attrs, t.system_attrs


def test_a_batch_writes_what_optuna_writes_in_one_transaction(batch_storage):
    name = f"b-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(study_name=name, storage=batch_storage,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    # One trial written by Optuna's own RDBStorage, write by write; the next in a batch.
    optunas = optuna.storages.RDBStorage(with_driver(batch_storage.url))
    theirs = optuna.load_study(study_name=name, storage=optunas,
                               sampler=optuna.samplers.RandomSampler(seed=0))
    plain = theirs.ask()
    _write_everything(theirs, plain)
    commits = _commits(batch_storage)
    batched = study.ask()
    before = len(commits)
    other = make_storage(batch_storage.url)  # another connection: the dashboard, say
    try:
        with batch(study._storage):
            _write_everything(study, batched)
            # Rule: nothing is written until the block ends.
            assert other.get_trial(batched._trial_id).user_attrs == {}
            assert len(commits) == before
        # Rule: one commit for all of it, and the trial reads back as Optuna's own writes do.
        assert len(commits) == before + 1
        p_params, p_dists, p_curve, p_user, p_system = _seen(other, plain._trial_id)
        b_params, b_dists, b_curve, b_user, b_system = _seen(other, batched._trial_id)
    finally:
        for storage in (other, optunas):
            storage.remove_session()
            storage.engine.dispose()
    assert b_dists == p_dists
    assert b_params == batched.params and set(b_params) == set(p_params)
    assert b_curve == p_curve == {0: "2.5", 1: "nan", 2: "inf", 3: "-inf"}
    assert b_user == p_user == {"steps": 100, "reason": {"why": "second", "at": [1, 2.5]}}
    assert b_system == p_system
    attrs = batch_storage.get_study_system_attrs(study._study_id)
    assert attrs[f"note:{plain.number}"] == attrs[f"note:{batched.number}"] == "text"


def test_a_batch_is_all_or_nothing(batch_storage):
    study = optuna.create_study(study_name=f"b-{uuid.uuid4().hex[:8]}", storage=batch_storage)
    ended, running = study.ask(), study.ask()
    running.suggest_float("x", 0, 1)
    study.tell(ended, 1.0)
    # A write to a finished trial fails the whole batch, as Optuna's write alone fails.
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        with batch(study._storage):
            running.set_user_attr("a", 1)
            study._storage.set_trial_user_attr(ended._trial_id, "a", 1)
    # A param whose distribution the study has with another range fails it too.
    with pytest.raises(ValueError, match="(?i)cannot set different distribution"):
        with batch(study._storage):
            running.set_user_attr("b", 1)
            study._storage.set_trial_param(running._trial_id, "y", 0.5,
                                           optuna.distributions.FloatDistribution(0, 1))
            study._storage.set_trial_param(
                running._trial_id, "x", 1, optuna.distributions.CategoricalDistribution([1, 2]))
    # So does an error of the block itself, before anything was written.
    with pytest.raises(RuntimeError):
        with batch(study._storage):
            running.set_user_attr("c", 1)
            raise RuntimeError("the block failed")
    stored = batch_storage.get_trial(running._trial_id)
    assert stored.user_attrs == {} and set(stored.params) == {"x"}
    assert batch_storage.get_trial(ended._trial_id).user_attrs == {}


def test_a_batch_holds_only_its_own_threads_writes(batch_storage):
    # The driver's storage thread writes a trial's end in a batch while its main thread writes
    # reports: those go at once.
    study = optuna.create_study(study_name=f"b-{uuid.uuid4().hex[:8]}", storage=batch_storage)
    trial = study.ask()
    with batch(study._storage):
        trial.set_user_attr("later", 1)
        reporter = threading.Thread(target=lambda: (
            trial.report(0.5, 10), study._storage.set_trial_user_attr(trial._trial_id, "now", 2)))
        reporter.start()
        reporter.join()
        stored = batch_storage.get_trial(trial._trial_id)
        assert stored.user_attrs == {"now": 2} and stored.intermediate_values == {10: 0.5}
    assert batch_storage.get_trial(trial._trial_id).user_attrs == {"now": 2, "later": 1}


def test_a_batch_on_another_storage_changes_nothing():
    study = optuna.create_study()  # in memory
    trial = study.ask()
    with batch(study._storage):
        trial.set_user_attr("a", 1)
        assert study._storage.get_trial(trial._trial_id).user_attrs == {"a": 1}
