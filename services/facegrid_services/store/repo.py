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

import numpy as np
from sqlalchemy import Connection, bindparam, false, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from facegrid_services.attendance import (
    AttendanceUpdate,
    alert_key,
    is_intrusion,
)
from facegrid_services.notify import outbox as notify_outbox
from facegrid_services.store import db
from facegrid_services.store.models import (
    Alert,
    Embedding,
    Presence,
    RevokedNode,
    RevokedToken,
    Sighting,
    Stranger,
)
from facegrid_services.worker import presence as pres

log = logging.getLogger(__name__)
_MIGRATION_LOCK_ID = 0x66616365  # "face": serialises replicas migrating one PostgreSQL


def migrate_locked(url: str) -> None:
    """Alembic upgrade to head; on PostgreSQL under an advisory lock (replicas start together),
    once the database accepts connections (it may be starting beside us)."""
    if not url.startswith("postgresql"):
        db.migrate(url)
        return
    engine = db.make_engine(url)
    try:
        db.wait_reachable(engine)
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


def revoked_nodes(session: Session) -> dict[str, float]:
    """node id -> epoch seconds before which its tokens are revoked."""
    return {r.node_id: r.not_before.timestamp() for r in session.scalars(select(RevokedNode))}


#: Column order of the rows :func:`insert_sightings` takes.
SIGHTING_COLUMNS = (
    "event_id", "stream_id", "node_id", "person_id", "recognised", "score", "threshold",
    "model", "lamport", "utc_timestamp", "local_time", "timezone", "timezone_offset",
    "drift_offset_ms", "corrected_utc", "track_id", "box", "det_confidence", "quality",
    "received_at", "presence_id",
)
# Positions insert_sightings converts (checked here, so the column order cannot drift).
_UTC_TS, _CORRECTED, _BOX, _QUALITY, _RECEIVED = 9, 14, 16, 18, 19
assert [SIGHTING_COLUMNS[i] for i in (_UTC_TS, _CORRECTED, _BOX, _QUALITY, _RECEIVED)] == [
    "utc_timestamp", "corrected_utc", "box", "quality", "received_at"]
#: Rows per multi-row INSERT: 21 parameters each stays far below SQLite's 32,766.
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
                       _quality_json(r[_QUALITY]), t(r[_RECEIVED]), *r[_RECEIVED + 1:])
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


# --- presences ----------------------------------------------------------------------

def known_event_ids(conn: Connection, event_ids: Sequence[str]) -> set[str]:
    """The event ids of ``event_ids`` already stored (a redelivery must not count twice)."""
    out: set[str] = set()
    sc = Sighting.__table__.c
    for start in range(0, len(event_ids), 500):
        chunk = list(event_ids[start:start + 500])
        out.update(conn.execute(select(sc.event_id).where(sc.event_id.in_(chunk))).scalars())
    return out


_PRESENCE_COLS = ("id", "node_id", "track_id", "status", "person_id", "locked", "first_seen",
                  "last_seen", "frames", "events", "score", "best_score", "aggregate", "weight",
                  "history", "confirmed_at")


def lock_presences(conn: Connection, first_seen: dict[pres.Key, datetime], *, model: str,
                   threshold: float, received_at: datetime | None = None,
                   ) -> dict[pres.Key, pres.Tracked]:
    """The presences of ``first_seen``'s keys, created (pending) where missing, locked.

    Rows are created with ``INSERT … ON CONFLICT (node_id, track_id) DO NOTHING``
    and read back in key order (``FOR UPDATE`` on PostgreSQL, so two replicas
    handling events of one track apply them one after the other; SQLite has one
    writer anyway).
    """
    if not first_seen:
        return {}
    received_at = received_at or datetime.now(UTC)
    pc = Presence.__table__.c
    ins = (_insert(conn, Presence.__table__)
           .values([{"node_id": n, "track_id": t, "status": pres.PENDING, "locked": False,
                     "first_seen": at, "last_seen": at, "frames": 0, "events": 0,
                     "score": -1.0, "best_score": -1.0, "threshold": threshold, "model": model,
                     "weight": 0.0, "history": [], "received_at": received_at}
                    for (n, t), at in sorted(first_seen.items())])
           .on_conflict_do_nothing(index_elements=["node_id", "track_id"]))
    conn.execute(ins)
    out: dict[pres.Key, pres.Tracked] = {}
    by_node: dict[str, list[int]] = {}
    for n, t in first_seen:
        by_node.setdefault(n, []).append(t)
    for node, tracks in sorted(by_node.items()):
        q = (select(*(pc[c] for c in _PRESENCE_COLS))
             .where(pc.node_id == node, pc.track_id.in_(sorted(tracks)))
             .order_by(pc.track_id))
        if conn.dialect.name == "postgresql":
            q = q.with_for_update()
        for r in conn.execute(q):
            m = r._mapping
            agg = (np.frombuffer(m["aggregate"], "<f4").astype(np.float32)
                   if m["aggregate"] is not None and len(m["aggregate"]) == 2048 else None)
            state = pres.Presence(
                status=m["status"], person_id=m["person_id"], locked=bool(m["locked"]),
                score=float(m["score"]), best_score=float(m["best_score"]),
                frames=int(m["frames"]), events=int(m["events"]),
                history=pres.history_from_json(m["history"]))
            out[(m["node_id"], int(m["track_id"]))] = pres.Tracked(
                id=int(m["id"]), state=state, first_seen=m["first_seen"],
                last_seen=m["last_seen"], aggregate=agg, weight=float(m["weight"]),
                confirmed=m["confirmed_at"] is not None)
    return out


def save_presences(conn: Connection, tracked: dict[pres.Key, pres.Tracked], *, threshold_of,
                   confirmed_now: dict[int, datetime], received_at: datetime | None = None) -> int:
    """Write the presences' new state (one ``executemany``); ``threshold_of(node_id)``.

    ``received_at`` (the worker's clock, default now) is what retention counts from."""
    received_at = received_at or datetime.now(UTC)
    pt = Presence.__table__
    stmt = (pt.update().where(pt.c.id == bindparam("pid"))
            .values(status=bindparam("status"), person_id=bindparam("person_id"),
                    locked=bindparam("locked"), first_seen=bindparam("first_seen"),
                    last_seen=bindparam("last_seen"), frames=bindparam("frames"),
                    events=bindparam("events"), score=bindparam("score"),
                    best_score=bindparam("best_score"), threshold=bindparam("threshold"),
                    aggregate=bindparam("aggregate"), weight=bindparam("weight"),
                    history=bindparam("history"), received_at=bindparam("received_at"),
                    confirmed_at=func.coalesce(pt.c.confirmed_at, bindparam("confirmed_at"))))
    params = [{
        "pid": t.id, "status": t.state.status, "person_id": t.state.person_id,
        "locked": t.state.locked, "first_seen": t.first_seen, "last_seen": t.last_seen,
        "frames": t.state.frames, "events": t.state.events, "score": t.state.score,
        "best_score": t.state.best_score, "threshold": threshold_of(key[0]),
        "aggregate": None if t.aggregate is None else
        np.ascontiguousarray(t.aggregate, "<f4").tobytes(),
        "weight": t.weight, "history": pres.history_json(t.state.history),
        "confirmed_at": confirmed_now.get(t.id), "received_at": received_at,
    } for key, t in sorted(tracked.items())]
    if params:
        conn.execute(stmt, params)
    return len(params)


def raise_presence_alerts(conn: Connection, confirmed: Iterable[tuple[datetime, str]], *,
                          count: int, window_s: float,
                          recent_alerts: Iterable[datetime] = ()) -> tuple[list[datetime], int]:
    """Intruder alerts on people, not frames: ``count`` distinct confirmed unknown presences
    seen within ``window_s`` (across all nodes) raise one alert per burst.

    ``confirmed``: ``(time, node)`` of each presence that became a confirmed
    stranger in this batch (already saved in this transaction).  Deduplication
    as :func:`raise_intruder_alerts`: none within ``window_s`` of another
    intruder alert's end; the ``dedup_key`` guards concurrent replicas.
    """
    pc = Presence.__table__.c
    ac = Alert.__table__.c
    window = timedelta(seconds=window_s)
    ends = sorted(recent_alerts)
    found: list[datetime] = []
    raised = 0
    for t, _node in sorted(confirmed):
        if any(abs(t - e) < window for e in (*ends, *found)):
            continue
        recent = conn.execute(
            select(pc.id, pc.node_id, pc.confirmed_at)
            .where(pc.status == pres.UNKNOWN, pc.confirmed_at.is_not(None),
                   pc.last_seen > t - window, pc.first_seen <= t)
            .order_by(pc.confirmed_at.desc()).limit(count)).all()
        if len(recent) < count:
            continue
        existing = conn.execute(
            select(ac.window_end).where(ac.kind == "intruder", ac.window_end > t - window,
                                        ac.window_end < t + window).limit(1)).scalar()
        if existing is not None:
            found.append(existing)
            continue
        nodes = sorted({r[1] for r in recent})
        start = min(r[2] for r in recent)
        stmt = (_alert_insert(conn).values(
            kind="intruder", dedup_key=alert_key(t, window_s), created_at=datetime.now(UTC),
            window_start=min(start, t), window_end=t, count=len(recent), nodes=nodes,
            message=f"{len(recent)} unknown people within {window_s:g} s on {', '.join(nodes)}")
            .on_conflict_do_nothing(index_elements=["dedup_key"]))
        if conn.execute(stmt).rowcount:
            raised += 1
            log.warning("intruder alert at %s: %d unknown presences on %s", t.isoformat(),
                        len(recent), nodes)
            notify_outbox.intruder_alert_raised(
                conn, at=t, window_start=min(start, t), count=len(recent), nodes=nodes,
                message=f"{len(recent)} unknown people within {window_s:g} s on "
                        f"{', '.join(nodes)}")
        found.append(t)
    return found, raised


def _insert(conn: Connection, table):
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def link_strangers(conn: Connection, items: Sequence[tuple[int, np.ndarray, datetime, str]], *,
                   model: str, threshold: float,
                   received_at: datetime | None = None) -> dict[int, int]:
    """Give each newly confirmed unknown presence a stranger pseudo-id.

    ``items``: ``(presence id, unit aggregate, time, node)``.  A presence whose
    aggregate scores at least ``threshold`` (the recognition threshold: it would
    be "recognised" as that stranger) against a known stranger of the same
    model joins it (the stranger's vector becomes the mean of its presences');
    otherwise it starts a new one.  Returns presence id → stranger id.
    """
    if not items:
        return {}
    received_at = received_at or datetime.now(UTC)
    st = Stranger.__table__
    rows = conn.execute(select(st.c.id, st.c.vector, st.c.presences, st.c.nodes,
                               st.c.first_seen, st.c.last_seen)
                        .where(st.c.model == model).order_by(st.c.id)).all()
    ids = [int(r[0]) for r in rows]
    vecs = [np.frombuffer(r[1], "<f4").astype(np.float32) for r in rows]
    counts = [int(r[2]) for r in rows]
    nodes = [set(r[3] or []) for r in rows]
    seen = [[r[4], r[5]] for r in rows]
    dirty: set[int] = set()
    out: dict[int, int] = {}
    for pid, agg, at, node in sorted(items, key=lambda x: x[2]):
        agg = np.asarray(agg, np.float32)
        k = -1
        if vecs:
            sims = np.stack(vecs) @ agg
            k = int(np.argmax(sims))
            if float(sims[k]) < threshold:
                k = -1
        if k < 0:
            new = conn.execute(st.insert().values(
                model=model, vector=agg.astype("<f4").tobytes(), presences=1, first_seen=at,
                last_seen=at, nodes=[node], received_at=received_at,
            ).returning(st.c.id)).scalar_one()
            ids.append(int(new))
            vecs.append(agg)
            counts.append(1)
            nodes.append({node})
            seen.append([at, at])
            out[pid] = int(new)
            continue
        total = vecs[k].astype(np.float64) * counts[k] + agg
        vecs[k] = (total / max(np.linalg.norm(total), 1e-9)).astype(np.float32)
        counts[k] += 1
        nodes[k].add(node)
        seen[k] = [min(seen[k][0], at), max(seen[k][1], at)]
        dirty.add(k)
        out[pid] = ids[k]
    for k in sorted(dirty):
        conn.execute(st.update().where(st.c.id == ids[k]).values(
            vector=vecs[k].astype("<f4").tobytes(), presences=counts[k],
            nodes=sorted(nodes[k]), first_seen=seen[k][0], last_seen=seen[k][1],
            received_at=received_at))
    pt = Presence.__table__
    conn.execute(pt.update().where(pt.c.id == bindparam("pid")).values(
        stranger_id=bindparam("sid")), [{"pid": p, "sid": sid} for p, sid in out.items()])
    return out
