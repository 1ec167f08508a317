"""Fixtures for the classify worker's integration tests: keys, store, helpers (``wh``)."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from facegrid_services.store import db, repo
from facegrid_services.store.models import Embedding, Person, Sighting
from facegrid_services.worker.consumer import Worker
from facegrid_services.worker.settings import WorkerSettings
from fixtures import waiting
from fixtures.synthetic import EventFactory

from facegrid import keys, tokens


@pytest.fixture(scope="session")
def signing_key():
    return tokens.generate_private_key()


@pytest.fixture
def public_key_file(tmp_path, signing_key):
    path = tmp_path / "signing.pub"
    path.write_bytes(tokens.public_pem(signing_key))
    return path


@pytest.fixture
def node(signing_key):
    """EventFactory for node cam-1 (its token's jti is ``jti-cam-1``)."""
    return EventFactory("cam-1", tokens.issue_token(signing_key, "cam-1", jti="jti-cam-1"))


@pytest.fixture
def store(database_url):
    """A migrated store: ``(url, engine)``."""
    repo.migrate_locked(database_url)
    engine = db.make_engine(database_url)
    yield database_url, engine
    engine.dispose()


@pytest.fixture
def settings(redis_url, store, public_key_file):
    return WorkerSettings(redis_url=redis_url, database_url=store[0],
                          public_key_file=public_key_file, metrics_port=0, migrate=False,
                          consumer="test-worker", block_ms=100, claim_idle_ms=1000,
                          reclaim_interval_s=0.5, stats_interval_s=0.5, max_backoff_s=0.5,
                          # The tests' events are dated noon yesterday (never straddling a
                          # midnight): not back-dated for them.
                          max_event_age_s=3 * 86400)


def enroll(engine, people: dict[str, np.ndarray], model="facenet-casia-webface") -> dict[str, int]:
    """people: name -> (n, 512) embeddings.  Returns name -> person id."""
    ids = {}
    with db.session_factory(engine)() as s:
        for name, embs in people.items():
            p = Person(name=name)
            s.add(p)
            s.flush()
            for e in np.atleast_2d(embs):
                e = np.asarray(e, np.float32)
                s.add(Embedding(person_id=p.id, model=model, vector=e.tobytes(),
                                image_hash=hashlib.sha256(e.tobytes()).hexdigest()))
            ids[name] = p.id
        s.commit()
    return ids


def count_sightings(engine) -> int:
    from sqlalchemy import func, select

    with engine.connect() as c:
        return c.execute(select(func.count()).select_from(Sighting)).scalar_one()


def wait_for(cond, timeout=60.0, interval=0.05, what="condition"):
    return waiting.wait_for(cond, timeout, what, interval)


def group_pending(client) -> int:
    for g in client.xinfo_groups(keys.EVENTS_STREAM):
        if g["name"] in (keys.WORKER_GROUP, keys.WORKER_GROUP.encode()):
            lag = g.get("lag")
            if lag is None:  # Redis cannot tell (e.g. after an AOF restart): compare ids
                last = client.xinfo_stream(keys.EVENTS_STREAM)["last-generated-id"]
                lag = 0 if g["last-delivered-id"] == last else 1
            return int(g["pending"]) + int(lag)
    return -1


@contextlib.contextmanager
def running(worker: Worker):
    stop = threading.Event()
    t = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    t.start()
    try:
        yield worker
    finally:
        stop.set()
        t.join(30)
        assert not t.is_alive(), "worker did not stop"


@pytest.fixture
def wh():
    """The helpers above (importlib import mode: test modules cannot import conftest)."""
    return SimpleNamespace(enroll=enroll, count_sightings=count_sightings, wait_for=wait_for,
                           group_pending=group_pending, running=running)
