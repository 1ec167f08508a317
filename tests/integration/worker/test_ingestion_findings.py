"""Issue 16's findings, one test each, against a real redis-server (and real worker processes
where a crash is the point).  Each of these failed on the code before the fix."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import redis
from facegrid_services.store.models import Attendance, Sighting
from facegrid_services.worker import metrics
from facegrid_services.worker.consumer import Worker
from fixtures.synthetic import EventFactory, near, unit_vectors
from prometheus_client import REGISTRY
from sqlalchemy import select

from facegrid import keys, tokens, wire

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


@pytest.fixture
def database_url(tmp_path):
    """SQLite only: these findings are about Redis and the loop, not the SQL dialect."""
    return f"sqlite:///{tmp_path / 'facegrid.db'}"


def _metric(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _xadd(client, entries) -> list[str]:
    pipe = client.pipeline(transaction=False)
    for e in entries:
        pipe.xadd(keys.EVENTS_STREAM, e)
    return [i.decode() for i in pipe.execute()]


def _dead(client) -> dict[str, str]:
    return {f[b"source_id"].decode(): f[b"reason"].decode()
            for _, f in client.xrange(keys.DEAD_LETTER_STREAM)}


def _with_payload(entry: dict, **changes) -> dict:
    """The entry with payload fields replaced by raw JSON text (e.g. '1' + '0' * 400)."""
    d = json.loads(entry["payload"])
    body = json.dumps({k: (f"@@{k}@@" if k in changes else v) for k, v in d.items()},
                      separators=(",", ":"))
    for k, raw in changes.items():
        body = body.replace(f'"@@{k}@@"', raw)
    return {**entry, "payload": body.encode()}


# --- 1. one entry stopped ingestion for good -----------------------------------------


def test_huge_number_is_dead_lettered_and_the_batch_goes_on(wh, settings, store, node,
                                                            redis_server):
    _, engine = store
    client = redis_server.client()
    rng = np.random.default_rng(1)
    huge = "1" + "0" * 400
    bad = [_with_payload(node.entry(unit_vectors(1, rng)[0]), **{field: huge})
           for field in ("drift_offset_ms", "det_confidence", "lamport", "track_id")]
    bad.append(_with_payload(node.entry(unit_vectors(1, rng)[0]),
                             quality=f'{{"brightness":{huge},"blur":1.0}}'))
    good = [node.entry(v) for v in unit_vectors(20, rng)]
    bad_ids = _xadd(client, bad)
    _xadd(client, good)
    with wh.running(Worker(settings)):
        wh.wait_for(lambda: wh.group_pending(client) == 0, timeout=30, what="all acked")
    assert wh.count_sightings(engine) == 20
    assert _dead(client) == dict.fromkeys(bad_ids, "bad_value")


def test_an_entry_that_breaks_a_check_is_dead_lettered_alone(wh, settings, store, signing_key,
                                                             public_key_file, redis_server):
    """Any exception, not only the format's refusal, stays with its entry."""
    _, engine = store
    client = redis_server.client()

    def is_revoked(jti: str) -> bool:
        if jti == "explodes":
            raise KeyError("a bug nobody foresaw")
        return False

    verifier = tokens.TokenVerifier.from_pem(public_key_file, is_revoked=is_revoked)
    rng = np.random.default_rng(2)
    boom = EventFactory("cam-1", tokens.issue_token(signing_key, "cam-1", jti="explodes"))
    ok = EventFactory("cam-1", tokens.issue_token(signing_key, "cam-1", jti="fine"))
    ids = _xadd(client, [ok.entry(unit_vectors(1, rng)[0]), boom.entry(unit_vectors(1, rng)[0]),
                         ok.entry(unit_vectors(1, rng)[0])])
    with wh.running(Worker(settings, verifier=verifier)):
        wh.wait_for(lambda: wh.group_pending(client) == 0, timeout=30, what="all acked")
    assert wh.count_sightings(engine) == 2
    dead = client.xrange(keys.DEAD_LETTER_STREAM)
    assert len(dead) == 1
    f = dead[0][1]
    assert f[b"source_id"].decode() == ids[1] and f[b"reason"] == b"check_failed"
    assert b"KeyError" in f[b"detail"] and f[b"payload"]  # the original fields are kept


def test_poison_entry_is_dead_lettered_by_delivery_count(wh, settings, store, node,
                                                         redis_server):
    """An entry that took down workers 5 times (delivered, never acked) is parked."""
    _, engine = store
    client = redis_server.client()
    client.xgroup_create(keys.EVENTS_STREAM, keys.WORKER_GROUP, id="0", mkstream=True)
    rng = np.random.default_rng(3)
    (poison_id,) = _xadd(client, [node.entry(unit_vectors(1, rng)[0])])
    for _ in range(settings.max_deliveries):  # five workers died holding it
        client.xreadgroup(keys.WORKER_GROUP, "crashed", {keys.EVENTS_STREAM: "0"})
        client.xreadgroup(keys.WORKER_GROUP, "crashed", {keys.EVENTS_STREAM: ">"})
    time.sleep(settings.claim_idle_ms / 1000 + 0.1)
    _xadd(client, [node.entry(unit_vectors(1, rng)[0])])
    with wh.running(Worker(settings)):
        wh.wait_for(lambda: wh.group_pending(client) == 0, timeout=30, what="all acked")
    assert _dead(client) == {poison_id: "poison"}
    assert wh.count_sightings(engine) == 1


# --- 2. Lamport poisoning ------------------------------------------------------------


def test_lamport_poison_is_refused_and_counted(wh, settings, store, signing_key, redis_server):
    _, engine = store
    client = redis_server.client()
    token = tokens.issue_token(signing_key, "cam-1")
    honest = EventFactory("cam-1", token, lamport=1000)
    rng = np.random.default_rng(4)
    _xadd(client, [honest.entry(v) for v in unit_vectors(5, rng)])
    with wh.running(Worker(settings)):
        wh.wait_for(lambda: wh.group_pending(client) == 0, timeout=30)
        before = _metric("facegrid_worker_dead_lettered_total", reason="lamport_jump")
        over_int64 = _with_payload(honest.entry(unit_vectors(1, rng)[0]),
                                   lamport=str(2**63 - 1))
        jump = honest.entry(unit_vectors(1, rng)[0], lamport=2**53)
        ids = _xadd(client, [over_int64, jump, honest.entry(unit_vectors(1, rng)[0])])
        wh.wait_for(lambda: wh.group_pending(client) == 0, timeout=30)
    assert _dead(client) == {ids[0]: "bad_value", ids[1]: "lamport_jump"}
    assert _metric("facegrid_worker_dead_lettered_total", reason="lamport_jump") == before + 1
    # The honest node's maximum (the two replaced payloads used ticks 1006 and 1007).
    assert int(client.get(keys.LAMPORT_MAX)) == 1008
    assert wh.count_sightings(engine) == 6


def test_implausible_lamport_maximum_never_reaches_a_node(redis_server, redis_url):
    from facegrid_services.api import fleet

    from facegrid.clock import LAMPORT_OBSERVE_LIMIT, LamportClock

    client = redis_server.client()
    client.set(keys.LAMPORT_MAX, str(2**63 - 1))  # written before the fix
    echoed = fleet.lamport_max(client)
    assert echoed <= LAMPORT_OBSERVE_LIMIT
    clock = LamportClock(41)
    assert clock.observe(2**63 - 1) == 41 and clock.ignored == 1
    assert clock.observe(echoed) <= LAMPORT_OBSERVE_LIMIT + 1 <= wire.MAX_LAMPORT


# --- 3. silent loss by trimming ------------------------------------------------------


def test_worker_trims_only_what_the_group_acknowledged(wh, settings, store, node,
                                                       redis_server):
    _, engine = store
    client = redis_server.client()
    rng = np.random.default_rng(5)
    _xadd(client, [node.entry(v) for v in unit_vectors(300, rng)])
    settings = settings.model_copy(update={"trim_interval_s": 0.2})
    with wh.running(Worker(settings)):
        wh.wait_for(lambda: wh.group_pending(client) == 0, timeout=60)
        wh.wait_for(lambda: client.xlen(keys.EVENTS_STREAM) == 0, timeout=10,
                    what="acknowledged entries trimmed")
    assert wh.count_sightings(engine) == 300
    # With the worker gone, nothing unread is ever deleted (not by nodes, not by a trim).
    from facegrid_services.worker.duties import StreamDuties

    client.xreadgroup(keys.WORKER_GROUP, "other", {keys.EVENTS_STREAM: ">"})
    _xadd(client, [node.entry(v) for v in unit_vectors(50, rng)])
    client.xreadgroup(keys.WORKER_GROUP, "other", {keys.EVENTS_STREAM: ">"}, count=10)
    assert StreamDuties(client).trim_acked() == 0
    assert client.xlen(keys.EVENTS_STREAM) == 50


def test_node_publisher_never_deletes_unread_entries(redis_server, redis_url):
    from facegrid_node.publisher import RedisPublisher
    from facegrid_node.settings import NodeSettings

    client = redis_server.client()
    client.xgroup_create(keys.EVENTS_STREAM, keys.WORKER_GROUP, id="0", mkstream=True)
    # The old default trimmed at ~100,000 entries, read or not: send more than that.
    n = 101_000
    pub = RedisPublisher(redis_url, maxlen=NodeSettings.model_fields["stream_maxlen"].default,
                         buffer_size=n)
    for i in range(n):
        pub.publish({"i": b"%d" % i})
    assert pub.flush(120)
    pub.close()
    assert client.xlen(keys.EVENTS_STREAM) == n


def test_dead_letters_are_capped_with_an_eviction_count(wh, settings, store, node,
                                                        redis_server):
    client = redis_server.client()
    settings = settings.model_copy(update={"dead_letter_maxlen": 10})
    before = _metric("facegrid_worker_dead_letters_evicted_total", reason="maxlen")
    bad = []
    for v in unit_vectors(25, np.random.default_rng(6)):
        e = node.entry(v)
        e["embedding"] = e["embedding"][:-4]
        bad.append(e)
    ids = _xadd(client, bad)
    with wh.running(Worker(settings)):
        wh.wait_for(lambda: wh.group_pending(client) == 0, timeout=30)
    assert client.xlen(keys.DEAD_LETTER_STREAM) == 10
    assert set(_dead(client)) == set(ids[-10:])  # the newest kept
    assert _metric("facegrid_worker_dead_letters_evicted_total", reason="maxlen") == before + 15


def test_dead_letters_expire_after_their_age(wh, settings, store, node, redis_server):
    """Dead letters hold embeddings: the worker deletes them after dead_letter_max_age_s,
    aged by their own stream id (when the worker dead-lettered them), and counts them."""
    client = redis_server.client()
    settings = settings.model_copy(update={"dead_letter_max_age_s": 3 * 86400.0,
                                           "trim_interval_s": 0.2})
    now_ms = int(time.time() * 1000)
    fields = {"reason": "bad_json", "detail": "x", "source_id": "1-0", "payload": b"{"}
    old = [client.xadd(keys.DEAD_LETTER_STREAM, fields, id=f"{now_ms - d * 86_400_000}-0")
           for d in (8, 4)]
    young = [client.xadd(keys.DEAD_LETTER_STREAM, fields, id=f"{now_ms - 2 * 86_400_000}-0")]
    before = _metric("facegrid_worker_dead_letters_evicted_total", reason="expired")
    bad = node.entry(unit_vectors(1, np.random.default_rng(8))[0])
    bad["embedding"] = bad["embedding"][:-4]
    (fresh,) = _xadd(client, [bad])
    with wh.running(Worker(settings)):
        wh.wait_for(lambda: fresh in _dead(client) and client.xlen(keys.DEAD_LETTER_STREAM) == 2,
                    timeout=30, what="the old dead letters expired")
    left = client.xrange(keys.DEAD_LETTER_STREAM)
    assert [sid for sid, _ in left][:1] == young and left[1][1][b"source_id"] == fresh.encode()
    assert not set(old) & {sid for sid, _ in left}
    assert _metric("facegrid_worker_dead_letters_evicted_total", reason="expired") == before + 2


def test_dead_letters_never_fill_redis(wh, settings, store, node, redis_server):
    """A flood of dead letters (~3.7 KB each, e.g. a camera on the wrong model) must not
    fill a noeviction Redis so that events are refused: above dead_letter_memory_ratio
    of maxmemory the oldest are evicted, counted; events keep flowing.  The worker runs
    under its own ACL user (MEMORY USAGE and XTRIM are among its commands)."""
    import secrets

    from facegrid import acl

    client = redis_server.client()
    filler = {"reason": "model_mismatch", "detail": "x", "source_id": "1-0",
              "payload": b"p" * 1200, "embedding": b"e" * 2048}
    pipe = client.pipeline(transaction=False)
    for _ in range(4000):
        pipe.xadd(keys.DEAD_LETTER_STREAM, filler)
    pipe.execute()
    old_cap = client.config_get("maxmemory")["maxmemory"]
    used = client.info("memory")["used_memory"]
    client.config_set("maxmemory", str(int(used / 0.9)))  # Redis 90% full
    pw = secrets.token_hex(8)
    client.execute_command("ACL", "SETUSER", *acl.setuser_args("facegrid-worker-t", pw, "worker"))
    settings = settings.model_copy(update={
        "trim_interval_s": 0.2, "dead_letter_memory_ratio": 0.7,
        "redis_url": acl.url_with_user(settings.redis_url, "facegrid-worker-t", pw)})
    before = _metric("facegrid_worker_dead_letters_evicted_total", reason="memory")
    try:
        with wh.running(Worker(settings)):
            def relieved() -> bool:
                mem = client.info("memory")
                return mem["used_memory"] <= 0.72 * mem["maxmemory"]
            wh.wait_for(relieved, timeout=30, what="Redis below 70% of maxmemory")
            ids = _xadd(client, [node.entry(v)
                                 for v in unit_vectors(5, np.random.default_rng(9))])
            wh.wait_for(lambda: wh.group_pending(client) == 0, timeout=30)
        left = client.xlen(keys.DEAD_LETTER_STREAM)
    finally:
        client.config_set("maxmemory", old_cap)
        client.execute_command("ACL", "DELUSER", "facegrid-worker-t")
    assert 0 < left < 4000  # the newest kept, as many evicted as needed
    assert _metric("facegrid_worker_dead_letters_evicted_total", reason="memory") == \
        before + 4000 - left
    assert wh.count_sightings(store[1]) == len(ids) == 5


def _sum(name: str) -> float:
    return sum(s.value for m in REGISTRY.collect() for s in m.samples if s.name == name)


def test_a_full_redis_is_drained_not_wedged(wh, settings, store, node, redis_server):
    """Redis at maxmemory (noeviction) refuses XADD/HINCRBY/SET: a worker (re)started then
    must still start, store and acknowledge the backlog, so that trimming frees Redis;
    the dead letters it cannot write are dropped loudly (counted), never the events."""
    client = redis_server.client()
    client.xgroup_create(keys.EVENTS_STREAM, keys.WORKER_GROUP, id="0", mkstream=True)
    rng = np.random.default_rng(10)
    good = [node.entry(v) for v in unit_vectors(600, rng)]  # ~2 MB: more than the
    # memory the worker's own connections take once it runs
    bad = []
    for v in unit_vectors(3, rng):
        e = node.entry(v)
        e["embedding"] = e["embedding"][:-4]
        bad.append(e)
    _xadd(client, bad + good)  # the bad ones in the first batch: Redis still full then
    old_cap = client.config_get("maxmemory")["maxmemory"]
    used = client.info("memory")["used_memory"]
    client.config_set("maxmemory", str(used - 20_000))  # full: XADD is refused
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.xadd(keys.EVENTS_STREAM, good[0])
    dropped, full = _sum("facegrid_worker_dead_letters_dropped_total"), \
        _sum("facegrid_worker_redis_full_total")
    settings = settings.model_copy(update={"trim_interval_s": 0.2})
    try:
        with wh.running(Worker(settings)):
            wh.wait_for(lambda: wh.group_pending(client) == 0, timeout=30,
                        what="the backlog acknowledged")
            wh.wait_for(lambda: client.xlen(keys.EVENTS_STREAM) == 0, timeout=30,
                        what="the acknowledged backlog trimmed")
            # Redis has room again: nodes' events are accepted and stored.
            late = _xadd(client, [node.entry(v) for v in unit_vectors(2, rng)])
            wh.wait_for(lambda: wh.count_sightings(store[1]) == 602, timeout=30)
    finally:
        client.config_set("maxmemory", old_cap)
    assert len(late) == 2 and wh.count_sightings(store[1]) == 602
    assert _sum("facegrid_worker_dead_letters_dropped_total") == dropped + 3
    assert client.xlen(keys.DEAD_LETTER_STREAM) == 0
    assert _sum("facegrid_worker_redis_full_total") >= full + 1


def test_a_future_stream_id_is_measured_and_its_sender_named(wh, settings, store, node,
                                                              signing_key, redis_server,
                                                              caplog):
    """ACLs cannot stop a node from XADDing an explicit id in the future; every later
    entry inherits that time.  The worker stores them (arrival capped at its clock),
    shows how far ahead the ids run and names the sender of the jump, once."""
    client = redis_server.client()
    other = EventFactory("cam-2", tokens.issue_token(signing_key, "cam-2"))
    vecs = unit_vectors(4, np.random.default_rng(11))
    future_ms = int((time.time() + 3600) * 1000)
    client.xadd(keys.EVENTS_STREAM, node.entry(vecs[0]), id=f"{future_ms}-0")
    _xadd(client, [other.entry(v) for v in vecs[1:]])  # auto ids: inherit the future time
    with caplog.at_level("ERROR", logger="facegrid_services.worker.consumer"), \
            wh.running(Worker(settings)):
        wh.wait_for(lambda: wh.count_sightings(store[1]) == 4, timeout=30)
        wh.wait_for(lambda: _metric("facegrid_worker_stream_id_ahead_seconds") > 3000,
                    timeout=30, what="the stream id clock measured ahead")
    named = [r.getMessage() for r in caplog.records if "in the future" in r.getMessage()]
    assert len(named) == 1 and "'cam-1'" in named[0] and "cam-2" not in named[0], named
    with store[1].connect() as c:
        received = c.execute(select(Sighting.received_at)).scalars().all()
    assert all(r < datetime.now(UTC) + timedelta(seconds=5) for r in received)


# --- 4. take-over of a SIGKILLed worker ----------------------------------------------


def test_killed_workers_entries_are_taken_over_and_its_consumer_removed(
        wh, settings, store, node, redis_server, public_key_file, tmp_path):
    url, engine = store
    client = redis_server.client()
    env = {**os.environ, "FACEGRID_REDIS_URL": redis_server.url, "FACEGRID_DATABASE_URL": url,
           "FACEGRID_PUBLIC_KEY_FILE": str(public_key_file), "FACEGRID_METRICS_PORT": "0",
           "FACEGRID_MIGRATE": "false", "FACEGRID_CONSUMER": "doomed",
           "FACEGRID_BLOCK_MS": "100"}
    log = tmp_path / "worker.log"
    proc = subprocess.Popen([str(Path(sys.executable).parent / "facegrid"), "worker"], env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)
    try:
        wh.wait_for(lambda: any(c["name"] == b"doomed" for c in _consumers(client)),
                    timeout=60, what="the worker consuming")
        # Hold the SQLite write lock: the worker reads a batch and blocks in its commit.
        db = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=1)
        db.execute("BEGIN IMMEDIATE")
        _xadd(client, [node.entry(v) for v in unit_vectors(40, np.random.default_rng(7))])
        # (a blocked XREADGROUP may wake after the first XADD: a batch of 1 or more)
        wh.wait_for(lambda: _pending_of(client, "doomed") > 0, timeout=20,
                    what="a batch pending on the doomed worker")
        time.sleep(0.3)
        held = _pending_of(client, "doomed")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        db.rollback()
        db.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    reclaimed = _metric("facegrid_worker_reclaimed_total")
    settings = settings.model_copy(update={"stale_consumer_s": 1.0})
    time.sleep(settings.claim_idle_ms / 1000)
    worker = Worker(settings)
    assert worker.reclaim() == held  # raised TypeError before the fix
    assert _metric("facegrid_worker_reclaimed_total") == reclaimed + held
    with wh.running(worker):
        wh.wait_for(lambda: wh.count_sightings(engine) == 40 and wh.group_pending(client) == 0,
                    timeout=30, what="the dead worker's batch stored")
        wh.wait_for(lambda: {c["name"] for c in _consumers(client)} == {b"test-worker"},
                    timeout=10, what="the dead consumer removed")
    assert _metric("facegrid_worker_consumers_removed_total") >= 1


def _consumers(client):
    try:
        return client.xinfo_consumers(keys.EVENTS_STREAM, keys.WORKER_GROUP)
    except Exception:  # no stream or group yet
        return []


def _pending_of(client, consumer: str) -> int:
    for c in _consumers(client):
        if c["name"] == consumer.encode():
            return int(c["pending"])
    return 0


def test_liveness_follows_loop_progress(wh, settings, store, redis_server):
    import urllib.error
    import urllib.request

    from facegrid_services.worker.health import serve
    from fixtures.servers import free_port

    worker = Worker(settings)
    port = free_port()
    server = serve(port, lambda: worker.last_progress, timeout_s=1.0, host="127.0.0.1")
    try:
        with wh.running(worker):
            time.sleep(1.5)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz") as r:
                assert r.status == 200
        time.sleep(1.5)  # the loop stopped: no progress
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz")
        assert e.value.code == 503
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as r:
            assert b"facegrid_worker_stream_backlog_age_seconds" in r.read()
    finally:
        server.shutdown()


# --- 5. backlog after a Redis restart ------------------------------------------------


def test_backlog_figures_right_after_a_redis_restart(wh, settings, store, node, redis_server):
    client = redis_server.client()
    client.xgroup_create(keys.EVENTS_STREAM, keys.WORKER_GROUP, id="0", mkstream=True)
    rng = np.random.default_rng(8)
    _xadd(client, [node.entry(v) for v in unit_vectors(100, rng)])
    client.xreadgroup(keys.WORKER_GROUP, "someone", {keys.EVENTS_STREAM: ">"}, count=30)
    client.xtrim(keys.EVENTS_STREAM, maxlen=95, approximate=False)  # a node's old trim
    time.sleep(1.1)
    redis_server.kill()
    redis_server.start()
    client = redis_server.client()
    wh.wait_for(lambda: _ping(client), what="redis loaded")
    worker = Worker(settings)
    worker.start()
    metrics.BACKLOG.set(45_549)  # a stale figure from before
    worker.update_stream_stats()
    assert _metric("facegrid_worker_stream_backlog") == 70
    assert _metric("facegrid_worker_stream_backlog_age_seconds") >= 1.0
    assert _metric("facegrid_worker_stream_pending") == 30
    # Redis' own lag (what KEDA reads) is repaired too.
    (g,) = client.xinfo_groups(keys.EVENTS_STREAM)
    assert g["lag"] == 70


def _ping(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


# --- 8. token expiry and event times judged at arrival -------------------------------


def test_backlog_of_honest_events_is_not_expired_by_waiting(wh, settings, store, signing_key,
                                                            redis_server):
    _, engine = store
    client = redis_server.client()
    settings = settings.model_copy(update={"token_leeway_s": 0.0})
    token = tokens.issue_token(signing_key, "cam-1", ttl_seconds=2)
    node = EventFactory("cam-1", token)
    _xadd(client, [node.entry(v) for v in unit_vectors(10, np.random.default_rng(9))])
    time.sleep(2.5)  # the token expires while the events wait in the backlog
    with wh.running(Worker(settings)):
        wh.wait_for(lambda: wh.group_pending(client) == 0, timeout=30)
    assert client.xlen(keys.DEAD_LETTER_STREAM) == 0
    assert wh.count_sightings(engine) == 10


def test_back_dated_event_does_not_move_attendance(wh, settings, store, node, redis_server):
    _, engine = store
    client = redis_server.client()
    rng = np.random.default_rng(10)
    centre = unit_vectors(1, rng)[0]
    wh.enroll(engine, {"alice": np.stack([near(centre, rng) for _ in range(3)])})
    settings = settings.model_copy(update={"max_event_age_s": 900.0})
    claimed = datetime.now(UTC) - timedelta(hours=3)  # "she was here three hours ago"
    _xadd(client, [node.entry(near(centre, rng), at=claimed)])
    with wh.running(Worker(settings)):
        wh.wait_for(lambda: wh.group_pending(client) == 0, timeout=30)
    with engine.connect() as c:
        att = c.execute(select(Attendance)).one()
        sighting = c.execute(select(Sighting)).one()
    assert abs(sighting.corrected_utc - claimed) < timedelta(milliseconds=1)  # kept for audit
    assert datetime.now(UTC) - att.check_in < timedelta(minutes=1)  # not back-dated
