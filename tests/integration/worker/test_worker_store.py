"""The worker's driver-level batch writes store exactly what the ORM types would store."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from facegrid_services.attendance import AttendanceUpdate
from facegrid_services.store import repo
from facegrid_services.store.models import Attendance, Person, Sighting
from sqlalchemy import insert, select, text

pytestmark = pytest.mark.integration


def _row(event_id: str, at: datetime, person_id: int | None) -> tuple:
    values = {
        "event_id": event_id, "stream_id": "1-0", "node_id": "cam-1", "person_id": person_id,
        "recognised": person_id is not None, "score": 0.7123456789, "threshold": 0.58,
        "model": "facenet-casia-webface", "lamport": 2**62 + 5, "utc_timestamp": at,
        "local_time": "2026-05-01T14:00:00.000001+02:00", "timezone": "Europe/Paris",
        "timezone_offset": "+02:00", "drift_offset_ms": -12.5,
        "corrected_utc": at - timedelta(milliseconds=12.5), "track_id": 9,
        "box": (1, 2, 300, 400), "det_confidence": 0.5, "quality": (120.25, 3e-7),
        "received_at": at + timedelta(seconds=1), "presence_id": None,
    }
    return tuple(values[c] for c in repo.SIGHTING_COLUMNS)


def test_sighting_rows_match_the_orm_and_are_inserted_once(store):
    _, engine = store
    at = datetime(2026, 5, 1, 12, 0, 0, 1, tzinfo=UTC)
    with engine.begin() as c:
        pid = c.execute(insert(Person).values(name="p").returning(Person.id)).scalar_one()
        fast = [_row(f"00000000-0000-7000-8000-{i:012d}", at + timedelta(hours=i),
                     pid if i % 2 else None) for i in range(3)]
        assert repo.insert_sightings(c, fast) == {r[0] for r in fast}
        # The same rows again (a redelivery) plus a new one: only the new one goes in.
        again = [*fast, _row("00000000-0000-7000-8000-000000000099", at, None)]
        assert repo.insert_sightings(c, again) == {again[-1][0]}
        # A reference row written through SQLAlchemy's own type processing.
        ref = dict(zip(repo.SIGHTING_COLUMNS, _row("ref", at + timedelta(hours=1), pid),
                       strict=True))
        ref["box"], ref["quality"] = list(ref["box"]), dict(zip(("brightness", "blur"),
                                                                 ref["quality"], strict=True))
        c.execute(insert(Sighting), [ref])
    with engine.connect() as c:
        raw = {r[0]: r[1:] for r in c.execute(text(
            "SELECT event_id, utc_timestamp, corrected_utc, received_at, recognised, box,"
            " quality FROM sightings"))}
        orm = {r.event_id: r for r in c.execute(select(Sighting))}
    assert len(orm) == 5
    # Same text/values in the database as the ORM writes (SQLite compares times as text).
    assert raw[fast[1][0]] == raw["ref"]
    got = orm[fast[1][0]]
    assert got.utc_timestamp == at + timedelta(hours=1)
    assert got.corrected_utc == at + timedelta(hours=1) - timedelta(milliseconds=12.5)
    assert got.box == [1, 2, 300, 400] and got.quality == {"brightness": 120.25, "blur": 3e-7}
    assert got.lamport == 2**62 + 5 and got.person_id == pid and got.recognised is True
    assert orm[fast[0][0]].person_id is None and orm[fast[0][0]].recognised is False


def test_attendance_upsert_keeps_earliest_and_latest(store):
    _, engine = store
    t = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)

    def upd(first: datetime, last: datetime, lamport: int, node: str) -> AttendanceUpdate:
        return AttendanceUpdate(pid, date(2026, 5, 1), first, lamport, node, last, lamport,
                                node, 1, first - timedelta(minutes=5),
                                last + timedelta(minutes=5))

    with engine.begin() as c:
        pid = c.execute(insert(Person).values(name="p").returning(Person.id)).scalar_one()
        repo.upsert_attendance(c, [upd(t + timedelta(hours=1), t + timedelta(hours=2), 5, "b")])
        repo.upsert_attendance(c, [upd(t, t + timedelta(minutes=30), 9, "a")])  # earlier in
        repo.upsert_attendance(c, [upd(t + timedelta(hours=9), t + timedelta(hours=9), 3, "c")])
        # Same check-out instant, lower Lamport: not later.
        repo.upsert_attendance(c, [upd(t + timedelta(hours=9), t + timedelta(hours=9), 1, "d")])
    with engine.connect() as c:
        a = c.execute(select(Attendance)).one()
    assert (a.check_in, a.check_in_node) == (t, "a")
    assert (a.check_out, a.check_out_node, a.check_out_lamport) == (t + timedelta(hours=9),
                                                                     "c", 3)
    assert a.day == date(2026, 5, 1)
    # Visits: 9-10h, 8-8:30h (more than the 5 min cooldown apart), 17h; the second 17h
    # sighting is within the cooldown of the row's check-out and merges.
    assert a.sightings == 3
