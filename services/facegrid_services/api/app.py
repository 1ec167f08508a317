"""The app factory: REST v1 routers, dashboard, metrics middleware, error mapping, lifespan.

``create_app`` is handed its collaborators (session factory, Redis client,
token verifier) so tests and ``facegrid server`` build it the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable
from pathlib import Path

import redis
from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session, sessionmaker

from facegrid import __version__
from facegrid.contract import API_PREFIX
from facegrid.tokens import TokenVerifier
from facegrid_services.retention import retention_loop

from . import errors, metrics, openapi
from .audit import AuditMiddleware
from .deps import ServerContext
from .guard import RequestGuard
from .heartbeats import HeartbeatBuffer
from .revocation import RevocationRegistry
from .routers import (
    alerts,
    api_tokens,
    attendance,
    groups,
    health,
    nodes,
    people,
    presences,
    schedules,
    sightings,
    statuses,
    stream,
    tokens,
    webhooks,
)
from .routes import StatusRecorder, route_template
from .settings import ServerSettings

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"

DESCRIPTION = """\
REST API v1 of facegrid: camera fleet, people and enrollment (embeddings only,
never pictures), sightings, attendance, alerts, the event stream's backlog and
dead letters, token revocation, named API tokens and the audit log.  Management
routes need an API token whose role (viewer < operator < admin) the route allows,
node routes the node's JWT, both as `Authorization: Bearer ...`.  Every time is
UTC (ISO-8601); the dashboard at `/dashboard/` shows them in the viewer's zone.
"""


class MetricsMiddleware:
    """Counts requests and times them by route template (bounded labels)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        sent = StatusRecorder(send)
        try:
            await self.app(scope, receive, sent)
        finally:
            template = route_template(scope)
            if template.startswith("/dashboard"):
                template = "/dashboard"
            metrics.LATENCY.labels(template).observe(time.perf_counter() - start)
            metrics.REQUESTS.labels(scope["method"], template,
                                    f"{sent.status // 100}xx").inc()


def create_app(
    settings: ServerSettings,
    *,
    sessions: sessionmaker[Session],
    redis_client: redis.Redis,
    verifier: TokenVerifier,
    clock: Callable[[], float] = time.time,
    run_retention: bool = True,
    heartbeat_flush_s: float = 1.0,
) -> FastAPI:
    """Build the API server app.  Nothing connects until the lifespan starts."""
    revocations = RevocationRegistry(sessions, redis_client)
    heartbeats = HeartbeatBuffer(sessions, redis_client, interval=heartbeat_flush_s)
    ctx = ServerContext(settings=settings, sessions=sessions, redis=redis_client,
                        verifier=verifier, revocations=revocations, heartbeats=heartbeats,
                        admin_token=settings.admin_secret(), clock=clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.to_thread(revocations.load)
        await asyncio.to_thread(heartbeats.load_known)
        await asyncio.to_thread(heartbeats.tick)
        # What exists now lives as long as the server: out of the cyclic GC's reach, so
        # a request that allocates much (a 500 x 31 report makes ~400,000 objects) does
        # not re-scan the whole application at each full collection (unfrozen at stop).
        gc.collect()
        gc.freeze()
        revocations.start_listener()
        flusher = asyncio.create_task(heartbeats.run(), name="heartbeat-flush")
        reloader = asyncio.create_task(revocations.reload_loop(settings.revocation_reload_s),
                                       name="revocation-reload")
        task = None
        if run_retention and settings.retention_days > 0:
            def _count(n: int | None) -> None:
                metrics.RETENTION_RUNS.labels("ok" if n is not None else "error").inc()
                if n:
                    metrics.RETENTION_DELETED.inc(n)

            task = asyncio.create_task(retention_loop(
                sessions, settings.retention_days, settings.retention_interval_s,
                on_run=_count), name="retention")
        try:
            yield
        finally:
            for t in (task, flusher, reloader):
                if t is not None:
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await t
            await asyncio.to_thread(revocations.stop_listener)
            gc.unfreeze()

    app = FastAPI(title="facegrid", version=__version__, description=DESCRIPTION,
                  lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.ctx = ctx
    app.add_middleware(AuditMiddleware, sessions=sessions)
    # Outermost after metrics: nothing reads a body before the guard let it through.
    app.add_middleware(RequestGuard, ctx=ctx, max_body_bytes=settings.max_body_bytes,
                       auth_failures_max=settings.auth_failures_max,
                       auth_failure_window_s=settings.auth_failure_window_s)
    app.add_middleware(MetricsMiddleware)
    errors.install(app)
    openapi.install(app)
    app.include_router(health.router)
    for module in (nodes, people, sightings, presences, attendance, alerts, stream, tokens,
                   api_tokens, groups, schedules, statuses, webhooks):
        app.include_router(module.router, prefix=API_PREFIX)

    @app.get("/", include_in_schema=False)
    def _root() -> RedirectResponse:
        return RedirectResponse("/dashboard/")

    app.mount("/dashboard", StaticFiles(directory=STATIC, html=True), name="dashboard")
    return app
