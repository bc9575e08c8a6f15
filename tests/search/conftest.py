"""Every search test leaves Ray as it found it: a test that runs a study in this process (through
`run_study` or the CLI's `main`) starts Ray, and the next test may start its own. The cluster of
test_runner's local_ray is kept for the next test that asks for the same one (tests/conftest.py
shuts it down before any other test)."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True)
def no_ray_left_running(request):
    yield
    ray = sys.modules.get("ray")  # never imported here: most tests do not use Ray
    if "local_ray" not in request.fixturenames and ray is not None and ray.is_initialized():
        ray.shutdown()
