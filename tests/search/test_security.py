"""Security defaults: the dashboard on loopback, passwords masked, checkpoints loaded without
running pickled code, and Ray's token authentication left on."""

from __future__ import annotations

import ast
import io
import ipaddress
import json
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
from rich.console import Console

import scaletune.search.plan
import scaletune.search.runner
from scaletune.search.config import validate_study
from scaletune.search.dashboard import serve
from scaletune.search.storage import mask_url, scrub
from scaletune.trainer.errors import ConfigError
from tests.search.helpers import tiny_study, write_study

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("search", "trainer", "heuristics")


# --------------------------------------------------------------------------- dashboard


def listening(port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Addresses of the sockets listening on TCP ``port`` on this machine (from /proc/net)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            host, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(host)
            # The kernel prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.append(ipaddress.ip_address(raw))
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def study_file(tmp_path: Path, shakespeare: Path) -> Path:
    raw = tiny_study(tmp_path, shakespeare)
    cfg = validate_study(raw)
    cfg.folder.mkdir(parents=True)
    optuna.create_study(study_name=cfg.name, storage=cfg.storage_url)
    return write_study(tmp_path, raw)


@pytest.mark.slow
def test_dashboard_listens_on_loopback_only_by_default(tmp_path, shakespeare):
    path = study_file(tmp_path, shakespeare)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "scaletune.search.cli", "dashboard", str(path), "--port", str(port)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    try:
        for _ in range(150):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.2)
        addresses = listening(port)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out = proc.communicate(timeout=10)[0]
    # The dashboard started, and every socket it listens on is a loopback address: not 0.0.0.0
    # or ::, which would serve the study to the whole network.
    assert addresses, f"nothing listens on port {port}:\n{out}"
    assert all(a.is_loopback for a in addresses), addresses
    # Bound to loopback, it gives no warning.
    assert "warning" not in out


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", ""])
def test_dashboard_warns_when_bound_beyond_loopback(tmp_path, shakespeare, monkeypatch, host):
    import optuna_dashboard

    calls = []
    monkeypatch.setattr(optuna_dashboard, "run_server",
                        lambda storage, host, port: calls.append((host, port)))
    out = io.StringIO()
    serve(str(study_file(tmp_path, shakespeare)), host=host, port=8123,
          console=Console(file=out, width=300))
    text = out.getvalue()
    # Binding elsewhere than loopback is allowed (the user asked for it) but warned about,
    # naming the address and what it exposes.
    assert f"warning: the dashboard binds to {host}: anyone who can reach this address can " \
           "read the study" in text
    assert calls == [(host, 8123)]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_dashboard_on_loopback_gives_no_warning(tmp_path, shakespeare, monkeypatch, host):
    import optuna_dashboard

    monkeypatch.setattr(optuna_dashboard, "run_server", lambda storage, host, port: None)
    out = io.StringIO()
    serve(str(study_file(tmp_path, shakespeare)), host=host, console=Console(file=out, width=300))
    # Loopback addresses are private to this machine: no warning.
    assert "warning" not in out.getvalue()


# --------------------------------------------------------------------------- storage passwords


@pytest.mark.parametrize("url, masked", [
    ("postgresql://scaletune:hunter2@db.internal:5432/studies",
     "postgresql://scaletune:***@db.internal:5432/studies"),
    ("postgresql+psycopg2://u:p%40ss@h/db", "postgresql+psycopg2://u:***@h/db"),
    # An unescaped '@' in the password: all of it is hidden, not just what precedes the '@'.
    ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
    # A URL SQLAlchemy cannot parse (bad port) is masked all the same.
    ("postgresql://u:hunter2@h:notaport/db", "postgresql://u:***@h:notaport/db"),
    ("mysql://u:secret@h/db?charset=utf8", "mysql://u:***@h/db?charset=utf8"),
    ("postgresql://u@h/db?password=secret&sslmode=require",
     "postgresql://u@h/db?password=***&sslmode=require"),
    ("postgresql://:secret@h/db", "postgresql://:***@h/db"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
    ("sqlite:////tmp/study.db", "sqlite:////tmp/study.db"),
])
def test_storage_urls_are_masked(url, masked):
    # The password never survives masking; the rest of the URL stays readable.
    assert mask_url(url) == masked


def test_a_password_with_an_unescaped_at_sign_stays_out_of_the_storage_error(tmp_path,
                                                                             shakespeare):
    # The driver splits "s3cr@tPART" at its first '@' and names "tPART@127.0.0.1" as the host.
    url = "postgresql://alice:s3cr@tPART@127.0.0.1:1/db"
    cfg = validate_study(tiny_study(tmp_path, shakespeare, storage=url))
    with pytest.raises(ConfigError) as err:
        scaletune.search.runner.preflight(cfg)
    text = str(err.value)
    assert "storage: cannot open postgresql://alice:***@127.0.0.1:1/db" in text
    assert "tPART" not in text and "s3cr" not in text
    assert scrub('host "tPART@h"; password=p4ssw0rd', "postgresql://u@h/db?password=p4ssw0rd") == (
        'host "tPART@h"; password=***')


def test_study_attrs_record_the_storage_without_its_password(tmp_path, shakespeare):
    url = "postgresql://scaletune:hunter2@127.0.0.1:1/studies"
    cfg = validate_study(tiny_study(tmp_path, shakespeare, storage=url))
    study = optuna.create_study()
    data = SimpleNamespace(fingerprint="f", n_train_tokens=1, n_val_tokens=1, vocab_size=256)
    scaletune.search.plan.record_or_check(study, cfg, SimpleNamespace(to_json=dict), data)
    # The study records where it lives, masked: user attrs are shown by the dashboard and
    # copied into reports.
    assert study.user_attrs["config"]["storage"] == "postgresql://scaletune:***@127.0.0.1:1/studies"
    assert "hunter2" not in json.dumps(study.user_attrs)


# --------------------------------------------------------------------------- checkpoints


def _spring(path: str) -> None:
    Path(path).write_text("code from the checkpoint ran")


class _Trap:
    """Pickles as a call to _spring: loading it with plain pickle runs code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (_spring, (self.marker,))


def test_checkpoint_with_pickled_code_is_refused(tmp_path, shakespeare):
    from scaletune.trainer import TrainConfig, train

    out_dir = tmp_path / "run"
    out_dir.mkdir()
    marker = tmp_path / "ran"
    torch.save({"model": _Trap(marker), "config": {}, "fingerprint": ""},
               out_dir / "checkpoint.pt")
    (tmp_path / "text.txt").write_bytes(shakespeare.read_bytes()[:100_000])
    cfg = TrainConfig.model_validate({
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32},
        "data": {"source": "text", "path": str(tmp_path / "text.txt"), "val_windows": 4},
        "tokens": 2048, "batch_size": 8, "num_threads": 1, "progress": False,
        "out_dir": str(out_dir),
    })
    # Resuming from a checkpoint that holds an arbitrary object fails to load it ...
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        train(cfg, resume=True)
    # ... and the object's code never ran.
    assert not marker.exists()


def test_every_torch_load_in_the_product_is_weights_only():
    loads = []
    for package in PRODUCT:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "load" and isinstance(node.func.value, ast.Name)
                        and node.func.value.id == "torch"):
                    safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant)
                               and k.value.value is True for k in node.keywords)
                    loads.append((f"{path.relative_to(REPO)}:{node.lineno}", safe))
    # The trainer loads checkpoints (so there is something to check), and every torch.load
    # refuses pickled code: a checkpoint may come from someone else.
    assert any(where.startswith("trainer/checkpoint.py") for where, _ in loads)
    assert [where for where, safe in loads if not safe] == []


# --------------------------------------------------------------------------- Ray authentication


def test_no_code_or_script_turns_off_ray_token_authentication():
    here = Path(__file__).resolve()
    files = [p for package in PRODUCT for p in (REPO / package).rglob("*.py")]
    files += [p for p in (REPO / "tests").rglob("*") if p.suffix in (".py", ".sh")]
    files += [p for p in (REPO / "studies").rglob("*.y*ml")]
    files += [p for p in (REPO / ".ci").rglob("*") if p.is_file()]
    files += [REPO / "pyproject.toml"]
    mentions, disabling = [], []
    for path in files:
        if path.resolve() == here:
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if "AUTH_MODE" in line:
                mentions.append(f"{path.relative_to(REPO)}:{n}")
                if re.search(r"disabled", line, re.IGNORECASE):
                    disabling.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    # Nothing in the project sets RAY_AUTH_MODE=disabled (or passes it in a system config) ...
    assert disabling == []
    # ... and the product code does not touch Ray's authentication mode at all.
    assert [m for m in mentions if m.split("/")[0] in PRODUCT] == []


@pytest.mark.slow
def test_the_study_driver_starts_ray_with_token_authentication(tmp_path, shakespeare,
                                                               monkeypatch):
    import ray
    from ray._raylet import AuthenticationMode, get_authentication_mode

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    cfg = validate_study(tiny_study(tmp_path, shakespeare))
    scaletune.search.runner.init_ray(cfg)
    try:
        mode = get_authentication_mode()

        @ray.remote(num_cpus=0)
        def ping() -> str:
            return "pong"

        answer = ray.get(ping.remote(), timeout=60)
    finally:
        ray.shutdown()
    # The local cluster a study starts requires Ray's token, and it works with it.
    assert mode == AuthenticationMode.TOKEN
    assert answer == "pong"
