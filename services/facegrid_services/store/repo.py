"""Store functions of the classify worker: gallery/revocation reads and the batch write path.

Every write here runs inside the caller's transaction (one per batch) and is
idempotent: sightings are inserted with ``ON CONFLICT (event_id) DO NOTHING``
and only the rows actually inserted feed attendance and alerts, so a
redelivered event changes nothing.  Attendance rows are merged with a single
``INSERT … ON CONFLICT (person_id, day) DO UPDATE`` whose min/max rules make
concurrent replicas commute.  The same SQL runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, false, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from facegrid_services.attendance import (
    AttendanceUpdate,
    alert_key,
    is_intrusion,
)
from facegrid_services.notify import outbox as notify_outbox
from facegrid_services.store import db
from facegrid_services.store.models import Alert, Embedding, RevokedToken, Sighting

log = logging.getLogger(__name__)
_MIGRATION_LOCK_ID = 0x66616365  # "face": serialises replicas migrating one PostgreSQL


def migrate_locked(url: str) -> None:
    """Alembic upgrade to head; on PostgreSQL under an advisory lock (replicas start together)."""
    if not url.startswith("postgresql"):
        db.migrate(url)
        return
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK_ID})
            try:
                db.migrate(url)
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK_ID})
                conn.commit()
    finally:
        engine.dispose()


def gallery_models(session: Session) -> dict[str, int]:
    """Embedding model ids in the gallery and how many embeddings each has."""
    q = select(Embedding.model, func.count()).group_by(Embedding.model)
    return {m: int(n) for m, n in session.execute(q)}


def gallery_rows(session: Session, model: str) -> list[tuple[int, bytes]]:
    """``(person_id, vector)`` of every enrolled embedding of ``model``."""
    q = select(Embedding.person_id, Embedding.vector).where(Embedding.model == model)
    return [(r[0], r[1]) for r in session.execute(q.order_by(Embedding.id))]


def revoked_jtis(session: Session) -> list[str]:
    return list(session.scalars(select(RevokedToken.jti)))


#: Column order of the rows :func:`insert_sightings` takes.
SIGHTING_COLUMNS = (
    "event_id", "stream_id", "node_id", "person_id", "recognised", "score", "threshold",
    "model", "lamport", "utc_timestamp", "local_time", "timezone", "timezone_offset",
    "drift_offset_ms", "corrected_utc", "track_id", "box", "det_confidence", "quality",
    "received_at",
)
# Positions insert_sightings converts (checked here, so the column order cannot drift).
_UTC_TS, _CORRECTED, _BOX, _QUALITY, _RECEIVED = 9, 14, 16, 18, 19
assert [SIGHTING_COLUMNS[i] for i in (_UTC_TS, _CORRECTED, _BOX, _QUALITY, _RECEIVED)] == [
    "utc_timestamp", "corrected_utc", "box", "quality", "received_at"]
#: Rows per multi-row INSERT: 20 parameters each stays far below SQLite's 32,766.
_INSERT_CHUNK = 500


def _dialect(conn: Connection) -> str:
    name = conn.dialect.name
    if name not in ("sqlite", "postgresql"):
        raise RuntimeError(f"unsupported database dialect {name!r}")
    return name


def _sqlite_time(t: datetime) -> str:
    """An aware instant exactly as SQLAlchemy's SQLite DATETIME stores it (naive UTC text)."""
    if t.tzinfo is not UTC:
        if t.tzinfo is None:
            raise ValueError("naive datetime: store aware UTC instants only")
        t = t.astimezone(UTC)
    return t.replace(tzinfo=None).isoformat(" ", "microseconds")


def _box_json(box) -> str:
    x1, y1, x2, y2 = box
    return f"[{x1:d}, {y1:d}, {x2:d}, {y2:d}]"  # json.dumps' text, without its cost


def _quality_json(q) -> str:
    brightness, blur = float(q[0]), float(q[1])
    if not (math.isfinite(brightness) and math.isfinite(blur)):
        raise ValueError("quality values must be finite")
    return f'{{"brightness": {brightness!r}, "blur": {blur!r}}}'  # repr = JSON for finite


@functools.cache
def _insert_sql(dialect: str, n: int) -> str:
    cols = ", ".join(SIGHTING_COLUMNS)
    if dialect == "sqlite":
        one = "(" + ", ".join("?" * len(SIGHTING_COLUMNS)) + ")"
    else:  # psycopg: JSON columns need an explicit cast from text
        one = "(" + ", ".join("CAST(%s AS JSON)" if c in ("box", "quality") else "%s"
                              for c in SIGHTING_COLUMNS) + ")"
    return (f"INSERT INTO sightings ({cols}) VALUES {', '.join([one] * n)}"
            " ON CONFLICT (event_id) DO NOTHING RETURNING event_id")


def insert_sightings(conn: Connection, rows: Sequence[Sequence]) -> set[str]:
    """Insert sightings, skipping event ids already stored; returns the ids inserted.

    ``rows`` are tuples in :data:`SIGHTING_COLUMNS` order with Python values:
    aware datetimes, ``box`` a 4-int sequence, ``quality`` a ``(brightness,
    blur)`` pair.  One multi-row ``INSERT … ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id`` per 500 rows, straight to the driver: SQLAlchemy's
    per-value type processing cost more than the insert itself.  Values are
    written exactly as the ORM types would write them (tested).
    """
    if not rows:
        return set()
    dialect = _dialect(conn)
    t = _sqlite_time if dialect == "sqlite" else _same
    out: set[str] = set()
    for start in range(0, len(rows), _INSERT_CHUNK):
        chunk = rows[start:start + _INSERT_CHUNK]
        params: list = []
        for r in chunk:
            params += r[:_UTC_TS]
            params.append(t(r[_UTC_TS]))
            params += r[_UTC_TS + 1:_CORRECTED]
            params += (t(r[_CORRECTED]), r[_CORRECTED + 1], _box_json(r[_BOX]), r[_BOX + 1],
                       _quality_json(r[_QUALITY]), t(r[_RECEIVED]))
        res = conn.exec_driver_sql(_insert_sql(dialect, len(chunk)), tuple(params))
        out.update(row[0] for row in res)
    return out


def _same(v):
    return v


_EARLIER = ("(excluded.check_in < attendance.check_in OR (excluded.check_in = attendance.check_in"
            " AND excluded.check_in_lamport < attendance.check_in_lamport))")
_LATER = ("(excluded.check_out > attendance.check_out OR (excluded.check_out = attendance.check_out"
          " AND excluded.check_out_lamport > attendance.check_out_lamport))")


def _pick(cond: str, col: str) -> str:
    return f"{col} = CASE WHEN {cond} THEN excluded.{col} ELSE attendance.{col} END"


_UPSERT_ATTENDANCE = (
    "INSERT INTO attendance (person_id, day, check_in, check_in_lamport, check_in_node,"
    " check_out, check_out_lamport, check_out_node, sightings)"
    " VALUES (:person_id, :day, :check_in, :check_in_lamport, :check_in_node,"
    " :check_out, :check_out_lamport, :check_out_node, :visits)"
    " ON CONFLICT (person_id, day) DO UPDATE SET "
    + ", ".join([_pick(_EARLIER, c) for c in ("check_in", "check_in_lamport", "check_in_node")]
                + [_pick(_LATER, c) for c in ("check_out", "check_out_lamport", "check_out_node")])
    + ", sightings = attendance.sightings + excluded.sightings - CASE WHEN"
    " attendance.check_out >= :merge_after AND attendance.check_in <= :merge_before"
    " THEN 1 ELSE 0 END"
)
#: psycopg's named placeholders.
_UPSERT_ATTENDANCE_PG = re.sub(r":(\w+)", r"%(\1)s", _UPSERT_ATTENDANCE)


def upsert_attendance(conn: Connection, updates: Iterable[AttendanceUpdate]) -> int:
    """Merge one batch's per-(person, day) updates: one ``executemany`` of one upsert."""
    sqlite_ = _dialect(conn) == "sqlite"
    t = _sqlite_time if sqlite_ else _same
    params = [{
        "person_id": u.person_id, "day": u.day.isoformat() if sqlite_ else u.day,
        "check_in": t(u.check_in), "check_in_lamport": u.check_in_lamport,
        "check_in_node": u.check_in_node,
        "check_out": t(u.check_out), "check_out_lamport": u.check_out_lamport,
        "check_out_node": u.check_out_node,
        "visits": u.visits, "merge_after": t(u.merge_after), "merge_before": t(u.merge_before),
    } for u in updates]
    if params:
        conn.exec_driver_sql(_UPSERT_ATTENDANCE if sqlite_ else _UPSERT_ATTENDANCE_PG, params)
    return len(params)


def raise_intruder_alerts(conn: Connection, unknowns: Iterable[tuple[datetime, str]], *,
                          count: int, window_s: float,
                          recent_alerts: Iterable[datetime] = ()) -> tuple[list[datetime], int]:
    """Check each new unknown sighting ``(time, node)``; insert deduplicated alerts.

    Looks at the ``count`` latest unknown sightings up to each new one (this
    batch's rows are already inserted in the same transaction, other replicas'
    are committed); an alert is due when they all lie within ``window_s``.  An
    alert is one per burst: none is raised within ``window_s`` of another
    intruder alert's end (``recent_alerts``: ends this worker already knows,
    otherwise the alerts table decides); a sustained intrusion raises one alert
    per window.  The ``dedup_key`` (window bucket) makes concurrent replicas
    insert at most one.  Returns the alert ends now known (cache them after
    commit) and how many alerts this call inserted.
    """
    sc = Sighting.__table__.c
    ac = Alert.__table__.c
    window = timedelta(seconds=window_s)
    ends = sorted(recent_alerts)
    found: list[datetime] = []
    raised = 0

    def near_alert(t: datetime) -> bool:
        return any(abs(t - e) < window for e in (*ends, *found))

    for t, _node in sorted(unknowns):
        if near_alert(t):
            continue
        recent = conn.execute(
            select(sc.corrected_utc, sc.node_id)
            .where(sc.recognised == false(), sc.corrected_utc > t - window, sc.corrected_utc <= t)
            .order_by(sc.corrected_utc.desc()).limit(count)).all()
        times = [r[0] for r in recent]
        if not is_intrusion(times, t, count, window_s):
            continue
        existing = conn.execute(
            select(ac.window_end).where(ac.kind == "intruder", ac.window_end > t - window,
                                        ac.window_end < t + window).limit(1)).scalar()
        if existing is not None:
            found.append(existing)
            continue
        nodes = sorted({r[1] for r in recent})
        stmt = (_alert_insert(conn).values(
            kind="intruder", dedup_key=alert_key(t, window_s), created_at=datetime.now(UTC),
            window_start=times[-1], window_end=t, count=len(times), nodes=nodes,
            message=f"{len(times)} unknown faces within {window_s:g} s on {', '.join(nodes)}")
            .on_conflict_do_nothing(index_elements=["dedup_key"]))
        if conn.execute(stmt).rowcount:
            raised += 1
            notify_outbox.intruder_alert_raised(
                conn, at=t, window_start=times[-1], count=len(times), nodes=nodes,
                message=f"{len(times)} unknown faces within {window_s:g} s on {', '.join(nodes)}")
            log.warning("intruder alert at %s: %d unknown sightings on %s", t.isoformat(),
                        len(times), nodes)
        found.append(t)
    return found, raised


def _alert_insert(conn: Connection):
    if conn.dialect.name == "postgresql":
        return postgresql.insert(Alert.__table__)
    return sqlite.insert(Alert.__table__)
