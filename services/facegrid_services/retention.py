"""Retention: sightings older than the configured number of days are deleted.

``purge_sightings`` deletes in bounded batches (short transactions, so the
worker's inserts are never blocked for long); ``retention_loop`` runs it
periodically inside the API server as an asyncio task (the blocking database
work runs in a thread).  Attendance rows are the record and are kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from facegrid_services.store.models import Sighting

log = logging.getLogger(__name__)


def cutoff(days: float, now: datetime | None = None) -> datetime:
    return (now or datetime.now(UTC)) - timedelta(days=days)


def purge_sightings(sessions: sessionmaker[Session], older_than: datetime, *,
                    batch: int = 5000) -> int:
    """Delete sightings with corrected_utc < older_than; returns how many were deleted."""
    total = 0
    while True:
        with sessions() as s:
            ids = s.scalars(select(Sighting.id).where(Sighting.corrected_utc < older_than)
                            .order_by(Sighting.id).limit(batch)).all()
            if not ids:
                return total
            s.execute(delete(Sighting).where(Sighting.id.in_(ids)))
            s.commit()
        total += len(ids)


async def retention_loop(sessions: sessionmaker[Session], days: float, interval_s: float, *,
                         on_run: Callable[[int | None], None] | None = None,
                         clock: Callable[[], datetime] | None = None) -> None:
    """Purge now, then every ``interval_s`` seconds, until cancelled.

    ``on_run(n)`` is called after each run with the number deleted (None on error).
    """
    while True:
        deleted: int | None
        try:
            now = clock() if clock else datetime.now(UTC)
            deleted = await asyncio.to_thread(purge_sightings, sessions, cutoff(days, now))
            if deleted:
                log.info("retention: deleted %d sightings older than %g days", deleted, days)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("retention run failed; retrying in %g s", interval_s)
            deleted = None
        if on_run is not None:
            on_run(deleted)
        await asyncio.sleep(interval_s)
