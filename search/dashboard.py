"""optuna-dashboard for a study's storage: read-only and on loopback unless told otherwise; and
the notes the driver writes for it (how to read the study's plots, its config, each trial's).

optuna-dashboard (0.21) has no read-only mode and no login: its ``allow_unsafe`` only lets notes
render raw HTML. Every route that changes the storage is a POST, PUT or DELETE (create, rename or
delete a study, notes, tell a trial, trial user attrs, skip, preferences, the schema upgrade of
``/incompatible-rdb-schema``), and every GET only reads. So the dashboard is read-only by answering
405 to every other method, in front of its WSGI app; ``--allow-writes`` lets them through.

It merges the choices of a study's trials through a Python set, which gives batch sizes in the
set's order (32, 1, 2, 4, 8, 16) on the study page; numeric choices go back to numeric order, in
front of its WSGI app too. A request that fails because the storage does not answer (its database
server down) is said in a line, where optuna-dashboard and bottle printed a traceback for each.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import logging
import re
import socket
from collections.abc import Callable, Iterable
from operator import attrgetter
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIServer, make_server

from rich.console import Console

from scaletune.search import hparams
from scaletune.trainer.console import make_console
from scaletune.trainer.errors import ConfigError, SetupError

if TYPE_CHECKING:
    import optuna

    from scaletune.heuristics.priors import Priors
    from scaletune.search.config import StudyConfig
    from scaletune.trainer.config import TrainConfig

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
    what = "read every study in the storage: every trial, its params, config and user attrs"
    if allow_writes:
        what += ", and (--allow-writes) delete or rename studies, write notes and tell trials"
    return (f"warning: the dashboard binds to {host}: anyone who can reach this address can "
            f"{what}, with no login. Use 127.0.0.1 and an SSH tunnel unless you mean it.")


STUDY_PAGE = re.compile(r"/api/studies/\d+")
"""The route of a study's page: its trials and its search space."""
NUMBERS = ("<class 'int'>", "<class 'float'>")
"""How optuna-dashboard names the Python type of a numeric choice."""


def numeric_choices_in_order(app: WSGIApp) -> WSGIApp:
    """``app`` answering a study's page with the numeric choices of its search space (the
    union and the intersection of its trials') in numeric order; everything else unchanged."""

    def ordered(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if (environ.get("REQUEST_METHOD", "GET").upper() != "GET"
                or not STUDY_PAGE.fullmatch(environ.get("PATH_INFO", ""))):
            return app(environ, start_response)
        started: list[Any] = []
        chunks: list[bytes] = []

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            started[:] = [status, headers, exc_info]
            return chunks.append

        result = app(environ, start)
        try:
            chunks.extend(result)
        finally:
            getattr(result, "close", lambda: None)()
        status, headers, exc_info = started
        body = b"".join(chunks)
        if status.startswith("200"):
            detail = json.loads(body)
            for key in ("union_search_space", "intersection_search_space"):
                for param in detail.get(key) or []:
                    choices = param["distribution"].get("choices")
                    if choices and all(c["pytype"] in NUMBERS for c in choices):
                        choices.sort(key=lambda c: float(c["value"]))
            body = json.dumps(detail).encode()
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        start_response(status, [*headers, ("Content-Length", str(len(body)))], exc_info)
        return [body]

    return ordered


STUDY_DELETES = {
    "DELETE": re.compile(r"/api/studies/(\d+)"),
    "POST": re.compile(r"/api/studies/(\d+)/rename"),
}
"""optuna-dashboard's routes that delete a study: DELETE, and a rename, which copies the study
under its new name and deletes it."""


def running_studies_kept(app: WSGIApp, storage: optuna.storages.BaseStorage) -> WSGIApp:
    """``app`` answering 409 to a delete or a rename (``STUDY_DELETES``) of a study that a driver
    runs, as ``scaletune delete`` refuses it: deleted under it, the driver stopped at its next
    write with two tracebacks. Its trials may still be told from the dashboard (the driver
    stops such a trial's worker and goes on), and notes written."""
    from scaletune.search import lease
    from scaletune.search.storage import storage_url

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        route = STUDY_DELETES.get(environ.get("REQUEST_METHOD", "GET").upper())
        if not route or not (m := route.fullmatch(environ.get("PATH_INFO", ""))):
            return app(environ, start_response)
        try:
            study_id = int(m.group(1))
            held = storage.get_study_user_attrs(study_id).get(lease.ATTR)
            name = storage.get_study_name_from_id(study_id)
        except KeyError:  # no such study: the dashboard says so itself
            return app(environ, start_response)
        if not lease.live(held, url=storage_url(storage)):
            return app(environ, start_response)
        body = json.dumps({"reason": f"study {name!r} is being run by a driver "
                                     f"({lease.describe(held)}); stop it first: a study is "
                                     "deleted or renamed only while no driver runs it"}
                          ).encode() + b"\n"
        start_response("409 Conflict", [("Content-Type", "application/json"),
                                        ("Content-Length", str(len(body)))])
        return [body]

    return guarded


STORAGE_DOWN = ("StorageInternalError", "OperationalError", "DatabaseError")
"""What the traceback of a request holds where the storage did not answer (Optuna wraps the
database's errors in StorageInternalError; SQLAlchemy's OperationalError for a server that
refuses connections, DatabaseError for a file that no longer reads as a database)."""
STORAGE_DOWN_LINE = ("dashboard: a request failed: the storage did not answer (its database "
                     "server down?); the dashboard answers again once it does")


def _storage_down(text: str) -> bool:
    return any(word in text for word in STORAGE_DOWN)


class _StorageDownInALine(logging.Filter):
    """optuna-dashboard's log of a failed API request (the exception and its stack), in a line
    where the storage did not answer."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _storage_down(record.getMessage()):
            record.msg, record.args = STORAGE_DOWN_LINE, ()
        return True


class _ErrorsInALine:
    """A request's ``wsgi.errors``, where bottle writes the traceback of a page that failed:
    in a line where the storage did not answer."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> Any:
        return self.stream.write(STORAGE_DOWN_LINE + "\n" if _storage_down(text) else text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def storage_failures_in_a_line(app: WSGIApp) -> WSGIApp:
    """``app`` (optuna-dashboard's) saying a request that failed on the storage in a line."""
    logger = logging.getLogger("optuna_dashboard._bottle_util")  # its API views' errors
    if not any(isinstance(f, _StorageDownInALine) for f in logger.filters):
        logger.addFilter(_StorageDownInALine())

    def quiet(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ["wsgi.errors"] = _ErrorsInALine(environ["wsgi.errors"])
        return app(environ, start_response)

    return quiet


def dashboard_app(url: str, allow_writes: bool = False) -> WSGIApp:
    """optuna-dashboard's WSGI app on the storage ``url``, as ``scaletune dashboard`` serves it:
    numeric choices in order, read-only unless ``allow_writes``, and with writes, no study that
    a driver runs deleted or renamed (``running_studies_kept``)."""
    from optuna_dashboard import wsgi

    from scaletune.search.storage import make_storage

    storage = make_storage(url)
    app = storage_failures_in_a_line(numeric_choices_in_order(wsgi(storage)))
    return running_studies_kept(app, storage) if allow_writes else read_only(app)


def serve(study_path: str | None, host: str = "127.0.0.1", port: int = 8080,
          allow_writes: bool = False, console: Console | None = None,
          storage: str | None = None) -> int:
    """Serve the dashboard of the study's storage (``storage`` where given instead of the
    file's; with no study file, the storage alone), which lists every study in it, until
    interrupted. Intermediate values show as learning curves.

    The study must have run: a storage that does not exist is not created.
    """
    from scaletune.search.ladder import study_or_target
    from scaletune.search.manage import stored_studies, with_options
    from scaletune.search.storage import mask_url
    from scaletune.search.studies import looks_like_a_name, open_study, study_named

    console = console or make_console()
    if not host.strip():  # an unset shell variable ($HOST): it served every interface
        raise ConfigError("--host", ["--host is empty: give an address of this machine, such "
                                     "as 127.0.0.1 (the default), or 0.0.0.0 for every interface"])
    if study_path is None:  # a storage URL alone: a machine that has no study file
        if storage is None:
            raise ConfigError("dashboard", ["give a study YAML, or the storage to serve with "
                                            "--storage URL"])
        url = storage
        stored_studies(url)
    elif looks_like_a_name(study_path):  # a name, as `scaletune studies` lists them
        study, url = study_named(study_path, storage)
    else:
        cfg = with_options(study_or_target(study_path), storage=storage)
        study = open_study(cfg, study_path)[0]
        url = cfg.storage_url
    app = dashboard_app(url, allow_writes)
    if host.strip() == "0":  # what the socket binds it to: every interface
        host = "0.0.0.0"
    server = bind(app, host, port)  # an address it cannot bind is refused before the warning
    if not is_loopback(host):
        console.print(exposure_warning(host, allow_writes), style="yellow", highlight=False,
                      markup=False)
    mode = "read-write" if allow_writes else "read-only"
    shown = f"[{host}]" if ":" in host else host
    # The study's own page where one was named (the storage's list of studies is one click up).
    page = "" if study_path is None else f"studies/{study._study_id}"
    console.print(f"dashboard ({mode}) for {mask_url(url)} at "
                  f"http://{shown}:{port}/dashboard/{page}", highlight=False, markup=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


# --------------------------------------------------------------------------- notes


def study_note(cfg: StudyConfig, config: dict[str, Any], priors: Priors,
               widened: list[dict[str, Any]] | None = None, source: str | None = None) -> str:
    """The study's note (Markdown) in the dashboard: what its axes mean where the dashboard's
    own labels cannot say it, the config every trial shares (``config``, the recorded dump with
    passwords masked) and the priors' centers and ranges; ``widened``: the launches that widened
    its search since (search.plan.WIDENED), whose ranges ``config`` holds; ``source``: the file
    of its first launch, where that is not ``cfg``'s (``noted_source``).

    optuna-dashboard (0.21) titles the intermediate values' x axis "Step", whatever a step is.
    Its slice and parallel-coordinate plots and its trial table follow the order of the choices
    (ascending for batch sizes: search.space, and numeric_choices_in_order for the trial table);
    its contour and rank plots sort choices as text in the browser, which no server can change.
    """
    import yaml

    from scaletune.search.plan import OBJECTIVE
    from scaletune.search.space import build_space, searched_ranges

    lines = [cfg.description.strip(), ""] if cfg.description.strip() else []
    lines += [
        f"**Objective**: the {OBJECTIVE} after each trial's {cfg.tokens_per_trial:,} "
        "training tokens.",
        "",
        "**Intermediate values**: the x axis, which the dashboard calls *Step*, is **tokens "
        f"seen**, on a grid of {cfg.eval_interval:,}: every trial reports its validation loss "
        "at the first step past each grid point, filed at that point (its tokens rounded down "
        "to the grid), so trials of every batch size are compared, and pruned, at equal "
        "tokens.",
        "",
        "**Batch sizes** are choices in ascending order, as the slice and parallel-coordinate "
        "plots and the trial table show them. The contour and rank plots sort choices as text "
        "(128 before 16) unless *Settings > Use Plotly Python library* is on.",
        "",
        "**Each trial's note** lists the values it trained with; the rest of its config is the "
        "study's, below.",
        "",
        "### Priors from the scaling laws, and what this study searches",
        "",
        "| hyperparameter | center | the laws' range | this study searches |",
        "| --- | --- | --- | --- |",
    ]
    try:
        searched = searched_ranges(*build_space(cfg, priors))
    except ConfigError:  # a space the priors leave empty: no study of it runs
        searched = {}
    for name, prior in priors.as_dict().items():
        show = hparams.HPARAMS[name].show
        lines.append(f"| {name} | {show(prior.center)} | {show(prior.low)} to "
                     f"{show(prior.high)} | {searched.get(name, '')} |")
    lines += ["", f"{FIRST_LAUNCH}{source or cfg.source}, with that launch's "
              "command-line options such as --n-trials; unset keys left out)"]
    if widened:
        lines += ["", "Its search was widened since (the search below is the wider one; the "
                  "trials before drew from the narrower ranges): " + "; ".join(
                      f"{', '.join(w.get('changes') or ['the same ranges'])} on {w.get('at')}"
                      for w in widened) + "."]
    lines += ["", "```yaml", yaml.safe_dump(_set_keys(config), sort_keys=False).rstrip(), "```"]
    return "\n".join(lines) + "\n"


FIRST_LAUNCH = "### Config as the study was first launched ("
"""The start of the heading of the study note's config, which names the file it was read from."""


def noted_source(note: str | None) -> str | None:
    """The study file that a study note (``study_note``) names as its first launch's; None
    where ``note`` is not such a note."""
    for line in (note or "").splitlines():
        if line.startswith(FIRST_LAUNCH):
            return line[len(FIRST_LAUNCH):].rpartition(", with that launch's")[0] or None
    return None


def _set_keys(node: Any) -> Any:
    """``node`` without the keys whose value is None or an empty mapping, at every depth."""
    if not isinstance(node, dict):
        return node
    kept = {k: _set_keys(v) for k, v in node.items()}
    return {k: v for k, v in kept.items() if v is not None and v != {}}


def trial_note(number: int, params: dict[str, Any], fixed: dict[str, Any], run: TrainConfig,
               derived: dict[str, Any], repeat_of: int | None = None) -> str:
    """A trial's note (Markdown): each value the study searches or fixes, as the trainer field it
    set (weight decay from tau, say) and as the run has it, and its steps; for a repeat of the
    best config (``repeat_of``, --repeat-best), the training seed it takes instead of the
    study's."""
    lines = [f"**Trial {number}** trains with", "", "| trainer field | value | what |",
             "| --- | --- | --- |"]
    for name, value in {**params, **fixed}.items():
        hp = hparams.get(name)
        target = hp.target if hp is not None else name
        setting = attrgetter(target)(run)
        owner = hparams.owner(hp) if hp is not None else None
        shown = owner.show(setting) if owner is not None else _plain(setting)
        how = "searched" if name in params else "fixed by the study"
        if hp is not None and hp.is_form:
            how += f", as {name} = {hp.show(value)}"
        what = f"{owner.label}; {how}" if owner is not None else how
        lines.append(f"| `{target}` | {shown} | {what} |")
    if repeat_of is not None:
        lines.append(f"| `seed` | {run.seed} | training seed; a repeat of trial {repeat_of}'s "
                     "config (--repeat-best), to measure the noise between seeds |")
    lines += ["", f"{derived['steps']:,} steps of {derived['tokens_per_step']:,} tokens, the "
                  f"first {derived['warmup_steps']:,} of them warmup; every other setting is the "
                  "study's (the study's note)."]
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_note(study_or_trial: optuna.Study | optuna.Trial, text: str,
               keep: bool = False) -> None:
    """Save ``text`` as the note the dashboard shows for a study or a trial; with ``keep``, a
    note already there (one a user wrote with --allow-writes) stays as it is."""
    from optuna_dashboard import get_note, save_note

    if keep and get_note(study_or_trial):
        return
    save_note(study_or_trial, text)


def write_first_note(trial: optuna.Trial, text: str) -> None:
    """Save ``text`` as the note of a trial that has none yet (one just asked): version 1 of
    its note, as ``save_note`` writes it.

    The dashboard keeps every trial's note in the study's system attrs, and ``save_note`` reads
    all of them twice to number the version and clear older chunks: each trial asked read every
    note of the study, a cost that grows with the study (56 ms of a 240 ms ask at 256 trials
    running, benchmarks/driver_scale.py). A new trial has neither.
    """
    from optuna_dashboard._note import note_ver_key, split_body

    storage, study_id = trial.storage, trial.study._study_id
    storage.set_study_system_attr(study_id, note_ver_key(trial._trial_id), 1)
    for key, chunk in split_body(text, trial._trial_id).items():
        storage.set_study_system_attr(study_id, key, chunk)
