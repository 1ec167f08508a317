"""The one shape of every error reply of the API, and the handlers that produce it.

Every 4xx and 5xx the server sends — a route's own refusal, FastAPI's request
validation (422), the request guard's 401/413/429, an unknown path (404), a
database that is down (503) — is ``application/json`` with the body
:class:`ErrorOut`::

    {"status": 422, "reason": "validation_failed",
     "detail": "query.limit: Input should be less than or equal to 1000",
     "errors": [{"loc": ["query", "limit"], "msg": "Input should be ...",
                 "type": "less_than_equal"}]}

``detail`` is a human sentence (what clients have always read), ``reason`` a
bounded code from :class:`Reason` (as in :class:`facegrid.errors.ReasonError`),
``errors`` lists each invalid field of a request that failed validation (empty
otherwise).  Routes raise :class:`ApiError` to give a specific reason; a plain
``HTTPException`` gets its status's default reason.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from enum import StrEnum

import redis
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError, IntegrityError, OperationalError, StatementError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class Reason(StrEnum):
    """Bounded reason codes of error replies."""

    bad_request = "bad_request"
    unauthorized = "unauthorized"
    forbidden = "forbidden"
    not_found = "not_found"
    method_not_allowed = "method_not_allowed"
    conflict = "conflict"
    body_too_large = "body_too_large"
    #: The request does not match the schema (``errors`` says where).
    validation_failed = "validation_failed"
    #: The request matches the schema but a value cannot be used (end before start, ...).
    invalid_value = "invalid_value"
    auth_throttled = "auth_throttled"
    database_unavailable = "database_unavailable"
    redis_unavailable = "redis_unavailable"
    unavailable = "unavailable"
    internal = "internal"


#: The reason of a status when the raiser gave none.
DEFAULT_REASONS: dict[int, Reason] = {
    400: Reason.bad_request, 401: Reason.unauthorized, 403: Reason.forbidden,
    404: Reason.not_found, 405: Reason.method_not_allowed, 409: Reason.conflict,
    413: Reason.body_too_large, 422: Reason.invalid_value, 429: Reason.auth_throttled,
    500: Reason.internal, 503: Reason.unavailable,
}


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where: body/query/path/header, then the field")
    msg: str
    type: str = Field(description="Pydantic's error type, e.g. less_than_equal")


class ErrorOut(BaseModel):
    """Every error reply (4xx and 5xx) of the API."""

    status: int = Field(description="The HTTP status, repeated")
    reason: Reason = Field(description="A bounded code: what kind of refusal")
    detail: str = Field(description="What exactly is wrong, in words")
    errors: list[FieldError] = Field(default_factory=list,
                                     description="Each invalid field (validation_failed)")


class ApiError(HTTPException):
    """An HTTPException with a specific :class:`Reason`."""

    def __init__(self, status_code: int, detail: str, reason: Reason | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status_code, detail, headers=dict(headers) if headers else None)
        self.reason = reason or DEFAULT_REASONS.get(status_code, Reason.bad_request)


def reason_for(status: int) -> Reason:
    if status in DEFAULT_REASONS:
        return DEFAULT_REASONS[status]
    return Reason.internal if status >= 500 else Reason.bad_request


def error_body(status: int, detail: str, reason: Reason | None = None,
               errors: list[dict] | None = None) -> dict:
    """The JSON body of an error reply (also written by the ASGI request guard)."""
    return {"status": status, "reason": str(reason or reason_for(status)), "detail": detail,
            "errors": errors or []}


def error_response(status: int, detail: str, reason: Reason | None = None,
                   headers: Mapping[str, str] | None = None,
                   errors: list[dict] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, detail, reason, errors), status_code=status,
                        headers=dict(headers) if headers else None)


def _detail_text(detail) -> str:
    return detail if isinstance(detail, str) else json.dumps(detail, default=str)


def _field_errors(exc: RequestValidationError) -> list[dict]:
    out = []
    for e in exc.errors():
        loc = [p if isinstance(p, int) else str(p) for p in e.get("loc", ())]
        out.append({"loc": loc, "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))})
    return out


def validation_detail(errors: list[dict], limit: int = 1000) -> str:
    text = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
    return (text[:limit - 1] + "…") if len(text) > limit else (text or "invalid request")


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the :class:`ErrorOut` shape."""

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, _detail_text(exc.detail),
                              getattr(exc, "reason", None), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError):
        errors = _field_errors(exc)
        return error_response(422, validation_detail(errors), Reason.validation_failed,
                              errors=errors)

    @app.exception_handler(IntegrityError)
    async def _integrity(_req: Request, exc: IntegrityError):
        log.info("integrity error: %s", exc.orig)
        return error_response(409, "conflicts with existing data (a unique value is "
                                   "already taken)")

    @app.exception_handler(DataError)
    async def _data(_req: Request, exc: DataError):
        log.info("data error: %s", exc.orig)
        return error_response(422, "a value cannot be stored (bad characters or out of range)")

    @app.exception_handler(OperationalError)
    async def _db_down(_req: Request, exc: OperationalError):
        log.error("database error: %s", exc.orig)
        return error_response(503, "the database is unavailable", Reason.database_unavailable)

    @app.exception_handler(StatementError)
    async def _statement(_req: Request, exc: StatementError):
        if isinstance(exc.orig, (ValueError, OverflowError)):
            return error_response(422, f"invalid value: {exc.orig}")
        raise exc

    @app.exception_handler(redis.ConnectionError)
    @app.exception_handler(redis.TimeoutError)
    async def _redis_down(_req: Request, exc: redis.RedisError):
        log.error("redis unavailable: %s", exc)
        return error_response(503, "Redis is unavailable", Reason.redis_unavailable)

    @app.exception_handler(Exception)
    async def _internal(_req: Request, exc: Exception):
        # Starlette's ServerErrorMiddleware sends this, then re-raises (the traceback is logged).
        return error_response(500, "internal server error", Reason.internal)
