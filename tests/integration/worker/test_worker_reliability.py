"""Crash, restart and fuzz suites: nothing is lost, nothing is stored twice, nothing stops."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import redis
from facegrid_services.store.models import Attendance, Sighting
from facegrid_services.worker.consumer import Worker
from fixtures.synthetic import EventFactory, near, unit_vectors
from sqlalchemy import func, select

from facegrid import keys, tokens, wire

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
N_EVENTS = 10_000
#: These suites test delivery (exactly once, nothing lost), not recognition: synthetic
#: embeddings are not faces, and a threshold calibrated from their impostor scores
#: (1 % target false-accept rate) would accept ~1 % of the random strangers. The
#: threshold is pinned so each event's expected person is known.
PINNED_THRESHOLD = 0.58


def _produce(client, entries, chunk=500):
    ids = []
    for i in range(0, len(entries), chunk):
        pipe = client.pipeline(transaction=False)
        for e in entries[i:i + chunk]:
            pipe.xadd(keys.EVENTS_STREAM, e)
        ids += [x.decode() for x in pipe.execute()]
    return ids


def _workload(engine, signing_key, wh, n=N_EVENTS, people=50, seed=0):
    """Enroll ``people``; n events over 3 nodes (80% of enrolled people, 20% strangers)."""
    rng = np.random.default_rng(seed)
    centres = unit_vectors(people, rng)
    ids = wh.enroll(engine, {f"p{i}": np.stack([near(c, rng) for _ in range(3)])
                             for i, c in enumerate(centres)})
    nodes = [EventFactory(f"cam-{i}", tokens.issue_token(signing_key, f"cam-{i}"))
             for i in range(3)]
    # Noon (UTC, the site zone) yesterday: in the past, and the events never straddle a
    # site-local midnight, whenever the test runs.
    t0 = (datetime.now(UTC) - timedelta(days=1)).replace(hour=12, minute=0, second=0,
                                                         microsecond=0)
    entries, expect = [], {}
    for i in range(n):
        node = nodes[i % 3]
        at = t0 + timedelta(milliseconds=500 * i)
        who = int(rng.integers(people)) if rng.random() < 0.8 else None
        emb = near(centres[who], rng) if who is not None else unit_vectors(1, rng)[0]
        payload = node.payload(at)
        entries.append(wire.encode(payload, node.token, emb))
        expect[payload.event_id] = (ids[f"p{who}"] if who is not None else None,
                                    payload.corrected_utc)
    return entries, expect


def _check_exactly_once(engine, expect):
    with engine.connect() as c:
        rows = c.execute(select(Sighting.event_id, Sighting.person_id,
                                Sighting.corrected_utc)).all()
        att = {r.person_id: r for r in c.execute(select(Attendance))}
    assert len(rows) == len(expect), "every event stored exactly once"
    assert {r.event_id for r in rows} == set(expect)
    wrong = sum(r.person_id != expect[r.event_id][0] for r in rows)
    assert wrong == 0, f"{wrong} events matched the wrong person"
    first, last = {}, {}
    for r in rows:
        if r.person_id is not None:
            first[r.person_id] = min(first.get(r.person_id, r.corrected_utc), r.corrected_utc)
            last[r.person_id] = max(last.get(r.person_id, r.corrected_utc), r.corrected_utc)
    assert {p: (a.check_in, a.check_out) for p, a in att.items()} == {
        p: (first[p], last[p]) for p in first}


def _ready(client) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:  # BusyLoadingError while the AOF is replayed
        return False


def _worker_cmd() -> list[str]:
    return [str(Path(sys.executable).parent / "facegrid"), "worker"]


def test_sigkill_three_times_loses_nothing(wh, settings, store, signing_key, redis_server,
                                           public_key_file, tmp_path):
    url, engine = store
    entries, expect = _workload(engine, signing_key, wh)
    client = redis_server.client()
    _produce(client, entries)
    env = {**os.environ, "FACEGRID_REDIS_URL": redis_server.url, "FACEGRID_DATABASE_URL": url,
           "FACEGRID_PUBLIC_KEY_FILE": str(public_key_file), "FACEGRID_METRICS_PORT": "0",
           "FACEGRID_CLAIM_IDLE_MS": "1000", "FACEGRID_RECLAIM_INTERVAL_S": "0.5",
           "FACEGRID_BLOCK_MS": "200", "FACEGRID_LOG_LEVEL": "WARNING",
           "FACEGRID_MAX_EVENT_AGE_S": str(3 * 86400),
           "FACEGRID_THRESHOLD": str(PINNED_THRESHOLD)}
    env.pop("FACEGRID_CONSUMER", None)  # a new consumer name per process: forces XAUTOCLAIM
    log = (tmp_path / "worker.log").open("ab")
    rnd = random.Random(os.getpid())
    kills = []
    t_start = time.monotonic()
    for _ in range(3):
        proc = subprocess.Popen(_worker_cmd(), env=env, stdout=log, stderr=subprocess.STDOUT)
        target = wh.count_sightings(engine) + rnd.randint(300, 2500)
        wh.wait_for(lambda t=target, p=proc: wh.count_sightings(engine) >= t or
                    p.poll() is not None, timeout=120, what="progress before the kill")
        assert proc.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
        time.sleep(rnd.uniform(0, 0.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        kills.append(wh.count_sightings(engine))
    proc = subprocess.Popen(_worker_cmd(), env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wh.wait_for(lambda: wh.group_pending(client) == 0 and
                    wh.count_sightings(engine) >= len(expect), timeout=180,
                    what="all events stored after the kills")
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
    elapsed = time.monotonic() - t_start
    assert rc == 0, "SIGTERM ends the worker cleanly"
    _check_exactly_once(engine, expect)
    assert client.xlen(keys.DEAD_LETTER_STREAM) == 0
    print(f"\n{len(expect)} events, SIGKILL at {kills} stored rows, all stored once "
          f"in {elapsed:.1f} s ({url.split(':')[0]})")


def test_redis_restart_mid_stream_loses_nothing(wh, settings, store, signing_key,
                                                redis_server):
    _, engine = store
    entries, expect = _workload(engine, signing_key, wh, seed=1)
    half = len(entries) // 2
    client = redis_server.client()
    _produce(client, entries[:half])
    with wh.running(Worker(settings.model_copy(update={"threshold": PINNED_THRESHOLD}))):
        wh.wait_for(lambda: wh.count_sightings(engine) >= 1500, what="progress")
        redis_server.kill()  # SIGKILL: AOF (fsync always) keeps what was acknowledged
        time.sleep(1.0)
        redis_server.start()
        client = redis_server.client()
        wh.wait_for(lambda: _ready(client), what="redis loaded its AOF")
        _produce(client, entries[half:])
        wh.wait_for(lambda: wh.count_sightings(engine) >= len(expect) and
                    wh.group_pending(client) == 0, timeout=120, what="all events stored")
    _check_exactly_once(engine, expect)
    assert client.xlen(keys.DEAD_LETTER_STREAM) == 0


def _malformed(signing_key, n, rng: random.Random):
    """n bad entries, each with the reason the worker must give (None: any wire reason)."""
    good = tokens.issue_token(signing_key, "cam-1", jti="good")
    cases = {
        "unknown_version": lambda f: f.update(v=b"3"),
        "missing_field": lambda f: f.pop("embedding"),
        "extra_field": lambda f: f.update(extra=b"x"),
        "embedding_not_finite": lambda f: f.update(
            embedding=np.full(512, np.nan, np.float32).tobytes()),
        "wrong_embedding_length": lambda f: f.update(embedding=f["embedding"] + b"\0" * 4),
        "embedding_bad_norm": lambda f: f.update(
            embedding=(np.frombuffer(f["embedding"], np.float32) * 2).tobytes()),
        "oversize": lambda f: f.update(payload=b"{" + b" " * 200_000 + b"}"),
        "bad_json": lambda f: f.update(payload=f["payload"][:-3]),
        "token_bad_signature": lambda f: f.update(
            token=tokens.issue_token(tokens.generate_private_key(), "cam-1").encode()),
        "token_expired": lambda f: f.update(token=tokens.issue_token(
            signing_key, "cam-1", ttl_seconds=60, now=time.time() - 3600).encode()),
        "token_wrong_node": lambda f: f.update(
            token=tokens.issue_token(signing_key, "cam-2").encode()),
        "token_revoked": lambda f: f.update(
            token=tokens.issue_token(signing_key, "cam-1", jti="bad-jti").encode()),
        "token_malformed": lambda f: f.update(token=b"not.a.jwt"),
        "model_mismatch": None,
        None: None,  # random bytes
    }
    node = EventFactory("cam-1", good)
    other_model = EventFactory("cam-1", good, model="facenet-vggface2")
    emb = unit_vectors(1, np.random.default_rng(0))[0]
    out = []
    names = list(cases)
    for i in range(n):
        reason = names[i % len(names)]
        if reason is None:
            f = {rng.randbytes(rng.randint(1, 8)): rng.randbytes(rng.randint(0, 3000))
                 for _ in range(rng.randint(1, 5))}
            if rng.random() < 0.5:
                f[b"v"] = b"1"
        elif reason == "model_mismatch":
            f = other_model.entry(emb)
        else:
            f = node.entry(emb)
            cases[reason](f)
        out.append((f, reason))
    return out


def test_ten_thousand_malformed_entries_all_dead_lettered(wh, settings, store, signing_key,
                                                          redis_server, node):
    _, engine = store
    # The gallery's model (followed: FACEGRID_MODEL unset) makes other models mismatches.
    wh.enroll(engine, {"someone": unit_vectors(1, np.random.default_rng(2))})
    client = redis_server.client()
    client.sadd(keys.REVOKED_SET, "bad-jti")
    bad = _malformed(signing_key, N_EVENTS, random.Random(7))
    ids = _produce(client, [f for f, _ in bad])
    expected = dict(zip(ids, (r for _, r in bad), strict=True))
    t0 = time.monotonic()
    with wh.running(Worker(settings)):
        wh.wait_for(lambda: wh.group_pending(client) == 0, timeout=120, what="all handled")
        elapsed = time.monotonic() - t0
        # ... and the worker still works.
        good = node.entry(unit_vectors(1, np.random.default_rng(1))[0])
        client.xadd(keys.EVENTS_STREAM, good)
        wh.wait_for(lambda: wh.count_sightings(engine) == 1, what="a valid event after fuzz")
    dead = client.xrange(keys.DEAD_LETTER_STREAM)
    assert len(dead) == N_EVENTS
    got = {f[b"source_id"].decode(): f[b"reason"].decode() for _, f in dead}
    assert set(got) == set(expected)
    wire_reasons = {r.value for r in wire.Reason}
    wrong = [(sid, expected[sid], got[sid]) for sid in got
             if (expected[sid] or "") != got[sid] and
             not (expected[sid] is None and got[sid] in wire_reasons)]
    assert not wrong, wrong[:10]
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(Sighting)).scalar_one() == 1
    counts = {}
    for r in got.values():
        counts[r] = counts.get(r, 0) + 1
    print(f"\n{N_EVENTS} malformed entries dead-lettered in {elapsed:.1f} s: "
          f"{json.dumps(counts, sort_keys=True)}")
