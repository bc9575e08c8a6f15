"""Security defaults: the dashboard on loopback (and read-only: test_dashboard.py), passwords
masked, checkpoints loaded without running pickled code, and a local study's Ray on loopback with
its token authentication left on."""

from __future__ import annotations

import ast
import io
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import torch
from optuna_dashboard import get_note
from rich.console import Console

import scaletune.search.cluster
import scaletune.search.dashboard
import scaletune.search.plan
import scaletune.search.runner
from scaletune.search.cli import main
from scaletune.search.config import validate_study
from scaletune.search.dashboard import serve
from scaletune.search.space import planning_priors
from scaletune.search.storage import mask_url, scrub
from scaletune.trainer.data import prepare_data
from scaletune.trainer.errors import ConfigError, SetupError
from tests.ports import free_port
from tests.search.helpers import tiny_study, write_study

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("search", "trainer", "heuristics")


# --------------------------------------------------------------------------- dashboard


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def listening_sockets() -> dict[str, tuple[IPAddress, int]]:
    """Every TCP socket listening on this machine, by inode: (address, port), from /proc/net."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A":  # 0A: LISTEN
                continue
            host, hex_port = local.split(":")
            raw = bytes.fromhex(host)
            # The kernel prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found[inode] = (ipaddress.ip_address(raw), int(hex_port, 16))
    return found


def listening(port: int) -> list[IPAddress]:
    """Addresses of the sockets listening on TCP ``port`` on this machine."""
    return [address for address, p in listening_sockets().values() if p == port]


def is_loopback(address: IPAddress) -> bool:
    """Loopback, also as an IPv4-mapped IPv6 address (::ffff:127.0.0.1, which Python 3.11 does
    not count as loopback)."""
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


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
    assert all(is_loopback(a) for a in addresses), addresses
    # Bound to loopback, it gives no warning.
    assert "warning" not in out


class _Bound:
    """Stands for the server ``serve`` binds: it returns at once instead of serving."""

    def __init__(self, binds, app, host, port):
        binds.append((host, port))

    def serve_forever(self):
        pass

    def server_close(self):
        pass


def test_an_empty_dashboard_host_is_refused(tmp_path, shakespeare, monkeypatch):
    # `--host "$HOST"` with the variable unset served every interface (with a warning).
    binds = []
    monkeypatch.setattr(scaletune.search.dashboard, "bind",
                        lambda app, host, port: _Bound(binds, app, host, port))
    with pytest.raises(ConfigError) as err:
        serve(str(study_file(tmp_path, shakespeare)), host=" ", port=8123,
              console=Console(file=io.StringIO()))
    assert err.value.errors == ["--host is empty: give an address of this machine, such as "
                                "127.0.0.1 (the default), or 0.0.0.0 for every interface"]
    assert binds == []


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "0"])
@pytest.mark.parametrize("allow_writes", [False, True])
def test_dashboard_warns_when_bound_beyond_loopback(tmp_path, shakespeare, monkeypatch, host,
                                                    allow_writes):
    # "0" binds every interface, as 0.0.0.0 does: it was named as itself ("binds to 0: anyone
    # ...", "http://0:8123/").
    named = "0.0.0.0" if host == "0" else host
    binds = []
    monkeypatch.setattr(scaletune.search.dashboard, "bind",
                        lambda app, host, port: _Bound(binds, app, host, port))
    out = io.StringIO()
    serve(str(study_file(tmp_path, shakespeare)), host=host, port=8123, allow_writes=allow_writes,
          console=Console(file=out, width=400))
    text = " ".join(out.getvalue().split())
    # Binding elsewhere than loopback is allowed (the user asked for it) but warned about,
    # naming the address and all that it exposes ...
    assert f"warning: the dashboard binds to {named}: anyone who can reach this address can " \
           "read every study in the storage: every trial, its params, config and user attrs" \
           in text
    # ... which includes changing the studies when writes are allowed.
    assert ("delete or rename studies" in text) == allow_writes
    assert binds == [(named, 8123)]
    assert f"//{named if ':' not in named else f'[{named}]'}:8123/dashboard/" in text


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_dashboard_on_loopback_gives_no_warning(tmp_path, shakespeare, monkeypatch, host):
    monkeypatch.setattr(scaletune.search.dashboard, "bind",
                        lambda app, host, port: _Bound([], app, host, port))
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
    # Each of these was printed whole: a user with an '@' of its own (Azure's user@server), one
    # slash or none after the scheme, no scheme, a space before it.
    ("postgresql://u@srv:hunter2@h:5432/db", "postgresql://u@srv:***@h:5432/db"),
    ("postgresql:/u:hunter2@h/db", "postgresql:/u:***@h/db"),
    ("postgresql:u:hunter2@h/db", "postgresql:u:***@h/db"),
    ("u:hunter2@h:5432/db", "u:***@h:5432/db"),
    (" postgresql://u:hunter2@h/db", " postgresql://u:***@h/db"),
    ("postgresql://u:/hunter2@h/db", "postgresql://u:***@h/db"),
    ("postgresql://u:hun\nter2@h/db", "postgresql://u:***@h/db"),
    # A scheme without its ':', a space after the '//' (each printed whole).
    ("postgresql//u:hunter2@h:5432/db", "postgresql//u:***@h:5432/db"),
    ("postgresql:// u:hunter2@h/db", "postgresql:// u:***@h/db"),
    # A relative path with a ':' and an '@' in it is no URL: left whole.
    ("runs/t10:00@gpu/study.yaml", "runs/t10:00@gpu/study.yaml"),
    # No password: left whole, a port and a user with an '@' too.
    ("postgresql://u@srv@h:5432/db", "postgresql://u@srv@h:5432/db"),
    ("postgresql://u@h:5432/db", "postgresql://u@h:5432/db"),
    ("sqlite:////tmp/a:b@c/study.db", "sqlite:////tmp/a:b@c/study.db"),
])
def test_storage_urls_are_masked(url, masked):
    # The password never survives masking; the rest of the URL stays readable.
    assert mask_url(url) == masked


@pytest.mark.parametrize("command", ["studies", "show", "validate", "report"])
def test_a_storage_url_given_where_a_file_goes_is_said_masked_with_where_it_goes(command,
                                                                                 capsys):
    # `scaletune studies postgresql://u:PW@...` (no --storage): "1 error(s) in
    # postgresql:/u:PW@...: file not found", the password whole, and no word of --storage.
    from scaletune.search.cli import main

    assert main([command, "postgresql://alice:hunter2@127.0.0.1:1/studies"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "hunter2" not in err, err
    assert ("1 error(s) in postgresql:/alice:***@127.0.0.1:1/studies: file not found; a "
            "storage's URL goes after --storage") in err, err


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


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc (Linux)")
def test_a_password_given_on_the_command_line_is_masked_in_the_processs_own(tmp_path):
    # `scaletune run STUDY.yaml --storage postgresql://u:PW@...` on a cluster's node: Ray's
    # dashboard lists the driver's command line (as ps does) to whoever reaches the cluster,
    # and showed PW for as long as the study ran. A server that accepts and never answers holds
    # the command while its command line is read.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        url = f"postgresql://alice:hunter2@127.0.0.1:{server.getsockname()[1]}/db"
        command = subprocess.Popen(
            [sys.executable, "-m", "scaletune.search.cli", "studies", "--storage", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            seen = b""
            while time.monotonic() < deadline and command.poll() is None:
                seen = Path(f"/proc/{command.pid}/cmdline").read_bytes() or seen
                if b"***" in seen:
                    break
                time.sleep(0.05)
        finally:
            command.kill()
            command.wait()
    words = seen.decode().replace("\0", " ").split()
    assert words[-4:] == ["scaletune.search.cli", "studies", "--storage",
                          url.replace("hunter2", "***")], seen
    assert b"hunter2" not in seen
    # A word that is not UTF-8 beside it (a file's name): the title could not be encoded, and
    # the command ended in a traceback before it began.
    done = subprocess.run([sys.executable.encode(), b"-m", b"scaletune.search.cli", b"validate",
                           b"caf\xe9.yaml", b"--storage", url.encode()],
                          capture_output=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2 and b"Traceback" not in done.stderr, done.stderr
    assert b"file not found" in done.stderr, done.stderr
    # The job's entrypoint Ray records (`ray list jobs`) is masked from the words as given.
    from ray._private.utils import get_entrypoint_name

    from scaletune.search.cluster import masked_entrypoint

    argv = ["/bin/scaletune", "run", "s.yaml", f"--storage={url}"]
    with pytest.MonkeyPatch.context() as patch, masked_entrypoint():
        patch.setattr(sys, "argv", argv)
        recorded = scaletune.search.cluster.ray._private.utils.get_entrypoint_name()
    assert recorded.split()[1:] == [*argv[:3], f"--storage={url.replace('hunter2', '***')}"]
    assert scaletune.search.cluster.ray._private.utils.get_entrypoint_name is get_entrypoint_name


@pytest.mark.parametrize("address", ["http://u:s3cret@127.0.0.1:1", "ray://u:s3cret@127.0.0.1:1"])
def test_a_password_in_the_cluster_address_is_not_printed(tmp_path, shakespeare, capsys, address):
    # `run --address` refused both in the clear (with --detach, and in jobs, logs and stop, it
    # was masked): a job server's URL, and a Ray client address whose host was "u:s3cret@...".
    path = write_study(tmp_path, tiny_study(tmp_path, shakespeare))
    assert main(["run", str(path), "--address", address]) == 2
    said = capsys.readouterr()
    assert "s3cret" not in said.out + said.err
    assert "u:***@127.0.0.1:1" in said.err, said.err


@pytest.mark.parametrize("url, said", [
    ("postgresql://alice:p@ss:w0rd@127.0.0.1:5432/db",
     "storage: cannot open postgresql://alice:***@127.0.0.1:5432/db: the URL "),
    # It parses, with the rest of the password taken as the host's name.
    ("postgresql://alice:w0rd@s3cret@127.0.0.1:5432/db",
     "storage: cannot open postgresql://alice:***@127.0.0.1:5432/db: the URL holds more than one "
     "@ before its host; a user name or password that holds @ must be percent-encoded (@ as %40"),
    ("postgresql://alice:s3cret@127.0.0.1:notaport/db", "must be percent-encoded (@ as %40"),
    # libpq takes port 0 for 5432, and its refusal named that port, not the one given.
    ("postgresql://alice:s3cret@127.0.0.1:0/db",
     "storage: cannot open postgresql://alice:***@127.0.0.1:0/db: port 0 is not a port a server "
     "can listen on (1 to 65535): give the server's port, or leave it out"),
    # The / ended the authority: "could not translate host name", no hint, and with p@ss/w0rd
    # the host it named was a piece of the password.
    ("postgresql://alice:p@ss/w0rd@127.0.0.1:5432/db",
     "storage: cannot open postgresql://alice:***@127.0.0.1:5432/db: the URL holds an @ after a "
     "/, as a password that holds / (or @) reads; such a password must be percent-encoded"),
    ("mysql://alice:s3cret@127.0.0.1:1/db", "the Python driver of mysql:// is not installed"),
    ("postgres://alice:s3cret@127.0.0.1:1/db", "sqlalchemy.dialects:postgres; write postgresql://"),
    ("nonsense", "storage: nonsense is not a storage URL: give sqlite:///PATH or postgresql://"),
    # A digit Python's isdigit takes and int does not: a ValueError traceback.
    ("postgresql://alice:s3cret@127.0.0.1:²/db", "the URL does not parse (its port is not a "
     "number?)"),
], ids=["password with @ and :", "password with @", "port not a number", "port 0",
        "password with @ and /",
        "driver not installed", "postgres://", "not a URL", "port a superscript digit"])
def test_a_storage_url_that_cannot_be_used_is_one_line_in_every_command(tmp_path, shakespeare,
                                                                        capsys, url, said):
    from scaletune.search.cli import main

    path = str(write_study(tmp_path, tiny_study(tmp_path, shakespeare)))
    for command in (["run", path], ["studies"], ["show", path], ["best", path],
                    ["export", path, "-o", str(tmp_path / "final.yaml")], ["delete", path, "--yes"],
                    ["report", path, "-o", str(tmp_path / "report")], ["dashboard", path]):
        code = main([*command, "--storage", url])
        out = " ".join(capsys.readouterr().err.split())
        # Rule: exit 2 with the reason, no traceback, and no piece of the password.
        assert code == 2 and said in out, (command, out)
        assert "Traceback" not in out and "w0rd" not in out and "s3cret" not in out
    assert not (tmp_path / "final.yaml").exists() and not (tmp_path / "report").exists()


def test_study_attrs_record_the_storage_without_its_password(tmp_path, shakespeare):
    url = "postgresql://scaletune:hunter2@127.0.0.1:1/studies"
    cfg = validate_study(tiny_study(tmp_path, shakespeare, storage=url))
    study = optuna.create_study()
    data = prepare_data(cfg.data, cfg.model.block_size)
    priors = planning_priors(cfg)  # the study's note tabulates them beside its own ranges
    scaletune.search.plan.record_or_check(study, cfg, priors, data)
    # The study records where it lives, masked: user attrs and the study's note are shown by the
    # dashboard, and user attrs are copied into reports.
    assert study.user_attrs["config"]["storage"] == "postgresql://scaletune:***@127.0.0.1:1/studies"
    assert "hunter2" not in json.dumps(study.user_attrs)
    note = get_note(study)
    assert "storage: postgresql://scaletune:***@127.0.0.1:1/studies" in note
    assert "hunter2" not in note


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
    # Resuming from a checkpoint that holds an arbitrary object refuses to load it, in one line
    # that never suggests loading it anyway ...
    with pytest.raises(SetupError, match="not a scaletune checkpoint") as err:
        train(cfg, resume=True)
    assert "weights_only" not in str(err.value) and "\n" not in str(err.value)
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
                mentions.append((f"{path.relative_to(REPO)}:{n}", line))
                if re.search(r"disabled", line, re.IGNORECASE):
                    disabling.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    # Nothing in the project sets RAY_AUTH_MODE=disabled (or passes it in a system config) ...
    assert disabling == []
    # ... and the product code does not set Ray's authentication mode: it may only name it in
    # a message that tells the user to set the token (run --detach against a cluster that asks).
    # (Joining the cluster `ray start` started here, it turns token authentication on as Ray's
    # own auto does, through Ray: search.cluster._token_auth_as_ray_auto.)
    touching = [where for where, line in mentions if where.split("/")[0] in PRODUCT
                and re.search(r"environ|putenv|system_config|_AUTH_MODE\s*=(?!token)", line)]
    assert touching == []
    assert all("RAY_AUTH_MODE=token" in line for where, line in mentions
               if where.split("/")[0] in PRODUCT)


# --------------------------------------------------------------------------- Ray's local node


def process_names(root: int) -> dict[int, str]:
    """``root`` and every process descended from it, by pid: the script or program it runs
    (``ray::IDLE`` and the like for Ray's Python workers and agents)."""
    parents, names = {}, {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        parents[int(proc.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        words = [w.strip() for w in argv if w.strip()]
        program = next((w for w in words if w.endswith(".py")), words[0] if words else "?")
        names[int(proc.name)] = program.rsplit("/", 1)[-1]
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return {pid: names.get(pid, "?") for pid in tree}


def listening_sockets_of(pids: dict[int, str]) -> list[tuple[str, IPAddress, int]]:
    """(process, address, port) of every listening TCP socket the processes ``pids`` hold."""
    sockets = listening_sockets()
    found = set()
    for pid, name in pids.items():
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            inode = target.removeprefix("socket:[").removesuffix("]")
            if target.startswith("socket:[") and inode in sockets:
                found.add((name, *sockets[inode]))
    return sorted(found, key=lambda s: (s[0], s[2]))


# What this Ray (2.60) starts for a local node, each listening on its ports: the driver's core
# worker, gcs_server, raylet (node and object manager), a worker, the dashboard agent (minimal:
# its gRPC port alone, search.cluster.MINIMAL_AGENT; else HTTP too, on the fixed port 52365) and
# the runtime env agent. Not Ray's API server (dashboard.py), its autoscaler monitor
# (monitor.py, whose metrics port is a fixed 44217) or its log monitor: a local study starts none
# of them (search.cluster.SKIPPED).
RAY_LISTENERS = {"driver", "gcs_server", "raylet", "ray::IDLE", "ray::DashboardAgent",
                 "ray::RuntimeEnvAgent"}
SKIPPED = ("dashboard.py", "monitor.py", "log_monitor.py")


@pytest.mark.slow
@pytest.mark.alone  # every listening port of the machine is read: no other test may run
def test_a_local_study_starts_ray_with_token_authentication_on_loopback_only(tmp_path,
                                                                            shakespeare,
                                                                            monkeypatch):
    import ray
    from ray._raylet import AuthenticationMode, get_authentication_mode

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # a home without a Ray token yet
    cfg = validate_study(tiny_study(tmp_path, shakespeare))
    assert cfg.workers.address is None
    before = set(listening_sockets().values())
    assert scaletune.search.cluster.init_ray(cfg) is None
    # The token Ray wrote is its owner's alone (Ray left it 0644).
    token = tmp_path / "home" / ".ray" / "auth_token"
    assert token.read_text() and oct(token.stat().st_mode & 0o777) == "0o600"
    try:
        mode = get_authentication_mode()

        @ray.remote(num_cpus=0)
        def ping() -> str:
            return "pong"

        answer = ray.get(ping.remote(), timeout=60)
        # The agents and the metrics ports come up a little after ray.init returns.
        for _ in range(60):
            pids = process_names(os.getpid()) | {os.getpid(): "driver"}
            sockets = [s for s in listening_sockets_of(pids) if s[1:] not in before]
            if RAY_LISTENERS <= {name for name, _, _ in sockets}:
                break
            time.sleep(0.5)
    finally:
        ray.shutdown()
    # The local cluster a study starts requires Ray's token, and it works with it.
    assert mode == AuthenticationMode.TOKEN
    assert answer == "pong"
    # Every process of the local node listens, so the check below looked at all of them ...
    assert {name for name, _, _ in sockets} >= RAY_LISTENERS, sockets
    assert [name for name in pids.values() if name in SKIPPED] == []
    node = ray._private.node.Node  # put back, for a cluster started otherwise
    assert [getattr(node, name).__name__ for name in scaletune.search.cluster.SKIPPED] == list(
        scaletune.search.cluster.SKIPPED)
    assert ray._private.utils.get_dashboard_dependency_error() is None
    # The dashboard agent runs minimal: its gRPC port alone, no HTTP server, so not on Ray's
    # default (52365), which a head that `ray start` starts here meanwhile needs to take jobs
    # (`scaletune run --detach`).
    agents = [s for s in sockets if s[0] == "ray::DashboardAgent"]
    assert len(agents) == 1 and agents[0][2] != 52365, agents
    # ... and every port of every one is on loopback: none on 0.0.0.0, :: or the machine's
    # network address (see search/cluster.py for how, and what Ray does without it).
    assert [s for s in sockets if not is_loopback(s[1])] == []


def test_the_ray_token_a_local_study_writes_is_kept_to_its_owner(tmp_path):
    # Ray writes ~/.ray/auth_token with the umask: 0644, and whoever read it joined the study's
    # cluster on loopback and ran code as its user.
    from scaletune.search.cluster import private_token

    token = tmp_path / "auth_token"
    token.write_text("secret")
    token.chmod(0o644)
    assert private_token(token, existed=False) is None  # written by this start: made private
    assert oct(token.stat().st_mode & 0o777) == "0o600"
    assert private_token(token, existed=False) is None and private_token(token, True) is None
    token.chmod(0o640)  # there before, perhaps shared on purpose: said, not changed
    note = private_token(token, existed=True)
    assert oct(token.stat().st_mode & 0o777) == "0o640"
    assert note == (f"{token}, the Ray token that guards this study's ports, is readable by "
                    "other users of this machine (mode 640): anyone who reads it can run code on "
                    f"the study's cluster as you; `chmod 600 {token}` keeps it yours")
    assert private_token(tmp_path / "none", existed=False) is None


def test_a_storage_url_given_to_a_command_that_takes_none_is_not_echoed_whole(tmp_path,
                                                                              shakespeare, capsys):
    from scaletune.search.cli import main

    path = str(write_study(tmp_path, tiny_study(tmp_path, shakespeare)))
    with pytest.raises(SystemExit):
        main(["priors", path, "--storage", "postgresql://alice:s3cret@127.0.0.1/db"])
    err = capsys.readouterr().err
    assert "unrecognized arguments: --storage postgresql://alice:***@127.0.0.1/db" in err, err
    assert "s3cret" not in err
    # Written with '=', misspelt, or before the command, the option was echoed whole.
    for argv, said in [
        (["priors", path, "--storage=postgresql://alice:s3cret@h/db"],
         "unrecognized arguments: --storage=postgresql://alice:***@h/db"),
        (["run", path, "--storge=postgresql://alice:s3cret@h/db"],
         "unrecognized arguments: --storge=postgresql://alice:***@h/db"),
        (["--storage=postgresql://alice:s3cret@h/db", "run", path],
         "unrecognized arguments: --storage=postgresql://alice:***@h/db"),
    ]:
        with pytest.raises(SystemExit):
            main(argv)
        err = capsys.readouterr().err
        assert said in err and "s3cret" not in err, err


def test_an_mlflow_uris_password_stays_out_of_the_trackers_error(tmp_path, shakespeare, capsys,
                                                                 monkeypatch):
    # MLflow's error quotes the URI it could not reach: validate printed its password.

    from scaletune.search import tracking
    from scaletune.search.cli import main

    for name in tracking.MLFLOW_PATIENCE:
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://bob:s3cret@127.0.0.1:{port}"
    path = write_study(tmp_path, tiny_study(tmp_path, shakespeare,
                                            tracking={"mlflow": {"tracking_uri": uri}}))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "tracking.mlflow: MlflowException: " in err and "s3cret" not in err, err


ENTRYPOINT = """
import sys
import ray
from scaletune.search.cluster import init_ray
from scaletune.search.config import load_study
init_ray(load_study(sys.argv[1]))
try:
    print([job["Entrypoint"] for job in ray._private.state.state.job_table()])
finally:
    ray.shutdown()
"""


@pytest.mark.slow
def test_ray_records_the_drivers_command_line_with_the_storage_password_masked(tmp_path,
                                                                               shakespeare):
    # `ray list jobs` and the Ray dashboard showed `scaletune run ... --storage
    # postgresql://u:PASSWORD@...` whole to whoever reached the cluster.
    import ast
    import subprocess
    import sys

    path = write_study(tmp_path, tiny_study(tmp_path, shakespeare))
    done = subprocess.run(
        [sys.executable, "-c", ENTRYPOINT, str(path), "--storage",
         "postgresql://alice:s3cret@db/studies", "--storage=postgresql://bob:hunter2@db/x"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [recorded] = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert ("--storage postgresql://alice:***@db/studies "
            "--storage=postgresql://bob:***@db/x") in recorded, recorded
    assert "s3cret" not in recorded and "hunter2" not in recorded
