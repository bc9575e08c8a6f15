"""Optuna storages: the URL of a study, made safe to print and robust to idle connections."""

from __future__ import annotations

import importlib.util
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from sqlalchemy.engine import make_url

# scheme://user:PASSWORD@host...: the password runs to the last '@' before the host, so that an
# unescaped '@' in it is hidden too. Parsed by hand: a URL that SQLAlchemy cannot parse (a bad
# port, say) must not be printed with its password.
_PASSWORD = re.compile(r"^(?P<head>[A-Za-z][\w+.-]*://[^:@/?#]*:)(?P<password>.*)@(?=[^@/?#]*(?:[/?#]|$))")
_QUERY_PASSWORD = re.compile(r"(?i)(?P<key>[?&]password=)[^&#]*")


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***, for logs, errors and study attrs."""
    url = _PASSWORD.sub(r"\g<head>***@", url, count=1)
    return _QUERY_PASSWORD.sub(r"\g<key>***", url)


def scrub(text: str, url: str) -> str:
    """``text`` (say, a driver's error about ``url``) with the URL's password taken out.

    A password with an unescaped '@' is split by the driver at its first '@', which then shows
    the rest as the host name: every '@'-separated piece of the password goes too.
    """
    secrets = [m.group("password") for m in [_PASSWORD.match(url)] if m]
    secrets += [m.group(0).split("=", 1)[1] for m in _QUERY_PASSWORD.finditer(url)]
    pieces = {p for secret in secrets for p in [secret, *secret.split("@")] if len(p) >= 3}
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
    return {"pool_pre_ping": True, "pool_recycle": 1800}


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
    """Connect to the database of ``url`` and disconnect, creating nothing; raises the driver's
    error when it cannot be reached."""
    from sqlalchemy import create_engine, text

    url = with_driver(url)
    engine = create_engine(url, **engine_kwargs(url))
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """An RDB storage for ``url``, creating its tables when they are not there."""
    url = with_driver(url)
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url))
    except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError) as e:
        # Another process (the dashboard, a reader) created the tables of a new storage at the
        # same moment and stamped their schema version first (SQLite: "table alembic_version
        # already exists"): the tables are there now.
        if (isinstance(e, sqlalchemy.exc.OperationalError)
                and "already exists" not in str(e.orig)):
            raise
        time.sleep(0.5)
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url))


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


def tally(storage: optuna.storages.RDBStorage, study_name: str, minimize: bool = True) -> Tally:
    """A study's trials counted by the database, not loaded: Optuna builds every trial (params,
    attrs, curve) to count them, about 30 s for a study of 10,000 trials on a loaded machine
    (benchmarks/driver_scale.py). Four aggregate queries on Optuna's tables (its RDB schema
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
        order = values.c.value.asc() if minimize else values.c.value.desc()
        best = conn.execute(
            select(trials.c.number, values.c.value)
            .select_from(trials.join(values, values.c.trial_id == trials.c.trial_id))
            .where(and_(mine, trials.c.state == "COMPLETE", values.c.objective == 0))
            .order_by(order, trials.c.number).limit(1)).first()
        last = conn.execute(select(func.max(func.coalesce(
            trials.c.datetime_complete, trials.c.datetime_start, type_=DateTime))).where(mine)
        ).scalar_one()
    return Tally(by_state, int(retried), (int(best[0]), float(best[1])) if best else None, last)
