"""Each trial's curve and config in TensorBoard, Weights & Biases or MLflow, written by the driver.

The study file's ``tracking:`` section turns each on. The driver (search.runner) hands the
``Tracker`` every trial it starts (``started``), every evaluation report once it has answered it
(``reported``) and every trial it has told the study about (``finished``); workers log nothing,
since they may run on machines that cannot reach the study folder or the tracking server.

TensorBoard gets one run per trial in ``<study folder>/tensorboard/trial-<number>/``: the
validation (and training) loss with tokens seen as its step; when the trial ends, its params,
derived values and state as the HPARAMS tab's columns, its objective value and results as
scalars (the tab's metric columns), and a text summary of all it holds. W&B and MLflow get what
Optuna's own integration callbacks log, called as ``study.optimize`` would call them: ``(study,
frozen_trial)`` after each trial is told.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from scaletune.trainer.config import installed
from scaletune.trainer.console import make_console
from scaletune.trainer.errors import ConfigError, first_line

if TYPE_CHECKING:  # optuna is imported where it is used: `scaletune validate` stays quick
    import optuna
    from optuna.trial import FrozenTrial

    from scaletune.search.config import MLflowConfig, StudyConfig, TrackingConfig, WandbConfig

    Callback = Callable[[optuna.Study, FrozenTrial], None]

METRIC = "val_loss"
"""The name of the validation loss everywhere it is logged: the curve's tag, the callbacks'
metric (MLflow allows no parentheses in a metric name, so not search.plan.OBJECTIVE)."""
ALSO_LOGGED = ("train_loss",)
"""Report metrics drawn beside the validation loss: together they tell a trial that did not
learn from one that overfit. (Not the scheduled lr: a scalar named lr would share its name with
the lr column of the HPARAMS table, and the schedule follows from the columns.)"""
TENSORBOARD_PACKAGES = ("tensorboard",)


CREATED = "created"
"""The study user attr that holds when the study was created (search.plan.record_or_check),
which tags each trial's run in W&B and MLflow: a study deleted and made again under its name
logs into the same W&B group and MLflow experiment, its trial 0 beside the first one's."""


def study_created(study: optuna.Study) -> str | None:
    """When ``study`` was created (UTC, to the second), or None for a study from before it was
    recorded."""
    return study.user_attrs.get(CREATED)


class NotReady(Exception):
    """A tracker that could log no trial as things stand (its message says what to do)."""


def _wandb(cfg: WandbConfig, study_name: str) -> Callback:
    import wandb
    from optuna_integration.wandb import WeightsAndBiasesCallback

    class StateTagged(WeightsAndBiasesCallback):
        """Optuna's callback, each trial's run tagged with the trial's state: a pruned trial's
        value is its last report, and its run looked like a complete one's."""

        def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
            # The callback reads its run's tags from these kwargs when it starts a trial's run.
            created = study_created(study)
            self._wandb_kwargs = {**kwargs, "tags": (trial.state.name, *(
                [f"study created {created}"] if created else []))}
            super().__call__(study, trial)

        def where(self) -> str:
            """Where the runs go, for one line at the first (Tracker.finished): the project,
            and offline the folder and how to upload them."""
            settings = wandb.setup().settings
            said = f"each trial a run in W&B project {cfg.project}"
            if settings.mode != "online":
                said += (f", kept on disk in {settings.wandb_dir} (W&B is {settings.mode}): "
                         f"`wandb sync {settings.wandb_dir}/offline-run-*` uploads them")
            return said

    # One W&B run per trial (as_multirun), so each trial has its own config panel; named
    # trial/<number>/<study> (the callback puts W&B's own run name after the number, which
    # offline is None). Silent: W&B's ~26 lines at each trial's end outnumbered the study's
    # own; where the runs are is said once instead (where).
    kwargs = {"project": cfg.project, "entity": cfg.entity, "group": study_name,
              "name": study_name, "settings": wandb.Settings(silent=True)}
    return StateTagged(metric_name=METRIC, wandb_kwargs=kwargs, as_multirun=True)


def _wandb_ready(cfg: WandbConfig, study: StudyConfig) -> None:
    import inspect

    import wandb

    # Online W&B without credentials failed at every trial's end ("No API key configured"):
    # refused before the study. (wandb.login without prompting: wandb 0.22 and later.)
    from pydantic import ValidationError

    try:
        settings = wandb.setup().settings
    except ValidationError as e:  # WANDB_MODE=bogus: "ValidationError: 1 validation error for
        # Settings", the line that said what was wrong cut off
        said = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']} (got {err['input']!r})"
                         for err in e.errors())
        raise NotReady(f"W&B's settings, read from the WANDB_* environment variables (such as "
                       f"WANDB_MODE), are not valid: {said}") from None
    if settings.mode != "online":
        return
    if ("prompt" in inspect.signature(wandb.login).parameters
            and not wandb.login(verify=False, prompt=False)):
        raise NotReady("no W&B API key here (WANDB_API_KEY or `wandb login`), so no trial could "
                       "be logged: log in, or set WANDB_MODE=offline to keep the runs on disk "
                       "(`wandb sync` uploads them later)")
    # A server that does not answer held the driver about 110 s at each trial's end (W&B's
    # retries), every trial then "not logged": refused before the study, as MLflow's is.
    if why := _no_answer(settings.base_url):
        raise NotReady(f"the W&B server {settings.base_url} does not answer ({why}), so no trial "
                       "could be logged: check the network (or WANDB_BASE_URL), or set "
                       "WANDB_MODE=offline to keep the runs on disk (`wandb sync` uploads them "
                       "later)")


def _no_answer(url: str, timeout: float = 5.0) -> str | None:
    """Why the HTTP server at ``url`` gives no answer within ``timeout`` seconds, else None (an
    answer of any status is one)."""
    import http.client
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout)
    except urllib.error.HTTPError:
        return None  # it answered, if not to this request
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:
        return str(getattr(e, "reason", e)) or type(e).__name__  # no HTTP: BadStatusLine
    return None


MLFLOW_PATIENCE = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
"""How long a call to an MLflow server may take during a study (unless the environment says
otherwise): MLflow's own defaults (7 retries with backoff, 120 s a request) held the driver for
minutes on each trial of a server that went away, while its trials waited for their answers."""
MLFLOW_PROBE = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
"""The one call made before a study starts, to refuse a server that does not answer."""


def _mlflow(cfg: MLflowConfig, study_name: str) -> Callback:
    import mlflow
    from optuna_integration.mlflow import MLflowCallback

    from scaletune.search.storage import with_driver

    for name, value in MLFLOW_PATIENCE.items():
        os.environ.setdefault(name, value)
    # MLflow's own INFO lines ("Creating initial MLflow database tables...") among the study's.
    for logger in ("mlflow", "alembic"):
        logging.getLogger(logger).setLevel(logging.WARNING)
    # A bare postgresql:// names the driver that is installed, as a study's storage does (MLflow
    # asked for psycopg where psycopg2 was there, at every trial's end).
    uri = None if cfg.tracking_uri is None else with_driver(cfg.tracking_uri)
    if cfg.experiment is not None:  # the callback itself only names experiments after studies
        if uri is not None:
            mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(cfg.experiment)
    class CreationTagged(MLflowCallback):
        """Optuna's callback, each trial's run tagged with when its study was created, and the
        run of a failed trial ended FAILED (the callback ends every run FINISHED; the trial's
        state is in its ``state`` tag)."""

        def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
            # The callback reads its run's tags from these kwargs when it starts a trial's run.
            created = study_created(study)
            self._mlflow_kwargs = {"tags": {"study_created": created}} if created else {}
            super().__call__(study, trial)
            if trial.state.name == "FAIL" and (
                    run := mlflow.last_active_run()) is not None:
                mlflow.MlflowClient().set_terminated(run.info.run_id, status="FAILED")

    return CreationTagged(tracking_uri=uri, metric_name=METRIC,
                          create_experiment=cfg.experiment is None)


MLFLOW_TABLES = {"experiments", "runs", "alembic_version"}
"""Tables of an MLflow database (some of them): an SQLite file without them is another's."""


def _mlflow_ready(cfg: MLflowConfig, study: StudyConfig) -> None:
    from unittest.mock import patch

    import mlflow

    from scaletune.search.storage import sqlite_path

    # No tracking_uri: MLflow's own (MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here).
    uri = cfg.tracking_uri or mlflow.get_tracking_uri()
    database = sqlite_path(uri)
    if database is not None:
        # Read, never opened by MLflow here: it creates or upgrades its tables in any database
        # it opens, and validate wrote 1 MB of them into a file of something else.
        _mlflow_database_problem(database.resolve(), study)
        return
    if uri.split(":", 1)[0].split("+", 1)[0] in SERVER_DATABASES:
        # Its tables read, as an SQLite file's are: MLflow, opened here, wrote its own into the
        # study's database.
        _mlflow_server_problem(uri, study)
        return
    # A server that does not answer, or a plain folder (which MLflow 3 refuses), is refused
    # before the study starts, not once per trial after each has trained.
    # (patch.dict: the environment as it was afterwards, the stdlib's own save and restore)
    with patch.dict(os.environ, MLFLOW_PROBE):
        mlflow.MlflowClient(tracking_uri=uri).search_experiments(max_results=1)


SERVER_DATABASES = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
"""The database servers MLflow keeps runs in beside SQLite, by their default ports."""


def _mlflow_server_problem(uri: str, study: StudyConfig) -> None:
    """Raise NotReady where MLflow could not keep its runs in the database server's ``uri``: the
    study's own database (MLflow's tables beside Optuna's, one alembic_version table for both),
    a database of something else, or one it cannot reach. Its tables are listed with
    SQLAlchemy; MLflow never opens it here."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    from scaletune.search.storage import mask_url, scrub, with_driver

    def where(url: Any) -> tuple[Any, ...]:
        backend = url.get_backend_name()
        return backend, url.host, url.port or SERVER_DATABASES.get(backend), url.database

    try:
        url = sqlalchemy.engine.make_url(with_driver(uri))
        storage = sqlalchemy.engine.make_url(with_driver(study.storage_url))
    except sqlalchemy.exc.ArgumentError as e:
        raise NotReady(f"tracking_uri: {mask_url(uri)}: {scrub(first_line(e), uri)}") from None
    if where(url) == where(storage):
        raise NotReady(f"tracking_uri: {mask_url(uri)} is the study's own storage: give MLflow "
                       "a database of its own")
    args = {"connect_timeout": 5} if url.get_backend_name() == "postgresql" else {}
    try:
        engine = sqlalchemy.create_engine(url, poolclass=NullPool, connect_args=args)
        try:
            tables = set(sqlalchemy.inspect(engine).get_table_names())
        finally:
            engine.dispose()
    except Exception as e:  # noqa: BLE001 - no driver, no server, a login refused
        raise NotReady(f"tracking_uri: {mask_url(uri)}: cannot read it "
                       f"({type(e).__name__}: {scrub(first_line(e), uri)})") from None
    if tables and not MLFLOW_TABLES <= tables:
        raise NotReady(f"tracking_uri: {mask_url(uri)} holds the tables of something else "
                       f"({', '.join(sorted(tables)[:4])}): give MLflow a database of its own")


def _mlflow_database_problem(database: Path, study: StudyConfig) -> None:
    """Raise NotReady where MLflow could not keep its runs in the SQLite file ``database``: the
    study's own storage, a file of something else, a folder nobody can write it in."""
    import sqlite3

    from scaletune.search.storage import sqlite_path

    storage = sqlite_path(study.storage_url)
    if storage is not None and storage.resolve() == database:
        raise NotReady(f"tracking_uri: {database} is the study's own storage: give MLflow a "
                       "database of its own, such as sqlite:///mlflow.db")
    if database.is_file() and database.stat().st_size:
        try:
            with contextlib.closing(sqlite3.connect(f"{database.as_uri()}?mode=ro",
                                                    uri=True)) as db:
                tables = {row[0] for row in db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as e:
            raise NotReady(f"tracking_uri: {database} is not an SQLite database ({e}): give "
                           "MLflow a database of its own, such as sqlite:///mlflow.db") from None
        if tables and not MLFLOW_TABLES <= tables:
            raise NotReady(f"tracking_uri: {database} holds the tables of something else "
                           f"({', '.join(sorted(tables)[:4])}): give MLflow a database of its "
                           "own, such as sqlite:///mlflow.db")
        return
    if database.exists() and not database.is_file():
        raise NotReady(f"tracking_uri: {database} is not a file")
    # MLflow creates the file at the first trial's log, in a folder that is there by then: one
    # that exists, or the study's own folder and its parents, which the launch makes.
    folder = database.parent
    made_by_run = {study.folder.resolve(), *study.folder.resolve().parents}
    while not folder.exists() and folder in made_by_run:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise NotReady(f"tracking_uri: {database.parent} is not a folder this study can "
                       f"write {database.name} in")


@dataclass(frozen=True)
class Integration:
    """An Optuna integration callback, turned on by the tracking: key of its name."""

    packages: tuple[str, ...]
    """Modules it needs; a study that turns it on without them is refused before Ray starts,
    naming the extra of the same name (pip install "scaletune[<name>]")."""
    build: Callable[[Any, str], Callback]
    """(its tracking: section, the study's name) -> the callback."""
    ready: Callable[[Any, StudyConfig], None] | None = None
    """(its tracking: section, the study) -> None, or NotReady or the library's error: what a
    Tracker checks before ``build``, without logging or writing anything (and validate)."""


INTEGRATIONS: dict[str, Integration] = {
    "wandb": Integration(("optuna_integration", "wandb"), _wandb, _wandb_ready),
    "mlflow": Integration(("optuna_integration", "mlflow"), _mlflow, _mlflow_ready),
}


def tracker_problems(cfg: StudyConfig) -> list[str]:
    """What a study's launch refuses of its trackers before the first trial (online W&B without
    an API key, an MLflow server that does not answer, a plain folder or a database of another
    kind), found without logging or writing anything: for validate and the dry run. Trackers
    whose packages are missing are left to ``missing_packages``."""
    def ready(name: str, integration: Integration, section: Any) -> None:
        if integration.ready is not None and all(map(installed, integration.packages)):
            integration.ready(section, cfg)

    return _each_tracker(cfg, ready)


def _each_tracker(cfg: StudyConfig, act: Callable[[str, Integration, Any], None]) -> list[str]:
    """``act(name, integration, section)`` for each integration the study turns on; what each
    raised, one line each naming its key."""
    errors = []
    for name, integration in INTEGRATIONS.items():
        section = getattr(cfg.tracking, name)
        if section is None:
            continue
        try:
            act(name, integration, section)
        except NotReady as e:
            errors.append(f"tracking.{name}: {_scrubbed(str(e), cfg)}")
        except Exception as e:  # noqa: BLE001 - a server that is not there, a bad URI
            errors.append(f"tracking.{name}: {type(e).__name__}: "
                          f"{_scrubbed(first_line(e), cfg)}")
    return errors


def _scrubbed(text: str, cfg: StudyConfig) -> str:
    """``text`` (a tracker's error, which may quote its URI) without the password of the MLflow
    tracking URI (search.storage.scrub)."""
    from scaletune.search.storage import scrub

    uri = cfg.tracking.mlflow.tracking_uri if cfg.tracking.mlflow is not None else None
    return scrub(text, uri) if uri else text


def missing_packages(tracking: TrackingConfig) -> list[str]:
    """One error for each tracker turned on whose packages are not installed. Nothing is
    imported: ``scaletune validate`` stays quick."""
    wanted = {name: i.packages for name, i in INTEGRATIONS.items()
              if getattr(tracking, name) is not None}
    if tracking.tensorboard:
        wanted = {"tensorboard": TENSORBOARD_PACKAGES, **wanted}
    errors = []
    for name, packages in wanted.items():
        missing = [p.replace("_", "-") for p in packages if not installed(p)]
        if missing:
            errors.append(f"tracking.{name}: {' and '.join(missing)} "
                          f"{'is' if len(missing) == 1 else 'are'} not installed: "
                          f'pip install "scaletune[{name}]"')
    return errors


class Tracker:
    """What the driver writes about each trial outside the storage; does nothing when the study
    turns no tracking on.

    Args:
        cfg: The study: its ``tracking:`` section, its folder (TensorBoard writes under
            ``<folder>/tensorboard``) and its name (the W&B group, the default MLflow experiment).
        console: Where a failed callback is reported (the study goes on without that log).
    """

    def __init__(self, cfg: StudyConfig, console: Console | None = None) -> None:
        from optuna.exceptions import ExperimentalWarning

        tracking = cfg.tracking
        self.cfg = cfg
        self.board_dir = cfg.folder / "tensorboard" if tracking.tensorboard else None
        self.console = console or make_console(stderr=True)
        self._writers: dict[int, Any] = {}
        self._unwritable: set[int] = set()  # trials whose TensorBoard run could not be written
        self._last_tokens: dict[int, int] = {}
        self._config_keys: dict[int, set[str]] = {}
        self.callbacks: dict[str, Callback] = {}
        self._said_where: set[str] = set()  # the trackers that said where their runs go

        def build(name: str, integration: Integration, section: Any) -> None:
            if integration.ready is not None:
                integration.ready(section, cfg)
            with warnings.catch_warnings():
                # Optuna marks its callbacks experimental; a study that names one chose it.
                # optuna-integration 4.9 deprecated both (they go in 6.0, which the extras
                # exclude): a notice to Optuna's users, of no use to a study's.
                warnings.simplefilter("ignore", ExperimentalWarning)
                warnings.filterwarnings("ignore", message=r".*Callback has been deprecated",
                                        category=FutureWarning)
                self.callbacks[name] = integration.build(section, cfg.name)

        if errors := _each_tracker(cfg, build):
            raise ConfigError(cfg.source, errors)

    @property
    def enabled(self) -> bool:
        return self.board_dir is not None or bool(self.callbacks)

    def opened(self, study: optuna.Study) -> None:
        """The study is open: where it has run no trial yet (new, or made again after `scaletune
        delete`), TensorBoard runs left in its folder are an earlier study's of this name,
        whose trial-0 a new trial 0 wrote into (two curves, the old trial's HPARAMS row): set
        aside as ``tensorboard.earlier-N``, and said."""
        from optuna.trial import TrialState

        from scaletune.trainer.record import set_aside

        board = self.board_dir
        if board is None or not board.is_dir() or not any(board.iterdir()):
            return
        if any(t.state != TrialState.WAITING for t in study.get_trials(deepcopy=False)):
            return
        try:
            done = f"kept as {set_aside(board)}"
        except OSError as e:  # tracking never stops a study: the runs then mix, as before
            done = f"they could not be set aside ({e.strerror}), and the new runs go beside them"
        self.console.print(f"[yellow]tracking.tensorboard: the runs in {board} are of an "
                           f"earlier study of this name (deleted); {done}[/]", highlight=False)

    def started(self, trial: optuna.Trial) -> None:
        """Trial ``trial`` was asked for: the user attrs it has now are its config (values
        derived from its params, its attempt); those it gets later are what it did."""
        if self.board_dir is not None:
            self._config_keys[trial.number] = set(trial.user_attrs)

    def reported(self, number: int, tokens: int, value: float, metrics: dict[str, Any]) -> None:
        """Trial ``number`` evaluated ``value`` after ``tokens`` seen. Buffered, not flushed:
        the driver answers reports within milliseconds."""
        if self.board_dir is None or number in self._unwritable:
            return
        try:
            writer = self._writer(number)
            # A non-finite point (a diverged trial) would flatten every other curve on the
            # chart; the trial's state and reason say it diverged.
            for tag, v in ((METRIC, value), *((k, metrics.get(k)) for k in ALSO_LOGGED)):
                if isinstance(v, (int, float)) and math.isfinite(v):
                    writer.add_scalar(tag, v, tokens)
        except OSError as e:  # a file where its folder goes, a full disk: the study goes on
            self._unwritable.add(number)
            self._not_logged("tensorboard", number, e)
            return
        self._last_tokens[number] = tokens

    def finished(self, study: optuna.Study, number: int) -> None:
        """Trial ``number`` was told: log how it ended, close its TensorBoard run, then call each
        callback with ``(study, frozen_trial)``."""
        if not self.enabled:
            return
        from scaletune.search.plan import ENDED

        # The ended trials only: the driver's study keeps them (search.plan.DriverStudy).
        trial = next(t for t in study.get_trials(deepcopy=False, states=ENDED)
                     if t.number == number)
        if self.board_dir is not None and number not in self._unwritable:
            try:
                self._write_end(trial)
            except OSError as e:
                if (writer := self._writers.pop(number, None)) is not None:
                    with contextlib.suppress(OSError):
                        writer.close()
                self._not_logged("tensorboard", number, e)
        self._unwritable.discard(number)
        self._last_tokens.pop(number, None)
        self._config_keys.pop(number, None)
        for name, callback in self.callbacks.items():
            try:
                callback(study, trial)
            except Exception as e:  # noqa: BLE001 - an unreachable server must not stop a study
                self._not_logged(name, number, e)
            else:
                # Where a tracker whose own output is silenced keeps the runs: once, at the first.
                if (where := getattr(callback, "where", None)) and name not in self._said_where:
                    self._said_where.add(name)
                    self.console.print(f"tracking.{name}: {where()}", highlight=False,
                                       markup=False)

    def _not_logged(self, name: str, number: int, e: Exception) -> None:
        """Say that a tracker could not log trial ``number``; the study goes on without it."""
        said = _scrubbed(str(e), self.cfg)
        self.console.print(f"[yellow]tracking.{name}: trial {number} was not logged: "
                           f"{type(e).__name__}: {escape(said)}[/]", highlight=False)

    def close(self) -> None:
        """Flush and close the TensorBoard runs still open (trials stopped with the study)."""
        for number, writer in self._writers.items():
            try:
                writer.close()
            except OSError as e:
                self._not_logged("tensorboard", number, e)
        self._writers.clear()

    def _writer(self, number: int) -> Any:
        writer = self._writers.get(number)
        if writer is None:
            from torch.utils.tensorboard import SummaryWriter  # optional dependency

            writer = SummaryWriter(str(self.board_dir / f"trial-{number}"))
            self._writers[number] = writer
        return writer

    def _write_end(self, trial: FrozenTrial) -> None:
        from tensorboard.plugins.hparams.summary_v2 import hparams_pb

        writer = self._writer(trial.number)
        tokens = self._last_tokens.pop(trial.number, None)
        tokens = trial.user_attrs.get("tokens_seen", tokens) or 0
        config_keys = self._config_keys.pop(trial.number, set())
        # Scalars are the HPARAMS table's metric columns: what the trial did, at its last tokens.
        for key, value in results_of(trial, config_keys).items():
            writer.add_scalar(key, value, tokens)
        # No experiment summary of our own: TensorBoard builds the HPARAMS table from every
        # run's values, so trials with different keys (a retry's attempt) all show.
        row = hparams_pb(hparams_of(trial, config_keys), trial_id=f"trial-{trial.number}")
        writer.file_writer.add_summary(row)
        writer.add_text("trial", summary_text(trial), tokens)
        writer.close()
        del self._writers[trial.number]


def hparams_of(trial: FrozenTrial, config_keys: set[str]) -> dict[str, bool | int | float | str]:
    """The HPARAMS row of a trial: its params, the user attrs it was asked with (``config_keys``:
    derived values such as weight_decay, tau and steps), and its state."""
    row: dict[str, bool | int | float | str] = {}
    for key in sorted(config_keys & trial.user_attrs.keys()):
        value = trial.user_attrs[key]
        if isinstance(value, (bool, int, float, str)):
            row[key] = value
    for key, value in trial.params.items():
        row[key] = value if isinstance(value, (bool, int, float, str)) else str(value)
    row["state"] = trial.state.name
    return row


def results_of(trial: FrozenTrial, config_keys: set[str]) -> dict[str, float]:
    """What a trial did, as numbers: the objective's value when it completed, and the numeric
    user attrs it got after it was asked for (final and best loss, tokens per second, MFU). The
    worker's machine, the reasons and flags are only in the text summary."""
    out = {key: float(value) for key, value in trial.user_attrs.items()
           if key not in config_keys and not key.startswith("worker_")
           and isinstance(value, (int, float)) and not isinstance(value, bool)}
    if trial.state.name == "COMPLETE":
        out["value"] = float(trial.value)
    return {key: v for key, v in out.items() if math.isfinite(v)}


def summary_text(trial: FrozenTrial) -> str:
    """A markdown table of everything the study holds about a trial."""
    rows = [("state", trial.state.name), ("value", trial.value)]
    rows += [(f"param {k}", v) for k, v in trial.params.items()]
    rows += sorted(trial.user_attrs.items())
    lines = ["| key | value |", "| --- | --- |"]
    lines += [f"| {k} | {_cell(v)} |" for k, v in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")
