"""Shared fixtures: paths to the reference data, a private token cache, tiny study files."""

from __future__ import annotations

import os
import sys
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


@pytest.fixture(autouse=True)
def _no_ray_left_running(request):
    """A test finds no Ray cluster that an earlier test of this process started (a study run
    through `run_study` or the CLI's `main` starts one): a study it runs in-process would join
    that one instead of starting its own. Only tests that ask for test_runner's local_ray keep
    its cluster between them."""
    ray = sys.modules.get("ray")
    if "local_ray" not in request.fixturenames and ray is not None and ray.is_initialized():
        ray.shutdown()
    yield


@pytest.fixture(scope="session")
def shakespeare() -> Path:
    if not SHAKESPEARE.is_file():
        pytest.skip(f"reference data not found at {SHAKESPEARE}")
    return SHAKESPEARE


def pytest_configure(config):
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    """The slow tests first, the rest in their order: run in one session with the fast ones
    (tests/run.sh), the longest start at once on both workers and the short ones fill in behind
    them, where two sessions, one per kind, each ended with a worker waiting on the other's last
    test."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
