"""The one hook producers call: add events to ``notify_outbox`` in their own transaction.

The worker calls :func:`presences_stored` and :func:`intruder_alert_raised`
inside its batch transaction, so an event is queued exactly when its rows are
committed; the notifier process does all network work.  A slow or dead
receiver therefore never slows ingestion: the worker's cost is one multi-row
INSERT per batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import Connection, insert
from sqlalchemy.orm import Session

from facegrid.clock import uuid7
from facegrid_services.store.models import NotifyOutbox

from .events import EventType, iso

_TABLE = NotifyOutbox.__table__


def _row(type_: EventType, occurred_at: datetime, data: dict, *, event_id: str | None = None,
         person_id: int | None = None) -> dict:
    return {"event_id": event_id or str(uuid7()), "type": type_.value,
            "occurred_at": occurred_at, "person_id": person_id, "data": data,
            "created_at": datetime.now(UTC)}


def add(conn: Connection | Session, rows: Iterable[dict]) -> int:
    rows = list(rows)
    if rows:
        conn.execute(insert(_TABLE), rows)
    return len(rows)


def presence_row(*, presence_id: int, node_id: str, track_id: int, person_id: int | None,
                 score: float, at: datetime) -> dict:
    """A presence event: recognised if ``person_id`` is set, else a confirmed unknown.

    Queued in the worker's transaction: a batch redone after a crash had committed
    nothing, so each decision is announced once."""
    type_ = (EventType.presence_recognised if person_id is not None
             else EventType.presence_unknown)
    data = {"presence_id": presence_id, "node_id": node_id, "track_id": track_id,
            "score": round(float(score), 4), "person_id": person_id}
    return _row(type_, at, data, person_id=person_id)


def presences_stored(conn: Connection, presences: Iterable[dict]) -> int:
    """Queue presence events (dicts from :func:`presence_row`) in the caller's transaction."""
    return add(conn, presences)


def intruder_alert_raised(conn: Connection, *, at: datetime, window_start: datetime,
                          count: int, nodes: list[str], message: str) -> int:
    data = {"window_start": iso(window_start), "window_end": iso(at), "count": count,
            "nodes": nodes, "message": message}
    return add(conn, [_row(EventType.alert_intruder, at, data)])


def camera_changed(conn: Connection | Session, type_: EventType, node_id: str, at: datetime,
                   **detail) -> dict:
    row = _row(type_, at, {"node_id": node_id, **detail})
    add(conn, [row])
    return row
