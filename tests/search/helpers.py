"""Tiny study files for the search tests (a model that trains in about a second on a CPU core),
and ways to run and watch a study from a test."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from tests import forked

REPO = Path(__file__).resolve().parents[2]


def tiny_study(tmp: Path, text: Path, **overrides: Any) -> dict[str, Any]:
    """A study dict on the first 200 kB of ``text``; overrides replace top-level keys."""
    data_file = tmp / "corpus.txt"
    if not data_file.exists():
        data_file.write_bytes(text.read_bytes()[:200_000])
    study: dict[str, Any] = {
        "name": "tiny",
        "study_dir": str(tmp / "study"),
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32},
        "data": {"source": "text", "path": str(data_file), "tokenizer": "byte", "val_windows": 16},
        "tokens_per_trial": 40_960,
        "eval_every_tokens": 8_192,
        "search": {
            "lr": {"low": 1e-4, "high": 3e-2, "log": True},
            "weight_decay": {"prior": "auto", "as": "tau"},
            "dropout": {"value": 0.0},
            "warmup_frac": {"low": 0.0, "high": 0.2},
            "batch_size": {"choices": [8, 16]},
        },
        "sampler": {"name": "tpe", "n_startup_trials": 3},
        "pruner": {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 8_192},
        "n_trials": 4,
        "workers": {"cpus_per_trial": 1, "max_concurrent": 1},
        "seed": 0,
    }
    study.update(overrides)
    return study


def dashboard_api(url: str, path: str) -> Any:
    """GET ``path`` (``/api/studies``, say) from the dashboard `scaletune dashboard` serves on
    the storage ``url``, as JSON: what the dashboard's pages show."""
    from wsgiref.util import setup_testing_defaults

    from scaletune.search.dashboard import dashboard_app

    app = dashboard_app(url)
    environ = {"PATH_INFO": path}
    setup_testing_defaults(environ)
    status = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status == ["200 OK"], (status, body[:300])
    return json.loads(body)


def write_study(tmp: Path, study: dict[str, Any], name: str = "study.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def trial_attr_rows(db: Path, key: str) -> list[tuple[int, str, object]]:
    """(number, state, user attr ``key``) of every trial in a SQLite study, read-only.

    For watching a study another process runs: only its driver writes, and a reader that opened
    the storage through Optuna could race it creating the tables."""
    if not db.exists():
        return []
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            rows = con.execute(
                "SELECT t.number, t.state, a.value_json FROM trials t LEFT JOIN "
                "trial_user_attributes a ON a.trial_id = t.trial_id AND a.key = ? "
                "ORDER BY t.number",
                (key,),
            ).fetchall()
        finally:
            con.close()
    except sqlite3.Error:  # tables not created yet, or a write in progress
        return []
    return [(n, s, json.loads(v) if v else None) for n, s, v in rows]


def act_when(find: Callable[[], Any], act: Callable[[Any], None], timeout: float,
             settle: float = 0.5) -> tuple[threading.Thread, dict[str, Any]]:
    """A watcher thread, started: polls ``find()`` until it returns something other than None,
    waits ``settle`` seconds (so the moment found is well under way), then calls ``act`` on it.

    Returns the thread and a dict that holds the value acted on under "seen" once it has acted.
    """
    seen: dict[str, Any] = {}

    def watch() -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = find()
            if found is not None:
                time.sleep(settle)
                act(found)
                seen["seen"] = found
                return
            time.sleep(0.1)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread, seen


def as_foreground_job() -> None:
    """For ``preexec_fn``: SIGINT, SIGTERM and SIGHUP at their defaults, as a terminal's foreground
    job has them. A test run started in the background of a shell without job control (or under
    nohup) inherits them ignored, and scaletune rightly leaves an ignored signal ignored."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


@contextlib.contextmanager
def scaletune_run(path: Path, log: Path) -> Iterator[subprocess.Popen]:
    """`scaletune run` in its own process group, as a terminal runs a foreground job, its output
    in ``log``. Whatever the test does with it, the whole group is gone when the block ends."""
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "scaletune.search.cli", "run", str(path)], cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=as_foreground_job)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def scaletune_run_to_end(path: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`scaletune run PATH` in a new process (forked: tests/forked.py), waited for: its exit
    code and output."""
    return forked.run("-m", "scaletune.search.cli", "run", str(path), cwd=REPO, timeout=timeout)


def flat(text: str) -> str:
    """Output with the console's line wrapping undone."""
    return " ".join(text.split())
