"""Optuna storages: the URL of a study, made safe to print and robust to idle connections."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from sqlalchemy.engine import make_url

from scaletune.search import urls
from scaletune.trainer.errors import ConfigError, ScaletuneError, StorageError, first_line
from scaletune.trainer.runlock import file_in_the_way

_PASSWORD, _QUERY_PASSWORD = urls.PASSWORD, urls.QUERY_PASSWORD
mask_url, mask_word = urls.mask_url, urls.mask_word  # where the project imports them from


def login_hint(error: str, url: str) -> str:
    """What to add to a database's refusal of the login of ``url`` (no password given, or a wrong
    one), where the URL gives no password: where the password is read from. Empty for any other
    error, or a URL with its password."""
    if "password" not in error or _PASSWORD.match(url) or _QUERY_PASSWORD.search(url):
        return ""
    if os.environ.get("PGPASSWORD"):  # libpq reads it before the password file
        return ("; a password the URL leaves out is read from PGPASSWORD, which is set here "
                "(unset, ~/.pgpass is read)")
    return ("; a password the URL leaves out is read from ~/.pgpass on this machine "
            "(HOST:PORT:DB:USER:PASSWORD, mode 600; PGPASSFILE names another file)")


def scrub(text: str, url: str) -> str:
    """``text`` (say, a driver's error about ``url``) with the URL's password taken out.

    A password with an unescaped '@' is split by the driver at its first '@', which then shows
    the rest as the host name: every '@'-separated piece of the password goes too.
    """
    secrets = [m.group("password") for m in [_PASSWORD.match(url)] if m]
    secrets += [m.group(0).split("=", 1)[1] for m in _QUERY_PASSWORD.finditer(url)]
    # A driver may also split it at a ':' (host:port) or a '/' (the database).
    pieces = {p for secret in secrets for p in [secret, *re.split(r"[@:/]", secret)]
              if len(p) >= 3}
    for piece in sorted(pieces, key=len, reverse=True):
        text = text.replace(piece, "***")
    return text


SQLITE_BUSY_TIMEOUT_S = 60
"""How long a write to an SQLite storage waits for another connection's write (the driver of
another study in the same file, the dashboard reading it) before it fails with "database is
locked". Each write is short; a wait this long means something holds the file."""


def engine_kwargs(url: str) -> dict[str, Any]:
    """SQLite waits instead of failing on a lock; servers survive idle-connection drops.

    SQLite keeps its default rollback journal, not WAL: WAL would let readers go on during a
    write, but it fails on network file systems, where home and project folders of clusters
    live, and changes the file for every program that opens it.
    """
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    # Long trials leave the connection idle for hours; servers and proxies drop it.
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "pool_recycle": 1800}
    if url.startswith("postgresql"):  # a host that drops packets: an answer, not minutes of wait
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    return kwargs


CONNECT_TIMEOUT_S = 10
"""Seconds a PostgreSQL connection may take to open (libpq's connect_timeout)."""


def with_driver(url: str) -> str:
    """A bare postgresql:// URL made to name the PostgreSQL driver that is installed.

    SQLAlchemy 2.0 reads postgresql:// as psycopg2 (what the postgres extra installs), 2.1 as
    psycopg 3; either may be the one present. A URL that names its driver is kept as it is.
    """
    if not url.startswith("postgresql://"):
        return url
    for driver in ("psycopg", "psycopg2"):
        if importlib.util.find_spec(driver) is not None:
            return f"postgresql+{driver}://" + url.removeprefix("postgresql://")
    return url


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL (None for other databases and for in-memory SQLite)."""
    if not url.startswith("sqlite"):
        return None
    database = make_url(url).database
    return Path(database) if database and database != ":memory:" else None


def check_storage(url: str) -> None:
    """Connect to the database of ``url``, read a row of each of Optuna's tables where it has
    them, and disconnect, creating nothing; raises the driver's error when it cannot be reached
    or read (a role that may log in but not read the study's tables: validate said ok, and run
    refused), and PermissionError where PostgreSQL says the role may not write them, add their
    rows or, where there are none, create them (``_check_postgresql_rights``)."""
    from optuna.storages._rdb.models import BaseModel
    from sqlalchemy import create_engine, inspect, text

    url = with_driver(url)
    engine = create_engine(url, **engine_kwargs(url))
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            tables = sorted(set(BaseModel.metadata.tables) & set(inspect(conn).get_table_names()))
            for table in tables:
                conn.execute(text(f"SELECT 1 FROM {table} LIMIT 1")).fetchall()
            if engine.dialect.name == "postgresql":
                _check_postgresql_rights(conn, tables)
    finally:
        engine.dispose()


def _check_postgresql_rights(conn: Any, tables: list[str]) -> None:
    """PermissionError where this login may read Optuna's ``tables`` but not write them, may
    write them but not add their rows (no USAGE of their id sequences), or where there are none
    and it may not create them: validate said ok of these, and run refused them, the last two
    after Ray had started ("permission denied for sequence studies_study_id_seq")."""
    from sqlalchemy import text

    def named(names: list[str]) -> str:
        return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")

    may_write = text("SELECT has_table_privilege(:t, 'INSERT') AND "
                     "has_table_privilege(:t, 'UPDATE')")
    if barred := [t for t in tables if not conn.execute(may_write, {"t": t}).scalar()]:
        raise PermissionError(f"this login may read but not write table {named(barred)}")

    schema = conn.execute(text("SELECT quote_ident(current_schema())")).scalar()  # to paste
    if schema is None:  # a search_path of no schema: the driver's own error says it
        return
    if not tables:
        if not conn.execute(text("SELECT has_schema_privilege(current_schema(), 'CREATE')")
                            ).scalar():
            raise PermissionError(
                f"the database holds no study tables yet, and this login may not create them "
                f"in schema {schema}, as the first run does: GRANT CREATE ON SCHEMA {schema} to "
                "it, or have a login that may run the first study there")
        return
    # A serial column's sequence (deptype 'a'; an identity column's, 'i', needs no grant of
    # its own). The sequences first, their rights after: PostgreSQL may evaluate a WHERE's
    # conditions in any order, and has_sequence_privilege of a TOAST relation is an error.
    sequences = conn.execute(text(
        "SELECT DISTINCT s.oid, s.relname FROM pg_class s JOIN pg_depend d ON d.objid = s.oid "
        "JOIN pg_class t ON t.oid = d.refobjid WHERE s.relkind = 'S' AND d.deptype = 'a' "
        "AND t.relname = ANY(:tables) AND t.relnamespace = s.relnamespace "
        "AND s.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema()) "
        "ORDER BY s.relname"), {"tables": tables}).all()
    may_use = text("SELECT has_sequence_privilege(CAST(:oid AS oid), 'USAGE')")
    unusable = [name for oid, name in sequences
                if not conn.execute(may_use, {"oid": oid}).scalar()]
    if unusable:
        raise PermissionError(
            f"this login may write the study tables but not use sequence {named(unusable)}, "
            f"which numbers their new rows: GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} to "
            "it")


def unreachable(url: str) -> str | None:
    """Why the server storage ``url`` cannot be opened (``check_storage``: it refuses the login
    or the connection, or does not answer), said with the password masked; None where it
    opens, and for an SQLite file (storage_problems checks that)."""
    if url.startswith("sqlite"):
        return None
    if (said := unreached_lately(url)) is not None:
        return said
    try:
        check_storage(url)
    except Exception as e:  # noqa: BLE001 - any driver error means unreachable
        not_connected(e, url)
        return cannot_read(e, url, "cannot open")
    return None


UNREACHED: dict[str, tuple[float, str]] = {}
"""Server storages that did not answer in CONNECT_TIMEOUT_S in this process: when
(time.monotonic) and why (``unreachable``'s line). Such a server made `validate` and `run` wait
three times, once for each read of the study before the check that says so; for UNREACHED_S
they take the answer they had."""
UNREACHED_S = 60.0
TIMED_OUT = "timeout expired"
"""libpq's words for a server that did not answer in its connect_timeout."""


def not_connected(e: BaseException, url: str) -> None:
    """Record, in UNREACHED, that the server storage ``url`` did not answer in time, where ``e``
    (a read of it) says so: the driver's OperationalError, "timeout expired". A refusal is said
    at once, and asked again."""
    chain: list[BaseException | None] = [e, e.__cause__, e.__context__]
    if sqlite_path(url) is None and any(isinstance(c, sqlalchemy.exc.OperationalError)
                                        and TIMED_OUT in str(c) for c in chain):
        UNREACHED[url] = (time.monotonic(), cannot_read(e, url, "cannot open"))


def unreached_lately(url: str) -> str | None:
    """Why the server storage ``url`` could not be connected to, where it could not in the last
    UNREACHED_S seconds; else None."""
    when, why = UNREACHED.get(url, (-math.inf, ""))
    return why if time.monotonic() - when < UNREACHED_S else None


def study_folder_problem(folder: Path) -> str | None:
    """Why the study folder ``folder`` cannot be made: a file where it, or one of the folders it
    lies in, must be a folder (mkdir said "File exists" or "Not a directory"); None otherwise."""
    if (path := file_in_the_way(folder)) is None:
        return None
    return (f"study_dir: {path} is a file, where the study's folder {folder} needs a folder: "
            "move the file, or give study_dir another folder")


def _cannot_create_in(folder: Path) -> str | None:
    """Why no file can be made in ``folder`` (a file made there and removed at once finds it),
    else None."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as e:
        return e.strerror or str(e)


def storage_problems(given: str | None, url: str) -> list[str]:
    """What `scaletune run` refuses of a study's storage, found without connecting: an
    in-memory SQLite (each connection sees its own empty database), a URL that does not parse or
    names a driver not installed, an SQLite file whose folder is missing or read-only, or that
    is empty or not a database. ``given``: the storage the file or ``--storage`` named, None for
    the default one (its folder is the runner's to check); ``url``: the storage used."""
    if problem := in_memory_problem(url):
        return [problem]
    errors = []
    database = sqlite_path(url)
    if given is not None and database is not None:
        # Connecting would create the file: check its folder instead (the file itself below).
        if not database.parent.is_dir():
            blocking = file_in_the_way(database.parent)  # "create it" could not be done
            errors.append(f"storage: {blocking} is a file, where {database} needs a folder: "
                          "give another path" if blocking is not None else
                          f"storage: the folder of {database} does not exist: create it, or "
                          "give another path")
        elif not os.access(database.parent, os.W_OK):
            errors.append(f"storage: cannot write to the folder of {database}")
        elif not database.exists() and (why := _cannot_create_in(database.parent)):
            # root passes os.access everywhere: /proc and /sys were taken, and the study
            # stopped after Ray started, saying the file had been deleted while it ran.
            errors.append(f"storage: cannot create {database} ({why}): give a path in a folder "
                          "this machine can write")
    elif given is not None and (problem := url_problem(given)):
        errors.append(problem)
    elif given is not None:
        from sqlalchemy import create_engine

        try:  # an engine connects only when used: this finds the URL's own problems
            create_engine(with_driver(given), **engine_kwargs(given)).dispose()
        except Exception as e:  # noqa: BLE001 - ImportError, NoSuchModuleError, ArgumentError
            if problem := unusable_url(e, given):
                errors.append(problem)
    return errors + sqlite_file_errors(url)


def in_memory_problem(url: str) -> str | None:
    """Why an in-memory SQLite URL cannot hold a study, else None."""
    if url.startswith("sqlite") and _parses(url) and sqlite_path(url) is None:
        return (f"storage: {mask_url(url)} is an in-memory SQLite database, which each "
                "connection sees empty: give a file, sqlite:///PATH")
    return None


SQLITE_MAX_PATH = 504
"""The longest absolute path of an SQLite storage file that SQLite (its unix file system layer,
512 bytes for a path) opens and writes: its journal's name is 8 bytes longer (measured: 504
bytes opened and written, 505 "unable to open database file"). Longer, a run ended on "the
storage file is no longer there (deleted while the study ran?)" before its first trial."""


def sqlite_file_errors(url: str) -> list[str]:
    """An SQLite study file that is there but empty or not a database is refused, never taken
    for a new study or reported as a full disk; so is a folder where the file should be."""
    from scaletune.trainer.config import SQLITE_HEADER, sqlite_url  # loaded: a study file was read

    path = sqlite_path(url)
    try:
        if path is not None and path.is_dir():
            inside = sorted(p.name for p in path.glob("*.db"))
            return [f"storage: {path} is a folder, not an SQLite file: give the database file, "
                    f"{sqlite_url(path)}/NAME.db" + (f" (it holds {', '.join(inside)})" if inside
                                                    else "")]
        if path is not None and path.exists() and not path.is_file():  # /dev/null, a pipe
            return [f"storage: {path} is not a file (a device, a pipe or a socket): give an "
                    "SQLite database file"]
        size = len(os.fsencode(os.path.abspath(path))) if path is not None else 0
        if size > SQLITE_MAX_PATH:
            return [f"storage: {path} is a path of {size} bytes, and SQLite opens none longer "
                    f"than {SQLITE_MAX_PATH} (its journal's name must fit its 512): give a "
                    "shorter study_dir or storage"]
        if path is None or not path.is_file():
            return []
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:  # a name too long for a file, a folder not ours to read: a traceback
        return [f"storage: cannot use {path}: {e.strerror or e}: give another path"]
    if not head:
        return [f"storage: {path} is empty (0 bytes): it holds no study. If it held one, it was "
                "cut short (a full disk, a failed copy): restore it from a backup; to start the "
                "study afresh, delete the file"]
    if head != SQLITE_HEADER:
        # Another kind of file first: a corpus given as the storage was told to be moved aside.
        return [f"storage: {path} is not an SQLite database: nothing was written to it. If the "
                "path is wrong, give the study's database (storage; study_dir holds study.db, "
                "runs/studies.db by default); if it is the study's and was damaged, restore it "
                "from a backup, or move it aside to start the study afresh"]
    if damage := sqlite_damage(path):
        return [f"storage: {path} is damaged (SQLite's quick_check: {damage}): "
                f"{DAMAGED_ADVICE.format(path=path)}; nothing was written to it"]
    return []


DAMAGED_ADVICE = ("restore it from a backup, or move it aside to start the study afresh "
                  "(`sqlite3 {path} .recover` may save what it holds)")
"""What to do with an SQLite storage file whose pages are damaged (``path``: the file)."""


def sqlite_damage(path: Path) -> str | None:
    """What SQLite's ``PRAGMA quick_check`` finds wrong in the database file ``path`` (its
    first problem), read only; None where it finds nothing, or cannot look (locked by a writer,
    a journal to roll back: what opens it next says so).

    A file whose header is whole and whose pages are not ("database disk image is malformed")
    passed the header's check: the readers (show, best, export, report) then ended on a
    traceback as they read its trials, and `run` wrote to it before it failed, telling the user
    to free disk space. 0.16 s for an 87 MB file on a laptop core: paid once per command.
    """
    import sqlite3

    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            found = [row[0] for row in connection.execute("PRAGMA quick_check(1)")]
        finally:
            connection.close()
    except sqlite3.OperationalError:  # locked, a hot journal, unreadable: not damage
        return None
    except sqlite3.DatabaseError as e:  # "database disk image is malformed"
        return str(e)
    said = " ".join(" ".join(map(str, found)).replace("*** in database main ***", "").split())
    return None if found == ["ok"] else said


class Storage(optuna.storages.RDBStorage):
    """Optuna's RDB storage, whose writes of a trial's params, curve and attrs and of study
    system attrs one thread may gather into one transaction: ``with storage.batch(): ...``.

    A trial's ask writes each of its params, its user attrs and its dashboard note, and its end
    writes about ten user attrs: through Optuna, one transaction each, each reading the trial
    again through the ORM. On PostgreSQL, ten user attrs of a trial took 18-23 ms of the driver's
    CPU one by one and 3 ms in one batch; CPU that the driver's process takes from answering
    reports (benchmarks/results/driver_scale_v5: writes.py, and the driver at 256 trials).

    Inside ``batch()``, those writes are kept and made when the block ends, all or none, in one
    transaction: the trials are checked once (a finished trial raises UpdateFinishedTrialError,
    a missing one KeyError, as Optuna's writes do), and the rows go in one statement per table,
    upserted on PostgreSQL, SQLite and MySQL (through the ORM one by one on other databases).
    Nothing written in the block can be read back until it ends, and other threads' writes are
    made at once. Outside a block, each write is a batch of one: the same code, so Optuna's
    storage contract tests (tests/search/test_storage_contract.py) check it; it costs what
    Optuna's own write does.

    The statements write Optuna's tables (its RDB schema since 3.0, as ``tally`` reads them)
    through its ORM models, which are private to Optuna.

    Optuna's check that the database's schema is this Optuna's is made as Optuna makes it, with
    the schema's newest revision read once per process: Optuna reads it from Alembic's migration
    scripts, all of them loaded as Python modules, at every storage it opens, ~70 ms of CPU each
    (16 s of the 87 s of tests/search/test_ladder.py's end-to-end ladder, which opens 212).
    """

    def __init__(self, url: str, engine_kwargs: dict[str, Any] | None = None,
                 skip_compatibility_check: bool = False, **kwargs: Any) -> None:
        super().__init__(url, engine_kwargs, skip_compatibility_check=True, **kwargs)
        self.skip_compatibility_check = skip_compatibility_check
        if not skip_compatibility_check:
            versions = self._version_manager
            if versions.get_current_version() != _schema_head(versions):
                versions.check_table_schema_compatibility()  # Optuna's error, which says what to do

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Gather this thread's writes (params, intermediate values, trial attrs, study system
        attrs) into one transaction, made when the block ends; a block inside another joins it."""
        open_ = _BATCHES.__dict__.setdefault("open", {})
        if id(self) in open_:
            yield
            return
        ops = open_[id(self)] = _Batch()
        try:
            yield
        finally:
            del open_[id(self)]
        if ops:  # not reached when the block raised: its writes are dropped with it
            self._write(ops)

    def _put(self, table: str, key: tuple, value: Any, trial_id: int | None = None,
             first: bool = False) -> None:
        """Keep one write in this thread's open batch (the last of a key wins; with ``first``,
        the first), or, outside one, make it at once as a batch of its own. ``trial_id``: the
        trial it is checked on."""
        ops = _BATCHES.__dict__.get("open", {}).get(id(self))
        now = ops is None
        ops = _Batch() if now else ops
        if trial_id is not None:
            ops.trials.add(trial_id)
        kept = getattr(ops, table)
        if not (first and key in kept):
            kept[key] = value
        if now:
            self._write(ops)

    def _set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                         distribution: Any, previous_distribution: Any) -> None:
        # Optuna's write of a param the trial has is a no-op: the first one stays.
        self._put("params", (trial_id, param_name),
                  (param_value_internal, distribution, previous_distribution), trial_id,
                  first=True)

    def set_trial_intermediate_value(self, trial_id: int, step: int,
                                     intermediate_value: float) -> None:
        self._put("intermediate", (trial_id, step), intermediate_value, trial_id)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._put("user_attrs", (trial_id, key), json.dumps(value), trial_id)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._put("system_attrs", (trial_id, key), json.dumps(value), trial_id)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._put("study_attrs", (study_id, key), json.dumps(value))

    def _write(self, ops: _Batch) -> None:
        from optuna import distributions
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session
        from sqlalchemy import select

        upsert = self._upsert()
        with _create_scoped_session(self.scoped_session) as session:
            if ops.trials:
                states = dict(session.execute(
                    select(models.TrialModel.trial_id, models.TrialModel.state)
                    .where(models.TrialModel.trial_id.in_(ops.trials))).all())
                for trial_id in sorted(ops.trials):
                    if trial_id not in states:
                        raise KeyError(models.NOT_FOUND_MSG)
                    self.check_trial_is_updatable(trial_id, states[trial_id])
            for study_id in {study_id for study_id, _ in ops.study_attrs}:
                models.StudyModel.find_or_raise_by_id(study_id, session)
            rows = []
            for (trial_id, name), (value, dist, previous) in ops.params.items():
                if previous is None or upsert is None:  # Optuna's check against the study's
                    self._set_trial_param_without_commit(session, trial_id, name, value, dist,
                                                         previous)
                    continue
                distributions.check_distribution_compatibility(previous, dist)
                rows.append({"trial_id": trial_id, "param_name": name, "param_value": value,
                             "distribution_json": distributions.distribution_to_json(dist)})
            if rows:
                session.execute(upsert(models.TrialParamModel, rows, ("trial_id", "param_name"),
                                       None))
            values = models.TrialIntermediateValueModel
            if ops.intermediate and upsert is None:
                for (trial_id, step), value in ops.intermediate.items():
                    self._set_trial_intermediate_value_without_commit(session, trial_id, step,
                                                                      value)
            elif ops.intermediate:
                rows = []
                for (trial_id, step), value in ops.intermediate.items():
                    stored, kind = values.intermediate_value_to_stored_repr(value)
                    rows.append({"trial_id": trial_id, "step": step, "intermediate_value": stored,
                                 "intermediate_value_type": kind})
                session.execute(upsert(values, rows, ("trial_id", "step"),
                                       ("intermediate_value", "intermediate_value_type")))
            for model, attrs, key in (
                (models.TrialUserAttributeModel, ops.user_attrs, "trial_id"),
                (models.TrialSystemAttributeModel, ops.system_attrs, "trial_id"),
                (models.StudySystemAttributeModel, ops.study_attrs, "study_id"),
            ):
                if not attrs:
                    continue
                if upsert is None:
                    for (owner, name), value in attrs.items():
                        self._set_attr_by_orm(session, model, key, owner, name, value)
                    continue
                session.execute(upsert(model, [{key: owner, "key": name, "value_json": value}
                                               for (owner, name), value in attrs.items()],
                                       (key, "key"), ("value_json",)))

    def _upsert(self) -> Any:
        """(model, rows, unique columns, columns to update or None to keep the row there) -> an
        INSERT statement of this database; None where there is none (the ORM one by one)."""
        name = self.engine.name
        if name == "postgresql" or (name == "sqlite" and sqlite3.sqlite_version_info >= (3, 24)):
            if name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            else:
                from sqlalchemy.dialects.sqlite import insert

            def upsert(model: Any, rows: list[dict], unique: tuple, update: tuple | None) -> Any:
                stmt = insert(model.__table__).values(rows)
                if update is None:
                    return stmt.on_conflict_do_nothing(index_elements=list(unique))
                return stmt.on_conflict_do_update(index_elements=list(unique),
                                                  set_={c: stmt.excluded[c] for c in update})
            return upsert
        if name == "mysql":
            from sqlalchemy.dialects.mysql import insert as mysql_insert

            def upsert(model: Any, rows: list[dict], unique: tuple, update: tuple | None) -> Any:
                stmt = mysql_insert(model.__table__).values(rows)
                if update is None:
                    return stmt.prefix_with("IGNORE")
                return stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in update})
            return upsert
        return None

    def stored_study_user_attr(self, study_id: int, key: str) -> str | None:
        """The JSON text stored for a study user attr, as stored; None where there is none."""
        from optuna.storages._rdb import models
        from sqlalchemy import select

        model = models.StudyUserAttributeModel
        with self.engine.connect() as conn:
            return conn.execute(select(model.value_json).where(
                model.study_id == study_id, model.key == key)).scalar_one_or_none()

    def swap_study_user_attr(self, study_id: int, key: str, stored: str | None,
                             value: Any) -> bool:
        """Set a study user attr to ``value`` only while the JSON text stored for it is still
        ``stored`` (None: no such attr); True if it was set.

        One statement, atomic in the database: an UPDATE that matches the stored text (a write
        between the read and this one leaves it no row), or, for an attr not stored yet, an
        INSERT that the table's unique (study, key) refuses to a second writer. Optuna's own
        write reads and writes in two steps, and of two writers both won."""
        from optuna.storages._rdb import models
        from sqlalchemy import insert, update
        from sqlalchemy.exc import IntegrityError

        model = models.StudyUserAttributeModel
        text = json.dumps(value)
        try:
            with self.engine.begin() as conn:
                if stored is None:
                    conn.execute(insert(model.__table__).values(
                        study_id=study_id, key=key, value_json=text))
                    return True
                return conn.execute(update(model.__table__).where(
                    model.study_id == study_id, model.key == key,
                    model.value_json == stored).values(value_json=text)).rowcount == 1
        except IntegrityError:  # another writer inserted it first
            return False

    def _set_attr_by_orm(self, session: Any, model: Any, key: str, owner: int, name: str,
                         value_json: str) -> None:
        row = session.query(model).filter(getattr(model, key) == owner,
                                          model.key == name).one_or_none()
        if row is None:
            session.add(model(**{key: owner, "key": name, "value_json": value_json}))
        else:
            row.value_json = value_json


_BATCHES = threading.local()
"""The batches open on this thread: {id(storage): _Batch}."""
_HEAD: dict[str, str] = {}
"""The newest revision of Optuna's RDB schema, once read: {"head": revision}."""


def _schema_head(versions: Any) -> str:
    """The newest revision of Optuna's RDB schema (the head of its Alembic scripts), read once
    per process: the scripts are this installed Optuna's and do not change as it runs."""
    if "head" not in _HEAD:
        _HEAD["head"] = versions.get_head_version()
    return _HEAD["head"]


@dataclass
class _Batch:
    """The writes a ``Storage.batch()`` block gathered; the last write of a key wins (a param's
    first, as in Optuna)."""

    trials: set = field(default_factory=set)
    params: dict = field(default_factory=dict)
    intermediate: dict = field(default_factory=dict)
    user_attrs: dict = field(default_factory=dict)
    system_attrs: dict = field(default_factory=dict)
    study_attrs: dict = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.params or self.intermediate or self.user_attrs or self.system_attrs
                    or self.study_attrs)


def _ours(storage: optuna.storages.BaseStorage) -> Storage | None:
    """``storage`` (a study's ``_storage``: Optuna wraps an RDB storage in a cache of its own) as
    scaletune's Storage, or None for any other storage."""
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, Storage) else None


def batch(storage: optuna.storages.BaseStorage) -> contextlib.AbstractContextManager[None]:
    """``Storage.batch()`` of ``storage``, or a block that changes nothing for any other
    storage."""
    ours = _ours(storage)
    return ours.batch() if ours is not None else contextlib.nullcontext()


def storage_url(storage: optuna.storages.BaseStorage) -> str | None:
    """The URL of ``storage`` (a study's ``_storage``) where it is scaletune's; None for any
    other storage."""
    ours = _ours(storage)
    return None if ours is None else ours.url


def stored_study_user_attr(study: optuna.Study, key: str) -> str | None:
    """The JSON text stored for ``study``'s user attr ``key`` (None: not stored), the token to
    pass to ``swap_study_user_attr``."""
    if (ours := _ours(study._storage)) is not None:
        return ours.stored_study_user_attr(study._study_id, key)
    attrs = study.user_attrs
    return json.dumps(attrs[key]) if key in attrs else None


def swap_study_user_attr(study: optuna.Study, key: str, stored: str | None, value: Any) -> bool:
    """Set ``study``'s user attr ``key`` to ``value`` if it still holds what was read as
    ``stored`` (``stored_study_user_attr``); True if it was set. Atomic on scaletune's storage
    (``Storage.swap_study_user_attr``); any other storage (one of Optuna's, given in Python) is
    read and written in two steps."""
    if (ours := _ours(study._storage)) is not None:
        return ours.swap_study_user_attr(study._study_id, key, stored, value)
    if stored_study_user_attr(study, key) != stored:
        return False
    study.set_user_attr(key, value)
    return True


def unusable_url(e: BaseException, url: str) -> str | None:
    """The line to show when opening ``url`` raised ``e`` because of the URL itself (its
    database's driver is not installed, a dialect SQLAlchemy does not know, a port that is not a
    number); None for any other error. Never quotes the password."""
    shown = mask_url(url)
    if isinstance(e, ImportError):
        scheme = url.split("://", 1)[0]
        dialect, _, driver = scheme.partition("+")
        # The extra installs psycopg2, which postgresql:// and postgresql+psycopg2:// use.
        extra = 'pip install "scaletune[postgres]"'
        if dialect != "postgresql":
            how = "install the driver SQLAlchemy names for it"
        elif driver in ("", "psycopg2"):
            how = extra
        else:
            how = f"install {driver}, or write postgresql:// (psycopg2, which {extra} installs)"
        return (f"storage: cannot open {shown}: the Python driver of {scheme}:// is not "
                f"installed: {how}")
    if isinstance(e, sqlalchemy.exc.NoSuchModuleError):
        hint = ("; write postgresql://" if url.startswith("postgres://") else
                "; a storage URL is sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB")
        return f"storage: cannot open {shown}: {scrub(first_line(e), url)}{hint}"
    if isinstance(e, (ValueError, sqlalchemy.exc.ArgumentError)) and not _parses(url):
        if "://" not in url:
            return (f"storage: {shown or repr('')} is not a storage URL: give sqlite:///PATH or "
                    "postgresql://USER:PASSWORD@HOST:PORT/DB")
        # SQLAlchemy's message may quote part of a password that holds '@', ':' or '/'.
        return (f"storage: cannot open {shown}: the URL does not parse (its port is not a "
                "number?); a password that holds @, : or / must be percent-encoded (@ as %40, "
                ": as %3A, / as %2F)")
    return None


def url_problem(url: str) -> str | None:
    """What is wrong with ``url`` that no driver would say rightly, found before connecting: a
    password with an unescaped @ parses, with the rest of the password taken as the host's name
    ("could not translate host name")."""
    scheme, _, rest = url.partition("://")
    authority, _, path = rest.partition("/")
    if authority.count("@") > 1:
        return (f"storage: cannot open {mask_url(url)}: the URL holds more than one @ before its "
                "host; a user name or password that holds @ must be percent-encoded (@ as %40, "
                ": as %3A, / as %2F)")
    if "@" in path and sqlite_path(url) is None:  # a database's name holds no @
        # The password's / ended the authority: what parses as the host is a piece of it, and
        # so is what mask_url would show after it.
        user = authority.partition("@")[0].partition(":")[0]
        shown = f"{scheme}://{user}:***@{rest.rpartition('@')[2]}"
        return (f"storage: cannot open {shown}: the URL holds an @ after a /, as a password that "
                "holds / (or @) reads; such a password must be percent-encoded (/ as %2F, @ as "
                "%40, : as %3A)")
    port = authority.rpartition("@")[2].rpartition("]")[2].partition(":")[2]
    # libpq takes port 0 for its default; a digit of another script is no port either
    if port.isascii() and port.isdigit() and not 0 < int(port) < 65536:
        return (f"storage: cannot open {mask_url(url)}: port {port} is not a port a server can "
                "listen on (1 to 65535): give the server's port, or leave it out for the "
                "driver's default (PostgreSQL's is 5432)")
    return None


def _parses(url: str) -> bool:
    try:
        make_url(url).port  # noqa: B018 - SQLAlchemy reads the port as a number here
    except (ValueError, sqlalchemy.exc.ArgumentError):
        return False
    return True


READ_ERRORS = (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError,
               RuntimeError, ImportError, ValueError)
"""What opening a storage to read (``make_storage(url, create=False)``) and reading it raise for
a database that cannot be read as Optuna's: ``cannot_read`` says why."""


def cannot_read(e: BaseException, url: str, what: str) -> str:
    """The line for a storage ``url`` that ``what`` (``cannot list the studies in``, ``cannot
    open``) failed on with ``e``: a URL that cannot be used (``unusable_url``), a server that
    refuses the login or the connection in its own words, anything else (a database without
    Optuna's tables) with the question whether it is an Optuna storage; the password masked."""
    if (line := unusable_url(e, url)) is not None:
        return line
    chain: list[BaseException] = [e]
    while chain[-1].__cause__ is not None:  # Optuna's wrapper says less than the database
        chain.append(chain[-1].__cause__)
    unreachable = sqlite_path(url) is None and any(
        isinstance(c, sqlalchemy.exc.OperationalError) or type(c).__name__ == "OperationalError"
        for c in chain)
    why = scrub(first_line(chain[-1]), url)
    if sqlite_path(url) is None and 'relation "version_info" does not exist' in why:
        # A database made for the study (createdb) that no study has run in yet.
        return (f"storage: {what} {mask_url(url)}: it holds no Optuna tables: no study has run "
                "there (`scaletune run STUDY.yaml` of a study stored there creates them: its "
                "file's storage, or --storage)")
    # A locked SQLite file is an Optuna storage another process writes; one the login may not
    # read or write is the server's to grant.
    known = (unreachable or isinstance(chain[-1], PermissionError)
             or any(words in why for words in ("database is locked", "permission denied",
                                               "readonly database")))
    question = "" if known else " (is it an Optuna storage?)"
    # SQLite must roll back a journal left beside the file (a write that failed) before it
    # reads: a file it may not write cannot then be read either.
    journal = (sqlite_path(url) is not None and "readonly database" in why
               and Path(f"{sqlite_path(url)}-journal").exists())
    hint = (f" (a write to it failed and left {sqlite_path(url)}-journal, which SQLite must "
            "roll back before it reads the file: make the file and its folder writable)"
            if journal else "")
    if unreachable and TIMED_OUT in why:
        hint = (f" (no answer in {CONNECT_TIMEOUT_S} s: is the database server up, and is this "
                "its host and port, reachable from here through any firewall?)")
    return f"storage: {what} {mask_url(url)}{question}: {why}{hint}{login_hint(why, url)}"


@contextlib.contextmanager
def opened_to_read(url: str, source: str) -> Iterator[None]:
    """The storage ``url`` opened and read in the block: what it raises (READ_ERRORS) becomes a
    ConfigError of ``source`` that says why (``cannot_read``); our own errors pass as they are (a
    ConfigError is a ValueError too, which READ_ERRORS holds)."""
    try:
        yield
    except ScaletuneError:
        raise
    except READ_ERRORS as e:
        raise ConfigError(source, [cannot_read(e, url, "cannot open")]) from None


def make_storage(url: str, create: bool = True) -> optuna.storages.BaseStorage:
    """An RDB storage for ``url`` (a ``Storage``), creating its tables when they are not there
    (``create``; else a database without them raises SQLAlchemy's error, as for a command that
    reads a study: it wrote Optuna's schema into any database it was pointed at). A URL that
    cannot be used as it is (``unusable_url``) is a StorageError that says why."""
    if problem := url_problem(url):
        raise StorageError("storage", [problem])
    try:
        if not create:
            return Storage(with_driver(url), engine_kwargs=engine_kwargs(url),
                           skip_table_creation=True)
        return _make_storage(with_driver(url))
    except (ImportError, ValueError, sqlalchemy.exc.ArgumentError) as e:
        line = unusable_url(e, url)
        if line is None:
            raise
        raise StorageError("storage", [line]) from None


def _make_storage(url: str) -> optuna.storages.BaseStorage:
    try:
        return Storage(url, engine_kwargs=engine_kwargs(url))
    except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError) as e:
        # Another process (the dashboard, a reader) created the tables of a new storage at the
        # same moment and stamped their schema version first (SQLite: "table alembic_version
        # already exists"): the tables are there now.
        if (isinstance(e, sqlalchemy.exc.OperationalError)
                and "already exists" not in str(e.orig)):
            raise
        time.sleep(0.5)
        return Storage(url, engine_kwargs=engine_kwargs(url))


@dataclass(frozen=True)
class Tally:
    """A study's trials in numbers, for a listing: what ``scaletune studies`` shows."""

    by_state: dict[str, int]
    """Trials by state name (COMPLETE, PRUNED, FAIL, RUNNING, WAITING)."""
    retried: int
    """FAIL trials whose params were queued again (user attr ``retried``)."""
    best: tuple[int, float] | None
    """(number, value) of the best COMPLETE trial."""
    last: datetime | None
    """When a trial last started or ended (Optuna's local time without a zone)."""
    diverged: int = 0
    """PRUNED trials stopped because their loss diverged (prune_reason "diverged: ...")."""
    reruns_started: int = 0
    """Trials past WAITING that re-run an interrupted one (user attr ``retry_of``)."""


def tally(storage: optuna.storages.RDBStorage, study_name: str, minimize: bool = True) -> Tally:
    """A study's trials counted by the database, not loaded: Optuna builds every trial (params,
    attrs, curve) to count them, about 30 s for a study of 10,000 trials on a loaded machine
    (benchmarks/driver_scale.py). Six aggregate queries on Optuna's tables (its RDB schema
    since Optuna 3.0: trials, trial_values, trial_user_attributes)."""
    from sqlalchemy import DateTime, Float, Integer, String, and_, column, func, select, table

    study_id = storage.get_study_id_from_name(study_name)
    trials = table("trials", column("trial_id", Integer), column("number", Integer),
                   column("study_id", Integer), column("state", String),
                   column("datetime_start", DateTime), column("datetime_complete", DateTime))
    values = table("trial_values", column("trial_id", Integer), column("objective", Integer),
                   column("value", Float))
    attrs = table("trial_user_attributes", column("trial_id", Integer), column("key", String),
                  column("value_json", String))
    mine = trials.c.study_id == study_id
    with storage.engine.connect() as conn:
        by_state = {state: n for state, n in conn.execute(
            select(trials.c.state, func.count()).where(mine).group_by(trials.c.state))}
        retried = conn.execute(
            select(func.count()).select_from(trials.join(attrs, attrs.c.trial_id
                                                         == trials.c.trial_id))
            .where(and_(mine, trials.c.state == "FAIL", attrs.c.key == "retried",
                        attrs.c.value_json == "true"))).scalar_one()
        diverged = conn.execute(  # search.summary.diverged, counted
            select(func.count()).select_from(trials.join(attrs, attrs.c.trial_id
                                                         == trials.c.trial_id))
            .where(and_(mine, trials.c.state == "PRUNED", attrs.c.key == "prune_reason",
                        attrs.c.value_json.like('"diverged%')))).scalar_one()
        reruns = conn.execute(  # search.summary.reruns_started, counted
            select(func.count()).select_from(trials.join(attrs, attrs.c.trial_id
                                                         == trials.c.trial_id))
            .where(and_(mine, trials.c.state != "WAITING", attrs.c.key == "retry_of",
                        attrs.c.value_json != "null"))).scalar_one()
        order = values.c.value.asc() if minimize else values.c.value.desc()
        best = conn.execute(
            select(trials.c.number, values.c.value)
            .select_from(trials.join(values, values.c.trial_id == trials.c.trial_id))
            .where(and_(mine, trials.c.state == "COMPLETE", values.c.objective == 0))
            .order_by(order, trials.c.number).limit(1)).first()
        last = conn.execute(select(func.max(func.coalesce(
            trials.c.datetime_complete, trials.c.datetime_start, type_=DateTime))).where(mine)
        ).scalar_one()
    return Tally(by_state, int(retried), (int(best[0]), float(best[1])) if best else None, last,
                 int(diverged), int(reruns))
