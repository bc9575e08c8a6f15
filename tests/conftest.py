"""Shared fixtures: paths to the reference data, a private token cache, tiny study files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHAKESPEARE = SHARED / "data" / "tinyshakespeare.txt"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Token caches go to a per-session folder, never the user's home."""
    cache = tmp_path_factory.getbasetemp() / "token-cache"
    monkeypatch.setenv("SCALETUNE_CACHE", str(cache))
    monkeypatch.setenv("RAY_DEDUP_LOGS", "0")
    yield


@pytest.fixture(scope="session")
def shakespeare() -> Path:
    if not SHAKESPEARE.is_file():
        pytest.skip(f"reference data not found at {SHAKESPEARE}")
    return SHAKESPEARE


def pytest_configure(config):
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
