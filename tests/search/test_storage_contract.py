"""Optuna's own contract tests for storages (``optuna.testing.pytest_storages``) on the storage a
study gets: Optuna's RDBStorage, unmodified, as ``make_storage`` builds it with the project's
engine kwargs, on a SQLite file; and ``make_storage`` opening a new storage that another process
creates at the same moment."""

from __future__ import annotations

import sqlite3

import pytest
from optuna.study import StudyDirection
from optuna.testing.pytest_storages import StorageTestCase
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from scaletune.search.storage import make_storage


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
