"""Build the real app from ServerSettings: engine, migrations, Redis, verifier."""

from __future__ import annotations

import logging

import redis
from fastapi import FastAPI

from facegrid.tokens import TokenVerifier
from facegrid_services.store import db, repo

from .app import create_app
from .settings import ServerSettings

log = logging.getLogger(__name__)


def build_app(settings: ServerSettings, *, migrate: bool = True) -> FastAPI:
    if migrate:
        repo.migrate_locked(settings.database_url)
    engine = db.make_engine(settings.database_url)
    verifier = TokenVerifier.from_pem(settings.public_key_file,
                                      audience=settings.token_audience)
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5,
                                  socket_connect_timeout=5, health_check_interval=30)
    log.info("facegrid server: database %s, redis %s", engine.url.render_as_string(
        hide_password=True), client.connection_pool.connection_kwargs.get("host"))
    return create_app(settings, sessions=db.session_factory(engine), redis_client=client,
                      verifier=verifier)
