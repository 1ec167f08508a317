"""Liveness, readiness and Prometheus metrics (no authentication)."""

from __future__ import annotations

import logging

import redis
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ..deps import Ctx

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Redis and the database are reachable",
            responses={503: {"description": "a dependency is unreachable"}})
def readyz(ctx: Ctx) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        with ctx.sessions() as s:
            s.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except SQLAlchemyError as e:
        log.warning("readiness: database unreachable: %s", e)
        checks["database"] = f"error: {type(e).__name__}"
    try:
        ctx.redis.ping()
        checks["redis"] = "ok"
    except redis.RedisError as e:
        log.warning("readiness: redis unreachable: %s", e)
        checks["redis"] = f"error: {type(e).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def prometheus_metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
