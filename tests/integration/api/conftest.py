"""The API app built by its factory against a real Redis and a real database."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from fixtures.api import Api, build_api

from facegrid import tokens


@pytest.fixture(scope="session")
def signing_key():
    return tokens.generate_private_key()


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
