"""Optuna storages: the URL of a study, made safe to print and robust to idle connections."""

from __future__ import annotations

import importlib.util
import re
import time
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
    except sqlalchemy.exc.IntegrityError:
        # Another process (the dashboard, a reader) created the tables of a new storage at the
        # same moment and stamped their schema version first: the tables are there now.
        time.sleep(0.5)
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url))
