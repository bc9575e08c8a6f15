"""Optuna's own contract tests for storages (``optuna.testing.pytest_storages``) on the storage a
study gets: Optuna's RDBStorage, unmodified, as ``make_storage`` builds it with the project's
engine kwargs, on a SQLite file."""

from __future__ import annotations

import pytest
from optuna.testing.pytest_storages import StorageTestCase
from sqlalchemy import text

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
