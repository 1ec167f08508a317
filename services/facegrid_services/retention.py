"""Retention: sightings, presences and repeat strangers older than the retention are deleted.

Age counts from the ARRIVAL, never from a time a node supplies: every row is
judged by its ``received_at``, the worker's clock when it stored the row (for a
presence or a stranger: when it last stored an event of it).  A node whose clock
says 2099 cannot keep rows for ever, nor one saying 1999 get them deleted at
once.  (Not the stream entry id time: a client may XADD with an explicit id, and
on a new stream that can be 1970.)

``purge_sightings`` deletes in bounded batches (short transactions, so the
worker's inserts are never blocked for long); ``retention_loop`` runs it
periodically inside the API server as an asyncio task (the blocking database
work runs in a thread).  Presences (with their aggregate embeddings) and
repeat strangers (pseudo-ids with an embedding) last received before the
cutoff go too.  Attendance rows are the record and are kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from facegrid_services.store.models import Presence, Sighting, Stranger

log = logging.getLogger(__name__)


def cutoff(days: float, now: datetime | None = None) -> datetime:
    return (now or datetime.now(UTC)) - timedelta(days=days)


def purge_sightings(sessions: sessionmaker[Session], older_than: datetime, *,
                    batch: int = 5000) -> int:
    """Delete sightings received before ``older_than``; returns how many were deleted."""
    total = 0
    while True:
        with sessions() as s:
            ids = s.scalars(select(Sighting.id).where(Sighting.received_at < older_than)
                            .order_by(Sighting.id).limit(batch)).all()
            if not ids:
                return total
            s.execute(delete(Sighting).where(Sighting.id.in_(ids)))
            s.commit()
        total += len(ids)


def purge_presences(sessions: sessionmaker[Session], older_than: datetime, *,
                    batch: int = 5000) -> int:
    """Delete presences and strangers last received before ``older_than``; returns how many."""
    total = 0
    for model in (Presence, Stranger):
        while True:
            with sessions() as s:
                ids = s.scalars(select(model.id).where(model.received_at < older_than)
                                .order_by(model.id).limit(batch)).all()
                if not ids:
                    break
                s.execute(delete(model).where(model.id.in_(ids)))
                s.commit()
            total += len(ids)
    return total


def purge(sessions: sessionmaker[Session], older_than: datetime) -> int:
    return purge_sightings(sessions, older_than) + purge_presences(sessions, older_than)


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
            deleted = await asyncio.to_thread(purge, sessions, cutoff(days, now))
            if deleted:
                log.info("retention: deleted %d sightings, presences and strangers older "
                         "than %g days", deleted, days)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("retention run failed; retrying in %g s", interval_s)
            deleted = None
        if on_run is not None:
            on_run(deleted)
        await asyncio.sleep(interval_s)
