"""The worker on a real redis-server and both stores (SQLite file, PostgreSQL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from facegrid_services.store.models import Alert, Attendance, Presence, RevokedToken, Sighting
from facegrid_services.worker.consumer import GalleryModelError, Worker
from facegrid_services.worker.plan import Entry
from facegrid_services.worker.synthetic import EventFactory, near, unit_vectors
from prometheus_client import REGISTRY
from sqlalchemy import select

from facegrid import keys, tokens

pytestmark = pytest.mark.integration


def _xadd(client, entries):
    pipe = client.pipeline(transaction=False)
    for e in entries:
        pipe.xadd(keys.EVENTS_STREAM, e)
    return [i.decode() for i in pipe.execute()]


def test_events_become_sightings_attendance_results(wh, settings, store, node, redis_server,
                                                    signing_key):
    _, engine = store
    rng = np.random.default_rng(0)
    centres = unit_vectors(3, rng)
    ids = wh.enroll(engine, {f"p{i}": np.stack([near(c, rng) for _ in range(5)])
                          for i, c in enumerate(centres)})
    client = redis_server.client()
    sub = client.pubsub(ignore_subscribe_messages=True)
    sub.subscribe(keys.results_channel("cam-1"))
    # Noon yesterday (UTC, the site zone): the plan never straddles a midnight.
    t0 = (datetime.now(UTC) - timedelta(days=1)).replace(hour=12, minute=0, second=0,
                                                         microsecond=0)
    # p0 seen at t0, t0+1min (merged), t0+30min; p1 once; 2 strangers; 2 bad entries.
    plan = [(centres[0], 0), (centres[0], 60), (centres[0], 1800), (centres[1], 10)]
    entries = [node.entry(near(c, rng), at=t0 + timedelta(seconds=s)) for c, s in plan]
    entries += [node.entry(v, at=t0) for v in unit_vectors(2, rng)]
    bad = node.entry(near(centres[2], rng), at=t0)
    bad["embedding"] = bad["embedding"][:-4]
    other = EventFactory("cam-2", tokens.issue_token(signing_key, "cam-1")).entry(
        near(centres[2], rng), at=t0)
    sids = _xadd(client, [*entries, bad, other])

    with wh.running(Worker(settings)):
        wh.wait_for(lambda: wh.group_pending(client) == 0, what="all entries acked")
    assert wh.count_sightings(engine) == 6
    with engine.connect() as c:
        rows = {r.event_id: r for r in c.execute(select(Sighting))}
        att = {r.person_id: r for r in c.execute(select(Attendance))}
    assert sum(r.recognised for r in rows.values()) == 4
    a0 = att[ids["p0"]]
    assert a0.check_in == t0 and a0.check_out == t0 + timedelta(seconds=1800)
    assert a0.sightings == 2 and a0.check_in_node == "cam-1"
    assert att[ids["p1"]].sightings == 1 and ids["p2"] not in att
    s0 = next(r for r in rows.values() if r.corrected_utc == t0 + timedelta(seconds=60))
    # 3 people: too few to calibrate, the default threshold is in force.
    assert s0.person_id == ids["p0"] and s0.score > 0.5 \
        and s0.threshold == settings.default_threshold
    assert s0.stream_id in sids and s0.timezone == "UTC" and s0.box == [10, 20, 110, 140]

    dead = client.xrange(keys.DEAD_LETTER_STREAM)
    reasons = {f[b"source_id"].decode(): f[b"reason"].decode() for _, f in dead}
    assert reasons == {sids[-2]: "wrong_embedding_length", sids[-1]: "token_wrong_node"}
    assert dead[0][1][b"embedding"] == bad["embedding"]  # the original bytes, kept

    results = []
    deadline = time.monotonic() + 10
    while len(results) < 6 and time.monotonic() < deadline:
        if (msg := sub.get_message(timeout=0.5)) is not None:
            results.append(json.loads(msg["data"]))
    assert len(results) == 6
    assert sorted(r["recognised"] for r in results) == [False, False, True, True, True, True]
    assert set(results[0]) == {"event_id", "track_id", "recognised"}
    assert int(client.get(keys.LAMPORT_MAX)) == node.lamport.value - 1  # `bad`'s tick is dead
    grid = {k.decode(): v.decode() for k, v in client.hgetall(keys.THRESHOLD_GRID).items()}
    assert grid["total"] == "6" and int(grid["0.50"]) == 4 and "suggested" in grid


def test_redelivered_events_change_nothing(wh, settings, store, node, redis_server):
    _, engine = store
    rng = np.random.default_rng(1)
    centre = unit_vectors(1, rng)[0]
    wh.enroll(engine, {"p": np.stack([near(centre, rng) for _ in range(3)])})
    client = redis_server.client()
    # Noon (UTC, the site zone) yesterday: in the past, and the events never straddle a
    # site-local midnight, whenever the test runs.
    t0 = (datetime.now(UTC) - timedelta(days=1)).replace(hour=12, minute=0, second=0,
                                                         microsecond=0)
    entries = [node.entry(near(centre, rng), at=t0 + timedelta(minutes=10 * i))
               for i in range(3)]
    _xadd(client, entries)
    worker = Worker(settings)
    with wh.running(worker):
        wh.wait_for(lambda: wh.group_pending(client) == 0)
        with engine.connect() as c:
            before = c.execute(select(Attendance)).one()
        _xadd(client, entries)  # a node re-sending the same events
        wh.wait_for(lambda: wh.group_pending(client) == 0)
    assert wh.count_sightings(engine) == 3
    with engine.connect() as c:
        after = c.execute(select(Attendance)).one()
    assert before == after and after.sightings == 3
    # A batch handed to process() twice (a crash between commit and ack) also stores once.
    now_ms = int(time.time() * 1000)
    again = [Entry(f"{now_ms}-{i}", e) for i, e in enumerate(entries, start=1)]
    res = worker.process(again)
    assert res.stored == 0 and res.duplicates == 3


def test_gallery_reload_and_revocation_without_restart(wh, settings, store, node, redis_server,
                                                       signing_key):
    _, engine = store
    rng = np.random.default_rng(2)
    centre = unit_vectors(1, rng)[0]
    client = redis_server.client()
    with engine.begin() as c:  # revoked in the database before start
        c.execute(RevokedToken.__table__.insert().values(jti="jti-old", node_id="cam-9",
                                                         reason="test"))
    cam9 = EventFactory("cam-9", tokens.issue_token(signing_key, "cam-9", jti="jti-old"))
    cam3 = EventFactory("cam-3", tokens.issue_token(signing_key, "cam-3", jti="jti-3"))
    with wh.running(Worker(settings)) as w:
        _xadd(client, [node.entry(near(centre, rng)), cam9.entry(near(centre, rng))])
        wh.wait_for(lambda: wh.group_pending(client) == 0)
        assert w.gallery.size == 0
        wh.enroll(engine, {"late": np.stack([near(centre, rng) for _ in range(3)])})
        client.publish(keys.GALLERY_CHANNEL, "enrolled")
        wh.wait_for(lambda: w.gallery.size == 3, what="gallery reload")
        client.sadd(keys.REVOKED_SET, "jti-3")
        client.publish(keys.REVOKED_CHANNEL, "jti-3")
        wh.wait_for(lambda: "jti-3" in w.revoked, what="revocation")
        _xadd(client, [node.entry(near(centre, rng)), cam3.entry(near(centre, rng))])
        wh.wait_for(lambda: wh.group_pending(client) == 0)
    with engine.connect() as c:
        got = [r.recognised for r in c.execute(select(Sighting).order_by(Sighting.lamport,
                                                                          Sighting.id))]
    assert got == [False, True]
    reasons = sorted(f[b"reason"].decode() for _, f in client.xrange(keys.DEAD_LETTER_STREAM))
    assert reasons == ["token_revoked", "token_revoked"]


def test_intruder_alert_once_per_window(wh, settings, store, signing_key, redis_server):
    _, engine = store
    rng = np.random.default_rng(3)
    client = redis_server.client()
    a = EventFactory("cam-a", tokens.issue_token(signing_key, "cam-a"))
    b = EventFactory("cam-b", tokens.issue_token(signing_key, "cam-b"))
    base = datetime(2026, 5, 1, 12, 0, 30, tzinfo=UTC)  # 30 s into a 60 s bucket
    # 4 strangers in 20 s (below 5), a gap, then 8 within 20 s on two nodes: one alert.
    # Each stranger is one track sending 3 events (frames): people are counted, not frames.
    times = [0, 5, 10, 20, 200, 202, 204, 206, 208, 210, 212, 214]
    entries = []
    for i, (s, v) in enumerate(zip(times, unit_vectors(len(times), rng), strict=True)):
        f = a if i % 2 else b
        entries += [f.entry(near(v, rng), at=base + timedelta(seconds=s + k * 0.3),
                            track_id=1000 + i) for k in range(3)]
    settings.batch_size = 3  # alerts must also work across batches
    with wh.running(Worker(settings)):
        _xadd(client, entries)
        wh.wait_for(lambda: wh.group_pending(client) == 0)
    with engine.connect() as c:
        alerts = c.execute(select(Alert)).all()
        presences = c.execute(select(Presence.__table__)).all()
    assert len(presences) == 12 and {p.status for p in presences} == {"unknown"}
    assert {p.events for p in presences} == {3}
    assert len(alerts) == 1
    al = alerts[0]
    assert al.kind == "intruder" and al.count == 5 and al.nodes == ["cam-a", "cam-b"]
    # The 5th stranger is confirmed at its 2nd frame (unknown_min_frames).
    assert al.window_end == base + timedelta(seconds=208.3)


def _reloads() -> float:
    return REGISTRY.get_sample_value("facegrid_worker_gallery_reloads_total") or 0.0


def test_model_follows_the_gallery(wh, settings, store, signing_key, redis_server):
    """FACEGRID_MODEL unset: empty gallery → any model, all unknown; then the enrolled model."""
    _, engine = store
    rng = np.random.default_rng(4)
    centre = unit_vectors(1, rng)[0]
    client = redis_server.client()
    token = tokens.issue_token(signing_key, "cam-1")
    vgg = EventFactory("cam-1", token, model="facenet-vggface2")
    casia = EventFactory("cam-1", token, model="facenet-casia-webface")
    assert settings.model is None
    with wh.running(Worker(settings)) as w:
        _xadd(client, [vgg.entry(near(centre, rng)), casia.entry(near(centre, rng))])
        wh.wait_for(lambda: wh.group_pending(client) == 0)
        assert w.gallery.model is None and client.xlen(keys.DEAD_LETTER_STREAM) == 0
        wh.enroll(engine, {"p": np.stack([near(centre, rng) for _ in range(3)])},
                  model="facenet-vggface2")
        client.publish(keys.GALLERY_CHANNEL, "enrolled")
        wh.wait_for(lambda: w.gallery.model == "facenet-vggface2", what="gallery reload")
        _xadd(client, [vgg.entry(near(centre, rng)), casia.entry(near(centre, rng))])
        wh.wait_for(lambda: wh.group_pending(client) == 0)
        # A second model enrolled while running: it keeps the one it follows (and logs).
        reloads = _reloads()
        wh.enroll(engine, {"q": near(centre, rng)[None]}, model="facenet-casia-webface")
        client.publish(keys.GALLERY_CHANNEL, "enrolled")
        wh.wait_for(lambda: _reloads() > reloads, what="gallery reload")
        assert (w.gallery.model, w.gallery.people) == ("facenet-vggface2", 1)
        _xadd(client, [vgg.entry(near(centre, rng))])
        wh.wait_for(lambda: wh.group_pending(client) == 0)
    with engine.connect() as c:
        got = [(r.model, r.recognised) for r in c.execute(
            select(Sighting).order_by(Sighting.lamport))]
    assert got == [("facenet-vggface2", False), ("facenet-casia-webface", False),
                   ("facenet-vggface2", True), ("facenet-vggface2", True)]
    dead = client.xrange(keys.DEAD_LETTER_STREAM)
    assert [f[b"reason"] for _, f in dead] == [b"model_mismatch"]


def test_gallery_of_several_models_needs_the_setting(wh, settings, store, signing_key,
                                                     redis_server, public_key_file):
    url, engine = store
    rng = np.random.default_rng(5)
    centre = unit_vectors(1, rng)[0]
    wh.enroll(engine, {"a": near(centre, rng)[None]}, model="facenet-vggface2")
    wh.enroll(engine, {"b": near(centre, rng)[None]}, model="facenet-casia-webface")
    with pytest.raises(GalleryModelError, match=r"several models.*FACEGRID_MODEL"):
        Worker(settings).run(threading.Event())
    # Through the CLI: exit 2 and a message that says what to set.
    env = {**os.environ, "FACEGRID_REDIS_URL": redis_server.url, "FACEGRID_DATABASE_URL": url,
           "FACEGRID_PUBLIC_KEY_FILE": str(public_key_file), "FACEGRID_METRICS_PORT": "0"}
    env.pop("FACEGRID_MODEL", None)
    r = subprocess.run([str(Path(sys.executable).parent / "facegrid"), "worker"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "facenet-casia-webface (1 embeddings), facenet-vggface2 (1 embeddings)" in r.stderr
    assert "FACEGRID_MODEL" in r.stderr
    # Pinned: matches that model's people only.
    settings.model = "facenet-casia-webface"
    client = redis_server.client()
    node = EventFactory("cam-1", tokens.issue_token(signing_key, "cam-1"))
    _xadd(client, [node.entry(near(centre, rng))])
    with wh.running(Worker(settings)) as w:
        wh.wait_for(lambda: wh.group_pending(client) == 0)
        assert (w.gallery.model, w.gallery.people) == ("facenet-casia-webface", 1)
    with engine.connect() as c:
        assert c.execute(select(Sighting.recognised)).scalar_one() is True
