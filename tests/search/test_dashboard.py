"""`scaletune dashboard`: read-only unless --allow-writes, one line for a port it cannot use, and
nothing created for a study that never ran. Served for real on 127.0.0.1, in a thread."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from rich.console import Console

import scaletune.search.dashboard as dashboard
from scaletune.search.cli import main
from scaletune.search.config import validate_study
from scaletune.trainer.errors import SetupError
from tests.search.helpers import tiny_study, write_study
from tests.search.test_security import free_port


def ran_study(tmp_path: Path, shakespeare: Path) -> tuple[Path, str]:
    """A study file whose study has two finished trials; and its storage URL."""
    raw = tiny_study(tmp_path, shakespeare)
    cfg = validate_study(raw)
    cfg.folder.mkdir(parents=True)
    study = optuna.create_study(study_name=cfg.name, storage=cfg.storage_url)
    study.set_user_attr("config", {"name": cfg.name})
    study.optimize(lambda t: t.suggest_float("lr", 1e-4, 1e-2, log=True), n_trials=2)
    return write_study(tmp_path, raw), cfg.storage_url


@contextlib.contextmanager
def served(path: Path, monkeypatch, allow_writes: bool = False) -> Iterator[str]:
    """The dashboard of ``path`` served by ``serve`` in a thread; yields its base URL."""
    servers = []
    bind = dashboard.bind

    def keep(*args):
        servers.append(bind(*args))
        return servers[-1]

    monkeypatch.setattr(dashboard, "bind", keep)
    port = free_port()
    thread = threading.Thread(
        target=dashboard.serve, args=(str(path),), daemon=True,
        kwargs=dict(port=port, allow_writes=allow_writes, console=Console(file=io.StringIO())),
    )
    thread.start()
    for _ in range(300):
        if servers or not thread.is_alive():
            break
        time.sleep(0.05)
    assert servers, "the dashboard did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        servers[0].shutdown()
        thread.join(timeout=10)


def call(method: str, url: str, body: dict | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_the_dashboard_is_read_only_by_default(tmp_path, shakespeare, monkeypatch):
    path, url = ran_study(tmp_path, shakespeare)
    with served(path, monkeypatch) as base:
        status, listing = call("GET", f"{base}/api/studies")
        study_id = json.loads(listing)["study_summaries"][0]["study_id"]
        attempts = {
            "delete the study": call("DELETE", f"{base}/api/studies/{study_id}"),
            "rename it": call("POST", f"{base}/api/studies/{study_id}/rename",
                              {"study_name": "other"}),
            "write a note": call("PUT", f"{base}/api/studies/{study_id}/note",
                                 {"version": 1, "body": "hi"}),
            "create a study": call("POST", f"{base}/api/studies",
                                   {"study_name": "new", "directions": ["minimize"]}),
            "upgrade the schema": call("POST", f"{base}/incompatible-rdb-schema"),
        }
        pages = {page: call("GET", f"{base}{page}")[0] for page in [
            "/dashboard", "/api/meta", f"/api/studies/{study_id}", f"/csv/{study_id}"]}
        detail = json.loads(call("GET", f"{base}/api/studies/{study_id}")[1])
    # Every request that would change the storage is refused with 405, and a reason the UI shows.
    assert {what: code for what, (code, _) in attempts.items()} == dict.fromkeys(attempts, 405)
    reason = json.loads(attempts["delete the study"][1])["reason"]
    assert reason == "the dashboard is read-only; start it with --allow-writes to change the study"
    # The study is still there, untouched, and no other study appeared.
    assert optuna.get_all_study_names(url) == ["tiny"]
    assert len(optuna.load_study(study_name="tiny", storage=url).trials) == 2
    # What the UI reads still answers: the page, the study list, the study with its trials, CSV.
    assert status == 200
    assert pages == dict.fromkeys(pages, 200)
    assert [t["number"] for t in detail["trials"]] == [0, 1]
    assert detail["user_attrs"] == [{"key": "config", "value": '{"name": "tiny"}'}]


def test_allow_writes_lets_the_dashboard_delete_the_study(tmp_path, shakespeare, monkeypatch):
    path, url = ran_study(tmp_path, shakespeare)
    with served(path, monkeypatch, allow_writes=True) as base:
        study_id = json.loads(call("GET", f"{base}/api/studies")[1])["study_summaries"][0][
            "study_id"]
        status, _ = call("DELETE", f"{base}/api/studies/{study_id}",
                         {"remove_associated_artifacts": False})
    # With --allow-writes the dashboard does what it offers: the study is deleted.
    assert status == 204
    assert optuna.get_all_study_names(url) == []


def output_lines(capsys) -> list[str]:
    captured = capsys.readouterr()
    return [line for line in (captured.out + captured.err).splitlines() if line.strip()]


def test_a_port_in_use_is_one_line(tmp_path, shakespeare, capsys):
    path, _ = ran_study(tmp_path, shakespeare)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["dashboard", str(path), "--port", str(port)])
    lines = output_lines(capsys)
    # Exit 2 and one error line that names the port and what to do; no traceback.
    assert code == 2
    assert lines == [
        "1 error(s) in scaletune:",
        f"  --port {port}: cannot listen on 127.0.0.1:{port} (Address already in use); choose "
        "another with --port",
    ]


@pytest.mark.parametrize("bad", ["99999", "0", "-1", "http"])
def test_a_port_out_of_range_is_refused_by_the_command_line(tmp_path, capsys, bad):
    with pytest.raises(SystemExit) as done:
        main(["dashboard", str(tmp_path / "study.yaml"), "--port", bad])
    errors = [line for line in output_lines(capsys) if "error" in line]
    # argparse's exit 2: its usage line and one error, naming the value and the range.
    assert done.value.code == 2
    assert errors == [f"scaletune dashboard: error: argument --port: expected a port 1-65535, "
                      f"got {bad!r}"]


def test_serve_turns_a_port_out_of_range_into_one_line(tmp_path, shakespeare):
    path, _ = ran_study(tmp_path, shakespeare)
    # Called from Python, past argparse, the overflow is still one line, not a traceback.
    with pytest.raises(SetupError, match=r"^--port 99999: not a TCP port; choose one "
                                                   r"of 1-65535 with --port$"):
        dashboard.serve(str(path), port=99999, console=Console(file=io.StringIO()))


@pytest.mark.parametrize("folder_exists", [False, True])
def test_a_study_that_never_ran_is_one_line_and_creates_no_storage(tmp_path, shakespeare, capsys,
                                                                   folder_exists):
    raw = tiny_study(tmp_path, shakespeare)
    cfg = validate_study(raw)
    if folder_exists:
        cfg.folder.mkdir(parents=True)
    path = write_study(tmp_path, raw)
    code = main(["dashboard", str(path), "--port", str(free_port())])
    lines = output_lines(capsys)
    # One line: no study has run there, and the command that runs it ...
    assert code == 2
    assert len(lines) == 2 and lines[0] == f"1 error(s) in {path}:"
    assert "no study 'tiny'" in lines[1] and "does not exist" in lines[1]
    assert f"run `scaletune run {path}` first" in lines[1]
    # ... and no storage was created: no study.db, and no folder where there was none.
    assert not (cfg.folder / "study.db").exists()
    assert cfg.folder.exists() == folder_exists
