"""Optuna storages: the URL of a study, made safe to print and robust to idle connections."""

from __future__ import annotations

from typing import Any

import optuna
from sqlalchemy.engine import make_url


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***, for logs, errors and study attrs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not an RDB URL: nothing to mask
        return url


def engine_kwargs(url: str) -> dict[str, Any]:
    """SQLite waits instead of failing on a lock; servers survive idle-connection drops."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    # Long trials leave the connection idle for hours; servers and proxies drop it.
    return {"pool_pre_ping": True, "pool_recycle": 1800}


def make_storage(url: str, check: bool = False) -> optuna.storages.BaseStorage:
    """An RDB storage for ``url``. ``check=True`` only connects, creating nothing."""
    if check:
        from sqlalchemy import create_engine, text

        engine = create_engine(url, **engine_kwargs(url))
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        finally:
            engine.dispose()
        return None
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url))
