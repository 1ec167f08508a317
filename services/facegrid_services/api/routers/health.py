"""Liveness, readiness and Prometheus metrics (no authentication)."""

from __future__ import annotations

import logging

import redis
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ..deps import Ctx

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


class AliveOut(BaseModel):
    status: str = "ok"


class ReadyOut(BaseModel):
    status: str = Field(description="ready | not ready")
    checks: dict[str, str] = Field(description="database, redis: ok | error: <kind>")


@router.get("/healthz", response_model=AliveOut, summary="The process is alive")
def healthz() -> AliveOut:
    return AliveOut()


@router.get("/readyz", response_model=ReadyOut, summary="Redis and the database are reachable",
            responses={503: {"model": ReadyOut, "description": "a dependency is unreachable"}})
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


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}},
                             "description": "Prometheus text exposition format"}})
def prometheus_metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
