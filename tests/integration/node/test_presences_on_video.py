"""Presences end to end on real video: the node agent on a clip made of LFW photos, the real
worker on a real redis-server and SQLite, a gallery of the 31 lfw_dev people.

The clip: two enrolled people (photos that were NOT enrolled), each standing in the
scene with small motion and lighting changes (the photo sways, the scene brightens and
darkens), then a stranger the same way.  Expected: one presence per appearance, each
enrolled person recognised as themselves, no unknown presence from an enrolled
person's track, no intruder alert while only enrolled people pass (even with an alert
on ONE unknown presence), and the stranger as ONE unknown presence however many
events the track sent.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime

import numpy as np
import pytest
from fixtures.node import FPS, background, still_frames, write_clip

from facegrid import keys, tokens

pytestmark = [pytest.mark.integration, pytest.mark.models]
ENROLL = 5


def lit_appearance(photo, seconds: float, x: int, y: int, bg: np.ndarray, phase: float):
    """A photo standing in the scene: swaying a few pixels, the light changing ±15 %."""
    import cv2

    face = cv2.imread(str(photo))
    h, w = face.shape[:2]
    for i in range(int(seconds * FPS)):
        f = bg.copy()
        dx, dy = int(5 * np.sin(i / 4 + phase)), int(2 * np.cos(i / 6))
        f[y + dy:y + dy + h, x + dx:x + dx + w] = face
        gain = 1.0 + 0.15 * np.sin(i / 7 + phase)
        yield np.clip(f.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def _enroll(engine, lfw_embeddings) -> dict[str, int]:
    from facegrid_services.store import db
    from facegrid_services.store.models import Embedding, Person

    ids = {}
    with db.session_factory(engine)() as s:
        for name, photos in sorted(lfw_embeddings.items()):
            if photos[0][0].parent.parent.name != "lfw_dev":
                continue
            p = Person(name=name)
            s.add(p)
            s.flush()
            embs = [e for _, e in sorted(photos, key=lambda x: x[0].name) if e is not None]
            for e in embs[:ENROLL]:
                raw = np.asarray(e, np.float32).tobytes()
                s.add(Embedding(person_id=p.id, model="facenet-casia-webface", vector=raw,
                                image_hash=hashlib.sha256(raw).hexdigest()))
            ids[name] = p.id
        s.commit()
    return ids


def test_one_presence_per_appearance_on_video(tmp_path, redis_url, face_analyzer,
                                              lfw_embeddings, shared_data):
    from facegrid_node.agent import NodeAgent
    from facegrid_node.settings import NodeSettings
    from facegrid_services.store import db, repo
    from facegrid_services.store.models import Alert, Presence, Sighting
    from facegrid_services.worker.consumer import Worker
    from facegrid_services.worker.settings import WorkerSettings
    from sqlalchemy import select

    faces = shared_data / "faces"
    colin = sorted((faces / "lfw_dev" / "Colin_Powell").glob("*.jpg"))[12]
    serena = sorted((faces / "lfw_dev" / "Serena_Williams").glob("*.jpg"))[14]
    # One face in the photo (some LFW strangers show a second face behind them).
    stranger = sorted((faces / "lfw_dev_unknown").glob("*/*.jpg"))[2]
    bg = background(2)
    frames = [*still_frames(0.4, bg),
              *lit_appearance(colin, 2.0, 80, 110, bg, 0.0), *still_frames(1.4, bg),
              *lit_appearance(serena, 2.0, 330, 100, bg, 1.0), *still_frames(1.4, bg),
              *lit_appearance(stranger, 2.0, 200, 120, bg, 2.0), *still_frames(0.4, bg)]
    clip = write_clip(tmp_path / "clip.avi", frames)

    key = tokens.generate_private_key()
    pub = tmp_path / "signing.pub"
    pub.write_bytes(tokens.public_pem(key))
    token = tmp_path / "token"
    token.write_text(tokens.issue_token(key, "door-1", jti="door-1"))
    ns = NodeSettings(node_id="door-1", redis_url=redis_url, camera=str(clip), token_file=token,
                      metrics_port=0, idle_after_s=60, track_max_age_s=0.8, detect_every=2,
                      reembed_every=5, resend_interval_s=60, camera_timeout_s=2,
                      reconnect_max_s=0.5, server_url="http://127.0.0.1:9")
    agent = NodeAgent(ns, analyzer=face_analyzer, heartbeats=False, results=False)
    assert agent.run() == 0

    url = f"sqlite:///{tmp_path / 'store.db'}"
    repo.migrate_locked(url)
    engine = db.make_engine(url)
    ids = _enroll(engine, lfw_embeddings)
    ws = WorkerSettings(redis_url=redis_url, database_url=url, public_key_file=pub,
                        metrics_port=0, migrate=False, consumer="video", block_ms=100,
                        intruder_count=1)  # ONE unknown presence would raise an alert
    worker = Worker(ws)
    stop = threading.Event()
    t = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    t.start()
    try:
        import redis

        r = redis.Redis.from_url(redis_url)
        deadline = datetime.now(UTC).timestamp() + 60
        while datetime.now(UTC).timestamp() < deadline:
            g = [x for x in r.xinfo_groups(keys.EVENTS_STREAM)
                 if x["name"] in (keys.WORKER_GROUP, keys.WORKER_GROUP.encode())]
            if g and g[0]["pending"] == 0 and g[0].get("lag") == 0:
                break
            stop.wait(0.1)
        # Entries ever added: the worker trims what it has acknowledged.
        events = r.xinfo_stream(keys.EVENTS_STREAM)["entries-added"]
        dead = r.xlen(keys.DEAD_LETTER_STREAM)
    finally:
        stop.set()
        t.join(30)
    assert worker.calibration.source == "gallery"  # 31 people: calibrated, centred
    with engine.connect() as c:
        pres = c.execute(select(Presence.__table__).order_by(Presence.first_seen)).all()
        sightings = c.execute(select(Sighting.__table__)).all()
        alerts = c.execute(select(Alert.__table__)).all()
    engine.dispose()
    print(f"\n{len(frames)} frames, {events} events, {len(sightings)} sightings, "
          f"threshold {worker.calibration.threshold}; presences: "
          + "; ".join(f"{p.status} {p.person_id} score {p.score:.3f} frames {p.frames} "
                      f"events {p.events}" for p in pres))
    assert dead == 0 and len(sightings) == events
    assert len(pres) == 3, pres  # one presence per appearance
    first, second, third = pres
    assert (first.status, first.person_id) == ("recognised", ids["Colin_Powell"])
    assert (second.status, second.person_id) == ("recognised", ids["Serena_Williams"])
    # No unknown presence from an enrolled person's track: never decided unknown.
    assert [h["status"] for h in (*first.history, *second.history)] == ["recognised"] * len(
        (*first.history, *second.history))
    # The stranger: ONE unknown presence, however many events its track sent.
    assert third.status == "unknown" and third.person_id is None
    assert sum(s.presence_id == third.id for s in sightings) == third.events >= 1
    # Alerts: none while only enrolled people passed; the stranger raises the one.
    assert len(alerts) == 1 and alerts[0].window_end >= third.first_seen, alerts
