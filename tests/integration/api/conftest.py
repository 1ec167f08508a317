"""The API app built by its factory against a real Redis and a real database."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
import redis
from facegrid_services.api.app import create_app
from facegrid_services.api.settings import ServerSettings
from facegrid_services.store import db
from fastapi.testclient import TestClient

from facegrid import tokens

ADMIN = "admin-token-for-tests-0123456789"


@dataclass
class Api:
    client: TestClient
    redis: redis.Redis
    sessions: object
    key: object
    settings: ServerSettings
    clock: list

    @property
    def admin(self) -> dict:
        return {"Authorization": f"Bearer {ADMIN}"}

    def node_token(self, node_id: str, **kw) -> str:
        return tokens.issue_token(self.key, node_id, **kw)

    def node_headers(self, node_id: str, **kw) -> dict:
        return {"Authorization": f"Bearer {self.node_token(node_id, **kw)}"}


@pytest.fixture(scope="session")
def signing_key():
    return tokens.generate_private_key()


def build_api(database_url, redis_url, signing_key, tmp_path, **settings_kw):
    db.migrate(database_url)
    engine = db.make_engine(database_url)
    pub = tmp_path / "signing.pub"
    pub.write_bytes(tokens.public_pem(signing_key))
    # Route-by-route auth tests send many bad credentials from one client on purpose;
    # throttling has its own test (test_request_guard.py).
    settings_kw.setdefault("auth_failures_max", 1_000_000)
    settings = ServerSettings(admin_token=ADMIN, database_url=database_url,
                              redis_url=redis_url, public_key_file=pub, **settings_kw)
    r = redis.Redis.from_url(redis_url)
    clock = [time.time()]
    verifier = tokens.TokenVerifier.from_pem(pub)
    app = create_app(settings, sessions=db.session_factory(engine), redis_client=r,
                     verifier=verifier, clock=lambda: clock[0], run_retention=False)
    return app, r, engine, settings, clock


@pytest.fixture
def api(database_url, redis_url, signing_key, tmp_path):
    app, r, engine, settings, clock = build_api(database_url, redis_url, signing_key, tmp_path)
    with TestClient(app) as client:
        yield Api(client=client, redis=r, sessions=app.state.ctx.sessions, key=signing_key,
                  settings=settings, clock=clock)
    r.close()
    engine.dispose()


@pytest.fixture
def make_sighting(api):
    """Insert one sighting as the worker would (ORM row; every field filled)."""
    import uuid
    from datetime import UTC, datetime

    from facegrid_services.store.models import Sighting

    def make(*, node_id="cam-1", person_id=None, at=None, score=0.8, recognised=None):
        at = at or datetime.now(UTC)
        row = Sighting(
            event_id=str(uuid.uuid4()), stream_id="1-0", node_id=node_id, person_id=person_id,
            recognised=person_id is not None if recognised is None else recognised,
            score=score, threshold=0.5, model="facenet-casia-webface", lamport=1,
            utc_timestamp=at, local_time=at.isoformat(), timezone="UTC",
            timezone_offset="+00:00", drift_offset_ms=0.0, corrected_utc=at, track_id=1,
            box=[0, 0, 10, 10], det_confidence=0.99, quality={"brightness": 0.5, "blur": 100.0},
            received_at=at)
        with api.sessions() as s:
            s.add(row)
            s.commit()
            return row.id

    return make


from fixtures.api_server import live_server  # noqa: E402, F401 (fixture)
