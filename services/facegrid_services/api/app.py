"""The app factory: REST v1 routers, dashboard, metrics middleware, error mapping, lifespan.

``create_app`` is handed its collaborators (session factory, Redis client,
token verifier) so tests and ``facegrid server`` build it the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

import redis
from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DataError, IntegrityError, OperationalError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from facegrid import __version__
from facegrid.tokens import TokenVerifier
from facegrid_services.retention import retention_loop

from . import metrics
from .audit import AuditMiddleware
from .deps import ServerContext
from .guard import RequestGuard
from .heartbeats import HeartbeatBuffer
from .revocation import RevocationList
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
        status_code = 500

        async def _send(message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            if template.startswith("/dashboard"):
                template = "/dashboard"
            metrics.LATENCY.labels(template).observe(time.perf_counter() - start)
            metrics.REQUESTS.labels(scope["method"], template,
                                    f"{status_code // 100}xx").inc()


def _error(code: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=code)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(IntegrityError)
    async def _integrity(_req: Request, exc: IntegrityError):
        log.info("integrity error: %s", exc.orig)
        return _error(status.HTTP_409_CONFLICT,
                      "conflicts with existing data (a unique value is already taken)")

    @app.exception_handler(DataError)
    async def _data(_req: Request, exc: DataError):
        log.info("data error: %s", exc.orig)
        return _error(status.HTTP_422_UNPROCESSABLE_CONTENT,
                      "a value cannot be stored (bad characters or out of range)")

    @app.exception_handler(OperationalError)
    async def _db_down(_req: Request, exc: OperationalError):
        log.error("database error: %s", exc.orig)
        return _error(status.HTTP_503_SERVICE_UNAVAILABLE, "the database is unavailable")

    @app.exception_handler(StatementError)
    async def _statement(_req: Request, exc: StatementError):
        if isinstance(exc.orig, (ValueError, OverflowError)):
            return _error(status.HTTP_422_UNPROCESSABLE_CONTENT, f"invalid value: {exc.orig}")
        raise exc

    @app.exception_handler(redis.ConnectionError)
    @app.exception_handler(redis.TimeoutError)
    async def _redis_down(_req: Request, exc: redis.RedisError):
        log.error("redis unavailable: %s", exc)
        return _error(status.HTTP_503_SERVICE_UNAVAILABLE, "Redis is unavailable")


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
    revocations = RevocationList(sessions, redis_client)
    heartbeats = HeartbeatBuffer(sessions, redis_client, interval=heartbeat_flush_s)
    ctx = ServerContext(settings=settings, sessions=sessions, redis=redis_client,
                        verifier=verifier, revocations=revocations, heartbeats=heartbeats,
                        admin_token=settings.admin_secret(), clock=clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.to_thread(revocations.load)
        await asyncio.to_thread(heartbeats.load_known)
        await asyncio.to_thread(heartbeats.tick)
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

    app = FastAPI(title="facegrid", version=__version__, description=DESCRIPTION,
                  lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.ctx = ctx
    app.add_middleware(AuditMiddleware, sessions=sessions)
    # Outermost after metrics: nothing reads a body before the guard let it through.
    app.add_middleware(RequestGuard, ctx=ctx, max_body_bytes=settings.max_body_bytes,
                       auth_failures_max=settings.auth_failures_max,
                       auth_failure_window_s=settings.auth_failure_window_s)
    app.add_middleware(MetricsMiddleware)
    _install_error_handlers(app)
    for module in (health, nodes, people, sightings, presences, attendance, alerts, stream,
                   tokens, api_tokens, groups, schedules, statuses, webhooks):
        app.include_router(module.router)

    @app.get("/", include_in_schema=False)
    def _root() -> RedirectResponse:
        return RedirectResponse("/dashboard/")

    app.mount("/dashboard", StaticFiles(directory=STATIC, html=True), name="dashboard")
    return app
