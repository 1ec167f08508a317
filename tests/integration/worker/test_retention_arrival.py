"""Retention counts from the arrival (the worker's clock), never from a node's clock.

A node whose clock says 2099 must not keep its rows for ever; one saying 2001
must not have them deleted at the next retention run.  Real worker, real
redis-server, SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from facegrid_services import retention
from facegrid_services.store import db
from facegrid_services.store.models import Presence, Sighting, Stranger
from facegrid_services.worker.consumer import Worker
from fixtures.synthetic import EventFactory, near, unit_vectors
from sqlalchemy import func, select, text

from facegrid import keys, tokens, wire

pytestmark = pytest.mark.integration


def _stranger_track(factory, track_id, face, t0, rng, frames=4):
    """A v2 track of an unknown face (enough frames to become a confirmed stranger)."""
    out, total = [], np.zeros(512)
    for i in range(frames):
        total += near(face, rng, 0.05)
        agg = (total / np.linalg.norm(total)).astype(np.float32)
        out.append(factory.entry(agg, at=t0 + timedelta(seconds=i * 0.5), track_id=track_id,
                                 track=wire.TrackSummary(i + 1, float(i + 1), 0.9)))
    return out


def _counts(engine) -> dict[str, int]:
    with engine.connect() as c:
        return {m.__tablename__: c.execute(select(func.count()).select_from(m)).scalar_one()
                for m in (Sighting, Presence, Stranger)}


def test_rows_of_a_node_with_a_wrong_clock_live_exactly_the_retention(
        wh, settings, store, signing_key, redis_server):
    _, engine = store
    rng = np.random.default_rng(21)
    faces = unit_vectors(3, rng)
    wh.enroll(engine, {"someone else": faces[2]})  # a gallery model: strangers get linked
    future = EventFactory("cam-2099", tokens.issue_token(signing_key, "cam-2099"))
    past = EventFactory("cam-2001", tokens.issue_token(signing_key, "cam-2001"))
    entries = (_stranger_track(future, 1, faces[0], datetime(2099, 6, 1, 12, tzinfo=UTC), rng)
               + _stranger_track(past, 2, faces[1], datetime(2001, 6, 1, 12, tzinfo=UTC), rng))
    client = redis_server.client()
    before = datetime.now(UTC)
    with wh.running(Worker(settings)):
        pipe = client.pipeline(transaction=False)
        for e in entries:
            pipe.xadd(keys.EVENTS_STREAM, e)
        pipe.execute()
        wh.wait_for(lambda: wh.group_pending(client) == 0)
    after = datetime.now(UTC)
    assert client.xlen(keys.DEAD_LETTER_STREAM) == 0
    assert _counts(engine) == {"sightings": 8, "presences": 2, "strangers": 2}
    with engine.connect() as c:
        received = [r[0] for m in (Sighting, Presence, Stranger)
                    for r in c.execute(select(m.received_at))]
        node_times = sorted(c.execute(select(Presence.last_seen)).scalars())
    # The rows keep the nodes' own times (audit) but are dated by their arrival.
    assert node_times[0].year == 2001 and node_times[1].year == 2099
    assert all(before - timedelta(seconds=1) <= t <= after + timedelta(seconds=1)
               for t in received), received

    sessions = db.session_factory(engine)
    # 30-day retention, a day later: nothing is old yet (the 2001 rows stay) ...
    assert retention.purge(sessions, retention.cutoff(30, after + timedelta(days=1))) == 0
    assert _counts(engine) == {"sightings": 8, "presences": 2, "strangers": 2}
    # ... and 31 days later everything is (the 2099 rows go too).
    assert retention.purge(sessions, retention.cutoff(30, after + timedelta(days=31))) == 12
    assert _counts(engine) == {"sightings": 0, "presences": 0, "strangers": 0}


def test_migration_dates_existing_rows_by_their_arrival(database_url):
    engine = db.make_engine(database_url)
    sqlite = database_url.startswith("sqlite")

    def t(v: datetime):
        return v.replace(tzinfo=None) if sqlite else v

    try:
        db.migrate(database_url, "0006")
        arrived = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
        node_clock = datetime(2099, 1, 1, tzinfo=UTC)
        with engine.begin() as c:
            c.execute(text(
                "INSERT INTO strangers (id, model, vector, presences, first_seen, last_seen,"
                " nodes) VALUES (1, 'm', :v, 1, :n, :n, '[]'), (2, 'm', :v, 0, :n, :n, '[]')"),
                {"v": b"\0" * 2048, "n": t(node_clock)})
            for pid, stranger in ((1, 1), (2, None)):
                c.execute(text(
                    "INSERT INTO presences (id, node_id, track_id, status, locked, first_seen,"
                    " last_seen, frames, events, score, best_score, threshold, model, weight,"
                    " history, stranger_id) VALUES (:id, 'cam-1', :id, 'unknown', false, :n,"
                    " :n, 1, 1, 0.1, 0.1, 0.5, 'm', 1.0, '[]', :s)"),
                    {"id": pid, "n": t(node_clock), "s": stranger})
            for i, received in enumerate((arrived - timedelta(hours=1), arrived)):
                c.execute(text(
                    "INSERT INTO sightings (event_id, stream_id, node_id, person_id, recognised,"
                    " score, threshold, model, lamport, utc_timestamp, local_time, timezone,"
                    " timezone_offset, drift_offset_ms, corrected_utc, track_id, box,"
                    " det_confidence, quality, received_at, presence_id) VALUES (:e, '1-0',"
                    " 'cam-1', NULL, false, 0.1, 0.5, 'm', :i, :n, 'x', 'UTC', '+00:00', 0, :n,"
                    " 1, '[0,0,1,1]', 0.9, '{}', :r, 1)"),
                    {"e": f"e{i}", "i": i, "n": t(node_clock), "r": t(received)})
        start = datetime.now(UTC)
        db.migrate(database_url)
        with engine.connect() as c:
            pres = dict(c.execute(select(Presence.id, Presence.received_at)).all())
            strangers = dict(c.execute(select(Stranger.id, Stranger.received_at)).all())
        # From its sightings' arrival; with none, the upgrade's time (never the 2099 clock).
        assert pres[1] == arrived and start <= pres[2] <= datetime.now(UTC)
        assert strangers[1] == arrived and start <= strangers[2] <= datetime.now(UTC)
    finally:
        engine.dispose()
