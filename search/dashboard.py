"""optuna-dashboard for a study's storage: read-only and on loopback unless told otherwise.

optuna-dashboard (0.21) has no read-only mode and no login: its ``allow_unsafe`` only lets notes
render raw HTML. Every route that changes the storage is a POST, PUT or DELETE (create, rename or
delete a study, notes, tell a trial, trial user attrs, skip, preferences, the schema upgrade of
``/incompatible-rdb-schema``), and every GET only reads. So the dashboard is read-only by answering
405 to every other method, in front of its WSGI app; ``--allow-writes`` lets them through.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import socket
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIServer, make_server

from rich.console import Console

from scaletune.trainer.errors import SetupError

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

READ_METHODS = ("GET", "HEAD", "OPTIONS")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tcp_port(text: str) -> int:
    """A TCP port as argparse sees it: a whole number 1-65535."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port 1-65535, got {text!r}")
    return value


def read_only(app: WSGIApp) -> WSGIApp:
    """``app`` answering 405 to every method but GET, HEAD and OPTIONS.

    The body is one line of JSON with a ``reason``: the dashboard's UI shows that reason when a
    button it offers (delete, rename, note) is refused.
    """
    body = json.dumps({"reason": "the dashboard is read-only; start it with --allow-writes to "
                                 "change the study"}).encode() + b"\n"
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
               ("Allow", ", ".join(READ_METHODS))]

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() in READ_METHODS:
            return app(environ, start_response)
        start_response("405 Method Not Allowed", headers)
        return [body]

    return guarded


class _Server(ThreadingMixIn, WSGIServer):
    """wsgiref's server, a thread per request: the server of optuna-dashboard's own command."""

    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


def bind(app: WSGIApp, host: str, port: int) -> WSGIServer:
    """A server listening on host:port (an IPv6 address too), or one line saying why not."""
    server_class = _Server6 if ":" in host else _Server
    try:
        return make_server(host, port, app, server_class=server_class)
    except OverflowError:
        raise SetupError(f"--port {port}: not a TCP port; choose one of 1-65535 with --port") \
            from None
    except OSError as e:
        reason = e.strerror or str(e)
        if e.errno in (errno.EADDRINUSE, errno.EACCES):
            raise SetupError(f"--port {port}: cannot listen on {host}:{port} ({reason}); "
                             "choose another with --port") from None
        raise SetupError(f"--host {host}: cannot listen on {host}:{port} ({reason}); use an "
                         "address of this machine, such as 127.0.0.1") from None


def exposure_warning(host: str, allow_writes: bool) -> str:
    what = "read the study: every trial, its params, config and user attrs"
    if allow_writes:
        what += ", and (--allow-writes) delete or rename it, write notes and tell trials"
    return (f"warning: the dashboard binds to {host}: anyone who can reach this address can "
            f"{what}, with no login. Use 127.0.0.1 and an SSH tunnel unless you mean it.")


def serve(study_path: str, host: str = "127.0.0.1", port: int = 8080,
          allow_writes: bool = False, console: Console | None = None) -> int:
    """Serve the dashboard until interrupted. Intermediate values show as learning curves.

    The study must have run: a storage that does not exist is not created.
    """
    from optuna_dashboard import wsgi

    from scaletune.search.config import load_study
    from scaletune.search.storage import make_storage, mask_url
    from scaletune.search.studies import open_study

    console = console or Console()
    cfg = load_study(study_path)
    open_study(cfg, study_path)
    app = wsgi(make_storage(cfg.storage_url))
    if not allow_writes:
        app = read_only(app)
    if not is_loopback(host):
        console.print(exposure_warning(host, allow_writes), style="yellow", highlight=False,
                      markup=False)
    server = bind(app, host, port)
    mode = "read-write" if allow_writes else "read-only"
    shown = f"[{host}]" if ":" in host else host
    console.print(f"dashboard ({mode}) for {mask_url(cfg.storage_url)} at "
                  f"http://{shown}:{port}/dashboard/", highlight=False, markup=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
