"""Presences through the real worker, redis-server and both stores; the migration keeps data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from facegrid_services.store import db
from facegrid_services.store.models import Alert, Presence, Sighting, Stranger
from facegrid_services.worker.consumer import Worker
from facegrid_services.worker.synthetic import EventFactory, near, unit_vectors
from sqlalchemy import select, text

from facegrid import keys, tokens, wire

pytestmark = pytest.mark.integration


def _xadd(client, entries):
    pipe = client.pipeline(transaction=False)
    for e in entries:
        pipe.xadd(keys.EVENTS_STREAM, e)
    pipe.execute()


def _mix(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    v = w * a + (1 - w) * b
    return (v / np.linalg.norm(v)).astype(np.float32)


def _track(factory, track_id, embeddings, t0, step=0.5):
    """A v2 track: the node's running aggregate of ``embeddings`` after each frame."""
    out, total = [], np.zeros(512)
    for i, e in enumerate(embeddings):
        total += e
        agg = (total / np.linalg.norm(total)).astype(np.float32)
        out.append(factory.entry(agg, at=t0 + timedelta(seconds=i * step), track_id=track_id,
                                 track=wire.TrackSummary(i + 1, float(i + 1), 0.9)))
    return out


def test_one_presence_per_track_recognised_and_strangers_linked(wh, settings, store,
                                                                signing_key, redis_server):
    _, engine = store
    rng = np.random.default_rng(11)
    people = unit_vectors(4, rng)
    ids = wh.enroll(engine, {f"p{i}": np.stack([near(c, rng) for _ in range(5)])
                             for i, c in enumerate(people)})
    stranger = unit_vectors(1, rng)[0]
    cam = EventFactory("cam-1", tokens.issue_token(signing_key, "cam-1"))
    cam2 = EventFactory("cam-2", tokens.issue_token(signing_key, "cam-2"))
    t0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    # p0 walks by: a first poor frame (0.5 of the way to someone else), then clear frames.
    p0 = [_mix(people[0], people[1], 0.55)] + [near(people[0], rng, 0.05) for _ in range(5)]
    entries = _track(cam, 101, p0, t0)
    # The same stranger at two cameras a minute apart: two presences, one pseudo-id.
    entries += _track(cam, 102, [near(stranger, rng, 0.05) for _ in range(4)],
                      t0 + timedelta(seconds=10))
    entries += _track(cam2, 7, [near(stranger, rng, 0.05) for _ in range(3)],
                      t0 + timedelta(seconds=70))
    # A v1 node: per-frame events of one track, the worker aggregates them itself.
    old = EventFactory("cam-3", tokens.issue_token(signing_key, "cam-3"))
    entries += [old.entry(near(people[2], rng, 0.05), at=t0 + timedelta(seconds=i),
                          track_id=55) for i in range(3)]
    client = redis_server.client()
    settings.batch_size = 4
    with wh.running(Worker(settings)):
        _xadd(client, entries)
        wh.wait_for(lambda: wh.group_pending(client) == 0)
    with engine.connect() as c:
        pres = {(r.node_id, r.track_id): r for r in c.execute(select(Presence.__table__))}
        sightings = c.execute(select(Sighting.__table__)).all()
        strangers = c.execute(select(Stranger.__table__)).all()
        alerts = c.execute(select(Alert.__table__)).all()
    assert len(pres) == 4 and len(sightings) == len(entries)
    walk = pres[("cam-1", 101)]
    assert (walk.status, walk.person_id, walk.locked) == ("recognised", ids["p0"], True)
    assert walk.frames == 6 and walk.events == 6
    assert walk.first_seen == t0 and walk.last_seen == t0 + timedelta(seconds=2.5)
    assert [h["status"] for h in walk.history][-1] == "recognised"
    assert pres[("cam-3", 55)].status == "recognised"
    assert pres[("cam-3", 55)].person_id == ids["p2"] and pres[("cam-3", 55)].frames == 3
    a, b = pres[("cam-1", 102)], pres[("cam-2", 7)]
    assert a.status == b.status == "unknown" and a.events == 4 and b.events == 3
    assert len(strangers) == 1 and a.stranger_id == b.stranger_id == strangers[0].id
    assert strangers[0].presences == 2 and strangers[0].nodes == ["cam-1", "cam-2"]
    assert all(s.presence_id == pres[(s.node_id, s.track_id)].id for s in sightings)
    assert alerts == []  # two unknown presences, not 7 unknown frames


def test_redelivered_events_do_not_count_twice(wh, settings, store, signing_key, redis_server):
    _, engine = store
    rng = np.random.default_rng(12)
    cam = EventFactory("cam-1", tokens.issue_token(signing_key, "cam-1"))
    entries = [cam.entry(v, track_id=9) for v in unit_vectors(3, rng)]
    client = redis_server.client()
    with wh.running(Worker(settings)) as w:
        _xadd(client, entries)
        wh.wait_for(lambda: wh.group_pending(client) == 0)
        _xadd(client, entries)  # the same events again (a node's buffer replayed)
        wh.wait_for(lambda: wh.group_pending(client) == 0)
        assert w.calibration.source == "default"
    with engine.connect() as c:
        p = c.execute(select(Presence.__table__)).one()
    assert p.events == 3 and p.status == "unknown"


def test_migration_turns_existing_sightings_into_presences(database_url):
    engine = db.make_engine(database_url)
    try:
        db.migrate(database_url, "0003")
        t = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
        with engine.begin() as c:
            c.execute(text("INSERT INTO people (id, name, created_at, updated_at)"
                           " VALUES (1, 'Ada', :t, :t)"), {"t": t})
            rows = [(1, 5, 1, True, 0.8, 0), (2, 5, None, False, 0.5, 1), (3, 5, 1, True, 0.7, 2),
                    (4, 6, None, False, 0.3, 3), (5, 6, None, False, 0.4, 4)]
            for i, track, person, ok, score, dt in rows:
                c.execute(text(
                    "INSERT INTO sightings (event_id, stream_id, node_id, person_id, recognised,"
                    " score, threshold, model, lamport, utc_timestamp, local_time, timezone,"
                    " timezone_offset, drift_offset_ms, corrected_utc, track_id, box,"
                    " det_confidence, quality, received_at) VALUES (:e, '1-0', 'cam-1', :p, :ok,"
                    " :s, 0.58, 'm', :i, :t, 'x', 'UTC', '+00:00', 0, :t, :track, '[0,0,1,1]',"
                    " 0.9, '{}', :t)"),
                    {"e": f"e{i}", "p": person, "ok": ok, "s": score, "i": i,
                     "t": (t + timedelta(seconds=dt)).replace(tzinfo=None)
                     if database_url.startswith("sqlite") else t + timedelta(seconds=dt),
                     "track": track})
        db.migrate(database_url)
        with engine.connect() as c:
            pres = {r.track_id: r for r in c.execute(select(Presence.__table__))}
            links = dict(c.execute(text("SELECT event_id, presence_id FROM sightings")).all())
        assert sorted(pres) == [5, 6]
        assert (pres[5].status, pres[5].person_id, pres[5].events) == ("recognised", 1, 3)
        assert pres[5].best_score == pytest.approx(0.8)
        assert pres[5].first_seen == t and pres[5].last_seen == t + timedelta(seconds=2)
        assert (pres[6].status, pres[6].person_id, pres[6].events) == ("unknown", None, 2)
        assert links == {"e1": pres[5].id, "e2": pres[5].id, "e3": pres[5].id,
                         "e4": pres[6].id, "e5": pres[6].id}
    finally:
        engine.dispose()
