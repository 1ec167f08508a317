"""Engine and session set-up, and schema migration (Alembic) for the store."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: How long a component starting beside its database waits for it to accept
#: connections (a chart install starts them together) before it gives up.
STORE_WAIT_S = 120.0


def make_engine(url: str, **kw) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        kw.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
        engine = create_engine(url, **kw)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    kw.setdefault("pool_pre_ping", True)
    if url.startswith("postgresql"):
        # Sessions in UTC: timestamps come back as timezone.utc datetimes, which the
        # UTCDateTime columns pass through as they are (no conversion per row).
        kw.setdefault("connect_args", {"options": "-c timezone=UTC"})
    return create_engine(url, **kw)


def wait_reachable(engine: Engine, timeout_s: float = STORE_WAIT_S) -> None:
    """Return once the database answers ``SELECT 1``; wait (say so once, then retry
    with backoff up to 2 s) while it refuses connections, e.g. a PostgreSQL pod that is
    still starting.  Raises the last OperationalError after ``timeout_s``."""
    where = engine.url.render_as_string(hide_password=True)
    deadline = time.monotonic() + timeout_s
    delay, said = 0.25, False
    while True:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except sa_exc.OperationalError as e:
            if time.monotonic() + delay > deadline:
                log.error("database %s still unreachable after %.0f s: giving up", where,
                          timeout_s)
                raise
            if not said:
                log.warning("database %s not reachable yet (%s): waiting up to %.0f s", where,
                            str(e.orig).splitlines()[0] if e.orig else e, timeout_s)
                said = True
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        else:
            if said:
                log.info("database %s reachable", where)
            return


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (idempotent)."""
    log.info("migrating store to %s", revision)
    command.upgrade(alembic_config(url), revision)
