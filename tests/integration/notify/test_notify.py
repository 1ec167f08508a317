"""Webhooks and MQTT end to end: the real worker fills the outbox, the notifier delivers.

Real parts: redis-server and the classify worker (presences, intruder alert), the
store (SQLite and PostgreSQL), mosquitto, and an HTTP receiver that checks every
signature.  Camera states come from the nodes table the server writes.
"""

from __future__ import annotations

import collections
import itertools
import json
import statistics
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from facegrid_services.notify import outbox, webhooks
from facegrid_services.notify.events import ALL_TYPES
from facegrid_services.store.models import Node, WebhookDelivery
from facegrid_services.worker.consumer import Worker
from facegrid_services.worker.settings import WorkerSettings
from fixtures.synthetic import EventFactory, near, unit_vectors
from sqlalchemy import func, select

from facegrid import keys, tokens

pytestmark = pytest.mark.integration


def enroll(sessions, name: str, vector: np.ndarray) -> int:
    import hashlib

    from facegrid_services.store.models import Embedding, Person

    with sessions() as s:
        p = Person(name=name)
        s.add(p)
        s.flush()
        s.add(Embedding(person_id=p.id, model="facenet-casia-webface",
                        vector=vector.astype(np.float32).tobytes(),
                        image_hash=hashlib.sha256(vector.tobytes()).hexdigest()))
        s.commit()
        return p.id


def worker_settings(tmp_path, redis_url, database_url, signing_key, **kw) -> WorkerSettings:
    pub = tmp_path / "signing.pub"
    pub.write_bytes(tokens.public_pem(signing_key))
    return WorkerSettings(**{
        "redis_url": redis_url, "database_url": database_url, "public_key_file": pub,
        "metrics_port": 0, "migrate": False, "consumer": "notify-test", "block_ms": 100,
        "intruder_count": 3, "intruder_window_s": 60, **kw})


def drain(worker: Worker, client) -> None:
    while True:
        entries = worker.read()
        if not entries:
            return
        worker.process(entries)


def set_node(sessions, node_id: str, *, beat: datetime, state="active", camera_up=True):
    with sessions() as s:
        n = s.get(Node, node_id) or Node(node_id=node_id)
        n.last_heartbeat_at, n.state, n.camera_up = beat, state, camera_up
        s.merge(n)
        s.commit()


def test_every_event_type_arrives_once_signed_private_by_webhook_and_mqtt(
        store, nh, redis_url, redis_server, signing_key, tmp_path, webhook_receiver, mosquitto):
    from fixtures.notify import MqttCollector

    url, _engine, sessions = store
    rng = np.random.default_rng(7)
    ada_vec = unit_vectors(1, rng)[0]
    ada = enroll(sessions, "Ada Lovelace", ada_vec)
    with sessions() as s:
        named = webhooks.create_subscription(s, name="chat", url=webhook_receiver.url("chat"),
                                             events=ALL_TYPES, include_names=True)
        anon = webhooks.create_subscription(s, name="ha", url=webhook_receiver.url("ha"),
                                            events=ALL_TYPES)
        webhooks.create_subscription(s, name="cams-only", url=webhook_receiver.url("cams"),
                                     events=["camera.offline", "camera.online"])
        for sub in (named, anon):
            webhook_receiver.secrets[sub.name] = sub.secret
        webhook_receiver.secrets["cams"] = s.get(type(named), 3).secret
    collector = MqttCollector(mosquitto.url, ["facegrid/#", "homeassistant/#"])
    settings = nh.settings(url, mqtt_url=mosquitto.url, mqtt_discovery=True)

    client = redis_server.client()
    cam = EventFactory("cam-1", tokens.issue_token(signing_key, "cam-1"))
    worker = Worker(worker_settings(tmp_path, redis_url, url, signing_key))
    worker.start()
    now = datetime.now(UTC)
    with nh.running(settings, sessions, with_mqtt=True):
        set_node(sessions, "cam-1", beat=now)                       # online + active
        nh.wait_for(lambda: len(webhook_receiver.messages("cams")) == 1, what="online")
        # one presence of Ada (two frames: one presence.recognised), three strangers (two
        # frames each: confirmed, three presence.unknown, one intruder alert)
        entries = [cam.entry(near(ada_vec, rng), at=now + timedelta(milliseconds=i),
                             track_id=100) for i in range(2)]
        for i, v in enumerate(unit_vectors(3, rng), 1):
            entries += [cam.entry(near(v, rng, 0.01), at=now + timedelta(seconds=i, milliseconds=j),
                                  track_id=200 + i) for j in range(2)]
        for e in entries:
            client.xadd(keys.EVENTS_STREAM, e)
        drain(worker, client)
        set_node(sessions, "cam-1", beat=datetime.now(UTC), state="idle")        # idle
        nh.wait_for(lambda: any(m["type"] == "camera.idle"
                                for m in webhook_receiver.messages("ha")), what="idle")
        set_node(sessions, "cam-1", beat=datetime.now(UTC) - timedelta(minutes=5))  # offline
        nh.wait_for(lambda: len(webhook_receiver.messages("cams")) == 2, what="offline")
        expected = 4 + 1 + 4  # presences, intruder alert, online/active/idle/offline
        nh.wait_for(lambda: all(len(webhook_receiver.messages(n)) == expected
                                for n in ("chat", "ha")), what="all webhooks")
        nh.wait_for(lambda: len(collector.on("facegrid/events/")) == expected,
                    what="all MQTT events")
        time.sleep(0.5)  # anything extra (a duplicate) would arrive now
    collector.close()

    assert webhook_receiver.bad_signatures == 0
    for name in ("chat", "ha"):
        msgs = webhook_receiver.messages(name)
        types = collections.Counter(m["type"] for m in msgs)
        assert types == {"presence.recognised": 1, "presence.unknown": 3, "alert.intruder": 1,
                         "camera.online": 1, "camera.active": 1, "camera.idle": 1,
                         "camera.offline": 1}, (name, types)
        assert len({m["id"] for m in msgs}) == len(msgs)  # each event once
        hdr_ids = [r.headers["webhook-id"] for r in webhook_receiver.received[name]]
        assert hdr_ids == [m["id"] for m in msgs]
        raw = b"".join(r.body for r in webhook_receiver.received[name])
        assert len(raw) < 600 * len(msgs)  # no picture, no embedding: small JSON only
        for m in msgs:
            assert set(m) == {"id", "type", "occurred_at", "data"}
            assert not {"embedding", "image", "box", "token"} & set(m["data"])
    chat = {m["type"]: m for m in webhook_receiver.messages("chat")}
    ha = {m["type"]: m for m in webhook_receiver.messages("ha")}
    assert chat["presence.recognised"]["data"]["person"] == {"id": ada, "name": "Ada Lovelace"}
    pseudo = ha["presence.recognised"]["data"]["person"]["id"]
    assert pseudo.startswith("p_") and len(pseudo) == 18
    assert b"Ada" not in b"".join(r.body for r in webhook_receiver.received["ha"])
    assert ha["alert.intruder"]["data"]["count"] == 3
    assert ha["camera.offline"]["data"]["reason"] == "no_heartbeat"
    assert [m["type"] for m in webhook_receiver.messages("cams")] == ["camera.online",
                                                                      "camera.offline"]

    events = collector.on("facegrid/events/")
    assert collections.Counter(t.rsplit("/", 1)[1] for t, *_ in events) == types
    mqtt_ids = [json.loads(p)["id"] for _, p, *_ in events]
    assert len(set(mqtt_ids)) == len(mqtt_ids)
    assert {json.loads(p)["id"] for _, p, *_ in events} == {m["id"] for m in msgs}
    topics = collections.Counter(t for t, *_ in collector.messages)
    assert topics["facegrid/camera/cam-1/presence"] == 4
    assert topics["facegrid/alerts/unknown"] == 3 and topics["facegrid/alerts/intruder"] == 1
    mqtt_recognised = next(json.loads(p) for t, p, *_ in events
                           if t.endswith("presence.recognised"))
    pid = mqtt_recognised["data"]["person"]["id"]
    assert pid.startswith("p_") and pid != pseudo  # its own key: unlinkable to webhooks
    assert "Ada" not in "".join(p for _, p, *_ in collector.messages)
    assert topics[f"facegrid/person/{pid}/presence"] == 1
    assert topics[f"facegrid/person/{pid}/last_seen"] == 1
    # Live messages only: the broker is shared by the session, and a new subscription
    # first receives what an earlier test left retained (delivered with retain set).
    states = [(t, p) for t, p, r, *_ in collector.messages
              if not r and t.startswith("facegrid/camera/cam-1/a")]
    assert states == [("facegrid/camera/cam-1/availability", "online"),
                      ("facegrid/camera/cam-1/activity", "active"),
                      ("facegrid/camera/cam-1/activity", "idle"),
                      ("facegrid/camera/cam-1/availability", "offline")]
    assert ("facegrid/availability", "online") in [(t, p) for t, p, *_ in collector.messages]

    # Retained: a subscriber arriving later sees the states, the discovery configs and the
    # notifier's own availability (offline now that it stopped: clean shutdown).
    late = MqttCollector(mosquitto.url, ["facegrid/#", "homeassistant/#"])
    time.sleep(0.5)
    retained = {t: p for t, p, r, _ in late.messages if r}
    late.close()
    assert retained["facegrid/camera/cam-1/availability"] == "offline"
    assert retained["facegrid/camera/cam-1/activity"] == "idle"
    assert retained["facegrid/availability"] == "offline"
    config = json.loads(retained["homeassistant/binary_sensor/facegrid_cam-1/online/config"])
    assert config["state_topic"] == "facegrid/camera/cam-1/availability"
    assert config["device_class"] == "connectivity" and config["payload_on"] == "online"
    assert "homeassistant/sensor/facegrid_cam-1/activity/config" in retained


def test_receiver_down_60s_gets_everything_after(store, nh, webhook_receiver):
    """The receiver is down for 60 s while events keep coming: 0 lost, none doubled."""
    url, _engine, sessions = store
    with sessions() as s:
        sub = webhooks.create_subscription(s, name="down", url=webhook_receiver.url("down"),
                                           events=["presence.unknown"])
        webhook_receiver.secrets["down"] = sub.secret
    settings = nh.settings(url, webhook_backoff_base_s=1.0, webhook_backoff_max_s=8.0,
                           webhook_max_attempts=12)
    sent: list[str] = []

    def produce(n: int, pause: float) -> None:
        for _ in range(n):
            row = outbox.presence_row(presence_id=len(sent) + 1, node_id="cam-1",
                                      track_id=len(sent), person_id=None, score=0.1,
                                      at=datetime.now(UTC))
            with sessions() as s:
                outbox.presences_stored(s, [row])
                s.commit()
            sent.append(row["event_id"])
            time.sleep(pause)

    with nh.running(settings, sessions):
        produce(5, 0.05)
        nh.wait_for(lambda: len(webhook_receiver.received.get("down", [])) == 5)
        webhook_receiver.stop()
        down_at = time.monotonic()
        produce(120, 0.5)  # 60 s of events while down
        assert time.monotonic() - down_at >= 60
        with sessions() as s:
            attempts = s.scalar(select(func.max(WebhookDelivery.attempts)))
            dead = s.scalar(select(func.count()).where(WebhookDelivery.status == "dead"))
        webhook_receiver.start()
        back = time.monotonic()
        nh.wait_for(lambda: len(webhook_receiver.received.get("down", [])) >= len(sent),
                    timeout=60, what="everything after the receiver returned")
        caught_up = time.monotonic() - back
        time.sleep(1.0)
    got = [m["id"] for m in webhook_receiver.messages("down")]
    print(f"\nreceiver down {back - down_at:.0f} s: {len(sent)} events, {len(got)} received, "
          f"max attempts while down {attempts}, dead {dead}, caught up in {caught_up:.1f} s")
    assert dead == 0 and attempts >= 3
    assert sorted(got) == sorted(sent) and len(got) == len(set(got))
    assert webhook_receiver.bad_signatures == 0


def test_ingestion_unchanged_while_the_receiver_hangs(store, nh, redis_url, redis_server,
                                                      signing_key, tmp_path, webhook_receiver):
    """The worker's throughput with a hanging receiver equals its throughput without one.

    The notifier runs as its own process (``facegrid notifier``), as it is deployed.

    Throughput is measured per batch as wall time and as the worker thread's CPU time
    (the machine is shared, so wall time is noisy; the CPU time is not).
    """
    url, _engine, sessions = store
    client = redis_server.client()
    rng = np.random.default_rng(11)
    cam = EventFactory("cam-1", tokens.issue_token(signing_key, "cam-1"))
    worker = Worker(worker_settings(tmp_path, redis_url, url, signing_key, intruder_count=5))
    worker.start()
    t0 = datetime.now(UTC) - timedelta(hours=1)
    tracks = itertools.count(1)

    def run_batches(n_batches: int) -> tuple[float, float]:
        wall, cpu = [], []
        for _ in range(n_batches):
            pipe = client.pipeline(transaction=False)
            for i, v in enumerate(unit_vectors(128, rng)):  # 128 strangers, two frames each
                track = next(tracks)
                for j in range(2):
                    pipe.xadd(keys.EVENTS_STREAM, cam.entry(
                        near(v, rng, 0.01), at=t0 + timedelta(milliseconds=2 * i + j),
                        track_id=track))
            pipe.execute()
            entries = worker.read()
            start, start_cpu = time.perf_counter(), time.thread_time()
            worker.process(entries)
            wall.append(len(entries) / (time.perf_counter() - start))
            cpu.append(len(entries) / (time.thread_time() - start_cpu))
        return statistics.median(wall), statistics.median(cpu)

    settings = nh.settings(url, webhook_timeout_s=60.0, webhook_concurrency=8)
    with nh.process(settings, tmp_path / "notifier.log"):
        run_batches(2)  # warm-up
        base_wall, base_cpu = run_batches(8)
        with sessions() as s:
            sub = webhooks.create_subscription(s, name="hang", url=webhook_receiver.url("hang"),
                                               events=["presence.unknown"])
            webhook_receiver.secrets["hang"] = sub.secret
        webhook_receiver.hang.set()
        hang_wall, hang_cpu = run_batches(8)
        nh.wait_for(lambda: _pending(sessions) >= 8 * 128 - 8, what="fan-out")
        held = len(webhook_receiver.received.get("hang", []))
        webhook_receiver.release.set()
        webhook_receiver.hang.clear()
    print(f"\nworker throughput, events/s (wall | worker CPU): {base_wall:.0f} | {base_cpu:.0f} "
          f"without a receiver, {hang_wall:.0f} | {hang_cpu:.0f} while the receiver hangs "
          f"({_pending(sessions)} deliveries waiting)")
    assert held == 0  # the receiver really held every request
    assert hang_cpu >= 0.7 * base_cpu, (base_cpu, hang_cpu)
    assert hang_wall >= 0.4 * base_wall, (base_wall, hang_wall)


def _pending(sessions) -> int:
    with sessions() as s:
        return s.scalar(select(func.count()).where(WebhookDelivery.status == "pending"))
