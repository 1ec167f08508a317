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
