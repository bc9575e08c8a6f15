"""The Ray cluster a study's trials run on: one private to this machine, or the one at
``workers.address``."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray
import ray._private.node
import ray._private.ray_constants
import ray._private.services
import ray._private.utils

from scaletune.search.config import StudyConfig
from scaletune.search.storage import mask_url
from scaletune.trainer.config import usable_cores
from scaletune.trainer.errors import ConfigError, SetupError, first_line

_JOINED: dict[str, Any] = {}
"""The cluster init_ray started or joined in this process (``asked``: 'local', or the address
given and the head's), and the driver's node there (``node``): while Ray runs on that node, a
later study asks for the same cluster or is refused."""


def init_ray(cfg: StudyConfig) -> str | None:
    """Start Ray on this machine for a local study (``workers.address`` None or 'local'),
    listening on loopback only, or join the cluster at ``workers.address``. Where Ray runs in
    this process already (a study before, in a notebook), it is kept: a study that names another
    cluster than the one init_ray started or joined is refused (it ran on the first, without a
    word); one started by ``ray.init`` elsewhere is taken as it is.

    Returns a note for the user, or None: the Ray token that guards a local cluster's ports,
    readable by other users of this machine (``private_token``)."""
    address = cfg.workers.address
    if ray.is_initialized():
        asked, joined = "local" if address in (None, "local") else address, _JOINED.get("asked")
        if (joined and asked not in joined
                and _JOINED.get("node") == _node_id()):
            where = "a cluster of this machine" if joined[0] == "local" else joined[-1]
            raise SetupError(
                f"workers.address: {asked}: Ray runs in this process on {where} already, "
                "started for a study before this one; call ray.shutdown() first to run this "
                "study where it says")
        return
    _JOINED.clear()
    # Ray's messages from its raylet (a worker that died) are wrapped in colour codes, into a
    # file as well: plain where the driver's output is not a terminal, or NO_COLOR is set.
    if os.environ.get("NO_COLOR") or not (sys.stdout.isatty() and sys.stderr.isatty()):
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    kwargs: dict[str, Any] = dict(
        include_dashboard=False, log_to_driver=False, configure_logging=False
    )
    if address not in (None, "local"):
        # Ray waits without end for a head that is not there at host:port (a wrong port hung
        # `scaletune run` for good, saying nothing): ask the port first. auto is the cluster
        # Ray last recorded on this machine, which may have died without `ray stop`.
        head = auto_address(cfg) if address == "auto" else address
        silent = listening(head)
        if silent:
            raise cfg.refusal([unreachable(address, silent, head)])
        if web := web_server_at(head):
            raise cfg.refusal([web])
        if address == "auto" and head != "auto" and not _ray_address_given():
            _token_auth_as_ray_auto(cfg.source)
        try:
            with masked_entrypoint():
                ray.init(address=head, **kwargs)
        except ConnectionError as e:
            raise cfg.refusal([unreachable(address, e, head)]) from None
        _joined(address, head)
        return
    # Ray (2.60) has no bind-address setting. Its gRPC servers (gcs_server, the raylet's node
    # and object managers, every core worker, the driver's too) listen on all interfaces (::)
    # unless the node IP is loopback; the dashboard agent, the runtime env agent and the
    # monitor's metrics port (44217) follow the node IP or 0.0.0.0.
    # ray.init(_node_ip_address="127.0.0.1") is turned back into the machine's address
    # (services.resolve_ip_for_localhost). Ray's single-machine mode, its default on macOS and
    # Windows, takes loopback as the node IP: ray_constants.ENABLE_RAY_CLUSTER, read from
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER when Ray is imported, so set here for the start. Then
    # every port of the node is on loopback (measured from /proc/net/tcp: test_security.py);
    # loopback is open to every user of this machine, and Ray's token authentication guards it.
    constants = ray._private.ray_constants
    multi_node = constants.ENABLE_RAY_CLUSTER
    constants.ENABLE_RAY_CLUSTER = False
    token_existed = ray_token().exists()
    try:
        # Trials exchange only small messages: a small object store spares shared memory.
        # address="local": a cluster of this machine's own, even while another Ray cluster runs
        # here (`ray start`, a job server): without it Ray joins that one, and refuses num_cpus.
        with lean_head_node(), masked_entrypoint():
            ray.init(address="local", num_cpus=usable_cores(),
                     object_store_memory=256 * 1024**2, **kwargs)
        _joined("local")
        return private_token(ray_token(), token_existed)
    except Exception as e:  # a traceback from Ray's node start-up said nothing to do
        with contextlib.suppress(Exception):
            ray.shutdown()  # what started of it
        raise SetupError(local_start_failed(e)) from e
    finally:
        # Once the node is up, Ray answers its node IP (loopback) from the node itself.
        constants.ENABLE_RAY_CLUSTER = multi_node


def ray_token() -> Path:
    """Where Ray (2.60) keeps the token of its token authentication, which it writes at the
    first start of a local cluster (ray._private.authentication.authentication_token_setup)
    with the process's umask: readable by every user of a machine whose home folders are (0644
    in 0755)."""
    return Path.home() / ".ray" / "auth_token"


def private_token(path: Path, existed: bool) -> str | None:
    """Keep the Ray token at ``path`` to its owner: a token file that this start of Ray wrote
    readable by others is made 0600 (whoever reads it can join the study's cluster on loopback
    and run code as its user); one that was there already, readable so, is only noted, for it
    may be shared on purpose. None where there is nothing to say."""
    if not hasattr(os, "getuid"):  # Windows: no owner's mode bits to keep
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    if st.st_uid != os.getuid() or not st.st_mode & 0o077:
        return None
    if not existed:
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)
            return None
    return (f"{path}, the Ray token that guards this study's ports, is readable by other users "
            f"of this machine (mode {stat.S_IMODE(st.st_mode):o}): anyone who reads it can run "
            f"code on the study's cluster as you; `chmod 600 {path}` keeps it yours")


def local_start_failed(error: BaseException) -> str:
    """Why Ray could not start this machine's cluster for the trials, and what to do."""
    from ray._common.utils import get_default_ray_temp_dir

    # Where Ray put them: RAY_TMPDIR, else TMPDIR (the error said /tmp/ray under a TMPDIR).
    root = get_default_ray_temp_dir()
    said = " ".join(first_line(error).split())
    kind = type(error).__name__
    said = said if said.startswith(kind) or kind == "Exception" else f"{kind}: {said}"
    token = ray_token()
    with contextlib.suppress(OSError):
        # Its token, written at its first start into HOME: a full or read-only HOME was blamed
        # on Ray's temporary folder (a full disk leaves the file empty, and names no file).
        if (isinstance(error, OSError)
                and (str(error.filename or "").startswith(str(token.parent))
                     or (token.is_file() and token.stat().st_size == 0))):
            return (f"Ray could not start a cluster on this machine for the trials: {said}. "
                    f"Ray writes the token of its authentication to {token} at its first start: "
                    f"{token.parent.parent} (HOME) must be writable, with free space")
    told = ("RAY_TMPDIR, set here" if os.environ.get("RAY_TMPDIR") else
            "TMPDIR, set here; RAY_TMPDIR names another" if os.environ.get("TMPDIR") else
            "RAY_TMPDIR, when set")
    return (f"Ray could not start a cluster on this machine for the trials: {said}. "
            f"Ray keeps its files under {root} ({told}): it must be a writable folder with "
            "free space; on a busy machine, Ray's processes may not start within the 30 s it "
            f"waits: run again when the load is lower. Ray's own logs: "
            f"{root}/session_latest/logs")


SKIPPED = ("start_api_server", "start_monitor", "start_log_monitor")
"""The processes of Ray's head node that a study's private cluster does without (Ray 2.60's
``Node`` methods that start them), 2-3 s of CPU of every local study's start on a 2-core laptop:

- the API server (dashboard.py): with the dashboard off it serves only usage statistics, and Ray
  waits 1.0-1.3 s for it to come up before it starts the raylet. ``scaletune run --detach`` talks
  to the job server of a cluster started with ``ray start``, never to this private one;
- the autoscaler's monitor (0.6 s of CPU): a private cluster is this machine, fixed, and never
  scales;
- the log monitor (0.5 s of CPU): it forwards the workers' output to the driver, which a study
  turns off (``log_to_driver=False``: a trial's errors come back with its result).

The dashboard agent starts too, in its minimal mode (``MINIMAL_AGENT``).
"""

MINIMAL_AGENT = ImportError("a study's private cluster runs the dashboard agent minimal")
"""What a local study's head node answers Ray's check for the dashboard's libraries
(``ray._private.utils.get_dashboard_dependency_error``, asked where the raylet is started):
given an error, Ray starts the dashboard agent with ``--minimal``, as where those libraries are
not installed. That agent runs no HTTP server: it serves no jobs (``scaletune run --detach``
submits to a cluster started with `ray start`) and no metrics, so it holds no HTTP port that a
head started later on this machine needs (Ray's default, 52365, the same for every node: a head
that could not bind it took no job for its whole life). And the driver does not import those
libraries (aiohttp and more) to answer the check: ``ray.init`` took 1.59-1.67 s against
1.75-1.79 s before, on a 2-core machine (benchmarks/results/orchestration_v10/, where a full
agent without that import starts as fast)."""


def _joined(*asked: str) -> None:
    _JOINED.update(asked=list(dict.fromkeys(asked)), node=_node_id())


def _node_id() -> str | None:
    """The node of this process's Ray driver (a Ray Client connection has none)."""
    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - no node to tell apart: a study is taken as before
        return None


def _ray_address_given() -> bool:
    return bool(os.environ.get(ray._private.ray_constants.RAY_ADDRESS_ENVIRONMENT_VARIABLE))


def _token_auth_as_ray_auto(source: Any) -> None:
    """Turn on Ray's token authentication for this process as Ray's own ``auto`` does: where
    its mode is not set (by the variable) and a token is stored here (`ray start --head` writes
    ~/.ray/auth_token, and Ray 2.60's head refuses a driver without it). Ray does so only for a
    cluster it finds itself, never for an address given; ``auto`` is given to Ray as the address
    of the cluster `ray start` recorded here, the one Ray's auto would find."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray without token authentication
        return
    try:
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    except ray.exceptions.AuthenticationError as e:  # RAY_AUTH_TOKEN_PATH names no token file
        raise ConfigError(source, [f"workers.address: auto: {first_line(e)}"]) from None


def auto_address(cfg: StudyConfig) -> str:
    """The head that ``auto`` joins: RAY_ADDRESS, else the cluster that `ray start` last
    recorded on this machine; 'auto' where Ray should judge (a job server's URL in RAY_ADDRESS,
    or a Ray without this lookup).

    Ray's own ``auto``, with no cluster recorded, joins any Ray it finds running here (its
    gcs_server in the process list): another study's private cluster among them, whose trials
    would then end when that study ends and whose CPUs it shares. That one is never joined.
    """
    given = os.environ.get(ray._private.ray_constants.RAY_ADDRESS_ENVIRONMENT_VARIABLE, "")
    if given.startswith(("http://", "https://")):  # Ray's own ValueError, as a traceback
        raise cfg.refusal([
            f"workers.address: auto joins the cluster in RAY_ADDRESS, and RAY_ADDRESS={given} is "
            "a Ray job server (what `run --detach`, `jobs`, `logs` and `stop` talk to): unset "
            "RAY_ADDRESS to join the cluster `ray start` started here, give the head as "
            "--address HOST:PORT, or give the job server as RAY_API_SERVER_ADDRESS instead"])
    if given:
        return "auto" if "://" in given else given
    try:
        recorded = ray._private.services.find_bootstrap_address(None)
    except AttributeError:  # another Ray: it finds the cluster itself
        return "auto"
    if not recorded:
        raise cfg.refusal([unreachable(
            "auto", ConnectionError("no cluster started with `ray start` is recorded here"))])
    return recorded


PROBE_TIMEOUT_S = 5.0
"""How long the head's port may take to accept a connection before the address is refused."""


def listening(address: str) -> str | None:
    """None when something accepts connections at the host and port of ``address``
    ('host:port' or 'ray://host:port'), or when it names none ('auto'); else why not."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if "@" in host:  # a user or password: no part of joining Ray, and never printed
        return "Ray is joined at HOST:PORT or ray://HOST:PORT, with no user or password in it"
    if not host or not port.isdigit():
        return None  # Ray reads it as it may ('auto', a name it resolves)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S):
            return None
    except socket.gaierror as e:
        return f"the host {host} is not known here ({e.strerror or e})"
    except TimeoutError:
        return f"no answer within {PROBE_TIMEOUT_S:g} s"
    except OSError as e:
        return f"nothing accepts connections there ({e.strerror or e})"


def web_server_at(address: str) -> str | None:
    """Why ``address`` ('host:port' or 'ray://host:port') is no cluster to join, where a web
    server answers there: the Ray dashboard and job server, whose address is one to mistake for
    the head's. ray.init waited there without end (the port accepts the connection and never
    speaks Ray's gRPC), and neither Ctrl-C nor SIGTERM stopped it. None otherwise: Ray's ports
    answer an HTTP/1 request with HTTP/2's binary frames, or not at all."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return None
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S) as s:
            s.settimeout(PROBE_TIMEOUT_S)
            s.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
            answer = s.recv(5)
    except OSError:  # no answer in time, or the connection closed: left to Ray
        return None
    if answer != b"HTTP/":
        return None
    return (f"workers.address: {address} is a web server's port, as the Ray dashboard and job "
            f"server's is (http://{host}:{port}, the address that `run --detach`, `jobs`, "
            "`logs` and `stop` take), not the head's, where a study joins the cluster: give the "
            "head's HOST:PORT (`ray start --head --port`, 6379 by default), ray://HOST:10001 "
            "(Ray's client server), or auto on a machine of the cluster")


def unreachable(address: str, error: BaseException | str, head: str | None = None) -> str:
    """Why the cluster at ``workers.address`` could not be joined (``error``: Ray's, or what
    the port check found at ``head``, the address auto stands for), and what to do."""
    alone = ("leave workers.address out (`--address local`) to run the trials on a cluster of "
             "this machine's own")
    said = " ".join(str(error).split())
    if address == "auto" and isinstance(error, str):  # a cluster recorded here that is gone
        return (f"workers.address: auto joins the Ray cluster at {head} (RAY_ADDRESS, else the "
                f"cluster last started on this machine), and it does not answer: {said}; it "
                "stopped without `ray stop`? Start it again "
                f"(`ray start --head`), or {alone}")
    token = _token_hint()
    if address == "auto" and head not in (None, "auto"):
        return (f"workers.address: auto joins the Ray cluster at {head} (RAY_ADDRESS, else the "
                f"cluster last started on this machine), and joining it failed: {said}. "
                f"{token or 'Is it still starting, or stopping?'} Or {alone}")
    if address == "auto":
        return ("workers.address: auto joins the Ray cluster started on this machine with `ray "
                f"start` (or the one in RAY_ADDRESS), and none was recorded ({_address_file()}; "
                "a head started with --temp-dir records itself in that folder instead: give its "
                "address, HOST:PORT): start one (`ray start --head`) and run the study there, "
                f"or {alone} (auto never joins another study's own cluster)")
    check = ("is the head node up, with Ray's client server on that port (`ray start --head` "
             "serves it on 10001), open to this machine?" if address.startswith("ray://") else
             "is the head node up, with Ray on that port (`ray start --head --port "
             f"{address.rpartition(':')[2] or 6379}`)?")
    return (f"workers.address: cannot join the Ray cluster at {mask_url(address)}: {said}; {check}"
            f"{' ' + token if token else ''} Or {alone}")


def _address_file() -> str:
    """Where `ray start` records the address that ``auto`` reads (in Ray's default temporary
    folder)."""
    try:
        return ray._private.utils.get_ray_address_file(None)
    except AttributeError:  # another Ray
        return "Ray's temporary folder"


def presents_token() -> bool | None:
    """Whether this process presents Ray's token (its authentication mode, as Ray read it, is
    token); None for a Ray without token authentication."""
    try:
        from ray._raylet import AuthenticationMode, get_authentication_mode
    except ImportError:
        return None
    return get_authentication_mode() == AuthenticationMode.TOKEN


def _token_hint() -> str | None:
    """What to set where this process did not present Ray's token and may have needed one."""
    if presents_token() in (None, True):
        return None
    return ("A cluster under Ray's token authentication (which `ray start` turns on by default in "
            "Ray 2.60) needs RAY_AUTH_MODE=token here, with its token in RAY_AUTH_TOKEN or in "
            "~/.ray/auth_token.")


@contextlib.contextmanager
def masked_entrypoint() -> Iterator[None]:
    """While inside the block, the command line Ray records as the driver's job entrypoint
    (shown by `ray list jobs` and the Ray dashboard to whoever reaches the cluster) has any
    storage password in it masked: `scaletune run STUDY.yaml --storage postgresql://u:PW@...`
    was kept whole. A Ray without the function records what it always does."""
    import subprocess

    from scaletune.search.storage import mask_word

    utils = ray._private.utils
    recorded = getattr(utils, "get_entrypoint_name", None)

    def masked() -> str:
        # The words Ray reads from the process (psutil's cmdline), but from sys.argv: the
        # command line itself may be masked already (search.cli.mask_command_line), one word
        # padded with hundreds of empty ones, which Ray would record quoted.
        return subprocess.list2cmdline([mask_word(w) for w in [sys.executable, *sys.argv]])

    if recorded is not None:
        utils.get_entrypoint_name = masked
    try:
        yield
    finally:
        if recorded is not None:
            utils.get_entrypoint_name = recorded


@contextlib.contextmanager
def lean_head_node() -> Iterator[None]:
    """Start a head node without the processes in SKIPPED, and its dashboard agent minimal
    (MINIMAL_AGENT), while inside the block.

    Without the API server, ``ray.init`` answers the dashboard URL that a node with the
    dashboard off answers: none. A Ray without one of these methods starts that part as it
    always does.
    """
    node = ray._private.node.Node
    saved = {name: node.__dict__[name] for name in SKIPPED if name in node.__dict__}
    utils = ray._private.utils
    asked = getattr(utils, "get_dashboard_dependency_error", None)

    def skip_api_server(self: Any, **_: Any) -> None:
        self._webui_url = ""  # what Ray records when the dashboard is off

    def skip(self: Any, *_: Any, **__: Any) -> None:
        pass

    for name in saved:
        setattr(node, name, skip_api_server if name == "start_api_server" else skip)
    if asked is not None:
        utils.get_dashboard_dependency_error = lambda: MINIMAL_AGENT
    try:
        yield
    finally:
        if asked is not None:
            utils.get_dashboard_dependency_error = asked
        for name, method in saved.items():
            setattr(node, name, method)
