"""How torch's CPU threads wait in the processes scaletune starts (trainer/threads.py).

OpenMP prints what it read from the environment when it loads (OMP_DISPLAY_ENV=VERBOSE): with
OMP_WAIT_POLICY=PASSIVE it spins 0 times before a waiting thread sleeps, unset 300,000.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def openmp_env(overrides: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    return {**env, "OMP_DISPLAY_ENV": "VERBOSE", **overrides}


def openmp_read(stderr: str) -> dict[str, str]:
    """What OpenMP printed it read, NAME -> value."""
    read = dict(re.findall(r"^\s+(OMP_WAIT_POLICY|GOMP_SPINCOUNT) = '([^']*)'", stderr, re.M))
    assert read, f"OpenMP printed no settings:\n{stderr}"
    return read


def test_a_run_started_by_scaletune_lets_its_waiting_threads_sleep(tmp_path, shakespeare):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16},
        "data": {"source": "text", "path": str(shakespeare), "cache_dir": str(tmp_path / "c")},
        "batch_size": 4, "tokens": 4 * 16 * 20, "eval_every_tokens": 4 * 16 * 10,
        "num_threads": 2, "out_dir": "out"}))
    done = subprocess.run([sys.executable, "-m", "scaletune.search.cli", "train", str(path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=openmp_env({}))
    assert done.returncode == 0, done.stderr
    assert "completed" in done.stdout
    assert openmp_read(done.stderr) == {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0"}


def test_a_trials_worker_lets_its_threads_sleep_unless_the_environment_says_otherwise():
    # What a Ray worker runs before a trial's first import of torch (search.worker.warm_up).
    command = [sys.executable, "-c", "from scaletune.search.worker import warm_up; warm_up()"]
    quiet = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120,
                           env=openmp_env({}))
    assert quiet.returncode == 0, quiet.stderr
    assert openmp_read(quiet.stderr)["GOMP_SPINCOUNT"] == "0"
    spinning = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120,
                              env=openmp_env({"OMP_WAIT_POLICY": "ACTIVE"}))
    assert spinning.returncode == 0, spinning.stderr
    assert openmp_read(spinning.stderr)["OMP_WAIT_POLICY"] == "ACTIVE"
